//! One member out of an uploaded `.tar.gz` (an sdist's `PKG-INFO`, an npm tarball's
//! `package.json`), read under limits that hold whatever the archive's headers declare.
//!
//! The tar crate reads a GNU long name or a PAX record whole into memory, however large its
//! header says it is, and inflates as much as it is given: a 1 MB upload can declare a 1 GiB
//! name, or inflate to gigabytes before the member we want. So entries are walked raw: extension
//! records are bounded before they are read and applied here, every inflated byte counts
//! against a budget, and the wanted member is read only up to its own limit.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// What one archive may cost.
#[derive(Clone, Copy, Debug)]
pub struct TarLimits {
    /// A GNU long name or link, or a PAX record set, larger than this is refused.
    pub max_extension: u64,
    /// Inflated bytes read before the wanted member is found (and including it).
    pub max_inflated: u64,
    /// Entries (files, directories, links) walked before the wanted member is found.
    pub max_entries: usize,
    /// The wanted member's size.
    pub max_member: u64,
}

/// Long names and PAX records: paths are at most a few KiB on any real system.
pub const MAX_EXTENSION: u64 = 64 << 10;
/// The inflate budget of any archive, however small.
pub const MIN_INFLATED: u64 = 256 << 20;
/// The inflate budget of any archive, however large: metadata comes first in real packages,
/// and inflating a 200 MB upload 64 times over is 12.8 GB of work.
pub const MAX_INFLATED: u64 = 1 << 30;

impl TarLimits {
    /// The limits for an archive of `compressed` bytes: it may inflate 64 times over, always
    /// to [`MIN_INFLATED`] (more than any real sdist or npm package has before its metadata),
    /// and never past [`MAX_INFLATED`], however large the upload.
    pub fn for_archive(compressed: u64, max_member: u64) -> TarLimits {
        let max_inflated = compressed.saturating_mul(64).clamp(MIN_INFLATED, MAX_INFLATED);
        TarLimits { max_extension: MAX_EXTENSION, max_inflated, max_entries: 100_000, max_member }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    #[error("not a readable .tar.gz: {0}")]
    Unreadable(String),
    #[error("more than {0} entries")]
    TooManyEntries(usize),
    #[error("a tar header declares a {size}-byte long name or PAX record (limit {limit} bytes)")]
    ExtensionTooLarge { size: u64, limit: u64 },
    #[error("inflates past {0} bytes (refused as a possible gzip bomb)")]
    InflatesTooMuch(u64),
    #[error("{name} is larger than {limit} bytes")]
    MemberTooLarge { name: String, limit: u64 },
}

/// A reader that fails once more than its budget has passed through it.
struct Budget<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(std::io::Error::other("inflate budget exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Walks the gzip-compressed tar in `compressed` and returns the first regular file for whose
/// path `wanted` answers true, with its path. `wanted` sees every member's path (long names and
/// PAX paths applied), so it can refuse unsafe ones by returning an error.
pub fn tar_gz_member<E: From<TarError>>(
    compressed: impl Read,
    limits: &TarLimits,
    mut wanted: impl FnMut(&str) -> Result<bool, E>,
) -> Result<Option<(String, Vec<u8>)>, E> {
    let exceeded = Rc::new(Cell::new(false));
    let reader = Budget { inner: flate2::read::GzDecoder::new(compressed), left: limits.max_inflated, exceeded: exceeded.clone() };
    let failed = |e: std::io::Error| if exceeded.get() { TarError::InflatesTooMuch(limits.max_inflated) } else { TarError::Unreadable(e.to_string()) };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(failed)?.raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_path: Option<Vec<u8>> = None;
    let mut walked = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(failed)?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            let size = entry.size();
            if size > limits.max_extension {
                return Err(TarError::ExtensionTooLarge { size, limit: limits.max_extension }.into());
            }
            let mut data = Vec::with_capacity(size as usize);
            (&mut entry).take(limits.max_extension).read_to_end(&mut data).map_err(failed)?;
            if kind.is_gnu_longname() {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                data.truncate(end);
                long_name = Some(data);
            } else if kind.is_pax_local_extensions() {
                for ext in tar::PaxExtensions::new(&data) {
                    let ext = ext.map_err(failed)?;
                    match ext.key_bytes() {
                        b"path" => pax_path = Some(ext.value_bytes().to_vec()),
                        // A size here would override the header's; readers that disagree about
                        // where a member ends see different archives.
                        b"size" => return Err(TarError::Unreadable("PAX size records are not supported".into()).into()),
                        _ => {}
                    }
                }
            }
            continue;
        }
        walked += 1;
        if walked > limits.max_entries {
            return Err(TarError::TooManyEntries(limits.max_entries).into());
        }
        let path = match pax_path.take().or(long_name.take()) {
            Some(p) => p,
            None => entry.header().path_bytes().into_owned(),
        };
        long_name = None;
        let path = String::from_utf8_lossy(&path).into_owned();
        if !wanted(&path)? || !kind.is_file() {
            continue;
        }
        if entry.size() > limits.max_member {
            return Err(TarError::MemberTooLarge { name: path, limit: limits.max_member }.into());
        }
        let mut data = Vec::new();
        (&mut entry).take(limits.max_member + 1).read_to_end(&mut data).map_err(failed)?;
        if data.len() as u64 > limits.max_member {
            return Err(TarError::MemberTooLarge { name: path, limit: limits.max_member }.into());
        }
        return Ok(Some((path, data)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    /// A gzip stream of `parts` (raw tar bytes, or runs of zeros), written without holding
    /// the inflated archive in memory.
    fn gz(parts: &[Part]) -> Vec<u8> {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for p in parts {
            match p {
                Part::Bytes(b) => z.write_all(b).unwrap(),
                Part::Zeros(n) => {
                    let block = vec![0u8; 1 << 20];
                    let mut left = *n;
                    while left > 0 {
                        let k = left.min(block.len() as u64) as usize;
                        z.write_all(&block[..k]).unwrap();
                        left -= k as u64;
                    }
                }
            }
        }
        z.finish().unwrap()
    }

    enum Part {
        Bytes(Vec<u8>),
        Zeros(u64),
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = header(name.as_bytes(), tar::EntryType::Regular, data.len() as u64).as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn want(name: &str) -> impl FnMut(&str) -> Result<bool, TarError> + '_ {
        move |p| Ok(p == name)
    }

    fn limits() -> TarLimits {
        TarLimits { max_extension: MAX_EXTENSION, max_inflated: 16 << 20, max_entries: 1000, max_member: 1 << 20 }
    }

    #[test]
    fn finds_a_member_under_a_long_name_and_a_pax_path() {
        let long = format!("p/{}/PKG-INFO", "d".repeat(200));
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let tgz = b.into_inner().unwrap().finish().unwrap();
        assert_eq!(tar_gz_member(&tgz[..], &limits(), want(&long)).unwrap(), Some((long.clone(), b"abc".to_vec())));

        let mut pax = Vec::new();
        let rec = format!(" path={long}\n");
        let rec = format!("{}{rec}", rec.len() + (rec.len() + 3).to_string().len());
        pax.extend(header(b"PaxHeader", tar::EntryType::XHeader, rec.len() as u64).as_bytes());
        pax.extend(rec.as_bytes());
        pax.resize(pax.len().div_ceil(512) * 512, 0);
        pax.extend(file("short", b"xyz"));
        assert_eq!(tar_gz_member(&gz(&[Part::Bytes(pax)])[..], &limits(), want(&long)).unwrap(), Some((long, b"xyz".to_vec())));
    }

    #[test]
    fn a_huge_long_name_or_pax_record_is_refused_before_it_is_read() {
        for kind in [tar::EntryType::GNULongName, tar::EntryType::XHeader, tar::EntryType::XGlobalHeader, tar::EntryType::GNULongLink] {
            let tgz = gz(&[Part::Bytes(header(b"././@LongLink", kind, 1 << 30).as_bytes().to_vec()), Part::Zeros(4 << 20)]);
            assert_eq!(tar_gz_member(&tgz[..], &limits(), want("x")), Err(TarError::ExtensionTooLarge { size: 1 << 30, limit: MAX_EXTENSION }), "{kind:?}");
        }
    }

    #[test]
    fn inflating_past_the_budget_is_refused() {
        let tgz = gz(&[Part::Bytes(header(b"p/filler", tar::EntryType::Regular, 64 << 20).as_bytes().to_vec()), Part::Zeros(64 << 20)]);
        assert!(tgz.len() < 1 << 20);
        assert_eq!(tar_gz_member(&tgz[..], &limits(), want("p/PKG-INFO")), Err(TarError::InflatesTooMuch(16 << 20)));
        assert_eq!(TarLimits::for_archive(tgz.len() as u64, 1).max_inflated, 256 << 20);
        assert_eq!(TarLimits::for_archive(8 << 20, 1).max_inflated, 512 << 20);
        assert_eq!(TarLimits::for_archive(200 << 20, 1).max_inflated, MAX_INFLATED);
        assert_eq!(TarLimits::for_archive(u64::MAX, 1).max_inflated, MAX_INFLATED);
    }

    #[test]
    fn the_member_is_read_under_its_limit_and_the_walk_under_its_entry_count() {
        let big = gz(&[Part::Bytes(file("p/PKG-INFO", &vec![b'a'; (2 << 20) as usize]))]);
        assert!(matches!(tar_gz_member(&big[..], &limits(), want("p/PKG-INFO")), Err(TarError::MemberTooLarge { .. })));
        let many: Vec<u8> = (0..20).flat_map(|i| file(&format!("p/{i}"), b"")).collect();
        let l = TarLimits { max_entries: 10, ..limits() };
        assert_eq!(tar_gz_member(&gz(&[Part::Bytes(many)])[..], &l, want("p/PKG-INFO")), Err(TarError::TooManyEntries(10)));
    }

    #[test]
    fn pax_size_overrides_are_refused() {
        let mut pax = Vec::new();
        let rec = "12 size=999\n";
        pax.extend(header(b"PaxHeader", tar::EntryType::XHeader, rec.len() as u64).as_bytes());
        pax.extend(rec.as_bytes());
        pax.resize(pax.len().div_ceil(512) * 512, 0);
        pax.extend(file("p/PKG-INFO", b"x"));
        assert!(matches!(tar_gz_member(&gz(&[Part::Bytes(pax)])[..], &limits(), want("p/PKG-INFO")), Err(TarError::Unreadable(_))));
    }
}
