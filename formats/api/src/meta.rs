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
    /// Someone else changed the row first (optimistic concurrency).
    #[error("concurrent update")]
    Conflict,
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
    /// Moves the upload from `from_offset` to `to_offset`; [`MetaError::Conflict`] if it is no
    /// longer at `from_offset` (another request won).
    async fn upload_advance(&self, id: &str, from_offset: i64, to_offset: i64, hash_state: Vec<u8>) -> Result<(), MetaError>;
    async fn upload_delete(&self, id: &str) -> Result<(), MetaError>;
}
