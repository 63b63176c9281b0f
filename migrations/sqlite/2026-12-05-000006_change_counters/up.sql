-- Several processes may share one SQLite file on one machine. What PostgreSQL's triggers tell
-- every node with pg_notify (see 2026-12-05-000001_cluster_notify) is counted here instead: each
-- change to a table that processes keep views of moves its counter in the writing transaction,
-- and every process reads the counters a few times a second (see `db::counters`).
CREATE TABLE change_counters (
    kind TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO change_counters (kind, seq) VALUES
    ('users', 0), ('roles', 0), ('repositories', 0), ('blob_stores', 0),
    ('config.generation', 0), ('ldap.servers', 0), ('pause', 0);

CREATE TRIGGER wharf_count_users_insert AFTER INSERT ON users BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'users'; END;
CREATE TRIGGER wharf_count_users_update AFTER UPDATE ON users BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'users'; END;
CREATE TRIGGER wharf_count_users_delete AFTER DELETE ON users BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'users'; END;
CREATE TRIGGER wharf_count_roles_insert AFTER INSERT ON roles BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'roles'; END;
CREATE TRIGGER wharf_count_roles_update AFTER UPDATE ON roles BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'roles'; END;
CREATE TRIGGER wharf_count_roles_delete AFTER DELETE ON roles BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'roles'; END;
CREATE TRIGGER wharf_count_repositories_insert AFTER INSERT ON repositories BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'repositories'; END;
CREATE TRIGGER wharf_count_repositories_update AFTER UPDATE ON repositories BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'repositories'; END;
CREATE TRIGGER wharf_count_repositories_delete AFTER DELETE ON repositories BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'repositories'; END;
CREATE TRIGGER wharf_count_blob_stores_insert AFTER INSERT ON blob_stores BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'blob_stores'; END;
CREATE TRIGGER wharf_count_blob_stores_update AFTER UPDATE ON blob_stores BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'blob_stores'; END;
CREATE TRIGGER wharf_count_blob_stores_delete AFTER DELETE ON blob_stores BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'blob_stores'; END;
-- Of the settings, only those that processes keep views of: other keys (task bookkeeping) are
-- written often and would make every process forget its remembered logins for nothing.
CREATE TRIGGER wharf_count_settings_insert AFTER INSERT ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_update AFTER UPDATE ON settings WHEN NEW.key IN ('config.generation', 'ldap.servers')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = NEW.key; END;
CREATE TRIGGER wharf_count_settings_delete AFTER DELETE ON settings WHEN OLD.key IN ('config.generation', 'ldap.servers')
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = OLD.key; END;
CREATE TRIGGER wharf_count_pause_insert AFTER INSERT ON login_failures WHEN NEW.paused_until IS NOT NULL
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'pause'; END;
CREATE TRIGGER wharf_count_pause_update AFTER UPDATE ON login_failures WHEN NEW.paused_until IS NOT NULL
    BEGIN UPDATE change_counters SET seq = seq + 1 WHERE kind = 'pause'; END;
