-- PostgreSQL's triggers that tell every node of a change (see the PostgreSQL migration of this
-- name). SQLite has one node, which invalidates its own caches when it writes.
SELECT 1;
