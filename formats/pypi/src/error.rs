//! PyPI errors and their one mapping to HTTP: plain text, as PyPI's upload API answers (twine
//! shows the body), with a Basic challenge on 401 so that pip retries with credentials.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use wharf_format::{BlobError, DownloadError, MetaError, QuotaError, QuotaExceeded};

use crate::attestation::AttestationError;

#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("File already exists: {0}")]
    FileExists(String),
    /// PEP 740 attestations that are malformed or not of the uploaded file (Warehouse's words).
    #[error("Invalid attestations supplied during upload: {0}")]
    Attestation(#[from] AttestationError),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("range not satisfiable: the file has {0} bytes")]
    RangeNotSatisfiable(u64),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    TooLarge(String),
    /// The upstream of a proxy failed, and nothing cached can stand in.
    #[error("{0}")]
    Upstream(String),
    /// The repository's hard quota is used up: uploads are refused, downloads go on.
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    #[error("insufficient storage: {0}")]
    NoSpace(String),
    /// The server is in read-only mode: uploads are refused, downloads go on.
    #[error("{0}")]
    Frozen(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error>),
}

impl PypiError {
    pub fn to_response(&self) -> HttpResponse {
        let status = match self {
            PypiError::BadRequest(_) | PypiError::FileExists(_) | PypiError::Attestation(_) => StatusCode::BAD_REQUEST,
            PypiError::Unauthorized => StatusCode::UNAUTHORIZED,
            PypiError::Forbidden(_) | PypiError::QuotaExceeded(_) | PypiError::Frozen(_) => StatusCode::FORBIDDEN,
            PypiError::NotFound => StatusCode::NOT_FOUND,
            PypiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            PypiError::MethodNotAllowed | PypiError::ReadOnly(_) => StatusCode::METHOD_NOT_ALLOWED,
            PypiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            PypiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PypiError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            PypiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let PypiError::Internal(source) = self {
            tracing::error!(error = %source, "pypi request failed");
        }
        let mut res = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", r#"Basic realm="wharf""#));
        }
        if let PypiError::RangeNotSatisfiable(size) = self {
            res.insert_header(("Content-Range", format!("bytes */{size}")));
        }
        match self {
            PypiError::QuotaExceeded(_) => res.reason(reason_phrase(&self.to_string(), "Quota exceeded")),
            PypiError::Frozen(_) => res.reason(reason_phrase(&self.to_string(), "Read-only mode")),
            PypiError::Attestation(_) => res.reason(reason_phrase(&self.to_string(), "Invalid attestations supplied during upload")),
            _ => &mut res,
        };
        res.content_type("text/plain; charset=utf-8").body(format!("{}\n", self))
    }
}

/// How many distinct reason phrases [`reason_phrase`] keeps, and how long one may be.
const REASONS_KEPT: usize = 256;
const REASON_CHARS: usize = 300;

/// twine prints a refused upload's status line (`403 Client Error: <reason> for url: ...`) and
/// shows the body only with `--verbose`; Warehouse puts its upload errors in the reason phrase
/// for that reason, and so does wharf for a quota, read-only mode or attestations. actix takes
/// a `&'static str` there, so phrases are interned: at most [`REASONS_KEPT`] distinct ones, then
/// `fallback`, so refusals cannot grow memory without bound.
fn reason_phrase(message: &str, fallback: &'static str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static KEPT: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    // RFC 9112: a reason phrase is tabs, spaces and visible characters (ASCII here).
    // And short: a message quoting what a client sent (an attestation's subject) would make a
    // status line past what clients read (Python's http.client: 64 KiB), and each kept one is
    // held for good.
    let mut phrase: String = message.chars().take(REASON_CHARS + 1).map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect();
    if phrase.len() > REASON_CHARS {
        phrase.truncate(REASON_CHARS - 3);
        phrase.push_str("...");
    }
    let mut kept = KEPT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = kept.get(phrase.as_str()) {
        return p;
    }
    if kept.len() >= REASONS_KEPT {
        return fallback;
    }
    let p: &'static str = Box::leak(phrase.into_boxed_str());
    kept.insert(p);
    p
}

/// A refusal of the components API's upload: the status and message twine would get for the
/// same file (a file already there is a 400 "File already exists", as for twine).
impl From<PypiError> for wharf_format::UploadError {
    fn from(e: PypiError) -> Self {
        use wharf_format::UploadError;
        match e {
            PypiError::BadRequest(_) | PypiError::FileExists(_) => UploadError::invalid("pypi.asset", e.to_string()),
            PypiError::Unauthorized => UploadError::Unauthenticated,
            PypiError::Forbidden(m) => UploadError::Forbidden(m),
            PypiError::TooLarge(m) => UploadError::TooLarge(m),
            PypiError::QuotaExceeded(q) => UploadError::QuotaExceeded(q),
            PypiError::NoSpace(m) => UploadError::NoSpace(m),
            PypiError::Frozen(m) => UploadError::ReadOnly(m),
            PypiError::ReadOnly(m) => UploadError::Unsupported(m),
            other => UploadError::Internal(Box::new(other)),
        }
    }
}

impl From<QuotaError> for PypiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(e) => PypiError::QuotaExceeded(e),
            QuotaError::Meta(e) => e.into(),
        }
    }
}

impl From<MetaError> for PypiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NoSpace => PypiError::NoSpace(e.to_string()),
            MetaError::ReadOnly(m) => PypiError::Frozen(m),
            e => PypiError::Internal(Box::new(e)),
        }
    }
}

impl From<DownloadError> for PypiError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::RangeNotSatisfiable { size } => PypiError::RangeNotSatisfiable(size),
            DownloadError::Blob(e) => e.into(),
        }
    }
}

impl From<BlobError> for PypiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => PypiError::NotFound,
            BlobError::DigestMismatch { expected, actual } => {
                PypiError::BadRequest(format!("sha256_digest {expected} does not match the uploaded file ({actual})"))
            }
            BlobError::Body(m) => PypiError::BadRequest(format!("request body: {m}")),
            e @ BlobError::NoSpace(_) => PypiError::NoSpace(e.to_string()),
            other => PypiError::Internal(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_refusal_carries_its_message_in_the_status_line() {
        let e = PypiError::QuotaExceeded(QuotaExceeded { repository: "pypi-q".into(), used: 10, limit: 5 });
        let res = e.to_response();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.head().reason(), "quota exceeded: repository pypi-q holds 10 bytes and its hard quota is 5 bytes");
        assert!(std::ptr::eq(reason_phrase("same\r\nline", "x"), reason_phrase("same\r\nline", "x")), "interned once");
        assert_eq!(reason_phrase("same\r\nline", "x"), "same??line");
        let long = format!("subject {} is not this file", "n".repeat(128 << 10));
        let phrase = reason_phrase(&long, "x");
        assert!(phrase.len() == REASON_CHARS && phrase.starts_with("subject nnn") && phrase.ends_with("..."), "{}", phrase.len());
    }
}
