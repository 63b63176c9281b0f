//! The storage lifecycle: what removes content, and when. Garbage collection of unreferenced
//! blobs, cleanup policies and retention, usage and quotas, and the scheduled tasks that run them.

pub mod cleanup;
pub mod downloads;
pub mod gc;
pub mod health_check;
mod priority;
pub mod schedule;
pub mod soft_quota;
pub mod store_removal;
pub mod store_usage;
pub mod tasks;

use std::future::Future;
use std::sync::OnceLock;

/// Runs the work `start` makes on one of the lifecycle's own threads, at a lower priority (see
/// `priority`), instead of on the HTTP worker that received the request that asked for it: a
/// pass or a task run does work between its awaits (batches, walks over every asset of a
/// repository), and on a worker that work delays every request the worker serves (measured:
/// pull latency during a GC doubled). The work is made there because format futures are not
/// `Send`.
pub fn in_background<S, F>(start: S)
where
    S: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    // The threads are started here, on the caller's actix thread (an arbiter belongs to the
    // system of the thread that starts it); the choice between them may wait for a sample of
    // the CPUs' load, so it is made on the timekeeper rather than on the caller's worker.
    let arbiters = priority::arbiters();
    on_time(async move {
        if !priority::choose(arbiters).await.spawn_fn(move || {
            actix_rt::spawn(start());
        }) {
            tracing::error!("the lifecycle thread is gone: background work not started");
        }
    });
}

/// Starts the lifecycle's threads, and the notes of the CPUs' load that decide which one a run
/// starts on, so that the first run need not wait for a sample. Call it on an actix thread.
pub fn prepare() {
    priority::arbiters();
}

/// Whether the CPUs are busy now, as the lifecycle judges where its work runs: a lifecycle
/// thread's database writes go to normal threads then (`db::Db::write`).
pub(crate) fn cpus_busy() -> bool {
    priority::cpus_busy()
}

/// Runs `work` where a starved lifecycle thread cannot hold it up once it has begun: on the
/// timekeeper's runtime (normal priority) when the caller is on `SCHED_IDLE` and the CPUs are
/// busy, else here. For work that others wait for from its first step to its last, such as a
/// GC batch from its mark to its forget (a writer that needs a marked blob waits for the
/// forget): polled here, every await in between would wait for busy CPUs to let the idle thread
/// run, and a run that started on a quiet machine stays on `SCHED_IDLE` when the CPUs fill up.
/// Once started there, the work finishes even if the caller never runs again.
pub(crate) async fn unstarved<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    if wharf_format::ThreadClass::current() != wharf_format::ThreadClass::Idle || !cpus_busy() {
        return work.await;
    }
    match timekeeper().spawn(work).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the timekeeper's runtime is shutting down, and so is the process.
        Err(e) => panic!("the timekeeper dropped a lifecycle job: {e}"),
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
            // Its network connections are the lifecycle's, not the requests' (see
            // `wharf_format::ThreadClass`): a request's bytes must not be driven here.
            .on_thread_start(|| wharf_format::ThreadClass::Nice.set_current())
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
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    /// One of these tests at a time: one keeps every CPU busy, which starves the others' work
    /// on the `SCHED_IDLE` thread and changes where their runs start.
    pub(super) fn alone() -> MutexGuard<'static, ()> {
        static ONE: Mutex<()> = Mutex::new(());
        ONE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lifecycle's work, its blocking pool included, runs on `SCHED_IDLE` threads (so that
    /// a request thread that wakes takes the CPU at once); its database writes too, except while
    /// a writer at normal priority waits for the writer permit: then they run at normal priority.
    #[test]
    fn lifecycle_work_runs_idle_and_its_writes_not_while_a_writer_waits() {
        let _alone = alone();
        use thread_priority::unix::{thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        fn idle() -> bool {
            thread_schedule_policy().unwrap() == ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        }
        // Busy CPUs send the writes to normal threads too (the next test); this one is about
        // the waiting writer.
        struct Heed;
        impl Drop for Heed {
            fn drop(&mut self) {
                super::priority::LOAD_IGNORED.store(false, Ordering::SeqCst);
            }
        }
        super::priority::LOAD_IGNORED.store(true, Ordering::SeqCst);
        let _heed = Heed;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let seen = actix_rt::System::new().block_on(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            // The idle one whatever the machine's load (`in_background` picks by it).
            super::priority::idle_arbiter().spawn_fn(move || {
                actix_rt::spawn(async move {
                    let here = idle();
                    let read = db.run(|_| Ok(idle())).await.unwrap();
                    let written = db.write(|_| Ok(idle())).await.unwrap();
                    let waiter = db.pretend_a_writer_waits();
                    let written_while_waited_for = db.write(|_| Ok(idle())).await.unwrap();
                    drop(waiter);
                    let written_after = db.write(|_| Ok(idle())).await.unwrap();
                    let _ = tx.send([here, read, written, written_while_waited_for, written_after]);
                });
            });
            rx.await.ok()
        });
        assert_eq!(seen, Some([true, true, true, false, true]), "on SCHED_IDLE: the lifecycle thread, a read, a write, one while a writer waits, one after");
        assert!(!idle(), "the caller's own thread keeps its policy");
    }

    /// A run on the `SCHED_IDLE` thread that started on a quiet machine stays there when the CPUs
    /// fill up; its database writes (which hold the permit every push waits for) go to normal
    /// threads then, even with no writer waiting.
    #[test]
    fn an_idle_runs_writes_go_to_normal_threads_while_every_cpu_is_busy() {
        let _alone = alone();
        use std::sync::atomic::AtomicBool;
        use thread_priority::unix::{thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        fn idle() -> bool {
            thread_schedule_policy().unwrap() == ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        }
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let spinners = spin(super::priority::cpus().max(1), &stop);
        let seen = actix_rt::System::new().block_on(async move {
            super::prepare();
            // Longer than two notes apart: the span judged lies wholly in the busy time.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let (tx, rx) = tokio::sync::oneshot::channel();
            super::priority::idle_arbiter().spawn_fn(move || {
                actix_rt::spawn(async move {
                    let written = db.write(|_| Ok(idle())).await.unwrap();
                    let _ = tx.send((idle(), written));
                });
            });
            rx.await.ok()
        });
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(seen, Some((true, false)), "(the run on SCHED_IDLE, its write on SCHED_IDLE)");
    }

    /// Busy loops on `n` threads until `stop`.
    pub(super) fn spin(n: usize, stop: &Arc<std::sync::atomic::AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect()
    }

    /// A `SCHED_IDLE` thread gets next to nothing of CPUs that normal threads keep busy (a GC
    /// pass of 0.5 s took 183 s beside two busy loops): a run that starts while every CPU is
    /// busy runs at nice 10 instead, blocking pool included.
    #[test]
    fn a_run_that_starts_while_every_cpu_is_busy_runs_at_nice_10() {
        let _alone = alone();
        use std::sync::atomic::AtomicBool;
        use thread_priority::unix::{thread_schedule_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        fn priority() -> (bool, i32) {
            let idle = thread_schedule_policy().unwrap() == ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
            (idle, rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap())
        }
        let stop = Arc::new(AtomicBool::new(false));
        // As many as the CPUs the choice looks at (all of the machine's, whatever this
        // process's affinity or quota).
        let spinners = spin(super::priority::cpus().max(1), &stop);
        let seen = actix_rt::System::new().block_on(async {
            super::prepare();
            // Longer than two notes apart: the span judged lies wholly in the busy time.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            super::in_background_then(|| async { (priority(), tokio::task::spawn_blocking(priority).await.unwrap()) }).await
        });
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        // Nice 10, or more where this process already ran at more (it cannot lower it).
        let at_least_10 = |(idle, nice): (bool, i32)| !idle && nice >= 10;
        assert!(
            seen.is_some_and(|(run, pool)| at_least_10(run) && at_least_10(pool)),
            "(SCHED_IDLE, nice) of the run's thread and of its blocking pool: {seen:?}"
        );
    }

    /// A task run's work may keep the lifecycle thread for a long time between awaits (here: it
    /// blocks it outright until it has seen the ticks, or 30 s pass); what it starts with
    /// [`super::on_time`] keeps ticking meanwhile. Started with `actix_rt::spawn` from the work,
    /// as lease renewals once were, not one tick would come.
    #[test]
    fn timekeeping_goes_on_while_the_lifecycle_thread_is_held() {
        let _alone = alone();
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
