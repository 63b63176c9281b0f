-- A token is the only credential made per client login (`npm login`, a console web login):
-- inserting one deletes those long expired (src/db/tokens.rs), found by this index.
CREATE INDEX api_tokens_expires_at ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
