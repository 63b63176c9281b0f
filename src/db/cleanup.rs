//! Rows of `cleanup_policies`, and which repositories name a policy. A policy is stored as
//! the JSON the API accepted; its format has a column of its own for the repository checks.

use diesel::prelude::*;
use wharf_format::{now_millis, ConfigError};

use super::schema::cleanup_policies;
use super::{repos, AnyConnection, DbError};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = cleanup_policies)]
pub struct PolicyRow {
    pub name: String,
    pub format: String,
    pub config: String,
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<PolicyRow>, DbError> {
    Ok(cleanup_policies::table.order(cleanup_policies::name.asc()).select(PolicyRow::as_select()).load(conn)?)
}

pub fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<PolicyRow>, DbError> {
    Ok(cleanup_policies::table.find(name).select(PolicyRow::as_select()).get_result(conn).optional()?)
}

pub fn insert(conn: &mut AnyConnection, name: &str, format: &str, config: &str) -> Result<(), DbError> {
    let now = now_millis();
    diesel::insert_into(cleanup_policies::table)
        .values((
            cleanup_policies::name.eq(name),
            cleanup_policies::format.eq(format),
            cleanup_policies::config.eq(config),
            cleanup_policies::created_at.eq(now),
            cleanup_policies::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn update(conn: &mut AnyConnection, name: &str, format: &str, config: &str) -> Result<bool, DbError> {
    let n = diesel::update(cleanup_policies::table.find(name))
        .set((cleanup_policies::format.eq(format), cleanup_policies::config.eq(config), cleanup_policies::updated_at.eq(now_millis())))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn delete(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(cleanup_policies::table.find(name)).execute(conn)? == 1)
}

/// The repositories whose `cleanup.policyNames` names `policy`, with their formats.
pub fn users(conn: &mut AnyConnection, policy: &str) -> Result<Vec<(String, String)>, DbError> {
    let mut out = Vec::new();
    for r in repos::list(conn)? {
        let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.config).unwrap_or_default();
        if wharf_format::proxy::cleanup_policy_names(&config).iter().any(|n| n == policy) {
            out.push((r.name, r.format));
        }
    }
    Ok(out)
}

/// Checks a repository configuration's `cleanup.policyNames`: each must exist and apply to
/// `format`. Run inside the write that stores the configuration, so that a policy deleted
/// meanwhile is not named (policy deletes check their users in their own write).
pub fn check_names(conn: &mut AnyConnection, format: &str, config: &serde_json::Value) -> Result<Result<(), ConfigError>, DbError> {
    let names = config.as_object().map(wharf_format::proxy::cleanup_policy_names).unwrap_or_default();
    let mut unknown = Vec::new();
    for name in &names {
        match get(conn, name)? {
            None => unknown.push(name.as_str()),
            Some(p) if p.format != "*" && p.format != format => {
                return Ok(Err(ConfigError::new("cleanup.policyNames", format!("cleanup policy {name} is for {} repositories, not {format}", p.format))))
            }
            Some(_) => {}
        }
    }
    if !unknown.is_empty() {
        return Ok(Err(ConfigError::new("cleanup.policyNames", format!("no such cleanup policy: {}", unknown.join(", ")))));
    }
    Ok(Ok(()))
}
