-- Wrong passwords by (canonical user name, client address), shared by every node so that a
-- guesser who alternates nodes meets the same pause. Written only on a wrong password (and
-- cleared by a right one after failures), read only before a password check that is not
-- answered from a node's cache. Times are milliseconds since the epoch.
CREATE TABLE login_failures (
    username TEXT COLLATE "C" NOT NULL,
    client TEXT COLLATE "C" NOT NULL,
    count BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    paused_until BIGINT,
    PRIMARY KEY (username, client)
);
CREATE INDEX login_failures_last_at ON login_failures (last_at);

-- A pause begun tells every node at commit, so that one answering this user's logins from its
-- cache refuses them too (see `db::notify`).
CREATE FUNCTION wharf_notify_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wharf_changes', json_build_object('kind', 'pause', 'user', NEW.username, 'client', NEW.client, 'until', NEW.paused_until)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER wharf_notify_login_failures AFTER INSERT OR UPDATE ON login_failures
    FOR EACH ROW WHEN (NEW.paused_until IS NOT NULL) EXECUTE FUNCTION wharf_notify_pause();
