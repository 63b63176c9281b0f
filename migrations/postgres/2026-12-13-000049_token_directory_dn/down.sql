ALTER TABLE api_tokens DROP COLUMN directory_dn;
