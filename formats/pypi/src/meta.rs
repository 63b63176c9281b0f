//! How PyPI content is laid out in the generic asset table (one repository):
//!
//! | path                            | kind      | component  | digest | attributes                         |
//! |---------------------------------|-----------|------------|--------|------------------------------------|
//! | `_project/<normalized>`         | `project` | normalized |        | display name                       |
//! | `packages/<normalized>/<file>`  | `file`    | normalized | sha256 | version, requires_python, yanked…  |
//!
//! Project names are normalised (PEP 503) in every path, so `My_Pkg` and `my-pkg` are one project.

pub const PROJECT: &str = "project";
pub const FILE: &str = "file";

pub fn project_path(normalized: &str) -> String {
    format!("_project/{normalized}")
}

pub fn file_path(normalized: &str, filename: &str) -> String {
    format!("packages/{normalized}/{filename}")
}

pub fn files_prefix(normalized: &str) -> String {
    format!("packages/{normalized}/")
}
