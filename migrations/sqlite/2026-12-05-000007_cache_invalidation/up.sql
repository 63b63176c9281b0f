-- POST /service/rest/v1/repositories/{name}/invalidate-cache: what a proxy cached before this time
-- (milliseconds since the epoch) is asked of the upstream again, on every node.
ALTER TABLE repositories ADD COLUMN cache_invalidated_at BIGINT;
