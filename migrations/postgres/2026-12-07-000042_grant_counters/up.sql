-- What roles and privileges grant is remembered with a verified password, API token or Docker
-- bearer token (see `security::principal`). Each use of one compares these counters with the
-- ones read beside the grants, so that a role narrowed on one node acts on every node at once,
-- not only when the notification arrives. SQLite has them since 2026-12-05-000006 (and
-- 000009, privileges); PostgreSQL gets the two it needs here, moved by a statement trigger in the
-- writing transaction.
CREATE TABLE change_counters (
    kind TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL
);
INSERT INTO change_counters (kind, seq) VALUES ('roles', 0), ('privileges', 0);

CREATE FUNCTION wharf_count_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_counters SET seq = seq + 1 WHERE kind = TG_TABLE_NAME;
    RETURN NULL;
END;
$$;

CREATE TRIGGER wharf_count_roles AFTER INSERT OR UPDATE OR DELETE ON roles FOR EACH STATEMENT EXECUTE FUNCTION wharf_count_table();
CREATE TRIGGER wharf_count_privileges AFTER INSERT OR UPDATE OR DELETE ON privileges FOR EACH STATEMENT EXECUTE FUNCTION wharf_count_table();
