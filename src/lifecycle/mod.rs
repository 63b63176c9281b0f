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
