//! `/service/rest/v1/cleanup-policies`: Nexus's cleanup policies (list, create, get, update,
//! delete), wharf's preview of what a policy would delete from a repository (of a stored
//! policy, or of a body not yet saved), and a run on demand (the "cleanup" task runs the same).
//!
//! A policy that a repository names cannot be deleted (nor changed to another format): the
//! answer names the repositories, so that the administrator takes it out of them first.
//! Nothing is ever removed from a repository's configuration behind its administrator's back.
//!
//! A stored policy this build cannot parse (its format is not in this build, or another
//! version of wharf wrote it) is shown as stored, with `problem` saying why; runs skip it.
//!
//! Previews and runs walk a repository's components: they run on the lifecycle thread, not on
//! the HTTP worker, and a run is a run of the "cleanup" task (its lease, history and stop).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{parse_json, require_admin, AdminError};
use crate::db::cleanup as rows;
use crate::lifecycle::cleanup::policy::{Policy, ALL_FORMATS};
use crate::lifecycle::cleanup::{self, CleanupError, PlannedComponent};
use crate::lifecycle::tasks;
use crate::state::AppState;

impl From<CleanupError> for AdminError {
    fn from(e: CleanupError) -> Self {
        match e {
            CleanupError::UnknownRepository(_) | CleanupError::UnknownPolicy(_) => AdminError::NotFound(e.to_string()),
            CleanupError::NotApplicable(c) => AdminError::Invalid(c),
            CleanupError::Stored { .. } => AdminError::Conflict(e.to_string()),
            other => AdminError::Internal(Box::new(other)),
        }
    }
}

fn parse(state: &AppState, body: &[u8], name: Option<&str>) -> Result<Policy, AdminError> {
    Ok(Policy::parse(&parse_json(body)?, &state.format_names(), name)?)
}

async fn stored_row(state: &AppState, name: &str) -> Result<rows::PolicyRow, AdminError> {
    let n = name.to_string();
    Ok(state.db.run(move |c| rows::get(c, &n)).await?.ok_or_else(|| CleanupError::UnknownPolicy(name.to_string()))?)
}

async fn stored(state: &AppState, name: &str) -> Result<Policy, AdminError> {
    Ok(cleanup::parse_stored(&stored_row(state, name).await?, &state.format_names())?)
}

/// A stored policy as the API shows it: as parsed, or, when this build cannot parse it, as
/// stored with the reason in `problem` (one such policy must not hide the others).
fn shown(row: &rows::PolicyRow, parsed: Result<Policy, CleanupError>) -> Value {
    match parsed {
        Ok(p) => p.to_json(),
        Err(e) => {
            let mut v = serde_json::from_str::<Value>(&row.config).ok().filter(Value::is_object).unwrap_or_else(|| json!({}));
            v["name"] = json!(row.name);
            v["format"] = json!(row.format);
            v["problem"] = json!(e.to_string());
            v
        }
    }
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let policies = cleanup::load_policies(&state).await?;
    Ok(HttpResponse::Ok().json(policies.into_iter().map(|(row, parsed)| shown(&row, parsed)).collect::<Vec<_>>()))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let row = stored_row(&state, &name).await?;
    let parsed = cleanup::parse_stored(&row, &state.format_names());
    Ok(HttpResponse::Ok().json(shown(&row, parsed)))
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

/// [`cleanup::preview`] on the lifecycle thread.
async fn previewed(state: &web::Data<AppState>, policy: &Policy, repository: &str) -> Result<HttpResponse, AdminError> {
    let (st, p, repo) = (state.clone(), policy.clone(), repository.to_string());
    let components = crate::lifecycle::in_background_then(move || async move { cleanup::preview(&st, &p, &repo).await })
        .await
        .ok_or_else(|| AdminError::Internal("the lifecycle thread is gone".into()))??;
    Ok(HttpResponse::Ok().json(preview_body(policy, repository, components)))
}

/// `GET /cleanup-policies/{name}/preview?repository=REPO`: what the stored policy would delete.
pub async fn preview(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>, q: Params) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let repository = repository_param(&q)?;
    let policy = stored(&state, &name).await?;
    previewed(&state, &policy, repository).await
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
    previewed(&state, &policy, repository).await
}

/// A run of the cleanup task that failed as a whole.
#[derive(Debug, thiserror::Error)]
#[error("cleanup run failed: {0}")]
struct RunFailed(String);

/// `POST /cleanup-policies/run?repository=REPO&dryRun=true|false`: applies the policies of one
/// repository (or of all) now: a run of the built-in "cleanup" task with these properties
/// (409 while that task runs anywhere; `POST /tasks/cleanup/stop` stops it), answered with
/// its report when it ends.
pub async fn run(state: web::Data<AppState>, req: HttpRequest, q: Params) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let repository = q.get("repository").map(String::as_str);
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ConfigError::not_boolean("dryRun").into()),
    };
    if let Some(name) = repository {
        if state.registry.get(name).is_none() {
            return Err(CleanupError::UnknownRepository(name.to_string()).into());
        }
    }
    let properties = json!({ "repositoryName": repository.unwrap_or("*"), "dryRun": dry_run });
    let ended = tasks::run_now_and_wait(&state, tasks::BUILTIN_CLEANUP, properties, &actor).await?;
    if ended.result == "FAILED" {
        return Err(AdminError::Internal(Box::new(RunFailed(ended.message))));
    }
    if !dry_run {
        super::record(&state, &req, &actor, "cleanup.run", repository.unwrap_or("*"), repository);
    }
    Ok(HttpResponse::Ok().json(ended.report))
}
