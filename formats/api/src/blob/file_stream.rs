//! Streams part of a local file in big chunks read into buffers that are used again.
//!
//! A download's chunks live only until the HTTP layer has copied them into the connection's
//! buffer. `ReaderStream` over `tokio::fs::File` allocated a new 256 KiB chunk for each read
//! (and copied it once more out of tokio's own buffer): under 200 concurrent pulls that was
//! 16,000 allocations of 256 KiB for 4 GiB served, and glibc's heap grew to the burst's peak and
//! kept it. Here a chunk's buffer goes back to a small shared pool when the chunk is dropped
//! (`Bytes::from_owner`); the pool keeps at most [`POOL_MAX`] buffers, so what a burst leaves
//! behind is bounded, and a read is one positioned read (`pread`) straight into the buffer.
//!
//! A chunk already in the page cache is read on the calling task with `RWF_NOWAIT`, which
//! copies it or reports at once that it would have to wait for the disk; only then does the
//! read go to the blocking pool. A GET of a cached 512 MiB blob used to cross to the pool and
//! back 2,048 times (17% of its CPU in thread switches).

use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};

use super::READ_CHUNK;

/// Buffers kept for reuse (2 MiB: what an idle server holds); more in flight at once are
/// allocated and freed.
const POOL_MAX: usize = 8;

/// What a read is handed on as: actix-http copies each piece into the connection's write
/// buffer, which it keeps between pieces only while that stays under 128 KiB (a 256 KiB piece
/// made it allocate and free a buffer per piece).
const SLICE: usize = 64 << 10;

static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// A pooled buffer, of which the first `len` bytes are the chunk.
struct Chunk {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[..self.len])
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(buf);
            }
        }
    }
}

fn buffer() -> Box<[u8]> {
    let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    // Zeroed once, when first made: a reused buffer is overwritten by the read.
    pooled.unwrap_or_else(|| vec![0u8; READ_CHUNK].into_boxed_slice())
}

/// The `len` bytes of `file` from `start`, read [`READ_CHUNK`] at a time and handed on in
/// pieces of up to [`SLICE`]; a file that turns out shorter ends the stream with an
/// `UnexpectedEof` error.
/// With `inline`, each read first takes what the page cache holds on the calling task.
pub(super) fn stream(file: std::fs::File, start: u64, len: u64, inline: bool) -> BoxStream<'static, std::io::Result<Bytes>> {
    let file = Arc::new(file);
    futures::stream::try_unfold((file, start, len), move |(file, pos, left)| async move {
        if left == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        let want = left.min(READ_CHUNK as u64) as usize;
        let mut chunk = Chunk { buf: Some(buffer()), len: want };
        let cached = if inline { read_cached(&file, &mut chunk.buf.as_mut().expect("just set")[..want], pos) } else { 0 };
        let chunk = if cached == want {
            chunk
        } else {
            let f = file.clone();
            tokio::task::spawn_blocking(move || {
                let buf = chunk.buf.as_mut().expect("just set");
                f.read_exact_at(&mut buf[cached..want], pos + cached as u64).map(|()| chunk)
            })
            .await
            .map_err(std::io::Error::other)??
        };
        Ok(Some((Bytes::from_owner(chunk), (file, pos + want as u64, left - want as u64))))
    })
    .map_ok(|read: Bytes| futures::stream::iter((0..read.len()).step_by(SLICE).map(move |at| Ok(read.slice(at..(at + SLICE).min(read.len()))))))
    .try_flatten()
    .boxed()
}

/// Whether `RWF_NOWAIT` reads work here; cleared for good the first time the kernel or file
/// system says they do not.
#[cfg(target_os = "linux")]
static NOWAIT_WORKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether the file system under `path` is one where opening and reading from the page cache
/// never wait for anything but memory: local disk file systems and tmpfs. On a network or FUSE
/// file system (NFS, CIFS, a FUSE mount of an object store) an open asks the server even when
/// the path is cached, which must not hold up a request thread.
pub(super) fn local_file_system(path: &std::path::Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        // statfs(2) magic numbers (linux/magic.h).
        const LOCAL: &[i64] = &[
            0xEF53,     // ext2/3/4
            0x58465342, // xfs
            0x9123683E, // btrfs
            0x01021994, // tmpfs
            0x2FC12FC1, // zfs
            0xF2F52010, // f2fs
            0x794C7630, // overlayfs (containers)
        ];
        // `f_type` is a signed word whose width differs between targets; the magic is 32 bits.
        #[allow(clippy::unnecessary_cast)]
        let magic = |s: rustix::fs::StatFs| (s.f_type as i64) & 0xFFFF_FFFF;
        rustix::fs::statfs(path).is_ok_and(|s| LOCAL.contains(&magic(s)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

/// Whether `openat2` with `RESOLVE_CACHED` works here (Linux 5.12 and later).
#[cfg(target_os = "linux")]
static CACHED_OPEN_WORKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `path` opened for reading if the kernel can do it from what it has cached, without waiting
/// for the disk (`RESOLVE_CACHED`); `None` otherwise, and on any error: a missing file too, so
/// that a blocking open with a full lookup (which a shared file system may need) decides.
#[cfg(target_os = "linux")]
pub(super) fn open_cached(path: &std::path::Path) -> Option<std::fs::File> {
    use rustix::fs::{OFlags, ResolveFlags};
    use std::sync::atomic::Ordering::Relaxed;
    if !CACHED_OPEN_WORKS.load(Relaxed) {
        return None;
    }
    match rustix::fs::openat2(rustix::fs::CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, rustix::fs::Mode::empty(), ResolveFlags::CACHED) {
        Ok(fd) => Some(std::fs::File::from(fd)),
        Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::INVAL || e == rustix::io::Errno::OPNOTSUPP => {
            CACHED_OPEN_WORKS.store(false, Relaxed);
            None
        }
        Err(_) => None,
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn open_cached(_path: &std::path::Path) -> Option<std::fs::File> {
    None
}

/// How many bytes from the start of `buf` could be read from the page cache without waiting
/// (0 when none could, or on any error: the blocking read that follows reports errors and the
/// end of the file).
#[cfg(target_os = "linux")]
pub(super) fn read_cached(file: &std::fs::File, buf: &mut [u8], pos: u64) -> usize {
    use std::sync::atomic::Ordering::Relaxed;
    if !NOWAIT_WORKS.load(Relaxed) {
        return 0;
    }
    match rustix::io::preadv2(file, &mut [std::io::IoSliceMut::new(buf)], pos, rustix::io::ReadWriteFlags::NOWAIT) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            NOWAIT_WORKS.store(false, Relaxed);
            0
        }
        Err(_) => 0,
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn read_cached(_file: &std::fs::File, _buf: &mut [u8], _pos: u64) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use futures::TryStreamExt as _;

    use super::*;

    #[tokio::test]
    async fn streams_the_range_in_chunks_and_reuses_buffers() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 1234)).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let start = 17u64;
        let len = data.len() as u64 - start - 5;
        let chunks: Vec<Bytes> = stream(f.try_clone().unwrap(), start, len, true).try_collect().await.unwrap();
        assert_eq!(chunks.len(), (len as usize).div_ceil(SLICE));
        assert!(chunks.iter().all(|c| c.len() <= SLICE));
        assert_eq!(chunks.concat(), &data[start as usize..(start + len) as usize]);
        drop(chunks);
        assert!(!POOL.lock().unwrap().is_empty(), "dropped chunks give their buffers back");
        // A second pass reads through reused buffers and still gets the bytes.
        let again: Vec<Bytes> = stream(f.try_clone().unwrap(), 0, data.len() as u64, true).try_collect().await.unwrap();
        assert_eq!(again.concat(), data);
        // And all through the blocking pool, as on a network file system.
        let blocking: Vec<Bytes> = stream(f.try_clone().unwrap(), 0, data.len() as u64, false).try_collect().await.unwrap();
        assert_eq!(blocking.concat(), data);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_chunk_in_the_page_cache_is_read_without_the_blocking_pool() {
        let data: Vec<u8> = (0..READ_CHUNK).map(|i| (i * 7 % 253) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let mut buf = vec![0u8; READ_CHUNK];
        // Just written, so cached: the whole read is served at once.
        assert_eq!(read_cached(&f, &mut buf[..1000], 5), 1000);
        assert_eq!(&buf[..1000], &data[5..1005]);
        // Past the end there is nothing to read, and the caller's blocking read reports it.
        assert_eq!(read_cached(&f, &mut buf, READ_CHUNK as u64), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_path_the_kernel_has_cached_is_opened_without_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"content").unwrap();
        // Just created, so every component is in the dentry cache.
        let f = open_cached(&path).expect("opened from the cache");
        assert_eq!(f.metadata().unwrap().len(), 7);
        // A missing file is left to the blocking open, which does a full lookup.
        assert!(open_cached(&dir.path().join("missing")).is_none());
        // The test's temporary directory is on a local file system; /proc is not one.
        assert!(local_file_system(dir.path()));
        assert!(!local_file_system(std::path::Path::new("/proc")));
    }

    #[tokio::test]
    async fn a_file_shorter_than_asked_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let got: std::io::Result<Vec<Bytes>> = stream(f, 0, 2000, true).try_collect().await;
        assert_eq!(got.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
