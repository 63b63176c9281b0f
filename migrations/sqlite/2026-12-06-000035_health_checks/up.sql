-- Each repository's health check (wharf's integrity check of its content, in the place of
-- Nexus's Repository Health Check): whether the scheduled task checks it, and what the last
-- check found. In the database so that every node answers the same, whichever ran the check.
-- Times are milliseconds since the epoch; `report` is the last check's JSON report.
CREATE TABLE health_checks (
    repository_id BIGINT PRIMARY KEY NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    enabled BOOLEAN NOT NULL DEFAULT 0,
    changed_by TEXT,
    changed_at BIGINT NOT NULL,
    checked_at BIGINT,
    report TEXT
);
CREATE INDEX health_checks_enabled ON health_checks (enabled);
