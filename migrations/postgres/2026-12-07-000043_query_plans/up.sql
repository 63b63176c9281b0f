-- Indexes that the queries on hot paths need to be planned by what they look up, not walked
-- (found by EXPLAIN QUERY PLAN over a database of a million assets; see docs/architecture.md,
-- "Query plans"). SQLite gathers no statistics here, so it picks the index that matches the
-- most columns of a query: each index below is the one that should win.

-- Referrers and a manifest's ref rows are looked up by link: with (repository_id, link) only,
-- assets_by_component (repository_id, kind, component) matched more columns and walked every
-- manifest of the image. Most assets have no link: those stay out of the index.
DROP INDEX assets_by_link;
CREATE INDEX assets_by_link ON assets (repository_id, link, kind, component, path) WHERE link IS NOT NULL;

-- A blob store's usage sums sizes over its live rows: with the size in the index, from the
-- index alone.
DROP INDEX blobs_by_touch;
CREATE INDEX blobs_by_touch ON blobs (blob_store, state, touched_at, size);

-- A user's tokens are found by lower(username) and realm.
DROP INDEX api_tokens_username;
CREATE INDEX api_tokens_owner ON api_tokens (lower(username), realm);

-- Each console login deletes the expired sessions.
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- The running pauses of login throttling (a few rows, however many failures are remembered).
CREATE INDEX login_failures_paused ON login_failures (paused_until) WHERE paused_until IS NOT NULL;
