//! `/service/rest/v1/security/{users,roles,privileges}`: local users and roles in Nexus's
//! shapes. Every change clears this node's login caches, so it takes effect on the next request.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use wharf_format::{same_user, Access, ConfigError, Credential, Principal, Realm};

use super::{parse_json, require_admin, AdminError};
use crate::db::users::{self, RoleRow, UserFields, UserRow};
use crate::db::{sessions, DbError};
use crate::security::{password, roles};
use crate::state::AppState;

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid(ConfigError::new(field, message))
}

/// User ids go into Basic credentials and, later, LDAP filters and audit lines: no `:`, no
/// spaces, nothing that needs quoting.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b)) && !id.starts_with(['.', '-'])
}

fn user_json(u: &UserRow) -> Value {
    json!({
        "userId": u.username,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "emailAddress": u.email,
        "source": "default",
        "status": u.status,
        "readOnly": false,
        "roles": u.role_ids(),
        "externalRoles": [],
    })
}

fn role_json(r: &RoleRow) -> Value {
    json!({
        "id": r.id,
        "source": "default",
        "name": r.name,
        "description": r.description,
        "readOnly": r.id == roles::ADMIN_ROLE,
        "privileges": r.privilege_ids(),
        "roles": r.nested_roles(),
    })
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, AdminError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key, "must be a string")),
    }
}

fn list_field(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, AdminError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => {
            let mut out: Vec<String> =
                a.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid(key, "must be a list of strings"))).collect::<Result<_, _>>()?;
            out.dedup();
            Ok(out)
        }
        Some(_) => Err(invalid(key, "must be a list of strings")),
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, AdminError> {
    body.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))
}

/// Checks that every role in `wanted` exists.
fn check_roles(existing: &[RoleRow], wanted: &[String]) -> Result<(), AdminError> {
    for r in wanted {
        if !existing.iter().any(|e| &e.id == r) {
            return Err(invalid("roles", format!("role {r} does not exist")));
        }
    }
    Ok(())
}

/// What a user's or a role's fields name, checked again in the transaction that stores them:
/// the request was checked against the roles and privileges read before it, and one deleted
/// since must not be stored by name (a role or privilege created later under it would be
/// granted by it). `privileges`: the defined ones only (built-in ids need no row). Answers the
/// field and message of a refusal.
fn still_named(c: &mut crate::db::AnyConnection, roles: &[String], privileges: &[String]) -> Result<Option<(&'static str, String)>, DbError> {
    if !roles.is_empty() {
        let known = users::roles(c)?;
        if let Some(r) = roles.iter().find(|r| !known.iter().any(|k| &k.id == *r)) {
            return Ok(Some(("roles", format!("role {r} does not exist"))));
        }
    }
    if !privileges.is_empty() {
        let defined = crate::db::privileges::grants(c)?;
        if let Some(p) = privileges.iter().find(|p| !defined.contains_key(*p)) {
            return Ok(Some(("privileges", format!("privilege {p} does not exist"))));
        }
    }
    Ok(None)
}

fn user_fields(obj: &Map<String, Value>, existing_roles: &[RoleRow]) -> Result<UserFields, AdminError> {
    for k in obj.keys() {
        if !["userId", "firstName", "lastName", "emailAddress", "password", "status", "roles", "source", "readOnly", "externalRoles"].contains(&k.as_str()) {
            return Err(invalid(k, "unknown field"));
        }
    }
    let status = str_field(obj, "status")?.unwrap_or_else(|| "active".into());
    if status != "active" && status != "disabled" {
        return Err(invalid("status", "must be active or disabled"));
    }
    let roles = list_field(obj, "roles")?;
    check_roles(existing_roles, &roles)?;
    Ok(UserFields {
        first_name: str_field(obj, "firstName")?.unwrap_or_default(),
        last_name: str_field(obj, "lastName")?.unwrap_or_default(),
        email: str_field(obj, "emailAddress")?.unwrap_or_default(),
        status,
        roles,
    })
}

fn check_password(p: &str) -> Result<(), AdminError> {
    if p.chars().count() < 8 || p.len() > 1024 {
        return Err(invalid("password", "must be 8 to 1024 characters"));
    }
    Ok(())
}

// ---- users -------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
pub struct UserQuery {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    source: Option<String>,
}

pub async fn list_users(state: web::Data<AppState>, req: HttpRequest, q: web::Query<UserQuery>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    if q.source.as_deref().is_some_and(|s| s != "default") {
        return Ok(HttpResponse::Ok().json(json!([])));
    }
    let rows = state.db.run(users::list).await?;
    let prefix = q.user_id.clone().unwrap_or_default();
    Ok(HttpResponse::Ok().json(rows.iter().filter(|u| u.username.starts_with(&prefix)).map(user_json).collect::<Vec<_>>()))
}

pub async fn create_user(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let body = parse_json(&body)?;
    let obj = object(&body)?;
    let id = str_field(obj, "userId")?.ok_or_else(|| invalid("userId", "is required"))?;
    if !valid_id(&id) {
        return Err(invalid("userId", "letters, digits and . _ - @ only, up to 100"));
    }
    let pass = str_field(obj, "password")?.ok_or_else(|| invalid("password", "is required"))?;
    check_password(&pass)?;
    let existing_roles = state.db.run(users::roles).await?;
    let fields = user_fields(obj, &existing_roles)?;
    let hash = password::hash_in_turn(pass).await.map_err(|e| AdminError::Internal(Box::new(e)))?;
    let id2 = id.clone();
    let created = state
        .db
        .write(move |c| {
            if let Some((field, why)) = still_named(c, &fields.roles, &[])? {
                return Ok(Err(ConfigError::new(field, why)));
            }
            // User names ignore case: `Admin` would be a second name for `admin`.
            if let Some(existing) = users::get(c, &id2)? {
                return Ok(Err(ConfigError::new("userId", format!("user {} already exists (user names ignore case)", existing.username))));
            }
            users::create(c, &id2, &hash, &fields)?;
            Ok(users::get(c, &id2)?.ok_or_else(|| ConfigError::new("userId", format!("user {id2} vanished"))))
        })
        .await?;
    let row = created?;
    state.auth.invalidate();
    super::record(&state, &req, &actor, "user.create", &id, None);
    Ok(HttpResponse::Ok().json(user_json(&row)))
}

pub async fn update_user(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let caller = require_admin(&state, &req).await?;
    let id = path.into_inner();
    let body = parse_json(&body)?;
    let obj = object(&body)?;
    if str_field(obj, "userId")?.is_some_and(|u| u != id) {
        return Err(invalid("userId", "cannot be changed"));
    }
    let existing_roles = state.db.run(users::roles).await?;
    let fields = user_fields(obj, &existing_roles)?;
    if same_user(&caller, &id) && (fields.status != "active" || !fields.roles.iter().any(|r| r == roles::ADMIN_ROLE)) {
        return Err(invalid("roles", "you cannot disable yourself or take away your own administrator role"));
    }
    if obj.contains_key("password") {
        return Err(invalid("password", "use PUT .../change-password"));
    }
    let id2 = id.clone();
    let updated = state
        .db
        .write(move |c| {
            if let Some((field, why)) = still_named(c, &fields.roles, &[])? {
                return Ok(Err(ConfigError::new(field, why)));
            }
            let disabled = fields.status != "active";
            let found = users::update(c, &id2, &fields)?;
            if found && disabled {
                sessions::delete_of_user(c, &id2)?;
            }
            Ok(Ok(found))
        })
        .await??;
    if !updated {
        return Err(AdminError::missing("user", &id));
    }
    state.auth.invalidate();
    super::record(&state, &req, &caller, "user.update", &id, None);
    Ok(HttpResponse::NoContent().finish())
}

pub async fn delete_user(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let caller = require_admin(&state, &req).await?;
    let id = path.into_inner();
    if same_user(&caller, &id) {
        return Err(invalid("userId", "you cannot delete yourself"));
    }
    let id2 = id.clone();
    let gone = state
        .db
        .write(move |c| {
            let Some(row) = users::get(c, &id2)? else { return Ok(false) };
            crate::db::tokens::delete_of_user(c, &row.username, Realm::Local.as_str())?;
            sessions::delete_of_user(c, &row.username)?;
            users::delete(c, &row.username)
        })
        .await?;
    if !gone {
        return Err(AdminError::missing("user", &id));
    }
    state.auth.invalidate();
    super::record(&state, &req, &caller, "user.delete", &id, None);
    Ok(HttpResponse::NoContent().finish())
}

/// An administrator may set anyone else's password (Nexus's shape: the new password as the
/// text/plain body). A local user may change their own with proof of the current one: Basic
/// credentials with it, or a JSON body `{"currentPassword", "newPassword"}` (the console's
/// session, or a token, alone is not enough). Every session of the user ends, on every node.
pub async fn change_password(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let p = super::caller(&state, &req).await?;
    if p.user.is_none() {
        return Err(AdminError::Unauthenticated);
    }
    let json = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let (pass, current) = if json {
        let body = parse_json(&body)?;
        let obj = object(&body)?;
        for k in obj.keys() {
            if !["currentPassword", "newPassword"].contains(&k.as_str()) {
                return Err(invalid(k, "unknown field"));
            }
        }
        (str_field(obj, "newPassword")?.ok_or_else(|| invalid("newPassword", "is required"))?, str_field(obj, "currentPassword")?)
    } else {
        let text = String::from_utf8(body.to_vec()).map_err(|_| invalid("password", "must be UTF-8 text"))?;
        (text.trim_end_matches(['\r', '\n']).to_string(), None)
    };
    if p.is_local_user(&id) {
        let proved = match current {
            Some(current) => {
                super::unless_silent(crate::db::failures::noting(state.auth.password_login(&id, &current, &crate::http::mount::client(&req))).await)?
                    .is_some_and(|q| q.is_local_user(&id))
            }
            None if p.credential == Credential::Password => true,
            None => return Err(invalid("currentPassword", "your current password is required to change it")),
        };
        if !proved {
            return Err(AdminError::NotAllowed("the current password is wrong"));
        }
    } else if !matches!(p.access, Access::All) {
        return Err(AdminError::Forbidden);
    }
    check_password(&pass)?;
    let hash = password::hash_in_turn(pass).await.map_err(|e| AdminError::Internal(Box::new(e)))?;
    let id2 = id.clone();
    let changed = state
        .db
        .write(move |c| {
            let found = users::set_password(c, &id2, &hash)?;
            if found {
                sessions::delete_of_user(c, &id2)?;
            }
            Ok(found)
        })
        .await?;
    if !changed {
        return Err(AdminError::missing("user", &id));
    }
    state.auth.invalidate();
    if wharf_format::same_user(&id, "admin") {
        // The first start's random password, now replaced: its file (which a backup copies)
        // would tell whoever reads the data directory a password once the admin's.
        let first = state.cfg.data_dir.join("admin.password");
        match std::fs::remove_file(&first) {
            Ok(()) => tracing::info!(file = %first.display(), "the admin's password changed: removed the first start's password file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %first.display(), error = %e, "cannot remove the first start's password file"),
        }
    }
    super::record(&state, &req, p.user.as_deref().unwrap_or("-"), "user.password", &id, None);
    Ok(HttpResponse::NoContent().finish())
}

// ---- roles -------------------------------------------------------------------------------

/// A role body, checked.
struct RoleFields {
    id: String,
    name: String,
    description: String,
    privileges: Vec<String>,
    nested: Vec<String>,
}

fn role_fields(state: &AppState, obj: &Map<String, Value>, existing: &[RoleRow], defined: &HashMap<String, Vec<String>>) -> Result<RoleFields, AdminError> {
    for k in obj.keys() {
        if !["id", "name", "description", "privileges", "roles", "source", "readOnly"].contains(&k.as_str()) {
            return Err(invalid(k, "unknown field"));
        }
    }
    let id = str_field(obj, "id")?.ok_or_else(|| invalid("id", "is required"))?;
    if !valid_id(&id) {
        return Err(invalid("id", "letters, digits and . _ - @ only, up to 100"));
    }
    let name = str_field(obj, "name")?.unwrap_or_else(|| id.clone());
    let description = str_field(obj, "description")?.unwrap_or_default();
    let privileges = list_field(obj, "privileges")?;
    for p in &privileges {
        // A defined privilege stands for the built-in ones it grants: those are checked.
        let granted = defined.get(p).cloned().unwrap_or_else(|| vec![p.clone()]);
        for g in &granted {
            let parsed = roles::parse(g, state.auth.formats()).map_err(|e| invalid("privileges", e.to_string()))?;
            if id == roles::ANONYMOUS_ROLE {
                anonymous_may_hold(&parsed).map_err(|e| invalid("privileges", e.to_string()))?;
            }
        }
    }
    let nested = list_field(obj, "roles")?;
    check_roles(existing, &nested)?;
    if id == roles::ANONYMOUS_ROLE && nested.iter().any(|r| r == roles::ADMIN_ROLE) {
        return Err(invalid("roles", "the anonymous role cannot hold nx-admin"));
    }
    Ok(RoleFields { id, name, description, privileges, nested })
}

/// What the anonymous role cannot hold. Metrics are served to signed-in callers only: the
/// anonymous role holding them would be accepted and do nothing.
pub(crate) fn anonymous_may_hold(p: &roles::Privilege) -> Result<(), String> {
    match p {
        roles::Privilege::Metrics => Err("the anonymous role cannot hold nx-metrics-all".into()),
        roles::Privilege::All => Err("the anonymous role cannot hold nx-all".into()),
        roles::Privilege::Repo(_) => Ok(()),
    }
}

pub async fn list_roles(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let rows = state.db.run(users::roles).await?;
    Ok(HttpResponse::Ok().json(rows.iter().map(role_json).collect::<Vec<_>>()))
}

pub async fn get_role(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let id = path.into_inner();
    let id2 = id.clone();
    match state.db.run(move |c| users::role(c, &id2)).await? {
        Some(r) => Ok(HttpResponse::Ok().json(role_json(&r))),
        None => Err(AdminError::missing("role", &id)),
    }
}

pub async fn create_role(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let body = parse_json(&body)?;
    let (existing, defined) = state.db.run(|c| Ok((users::roles(c)?, crate::db::privileges::grants(c)?))).await?;
    let RoleFields { id, name, description, privileges, nested } = role_fields(&state, object(&body)?, &existing, &defined)?;
    if existing.iter().any(|r| r.id == id) {
        return Err(invalid("id", format!("role {id} already exists")));
    }
    let id2 = id.clone();
    let custom: Vec<String> = privileges.iter().filter(|p| defined.contains_key(*p)).cloned().collect();
    let row = state
        .db
        .write(move |c| {
            if let Some((field, why)) = still_named(c, &nested, &custom)? {
                return Ok(Err(ConfigError::new(field, why)));
            }
            users::create_role(c, &id2, &name, &description, &privileges, &nested)?;
            Ok(Ok(users::role(c, &id2)?))
        })
        .await??
        .ok_or_else(|| AdminError::Internal(Box::new(DbError::Migration("role vanished".into()))))?;
    state.auth.invalidate();
    super::record(&state, &req, &actor, "role.create", &id, None);
    Ok(HttpResponse::Ok().json(role_json(&row)))
}

pub async fn update_role(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let id = path.into_inner();
    let body = parse_json(&body)?;
    let mut obj = object(&body)?.clone();
    obj.entry("id").or_insert_with(|| Value::String(id.clone()));
    let (existing, defined) = state.db.run(|c| Ok((users::roles(c)?, crate::db::privileges::grants(c)?))).await?;
    let RoleFields { id: body_id, name, description, privileges, nested } = role_fields(&state, &obj, &existing, &defined)?;
    if body_id != id {
        return Err(invalid("id", "cannot be changed"));
    }
    if id == roles::ADMIN_ROLE {
        return Err(invalid("id", "nx-admin is built in and cannot be changed"));
    }
    let id2 = id.clone();
    let custom: Vec<String> = privileges.iter().filter(|p| defined.contains_key(*p)).cloned().collect();
    let updated = state
        .db
        .write(move |c| {
            if let Some((field, why)) = still_named(c, &nested, &custom)? {
                return Ok(Err(ConfigError::new(field, why)));
            }
            Ok(Ok(users::update_role(c, &id2, &name, &description, &privileges, &nested)?))
        })
        .await??;
    if !updated {
        return Err(AdminError::missing("role", &id));
    }
    state.auth.invalidate();
    super::record(&state, &req, &actor, "role.update", &id, None);
    Ok(HttpResponse::NoContent().finish())
}

pub async fn delete_role(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let id = path.into_inner();
    if id == roles::ADMIN_ROLE || id == roles::ANONYMOUS_ROLE {
        return Err(invalid("id", format!("{id} is built in and cannot be deleted")));
    }
    let id2 = id.clone();
    // The check and the delete in one write transaction: a user granted the role meanwhile
    // must not end up holding a role that no longer exists.
    let (holders, roles_holding, deleted) = state
        .db
        .write(move |c| {
            let u: Vec<String> = users::list(c)?.into_iter().filter(|u| u.role_ids().contains(&id2)).map(|u| u.username).collect();
            let r: Vec<String> = users::roles(c)?.into_iter().filter(|r| r.nested_roles().contains(&id2)).map(|r| r.id).collect();
            let deleted = u.is_empty() && r.is_empty() && users::delete_role(c, &id2)?;
            Ok((u, r, deleted))
        })
        .await?;
    if !holders.is_empty() || !roles_holding.is_empty() {
        return Err(invalid("id", format!("role {id} is still held by users [{}] and roles [{}]", holders.join(", "), roles_holding.join(", "))));
    }
    if !deleted {
        return Err(AdminError::missing("role", &id));
    }
    state.auth.invalidate();
    super::record(&state, &req, &actor, "role.delete", &id, None);
    Ok(HttpResponse::NoContent().finish())
}

// ---- privileges --------------------------------------------------------------------------

/// The privileges one can hand out: `nx-all`, and repository-view privileges for every format
/// and repository (and `*`) and action.
pub async fn list_privileges(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let mut out = vec![
        json!({"type": "application", "name": roles::ALL, "description": "All permissions", "readOnly": true, "domain": "*", "actions": ["*"]}),
        json!({"type": "application", "name": roles::METRICS, "description": "Read the Prometheus metrics", "readOnly": true, "domain": "metrics", "actions": ["*"]}),
    ];
    let snapshot = state.registry.snapshot();
    let mut formats: Vec<&str> = vec!["*"];
    formats.extend(state.auth.formats().iter().copied());
    for format in formats {
        let mut repos = vec!["*".to_string()];
        repos.extend(snapshot.repos.values().filter(|r| format == "*" || r.config.format == format).map(|r| r.config.name.clone()));
        repos.sort();
        repos.dedup();
        for repo in repos {
            for action in roles::ACTIONS {
                out.push(json!({
                    "type": "repository-view",
                    "name": format!("nx-repository-view-{format}-{repo}-{action}"),
                    "description": format!("{action} on {format} repository {repo}"),
                    "readOnly": true,
                    "format": format,
                    "repository": repo,
                    "actions": [action.to_ascii_uppercase()],
                }));
            }
        }
    }
    out.extend(state.db.run(crate::db::privileges::list).await?.iter().map(super::privileges::render));
    Ok(HttpResponse::Ok().json(out))
}

// ---- API tokens (the caller's own) -------------------------------------------------------

fn token_json(t: &wharf_format::TokenInfo) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "readOnly": t.readonly,
        "repository": t.repository,
        "created": wharf_format::rfc3339_millis(t.created_at),
        "expires": t.expires_at.map(wharf_format::rfc3339_millis),
        "lastUsed": t.last_used_at.map(wharf_format::rfc3339_millis),
    })
}

async fn caller(state: &AppState, req: &HttpRequest) -> Result<Principal, AdminError> {
    let p = super::caller(state, req).await?;
    if p.user.is_none() {
        return Err(AdminError::Unauthenticated);
    }
    Ok(p)
}

pub async fn list_tokens(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    use wharf_format::Identity;
    let owner = caller(&state, &req).await?;
    let list = state.auth.tokens(&owner).await?;
    Ok(HttpResponse::Ok().json(list.iter().map(token_json).collect::<Vec<_>>()))
}

/// Creates a token for the caller, who must have signed in with the password (Basic, or a
/// console session): a token never begets another. The secret is in this answer and nowhere
/// else, ever.
pub async fn create_token(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    use wharf_format::Identity;
    let owner = caller(&state, &req).await?;
    if !owner.credential.may_create_credentials() {
        return Err(AdminError::NotAllowed("an API token is created with the password (or a console session), not with a token"));
    }
    let body = parse_json(&body)?;
    let obj = object(&body)?;
    for k in obj.keys() {
        if !["name", "readOnly", "repository", "expiresInDays"].contains(&k.as_str()) {
            return Err(invalid(k, "unknown field"));
        }
    }
    let name = str_field(obj, "name")?.unwrap_or_default();
    if name.len() > 200 {
        return Err(invalid("name", "at most 200 characters"));
    }
    let readonly = match obj.get("readOnly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("readOnly", "must be a boolean")),
    };
    let repository = str_field(obj, "repository")?;
    if let Some(r) = &repository {
        if state.registry.get(r).is_none() {
            return Err(invalid("repository", format!("{r} does not exist")));
        }
    }
    let expires_at = match obj.get("expiresInDays") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let days = v.as_f64().filter(|d| *d > 0.0 && *d <= 3650.0).ok_or_else(|| invalid("expiresInDays", "a number of days between 0 and 3650"))?;
            Some(wharf_format::now_millis() + (days * 86_400_000.0) as i64)
        }
    };
    let t = state.auth.create_token(&owner, wharf_format::TokenSpec { name, readonly, repository, expires_at }, &crate::http::mount::client(&req)).await?;
    let mut out = token_json(&t.info);
    out["token"] = json!(t.secret);
    Ok(HttpResponse::Created().json(out))
}

pub async fn revoke_token(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    use wharf_format::Identity;
    let owner = caller(&state, &req).await?;
    let id = path.into_inner();
    if !state.auth.revoke_token(&owner, &id, &crate::http::mount::client(&req)).await? {
        return Err(AdminError::missing("token", &id));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use crate::db::{privileges, users, Db};

    /// What the writers check again in their transaction: a role or a defined privilege that
    /// is gone is named in the refusal; those that exist pass.
    #[test]
    fn a_role_or_privilege_deleted_meanwhile_is_refused_where_the_write_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        db.run_sync(|c| {
            users::create_role(c, "kept", "kept", "", &[], &[])?;
            let p = privileges::PrivilegeRow {
                name: "kept-read".into(),
                kind: "repository-view".into(),
                description: String::new(),
                definition: "{}".into(),
                grants: "[\"nx-repository-view-docker-x-read\"]".into(),
                created_at: 0,
            };
            privileges::insert(c, &p)
        })
        .unwrap();
        let check = |roles: &[&str], privileges: &[&str]| {
            let (roles, privileges): (Vec<String>, Vec<String>) =
                (roles.iter().map(|r| r.to_string()).collect(), privileges.iter().map(|p| p.to_string()).collect());
            db.run_sync(move |c| super::still_named(c, &roles, &privileges)).unwrap()
        };
        assert_eq!(check(&["kept"], &["kept-read"]), None);
        assert_eq!(check(&["kept", "gone"], &[]), Some(("roles", "role gone does not exist".to_string())));
        assert_eq!(check(&[], &["kept-read", "gone-read"]), Some(("privileges", "privilege gone-read does not exist".to_string())));
    }
}
