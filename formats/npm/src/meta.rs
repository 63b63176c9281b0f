//! How npm content is laid out in the generic asset table (one repository):
//!
//! | path                          | kind        | component | digest                 | attributes |
//! |-------------------------------|-------------|-----------|------------------------|------------|
//! | `_package/<name>`             | `packument` | name      | sha256 of the document | rev        |
//! | `tarballs/<name>/<file>.tgz`  | `tarball`   | name      | sha256 of the tarball  | version    |
//!
//! The packument is kept whole as a blob (CouchDB's document, as npm reads and writes it), with
//! each version's `dist.tarball` reduced to its file name; an update writes a new blob and swaps
//! the asset's digest only if nobody else changed it meanwhile (compare-and-swap).

pub const PACKUMENT: &str = "packument";
pub const TARBALL: &str = "tarball";

pub fn package_path(name: &str) -> String {
    format!("_package/{name}")
}

pub fn tarball_path(name: &str, file: &str) -> String {
    format!("tarballs/{name}/{file}")
}

pub fn tarballs_prefix(name: &str) -> String {
    format!("tarballs/{name}/")
}
