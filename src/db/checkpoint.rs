//! SQLite's WAL checkpoints, off the write path. Left to SQLite, the commit that pushes the WAL
//! past 1,000 pages copies it into the database file and syncs it before it returns, while this
//! process's writer permit is held: one write in a few then takes 20 ms instead of 2 (measured
//! with the GC bench, docs/benchmarks.md). A thread of its own checkpoints instead, in PASSIVE
//! mode, which runs beside readers and writers; SQLite's own checkpoint stays as a backstop at
//! [`BACKSTOP_PAGES`] should this thread fall behind.

use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

/// How often the WAL is copied into the database file.
const EVERY: Duration = Duration::from_millis(250);

/// WAL pages after which a commit checkpoints by itself (SQLite's default is 1,000).
pub const BACKSTOP_PAGES: u32 = 10_000;

/// What is left of the WAL file once a checkpoint has copied all of it: the first commit after
/// that cuts the file down to this. Without a limit SQLite reuses the file from its start but
/// never shrinks it, so a WAL that grew once (a long read holding back the checkpoints while
/// writes went on: an import, a GC pass beside a push storm) kept its size on disk for ever.
pub const WAL_KEPT_BYTES: u64 = 64 << 20;

/// Starts the checkpoint thread for the database at `path`; it ends once `alive` is dropped
/// (the last handle of the database is gone).
pub fn start<T: Send + Sync + 'static>(path: &str, alive: &Arc<T>) -> std::io::Result<()> {
    let alive: Weak<T> = Arc::downgrade(alive);
    let path = path.to_string();
    std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        let mut conn = match SqliteConnection::establish(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoints are left to SQLite's commits: cannot open the database");
                return;
            }
        };
        while alive.strong_count() > 0 {
            std::thread::sleep(EVERY);
            // PASSIVE never waits on a reader or a writer; what it cannot copy now it copies next time.
            if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                tracing::debug!(error = %e, "WAL checkpoint");
            }
        }
    })?;
    Ok(())
}
