//! A client for an upstream registry that speaks the Distribution API: anonymous, Basic, or the
//! Bearer token flow (follow the `WWW-Authenticate` challenge, keep tokens until they expire).
//! The stored credentials go to the remote's origin and to a token realm on that origin or, for
//! an https remote, on any https origin: never elsewhere in clear text, and never from a
//! plain-http remote to a host a challenge names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use wharf_format::cache_probe::CacheKind;
pub use wharf_format::upstream::UpstreamError;
use wharf_format::upstream::{without_userinfo, Health, Healths, Transport};
use wharf_format::ProxySettings;

use crate::model::MANIFEST_TYPES;

pub struct UpstreamManifest {
    pub bytes: Bytes,
    pub content_type: Option<String>,
}

pub struct Upstream {
    base: String,
    transport: Transport,
    credentials: Option<(String, String)>,
    /// Basic credentials with the first request, before any challenge (`authentication.preemptive`).
    preemptive: bool,
    /// Docker Hub: single-name images live under `library/`.
    hub: bool,
    /// Bearer tokens by scope (`repository:<image>:pull`), the last [`TOKENS_KEPT`] used: clients
    /// choose the image names, and a map of every name asked for (each a token of a few KB, which
    /// Docker Hub hands out for any name) grew for as long as the server ran.
    tokens: Mutex<lru::LruCache<String, (String, Instant)>>,
    /// Whether the warning that a token realm gets no credentials was logged: once per
    /// repository (each token fetch would repeat it).
    withheld_logged: AtomicBool,
}

/// Upstream bearer tokens kept per proxy repository (see `Upstream::tokens`).
const TOKENS_KEPT: usize = 1000;

/// Tokens are refreshed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

impl Upstream {
    pub fn new(settings: &ProxySettings, hub: bool, healths: &Healths, repo: i64) -> Result<Upstream, String> {
        let base = settings.remote_url.trim_end_matches('/').to_string();
        let probe = reqwest::Url::parse(&format!("{base}/v2/")).map_err(|e| e.to_string())?;
        Ok(Upstream {
            base,
            transport: Transport::new(settings, healths, repo, probe)?,
            credentials: settings.username.clone().zip(settings.password.clone()),
            preemptive: settings.preemptive,
            hub,
            tokens: Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(TOKENS_KEPT).expect("not zero"))),
            withheld_logged: AtomicBool::new(false),
        })
    }

    pub fn health(&self) -> &Health {
        &self.transport.health
    }

    /// See [`Transport::through_cache`].
    pub async fn through_cache<T, E>(&self, kind: CacheKind, request: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
        self.transport.through_cache(kind, request).await
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        self.credentials.as_ref().map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
    }

    pub fn remote_name(&self, name: &str) -> String {
        if self.hub && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_string()
        }
    }

    fn url(&self, name: &str, suffix: &str) -> String {
        format!("{}/v2/{}/{suffix}", self.base, self.remote_name(name))
    }

    /// Sends a request, answering an authentication challenge once.
    async fn send(&self, method: Method, name: &str, suffix: &str, query: &[(String, String)], headers: HeaderMap) -> Result<Response, UpstreamError> {
        let url = self.url(name, suffix);
        let scope = format!("repository:{}:pull", self.remote_name(name));
        let build = |auth: Option<String>| {
            let mut r = self.transport.client.request(method.clone(), &url).headers(headers.clone()).query(query);
            if let Some(a) = auth {
                r = r.header(AUTHORIZATION, a);
            }
            r
        };
        let first = self.cached_token(&scope).map(|t| format!("Bearer {t}")).or_else(|| self.basic().filter(|_| self.preemptive));
        let res = self.transport.execute(build(first)).await?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return check(res);
        }
        let challenge = res.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let auth = if challenge.len() >= 6 && challenge[..6].eq_ignore_ascii_case("bearer") {
            let token = self.fetch_token(&challenge, &scope).await?;
            Some(format!("Bearer {token}"))
        } else if let Some(basic) = self.basic() {
            Some(basic)
        } else {
            return Err(UpstreamError::Unauthorized);
        };
        check(self.transport.execute(build(auth)).await?)
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(scope).filter(|(_, until)| Instant::now() + TOKEN_MARGIN < *until).map(|(t, _)| t.clone())
    }

    async fn fetch_token(&self, challenge: &str, scope: &str) -> Result<String, UpstreamError> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| UpstreamError::Invalid("Bearer challenge without realm".into()))?;
        let mut q: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(service) = params.get("service") {
            q.push(("service", service));
        }
        let mut r = self.transport.client.get(realm).query(&q);
        if let Some((u, p)) = &self.credentials {
            if self.may_send_credentials_to(realm) {
                r = r.basic_auth(u, Some(p));
            } else if !self.withheld_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    remote = %without_userinfo(&self.base),
                    realm = %without_userinfo(realm),
                    "the upstream's token realm is not its own origin (nor https for an https upstream): asking for tokens without the stored credentials"
                );
            }
        }
        let res = check(self.transport.execute(r).await?)?;
        let body = body_limited(res, MAX_SMALL_ANSWER, "token response").await?;
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| UpstreamError::Invalid(format!("token response: {e}")))?;
        let token =
            body["token"].as_str().or_else(|| body["access_token"].as_str()).ok_or_else(|| UpstreamError::Invalid("token response without token".into()))?;
        // The token spec's default lifetime is 60 s; a day at most (an upstream's `expires_in`
        // near u64::MAX overflowed the deadline and panicked the request).
        let ttl = body["expires_in"].as_u64().unwrap_or(60).min(86_400);
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).put(scope.to_string(), (token.to_string(), Instant::now() + Duration::from_secs(ttl)));
        Ok(token.to_string())
    }

    /// Whether the stored credentials may go to a token `realm` the upstream's challenge names.
    /// The realm is the credentials' second destination (Docker Hub's is auth.docker.io, not
    /// registry-1.docker.io): it gets them when it is the upstream's own origin, or, for an https
    /// upstream, another https origin. A plain-http upstream's challenge can be written by
    /// whoever is on the path, so it sends the password nowhere but where it already goes (not
    /// even to an https host it names: that host could be the attacker's); an https upstream's
    /// challenge is authentic, but must not move the password from https to http.
    fn may_send_credentials_to(&self, realm: &str) -> bool {
        realm_may_receive_credentials(&self.base, realm)
    }

    fn manifest_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, MANIFEST_TYPES.join(", ").parse().expect("media types are valid header text"));
        h
    }

    /// The digest a tag points at upstream (HEAD: no download, and no rate-limit cost on Hub).
    pub async fn head_manifest(&self, name: &str, reference: &str) -> Result<Option<String>, UpstreamError> {
        let res = self.send(Method::HEAD, name, &format!("manifests/{reference}"), &[], Self::manifest_headers()).await?;
        Ok(res.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string))
    }

    pub async fn get_manifest(&self, name: &str, reference: &str, limit: u64) -> Result<UpstreamManifest, UpstreamError> {
        let res = self.send(Method::GET, name, &format!("manifests/{reference}"), &[], Self::manifest_headers()).await?;
        if res.content_length().is_some_and(|n| n > limit) {
            return Err(UpstreamError::Invalid(format!("manifest larger than {limit} bytes")));
        }
        let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = body_limited(res, limit, "manifest").await?;
        Ok(UpstreamManifest { bytes, content_type })
    }

    /// The blob's response, to be streamed.
    pub async fn get_blob(&self, name: &str, digest: &str) -> Result<Response, UpstreamError> {
        self.send(Method::GET, name, &format!("blobs/{digest}"), &[], HeaderMap::new()).await
    }

    pub async fn head_blob(&self, name: &str, digest: &str) -> Result<Option<u64>, UpstreamError> {
        let res = self.send(Method::HEAD, name, &format!("blobs/{digest}"), &[], HeaderMap::new()).await?;
        Ok(res.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()))
    }

    pub async fn tags(&self, name: &str, query: &[(String, String)]) -> Result<(Vec<String>, Option<String>), UpstreamError> {
        let res = self.send(Method::GET, name, "tags/list", query, HeaderMap::new()).await?;
        let link = res.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = body_limited(res, MAX_SMALL_ANSWER, "tags list").await?;
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| UpstreamError::Invalid(format!("tags list: {e}")))?;
        let tags = body["tags"].as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()).unwrap_or_default();
        Ok((tags, link))
    }
}

/// Token responses and tag lists: a registry with 100,000 tags answers a few MiB per page.
const MAX_SMALL_ANSWER: u64 = 16 << 20;

/// A response body, refused past `limit` bytes: a chunked answer has no length to check first.
async fn body_limited(res: Response, limit: u64, what: &str) -> Result<Bytes, UpstreamError> {
    use futures::StreamExt;
    if res.content_length().is_some_and(|n| n > limit) {
        return Err(UpstreamError::Invalid(format!("{what} larger than {limit} bytes")));
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unavailable)?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(UpstreamError::Invalid(format!("{what} larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

fn unavailable(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Unavailable(e.to_string())
}

fn check(res: Response) -> Result<Response, UpstreamError> {
    match res.status() {
        s if s.is_success() => Ok(res),
        StatusCode::NOT_FOUND => Err(UpstreamError::NotFound),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(UpstreamError::Unauthorized),
        StatusCode::TOO_MANY_REQUESTS => Err(wharf_format::upstream::too_many_requests(&res)),
        s if s.is_server_error() => Err(UpstreamError::Unavailable(format!("upstream answered {s}"))),
        s => Err(UpstreamError::Invalid(format!("upstream answered {s}"))),
    }
}

/// See [`Upstream::may_send_credentials_to`]: the upstream's own origin, or https from an https
/// upstream.
fn realm_may_receive_credentials(base: &str, realm: &str) -> bool {
    let (Ok(realm), Ok(base)) = (reqwest::Url::parse(realm), reqwest::Url::parse(base)) else { return false };
    realm.origin() == base.origin() || (base.scheme() == "https" && realm.scheme() == "https")
}

/// `Bearer realm="https://auth",service="registry",scope="a b"` → its parameters.
pub fn parse_challenge(h: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let rest = h.split_once(' ').map(|(_, r)| r).unwrap_or("");
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        out.insert(key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let p = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#);
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let p = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(p["realm"], "basic-realm");
        assert!(parse_challenge("Bearer").is_empty());
    }

    #[test]
    fn credentials_go_to_a_token_realm_on_the_same_origin_or_from_https_to_https_only() {
        let may = realm_may_receive_credentials;
        assert!(may("https://registry-1.docker.io", "https://auth.docker.io/token"), "Docker Hub: another host, https");
        assert!(may("http://127.0.0.1:5000", "http://127.0.0.1:5000/v2/token"), "the upstream's own origin");
        assert!(!may("http://127.0.0.1:5000", "https://auth.example/token"), "a plain-http challenge names no other host, even https");
        assert!(!may("http://registry.example", "https://registry.example/token"), "nor the same host over https (another origin)");
        assert!(!may("http://127.0.0.1:5000", "http://127.0.0.1:5001/token"), "another port in clear text");
        assert!(!may("http://registry.example", "http://evil.example/token"), "another host in clear text");
        assert!(!may("https://registry.example", "http://registry.example/token"), "never down from https to http");
        assert!(!may("https://registry.example", "token"), "not a URL");
    }
}
