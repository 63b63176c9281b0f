//! Garbage collection of blob stores, online: a pass deletes the blobs that no asset names and
//! nobody touched within the grace period, while wharf serves traffic. Why no writer can lose a
//! blob to it is `db::blobs`'s rules (and docs/architecture.md, "Garbage collection"); this
//! module runs the pass:
//!
//! 1. finish what a killed pass left marked (its rows say `deleting`);
//! 2. adopt objects the ledger does not know (written before it existed), aged by their own
//!    modification time, so that the next steps judge them like any other blob. Every writer
//!    touches a blob's row before its object exists, so only content older than the ledger (or
//!    put there behind wharf's back) can be unknown: the store is walked for it once, then once
//!    every [`RESCAN_AFTER`] or when asked (`fullScan`), not on every pass (the walk costs the
//!    same whatever the garbage, and on object storage it is a listing of every object);
//! 3. mark a batch of candidates, delete their objects, drop their rows; repeat.
//!
//! A pass killed at any point leaves rows marked `deleting` whose objects may or may not be gone:
//! no asset names them (that was checked when they were marked, and no commit links a marked
//! blob), so nothing points at a missing blob, and the next pass (or a writer that needs the
//! blob) finishes the job. A dry run reports what steps 1 and 3 would delete and changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use wharf_format::{now_millis, BlobStore, Digest, Stop};

use crate::db::{blobs, settings, Db, DbError};
use crate::state::AppState;

/// Rows marked, and objects deleted, per step. A page's own steps (its candidate read, its mark,
/// its forget) delay the unlinks of the next (two pages are in hand at a time): on the
/// benchmark's disk a compaction of 6,000 blobs took 0.32-0.37 s with 256 and 0.29 s with 1,000
/// (three alternating pairs), the unlinks alone 0.17-0.22 s (docs/benchmarks.md). The price: a
/// mark holds the write lock longer (7-13 ms there, against 2-5 ms), and a writer that needs a
/// marked blob waits for a longer page (60-120 ms). 1,000 is also what one S3 DeleteObjects
/// request takes.
const BATCH: i64 = 1000;
/// How long a store goes without a walk for objects the ledger does not know.
pub const RESCAN_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a pass runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Blobs touched within this long are kept.
    pub grace: Duration,
    /// Report what would be deleted; change nothing.
    pub dry_run: bool,
    /// Walk the store for objects the ledger does not know even if it was walked lately.
    pub full_scan: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("blob store {store}: {source}")]
    Blob { store: String, source: wharf_format::BlobError },
    #[error("no blob store named {0}")]
    NoSuchStore(String),
}

/// What a pass freed (or, in a dry run, would free) in one blob store.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoreReport {
    pub blob_store: String,
    /// Blobs deleted (would be, in a dry run).
    pub blob_count: u64,
    pub bytes: u64,
    /// Of those, blobs a killed pass had marked and this one finished.
    pub resumed: u64,
    /// Whether the store was walked for objects the ledger did not know.
    pub scanned: bool,
    /// Objects the ledger did not know and now does.
    pub adopted: u64,
    /// Marked blobs left for the next pass because this one stalled past the deletion lease.
    pub deferred: u64,
    /// Why the store was not collected at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    pub blob_count: u64,
    pub bytes: u64,
    pub blob_stores: Vec<StoreReport>,
    /// Set when the pass was stopped before it finished.
    pub stopped: bool,
}

/// Runs one pass over `store` (every blob store when `None`).
pub async fn collect(state: &AppState, store: Option<&str>, opts: Options, stop: &Stop) -> Result<GcReport, GcError> {
    let Options { grace, dry_run, full_scan } = opts;
    let snap = state.registry.snapshot();
    let stores: BTreeMap<String, Arc<BlobStore>> = match store {
        Some(name) => {
            let s = snap.blob_stores.get(name).ok_or_else(|| GcError::NoSuchStore(name.to_string()))?;
            BTreeMap::from([(name.to_string(), s.clone())])
        }
        None => snap.blob_stores.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let mut report = GcReport { dry_run, ..Default::default() };
    for (name, blob_store) in stores {
        // Two stores in one directory (a configuration older stores may have): a pass over one
        // would take the other's blobs, which its repositories name and this one's do not.
        if let Some(other) = shares_directory(&snap.blob_stores, &name, &blob_store) {
            let why = format!("shares its directory with blob store {other}: not collected (give each store a directory of its own)");
            tracing::error!(blob_store = %name, "{why}");
            report.blob_stores.push(StoreReport { blob_store: name.clone(), skipped: Some(why), ..Default::default() });
            continue;
        }
        let pass = Pass { db: &state.db, name: &name, store: &blob_store, cutoff: now_millis() - grace.as_millis() as i64, dry_run, full_scan, stop };
        let r = pass.run().await?;
        report.blob_count += r.blob_count;
        report.bytes += r.bytes;
        report.blob_stores.push(r);
        if stop.requested() {
            report.stopped = true;
            break;
        }
    }
    Ok(report)
}

/// What a run's own freeing deleted from its blob store ([`free_released`]).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reclaimed {
    pub blob_count: u64,
    pub bytes: u64,
    /// Marked, but left for the next compaction (the deletion lease ran short).
    #[serde(skip_serializing_if = "is_zero")]
    pub deferred: u64,
    /// Why the freeing stopped early or did not run; what is left waits for a compaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Reclaimed {
    /// `"; freed N blobs, B bytes"` and what went wrong, for a run's line; empty when nothing
    /// was freed and nothing failed.
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if self.blob_count > 0 {
            s.push_str(&format!("; freed {} blobs, {} bytes", self.blob_count, self.bytes));
        }
        if self.deferred > 0 {
            s.push_str(&format!("; {} left marked for the compaction", self.deferred));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("; not freed beside the run: {e}"));
        }
        s
    }

    pub fn add(&mut self, other: &Reclaimed) {
        self.blob_count += other.blob_count;
        self.bytes += other.bytes;
        self.deferred += other.deferred;
    }
}

/// Where a run hands the digests it has just stopped linking ([`freeing_beside`]).
pub struct Releaser(futures::channel::mpsc::UnboundedSender<Vec<String>>);

impl Releaser {
    pub fn release(&self, digests: Vec<String>) {
        // Refused only once the freeing has ended (a stop, a failed page): the next compaction
        // frees those.
        let _ = self.0.unbounded_send(digests);
    }
}

/// Runs `run`, and beside it frees what it hands its [`Releaser`] ([`free_released`]); the
/// freeing ends when the run drops it.
pub async fn freeing_beside<F: std::future::Future>(state: &AppState, store: &str, stop: &Stop, run: impl FnOnce(Releaser) -> F) -> (F::Output, Reclaimed) {
    let (tx, released) = futures::channel::mpsc::unbounded();
    futures::join!(run(Releaser(tx)), free_released(state, store, released, stop))
}

/// Frees, as a task run hands them over, blobs of `store` the run has just stopped linking
/// (`TaskRun::released`): while the run commits its next removals, the blobs of the last ones
/// are judged, marked, deleted and forgotten page by page as a compaction's are, so the same
/// rules keep a blob that another asset names, that a writer touched within the grace period,
/// or that a writer links meanwhile. What it keeps waits for the next compaction; so does the
/// rest once `stop` is asked or a page fails (the run goes on: its removals are committed).
/// Ends when `released` does.
async fn free_released(state: &AppState, store: &str, released: impl futures::Stream<Item = Vec<String>>, stop: &Stop) -> Reclaimed {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut r = Reclaimed::default();
    // After a failure no page is started, and those in flight are finished and counted.
    let failed = AtomicBool::new(false);
    let mut pages = std::pin::pin!(pages_of(released, || stop.requested() || failed.load(Ordering::Relaxed)).peekable());
    // A run that hands over nothing (a dry run, nothing unused, a repository without the task)
    // says nothing about the store.
    if pages.as_mut().peek().await.is_none() {
        return r;
    }
    let snap = state.registry.snapshot();
    let Some(blob_store) = snap.blob_stores.get(store).cloned() else {
        r.error = Some(format!("no blob store named {store}"));
        return r;
    };
    if let Some(other) = shares_directory(&snap.blob_stores, store, &blob_store) {
        let why = format!("blob store {store} shares its directory with blob store {other}: not collected");
        tracing::error!(blob_store = %store, "{why}");
        r.error = Some(why);
        return r;
    }
    let grace = Duration::from_secs(state.cfg.gc.grace_secs);
    let pass = Pass { db: &state.db, name: store, store: &blob_store, cutoff: now_millis() - grace.as_millis() as i64, dry_run: false, full_scan: false, stop };
    let candidates = pages.map(|digests| Ok::<_, GcError>(digests.into_iter().map(|digest| blobs::Candidate { digest, size: 0 }).collect()));
    let mut swept = std::pin::pin!(candidates.map_ok(|page| pass.sweep_page(page)).try_buffered(2));
    while let Some(page) = swept.next().await {
        let error = match page {
            Ok(s) => {
                r.blob_count += s.count;
                r.bytes += s.bytes;
                r.deferred += s.deferred;
                s.failed
            }
            Err(e) => Some(e),
        };
        if let Some(e) = error {
            failed.store(true, Ordering::Relaxed);
            if r.error.is_none() {
                tracing::warn!(blob_store = %store, error = %e, "freeing what a task unlinked stopped; the next compaction frees the rest");
                r.error = Some(e.to_string());
            }
        }
    }
    if r.blob_count > 0 {
        tracing::info!(blob_store = store, blobs = r.blob_count, bytes = r.bytes, "freed what a task unlinked");
    }
    r
}

/// The digests a run hands over, in pages of up to [`BATCH`] in digest order, as a compaction's:
/// a page's transactions and its trips to the store, not its rows, are what cost, so a page
/// waits for the run's next batches until it is full or the run ends. Ends once `halt` says so.
fn pages_of<'a>(released: impl futures::Stream<Item = Vec<String>> + 'a, halt: impl Fn() -> bool + 'a) -> impl futures::Stream<Item = Vec<String>> + 'a {
    let released = Box::pin(released.fuse());
    futures::stream::unfold((released, Vec::new(), halt), |(mut released, mut digests, halt): (_, Vec<String>, _)| async move {
        loop {
            if halt() {
                return None;
            }
            if digests.len() < BATCH as usize {
                match released.next().await {
                    Some(more) => {
                        digests.extend(more);
                        continue;
                    }
                    None if digests.is_empty() => return None,
                    None => {}
                }
            }
            digests.sort_unstable();
            digests.dedup();
            let rest = digests.split_off(digests.len().min(BATCH as usize));
            return Some((std::mem::take(&mut digests), (released, rest, halt)));
        }
    })
}

/// Another file store whose directory is this one's, or inside it, or around it. (S3 stores
/// are checked for overlap when they are created.)
fn shares_directory(all: &std::collections::HashMap<String, Arc<BlobStore>>, name: &str, store: &BlobStore) -> Option<String> {
    let resolved = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mine = resolved(store.root()?);
    let mut others: Vec<&String> = all
        .iter()
        .filter(|(n, s)| {
            let Some(theirs) = s.root().map(resolved) else { return false };
            n.as_str() != name && (theirs.starts_with(&mine) || mine.starts_with(&theirs))
        })
        .map(|(n, _)| n)
        .collect();
    others.sort();
    others.first().map(|n| n.to_string())
}

/// Where the time of a store's last complete walk is kept: with its location (directory, or
/// bucket and prefix) in the key, a new store over a place that holds content is walked even
/// under an old name.
fn scan_key(name: &str, location: &str) -> String {
    format!("{SCAN_KEYS}{name}:{location}")
}

const SCAN_KEYS: &str = "gc.scanned:";

/// Forgets the walks of a store being deleted (in the transaction that deletes it): a key per
/// store ever made would stay for ever, and a store made later under the name is walked anew.
pub fn forget_walks(conn: &mut crate::db::AnyConnection, name: &str) -> Result<(), DbError> {
    use crate::db::schema::settings;
    use diesel::prelude::*;
    // Few rows; the name is matched here, not in the LIKE pattern (a store name may hold `_`).
    let keys: Vec<String> = settings::table.filter(settings::key.like(format!("{SCAN_KEYS}%"))).select(settings::key).load(conn)?;
    let prefix = format!("{SCAN_KEYS}{name}:");
    let mine: Vec<&String> = keys.iter().filter(|k| k.starts_with(&prefix)).collect();
    diesel::delete(settings::table.filter(settings::key.eq_any(mine))).execute(conn)?;
    Ok(())
}

/// Whether a store's directory holds no blobs yet (a store about to be created).
pub fn holds_no_blobs(root: &std::path::Path) -> bool {
    match std::fs::read_dir(root.join("blobs")) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => true,
    }
}

/// Records a store created over a directory without blobs as walked: whatever it will hold is
/// written by writers that touch the ledger first, so there is nothing for a walk to find.
pub fn walked_at_creation(conn: &mut crate::db::AnyConnection, name: &str, location: &str) -> Result<(), DbError> {
    settings::set(conn, &scan_key(name, location), &now_millis().to_string())
}

/// What one page of candidates came to.
#[derive(Default)]
struct Swept {
    /// Deleted (would be, in a dry run), and their bytes.
    count: u64,
    bytes: u64,
    /// Marked, but left for the next pass (the deletion lease ran short).
    deferred: u64,
    /// Why some of the page's objects were not deleted: their rows stay marked, and the next
    /// pass (or a writer that needs one) finishes them.
    failed: Option<GcError>,
}

struct Pass<'a> {
    db: &'a Db,
    name: &'a str,
    store: &'a Arc<BlobStore>,
    /// Blobs touched at or after this time (milliseconds) are kept.
    cutoff: i64,
    dry_run: bool,
    full_scan: bool,
    stop: &'a Stop,
}

impl Pass<'_> {
    async fn run(&self) -> Result<StoreReport, GcError> {
        let mut r = StoreReport { blob_store: self.name.to_string(), ..Default::default() };
        self.resume(&mut r).await?;
        if self.scan_due().await? {
            r.scanned = true;
            if self.adopt(&mut r).await? && !self.dry_run {
                let (key, now) = (self.scan_key(), now_millis().to_string());
                self.db.write(move |c| settings::set(c, &key, &now)).await?;
            }
        }
        self.sweep(&mut r).await?;
        if r.blob_count > 0 || r.adopted > 0 {
            tracing::info!(
                blob_store = self.name,
                blobs = r.blob_count,
                bytes = r.bytes,
                resumed = r.resumed,
                adopted = r.adopted,
                dry_run = self.dry_run,
                "garbage collection"
            );
        }
        Ok(r)
    }

    fn blob_error(&self, source: wharf_format::BlobError) -> GcError {
        GcError::Blob { store: self.name.to_string(), source }
    }

    /// Step 1: rows a killed pass left marked. Only marks older than the deletion lease are
    /// taken (a younger one may belong to a pass that is still deleting it), each claimed
    /// afresh (so that a writer taking the same deletion over cannot have its new bytes
    /// deleted by us), then finished.
    async fn resume(&self, r: &mut StoreReport) -> Result<(), GcError> {
        let name = self.name.to_string();
        let left = self.db.run(move |c| Ok(blobs::marked(c, &name, i64::MAX)?)).await?;
        let stale_before = now_millis() - self.store.deletion_lease_ms();
        for (digest, size, marked_at) in left {
            if self.stop.requested() {
                break;
            }
            if marked_at >= stale_before {
                r.deferred += 1;
                continue;
            }
            if self.dry_run {
                r.blob_count += 1;
                r.bytes += size as u64;
                r.resumed += 1;
                continue;
            }
            let (db, store, name) = (self.db.clone(), self.store.clone(), self.name.to_string());
            let outcome = crate::lifecycle::unstarved(async move {
                let started = Instant::now();
                let d = digest.clone();
                let Some(mark) = db
                    .write({
                        let name = name.clone();
                        move |c| Ok(blobs::claim_deletion(c, &name, &d, marked_at)?)
                    })
                    .await?
                else {
                    // A writer took it over: not ours to count.
                    return Ok::<_, GcError>(None);
                };
                Ok(Some(delete_marked(&db, &store, &name, vec![(digest, size)], mark, started).await?))
            })
            .await?;
            if let Some(swept) = outcome {
                if let Some(e) = swept.failed {
                    return Err(e);
                }
                r.blob_count += swept.count;
                r.bytes += swept.bytes;
                r.resumed += swept.count;
                r.deferred += swept.deferred;
            }
        }
        Ok(())
    }

    fn scan_key(&self) -> String {
        scan_key(self.name, &self.store.location())
    }

    async fn scan_due(&self) -> Result<bool, GcError> {
        if self.full_scan {
            return Ok(true);
        }
        let key = self.scan_key();
        let last = self.db.run(move |c| settings::get(c, &key)).await?;
        let last: i64 = last.and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(now_millis().saturating_sub(last) >= RESCAN_AFTER.as_millis() as i64)
    }

    /// Step 2: objects without a row (and rows that were written without a size). `true` when
    /// the walk went through the whole store.
    async fn adopt(&self, r: &mut StoreReport) -> Result<bool, GcError> {
        let mut listing = self.store.list_blobs().try_chunks(BATCH as usize);
        while let Some(chunk) = listing.next().await {
            if self.stop.requested() {
                return Ok(false);
            }
            let chunk = chunk.map_err(|e| self.blob_error(e.1))?;
            let digests: Vec<String> = chunk.iter().map(|(d, _, _)| d.to_string()).collect();
            let name = self.name.to_string();
            let known = self.db.run(move |c| Ok(blobs::known(c, &name, &digests)?)).await?;
            let sizeless: Vec<(String, i64)> = chunk
                .iter()
                .filter(|(d, size, _)| *size > 0 && known.get(&d.to_string()) == Some(&0))
                .map(|(d, size, _)| (d.to_string(), *size as i64))
                .collect();
            if !sizeless.is_empty() && !self.dry_run {
                let name = self.name.to_string();
                self.db.write(move |c| Ok(blobs::fix_sizes(c, &name, &sizeless)?)).await?;
            }
            let found: Vec<(String, i64, i64)> = chunk
                .into_iter()
                .filter(|(d, _, _)| !known.contains_key(&d.to_string()))
                .map(|(d, size, modified)| (d.to_string(), size as i64, modified))
                .collect();
            if found.is_empty() {
                continue;
            }
            if self.dry_run {
                // Unknown objects are named by no asset (every asset's blob has a row): the ones
                // old enough are what the sweep would take after adopting them.
                for (_, size, _) in found.iter().filter(|(_, _, modified)| *modified < self.cutoff) {
                    r.blob_count += 1;
                    r.bytes += *size as u64;
                }
                continue;
            }
            let name = self.name.to_string();
            r.adopted += self.db.write(move |c| Ok(blobs::adopt(c, &name, &found)?)).await? as u64;
        }
        Ok(true)
    }

    /// Step 3: read a page of candidates, mark them (a short write that judges them again),
    /// delete their objects and forget their rows; repeat. Deleting mostly waits on the store (a
    /// file system's journal, S3's answer), so the next page is read and marked meanwhile: two
    /// pages are in hand at a time.
    async fn sweep(&self, r: &mut StoreReport) -> Result<(), GcError> {
        // After a failed deletion no page is started, and the one in flight is finished, not
        // dropped halfway with its marks in the ledger.
        let halted = &std::sync::atomic::AtomicBool::new(false);
        let pages = futures::stream::try_unfold(Some(String::new()), |from| async move {
            let Some(from) = from.filter(|_| !self.stop.requested() && !halted.load(std::sync::atomic::Ordering::Relaxed)) else { return Ok(None) };
            let (name, cutoff) = (self.name.to_string(), self.cutoff);
            let (page, next) = self.db.run(move |c| Ok(blobs::candidates(c, &name, cutoff, &from, BATCH)?)).await?;
            Ok::<_, GcError>(Some((page, next)))
        });
        let mut swept = std::pin::pin!(pages.map_ok(|page| self.sweep_page(page)).try_buffered(2));
        let mut failed = None;
        while let Some(s) = swept.try_next().await? {
            r.blob_count += s.count;
            r.bytes += s.bytes;
            r.deferred += s.deferred;
            if let Some(e) = s.failed {
                halted.store(true, std::sync::atomic::Ordering::Relaxed);
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// One page: counted in a dry run, else marked, deleted and forgotten as one unit that a
    /// starved lifecycle thread cannot hold up halfway (a writer that needs a marked blob waits
    /// for its forget).
    async fn sweep_page(&self, page: Vec<blobs::Candidate>) -> Result<Swept, GcError> {
        if self.dry_run || page.is_empty() {
            return Ok(Swept { count: page.len() as u64, bytes: page.iter().map(|c| c.size as u64).sum(), ..Default::default() });
        }
        let (db, store, name, cutoff) = (self.db.clone(), self.store.clone(), self.name.to_string(), self.cutoff);
        let digests: Vec<String> = page.into_iter().map(|c| c.digest).collect();
        crate::lifecycle::unstarved(async move {
            // The lease runs from before the mark: a slow mark transaction eats into it.
            let started = Instant::now();
            let (batch, mark) = db
                .write({
                    let name = name.clone();
                    move |c| Ok(blobs::mark(c, &name, cutoff, &digests)?)
                })
                .await?;
            let blobs = batch.into_iter().map(|c| (c.digest, c.size)).collect();
            delete_marked(&db, &store, &name, blobs, mark, started).await
        })
        .await
    }
}

/// Deletes the objects of rows a pass marked at `mark` (the marking began at `started`), then
/// the rows; answers how many it left marked. A deletion is started only within half the
/// deletion lease, by this process's own clock: after the whole lease a writer may take the
/// deletion over and write the blob afresh, and the other half is the margin for a deletion in
/// flight and for clocks between nodes.
async fn delete_marked(db: &Db, store: &BlobStore, name: &str, batch: Vec<(String, i64)>, mark: i64, started: Instant) -> Result<Swept, GcError> {
    if batch.is_empty() {
        return Ok(Swept::default());
    }
    let lease = Duration::from_millis(store.deletion_lease_ms() as u64 / 2);
    if started.elapsed() >= lease {
        return Ok(Swept { deferred: batch.len() as u64, ..Default::default() });
    }
    // A row whose name is not a digest has no object: only the row goes.
    let (objects, rows_only): (Vec<_>, Vec<_>) = batch.into_iter().map(|(d, size)| (d.parse::<Digest>().ok(), d, size)).partition(|(d, _, _)| d.is_some());
    let mut swept = Swept::default();
    let mut done: Vec<String> = Vec::new();
    for (_, d, size) in rows_only {
        swept.count += 1;
        swept.bytes += size as u64;
        done.push(d);
    }
    let digests: Vec<Digest> = objects.iter().filter_map(|(d, _, _)| d.clone()).collect();
    for ((_, digest, size), res) in objects.into_iter().zip(store.delete_many(&digests).await) {
        match res {
            Ok(()) => {
                swept.count += 1;
                swept.bytes += size as u64;
                done.push(digest);
            }
            Err(source) => swept.failed = Some(GcError::Blob { store: name.to_string(), source }),
        }
    }
    let n = name.to_string();
    db.write(move |c| Ok(blobs::forget_all(c, &n, &done, mark)?)).await?;
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::Poll;
    use std::time::Duration;

    use bytes::Bytes;
    use wharf_format::{BlobStore, Digest, Stop, DELETION_LEASE_MS};

    use diesel::prelude::*;

    use crate::db::{blobs, Db};

    /// A file store named `default` with its ledger, on a fresh SQLite database.
    fn fresh_store() -> (tempfile::TempDir, Db, Arc<BlobStore>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 4).unwrap();
        let ledger = Arc::new(crate::db::meta::SqlMeta::new(db.clone()));
        let store = Arc::new(BlobStore::filesystem("default", &dir.path().join("blobs")).unwrap().with_ledger(ledger, DELETION_LEASE_MS));
        (dir, db, store)
    }

    /// A sweep over several pages, two of them in hand at a time: every old unreferenced blob
    /// goes, bytes and row, and the young ones between them in digest order stay.
    #[test]
    fn a_sweep_of_several_pages_takes_every_old_blob_and_keeps_the_young() {
        let (_dir, db, store) = fresh_store();
        let old_count = 2 * super::BATCH as usize + 300;
        actix_rt::System::new().block_on(async {
            let mut old = Vec::new();
            for i in 0..old_count {
                old.push(store.put_bytes(Bytes::from(format!("old blob {i}"))).await.unwrap());
            }
            let cutoff = wharf_format::now_millis() + 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut young = Vec::new();
            for i in 0..50 {
                young.push(store.put_bytes(Bytes::from(format!("young blob {i}"))).await.unwrap());
            }
            let stop = Stop::default();
            let pass = super::Pass { db: &db, name: "default", store: &store, cutoff, dry_run: false, full_scan: false, stop: &stop };
            let mut report = super::StoreReport::default();
            pass.sweep(&mut report).await.unwrap();

            assert_eq!((report.blob_count, report.deferred), (old_count as u64, 0), "{report:?}");
            for d in &old {
                assert_eq!(store.size(d).await.unwrap(), None, "{d} is still stored");
            }
            for d in &young {
                assert!(store.size(d).await.unwrap().is_some(), "young blob {d} is gone");
            }
            let rows: i64 = db.run_sync(|c| Ok(crate::db::schema::blobs::table.count().get_result(c)?)).unwrap();
            assert_eq!(rows, young.len() as i64, "the ledger keeps the young rows only");
        });
    }

    /// A deletion that fails leaves its row marked for the next pass and fails the pass; the
    /// others of the page are deleted, forgotten and counted, not lost with the error.
    #[test]
    fn a_failed_deletion_keeps_its_mark_and_the_rest_of_the_page_is_counted() {
        let (dir, db, store) = fresh_store();
        actix_rt::System::new().block_on(async {
            let mut digests = Vec::new();
            for i in 0..3 {
                digests.push(store.put_bytes(Bytes::from(format!("blob {i}"))).await.unwrap());
            }
            // The first blob's file becomes a directory: unlinking it fails (not "not found").
            let hex = digests[0].to_string().trim_start_matches("sha256:").to_string();
            let file = walkdir(dir.path()).into_iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == hex)).expect("the blob's file");
            std::fs::remove_file(&file).unwrap();
            std::fs::create_dir(&file).unwrap();
            let stop = Stop::default();
            let cutoff = wharf_format::now_millis() + 1;
            let pass = super::Pass { db: &db, name: "default", store: &store, cutoff, dry_run: false, full_scan: false, stop: &stop };
            let mut report = super::StoreReport::default();
            let outcome = pass.sweep(&mut report).await;
            assert!(matches!(outcome, Err(super::GcError::Blob { .. })), "{outcome:?}");
            assert_eq!((report.blob_count, report.bytes), (2, 12), "{report:?}");
            let marked = db.run_sync(|c| Ok(blobs::marked(c, "default", 10)?)).unwrap();
            assert_eq!(marked.iter().map(|m| m.0.clone()).collect::<Vec<_>>(), vec![digests[0].to_string()]);
            for d in &digests[1..] {
                assert_eq!(store.size(d).await.unwrap(), None);
            }
        });
    }

    fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            }
            out.push(p);
        }
        out
    }

    /// What a run hands over comes out in pages of at most a compaction's, each in digest order,
    /// every digest once, the last page when the run ends; nothing after a stop.
    #[test]
    fn handed_over_digests_come_in_full_pages_and_all_of_them() {
        let batches: Vec<Vec<String>> = vec![
            (0..600).map(|i| format!("d{i:05}")).collect(),
            (600..1200).rev().map(|i| format!("d{i:05}")).collect(),
            (0..2500).map(|i| format!("d{i:05}")).collect(),
            vec![],
            vec!["d99999".into()],
        ];
        let stop = Stop::default();
        let pages: Vec<Vec<String>> = futures::executor::block_on(super::pages_of(futures::stream::iter(batches), || stop.requested()).collect());
        assert!(
            pages.iter().all(|p| !p.is_empty() && p.len() <= super::BATCH as usize && p.windows(2).all(|w| w[0] < w[1])),
            "{:?}",
            pages.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let all: Vec<&String> = pages.iter().flatten().collect();
        let distinct: std::collections::BTreeSet<&String> = all.iter().copied().collect();
        assert_eq!(distinct.len(), 2501, "every digest handed over comes out");
        assert!(all.len() < 2501 + 1200, "duplicates within a page are dropped");
        stop.request();
        let after_stop: Vec<Vec<String>> =
            futures::executor::block_on(super::pages_of(futures::stream::iter(vec![vec!["x".to_string()]]), || stop.requested()).collect());
        assert!(after_stop.is_empty());
    }

    /// A writer that needs a blob a pass has marked waits until the pass forgets it. A pass on the
    /// `SCHED_IDLE` thread that started on a quiet machine stays there when the CPUs fill up, and
    /// there it may not run again for as long as they stay busy: the writer would wait out the
    /// 120 s deletion lease. So while the CPUs are busy a page is marked, deleted and forgotten
    /// as one unit at normal priority. Here busy loops keep every CPU busy, and the pass's future
    /// is never polled again once a mark of its is in the ledger (its thread starved from then on):
    /// a push of a marked blob must still go through, with its bytes kept.
    #[test]
    fn a_pass_starved_after_its_mark_keeps_no_writer_waiting_while_the_cpus_are_busy() {
        let _alone = super::super::tests::alone();
        let (_dir, db, store) = fresh_store();
        let contents: Vec<Bytes> = (0..300u32).map(|i| Bytes::from(format!("blob {i}"))).collect();
        let first = contents.iter().min_by_key(|c| Digest::of(c).to_string()).unwrap().clone();

        let stop = Arc::new(AtomicBool::new(false));
        let spinners = super::super::tests::spin(super::super::priority::cpus().max(1), &stop);
        let outcome = actix_rt::System::new().block_on(async {
            for c in &contents {
                store.put_bytes(c.clone()).await.unwrap();
            }
            super::super::prepare();
            // Longer than two notes of the CPUs' load apart: the span judged lies wholly in the
            // busy time.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            assert!(super::super::cpus_busy(), "busy loops on every CPU, yet the CPUs are not judged busy");
            // This thread plays the lifecycle's SCHED_IDLE thread (its policy is beside the point:
            // it stops polling the pass instead of being starved).
            wharf_format::ThreadClass::Idle.set_current();
            crate::db::run_writes_at_normal_priority(super::super::timekeeper().handle().clone());
            let never_stops = Stop::default();
            let pass = super::Pass {
                db: &db,
                name: "default",
                store: &store,
                cutoff: wharf_format::now_millis() + 1,
                dry_run: false,
                full_scan: false,
                stop: &never_stops,
            };
            let mut report = super::StoreReport::default();
            let mut sweep = Box::pin(pass.sweep(&mut report));
            let marked = || db.run_sync(|c| Ok(blobs::marked(c, "default", 1)?)).unwrap().len();
            let finished = std::future::poll_fn(|cx| match sweep.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if marked() > 0 => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;

            // A writer at normal priority, on a thread of its own, pushes the first blob of the
            // first page again.
            let writer = {
                let store = store.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), store.put_bytes(first)).await })
                })
            };
            let pushed = tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
            let kept = match &pushed {
                Ok(Ok(digest)) => store.size(digest).await.unwrap(),
                _ => None,
            };
            drop(sweep);
            (finished.map(|r| r.is_ok()), pushed.map(|r| r.is_ok()), kept)
        });
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        let (finished, pushed, kept) = outcome;
        assert_eq!(pushed, Ok(true), "the push of a marked blob (Err: still waiting after 20 s); the pass had finished: {finished:?}");
        assert!(kept.is_some(), "the pushed blob's bytes are gone");
    }
}
