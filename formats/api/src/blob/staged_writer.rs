//! Writes an upload into its staged file; with `uploads.direct_writes`, past the page cache
//! once the upload is large.
//!
//! A buffered `write` copies every byte into the page cache, and on the VM this was measured
//! on that copy was the biggest cost of a push: 58% of the server's CPU for a 512 MiB blob
//! (perf: `copy_folio_from_iter_atomic`), more than hashing it; `dd` wrote 512 MiB buffered in
//! 0.98 s of system time and with `O_DIRECT` in 0.06 s. So a direct writer, after its first
//! [`DIRECT_AFTER`] bytes, also opens the file with `O_DIRECT` and writes whole aligned blocks
//! from a buffer of its own: the device reads them from there, and a pushed blob does not push
//! everything else out of the cache. The price: the blob is not in the cache either, so its
//! first pull reads the disk (there, 1.2 s instead of 0.3 s for 512 MiB), which is why it is
//! off by default. What does not fill an aligned block (the part before the first boundary,
//! the tail) is written the ordinary way; a file system that refuses `O_DIRECT` (tmpfs), or a
//! device that wants other alignment, gets ordinary writes throughout. Either way the bytes
//! are durable only after [`StagedWriter::finish`], which syncs the file.
//!
//! Ordinary writes only dirty the page cache, and the kernel writes dirty pages back after 30 s
//! or past a share of memory, so without help the whole upload went to the disk in the sync at
//! its end, after the last byte had arrived: with 8 pushes of 128 MiB at once the disk was idle
//! while they arrived and the CPUs were idle while it wrote (a fifth of the push's time on the
//! VM measured on). So every [`WRITEBACK_EVERY`] bytes written the ordinary way, a sync of the
//! file is started on another blocking thread and not waited for: the disk writes while the
//! rest arrives, and the sync at the end finds little left. (`sync_file_range` would say it
//! more exactly; no well-kept crate wraps it safely.)

use std::fs::File;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::Mutex;

/// Direct writes start at a multiple of this and are a multiple of it long (the largest
/// logical block size in common use).
const ALIGN: usize = 4096;
/// An upload's first bytes go through the page cache: small files (most npm and PyPI uploads,
/// manifests) are never worth a second descriptor and a buffer.
const DIRECT_AFTER: u64 = 1 << 20;
/// The aligned buffer direct writes are made from: one write per this many bytes.
const BLOCK: usize = 512 << 10;
/// Buffers kept for the next large upload (a buffer's pages are then already there).
const POOL_MAX: usize = 4;
/// Bytes written the ordinary way between two background syncs: large enough that a push pays
/// few device flushes, small enough that the sync at the end has little left to write.
const WRITEBACK_EVERY: u64 = 16 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// [`BLOCK`] bytes at an [`ALIGN`]ed address inside a plain vector (no `unsafe` needed: the
/// vector is over-allocated and the aligned window chosen inside it).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn take() -> AlignedBuf {
        let raw = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| vec![0u8; BLOCK + ALIGN]);
        let start = (ALIGN - raw.as_ptr() as usize % ALIGN) % ALIGN;
        AlignedBuf { raw, start, len: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(BLOCK - self.len);
        let at = self.start + self.len;
        self.raw[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(std::mem::take(&mut self.raw));
        }
    }
}

enum Direct {
    /// Not tried yet (the upload is still small).
    NotYet,
    On(File, AlignedBuf),
    /// Refused by the file system or the device: ordinary writes from here on.
    Off,
}

pub(super) struct StagedWriter {
    file: File,
    path: std::path::PathBuf,
    direct: Direct,
    /// Where the next byte goes: the buffer's bytes (direct mode) start here.
    pos: u64,
    /// Bytes written by this writer, through either descriptor.
    written: u64,
    writeback: Writeback,
}

/// Background syncs running at once, across uploads: each holds a blocking thread (shared with
/// the database's calls) while the disk writes, and one may outlive its upload.
const WRITEBACKS_MAX: usize = 16;
static WRITEBACKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Syncs of the staged file started ahead of [`StagedWriter::finish`] and never waited for.
#[derive(Default)]
struct Writeback {
    /// Bytes written the ordinary way, and how many of them when the last sync started.
    ordinary: u64,
    started_at: u64,
    /// A descriptor of its own: an error a background sync reports is then not taken from the
    /// writer's own descriptor (Linux reports a writeback error once per open file), so the
    /// sync in `finish` still sees it. `None` until the first sync.
    file: Option<std::sync::Arc<File>>,
    /// The descriptor could not be opened: no background sync for this upload.
    off: bool,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The first error a background sync met, which `finish` reports too (whether or not its
    /// own sync sees it again).
    failed: std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>,
    /// How many were started.
    started: u32,
}

impl Writeback {
    /// Counts `n` bytes written the ordinary way to `path`, and starts a sync of the file if
    /// enough have come since the last one and none is running (outside a Tokio runtime, as in
    /// unit tests, none is started).
    fn wrote(&mut self, n: usize, path: &Path) {
        use std::sync::atomic::Ordering;
        self.ordinary += n as u64;
        if self.off || self.ordinary - self.started_at < WRITEBACK_EVERY || self.running.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.file.is_none() {
            match File::open(path) {
                Ok(f) => self.file = Some(std::sync::Arc::new(f)),
                Err(_) => {
                    // The sync in `finish` does it all.
                    self.off = true;
                    return;
                }
            }
        }
        // Too many at once already: this one waits for the next threshold.
        if WRITEBACKS.fetch_add(1, Ordering::AcqRel) >= WRITEBACKS_MAX {
            WRITEBACKS.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let (Some(file), failed) = (self.file.clone(), self.failed.clone()) else { return };
        self.started_at = self.ordinary;
        self.started += 1;
        self.running.store(true, Ordering::Release);
        let turn = WritebackTurn(self.running.clone());
        runtime.spawn_blocking(move || {
            let _turn = turn;
            if let Err(e) = file.sync_data() {
                failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        });
    }
}

/// A running background sync's place, given back when it ends, or when it is dropped without
/// running (a runtime shutting down).
struct WritebackTurn(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for WritebackTurn {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
        WRITEBACKS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl StagedWriter {
    /// Writes to `file` (the staged file at `path`, opened for writing) from `pos` on;
    /// `direct`: large uploads past the page cache.
    pub(super) fn new(file: File, path: &Path, pos: u64, direct: bool) -> StagedWriter {
        let direct = if direct { Direct::NotYet } else { Direct::Off };
        StagedWriter { file, path: path.to_path_buf(), direct, pos, written: 0, writeback: Writeback::default() }
    }

    /// The staged file (to ask its file system for room).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    pub(super) fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.written += data.len() as u64;
        if matches!(self.direct, Direct::NotYet) && self.written > DIRECT_AFTER {
            self.direct = match std::fs::OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32).open(&self.path) {
                Ok(f) => Direct::On(f, AlignedBuf::take()),
                Err(_) => Direct::Off,
            };
        }
        if !matches!(self.direct, Direct::On(..)) {
            return self.write_ordinary(data);
        }
        // Up to the first aligned offset the ordinary way; then whole blocks directly.
        let unaligned = ((ALIGN as u64 - self.pos % ALIGN as u64) % ALIGN as u64) as usize;
        if unaligned > 0 && self.buffered() == 0 {
            let n = unaligned.min(data.len());
            self.write_ordinary(&data[..n])?;
            data = &data[n..];
        }
        while !data.is_empty() {
            let Direct::On(_, buf) = &mut self.direct else {
                // A direct write failed just now and the writer fell back: the rest the
                // ordinary way.
                return self.write_ordinary(data);
            };
            let n = buf.fill(data);
            data = &data[n..];
            if buf.len == BLOCK {
                self.flush(BLOCK)?;
            }
        }
        Ok(())
    }

    /// Writes `data` at the current position through the page cache.
    fn write_ordinary(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, self.pos)?;
        self.pos += data.len() as u64;
        self.writeback.wrote(data.len(), &self.path);
        Ok(())
    }

    /// Bytes in the aligned buffer, not yet written.
    fn buffered(&self) -> usize {
        match &self.direct {
            Direct::On(_, buf) => buf.len,
            _ => 0,
        }
    }

    /// Writes the buffer's first `n` bytes (a multiple of [`ALIGN`]) at `pos` directly, or the
    /// ordinary way if the device refuses; keeps the rest at the buffer's start.
    fn flush(&mut self, n: usize) -> std::io::Result<()> {
        let Direct::On(direct, buf) = &mut self.direct else { return Ok(()) };
        if direct.write_all_at(&buf.filled()[..n], self.pos).is_err() {
            // Alignment the device does not take, or a file system that accepted the flag and
            // not the write: the same bytes the ordinary way (whose error, if it fails too, is
            // the one that counts: a full disk), and ordinary writes from now on.
            let Direct::On(_, buf) = std::mem::replace(&mut self.direct, Direct::Off) else { unreachable!("direct mode is on") };
            self.file.write_all_at(buf.filled(), self.pos)?;
            self.pos += buf.len as u64;
            return Ok(());
        }
        self.pos += n as u64;
        let rest = buf.len - n;
        buf.raw.copy_within(buf.start + n..buf.start + buf.len, buf.start);
        buf.len = rest;
        Ok(())
    }

    /// Writes what is still buffered and syncs the file.
    pub(super) fn finish(mut self) -> std::io::Result<()> {
        let left = self.buffered();
        self.flush(left - left % ALIGN)?;
        if let Direct::On(_, buf) = &mut self.direct {
            self.file.write_all_at(buf.filled(), self.pos)?;
            self.pos += buf.len as u64;
            buf.len = 0;
        }
        tracing::trace!(path = %self.path.display(), background_syncs = self.writeback.started, "syncing a staged upload");
        self.file.sync_data()?;
        match self.writeback.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the offsets and chunk sizes, the file holds exactly what was written, in order
    /// (on a file system with `O_DIRECT` the middle goes direct,
    /// elsewhere every write is ordinary: both must give the same file).
    #[test]
    fn the_file_holds_the_bytes_at_any_offset_and_chunking() {
        // /dev/shm is tmpfs, which refuses O_DIRECT: the ordinary path throughout.
        for root in [std::env::temp_dir(), std::path::PathBuf::from("/dev/shm")].into_iter().filter(|r| r.is_dir()) {
            writes_at_any_offset_and_chunking(&root);
        }
    }

    /// A file system that takes the `O_DIRECT` open and refuses the writes (here: a direct
    /// descriptor opened read-only) gets the same bytes the ordinary way, from the failed block
    /// on, and no error.
    #[test]
    fn a_refused_direct_write_falls_back_to_ordinary_writes() {
        let dir = std::env::temp_dir().join(format!("wharf-staged-writer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let data: Vec<u8> = (0..(3 * BLOCK + 777)).map(|i| (i % 251) as u8).collect();
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
        let mut w = StagedWriter::new(file, &path, 0, true);
        w.direct = Direct::On(File::open(&path).unwrap(), AlignedBuf::take());
        for piece in data.chunks(200_000) {
            w.write(piece).unwrap();
        }
        w.finish().unwrap();
        assert!(std::fs::read(&path).unwrap() == data, "the file holds every byte, in order");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An upload written the ordinary way starts a sync every `WRITEBACK_EVERY` bytes while it
    /// is written (one at a time), and the file holds every byte.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_ordinary_upload_is_synced_in_the_background_as_it_is_written() {
        use std::sync::atomic::Ordering;
        let dir = std::env::temp_dir().join(format!("wharf-staged-writer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let piece: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
        let pieces = (7 * WRITEBACK_EVERY / 2) as usize / piece.len();
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
        let mut w = StagedWriter::new(file, &path, 0, false);
        for _ in 0..pieces {
            w.write(&piece).unwrap();
            // One sync at a time: each threshold crossed starts one once the last has ended.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while w.writeback.running.load(Ordering::Acquire) {
                assert!(std::time::Instant::now() < deadline, "a background sync never ended");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        assert_eq!(w.writeback.started, 3, "a sync per {WRITEBACK_EVERY} bytes, started while the upload was written");
        w.finish().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), pieces * piece.len());
        assert!(on_disk.chunks(piece.len()).all(|c| c == piece.as_slice()), "the file holds every byte, in order");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn writes_at_any_offset_and_chunking(root: &Path) {
        let dir = root.join(format!("wharf-staged-writer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..(5 * BLOCK + 12_345)).map(|i| (i * 7 + i / 4099) as u8).collect();
        for (start, chunk) in [(0usize, 1 << 20), (0, 65_536), (1, 65_536), (4095, 1000), (4097, 3 * BLOCK + 5), (DIRECT_AFTER as usize + 17, 8191)] {
            let path = dir.join(format!("f-{start}-{chunk}"));
            std::fs::write(&path, &data[..start]).unwrap();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut w = StagedWriter::new(file, &path, start as u64, true);
            for piece in data[start..].chunks(chunk) {
                w.write(piece).unwrap();
            }
            w.finish().unwrap();
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(on_disk.len(), data.len(), "from {start} in pieces of {chunk}");
            assert!(on_disk == data, "from {start} in pieces of {chunk}: other bytes");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
