//! The metadata store: one generic table of assets per repository, Nexus-style.
//!
//! An asset is a named thing in a repository (`path`, unique per repository) that may point at a
//! blob (`digest`). Formats choose their own paths and kinds; the extra columns (`component`,
//! `link`) exist so that formats can list by them with an index (Docker: tags of one image,
//! manifests whose `subject` is a digest). Every write goes through [`MetaStore::commit`], which
//! applies a batch atomically after checking its preconditions: formats get transactions without
//! seeing the database.
//!
//! Paths are compared bytewise (`COLLATE "C"` on PostgreSQL), so listing by prefix and paging by
//! `after` give lexical order on every backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    pub path: String,
    pub kind: String,
    pub component: Option<String>,
    pub digest: Option<String>,
    pub size: i64,
    pub content_type: Option<String>,
    pub link: Option<String>,
    pub attributes: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was last downloaded (a pull, a fetch, a proxy's cache hit), as far as the
    /// server's batched counts have reached the database.
    pub last_downloaded: Option<i64>,
    pub download_count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAsset {
    pub path: String,
    pub kind: String,
    pub component: Option<String>,
    pub digest: Option<String>,
    pub size: i64,
    pub content_type: Option<String>,
    pub link: Option<String>,
    pub attributes: serde_json::Value,
}

/// An asset written back as it is (an upsert that only refreshes `updated_at`, or the base for
/// a change).
impl From<Asset> for NewAsset {
    fn from(a: Asset) -> NewAsset {
        NewAsset {
            path: a.path,
            kind: a.kind,
            component: a.component,
            digest: a.digest,
            size: a.size,
            content_type: a.content_type,
            link: a.link,
            attributes: a.attributes,
        }
    }
}

/// A precondition of a [`MetaStore::commit`]; `repo` is a repository id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Exists {
        repo: i64,
        path: String,
    },
    Absent {
        repo: i64,
        path: String,
    },
    /// The asset is absent, or present with exactly this digest.
    AbsentOrDigest {
        repo: i64,
        path: String,
        digest: String,
    },
    /// No asset's path starts with `prefix` (Docker: nothing refers to a blob being deleted).
    NoneUnder {
        repo: i64,
        prefix: String,
    },
    /// The asset exists and nobody wrote it since it was read with this `updated_at` (a
    /// clean-up deletes only what it judged).
    Unchanged {
        repo: i64,
        path: String,
        updated_at: i64,
    },
    /// No asset of `kind` points at `digest` (Docker: no tag names a manifest being removed).
    NoneWithDigest {
        repo: i64,
        kind: String,
        digest: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Insert, or replace everything but `created_at`.
    Upsert {
        repo: i64,
        asset: NewAsset,
    },
    /// Insert unless the path exists (then nothing happens).
    InsertIfAbsent {
        repo: i64,
        asset: NewAsset,
    },
    Delete {
        repo: i64,
        path: String,
    },
    /// Delete every asset of this kind and component that points at `digest` (Docker: the tags of
    /// a manifest being deleted).
    DeleteByDigest {
        repo: i64,
        kind: String,
        component: String,
        digest: String,
    },
}

/// Filters for [`MetaStore::list`]; results are ordered by path.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub kind: Option<String>,
    pub component: Option<String>,
    pub link: Option<String>,
    pub digest: Option<String>,
    pub prefix: Option<String>,
    /// Only paths strictly after this one (paging).
    pub after: Option<String>,
    /// Only assets whose component or stored attributes (their JSON text) contain each of these
    /// strings, ignoring ASCII case. A coarse filter that the database applies (a format checks
    /// its own fields on what it gets: a string may also match an attribute's name or another
    /// field); strings with `"`, `\` or control characters (escaped in JSON text) are not given.
    pub contains: Vec<String>,
    pub limit: Option<i64>,
}

/// A resumable upload: its bytes are staged in the blob store, its progress is here, so that it
/// survives a restart and can be continued on another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    pub repo: i64,
    /// What the upload is for, in the format's terms (Docker: the image name).
    pub component: String,
    pub blob_store: String,
    /// The user who started it (`None`: an anonymous caller); only they may continue it.
    pub owner: Option<String>,
    pub offset: i64,
    /// The running hash, serialized (see [`crate::blob::HashState`]).
    pub hash_state: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A [`Check`] of the batch did not hold; the index is its position in the batch.
    #[error("precondition {0} of the batch failed")]
    CheckFailed(usize),
    /// Someone else changed the row first (optimistic concurrency), or holds it.
    #[error("concurrent update")]
    Conflict,
    /// An asset would name a blob that its blob store no longer holds, or is deleting (a
    /// collection pass took it: the writer relied on it without touching it first, or longer
    /// than the grace period after).
    #[error("blob {0} is not in the blob store")]
    BlobGone(String),
    /// The database has no room left to write.
    #[error("the metadata database is out of space")]
    NoSpace,
    /// The server is in read-only mode (an administrator froze it, e.g. for a backup): no write
    /// commits. The message says so, since when and why; formats refuse in their protocol's
    /// shape with it, as for a quota.
    #[error("{0}")]
    ReadOnly(String),
    #[error("metadata store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[async_trait]
pub trait MetaStore: Send + Sync {
    async fn get(&self, repo: i64, path: &str) -> Result<Option<Asset>, MetaError>;
    async fn list(&self, repo: i64, query: ListQuery) -> Result<Vec<Asset>, MetaError>;
    /// Applies `writes` in one transaction if every check holds.
    async fn commit(&self, checks: Vec<Check>, writes: Vec<Write>) -> Result<(), MetaError>;

    async fn upload_create(&self, upload: UploadRow) -> Result<(), MetaError>;
    async fn upload_get(&self, id: &str) -> Result<Option<UploadRow>, MetaError>;
    /// Makes `writer` (a name unique to one request) the upload's only writer while it is at
    /// `from_offset`, for `lease_ms` at most (after that another request may take over: a node
    /// that died must not block the session for good). [`MetaError::Conflict`] if the upload
    /// moved on or another writer holds it. Returns whether the session was ever taken over
    /// from a writer whose lease ran out (this claim included): such a writer may still be
    /// writing, so the staged bytes are no longer known to be what the running hash says.
    async fn upload_claim(&self, id: &str, from_offset: i64, writer: &str, lease_ms: i64) -> Result<bool, MetaError>;
    /// Extends `writer`'s claim by `lease_ms` from now; [`MetaError::Conflict`] if it is no
    /// longer `writer`'s. Returns whether the session was ever taken over (as
    /// [`MetaStore::upload_claim`]).
    async fn upload_renew(&self, id: &str, writer: &str, lease_ms: i64) -> Result<bool, MetaError>;
    /// Moves the upload from `from_offset` to `to_offset` and releases `writer`'s claim;
    /// [`MetaError::Conflict`] if it is no longer at `from_offset` or no longer `writer`'s.
    async fn upload_advance(&self, id: &str, from_offset: i64, to_offset: i64, hash_state: Vec<u8>, writer: &str) -> Result<(), MetaError>;
    /// Releases `writer`'s claim without moving the upload (the write failed).
    async fn upload_release(&self, id: &str, writer: &str) -> Result<(), MetaError>;
    async fn upload_delete(&self, id: &str) -> Result<(), MetaError>;
}

/// Mutual exclusion by key within one process (one package, one image): writers of one key
/// queue here instead of racing each other's compare-and-swap. Across nodes the
/// compare-and-swap still decides; this only keeps a node's own writers from losing to each other.
#[derive(Default)]
pub struct KeyedLocks {
    /// The locks by key, and the size at which the map is next swept of unheld ones: swept at
    /// every lock, many keys at once (a password spray over many names) cost O(n²).
    locks: Mutex<(HashMap<String, Weak<KeyLock>>, usize)>,
}

type KeyLock = tokio::sync::Mutex<()>;

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut guard = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            let (map, sweep_at) = &mut *guard;
            if map.len() >= *sweep_at {
                map.retain(|_, w| w.strong_count() > 0);
                *sweep_at = (map.len() * 2).max(64);
            }
            match map.get(key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(KeyLock::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

/// How long a write keeps retrying a compare-and-swap that others keep winning before it gives
/// up: contention is waited out, not reported to a client whose request was valid.
pub const CONTENTION_DEADLINE: Duration = Duration::from_secs(60);

/// The pause before retry `attempt` (1, 2, ...): exponential from 2 ms up to 250 ms, fully
/// jittered so that the losers of one race do not meet again at the next attempt.
pub fn backoff(attempt: u32) -> Duration {
    let cap = (2u64 << attempt.min(7)).min(250);
    Duration::from_millis(rand::random_range(1..=cap))
}
