//! The audit log's rows. Append-only: rows are inserted, read and, past retention, deleted.

use diesel::prelude::*;

use super::schema::audit_events;
use super::{AnyConnection, DbError};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub address: Option<String>,
    pub action: String,
    pub repository: Option<String>,
    pub object: Option<String>,
    pub detail: String,
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// Exact, or a prefix when it ends in `*` (`npm.*`).
    pub action: Option<String>,
    pub repository: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events older than this id (paging, newest first).
    pub before: Option<i64>,
    pub limit: i64,
}

#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &mut AnyConnection,
    at: i64,
    actor: Option<&str>,
    address: Option<&str>,
    action: &str,
    repository: Option<&str>,
    object: Option<&str>,
    detail: &str,
) -> Result<(), DbError> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::at.eq(at),
            audit_events::actor.eq(actor),
            audit_events::address.eq(address),
            audit_events::action.eq(action),
            audit_events::repository.eq(repository),
            audit_events::object.eq(object),
            audit_events::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// Newest first.
pub fn query(conn: &mut AnyConnection, q: &AuditQuery) -> Result<Vec<AuditRow>, DbError> {
    let mut s = audit_events::table.into_boxed();
    if let Some(a) = &q.actor {
        s = s.filter(audit_events::actor.eq(a.clone()));
    }
    if let Some(a) = &q.action {
        match a.strip_suffix('*') {
            Some(prefix) => {
                let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                s = s.filter(audit_events::action.like(format!("{escaped}%")).escape('\\'));
            }
            None => s = s.filter(audit_events::action.eq(a.clone())),
        }
    }
    if let Some(r) = &q.repository {
        s = s.filter(audit_events::repository.eq(r.clone()));
    }
    if let Some(t) = q.since {
        s = s.filter(audit_events::at.ge(t));
    }
    if let Some(t) = q.until {
        s = s.filter(audit_events::at.lt(t));
    }
    if let Some(b) = q.before {
        s = s.filter(audit_events::id.lt(b));
    }
    Ok(s.order(audit_events::id.desc()).limit(q.limit).select(AuditRow::as_select()).load(conn)?)
}

/// Deletes up to `limit` of the oldest events from before `at`; how many went.
pub fn delete_some_before(conn: &mut AnyConnection, at: i64, limit: i64) -> Result<usize, DbError> {
    let ids: Vec<i64> = audit_events::table.filter(audit_events::at.lt(at)).order(audit_events::at.asc()).limit(limit).select(audit_events::id).load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(audit_events::table.filter(audit_events::id.eq_any(ids))).execute(conn)?)
}
