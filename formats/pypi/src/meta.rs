//! How PyPI content is laid out in the generic asset table (one repository):
//!
//! | path                                  | kind       | component  | digest | attributes                    |
//! |---------------------------------------|------------|------------|--------|-------------------------------|
//! | `_project/<normalized>`               | `project`  | normalized |        | display name (hosted)         |
//! | `packages/<normalized>/<file>`        | `file`     | normalized | sha256 | version, requires_python, …   |
//! | `_index/<normalized>`                 | `index`    | normalized | sha256 | etag (proxy: the cached page) |
//! | `packages/<normalized>/<file>.metadata` | `metadata` |          | sha256 | (proxy: PEP 658 metadata)     |
//! | `packages/<normalized>/<file>.provenance` | `provenance` | normalized | sha256 | version (hosted: PEP 740) |
//!
//! Project names are normalised (PEP 503) in every path, so `My_Pkg` and `my-pkg` are one project.
//! A hosted file's PEP 658 metadata is a blob named by its `core_metadata` attribute, and its
//! PEP 740 provenance object (when it was uploaded with attestations) one named by its
//! `provenance` attribute; each blob has its asset too, so that garbage collection, which reads
//! only assets' digests, keeps it while the file exists.

pub const PROJECT: &str = "project";
pub const FILE: &str = "file";
pub const INDEX: &str = "index";
pub const METADATA: &str = "metadata";
pub const PROVENANCE: &str = "provenance";

pub fn project_path(normalized: &str) -> String {
    format!("_project/{normalized}")
}

pub fn file_path(normalized: &str, filename: &str) -> String {
    format!("packages/{normalized}/{filename}")
}

pub fn files_prefix(normalized: &str) -> String {
    format!("packages/{normalized}/")
}

pub fn index_path(normalized: &str) -> String {
    format!("_index/{normalized}")
}

pub fn metadata_path(normalized: &str, filename: &str) -> String {
    format!("packages/{normalized}/{filename}.metadata")
}

pub fn provenance_path(normalized: &str, filename: &str) -> String {
    format!("packages/{normalized}/{filename}.provenance")
}
