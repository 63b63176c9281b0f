//! The `package.json` inside a published tarball, read with flate2 + tar under limits: nothing
//! is extracted, an entry that names a path outside the archive is refused, and so are archives
//! with too many entries, a tar header that declares a huge long name or PAX record, more
//! inflated bytes than the budget, or a package.json that inflates past its limit.

use std::io::Read;

use wharf_format::archive::{tar_gz_member, TarError, TarLimits};

pub const MAX_PACKAGE_JSON: u64 = 4 << 20;
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarballError {
    #[error("the tarball is not a readable .tgz: {0}")]
    Unreadable(String),
    #[error("the tarball entry {0:?} names a path outside the package")]
    UnsafePath(String),
    #[error("the tarball has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("the tarball's package.json is larger than {MAX_PACKAGE_JSON} bytes")]
    TooLarge,
    #[error("the tarball has no package.json at its top level")]
    NoPackageJson,
    #[error("the tarball's package.json is not valid JSON: {0}")]
    BadJson(String),
    #[error("the tarball is refused: {0}")]
    Bounds(TarError),
}

impl From<TarError> for TarballError {
    fn from(e: TarError) -> Self {
        match e {
            TarError::Unreadable(m) => TarballError::Unreadable(m),
            TarError::TooManyEntries(_) => TarballError::TooManyEntries,
            TarError::MemberTooLarge { .. } => TarballError::TooLarge,
            other => TarballError::Bounds(other),
        }
    }
}

/// The top-level `*/package.json` (npm packs under `package/`) of the `compressed`-byte tarball
/// read from `tgz`.
pub fn package_json(tgz: impl Read, compressed: u64) -> Result<serde_json::Value, TarballError> {
    let limits = TarLimits { max_entries: MAX_ENTRIES, ..TarLimits::for_archive(compressed, MAX_PACKAGE_JSON) };
    let found = tar_gz_member(tgz, &limits, |path| {
        if path.starts_with('/') || path.split(['/', '\\']).any(|s| s == "..") {
            return Err(TarballError::UnsafePath(path.to_string()));
        }
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').filter(|s| !s.is_empty()).collect();
        Ok(parts.len() == 2 && parts[1] == "package.json")
    })?;
    let (_, buf) = found.ok_or(TarballError::NoPackageJson)?;
    serde_json::from_slice(&buf).map_err(|e| TarballError::BadJson(e.to_string()))
}

/// The `sha512-<base64>` integrity and hex sha1 of a tarball on disk, as npm states them
/// (what a publish body's scanner computes while decoding, for a tarball that came without).
pub fn checksums_of(path: &std::path::Path) -> std::io::Result<(String, String)> {
    use base64::Engine;
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path)?;
    let (mut sha512, mut sha1) = (sha2::Sha512::new(), sha1::Sha1::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha512.update(&buf[..n]);
        sha1.update(&buf[..n]);
    }
    Ok((format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha512.finalize())), hex::encode(sha1.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Bypass the builder's path checks: the point is to read hostile archives.
            let name = p.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn pj(tgz: &[u8]) -> Result<serde_json::Value, TarballError> {
        package_json(tgz, tgz.len() as u64)
    }

    #[test]
    fn checksums_of_a_file_are_those_of_its_bytes() {
        let data = tgz(&[("package/package.json", br#"{"name":"a","version":"1.0.0"}"#)]);
        let path = std::env::temp_dir().join(format!("wharf-npm-sums-{}.tgz", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let sums = checksums_of(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(sums.unwrap(), crate::model::checksums(&data));
    }

    #[test]
    fn reads_package_json_and_refuses_hostile_archives() {
        let ok = tgz(&[("package/index.js", b"x"), ("package/package.json", br#"{"name":"a","version":"1.0.0"}"#)]);
        assert_eq!(pj(&ok).unwrap()["name"], "a");
        assert_eq!(pj(&tgz(&[("package/../../etc/x", b"x")])), Err(TarballError::UnsafePath("package/../../etc/x".into())));
        assert_eq!(pj(&tgz(&[("package/index.js", b"x")])), Err(TarballError::NoPackageJson));
        assert!(matches!(pj(b"not gzip"), Err(TarballError::Unreadable(_))));
        assert!(matches!(pj(&tgz(&[("package/package.json", b"{")])), Err(TarballError::BadJson(_))));
    }
}
