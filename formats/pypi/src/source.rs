//! What a PyPI repository holds, as its routes and its groups read it: hosted and proxy
//! repositories implement [`Source`]; a group asks its members through it (typed, not over
//! HTTP) and renders their files under its own URLs.

use actix_web::http::header;
use actix_web::HttpResponse;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use wharf_format::{Asset, BlobStore, Digest, RepoRef, Want};

use crate::archive;
use crate::error::PypiError;
use crate::index::FileEntry;
use crate::model::FileKind;

pub type Result<T, E = PypiError> = std::result::Result<T, E>;

#[async_trait(?Send)]
pub trait Source {
    /// The files of a project, or `None` when this repository does not know the project.
    async fn files(&self, normalized: &str) -> Result<Option<Vec<FileEntry>>>;

    /// Whether this repository knows the project (`None`: it does not) and, if so, whether
    /// `filename` is one of its files: what a group asks of its members before serving a file,
    /// on every install. By default from [`Source::files`]; a hosted repository answers from
    /// the file's row instead of reading every file of the project.
    async fn has_file(&self, normalized: &str, filename: &str) -> Result<Option<bool>> {
        Ok(self.files(normalized).await?.map(|files| files.iter().any(|f| f.filename == filename)))
    }

    /// The projects this repository knows: (normalized, display name).
    async fn projects(&self) -> Result<Vec<(String, String)>>;

    /// A file of a project, or its PEP 658 metadata (`<file>.metadata`).
    async fn serve(&self, normalized: &str, filename: &str, want: &Want) -> Result<HttpResponse>;

    /// A file's PEP 740 provenance object (the Integrity API), or `NotFound` when the file, at
    /// that version, has none.
    async fn provenance(&self, normalized: &str, version: &str, filename: &str) -> Result<HttpResponse>;
}

/// The caller's right to `action` on `object` (a normalized project, or `*`), as PyPI errors.
pub fn authorize(ctx: &wharf_format::RepoCtx, action: wharf_format::Action, object: &str) -> Result<()> {
    match ctx.check(action, object) {
        Ok(()) => Ok(()),
        Err(wharf_format::Denied::Unauthenticated) => Err(PypiError::Unauthorized),
        Err(wharf_format::Denied::Forbidden) => Err(PypiError::Forbidden(format!("{action:?} access to {} is denied", ctx.repo.name).to_lowercase())),
    }
}

/// The PyPI repository behind a group member, if it is one this crate opened.
pub fn source_of(r: &RepoRef) -> Option<&dyn Source> {
    let any = r.repo.as_any()?;
    if let Some(h) = any.downcast_ref::<crate::hosted::Hosted>() {
        return Some(h);
    }
    if let Some(p) = any.downcast_ref::<crate::proxy::Proxy>() {
        return Some(p);
    }
    None
}

/// Serves a stored distribution file (whole, its head, or a range of it).
pub async fn file_response(blobs: &BlobStore, asset: &Asset, want: &Want) -> Result<HttpResponse> {
    let digest: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| PypiError::Internal(Box::new(e)))?;
    let mut res = HttpResponse::Ok();
    res.content_type(asset.content_type.clone().unwrap_or_else(|| FileKind::Wheel.content_type().into()))
        .insert_header((header::ETAG, format!("\"{}\"", digest.hex())))
        .insert_header((header::CACHE_CONTROL, "max-age=31536000, immutable"));
    Ok(wharf_format::download::respond(blobs, &digest, asset.size as u64, want, res).await?)
}

/// Serves core metadata kept as a blob (hex sha256), to a GET or a HEAD alike: actix-http
/// answers a HEAD with the head alone, whose length is then the GET's.
pub async fn metadata_response(blobs: &BlobStore, hex: &str) -> Result<HttpResponse> {
    let digest: Digest = format!("sha256:{hex}").parse().map_err(|e| PypiError::Internal(Box::new(e)))?;
    let bytes = blobs.read_small(&digest, archive::MAX_METADATA).await?;
    Ok(metadata_bytes_response(bytes))
}

pub fn metadata_bytes_response(bytes: Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(bytes)
}

/// Serves a provenance object (PEP 740's Integrity API), to a GET or a HEAD alike.
pub fn provenance_response(bytes: Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type(crate::attestation::INTEGRITY_TYPE).body(bytes)
}

/// A hosted or cached file asset as a project page lists it.
pub fn entry_of(a: &Asset) -> FileEntry {
    let attr = |k: &str| a.attributes.get(k).and_then(Value::as_str).map(str::to_string);
    FileEntry {
        filename: a.path.rsplit('/').next().unwrap_or_default().to_string(),
        sha256: a.digest.as_deref().map(|d| d.trim_start_matches("sha256:").to_string()),
        requires_python: attr("requires_python"),
        yanked: match a.attributes.get("yanked") {
            Some(Value::String(reason)) => Some(reason.clone()),
            Some(Value::Bool(true)) => Some(String::new()),
            _ => None,
        },
        size: Some(a.size),
        upload_time: Some(wharf_format::rfc3339_millis(a.attributes.get("upload_time").and_then(Value::as_i64).unwrap_or(a.created_at))),
        version: attr("version"),
        core_metadata: attr("core_metadata"),
        provenance: attr("provenance"),
        upstream_url: None,
    }
}
