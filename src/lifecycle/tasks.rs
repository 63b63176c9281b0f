//! Scheduled tasks, Nexus's way: a task has a type (what it does), properties, a schedule, and a
//! history of runs. Every node runs the scheduler; a due task is claimed in the database (a
//! lease on its row, renewed while it runs), so exactly one node runs it, and another takes it
//! over once a dead node's lease lapses. A stop is a flag on the row that the runner reads when
//! it renews, so it reaches the run from any node.
//!
//! The built-in tasks (compact blob stores, upload sweep, audit retention, repositories' health
//! checks) are defined by the configuration (`gc.schedule`, `uploads.sweep_interval_secs`,
//! `security.audit_retention_days`, `health_check.schedule`) and brought in line with it at
//! every start; administrators may disable them, run them, and add tasks of their own of any
//! type.
//!
//! Read-only mode stops every task but those that only read ([`reads_only`]: the health check),
//! whose bookkeeping (run history, report) is not the content a freeze holds still.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::web;
use serde_json::{json, Map, Value};
use wharf_format::{now_millis, Audit, AuditEvent, ConfigError, Format, FormatTask, Stop, TaskRun};

use super::schedule::Frequency;
use crate::db::tasks::{self as rows, Finished, TaskDef, TaskRow};
use crate::db::DbError;
use crate::state::AppState;

/// A run's claim on its task lasts this long, and is renewed at a third of it.
const LEASE_MS: i64 = 30_000;
/// How often each node looks for due tasks.
const TICK: Duration = Duration::from_secs(1);
/// Runs kept per task.
const HISTORY: i64 = 50;

/// What a kind of task is, as the API lists it (the server's own; formats add theirs through
/// `Format::tasks`).
pub struct TaskType {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
}

/// Every task type this build knows: the server's and the formats'.
pub fn all_types(formats: &[std::sync::Arc<dyn Format>]) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out: Vec<_> = TYPES.iter().map(|t| (t.id, t.name, t.description)).collect();
    for f in formats {
        out.extend(f.tasks().iter().map(|t| (t.type_id, t.name, t.description)));
    }
    out
}

fn format_task<'a>(formats: &'a [std::sync::Arc<dyn Format>], type_id: &str) -> Option<(&'a std::sync::Arc<dyn Format>, &'static FormatTask)> {
    formats.iter().find_map(|f| f.tasks().iter().find(|t| t.type_id == type_id).map(|t| (f, t)))
}

/// What a task's properties scope it to, by name (`"*"` is no scope).
pub struct Scope {
    /// `repositoryName`, with the format it must have for a format's task.
    pub repository: Option<(String, Option<String>)>,
    /// `blobstoreName`.
    pub blob_store: Option<String>,
}

pub fn scope(formats: &[std::sync::Arc<dyn Format>], type_id: &str, props: &Map<String, Value>) -> Scope {
    let named = |key: &str| props.get(key).and_then(Value::as_str).filter(|n| *n != "*").map(str::to_string);
    Scope {
        repository: named("repositoryName").map(|n| (n, format_task(formats, type_id).map(|(f, _)| f.name().to_string()))),
        blob_store: named("blobstoreName"),
    }
}

pub const COMPACT: &str = "blobstore.compact";
pub const CLEANUP: &str = "repository.cleanup";
pub const UPLOAD_SWEEP: &str = "uploads.sweep";
pub const AUDIT_RETENTION: &str = "audit.retention";
pub const HEALTH_CHECK: &str = "repository.healthcheck";

pub const TYPES: &[TaskType] = &[
    TaskType {
        id: COMPACT,
        name: "Admin - Compact blob store",
        description: "Deletes blobs that no asset names and nobody touched within gc.grace_secs. Properties: blobstoreName (a store, or \"*\" for all), dryRun (report only), fullScan (also walk the store for objects the database does not know, which a pass otherwise does once a week).",
    },
    TaskType {
        id: CLEANUP,
        name: "Admin - Cleanup repositories using their associated policies",
        description: "Deletes what each repository's cleanup policies (cleanup.policyNames) select, through its format. Properties: repositoryName (a repository, or \"*\" for all), dryRun (report only).",
    },
    TaskType {
        id: UPLOAD_SWEEP,
        name: "Admin - Upload sweep",
        description: "Removes upload sessions and staged bytes untouched for uploads.ttl_secs.",
    },
    TaskType {
        id: AUDIT_RETENTION,
        name: "Admin - Audit retention",
        description: "Deletes audit events older than `days` (default security.audit_retention_days; 0 keeps everything).",
    },
    TaskType {
        id: HEALTH_CHECK,
        name: "Admin - Verify repository integrity",
        description: "Reads every asset's blob back from its blob store and checks it against the recorded sha256 (missing blobs, changed bytes), and a proxy's upstream state; keeps a report per repository (GET /service/rest/v1/repositories/{name}/health-check). Changes nothing. Properties: repositoryName (a repository, or \"*\" for every repository whose health check is enabled).",
    },
];

/// Task types that only read, and so may run in read-only mode.
pub const READERS: &[&str] = &[HEALTH_CHECK];

pub fn reads_only(type_id: &str) -> bool {
    READERS.contains(&type_id)
}

/// The built-in tasks' ids.
pub const BUILTIN_COMPACT: &str = "compact-blob-stores";
pub const BUILTIN_CLEANUP: &str = "cleanup";
pub const BUILTIN_UPLOAD_SWEEP: &str = "upload-sweep";
pub const BUILTIN_AUDIT_RETENTION: &str = "audit-retention";
pub const BUILTIN_HEALTH_CHECK: &str = "repository-health-check";

pub fn builtin(id: &str) -> bool {
    [BUILTIN_COMPACT, BUILTIN_CLEANUP, BUILTIN_UPLOAD_SWEEP, BUILTIN_AUDIT_RETENTION, BUILTIN_HEALTH_CHECK].contains(&id)
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {0} not found")]
    NotFound(String),
    #[error("task {0} is already running")]
    Running(String),
    #[error("task {0} is not running")]
    NotRunning(String),
    /// The run's outcome never came back (the lifecycle thread is gone).
    #[error("task {0}: the run ended without an outcome")]
    Lost(String),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// Read-only mode: no task starts (the message says since when and why).
    #[error("{0}")]
    ReadOnly(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Checks a type's properties and fills in defaults; unknown properties are named. A format's
/// task also takes `repositoryName` (a repository of that format, or `"*"` for all).
pub fn validate_properties(formats: &[std::sync::Arc<dyn Format>], type_id: &str, props: &Value) -> Result<Map<String, Value>, ConfigError> {
    let empty = Map::new();
    let given = match props {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => return Err(ConfigError::not_object("properties")),
    };
    if let Some((_, task)) = format_task(formats, type_id) {
        let mut own = given.clone();
        let mut repo = Map::new();
        repo.extend(own.remove("repositoryName").map(|v| ("repositoryName".to_string(), v)));
        wharf_format::name_or_all_property(&mut repo, "repositoryName", "repository")?;
        let mut out = (task.validate)(&own)?;
        out.extend(repo);
        return Ok(out);
    }
    let allowed: &[&str] = match type_id {
        COMPACT => &["blobstoreName", "dryRun", "fullScan"],
        CLEANUP => &["repositoryName", "dryRun"],
        UPLOAD_SWEEP => &[],
        AUDIT_RETENTION => &["days"],
        HEALTH_CHECK => &["repositoryName"],
        other => return Err(ConfigError::new("type", format!("unknown task type {other:?} (see GET /service/rest/v1/tasks/types)"))),
    };
    wharf_format::known_properties(given, allowed, type_id)?;
    let mut out = given.clone();
    match type_id {
        COMPACT => {
            wharf_format::name_or_all_property(&mut out, "blobstoreName", "blob store")?;
            wharf_format::flag_property(&mut out, "dryRun", false)?;
            wharf_format::flag_property(&mut out, "fullScan", false)?;
        }
        CLEANUP => {
            wharf_format::name_or_all_property(&mut out, "repositoryName", "repository")?;
            wharf_format::flag_property(&mut out, "dryRun", false)?;
        }
        HEALTH_CHECK => wharf_format::name_or_all_property(&mut out, "repositoryName", "repository")?,
        AUDIT_RETENTION => {
            if let Some(v) = out.get("days") {
                if v.as_u64().is_none_or(|d| d > wharf_format::MAX_DAYS) {
                    return Err(ConfigError::new(
                        "properties.days",
                        format!("must be a whole number of days up to {} (0 keeps everything)", wharf_format::MAX_DAYS),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// What a run did: a line for the task list, and details for its history.
pub struct Outcome {
    pub message: String,
    pub report: Value,
}

/// How a run ended, for a caller that waits for it ([`run_now_and_wait`]).
pub struct Ended {
    /// `OK`, `CANCELED` or `FAILED`, as the run history records it.
    pub result: &'static str,
    pub message: String,
    pub report: Value,
}

/// `actor`: the administrator who asked for the run (`None`: the schedule).
async fn execute(state: &AppState, type_id: &str, props: &Map<String, Value>, stop: &Stop, actor: Option<&str>) -> Result<Outcome, String> {
    match type_id {
        COMPACT => {
            let store = props.get("blobstoreName").and_then(Value::as_str).filter(|s| *s != "*");
            let dry_run = props.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
            let full_scan = props.get("fullScan").and_then(Value::as_bool).unwrap_or(false);
            let opts = super::gc::Options { grace: Duration::from_secs(state.cfg.gc.grace_secs), dry_run, full_scan };
            let report = super::gc::collect(state, store, opts, stop).await.map_err(|e| e.to_string())?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            Ok(Outcome {
                message: format!("{verb} {} blobs, {} bytes", report.blob_count, report.bytes),
                report: serde_json::to_value(&report).unwrap_or_default(),
            })
        }
        CLEANUP => {
            let repo = props.get("repositoryName").and_then(Value::as_str).filter(|s| *s != "*");
            let dry_run = props.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
            let report = super::cleanup::run_cleanup(state, repo, dry_run, actor, stop).await.map_err(|e| e.to_string())?;
            Ok(Outcome { message: report.summary(), report: serde_json::to_value(&report).unwrap_or_default() })
        }
        HEALTH_CHECK => {
            let repo = props.get("repositoryName").and_then(Value::as_str).filter(|s| *s != "*");
            let (message, report) = super::health_check::run(state, repo, stop).await.map_err(|e| e.to_string())?;
            Ok(Outcome { message, report })
        }
        UPLOAD_SWEEP => {
            let removed = crate::janitor::sweep(state, Duration::from_secs(state.cfg.uploads.ttl_secs), stop).await;
            Ok(Outcome { message: format!("removed {removed} abandoned uploads"), report: json!({ "removed": removed }) })
        }
        AUDIT_RETENTION => {
            let days = props.get("days").and_then(Value::as_u64).unwrap_or(state.cfg.security.audit_retention_days);
            let deleted = crate::janitor::expire_audit(state, days, stop).await.map_err(|e| e.to_string())?;
            Ok(Outcome { message: format!("deleted {deleted} audit events older than {days} days"), report: json!({ "deleted": deleted, "days": days }) })
        }
        other => match format_task(&state.formats, other) {
            Some((format, _)) => run_format_task(state, format.name(), other, props, stop).await,
            None => Err(format!("this node does not know task type {other}")),
        },
    }
}

/// Runs a format's task on each of its repositories (or the one named), in name order.
async fn run_format_task(state: &AppState, format: &str, type_id: &str, props: &Map<String, Value>, stop: &Stop) -> Result<Outcome, String> {
    let only = props.get("repositoryName").and_then(Value::as_str).filter(|s| *s != "*");
    let snap = state.registry.snapshot();
    let mut repos: Vec<_> = snap.repos.values().filter(|r| r.config.format == format && only.is_none_or(|n| r.config.name == n)).collect();
    if let Some(name) = only {
        if repos.is_empty() {
            return Err(format!("no {format} repository named {name}"));
        }
    }
    repos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    let mut total = 0;
    let mut per_repo = Map::new();
    let mut failures = Vec::new();
    for r in repos {
        if stop.requested() {
            break;
        }
        let min_age_ms = (state.cfg.uploads.ttl_secs as i64).saturating_mul(1000);
        let (ran, freed) = super::gc::freeing_beside(state, &r.config.blob_store, stop, |releaser| async move {
            let released = move |digests: Vec<String>| releaser.release(digests);
            r.repo.run_task(type_id, TaskRun { properties: props, stop, min_age_ms, released: &released }).await
        })
        .await;
        match ran {
            None => {}
            Some(Ok(report)) => {
                total += report.assets_deleted;
                let mut v = serde_json::to_value(&report).unwrap_or_default();
                // A freeing that stopped fails nothing: the removals are committed, and the next
                // compaction frees the rest.
                v["message"] = json!(format!("{}{}", report.message, freed.suffix()));
                v["freed"] = serde_json::to_value(&freed).unwrap_or_default();
                per_repo.insert(r.config.name.clone(), v);
            }
            Some(Err(e)) => failures.push(format!("{}: {e}{}", r.config.name, freed.suffix())),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let summary: Vec<String> = per_repo.iter().filter_map(|(name, r)| Some(format!("{name}: {}", r.get("message")?.as_str()?))).collect();
    Ok(Outcome {
        message: if summary.is_empty() { format!("{total} assets") } else { summary.join("; ") },
        report: json!({ "assetsDeleted": total, "repositories": per_repo }),
    })
}

/// Runs on every node: claims due tasks and runs them; keeps the stops of this node's runs.
pub struct Scheduler {
    pub node: String,
    local: Mutex<HashMap<String, LocalRun>>,
}

/// A run this node holds.
struct LocalRun {
    stop: Stop,
    /// Its type only reads ([`reads_only`]): read-only mode lets it run.
    reads_only: bool,
}

impl Scheduler {
    /// Asks every run this node holds to stop (each records itself as canceled), but those of
    /// types that only read: what a freeze asks.
    pub fn stop_writers(&self) {
        for run in self.local.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if !run.reads_only {
                run.stop.request();
            }
        }
    }
}

impl Default for Scheduler {
    fn default() -> Scheduler {
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        let id = uuid::Uuid::new_v4().simple().to_string();
        Scheduler { node: format!("{host}-{}", &id[..8]), local: Mutex::new(HashMap::new()) }
    }
}

/// Brings the built-in tasks in line with the configuration (their schedules and properties
/// come from it; whether they are enabled is the administrators' choice and stays).
pub async fn ensure_builtins(state: &AppState) -> Result<(), TaskError> {
    let cfg = &state.cfg;
    let defs = [
        (
            BUILTIN_COMPACT,
            "Compact blob stores",
            COMPACT,
            Frequency::cron(&cfg.gc.schedule).map_err(|e| ConfigError::new("gc.schedule", e))?,
            json!({"blobstoreName": "*", "dryRun": false}),
        ),
        (
            BUILTIN_CLEANUP,
            "Cleanup service",
            CLEANUP,
            Frequency::cron(&cfg.gc.cleanup_schedule).map_err(|e| ConfigError::new("gc.cleanup_schedule", e))?,
            json!({"repositoryName": "*", "dryRun": false}),
        ),
        (BUILTIN_UPLOAD_SWEEP, "Upload sweep", UPLOAD_SWEEP, Frequency::Interval(cfg.uploads.sweep_interval_secs.max(1)), json!({})),
        (BUILTIN_AUDIT_RETENTION, "Audit retention", AUDIT_RETENTION, Frequency::cron("0 30 2 * * *").expect("a valid expression"), json!({})),
        (
            BUILTIN_HEALTH_CHECK,
            "Verify repository integrity",
            HEALTH_CHECK,
            Frequency::cron(&cfg.health_check.schedule).map_err(|e| ConfigError::new("health_check.schedule", e))?,
            json!({"repositoryName": "*"}),
        ),
    ];
    for (id, name, type_id, freq, props) in defs {
        let schedule = freq.to_json().to_string();
        // Stored as validation leaves them (defaults filled in), as every other task's are: the
        // API compares what a client sends, validated, with what is stored.
        let properties = Value::Object(validate_properties(&state.formats, type_id, &props)?);
        let properties_text = properties.to_string();
        let now = now_millis();
        let next = freq.next_after(now);
        let res = state
            .db
            .write(move |c| {
                // Compared as JSON values, not text: key order is no difference.
                let stored_differs = |row: &TaskRow| serde_json::from_str::<Value>(&row.properties).ok().as_ref() != Some(&properties);
                let properties = &properties_text;
                match rows::get(c, id)? {
                    None => {
                        rows::insert(c, &TaskDef { id, name, type_id, properties, schedule: &schedule, enabled: true, next_run: next }, now)?;
                    }
                    // A row an older version wrote without a property added since (fullScan) is
                    // brought in line here once, then left alone.
                    Some(row) if row.schedule != schedule || stored_differs(&row) || row.name != name || (row.next_run.is_none() && next.is_some()) => {
                        rows::update(c, &TaskDef { id, name, type_id, properties, schedule: &schedule, enabled: row.enabled, next_run: next })?;
                    }
                    Some(_) => {}
                }
                Ok(())
            })
            .await;
        match res {
            // Another node starting at the same moment inserted it first.
            Err(DbError::Query(e)) if crate::db::is_unique_violation(&e) => {}
            other => other?,
        }
    }
    let orphans = state.db.write(|c| Ok(rows::disable_orphans(c)?)).await?;
    if !orphans.is_empty() {
        tracing::warn!(tasks = %orphans.join(", "), "disabled tasks scoped to a repository or blob store that does not exist: one created later under the name would be taken up by them");
    }
    Ok(())
}

/// Starts the scheduler loop of this node.
pub fn start(state: web::Data<AppState>) {
    super::prepare();
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            let now = now_millis();
            let due = match state.db.run(move |c| Ok(rows::due(c, now)?)).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "task scheduler: database");
                    continue;
                }
            };
            for id in due {
                if let Err(e) = launch(&state, &id, Launch { trigger: "schedule", actor: None, due_only: true, properties: None, ended: None }).await {
                    tracing::warn!(task = %id, error = %e, "task scheduler");
                }
            }
        }
    });
}

/// Runs a task now on this node (an administrator's "run"), unless it is running somewhere.
pub async fn run_now(state: &web::Data<AppState>, id: &str, actor: &str) -> Result<(), TaskError> {
    let key = id.to_string();
    if state.db.run(move |c| Ok(rows::get(c, &key)?)).await?.is_none() {
        return Err(TaskError::NotFound(id.to_string()));
    }
    let how = Launch { trigger: "manual", actor: Some(actor.to_string()), due_only: false, properties: None, ended: None };
    if launch(state, id, how).await? {
        Ok(())
    } else {
        Err(TaskError::Running(id.to_string()))
    }
}

/// Runs task `id` now with `properties` instead of its own, for this run only, and answers
/// how the run ended (the cleanup policies API's run: one repository or all, dry or not). It
/// is a run of the task like any other: it holds the task's lease ([`TaskError::Running`]
/// while the task runs on any node), runs on the lifecycle thread, is in the task's history
/// and the audit log, and stops when asked (`POST /tasks/{id}/stop`). A caller that leaves
/// does not stop it.
pub async fn run_now_and_wait(state: &web::Data<AppState>, id: &str, properties: Value, actor: &str) -> Result<Ended, TaskError> {
    let key = id.to_string();
    let Some(row) = state.db.run(move |c| Ok(rows::get(c, &key)?)).await? else { return Err(TaskError::NotFound(id.to_string())) };
    validate_properties(&state.formats, &row.type_id, &properties)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let how = Launch { trigger: "manual", actor: Some(actor.to_string()), due_only: false, properties: Some(properties), ended: Some(tx) };
    if !launch(state, id, how).await? {
        return Err(TaskError::Running(id.to_string()));
    }
    rx.await.map_err(|_| TaskError::Lost(id.to_string()))
}

/// Asks a running task to stop, wherever it runs.
pub async fn stop(state: &AppState, id: &str) -> Result<(), TaskError> {
    let key = id.to_string();
    let Some(row) = state.db.run(move |c| Ok(rows::get(c, &key)?)).await? else { return Err(TaskError::NotFound(id.to_string())) };
    let key = id.to_string();
    let now = now_millis();
    if !row.running(now) || !state.db.write(move |c| Ok(rows::request_stop(c, &key, now)?)).await? {
        return Err(TaskError::NotRunning(id.to_string()));
    }
    if let Some(r) = state.tasks.local.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
        r.stop.request();
    }
    Ok(())
}

/// How a run is asked for.
struct Launch {
    /// `schedule` or `manual`, for the history.
    trigger: &'static str,
    actor: Option<String>,
    /// Only if the task is enabled and due (the scheduler's claim).
    due_only: bool,
    /// This run's properties instead of the task's (checked like them).
    properties: Option<Value>,
    /// Told how the run ended.
    ended: Option<tokio::sync::oneshot::Sender<Ended>>,
}

/// Claims the task for a run on this node and starts the run; `false` if someone else holds it
/// (or, with `due_only`, it is no longer due).
async fn launch(state: &web::Data<AppState>, id: &str, how: Launch) -> Result<bool, TaskError> {
    // Scheduled runs wait: they are still due once the server is released.
    if let Some(f) = state.read_only.current() {
        let key = id.to_string();
        let row = state.db.run(move |c| Ok(rows::get(c, &key)?)).await?;
        if !row.is_some_and(|r| reads_only(&r.type_id)) {
            return if how.due_only { Ok(false) } else { Err(TaskError::ReadOnly(f.message())) };
        }
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let (key, node, rid, trig, due_only) = (id.to_string(), state.tasks.node.clone(), run_id.clone(), how.trigger, how.due_only);
    let now = now_millis();
    let claimed = state
        .db
        .write(move |c| Ok(rows::claim(c, &key, &rows::Claim { run_id: &rid, node: &node, trigger: trig, now, lease_until: now + LEASE_MS, due_only })?))
        .await?;
    if !claimed {
        return Ok(false);
    }
    let key = id.to_string();
    let Some(row) = state.db.run(move |c| Ok(rows::get(c, &key)?)).await? else { return Ok(false) };
    let stop = Stop::default();
    let local = LocalRun { stop: stop.clone(), reads_only: reads_only(&row.type_id) };
    state.tasks.local.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), local);
    let renewing = renew_lease(state, id, &run_id, &stop);
    let state = state.clone();
    super::in_background(move || async move {
        run(&state, row, run_id, now, stop, how, renewing).await;
    });
    Ok(true)
}

/// Renews the lease of a run until the returned sender is used or dropped; a stop requested on
/// any node, or the loss of the lease, reaches the run through `stop`. Started when the run is
/// claimed, not when its work first runs: a run on the `SCHED_IDLE` lifecycle thread may wait
/// for a CPU for longer than the lease on a machine that got busy, and another node would run
/// it too. Renewals run on the timekeeper's thread, where the run's work cannot hold them up.
fn renew_lease(state: &web::Data<AppState>, id: &str, run_id: &str, stop: &Stop) -> tokio::sync::oneshot::Sender<()> {
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let (state, id, run_id, stop) = (state.clone(), id.to_string(), run_id.to_string(), stop.clone());
    super::on_time(async move {
        loop {
            tokio::select! {
                _ = &mut done_rx => return,
                _ = tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 / 3)) => {}
            }
            let (k, r) = (id.clone(), run_id.clone());
            match state.db.write(move |c| Ok(rows::renew(c, &k, &r, now_millis() + LEASE_MS)?)).await {
                Ok(Some(false)) => {}
                Ok(Some(true)) | Ok(None) => stop.request(),
                Err(e) => tracing::warn!(task = %id, error = %e, "renewing a task's lease"),
            }
        }
    });
    done_tx
}

async fn run(state: &web::Data<AppState>, row: TaskRow, run_id: String, started: i64, stop: Stop, how: Launch, done_tx: tokio::sync::oneshot::Sender<()>) {
    let Launch { actor, properties, ended, .. } = how;
    let props: Value = properties.unwrap_or_else(|| serde_json::from_str(&row.properties).unwrap_or(Value::Null));
    let outcome = match validate_properties(&state.formats, &row.type_id, &props) {
        Ok(props) => execute(state, &row.type_id, &props, &stop, actor.as_deref()).await,
        Err(e) => Err(e.to_string()),
    };
    let _ = done_tx.send(());
    state.tasks.local.lock().unwrap_or_else(|e| e.into_inner()).remove(&row.id);
    let finished = now_millis();
    let (result, message, report) = match outcome {
        Ok(o) if stop.requested() => ("CANCELED", o.message, o.report),
        Ok(o) => ("OK", o.message, o.report),
        Err(e) => ("FAILED", e, Value::Null),
    };
    let report_text = report.to_string();
    let (id, rid, msg) = (row.id.clone(), run_id.clone(), message.clone());
    let res = state
        .db
        .write(move |c| {
            let next_run = |t: &TaskRow| schedule_of(t).and_then(|f| f.next_after(finished));
            rows::finish(
                c,
                &id,
                &rid,
                &Finished { result, message: &msg, report: &report_text, started_at: started, finished_at: finished, next_run: &next_run },
            )?;
            rows::trim_runs(c, &id, HISTORY)?;
            Ok(())
        })
        .await;
    if let Err(e) = res {
        tracing::error!(task = %row.id, error = %e, "recording a task's run");
    }
    tracing::info!(task = %row.id, r#type = %row.type_id, result, message = %message, duration_ms = finished - started, "task run");
    state.metrics.task_run(&row.type_id, result, (finished - started).max(0) as f64 / 1000.0);
    state.audit.record(AuditEvent {
        actor: actor.or_else(|| Some("system".into())),
        address: None,
        action: "task.run".into(),
        repository: None,
        object: Some(row.name.clone()),
        detail: json!({ "task": row.id, "type": row.type_id, "result": result, "message": message, "durationMs": finished - started, "node": state.tasks.node, "report": report }),
    });
    if let Some(tx) = ended {
        // The caller may have left; the run is recorded either way.
        let _ = tx.send(Ended { result, message, report });
    }
}

/// A task's stored properties as validation leaves them (defaults of properties added since the
/// row was written filled in), so that stored and requested properties compare like for like;
/// `None` when they no longer validate.
pub fn stored_properties(formats: &[std::sync::Arc<dyn Format>], row: &TaskRow) -> Option<Value> {
    let stored = serde_json::from_str::<Value>(&row.properties).ok()?;
    validate_properties(formats, &row.type_id, &stored).ok().map(Value::Object)
}

pub fn schedule_of(row: &TaskRow) -> Option<Frequency> {
    serde_json::from_str::<Value>(&row.schedule).ok().and_then(|v| Frequency::parse(&v).ok())
}

/// Starts a check of repository `name` now, as a run of the built-in health check task (its
/// lease, history and audit, on the lifecycle thread): the first check after it is enabled.
/// While the task runs (the scheduled check, or another repository's first one) this node
/// starts it once that run ends, trying for [`FIRST_CHECK_WAIT`]; the schedule checks the
/// repository anyway.
pub async fn start_health_check(state: &web::Data<AppState>, name: &str, actor: &str) -> Result<(), TaskError> {
    if launch(state, BUILTIN_HEALTH_CHECK, first_check(name, actor)).await? {
        return Ok(());
    }
    let (state, name, actor) = (state.clone(), name.to_string(), actor.to_string());
    actix_rt::spawn(async move {
        let deadline = tokio::time::Instant::now() + FIRST_CHECK_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(TICK).await;
            match launch(&state, BUILTIN_HEALTH_CHECK, first_check(&name, &actor)).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(repository = %name, error = %e, "starting a repository's first health check");
                    return;
                }
            }
        }
        tracing::info!(repository = %name, "the health check task stayed busy: the repository's first check waits for the schedule");
    });
    Ok(())
}

fn first_check(name: &str, actor: &str) -> Launch {
    Launch { trigger: "manual", actor: Some(actor.to_string()), due_only: false, properties: Some(json!({ "repositoryName": name })), ended: None }
}

/// How long a first health check waits for the task to be free (see [`start_health_check`]).
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(600);
