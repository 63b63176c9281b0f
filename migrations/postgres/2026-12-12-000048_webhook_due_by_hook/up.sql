-- A claim takes each webhook's due deliveries apart (src/db/webhooks.rs), so that one receiver's
-- backlog does not fill every claim: found by this index, whatever the other webhooks' backlogs.
CREATE INDEX webhook_deliveries_due_by_hook ON webhook_deliveries (webhook_id, status, next_attempt_at);
