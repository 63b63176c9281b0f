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
    /// Only events older than this one (paging, newest first).
    pub before: Option<Cursor>,
    pub limit: i64,
}

/// Where a page ends: its last event's time and id. Events are newest first by (time, id): by
/// time, because several nodes number events in the order they reach the database, not in the
/// order they happened; and every index of the table serves that order (see the migration
/// `2026-12-08-000044_audit_order`), so a page reads its own rows whatever the filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub id: i64,
}

impl Cursor {
    /// The continuation token of a page ending at this event.
    pub fn token(&self) -> String {
        format!("{}.{}", self.at, self.id)
    }

    /// A token [`Cursor::token`] made.
    pub fn parse(token: &str) -> Option<Cursor> {
        let (at, id) = token.split_once('.')?;
        Some(Cursor { at: at.parse().ok()?, id: id.parse().ok()? })
    }
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

/// The cursor of event `id` (a continuation token of before the tokens carried the time), if
/// it is still kept.
pub fn cursor_of(conn: &mut AnyConnection, id: i64) -> Result<Option<Cursor>, DbError> {
    let at: Option<i64> = audit_events::table.find(id).select(audit_events::at).get_result(conn).optional()?;
    Ok(at.map(|at| Cursor { at, id }))
}

/// Newest first.
pub fn query(conn: &mut AnyConnection, q: &AuditQuery) -> Result<Vec<AuditRow>, DbError> {
    let mut s = audit_events::table.into_boxed();
    if let Some(a) = &q.actor {
        s = s.filter(audit_events::actor.eq(a.clone()));
    }
    if let Some(a) = &q.action {
        match a.strip_suffix('*') {
            // Not a range of `audit_events_action`: a prefix spans several actions, whose events
            // SQLite would sort (without statistics it cannot know how many). A LIKE no index
            // serves, so the page is read along `audit_events_at`, in order, as far as it takes
            // to fill it: short for the prefixes the console suggests (`npm.*`), a walk of the
            // log for one nothing matches.
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
    if let Some(Cursor { at, id }) = q.before {
        // `at <= ?` bounds the index range; the rest skips what the last page showed.
        s = s.filter(audit_events::at.le(at)).filter(audit_events::at.lt(at).or(audit_events::id.lt(id)));
    }
    Ok(s.order((audit_events::at.desc(), audit_events::id.desc())).limit(q.limit).select(AuditRow::as_select()).load(conn)?)
}

/// Deletes up to `limit` of the oldest events from before `at`; how many went.
pub fn delete_some_before(conn: &mut AnyConnection, at: i64, limit: i64) -> Result<usize, DbError> {
    let ids: Vec<i64> = audit_events::table.filter(audit_events::at.lt(at)).order(audit_events::at.asc()).limit(limit).select(audit_events::id).load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(audit_events::table.filter(audit_events::id.eq_any(ids))).execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::{query, AuditQuery, Cursor};
    use crate::db::plans::{assert_plan, with_db};

    fn event(c: &mut crate::db::AnyConnection, at: i64, actor: &str, action: &str, repository: &str) {
        super::insert(c, at, Some(actor), None, action, Some(repository), None, "null").unwrap();
    }

    /// Newest first by time, then id (events reach the database out of time order when several
    /// nodes write them), and paging one event at a time through the tokens gives each once.
    #[test]
    fn pages_go_newest_first_by_time_then_id_and_repeat_nothing() {
        let ((all, paged), _) = with_db(|c| {
            for (at, n) in [(30, "a"), (10, "b"), (30, "c"), (20, "d"), (30, "e"), (5, "f")] {
                event(c, at, n, "docker.push", "r");
            }
            let names = |rows: Vec<super::AuditRow>| rows.into_iter().map(|r| (r.at, r.actor.unwrap())).collect::<Vec<_>>();
            let all = names(query(c, &AuditQuery { limit: 100, ..Default::default() }).unwrap());
            let mut paged = Vec::new();
            let mut before = None;
            loop {
                let rows = query(c, &AuditQuery { limit: 2, before, ..Default::default() }).unwrap();
                let Some(last) = rows.last() else { break };
                before = Some(Cursor::parse(&Cursor { at: last.at, id: last.id }.token()).unwrap());
                paged.extend(names(rows));
            }
            (all, paged)
        });
        let expected: Vec<(i64, String)> = [(30, "e"), (30, "c"), (30, "a"), (20, "d"), (10, "b"), (5, "f")].map(|(t, n)| (t, n.to_string())).into();
        assert_eq!(all, expected);
        assert_eq!(paged, expected);
    }

    #[test]
    fn an_action_prefix_matches_whole_segments_only_as_written() {
        let (found, _) = with_db(|c| {
            for (at, action) in [(1, "npm.publish"), (2, "npmXother"), (3, "npm"), (4, "npm.unpublish"), (5, "pypi.upload")] {
                event(c, at, "admin", action, "r");
            }
            query(c, &AuditQuery { action: Some("npm.*".into()), limit: 100, ..Default::default() }).unwrap()
        });
        assert_eq!(found.into_iter().map(|r| r.action).collect::<Vec<_>>(), ["npm.unpublish", "npm.publish"]);
    }

    /// Whatever the filter, a page is read in order from an index: no sort of every event in a
    /// time window (0.5 s for a year at a million events) or of one actor's, and no walk of the
    /// table for an action or a repository (an action prefix walks the time index, in order).
    #[test]
    fn every_filter_reads_a_page_in_order_from_an_index() {
        let cases: [(&str, AuditQuery); 7] = [
            ("audit_events_at", AuditQuery { since: Some(0), until: Some(i64::MAX), ..Default::default() }),
            ("audit_events_at", AuditQuery::default()),
            ("audit_events_at", AuditQuery { before: Some(Cursor { at: 5, id: 9 }), ..Default::default() }),
            ("audit_events_actor", AuditQuery { actor: Some("admin".into()), since: Some(0), ..Default::default() }),
            ("audit_events_action", AuditQuery { action: Some("docker.push".into()), ..Default::default() }),
            ("audit_events_at", AuditQuery { action: Some("npm.*".into()), before: Some(Cursor { at: 5, id: 9 }), ..Default::default() }),
            ("audit_events_repository", AuditQuery { repository: Some("r".into()), until: Some(9), ..Default::default() }),
        ];
        for (index, q) in cases {
            let (_, plans) = with_db(|c| query(c, &AuditQuery { limit: 101, ..q.clone() }).unwrap());
            assert_plan(&plans, &format!("INDEX {index}"), &["TEMP B-TREE"]);
            assert!(!plans.iter().any(|p| p.ends_with("SCAN audit_events")), "{q:?}: {plans:#?}");
        }
    }
}
