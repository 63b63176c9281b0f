DROP INDEX login_failures_paused;
DROP INDEX sessions_expires_at;
DROP INDEX api_tokens_owner;
CREATE INDEX api_tokens_username ON api_tokens (username);
DROP INDEX blobs_by_touch;
CREATE INDEX blobs_by_touch ON blobs (blob_store, state, touched_at);
DROP INDEX assets_by_link;
CREATE INDEX assets_by_link ON assets (repository_id, link);
