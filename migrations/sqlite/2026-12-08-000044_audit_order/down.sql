DROP INDEX audit_events_repository;
DROP INDEX audit_events_action;
DROP INDEX audit_events_actor;
CREATE INDEX audit_events_actor ON audit_events (actor, id);
