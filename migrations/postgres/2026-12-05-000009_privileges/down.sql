DROP TRIGGER wharf_notify_privileges ON privileges;
DROP TABLE privileges;
