//! npm errors and their one mapping to HTTP: `{"error": "..."}` bodies, which the npm CLI
//! prints, and a Basic challenge on 401.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use wharf_format::{BlobError, DownloadError, IdentityError, MetaError, QuotaError, QuotaExceeded};

#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("range not satisfiable: the file has {0} bytes")]
    RangeNotSatisfiable(u64),
    /// A registry service this repository does not provide (404, with why).
    #[error("{0}")]
    NotProvided(String),
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Upstream(String),
    /// The registry's hard quota is used up: publishes are refused, installs go on.
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    #[error("insufficient storage: {0}")]
    NoSpace(String),
    /// The server is in read-only mode: publishes, dist-tags and logins are refused, installs go on.
    #[error("{0}")]
    ReadOnly(String),
    /// Credentials that could not be checked now (503, try again).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error>),
}

impl NpmError {
    pub fn to_response(&self) -> HttpResponse {
        let status = match self {
            NpmError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NpmError::Unauthorized => StatusCode::UNAUTHORIZED,
            NpmError::Forbidden(_) | NpmError::QuotaExceeded(_) | NpmError::ReadOnly(_) => StatusCode::FORBIDDEN,
            NpmError::NotFound | NpmError::NotProvided(_) => StatusCode::NOT_FOUND,
            NpmError::Conflict(_) => StatusCode::CONFLICT,
            NpmError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            NpmError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NpmError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            NpmError::Upstream(_) => StatusCode::BAD_GATEWAY,
            NpmError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            NpmError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            NpmError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let NpmError::Internal(source) = self {
            tracing::error!(error = %source, "npm request failed");
        }
        let mut res = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", r#"Basic realm="wharf""#));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header(wharf_format::retry_after());
        }
        if let NpmError::RangeNotSatisfiable(size) = self {
            res.insert_header(("Content-Range", format!("bytes */{size}")));
        }
        res.content_type("application/json").body(serde_json::json!({ "error": self.to_string() }).to_string())
    }
}

/// A refusal of the components API's upload: the status and message npm publish would get
/// for the same tarball (a version already there is a 403, as for npm).
impl From<NpmError> for wharf_format::UploadError {
    fn from(e: NpmError) -> Self {
        use wharf_format::UploadError;
        match e {
            NpmError::BadRequest(m) => UploadError::invalid("npm.asset", m),
            NpmError::Unauthorized => UploadError::Unauthenticated,
            NpmError::Forbidden(m) => UploadError::Forbidden(m),
            NpmError::Conflict(m) => UploadError::Conflict(m),
            NpmError::TooLarge(m) => UploadError::TooLarge(m),
            NpmError::QuotaExceeded(q) => UploadError::QuotaExceeded(q),
            NpmError::NoSpace(m) => UploadError::NoSpace(m),
            NpmError::ReadOnly(m) => UploadError::ReadOnly(m),
            other => UploadError::Internal(Box::new(other)),
        }
    }
}

impl From<MetaError> for NpmError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NoSpace => NpmError::NoSpace(e.to_string()),
            MetaError::ReadOnly(m) => NpmError::ReadOnly(m),
            e => NpmError::Internal(Box::new(e)),
        }
    }
}

impl From<QuotaError> for NpmError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(e) => NpmError::QuotaExceeded(e),
            QuotaError::Meta(e) => e.into(),
        }
    }
}

impl From<DownloadError> for NpmError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::RangeNotSatisfiable { size } => NpmError::RangeNotSatisfiable(size),
            DownloadError::Blob(e) => e.into(),
        }
    }
}

impl From<BlobError> for NpmError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => NpmError::NotFound,
            e @ BlobError::NoSpace(_) => NpmError::NoSpace(e.to_string()),
            other => NpmError::Internal(Box::new(other)),
        }
    }
}

impl From<IdentityError> for NpmError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::NotAllowed(why) => NpmError::Forbidden(why.into()),
            IdentityError::Unavailable(why) => NpmError::Unavailable(why),
            other => NpmError::Internal(Box::new(other)),
        }
    }
}
