//! What a proxy's cache did for one request: answered alone (hit), asked the upstream (miss), or
//! answered from the cache because the upstream could not (stale).
//!
//! A format wraps each cache-backed request in [`Transport::through_cache`]
//! (crate::upstream::Transport::through_cache); the transport marks the request's probe when it
//! sends anything upstream, and [`Health::serve_stale_now`](crate::upstream::Health) when it
//! tells a request to serve stale. The probe is a task-local, so the formats' cache logic (single
//! flights, revalidation, stale fallbacks, written three times) needs no counting of its own, and
//! a request that waited for another's fill counts as a hit, as it asked nobody.

use std::cell::Cell;
use std::future::Future;

/// Which part of a proxy's cache a request reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// What changes upstream and is revalidated after `metadataMaxAge`: tags, project pages,
    /// packuments.
    Metadata,
    /// Files and manifests by digest.
    Content,
}

impl CacheKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Metadata => "metadata",
            CacheKind::Content => "content",
        }
    }
}

/// How one request went through a proxy's cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Answered without asking the upstream (cached, remembered as missing, or filled by a
    /// concurrent request this one waited for).
    Hit,
    /// The upstream was asked: a fetch or a revalidation, whatever it answered.
    Miss,
    /// Answered from the cache because the upstream failed or is known to be failing.
    Stale,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
        }
    }
}

#[derive(Default)]
struct Probe {
    asked: Cell<bool>,
    failed: Cell<bool>,
}

tokio::task_local! {
    static PROBE: Probe;
}

/// The transport is about to send a request upstream; `failed` once it knows the upstream
/// did not answer (transport error, 5xx, blocked).
pub(crate) fn asked(failed: bool) {
    let _ = PROBE.try_with(|p| {
        p.asked.set(true);
        if failed {
            p.failed.set(true);
        }
    });
}

/// The request is told to serve what is cached without asking (the upstream is failing).
pub(crate) fn serving_stale() {
    let _ = PROBE.try_with(|p| p.failed.set(true));
}

/// Runs `request` with a fresh probe and says how it went through the cache: stale when it
/// succeeded although the upstream failed it, else miss when the upstream was asked. Within
/// another request's probe (a tarball's HEAD reading its packument, a group asking its
/// members), what this one asked counts for the enclosing one too.
pub async fn run<T, E>(request: impl Future<Output = Result<T, E>>) -> (Result<T, E>, CacheResult) {
    let (out, asked, failed) = PROBE
        .scope(Probe::default(), async move {
            let out = request.await;
            let (asked, failed) = PROBE.with(|p| (p.asked.get(), p.failed.get()));
            (out, asked, failed)
        })
        .await;
    if asked || failed {
        let _ = PROBE.try_with(|p| {
            p.asked.set(p.asked.get() || asked);
            p.failed.set(p.failed.get() || failed);
        });
    }
    let result = match (&out, asked, failed) {
        (Ok(_), _, true) => CacheResult::Stale,
        (_, true, _) => CacheResult::Miss,
        _ => CacheResult::Hit,
    };
    (out, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_classified_by_what_it_asked() {
        let (_, r) = run(async { Ok::<_, ()>(()) }).await;
        assert_eq!(r, CacheResult::Hit);
        let (_, r) = run(async {
            asked(false);
            Err::<(), _>(())
        })
        .await;
        assert_eq!(r, CacheResult::Miss);
        let (_, r) = run(async {
            asked(true);
            Ok::<_, ()>(())
        })
        .await;
        assert_eq!(r, CacheResult::Stale);
        let (_, r) = run(async {
            serving_stale();
            Ok::<_, ()>(())
        })
        .await;
        assert_eq!(r, CacheResult::Stale);
        // Failed upstream and no cached copy: the client got an error, the upstream was asked.
        let (_, r) = run(async {
            asked(true);
            Err::<(), _>(())
        })
        .await;
        assert_eq!(r, CacheResult::Miss);
        // An inner request's upstream call counts for the outer one.
        let (_, r) = run(async {
            let (_, inner) = run(async {
                asked(false);
                Ok::<_, ()>(())
            })
            .await;
            assert_eq!(inner, CacheResult::Miss);
            Ok::<_, ()>(())
        })
        .await;
        assert_eq!(r, CacheResult::Miss);
        // Outside a probe nothing is recorded and nothing breaks.
        asked(true);
        serving_stale();
    }
}
