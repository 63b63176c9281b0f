-- The audit log is read newest first by (at, id) (src/db/audit.rs). Ordered by id, a time window
-- was read through `audit_events_at` and every event in it sorted (0.5 s for a year at a million
-- events); by (at, id) that index (which holds the rowid) serves the order and a page reads its
-- own rows. Each filter the console offers gets an index in the same order.
DROP INDEX audit_events_actor;
CREATE INDEX audit_events_actor ON audit_events (actor, at);
CREATE INDEX audit_events_action ON audit_events (action, at);
CREATE INDEX audit_events_repository ON audit_events (repository, at);
