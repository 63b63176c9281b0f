-- A deleted blob store whose files are being removed: its `blob_stores` row is gone, its
-- directory may still be on disk. While this row exists no blob store may be created under its
-- name or over its directory, on any node (a create checks this table in its transaction), so a
-- removal can never take a store created meanwhile. `owner` holds the removal until
-- `claimed_until`; after that another node finishes it (the owner died). `trash` names where the
-- files are moved before they are deleted.
CREATE TABLE blob_store_removals (
    name TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    path TEXT NOT NULL,
    trash TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
