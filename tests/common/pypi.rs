//! PyPI test material: distributions written by tests/pypi/make_dist.py, uploaded with the real
//! twine.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Simple API index of `repo` on `server` for pip and uv, with the admin's credentials in
/// the URL (as pip takes them).
pub fn index_url(server: &super::TestServer, repo: &str) -> String {
    format!("http://admin:{}@{}/repository/{repo}/simple/", super::ADMIN_PASSWORD, server.addr)
}

/// Writes a wheel and an sdist of `name` `version` into `dir`, its metadata requiring
/// `requires`; their paths, the wheel's first.
pub fn dist(dir: &Path, name: &str, version: &str, requires: &[&str]) -> (PathBuf, PathBuf) {
    make(dir, name, version, requires, 0)
}

/// As [`dist`], the wheel carrying `payload` more bytes of incompressible data.
pub fn dist_with_payload(dir: &Path, name: &str, version: &str, requires: &[&str], payload: usize) -> (PathBuf, PathBuf) {
    make(dir, name, version, requires, payload)
}

/// More than the wheels a project page lists without their PEP 658 metadata
/// (`SMALL_WHEEL_BYTES` in formats/pypi/src/index.rs).
pub const LISTED_METADATA_PAYLOAD: usize = 20 << 10;

fn make(dir: &Path, name: &str, version: &str, requires: &[&str], payload: usize) -> (PathBuf, PathBuf) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let out =
        Command::new("python3").arg(script).arg(dir).arg(name).arg(version).args(requires).env("WHARF_DIST_PAYLOAD", payload.to_string()).output().unwrap();
    assert!(out.status.success(), "make_dist.py: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().map(PathBuf::from);
    (lines.next().unwrap(), lines.next().unwrap())
}

/// `twine upload` of `files` to the repository at `repository_url` (…/repository/<name>/).
pub fn twine<F: AsRef<OsStr>>(repository_url: &str, user: &str, password: &str, files: &[F]) -> Output {
    Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", repository_url, "-u", user, "-p", password])
        .args(files)
        .output()
        .expect("twine is installed (the test command installs it into target/test-venv)")
}

/// Fails the test with twine's output unless the upload succeeded.
pub fn uploaded(out: Output) {
    assert!(out.status.success(), "twine: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// pip with `args`, answered by wharf alone: the machine's pip configuration (extra indexes,
/// local wheel folders) is left out.
pub fn pip(args: &[&str]) -> Output {
    Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated"])
        .args(args)
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .output()
        .unwrap()
}
