//! Where log lines go: standard output, written by the thread that logs, except on the storage
//! lifecycle's threads. Writing a line takes the process-wide lock of standard output for the
//! `write(2)`; a lifecycle thread on `SCHED_IDLE` that busy CPUs preempt while it holds that
//! lock (a `write` that wakes the log's reader is where that happens) would hold up every
//! request's log line, and so every request, until it ran again. Its lines go through a queue
//! to a writer thread at normal priority instead. Request threads keep writing directly, so
//! their lines are out before a crash, as before.

use std::io::Stdout;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::writer::{EitherWriter, MakeWriter};
use wharf_format::ThreadClass;

/// Lines the queue holds before a lifecycle thread that logs waits for the writer.
const QUEUED_LINES: usize = 1024;

pub struct LogOutput {
    queued: NonBlocking,
}

impl LogOutput {
    /// Standard output as above; the guard flushes the queue when dropped (keep it until the
    /// process ends). Call it on a normal thread: the writer thread is started from it.
    pub fn stdout() -> (LogOutput, WorkerGuard) {
        // Not lossy: a full queue (the log's reader stuck) makes the lifecycle wait, as a direct
        // write would, rather than drop lines. A short one: the lifecycle logs little, and the
        // queue's slots are memory the process keeps once it has cycled through them.
        let (queued, guard) = NonBlockingBuilder::default().lossy(false).buffered_lines_limit(QUEUED_LINES).thread_name("wharf-log").finish(std::io::stdout());
        (LogOutput { queued }, guard)
    }
}

impl<'a> MakeWriter<'a> for LogOutput {
    type Writer = EitherWriter<Stdout, NonBlocking>;

    fn make_writer(&'a self) -> Self::Writer {
        match ThreadClass::current() {
            ThreadClass::Normal => EitherWriter::A(std::io::stdout()),
            ThreadClass::Nice | ThreadClass::Idle => EitherWriter::B(self.queued.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::writer::{EitherWriter, MakeWriter};

    /// Request threads write their lines themselves; the lifecycle's threads hand them to the
    /// writer thread.
    #[test]
    fn lifecycle_threads_queue_their_lines_and_other_threads_write_them() {
        let (out, _guard) = super::LogOutput::stdout();
        let queued = |out: &super::LogOutput| matches!(out.make_writer(), EitherWriter::B(_));
        assert!(!queued(&out), "a normal thread");
        let out = std::sync::Arc::new(out);
        for class in [wharf_format::ThreadClass::Idle, wharf_format::ThreadClass::Nice] {
            let out = out.clone();
            let on_lifecycle = std::thread::spawn(move || {
                class.set_current();
                queued(&out)
            });
            assert!(on_lifecycle.join().unwrap(), "a {class:?} lifecycle thread");
        }
    }
}
