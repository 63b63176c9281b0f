-- SQLite's change counters (see the SQLite migration of this name): PostgreSQL tells every node
-- with pg_notify instead.
SELECT 1;
