//! Download tracking: each asset's last download time and count, for cleanup policies'
//! `criteriaLastDownloaded` and the components API.
//!
//! A download must not cost the request a database write (pulls are the hot path), so formats
//! report to [`DownloadLog::record`], which only adds to a map in memory; [`DownloadLog::flush`]
//! writes what gathered in one write transaction, every [`FLUSH_INTERVAL`] and at shutdown (or
//! sooner when [`MAX_PENDING`] assets wait). A crash loses at most one interval of counts, which
//! only makes content look less recently used for that while: counts are statistics, never
//! what decides whether a pull works.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use diesel::prelude::*;
use wharf_format::now_millis;

use crate::db::schema::assets;
use crate::db::{Db, DbError};

/// How long counts wait in memory before they are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Distinct assets waiting that make the next flush come at once.
const MAX_PENDING: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    count: i64,
    last: i64,
}

pub struct DownloadLog {
    db: Db,
    pending: Mutex<HashMap<(i64, String), Pending>>,
    /// Wakes the flusher early when the map grows large.
    full: tokio::sync::Notify,
}

impl DownloadLog {
    pub fn new(db: Db) -> DownloadLog {
        DownloadLog { db, pending: Mutex::default(), full: tokio::sync::Notify::new() }
    }

    /// Writes the counts gathered so far, in one transaction. Counts taken out of memory go
    /// back when the write fails, so the next flush tries again.
    pub async fn flush(&self) -> Result<usize, DbError> {
        let batch: Vec<((i64, String), Pending)> = {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *map).into_iter().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        let rows = std::sync::Arc::new(batch);
        let written = rows.clone();
        let res = self
            .db
            .write(move |conn| {
                for ((repo, path), p) in written.iter() {
                    // An asset deleted meanwhile updates nothing, which is right.
                    let asset = assets::table.filter(assets::repository_id.eq(*repo).and(assets::path.eq(path)));
                    diesel::update(asset).set(assets::download_count.eq(assets::download_count + p.count)).execute(conn)?;
                    // Never back in time: another node may have flushed a later download.
                    diesel::update(asset.filter(assets::last_downloaded.is_null().or(assets::last_downloaded.lt(p.last))))
                        .set(assets::last_downloaded.eq(p.last))
                        .execute(conn)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for ((repo, path), p) in rows.iter() {
                add(&mut map, *repo, path, *p);
            }
            return Err(e);
        }
        Ok(n)
    }

    /// Flushes every [`FLUSH_INTERVAL`], or at once when many assets wait; runs for the life of
    /// the server.
    pub async fn run(&self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = self.full.notified() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "writing download counts; kept for the next flush");
            }
        }
    }
}

fn add(map: &mut HashMap<(i64, String), Pending>, repo: i64, path: &str, p: Pending) {
    match map.get_mut(&(repo, path.to_string())) {
        Some(e) => {
            e.count += p.count;
            e.last = e.last.max(p.last);
        }
        None => {
            map.insert((repo, path.to_string()), p);
        }
    }
}

impl wharf_format::Downloads for DownloadLog {
    fn record(&self, repo: i64, path: &str) {
        let len = {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            add(&mut map, repo, path, Pending { count: 1, last: now_millis() });
            map.len()
        };
        if len >= MAX_PENDING {
            self.full.notify_one();
        }
    }
}
