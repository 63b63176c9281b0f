//! Scheduled tasks (`tasks`) and their run history (`task_runs`). A run is claimed with a
//! compare-and-swap on the task's row (a lease), so that of several nodes sharing the database
//! exactly one runs a due task, and another takes over once the runner's lease lapses.

use diesel::prelude::*;

use super::schema::{task_runs, tasks};
use super::AnyConnection;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub id: String,
    pub name: String,
    pub type_id: String,
    pub properties: String,
    pub schedule: String,
    pub enabled: bool,
    pub next_run: Option<i64>,
    pub run_id: Option<String>,
    pub running_node: Option<String>,
    pub lease_until: Option<i64>,
    pub stop_requested: bool,
    pub last_run: Option<i64>,
    pub last_result: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub last_message: Option<String>,
    pub created_at: i64,
}

impl TaskRow {
    /// Running now: claimed, and its runner's lease has not lapsed.
    pub fn running(&self, now: i64) -> bool {
        self.run_id.is_some() && self.lease_until.is_some_and(|l| l >= now)
    }
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = task_runs)]
pub struct RunRow {
    pub id: String,
    pub task_id: String,
    pub node: String,
    pub trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub result: String,
    pub message: String,
    pub report: String,
}

/// What defines a task (everything but its run state).
pub struct TaskDef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub type_id: &'a str,
    pub properties: &'a str,
    pub schedule: &'a str,
    pub enabled: bool,
    pub next_run: Option<i64>,
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<TaskRow>> {
    tasks::table.order(tasks::name.asc()).select(TaskRow::as_select()).load(conn)
}

/// The tasks whose property `key` names `name` (`repositoryName`: a repository,
/// `blobstoreName`: a blob store), in name order: they go with what they name.
pub fn scoped_to(conn: &mut AnyConnection, key: &str, name: &str) -> QueryResult<Vec<TaskRow>> {
    Ok(list(conn)?
        .into_iter()
        .filter(|t| serde_json::from_str::<serde_json::Value>(&t.properties).is_ok_and(|p| p.get(key).and_then(serde_json::Value::as_str) == Some(name)))
        .collect())
}

pub fn get(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<TaskRow>> {
    tasks::table.find(id).select(TaskRow::as_select()).get_result(conn).optional()
}

pub fn insert(conn: &mut AnyConnection, t: &TaskDef, now: i64) -> QueryResult<usize> {
    diesel::insert_into(tasks::table)
        .values((
            tasks::id.eq(t.id),
            tasks::name.eq(t.name),
            tasks::type_id.eq(t.type_id),
            tasks::properties.eq(t.properties),
            tasks::schedule.eq(t.schedule),
            tasks::enabled.eq(t.enabled),
            tasks::next_run.eq(t.next_run),
            tasks::stop_requested.eq(false),
            tasks::created_at.eq(now),
        ))
        .execute(conn)
}

/// Changes a task's definition; its run state stays.
pub fn update(conn: &mut AnyConnection, t: &TaskDef) -> QueryResult<usize> {
    diesel::update(tasks::table.find(t.id))
        .set((
            tasks::name.eq(t.name),
            tasks::properties.eq(t.properties),
            tasks::schedule.eq(t.schedule),
            tasks::enabled.eq(t.enabled),
            tasks::next_run.eq(t.next_run),
        ))
        .execute(conn)
}

/// Disables the enabled tasks scoped to a repository or a blob store that does not exist
/// (written before their scope was checked, or left by a deletion before deletions took their
/// tasks along): run, one would take up whatever is created later under the name. Answers
/// their names.
pub fn disable_orphans(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    use super::schema::{blob_stores, repositories};
    let repos: Vec<String> = repositories::table.select(repositories::name).load(conn)?;
    let stores: Vec<String> = blob_stores::table.select(blob_stores::name).load(conn)?;
    let mut disabled = Vec::new();
    for t in list(conn)?.into_iter().filter(|t| t.enabled) {
        let props: serde_json::Value = serde_json::from_str(&t.properties).unwrap_or_default();
        let names = |key: &str, known: &[String]| props.get(key).and_then(serde_json::Value::as_str).is_some_and(|n| n != "*" && !known.iter().any(|k| k == n));
        if names("repositoryName", &repos) || names("blobstoreName", &stores) {
            diesel::update(tasks::table.find(&t.id)).set((tasks::enabled.eq(false), tasks::next_run.eq(None::<i64>))).execute(conn)?;
            disabled.push(t.name);
        }
    }
    Ok(disabled)
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(task_runs::table.filter(task_runs::task_id.eq(id))).execute(conn)?;
    diesel::delete(tasks::table.find(id)).execute(conn)
}

/// Enabled tasks due at `now` that nobody holds.
pub fn due(conn: &mut AnyConnection, now: i64) -> QueryResult<Vec<String>> {
    tasks::table
        .filter(tasks::enabled.eq(true))
        .filter(tasks::next_run.le(now))
        .filter(tasks::lease_until.is_null().or(tasks::lease_until.lt(now)))
        .select(tasks::id)
        .load(conn)
}

/// The names of the tasks running now, on any node, but those of the types `except`.
pub fn running(conn: &mut AnyConnection, now: i64, except: &[&str]) -> QueryResult<Vec<String>> {
    tasks::table.filter(tasks::run_id.is_not_null()).filter(tasks::lease_until.ge(now)).filter(tasks::type_id.ne_all(except)).select(tasks::name).load(conn)
}

/// A run about to start.
pub struct Claim<'a> {
    pub run_id: &'a str,
    pub node: &'a str,
    /// `schedule` or `manual`.
    pub trigger: &'a str,
    pub now: i64,
    pub lease_until: i64,
    /// Only if the task is enabled and due (a scheduled run; a manual one runs regardless).
    pub due_only: bool,
}

/// Makes `run_id` (on `node`) the task's one run until `lease_until`, if nobody holds it (and,
/// with `due_only`, if it is due); records the run. A run whose runner's lease lapsed (its node
/// died) is recorded as interrupted. `false` if another claim won.
pub fn claim(conn: &mut AnyConnection, id: &str, c: &Claim) -> QueryResult<bool> {
    let Claim { run_id, node, trigger, now, lease_until, due_only } = *c;
    let Some(row) = get(conn, id)? else { return Ok(false) };
    if row.running(now) || (due_only && !(row.enabled && row.next_run.is_some_and(|n| n <= now))) {
        return Ok(false);
    }
    if let Some(old) = &row.run_id {
        diesel::update(task_runs::table.find(old).filter(task_runs::finished_at.is_null()))
            .set((task_runs::result.eq("INTERRUPTED"), task_runs::finished_at.eq(now), task_runs::message.eq("its node stopped renewing the run's lease")))
            .execute(conn)?;
    }
    diesel::update(tasks::table.find(id))
        .set((tasks::run_id.eq(run_id), tasks::running_node.eq(node), tasks::lease_until.eq(lease_until), tasks::stop_requested.eq(false)))
        .execute(conn)?;
    diesel::insert_into(task_runs::table)
        .values((
            task_runs::id.eq(run_id),
            task_runs::task_id.eq(id),
            task_runs::node.eq(node),
            task_runs::trigger.eq(trigger),
            task_runs::started_at.eq(now),
            task_runs::result.eq("RUNNING"),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Extends the run's lease; `None` if the run is no longer the task's (its lease lapsed and
/// another node took over), else whether a stop was requested.
pub fn renew(conn: &mut AnyConnection, id: &str, run_id: &str, lease_until: i64) -> QueryResult<Option<bool>> {
    let n = diesel::update(tasks::table.find(id).filter(tasks::run_id.eq(run_id))).set(tasks::lease_until.eq(lease_until)).execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    tasks::table.find(id).select(tasks::stop_requested).get_result(conn).map(Some)
}

pub struct Finished<'a> {
    pub result: &'a str,
    pub message: &'a str,
    pub report: &'a str,
    pub started_at: i64,
    pub finished_at: i64,
    /// The next run, from the task as it is now (an administrator may have changed or
    /// disabled it while it ran).
    pub next_run: &'a dyn Fn(&TaskRow) -> Option<i64>,
}

/// Records the run's end and releases the task (if the run is still the task's).
pub fn finish(conn: &mut AnyConnection, id: &str, run_id: &str, f: &Finished) -> QueryResult<()> {
    let next_run = match get(conn, id)? {
        Some(row) if row.enabled => (f.next_run)(&row),
        _ => None,
    };
    diesel::update(task_runs::table.find(run_id))
        .set((task_runs::result.eq(f.result), task_runs::finished_at.eq(f.finished_at), task_runs::message.eq(f.message), task_runs::report.eq(f.report)))
        .execute(conn)?;
    diesel::update(tasks::table.find(id).filter(tasks::run_id.eq(run_id)))
        .set((
            tasks::run_id.eq(None::<String>),
            tasks::running_node.eq(None::<String>),
            tasks::lease_until.eq(None::<i64>),
            tasks::stop_requested.eq(false),
            tasks::last_run.eq(f.started_at),
            tasks::last_result.eq(f.result),
            tasks::last_duration_ms.eq(f.finished_at - f.started_at),
            tasks::last_message.eq(f.message),
            tasks::next_run.eq(next_run),
        ))
        .execute(conn)?;
    Ok(())
}

/// Asks the task's current run to stop; `false` if it is not running.
pub fn request_stop(conn: &mut AnyConnection, id: &str, now: i64) -> QueryResult<bool> {
    let n = diesel::update(tasks::table.find(id).filter(tasks::run_id.is_not_null()).filter(tasks::lease_until.ge(now)))
        .set(tasks::stop_requested.eq(true))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn runs(conn: &mut AnyConnection, id: &str, limit: i64) -> QueryResult<Vec<RunRow>> {
    task_runs::table.filter(task_runs::task_id.eq(id)).order(task_runs::started_at.desc()).limit(limit).select(RunRow::as_select()).load(conn)
}

/// Keeps the newest `keep` runs of a task.
pub fn trim_runs(conn: &mut AnyConnection, id: &str, keep: i64) -> QueryResult<usize> {
    let cutoff: Option<i64> = task_runs::table
        .filter(task_runs::task_id.eq(id))
        .order(task_runs::started_at.desc())
        .offset(keep)
        .select(task_runs::started_at)
        .first(conn)
        .optional()?;
    match cutoff {
        Some(c) => {
            diesel::delete(task_runs::table.filter(task_runs::task_id.eq(id)).filter(task_runs::started_at.le(c)).filter(task_runs::finished_at.is_not_null()))
                .execute(conn)
        }
        None => Ok(0),
    }
}
