-- A deleted S3 blob store's objects are removed like a file store's files: its removal row
-- keeps what is needed to reach the bucket (the store's settings, secrets sealed as in
-- `blob_stores`), so that another node can finish the removal if the owner dies. `path` holds
-- the store's location (endpoint, bucket, prefix) for S3 rows.
ALTER TABLE blob_store_removals ADD COLUMN kind TEXT NOT NULL DEFAULT 'file';
ALTER TABLE blob_store_removals ADD COLUMN attributes TEXT NOT NULL DEFAULT '';
