//! The contract between the wharf server and its repository formats.
//!
//! A format crate depends on this crate only (plus actix-web's request/response types). It never
//! sees the database, the config file or the actix `App`: the server resolves the repository and
//! the caller, then hands the format a [`RepoCtx`], the request and its body. Everything a format
//! keeps goes through the [`BlobStore`] (content) and the [`MetaStore`] (metadata).
//!
//! See `docs/architecture.md` for the request flow.

pub mod blob;
pub mod config;
pub mod ctx;
pub mod digest;
pub mod meta;
pub mod repo;

pub use blob::{BlobError, BlobStore, ByteStream};
pub use config::{ConfigError, Kind, RepoConfig, WritePolicy};
pub use ctx::{Access, Action, Denied, Grant, Mount, Principal, RepoCtx};
pub use digest::{Digest, DigestError};
pub use meta::{Asset, Check, ListQuery, MetaError, MetaStore, NewAsset, UploadRow, Write};
pub use repo::{ComponentKey, Format, FormatEnv, Listener, Repo, RepoLookup, RepoRef, RootCtx};
pub use blob::{BlobRead, HashState};

/// Milliseconds since the Unix epoch: the one time unit of the metadata store.
pub fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
