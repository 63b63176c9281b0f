-- Inserting a token deletes those without an expiry neither used nor created within
-- security.token_idle_days (src/db/tokens.rs): `expires_at IS NULL AND last_used_at < ?` and
-- `expires_at IS NULL AND last_used_at IS NULL AND created_at < ?` are both ranges of this index.
CREATE INDEX api_tokens_idle ON api_tokens (expires_at, last_used_at, created_at);
