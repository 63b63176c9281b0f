//! Nexus's `/service/rest/v1/security/anonymous` and `/security/realms/{available,active}`
//! (what they switch: `security::realms`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{parse_json, record, require_admin, AdminError};
use crate::security::realms::{self, ALWAYS_ON, LDAP_ID, LOCAL_ID};
use crate::state::AppState;

/// Nexus's fixed names for the anonymous user and the realm that authorizes it.
const ANONYMOUS_USER: &str = "anonymous";
const AUTHORIZING_REALM: &str = "NexusAuthorizingRealm";

fn anonymous_body(enabled: bool) -> Value {
    json!({ "enabled": enabled, "userId": ANONYMOUS_USER, "realmName": AUTHORIZING_REALM })
}

pub async fn get_anonymous(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let on = state.db.run(realms::anonymous_enabled).await?;
    Ok(HttpResponse::Ok().json(anonymous_body(on)))
}

/// `{"enabled": bool}`, with Nexus's `userId` and `realmName` accepted when they are the only
/// values wharf has.
pub async fn put_anonymous(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let v = parse_json(&body)?;
    let obj = v.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("enabled", Value::Bool(_)) => {}
            ("enabled", _) => return Err(ConfigError::not_boolean("enabled").into()),
            ("userId", Value::String(s)) if s == ANONYMOUS_USER => {}
            ("userId", _) => return Err(ConfigError::new("userId", format!("anonymous callers are the user {ANONYMOUS_USER:?} in wharf")).into()),
            ("realmName", Value::String(s)) if s == AUTHORIZING_REALM => {}
            ("realmName", _) => return Err(ConfigError::new("realmName", format!("wharf authorizes anonymous callers in {AUTHORIZING_REALM:?} only")).into()),
            (other, _) => return Err(ConfigError::unknown_field(other).into()),
        }
    }
    let enabled = obj.get("enabled").and_then(Value::as_bool).ok_or_else(|| ConfigError::required("enabled"))?;
    state.db.write(move |c| realms::set_anonymous(c, enabled)).await?;
    state.auth.invalidate();
    record(&state, &req, &actor, if enabled { "security.anonymous.enable" } else { "security.anonymous.disable" }, ANONYMOUS_USER, None);
    Ok(HttpResponse::Ok().json(anonymous_body(enabled)))
}

pub async fn available(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let mut out = vec![json!({"id": LOCAL_ID, "name": "Local Authenticating Realm"}), json!({"id": LDAP_ID, "name": "LDAP Realm"})];
    out.extend(ALWAYS_ON.iter().map(|(id, name)| json!({"id": id, "name": name})));
    Ok(HttpResponse::Ok().json(out))
}

/// The realms logins are checked in, in order, then wharf's token realms (always on).
pub async fn active(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let mut ids: Vec<&str> = state.auth.realms().iter().map(|r| realms::id_of(r)).collect();
    ids.extend(ALWAYS_ON.iter().map(|(id, _)| *id));
    Ok(HttpResponse::Ok().json(ids))
}

/// A list of realm ids, as Nexus takes it. The local realm must stay (the administrator signs
/// in there), and so must the token realms wharf cannot turn off: a list without them would not
/// do what it says, so it is refused rather than half applied.
pub async fn set_active(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let v = parse_json(&body)?;
    let ids = v.as_array().filter(|a| a.iter().all(Value::is_string)).ok_or_else(|| ConfigError::not_strings("realms"))?;
    let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
    let mut on = Vec::new();
    for id in &ids {
        let realm = match *id {
            LOCAL_ID => "local",
            LDAP_ID => "ldap",
            id if ALWAYS_ON.iter().any(|(a, _)| *a == id) => continue,
            other => {
                let known: Vec<&str> = [LOCAL_ID, LDAP_ID].into_iter().chain(ALWAYS_ON.iter().map(|(id, _)| *id)).collect();
                return Err(ConfigError::new("realms", format!("unknown realm {other:?} (known: {})", known.join(", "))).into());
            }
        };
        if on.contains(&realm.to_string()) {
            return Err(ConfigError::new("realms", format!("{id} is listed twice")).into());
        }
        on.push(realm.to_string());
    }
    if !on.iter().any(|r| r == "local") {
        return Err(ConfigError::new("realms", format!("{LOCAL_ID} cannot be turned off: local administrators sign in there")).into());
    }
    if let Some((id, _)) = ALWAYS_ON.iter().find(|(id, _)| !ids.contains(id)) {
        return Err(ConfigError::new("realms", format!("{id} cannot be turned off in wharf (its tokens are always accepted); list it")).into());
    }
    let stored = on.clone();
    state.db.write(move |c| realms::store(c, &stored)).await?;
    state.auth.set_realms(on);
    record(&state, &req, &actor, "security.realms", &ids.join(","), None);
    Ok(HttpResponse::NoContent().finish())
}
