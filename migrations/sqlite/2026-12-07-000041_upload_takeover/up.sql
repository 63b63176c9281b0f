-- Set once a claim took an upload session over from a writer whose lease ran out: that writer
-- may still be writing into the staged file, so the session's running hash no longer says what
-- the file holds and finishing it hashes the file again. Sessions no one took over are finished
-- on their running hash alone.
ALTER TABLE uploads ADD COLUMN taken_over BOOLEAN NOT NULL DEFAULT FALSE;
-- Sessions from before this column: whether they were taken over is unknown.
UPDATE uploads SET taken_over = TRUE;
