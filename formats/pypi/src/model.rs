//! Python packaging rules: project name normalisation (PEP 503), distribution file names,
//! and the Simple API's content negotiation (PEP 691). Pure, no I/O.

/// PEP 503: lowercase, and every run of `-`, `_`, `.` becomes one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_sep = false;
        }
    }
    out
}

/// PEP 508 names: ASCII letters and digits, with `.`, `_`, `-` inside.
pub fn valid_project_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Wheel,
    SdistTarGz,
    SdistZip,
}

impl FileKind {
    pub fn content_type(self) -> &'static str {
        match self {
            FileKind::Wheel | FileKind::SdistZip => "application/zip",
            FileKind::SdistTarGz => "application/x-tar",
        }
    }

    pub fn packagetype(self) -> &'static str {
        match self {
            FileKind::Wheel => "bdist_wheel",
            _ => "sdist",
        }
    }

    /// The kind a file name says, and the name without its extension.
    pub fn of(filename: &str) -> Option<(FileKind, &str)> {
        if let Some(s) = filename.strip_suffix(".whl") {
            Some((FileKind::Wheel, s))
        } else if let Some(s) = filename.strip_suffix(".tar.gz") {
            Some((FileKind::SdistTarGz, s))
        } else {
            filename.strip_suffix(".zip").map(|s| (FileKind::SdistZip, s))
        }
    }
}

/// Checks an uploaded file's name: a wheel or an sdist of `name` at `version`, nothing that
/// could name a path. Returns its kind or why it is refused.
/// Which file of a release a file name is, whatever its spelling: a wheel by its version and
/// tags, an sdist by its version alone (a release has one, `.tar.gz` or `.zip`). `FOO-1.0.tar.gz`,
/// `foo-1.0.zip` and `foo-1.0.0.tar.gz` are all the sdist of foo 1.0.
pub fn release_slot(filename: &str) -> Option<(Option<String>, crate::version::Version)> {
    let (kind, stem) = FileKind::of(filename)?;
    match kind {
        FileKind::Wheel => {
            let parts: Vec<&str> = stem.split('-').collect();
            if !(parts.len() == 5 || parts.len() == 6) {
                return None;
            }
            // With its build tag, if any: a rebuilt wheel (`foo-1.0-1-py3-none-any.whl`) is
            // another file, as PyPI has it.
            let tags = parts[2..].join("-").to_ascii_lowercase();
            Some((Some(tags), crate::version::Version::parse(parts[1])?))
        }
        _ => Some((None, crate::version::Version::parse(stem.rsplit_once('-')?.1)?)),
    }
}

pub fn check_filename(filename: &str, name: &str, version: &str) -> Result<FileKind, String> {
    if !safe_filename(filename) {
        return Err(format!("invalid file name {filename:?}"));
    }
    let Some((kind, stem)) = FileKind::of(filename) else {
        return Err(format!("{filename}: only wheels (.whl) and source distributions (.tar.gz, .zip) are accepted"));
    };
    let (file_project, file_version) = match kind {
        FileKind::Wheel => {
            let parts: Vec<&str> = stem.split('-').collect();
            if !(parts.len() == 5 || parts.len() == 6) {
                return Err(format!("{filename}: not a valid wheel file name"));
            }
            (parts[0], parts[1])
        }
        _ => stem.rsplit_once('-').ok_or_else(|| format!("{filename}: not a valid sdist file name"))?,
    };
    if normalize(file_project) != normalize(name) {
        return Err(format!("{filename} is not a file of project {name}"));
    }
    if normalize_version(file_version) != normalize_version(version) {
        return Err(format!("{filename} is not a file of version {version}"));
    }
    Ok(kind)
}

/// A file name that is safe as one path segment of ours: what an upstream index lists is
/// checked with this before it names anything in wharf.
pub fn safe_filename(filename: &str) -> bool {
    !filename.is_empty() && filename.len() <= 255 && !filename.starts_with('.') && filename.chars().all(|c| c.is_ascii_alphanumeric() || "._-+!".contains(c))
}

/// The version part of a wheel or sdist file name (`pkg-1.0-py3-none-any.whl` → `1.0`).
pub fn version_of(filename: &str) -> Option<String> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        return stem.split('-').nth(1).map(str::to_string);
    }
    let stem = [".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".egg"].iter().find_map(|ext| filename.strip_suffix(ext))?;
    stem.rsplit_once('-').map(|(_, v)| v.to_string())
}

/// Version comparison for file names only: wheels write `1.0_rc1` for `1.0-rc1`.
/// One version in two spellings (PEP 440: `1.0-beta1` is `1.0b1`, `1.0.0` is `1.0`), or the same
/// text when either is not a PEP 440 version.
pub fn same_version(a: &str, b: &str) -> bool {
    match (crate::version::Version::parse(a), crate::version::Version::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y) == std::cmp::Ordering::Equal,
        _ => normalize_version(a) == normalize_version(b),
    }
}

fn normalize_version(v: &str) -> String {
    v.to_ascii_lowercase().replace(['_', '-'], ".")
}

/// The Simple API representation a client asked for (PEP 691), by `Accept` quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    Json,
    Html,
}

pub const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML_TYPE: &str = "application/vnd.pypi.simple.v1+html";

pub fn negotiate(accept: Option<&str>) -> Representation {
    let Some(accept) = accept else { return Representation::Html };
    let mut best = (Representation::Html, -1.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts.filter_map(|p| p.trim().strip_prefix("q=")).filter_map(|q| q.parse::<f32>().ok()).next().unwrap_or(1.0);
        let rep = match media {
            JSON_TYPE => Representation::Json,
            HTML_TYPE | "text/html" | "*/*" => Representation::Html,
            _ => continue,
        };
        if q > best.1 {
            best = (rep, q);
        }
    }
    best.0
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_the_same_in_its_pep_440_spellings() {
        assert!(same_version("1.0-beta1", "1.0b1") && same_version("1.0.0", "1.0") && same_version("V1.0", "1.0"));
        assert!(!same_version("1.0", "1.0.1") && !same_version("1.0b1", "1.0"));
        let slot = |f: &str| release_slot(f).unwrap();
        assert_eq!(slot("FOO-1.0.zip"), slot("foo-1.0.0.tar.gz"));
        assert_ne!(slot("foo-1.0-py3-none-any.whl"), slot("foo-1.0.tar.gz"));
        assert_eq!(slot("foo-1.0-py3-none-any.whl"), slot("Foo-1.0.0-PY3-none-any.whl"));
        assert_ne!(slot("foo-1.0-py3-none-any.whl"), slot("foo-1.0-1-py3-none-any.whl"), "a build tag makes another file");
    }

    #[test]
    fn names_normalize_per_pep_503() {
        assert_eq!(normalize("My_Pkg"), "my-pkg");
        assert_eq!(normalize("my-pkg"), "my-pkg");
        assert_eq!(normalize("Friendly.Bard__x"), "friendly-bard-x");
        assert!(valid_project_name("My_Pkg.2") && !valid_project_name("-x") && !valid_project_name("a/b") && !valid_project_name(""));
    }

    #[test]
    fn file_names_are_checked() {
        assert_eq!(check_filename("My_Pkg-1.0-py3-none-any.whl", "my-pkg", "1.0"), Ok(FileKind::Wheel));
        assert_eq!(check_filename("my_pkg-1.0.tar.gz", "My.Pkg", "1.0"), Ok(FileKind::SdistTarGz));
        assert_eq!(check_filename("my-pkg-1.0rc1.zip", "my-pkg", "1.0rc1"), Ok(FileKind::SdistZip));
        assert!(check_filename("my_pkg-1.0.exe", "my-pkg", "1.0").is_err());
        assert!(check_filename("../etc/passwd", "x", "1").is_err());
        assert!(check_filename("other-1.0.tar.gz", "my-pkg", "1.0").is_err());
        assert!(check_filename("my_pkg-2.0.tar.gz", "my-pkg", "1.0").is_err());
    }

    #[test]
    fn versions_come_from_file_names() {
        assert_eq!(version_of("my_pkg-1.0rc1-py3-none-any.whl").as_deref(), Some("1.0rc1"));
        assert_eq!(version_of("my-pkg-2.0.tar.gz").as_deref(), Some("2.0"));
        assert_eq!(version_of("README"), None);
    }

    #[test]
    fn accept_negotiation_follows_quality() {
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        assert_eq!(negotiate(Some(pip)), Representation::Json);
        assert_eq!(negotiate(Some("text/html")), Representation::Html);
        assert_eq!(negotiate(None), Representation::Html);
        assert_eq!(negotiate(Some("application/vnd.pypi.simple.v1+json;q=0.2, text/html")), Representation::Html);
    }
}
