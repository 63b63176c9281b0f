//! The `package.json` inside a published tarball, read with flate2 + tar under limits: nothing
//! is extracted, an entry that names a path outside the archive is refused, and so are archives
//! with too many entries or a package.json that inflates past its limit.

use std::io::Read;

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
}

/// The top-level `*/package.json` (npm packs under `package/`).
pub fn package_json(tgz: &[u8]) -> Result<serde_json::Value, TarballError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let entries = archive.entries().map_err(|e| TarballError::Unreadable(e.to_string()))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ENTRIES {
            return Err(TarballError::TooManyEntries);
        }
        let entry = entry.map_err(|e| TarballError::Unreadable(e.to_string()))?;
        let path = entry.path_bytes();
        let path = String::from_utf8_lossy(&path).to_string();
        if path.starts_with('/') || path.split(['/', '\\']).any(|s| s == "..") {
            return Err(TarballError::UnsafePath(path));
        }
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() == 2 && parts[1] == "package.json" {
            if entry.header().size().unwrap_or(0) > MAX_PACKAGE_JSON {
                return Err(TarballError::TooLarge);
            }
            let mut buf = Vec::new();
            entry.take(MAX_PACKAGE_JSON + 1).read_to_end(&mut buf).map_err(|e| TarballError::Unreadable(e.to_string()))?;
            if buf.len() as u64 > MAX_PACKAGE_JSON {
                return Err(TarballError::TooLarge);
            }
            return serde_json::from_slice(&buf).map_err(|e| TarballError::BadJson(e.to_string()));
        }
    }
    Err(TarballError::NoPackageJson)
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

    #[test]
    fn reads_package_json_and_refuses_hostile_archives() {
        let ok = tgz(&[("package/index.js", b"x"), ("package/package.json", br#"{"name":"a","version":"1.0.0"}"#)]);
        assert_eq!(package_json(&ok).unwrap()["name"], "a");
        assert_eq!(package_json(&tgz(&[("package/../../etc/x", b"x")])), Err(TarballError::UnsafePath("package/../../etc/x".into())));
        assert_eq!(package_json(&tgz(&[("package/index.js", b"x")])), Err(TarballError::NoPackageJson));
        assert!(matches!(package_json(b"not gzip"), Err(TarballError::Unreadable(_))));
        assert!(matches!(package_json(&tgz(&[("package/package.json", b"{")])), Err(TarballError::BadJson(_))));
    }
}
