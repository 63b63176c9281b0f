//! What the storage lifecycle (cleanup policies, retention, download tracking) needs from a
//! format, and what it offers formats: downloads are reported through [`Downloads`] (cheap: the
//! server batches them), versions are ordered and classified by a format's [`Versions`], and a
//! component is deleted by the format itself ([`crate::Repo::delete_component`]) so that its
//! own metadata (an npm packument, a PyPI project marker) stays consistent.

use std::cmp::Ordering;

use crate::meta::{Asset, Check, MetaError, MetaStore, Write};

/// Where formats report that an asset was downloaded (a pull, a file or tarball fetched, a
/// proxy's cache hit). Returns at once: the server counts in memory and writes in batches, off
/// the request path.
pub trait Downloads: Send + Sync {
    fn record(&self, repo: i64, path: &str);
}

/// Counts nothing (tools and tests that open a repository without a server).
pub struct NoDownloads;

impl Downloads for NoDownloads {
    fn record(&self, _repo: i64, _path: &str) {}
}

/// A format's version order and pre-release rule (PEP 440 for PyPI, semver for npm).
pub trait Versions: Send + Sync {
    /// The rule's name, for messages (`PEP 440`, `semver`).
    fn scheme(&self) -> &'static str;
    /// `None` when `version` does not parse under the rule.
    fn is_prerelease(&self, version: &str) -> Option<bool>;
    /// `None` when either does not parse.
    fn compare(&self, a: &str, b: &str) -> Option<Ordering>;
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// This repository does not delete components (a group has none of its own).
    #[error("{0}")]
    Unsupported(String),
    /// The component changed since it was listed (re-pushed, re-uploaded): left alone.
    #[error("{0} changed since it was listed; not deleted")]
    Changed(String),
    /// Clients get this version without naming one (npm: a dist-tag names it): cleanup leaves it.
    #[error("{0}: clients get it without naming a version; not deleted")]
    Pinned(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Other(#[source] Box<dyn std::error::Error>),
}

/// Deletes `assets` in one batch, each only while it still names the content it was listed
/// with (a tag re-pointed or a file re-uploaded since is new content, not what a policy chose).
/// Returns the assets deleted.
pub async fn delete_assets(meta: &dyn MetaStore, repo: i64, what: &str, assets: &[Asset]) -> Result<Vec<Asset>, DeleteError> {
    let mut checks = Vec::new();
    let mut writes = Vec::new();
    for a in assets {
        if let Some(digest) = &a.digest {
            checks.push(Check::AbsentOrDigest { repo, path: a.path.clone(), digest: digest.clone() });
        }
        writes.push(Write::Delete { repo, path: a.path.clone() });
    }
    match meta.commit(checks, writes).await {
        Ok(()) => Ok(assets.to_vec()),
        Err(MetaError::CheckFailed(_)) => Err(DeleteError::Changed(what.to_string())),
        Err(e) => Err(e.into()),
    }
}
