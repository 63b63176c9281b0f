//! Core metadata (PEP 658) out of uploaded distributions, read with limits: a wheel's
//! `*.dist-info/METADATA` through zip, an sdist's `PKG-INFO` through flate2 + tar (or zip).
//! Nothing is extracted to disk; an archive with too many entries, an entry that names a path
//! outside the archive, a tar header that declares a huge long name or PAX record, an archive
//! that inflates past its budget, or a metadata file that inflates past its limit is refused.

use std::io::Read;
use std::path::Path;

use wharf_format::archive::{tar_gz_member, TarError, TarLimits};

use crate::model::FileKind;

/// Core metadata files are a few KiB; this leaves room for long descriptions.
pub const MAX_METADATA: u64 = 1 << 20;
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("not a readable archive: {0}")]
    Unreadable(String),
    #[error("archive entry {0:?} names a path outside the archive")]
    UnsafePath(String),
    #[error("archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("{0} inflates past {MAX_METADATA} bytes (refused as a possible zip bomb)")]
    TooLarge(String),
    #[error("archive: {0}")]
    Tar(TarError),
}

impl From<TarError> for ArchiveError {
    fn from(e: TarError) -> Self {
        match e {
            TarError::Unreadable(m) => ArchiveError::Unreadable(m),
            TarError::TooManyEntries(_) => ArchiveError::TooManyEntries,
            TarError::MemberTooLarge { name, .. } => ArchiveError::TooLarge(name),
            other => ArchiveError::Tar(other),
        }
    }
}

fn unsafe_name(name: &str) -> bool {
    name.starts_with('/') || name.starts_with('\\') || name.split(['/', '\\']).any(|s| s == "..") || name.contains(':')
}

fn read_limited(r: impl Read, what: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut buf = Vec::new();
    r.take(MAX_METADATA + 1).read_to_end(&mut buf).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    if buf.len() as u64 > MAX_METADATA {
        return Err(ArchiveError::TooLarge(what.to_string()));
    }
    Ok(buf)
}

/// The metadata file a distribution carries, whatever its version: a wheel's
/// `*.dist-info/METADATA`, an sdist's `PKG-INFO`. Even an old PKG-INFO names its project and
/// version, which is what an upload without form fields (the components API) goes by.
pub fn metadata(path: &Path, kind: FileKind) -> Result<Option<Vec<u8>>, ArchiveError> {
    let open = || std::fs::File::open(path).map_err(|e| ArchiveError::Unreadable(e.to_string()));
    match kind {
        FileKind::Wheel => zip_member(open()?, is_wheel_metadata),
        FileKind::SdistZip => zip_member(open()?, is_pkg_info),
        FileKind::SdistTarGz => tar_member(path),
    }
}

/// A wheel's core metadata from the wheel's bytes, under the same limits: how a wheel listed
/// without its metadata (see `index::SMALL_WHEEL_BYTES`) is described when no metadata was kept.
pub fn wheel_metadata_in(wheel: &[u8]) -> Result<Option<Vec<u8>>, ArchiveError> {
    zip_member(std::io::Cursor::new(wheel), is_wheel_metadata)
}

fn is_wheel_metadata(name: &str) -> bool {
    let mut parts = name.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(d), Some("METADATA"), None) if d.ends_with(".dist-info"))
}

/// What of [`metadata`] is served as core metadata (PEP 658): always a wheel's, an sdist's only
/// from Metadata 2.2 on (before that PKG-INFO may not be reliable).
pub fn servable(kind: FileKind, metadata: Vec<u8>) -> Option<Vec<u8>> {
    (kind == FileKind::Wheel || metadata_version_at_least_2_2(&metadata)).then_some(metadata)
}

fn is_pkg_info(name: &str) -> bool {
    let mut parts = name.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(_), Some("PKG-INFO"), None))
}

fn zip_member<R: std::io::Read + std::io::Seek>(file: R, wanted: impl Fn(&str) -> bool) -> Result<Option<Vec<u8>>, ArchiveError> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(ArchiveError::TooManyEntries);
    }
    let mut found = None;
    for i in 0..zip.len() {
        let name = zip.name_for_index(i).transpose().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.unwrap_or_default().to_string();
        if unsafe_name(&name) {
            return Err(ArchiveError::UnsafePath(name));
        }
        if found.is_none() && wanted(&name) {
            found = Some(i);
        }
    }
    let Some(i) = found else { return Ok(None) };
    let entry = zip.by_index(i).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let name = entry.name().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.to_string();
    // The header's size may lie; read_limited counts what actually inflates.
    if entry.size() > MAX_METADATA {
        return Err(ArchiveError::TooLarge(name));
    }
    read_limited(entry, &name).map(Some)
}

fn tar_member(path: &Path) -> Result<Option<Vec<u8>>, ArchiveError> {
    let file = std::fs::File::open(path).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let compressed = file.metadata().map_err(|e| ArchiveError::Unreadable(e.to_string()))?.len();
    let limits = TarLimits { max_entries: MAX_ENTRIES, ..TarLimits::for_archive(compressed, MAX_METADATA) };
    // PKG-INFO comes first in sdists built by any current backend: the walk stops there.
    let found = tar_gz_member(std::io::BufReader::new(file), &limits, |name| {
        if unsafe_name(name) {
            return Err(ArchiveError::UnsafePath(name.to_string()));
        }
        Ok(is_pkg_info(name))
    })?;
    Ok(found.map(|(_, data)| data))
}

/// `Metadata-Version: 2.2` or later.
fn metadata_version_at_least_2_2(m: &[u8]) -> bool {
    let text = String::from_utf8_lossy(m);
    let Some(v) = field(&text, "Metadata-Version") else { return false };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 2)
}

/// The first value of a header field in core metadata.
pub fn field<'a>(metadata: &'a str, name: &str) -> Option<&'a str> {
    for line in metadata.lines() {
        if line.is_empty() {
            break; // the body (long description) starts here
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case(name) {
                return Some(v.trim());
            }
        }
    }
    None
}

/// Every value of a header field of core metadata (fields such as Requires-Dist repeat).
pub fn fields<'a>(metadata: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for line in metadata.lines() {
        if line.is_empty() {
            break; // the long description starts here
        }
        if let Some((k, v)) = line.split_once(':') {
            if !k.starts_with([' ', '\t']) && k.trim().eq_ignore_ascii_case(name) && !v.trim().is_empty() {
                out.push(v.trim());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel(entries: &[(&str, Vec<u8>)]) -> tempfile_path::Tmp {
        let t = tempfile_path::Tmp::new("whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&t.0).unwrap());
        for (name, data) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
        t
    }

    mod tempfile_path {
        pub struct Tmp(pub std::path::PathBuf);
        impl Tmp {
            pub fn new(ext: &str) -> Tmp {
                Tmp(std::env::temp_dir().join(format!(
                    "wharf-archive-{}-{}.{ext}",
                    std::process::id(),
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                )))
            }
        }
        impl Drop for Tmp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn a_wheel_gives_its_metadata() {
        let t = wheel(&[("p/__init__.py", b"".to_vec()), ("p-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: p\nVersion: 1.0\n".to_vec())]);
        let m = metadata(&t.0, FileKind::Wheel).unwrap().unwrap();
        assert_eq!(field(&String::from_utf8(m).unwrap(), "name"), Some("p"));
    }

    #[test]
    fn a_metadata_bomb_is_refused() {
        let t = wheel(&[("p-1.0.dist-info/METADATA", vec![b' '; (MAX_METADATA + 10) as usize])]);
        assert!(matches!(metadata(&t.0, FileKind::Wheel), Err(ArchiveError::TooLarge(_))));
    }

    #[test]
    fn traversal_names_are_refused() {
        let t = wheel(&[("../../evil.py", b"x".to_vec()), ("p-1.0.dist-info/METADATA", b"Name: p\n".to_vec())]);
        assert!(matches!(metadata(&t.0, FileKind::Wheel), Err(ArchiveError::UnsafePath(_))));
    }

    #[test]
    fn only_new_sdist_metadata_is_served() {
        assert!(metadata_version_at_least_2_2(b"Metadata-Version: 2.2\nName: x\n"));
        assert!(metadata_version_at_least_2_2(b"Metadata-Version: 2.10\n"));
        assert!(!metadata_version_at_least_2_2(b"Metadata-Version: 2.1\n"));
        assert!(!metadata_version_at_least_2_2(b"Name: x\n"));
        // What names a release is read whatever its version; only what is served is filtered.
        assert_eq!(servable(FileKind::SdistTarGz, b"Metadata-Version: 2.1\nName: x\n".to_vec()), None);
        assert!(servable(FileKind::SdistZip, b"Metadata-Version: 2.2\nName: x\n".to_vec()).is_some());
        assert!(servable(FileKind::Wheel, b"Metadata-Version: 2.1\nName: x\n".to_vec()).is_some());
    }
}
