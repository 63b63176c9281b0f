//! How Docker content is laid out in the generic asset table (one repository):
//!
//! | path                          | kind       | component | digest   | link            |
//! |-------------------------------|------------|-----------|----------|-----------------|
//! | `_image/<name>`               | `image`    | name      |          |                 |
//! | `<name>/blobs/<digest>`       | `blob`     | name      | sha256   |                 |
//! | `<name>/manifests/<digest>`   | `manifest` | name      | sha256   | subject digest  |
//! | `<name>/tags/<tag>`           | `tag`      | name      | manifest |                 |
//! | `<name>/refs/<used>/<by>`     | `ref`      | name      |          | manifest `by`   |
//!
//! A blob or manifest belongs to an image (as in Distribution: being in a repository is what
//! lets a client read it), while its bytes are shared by everyone in the blob store. Paths split
//! uniquely (the last two segments are kind and key, and neither tags nor digests contain `/`),
//! and `_image/` cannot collide with a name since names start with `[a-z0-9]`. A `ref` row says
//! that manifest `by` uses blob or manifest `used`, so that a blob in use cannot be deleted (a
//! tag must always be pullable); its `<used>` segment holds a `:`, which names never do.
//!
//! The `digest` column is always the sha256 the bytes are stored under (what the blob ledger
//! and garbage collection go by); the path's `<digest>` is the one the client knows the content
//! by, the same sha256 or a sha512 (OCI lets clients name content by either). `ref` rows and
//! subject links name the client's digests; a tag names a manifest pushed by tag, always sha256.

pub const IMAGE: &str = "image";
pub const BLOB: &str = "blob";
pub const MANIFEST: &str = "manifest";
pub const TAG: &str = "tag";
pub const REF: &str = "ref";

pub fn image_path(name: &str) -> String {
    format!("_image/{name}")
}

pub fn blob_path(name: &str, digest: &str) -> String {
    format!("{name}/blobs/{digest}")
}

pub fn manifest_path(name: &str, digest: &str) -> String {
    format!("{name}/manifests/{digest}")
}

pub fn tag_path(name: &str, tag: &str) -> String {
    format!("{name}/tags/{tag}")
}

/// The key of a blob, manifest or tag path: the digest the client knows it by, or the tag.
pub fn key_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The tag of a tag asset's path.
pub fn tag_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The prefix of every `ref` row saying that something uses `used`.
pub fn refs_prefix(name: &str, used: &str) -> String {
    format!("{name}/refs/{used}/")
}

pub fn ref_path(name: &str, used: &str, by: &str) -> String {
    format!("{name}/refs/{used}/{by}")
}
