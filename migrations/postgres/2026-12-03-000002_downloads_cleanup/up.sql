-- Downloads per asset, for cleanup policies' "last downloaded" criterion. Written in batches off
-- the request path (src/lifecycle/downloads.rs), never by the formats' own writes.
ALTER TABLE assets ADD COLUMN last_downloaded BIGINT;
ALTER TABLE assets ADD COLUMN download_count BIGINT NOT NULL DEFAULT 0;

-- Cleanup policies (Nexus's model): the accepted JSON, as the REST API shows it.
CREATE TABLE cleanup_policies (
    name TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    format TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
