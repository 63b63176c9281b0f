DROP TRIGGER wharf_notify_settings ON settings;
DROP TRIGGER wharf_notify_blob_stores ON blob_stores;
DROP TRIGGER wharf_notify_repositories ON repositories;
DROP TRIGGER wharf_notify_roles ON roles;
DROP TRIGGER wharf_notify_users ON users;
DROP FUNCTION wharf_notify_setting();
DROP FUNCTION wharf_notify_table();
