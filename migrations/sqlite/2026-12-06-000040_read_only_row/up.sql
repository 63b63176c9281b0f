-- Read-only mode's setting always has its row (empty: writable): on PostgreSQL every metadata
-- write share-locks it and a freeze updates it (src/db/read_only.rs), and a row lock cannot
-- guard a row that is not there.
INSERT INTO settings (key, value) VALUES ('read_only', '') ON CONFLICT (key) DO NOTHING;
