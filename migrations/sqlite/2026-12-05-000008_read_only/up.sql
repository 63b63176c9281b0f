-- Read-only mode is a setting every process must hear of (see `db::read_only`): it gets a
-- change counter like the other settings processes keep views of.
INSERT INTO change_counters (kind, seq) VALUES ('read_only', 0);
DROP TRIGGER wharf_count_settings_insert;
DROP TRIGGER wharf_count_settings_update;
DROP TRIGGER wharf_count_settings_delete;
CREATE TRIGGER wharf_count_settings_insert AFTER INSERT ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers', 'read_only')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_update AFTER UPDATE ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers', 'read_only')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_delete AFTER DELETE ON settings WHEN OLD.key IN ('config.generation', 'ldap.servers', 'read_only')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = OLD.key; END;
