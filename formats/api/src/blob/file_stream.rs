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
//! back 2,048 times (17% of its CPU in thread switches). `RWF_NOWAIT` still starts readahead
//! on a miss (the submission, not the wait), so a stream stops trying after its first miss:
//! the rest of a file that is not cached is read on the pool, as before. Whether a directory's
//! files are read this way at all is decided once per directory ([`InlineReads::probe`]).

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
/// `UnexpectedEof` error. With `inline`, reads take what the page cache holds on the calling
/// task until the first one that finds less than it asked for.
pub(super) fn stream(file: std::fs::File, start: u64, len: u64, inline: bool) -> BoxStream<'static, std::io::Result<Bytes>> {
    let file = Arc::new(file);
    futures::stream::try_unfold((file, start, len, inline), |(file, pos, left, inline)| async move {
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
        Ok(Some((Bytes::from_owner(chunk), (file, pos + want as u64, left - want as u64, inline && cached == want))))
    })
    .map_ok(|read: Bytes| futures::stream::iter((0..read.len()).step_by(SLICE).map(move |at| Ok(read.slice(at..(at + SLICE).min(read.len()))))))
    .try_flatten()
    .boxed()
}

/// Whether a directory's files may be opened and read on the calling task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InlineReads(bool);

impl InlineReads {
    /// Yes when `dir` is on a local disk file system (by its `statfs` magic) and a read with
    /// `RWF_NOWAIT` of a file made in it works (ext4, xfs and btrfs take it; tmpfs and overlayfs
    /// refuse it on Linux 6.18, and OpenZFS ignores it). On a network or FUSE file system an
    /// open asks the server even for a cached path, and overlayfs passes the open on to
    /// whatever is under it: neither may hold up a request thread.
    pub(super) fn probe(dir: &std::path::Path) -> InlineReads {
        InlineReads(local_file_system(dir) && nowait_works_in(dir))
    }

    pub(super) fn on(self) -> bool {
        self.0
    }
}

fn local_file_system(path: &std::path::Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        // statfs(2) magic numbers (linux/magic.h).
        const LOCAL: &[i64] = &[
            0xEF53,     // ext2/3/4
            0x58465342, // xfs
            0x9123683E, // btrfs
            0x01021994, // tmpfs
            0xF2F52010, // f2fs
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

/// Writes a few bytes into an unnamed file in `dir` (`O_TMPFILE`: nothing is left behind, even
/// by a crash) and reads them back with `RWF_NOWAIT`.
#[cfg(target_os = "linux")]
fn nowait_works_in(dir: &std::path::Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    let Ok(fd) = rustix::fs::openat(rustix::fs::CWD, dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::RUSR | Mode::WUSR) else {
        return false;
    };
    let file = std::fs::File::from(fd);
    if file.write_all_at(b"probe", 0).is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    matches!(rustix::io::preadv2(&file, &mut [std::io::IoSliceMut::new(&mut buf)], 0, rustix::io::ReadWriteFlags::NOWAIT), Ok(5))
}

#[cfg(not(target_os = "linux"))]
fn nowait_works_in(_dir: &std::path::Path) -> bool {
    false
}

/// Whether `openat2` with `RESOLVE_CACHED` may be used: cleared for good when the kernel does
/// not know it (before Linux 5.12) or a system call filter refuses it, both facts about the
/// process, not about a file.
#[cfg(target_os = "linux")]
static CACHED_OPEN_WORKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `path` opened for reading if the kernel can do it from what it has cached, without waiting
/// for the disk (`RESOLVE_CACHED`); `None` otherwise, and on any error: a missing file too, so
/// that a blocking open with a full lookup decides. Without updating the access time
/// (`O_NOATIME`: with `relatime` the first read after a write would otherwise start a journal
/// transaction on the calling task), where the file's owner allows it.
#[cfg(target_os = "linux")]
pub(super) fn open_cached(path: &std::path::Path) -> Option<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    use std::sync::atomic::Ordering::Relaxed;
    if !CACHED_OPEN_WORKS.load(Relaxed) {
        return None;
    }
    let open = |flags| rustix::fs::openat2(rustix::fs::CWD, path, flags, Mode::empty(), ResolveFlags::CACHED);
    let base = OFlags::RDONLY | OFlags::CLOEXEC;
    let opened = match open(base | OFlags::NOATIME) {
        // O_NOATIME is only for the file's owner (or CAP_FOWNER).
        Err(Errno::PERM) => open(base),
        other => other,
    };
    match opened {
        Ok(fd) => Some(std::fs::File::from(fd)),
        Err(Errno::NOSYS | Errno::INVAL | Errno::PERM) => {
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

/// Opens a file for reading on the blocking pool, without updating its access time where the
/// owner allows it (see [`open_cached`]).
pub(super) fn open_blocking(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        #[allow(clippy::unnecessary_cast)]
        let noatime = rustix::fs::OFlags::NOATIME.bits() as i32;
        match std::fs::OpenOptions::new().read(true).custom_flags(noatime).open(path) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => std::fs::File::open(path),
            other => other,
        }
    }
    #[cfg(not(target_os = "linux"))]
    std::fs::File::open(path)
}

/// How many bytes from the start of `buf` could be read from the page cache without waiting
/// (0 when none could, or on any error: the blocking read that follows reports errors and the
/// end of the file).
#[cfg(target_os = "linux")]
pub(super) fn read_cached(file: &std::fs::File, buf: &mut [u8], pos: u64) -> usize {
    rustix::io::preadv2(file, &mut [std::io::IoSliceMut::new(buf)], pos, rustix::io::ReadWriteFlags::NOWAIT).unwrap_or(0)
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

    /// ext4 (where CI and most servers keep their data) takes `RWF_NOWAIT`; so a directory on
    /// it reads inline, and a chunk just written is served at once. Elsewhere (tmpfs refuses the
    /// flag) the probe says no and a read finds nothing without waiting.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_chunk_in_the_page_cache_is_read_without_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let ext4 = rustix::fs::statfs(dir.path()).unwrap().f_type == 0xEF53;
        let inline = InlineReads::probe(dir.path());
        if ext4 {
            assert!(inline.on(), "ext4 reads without waiting");
        }
        let data: Vec<u8> = (0..READ_CHUNK).map(|i| (i * 7 % 253) as u8).collect();
        let mut f = tempfile::tempfile_in(dir.path()).unwrap();
        f.write_all(&data).unwrap();
        let mut buf = vec![0u8; READ_CHUNK];
        if inline.on() {
            // Just written, so cached: the whole read is served at once.
            assert_eq!(read_cached(&f, &mut buf[..1000], 5), 1000);
            assert_eq!(&buf[..1000], &data[5..1005]);
        } else {
            assert_eq!(read_cached(&f, &mut buf[..1000], 5), 0);
        }
        // Past the end there is nothing to read, and the caller's blocking read reports it.
        assert_eq!(read_cached(&f, &mut buf, READ_CHUNK as u64), 0);
        assert!(!InlineReads::probe(std::path::Path::new("/proc")).on(), "not a disk file system");
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
        assert_eq!(open_blocking(&path).unwrap().metadata().unwrap().len(), 7);
    }

    #[tokio::test]
    async fn a_file_shorter_than_asked_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let got: std::io::Result<Vec<Bytes>> = stream(f, 0, 2000, true).try_collect().await;
        assert_eq!(got.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
