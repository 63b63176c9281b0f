//! Privileges an administrator defines, in Nexus's shapes:
//! `POST /service/rest/v1/security/privileges/{repository-view,application}`, `PUT .../{type}/{name}`,
//! `GET` and `DELETE .../privileges/{name}`. A defined privilege stands for built-in ones
//! (`db::privileges`): a repository-view privilege for `nx-repository-view-<format>-<repository>-<action>`
//! per action, an application privilege for `nx-metrics-all` (domain `metrics`) or `nx-all`
//! (domain `*`), the two application privileges wharf has.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use wharf_format::ConfigError;

use super::security::anonymous_may_hold;
use super::{parse_json, record, require_admin, AdminError};
use crate::db::privileges::{self as rows, PrivilegeRow};
use crate::db::users;
use crate::security::roles;
use crate::state::AppState;

const REPOSITORY_VIEW: &str = "repository-view";
const APPLICATION: &str = "application";
/// Nexus's action names and wharf's built-in action for each.
const ACTIONS: &[(&str, &str)] = &[("BROWSE", "browse"), ("READ", "read"), ("ADD", "add"), ("EDIT", "edit"), ("DELETE", "delete"), ("ALL", "*")];

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid(ConfigError::new(field, message))
}

/// The built-in privilege named `name`, in the list's shape.
fn built_in(state: &AppState, name: &str) -> Option<Value> {
    match name {
        roles::ALL => {
            Some(json!({"type": APPLICATION, "name": roles::ALL, "description": "All permissions", "readOnly": true, "domain": "*", "actions": ["*"]}))
        }
        roles::METRICS => Some(
            json!({"type": APPLICATION, "name": roles::METRICS, "description": "Read the Prometheus metrics", "readOnly": true, "domain": "metrics", "actions": ["*"]}),
        ),
        _ => match roles::parse(name, state.auth.formats()) {
            Ok(roles::Privilege::Repo(_)) => {
                let rest = name.trim_start_matches("nx-repository-view-");
                let (format, rest) = rest.split_once('-')?;
                let (repository, action) = rest.rsplit_once('-')?;
                Some(json!({
                    "type": REPOSITORY_VIEW, "name": name, "description": format!("{action} on {format} repository {repository}"),
                    "readOnly": true, "format": format, "repository": repository, "actions": [action.to_ascii_uppercase()],
                }))
            }
            _ => None,
        },
    }
}

pub fn render(p: &PrivilegeRow) -> Value {
    let mut v = json!({"type": p.kind, "name": p.name, "description": p.description, "readOnly": false});
    if let Ok(Value::Object(def)) = serde_json::from_str::<Value>(&p.definition) {
        v.as_object_mut().expect("an object").extend(def);
    }
    v
}

/// A validated body: its description, the definition to keep, and the built-in ids it grants.
type Parsed = (String, Map<String, Value>, Vec<String>);

/// Validates a body of `kind`.
fn parse(state: &AppState, kind: &str, obj: &Map<String, Value>) -> Result<Parsed, AdminError> {
    let fields: &[&str] = if kind == REPOSITORY_VIEW {
        &["name", "description", "actions", "format", "repository", "type", "readOnly"]
    } else {
        &["name", "description", "actions", "domain", "type", "readOnly"]
    };
    if let Some(k) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ConfigError::unknown_field(k.as_str()).into());
    }
    let text = |k: &str| -> Result<Option<String>, AdminError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ConfigError::not_string(k).into()),
        }
    };
    let description = text("description")?.unwrap_or_default();
    let actions: Vec<String> = match obj.get("actions") {
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).map(|s| s.to_ascii_uppercase()).collect()
        }
        Some(Value::Array(_)) | None => return Err(invalid("actions", "at least one action is required")),
        Some(_) => return Err(ConfigError::not_strings("actions").into()),
    };
    let mut definition = Map::new();
    definition.insert("actions".into(), json!(actions));
    let grants = if kind == REPOSITORY_VIEW {
        let format = text("format")?.ok_or_else(|| ConfigError::required("format"))?;
        if format != "*" && !state.auth.formats().contains(&format.as_str()) {
            return Err(invalid("format", format!("unknown format {format:?} ({}, or *)", state.auth.formats().join(", "))));
        }
        let repository = text("repository")?.ok_or_else(|| ConfigError::required("repository"))?;
        if repository != "*" {
            match state.registry.get(&repository) {
                None => return Err(invalid("repository", format!("no repository {repository:?}"))),
                Some(r) if format != "*" && r.config.format != format => {
                    return Err(invalid("repository", format!("{repository} is a {} repository, not {format}", r.config.format)))
                }
                Some(_) => {}
            }
        }
        let mut grants = Vec::new();
        for a in &actions {
            let Some((_, builtin)) = ACTIONS.iter().find(|(nexus, _)| nexus == a) else {
                return Err(invalid("actions", format!("unknown action {a:?} (BROWSE, READ, ADD, EDIT, DELETE, ALL)")));
            };
            grants.push(format!("nx-repository-view-{format}-{repository}-{builtin}"));
        }
        definition.insert("format".into(), json!(format));
        definition.insert("repository".into(), json!(repository));
        grants
    } else {
        let domain = text("domain")?.ok_or_else(|| ConfigError::required("domain"))?;
        let grant = match domain.as_str() {
            "metrics" => roles::METRICS,
            "*" => roles::ALL,
            other => {
                return Err(invalid(
                    "domain",
                    format!("wharf's application privileges are domain metrics (the Prometheus metrics) and * (everything), not {other:?}"),
                ))
            }
        };
        definition.insert("domain".into(), json!(domain));
        vec![grant.to_string()]
    };
    Ok((description, definition, grants))
}

fn name_of(obj: &Map<String, Value>) -> Result<String, AdminError> {
    let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| ConfigError::required("name"))?.to_string();
    let ok = !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b)) && !name.starts_with(['.', '-']);
    if !ok {
        return Err(invalid("name", "letters, digits and . _ - @ only, up to 100"));
    }
    if name.starts_with("nx-") {
        return Err(invalid("name", "names starting with nx- are the built-in privileges'"));
    }
    Ok(name)
}

/// `POST .../privileges/{type}`.
pub async fn create(state: web::Data<AppState>, req: HttpRequest, kind: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let kind = kind.into_inner();
    if kind != REPOSITORY_VIEW && kind != APPLICATION {
        return Err(AdminError::NotFound(format!("wharf defines privileges of type {REPOSITORY_VIEW} and {APPLICATION}, not {kind}")));
    }
    let body = parse_json(&body)?;
    let obj = body.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    let name = name_of(obj)?;
    let (description, definition, grants) = parse(&state, &kind, obj)?;
    let row = PrivilegeRow {
        name: name.clone(),
        kind: kind.clone(),
        description,
        definition: Value::Object(definition).to_string(),
        grants: serde_json::to_string(&grants).unwrap_or_default(),
        created_at: wharf_format::now_millis(),
    };
    let created = state
        .db
        .write(move |c| {
            if rows::get(c, &row.name)?.is_some() {
                return Ok(false);
            }
            rows::insert(c, &row)?;
            Ok(true)
        })
        .await?;
    if !created {
        return Err(invalid("name", format!("privilege {name} already exists")));
    }
    record(&state, &req, &actor, "privilege.create", &name, None);
    Ok(HttpResponse::Created().finish())
}

/// `PUT .../privileges/{type}/{name}`: the whole privilege again. The roles that hold it grant
/// what it grants now, at once and on every node.
pub async fn update(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let (kind, name) = path.into_inner();
    if kind != REPOSITORY_VIEW && kind != APPLICATION {
        return Err(AdminError::NotFound(format!("wharf defines privileges of type {REPOSITORY_VIEW} and {APPLICATION}, not {kind}")));
    }
    let body = parse_json(&body)?;
    let obj = body.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    if let Some(n) = obj.get("name") {
        if n.as_str() != Some(name.as_str()) {
            return Err(invalid("name", "a privilege cannot be renamed"));
        }
    }
    let (description, definition, grants) = parse(&state, &kind, obj)?;
    for g in &grants {
        let p = roles::parse(g, state.auth.formats()).map_err(|e| invalid("actions", e))?;
        if anonymous_may_hold(&p).is_err() {
            let n = name.clone();
            let held = state.db.run(move |c| Ok(users::roles(c)?.iter().any(|r| r.id == roles::ANONYMOUS_ROLE && r.privilege_ids().contains(&n)))).await?;
            if held {
                return Err(invalid("domain", format!("the anonymous role holds {name}, and cannot hold {g}")));
            }
        }
    }
    let row = PrivilegeRow {
        name: name.clone(),
        kind,
        description,
        definition: Value::Object(definition).to_string(),
        grants: serde_json::to_string(&grants).unwrap_or_default(),
        created_at: 0,
    };
    if !state.db.write(move |c| rows::update(c, &row)).await? {
        return Err(AdminError::missing("privilege", &name));
    }
    state.auth.invalidate();
    record(&state, &req, &actor, "privilege.update", &name, None);
    Ok(HttpResponse::NoContent().finish())
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let name = name.into_inner();
    if let Some(v) = built_in(&state, &name) {
        return Ok(HttpResponse::Ok().json(v));
    }
    let n = name.clone();
    let row = state.db.run(move |c| rows::get(c, &n)).await?.ok_or_else(|| AdminError::missing("privilege", &name))?;
    Ok(HttpResponse::Ok().json(render(&row)))
}

/// Refused for a built-in privilege, and while a role holds it (the roles are named).
pub async fn delete(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = name.into_inner();
    if built_in(&state, &name).is_some() {
        return Err(invalid("name", format!("{name} is built in (readOnly)")));
    }
    let n = name.clone();
    let outcome = state
        .db
        .write(move |c| {
            let holders: Vec<String> = users::roles(c)?.into_iter().filter(|r| r.privilege_ids().contains(&n)).map(|r| r.id).collect();
            if !holders.is_empty() {
                return Ok(Err(holders));
            }
            Ok(Ok(rows::delete(c, &n)?))
        })
        .await?;
    match outcome {
        Err(holders) => Err(invalid("name", format!("roles {} hold {name}; take it from them first", holders.join(", ")))),
        Ok(false) => Err(AdminError::missing("privilege", &name)),
        Ok(true) => {
            state.auth.invalidate();
            record(&state, &req, &actor, "privilege.delete", &name, None);
            Ok(HttpResponse::NoContent().finish())
        }
    }
}
