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
                ": {} left, which is kept free so that deletions, tasks and garbage collection can run (disk.reserve_mib, here {})",
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
        DiskReserve { bytes: mib.saturating_mul(1 << 20) }
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
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        let reserve = self.of(s.f_blocks.saturating_mul(s.f_frsize));
        if free < reserve.saturating_add(len) {
            return Err(BlobError::NoSpace(SpaceLeft::Reserved { free, reserve }));
        }
        Ok(())
    }

    /// The reserve on a file system of `size` bytes.
    pub fn of(&self, size: u64) -> u64 {
        self.bytes.min(size / 100 * MAX_PERCENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_at_most_a_twentieth_of_the_file_system() {
        let r = DiskReserve::mib(512);
        assert_eq!(r.of(100 << 30), 512 << 20);
        assert_eq!(r.of(1 << 30), (1u64 << 30) / 100 * 5);
        assert_eq!(DiskReserve::default().of(1 << 40), 0);
    }

    #[test]
    fn a_write_that_would_eat_into_the_reserve_is_refused_and_says_why() {
        let dir = crate::test_dir::TestDir::new("wharf-reserve-");
        let file = std::fs::File::create(dir.join("f")).unwrap();
        let s = rustix::fs::fstatvfs(&file).unwrap();
        let free = s.f_bavail * s.f_frsize;
        let size = s.f_blocks * s.f_frsize;
        // A reserve as large as the file system allows, and a write that would end inside it.
        let r = DiskReserve { bytes: u64::MAX };
        let reserve = r.of(size);
        assert!(free > reserve, "the test's file system is too full to test this");
        let fits = free - reserve - (1 << 20);
        r.check(&file, fits).expect("a write that leaves the reserve free");
        // Others may write meanwhile: the margin is a MiB either way.
        match r.check(&file, free - reserve + (1 << 20)) {
            Err(BlobError::NoSpace(left @ SpaceLeft::Reserved { reserve: got, .. })) => {
                assert_eq!(got, reserve);
                let m = BlobError::NoSpace(left).to_string();
                assert!(m.starts_with("the blob store is out of space: ") && m.contains("disk.reserve_mib"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        r.check_path(&dir, 2 * free).expect_err("the same by path");
        DiskReserve::default().check(&file, u64::MAX).expect("no reserve, no refusal");
    }
}
