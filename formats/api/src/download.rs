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
}

impl Want {
    pub fn of(req: &HttpRequest) -> Want {
        if req.method() == Method::HEAD {
            return Want::Head;
        }
        Want::Body { range: req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string) }
    }

    /// The whole body: what a server-side read (a group's member, the JSON API) asks for.
    pub fn whole() -> Want {
        Want::Body { range: None }
    }

    pub fn is_head(&self) -> bool {
        matches!(self, Want::Head)
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

/// A `Range` header against a body of `size` bytes: `Some(None)` for the whole body (a header
/// that asks for several ranges is answered whole, as RFC 9110 allows), `Some(Some((start,
/// end)))` for one range (`end` inclusive, `None`: to the end), `None` when it cannot be
/// satisfied or read.
pub fn parse_range(h: &str, size: u64) -> Option<Option<(u64, Option<u64>)>> {
    let spec = h.strip_prefix("bytes=")?.trim();
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
        Want::Body { range: None } => None,
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
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
