DROP TRIGGER wharf_notify_login_failures ON login_failures;
DROP FUNCTION wharf_notify_pause();
DROP TABLE login_failures;
