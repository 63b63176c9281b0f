//! What a node remembers of repository usage, so that neither a hard-quota check (one per write
//! start and one per write end: a 30-layer push makes 60) nor the repository list (open to every
//! signed-in user) aggregates a repository's assets each time. A measurement reads every asset
//! of the repository: 0.4 s at a million assets on SQLite.
//!
//! An entry is a measurement (the query of `usage.rs`) plus the blobs this node's commits linked
//! to the repository since it started. `SqlMeta` notes every commit it makes, so:
//!
//! - for this node's own writes the views are never below the truth: a commit noted after a
//!   measurement's query started counts on top of it (even if the query saw it too; counting it
//!   twice only refuses early, until the next measurement);
//! - a deletion makes the entry a bound (it may count what is gone): a quota check still
//!   answers from it while it is below the limit, and measures again when it is not, instead of
//!   refusing writes that would now fit; the exact views ([`UsageCache::fresh`],
//!   [`UsageCache::clean`]) measure again;
//! - what other nodes write is seen by the next measurement: an entry is trusted for [`TTL`];
//!   after that a quota check below the limit still answers from it while one measurement runs
//!   in the background, for at most [`TTL`] or twice the last measurement's duration more (see
//!   [`UsageCache::for_limit`]). That is how far behind a cluster's other nodes a quota can be,
//!   and no write waits for a measurement of a repository it wrote to moments ago.
//!
//! Entries exist only for repositories that were measured recently or are being measured; a
//! blob noted is kept only as long as a measurement it may be missing from is in use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wharf_format::{Usage, Write};

/// How long a measurement is trusted (see the module documentation).
pub const TTL: Duration = Duration::from_secs(5);

pub struct UsageCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<i64, Entry>,
    /// Measurements whose query is running: id, start, and the repository (`None`: every one).
    measuring: Vec<(u64, Instant, Option<i64>)>,
    next_id: u64,
}

#[derive(Default)]
struct Entry {
    /// The measurement kept, and when its query started.
    base: Option<(Instant, Usage)>,
    /// Blobs this node linked to the repository, by digest: size, and when the commit was noted.
    noted: HashMap<String, (u64, Instant)>,
    /// When this node last deleted from the repository: a measurement started before that may
    /// count what is gone, and is only a bound.
    deleted_at: Option<Instant>,
    /// How long the last measurement of this repository alone took.
    took: Duration,
}

impl Entry {
    /// Whether the base may count what this node deleted since.
    fn over(&self, at: Instant) -> bool {
        self.deleted_at.is_some_and(|d| d >= at)
    }

    /// How long after its query started a base may still answer a quota check below the limit
    /// while the next measurement runs.
    fn usable_for(&self, ttl: Duration) -> Duration {
        ttl + ttl.max(2 * self.took)
    }
}

/// What a quota check may go by (see [`UsageCache::for_limit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The answer: the usage, or a bound above it that is still below the limit.
    Known(Usage),
    /// The answer, below the limit, from a measurement past its TTL: measure again meanwhile.
    Renew(Usage),
    /// Measure before answering.
    Unknown,
}

/// A measurement in progress; hand it back to [`UsageCache::keep`] with the result. Dropped
/// without (the query failed, or the request went away), it just ends.
pub struct Measuring<'a> {
    cache: &'a UsageCache,
    id: u64,
    started: Instant,
    /// The repository measured (`None`: every one).
    repo: Option<i64>,
}

impl Drop for Measuring<'_> {
    fn drop(&mut self) {
        self.cache.lock().measuring.retain(|(id, _, _)| *id != self.id);
    }
}

impl Default for UsageCache {
    fn default() -> Self {
        UsageCache::new(TTL)
    }
}

impl UsageCache {
    pub fn new(ttl: Duration) -> UsageCache {
        UsageCache { ttl, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exact view: the last measurement, if it is fresh and this node deleted nothing from
    /// the repository since its query started, plus what this node linked since.
    pub fn fresh(&self, repo: i64) -> Option<Usage> {
        let inner = self.lock();
        let e = inner.entries.get(&repo)?;
        let (at, base) = e.base.filter(|(at, _)| at.elapsed() < self.ttl && !e.over(*at))?;
        Some(with_noted(base, e, at))
    }

    /// The list's view: the last measurement, if it is fresh and this node wrote nothing to the
    /// repository since its query started.
    pub fn clean(&self, repo: i64) -> Option<Usage> {
        let inner = self.lock();
        let e = inner.entries.get(&repo)?;
        let (at, base) = e.base.filter(|(at, _)| at.elapsed() < self.ttl && !e.over(*at))?;
        e.noted.values().all(|(_, n)| *n < at).then_some(base)
    }

    /// The quota check's view against `limit` bytes: the last measurement plus what this node
    /// linked since. Within the TTL it answers whatever it says, unless this node deleted from
    /// the repository since and it says the limit is reached (then the deletion may have made
    /// room: measure). Past the TTL it answers only below the limit, and only for a while (see
    /// [`Entry::usable_for`]), asking for a measurement meanwhile.
    pub fn for_limit(&self, repo: i64, limit: u64) -> Bound {
        let inner = self.lock();
        let Some(e) = inner.entries.get(&repo) else { return Bound::Unknown };
        let Some((at, base)) = e.base else { return Bound::Unknown };
        let view = with_noted(base, e, at);
        let age = at.elapsed();
        if age < self.ttl && (view.bytes < limit || !e.over(at)) {
            Bound::Known(view)
        } else if age < e.usable_for(self.ttl) && view.bytes < limit {
            Bound::Renew(view)
        } else {
            Bound::Unknown
        }
    }

    /// Whether a measurement that `repo`'s entry will take is running.
    pub fn is_measuring(&self, repo: i64) -> bool {
        self.lock().measuring.iter().any(|(_, _, r)| r.is_none_or(|r| r == repo))
    }

    /// Whether `repo` has a measurement within its TTL (exact or a bound): one measured again
    /// meanwhile needs no other.
    pub fn measured_lately(&self, repo: i64) -> bool {
        self.lock().entries.get(&repo).and_then(|e| e.base).is_some_and(|(at, _)| at.elapsed() < self.ttl)
    }

    /// Starts a measurement of `repo` (`None`: of every repository): call it before the query.
    pub fn begin(&self, repo: Option<i64>) -> Measuring<'_> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let (id, started) = (inner.next_id, Instant::now());
        inner.measuring.push((id, started, repo));
        Measuring { cache: self, id, started, repo }
    }

    /// Keeps what `m` measured for `repo` (unless a later measurement is kept already; one that
    /// started before a deletion of this node is kept as a bound), and answers the quota's
    /// view of it: the measurement plus what this node linked since the query started.
    pub fn keep(&self, m: &Measuring<'_>, repo: i64, measured: Usage) -> Usage {
        let mut inner = self.lock();
        let e = inner.entries.entry(repo).or_default();
        if e.base.is_none_or(|(at, _)| at <= m.started) {
            e.base = Some((m.started, measured));
            // Only a measurement of this repository says how long its own takes (the list's
            // measures every repository at once).
            if m.repo == Some(repo) {
                e.took = m.started.elapsed();
            }
        }
        let view = with_noted(measured, e, m.started);
        let ttl = self.ttl;
        let Inner { entries, measuring, .. } = &mut *inner;
        entries.retain(|id, e| prune(*id, e, ttl, measuring));
        view
    }

    /// Called after a commit of this node: blobs linked count on top of the measurement, a
    /// deletion makes it a bound.
    pub fn note(&self, writes: &[Write]) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Inner { entries, measuring, .. } = &mut *inner;
        for w in writes {
            let repo = match w {
                Write::Upsert { repo, .. } | Write::InsertIfAbsent { repo, .. } | Write::Delete { repo, .. } | Write::DeleteByDigest { repo, .. } => *repo,
            };
            // Nothing to add to: no entry, and no measurement running that may miss this write.
            if !entries.contains_key(&repo) && !measuring.iter().any(|(_, _, r)| r.is_none_or(|r| r == repo)) {
                continue;
            }
            let e = entries.entry(repo).or_default();
            match w {
                Write::Upsert { asset, .. } | Write::InsertIfAbsent { asset, .. } => {
                    if let Some(d) = &asset.digest {
                        e.noted.insert(d.clone(), (asset.size.max(0) as u64, now));
                    }
                }
                Write::Delete { .. } | Write::DeleteByDigest { .. } => e.deleted_at = Some(now),
            }
        }
        let ttl = self.ttl;
        entries.retain(|id, e| prune(*id, e, ttl, measuring));
    }
}

#[cfg(test)]
impl UsageCache {
    /// Moves everything known of `repo` `by` into the past (tests of expiry, without sleeping).
    pub(crate) fn backdate(&self, repo: i64, by: Duration) {
        let mut inner = self.lock();
        let e = inner.entries.get_mut(&repo).expect("an entry");
        let back = |t: Instant| t.checked_sub(by).expect("the clock goes back that far");
        e.base = e.base.map(|(at, u)| (back(at), u));
        e.deleted_at = e.deleted_at.map(back);
        e.noted.values_mut().for_each(|(_, at)| *at = back(*at));
    }
}

/// `base` plus the blobs noted at or after `since` (the counts of a blob noted twice, once).
fn with_noted(base: Usage, e: &Entry, since: Instant) -> Usage {
    e.noted.values().filter(|(_, at)| *at >= since).fold(base, |u, (size, _)| Usage { blob_count: u.blob_count + 1, bytes: u.bytes + size })
}

/// Drops the notes no measurement in use can be missing (those before the oldest query start
/// that matters); false when the entry is of no use any more.
fn prune(repo: i64, e: &mut Entry, ttl: Duration, measuring: &[(u64, Instant, Option<i64>)]) -> bool {
    let usable = e.usable_for(ttl);
    let base = e.base.map(|(at, _)| at).filter(|at| at.elapsed() < usable);
    let running = measuring.iter().filter(|(_, _, r)| r.is_none_or(|r| r == repo)).map(|(_, at, _)| *at).min();
    let Some(horizon) = [base, running].into_iter().flatten().min() else { return false };
    e.noted.retain(|_, (_, at)| *at >= horizon);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_format::NewAsset;

    fn link(repo: i64, digest: &str, size: i64) -> Write {
        Write::Upsert { repo, asset: NewAsset { path: format!("p/{digest}"), digest: Some(digest.into()), size, ..Default::default() } }
    }

    fn usage(blob_count: u64, bytes: u64) -> Usage {
        Usage { blob_count, bytes }
    }

    #[test]
    fn a_measurement_is_reused_with_this_nodes_links_on_top() {
        let cache = UsageCache::new(Duration::from_secs(3600));
        assert_eq!(cache.fresh(1), None, "nothing measured yet");
        let m = cache.begin(Some(1));
        assert_eq!(cache.keep(&m, 1, usage(2, 100)), usage(2, 100));
        drop(m);
        assert_eq!(cache.fresh(1), Some(usage(2, 100)));
        assert_eq!(cache.clean(1), Some(usage(2, 100)));

        cache.note(&[link(1, "a", 10), link(1, "b", 20), link(1, "a", 10), link(2, "c", 5)]);
        assert_eq!(cache.fresh(1), Some(usage(4, 130)), "each blob once");
        assert_eq!(cache.clean(1), None, "the list measures again after a write");
        assert_eq!(cache.fresh(2), None, "a repository nobody measured gets no entry");
    }

    #[test]
    fn a_link_committed_while_the_query_ran_is_never_lost() {
        let cache = UsageCache::new(Duration::from_secs(3600));
        let m = cache.begin(Some(1));
        // Committed after the query started: the query may or may not have seen it.
        cache.note(&[link(1, "a", 10)]);
        assert_eq!(cache.keep(&m, 1, usage(0, 0)), usage(1, 10));
        drop(m);
        assert_eq!(cache.fresh(1), Some(usage(1, 10)));

        // The same for a measurement of every repository (the list's), and a repository that
        // had no entry before.
        let all = cache.begin(None);
        cache.note(&[link(7, "z", 3)]);
        cache.keep(&all, 7, usage(0, 0));
        drop(all);
        assert_eq!(cache.fresh(7), Some(usage(1, 3)));
    }

    #[test]
    fn a_deletion_makes_the_measurement_a_bound() {
        let cache = UsageCache::new(Duration::from_secs(3600));
        let m = cache.begin(Some(1));
        cache.keep(&m, 1, usage(5, 500));
        drop(m);
        let del = Write::Delete { repo: 1, path: "p/a".into() };
        cache.note(std::slice::from_ref(&del));
        assert_eq!(cache.fresh(1), None, "the exact view measures again");
        assert_eq!(cache.clean(1), None);
        assert_eq!(cache.for_limit(1, 501), Bound::Known(usage(5, 500)), "below the limit, a bound will do");
        assert_eq!(cache.for_limit(1, 500), Bound::Unknown, "at the limit, the deletion may have made room");
        cache.note(&[link(1, "b", 10)]);
        assert_eq!(cache.for_limit(1, 511), Bound::Known(usage(6, 510)), "links count on top of the bound");
        assert_eq!(cache.for_limit(1, 510), Bound::Unknown);

        // A measurement that started before a deletion is a bound too; one after it is exact.
        let m = cache.begin(Some(1));
        cache.note(&[del]);
        assert_eq!(cache.keep(&m, 1, usage(4, 400)), usage(4, 400));
        drop(m);
        assert_eq!(cache.fresh(1), None);
        assert_eq!(cache.for_limit(1, 400), Bound::Unknown);
        let m = cache.begin(Some(1));
        cache.keep(&m, 1, usage(3, 300));
        drop(m);
        assert_eq!(cache.fresh(1), Some(usage(3, 300)));
        assert_eq!(cache.for_limit(1, 300), Bound::Known(usage(3, 300)), "an exact view at the limit refuses without measuring");
    }

    #[test]
    fn past_its_ttl_a_measurement_answers_below_the_limit_while_the_next_one_runs() {
        let ttl = Duration::from_secs(10);
        let cache = UsageCache::new(ttl);
        let m = cache.begin(Some(1));
        cache.keep(&m, 1, usage(2, 200));
        drop(m);
        cache.backdate(1, ttl + Duration::from_secs(1));
        assert_eq!(cache.fresh(1), None, "expired for the exact view");
        assert_eq!(cache.for_limit(1, 201), Bound::Renew(usage(2, 200)));
        assert_eq!(cache.for_limit(1, 200), Bound::Unknown, "past its TTL it never refuses");
        assert!(!cache.measured_lately(1));

        // For at most another TTL (or twice the measurement's duration): then measure first.
        cache.backdate(1, ttl);
        assert_eq!(cache.for_limit(1, 201), Bound::Unknown);

        let m = cache.begin(Some(1));
        assert!(cache.is_measuring(1));
        cache.keep(&m, 1, usage(2, 200));
        drop(m);
        assert!(!cache.is_measuring(1));
        assert!(cache.measured_lately(1));
        assert_eq!(cache.for_limit(1, 201), Bound::Known(usage(2, 200)));
    }

    #[test]
    fn a_measurement_expires_and_notes_do_not_pile_up() {
        let ttl = Duration::from_secs(10);
        let cache = UsageCache::new(ttl);
        let m = cache.begin(Some(1));
        cache.keep(&m, 1, usage(1, 1));
        drop(m);
        cache.backdate(1, 2 * ttl + Duration::from_secs(1));
        assert_eq!(cache.fresh(1), None, "expired");
        assert_eq!(cache.for_limit(1, 100), Bound::Unknown);
        cache.note(&[link(1, "a", 10)]);
        assert!(cache.lock().entries.is_empty(), "no measurement in use: nothing kept");
    }
}
