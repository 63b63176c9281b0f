-- User API tokens: only a hash of the secret is kept; the secret is shown once.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    readonly BOOLEAN NOT NULL DEFAULT FALSE,
    repository TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_username ON api_tokens (username);
