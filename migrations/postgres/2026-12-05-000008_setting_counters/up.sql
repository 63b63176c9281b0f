-- Read-only mode is the setting `read_only`: PostgreSQL's nodes hear every setting change already
-- (wharf_notify_setting); only SQLite's change counters needed one more kind. Kept in step.
SELECT 1;
