//! Nexus's tasks API (`/service/rest/v1/tasks`): list, get, run, stop; plus create, update and
//! delete (Nexus's newer `POST /v1/tasks` shape: `type`, `name`, `enabled`, `frequency`,
//! `properties`), the run history, and the task types.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::{now_millis, rfc3339_millis, ConfigError};

use super::{parse_json, record, require_admin, AdminError};
use crate::db::tasks::{self as rows, RunRow, TaskDef, TaskRow};
use crate::lifecycle::schedule::Frequency;
use crate::lifecycle::tasks::{self, TaskError};
use crate::state::AppState;

impl From<TaskError> for AdminError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(_) => AdminError::NotFound(e.to_string()),
            TaskError::Running(_) | TaskError::NotRunning(_) => AdminError::Conflict(e.to_string()),
            TaskError::Invalid(c) => AdminError::Invalid(c),
            TaskError::ReadOnly(m) => AdminError::ReadOnly(m),
            TaskError::Db(d) => d.into(),
            TaskError::Lost(_) => AdminError::Internal(Box::new(e)),
        }
    }
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(rfc3339_millis(m)))
}

fn render(t: &TaskRow) -> Value {
    let now = now_millis();
    json!({
        "id": t.id,
        "name": t.name,
        "type": t.type_id,
        "enabled": t.enabled,
        "builtin": tasks::builtin(&t.id),
        "message": t.last_message,
        "currentState": if t.running(now) { "RUNNING" } else { "WAITING" },
        "runningNode": if t.running(now) { t.running_node.clone() } else { None },
        "lastRunResult": t.last_result,
        "lastRun": time(t.last_run),
        "lastDurationMs": t.last_duration_ms,
        "nextRun": time(if t.enabled { t.next_run } else { None }),
        "frequency": serde_json::from_str::<Value>(&t.schedule).unwrap_or(Value::Null),
        "properties": serde_json::from_str::<Value>(&t.properties).unwrap_or(Value::Null),
    })
}

fn render_run(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "node": r.node,
        "trigger": r.trigger,
        "startedAt": rfc3339_millis(r.started_at),
        "finishedAt": time(r.finished_at),
        "durationMs": r.finished_at.map(|f| f - r.started_at),
        "result": r.result,
        "message": r.message,
        "report": serde_json::from_str::<Value>(&r.report).unwrap_or(Value::Null),
    })
}

async fn load(state: &AppState, id: &str) -> Result<TaskRow, AdminError> {
    let key = id.to_string();
    state.db.run(move |c| Ok(rows::get(c, &key)?)).await?.ok_or_else(|| AdminError::missing("task", id))
}

#[derive(serde::Deserialize)]
pub struct ListParams {
    #[serde(rename = "type")]
    type_id: Option<String>,
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest, q: web::Query<ListParams>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let all = state.db.run(|c| Ok(rows::list(c)?)).await?;
    let items: Vec<Value> = all.iter().filter(|t| q.type_id.as_deref().is_none_or(|ty| t.type_id == ty)).map(render).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": null })))
}

pub async fn types(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let items: Vec<Value> =
        tasks::all_types(&state.formats).into_iter().map(|(id, name, description)| json!({ "id": id, "name": name, "description": description })).collect();
    Ok(HttpResponse::Ok().json(items))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(render(&load(&state, &id).await?)))
}

pub async fn runs(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    load(&state, &id).await?;
    let key = id.to_string();
    let runs = state.db.run(move |c| Ok(rows::runs(c, &key, 50)?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": runs.iter().map(render_run).collect::<Vec<_>>() })))
}

pub async fn run(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    tasks::run_now(&state, &id, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn stop(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    tasks::stop(&state, &id).await?;
    record(&state, &req, &user, "task.stop", &id, None);
    Ok(HttpResponse::NoContent().finish())
}

/// The fields a create or update may carry, checked; unknown fields are named.
struct Definition {
    name: String,
    type_id: String,
    enabled: bool,
    frequency: Frequency,
    properties: serde_json::Map<String, Value>,
}

fn definition(state: &AppState, body: &Value, existing: Option<&TaskRow>) -> Result<Definition, AdminError> {
    let obj = body.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    const FIELDS: &[&str] = &["id", "name", "type", "enabled", "frequency", "properties", "alertEmail", "notificationCondition"];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ConfigError::unknown_field(k.clone()).into());
    }
    if let Some(k) = ["alertEmail", "notificationCondition"].iter().find(|k| obj.get(**k).is_some_and(|v| !v.is_null())) {
        return Err(ConfigError::new(*k, "wharf sends no e-mail; task runs are in the audit log and the run history").into());
    }
    // The task's own id is taken (a body built from a task read back may carry it); wharf
    // chooses a new task's id.
    match (obj.get("id"), existing) {
        (None | Some(Value::Null), _) => {}
        (Some(Value::String(id)), Some(e)) if *id == e.id => {}
        (Some(_), Some(_)) => return Err(ConfigError::new("id", "is the task's own (the one in the path); it cannot change").into()),
        (Some(_), None) => return Err(ConfigError::new("id", "is chosen by wharf when a task is created; leave it out").into()),
    }
    let type_id = match (obj.get("type").and_then(Value::as_str), existing) {
        (Some(t), Some(e)) if t != e.type_id => return Err(ConfigError::new("type", "a task's type cannot change").into()),
        (_, Some(e)) => e.type_id.clone(),
        (Some(t), None) => t.to_string(),
        (None, None) => return Err(ConfigError::required("type").into()),
    };
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.len() <= 200 => n.trim().to_string(),
        None if existing.is_some() => existing.map(|e| e.name.clone()).unwrap_or_default(),
        _ => return Err(ConfigError::new("name", "is required (at most 200 characters)").into()),
    };
    let enabled = match obj.get("enabled") {
        None => existing.is_none_or(|e| e.enabled),
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ConfigError::not_boolean("enabled").into()),
    };
    let frequency = match (obj.get("frequency"), existing) {
        (Some(f), _) => Frequency::parse(f)?,
        (None, Some(e)) => tasks::schedule_of(e).unwrap_or(Frequency::Manual),
        (None, None) => Frequency::Manual,
    };
    let properties = match (obj.get("properties"), existing) {
        (Some(p), _) => tasks::validate_properties(&state.formats, &type_id, p)?,
        (None, Some(e)) => tasks::validate_properties(&state.formats, &type_id, &serde_json::from_str(&e.properties).unwrap_or(Value::Null))?,
        (None, None) => tasks::validate_properties(&state.formats, &type_id, &Value::Null)?,
    };
    Ok(Definition { name, type_id, enabled, frequency, properties })
}

pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    let d = definition(&state, &parse_json(&body)?, None)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_millis();
    let scope = tasks::scope(&state.formats, &d.type_id, &d.properties);
    let (key, name, type_id, props, sched, enabled, next) = (
        id.clone(),
        d.name.clone(),
        d.type_id,
        Value::Object(d.properties).to_string(),
        d.frequency.to_json().to_string(),
        d.enabled,
        d.frequency.next_after(now),
    );
    state
        .db
        .write(move |c| {
            if let Err(e) = scope_still_fits(c, &scope)? {
                return Ok(Err(e));
            }
            rows::insert(c, &TaskDef { id: &key, name: &name, type_id: &type_id, properties: &props, schedule: &sched, enabled, next_run: next }, now)?;
            Ok(Ok(()))
        })
        .await??;
    record(&state, &req, &user, "task.create", &d.name, None);
    Ok(HttpResponse::Created().json(render(&load(&state, &id).await?)))
}

pub async fn update(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    let existing = load(&state, &id).await?;
    let body = parse_json(&body)?;
    let d = definition(&state, &body, Some(&existing))?;
    if tasks::builtin(&id) {
        // A built-in task's schedule and properties are the configuration's. Both sides are
        // compared as validation leaves them: a property added since the row was written is
        // then no change.
        let same = d.frequency == tasks::schedule_of(&existing).unwrap_or(Frequency::Manual)
            && Some(Value::Object(d.properties.clone())) == tasks::stored_properties(&state.formats, &existing)
            && d.name == existing.name;
        if !same {
            return Err(ConfigError::new("frequency", "a built-in task takes its schedule and properties from the configuration (gc.schedule, gc.cleanup_schedule, uploads.sweep_interval_secs, security.audit_retention_days); only `enabled` can change here").into());
        }
    }
    let scope = tasks::scope(&state.formats, &d.type_id, &d.properties);
    let (key, name, type_id, props, sched, enabled, frequency) =
        (id.to_string(), d.name.clone(), d.type_id, Value::Object(d.properties).to_string(), d.frequency.to_json().to_string(), d.enabled, d.frequency);
    let found = state
        .db
        .write(move |c| {
            // The next run is decided from the row as it is in this transaction: a run that
            // finished since `existing` was read has set a new one, which an unchanged schedule
            // keeps (the value read before could be the past, and start a run at once).
            let Some(current) = rows::get(c, &key)? else { return Ok(Ok(false)) };
            if let Err(e) = scope_still_fits(c, &scope)? {
                return Ok(Err(e));
            }
            let next = next_run_after_update(&current, &frequency, enabled, now_millis());
            rows::update(c, &TaskDef { id: &key, name: &name, type_id: &type_id, properties: &props, schedule: &sched, enabled, next_run: next })?;
            Ok(Ok(true))
        })
        .await??;
    if !found {
        return Err(AdminError::missing("task", &id));
    }
    record(&state, &req, &user, "task.update", &d.name, None);
    Ok(HttpResponse::Ok().json(render(&load(&state, &id).await?)))
}

/// The repository or blob store a task is scoped to, checked in the transaction that stores the
/// task: it must exist (a task for a name nobody has yet would take up whatever is created
/// under it), a repository of the task's format; the deletion of either, serialised with this
/// transaction, deletes its tasks.
fn scope_still_fits(c: &mut crate::db::AnyConnection, scope: &tasks::Scope) -> Result<Result<(), ConfigError>, crate::db::DbError> {
    if let Some((name, format)) = &scope.repository {
        if let Some(e) = crate::db::repos::unfit(c, "properties.repositoryName", name, format.as_deref())? {
            return Ok(Err(e));
        }
    }
    if let Some(store) = &scope.blob_store {
        if !crate::db::repos::list_blob_stores(c)?.iter().any(|s| s.name == *store) {
            return Ok(Err(ConfigError::new("properties.blobstoreName", format!("blob store {store} does not exist"))));
        }
    }
    Ok(Ok(()))
}

/// A task's next run once its definition becomes `frequency`, `enabled`: none while disabled;
/// the one it has when the schedule stays the same; otherwise counted from `now`.
fn next_run_after_update(current: &TaskRow, frequency: &Frequency, enabled: bool, now: i64) -> Option<i64> {
    if !enabled {
        return None;
    }
    match current.next_run {
        Some(n) if tasks::schedule_of(current).as_ref() == Some(frequency) => Some(n),
        _ => frequency.next_after(now),
    }
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    if tasks::builtin(&id) {
        return Err(ConfigError::new("id", "a built-in task cannot be deleted; disable it (PUT with \"enabled\": false)").into());
    }
    let t = load(&state, &id).await?;
    if t.running(now_millis()) {
        return Err(TaskError::Running(id.to_string()).into());
    }
    let key = id.to_string();
    state.db.write(move |c| Ok(rows::delete(c, &key)?)).await?;
    record(&state, &req, &user, "task.delete", &t.name, None);
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(schedule: &Frequency, next_run: Option<i64>) -> TaskRow {
        TaskRow {
            id: "t".into(),
            name: "t".into(),
            type_id: tasks::UPLOAD_SWEEP.into(),
            properties: "{}".into(),
            schedule: schedule.to_json().to_string(),
            enabled: true,
            next_run,
            run_id: None,
            running_node: None,
            lease_until: None,
            stop_requested: false,
            last_run: None,
            last_result: None,
            last_duration_ms: None,
            last_message: None,
            created_at: 0,
        }
    }

    /// The row is the one the update's transaction reads: a run that finished since the
    /// request began has set `next_run` already, and an unchanged schedule keeps it.
    #[test]
    fn an_update_keeps_the_next_run_the_row_has_unless_the_schedule_changes() {
        let hourly = Frequency::Interval(3600);
        let now = 1_000_000;
        let set_by_a_finished_run = now + 3_600_000;
        assert_eq!(next_run_after_update(&row(&hourly, Some(set_by_a_finished_run)), &hourly, true, now), Some(set_by_a_finished_run));
        assert_eq!(next_run_after_update(&row(&hourly, Some(set_by_a_finished_run)), &Frequency::Interval(60), true, now), Some(now + 60_000));
        assert_eq!(next_run_after_update(&row(&hourly, None), &hourly, true, now), Some(now + 3_600_000), "enabled again: from now");
        assert_eq!(next_run_after_update(&row(&hourly, Some(set_by_a_finished_run)), &hourly, false, now), None);
    }
}
