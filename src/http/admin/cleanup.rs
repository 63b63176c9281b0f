//! `/service/rest/v1/cleanup-policies`: Nexus's cleanup policies (list, create, get, update,
//! delete), wharf's preview of what a policy would delete from a repository (of a stored
//! policy, or of a body not yet saved), and a run on demand (the "cleanup" task runs the same).
//!
//! A policy that a repository names cannot be deleted (nor changed to another format): the
//! answer names the repositories, so that the administrator takes it out of them first.
//! Nothing is ever removed from a repository's configuration behind its administrator's back.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{parse_json, require_admin, AdminError};
use crate::db::cleanup as rows;
use crate::lifecycle::cleanup::policy::{Policy, ALL_FORMATS};
use crate::lifecycle::cleanup::{self, CleanupError, PlannedComponent};
use crate::state::AppState;

impl From<CleanupError> for AdminError {
    fn from(e: CleanupError) -> Self {
        match e {
            CleanupError::UnknownRepository(_) | CleanupError::UnknownPolicy(_) => AdminError::NotFound(e.to_string()),
            CleanupError::NotApplicable(c) => AdminError::Invalid(c),
            other => AdminError::Internal(Box::new(other)),
        }
    }
}

fn parse(state: &AppState, body: &[u8], name: Option<&str>) -> Result<Policy, AdminError> {
    Ok(Policy::parse(&parse_json(body)?, &state.format_names(), name)?)
}

async fn stored(state: &AppState, name: &str) -> Result<Policy, AdminError> {
    let n = name.to_string();
    let row = state.db.run(move |c| rows::get(c, &n)).await?.ok_or_else(|| CleanupError::UnknownPolicy(name.to_string()))?;
    Ok(cleanup::parse_stored(&row, &state.format_names())?)
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let policies = cleanup::load_policies(&state).await?;
    Ok(HttpResponse::Ok().json(policies.iter().map(Policy::to_json).collect::<Vec<_>>()))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(stored(&state, &name).await?.to_json()))
}

pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let p = parse(&state, &body, None)?;
    let (name, format, config) = (p.name.clone(), p.format.clone(), p.to_json().to_string());
    let created = state
        .db
        .write(move |c| {
            if rows::get(c, &name)?.is_some() {
                return Ok(false);
            }
            rows::insert(c, &name, &format, &config)?;
            Ok(true)
        })
        .await?;
    if !created {
        return Err(ConfigError::new("name", format!("cleanup policy {} already exists", p.name)).into());
    }
    super::record(&state, &req, &actor, "cleanup-policy.create", &p.name, None);
    Ok(HttpResponse::Created().json(p.to_json()))
}

/// Repositories that name a policy whose format no longer fits them.
fn misfits(users: &[(String, String)], format: &str) -> Vec<String> {
    users.iter().filter(|(_, f)| format != ALL_FORMATS && f != format).map(|(r, _)| r.clone()).collect()
}

pub async fn update(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let p = parse(&state, &body, Some(&name))?;
    let (n, format, config) = (p.name.clone(), p.format.clone(), p.to_json().to_string());
    // The users are read in the same write: a repository that starts naming the policy
    // meanwhile is checked against the format stored by whichever write comes first.
    let outcome = state
        .db
        .write(move |c| {
            if rows::get(c, &n)?.is_none() {
                return Ok(Err(None));
            }
            let bad = misfits(&rows::users(c, &n)?, &format);
            if !bad.is_empty() {
                return Ok(Err(Some(bad)));
            }
            rows::update(c, &n, &format, &config)?;
            Ok(Ok(()))
        })
        .await?;
    match outcome {
        Ok(()) => {}
        Err(None) => return Err(CleanupError::UnknownPolicy(name.to_string()).into()),
        Err(Some(bad)) => {
            return Err(ConfigError::new("format", format!("repositories {} use this policy and are not {} repositories", bad.join(", "), p.format)).into())
        }
    }
    super::record(&state, &req, &actor, "cleanup-policy.update", &p.name, None);
    Ok(HttpResponse::NoContent().finish())
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let n = name.to_string();
    let outcome = state
        .db
        .write(move |c| {
            let users: Vec<String> = rows::users(c, &n)?.into_iter().map(|(r, _)| r).collect();
            if !users.is_empty() {
                return Ok(Err(users));
            }
            Ok(Ok(rows::delete(c, &n)?))
        })
        .await?;
    match outcome {
        Ok(true) => {}
        Ok(false) => return Err(CleanupError::UnknownPolicy(name.to_string()).into()),
        Err(users) => {
            return Err(ConfigError::new(
                "name",
                format!("cleanup policy {name} is used by repositories {}: remove it from their cleanup.policyNames first", users.join(", ")),
            )
            .into())
        }
    }
    super::record(&state, &req, &actor, "cleanup-policy.delete", &name, None);
    Ok(HttpResponse::NoContent().finish())
}

type Params = web::Query<std::collections::HashMap<String, String>>;

/// The `repository` query parameter, required.
fn repository_param(q: &Params) -> Result<&str, AdminError> {
    q.get("repository").map(String::as_str).filter(|r| !r.is_empty()).ok_or_else(|| ConfigError::new("repository", "is required (?repository=NAME)").into())
}

fn preview_body(policy: &Policy, repository: &str, components: Vec<PlannedComponent>) -> Value {
    json!({
        "policy": policy.name,
        "repository": repository,
        "componentCount": components.len(),
        "assetCount": components.iter().map(|c| c.assets.len()).sum::<usize>(),
        "totalSize": components.iter().map(|c| c.size).sum::<i64>(),
        "components": components,
    })
}

/// `GET /cleanup-policies/{name}/preview?repository=REPO`: what the stored policy would delete.
pub async fn preview(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>, q: Params) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let repository = repository_param(&q)?;
    let policy = stored(&state, &name).await?;
    let components = cleanup::preview(&state, &policy, repository).await?;
    Ok(HttpResponse::Ok().json(preview_body(&policy, repository, components)))
}

/// `POST /cleanup-policies/preview?repository=REPO` with a policy body that need not be saved
/// (its name may be left out).
pub async fn preview_unsaved(state: web::Data<AppState>, req: HttpRequest, q: Params, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let repository = repository_param(&q)?;
    let mut v = parse_json(&body)?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("name").or_insert_with(|| json!("preview"));
    }
    let policy = Policy::parse(&v, &state.format_names(), None)?;
    let components = cleanup::preview(&state, &policy, repository).await?;
    Ok(HttpResponse::Ok().json(preview_body(&policy, repository, components)))
}

/// `POST /cleanup-policies/run?repository=REPO&dryRun=true|false`: applies the policies of one
/// repository (or of all) now, as the "cleanup" task does; the report lists what went.
pub async fn run(state: web::Data<AppState>, req: HttpRequest, q: Params) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let repository = q.get("repository").map(String::as_str);
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ConfigError::new("dryRun", "must be true or false").into()),
    };
    let report = cleanup::run_cleanup_by(&state, repository, dry_run, Some(&actor), &wharf_format::Stop::default()).await?;
    if !dry_run {
        super::record(&state, &req, &actor, "cleanup.run", repository.unwrap_or("*"), repository);
    }
    Ok(HttpResponse::Ok().json(report))
}
