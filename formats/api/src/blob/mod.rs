//! The content-addressed blob store shared by every repository and format.
//!
//! A blob lives at `blobs/sha256/<2 hex>/<64 hex>` and is immutable: identical content written
//! by two repositories, or two formats, is the same object. Writes never land there directly:
//! bytes are staged under `uploads/<id>`, hashed while they stream, verified against the digest
//! the client promised, fsynced, and only then published with a create-if-absent rename, so a
//! blob is either absent or complete. A staged upload can be appended to across requests (and
//! across restarts or nodes): the running hash is serialized into the upload's metadata row.
//!
//! Two backends: a directory ([`file`]), and S3-compatible object storage ([`s3`]), which has no
//! append and no rename and stages differently (see there). Reads, listing and deletion go
//! through `object_store` for both.

mod body_budget;
mod disk_reserve;
mod file;
mod file_stream;
mod read_cache;
mod s3;
mod s3_clients;
mod side_hashes;
mod staged_writer;

pub use disk_reserve::{DiskReserve, Room, SpaceLeft};
pub use read_cache::ReadCache;

pub use s3::{S3Encryption, S3Settings};
pub use side_hashes::{SideHasher, SideHashes};

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256};

use crate::digest::{Algorithm, AnyDigest, Digest};

/// A body on its way out: `Send`, so any runtime can drive it.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("upload not found")]
    UploadNotFound,
    #[error("content digest is {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// [`BlobError::DigestMismatch`] for content named by another algorithm than sha256.
    #[error("content digest is {actual}, expected {expected}")]
    ContentMismatch { expected: AnyDigest, actual: AnyDigest },
    #[error("content exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("requested range is not satisfiable")]
    RangeNotSatisfiable,
    /// The client's body stream failed (disconnect, bad chunking): nothing was acknowledged.
    #[error("request body: {0}")]
    Body(String),
    #[error("corrupt upload state")]
    BadState,
    /// The file system holding the store is full (or the owner's quota is spent), or has no
    /// more free than its reserve.
    #[error("the blob store is out of space{0}")]
    NoSpace(SpaceLeft),
    #[error("blob store I/O: {0}")]
    Io(std::io::Error),
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
}

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> BlobError {
        // ENOSPC and EDQUOT: callers report these as such (507), not as an internal error.
        if e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded || matches!(e.raw_os_error(), Some(28 | 122)) {
            BlobError::NoSpace(SpaceLeft::Full)
        } else {
            BlobError::Io(e)
        }
    }
}

/// Hashes a local file with `alg`, on the blocking pool.
async fn hash_file(path: PathBuf, alg: Algorithm) -> Result<AnyDigest, BlobError> {
    blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::UploadNotFound),
            Err(e) => return Err(e.into()),
        };
        let mut hasher = alg.hasher();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, BlobError> + Send + 'static) -> Result<T, BlobError> {
    join(tokio::task::spawn_blocking(f)).await
}

async fn join<T>(task: tokio::task::JoinHandle<Result<T, BlobError>>) -> Result<T, BlobError> {
    task.await.map_err(|e| BlobError::Io(std::io::Error::other(e)))?
}

/// The running SHA-256 of a staged upload, as stored in its metadata row.
pub struct HashState;

impl HashState {
    pub fn empty() -> Vec<u8> {
        Self::save(&Sha256::new())
    }

    pub fn save(h: &Sha256) -> Vec<u8> {
        h.serialize().to_vec()
    }

    pub fn load(state: &[u8]) -> Result<Sha256, BlobError> {
        let arr = state.try_into().map_err(|_| BlobError::BadState)?;
        Sha256::deserialize(arr).map_err(|_| BlobError::BadState)
    }
}

/// The database's record of which blobs a blob store holds: garbage collection decides on it,
/// against every writer (docs/architecture.md, "Garbage collection"). The store touches a
/// blob's entry before it relies on the blob's bytes (publishing them, or finding them already
/// there), and a collection pass takes only blobs that nothing refers to and nobody touched
/// within its grace period, so it cannot take a blob out from under a writer.
#[async_trait::async_trait]
pub trait BlobLedger: Send + Sync {
    /// Records that `digest` (of `size` bytes) is in `store`, or about to be, and that a writer
    /// relies on it from now; or says that a collection pass is deleting it (marked then).
    async fn touch(&self, store: &str, digest: &Digest, size: u64) -> Result<Touch, BlobError>;
    /// Takes over the deletion of a blob marked at `marked_at` (a pass that died, or stalled,
    /// left it): `Some(new mark)` if this caller now owns it, `None` if someone else moved first.
    async fn claim_deletion(&self, store: &str, digest: &Digest, marked_at: i64) -> Result<Option<i64>, BlobError>;
    /// Drops the entry of a blob whose deletion (under mark `marked_at`) is complete.
    async fn forget(&self, store: &str, digest: &Digest, marked_at: i64) -> Result<(), BlobError>;
}

/// What [`BlobLedger::touch`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    Live,
    Deleting { marked_at: i64 },
}

/// How long a blob may stay marked for deletion, by default, before a writer that needs it (or
/// the next pass) finishes the deletion itself: a collection pass deletes what it marked within
/// half of this (by its own clock) or leaves it, so a pass that stalls never deletes bytes
/// written after a takeover.
pub const DELETION_LEASE_MS: i64 = 120_000;

/// How long a presigned download URL is valid (Distribution's is 20 minutes too): long enough
/// for a client to start a large download, short enough that a leaked URL soon expires.
pub const PRESIGNED_URL_TTL: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// A slice of a blob on its way out.
pub struct BlobRead {
    pub total: u64,
    /// Inclusive byte range served.
    pub range: Option<(u64, u64)>,
    pub body: ByteStream,
}

pub struct BlobStore {
    name: String,
    backend: Backend,
    /// Reads, listing and deletion, whatever the backend.
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key (S3 stores that share a bucket).
    prefix: String,
    ledger: Option<Arc<dyn BlobLedger>>,
    deletion_lease_ms: i64,
    /// This node's copies of an S3 store's blobs (`[blob_cache]`); never for a file store.
    read_cache: Option<Arc<ReadCache>>,
    /// When this node last removed stale write probes (see [`BlobStore::check_writable`]).
    probes_swept: std::sync::atomic::AtomicI64,
}

enum Backend {
    File(file::FileStaging),
    S3 { staging: Box<s3::S3Staging>, settings: Box<S3Settings>, presigned_urls: bool },
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("name", &self.name).field("location", &self.location()).finish()
    }
}

/// Upload ids are ours (UUIDs), but they arrive back in URLs: never let one name a path.
fn check_upload_id(upload_id: &str) -> Result<(), BlobError> {
    if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(BlobError::UploadNotFound);
    }
    Ok(())
}

/// `n` results of one failure that no single key caused.
fn all_failed(n: usize, msg: &str) -> Vec<Result<(), BlobError>> {
    (0..n).map(|_| Err(BlobError::Io(std::io::Error::other(msg.to_string())))).collect()
}

/// Blocking threads a batch deletion of a file store's blobs spreads its unlinks over.
const UNLINK_THREADS: usize = 4;

/// How long `check_writable` waits for the store before it names it as not answering.
pub const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bytes gathered from a request before they are hashed and written as one blocking task.
const WRITE_BATCH: usize = 1 << 20;
const READ_CHUNK: usize = 256 << 10;

impl BlobStore {
    /// A store in a local directory (created if missing).
    pub fn filesystem(name: &str, root: &FsPath) -> Result<BlobStore, BlobError> {
        let staging = file::FileStaging::open(root)?;
        let store: Arc<dyn ObjectStore> = staging.store.clone();
        Ok(BlobStore {
            name: name.to_string(),
            backend: Backend::File(staging),
            store,
            prefix: String::new(),
            ledger: None,
            deletion_lease_ms: DELETION_LEASE_MS,
            read_cache: None,
            probes_swept: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// A store in an S3 bucket. `scratch` is a local directory for content that is checked
    /// before it is published (archives); nothing in it outlives a request.
    pub fn s3(name: &str, settings: &S3Settings, scratch: &FsPath) -> Result<BlobStore, BlobError> {
        let staging = s3::S3Staging::open(settings, scratch)?;
        let store: Arc<dyn ObjectStore> = staging.client.clone();
        let prefix = staging.prefix().to_string();
        Ok(BlobStore {
            name: name.to_string(),
            backend: Backend::S3 { staging: Box::new(staging), settings: Box::new(settings.clone()), presigned_urls: false },
            store,
            prefix,
            ledger: None,
            deletion_lease_ms: DELETION_LEASE_MS,
            read_cache: None,
            probes_swept: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Keeps the store's blobs in `ledger` (the server's database); without one (unit tests)
    /// nothing may collect the store's garbage.
    pub fn with_ledger(mut self, ledger: Arc<dyn BlobLedger>, deletion_lease_ms: i64) -> BlobStore {
        self.ledger = Some(ledger);
        self.deletion_lease_ms = deletion_lease_ms;
        self
    }

    /// Keeps copies of an S3 store's blobs on this node's disk as they are read whole, and
    /// serves reads from them (a file store ignores it: its blobs are local already).
    pub fn with_read_cache(mut self, cache: Option<Arc<ReadCache>>) -> BlobStore {
        if matches!(self.backend, Backend::S3 { .. }) {
            self.read_cache = cache;
        }
        self
    }

    /// Large uploads into a file store are written past the page cache (`uploads.direct_writes`,
    /// see `staged_writer`): less CPU per byte pushed, and the first read of a new blob comes from
    /// the disk. An S3 store ignores it (its staging is a multipart upload).
    pub fn with_direct_writes(mut self, on: bool) -> BlobStore {
        if let Backend::File(f) = &mut self.backend {
            f.direct_writes = on;
        }
        self
    }

    /// What the file system under a file store, or under an S3 store's scratch files, keeps
    /// free: writes that would eat into it are refused (`disk.reserve_mib`).
    pub fn with_disk_reserve(mut self, reserve: DiskReserve) -> BlobStore {
        match &mut self.backend {
            Backend::File(f) => f.reserve = reserve,
            Backend::S3 { staging, .. } => staging.scratch.reserve = reserve,
        }
        self
    }

    /// Downloads of an S3 store's blobs answer with a redirect to a presigned URL of the object,
    /// so the bytes go from the bucket to the client without passing through wharf.
    pub fn with_presigned_urls(mut self, on: bool) -> BlobStore {
        if let Backend::S3 { presigned_urls, .. } = &mut self.backend {
            *presigned_urls = on;
        }
        self
    }

    /// Where a client may fetch the blob itself (a presigned URL, valid for
    /// [`PRESIGNED_URL_TTL`]), when the store hands them out.
    pub async fn download_url(&self, digest: &Digest) -> Result<Option<String>, BlobError> {
        match &self.backend {
            Backend::S3 { staging, presigned_urls: true, .. } => {
                use object_store::signer::Signer;
                let url = staging.client.signer().signed_url(object_store::signer::Method::GET, &self.key(digest), PRESIGNED_URL_TTL).await?;
                Ok(Some(url.to_string()))
            }
            _ => Ok(None),
        }
    }

    /// See [`DELETION_LEASE_MS`].
    pub fn deletion_lease_ms(&self) -> i64 {
        self.deletion_lease_ms
    }

    /// Touches the blob's ledger entry; while a collection pass is deleting the blob, waits
    /// for it to finish (or, once its mark is older than the deletion lease, finishes the
    /// deletion itself), so that the caller then writes the bytes afresh.
    async fn touch(&self, digest: &Digest, size: u64) -> Result<(), BlobError> {
        let Some(ledger) = &self.ledger else { return Ok(()) };
        let mut attempt = 0;
        loop {
            let marked_at = match ledger.touch(&self.name, digest, size).await? {
                Touch::Live => return Ok(()),
                Touch::Deleting { marked_at } => marked_at,
            };
            if crate::now_millis() - marked_at > self.deletion_lease_ms {
                if let Some(mark) = ledger.claim_deletion(&self.name, digest, marked_at).await? {
                    self.delete(digest).await?;
                    ledger.forget(&self.name, digest, mark).await?;
                }
                continue;
            }
            attempt += 1;
            tokio::time::sleep(crate::backoff(attempt).max(std::time::Duration::from_millis(20))).await;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store's directory, for a file store.
    pub fn root(&self) -> Option<&FsPath> {
        match &self.backend {
            Backend::File(f) => Some(&f.root),
            Backend::S3 { .. } => None,
        }
    }

    /// The S3 settings, for an S3 store.
    pub fn s3_settings(&self) -> Option<(&S3Settings, bool)> {
        match &self.backend {
            Backend::File(_) => None,
            Backend::S3 { settings, presigned_urls, .. } => Some((settings, *presigned_urls)),
        }
    }

    /// Where the bytes are (a directory, or a bucket and prefix), for logs and errors.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::File(f) => f.root.display().to_string(),
            Backend::S3 { settings, .. } => settings.location(),
        }
    }

    fn key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        Path::from(format!("{}blobs/sha256/{}/{}", self.prefix, &hex[..2], hex))
    }

    /// Checks that the store answers and takes writes: writes, reads back and deletes a small
    /// object outside the blob namespace.
    pub async fn check_writable(&self) -> Result<(), BlobError> {
        // An endpoint that accepts connections and never answers would otherwise hold a start,
        // a store's creation or a status check for the client's read timeout times its retries.
        let check = async {
            let key = Path::from(format!("{}health/{}", self.prefix, uuid::Uuid::new_v4()));
            self.store.put(&key, Bytes::from_static(b"wharf").into()).await?;
            // Deleted whatever the read answered: a failed read left the probe for ever.
            let back = async { Ok::<_, BlobError>(self.store.get(&key).await?.bytes().await?) }.await;
            let deleted = self.store.delete(&key).await;
            let back = back?;
            deleted?;
            if back.as_ref() != b"wharf" {
                return Err(BlobError::Io(std::io::Error::other("read back other bytes than written")));
            }
            Ok(())
        };
        let res = match tokio::time::timeout(CHECK_DEADLINE, check).await {
            Ok(res) => res,
            Err(_) => Err(BlobError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {} s", CHECK_DEADLINE.as_secs())))),
        };
        // What a check cut off by its deadline or a killed node left, once the store answers
        // again (each status check otherwise could leave one more object); at most once an hour,
        // so that a status check does not list the bucket each time.
        let now = crate::now_millis();
        let last = self.probes_swept.load(std::sync::atomic::Ordering::Relaxed);
        if res.is_ok()
            && now - last >= 3_600_000
            && self.probes_swept.compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed).is_ok()
        {
            let _ = tokio::time::timeout(CHECK_DEADLINE, self.remove_stale_probes()).await;
        }
        res
    }

    /// Deletes write probes ([`BlobStore::check_writable`]) older than an hour; how many.
    async fn remove_stale_probes(&self) -> Result<usize, BlobError> {
        let before = crate::now_millis() - 3_600_000;
        let root = Path::from(format!("{}health", self.prefix));
        let stale: Vec<Path> = self
            .store
            .list(Some(&root))
            .try_filter_map(|m| {
                let probe = m.location.filename().is_some_and(|f| uuid::Uuid::parse_str(f).is_ok());
                futures::future::ready(Ok((probe && m.last_modified.timestamp_millis() < before).then_some(m.location)))
            })
            .try_collect()
            .await?;
        for key in &stale {
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stale.len())
    }

    /// Checks that the store answers, without writing: a readiness probe asks this every few
    /// seconds. A file store's directory must be there (asking for a missing object under a
    /// missing directory is "not found" too); a bucket must answer a HEAD within `deadline`.
    pub async fn check_reachable(&self, deadline: std::time::Duration) -> Result<(), BlobError> {
        if let Some(root) = self.root() {
            return match tokio::fs::metadata(root).await {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(BlobError::Io(std::io::Error::other(format!("{} is not a directory", root.display())))),
                Err(e) => Err(BlobError::Io(e)),
            };
        }
        let key = Path::from(format!("{}health/ready", self.prefix));
        match tokio::time::timeout(deadline, self.store.head(&key)).await {
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(BlobError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {} ms", deadline.as_millis())))),
        }
    }

    /// The blob's size, or `None` if the store does not hold it.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        if let Some(size) = self.read_cache.as_ref().and_then(|c| c.size(digest)) {
            return Ok(Some(size));
        }
        self.stored_size(digest).await
    }

    /// [`BlobStore::size`] as the store itself answers, never this node's read cache: what a
    /// write asks before it skips sending bytes the store already holds. The cache is keyed by
    /// digest across stores and outlives a deletion on another node, so with it a push to one
    /// bucket of a layer pulled from another was acknowledged and never written.
    async fn stored_size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams the blob, or the inclusive byte range `start..=end` of it (`end` clamped to the size).
    pub async fn get(&self, digest: &Digest, range: Option<(u64, Option<u64>)>) -> Result<BlobRead, BlobError> {
        let key = self.key(digest);
        if let Backend::File(f) = &self.backend {
            return f.get(&key, range).await;
        }
        if let Some(hit) = match &self.read_cache {
            Some(cache) => cache.get(digest, range).await,
            None => None,
        } {
            return hit;
        }
        let read = self.get_from_store(digest, range).await?;
        let body = match (&self.read_cache, read.range) {
            (Some(cache), None) => cache.fill(digest, read.total, read.body),
            _ => read.body,
        };
        Ok(BlobRead { body, ..read })
    }

    /// Streams the blob as the store itself holds it, never from this node's read cache (nor
    /// into it): what an integrity check must read, since a good copy in the cache would hide
    /// a damaged object in the bucket.
    pub async fn get_stored(&self, digest: &Digest) -> Result<BlobRead, BlobError> {
        self.get_from_store(digest, None).await
    }

    async fn get_from_store(&self, digest: &Digest, range: Option<(u64, Option<u64>)>) -> Result<BlobRead, BlobError> {
        let key = self.key(digest);
        if let Backend::File(f) = &self.backend {
            return f.get(&key, range).await;
        }
        let mut opts = GetOptions::default();
        let mut served = None;
        if let Some((start, end)) = range {
            let size = self.size(digest).await?.ok_or(BlobError::NotFound)?;
            let last = end.unwrap_or(u64::MAX).min(size.saturating_sub(1));
            if start >= size || start > last {
                return Err(BlobError::RangeNotSatisfiable);
            }
            opts.range = Some(GetRange::Bounded(start..last + 1));
            served = Some((start, last));
        }
        let res = match self.store.get_opts(&key, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let total = res.meta.size;
        let (start, end) = (res.range.start, res.range.end);
        let body = match res.payload {
            // object_store's own file reader makes one blocking call per 8 KiB; big reads keep
            // a 1 GiB layer from costing 131072 thread hand-offs.
            GetResultPayload::File(file, _) => file_stream::stream(file, start, end - start, false),
            GetResultPayload::Stream(s) => s.map_err(std::io::Error::other).boxed(),
        };
        Ok(BlobRead { total, range: served, body })
    }

    /// Reads a whole blob that is known to be small (manifests), refusing more than `limit` bytes.
    pub async fn read_small(&self, digest: &Digest, limit: u64) -> Result<Bytes, BlobError> {
        let read = self.get(digest, None).await?;
        if read.total > limit {
            return Err(BlobError::TooLarge { limit });
        }
        let mut buf = Vec::with_capacity(read.total as usize);
        let mut body = read.body;
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(buf))
    }

    /// Whether `len` bytes (a batch when unknown) written by [`BlobStore::put_stream`] now would
    /// be kept: a file store above its disk's reserve (an S3 store's go to the bucket, past the
    /// local disk). Asked before a proxy fill, which otherwise fails its client at the first
    /// batch the reserve refuses.
    pub async fn has_room(&self, len: Option<u64>) -> bool {
        let len = len.unwrap_or(WRITE_BATCH as u64);
        let (root, reserve) = match &self.backend {
            Backend::File(f) => (f.root.clone(), f.reserve),
            Backend::S3 { .. } => return true,
        };
        if reserve == DiskReserve::default() {
            return true;
        }
        // statvfs waits for the server on a network file system.
        tokio::task::spawn_blocking(move || reserve.check_path(&root, len).is_ok()).await.unwrap_or(true)
    }

    /// Stores small content held in memory (manifests, index pages); returns its digest. It may
    /// go into half the disk's reserve ([`Room::Document`]), where streamed content stops short
    /// of all of it.
    pub async fn put_bytes(&self, data: Bytes) -> Result<Digest, BlobError> {
        self.put_bytes_in(data, Room::Document).await
    }

    /// [`BlobStore::put_bytes`], as far into the disk's reserve as `room` says.
    pub async fn put_bytes_in(&self, data: Bytes, room: Room) -> Result<Digest, BlobError> {
        let digest = Digest::of(&data);
        // Touched before the bytes are looked at: a collection pass cannot take them between
        // this look and the caller's commit.
        self.touch(&digest, data.len() as u64).await?;
        if self.stored_size(&digest).await?.is_some() {
            return Ok(digest);
        }
        match &self.backend {
            Backend::File(f) => {
                let id = uuid::Uuid::new_v4().to_string();
                let stream = futures::stream::iter([Ok::<_, std::io::Error>(data)]);
                let res = match f.append_within(&id, 0, &HashState::empty(), stream, f.reserve.for_room(room)).await {
                    Ok(_) => f.rename_into_place(&id, &self.key(&digest)).await,
                    Err(e) => Err(e),
                };
                if res.is_err() {
                    f.discard(&id).await;
                }
                res?;
            }
            // Content-addressed: a PUT is atomic, and the bytes were hashed just now.
            Backend::S3 { .. } => {
                self.store.put(&self.key(&digest), data.into()).await?;
            }
        }
        Ok(digest)
    }

    /// Stores a stream in one go; verified against `expected` when given.
    pub async fn put_stream<S, E>(&self, body: S, expected: Option<&Digest>) -> Result<(Digest, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        match &self.backend {
            Backend::File(f) => {
                let id = uuid::Uuid::new_v4().to_string();
                let (size, state) = match f.append(&id, 0, &HashState::empty(), body).await {
                    Ok(r) => r,
                    Err(e) => {
                        f.discard(&id).await;
                        return Err(e);
                    }
                };
                // Written in one go under a fresh id: the hash taken while writing is the file's.
                let actual = Digest::from_sha256_bytes(&HashState::load(&state)?.finalize());
                let res = self.publish_file(f, &id, &actual, expected, size).await;
                if res.is_err() {
                    f.discard(&id).await;
                }
                res.map(|()| (actual, size))
            }
            Backend::S3 { staging, .. } => match expected {
                // Touched before the object can appear: the write completes only after this.
                Some(expected) => {
                    let key = self.key(expected);
                    let (pending, size) = staging.write_verified(&key, expected, body).await?;
                    if let Err(e) = self.touch(expected, size).await {
                        s3::S3Staging::abort(pending).await;
                        return Err(e);
                    }
                    staging.complete(&key, pending).await?;
                    Ok((expected.clone(), size))
                }
                None => {
                    let (temp, actual, size) = staging.put_unverified(body).await?;
                    let res = async {
                        self.touch(&actual, size).await?;
                        if self.stored_size(&actual).await?.is_none() {
                            staging.move_into_place(&temp, &self.key(&actual), size).await?;
                        }
                        Ok::<_, BlobError>(())
                    }
                    .await;
                    let _ = self.store.delete(&temp).await;
                    res.map(|()| (actual, size))
                }
            },
        }
    }

    /// Checks a file store's freshly staged upload against `expected` and renames it into place.
    async fn publish_file(&self, f: &file::FileStaging, id: &str, actual: &Digest, expected: Option<&Digest>, size: u64) -> Result<(), BlobError> {
        if let Some(expected) = expected {
            if expected != actual {
                return Err(BlobError::DigestMismatch { expected: expected.clone(), actual: actual.clone() });
            }
        }
        self.touch(actual, size).await?;
        f.rename_into_place(id, &self.key(actual)).await
    }

    /// Stages a stream in one go without publishing it, so that it can be checked first (an
    /// archive read from [`Staged::path`], a local file whatever the backend): nothing becomes
    /// a blob unless it is published.
    pub async fn stage_stream<S, E>(&self, body: S) -> Result<Staged<'_>, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let local = match &self.backend {
            Backend::File(f) => f,
            Backend::S3 { staging, .. } => &staging.scratch,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let path = local.staging_file(&id)?;
        let (size, state) = match local.append(&id, 0, &HashState::empty(), body).await {
            Ok(r) => r,
            Err(e) => {
                local.discard(&id).await;
                return Err(e);
            }
        };
        let digest = Digest::from_sha256_bytes(&HashState::load(&state)?.finalize());
        Ok(Staged { store: self, id, path, digest, size, published: false })
    }

    /// [`BlobStore::stage_stream`] of at most `limit` bytes: a longer body ends in
    /// [`BlobError::TooLarge`] as soon as it passes the limit (not after reading the rest), and
    /// nothing of it stays staged.
    pub async fn stage_limited<S, E>(&self, body: S, limit: u64) -> Result<Staged<'_>, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut seen = 0u64;
        let exceeded = std::cell::Cell::new(false);
        let limited = body.map(|chunk| {
            let chunk = chunk.map_err(|e| e.to_string())?;
            seen += chunk.len() as u64;
            if seen > limit {
                exceeded.set(true);
                return Err("over the limit".to_string());
            }
            Ok(chunk)
        });
        match self.stage_stream(limited).await {
            Err(_) if exceeded.get() => Err(BlobError::TooLarge { limit }),
            other => other,
        }
    }

    /// Starts a resumable upload; returns its empty state.
    pub async fn stage_create(&self, upload_id: &str) -> Result<(), BlobError> {
        match &self.backend {
            Backend::File(f) => f.create(upload_id).await,
            // An upload is its parts; the first append makes one.
            Backend::S3 { .. } => check_upload_id(upload_id),
        }
    }

    /// Appends `body` to the staged upload at `offset` (bytes past `offset` from an
    /// unacknowledged earlier attempt are dropped first), hashing as it goes. The bytes are
    /// stored durably when this returns; it returns the new offset and state (the running hash
    /// and, on S3, the upload's parts), which the caller records with the upload.
    pub async fn stage_append<S, E>(&self, upload_id: &str, offset: u64, state: &[u8], body: S) -> Result<(u64, Vec<u8>), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        match &self.backend {
            Backend::File(f) => f.append(upload_id, offset, state, body).await,
            Backend::S3 { staging, .. } => staging.append(upload_id, offset, state, body).await,
        }
    }

    /// Verifies a resumable upload against `expected` and publishes it.
    ///
    /// `sole_writers` is `Some(n)` when no writer ever lost the session when its lease ran out
    /// (see [`crate::MetaStore::upload_claim`]), as checked by the finishing request just
    /// before, and `n` bytes were acknowledged: then every writer ended (and any write of a
    /// request that was dropped finished, see `FileStaging::append`) before the next one began,
    /// each cutting the file back to the acknowledged offset first, so the running hash is the
    /// file's, and a file store publishes on it once the staged file is `n` bytes long (a read
    /// of every pushed byte saved, a third of a push's CPU). `None`, or another length: a
    /// writer that lost its lease may have written on into the file after others did, so the
    /// running hash says what was acknowledged, not what the file holds, and the file is
    /// hashed again. An S3 store's parts are written once under keys of their own, so their
    /// recorded hash is theirs either way. On a mismatch the staged bytes are discarded and
    /// nothing becomes visible.
    pub async fn stage_finish(&self, upload_id: &str, state: &[u8], expected: Option<&Digest>, sole_writers: Option<u64>) -> Result<Digest, BlobError> {
        match &self.backend {
            Backend::File(f) => {
                let recorded = Digest::from_sha256_bytes(&HashState::load(state)?.finalize());
                let trusted = match sole_writers {
                    Some(n) => f.staged_size(upload_id).await? == n,
                    None => false,
                };
                let actual = if trusted { recorded.clone() } else { f.rehash(upload_id).await? };
                let expected = expected.unwrap_or(&recorded);
                if *expected != actual {
                    f.discard(upload_id).await;
                    return Err(BlobError::DigestMismatch { expected: expected.clone(), actual });
                }
                let size = f.staged_size(upload_id).await?;
                self.touch(&actual, size).await?;
                f.rename_into_place(upload_id, &self.key(&actual)).await?;
                Ok(actual)
            }
            Backend::S3 { staging, .. } => {
                let (actual, size) = s3::S3Staging::recorded(state)?;
                if let Some(expected) = expected {
                    if *expected != actual {
                        staging.discard(upload_id).await;
                        return Err(BlobError::DigestMismatch { expected: expected.clone(), actual });
                    }
                }
                self.touch(&actual, size).await?;
                if self.stored_size(&actual).await?.is_none() {
                    staging.assemble(upload_id, state, &self.key(&actual)).await?;
                }
                staging.discard(upload_id).await;
                Ok(actual)
            }
        }
    }

    /// [`BlobStore::stage_finish`] for content the client names by any algorithm: a digest that
    /// is not sha256 is checked by hashing the staged bytes again with its algorithm (the
    /// running hash of a session is sha256 only: the algorithm is first named by the request
    /// that finishes it), before anything is published; then the bytes are published under
    /// their sha256, which is returned.
    pub async fn stage_finish_any(&self, upload_id: &str, state: &[u8], expected: &AnyDigest, sole_writers: Option<u64>) -> Result<Digest, BlobError> {
        if let Some(d) = expected.sha256() {
            return self.stage_finish(upload_id, state, Some(&d), sole_writers).await;
        }
        let actual = match &self.backend {
            Backend::File(f) => hash_file(f.staging_file(upload_id)?, expected.algorithm()).await?,
            Backend::S3 { staging, .. } => staging.hash_parts(upload_id, state, expected.algorithm()).await?,
        };
        if actual != *expected {
            self.stage_discard(upload_id).await;
            return Err(BlobError::ContentMismatch { expected: expected.clone(), actual });
        }
        self.stage_finish(upload_id, state, None, sole_writers).await
    }

    /// Cuts a staged upload back to `len` bytes (what its row acknowledges), so that a failed
    /// append gives its space back at once instead of when the janitor comes. (An S3 upload's
    /// unacknowledged part is in no chain; it goes with the upload.)
    pub async fn stage_truncate(&self, upload_id: &str, len: u64) -> Result<(), BlobError> {
        match &self.backend {
            Backend::File(f) => f.truncate(upload_id, len).await,
            Backend::S3 { .. } => Ok(()),
        }
    }

    pub async fn stage_discard(&self, upload_id: &str) {
        match &self.backend {
            Backend::File(f) => f.discard(upload_id).await,
            Backend::S3 { staging, .. } => staging.discard(upload_id).await,
        }
    }

    /// Ids of staged uploads whose bytes were last written before `before` (for the janitor:
    /// abandoned sessions, and one-shot uploads of a process that died).
    pub async fn stale_staging(&self, before: std::time::SystemTime) -> Result<Vec<String>, BlobError> {
        match &self.backend {
            Backend::File(f) => f.stale(before).await,
            Backend::S3 { staging, .. } => {
                // This node's scratch files too: a process that died mid-request left them.
                for id in staging.scratch.stale(before).await? {
                    staging.scratch.discard(&id).await;
                }
                staging.stale(before).await
            }
        }
    }

    /// Every blob the store holds, with its size and last-modified time (milliseconds), in no
    /// particular order; objects that are not named like blobs are skipped.
    pub fn list_blobs(&self) -> BoxStream<'_, Result<(Digest, u64, i64), BlobError>> {
        let prefix = Path::from(format!("{}blobs", self.prefix));
        self.store
            .list(Some(&prefix))
            .filter_map(move |item| async move {
                match item {
                    Ok(meta) => {
                        let hex = meta.location.filename()?;
                        let digest: Digest = format!("sha256:{hex}").parse().ok()?;
                        (self.key(&digest) == meta.location).then_some(Ok((digest, meta.size, meta.last_modified.timestamp_millis())))
                    }
                    Err(e) => Some(Err(e.into())),
                }
            })
            .boxed()
    }

    /// Removes a blob for good. Only garbage collection calls this (a pass, or a writer finishing
    /// a deletion a pass left): formats drop references.
    pub async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        if let Some(cache) = &self.read_cache {
            cache.remove(std::slice::from_ref(digest)).await;
        }
        match self.store.delete(&self.key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes many blobs for good, with few round trips: a file store unlinks them all on one
    /// blocking thread (a hop to the blocking pool per blob cost more than its unlink), an S3
    /// store sends them in DeleteObjects requests. One result per digest, in order.
    pub async fn delete_many(&self, digests: &[Digest]) -> Vec<Result<(), BlobError>> {
        // This node's copies go first: a copy must not outlive its object here (other nodes'
        // copies are of the same bytes and age out).
        if let Some(cache) = &self.read_cache {
            cache.remove(digests).await;
        }
        match &self.backend {
            Backend::File(f) => {
                let paths: Vec<std::path::PathBuf> = digests.iter().map(|d| f.root.join(self.key(d).as_ref())).collect();
                // An unlink mostly waits on the file system's journal: a few run side by side.
                let per = paths.len().div_ceil(UNLINK_THREADS).max(1);
                let chunks: Vec<Vec<std::path::PathBuf>> = paths.chunks(per).map(<[_]>::to_vec).collect();
                let unlinked = futures::future::join_all(chunks.into_iter().map(|chunk| {
                    let n = chunk.len();
                    async move {
                        let done = blocking(move || {
                            Ok(chunk
                                .iter()
                                .map(|p| match std::fs::remove_file(p) {
                                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BlobError::from(e)),
                                    _ => Ok(()),
                                })
                                .collect::<Vec<_>>())
                        })
                        .await;
                        done.unwrap_or_else(|e| all_failed(n, &e.to_string()))
                    }
                }))
                .await;
                unlinked.into_iter().flatten().collect()
            }
            Backend::S3 { .. } => {
                let keys: Vec<Path> = digests.iter().map(|d| self.key(d)).collect();
                let n = keys.len();
                // Up to 1,000 keys make one request whose answers come in the keys' order; a
                // failed request is one error for all of them.
                let answers: Vec<object_store::Result<Path>> = self.store.delete_stream(futures::stream::iter(keys).map(Ok).boxed()).collect().await;
                if answers.len() == n {
                    return answers
                        .into_iter()
                        .map(|a| match a {
                            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(e) => Err(e.into()),
                        })
                        .collect();
                }
                let msg =
                    answers.into_iter().find_map(|a| a.err()).map(|e| e.to_string()).unwrap_or_else(|| "the object store did not answer for every key".into());
                all_failed(n, &msg)
            }
        }
    }

    /// Deletes up to `limit` of the store's objects, and only what wharf writes under its prefix
    /// (blobs, upload staging, health probes: never another object of the bucket); how many
    /// went. Its blob store was deleted: the caller calls it until it returns 0, renewing its
    /// claim on the removal in between. A file store's directory is removed by the caller.
    pub async fn remove_objects(&self, limit: usize) -> Result<u64, BlobError> {
        let mut keys = Vec::new();
        for part in ["blobs", "uploads", "health"] {
            let root = Path::from(format!("{}{part}", self.prefix));
            let mut listing = self.store.list(Some(&root));
            while keys.len() < limit {
                match listing.next().await {
                    Some(Ok(m)) => keys.push(m.location),
                    Some(Err(object_store::Error::NotFound { .. })) | None => break,
                    Some(Err(e)) => return Err(e.into()),
                }
            }
            if keys.len() >= limit {
                break;
            }
        }
        let n = keys.len() as u64;
        let mut gone = self.store.delete_stream(futures::stream::iter(keys).map(Ok).boxed());
        while let Some(res) = gone.next().await {
            match res {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }
}

/// A one-shot upload in a local file, hashed but not yet a blob. Dropped unpublished (a
/// refused upload, an early return), its bytes are removed.
pub struct Staged<'a> {
    store: &'a BlobStore,
    id: String,
    path: PathBuf,
    digest: Digest,
    size: u64,
    published: bool,
}

impl Staged<'_> {
    /// The staged bytes, for checks that read them (archives).
    pub fn path(&self) -> &FsPath {
        &self.path
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the staged bytes against a digest of any algorithm (sha256: the hash taken while
    /// staging; another: the file hashed again).
    pub async fn verify(&self, expected: &AnyDigest) -> Result<(), BlobError> {
        if let Some(d) = expected.sha256() {
            if d != self.digest {
                return Err(BlobError::DigestMismatch { expected: d, actual: self.digest.clone() });
            }
            return Ok(());
        }
        let actual = hash_file(self.path.clone(), expected.algorithm()).await?;
        if actual != *expected {
            return Err(BlobError::ContentMismatch { expected: expected.clone(), actual });
        }
        Ok(())
    }

    /// Makes the staged bytes the blob they hash to.
    pub async fn publish(mut self) -> Result<Digest, BlobError> {
        let store = self.store;
        match &store.backend {
            // Written in one go under a fresh id: the hash taken while writing is the file's.
            Backend::File(f) => store.publish_file(f, &self.id, &self.digest, None, self.size).await?,
            Backend::S3 { staging, .. } => {
                store.touch(&self.digest, self.size).await?;
                if store.stored_size(&self.digest).await?.is_none() {
                    staging.upload_file(&self.path, &store.key(&self.digest)).await?;
                }
                let _ = tokio::fs::remove_file(&self.path).await;
            }
        }
        self.published = true;
        Ok(self.digest.clone())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.published {
            // One unlink: cheap enough to do in place, and a drop cannot await.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    /// Small reads come whole in one piece; large ones stream from the right offset; ranges
    /// are clamped and refused as the protocol wants, whichever way the file store reads.
    #[tokio::test]
    async fn file_reads_small_whole_and_large_streamed_with_ranges() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        let small = store.put_bytes(Bytes::from_static(b"0123456789")).await.unwrap();
        let big_data: Vec<u8> = (0..(READ_CHUNK * 3 + 17)).map(|i| (i * 7 % 251) as u8).collect();
        let big = store.put_bytes(Bytes::from(big_data.clone())).await.unwrap();
        let read = |d: Digest, r: Option<(u64, Option<u64>)>| {
            let store = &store;
            async move {
                let got = store.get(&d, r).await?;
                let parts: Vec<Bytes> = got.body.try_collect().await.unwrap();
                Ok::<_, BlobError>((got.total, got.range, parts))
            }
        };
        let (total, range, parts) = read(small.clone(), None).await.unwrap();
        assert_eq!((total, range, parts.len(), parts.concat()), (10, None, 1, b"0123456789".to_vec()));
        let (_, range, parts) = read(small.clone(), Some((3, Some(100)))).await.unwrap();
        assert_eq!((range, parts.concat()), (Some((3, 9)), b"3456789".to_vec()));
        assert!(matches!(read(small.clone(), Some((10, None))).await, Err(BlobError::RangeNotSatisfiable)));
        let (total, _, parts) = read(big.clone(), None).await.unwrap();
        assert_eq!((total as usize, parts.concat()), (big_data.len(), big_data.clone()));
        assert!(parts.len() > 1, "a large blob streams");
        let start = READ_CHUNK as u64 + 5;
        let (_, range, parts) = read(big.clone(), Some((start, None))).await.unwrap();
        assert_eq!((range, parts.concat()), (Some((start, big_data.len() as u64 - 1)), big_data[start as usize..].to_vec()));
        let (_, _, parts) = read(big.clone(), Some((start, Some(start + 9)))).await.unwrap();
        assert_eq!(parts.concat(), big_data[start as usize..start as usize + 10].to_vec());
        assert!(matches!(read(Digest::of(b"absent"), None).await, Err(BlobError::NotFound)));
    }

    /// Write probes a cut-off check left go at the next check that succeeds, an hour on; one
    /// being written now and what is not a probe stay.
    #[tokio::test]
    async fn stale_write_probes_are_removed_by_the_next_check() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        std::fs::create_dir_all(dir.join("health")).unwrap();
        let (old, fresh) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
        for name in [&old, &fresh, &"ready".to_string()] {
            std::fs::write(dir.join("health").join(name), b"wharf").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for name in [&old, &"ready".to_string()] {
            std::fs::File::options().write(true).open(dir.join("health").join(name)).unwrap().set_modified(two_hours_ago).unwrap();
        }
        store.check_writable().await.unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.join("health")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want = vec![fresh, "ready".to_string()];
        want.sort();
        assert_eq!(left, want, "the check's own probe is gone too");
    }

    #[tokio::test]
    async fn staged_upload_resumes_from_saved_state_and_verifies() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        store.stage_create("u1").await.unwrap();
        let (off, st) = store.stage_append("u1", 0, &HashState::empty(), chunks(&[b"hello "])).await.unwrap();
        assert_eq!(off, 6);
        // Simulate a crash after unacknowledged bytes were written: they must be dropped.
        let (_, _) = store.stage_append("u1", 6, &st, chunks(&[b"GARBAGE"])).await.unwrap();
        let (off, st) = store.stage_append("u1", 6, &st, chunks(&[b"world"])).await.unwrap();
        assert_eq!(off, 11);
        let wrong = Digest::of(b"hello");
        assert!(matches!(store.stage_finish("u1", &st, Some(&wrong), Some(11)).await, Err(BlobError::DigestMismatch { .. })));
        assert_eq!(store.size(&Digest::of(b"hello world")).await.unwrap(), None, "nothing visible after a mismatch");

        store.stage_create("u2").await.unwrap();
        let (_, st) = store.stage_append("u2", 0, &HashState::empty(), chunks(&[b"hello ", b"world"])).await.unwrap();
        let d = store.stage_finish("u2", &st, Some(&Digest::of(b"hello world")), Some(11)).await.unwrap();
        assert_eq!(d, Digest::of(b"hello world"));
        let read = store.get(&d, Some((6, None))).await.unwrap();
        assert_eq!(read.total, 11);
        assert_eq!(read.range, Some((6, 10)));
        let body: Vec<Bytes> = read.body.try_collect().await.unwrap();
        assert_eq!(body.concat(), b"world");
    }

    #[tokio::test]
    async fn a_staged_file_that_differs_from_its_recorded_hash_is_never_published() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        store.stage_create("u3").await.unwrap();
        let (_, st) = store.stage_append("u3", 0, &HashState::empty(), chunks(&[b"what the row acknowledged"])).await.unwrap();
        // A writer that lost the session to a takeover wrote on after the row recorded its hash.
        std::fs::write(dir.join("uploads/u3"), b"what another writer left!").unwrap();
        let claimed = Digest::of(b"what the row acknowledged");
        let res = store.stage_finish("u3", &st, Some(&claimed), None).await;
        assert!(matches!(res, Err(BlobError::DigestMismatch { .. })), "{res:?}");
        // No takeover, but the file is not the length that was acknowledged: hashed again too.
        store.stage_create("u4").await.unwrap();
        let (n, st) = store.stage_append("u4", 0, &HashState::empty(), chunks(&[b"what the row acknowledged"])).await.unwrap();
        std::fs::write(dir.join("uploads/u4"), b"what the row acknowledged, and more").unwrap();
        let res = store.stage_finish("u4", &st, Some(&claimed), Some(n)).await;
        assert!(matches!(res, Err(BlobError::DigestMismatch { .. })), "{res:?}");
        assert_eq!(store.size(&claimed).await.unwrap(), None, "nothing is stored under a name its bytes do not hash to");
        assert_eq!(store.size(&Digest::of(b"what another writer left!")).await.unwrap(), None);
    }

    /// A request dropped mid-append (its client went away) leaves its last write running on
    /// the blocking pool; the cut back its claim makes must come after that write, or the
    /// write lands past the acknowledged offset, where the next writer's running hash, which
    /// a session no one took over is published on, knows nothing of it.
    #[tokio::test]
    async fn a_cut_back_waits_for_the_last_write_of_a_dropped_append() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        store.stage_create("u").await.unwrap();
        let (handed_off, mut told) = tokio::sync::oneshot::channel();
        let mut handed_off = Some(handed_off);
        let mut first = Some(Bytes::from(vec![7u8; 16 * WRITE_BATCH]));
        // One chunk big enough to go to the blocking pool at once; asked for the next one, the
        // append has handed it off, and the body then never ends.
        let body = futures::stream::poll_fn(move |_| match first.take() {
            Some(b) => std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(b))),
            None => {
                if let Some(tx) = handed_off.take() {
                    let _ = tx.send(());
                }
                std::task::Poll::Pending
            }
        });
        let empty = HashState::empty();
        tokio::select! {
            _ = store.stage_append("u", 0, &empty, body) => panic!("the body never ends"),
            _ = &mut told => {}
        }
        store.stage_truncate("u", 0).await.unwrap();
        // Without the wait, the dropped append's write would still be landing now.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(std::fs::metadata(dir.join("uploads/u")).unwrap().len(), 0, "nothing past the acknowledged offset");
    }

    #[tokio::test]
    async fn a_staged_stream_over_its_limit_is_refused_and_leaves_nothing() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        let res = store.stage_limited(chunks(&[b"12345", b"67890", b"x"]), 10).await;
        assert!(matches!(res, Err(BlobError::TooLarge { limit: 10 })), "{:?}", res.err());
        assert_eq!(std::fs::read_dir(dir.join("uploads")).unwrap().count(), 0, "nothing stays staged");
        let staged = store.stage_limited(chunks(&[b"12345", b"67890"]), 10).await.unwrap();
        assert_eq!(staged.size(), 10, "up to the limit is fine");
    }

    /// A staged file that is also a published blob (its staged name not removed yet) is never
    /// cut back: the cut would cut the blob.
    #[tokio::test]
    async fn a_cut_back_never_cuts_a_staged_file_that_is_also_a_blob() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        store.stage_create("u").await.unwrap();
        let (_, _) = store.stage_append("u", 0, &HashState::empty(), chunks(&[b"published bytes"])).await.unwrap();
        std::fs::hard_link(dir.join("uploads/u"), dir.join("published")).unwrap();
        store.stage_truncate("u", 3).await.unwrap();
        assert_eq!(std::fs::read(dir.join("published")).unwrap(), b"published bytes");
        std::fs::remove_file(dir.join("published")).unwrap();
        store.stage_truncate("u", 3).await.unwrap();
        assert_eq!(std::fs::read(dir.join("uploads/u")).unwrap(), b"pub", "a staged file of its own is cut");
    }

    #[tokio::test]
    async fn identical_content_is_stored_once() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        let a = store.put_stream(chunks(&[b"same"]), None).await.unwrap();
        let b = store.put_stream(chunks(&[b"sa", b"me"]), None).await.unwrap();
        assert_eq!(a, b);
        let files: Vec<_> = walk(&dir.join("blobs"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(walk(&dir.join("uploads")).is_empty(), "staging left behind");
    }

    #[tokio::test]
    async fn a_staged_stream_is_a_blob_only_once_published() {
        let dir = tempfile_dir();
        let store = BlobStore::filesystem("t", &dir).unwrap();
        let staged = store.stage_stream(chunks(&[b"checked ", b"first"])).await.unwrap();
        assert_eq!(std::fs::read(staged.path()).unwrap(), b"checked first");
        assert_eq!(store.size(staged.digest()).await.unwrap(), None);
        drop(staged);
        assert!(walk(&dir.join("uploads")).is_empty(), "a dropped stage is removed");
        let staged = store.stage_stream(chunks(&[b"checked first"])).await.unwrap();
        let d = staged.publish().await.unwrap();
        assert_eq!(store.size(&d).await.unwrap(), Some(13));
        assert!(walk(&dir.join("uploads")).is_empty());
    }

    #[test]
    fn upload_ids_cannot_name_paths() {
        assert!(check_upload_id("../../etc/passwd").is_err());
        assert!(check_upload_id("").is_err());
        assert!(check_upload_id("a/b").is_err());
        assert!(check_upload_id("0b6c0a4e-2f7e-4f7e-9d0b-1c2d3e4f5a6b").is_ok());
    }

    /// A directory of the test's own, removed when it is dropped.
    fn tempfile_dir() -> crate::test_dir::TestDir {
        crate::test_dir::TestDir::new("wharf-blob-test-")
    }

    fn walk(dir: &FsPath) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
