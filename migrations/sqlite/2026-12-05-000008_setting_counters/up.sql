-- Read-only mode, anonymous access and the active realms are settings every process must hear
-- of (`db::read_only`, `security::realms`): each gets a change counter like the other settings
-- processes keep views of.
INSERT INTO change_counters (kind, seq) VALUES ('read_only', 0), ('security.anonymous', 0), ('security.realms', 0);
DROP TRIGGER wharf_count_settings_insert;
DROP TRIGGER wharf_count_settings_update;
DROP TRIGGER wharf_count_settings_delete;
CREATE TRIGGER wharf_count_settings_insert AFTER INSERT ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers', 'read_only', 'security.anonymous', 'security.realms')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_update AFTER UPDATE ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers', 'read_only', 'security.anonymous', 'security.realms')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_delete AFTER DELETE ON settings WHEN OLD.key IN ('config.generation', 'ldap.servers', 'read_only', 'security.anonymous', 'security.realms')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = OLD.key; END;
