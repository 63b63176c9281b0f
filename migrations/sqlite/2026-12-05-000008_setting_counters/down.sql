DELETE FROM change_counters WHERE kind IN ('read_only', 'security.anonymous', 'security.realms');
DROP TRIGGER wharf_count_settings_insert;
DROP TRIGGER wharf_count_settings_update;
DROP TRIGGER wharf_count_settings_delete;
CREATE TRIGGER wharf_count_settings_insert AFTER INSERT ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_update AFTER UPDATE ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_delete AFTER DELETE ON settings WHEN OLD.key IN ('config.generation', 'ldap.servers')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = OLD.key; END;
