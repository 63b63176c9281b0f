-- A repository's usage (and its hard quota check, once per write) reads the distinct digests
-- of its assets with their sizes: this index holds exactly that, in order.
CREATE INDEX assets_by_repository_digest ON assets (repository_id, digest, size);
