//! Staging on S3-compatible object storage. S3 has no append and no rename, so:
//!
//! - A resumable upload is a chain of part objects, `uploads/<id>/<offset>-<uuid>`, one per
//!   append, each written once under a key no other attempt uses. The chain (offset, length,
//!   key of every acknowledged part) travels in the upload's state with the running hash, so the
//!   database row alone says what was acknowledged, any node can continue the upload, and a part
//!   a losing writer left is simply not in the chain.
//! - Publishing a chain copies its one part server-side, or streams its parts into a multipart
//!   upload of the blob's key; the blob appears only when that upload completes.
//! - A one-shot write whose digest the caller knows streams straight into a multipart upload of
//!   the blob's key and completes it only if the content hashes to that digest (aborted
//!   otherwise): nothing unverified is ever visible.
//! - Content that must be read back before it may become a blob (archives) is staged in a local
//!   scratch directory and uploaded when published.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::body_budget::{BodyBudget, Share};
use super::file::FileStaging;
use super::s3_clients::S3Clients;
use super::{BlobError, HashState, WRITE_BATCH};
use crate::digest::Digest;

/// Where an S3 blob store keeps its objects, and how wharf reaches them. Credentials left empty
/// come from the environment or the instance's role, as the AWS SDKs find them. Its `Debug`
/// never shows a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// Prepended to every key (`team-a/` keeps a store beside others in one bucket).
    pub prefix: String,
    /// An S3-compatible service's URL (MinIO, Ceph, SeaweedFS, Garage); empty: AWS.
    pub endpoint: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub force_path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Idle connections kept per host (Nexus's `maxConnectionPoolSize`); 0: the client's default.
    pub max_connection_pool_size: usize,
    pub encryption: S3Encryption,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &str| if s.is_empty() { "" } else { "<hidden>" };
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("max_connection_pool_size", &self.max_connection_pool_size)
            .field("encryption", &self.encryption)
            .finish()
    }
}

/// Server-side encryption of the objects wharf writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum S3Encryption {
    /// The bucket's default.
    #[default]
    BucketDefault,
    /// SSE-S3 (`AES256`).
    S3Managed,
    /// SSE-KMS with this key (empty: the account's default key).
    Kms { key_id: String },
}

impl S3Settings {
    /// The prefix as the objects' keys hold it: its segments, empty ones dropped (`a//b/` and
    /// `/a/b` are `a/b` there).
    pub fn prefix_segments(&self) -> Vec<&str> {
        self.prefix.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// Where the store lives, for logs and errors (never a secret).
    pub fn location(&self) -> String {
        let endpoint = if self.endpoint.is_empty() { format!("AWS {}", self.region) } else { self.endpoint.clone() };
        format!("s3://{}/{} at {endpoint}", self.bucket, self.prefix.trim_matches('/'))
    }

    pub(super) fn client(&self) -> Result<AmazonS3, BlobError> {
        // No whole-request timeout: a blob streamed to a slow client may take minutes. A stalled
        // connection still fails by the read timeout.
        let mut options = ClientOptions::new().with_timeout_disabled().with_read_timeout(Duration::from_secs(60)).with_connect_timeout(Duration::from_secs(5));
        if self.max_connection_pool_size > 0 {
            options = options.with_pool_max_idle_per_host(self.max_connection_pool_size);
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_region(if self.region.is_empty() { "us-east-1" } else { &self.region })
            .with_virtual_hosted_style_request(!self.force_path_style)
            .with_client_options(options);
        if !self.endpoint.is_empty() {
            b = b.with_endpoint(&self.endpoint).with_allow_http(self.endpoint.starts_with("http://"));
        }
        if !self.access_key_id.is_empty() {
            b = b.with_access_key_id(&self.access_key_id).with_secret_access_key(&self.secret_access_key);
        }
        if !self.session_token.is_empty() {
            b = b.with_token(&self.session_token);
        }
        match &self.encryption {
            S3Encryption::BucketDefault => {}
            S3Encryption::S3Managed => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption".parse()?;
                b = b.with_config(key, "AES256");
            }
            S3Encryption::Kms { key_id } => b = b.with_sse_kms_encryption(key_id),
        }
        Ok(b.build()?)
    }
}

/// One acknowledged append of a resumable upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Part {
    #[serde(rename = "o")]
    offset: u64,
    #[serde(rename = "n")]
    len: u64,
    /// The object's name under `uploads/<id>/`.
    #[serde(rename = "k")]
    key: String,
}

/// An upload's state: the running hash, then (S3 only) its chain of parts as JSON. A state of
/// the hash alone is an upload with no part yet, so the empty state is the same for every
/// backend.
fn decode(state: &[u8]) -> Result<(Sha256, Vec<Part>), BlobError> {
    let n = HashState::empty().len();
    if state.len() < n {
        return Err(BlobError::BadState);
    }
    let hash = HashState::load(&state[..n])?;
    let parts = if state.len() == n { Vec::new() } else { serde_json::from_slice(&state[n..]).map_err(|_| BlobError::BadState)? };
    Ok((hash, parts))
}

fn encode(hash: &Sha256, parts: &[Part]) -> Vec<u8> {
    let mut out = HashState::save(hash);
    if !parts.is_empty() {
        out.extend(serde_json::to_vec(parts).expect("parts serialize"));
    }
    out
}

/// Bytes buffered before a multipart upload starts (smaller content is one PUT), and the size of
/// each part after (S3 wants at least 5 MiB for every part but the last).
const PART: usize = 8 << 20;
/// Parts of one upload on their way at once (what they hold is bounded across uploads too,
/// see [`Parts`]).
const PARTS_IN_FLIGHT: usize = 2;
/// The largest object S3 copies in one request.
const MAX_COPY: u64 = 5 << 30;

pub(super) struct S3Staging {
    pub(super) client: Arc<S3Clients>,
    prefix: String,
    /// Local staging for content that must be read back before it is published.
    pub(super) scratch: FileStaging,
    /// What the multipart writes' parts on their way may take of memory ([`Parts`]).
    budget: Arc<BodyBudget>,
}

/// A write of one object in progress: small content is held until the end, larger content
/// streams as a multipart upload.
pub(super) enum Pending {
    Small(Vec<Bytes>),
    Multipart(Parts),
}

/// A multipart write whose parts, once sent, hold a share of the S3 parts' memory budget until
/// S3 has them ([`BodyBudget::s3_parts`]). What an upload holds itself (the part it is filling, or its
/// content before it is large enough for a multipart upload) is at most a part and a batch, as
/// with Distribution's S3 driver; the parts on their way, up to [`PARTS_IN_FLIGHT`] per upload,
/// are bounded across all of them: 50 uploads at 2 MB/s held 1.2 GB before. A wait for a share
/// holds nothing that only this upload could give back (a sent part goes by itself), so it ends.
pub(super) struct Parts {
    w: WriteMultipart,
    /// Bytes in the part being filled.
    filling: usize,
    budget: Arc<BodyBudget>,
}

/// A part's last bytes, carrying the part's share: given back when S3's client drops the part.
struct Shared {
    bytes: Bytes,
    _share: Share,
}

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Parts {
    pub(super) fn new(upload: Box<dyn object_store::MultipartUpload>, budget: Arc<BodyBudget>) -> Parts {
        Parts { w: WriteMultipart::new_with_chunk_size(upload, PART), filling: 0, budget }
    }

    /// Adds `bytes`; a part they complete is sent once it has its share and fewer than
    /// [`PARTS_IN_FLIGHT`] of this upload's are on their way.
    pub(super) async fn put(&mut self, mut bytes: Bytes) -> Result<(), object_store::Error> {
        while !bytes.is_empty() {
            let room = PART - self.filling;
            if bytes.len() < room {
                self.filling += bytes.len();
                self.w.put(bytes);
                return Ok(());
            }
            let last = bytes.split_to(room);
            self.w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            let share = self.budget.take(PART).await;
            self.w.put(Bytes::from_owner(Shared { bytes: last, _share: share }));
            self.filling = 0;
        }
        Ok(())
    }

    async fn put_all(&mut self, chunks: Vec<Bytes>) -> Result<(), object_store::Error> {
        for c in chunks {
            self.put(c).await?;
        }
        Ok(())
    }

    pub(super) async fn finish(self) -> Result<(), object_store::Error> {
        self.w.finish().await.map(|_| ())
    }

    pub(super) async fn abort(self) -> Result<(), object_store::Error> {
        self.w.abort().await
    }
}

impl S3Staging {
    pub(super) fn open(settings: &S3Settings, scratch: &FsPath) -> Result<S3Staging, BlobError> {
        let client = Arc::new(S3Clients::new(settings)?);
        let prefix = settings.prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Ok(S3Staging { client, prefix, scratch: FileStaging::open(scratch)?, budget: BodyBudget::s3_parts() })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn upload_dir(&self, upload_id: &str) -> Result<Path, BlobError> {
        super::check_upload_id(upload_id)?;
        Ok(Path::from(format!("{}uploads/{upload_id}", self.prefix)))
    }

    /// Streams `body` towards `key`, hashing it on the blocking pool; returns the write, still
    /// unfinished (the caller completes it only if the content is right), its length and hash.
    async fn write<S, E>(&self, key: &Path, mut hasher: Sha256, mut body: S) -> Result<(Pending, u64, Sha256), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut pending = Pending::Small(Vec::new());
        let mut held = 0usize;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len = 0usize;
        let mut written = 0u64;
        loop {
            let done = match body.next().await {
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    batch_len += chunk.len();
                    batch.push(chunk);
                    false
                }
                Some(Err(e)) => {
                    if let Pending::Multipart(w) = pending {
                        let _ = w.abort().await;
                    }
                    return Err(BlobError::Body(e.to_string()));
                }
                None => true,
            };
            if batch_len >= WRITE_BATCH || (done && !batch.is_empty()) {
                let chunks = std::mem::take(&mut batch);
                batch_len = 0;
                let (h, chunks) = super::join(tokio::task::spawn_blocking(move || {
                    for c in &chunks {
                        hasher.update(c);
                    }
                    Ok((hasher, chunks))
                }))
                .await?;
                hasher = h;
                pending = match pending {
                    Pending::Small(mut held_chunks) => {
                        held += chunks.iter().map(Bytes::len).sum::<usize>();
                        held_chunks.extend(chunks);
                        if held < PART {
                            Pending::Small(held_chunks)
                        } else {
                            let mut parts = Parts::new(self.client.put_multipart(key).await?, self.budget.clone());
                            if let Err(e) = parts.put_all(held_chunks).await {
                                let _ = parts.abort().await;
                                return Err(e.into());
                            }
                            Pending::Multipart(parts)
                        }
                    }
                    Pending::Multipart(mut parts) => {
                        if let Err(e) = parts.put_all(chunks).await {
                            let _ = parts.abort().await;
                            return Err(e.into());
                        }
                        Pending::Multipart(parts)
                    }
                };
            }
            if done {
                return Ok((pending, written, hasher));
            }
        }
    }

    pub(super) async fn complete(&self, key: &Path, pending: Pending) -> Result<(), BlobError> {
        match pending {
            Pending::Small(chunks) => {
                self.client.put(key, PutPayload::from_iter(chunks)).await?;
            }
            Pending::Multipart(w) => {
                w.finish().await?;
            }
        }
        Ok(())
    }

    pub(super) async fn abort(pending: Pending) {
        if let Pending::Multipart(w) = pending {
            let _ = w.abort().await;
        }
    }

    /// See [`super::BlobStore::stage_append`]: one new part object per append.
    pub(super) async fn append<S, E>(&self, upload_id: &str, offset: u64, state: &[u8], body: S) -> Result<(u64, Vec<u8>), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (hash, mut parts) = decode(state)?;
        let acknowledged: u64 = parts.iter().map(|p| p.len).sum();
        if acknowledged != offset {
            return Err(BlobError::BadState);
        }
        let name = format!("{offset:020}-{}", uuid::Uuid::new_v4().simple());
        let key = self.upload_dir(upload_id)?.join(name.as_str());
        let (pending, len, hash) = self.write(&key, hash, body).await?;
        if len == 0 {
            Self::abort(pending).await;
            return Ok((offset, encode(&hash, &parts)));
        }
        self.complete(&key, pending).await?;
        parts.push(Part { offset, len, key: name });
        Ok((offset + len, encode(&hash, &parts)))
    }

    /// The digest the acknowledged parts hash to, and their total size. Part objects are
    /// written once under keys of their own, so the running hash is their content's.
    pub(super) fn recorded(state: &[u8]) -> Result<(Digest, u64), BlobError> {
        let (hash, parts) = decode(state)?;
        Ok((Digest::from_sha256_bytes(&hash.finalize()), parts.iter().map(|p| p.len).sum()))
    }

    /// What the acknowledged parts hash to with `alg`, read back from the bucket (hashed on the
    /// blocking pool, a chunk at a time).
    pub(super) async fn hash_parts(&self, upload_id: &str, state: &[u8], alg: crate::digest::Algorithm) -> Result<crate::digest::AnyDigest, BlobError> {
        let (_, parts) = decode(state)?;
        let dir = self.upload_dir(upload_id)?;
        let mut hasher = alg.hasher();
        for p in &parts {
            let mut body = self.client.get(&dir.clone().join(p.key.as_str())).await?.into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher = super::blocking(move || {
                    hasher.update(&chunk);
                    Ok(hasher)
                })
                .await?;
            }
        }
        Ok(hasher.finish())
    }

    /// Makes the chain of parts the object at `key`.
    pub(super) async fn assemble(&self, upload_id: &str, state: &[u8], key: &Path) -> Result<(), BlobError> {
        let (_, parts) = decode(state)?;
        let dir = self.upload_dir(upload_id)?;
        match parts.as_slice() {
            [] => {
                self.client.put(key, PutPayload::default()).await?;
            }
            [one] if one.len <= MAX_COPY => self.client.copy(&dir.clone().join(one.key.as_str()), key).await?,
            _ => {
                let mut w = Parts::new(self.client.put_multipart(key).await?, self.budget.clone());
                for p in &parts {
                    let mut body = self.client.get(&dir.clone().join(p.key.as_str())).await?.into_stream();
                    while let Some(chunk) = body.next().await {
                        let chunk = match chunk {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = w.abort().await;
                                return Err(e.into());
                            }
                        };
                        if let Err(e) = w.put(chunk).await {
                            let _ = w.abort().await;
                            return Err(e.into());
                        }
                    }
                }
                w.finish().await?;
            }
        }
        Ok(())
    }

    /// Streams a blob towards its key and checks it hashes to `expected`; the caller then
    /// completes the write ([`S3Staging::complete`]), or drops it on a mismatch.
    pub(super) async fn write_verified<S, E>(&self, key: &Path, expected: &Digest, body: S) -> Result<(Pending, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (pending, len, hash) = self.write(key, Sha256::new(), body).await?;
        let actual = Digest::from_sha256_bytes(&hash.finalize());
        if actual != *expected {
            Self::abort(pending).await;
            return Err(BlobError::DigestMismatch { expected: expected.clone(), actual });
        }
        Ok((pending, len))
    }

    /// Writes a stream whose digest is not known yet to a temporary object; returns its key,
    /// digest and size. The caller copies it into place.
    pub(super) async fn put_unverified<S, E>(&self, body: S) -> Result<(Path, Digest, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let key = self.upload_dir(&uuid::Uuid::new_v4().to_string())?.join("once");
        let (pending, len, hash) = self.write(&key, Sha256::new(), body).await?;
        self.complete(&key, pending).await?;
        Ok((key, Digest::from_sha256_bytes(&hash.finalize()), len))
    }

    /// Copies a temporary object into place and removes it.
    pub(super) async fn move_into_place(&self, from: &Path, key: &Path, size: u64) -> Result<(), BlobError> {
        if size <= MAX_COPY {
            self.client.copy(from, key).await?;
        } else {
            let body = self.client.get(from).await?.into_stream();
            let (pending, _, _) = self.write(key, Sha256::new(), body).await?;
            self.complete(key, pending).await?;
        }
        let _ = self.client.delete(from).await;
        Ok(())
    }

    /// Uploads a local file (staged in the scratch directory) as the object at `key`.
    pub(super) async fn upload_file(&self, path: &FsPath, key: &Path) -> Result<(), BlobError> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let body = super::file_stream::stream(file, 0, len, false);
        let (pending, _, _) = self.write(key, Sha256::new(), body).await?;
        self.complete(key, pending).await
    }

    /// Removes every object of an upload (its parts, and parts no chain names).
    pub(super) async fn discard(&self, upload_id: &str) {
        let Ok(dir) = self.upload_dir(upload_id) else { return };
        let keys = self.client.list(Some(&dir)).map_ok(|m| m.location).boxed();
        let mut gone = self.client.delete_stream(keys);
        while let Some(res) = gone.next().await {
            if let Err(e) = res {
                tracing::debug!(upload = upload_id, error = %e, "cannot remove an upload's part");
            }
        }
    }

    /// Uploads whose newest part was written before `before`.
    pub(super) async fn stale(&self, before: std::time::SystemTime) -> Result<Vec<String>, BlobError> {
        let before = before.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let root = Path::from(format!("{}uploads", self.prefix));
        let mut newest: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        let mut listing = self.client.list(Some(&root));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let Some(id) = meta.location.prefix_match(&root).and_then(|mut parts| parts.next()).map(|p| p.as_ref().to_string()) else { continue };
            let at = meta.last_modified.timestamp_millis();
            let e = newest.entry(id).or_insert(at);
            *e = (*e).max(at);
        }
        Ok(newest.into_iter().filter(|(_, at)| *at < before).map(|(id, _)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway tests/run.sh starts; `None` (skipped) when none is named.
    fn gateway() -> Option<S3Settings> {
        let var = |k: &str| std::env::var(k).ok();
        match (var("WHARF_TEST_S3_ENDPOINT"), var("WHARF_TEST_S3_BUCKET"), var("WHARF_TEST_S3_ACCESS_KEY"), var("WHARF_TEST_S3_SECRET_KEY")) {
            (Some(endpoint), Some(bucket), Some(access_key_id), Some(secret_access_key)) => Some(S3Settings {
                bucket,
                region: "us-east-1".into(),
                prefix: format!("budget-{}", uuid::Uuid::new_v4().simple()),
                endpoint,
                force_path_style: true,
                access_key_id,
                secret_access_key,
                ..Default::default()
            }),
            _ => {
                assert!(std::env::var("WHARF_TEST_REQUIRE_S3").is_err(), "WHARF_TEST_REQUIRE_S3 is set but WHARF_TEST_S3_* do not name a gateway");
                eprintln!("no S3 gateway (WHARF_TEST_S3_*): skipped; tests/run.sh starts one");
                None
            }
        }
    }

    /// Three multipart writes of three parts each against a budget of one part: each part on
    /// its way takes the budget's share and gives it back once S3 has it; no write waits for
    /// ever, and each object is its own bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_on_their_way_share_the_budget_and_every_write_ends() {
        let Some(settings) = gateway() else { return };
        let scratch = tempfile::tempdir().unwrap();
        let mut staging = S3Staging::open(&settings, scratch.path()).unwrap();
        staging.budget = BodyBudget::new(PART);
        let staging = Arc::new(staging);
        let size = 2 * PART + PART / 2;
        let content = |w: usize| -> Vec<u8> { (0..size).map(|i| ((i * 7 + w * 13) % 251) as u8).collect() };

        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch = {
            let (budget, peak, done) = (staging.budget.clone(), peak.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    peak.fetch_max(budget.held(), std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let writes: Vec<_> = (0..3)
            .map(|w| {
                let staging = staging.clone();
                let data = Bytes::from(content(w));
                tokio::spawn(async move {
                    let chunks: Vec<Result<Bytes, std::io::Error>> =
                        (0..data.len()).step_by(256 << 10).map(|at| Ok(data.slice(at..(at + (256 << 10)).min(data.len())))).collect();
                    staging.put_unverified(futures::stream::iter(chunks)).await
                })
            })
            .collect();
        let mut keys = Vec::new();
        for write in writes {
            let (key, digest, len) = tokio::time::timeout(Duration::from_secs(120), write).await.expect("a write waited for ever").unwrap().unwrap();
            assert_eq!(len, size as u64);
            keys.push((key, digest));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        watch.await.unwrap();
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), PART, "parts on their way take shares, within the budget");
        assert_eq!(staging.budget.held(), 0, "every share came back");
        for (w, (key, digest)) in keys.into_iter().enumerate() {
            let got = staging.client.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.len(), size);
            assert_eq!(digest, Digest::from_sha256_bytes(&Sha256::digest(&got)));
            assert!(got == content(w), "write {w} stored its own bytes");
            staging.client.delete(&key).await.unwrap();
        }
    }
}
