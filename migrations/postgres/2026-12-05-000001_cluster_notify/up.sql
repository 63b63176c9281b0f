-- Every node keeps a few things in memory (the repository registry, remembered logins, the
-- anonymous role, directory answers). A change to what they were built from tells every node at
-- commit: these triggers send `pg_notify('wharf_changes', ...)` inside the writing transaction,
-- so a change rolled back tells nobody and one committed is heard by every node that LISTENs
-- (see `db::notify`). Payloads are small JSON objects naming what changed and, in `from`, the
-- writer's application_name (a node's pool names itself, so that it tells its own changes).
CREATE FUNCTION wharf_notify_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wharf_changes', json_build_object('kind', TG_TABLE_NAME, 'from', current_setting('application_name'))::text);
    RETURN NULL;
END;
$$;

CREATE FUNCTION wharf_notify_setting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('wharf_changes', json_build_object('kind', 'settings', 'key', OLD.key, 'from', current_setting('application_name'))::text);
    ELSE
        PERFORM pg_notify('wharf_changes', json_build_object('kind', 'settings', 'key', NEW.key, 'from', current_setting('application_name'))::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER wharf_notify_users AFTER INSERT OR UPDATE OR DELETE ON users FOR EACH STATEMENT EXECUTE FUNCTION wharf_notify_table();
CREATE TRIGGER wharf_notify_roles AFTER INSERT OR UPDATE OR DELETE ON roles FOR EACH STATEMENT EXECUTE FUNCTION wharf_notify_table();
CREATE TRIGGER wharf_notify_repositories AFTER INSERT OR UPDATE OR DELETE ON repositories FOR EACH STATEMENT EXECUTE FUNCTION wharf_notify_table();
CREATE TRIGGER wharf_notify_blob_stores AFTER INSERT OR UPDATE OR DELETE ON blob_stores FOR EACH STATEMENT EXECUTE FUNCTION wharf_notify_table();
CREATE TRIGGER wharf_notify_settings AFTER INSERT OR UPDATE OR DELETE ON settings FOR EACH ROW EXECUTE FUNCTION wharf_notify_setting();
