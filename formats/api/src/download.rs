//! A stored file answered to a GET or a HEAD, the same for every format: the whole file, its
//! head alone, or the one byte range a `Range` header names (RFC 9110), which lets a client
//! resume a download that broke off (pip's `--resume-retries`) or read a wheel's table of
//! contents without the rest (uv, pip's lazy wheels).

use actix_web::body::SizedStream;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use crate::{BlobError, BlobStore, Digest};

/// What a request for a stored file asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// A HEAD: the head the GET would send.
    Head,
    /// A GET, with its `Range` header if it has one.
    Body { range: Option<String> },
    /// The whole body for the server itself (a JSON API answer reading a file): not a download.
    Read,
}

impl Want {
    pub fn of(req: &HttpRequest) -> Want {
        if req.method() == Method::HEAD {
            return Want::Head;
        }
        Want::Body { range: req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string) }
    }

    /// The whole body, for a client.
    pub fn whole() -> Want {
        Want::Body { range: None }
    }

    pub fn is_head(&self) -> bool {
        matches!(self, Want::Head)
    }

    /// Whether answering this counts as a download: a HEAD does not, nor a range that starts
    /// past the first byte (the rest of a download that broke off, or a lazy reader's look at a
    /// wheel's table of contents), or a client's one download would count several times.
    pub fn counts_as_download(&self) -> bool {
        match self {
            Want::Head | Want::Read => false,
            Want::Body { range: None } => true,
            Want::Body { range: Some(h) } => matches!(parse_range(h, u64::MAX), Some(None) | Some(Some((0, _)))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// A `Range` outside the file: the format answers 416 with `Content-Range: bytes */<size>`.
    #[error("range not satisfiable: the file has {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Whether the request's `If-None-Match` names `etag` (or is `*`): the client's copy is current
/// and a 304 answers it (RFC 9110, weak comparison, as for a GET).
pub fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == opaque(etag))
}

/// A `Range` header against a body of `size` bytes: `Some(None)` for the whole body (a header
/// that asks for several ranges, or in a unit other than bytes, is answered whole, as RFC 9110
/// asks), `Some(Some((start, end)))` for one range (`end` inclusive, `None`: to the end), `None`
/// when it cannot be satisfied or read.
pub fn parse_range(h: &str, size: u64) -> Option<Option<(u64, Option<u64>)>> {
    let (unit, spec) = h.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Some(None);
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return Some(None);
    }
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return None;
        }
        return Some(Some((size.saturating_sub(n), None)));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() { None } else { Some(b.parse::<u64>().ok()?) };
    if start >= size || end.is_some_and(|e| e < start) {
        return None;
    }
    Some(Some((start, end)))
}

/// Answers `want` from the blob `digest` of `size` bytes, with the headers `res` already holds
/// (content type, ETag, caching) and `Accept-Ranges: bytes`.
pub async fn respond(blobs: &BlobStore, digest: &Digest, size: u64, want: &Want, mut res: HttpResponseBuilder) -> Result<HttpResponse, DownloadError> {
    res.insert_header((header::ACCEPT_RANGES, "bytes"));
    let range = match want {
        Want::Head => return Ok(crate::head_response(res, Some(size))),
        Want::Body { range: Some(h) } => parse_range(h, size).ok_or(DownloadError::RangeNotSatisfiable { size })?,
        Want::Body { range: None } | Want::Read => None,
    };
    let read = blobs.get(digest, range).await.map_err(|e| match e {
        BlobError::RangeNotSatisfiable => DownloadError::RangeNotSatisfiable { size },
        other => other.into(),
    })?;
    let len = match read.range {
        Some((start, end)) => {
            res.status(StatusCode::PARTIAL_CONTENT).insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{}", read.total)));
            end - start + 1
        }
        None => read.total,
    };
    Ok(res.body(SizedStream::new(len, read.body)))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Some((0, Some(99)))));
        assert_eq!(parse_range("bytes=500-", 1000), Some(Some((500, None))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Some((900, None))));
        assert_eq!(parse_range("bytes=-5000", 1000), Some(Some((0, None))));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Some(None), "several ranges: the whole body");
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=9-3", 1000), None);
        assert_eq!(parse_range("bytes=-0", 1000), None);
        assert_eq!(parse_range("bytes=x-1", 1000), None);
        assert_eq!(parse_range("Bytes=0-1", 1000), Some(Some((0, Some(1)))));
        assert_eq!(parse_range("items=0-1", 1000), Some(None), "a unit it does not know: the whole body");
    }

    #[test]
    fn a_download_counts_once() {
        use super::Want;
        let body = |r: &str| Want::Body { range: Some(r.to_string()) };
        assert!(Want::whole().counts_as_download());
        assert!(body("bytes=0-").counts_as_download());
        assert!(body("bytes=0-1023").counts_as_download());
        assert!(!body("bytes=1024-").counts_as_download(), "the rest of a download that broke off");
        assert!(!body("bytes=-16384").counts_as_download(), "a look at a wheel's table of contents");
        assert!(!Want::Head.counts_as_download());
    }
}
