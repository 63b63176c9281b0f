//! Semver, as npm orders versions: for cleanup policies and for where `latest` goes when the
//! version it names is deleted. Pure, no I/O.

use std::cmp::Ordering;

use semver::Version;

/// [`wharf_format::Versions`] for npm.
pub struct Semver;

impl wharf_format::Versions for Semver {
    fn scheme(&self) -> &'static str {
        "semver"
    }

    fn is_prerelease(&self, version: &str) -> Option<bool> {
        Version::parse(version).ok().map(|v| !v.pre.is_empty())
    }

    fn compare(&self, a: &str, b: &str) -> Option<Ordering> {
        // Precedence ignores build metadata, as semver says and npm does.
        Some(Version::parse(a).ok()?.cmp_precedence(&Version::parse(b).ok()?))
    }
}

/// The version `latest` moves to when the one it named is deleted: the highest release left,
/// or the highest pre-release when no release is left. (npm unpublish takes the highest
/// version whatever it is; a pre-release as `latest` would make `npm install pkg` install it.)
pub fn fallback_latest<'a>(versions: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let parsed: Vec<(&str, Version)> = versions.filter_map(|v| Some((v, Version::parse(v).ok()?))).collect();
    let best = |release: bool| parsed.iter().filter(|(_, p)| p.pre.is_empty() == release).max_by(|a, b| a.1.cmp_precedence(&b.1)).map(|(v, _)| *v);
    best(true).or_else(|| best(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_format::Versions;

    #[test]
    fn orders_by_precedence() {
        assert_eq!(Semver.compare("1.10.0", "1.9.0"), Some(Ordering::Greater));
        assert_eq!(Semver.compare("1.0.0-rc.1", "1.0.0"), Some(Ordering::Less));
        assert_eq!(Semver.compare("1.0.0+a", "1.0.0+b"), Some(Ordering::Equal));
        assert_eq!(Semver.compare("1.0", "1.0.0"), None);
        assert_eq!(Semver.is_prerelease("2.0.0-beta.1"), Some(true));
        assert_eq!(Semver.is_prerelease("2.0.0"), Some(false));
    }

    #[test]
    fn latest_falls_back_to_the_highest_release() {
        assert_eq!(fallback_latest(["1.0.0", "1.2.0", "2.0.0-rc.1", "1.10.0"].into_iter()), Some("1.10.0"));
        assert_eq!(fallback_latest(["2.0.0-rc.1", "2.0.0-rc.2"].into_iter()), Some("2.0.0-rc.2"));
        assert_eq!(fallback_latest(std::iter::empty()), None);
    }
}
