ALTER TABLE uploads DROP COLUMN taken_over;
