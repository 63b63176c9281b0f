-- The audit log: append-only (nothing updates a row; only retention deletes old ones).
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT,
    address TEXT,
    action TEXT NOT NULL,
    repository TEXT,
    object TEXT,
    detail TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
