//! Privileges an administrator defines (Nexus's `repository-view` and `application` types).
//! Each stands for built-in privilege ids (`grants`): a role holding its name holds those.
//! `definition` keeps what the administrator gave (format, repository, actions or domain), as
//! the API reads it back.

use std::collections::HashMap;

use diesel::prelude::*;

use super::schema::privileges;
use super::users::{self, RoleRow};
use super::{AnyConnection, DbError};

#[derive(Clone, Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = privileges)]
pub struct PrivilegeRow {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub definition: String,
    pub grants: String,
    pub created_at: i64,
}

impl PrivilegeRow {
    pub fn grant_ids(&self) -> Vec<String> {
        serde_json::from_str(&self.grants).unwrap_or_default()
    }
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<PrivilegeRow>, DbError> {
    Ok(privileges::table.order(privileges::name.asc()).select(PrivilegeRow::as_select()).load(conn)?)
}

pub fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<PrivilegeRow>, DbError> {
    Ok(privileges::table.find(name).select(PrivilegeRow::as_select()).get_result(conn).optional()?)
}

pub fn insert(conn: &mut AnyConnection, row: &PrivilegeRow) -> Result<(), DbError> {
    diesel::insert_into(privileges::table).values(row).execute(conn)?;
    Ok(())
}

/// Replaces everything but the name and creation time; whether the privilege was there.
pub fn update(conn: &mut AnyConnection, row: &PrivilegeRow) -> Result<bool, DbError> {
    let n = diesel::update(privileges::table.find(&row.name))
        .set((
            privileges::kind.eq(&row.kind),
            privileges::description.eq(&row.description),
            privileges::definition.eq(&row.definition),
            privileges::grants.eq(&row.grants),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn delete(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(privileges::table.find(name)).execute(conn)? == 1)
}

/// Name → the built-in ids it grants.
pub fn grants(conn: &mut AnyConnection) -> Result<HashMap<String, Vec<String>>, DbError> {
    Ok(list(conn)?.into_iter().map(|p| (p.name.clone(), p.grant_ids())).collect())
}

/// The roles with each defined privilege's name replaced by what it grants: what access is
/// computed from (`security::roles::resolve` knows built-in ids only).
/// Where roles and privileges stand: a number that every change to either moves, in the
/// writing transaction (`change_counters`). What was read of them beside an earlier value is
/// stale once it differs.
pub fn grants_version(conn: &mut AnyConnection) -> Result<i64, DbError> {
    use super::schema::change_counters as cc;
    let seqs: Vec<i64> = cc::table.filter(cc::kind.eq("roles").or(cc::kind.eq("privileges"))).select(cc::seq).load(conn)?;
    Ok(seqs.into_iter().sum())
}

/// [`roles_with_grants`] and the [`grants_version`] they are at least as new as.
pub fn versioned_roles_with_grants(conn: &mut AnyConnection) -> Result<(Vec<RoleRow>, i64), DbError> {
    // The version first: a change committed between the two reads makes the pair look older
    // than it is (checked again sooner), never newer.
    let version = grants_version(conn)?;
    Ok((roles_with_grants(conn)?, version))
}

pub fn roles_with_grants(conn: &mut AnyConnection) -> Result<Vec<RoleRow>, DbError> {
    let defined = grants(conn)?;
    let mut roles = users::roles(conn)?;
    if defined.is_empty() {
        return Ok(roles);
    }
    for r in &mut roles {
        let expanded: Vec<String> = r.privilege_ids().into_iter().flat_map(|p| defined.get(&p).cloned().unwrap_or_else(|| vec![p])).collect();
        r.privileges = serde_json::to_string(&expanded).unwrap_or_default();
    }
    Ok(roles)
}
