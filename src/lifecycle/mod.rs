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

/// Runs the work `start` makes on the main thread's arbiter, where the scheduler ticks, instead
/// of on the HTTP worker that received the request that asked for it: a pass or a task run does
/// work between its awaits (batches, walks over every asset of a repository), and on a worker
/// that work delays every request the worker serves (measured: pull latency during a GC
/// doubled). The work is made there because format futures are not `Send`.
pub fn in_background<S, F>(start: S)
where
    S: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let arbiter = actix_rt::System::current().arbiter().clone();
    if !arbiter.spawn_fn(move || {
        actix_rt::spawn(start());
    }) {
        tracing::error!("the main arbiter is gone: background work not started");
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
