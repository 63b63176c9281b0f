//! Privileges and roles, in Nexus's terms. A role holds privileges and other roles; a user
//! holds roles. Privileges understood:
//!
//! - `nx-all`: everything, the admin API included (the built-in role `nx-admin` holds it);
//! - `nx-metrics-all`: the Prometheus metrics (`/service/metrics/prometheus`), and nothing else;
//! - `nx-repository-view-<format>-<repository>-<action>`: `format` a format name or `*`,
//!   `repository` a repository name or `*`, `action` one of `browse`, `read` (download, pull),
//!   `add`, `edit` (upload, push, publish), `delete`, or `*`.
//!
//! The built-in role `nx-anonymous` is what callers without credentials hold.

use std::collections::{HashMap, HashSet};

use wharf_format::{Action, RepoPrivilege};

use crate::db::users::RoleRow;

pub const ALL: &str = "nx-all";
pub const METRICS: &str = "nx-metrics-all";
pub const ADMIN_ROLE: &str = "nx-admin";
pub const ANONYMOUS_ROLE: &str = "nx-anonymous";
const VIEW_PREFIX: &str = "nx-repository-view-";
pub const ACTIONS: [&str; 6] = ["browse", "read", "add", "edit", "delete", "*"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privilege {
    All,
    Metrics,
    Repo(RepoPrivilege),
}

/// Parses a privilege id; `formats` are the format names the server knows.
pub fn parse(id: &str, formats: &[&str]) -> Result<Privilege, String> {
    if id == ALL {
        return Ok(Privilege::All);
    }
    if id == METRICS {
        return Ok(Privilege::Metrics);
    }
    let Some(rest) = id.strip_prefix(VIEW_PREFIX) else {
        return Err(format!("{id}: unknown privilege (expected nx-all, {METRICS} or {VIEW_PREFIX}<format>-<repository>-<action>)"));
    };
    let (format, rest) = rest.split_once('-').ok_or_else(|| format!("{id}: no repository and action"))?;
    let (repository, action) = rest.rsplit_once('-').ok_or_else(|| format!("{id}: no action"))?;
    if format != "*" && !formats.contains(&format) {
        return Err(format!("{id}: unknown format {format}"));
    }
    if repository.is_empty() {
        return Err(format!("{id}: no repository (use * for all)"));
    }
    let actions = match action {
        "browse" | "read" => vec![Action::Read],
        "add" | "edit" => vec![Action::Write],
        "delete" => vec![Action::Delete],
        "*" => vec![Action::Read, Action::Write, Action::Delete],
        other => return Err(format!("{id}: unknown action {other} (browse, read, add, edit, delete or *)")),
    };
    Ok(Privilege::Repo(RepoPrivilege { format: format.to_string(), repository: repository.to_string(), actions }))
}

/// What a set of roles amounts to, following nested roles (cycles are harmless).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub all: bool,
    /// `nx-metrics-all` (or `nx-all`): may read the metrics.
    pub metrics: bool,
    pub repo: Vec<RepoPrivilege>,
}

pub fn resolve(start: &[String], roles: &[RoleRow], formats: &[&str]) -> Resolved {
    let by_id: HashMap<&str, &RoleRow> = roles.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut seen = HashSet::new();
    let mut todo: Vec<String> = start.to_vec();
    let mut out = Resolved::default();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(role) = by_id.get(id.as_str()) else { continue };
        for p in role.privilege_ids() {
            match parse(&p, formats) {
                Ok(Privilege::All) => {
                    out.all = true;
                    out.metrics = true;
                }
                Ok(Privilege::Metrics) => out.metrics = true,
                Ok(Privilege::Repo(r)) => out.repo.push(r),
                // Stored privileges were validated; one a later version no longer knows grants nothing.
                Err(_) => {}
            }
        }
        todo.extend(role.nested_roles());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(id: &str, privileges: &[&str], roles: &[&str]) -> RoleRow {
        RoleRow {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            privileges: serde_json::to_string(privileges).unwrap(),
            role_ids: serde_json::to_string(roles).unwrap(),
            builtin: false,
            created_at: 0,
        }
    }

    #[test]
    fn privileges_parse() {
        let f = ["docker", "pypi"];
        assert_eq!(parse("nx-all", &f), Ok(Privilege::All));
        assert_eq!(parse("nx-metrics-all", &f), Ok(Privilege::Metrics));
        let p = parse("nx-repository-view-pypi-pypi-hosted-read", &f).unwrap();
        assert_eq!(p, Privilege::Repo(RepoPrivilege { format: "pypi".into(), repository: "pypi-hosted".into(), actions: vec![Action::Read] }));
        let p = parse("nx-repository-view-*-*-*", &f).unwrap();
        assert!(matches!(p, Privilege::Repo(r) if r.actions.len() == 3 && r.repository == "*"));
        assert!(parse("nx-repository-view-maven-x-read", &f).is_err());
        assert!(parse("nx-repository-view-pypi-x-fly", &f).is_err());
        assert!(parse("nx-repository-view-pypi--read", &f).is_err());
        assert!(parse("something", &f).is_err());
    }

    #[test]
    fn nested_roles_resolve_and_cycles_end() {
        let roles = vec![
            role("a", &["nx-repository-view-docker-d-read"], &["b"]),
            role("b", &["nx-repository-view-pypi-p-add"], &["a"]),
            role("admin", &["nx-all"], &[]),
        ];
        let f = ["docker", "pypi"];
        let r = resolve(&["a".into()], &roles, &f);
        assert!(!r.all);
        assert_eq!(r.repo.len(), 2);
        assert!(resolve(&["admin".into(), "missing".into()], &roles, &f).all);
        let roles = vec![role("monitoring", &["nx-metrics-all"], &[]), role("outer", &[], &["monitoring"])];
        let r = resolve(&["outer".into()], &roles, &f);
        assert!(r.metrics && !r.all && r.repo.is_empty());
    }
}
