//! Whether the database failed a caller while it worked: a login that found no caller because
//! the database did not answer is not one that found wrong credentials, and must not be
//! answered 401 (a client would take its good credentials for bad ones, `docker login` would
//! say "incorrect username or password") but 503, asking it to try again.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static FAILED: Cell<bool>;
}

/// Runs `work`, and says whether a call of `Db::run` or `Db::write` within it failed.
pub async fn noting<F: Future>(work: F) -> (F::Output, bool) {
    FAILED
        .scope(Cell::new(false), async move {
            let out = work.await;
            (out, FAILED.with(Cell::get))
        })
        .await
}

/// `result`, noted as a failure for the [`noting`] around the caller, if any.
pub(super) fn noted<T, E>(result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        let _ = FAILED.try_with(|f| f.set(true));
    }
    result
}
