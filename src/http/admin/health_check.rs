//! `/service/rest/v1/repositories/{name}/health-check`: Nexus's `POST` (enable) and `DELETE`
//! (disable), and wharf's `GET` (enabled or not, and the last report). What the check does:
//! `lifecycle::health_check`; enabled repositories are checked by the built-in task
//! `repository-health-check` on `health_check.schedule`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::{now_millis, rfc3339_millis, RepoRef};

use super::{record, require_admin, AdminError};
use crate::db::{health_checks as rows, tasks as task_rows};
use crate::lifecycle::tasks;
use crate::state::AppState;

fn repository(state: &AppState, name: &str) -> Result<RepoRef, AdminError> {
    state.registry.get(name).ok_or_else(|| AdminError::missing("repository", name))
}

/// `GET`: `{repositoryName, enabled, changedBy, changedAt, lastCheckedAt, nextCheckAt, report}`.
pub async fn get(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let name = path.into_inner();
    let repo = repository(&state, &name)?;
    let id = repo.config.id;
    let (row, task) = state.db.run(move |c| Ok((rows::get(c, id)?, task_rows::get(c, tasks::BUILTIN_HEALTH_CHECK)?))).await?;
    let enabled = row.as_ref().is_some_and(|r| r.enabled);
    let next = task.filter(|t| enabled && t.enabled).and_then(|t| t.next_run);
    let report = row.as_ref().and_then(|r| r.report.as_deref()).and_then(|t| serde_json::from_str::<Value>(t).ok());
    Ok(HttpResponse::Ok().json(json!({
        "repositoryName": name,
        "enabled": enabled,
        "changedBy": row.as_ref().and_then(|r| r.changed_by.clone()),
        "changedAt": row.as_ref().map(|r| rfc3339_millis(r.changed_at)),
        "lastCheckedAt": row.as_ref().and_then(|r| r.checked_at).map(rfc3339_millis),
        "nextCheckAt": next.map(rfc3339_millis),
        "report": report,
    })))
}

/// `POST`: enables the check (on every node: it is a row) and starts a first one. 204.
pub async fn enable(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    set(&state, &name, true, &actor).await?;
    record(&state, &req, &actor, "repository.health-check.enable", &name, Some(&name));
    tasks::start_health_check(&state, &name, &actor).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE`: disables the check; the last report stays. 204.
pub async fn disable(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    set(&state, &name, false, &actor).await?;
    record(&state, &req, &actor, "repository.health-check.disable", &name, Some(&name));
    Ok(HttpResponse::NoContent().finish())
}

async fn set(state: &AppState, name: &str, enabled: bool, actor: &str) -> Result<(), AdminError> {
    let id = repository(state, name)?.config.id;
    let (by, now) = (actor.to_string(), now_millis());
    match state.db.write(move |c| rows::set_enabled(c, id, enabled, &by, now)).await {
        Ok(()) => Ok(()),
        // Deleted since this node's view of the repositories was taken.
        Err(crate::db::DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _))) => {
            Err(AdminError::missing("repository", name))
        }
        Err(e) => Err(e.into()),
    }
}
