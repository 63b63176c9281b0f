-- The audit log is read newest first by (at, id) (src/db/audit.rs): each index ends in (at, id)
-- so that it serves that order, one per filter the console offers.
DROP INDEX audit_events_at;
CREATE INDEX audit_events_at ON audit_events (at, id);
DROP INDEX audit_events_actor;
CREATE INDEX audit_events_actor ON audit_events (actor, at, id);
CREATE INDEX audit_events_action ON audit_events (action, at, id);
CREATE INDEX audit_events_repository ON audit_events (repository, at, id);
