//! Nexus's component upload (`POST /service/rest/v1/components?repository=<name>`, a multipart
//! form such as `-F "pypi.asset=@pkg-1.0-py3-none-any.whl"`) as a format receives it through
//! [`crate::Repo::upload_component`]: the server resolves the repository and the caller and hands
//! the form over unread; the format takes its file through [`ComponentUpload`] under its own
//! size limit, staged on disk (never whole in memory) and published only once it passed the
//! format's checks. The form's rules are Nexus's (`ValidatingComponentUpload`), kept here once
//! for every format.

use actix_web::http::header::HeaderMap;
use actix_web::web;
use futures::StreamExt;

use crate::blob::{BlobError, BlobStore, Staged};
use crate::config::{Kind, RepoConfig};
use crate::quota::QuotaExceeded;

/// Why an upload was refused. The server maps it to the admin API's answer in one place; a
/// format maps its own protocol errors into it so that a caller gets the refusal (status and
/// message) its protocol's client would get for the same file.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// This repository takes no component uploads (its format, or its kind).
    #[error("{0}")]
    Unsupported(String),
    /// The form or its file is refused; `field` names what (Nexus's validation error `id`).
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("authentication required")]
    Unauthenticated,
    /// The caller may not do this, or the repository refuses it (a version already there).
    #[error("{0}")]
    Forbidden(String),
    /// Others kept changing the same thing until the format gave up waiting.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    /// The server is in read-only mode.
    #[error("{0}")]
    ReadOnly(String),
    /// The message says why (a full disk, or the reserve kept free).
    #[error("{0}")]
    NoSpace(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error>),
}

impl UploadError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> UploadError {
        UploadError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<BlobError> for UploadError {
    fn from(e: BlobError) -> UploadError {
        match e {
            e @ BlobError::NoSpace(_) => UploadError::NoSpace(e.to_string()),
            other => UploadError::Internal(Box::new(other)),
        }
    }
}

/// The refusal of a repository that takes no uploads, in Nexus's words (`UploadManagerImpl`):
/// the kind is checked first, then the format.
pub fn unsupported(repo: &RepoConfig) -> UploadError {
    if repo.kind != Kind::Hosted {
        return UploadError::Unsupported(format!("Uploading components to a '{}' type repository is unsupported, must be 'hosted'", repo.kind));
    }
    UploadError::Unsupported(format!("Uploading components to '{}' repositories is unsupported", repo.format))
}

/// The upload form, not read yet.
pub struct ComponentUpload {
    form: actix_multipart::Multipart,
    format: String,
}

/// A file of the form, staged: dropped unpublished, its bytes go.
pub struct UploadedFile<'a> {
    /// As the client named it (curl: the local file's name); the format checks it.
    pub filename: String,
    pub staged: Staged<'a>,
}

impl ComponentUpload {
    /// The form of a request to a repository of `format`.
    pub fn new(format: &str, headers: &HeaderMap, body: web::Payload) -> ComponentUpload {
        ComponentUpload { form: actix_multipart::Multipart::new(headers, body), format: format.to_string() }
    }

    /// The name of the form's file field: `<format>.asset`.
    pub fn asset_field(&self) -> String {
        format!("{}.asset", self.format)
    }

    /// The form's one file, `<format>.asset` (or `asset`, which Nexus also takes), staged in
    /// `blobs`, at most `limit` bytes. Any other field is refused by name, as are a second
    /// file and none: formats whose components are one file (PyPI, npm) take no other field.
    pub async fn single_asset(mut self, blobs: &BlobStore, limit: u64) -> Result<UploadedFile<'_>, UploadError> {
        let field_name = self.asset_field();
        let mut file: Option<UploadedFile<'_>> = None;
        while let Some(part) = self.form.next().await {
            let mut part = part.map_err(|e| UploadError::invalid("body", format!("not a multipart/form-data upload: {e}")))?;
            let name = part.name().unwrap_or_default().to_string();
            if name != field_name && name != "asset" {
                return Err(UploadError::invalid(&name, format!("Unknown component field '{name}': a {} upload is one file in {field_name}", self.format)));
            }
            let filename = part
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .ok_or_else(|| UploadError::invalid(&field_name, format!("{field_name} is not a file (curl: -F \"{field_name}=@<file>\")")))?;
            if file.is_some() {
                return Err(UploadError::invalid(&field_name, format!("one file per {} upload", self.format)));
            }
            let staged = match blobs.stage_limited(&mut part, limit).await {
                Ok(s) => s,
                Err(BlobError::TooLarge { .. }) => {
                    return Err(UploadError::TooLarge(format!("{filename} is larger than this repository's limit of {} MiB", limit >> 20)))
                }
                Err(BlobError::Body(m)) => return Err(UploadError::invalid(&field_name, format!("request body: {m}"))),
                Err(e) => return Err(e.into()),
            };
            file = Some(UploadedFile { filename, staged });
        }
        file.ok_or_else(|| UploadError::invalid(&field_name, format!("No assets found in upload: send the file in {field_name}")))
    }
}
