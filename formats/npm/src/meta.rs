//! How npm content is laid out in the generic asset table (one repository):
//!
//! | path                        | kind        | component | digest                 | attributes |
//! |-----------------------------|-------------|-----------|------------------------|------------|
//! | `pkg/<name>/packument`      | `packument` | name      | sha256 of the document | rev / etag |
//! | `pkg/<name>/-/<file>.tgz`   | `tarball`   | name      | sha256 of the tarball  | version    |
//! | `pkg/<name>/-/<file>.sigstore` | `attestation` | name   | sha256 of the bundle   | version, predicateType |
//!
//! One prefix per package, so that a single range query returns the document and every
//! tarball. The packument is kept whole as a blob (CouchDB's document, as npm reads and writes
//! it), each version's `dist.tarball` reduced to its file name (hosted) or left as the upstream's
//! URL (proxy); an update writes a new blob and swaps the asset's digest only if nobody else
//! changed it meanwhile (compare-and-swap).

pub const PACKUMENT: &str = "packument";
pub const TARBALL: &str = "tarball";
/// A version's provenance bundle (`npm publish --provenance`), beside its tarball.
pub const ATTESTATION: &str = "attestation";

pub fn package_prefix(name: &str) -> String {
    format!("pkg/{name}/")
}

pub fn package_path(name: &str) -> String {
    format!("pkg/{name}/packument")
}

pub fn tarball_path(name: &str, file: &str) -> String {
    format!("pkg/{name}/-/{file}")
}

pub fn tarballs_prefix(name: &str) -> String {
    format!("pkg/{name}/-/")
}

/// Where a version's provenance bundle is kept (beside its tarball, so that it goes with the package).
pub fn attestation_path(name: &str, version: &str) -> String {
    tarball_path(name, &format!("{}-{version}.sigstore", crate::model::basename(name)))
}
