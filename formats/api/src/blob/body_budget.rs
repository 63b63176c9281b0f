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

/// The budget file stores' uploads share: a few dozen uploads at full speed batch as they
/// would alone, and no number of clients makes the server hold more.
pub const UPLOADS_BUDGET: usize = 64 << 20;
/// The budget S3 stores' parts on their way share (eight parts of 8 MiB). A budget of its own:
/// a part holds its share for as long as S3 takes (with retries, minutes), which must not hold
/// up the file stores' uploads.
pub const S3_PARTS_BUDGET: usize = 64 << 20;

/// Shares are counted in bytes: a client that sends a byte at a time takes a byte at a time.
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    bytes: usize,
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
        let bytes = bytes.clamp(1, u32::MAX as usize);
        Arc::new(BodyBudget { permits: Arc::new(Semaphore::new(bytes)), bytes, waiting: AtomicUsize::new(0), wanted: Notify::new() })
    }

    /// The process's budget for file stores' uploads.
    pub fn uploads() -> Arc<BodyBudget> {
        static UPLOADS: LazyLock<Arc<BodyBudget>> = LazyLock::new(|| BodyBudget::new(UPLOADS_BUDGET));
        UPLOADS.clone()
    }

    /// The process's budget for S3 stores' parts on their way.
    pub fn s3_parts() -> Arc<BodyBudget> {
        static S3_PARTS: LazyLock<Arc<BodyBudget>> = LazyLock::new(|| BodyBudget::new(S3_PARTS_BUDGET));
        S3_PARTS.clone()
    }

    /// A chunk larger than the whole budget takes all of it.
    fn permits_for(&self, bytes: usize) -> u32 {
        bytes.clamp(1, self.bytes) as u32
    }

    /// A share for `bytes` if the budget has room now.
    pub fn try_take(&self, bytes: usize) -> Option<Share> {
        self.permits.clone().try_acquire_many_owned(self.permits_for(bytes)).ok().map(|p| Share(Some(p)))
    }

    /// A share for `bytes`, waiting for room; while it waits, gatherers are asked to write
    /// what they hold. The caller must hold no share that only its own progress gives back.
    pub async fn take(&self, bytes: usize) -> Share {
        let n = self.permits_for(bytes);
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
        // Made before the check: a `notify_waiters` after its creation wakes it, polled or not,
        // so a wait that begins after the check still ends this one.
        let wanted = self.wanted.notified();
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return Next::Wanted;
        }
        tokio::select! {
            biased;
            item = next => Next::Item(item),
            () = wanted => Next::Wanted,
        }
    }

    /// Bytes held now (or handed to a waiter).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.bytes - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wait_asks_gatherers_to_write_and_ends_when_room_comes_back() {
        let budget = BodyBudget::new(4096);
        let held = budget.try_take(3000).unwrap();
        assert_eq!(budget.held(), 3000);
        assert!(budget.try_take(2000).is_none(), "no room for 2,000 more bytes");

        // A gatherer already waiting for its body when the wait begins hears of it, and gives
        // its share back.
        let b = budget.clone();
        let gatherer = tokio::spawn(async move {
            let next = b.next_or_wanted(std::future::pending::<()>()).await;
            assert!(matches!(next, Next::Wanted));
            drop(held);
        });
        tokio::task::yield_now().await;
        assert!(!gatherer.is_finished(), "nobody waited yet: the gatherer waits for its body");
        let waiter = tokio::time::timeout(Duration::from_secs(10), budget.take(2000)).await.expect("the gatherer was never asked");
        gatherer.await.unwrap();
        assert_eq!(budget.held(), 2000);
        // Nobody waits now: the body's next item comes first.
        assert!(matches!(budget.next_or_wanted(async { 7 }).await, Next::Item(7)));
        let mut both = waiter;
        both.merge(budget.try_take(1).unwrap());
        assert_eq!(budget.held(), 2001, "counted in bytes");
        drop(both);
        assert_eq!(budget.held(), 0);
        // A wait given up gives back what it had been handed.
        let most = budget.try_take(4000).unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(50), budget.take(1000)).await.is_err());
        drop(most);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.waiting.load(Ordering::SeqCst), 0, "nobody waits any more");
        // Larger than the budget: all of it, not a wait for ever.
        let all = budget.take(1 << 20).await;
        assert_eq!(budget.held(), 4096);
        drop(all);
    }
}
