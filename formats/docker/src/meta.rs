//! How Docker content is laid out in the generic asset table (one repository):
//!
//! | path                          | kind       | component | digest   | link            |
//! |-------------------------------|------------|-----------|----------|-----------------|
//! | `_image/<name>`               | `image`    | name      |          |                 |
//! | `<name>/blobs/<digest>`       | `blob`     | name      | digest   |                 |
//! | `<name>/manifests/<digest>`   | `manifest` | name      | digest   | subject digest  |
//! | `<name>/tags/<tag>`           | `tag`      | name      | manifest |                 |
//!
//! A blob or manifest belongs to an image (as in Distribution: being in a repository is what
//! lets a client read it), while its bytes are shared by everyone in the blob store. Paths split
//! uniquely (the last two segments are kind and key, and neither tags nor digests contain `/`),
//! and `_image/` cannot collide with a name since names start with `[a-z0-9]`.

pub const IMAGE: &str = "image";
pub const BLOB: &str = "blob";
pub const MANIFEST: &str = "manifest";
pub const TAG: &str = "tag";

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

/// The tag of a tag asset's path.
pub fn tag_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
