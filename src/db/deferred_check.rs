//! A check on the caller's credentials that rides along with the request's first query.
//!
//! A remembered password login is only good while the user's row still says what it said when
//! the password was verified (see `security::principal`), so every request that uses one reads
//! that row again. Done on its own, that read costs a trip to the blocking pool and back before
//! the request's own queries make the same trip: on a page served from one query, half the time.
//! So a read-only request gets its principal at once and carries the check in a task-local: the
//! first [`Db::run`](super::Db::run) or [`Db::write`](super::Db::write) of the request runs it
//! on the same connection, first, in the same blocking job, and refuses to run anything once it
//! failed. Whoever serves the request asks [`DeferredCheck::settled`] before its answer leaves
//! (running the check then if no query did), and answers again without the remembered login if
//! it failed: nothing the request read under a withdrawn login is ever sent.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{AnyConnection, Db, DbError};

type Check = Box<dyn Fn(&mut AnyConnection) -> Result<bool, DbError> + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Held,
    Withdrawn,
}

/// Whether a remembered login still holds, asked once per request (see the module documentation).
pub struct DeferredCheck {
    check: Check,
    state: Arc<Mutex<State>>,
}

tokio::task_local! {
    static CHECK: Arc<DeferredCheck>;
}

/// The check's turn inside a query's blocking job: run it there, first, on the same connection.
pub(super) struct Turn {
    check: Arc<DeferredCheck>,
    state: OwnedMutexGuard<State>,
}

impl DeferredCheck {
    /// `check` answers whether the login still holds (`Ok(false)`: it does not).
    pub fn new(check: impl Fn(&mut AnyConnection) -> Result<bool, DbError> + Send + Sync + 'static) -> Arc<DeferredCheck> {
        Arc::new(DeferredCheck { check: Box::new(check), state: Arc::new(Mutex::new(State::Pending)) })
    }

    /// Runs `fut` (a request's handling) with this check riding on its queries.
    pub async fn around<F: Future>(self: &Arc<Self>, fut: F) -> F::Output {
        CHECK.scope(self.clone(), fut).await
    }

    /// Whether the login held: from the query that ran the check, else asked now.
    pub async fn settled(self: &Arc<Self>, db: &Db) -> bool {
        let state = *self.state.lock().await;
        match state {
            State::Held => true,
            State::Withdrawn => false,
            State::Pending => {
                let me = self.clone();
                matches!(db.run(move |conn| (me.check)(conn)).await, Ok(true))
            }
        }
    }
}

/// What a query of the current task must do about a deferred check: nothing (`None`), run it
/// first (`Some`, holding the check's lock so that the task's other queries wait for its
/// answer), or refuse (the login no longer holds).
pub(super) async fn turn() -> Result<Option<Turn>, DbError> {
    let Ok(check) = CHECK.try_with(Clone::clone) else { return Ok(None) };
    let state = check.state.clone().lock_owned().await;
    match *state {
        State::Held => Ok(None),
        State::Withdrawn => Err(DbError::LoginWithdrawn),
        State::Pending => Ok(Some(Turn { check, state })),
    }
}

impl Turn {
    /// In the blocking job, before the query: a failed check (or an error asking) refuses it.
    pub(super) fn run(mut self, conn: &mut AnyConnection) -> Result<(), DbError> {
        if (self.check.check)(conn)? {
            *self.state = State::Held;
            Ok(())
        } else {
            *self.state = State::Withdrawn;
            Err(DbError::LoginWithdrawn)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn counted(answer: bool) -> (Arc<DeferredCheck>, Arc<AtomicU32>) {
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let check = DeferredCheck::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(answer)
        });
        (check, runs)
    }

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        (dir, db)
    }

    #[actix_rt::test]
    async fn a_login_that_holds_is_checked_once_by_the_first_query_and_not_again() {
        let (_dir, db) = open();
        let (check, runs) = counted(true);
        let reads = check
            .around(async {
                let first = db.run(|_| Ok(1)).await.unwrap();
                let second = db.write(|_| Ok(2)).await.unwrap();
                (first, second)
            })
            .await;
        assert_eq!(reads, (1, 2));
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the first query ran the check");
        assert!(check.settled(&db).await);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "settled without asking again");
    }

    #[actix_rt::test]
    async fn a_withdrawn_login_refuses_every_query_of_its_request() {
        let (_dir, db) = open();
        let (check, runs) = counted(false);
        let (first, second, third) = check
            .around(async {
                let query_ran = Arc::new(AtomicU32::new(0));
                let q = query_ran.clone();
                let first = db.run(move |_| Ok(q.fetch_add(1, Ordering::SeqCst))).await;
                let second = db.run(|_| Ok(())).await;
                let third = db.write(|_| Ok(())).await;
                assert_eq!(query_ran.load(Ordering::SeqCst), 0, "the query behind the failed check never ran");
                (first, second, third)
            })
            .await;
        assert!(matches!(first, Err(DbError::LoginWithdrawn)));
        assert!(matches!(second, Err(DbError::LoginWithdrawn)));
        assert!(matches!(third, Err(DbError::LoginWithdrawn)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!check.settled(&db).await);
        // Outside the request, queries are the database's again.
        assert_eq!(db.run(|_| Ok(7)).await.unwrap(), 7);
    }

    #[actix_rt::test]
    async fn a_request_that_made_no_query_is_checked_when_it_settles() {
        let (_dir, db) = open();
        let (check, runs) = counted(false);
        check.around(async {}).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert!(!check.settled(&db).await);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
