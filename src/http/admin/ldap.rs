//! `/service/rest/v1/security/ldap`: LDAP servers in Nexus's shape, their order, and the
//! "test connection" / "test login" checks. The bind password is never shown; a PUT without it
//! (or with the mask `********`) keeps the stored one, as long as the server's address and TLS
//! settings stay the same.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{parse_json, record, require_admin, AdminError};
use crate::security::ldap::{self, LdapServer};
use crate::state::AppState;

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid(ConfigError::new(field, message))
}

fn shown(s: &LdapServer, order: usize) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    v["authPassword"] = Value::Null;
    v["order"] = json!(order);
    v["id"] = json!(s.name);
    v
}

fn parse(body: &Value) -> Result<LdapServer, AdminError> {
    let s: LdapServer = serde_json::from_value(body.clone()).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("body").to_string();
        invalid(&field, format!("{field}: {msg}"))
    })?;
    s.validate().map_err(|(f, m)| invalid(&f, m))?;
    Ok(s)
}

async fn servers(state: &AppState) -> Result<Vec<LdapServer>, AdminError> {
    Ok(state.db.run(ldap::load).await?)
}

async fn save(state: &AppState, list: Vec<LdapServer>) -> Result<(), AdminError> {
    state.db.write(move |c| ldap::store(c, &list)).await?;
    state.auth.invalidate();
    Ok(())
}

/// The configuration file's servers first (read-only here), then the API's.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let fixed = state.auth.config_ldap();
    let list = servers(&state).await?;
    let mut out: Vec<Value> = fixed
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = shown(s, i);
            v["readOnly"] = json!(true);
            v
        })
        .collect();
    out.extend(list.iter().enumerate().map(|(i, s)| shown(s, fixed.len() + i)));
    Ok(HttpResponse::Ok().json(out))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let name = path.into_inner();
    let list = servers(&state).await?;
    let (i, s) = list.iter().enumerate().find(|(_, s)| s.name == name).ok_or_else(|| AdminError::missing("LDAP server", &name))?;
    Ok(HttpResponse::Ok().json(shown(s, i)))
}

pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let s = parse(&parse_json(&body)?)?;
    if s.auth_password.as_deref() == Some(ldap::PASSWORD_MASK) {
        return Err(invalid("authPassword", "authPassword: the mask stands for a stored password, and a new server has none"));
    }
    let mut list = servers(&state).await?;
    if list.iter().chain(state.auth.config_ldap()).any(|x| x.name == s.name) {
        return Err(invalid("name", format!("name: LDAP server {} already exists", s.name)));
    }
    let name = s.name.clone();
    list.push(s);
    save(&state, list).await?;
    record(&state, &req, &actor, "ldap.create", &name, None);
    Ok(HttpResponse::Created().finish())
}

pub async fn update(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let mut s = parse(&parse_json(&body)?)?;
    if s.name != name {
        return Err(invalid("name", "name: cannot be changed"));
    }
    let mut list = servers(&state).await?;
    let slot = list.iter_mut().find(|x| x.name == name).ok_or_else(|| AdminError::missing("LDAP server", &name))?;
    keep_stored_password(&mut s, slot)?;
    *slot = s;
    save(&state, list).await?;
    record(&state, &req, &actor, "ldap.update", &name, None);
    Ok(HttpResponse::NoContent().finish())
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let mut list = servers(&state).await?;
    let before = list.len();
    list.retain(|s| s.name != name);
    if list.len() == before {
        return Err(AdminError::missing("LDAP server", &name));
    }
    save(&state, list).await?;
    record(&state, &req, &actor, "ldap.delete", &name, None);
    Ok(HttpResponse::NoContent().finish())
}

/// `POST .../change-order` with the names in the order to ask them.
pub async fn change_order(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let names: Vec<String> = serde_json::from_value(parse_json(&body)?).map_err(|_| invalid("body", "body: a list of server names"))?;
    let mut list = servers(&state).await?;
    if names.len() != list.len() || !list.iter().all(|s| names.contains(&s.name)) {
        return Err(invalid("body", "body: every configured server, each once"));
    }
    list.sort_by_key(|s| names.iter().position(|n| n == &s.name));
    save(&state, list).await?;
    record(&state, &req, &actor, "ldap.order", &names.join(","), None);
    Ok(HttpResponse::NoContent().finish())
}

/// What a client sends for "keep the stored password": nothing, null, or the mask.
fn keeps_stored(p: &Option<String>) -> bool {
    p.as_deref().is_none_or(|p| p == ldap::PASSWORD_MASK)
}

/// Fills in the stored bind password when the request keeps it, but only for the destination it
/// was given for: with another protocol, host, port, StartTLS or CA the password must be sent
/// again, or an admin session (or whoever holds one) could send it to a server of its choosing.
fn keep_stored_password(s: &mut LdapServer, stored: &LdapServer) -> Result<(), AdminError> {
    if !keeps_stored(&s.auth_password) {
        return Ok(());
    }
    s.auth_password = None;
    let Some(p) = &stored.auth_password else { return Ok(()) };
    let moved = [
        ("protocol", s.protocol != stored.protocol),
        ("host", !s.host.eq_ignore_ascii_case(&stored.host)),
        ("port", s.port != stored.port),
        ("startTls", s.start_tls != stored.start_tls),
        ("caFile", s.ca_file != stored.ca_file),
    ];
    if let Some((field, _)) = moved.iter().find(|(_, changed)| *changed) {
        return Err(invalid(
            "authPassword",
            format!("authPassword: required when {field} changes (the stored password is only ever sent to the server it was given for)"),
        ));
    }
    s.auth_password = Some(p.clone());
    Ok(())
}

/// A server from a check's body: complete, or a stored one's name plus overrides.
async fn server_for_check(state: &AppState, body: &Value) -> Result<LdapServer, AdminError> {
    let mut s = parse(body.get("server").unwrap_or(body))?;
    if keeps_stored(&s.auth_password) {
        match servers(state).await?.into_iter().find(|x| x.name == s.name) {
            Some(stored) => keep_stored_password(&mut s, &stored)?,
            None => s.auth_password = None,
        }
    }
    Ok(s)
}

pub async fn verify_connection(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let s = server_for_check(&state, &parse_json(&body)?).await?;
    Ok(match ldap::verify_connection(&s).await {
        Ok(()) => HttpResponse::Ok().json(json!({"success": true})),
        Err(e) => HttpResponse::Ok().json(json!({"success": false, "message": e.to_string()})),
    })
}

/// `{"server": {...}, "username": ..., "password": ...}`: what that user would be.
pub async fn verify_login(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let body = parse_json(&body)?;
    let s = server_for_check(&state, &body).await?;
    let user = body.get("username").and_then(Value::as_str).ok_or_else(|| invalid("username", "username: required"))?;
    let pass = body.get("password").and_then(Value::as_str).ok_or_else(|| invalid("password", "password: required"))?;
    let roles = state.db.run(crate::db::users::roles).await?;
    Ok(match ldap::authenticate(&s, Some(user), pass).await {
        Ok(Some(u)) => {
            let mapped: Vec<&String> = u.groups.iter().filter(|g| roles.iter().any(|r| &r.id == *g)).collect();
            HttpResponse::Ok().json(json!({"success": true, "user": u, "roles": mapped}))
        }
        Ok(None) => HttpResponse::Ok().json(json!({"success": false, "message": "no such user, or a wrong password"})),
        Err(e) => HttpResponse::Ok().json(json!({"success": false, "message": e.to_string()})),
    })
}
