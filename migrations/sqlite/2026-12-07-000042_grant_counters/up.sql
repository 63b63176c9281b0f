-- The counters of roles and privileges that remembered logins compare on every use are in
-- change_counters since 2026-12-05-000006 and 000009 (see the PostgreSQL migration of this name).
SELECT 1;
