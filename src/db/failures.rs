//! Whether the database failed a caller while it worked: a login that found no caller because
//! the database did not answer is not one that found wrong credentials, and must not be
//! answered 401 (a client would take its good credentials for bad ones, `docker login` would
//! say "incorrect username or password") but 503, asking it to try again. The same holds for
//! an LDAP directory that did not answer about a name only it could know ([`note_silence`]).

use std::cell::Cell;
use std::future::Future;

use super::DbError;

tokio::task_local! {
    static FAILED: Cell<bool>;
}

/// Runs `work`, and says whether a call of `Db::run` or `Db::write` within it found the
/// database silent (see [`noted`]).
pub async fn noting<F: Future>(work: F) -> (F::Output, bool) {
    FAILED
        .scope(Cell::new(false), async move {
            let out = work.await;
            (out, FAILED.with(Cell::get))
        })
        .await
}

/// Runs `work` without noting its failures for a [`noting`] around it: what a login writes
/// after its verdict (a wrong password's count) does not change the verdict.
pub async fn unnoted<F: Future>(work: F) -> F::Output {
    FAILED.scope(Cell::new(false), work).await
}

/// Notes, for the [`noting`] around the caller, that something a login needs other than the
/// database (an LDAP directory) did not answer.
pub fn note_silence() {
    let _ = FAILED.try_with(|f| f.set(true));
}

/// Whether the [`noting`] around the caller has noted silence so far.
pub fn silent_so_far() -> bool {
    FAILED.try_with(|f| f.get()).unwrap_or(false)
}

/// `result`, noted for the [`noting`] around the caller, if any, when its error says the
/// database did not answer (no connection, or one that broke). Other errors (a full disk, a
/// value that does not decode, a busy retry that ran out) are answers of a kind, not silence.
pub(super) fn noted<T>(result: Result<T, DbError>) -> Result<T, DbError> {
    if result.as_ref().is_err_and(silent) {
        let _ = FAILED.try_with(|f| f.set(true));
    }
    result
}

fn silent(e: &DbError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        e,
        DbError::Pool(_)
            | DbError::Connect(_)
            | DbError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _))
    )
}

#[cfg(test)]
mod tests {
    use super::{noted, noting, unnoted, DbError};

    /// Only silence is noted: a database that answered with an error (a full disk, say) did
    /// identify or refuse the caller; and what runs unnoted is not noted.
    #[tokio::test]
    async fn only_a_database_that_does_not_answer_is_noted() {
        let full = || {
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, Box::new("database or disk is full".to_string())))
        };
        let silent = || DbError::Connect("connection refused".into());
        assert!(noting(async { noted::<()>(Err(silent())) }).await.1);
        assert!(!noting(async { noted::<()>(Err(full())) }).await.1);
        assert!(!noting(async { noted::<()>(Ok(())) }).await.1);
        assert!(!noting(async { unnoted(async { noted::<()>(Err(silent())) }).await }).await.1);
        // Outside any `noting`, nothing to note and nothing fails.
        assert!(noted::<()>(Err(silent())).is_err());
    }
}
