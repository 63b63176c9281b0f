//! A client for an upstream npm registry (registry.npmjs.org, verdaccio, another wharf).
//! Credentials go only to the registry's own origin, never to a tarball host it links to.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use url::Url;

/// The most a packument from upstream may weigh.
const MAX_DOC: usize = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("not found upstream")]
    NotFound,
    #[error("the upstream refused wharf's credentials")]
    Unauthorized,
    #[error("the upstream rate-limits wharf")]
    TooManyRequests,
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    #[error("the upstream answered something unusable: {0}")]
    Invalid(String),
}

pub enum Doc {
    NotModified,
    Fresh { doc: Value, etag: Option<String> },
}

pub struct Upstream {
    /// Ends in `/`.
    base: Url,
    client: reqwest::Client,
    credentials: Option<(String, String)>,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(i) = src {
        s.push_str(": ");
        s.push_str(&i.to_string());
        src = i.source();
    }
    s
}

impl Upstream {
    pub fn new(remote: &str, credentials: Option<(String, String)>, connect_timeout: Duration, read_timeout: Duration) -> Result<Upstream, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let base = Url::parse(&format!("{}/", remote.trim_end_matches('/'))).map_err(|e| e.to_string())?;
        Ok(Upstream { base, client, credentials })
    }

    fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, url.clone());
        if let Some((u, p)) = &self.credentials {
            if url.origin() == self.base.origin() {
                r = r.basic_auth(u, Some(p));
            }
        }
        r
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<Response, UpstreamError> {
        let res = r.send().await.map_err(|e| UpstreamError::Unavailable(chain(&e)))?;
        match res.status() {
            s if s.is_success() || s == StatusCode::NOT_MODIFIED => Ok(res),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(UpstreamError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(UpstreamError::TooManyRequests),
            s if s.is_server_error() => Err(UpstreamError::Unavailable(format!("{} answered {s}", res.url()))),
            s => Err(UpstreamError::Invalid(format!("{} answered {s}", res.url()))),
        }
    }

    /// The full packument, revalidated with `etag` when the cache holds one.
    pub async fn packument(&self, name: &str, etag: Option<&str>) -> Result<Doc, UpstreamError> {
        let url = self.base.join(&name.replace('/', "%2f")).map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        let mut r = self.request(reqwest::Method::GET, &url).header(ACCEPT, "application/json");
        if let Some(e) = etag {
            r = r.header(IF_NONE_MATCH, e);
        }
        let res = self.send(r).await?;
        if res.status() == StatusCode::NOT_MODIFIED {
            return Ok(Doc::NotModified);
        }
        let etag = res.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_limited(res, MAX_DOC).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| UpstreamError::Invalid(format!("packument of {name}: {e}")))?;
        if doc.get("versions").is_some_and(|v| !v.is_object()) {
            return Err(UpstreamError::Invalid(format!("packument of {name} has no versions object")));
        }
        Ok(Doc::Fresh { doc, etag })
    }

    pub async fn get(&self, url: &str) -> Result<Response, UpstreamError> {
        let url = Url::parse(url).map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        self.send(self.request(reqwest::Method::GET, &url)).await
    }

    /// Passes a request through (npm audit): the upstream's status and body come back as is.
    pub async fn forward(&self, path: &str, body: Bytes, content_type: Option<&str>, content_encoding: Option<&str>) -> Result<(u16, Option<String>, Bytes), UpstreamError> {
        let url = self.base.join(path.trim_start_matches('/')).map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        let mut r = self.request(reqwest::Method::POST, &url).body(body);
        if let Some(c) = content_type {
            r = r.header(CONTENT_TYPE, c);
        }
        if let Some(c) = content_encoding {
            r = r.header(CONTENT_ENCODING, c);
        }
        let res = r.send().await.map_err(|e| UpstreamError::Unavailable(chain(&e)))?;
        let status = res.status().as_u16();
        let ct = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_limited(res, 16 << 20).await?;
        Ok((status, ct, body))
    }
}

async fn read_limited(res: Response, limit: usize) -> Result<Bytes, UpstreamError> {
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(UpstreamError::Invalid(format!("{} is larger than {limit} bytes", res.url())));
    }
    let url = res.url().to_string();
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unavailable(chain(&e)))?;
        if body.len() + chunk.len() > limit {
            return Err(UpstreamError::Invalid(format!("{url} is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
