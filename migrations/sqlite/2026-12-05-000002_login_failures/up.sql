-- Wrong passwords by (canonical user name, client address); see the PostgreSQL migration of
-- this name. Times are milliseconds since the epoch.
CREATE TABLE login_failures (
    username TEXT NOT NULL,
    client TEXT NOT NULL,
    count BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    paused_until BIGINT,
    PRIMARY KEY (username, client)
);
CREATE INDEX login_failures_last_at ON login_failures (last_at);
