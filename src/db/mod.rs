//! The metadata database: diesel over SQLite (embedded default) or PostgreSQL (scale-out),
//! chosen by the URL's scheme. Diesel is synchronous: every query runs on the blocking pool
//! through [`Db::run`] (reads) or [`Db::write`] (anything that writes), never on an actix worker.
//!
//! Atomicity: every write goes through [`Db::write`], one transaction per call. On SQLite the
//! transaction is `BEGIN IMMEDIATE` behind one process-wide writer permit, so writers take turns and a
//! transaction that reads and then writes never meets a busy database halfway. On PostgreSQL it
//! is `SERIALIZABLE`, so a check and the writes that depend on it commit as if alone (a
//! compare-and-swap cannot lose an update under concurrency); serialization failures and
//! deadlocks are retried with jittered backoff.
//!
//! Point lookups by a unique key use `get_result`, not `first`: `first` adds a bound `LIMIT`,
//! and SQLite without its query planner stability guarantee (now built in, .cargo/config.toml)
//! prepared such a statement again on every run (one user's row: 14 µs against 4 µs).
//!
//! SQLite gathers no statistics here, so it plans by the columns an index matches; a query on a
//! hot path is shaped so that the index that matches most is the one that reads least, and its
//! plan is tested (`plans_of`; docs/architecture.md, "Query plans").

pub mod audit;
pub mod blobs;
pub mod checkpoint;
pub mod cleanup;
pub mod counters;
pub mod deferred_check;
pub mod failures;
pub mod health_checks;
pub mod login_failures;
pub mod meta;
pub mod notify;
#[cfg(test)]
mod plans;
pub mod precheck;
pub mod privileges;
pub mod read_only;
pub mod removals;
pub mod repos;
pub mod schema;
pub mod sessions;
pub mod settings;
pub mod tasks;
pub mod tokens;
pub mod usage;
pub mod usage_cache;
pub mod users;
pub mod web_logins;
pub mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

// SQL's `lower`, for user names compared without regard to ASCII case (users, tokens, sessions).
diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database migrations: {0}")]
    Migration(String),
    /// The database cannot be reached (or refuses the login) at start.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// A pending migration would fail on what the database holds: the message names it and
    /// says what to do.
    #[error("{0}")]
    Precheck(String),
    /// A newer version migrated the database: the message names what and says what to do.
    #[error("{0}")]
    Newer(String),
    #[error("database URL {0:?}: expected sqlite://PATH or postgres://...")]
    BadUrl(String),
    #[error("blocking pool: {0}")]
    Blocking(String),
    /// A stored value that does not parse (refused rather than read as empty, which a later
    /// write would store over it).
    #[error("{0}")]
    Unreadable(String),
    #[error(transparent)]
    Secret(#[from] crate::security::secrets::SecretError),
    /// The request's remembered login no longer holds (see `deferred_check`); the request is
    /// answered again without it.
    #[error("the request's login no longer holds")]
    LoginWithdrawn,
}

impl DbError {
    /// The database's disk (or its quota) is full: SQLite's SQLITE_FULL, PostgreSQL's
    /// disk_full (53100) as it words it.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Query(diesel::result::Error::DatabaseError(_, info)) => {
                let m = info.message();
                m.contains("database or disk is full") || m.contains("could not extend file") || m.contains("No space left on device")
            }
            _ => false,
        }
    }
}

/// Held while a node migrates the database and does its start-up writes (the first start's
/// admin, blob store and repositories; the keys). On PostgreSQL it is a session advisory lock on
/// a connection of its own, so that nodes started together (a Deployment's replicas, `docker
/// compose up`) take turns: without it both run the same migration, one fails on the other's
/// half-made tables and its start ends. PostgreSQL releases it when the connection ends, so a
/// node killed while holding it blocks nobody. On SQLite, nothing (one node).
pub struct StartupLock {
    _conn: Option<PgConnection>,
}

/// The advisory lock's key; no other advisory lock of wharf's uses it.
const STARTUP_LOCK_KEY: i64 = 0x7768_6172_6600_0001;

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

impl StartupLock {
    pub fn acquire(url: &str) -> Result<StartupLock, DbError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Ok(StartupLock { _conn: None });
        }
        use diesel::RunQueryDsl as _;
        let mut c = PgConnection::establish(url).map_err(|e| DbError::Connect(e.to_string()))?;
        let got = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<diesel::sql_types::BigInt, _>(STARTUP_LOCK_KEY)
            .get_result::<Locked>(&mut c)?
            .locked;
        if !got {
            tracing::info!("another node is migrating the database or starting for the first time; waiting for it");
            diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<diesel::sql_types::BigInt, _>(STARTUP_LOCK_KEY).execute(&mut c)?;
        }
        Ok(StartupLock { _conn: Some(c) })
    }
}

#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<AnyConnection>>,
    /// Set while the pool cannot connect (see [`Db::connection`]).
    unreachable: Arc<std::sync::atomic::AtomicBool>,
    pub backend: Backend,
    /// Write transactions this process runs at once: one on SQLite (it has one writer; this
    /// process's writers queue here, fairly and without holding a blocking thread, instead of
    /// meeting SQLITE_BUSY), half the pool on PostgreSQL (writers that wait on each other's row
    /// locks must not take every connection from readers such as password checks).
    writers: Arc<tokio::sync::Semaphore>,
    /// Writers at normal priority waiting for a permit (see [`Db::write`]).
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// How long a caller waits for a pooled connection (all in use, or being made).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits while the database is known not to let the pool connect.
const UNREACHABLE_WAIT: Duration = Duration::from_secs(1);

/// How long [`Db::write`] keeps retrying a transaction that lost a race before giving up.
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite settings per connection, in diesel's recommended order (one PRAGMA per statement,
/// else "database is locked" under load).
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Sqlite(c) = conn {
            let backstop = format!("PRAGMA wal_autocheckpoint = {};", checkpoint::BACKSTOP_PAGES);
            let wal_kept = format!("PRAGMA journal_size_limit = {};", checkpoint::WAL_KEPT_BYTES);
            for pragma in [
                "PRAGMA busy_timeout = 10000;",
                "PRAGMA journal_mode = WAL;",
                "PRAGMA synchronous = NORMAL;",
                "PRAGMA foreign_keys = ON;",
                &backstop,
                &wal_kept,
            ] {
                c.batch_execute(pragma).map_err(diesel::r2d2::Error::QueryError)?;
            }
        }
        Ok(())
    }
}

impl Db {
    /// Connects (pool of `size`), applies pending migrations, and returns the handle.
    pub fn open(url: &str, size: u32) -> Result<Db, DbError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite://") {
            Backend::Sqlite
        } else {
            return Err(DbError::BadUrl(url.to_string()));
        };
        // diesel's MultiConnection tries each backend in turn and, when PostgreSQL is down,
        // reports only "invalid URL": establish once ourselves to get the real error.
        let conn_url = match backend {
            Backend::Sqlite => url.trim_start_matches("sqlite://").to_string(),
            Backend::Postgres => url.to_string(),
        };
        match backend {
            Backend::Postgres => drop(PgConnection::establish(&conn_url).map_err(|e| DbError::Connect(e.to_string()))?),
            Backend::Sqlite => {
                // One connection switches to WAL (and recovers a WAL left by a crash) before the
                // pool opens its connections side by side.
                let mut c = AnyConnection::Sqlite(SqliteConnection::establish(&conn_url).map_err(|e| DbError::Connect(e.to_string()))?);
                SqlitePragmas.on_acquire(&mut c).map_err(|e| DbError::Migration(e.to_string()))?;
            }
        }
        // On PostgreSQL the pool's connections carry this process's name, which the change
        // triggers pass on (see `notify`).
        let pool_url = match backend {
            Backend::Postgres => notify::with_application_name(&conn_url, notify::node_tag()),
            Backend::Sqlite => conn_url.clone(),
        };
        let manager = ConnectionManager::<AnyConnection>::new(pool_url);
        let mut builder = Pool::builder().max_size(size).min_idle(Some(2)).connection_timeout(CONNECTION_TIMEOUT);
        if backend == Backend::Sqlite {
            builder = builder.connection_customizer(Box::new(SqlitePragmas));
        }
        let pool = builder.build(manager)?;
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => (size as usize / 2).max(1),
        };
        let db = Db { pool, unreachable: Default::default(), backend, writers: Arc::new(tokio::sync::Semaphore::new(writers)), waiting: Default::default() };
        db.migrate()?;
        if backend == Backend::Sqlite {
            checkpoint::start(&conn_url, &db.writers).map_err(|e| DbError::Blocking(e.to_string()))?;
        }
        Ok(db)
    }

    /// The pool's connections now, for the metrics (r2d2's `state()`: no connection is taken).
    pub fn pool_state(&self) -> crate::metrics::PoolState {
        let s = self.pool.state();
        crate::metrics::PoolState { connections: s.connections, idle: s.idle_connections, max: self.pool.max_size() }
    }

    fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.pool.get()?;
        precheck::not_newer(&mut conn)?;
        precheck::before_migrations(&mut conn)?;
        let res = match &mut *conn {
            AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
            AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        };
        res.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// A pooled connection. While the database does not let the pool connect (PostgreSQL down
    /// or refusing), every caller used to wait out the whole connection timeout, holding a
    /// blocking thread, before its 503: 10 s per request for as long as the outage lasted. Once
    /// a wait ends on a connection error, callers wait [`UNREACHABLE_WAIT`] until one gets a
    /// connection again (the pool keeps retrying its connections in the background, at least
    /// every 5 s). A wait that ends without one while the pool holds connections (every one
    /// busy) changes nothing.
    fn connection(
        pool: &Pool<ConnectionManager<AnyConnection>>,
        unreachable: &std::sync::atomic::AtomicBool,
    ) -> Result<PooledConnection<ConnectionManager<AnyConnection>>, DbError> {
        use std::sync::atomic::Ordering;
        let wait = if unreachable.load(Ordering::Relaxed) { UNREACHABLE_WAIT } else { CONNECTION_TIMEOUT };
        match pool.get_timeout(wait) {
            Ok(c) => {
                // Read first: a write on every call would bounce the line between CPUs.
                if unreachable.load(Ordering::Relaxed) && unreachable.swap(false, Ordering::Relaxed) {
                    tracing::info!("the database answers again");
                }
                Ok(c)
            }
            Err(e) => {
                // r2d2 says why only in its message: a bare timeout, or the last connection error.
                // A pool that still holds connections is busy, not cut off: a database at its
                // connection limit refuses the pool's new ones while the old ones work.
                let cut_off = e.to_string() != "timed out waiting for connection" && pool.state().connections == 0;
                if cut_off && !unreachable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the database does not let the pool connect; requests fail fast until it does");
                }
                Err(e.into())
            }
        }
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        failures::noted(self.run_once(f).await)
    }

    async fn run_once<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let (pool, unreachable) = (self.pool.clone(), self.unreachable.clone());
        let turn = deferred_check::turn().await?;
        tokio::task::spawn_blocking(move || {
            let mut conn = Db::connection(&pool, &unreachable)?;
            if let Some(turn) = turn {
                turn.run(&mut conn)?;
            }
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Blocking(e.to_string()))?
    }

    /// Runs `f` in one write transaction (see the module documentation): `BEGIN IMMEDIATE`
    /// behind the process's single writer permit on SQLite, `SERIALIZABLE` on PostgreSQL. A transaction
    /// that lost a race (serialization failure, deadlock, a busy SQLite file shared with another
    /// process) is rolled back and `f` runs again after a jittered pause, so `f` must be
    /// repeatable. An `Err` from `f` rolls back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> Result<T, DbError> + Send + Sync + 'static,
    {
        failures::noted(self.write_once(f).await)
    }

    async fn write_once<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> Result<T, DbError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let deadline = Instant::now() + WRITE_DEADLINE;
        let normal_threads = NORMAL_THREADS.with(|w| w.borrow().clone());
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let turn = deferred_check::turn().await?;
            let (pool, unreachable) = (self.pool.clone(), self.unreachable.clone());
            let f = f.clone();
            let job = move |guard: tokio::sync::OwnedSemaphorePermit| {
                move || {
                    let _guard = guard;
                    let mut conn = Db::connection(&pool, &unreachable)?;
                    if let Some(turn) = turn {
                        turn.run(&mut conn)?;
                    }
                    in_write_transaction(&mut conn, &*f)
                }
            };
            let res = match &normal_threads {
                None => {
                    let guard = {
                        let _waiting = Waiting::new(&self.waiting);
                        self.writers.clone().acquire_owned().await.map_err(|e| DbError::Blocking(e.to_string()))?
                    };
                    tokio::task::spawn_blocking(job(guard)).await
                }
                // A lifecycle thread (see `run_writes_at_normal_priority`). The permit is waited
                // for on a normal thread, and handed on at once: were it granted to this thread's
                // task, every writer queued behind it would wait until busy CPUs let this thread
                // run again. The transaction then runs at normal priority while a writer waits
                // or the CPUs are busy (this thread may have started on a quiet machine), and
                // always on PostgreSQL: there a request's write waits for the rows an open
                // transaction locked, not for a permit, so no count says that one waits (and
                // the work is the server's, not this process's). Else here, on this thread's
                // blocking pool. Spawned from the normal thread: a new thread inherits its
                // starter's policy, and the lifecycle's pool sets its own.
                Some(normal) => {
                    let (writers, waiting, here) = (self.writers.clone(), self.waiting.clone(), tokio::runtime::Handle::current());
                    let postgres = self.backend == Backend::Postgres;
                    normal
                        .spawn(async move {
                            let guard = writers.acquire_owned().await.map_err(|e| DbError::Blocking(e.to_string()))?;
                            let urgent = postgres || waiting.load(std::sync::atomic::Ordering::SeqCst) > 0 || crate::lifecycle::cpus_busy();
                            let ran = if urgent { tokio::task::spawn_blocking(job(guard)).await } else { here.spawn_blocking(job(guard)).await };
                            ran.map_err(|e| DbError::Blocking(e.to_string()))?
                        })
                        .await
                }
            }
            .map_err(|e| DbError::Blocking(e.to_string()))?;
            match res {
                Err(DbError::Query(e)) if lost_race(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(wharf_format::backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Counts as a writer at normal priority waiting for a permit until dropped (tests).
    #[cfg(test)]
    pub(crate) fn pretend_a_writer_waits(&self) -> impl Drop {
        Waiting::new(&self.waiting)
    }

    /// The same, synchronously (start-up and CLI only).
    pub fn run_sync<T>(&self, f: impl FnOnce(&mut AnyConnection) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }
}

thread_local! {
    static NORMAL_THREADS: std::cell::RefCell<Option<tokio::runtime::Handle>> = const { std::cell::RefCell::new(None) };
}

/// Tells [`Db::write`] that this thread runs at the lowest CPU priority (the storage
/// lifecycle's, on `SCHED_IDLE`: any busy thread preempts it), and where threads at normal
/// priority are: `runtime`. A write holds the writer permit every push and upload waits for,
/// and on a machine whose CPUs are all busy a thread at the lowest priority gets a fraction of
/// a percent of one (priority inversion: a transaction of 5 ms of CPU would keep writers
/// waiting for seconds). So the permit of a write from here is waited for on `runtime`, and
/// the write runs here only while no writer at normal priority waits for a permit and the
/// CPUs are not busy; otherwise on `runtime`. What is left is the transaction in flight when
/// the first writer came or the CPUs filled up: one at most.
pub fn run_writes_at_normal_priority(runtime: tokio::runtime::Handle) {
    NORMAL_THREADS.with(|w| *w.borrow_mut() = Some(runtime));
}

/// One writer at normal priority waiting for a permit, for as long as it lives.
struct Waiting(Arc<std::sync::atomic::AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Waiting {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Opens the write transaction for the connection's backend, runs `f`, commits or rolls back.
fn in_write_transaction<T>(conn: &mut AnyConnection, f: &dyn Fn(&mut AnyConnection) -> Result<T, DbError>) -> Result<T, DbError> {
    match conn {
        // IMMEDIATE takes the write lock up front (waiting out another process through
        // busy_timeout); a deferred transaction that read first would get SQLITE_BUSY at once.
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN ISOLATION LEVEL SERIALIZABLE")?,
    }
    match f(conn) {
        Ok(v) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(v)
        }
        Err(e) => {
            // A failed rollback leaves the connection marked broken; the pool then drops it.
            let _ = <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// A transaction that failed only because another one ran at the same time: running it again
/// is the cure.
pub fn lost_race(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        // PostgreSQL's deadlock_detected (40P01) and SQLite's busy errors have no kind of their own.
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let m = info.message();
            m.contains("deadlock detected") || m.contains("database is locked") || m.contains("database table is locked")
        }
        _ => false,
    }
}

/// Is this a unique-constraint violation (someone inserted the same key first)?
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// The query plans SQLite chose for the statements `op` ran on `conn` (tests of the plans on
/// hot paths: SQLite gathers no statistics here and picks the index that matches the most
/// columns, which is not always the one that reads the fewest rows). One line per step, after
/// the statement's first words.
#[cfg(test)]
pub(crate) fn plans_of<T>(conn: &mut AnyConnection, op: impl FnOnce(&mut AnyConnection) -> T) -> (T, Vec<String>) {
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    #[derive(diesel::QueryableByName)]
    struct Step {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    conn.set_instrumentation(move |e: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = e {
            s.lock().unwrap().push(query.to_string());
        }
    });
    let out = op(conn);
    conn.set_instrumentation(None::<Box<dyn Instrumentation>>);
    let statements: Vec<String> = seen.lock().unwrap().clone();
    let mut plans = Vec::new();
    for sql in statements {
        let sql = sql.split(" -- binds:").next().unwrap_or_default().to_string();
        if !["SELECT", "UPDATE", "DELETE", "INSERT"].iter().any(|w| sql.starts_with(w)) {
            continue;
        }
        let steps = diesel::RunQueryDsl::load::<Step>(diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}")), conn).expect("EXPLAIN QUERY PLAN");
        let head: String = sql.chars().take(60).collect();
        plans.extend(steps.into_iter().map(|s| format!("{head}… => {}", s.detail)));
    }
    (out, plans)
}

#[cfg(test)]
mod tests {
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Options {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        memory_management: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        no_memstatus: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        stable_plans: i32,
    }

    /// A lifecycle thread's write waits for the writer permit on a normal thread: granted to
    /// the lifecycle thread's own task, the permit would stay there until that thread ran
    /// again, and on busy CPUs a `SCHED_IDLE` thread hardly runs. Here the lifecycle thread
    /// stops running altogether while its write is queued (its runtime is kept, not driven):
    /// the request's write queued behind it must still go through. It hung before the permit
    /// was taken on a normal thread.
    #[test]
    fn a_lifecycle_write_queued_for_the_permit_holds_up_no_writer_behind_it() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let db = super::Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 4).unwrap();
        let normal = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // A write in progress: the permit is taken.
        let held = db.writers.clone().try_acquire_owned().expect("the permit is free");
        let (theirs, handle) = (db.clone(), normal.handle().clone());
        let stalled = std::thread::spawn(move || {
            super::run_writes_at_normal_priority(handle);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            // The write's task runs until it waits for the permit; then the thread stops
            // driving its runtime.
            let queued = rt.spawn(async move { theirs.write(|_| Ok(())).await });
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
            (rt, queued)
        })
        .join()
        .unwrap();
        let mine = db.clone();
        let behind = normal.spawn(async move { mine.write(|_| Ok(())).await });
        while db.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        let done = normal.block_on(async { tokio::time::timeout(Duration::from_secs(20), behind).await });
        assert!(matches!(done, Ok(Ok(Ok(())))), "the write behind the stalled lifecycle thread's: {done:?}");
        drop(stalled);
    }

    /// A WAL that grew past `WAL_KEPT_BYTES` while a reader held back the checkpoints is cut
    /// down once they catch up (it kept its largest size for ever before).
    #[test]
    fn a_wal_that_grew_shrinks_once_checkpoints_catch_up() {
        use diesel::connection::SimpleConnection as _;
        use diesel::Connection as _;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let db = super::Db::open(&format!("sqlite://{}", path.display()), 2).unwrap();
        db.run_sync(|c| Ok(c.batch_execute("CREATE TABLE filler (b BLOB)")?)).unwrap();
        // A reader in a transaction: no checkpoint can copy past what it sees.
        let mut reader = diesel::sqlite::SqliteConnection::establish(&path.display().to_string()).unwrap();
        reader.batch_execute("BEGIN; SELECT COUNT(*) FROM filler;").unwrap();
        let mib = super::checkpoint::WAL_KEPT_BYTES >> 20;
        for _ in 0..mib + 16 {
            db.run_sync(|c| Ok(c.batch_execute("INSERT INTO filler VALUES (zeroblob(1048576))")?)).unwrap();
        }
        let wal = dir.path().join("w.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size() > super::checkpoint::WAL_KEPT_BYTES + (8 << 20), "the WAL grew: {}", size());
        reader.batch_execute("COMMIT;").unwrap();
        let start = Instant::now();
        // The checkpoint thread copies the WAL; the first commit after that restarts and cuts it.
        while size() > super::checkpoint::WAL_KEPT_BYTES {
            assert!(start.elapsed() < Duration::from_secs(60), "the WAL stayed at {} bytes", size());
            std::thread::sleep(Duration::from_millis(100));
            // Each round commits a frame, however long the checkpoint takes.
            db.run_sync(|c| Ok(c.batch_execute("INSERT INTO filler VALUES (x'00')")?)).unwrap();
        }
    }

    /// The bundled SQLite is built (`LIBSQLITE3_FLAGS` in .cargo/config.toml) without the
    /// process-wide page cache and memory statistics: their mutexes, held by a lifecycle thread
    /// on `SCHED_IDLE` that busy CPUs preempt, would stall every request's query. And with the
    /// query planner stability guarantee: without it a statement whose plan looked at a bound
    /// value (every `LIMIT ?`, so every diesel `.first()`) is compiled again each time it runs,
    /// which defeats diesel's statement cache (a `.first()` lookup: 8.4 µs, 3.9 µs with it).
    #[test]
    fn sqlite_shares_no_mutex_for_pages_or_memory_statistics_and_keeps_its_plans() {
        use diesel::RunQueryDsl as _;
        let dir = tempfile::tempdir().unwrap();
        let db = super::Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let got = db
            .run_sync(|c| match c {
                super::AnyConnection::Sqlite(c) => Ok(diesel::sql_query(
                    "SELECT sqlite_compileoption_used('ENABLE_MEMORY_MANAGEMENT') AS memory_management, \
                     sqlite_compileoption_used('DEFAULT_MEMSTATUS=0') AS no_memstatus, \
                     sqlite_compileoption_used('ENABLE_QPSG') AS stable_plans",
                )
                .get_result::<Options>(c)?),
                _ => unreachable!("a SQLite URL"),
            })
            .unwrap();
        assert_eq!(got, Options { memory_management: 0, no_memstatus: 1, stable_plans: 1 });
    }
}
