DROP TABLE cleanup_policies;
ALTER TABLE assets DROP COLUMN download_count;
ALTER TABLE assets DROP COLUMN last_downloaded;
