-- A sweep gives up deliveries still pending long after they were queued (src/db/webhooks.rs),
-- oldest first, found by this index rather than by walking every pending delivery.
CREATE INDEX webhook_deliveries_pending_age ON webhook_deliveries (status, created_at);
