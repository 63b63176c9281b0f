ALTER TABLE blob_store_removals DROP COLUMN attributes;
ALTER TABLE blob_store_removals DROP COLUMN kind;
