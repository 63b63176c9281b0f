-- A directory user's API token names the entry it was made for (its DN): a token stands only
-- while the name still finds that entry, not another one given the name later.
ALTER TABLE api_tokens ADD COLUMN directory_dn TEXT;
