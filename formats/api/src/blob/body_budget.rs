//! How much of the uploads' bodies the process holds in memory at once, whatever the number of
//! clients.
//!
//! An upload gathers what arrives into batches of up to [`super::WRITE_BATCH`] bytes before it
//! hashes and writes them (a trip to the blocking pool per network chunk cost more than the
//! write), and a second batch arrives while the first is written. Without a bound that is up to
//! two batches per upload: 500 clients pushing at 1 MB/s each held 484 MB, and a slow client
//! holds its partial batch for as long as it likes. So every byte gathered takes its share of one
//! process-wide budget first, and gives it back once it is written:
//!
//! - while the budget has room, batching is as before;
//! - an upload that finds the budget spent writes what it has gathered (so that its share comes
//!   back by itself) and then waits for room, which stops it reading its socket: TCP pushes back
//!   on its client;
//! - an upload waiting for more of its body while another waits for room writes its partial batch
//!   at once (it would otherwise hold its share for as long as its client is silent).
//!
//! No upload waits while holding a share that only its own progress could give back (a batch
//! being written comes back when the write ends), so the waits always end.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The budget every store's uploads share: a few dozen uploads at full speed batch as they
/// would alone, and no number of clients makes the server hold more.
pub const UPLOADS_BUDGET: usize = 64 << 20;
/// The budget's grain: a share is a whole number of these.
const UNIT: usize = 1 << 10;

pub struct BodyBudget {
    permits: Arc<Semaphore>,
    units: usize,
    /// Uploads waiting for room now.
    waiting: AtomicUsize,
    /// Woken when an upload starts waiting: gatherers write what they hold.
    wanted: Notify,
}

/// A share of the budget; given back when dropped.
pub struct Share(Option<OwnedSemaphorePermit>);

impl Share {
    pub fn none() -> Share {
        Share(None)
    }

    /// Adds `other`'s bytes to this share.
    pub fn merge(&mut self, other: Share) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (_, None) => {}
        }
    }
}

/// What came first: the awaited item, or another upload's need for room.
pub enum Next<T> {
    Item(T),
    Wanted,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Arc<BodyBudget> {
        let units = bytes.div_ceil(UNIT).max(1);
        Arc::new(BodyBudget { permits: Arc::new(Semaphore::new(units)), units, waiting: AtomicUsize::new(0), wanted: Notify::new() })
    }

    /// The process's budget for uploads.
    pub fn uploads() -> Arc<BodyBudget> {
        static UPLOADS: LazyLock<Arc<BodyBudget>> = LazyLock::new(|| BodyBudget::new(UPLOADS_BUDGET));
        UPLOADS.clone()
    }

    /// A chunk larger than the whole budget takes all of it.
    fn units_for(&self, bytes: usize) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, self.units).min(u32::MAX as usize) as u32
    }

    /// A share for `bytes` if the budget has room now.
    pub fn try_take(&self, bytes: usize) -> Option<Share> {
        self.permits.clone().try_acquire_many_owned(self.units_for(bytes)).ok().map(|p| Share(Some(p)))
    }

    /// A share for `bytes`, waiting for room; while it waits, gatherers are asked to write
    /// what they hold. The caller must hold no share that only its own progress gives back.
    pub async fn take(&self, bytes: usize) -> Share {
        let n = self.units_for(bytes);
        if let Ok(p) = self.permits.clone().try_acquire_many_owned(n) {
            return Share(Some(p));
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        self.wanted.notify_waiters();
        // The semaphore is never closed.
        Share(self.permits.clone().acquire_many_owned(n).await.ok())
    }

    /// `next` (an upload's wait for more of its body), unless another upload waits for room
    /// first: then the caller should write what it has gathered. Dropping `next` unfinished
    /// must lose nothing (as a stream's `next()` does not).
    pub async fn next_or_wanted<F: Future>(&self, next: F) -> Next<F::Output> {
        let wanted = self.wanted.notified();
        tokio::pin!(wanted);
        // Registered before the check: a wait that begins after it still wakes this one.
        wanted.as_mut().enable();
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return Next::Wanted;
        }
        tokio::select! {
            biased;
            item = next => Next::Item(item),
            () = wanted => Next::Wanted,
        }
    }

    /// Bytes held now, to the grain.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        (self.units - self.permits.available_permits()) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_asks_gatherers_to_write_and_ends_when_room_comes_back() {
        let budget = BodyBudget::new(4 * UNIT);
        let held = budget.try_take(3 * UNIT).unwrap();
        assert_eq!(budget.held(), 3 * UNIT);
        assert!(budget.try_take(2 * UNIT).is_none(), "no room for two more units");

        // A gatherer waiting for its body hears of the wait, and gives its share back.
        let b = budget.clone();
        let gatherer = tokio::spawn(async move {
            let next = b.next_or_wanted(std::future::pending::<()>()).await;
            assert!(matches!(next, Next::Wanted));
            drop(held);
        });
        let waiter = budget.take(2 * UNIT).await;
        gatherer.await.unwrap();
        assert_eq!(budget.held(), 2 * UNIT);
        // Nobody waits now: the body's next item comes first.
        assert!(matches!(budget.next_or_wanted(async { 7 }).await, Next::Item(7)));
        let mut both = waiter;
        both.merge(budget.try_take(1).unwrap());
        assert_eq!(budget.held(), 3 * UNIT, "a byte takes a whole unit");
        drop(both);
        assert_eq!(budget.held(), 0);
        // Larger than the budget: all of it, not a wait for ever.
        let all = budget.take(100 * UNIT).await;
        assert_eq!(budget.held(), 4 * UNIT);
        drop(all);
    }
}
