//! Staging on a local (or shared) file system: an upload is a plain file under `uploads/`,
//! appended to in place, and published with a create-if-absent rename into `blobs/`.

use std::os::unix::fs::FileExt as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use sha2::{Digest as _, Sha256};

use super::body_budget::{BodyBudget, Next, Share};
use super::disk_reserve::DiskReserve;
use super::staged_writer::StagedWriter;
use super::{blocking, join, BlobError, HashState, READ_CHUNK, WRITE_BATCH};
use crate::digest::Digest;

pub(super) struct FileStaging {
    pub(super) root: PathBuf,
    pub(super) store: Arc<LocalFileSystem>,
    /// Held while an append opens a staged file and while each of its writes runs, which may
    /// be after the request was dropped (a write already on the blocking pool runs to its
    /// end); a cut back waits for it, so no write of a dropped request lands after the cut.
    writing: crate::KeyedLocks,
    /// Large uploads go past the page cache (see [`StagedWriter`]).
    pub(super) direct_writes: bool,
    /// Whether reads may try the page cache on the calling task.
    inline_reads: super::file_stream::InlineReads,
    /// What the uploads' gathered bytes may take of memory.
    pub(super) budget: Arc<BodyBudget>,
    /// What writes leave free on the file system.
    pub(super) reserve: DiskReserve,
}

impl FileStaging {
    pub(super) fn open(root: &FsPath) -> Result<FileStaging, BlobError> {
        std::fs::create_dir_all(root.join("uploads"))?;
        std::fs::create_dir_all(root.join("blobs"))?;
        let store = LocalFileSystem::new_with_prefix(root)?.with_fsync(true);
        // Blobs are read under `blobs/` (and `uploads/`, which must be on the same mount for
        // the hard link that publishes an upload).
        let inline_reads = super::file_stream::InlineReads::probe(&root.join("uploads"));
        Ok(FileStaging {
            root: root.to_path_buf(),
            store: Arc::new(store),
            writing: crate::KeyedLocks::default(),
            direct_writes: false,
            inline_reads,
            budget: BodyBudget::uploads(),
            reserve: DiskReserve::default(),
        })
    }

    pub(super) fn staging_file(&self, upload_id: &str) -> Result<PathBuf, BlobError> {
        super::check_upload_id(upload_id)?;
        Ok(self.root.join("uploads").join(upload_id))
    }

    /// A stored blob, or the inclusive range `start..=end` of it (see [`read_file`]).
    pub(super) async fn get(&self, key: &Path, range: Option<(u64, Option<u64>)>) -> Result<super::BlobRead, BlobError> {
        read_file(self.root.join(key.as_ref()), range, self.inline_reads).await
    }
    pub(super) async fn create(&self, upload_id: &str) -> Result<(), BlobError> {
        tokio::fs::File::create(self.staging_file(upload_id)?).await?;
        Ok(())
    }

    /// See [`super::BlobStore::stage_append`]. The request is read on the caller's task while
    /// the previous batch is hashed and written on the blocking pool: at most two batches of
    /// [`WRITE_BATCH`] bytes are held at a time, within the process's [`BodyBudget`], and with
    /// `direct_writes` large uploads reach the file past the page cache (see [`StagedWriter`]).
    pub(super) async fn append<S, E>(&self, upload_id: &str, offset: u64, state: &[u8], body: S) -> Result<(u64, Vec<u8>), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.append_within(upload_id, offset, state, body, self.reserve).await
    }

    /// [`FileStaging::append`], leaving `reserve` free (the store's, or none).
    pub(super) async fn append_within<S, E>(
        &self,
        upload_id: &str,
        offset: u64,
        state: &[u8],
        mut body: S,
        reserve: DiskReserve,
    ) -> Result<(u64, Vec<u8>), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.staging_file(upload_id)?;
        let hasher = HashState::load(state)?;
        let opening = self.writing.lock(upload_id).await;
        let direct = self.direct_writes;
        let writer = blocking(move || {
            // Held by the work itself: a request dropped while this waits for a thread must
            // not cut the file back after the next writer began.
            let _opening = opening;
            let file = match std::fs::OpenOptions::new().write(true).create(offset == 0).truncate(false).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::UploadNotFound),
                Err(e) => return Err(e.into()),
            };
            let on_disk = file.metadata()?.len();
            if on_disk < offset {
                // The store lost bytes the database says were acknowledged: refuse rather than corrupt.
                return Err(BlobError::BadState);
            }
            if on_disk > offset {
                file.set_len(offset)?;
            }
            Ok(StagedWriter::new(file, &path, offset, direct))
        })
        .await?;
        let mut g = Gathered { idle: Some((writer, hasher)), in_flight: None, chunks: Vec::new(), len: 0, share: Share::none(), reserve };
        let mut written = offset;
        loop {
            let next = if g.chunks.is_empty() {
                body.next().await
            } else {
                match self.budget.next_or_wanted(body.next()).await {
                    Next::Item(next) => next,
                    // Another upload waits for room: what is held here goes to disk now.
                    Next::Wanted => {
                        g.write(self.writing.lock(upload_id).await).await?;
                        continue;
                    }
                }
            };
            let done = match next {
                Some(Ok(chunk)) => {
                    let share = match self.budget.try_take(chunk.len()) {
                        Some(share) => share,
                        None => {
                            // Written before the wait, so that this upload's share comes back
                            // by itself.
                            if !g.chunks.is_empty() {
                                g.write(self.writing.lock(upload_id).await).await?;
                            }
                            self.budget.take(chunk.len()).await
                        }
                    };
                    written += chunk.len() as u64;
                    g.len += chunk.len();
                    g.chunks.push(chunk);
                    g.share.merge(share);
                    false
                }
                Some(Err(e)) => {
                    if let Some(flight) = g.in_flight.take() {
                        let _ = flight.land().await;
                    }
                    return Err(BlobError::Body(e.to_string()));
                }
                None => true,
            };
            if g.len >= WRITE_BATCH || (done && !g.chunks.is_empty()) {
                g.write(self.writing.lock(upload_id).await).await?;
            }
            if done {
                break;
            }
        }
        if let Some(flight) = g.in_flight.take() {
            g.idle = Some(flight.land().await?);
        }
        let idle = g.idle;
        let (w, hasher) = idle.expect("the writer is back once no batch is in flight");
        let writing = self.writing.lock(upload_id).await;
        blocking(move || {
            let _writing = writing;
            Ok(w.finish()?)
        })
        .await?;
        Ok((written, HashState::save(&hasher)))
    }

    /// What the staged file hashes to now: the running hash in the upload's row says what was
    /// acknowledged, not what the file holds (a writer that lost a race, or a node that died
    /// mid-append, may have left other bytes).
    pub(super) async fn rehash(&self, upload_id: &str) -> Result<Digest, BlobError> {
        let path = self.staging_file(upload_id)?;
        blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::UploadNotFound),
                Err(e) => return Err(e.into()),
            };
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let n = std::io::Read::read(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(Digest::from_sha256_bytes(&hasher.finalize()))
        })
        .await
    }

    pub(super) async fn staged_size(&self, upload_id: &str) -> Result<u64, BlobError> {
        match tokio::fs::metadata(self.staging_file(upload_id)?).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::UploadNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the staged file to `key` unless a blob is already there (then the staged copy
    /// goes: same content).
    ///
    /// A hard link (create-if-absent), the directory synced, then the staged name removed, in
    /// one blocking call that holds the upload's write lock: a request dropped meanwhile cannot
    /// leave the staged name linked to the published blob, and a cut back (which takes the
    /// same lock) finds the staged name gone, not the blob under another name.
    pub(super) async fn rename_into_place(&self, upload_id: &str, key: &Path) -> Result<(), BlobError> {
        let from = self.staging_file(upload_id)?;
        let to = self.root.join(key.as_ref());
        let writing = self.writing.lock(upload_id).await;
        blocking(move || {
            let _writing = writing;
            let dir = to.parent().ok_or(BlobError::BadState)?;
            std::fs::create_dir_all(dir)?;
            match std::fs::hard_link(&from, &to) {
                Ok(()) => std::fs::File::open(dir)?.sync_all()?,
                // The same content is there already: the staged copy just goes.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::UploadNotFound),
                Err(e) => return Err(e.into()),
            }
            match std::fs::remove_file(&from) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        })
        .await
    }

    pub(super) async fn truncate(&self, upload_id: &str, len: u64) -> Result<(), BlobError> {
        let path = self.staging_file(upload_id)?;
        let writing = self.writing.lock(upload_id).await;
        blocking(move || {
            let _writing = writing;
            match std::fs::OpenOptions::new().write(true).open(&path) {
                // A staged file with a second name is a published blob (its staged name was
                // not removed yet): never cut.
                Ok(f) if std::os::unix::fs::MetadataExt::nlink(&f.metadata()?) > 1 => {}
                Ok(f) if f.metadata()?.len() > len => f.set_len(len)?,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn discard(&self, upload_id: &str) {
        if let Ok(path) = self.staging_file(upload_id) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    pub(super) async fn stale(&self, before: std::time::SystemTime) -> Result<Vec<String>, BlobError> {
        let mut out = Vec::new();
        let mut dir = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(entry) = dir.next_entry().await? {
            let modified = entry.metadata().await?.modified()?;
            if modified < before {
                if let Some(name) = entry.file_name().to_str() {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }
}

/// One batch of an append on its way: written to the file and hashed at the same time, on two
/// blocking threads (a write that goes to the device directly waits for it, and the hash need
/// not wait with it); a small batch (the last of an upload) is hashed by its writer.
/// Bytes on their way to disk, and their share of the budget (given back when both halves of
/// the flight are done with them).
struct Batch {
    chunks: Vec<Bytes>,
    _share: Share,
}

/// An append's state between its network reads.
struct Gathered {
    /// The writer and the running hash, when no batch is in flight.
    idle: Option<(StagedWriter, Sha256)>,
    in_flight: Option<Flight>,
    chunks: Vec<Bytes>,
    len: usize,
    share: Share,
    reserve: DiskReserve,
}

impl Gathered {
    /// Sends what is gathered to disk (after the batch before it landed).
    async fn write(&mut self, writing: tokio::sync::OwnedMutexGuard<()>) -> Result<(), BlobError> {
        if let Some(flight) = self.in_flight.take() {
            self.idle = Some(flight.land().await?);
        }
        let (w, h) = self.idle.take().expect("the writer is back once no batch is in flight");
        let batch = Arc::new(Batch { chunks: std::mem::take(&mut self.chunks), _share: std::mem::replace(&mut self.share, Share::none()) });
        self.in_flight = Some(Flight::start(w, h, batch, self.len, self.reserve, writing));
        self.len = 0;
        Ok(())
    }
}

struct Flight {
    write: tokio::task::JoinHandle<Result<(StagedWriter, Option<Sha256>), BlobError>>,
    hash: Option<tokio::task::JoinHandle<Sha256>>,
}

impl Flight {
    fn start(mut w: StagedWriter, h: Sha256, batch: Arc<Batch>, len: usize, reserve: DiskReserve, writing: tokio::sync::OwnedMutexGuard<()>) -> Flight {
        let (mut inline, hash) = if len >= WRITE_BATCH {
            let batch = batch.clone();
            let mut h = h;
            let task = tokio::task::spawn_blocking(move || {
                for c in &batch.chunks {
                    h.update(c);
                }
                h
            });
            (None, Some(task))
        } else {
            (Some(h), None)
        };
        let write = tokio::task::spawn_blocking(move || {
            let _writing = writing;
            // Once per batch: a file system's free space is a system call away.
            reserve.check(w.file(), len as u64)?;
            for c in &batch.chunks {
                if let Some(h) = inline.as_mut() {
                    h.update(c);
                }
                w.write(c)?;
            }
            Ok((w, inline))
        });
        Flight { write, hash }
    }

    /// Waits for both halves; the writer and the hash, for the next batch.
    async fn land(self) -> Result<(StagedWriter, Sha256), BlobError> {
        let hashed = match self.hash {
            Some(task) => Some(task.await.map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?),
            None => None,
        };
        let (w, inline) = join(self.write).await?;
        Ok((w, inline.or(hashed).expect("a batch is hashed by one of its halves")))
    }
}

/// Reads a blob file (a range of it, or all): small reads whole, large ones streamed in big
/// chunks. With `inline` (see [`super::file_stream::InlineReads`]), a file whose path the
/// kernel has cached is opened and read on the calling task (see
/// [`super::file_stream::open_cached`]): a cached small blob then costs no trip to the
/// blocking pool, where each trip is a thread wake-up that waits for a CPU when the machine is
/// busy. Otherwise it is opened, measured and, when small, read in one blocking call.
pub(super) async fn read_file(
    path: std::path::PathBuf,
    range: Option<(u64, Option<u64>)>,
    inline: super::file_stream::InlineReads,
) -> Result<super::BlobRead, BlobError> {
    let shorter = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => BlobError::Io(std::io::Error::new(e.kind(), "the blob file is shorter than it was")),
        _ => e.into(),
    };
    let (total, served, opened) = match inline.on().then(|| super::file_stream::open_cached(&path)).flatten() {
        Some(file) => {
            let (total, served, start, len) = locate(&file, range)?;
            if len > READ_CHUNK as u64 {
                (total, served, Err((file, start, len)))
            } else {
                let mut buf = vec![0u8; len as usize];
                let cached = super::file_stream::read_cached(&file, &mut buf, start);
                if cached < buf.len() {
                    // The rest from the disk, before the answer's head: an error is still a 5xx.
                    buf = blocking(move || {
                        file.read_exact_at(&mut buf[cached..], start + cached as u64).map_err(shorter)?;
                        Ok(buf)
                    })
                    .await?;
                }
                (total, served, Ok(Bytes::from(buf)))
            }
        }
        None => {
            blocking(move || {
                let file = match super::file_stream::open_blocking(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
                    Err(e) => return Err(e.into()),
                };
                let (total, served, start, len) = locate(&file, range)?;
                if len > READ_CHUNK as u64 {
                    return Ok((total, served, Err((file, start, len))));
                }
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, start).map_err(shorter)?;
                Ok((total, served, Ok(Bytes::from(buf))))
            })
            .await?
        }
    };
    let body = match opened {
        Ok(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
        Err((file, start, len)) => super::file_stream::stream(file, start, len, inline.on()),
    };
    Ok(super::BlobRead { total, range: served, body })
}

/// The file's size, the range served (`None`: all of it), and where that starts and how long
/// it is.
#[allow(clippy::type_complexity)]
fn locate(file: &std::fs::File, range: Option<(u64, Option<u64>)>) -> Result<(u64, Option<(u64, u64)>, u64, u64), BlobError> {
    let total = file.metadata()?.len();
    let (start, end, served) = match range {
        None => (0, total, None),
        Some((start, end)) => {
            let last = end.unwrap_or(u64::MAX).min(total.saturating_sub(1));
            if start >= total || start > last {
                return Err(BlobError::RangeNotSatisfiable);
            }
            (start, last + 1, Some((start, last)))
        }
    };
    Ok((total, served, start, end - start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// More uploads than the budget holds, each of whose clients sends a little and then goes
    /// silent: the partial batches go to disk (a silent client must not keep its share), every
    /// chunk is accepted although the budget is a sixth of what was sent, and each upload ends
    /// with its own bytes once its client finishes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_uploads_beyond_the_budget_write_what_they_gathered_and_finish() {
        const UPLOADS: usize = 8;
        const CHUNK: usize = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let mut staging = FileStaging::open(dir.path()).unwrap();
        staging.budget = BodyBudget::new(4 * CHUNK);
        let staging = Arc::new(staging);
        let chunk = |u: usize, i: usize| Bytes::from(vec![(u * 16 + i) as u8; CHUNK]);

        let mut senders = Vec::new();
        let mut appends = Vec::new();
        for u in 0..UPLOADS {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            senders.push(tx);
            let staging = staging.clone();
            let id = format!("upload-{u}");
            staging.create(&id).await.unwrap();
            appends.push(tokio::spawn(async move { staging.append(&id, 0, &HashState::empty(), tokio_stream_of(rx)).await }));
        }
        // Three chunks each (1.5 MiB against a budget of 256 KiB), round robin.
        for i in 0..3 {
            for (u, tx) in senders.iter().enumerate() {
                tokio::time::timeout(Duration::from_secs(20), tx.send(Ok(chunk(u, i)))).await.expect("a chunk waited for ever for room").unwrap();
            }
        }
        // Silent clients now. What every upload received reaches its file; the budget is free.
        let on_disk =
            || (0..UPLOADS).map(|u| std::fs::metadata(dir.path().join("uploads").join(format!("upload-{u}"))).map(|m| m.len()).unwrap_or(0)).sum::<u64>();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while on_disk() < (UPLOADS * 2 * CHUNK) as u64 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The last chunk sent to each may still be in its channel or gathered: at least two per
        // upload are written.
        assert!(on_disk() >= (UPLOADS * 2 * CHUNK) as u64, "written while the clients were silent: {} bytes", on_disk());

        for (u, tx) in senders.into_iter().enumerate() {
            tx.send(Ok(chunk(u, 3))).await.unwrap();
        }
        for (u, append) in appends.into_iter().enumerate() {
            let (len, state) = tokio::time::timeout(Duration::from_secs(20), append).await.expect("an upload never ended").unwrap().unwrap();
            assert_eq!(len, 4 * CHUNK as u64);
            let mut want = Sha256::new();
            for i in 0..4 {
                want.update(chunk(u, i));
            }
            assert_eq!(HashState::load(&state).unwrap().finalize(), want.finalize());
            let file = std::fs::read(dir.path().join("uploads").join(format!("upload-{u}"))).unwrap();
            assert_eq!(file.len(), 4 * CHUNK);
            assert!(file[3 * CHUNK..].iter().all(|b| *b == (u * 16 + 3) as u8));
        }
        assert_eq!(staging.budget.held(), 0, "every share came back");
    }

    fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> + Unpin {
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
