//! A client for an upstream npm registry (registry.npmjs.org, verdaccio, another wharf).
//! Credentials go only to the registry's own origin, never to a tarball host it links to.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::{Response, StatusCode};
use url::Url;
use wharf_format::cache_probe::CacheKind;
pub use wharf_format::upstream::UpstreamError;
use wharf_format::upstream::{read_limited, Health, Healths, HttpUpstream};
use wharf_format::ProxySettings;

use crate::packument::Packument;

/// The most a packument from upstream may weigh.
const MAX_DOC: usize = 128 << 20;

pub enum Doc {
    NotModified,
    /// As the upstream sent it (checked to be an object whose `versions`, if any, is one).
    Fresh {
        doc: Packument,
        etag: Option<String>,
    },
}

pub struct Upstream {
    /// The registry's URL, ending in `/`, is the base.
    http: HttpUpstream,
}

impl Upstream {
    pub fn new(settings: &ProxySettings, healths: &Healths, repo: i64) -> Result<Upstream, String> {
        let base = Url::parse(&format!("{}/", settings.remote_url.trim_end_matches('/'))).map_err(|e| e.to_string())?;
        Ok(Upstream { http: HttpUpstream::new(base, settings, healths, repo)? })
    }

    pub fn health(&self) -> &Health {
        self.http.health()
    }

    /// See [`wharf_format::upstream::Transport::through_cache`].
    pub async fn through_cache<T, E>(&self, kind: CacheKind, request: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
        self.http.through_cache(kind, request).await
    }

    /// The full packument, revalidated with `etag` when the cache holds one.
    pub async fn packument(&self, name: &str, etag: Option<&str>) -> Result<Doc, UpstreamError> {
        // One segment: a scoped name's `/` is sent as `%2f`, as the npm client does (a server
        // or cache that matches the raw path may know only that spelling).
        let mut url = self.http.below(&[name])?;
        if name.contains('/') {
            let path = url.path().replace("%2F", "%2f");
            url.set_path(&path);
        }
        let mut r = self.http.request(reqwest::Method::GET, &url).header(ACCEPT, "application/json");
        if let Some(e) = etag {
            r = r.header(IF_NONE_MATCH, e);
        }
        let res = self.http.send(r).await?;
        if res.status() == StatusCode::NOT_MODIFIED {
            return Ok(Doc::NotModified);
        }
        let etag = res.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_limited(res, MAX_DOC).await?;
        // Read in parts, never whole as values (see `Packument`).
        let doc = Packument::stored(body).map_err(|e| UpstreamError::Invalid(format!("packument of {name}: {e}")))?;
        if !doc.versions_is_object() {
            return Err(UpstreamError::Invalid(format!("packument of {name} has no versions object")));
        }
        Ok(Doc::Fresh { doc, etag })
    }

    pub async fn get(&self, url: &str) -> Result<Response, UpstreamError> {
        self.http.get(url).await
    }

    /// Passes a request through (npm audit): the upstream's status and body come back as is.
    pub async fn forward(
        &self,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<(u16, Option<String>, Bytes), UpstreamError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let url = self.http.below(&segments)?;
        let mut r = self.http.request(reqwest::Method::POST, &url).body(body);
        if let Some(c) = content_type {
            r = r.header(CONTENT_TYPE, c);
        }
        if let Some(c) = content_encoding {
            r = r.header(CONTENT_ENCODING, c);
        }
        let res = self.http.send_raw(r).await?;
        let status = res.status().as_u16();
        let ct = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_limited(res, 16 << 20).await?;
        Ok((status, ct, body))
    }
}
