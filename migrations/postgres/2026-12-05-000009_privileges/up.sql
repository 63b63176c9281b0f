-- Privileges an administrator defines (see the SQLite migration of this name).
CREATE TABLE privileges (
    name TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    definition TEXT NOT NULL,
    grants TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TRIGGER wharf_notify_privileges AFTER INSERT OR UPDATE OR DELETE ON privileges FOR EACH STATEMENT EXECUTE FUNCTION wharf_notify_table();
