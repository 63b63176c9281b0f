//! A node-local, size-bounded copy of object-store blobs (`[blob_cache]`), so that a blob
//! pulled again comes from this node's disk instead of the bucket.
//!
//! Blobs are content-addressed, so a copy can never be stale: the only questions are room and
//! integrity. A copy is made while a whole blob streams to a client (no extra read of the
//! bucket): the bytes are written beside the response into `<dir>/<2 hex>/<hex>.part` and
//! published (fsynced, renamed) only when every byte the bucket announced has arrived; a client
//! that disconnects or a short body leave nothing. They are not hashed again: they are what the
//! bucket served, which wharf verified when it was written, and what a read without the copy
//! would have sent (hashing cost the first pull 2 s of CPU per GiB here). Writing never slows
//! the response: when the writer falls behind, the copy is given up. The least recently used
//! copies go when the total passes the limit. The index is this process's memory, rebuilt from
//! the directory at start (oldest file first); a node's copies matter to no other node.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use super::{BlobError, BlobRead, ByteStream};
use crate::digest::Digest;

/// Chunks a copy may fall behind the response before it is given up (what it may hold in
/// memory per blob: a few MiB at most).
const BACKLOG: usize = 16;

pub struct ReadCache {
    dir: PathBuf,
    max_bytes: u64,
    /// A copy is made only where it leaves this free.
    reserve: super::DiskReserve,
    /// Whether reads may try the page cache on the calling task.
    inline_reads: super::file_stream::InlineReads,
    state: Mutex<State>,
}

struct State {
    /// hex digest → size, least recently used first.
    lru: lru::LruCache<String, u64>,
    total: u64,
    /// Digests being copied now: one copy per blob at a time.
    filling: HashSet<String>,
}

impl ReadCache {
    /// Opens (or creates) the cache in `dir`, dropping unfinished copies and anything over the
    /// limit. No copy is made that would leave less than `reserve` free on its file system.
    pub fn open(dir: &Path, max_bytes: u64, reserve: super::DiskReserve) -> std::io::Result<Arc<ReadCache>> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for shard in std::fs::read_dir(dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                let meta = f.metadata()?;
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) && meta.is_file() {
                    found.push((meta.modified().ok(), name, meta.len()));
                } else {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        found.sort();
        let cache = ReadCache {
            dir: dir.to_path_buf(),
            max_bytes,
            reserve,
            inline_reads: super::file_stream::InlineReads::probe(dir),
            state: Mutex::new(State { lru: lru::LruCache::unbounded(), total: 0, filling: HashSet::new() }),
        };
        let mut gone = Vec::new();
        {
            let mut st = cache.lock();
            for (_, name, size) in found {
                st.total += size;
                st.lru.put(name, size);
            }
            gone.extend(st.evict(max_bytes));
        }
        for hex in gone {
            let _ = std::fs::remove_file(cache.path(&hex));
        }
        Ok(Arc::new(cache))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, hex: &str) -> PathBuf {
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The blob from this node's copy, if there is one.
    pub async fn get(&self, digest: &Digest, range: Option<(u64, Option<u64>)>) -> Option<Result<BlobRead, BlobError>> {
        let hex = digest.hex().to_string();
        // Marks the copy as just read (the least recently read go first).
        self.lock().lru.get(&hex)?;
        match super::file::read_file(self.path(&hex), range, self.inline_reads).await {
            // Evicted (or removed by hand) since the look: the bucket has it.
            Err(BlobError::NotFound) => {
                self.forget(&hex);
                None
            }
            other => Some(other),
        }
    }

    /// Whether this node holds a copy (tests, and the size of a blob without asking the bucket).
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        self.lock().lru.peek(digest.hex()).copied()
    }

    fn forget(&self, hex: &str) {
        let mut st = self.lock();
        if let Some(size) = st.lru.pop(hex) {
            st.total -= size;
        }
    }

    /// Drops this node's copies of `digests` (they were deleted from the store).
    pub async fn remove(&self, digests: &[Digest]) {
        let paths: Vec<PathBuf> = digests
            .iter()
            .filter_map(|d| {
                let hex = d.hex();
                let mut st = self.lock();
                let size = st.lru.pop(hex)?;
                st.total -= size;
                Some(self.path(hex))
            })
            .collect();
        if !paths.is_empty() {
            let _ = tokio::task::spawn_blocking(move || paths.iter().for_each(|p| drop(std::fs::remove_file(p)))).await;
        }
    }

    /// `body`, the whole blob `digest` of `total` bytes on its way to a client, with a copy of
    /// it made on the side (unless one is being made, or the blob cannot fit).
    pub fn fill(self: &Arc<Self>, digest: &Digest, total: u64, body: ByteStream) -> ByteStream {
        let hex = digest.hex().to_string();
        if total > self.max_bytes || !self.lock().filling.insert(hex.clone()) {
            return body;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(BACKLOG);
        let cache = self.clone();
        let want = digest.clone();
        tokio::task::spawn_blocking(move || {
            let kept = cache.write_copy(&want, total, rx);
            cache.lock().filling.remove(want.hex());
            if let Err(e) = kept {
                tracing::debug!(digest = %want, error = %e, "no local copy made");
            }
        });
        // The sender goes with the stream: when the response ends (or is dropped), the writer
        // sees the channel close and judges what it has.
        let mut tx = Some(tx);
        body.map(move |chunk| {
            if let (Ok(bytes), Some(sender)) = (&chunk, &tx) {
                if sender.try_send(bytes.clone()).is_err() {
                    tx = None;
                }
            } else if chunk.is_err() {
                tx = None;
            }
            chunk
        })
        .boxed()
    }

    /// Writes what arrives on `rx` to a `.part` file; publishes it if it is the whole blob.
    fn write_copy(&self, digest: &Digest, total: u64, rx: std::sync::mpsc::Receiver<Bytes>) -> std::io::Result<()> {
        let hex = digest.hex();
        let path = self.path(hex);
        let part = path.with_extension("part");
        std::fs::create_dir_all(path.parent().expect("a shard directory"))?;
        if self.reserve.check_path(&self.dir, total).is_err() {
            return Err(std::io::Error::other("the disk has no room beyond its reserve"));
        }
        let written = (|| {
            let mut file = std::fs::File::create(&part)?;
            let mut n = 0u64;
            for chunk in rx {
                file.write_all(&chunk)?;
                n += chunk.len() as u64;
            }
            if n != total {
                return Err(std::io::Error::other(format!("copy incomplete ({n} of {total} bytes)")));
            }
            // Published only once on disk: a crash never leaves a short copy under the name.
            file.sync_all()?;
            std::fs::rename(&part, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        let gone = {
            let mut st = self.lock();
            if st.lru.put(hex.to_string(), total).is_none() {
                st.total += total;
            }
            st.evict(self.max_bytes)
        };
        for h in gone {
            let _ = std::fs::remove_file(self.path(&h));
        }
        Ok(())
    }
}

impl State {
    /// Takes the least recently used copies out of the index until the rest fit in `max`;
    /// returns them for the caller to delete.
    fn evict(&mut self, max: u64) -> Vec<String> {
        let mut gone = Vec::new();
        while self.total > max {
            let Some((hex, size)) = self.lru.pop_lru() else { break };
            self.total -= size;
            gone.push(hex);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(s: ByteStream) -> Vec<u8> {
        s.map(|c| c.unwrap().to_vec()).collect::<Vec<_>>().await.concat()
    }

    fn stream(parts: Vec<Vec<u8>>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
    }

    /// Waits for the writer of a fill to finish.
    async fn settled(c: &ReadCache) {
        for _ in 0..500 {
            if c.lock().filling.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the copy did not finish");
    }

    #[tokio::test]
    async fn a_whole_blob_is_kept_a_short_or_wrong_one_is_not_and_the_oldest_goes_first() {
        let dir = tempfile_dir();
        let cache = ReadCache::open(&dir, 250, Default::default()).unwrap();
        let a = vec![1u8; 100];
        let da = Digest::of(&a);
        // The response gets every byte whether or not a copy is made.
        assert_eq!(drain(cache.fill(&da, 100, stream(vec![a[..40].to_vec(), a[40..].to_vec()]))).await, a);
        settled(&cache).await;
        assert_eq!(cache.size(&da), Some(100));
        let read = cache.get(&da, Some((10, Some(19)))).await.unwrap().unwrap();
        assert_eq!((read.total, read.range), (100, Some((10, 19))));
        assert_eq!(drain(read.body).await, a[10..20].to_vec());

        // A response cut short (the client went away) leaves no copy, nor a .part file.
        let b = vec![2u8; 100];
        let db = Digest::of(&b);
        let mut cut = cache.fill(&db, 100, stream(vec![b[..50].to_vec(), b[50..].to_vec()]));
        assert!(cut.next().await.is_some());
        drop(cut);
        settled(&cache).await;
        assert_eq!(cache.size(&db), None);
        // Nor does a body longer than the bucket announced.
        assert_eq!(drain(cache.fill(&db, 100, stream(vec![b.clone(), vec![0u8; 1]]))).await.len(), 101);
        settled(&cache).await;
        assert_eq!(cache.size(&db), None);

        // Past the limit the least recently used copy goes: `a` was read after `c` was kept.
        let c = vec![4u8; 100];
        let dc = Digest::of(&c);
        drain(cache.fill(&dc, 100, stream(vec![c.clone()]))).await;
        settled(&cache).await;
        assert!(cache.get(&da, None).await.is_some());
        drain(cache.fill(&db, 100, stream(vec![b.clone()]))).await;
        settled(&cache).await;
        assert_eq!((cache.size(&da), cache.size(&db), cache.size(&dc)), (Some(100), Some(100), None));
        assert!(!cache.path(dc.hex()).exists(), "the evicted file is gone");

        // A restart finds the copies (and drops a stray .part); a deletion drops this node's.
        std::fs::write(cache.path(da.hex()).with_extension("part"), b"junk").unwrap();
        let again = ReadCache::open(&dir, 250, Default::default()).unwrap();
        assert_eq!((again.size(&da), again.size(&db)), (Some(100), Some(100)));
        assert!(!cache.path(da.hex()).with_extension("part").exists());
        again.remove(std::slice::from_ref(&da)).await;
        assert!(again.get(&da, None).await.is_none());
        assert!(!again.path(da.hex()).exists());
    }

    /// A directory of the test's own, removed when it is dropped.
    fn tempfile_dir() -> crate::test_dir::TestDir {
        crate::test_dir::TestDir::new("wharf-read-cache-")
    }
}
