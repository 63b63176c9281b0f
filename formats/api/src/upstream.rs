//! The HTTP side of a proxy repository: one client per upstream with its timeouts, credentials
//! sent only to the upstream's own origin (never to a file host it links to), statuses mapped
//! to what a proxy acts on, and bodies read under a size limit.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Response, StatusCode};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("not found upstream")]
    NotFound,
    #[error("the upstream refused wharf's credentials")]
    Unauthorized,
    #[error("the upstream rate-limits wharf")]
    TooManyRequests,
    /// Unreachable, timed out, or a 5xx: worth serving stale content for.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    #[error("the upstream answered something unusable: {0}")]
    Invalid(String),
}

pub struct HttpUpstream {
    /// The upstream's base URL; its origin is where credentials may go.
    pub base: Url,
    client: reqwest::Client,
    credentials: Option<(String, String)>,
}

/// An error with its sources, for messages that say why a connection failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl HttpUpstream {
    pub fn new(base: Url, credentials: Option<(String, String)>, connect_timeout: Duration, read_timeout: Duration) -> Result<HttpUpstream, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpUpstream { base, client, credentials })
    }

    pub fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, url.clone());
        if let Some((u, p)) = &self.credentials {
            if url.origin() == self.base.origin() {
                r = r.basic_auth(u, Some(p));
            }
        }
        r
    }

    /// Sends a request; success and 304 come back, everything else as an [`UpstreamError`].
    pub async fn send(&self, r: reqwest::RequestBuilder) -> Result<Response, UpstreamError> {
        let res = r.send().await.map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?;
        match res.status() {
            s if s.is_success() || s == StatusCode::NOT_MODIFIED => Ok(res),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(UpstreamError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(UpstreamError::TooManyRequests),
            s if s.is_server_error() => Err(UpstreamError::Unavailable(format!("{} answered {s}", res.url()))),
            s => Err(UpstreamError::Invalid(format!("{} answered {s}", res.url()))),
        }
    }

    /// A GET of an absolute URL (a file the upstream's index links to).
    pub async fn get(&self, url: &str) -> Result<Response, UpstreamError> {
        let url = Url::parse(url).map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        self.send(self.request(reqwest::Method::GET, &url)).await
    }
}

/// A response body, refused past `limit` bytes.
pub async fn read_limited(res: Response, limit: usize) -> Result<Bytes, UpstreamError> {
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(UpstreamError::Invalid(format!("{} is larger than {limit} bytes", res.url())));
    }
    let url = res.url().to_string();
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?;
        if body.len() + chunk.len() > limit {
            return Err(UpstreamError::Invalid(format!("{url} is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
