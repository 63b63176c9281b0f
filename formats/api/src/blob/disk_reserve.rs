//! Free space kept for the work that frees space (`disk.reserve_mib`). Writes that make wharf's
//! data grow (staged uploads, pushes, publishes and proxy fills into a file store, an S3 store's
//! scratch files, the blob cache's copies) stop short of it. On a disk filled to the last byte,
//! deleting an image, running a task or a compaction failed too, since each begins with a
//! database write: nothing could free a byte without a shell on the host.

use std::os::fd::AsFd;
use std::path::Path;

use super::BlobError;

/// The most of a file system the reserve takes, in percent: a small one stays usable.
const MAX_PERCENT: u64 = 5;

/// How much a file system keeps free; none by default (a store opened without the setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskReserve {
    bytes: u64,
    /// What a write leaves free is the reserve divided by this (see [`Room`]); 0 is 1.
    divisor: u64,
}

/// How far into the reserve a document written whole may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Down to half the reserve: documents are small next to streamed content, but clients
    /// without write rights make them too (a proxy's pages, an npm star), so they stop before
    /// the half that deletions need.
    Document,
    /// Down to a quarter of the reserve: a document that records a deletion (an npm package's,
    /// less the versions unpublished) and is no larger than the one it replaces. Deletions need
    /// delete rights, but a cleanup writes the document once per version it removes, and the
    /// old copies stay until a compaction: the last quarter stays for database writes.
    Freeing,
}

/// Why a store is out of space, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceLeft {
    /// The file system said so (ENOSPC, EDQUOT).
    Full,
    /// What is left is the reserve.
    Reserved { free: u64, reserve: u64 },
}

impl std::fmt::Display for SpaceLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpaceLeft::Full => Ok(()),
            SpaceLeft::Reserved { free, reserve } => write!(
                f,
                ": {} left, and a write like this one leaves {} free so that deletions, tasks and garbage collection can run (disk.reserve_mib)",
                mib(*free),
                mib(*reserve)
            ),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl DiskReserve {
    pub fn mib(mib: u64) -> DiskReserve {
        DiskReserve { bytes: mib.saturating_mul(1 << 20), divisor: 1 }
    }

    /// What a write into `room` leaves free.
    pub fn for_room(self, room: Room) -> DiskReserve {
        match room {
            Room::Document => DiskReserve { divisor: 2, ..self },
            Room::Freeing => DiskReserve { divisor: 4, ..self },
        }
    }

    /// Refuses `len` more bytes on the file system that holds `file` if they would leave less
    /// than the reserve free. A file system that cannot say is written to (its own ENOSPC is
    /// still reported as such).
    pub fn check(&self, file: impl AsFd, len: u64) -> Result<(), BlobError> {
        if self.bytes == 0 {
            return Ok(());
        }
        rustix::fs::fstatvfs(file).map_or(Ok(()), |s| self.judge(&s, len))
    }

    /// [`DiskReserve::check`] for the file system that holds `path`.
    pub fn check_path(&self, path: &Path, len: u64) -> Result<(), BlobError> {
        if self.bytes == 0 {
            return Ok(());
        }
        rustix::fs::statvfs(path).map_or(Ok(()), |s| self.judge(&s, len))
    }

    fn judge(&self, s: &rustix::fs::StatVfs, len: u64) -> Result<(), BlobError> {
        self.judge_space(s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize), len)
    }

    /// Whether `len` more bytes fit on a file system of `size` bytes with `free` left.
    fn judge_space(&self, free: u64, size: u64, len: u64) -> Result<(), BlobError> {
        let reserve = self.of(size);
        if free < reserve.saturating_add(len) {
            return Err(BlobError::NoSpace(SpaceLeft::Reserved { free, reserve }));
        }
        Ok(())
    }

    /// The reserve on a file system of `size` bytes.
    pub fn of(&self, size: u64) -> u64 {
        self.bytes.min((size as u128 * MAX_PERCENT as u128 / 100) as u64) / self.divisor.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_at_most_a_twentieth_of_the_file_system() {
        let r = DiskReserve::mib(512);
        assert_eq!(r.of(100 << 30), 512 << 20);
        assert_eq!(r.of(1 << 30), (1u64 << 30) * 5 / 100);
        assert_eq!(r.of(160 << 20), 8 << 20);
        assert_eq!(DiskReserve::default().of(1 << 40), 0);
    }

    #[test]
    fn a_write_that_would_eat_into_the_reserve_is_refused_and_says_why() {
        let r = DiskReserve::mib(8);
        let (size, mib) = (1u64 << 30, 1u64 << 20);
        r.judge_space(10 * mib, size, 2 * mib).expect("leaves the reserve free");
        match r.judge_space(10 * mib, size, 2 * mib + 1) {
            Err(e @ BlobError::NoSpace(SpaceLeft::Reserved { free, reserve })) => {
                assert_eq!((free, reserve), (10 * mib, 8 * mib));
                let m = e.to_string();
                assert!(
                    m.starts_with("the blob store is out of space: 10.0 MiB left, and a write like this one leaves 8.0 MiB free")
                        && m.contains("(disk.reserve_mib)"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Documents stop at half of it, a deletion's documents at a quarter.
        r.for_room(Room::Document).judge_space(10 * mib, size, 6 * mib).expect("half the reserve");
        r.for_room(Room::Document).judge_space(10 * mib, size, 6 * mib + 1).expect_err("past half the reserve");
        r.for_room(Room::Freeing).judge_space(10 * mib, size, 8 * mib).expect("three quarters of the reserve");
        r.for_room(Room::Freeing).judge_space(10 * mib, size, 8 * mib + 1).expect_err("the last quarter");
        DiskReserve::default().judge_space(mib, size, mib).expect("no reserve: all that is free");
    }

    /// The file system is asked: a real one answers, and a write it cannot hold is refused.
    #[test]
    fn the_file_system_holding_a_file_is_asked() {
        let dir = crate::test_dir::TestDir::new("wharf-reserve-");
        let file = std::fs::File::create(dir.join("f")).unwrap();
        let r = DiskReserve::mib(1);
        r.check(&file, u64::MAX / 2).expect_err("more than any disk holds");
        r.check_path(&dir, u64::MAX / 2).expect_err("the same by path");
        DiskReserve::default().check(&file, u64::MAX).expect("no reserve, no refusal");
    }
}
