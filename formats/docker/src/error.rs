//! Docker/OCI errors and their one mapping to the Distribution spec's JSON error format.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use wharf_format::{BlobError, DigestError, DownloadError, MetaError, QuotaError, QuotaExceeded};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest references a blob unknown to registry: {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("authentication required")]
    Unauthorized { challenge: String },
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// A page size `n` that is not a number of at least 0 (Distribution's
    /// `PAGINATION_NUMBER_INVALID`).
    #[error("invalid number of results requested: {0}")]
    PaginationNumberInvalid(String),
    #[error("invalid tag: {0}")]
    TagInvalid(String),
    /// The range of a chunk does not continue the upload.
    #[error("requested range not satisfiable")]
    RangeInvalid { upload_offset: u64, location: String },
    #[error("blob range not satisfiable")]
    BlobRangeInvalid { size: u64 },
    #[error("manifest too large (limit {0} bytes)")]
    ManifestTooLarge(u64),
    #[error("tag {0:?} exists and the repository does not allow overwriting it")]
    TagImmutable(String),
    /// A blob that a manifest of the image uses: deleting it would leave a tag that cannot be pulled.
    #[error("blob {blob} is used by manifest {manifest}; delete the manifest first")]
    BlobInUse { blob: String, manifest: String },
    /// A manifest an index of the image lists: deleting it would leave a tag that cannot be pulled.
    #[error("manifest {manifest} is used by index {index}; delete the index first")]
    ManifestInUse { manifest: String, index: String },
    /// The repository's hard quota is used up: pushes are refused, pulls go on.
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    #[error("insufficient storage: {0}")]
    NoSpace(String),
    /// The server is in read-only mode: pushes and deletes are refused, pulls go on.
    #[error("{0}")]
    ReadOnly(String),
    /// A metadata batch failed; callers match `CheckFailed` to say which precondition.
    #[error("metadata: {0}")]
    Meta(#[source] MetaError),
    #[error("upstream registry: {0}")]
    Upstream(String),
    /// The upstream's rate limit; `retry_after` (seconds) is passed on as `Retry-After`.
    #[error("upstream registry rate limit: {message}")]
    TooManyRequests { message: String, retry_after: Option<u64> },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error>),
}

impl DockerError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use DockerError::*;
        match self {
            BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            PaginationNumberInvalid(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
            TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            RangeInvalid { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            BlobRangeInvalid { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN"),
            ManifestTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            TagImmutable(_) => (StatusCode::FORBIDDEN, "DENIED"),
            // Not a 5xx: clients retry those, and this lasts until an administrator acts.
            // `Meta(ReadOnly)`: a commit refused inside its transaction, whichever way the
            // caller wrapped it.
            QuotaExceeded(_) | ReadOnly(_) | Meta(MetaError::ReadOnly(_)) => (StatusCode::FORBIDDEN, "DENIED"),
            // 405 is the spec's answer for a delete the registry will not do.
            BlobInUse { .. } | ManifestInUse { .. } => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            NoSpace(_) | Meta(MetaError::NoSpace) => (StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN"),
            Meta(_) | Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
            Upstream(_) => (StatusCode::BAD_GATEWAY, "UNKNOWN"),
            TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        }
    }

    pub fn to_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        let message = match self {
            DockerError::Internal(source) => {
                tracing::error!(error = %source, "docker request failed");
                "internal error".to_string()
            }
            DockerError::Meta(MetaError::NoSpace) => "insufficient storage: the metadata database is out of space".to_string(),
            DockerError::Meta(MetaError::ReadOnly(m)) => m.clone(),
            DockerError::Meta(source) => {
                tracing::error!(error = %source, "docker request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(status);
        res.insert_header(("Docker-Distribution-API-Version", "registry/2.0"));
        match self {
            DockerError::Unauthorized { challenge } => {
                res.insert_header(("WWW-Authenticate", challenge.as_str()));
            }
            DockerError::RangeInvalid { upload_offset, location } => {
                res.insert_header(("Location", location.as_str()));
                res.insert_header(("Range", range_header(*upload_offset)));
            }
            DockerError::BlobRangeInvalid { size } => {
                res.insert_header(("Content-Range", format!("bytes */{size}")));
            }
            DockerError::TooManyRequests { retry_after: Some(secs), .. } => {
                res.insert_header(("Retry-After", secs.to_string()));
            }
            _ => {}
        }
        let body = serde_json::json!({ "errors": [ { "code": code, "message": message, "detail": null } ] });
        res.content_type("application/json").body(body.to_string())
    }
}

/// Every Docker answer, success or error, carries the API version header.
pub fn respond(res: Result<HttpResponse, DockerError>) -> HttpResponse {
    let mut res = res.unwrap_or_else(|e| e.to_response());
    res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("docker-distribution-api-version"),
        actix_web::http::header::HeaderValue::from_static("registry/2.0"),
    );
    res
}

/// The `Range` header of an upload holding `offset` bytes. Distribution answers `0-0` for an
/// empty upload, and clients expect exactly that.
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl From<MetaError> for DockerError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NoSpace => DockerError::NoSpace(e.to_string()),
            MetaError::ReadOnly(m) => DockerError::ReadOnly(m),
            e => DockerError::Internal(Box::new(e)),
        }
    }
}

impl From<QuotaError> for DockerError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(e) => DockerError::QuotaExceeded(e),
            QuotaError::Meta(e) => e.into(),
        }
    }
}

impl From<DownloadError> for DockerError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::RangeNotSatisfiable { size } => DockerError::BlobRangeInvalid { size },
            DownloadError::Blob(e) => e.into(),
        }
    }
}

impl From<BlobError> for DockerError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => DockerError::BlobUnknown,
            BlobError::UploadNotFound => DockerError::BlobUploadUnknown,
            BlobError::DigestMismatch { expected, actual } => DockerError::DigestInvalid(format!("expected {expected}, content is {actual}")),
            BlobError::ContentMismatch { expected, actual } => DockerError::DigestInvalid(format!("expected {expected}, content is {actual}")),
            BlobError::Body(m) => DockerError::BlobUploadInvalid(m),
            BlobError::TooLarge { limit } => DockerError::ManifestTooLarge(limit),
            e @ BlobError::NoSpace(_) => DockerError::NoSpace(e.to_string()),
            other => DockerError::Internal(Box::new(other)),
        }
    }
}

impl From<DigestError> for DockerError {
    fn from(e: DigestError) -> Self {
        DockerError::DigestInvalid(e.to_string())
    }
}

/// Distribution's `UNAVAILABLE` (503): the server cannot answer now (its database did not).
pub fn unavailable(message: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(wharf_format::retry_after())
        .json(serde_json::json!({"errors": [{"code": "UNAVAILABLE", "message": message, "detail": null}]}))
}
