ALTER TABLE repositories DROP COLUMN cache_invalidated_at;
