-- Web logins in progress (npm's `/-/v1/login`); see the PostgreSQL migration of this name.
CREATE TABLE web_logins (
    id TEXT PRIMARY KEY NOT NULL,
    done_hash TEXT NOT NULL UNIQUE,
    repository TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    username TEXT,
    token TEXT
);
CREATE INDEX web_logins_expires_at ON web_logins (expires_at);
