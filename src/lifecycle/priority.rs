//! The CPU priority of the lifecycle's threads. A pass or a task run must not delay the
//! requests served beside it, and must still finish on a machine whose CPUs are busy.
//!
//! A nice value alone does not keep a pass out of the requests' way: under the EEVDF scheduler
//! a thread that has the CPU keeps it for the rest of its slice (a few milliseconds) whatever
//! its weight, and that is what a blob GET waited for during a GC pass (p95 2-3x of without at
//! nice 10). On `SCHED_IDLE` any normal thread that wakes up preempts it at once (p95 1.2-1.5x,
//! docs/benchmarks.md). But a `SCHED_IDLE` thread gets a fraction of a percent of a CPU that
//! normal threads keep busy (measured: a GC pass of 0.5 s took 183 s beside two busy loops),
//! and an unprivileged thread cannot leave `SCHED_IDLE` again. So there are two lifecycle
//! threads, each with its blocking pool: one on `SCHED_IDLE`, one at nice 10, and a run starts
//! on the idle one unless the CPUs are already busy when it starts.

use std::collections::VecDeque;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use actix_rt::{Arbiter, ArbiterHandle};

/// The nice value of the lifecycle's thread for busy times (10 weighs about a tenth of a
/// normal thread under the Linux scheduler); also where `SCHED_IDLE` is refused.
const NICENESS: i32 = 10;

/// The CPUs' idle share over the last half second or so before a run starts, below which the run
/// starts at nice 10: a `SCHED_IDLE` thread runs on what the normal threads leave idle.
const SPARE_PERCENT: u64 = 15;

/// The shortest span over which the CPUs' idle share is judged before a run starts.
const SAMPLE: Duration = Duration::from_millis(200);

/// How often the CPU times are noted, so that a run can start without waiting for a sample.
const NOTE_EVERY: Duration = Duration::from_millis(500);

/// The two latest notes of [`cpu_times`], newest last.
static NOTES: Mutex<VecDeque<(Instant, (u64, u64))>> = Mutex::new(VecDeque::new());

/// The lifecycle's two threads, started on first use. Call it on a thread of the actix system:
/// an arbiter belongs to the system of the thread that starts it.
pub(super) fn arbiters() -> [&'static ArbiterHandle; 2] {
    static NOTING: Once = Once::new();
    NOTING.call_once(|| {
        super::on_time(async {
            let mut every = tokio::time::interval(NOTE_EVERY);
            loop {
                every.tick().await;
                if let Some(times) = cpu_times() {
                    let mut notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
                    if notes.len() == 2 {
                        notes.pop_front();
                    }
                    notes.push_back((Instant::now(), times));
                }
            }
        })
    });
    [idle_arbiter(), nice_arbiter()]
}

/// Which of [`arbiters`] a run starts on now (see the module documentation). The CPU pressure
/// that the kernel reports (`/proc/pressure/cpu`) would not do: it counts threads that wait for
/// a CPU, and two busy threads on two CPUs leave none waiting, yet nothing is left for
/// `SCHED_IDLE`.
pub(super) async fn choose([idle, nice]: [&'static ArbiterHandle; 2]) -> &'static ArbiterHandle {
    let noted = NOTES.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().find(|(at, _)| at.elapsed() >= SAMPLE).map(|(_, times)| *times);
    let before = match noted {
        Some(times) => times,
        None => {
            // Unknown (no /proc/stat): the priority that cannot starve.
            let Some(times) = cpu_times() else { return nice };
            tokio::time::sleep(SAMPLE).await;
            times
        }
    };
    match cpu_times().and_then(|after| spare_percent(before, after)) {
        Some(p) if p >= SPARE_PERCENT => idle,
        _ => nice,
    }
}

/// Whether the CPUs were less than [`SPARE_PERCENT`] idle between the two latest notes (about
/// the last second): where a `SCHED_IDLE` thread would now wait for every busy thread. `false`
/// while there are no notes yet.
pub(super) fn cpus_busy() -> bool {
    #[cfg(test)]
    if LOAD_IGNORED.load(std::sync::atomic::Ordering::SeqCst) {
        return false;
    }
    let notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
    match (notes.front(), notes.back()) {
        (Some((t0, before)), Some((t1, after))) if t1 > t0 => spare_percent(*before, *after).is_some_and(|p| p < SPARE_PERCENT),
        _ => false,
    }
}

/// Tests that expect the quiet machine's choices whatever the machine's load.
#[cfg(test)]
pub(super) static LOAD_IGNORED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The machine's CPU time so far, all CPUs together, as (idle, total) in clock ticks.
fn cpu_times() -> Option<(u64, u64)> {
    parse_cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// How many CPUs `/proc/stat` counts (the ones [`cpu_times`] adds up).
#[cfg(test)]
pub(super) fn cpus() -> usize {
    std::fs::read_to_string("/proc/stat").map_or(0, |s| s.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count())
}

fn parse_cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let (idle, total) = (ticks.get(3)? + ticks.get(4)?, ticks.iter().sum());
    Some((idle, total))
}

fn spare_percent((idle0, total0): (u64, u64), (idle1, total1): (u64, u64)) -> Option<u64> {
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    Some(idle1.saturating_sub(idle0) * 100 / total)
}

fn lower_priority() {
    wharf_format::ThreadClass::Nice.set_current();
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICENESS) {
        tracing::debug!(error = %e, "cannot lower the lifecycle thread's priority");
    }
}

/// Puts the calling thread on `SCHED_IDLE`; its writes go to the timekeeper's threads, at
/// normal priority, whenever a request's write waits for the writer permit (see
/// `db::run_writes_at_normal_priority`), and its network connections are its own
/// ([`wharf_format::ThreadClass`]).
fn lowest_priority() {
    use thread_priority::unix::{set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadSchedulePolicy};
    // First, while this thread is still normal: threads inherit the policy of the thread that
    // starts them, and the timekeeper's workers must not be idle.
    let timekeeper = super::timekeeper().handle().clone();
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), thread_priority::ThreadPriority::Min, idle) {
        tracing::debug!(error = %e, "cannot put a lifecycle thread on SCHED_IDLE; lowering its nice value instead");
        lower_priority();
    }
    // After the fallback above: this thread's connections stay apart from the nice thread's too.
    wharf_format::ThreadClass::Idle.set_current();
    crate::db::run_writes_at_normal_priority(timekeeper);
}

fn start(name: &str, prioritize: fn()) -> ArbiterHandle {
    let name = name.to_string();
    Arbiter::with_tokio_rt(move || {
        // This closure runs on the arbiter's own thread; the runtime's blocking threads are
        // started by it and set their own priority too.
        prioritize();
        tokio::runtime::Builder::new_current_thread().thread_name(name).on_thread_start(prioritize).enable_all().build().expect("the lifecycle runtime")
    })
    .handle()
}

/// The lifecycle's thread on `SCHED_IDLE`, with its blocking pool (a pass's queries and file
/// deletions).
pub(super) fn idle_arbiter() -> &'static ArbiterHandle {
    static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();
    ARBITER.get_or_init(|| start("wharf-lifecycle-idle", lowest_priority))
}

/// The lifecycle's thread at nice 10, for runs that start while the CPUs are busy. Its
/// writes keep that priority: a nice value slows a thread down under contention, it does not
/// stop it.
fn nice_arbiter() -> &'static ArbiterHandle {
    static ARBITER: OnceLock<ArbiterHandle> = OnceLock::new();
    ARBITER.get_or_init(|| start("wharf-lifecycle", lower_priority))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_spare_share_is_idle_and_iowait_over_all_ticks() {
        let before = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1\n";
        let after = "cpu  280 0 70 815 55 0 0 0 0 0\ncpu0 140 0 35 408 28 0 0 0 0 0\n";
        let (b, a) = (super::parse_cpu_times(before).unwrap(), super::parse_cpu_times(after).unwrap());
        assert_eq!((b, a), ((850, 1000), (870, 1220)));
        assert_eq!(super::spare_percent(b, a), Some(9), "20 idle ticks of 220");
        assert_eq!(super::spare_percent(a, a), None, "no time passed");
        assert_eq!(super::parse_cpu_times("cpu0 1 2 3\n"), None);
    }
}
