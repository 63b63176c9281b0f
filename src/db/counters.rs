//! How a change made by another process on the same SQLite file reaches this one (PostgreSQL's
//! nodes hear it from `db::notify`). Triggers count every change to what processes keep views
//! of in `change_counters` (migration `2026-12-05-000006_change_counters`); each process reads
//! the counters every [`POLL`] and reports the ones that moved as the [`Change`]s the listener
//! would have heard, so that one handler (`on_changes`) serves both databases.
//!
//! A process cannot tell its own changes from others' here (`own` is always false): it forgets
//! its views once more after its own writes to users and roles, which costs a password check.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::notify::Change;
use super::schema::{change_counters as cc, login_failures as lf};
use super::{AnyConnection, Db, DbError};

/// A quarter of the 2 s within which a change must act everywhere.
const POLL: Duration = Duration::from_millis(250);

/// Starts reading the counters of `db` (a SQLite database); ends when the receiver is dropped.
pub fn watch(db: Db) -> UnboundedReceiver<Change> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        let mut seen: Option<HashMap<String, i64>> = None;
        loop {
            tokio::time::sleep(POLL).await;
            if tx.is_closed() {
                return;
            }
            let read = db.run(|conn| Ok(cc::table.select((cc::kind, cc::seq)).load::<(String, i64)>(conn)?)).await;
            let now: HashMap<String, i64> = match read {
                Ok(rows) => rows.into_iter().collect(),
                Err(e) => {
                    // No Alive: after a while of this, the handler stops trusting its views.
                    tracing::warn!(error = %e, "reading the change counters");
                    continue;
                }
            };
            let first = seen.is_none();
            let moved: Vec<String> = match &seen {
                Some(before) => now.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect(),
                None => Vec::new(),
            };
            seen = Some(now);
            let mut changes = Vec::new();
            // What changed between this process's start and its first reading is in no
            // difference: the views it made meanwhile (a login remembered in the first quarter
            // second) are forgotten once, or a role narrowed then would stand until the login
            // cache time ran out (tests/sessions.rs saw exactly that).
            if first {
                changes.push(Change::Everything);
            }
            for kind in moved {
                match kind.as_str() {
                    "pause" => match db.run(|conn| pauses(conn, wharf_format::now_millis())).await {
                        Ok(p) => changes.extend(p.into_iter().map(|(user, client, until)| Change::Pause { user, client, until })),
                        Err(_) => changes.push(Change::Everything),
                    },
                    "config.generation" | "ldap.servers" | "read_only" | "security.anonymous" | "security.realms" => {
                        changes.push(Change::Setting { key: kind, own: false })
                    }
                    _ => changes.push(Change::Table { table: kind, own: false }),
                }
            }
            changes.push(Change::Alive(std::time::Instant::now()));
            for c in changes {
                if tx.send(c).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The pauses still running: (user, client, until).
pub(super) fn pauses(conn: &mut AnyConnection, now: i64) -> Result<Vec<(String, String, i64)>, DbError> {
    let rows: Vec<(String, String, Option<i64>)> =
        lf::table.filter(lf::paused_until.gt(now)).select((lf::username, lf::client, lf::paused_until)).load(conn)?;
    Ok(rows.into_iter().filter_map(|(u, c, until)| Some((u, c, until?))).collect())
}
