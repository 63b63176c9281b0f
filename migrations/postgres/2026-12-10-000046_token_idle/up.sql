-- Inserting a token deletes those neither used nor created within security.token_idle_days
-- (src/db/tokens.rs): `last_used_at < ?` and `last_used_at IS NULL AND created_at < ?` are
-- both ranges of this index.
CREATE INDEX api_tokens_idle ON api_tokens (last_used_at, created_at);
