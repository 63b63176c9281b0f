DROP TABLE sessions;
ALTER TABLE api_tokens DROP COLUMN realm;
DROP INDEX users_username_lower;
