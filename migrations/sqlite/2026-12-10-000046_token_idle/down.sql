DROP INDEX api_tokens_idle;
