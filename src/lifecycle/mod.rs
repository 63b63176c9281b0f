//! The storage lifecycle: what removes content, and when. Garbage collection of unreferenced
//! blobs, cleanup policies and retention, usage and quotas, and the scheduled tasks that run them.

pub mod cleanup;
pub mod downloads;
pub mod gc;
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
