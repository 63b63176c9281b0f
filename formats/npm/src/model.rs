//! npm's naming rules and checksums. Pure, no I/O.

use base64::Engine;
#[cfg(test)]
use sha1::Digest as _;

/// validate-npm-package-name's rules for new packages: at most 214 characters, lowercase,
/// URL-safe, not starting with `.` or `_`; scoped as `@scope/name`.
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 214 {
        return false;
    }
    let part_ok = |p: &str| {
        !p.is_empty() && !p.starts_with('.') && !p.starts_with('_') && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b))
    };
    match name.strip_prefix('@') {
        Some(scoped) => matches!(scoped.split_once('/'), Some((scope, pkg)) if part_ok(scope) && part_ok(pkg)),
        None => part_ok(name) && name != "node_modules" && name != "favicon.ico",
    }
}

/// Versions name files and URL segments: semver's characters only.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.len() <= 256 && v.as_bytes()[0].is_ascii_digit() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b))
}

/// `@scope/name` → `name`.
pub fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The tarball file of a version, as npm names it.
pub fn tarball_file(name: &str, version: &str) -> String {
    format!("{}-{version}.tgz", basename(name))
}

/// Subresource integrity of the bytes (`sha512-<base64>`), and their sha1 (hex), npm's `shasum`.
#[cfg(test)]
pub fn checksums(data: &[u8]) -> (String, String) {
    let sha512 = sha2::Sha512::digest(data);
    let sha1 = sha1::Sha1::digest(data);
    (format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha512)), hex::encode(sha1))
}

/// Checks `integrity` (one or more space-separated SRI hashes) against computed ones: every
/// sha512 or sha1 it names must match, and it must name at least one.
pub fn integrity_matches(integrity: &str, sha512_sri: &str, sha1_hex: &str) -> bool {
    let sha1_sri = hex::decode(sha1_hex).map(|b| format!("sha1-{}", base64::engine::general_purpose::STANDARD.encode(b))).unwrap_or_default();
    let mut known = 0;
    for h in integrity.split_whitespace() {
        let h = h.split('?').next().unwrap_or(h);
        if h.starts_with("sha512-") {
            if h != sha512_sri {
                return false;
            }
            known += 1;
        } else if h.starts_with("sha1-") {
            if h != sha1_sri {
                return false;
            }
            known += 1;
        }
    }
    known > 0
}

/// The hex digest inside a subresource integrity string (`sha512-<base64>`), as other
/// checksums are shown; `None` for anything else.
pub fn sri_hex(sri: &str) -> Option<String> {
    let b64 = sri.split_whitespace().next()?.split_once('-')?.1;
    base64::engine::general_purpose::STANDARD.decode(b64).ok().map(hex::encode)
}

/// ISO 8601 as npm writes it.
pub fn iso(ms: i64) -> String {
    wharf_format::rfc3339_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("lodash") && valid_name("@babel/core") && valid_name("a.b-c_d"));
        assert!(
            !valid_name("Lodash")
                && !valid_name(".x")
                && !valid_name("@/x")
                && !valid_name("@s/")
                && !valid_name("a/b")
                && !valid_name("../x")
                && !valid_name("")
        );
        assert!(valid_version("1.0.0-beta.1+b7") && !valid_version("../1") && !valid_version("latest"));
        assert_eq!(tarball_file("@s/pkg", "1.0.0"), "pkg-1.0.0.tgz");
    }

    #[test]
    fn integrity() {
        let (sri, sha1) = checksums(b"hello");
        assert!(sri.starts_with("sha512-"));
        assert_eq!(sha1, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert!(integrity_matches(&sri, &sri, &sha1));
        assert!(integrity_matches("sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=", &sri, &sha1));
        assert!(!integrity_matches("sha512-AAAA", &sri, &sha1));
        assert!(!integrity_matches("md5-xyz", &sri, &sha1));
        assert_eq!(sri_hex("sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=").as_deref(), Some(sha1.as_str()));
        assert_eq!(sri_hex("nonsense"), None);
    }
}
