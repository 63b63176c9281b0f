-- Who started an upload session (only they may continue it), and which request is writing to it
-- now (one writer at a time, across nodes; the lease lets another take over after a crash).
ALTER TABLE uploads ADD COLUMN owner TEXT;
ALTER TABLE uploads ADD COLUMN writer TEXT;
ALTER TABLE uploads ADD COLUMN lease_until BIGINT;
