//! PyPI's JSON API (`/pypi/<project>/json` and `/pypi/<project>/<version>/json`), as Warehouse
//! answers it, for the tools that read it rather than the Simple API (Poetry, pip-audit,
//! dependabot, renovate). Built from the same files the project page lists, whichever kind of
//! repository holds them, and from the chosen release's core metadata when the repository has
//! it (PEP 658): without it `info` names the project and version only.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::archive;
use crate::error::PypiError;
use crate::index::{small_wheel, FileEntry, SMALL_WHEEL_BYTES};
use crate::model;
use crate::source::{Result, Source};
use crate::version::Version;

/// Core metadata larger than this is left out of `info` (a README of megabytes).
const MAX_METADATA: usize = 1 << 20;

fn version_of(f: &FileEntry) -> Option<String> {
    f.version.clone().or_else(|| model::version_of(&f.filename))
}

/// The release Warehouse calls the project's version: the highest final release that has a file
/// not yanked, else the highest release with such a file, else the highest of all.
fn latest(releases: &BTreeMap<String, Vec<&FileEntry>>) -> Option<String> {
    let live = |files: &Vec<&FileEntry>| files.iter().any(|f| f.yanked.is_none());
    let best = |pick: &dyn Fn(&Version, &Vec<&FileEntry>) -> bool| {
        releases
            .iter()
            .filter_map(|(v, files)| Version::parse(v).filter(|p| pick(p, files)).map(|p| (p, v.clone())))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v)
    };
    best(&|p, f| !p.is_prerelease() && live(f))
        .or_else(|| best(&|_, f| live(f)))
        .or_else(|| best(&|_, _| true))
        .or_else(|| releases.keys().next_back().cloned())
}

fn file_json(base: &str, normalized: &str, f: &FileEntry) -> Value {
    let wheel = f.filename.ends_with(".whl");
    // A wheel's python tag is its third field from the end (`pkg-1.0-py3-none-any.whl`).
    let python_version = if wheel { f.filename.trim_end_matches(".whl").rsplit('-').nth(2).unwrap_or("").to_string() } else { "source".to_string() };
    let time = f.upload_time.clone();
    json!({
        "filename": f.filename,
        "url": format!("{base}/packages/{normalized}/{}", f.filename),
        "digests": f.sha256.as_ref().map_or(json!({}), |h| json!({"sha256": h})),
        "size": f.size,
        "packagetype": if wheel { "bdist_wheel" } else { "sdist" },
        "python_version": python_version,
        "requires_python": f.requires_python,
        "upload_time_iso_8601": time,
        "upload_time": time.as_deref().map(|t| t.trim_end_matches('Z').split('.').next().unwrap_or(t).to_string()),
        "yanked": f.yanked.is_some(),
        "yanked_reason": f.yanked.as_ref().filter(|r| !r.is_empty()),
        "has_sig": false,
        "comment_text": "",
    })
}

/// `info` from core metadata, Warehouse's keys (absent fields are null, lists empty).
fn info_json(base: &str, normalized: &str, name: &str, version: &str, metadata: Option<&str>, yanked: Option<&String>) -> Value {
    let text = metadata.unwrap_or("");
    let one = |k: &str| archive::fields(text, k).into_iter().next().map(str::to_string);
    let project_urls: serde_json::Map<String, Value> = archive::fields(text, "Project-URL")
        .into_iter()
        .filter_map(|v| v.split_once(',').map(|(label, url)| (label.trim().to_string(), json!(url.trim()))))
        .collect();
    // The long description is the body after the headers (metadata 2.1+), or a header.
    let body = text.split_once("\n\n").map(|(_, b)| b.trim_end()).filter(|b| !b.is_empty()).map(str::to_string);
    json!({
        "name": one("Name").unwrap_or_else(|| name.to_string()),
        "version": version,
        "summary": one("Summary"),
        "description": body.or_else(|| one("Description")),
        "description_content_type": one("Description-Content-Type"),
        "author": one("Author"),
        "author_email": one("Author-email"),
        "maintainer": one("Maintainer"),
        "maintainer_email": one("Maintainer-email"),
        "license": one("License-Expression").or_else(|| one("License")),
        "keywords": one("Keywords"),
        "home_page": one("Home-page"),
        "download_url": one("Download-URL"),
        "platform": one("Platform"),
        "requires_python": one("Requires-Python"),
        "requires_dist": metadata.map(|t| json!(archive::fields(t, "Requires-Dist"))).unwrap_or(Value::Null),
        "provides_extra": archive::fields(text, "Provides-Extra"),
        "classifiers": archive::fields(text, "Classifier"),
        "project_urls": if project_urls.is_empty() { Value::Null } else { Value::Object(project_urls) },
        "package_url": format!("{base}/pypi/{normalized}/"),
        "project_url": format!("{base}/pypi/{normalized}/"),
        "release_url": format!("{base}/pypi/{normalized}/{version}/"),
        "yanked": yanked.is_some(),
        "yanked_reason": yanked.filter(|r| !r.is_empty()),
        "bugtrack_url": null,
        "docs_url": null,
    })
}

/// The core metadata of one of the release's files (a wheel's first: sdists rarely have it),
/// else read from a wheel small enough to be listed without it (an upstream wharf lists such
/// wheels so).
async fn metadata_of(src: &dyn Source, normalized: &str, files: &[&FileEntry]) -> Option<String> {
    let mut ordered: Vec<&&FileEntry> = files.iter().filter(|f| f.core_metadata.is_some()).collect();
    ordered.sort_by_key(|f| !f.filename.ends_with(".whl"));
    let bytes = match ordered.first() {
        Some(f) => read(src, normalized, &format!("{}.metadata", f.filename), MAX_METADATA).await?,
        None => {
            let small = files.iter().find(|f| small_wheel(&f.filename, f.size))?;
            let wheel = read(src, normalized, &small.filename, SMALL_WHEEL_BYTES as usize).await?;
            archive::wheel_metadata_in(&wheel).ok()??.into()
        }
    };
    Some(String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
}

/// A file the repository serves, whole, up to `limit` bytes.
async fn read(src: &dyn Source, normalized: &str, filename: &str, limit: usize) -> Option<bytes::Bytes> {
    let res = src.serve(normalized, filename, &wharf_format::Want::Read).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    actix_web::body::to_bytes_limited(res.into_body(), limit).await.ok()?.ok()
}

/// `/pypi/<project>/json` (`version` `None`) or `/pypi/<project>/<version>/json`.
pub async fn answer(src: &dyn Source, base: &str, normalized: &str, version: Option<&str>) -> Result<HttpResponse> {
    let files = src.files(normalized).await?.ok_or(PypiError::NotFound)?;
    let mut releases: BTreeMap<String, Vec<&FileEntry>> = BTreeMap::new();
    for f in &files {
        if let Some(v) = version_of(f) {
            releases.entry(v).or_default().push(f);
        }
    }
    let chosen = match version {
        // Versions are compared as PEP 440 does (`1.0` is `1.0.0`), as Warehouse finds them.
        Some(v) => {
            let wanted = Version::parse(v);
            releases.keys().find(|k| k.as_str() == v || (wanted.is_some() && Version::parse(k) == wanted)).cloned().ok_or(PypiError::NotFound)?
        }
        None => latest(&releases).ok_or(PypiError::NotFound)?,
    };
    let release = &releases[&chosen];
    let metadata = metadata_of(src, normalized, release).await;
    // A release is yanked when every one of its files is (PEP 592).
    let yanked = if release.iter().all(|f| f.yanked.is_some()) { release.first().and_then(|f| f.yanked.as_ref()) } else { None };
    let urls: Vec<Value> = release.iter().map(|f| file_json(base, normalized, f)).collect();
    // Warehouse's serial counts every change on the index; here, the project's files, which
    // grows with each upload (enough for a client that compares it with what it saw).
    let serial = files.len();
    let mut out = json!({
        "info": info_json(base, normalized, normalized, &chosen, metadata.as_deref(), yanked),
        "last_serial": serial,
        "urls": urls,
        "vulnerabilities": [],
    });
    if version.is_none() {
        let all: serde_json::Map<String, Value> =
            releases.iter().map(|(v, fs)| (v.clone(), Value::Array(fs.iter().map(|f| file_json(base, normalized, f)).collect()))).collect();
        out["releases"] = Value::Object(all);
    }
    Ok(HttpResponse::Ok().content_type("application/json").body(out.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, yanked: bool) -> FileEntry {
        FileEntry { filename: name.into(), yanked: yanked.then(String::new), ..Default::default() }
    }

    #[test]
    fn the_latest_release_is_the_highest_final_one_with_a_live_file() {
        let files = [file("p-1.0.tar.gz", false), file("p-1.10.tar.gz", false), file("p-2.0rc1.tar.gz", false), file("p-1.11.tar.gz", true)];
        let mut releases: BTreeMap<String, Vec<&FileEntry>> = BTreeMap::new();
        for f in &files {
            releases.entry(version_of(f).unwrap()).or_default().push(f);
        }
        assert_eq!(latest(&releases).as_deref(), Some("1.10"));
        let pre = [file("p-2.0rc1.tar.gz", false), file("p-1.0.tar.gz", true)];
        let releases: BTreeMap<String, Vec<&FileEntry>> = pre.iter().map(|f| (version_of(f).unwrap(), vec![f])).collect();
        assert_eq!(latest(&releases).as_deref(), Some("2.0rc1"), "only a pre-release is live");
    }

    #[test]
    fn info_reads_repeated_fields_and_the_body() {
        let m = "Metadata-Version: 2.1\nName: My-Pkg\nVersion: 1.0\nSummary: s\nRequires-Dist: a\nRequires-Dist: b>=1\nClassifier: X :: Y\nProject-URL: Source, https://example.org/src\n\nThe README.\n";
        let i = info_json("http://h/repository/r", "my-pkg", "my-pkg", "1.0", Some(m), None);
        assert_eq!(i["name"], json!("My-Pkg"));
        assert_eq!(i["requires_dist"], json!(["a", "b>=1"]));
        assert_eq!(i["classifiers"], json!(["X :: Y"]));
        assert_eq!(i["project_urls"], json!({"Source": "https://example.org/src"}));
        assert_eq!(i["description"], json!("The README."));
        let bare = info_json("http://h/repository/r", "my-pkg", "my-pkg", "1.0", None, None);
        assert_eq!((bare["name"].clone(), bare["requires_dist"].clone()), (json!("my-pkg"), Value::Null));
    }
}
