-- Privileges an administrator defines (Nexus's repository-view and application types), each
-- standing for built-in privilege ids (`grants`, a JSON list) that roles then hold by its name.
CREATE TABLE privileges (
    name TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    definition TEXT NOT NULL,
    grants TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- A changed privilege changes what every role holding it grants: processes forget their
-- remembered logins, as for a changed role.
INSERT INTO change_counters (kind, seq) VALUES ('privileges', 0);
CREATE TRIGGER wharf_count_privileges_insert AFTER INSERT ON privileges BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'privileges'; END;
CREATE TRIGGER wharf_count_privileges_update AFTER UPDATE ON privileges BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'privileges'; END;
CREATE TRIGGER wharf_count_privileges_delete AFTER DELETE ON privileges BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'privileges'; END;
