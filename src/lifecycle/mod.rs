//! The storage lifecycle: what removes content, and when. Garbage collection of unreferenced
//! blobs, cleanup policies and retention, usage and quotas, and the scheduled tasks that run them.

pub mod cleanup;
pub mod downloads;
pub mod gc;
pub mod health_check;
pub mod schedule;
pub mod soft_quota;
pub mod store_removal;
pub mod store_usage;
pub mod tasks;

use std::future::Future;
use std::sync::OnceLock;

use actix_rt::{Arbiter, ArbiterHandle};

/// How much less CPU the lifecycle's threads get when the HTTP workers want it too (a nice value:
/// 10 weighs about a tenth of a normal thread under the Linux scheduler).
const NICENESS: i32 = 10;

fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICENESS) {
        tracing::debug!(error = %e, "cannot lower the lifecycle thread's priority");
    }
}

/// The thread the lifecycle's work runs on, at a lower priority. Its blocking pool (a pass's
/// database transactions and file deletions) keeps the normal one: a transaction holds the
/// writer permit every push waits for, and at a low priority on a busy machine it would keep
/// them waiting (priority inversion).
fn arbiter() -> &'static ArbiterHandle {
    static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();
    ARBITER.get_or_init(|| {
        let arbiter = Arbiter::with_tokio_rt(|| {
            // This closure runs on the arbiter's own thread.
            lower_priority();
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the lifecycle runtime")
        });
        arbiter.handle()
    })
}

/// Runs the work `start` makes on the lifecycle's own thread, at a lower priority, instead of
/// on the HTTP worker that received the request that asked for it: a pass or a task run does
/// work between its awaits (batches, walks over every asset of a repository), and on a worker
/// that work delays every request the worker serves (measured: pull latency during a GC
/// doubled). The work is made there because format futures are not `Send`.
pub fn in_background<S, F>(start: S)
where
    S: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    if !arbiter().spawn_fn(move || {
        actix_rt::spawn(start());
    }) {
        tracing::error!("the lifecycle thread is gone: background work not started");
    }
}
/// A runtime of its own, at normal priority, for the lifecycle's bookkeeping that must keep
/// time whatever the work does (a task run's lease renewal). Beside the work on the lifecycle
/// thread it would wait for that work's next await, and at nice 10 for the HTTP workers too; a
/// renewal later than the lease hands the run to another node while this one still runs it.
fn timekeeper() -> &'static tokio::runtime::Runtime {
    static TIMEKEEPER: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    TIMEKEEPER.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("wharf-timekeeper")
            .enable_all()
            .build()
            .expect("the timekeeper runtime")
    })
}

/// Runs `work` on the timekeeper's thread (see [`timekeeper`]), where nothing the lifecycle
/// runs can hold it up. Keep it small: it shares that thread with every other such job.
pub fn on_time<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    timekeeper().spawn(work);
}

/// [`in_background`], answering the caller when the work is done (`None` if it never ran).
pub async fn in_background_then<T, S, F>(start: S) -> Option<T>
where
    T: Send + 'static,
    S: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    in_background(move || async move {
        let _ = tx.send(start().await);
    });
    rx.await.ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A task run's work may keep the lifecycle thread for a long time between awaits (here: it
    /// blocks it outright until it has seen the ticks, or 30 s pass); what it starts with
    /// [`super::on_time`] keeps ticking meanwhile. Started with `actix_rt::spawn` from the work,
    /// as lease renewals once were, not one tick would come.
    #[test]
    fn timekeeping_goes_on_while_the_lifecycle_thread_is_held() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let seen = actix_rt::System::new().block_on({
            let ticks = ticks.clone();
            super::in_background_then(move || async move {
                let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
                let t = ticks.clone();
                super::on_time(async move {
                    loop {
                        tokio::select! {
                            _ = &mut done_rx => return,
                            _ = tokio::time::sleep(Duration::from_millis(10)) => { t.fetch_add(1, Ordering::SeqCst); }
                        }
                    }
                });
                // Synchronous work between awaits, as a long loop of a task would do.
                let deadline = Instant::now() + Duration::from_secs(30);
                while ticks.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let seen = ticks.load(Ordering::SeqCst);
                let _ = done_tx.send(());
                seen
            })
        });
        assert!(seen.is_some_and(|n| n >= 3), "ticks while the lifecycle thread was held: {seen:?}");
    }
}
