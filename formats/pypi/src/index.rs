//! The Simple API's pages (PEP 503 HTML and PEP 691 JSON, with PEP 592, 658/714, 700 and 740 fields),
//! rendered the same way whichever repository kind holds the files.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{self, html_escape, negotiate, Representation};

/// One distribution file as a project page lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub filename: String,
    /// Hex sha256, when known (always for hosted files).
    pub sha256: Option<String>,
    pub requires_python: Option<String>,
    /// `Some(reason)` when yanked; the reason may be empty.
    pub yanked: Option<String>,
    pub size: Option<i64>,
    /// RFC 3339.
    pub upload_time: Option<String>,
    pub version: Option<String>,
    /// PEP 658 metadata: `Some(hex sha256)`, or `Some("")` when available without a hash.
    pub core_metadata: Option<String>,
    /// PEP 740: set when the file has a provenance object (hosted: its blob's hex sha256;
    /// proxy: the upstream's URL for it). Pages link wharf's own Integrity API URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    /// Where a proxy fetches the file (absolute URL); never shown to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
}

/// Wheels up to this size are listed without their PEP 658 metadata (which stays served).
///
/// The metadata saves a resolver the download of a wheel it may reject; a wheel this small
/// arrives in the same round trip as its metadata would (a fresh connection's first TCP window
/// is about 14 KB), and an install fetches the wheel anyway, so the metadata only adds a request
/// (pip spends some 6 ms of its own on each, against a 1 KiB wheel's 0.1 ms on the wire).
/// Source distributions always keep theirs: it spares a build, not a download.
pub const SMALL_WHEEL_BYTES: i64 = 16 << 10;

/// Whether a file is a wheel pages list without its metadata: see [`SMALL_WHEEL_BYTES`].
pub fn small_wheel(filename: &str, size: Option<i64>) -> bool {
    filename.ends_with(".whl") && size.is_some_and(|n| n <= SMALL_WHEEL_BYTES)
}

/// The PEP 658 metadata a page advertises for `f`.
fn advertised_metadata(f: &FileEntry) -> Option<&str> {
    f.core_metadata.as_deref().filter(|_| !small_wheel(&f.filename, f.size))
}

/// A project page: `files` are served under `<base>/packages/<normalized>/<filename>`.
pub fn project_page(req: &HttpRequest, base: &str, normalized: &str, files: &[FileEntry]) -> HttpResponse {
    let accept = crate::hosted::accept(req);
    let url = |f: &FileEntry| format!("{base}/packages/{normalized}/{}", f.filename);
    let provenance = |f: &FileEntry| provenance_url(base, normalized, f);
    match negotiate(accept) {
        Representation::Json => {
            // PEP 700's fields are mandatory in 1.1; a proxied HTML page may not tell sizes.
            let v11 = files.iter().all(|f| f.size.is_some());
            let versions: BTreeSet<String> = files.iter().filter_map(|f| f.version.clone().or_else(|| model::version_of(&f.filename))).collect();
            let files: Vec<Value> = files
                .iter()
                .map(|f| {
                    let mut o = json!({
                        "filename": f.filename,
                        "url": url(f),
                        "hashes": f.sha256.as_ref().map_or(json!({}), |h| json!({"sha256": h})),
                        "requires-python": f.requires_python,
                        "yanked": match &f.yanked { Some(r) if !r.is_empty() => json!(r), Some(_) => json!(true), None => json!(false) },
                        "core-metadata": core_metadata_json(advertised_metadata(f)),
                        "dist-info-metadata": core_metadata_json(advertised_metadata(f)),
                    });
                    if let Some(p) = provenance(f) {
                        o["provenance"] = json!(p);
                    }
                    if v11 {
                        o["size"] = json!(f.size);
                        if let Some(t) = &f.upload_time {
                            o["upload-time"] = json!(t);
                        }
                    }
                    o
                })
                .collect();
            let mut page = json!({"meta": {"api-version": if v11 { "1.1" } else { "1.0" }}, "name": normalized, "files": files});
            if v11 {
                page["versions"] = json!(versions);
            }
            json_response(req, page)
        }
        Representation::Html => {
            let mut html = format!(
                "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Links for {0}</title></head>\n<body>\n<h1>Links for {0}</h1>\n",
                html_escape(normalized)
            );
            for f in files {
                html.push_str(&format!("<a href=\"{}", html_escape(&url(f))));
                if let Some(h) = &f.sha256 {
                    html.push_str(&format!("#sha256={h}"));
                }
                html.push('"');
                if let Some(rp) = &f.requires_python {
                    html.push_str(&format!(" data-requires-python=\"{}\"", html_escape(rp)));
                }
                match advertised_metadata(f) {
                    // PEP 714's name, and PEP 658's for clients that predate it.
                    Some("") => html.push_str(" data-core-metadata=\"true\" data-dist-info-metadata=\"true\""),
                    Some(h) => html.push_str(&format!(" data-core-metadata=\"sha256={h}\" data-dist-info-metadata=\"sha256={h}\"")),
                    None => {}
                }
                if let Some(p) = provenance(f) {
                    html.push_str(&format!(" data-provenance=\"{}\"", html_escape(&p)));
                }
                if let Some(reason) = &f.yanked {
                    html.push_str(&format!(" data-yanked=\"{}\"", html_escape(reason)));
                }
                html.push_str(&format!(">{}</a><br/>\n", html_escape(&f.filename)));
            }
            html.push_str("</body>\n</html>\n");
            html_response(req, html, accept)
        }
    }
}

/// PEP 740: where the Integrity API serves a file's provenance, for files that have one.
fn provenance_url(base: &str, normalized: &str, f: &FileEntry) -> Option<String> {
    f.provenance.as_ref()?;
    let version = f.version.clone().or_else(|| model::version_of(&f.filename))?;
    Some(format!("{base}/integrity/{normalized}/{version}/{}/provenance", f.filename))
}

fn core_metadata_json(m: Option<&str>) -> Value {
    match m {
        None => json!(false),
        Some("") => json!(true),
        Some(h) => json!({"sha256": h}),
    }
}

/// The root page: `projects` are (normalized, display) pairs.
pub fn index_page(req: &HttpRequest, base: &str, projects: &[(String, String)]) -> HttpResponse {
    let accept = crate::hosted::accept(req);
    match negotiate(accept) {
        Representation::Json => json_response(
            req,
            json!({
                "meta": {"api-version": "1.1"},
                "projects": projects.iter().map(|(_, d)| json!({"name": d})).collect::<Vec<_>>(),
            }),
        ),
        Representation::Html => {
            let mut html = String::from(
                "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Simple index</title></head>\n<body>\n",
            );
            for (norm, display) in projects {
                html.push_str(&format!("<a href=\"{base}/simple/{}/\">{}</a><br/>\n", html_escape(norm), html_escape(display)));
            }
            html.push_str("</body>\n</html>\n");
            html_response(req, html, accept)
        }
    }
}

fn json_response(req: &HttpRequest, v: Value) -> HttpResponse {
    page_response(req, model::JSON_TYPE, v.to_string())
}

fn html_response(req: &HttpRequest, html: String, accept: Option<&str>) -> HttpResponse {
    let ct = if accept.is_some_and(|a| a.contains(model::HTML_TYPE)) { model::HTML_TYPE } else { "text/html; charset=utf-8" };
    page_response(req, ct, html)
}

/// A page with a strong ETag of its bytes. pip keeps index pages in its HTTP cache and
/// revalidates them on every install (uv too), so a page that has not changed (a proxied
/// project of thousands of files runs to megabytes) is answered with a 304 instead.
fn page_response(req: &HttpRequest, content_type: &str, body: String) -> HttpResponse {
    // Of the type too: two types of one HTML page are two representations (RFC 9110 8.8.1).
    use sha2::Digest as _;
    let hash = sha2::Sha256::new().chain_update(content_type).chain_update(b"\n").chain_update(&body).finalize();
    let etag = format!("\"{}\"", hex::encode(&hash[..16]));
    if wharf_format::download::not_modified(req, &etag) {
        return HttpResponse::NotModified().insert_header((header::ETAG, etag)).insert_header((header::VARY, "Accept")).finish();
    }
    HttpResponse::Ok()
        .content_type(content_type.to_string())
        .insert_header((header::ETAG, etag))
        .insert_header((header::VARY, "Accept"))
        .body(wharf_format::body_in_parts(body.into()))
}
