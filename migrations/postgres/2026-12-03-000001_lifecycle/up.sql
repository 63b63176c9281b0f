-- The blob ledger: one row per blob a blob store holds (or is about to hold). Garbage collection
-- decides on these rows, in the database, against every writer (see docs/architecture.md,
-- "Garbage collection"): a writer touches a blob's row before it relies on the bytes, and a
-- commit links only blobs whose row is live; a pass marks a row `deleting` only while nothing
-- refers to it and nobody touched it within the grace period.
CREATE TABLE blobs (
    blob_store TEXT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'live',
    touched_at BIGINT NOT NULL,
    marked_at BIGINT,
    PRIMARY KEY (blob_store, digest)
);
CREATE INDEX blobs_by_touch ON blobs (blob_store, state, touched_at);

-- Every blob an asset names today.
INSERT INTO blobs (blob_store, digest, size, state, touched_at)
SELECT r.blob_store, a.digest, MAX(a.size), 'live', MAX(a.updated_at)
FROM assets a JOIN repositories r ON r.id = a.repository_id
WHERE a.digest IS NOT NULL
GROUP BY r.blob_store, a.digest;

-- A hosted PyPI file's PEP 658 metadata was a blob named only in the file's attributes; it is an
-- asset of its own now (as a proxy's always was), so that what refers to a blob is always an
-- asset's digest.
INSERT INTO assets (repository_id, path, kind, component, digest, size, content_type, link, attributes, created_at, updated_at)
SELECT a.repository_id, a.path || '.metadata', 'metadata', a.component, 'sha256:' || (a.attributes::json ->> 'core_metadata'), 0,
       'text/plain', NULL, json_build_object('version', a.attributes::json -> 'version')::text, a.created_at, a.updated_at
FROM assets a
WHERE a.kind = 'file' AND (a.attributes::json ->> 'core_metadata') IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM assets m WHERE m.repository_id = a.repository_id AND m.path = a.path || '.metadata');
INSERT INTO blobs (blob_store, digest, size, state, touched_at)
SELECT DISTINCT r.blob_store, a.digest, 0, 'live', a.updated_at
FROM assets a JOIN repositories r ON r.id = a.repository_id
WHERE a.kind = 'metadata' AND a.digest IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.blob_store = r.blob_store AND b.digest = a.digest);

-- Scheduled work (Nexus's tasks): what, when, and which node runs it now (a lease, so that
-- exactly one node of several runs a task, and another takes over when that node dies).
CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    type_id TEXT NOT NULL,
    properties TEXT NOT NULL,
    schedule TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT true,
    next_run BIGINT,
    run_id TEXT,
    running_node TEXT,
    lease_until BIGINT,
    stop_requested BOOLEAN NOT NULL DEFAULT false,
    last_run BIGINT,
    last_result TEXT,
    last_duration_ms BIGINT,
    last_message TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE task_runs (
    id TEXT PRIMARY KEY NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    result TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    report TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX task_runs_by_task ON task_runs (task_id, started_at);
