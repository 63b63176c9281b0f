DROP TABLE blob_store_removals;
