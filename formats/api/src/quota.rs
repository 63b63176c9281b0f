//! Hard quotas (wharf's addition to Nexus's model): a hosted repository whose usage has reached
//! its `storage.hardQuota.limit` refuses new content, while reads and deletes go on.
//!
//! Usage is what the repository references, counted once per blob (a layer two images share
//! counts once); the server measures it ([`UsageMeter`], over the database). The rule itself
//! lives here, so that every format applies the same one: a format calls
//! [`UsageMeter::check_write`] once the bytes of a write are in and verified, just before they
//! are published and linked (Docker: finishing an upload session, a monolithic upload, a mount, a
//! manifest; PyPI: an upload, once its file is checked; npm: a publish, once its body is read),
//! and also where a write starts if its bytes are still to come (Docker: opening an upload
//! session; PyPI: an upload), so that a client already over its quota is told before it sends
//! them. It turns [`QuotaExceeded`] into its protocol's refusal at its one error boundary. A
//! group passes writes to its writable member, whose quota applies.
//!
//! How far above its limit a repository can end:
//! - The check and the link are not one transaction: every write that passed its last check
//!   before any of them was linked lands. Writes made one after another overshoot by at most the
//!   one that crossed the limit; writes finishing at the same moment, by each of them.
//! - A meter may answer from a recent measurement plus what its node linked since, never from
//!   less than what its own node linked (the server's does for a few seconds, and below the
//!   limit for as long again or twice a measurement's duration while the next one runs:
//!   `src/db/usage_cache.rs`). On a cluster, what the other nodes linked within that time is
//!   not seen: that much more.
//!
//! Counting bytes as they stream would need a reservation per request; a quota is a budget for
//! an administrator, not a disk guard.

use async_trait::async_trait;

use crate::config::RepoConfig;
use crate::meta::MetaError;

/// What a repository references (or a blob store holds): distinct blobs and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub blob_count: u64,
    pub bytes: u64,
}

/// The refusal: the message says "quota exceeded" and names the repository and the numbers, as
/// clients print it (skopeo, twine, npm).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota exceeded: repository {repository} holds {used} bytes and its hard quota is {limit} bytes")]
pub struct QuotaExceeded {
    pub repository: String,
    pub used: u64,
    pub limit: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(transparent)]
    Exceeded(#[from] QuotaExceeded),
    /// Usage could not be measured; formats map it as any metadata failure.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[async_trait]
pub trait UsageMeter: Send + Sync {
    /// The distinct blobs `repo`'s assets reference, with their sizes: measured, or a
    /// recent measurement plus what this node linked since (see the module documentation).
    async fn repository_usage(&self, repo: &RepoConfig) -> Result<Usage, MetaError>;

    /// What a check against `limit` goes by: [`UsageMeter::repository_usage`], or a number at
    /// or above it that is below `limit` (to know that a write fits, a bound will do; the
    /// server's meter answers one without measuring while a measurement it has is recent
    /// enough, see `src/db/usage_cache.rs`).
    async fn usage_for_limit(&self, repo: &RepoConfig, limit: u64) -> Result<Usage, MetaError> {
        let _ = limit;
        self.repository_usage(repo).await
    }
}

impl dyn UsageMeter {
    /// Refuses a write once `repo`'s usage has reached its hard quota. A repository without
    /// one costs nothing (no measurement).
    pub async fn check_write(&self, repo: &RepoConfig) -> Result<(), QuotaError> {
        let Some(limit) = repo.hard_quota else { return Ok(()) };
        let used = self.usage_for_limit(repo, limit).await?.bytes;
        if used >= limit {
            return Err(QuotaExceeded { repository: repo.name.clone(), used, limit }.into());
        }
        Ok(())
    }
}

/// No quota is ever exceeded and nothing is measured: for in-crate tests.
pub struct Unmetered;

#[async_trait]
impl UsageMeter for Unmetered {
    async fn repository_usage(&self, _repo: &RepoConfig) -> Result<Usage, MetaError> {
        Ok(Usage::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);

    #[async_trait]
    impl UsageMeter for Fixed {
        async fn repository_usage(&self, _repo: &RepoConfig) -> Result<Usage, MetaError> {
            Ok(Usage { blob_count: 1, bytes: self.0 })
        }
    }

    fn repo(hard_quota: Option<u64>) -> RepoConfig {
        RepoConfig { hard_quota, ..RepoConfig::hosted(1, "r", "docker") }
    }

    #[tokio::test]
    async fn a_write_is_refused_once_usage_reaches_the_limit() {
        let under: &dyn UsageMeter = &Fixed(99);
        assert!(under.check_write(&repo(Some(100))).await.is_ok());
        let at: &dyn UsageMeter = &Fixed(100);
        match at.check_write(&repo(Some(100))).await {
            Err(QuotaError::Exceeded(e)) => {
                assert_eq!(e, QuotaExceeded { repository: "r".into(), used: 100, limit: 100 });
                assert!(e.to_string().starts_with("quota exceeded: repository r holds 100 bytes"), "{e}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(at.check_write(&repo(None)).await.is_ok(), "no quota, no refusal");
    }
}
