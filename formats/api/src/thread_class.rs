//! Which CPU priority the calling thread runs at, as far as shared network connections are
//! concerned. An HTTP/1 connection of a pooled client is driven by a task on the runtime of the
//! thread that opened it; a request that reuses it from the pool on another thread waits for
//! that one to run. A connection opened by a storage-lifecycle thread (on `SCHED_IDLE`, or at
//! nice 10: the server's `lifecycle::priority`) and then reused by a request would make the
//! request wait as long as the lifecycle does when the CPUs are busy (measured: blob GETs on an
//! S3 store at p99 93 ms and a third of the rate, against 9 ms on the requests' own
//! connections). So the clients that pool connections keep one pool per class.

use std::cell::Cell;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadClass {
    /// Request threads and everything else at the normal priority.
    #[default]
    Normal,
    /// A lifecycle thread that cannot starve: lowered by a nice value, or the lifecycle's
    /// timekeeper (normal priority, small jobs).
    Nice,
    /// A lifecycle thread on `SCHED_IDLE`.
    Idle,
}

thread_local! {
    static CURRENT: Cell<ThreadClass> = const { Cell::new(ThreadClass::Normal) };
}

impl ThreadClass {
    /// The class of the calling thread ([`ThreadClass::Normal`] unless it said otherwise).
    pub fn current() -> ThreadClass {
        CURRENT.with(Cell::get)
    }

    /// Says what the calling thread is; its priority itself is the caller's to set.
    pub fn set_current(self) {
        CURRENT.with(|c| c.set(self));
    }
}
