-- Identity (issue 11): one user name whatever its ASCII case, tokens that know their user's
-- realm, and console sessions the server can end.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
ALTER TABLE api_tokens ADD COLUMN realm TEXT NOT NULL DEFAULT 'local';
-- Tokens made before realms were recorded: a user name no local user has came from LDAP.
UPDATE api_tokens SET realm = 'ldap' WHERE lower(username) NOT IN (SELECT lower(username) FROM users);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    realm TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_username ON sessions (lower(username));
