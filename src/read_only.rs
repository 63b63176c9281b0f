//! Read-only mode (Nexus's "freeze"): an administrator stops every write, for instance to take
//! a backup of the database and the blob stores that agree with each other, and releases it
//! afterwards.
//!
//! While frozen:
//! - each format refuses the requests that would write, in its protocol's shape, before their
//!   bytes are sent (`Format::refuse_write`); reads, pulls and installs go on, and so do
//!   proxies' answers from their cache (a proxy cannot cache what it has not got);
//! - the admin API refuses its changes (503, code `read_only`), except signing in and out,
//!   and releasing;
//! - any metadata write that got past those is refused when it commits (`db::read_only::guard`);
//! - tasks do not start (scheduled ones run once released), and runs in progress are asked to
//!   stop: the freeze answers once no task runs on any node, or says which still do; but a
//!   repository's health check, which only reads, starts and runs on;
//! - download counts wait in memory (bounded, see `lifecycle::downloads`).
//!
//! The audit log and sign-ins still write: they do not touch content.
//!
//! The state lives in the database (`db::read_only`) so that every node of a cluster agrees;
//! each node keeps a copy for the early refusals and refreshes it when it hears the setting
//! change.

use std::sync::RwLock;
use std::time::Duration;

use actix_web::web;

pub use crate::db::read_only::Freeze;
use crate::db::{read_only as rows, Db, DbError};
use crate::state::AppState;

/// How long a freeze waits for task runs (on any node) to stop before it answers anyway.
pub const TASKS_STOP_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct ReadOnly {
    current: RwLock<Option<Freeze>>,
}

impl ReadOnly {
    pub fn current(&self) -> Option<Freeze> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, f: Option<Freeze>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Rereads the database's word; whether the node is frozen now.
    pub async fn refresh(&self, db: &Db) -> Result<bool, DbError> {
        let f = db.run(rows::load).await?;
        let frozen = f.is_some();
        self.set(f);
        Ok(frozen)
    }
}

/// Freezes the server (every node) and asks running tasks to stop; answers once none runs, or
/// after [`TASKS_STOP_WAIT`] with the ones that still do.
pub async fn freeze(state: &web::Data<AppState>, reason: String, by: String) -> Result<(Freeze, Vec<String>), DbError> {
    let f = Freeze { reason, by, at: wharf_format::now_millis() };
    let stored = f.clone();
    state.db.write(move |c| rows::store(c, Some(&stored))).await?;
    state.read_only.set(Some(f.clone()));
    state.tasks.stop_writers();
    let deadline = tokio::time::Instant::now() + TASKS_STOP_WAIT;
    loop {
        let readers = crate::lifecycle::tasks::READERS;
        let running = state.db.run(move |c| Ok(crate::db::tasks::running(c, wharf_format::now_millis(), readers)?)).await?;
        if running.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok((f, running));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn release(state: &web::Data<AppState>) -> Result<(), DbError> {
    state.db.write(|c| rows::store(c, None)).await?;
    state.read_only.set(None);
    Ok(())
}

/// After hearing that the setting changed (or that this node may have missed changes).
pub async fn on_change(state: &AppState) {
    match state.read_only.refresh(&state.db).await {
        Ok(true) => state.tasks.stop_writers(),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "rereading read-only mode"),
    }
}

#[cfg(test)]
mod tests {
    use wharf_format::{MetaError, MetaStore, Write};

    use super::*;
    use crate::db::meta::SqlMeta;

    /// The last line of defence: a node that has not heard of the freeze yet (its copy says
    /// "writable") still cannot commit, because the check is inside the write's transaction.
    #[actix_rt::test]
    async fn a_metadata_write_is_refused_inside_its_transaction_while_frozen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let meta = SqlMeta::new(db.clone());
        let write = || vec![Write::Delete { repo: 1, path: "/nothing".into() }];
        meta.commit(vec![], write()).await.unwrap();

        let f = Freeze { reason: "nightly backup".into(), by: "admin".into(), at: 0 };
        db.write(move |c| rows::store(c, Some(&f))).await.unwrap();
        match meta.commit(vec![], write()).await {
            Err(MetaError::ReadOnly(m)) => assert!(m.contains("read-only mode") && m.contains("(nightly backup)"), "{m}"),
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
        assert_eq!(db.run(rows::load).await.unwrap().map(|f| f.by), Some("admin".to_string()));

        db.write(|c| rows::store(c, None)).await.unwrap();
        assert_eq!(db.run(rows::load).await.unwrap(), None);
        meta.commit(vec![], write()).await.unwrap();
    }
}
