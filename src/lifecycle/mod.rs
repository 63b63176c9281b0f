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

/// The lifecycle's fallback priority where `SCHED_IDLE` is refused (a nice value: 10 weighs
/// about a tenth of a normal thread under the Linux scheduler).
const NICENESS: i32 = 10;

/// Puts the calling thread at the lowest CPU priority: `SCHED_IDLE`, whose threads any
/// normal thread that wakes up preempts at once. A nice value alone is not enough: under the
/// EEVDF scheduler a thread that has the CPU keeps it for the rest of its slice (up to a few
/// milliseconds) whatever its weight, and that is what a blob GET waited for during a GC pass
/// (p95 2-3x of without; with `SCHED_IDLE` 1.2-1.3x, docs/benchmarks.md). The thread's writes
/// go to the timekeeper's threads, at normal priority, whenever a request's write waits for them
/// (see `db::run_writes_at_normal_priority`).
fn lowest_priority() {
    use thread_priority::unix::{set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
    // First, while this thread is still normal: threads inherit the policy of the thread that
    // starts them, and the timekeeper's workers must not be idle.
    let timekeeper = timekeeper().handle().clone();
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), thread_priority::ThreadPriority::Min, idle) {
        tracing::debug!(error = %e, "cannot put a lifecycle thread on SCHED_IDLE; lowering its nice value instead");
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICENESS) {
            tracing::debug!(error = %e, "cannot lower the lifecycle thread's priority");
        }
    }
    crate::db::run_writes_at_normal_priority(timekeeper);
}

/// The thread the lifecycle's work runs on, and its blocking pool (a pass's queries and file
/// deletions), at the lowest priority.
fn arbiter() -> &'static ArbiterHandle {
    static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();
    ARBITER.get_or_init(|| {
        let arbiter = Arbiter::with_tokio_rt(|| {
            // This closure runs on the arbiter's own thread.
            lowest_priority();
            tokio::runtime::Builder::new_current_thread().on_thread_start(lowest_priority).enable_all().build().expect("the lifecycle runtime")
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
/// time whatever the work does (a task run's lease renewal), and for the lifecycle's database
/// writes. Beside the work on the lifecycle thread a renewal would wait for that work's next
/// await, and at its priority for every busy thread too; a renewal later than the lease hands
/// the run to another node while this one still runs it.
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

    /// The lifecycle's work, its blocking pool included, runs on `SCHED_IDLE` threads (so that
    /// a request thread that wakes takes the CPU at once); its database writes too, except while
    /// a writer at normal priority waits for the writer permit: then they run at normal priority.
    #[test]
    fn lifecycle_work_runs_idle_and_its_writes_not_while_a_writer_waits() {
        use thread_priority::unix::{thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        fn idle() -> bool {
            thread_schedule_policy().unwrap() == ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        }
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let seen = actix_rt::System::new().block_on(super::in_background_then(move || async move {
            let here = idle();
            let read = db.run(|_| Ok(idle())).await.unwrap();
            let written = db.write(|_| Ok(idle())).await.unwrap();
            let waiter = db.pretend_a_writer_waits();
            let written_while_waited_for = db.write(|_| Ok(idle())).await.unwrap();
            drop(waiter);
            let written_after = db.write(|_| Ok(idle())).await.unwrap();
            [here, read, written, written_while_waited_for, written_after]
        }));
        assert_eq!(seen, Some([true, true, true, false, true]), "on SCHED_IDLE: the lifecycle thread, a read, a write, one while a writer waits, one after");
        assert!(!idle(), "the caller's own thread keeps its policy");
    }

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
