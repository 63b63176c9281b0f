//! Local users and roles. Passwords are argon2 PHC strings; hashing happens in `security`.
//! A user's and a role's role lists, and a role's privileges, are JSON arrays of ids.
//!
//! User names are looked up without regard to ASCII case (a unique index on `lower(username)`
//! keeps `Alice` and `alice` from both existing); the stored spelling is the one shown.

use diesel::prelude::*;
use wharf_format::now_millis;

use super::schema::{roles, users};
use super::{lower, AnyConnection, DbError};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub status: String,
    pub admin: bool,
    pub created_at: i64,
    pub roles: String,
}

impl UserRow {
    pub fn role_ids(&self) -> Vec<String> {
        serde_json::from_str(&self.roles).unwrap_or_default()
    }
}

/// The fields an administrator sets (the password separately).
#[derive(Clone, Debug, Default)]
pub struct UserFields {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub status: String,
    pub roles: Vec<String>,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = roles)]
pub struct RoleRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub privileges: String,
    pub role_ids: String,
    pub builtin: bool,
    pub created_at: i64,
}

impl RoleRow {
    pub fn privilege_ids(&self) -> Vec<String> {
        serde_json::from_str(&self.privileges).unwrap_or_default()
    }
    pub fn nested_roles(&self) -> Vec<String> {
        serde_json::from_str(&self.role_ids).unwrap_or_default()
    }
}

/// Rows of `users` named `$username` in any ASCII case.
macro_rules! named {
    ($username:expr) => {
        users::table.filter(lower(users::username).eq(wharf_format::canonical_user($username)))
    };
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub fn get(conn: &mut AnyConnection, username: &str) -> Result<Option<UserRow>, DbError> {
    Ok(named!(username).select(UserRow::as_select()).get_result(conn).optional()?)
}

/// The user whose row has this id (a user deleted and created again under the name has a new one).
pub fn by_id(conn: &mut AnyConnection, id: i64) -> Result<Option<UserRow>, DbError> {
    Ok(users::table.find(id).select(UserRow::as_select()).get_result(conn).optional()?)
}

/// [`get`] and `privileges::grants_version`, in one round trip when the user exists.
pub fn get_with_grants_version(conn: &mut AnyConnection, username: &str) -> Result<(Option<UserRow>, i64), DbError> {
    use super::schema::change_counters as cc;
    let roles = cc::table.filter(cc::kind.eq("roles")).select(cc::seq).single_value();
    let privileges = cc::table.filter(cc::kind.eq("privileges")).select(cc::seq).single_value();
    let found: Option<(UserRow, Option<i64>, Option<i64>)> = named!(username).select((UserRow::as_select(), roles, privileges)).get_result(conn).optional()?;
    match found {
        Some((row, roles, privileges)) => Ok((Some(row), roles.unwrap_or(0) + privileges.unwrap_or(0))),
        None => Ok((None, super::privileges::grants_version(conn)?)),
    }
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<UserRow>, DbError> {
    Ok(users::table.order(users::username.asc()).select(UserRow::as_select()).load(conn)?)
}

pub fn count(conn: &mut AnyConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

/// The first-start administrator.
pub fn insert(conn: &mut AnyConnection, username: &str, password_hash: &str, admin: bool) -> Result<(), DbError> {
    let roles: Vec<String> = if admin { vec!["nx-admin".into()] } else { vec![] };
    create(conn, username, password_hash, &UserFields { status: "active".into(), roles, ..Default::default() })
}

pub fn create(conn: &mut AnyConnection, username: &str, password_hash: &str, f: &UserFields) -> Result<(), DbError> {
    diesel::insert_into(users::table)
        .values((
            users::username.eq(username),
            users::password_hash.eq(password_hash),
            users::first_name.eq(&f.first_name),
            users::last_name.eq(&f.last_name),
            users::email.eq(&f.email),
            users::status.eq(&f.status),
            users::admin.eq(f.roles.iter().any(|r| r == "nx-admin")),
            users::roles.eq(json(&f.roles)),
            users::created_at.eq(now_millis()),
        ))
        .execute(conn)?;
    Ok(())
}

/// `false` if there is no such user.
pub fn update(conn: &mut AnyConnection, username: &str, f: &UserFields) -> Result<bool, DbError> {
    let n = diesel::update(named!(username))
        .set((
            users::first_name.eq(&f.first_name),
            users::last_name.eq(&f.last_name),
            users::email.eq(&f.email),
            users::status.eq(&f.status),
            users::admin.eq(f.roles.iter().any(|r| r == "nx-admin")),
            users::roles.eq(json(&f.roles)),
        ))
        .execute(conn)?;
    Ok(n > 0)
}

pub fn set_password(conn: &mut AnyConnection, username: &str, password_hash: &str) -> Result<bool, DbError> {
    let n = diesel::update(named!(username)).set(users::password_hash.eq(password_hash)).execute(conn)?;
    Ok(n > 0)
}

pub fn delete(conn: &mut AnyConnection, username: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(named!(username)).execute(conn)? > 0)
}

pub fn roles(conn: &mut AnyConnection) -> Result<Vec<RoleRow>, DbError> {
    Ok(roles::table.order(roles::id.asc()).select(RoleRow::as_select()).load(conn)?)
}

pub fn role(conn: &mut AnyConnection, id: &str) -> Result<Option<RoleRow>, DbError> {
    Ok(roles::table.filter(roles::id.eq(id)).select(RoleRow::as_select()).get_result(conn).optional()?)
}

pub fn create_role(conn: &mut AnyConnection, id: &str, name: &str, description: &str, privileges: &[String], role_ids: &[String]) -> Result<(), DbError> {
    diesel::insert_into(roles::table)
        .values((
            roles::id.eq(id),
            roles::name.eq(name),
            roles::description.eq(description),
            roles::privileges.eq(json(privileges)),
            roles::role_ids.eq(json(role_ids)),
            roles::builtin.eq(false),
            roles::created_at.eq(now_millis()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn update_role(conn: &mut AnyConnection, id: &str, name: &str, description: &str, privileges: &[String], role_ids: &[String]) -> Result<bool, DbError> {
    let n = diesel::update(roles::table.filter(roles::id.eq(id)))
        .set((roles::name.eq(name), roles::description.eq(description), roles::privileges.eq(json(privileges)), roles::role_ids.eq(json(role_ids))))
        .execute(conn)?;
    Ok(n > 0)
}

pub fn delete_role(conn: &mut AnyConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(roles::table.filter(roles::id.eq(id))).execute(conn)? > 0)
}
