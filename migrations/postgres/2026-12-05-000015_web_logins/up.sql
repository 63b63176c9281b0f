-- Web logins in progress (npm's `/-/v1/login`), in the database so that the node that serves
-- the browser's approval and the node the client polls need not be the same. `id` is in the
-- login URL the user opens; the client polls with another secret, of which only a sha256 is
-- kept (`done_hash`). Once approved, `token` holds the new API token's secret, sealed with the
-- secret key (see `security::secrets`), until the client collects it (the row goes then) or
-- the login expires. Times are milliseconds since the epoch.
CREATE TABLE web_logins (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    done_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    repository TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    username TEXT,
    token TEXT
);
CREATE INDEX web_logins_expires_at ON web_logins (expires_at);
