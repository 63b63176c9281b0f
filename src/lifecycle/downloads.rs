//! Download tracking: each asset's last download time and count, for cleanup policies'
//! `criteriaLastDownloaded` and the components API.
//!
//! A download must not cost the request a database write (pulls are the hot path), so formats
//! report to [`DownloadLog::record`], which only adds to a map in memory; [`DownloadLog::flush`]
//! writes what gathered every [`FLUSH_INTERVAL`] and at shutdown (or sooner when
//! [`FLUSH_EARLY`] assets wait). A crash loses at most one interval of counts, which only makes
//! content look less recently used for that while: counts are statistics, never what decides
//! whether a pull works.
//!
//! A flush writes in [`CHUNK`]s, one transaction each, in (repository, path) order. Short
//! transactions keep the assets they touch (hot ones, by definition) locked only briefly, so
//! commits to those assets are not held up or made to retry behind a long flush, and on SQLite
//! other writers get their turn between chunks; one order for every node means two nodes
//! flushing the same assets wait for each other instead of deadlocking.
//!
//! Memory is bounded: at most [`MAX_PENDING`] assets wait. When the map is full (the database
//! has been failing for a while, or more distinct assets are downloaded per interval than a
//! flush can write) a download of an asset that is not waiting already is not counted; the
//! flusher logs how many were dropped. Downloads of waiting assets are always counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use wharf_format::now_millis;

use crate::db::schema::assets;
use crate::db::{Db, DbError};

/// How long counts wait in memory before they are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Distinct assets waiting that make the next flush come at once.
const FLUSH_EARLY: usize = 10_000;
/// Distinct assets that may wait at most; downloads of others are dropped meanwhile.
pub const MAX_PENDING: usize = 100_000;
/// Assets written per transaction.
pub const CHUNK: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    count: i64,
    last: i64,
}

type Key = (i64, String);

pub struct DownloadLog {
    db: Db,
    max_pending: usize,
    pending: Mutex<HashMap<Key, Pending>>,
    /// Downloads not counted because the map was full, since the flusher last said so.
    dropped: AtomicU64,
    /// Wakes the flusher early when the map grows large.
    full: tokio::sync::Notify,
}

impl DownloadLog {
    pub fn new(db: Db) -> DownloadLog {
        DownloadLog::with_capacity(db, MAX_PENDING)
    }

    /// A log that keeps at most `max_pending` assets waiting (tests use a small one).
    pub fn with_capacity(db: Db, max_pending: usize) -> DownloadLog {
        DownloadLog { db, max_pending: max_pending.max(1), pending: Mutex::default(), dropped: AtomicU64::new(0), full: tokio::sync::Notify::new() }
    }

    /// Distinct assets waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Downloads dropped since this was last asked (the flusher asks, and logs them).
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the counts gathered so far, [`CHUNK`] assets per transaction, in (repository,
    /// path) order; how many assets it wrote. When a chunk fails, it and the chunks after it go
    /// back to the map (as far as the map has room) for the next flush, and the error is returned.
    pub async fn flush(&self) -> Result<usize, DbError> {
        let batch = sorted(std::mem::take(&mut *self.lock()));
        let mut written = 0;
        let mut chunks = batch.chunks(CHUNK);
        while let Some(chunk) = chunks.next() {
            let rows: Arc<[(Key, Pending)]> = chunk.into();
            let res = self.db.write({
                let rows = rows.clone();
                move |conn| {
                    for ((repo, path), p) in rows.iter() {
                        write_one(conn, *repo, path, *p)?;
                    }
                    Ok(())
                }
            });
            if let Err(e) = res.await {
                let mut map = self.lock();
                let mut dropped = 0;
                for ((repo, path), p) in chunk.iter().chain(chunks.flatten()) {
                    if !add(&mut map, self.max_pending, *repo, path, *p) {
                        dropped += p.count as u64;
                    }
                }
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
                return Err(e);
            }
            written += chunk.len();
        }
        Ok(written)
    }

    /// Flushes every [`FLUSH_INTERVAL`], or at once when many assets wait; runs for the life of
    /// the server. Not while `paused()` says so (read-only mode): the counts wait, within the
    /// map's bound.
    pub async fn run(&self, paused: impl Fn() -> bool) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = self.full.notified() => {}
            }
            if paused() {
                continue;
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "writing download counts; kept for the next flush");
            }
            let dropped = self.take_dropped();
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    max_pending = self.max_pending,
                    "download counts dropped: downloads of assets not already waiting were not counted while {} assets waited to be written",
                    self.max_pending
                );
            }
        }
    }
}

/// One asset's counts in one statement: the count added, the last download moved forward only
/// (another node may have written a later one). An asset deleted meanwhile updates nothing,
/// which is right.
fn write_one(conn: &mut crate::db::AnyConnection, repo: i64, path: &str, p: Pending) -> Result<(), DbError> {
    use diesel::dsl::case_when;
    use diesel::sql_types::{BigInt, Nullable};
    let later = assets::last_downloaded.is_null().or(assets::last_downloaded.lt(p.last).assume_not_null());
    diesel::update(assets::table.filter(assets::repository_id.eq(repo).and(assets::path.eq(path))))
        .set((
            assets::download_count.eq(assets::download_count + p.count),
            assets::last_downloaded.eq(case_when(later, p.last.into_sql::<Nullable<BigInt>>()).otherwise(assets::last_downloaded)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The map's entries in (repository, path) order: the order in which every node takes the
/// assets' row locks.
fn sorted(map: HashMap<Key, Pending>) -> Vec<(Key, Pending)> {
    let mut v: Vec<(Key, Pending)> = map.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Adds `p` to the asset's waiting counts; `false` (nothing added) when the asset is not
/// waiting and the map already holds `max` assets.
fn add(map: &mut HashMap<Key, Pending>, max: usize, repo: i64, path: &str, p: Pending) -> bool {
    // The key is built only for an asset not waiting yet: a download of a waiting one (the
    // common case: the same hot assets) costs no allocation.
    if let Some(e) = map.get_mut(&(repo, path.to_string())) {
        e.count += p.count;
        e.last = e.last.max(p.last);
        return true;
    }
    if map.len() >= max {
        return false;
    }
    map.insert((repo, path.to_string()), p);
    true
}

impl wharf_format::Downloads for DownloadLog {
    fn record(&self, repo: i64, path: &str) {
        let (len, counted) = {
            let mut map = self.lock();
            let counted = add(&mut map, self.max_pending, repo, path, Pending { count: 1, last: now_millis() });
            (map.len(), counted)
        };
        if !counted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if len >= FLUSH_EARLY.min(self.max_pending) {
            self.full.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_bounded_and_waiting_assets_still_count_when_it_is_full() {
        let mut map = HashMap::new();
        let one = Pending { count: 1, last: 5 };
        assert!(add(&mut map, 2, 1, "a", one));
        assert!(add(&mut map, 2, 1, "b", one));
        assert!(!add(&mut map, 2, 1, "c", one), "a third asset does not fit");
        assert!(add(&mut map, 2, 1, "a", Pending { count: 2, last: 9 }), "a waiting asset still counts");
        assert_eq!(map.len(), 2);
        assert_eq!(map[&(1, "a".to_string())], Pending { count: 3, last: 9 });
    }

    #[test]
    fn a_flush_takes_assets_in_repository_and_path_order() {
        let mut map = HashMap::new();
        for (repo, path) in [(2, "a"), (1, "z"), (1, "b"), (10, "a"), (1, "B")] {
            add(&mut map, 100, repo, path, Pending { count: 1, last: 1 });
        }
        let keys: Vec<(i64, String)> = sorted(map).into_iter().map(|(k, _)| k).collect();
        let want: Vec<(i64, String)> = [(1, "B"), (1, "b"), (1, "z"), (2, "a"), (10, "a")].iter().map(|(r, p)| (*r, p.to_string())).collect();
        assert_eq!(keys, want);
    }
}
