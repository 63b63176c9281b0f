-- Paths and names compare bytewise (COLLATE "C") so that prefix ranges and paging give the
-- same lexical order as SQLite.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active',
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE blob_stores (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE repositories (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    blob_store TEXT COLLATE "C" NOT NULL REFERENCES blob_stores(name),
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE assets (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    component TEXT COLLATE "C",
    digest TEXT,
    size BIGINT NOT NULL,
    content_type TEXT,
    link TEXT,
    attributes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, path)
);
CREATE INDEX assets_by_component ON assets (repository_id, kind, component, path);
CREATE INDEX assets_by_link ON assets (repository_id, link);
CREATE INDEX assets_by_digest ON assets (digest);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY NOT NULL,
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    component TEXT NOT NULL,
    blob_store TEXT NOT NULL,
    upload_offset BIGINT NOT NULL,
    hash_state BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
