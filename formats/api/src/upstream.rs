//! The HTTP side of a proxy repository: one client per upstream with its timeouts, retries and
//! User-Agent, credentials sent only to the upstream's own origin (never to a file host it links
//! to), statuses mapped to what a proxy acts on, bodies read under a size limit, and the
//! upstream's [`Health`]: a failing upstream is known as such, so that cached answers are served
//! at once instead of after a timeout, and with `httpClient.autoBlock` it is not asked at all
//! until a background probe finds it answering again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use url::Url;

use crate::cache_probe::{CacheKind, CacheResult};
use crate::proxy::ProxySettings;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("not found upstream")]
    NotFound,
    #[error("the upstream refused wharf's credentials")]
    Unauthorized,
    /// A 429 that was not (or no longer) waited for; `retry_after`: the seconds the upstream
    /// asked for, passed on to the client.
    #[error("the upstream rate-limits wharf")]
    TooManyRequests { retry_after: Option<u64> },
    /// Unreachable, timed out, a 5xx, or blocked: worth serving stale content for.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    #[error("the upstream answered something unusable: {0}")]
    Invalid(String),
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

/// `url` without its userinfo (`user:password@`), for logs and answers. A proxy's own remote
/// never has one (refused); URLs an upstream hands out (a token realm, a file an index links
/// to) may. Works on the text, so that a URL that does not parse loses it too.
pub fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.into() };
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &rest[at + 1..]).into(),
        None => url.into(),
    }
}

/// `wharf/<version>`, then `httpClient.connection.userAgentSuffix` when set.
pub fn user_agent(settings: &ProxySettings) -> String {
    let mut ua = concat!("wharf/", env!("CARGO_PKG_VERSION")).to_string();
    if let Some(s) = &settings.user_agent_suffix {
        ua.push(' ');
        ua.push_str(s);
    }
    ua
}

/// The client a proxy's upstream requests go through: `connection.timeout` bounds every read
/// (waiting for the answer included), `connectTimeout` the connection.
pub fn client(settings: &ProxySettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .read_timeout(settings.read_timeout)
        .user_agent(user_agent(settings))
        .build()
        .map_err(|e| e.to_string())
}

// ---- health ----------------------------------------------------------------------------------

/// The first background probe of a failing upstream runs this long after the failure; each
/// failed probe doubles the wait, up to [`MAX_PROBE_INTERVAL`].
const FIRST_PROBE: Duration = Duration::from_secs(1);
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// What a proxy knows about its upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamState {
    /// Answering, or not asked yet.
    Available,
    /// The last request failed (unreachable, timed out, 5xx): cached copies are served without
    /// asking; requests for anything else still go out (`autoBlock` off).
    Failing,
    /// Failing with `autoBlock` on: nothing goes out until a background probe gets an answer.
    AutoBlocked,
    /// `httpClient.blocked`: the administrator keeps the upstream out of reach.
    Blocked,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Available => "available",
            UpstreamState::Failing => "failing",
            UpstreamState::AutoBlocked => "auto-blocked",
            UpstreamState::Blocked => "blocked",
        }
    }
}

struct Failure {
    since: i64,
    error: String,
    at: i64,
    next_probe: Option<i64>,
}

struct HealthInner {
    remote: String,
    blocked: bool,
    auto_block: bool,
    probe: Option<(reqwest::Client, Url)>,
    failure: Option<Failure>,
    probing: bool,
}

/// One upstream's availability, shared by every request of its proxy repository (and kept
/// across configuration reloads by [`Healths`]).
pub struct Health {
    inner: Mutex<HealthInner>,
}

impl Health {
    fn new(remote: &str) -> Health {
        Health {
            inner: Mutex::new(HealthInner {
                remote: without_userinfo(remote).into_owned(),
                blocked: false,
                auto_block: false,
                probe: None,
                failure: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> UpstreamState {
        let h = self.lock();
        match (&h.failure, h.blocked, h.auto_block) {
            (_, true, _) => UpstreamState::Blocked,
            (None, ..) => UpstreamState::Available,
            (Some(_), _, true) => UpstreamState::AutoBlocked,
            (Some(_), _, false) => UpstreamState::Failing,
        }
    }

    /// Whether a request for something the cache holds should be answered from the cache
    /// without asking the upstream (it is known not to answer).
    pub fn serve_stale_now(&self) -> bool {
        let stale = self.state() != UpstreamState::Available;
        if stale {
            crate::cache_probe::serving_stale();
        }
        stale
    }

    /// Refuses at once when the upstream is blocked or auto-blocked.
    pub fn admit(&self) -> Result<(), UpstreamError> {
        let h = self.lock();
        if h.blocked {
            return Err(UpstreamError::Unavailable(format!("{} is blocked (httpClient.blocked)", h.remote)));
        }
        match (&h.failure, h.auto_block) {
            (Some(f), true) => Err(UpstreamError::Unavailable(format!("{} is auto-blocked after: {}; it is probed in the background", h.remote, f.error))),
            _ => Ok(()),
        }
    }

    pub fn succeeded(&self) {
        let mut h = self.lock();
        if h.failure.take().is_some() {
            tracing::info!(upstream = %h.remote, "upstream answers again");
        }
    }

    pub fn failed(self: &Arc<Self>, error: &str) {
        let now = crate::now_millis();
        let start_probe = {
            let mut h = self.lock();
            match &mut h.failure {
                Some(f) => {
                    f.error = error.to_string();
                    f.at = now;
                }
                None => {
                    tracing::warn!(upstream = %h.remote, error, auto_block = h.auto_block, "upstream failing");
                    h.failure = Some(Failure { since: now, error: error.to_string(), at: now, next_probe: None });
                }
            }
            let start = !h.probing && h.probe.is_some() && !h.blocked;
            h.probing |= start;
            start
        };
        if start_probe {
            self.spawn_probe();
        }
    }

    /// Asks the upstream in the background until it answers (any status below 500), then
    /// clears the failure; stops when the repository is gone or a request got through.
    fn spawn_probe(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.lock().probing = false;
            return;
        };
        rt.spawn(async move {
            let mut delay = FIRST_PROBE;
            loop {
                {
                    let Some(h) = weak.upgrade() else { return };
                    let mut g = h.lock();
                    let blocked = g.blocked;
                    match &mut g.failure {
                        Some(f) if !blocked => f.next_probe = Some(crate::now_millis() + delay.as_millis() as i64),
                        _ => {
                            g.probing = false;
                            return;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                let Some(h) = weak.upgrade() else { return };
                let Some((client, url)) = h.lock().probe.clone() else {
                    h.lock().probing = false;
                    return;
                };
                match client.head(url.clone()).send().await {
                    Ok(r) if !r.status().is_server_error() => {
                        h.succeeded();
                        h.lock().probing = false;
                        return;
                    }
                    Ok(r) => h.note_probe(format!("{url} answered {}", r.status())),
                    Err(e) => h.note_probe(error_chain(&e)),
                }
                delay = (delay * 2).min(MAX_PROBE_INTERVAL);
            }
        });
    }

    fn note_probe(&self, error: String) {
        if let Some(f) = &mut self.lock().failure {
            f.error = error;
            f.at = crate::now_millis();
        }
    }

    /// The state for the admin API: `state`, and while failing `lastError`, `failingSince`,
    /// `lastErrorAt` and `nextProbeAt`.
    pub fn to_json(&self) -> Value {
        let state = self.state();
        let h = self.lock();
        let mut v = json!({ "state": state.as_str() });
        if let Some(f) = &h.failure {
            v["lastError"] = json!(f.error);
            v["failingSince"] = json!(crate::rfc3339_millis(f.since));
            v["lastErrorAt"] = json!(crate::rfc3339_millis(f.at));
            v["nextProbeAt"] = json!(f.next_probe.map(crate::rfc3339_millis));
        }
        v
    }
}

/// Every proxy's [`Health`] by repository id, so that a configuration reload (which reopens every
/// repository) does not forget that an upstream is failing; and where each proxy's upstream
/// requests are reported, when the server observes them.
#[derive(Default)]
pub struct Healths {
    map: Mutex<HashMap<i64, Weak<Health>>>,
    observers: Mutex<HashMap<i64, Arc<dyn UpstreamObserver>>>,
}

/// How a request to an upstream ended, for [`UpstreamObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// An answer below 500 (or 501), whatever it says.
    Answered,
    /// A transport error or a 5xx, after the retries: what marks the upstream failing.
    Failed,
    /// Not sent: the upstream is blocked or auto-blocked.
    Blocked,
}

/// Told of every request a proxy sends upstream (the server's metrics implement it); one per
/// repository, so that the format crates need not know how it is counted.
pub trait UpstreamObserver: Send + Sync {
    /// `seconds` covers the request and its retries, up to the answer's headers.
    fn observe(&self, outcome: UpstreamOutcome, seconds: f64);
    /// The upstream answered 429 (each time, retried or not).
    fn throttled(&self) {}
    /// The upstream's latest rate-limit headers (Docker Hub's `ratelimit-limit` and
    /// `ratelimit-remaining`, e.g. `100;w=21600`): requests allowed per window, left in it,
    /// and the window in seconds when given.
    fn rate_limit(&self, _limit: RateLimit) {}
    /// How one request went through the proxy's cache (see [`Transport::through_cache`]).
    fn cache(&self, _kind: CacheKind, _result: CacheResult) {}
}

/// What an upstream's rate-limit headers said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    pub window_secs: Option<u64>,
}

impl RateLimit {
    /// Docker Hub's `ratelimit-limit` / `ratelimit-remaining` (`<n>;w=<seconds>`), also the
    /// IETF draft's plain `<n>`; `None` unless both are there and readable.
    pub fn from_headers(h: &reqwest::header::HeaderMap) -> Option<RateLimit> {
        let field = |name: &str| -> Option<(u64, Option<u64>)> {
            let v = h.get(name)?.to_str().ok()?;
            let mut parts = v.split(';');
            let n = parts.next()?.trim().parse().ok()?;
            let w = parts.find_map(|p| p.trim().strip_prefix("w=").and_then(|w| w.trim().parse().ok()));
            Some((n, w))
        };
        let (limit, w1) = field("ratelimit-limit")?;
        let (remaining, w2) = field("ratelimit-remaining")?;
        Some(RateLimit { limit, remaining, window_secs: w1.or(w2) })
    }
}

/// How many times a request answered 429 is sent again (whatever `connection.retries` says:
/// a rate limit is not a failure, and Docker Hub's short bursts pass within seconds).
pub const THROTTLE_RETRIES: u32 = 3;
/// The longest `Retry-After` waited for. Past it the 429 comes back at once: Docker Hub's
/// pull limit, used up, says hours, and a client is better told than kept waiting.
pub const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(30);
/// Without `Retry-After`, the first wait; each further 429 doubles it.
const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

/// How long to wait before sending again a request answered 429 for the `n`th time (from 0):
/// its `Retry-After` (seconds or an HTTP date), or a doubling backoff; `None` when the upstream
/// asks for longer than [`MAX_THROTTLE_WAIT`].
pub fn throttle_wait(headers: &reqwest::header::HeaderMap, n: u32) -> Option<Duration> {
    let wait = retry_after(headers).unwrap_or(THROTTLE_BACKOFF * 2u32.pow(n.min(10)));
    (wait <= MAX_THROTTLE_WAIT).then_some(wait)
}

/// An answer's `Retry-After` (delta-seconds or an HTTP date) as a wait from now.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    match v.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => {
            let at: std::time::SystemTime = v.parse::<actix_web::http::header::HttpDate>().ok()?.into();
            Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
        }
    }
}

/// [`UpstreamError::TooManyRequests`] for a 429 answer, with its `Retry-After` in whole seconds.
pub fn too_many_requests(res: &Response) -> UpstreamError {
    UpstreamError::TooManyRequests { retry_after: retry_after(res.headers()).map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)) }
}

impl Healths {
    /// The health of repository `repo`'s upstream at `probe` (the same one as before unless the
    /// remote changed), with the settings now configured.
    pub fn get(&self, repo: i64, settings: &ProxySettings, client: reqwest::Client, probe: Url) -> Arc<Health> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let health = match map.get(&repo).and_then(Weak::upgrade) {
            Some(h) if h.lock().remote == without_userinfo(&settings.remote_url) => h,
            _ => Arc::new(Health::new(&settings.remote_url)),
        };
        {
            let mut h = health.lock();
            h.blocked = settings.blocked;
            h.auto_block = settings.auto_block;
            h.probe = Some((client, probe));
        }
        map.insert(repo, Arc::downgrade(&health));
        health
    }

    /// Reports repository `repo`'s upstream requests to `observer` from the next time it is
    /// opened (the server calls this before opening a proxy).
    pub fn observe(&self, repo: i64, observer: Arc<dyn UpstreamObserver>) {
        self.observers.lock().unwrap_or_else(|e| e.into_inner()).insert(repo, observer);
    }

    fn observer(&self, repo: i64) -> Option<Arc<dyn UpstreamObserver>> {
        self.observers.lock().unwrap_or_else(|e| e.into_inner()).get(&repo).cloned()
    }

    pub fn status(&self, repo: i64) -> Option<Value> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&repo).and_then(Weak::upgrade).map(|h| h.to_json())
    }
}

// ---- requests --------------------------------------------------------------------------------

/// Sends requests to one upstream: the health gate, `connection.retries` for transport errors
/// and 502/503/504, and the outcome recorded in the [`Health`].
pub struct Transport {
    pub client: reqwest::Client,
    pub health: Arc<Health>,
    retries: u32,
    observer: Option<Arc<dyn UpstreamObserver>>,
}

impl Transport {
    pub fn new(settings: &ProxySettings, healths: &Healths, repo: i64, probe: Url) -> Result<Transport, String> {
        let client = client(settings)?;
        let health = healths.get(repo, settings, client.clone(), probe);
        Ok(Transport { client, health, retries: settings.retries, observer: healths.observer(repo) })
    }

    /// Sends `r` (again, up to `retries` times, while it fails in transport or with 502/503/504).
    /// Any answer comes back, 5xx included (recorded as a failure); a transport error as
    /// [`UpstreamError::Unavailable`].
    pub async fn execute(&self, r: reqwest::RequestBuilder) -> Result<Response, UpstreamError> {
        if let Err(e) = self.health.admit() {
            crate::cache_probe::asked(true);
            self.report(UpstreamOutcome::Blocked, 0.0);
            return Err(e);
        }
        let start = std::time::Instant::now();
        let res = self.attempts(r).await;
        let outcome = match &res {
            Ok(r) if !r.status().is_server_error() || r.status() == StatusCode::NOT_IMPLEMENTED => UpstreamOutcome::Answered,
            _ => UpstreamOutcome::Failed,
        };
        crate::cache_probe::asked(outcome == UpstreamOutcome::Failed);
        self.report(outcome, start.elapsed().as_secs_f64());
        res
    }

    /// Runs `request`, one request a proxy answers through its cache of `kind`, and reports
    /// whether it was a hit, a miss or served stale (see [`crate::cache_probe`]).
    pub async fn through_cache<T, E>(&self, kind: CacheKind, request: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let (out, result) = crate::cache_probe::run(request).await;
        if let Some(o) = &self.observer {
            o.cache(kind, result);
        }
        out
    }

    fn report(&self, outcome: UpstreamOutcome, seconds: f64) {
        if let Some(o) = &self.observer {
            o.observe(outcome, seconds);
        }
    }

    /// [`Transport::execute`] past the health gate. A 429 is sent again after its
    /// `Retry-After` (or a backoff), up to [`THROTTLE_RETRIES`] times, when the wait is short
    /// enough ([`throttle_wait`]); then it comes back like any answer.
    async fn attempts(&self, r: reqwest::RequestBuilder) -> Result<Response, UpstreamError> {
        let mut next = Some(r);
        let mut attempt = 0;
        let mut throttled = 0;
        loop {
            let r = next.take().expect("a request to send");
            let spare = if attempt < self.retries || throttled < THROTTLE_RETRIES { r.try_clone() } else { None };
            let outcome = r.send().await;
            if let (Ok(res), Some(o)) = (&outcome, &self.observer) {
                if let Some(limit) = RateLimit::from_headers(res.headers()) {
                    o.rate_limit(limit);
                }
                if res.status() == StatusCode::TOO_MANY_REQUESTS {
                    o.throttled();
                }
            }
            let retryable = attempt < self.retries
                && match &outcome {
                    Err(_) => true,
                    Ok(res) => matches!(res.status().as_u16(), 502..=504),
                };
            if retryable {
                if let Some(s) = spare {
                    attempt += 1;
                    next = Some(s);
                    continue;
                }
            }
            if let Ok(res) = &outcome {
                let wait =
                    (res.status() == StatusCode::TOO_MANY_REQUESTS && throttled < THROTTLE_RETRIES).then(|| throttle_wait(res.headers(), throttled)).flatten();
                if let (Some(wait), Some(s)) = (wait, spare) {
                    tracing::info!(url = %without_userinfo(res.url().as_str()), wait_ms = wait.as_millis() as u64, "upstream rate limit (429): sending again after its Retry-After");
                    throttled += 1;
                    tokio::time::sleep(wait).await;
                    next = Some(s);
                    continue;
                }
            }
            return match outcome {
                Err(e) => {
                    let msg = error_chain(&e);
                    self.health.failed(&msg);
                    Err(UpstreamError::Unavailable(msg))
                }
                // 501: the upstream does not do this (npm audit on a registry without it), which
                // says nothing about its health.
                Ok(res) if res.status().is_server_error() && res.status() != StatusCode::NOT_IMPLEMENTED => {
                    self.health.failed(&format!("{} answered {}", res.url(), res.status()));
                    Ok(res)
                }
                Ok(res) => {
                    self.health.succeeded();
                    Ok(res)
                }
            };
        }
    }
}

pub struct HttpUpstream {
    /// The upstream's base URL; its origin is where credentials may go.
    pub base: Url,
    transport: Transport,
    credentials: Option<(String, String)>,
    /// Credentials with the first request (`authentication.preemptive`), or only in answer to
    /// the upstream's Basic challenge.
    preemptive: bool,
}

impl HttpUpstream {
    /// `probe` is what the background health probe asks (HEAD) while the upstream fails.
    pub fn new(base: Url, settings: &ProxySettings, healths: &Healths, repo: i64) -> Result<HttpUpstream, String> {
        let transport = Transport::new(settings, healths, repo, base.clone())?;
        let credentials = settings.username.clone().zip(settings.password.clone());
        Ok(HttpUpstream { base, transport, credentials, preemptive: settings.preemptive })
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.transport.health
    }

    /// The URL of `segments` under the base, each one segment whatever it holds: a `/`, a `\`,
    /// `..` or `%2e%2e` in a name a client sent is encoded, never a step out of the base. With
    /// `Url::join` such a name reached any path of the upstream's host with the proxy's
    /// credentials, or another host. An empty last segment gives a trailing slash.
    pub fn below(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        below(&self.base, segments)
    }

    /// See [`Transport::through_cache`].
    pub async fn through_cache<T, E>(&self, kind: CacheKind, request: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        self.transport.through_cache(kind, request).await
    }

    /// A request to `url`; credentials are added by [`HttpUpstream::send`].
    pub fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        self.transport.client.request(method, url.clone())
    }

    /// Sends a request, with the credentials when it goes to the upstream's own origin (at once,
    /// or after a Basic challenge); success and 304 come back, everything else as an
    /// [`UpstreamError`].
    pub async fn send(&self, r: reqwest::RequestBuilder) -> Result<Response, UpstreamError> {
        let res = self.send_raw(r).await?;
        match res.status() {
            s if s.is_success() || s == StatusCode::NOT_MODIFIED => Ok(res),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(UpstreamError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(too_many_requests(&res)),
            s if s.is_server_error() => Err(UpstreamError::Unavailable(format!("{} answered {s}", res.url()))),
            s => Err(UpstreamError::Invalid(format!("{} answered {s}", res.url()))),
        }
    }

    /// Sends with credentials as [`HttpUpstream::send`] does; any status comes back.
    pub async fn send_raw(&self, r: reqwest::RequestBuilder) -> Result<Response, UpstreamError> {
        let (client, req) = r.build_split();
        let req = req.map_err(|e| UpstreamError::Invalid(error_chain(&e)))?;
        let own = req.url().origin() == self.base.origin();
        let Some((u, p)) = self.credentials.as_ref().filter(|_| own) else {
            return self.transport.execute(reqwest::RequestBuilder::from_parts(client, req)).await;
        };
        let with_auth = |req: reqwest::Request| reqwest::RequestBuilder::from_parts(client.clone(), req).basic_auth(u, Some(p));
        if self.preemptive {
            return self.transport.execute(with_auth(req)).await;
        }
        let again = req.try_clone();
        let res = self.transport.execute(reqwest::RequestBuilder::from_parts(client.clone(), req)).await?;
        let basic = res.headers().get_all(WWW_AUTHENTICATE).iter().any(|v| v.to_str().is_ok_and(|v| v.len() >= 5 && v[..5].eq_ignore_ascii_case("basic")));
        match again {
            Some(mut req) if res.status() == StatusCode::UNAUTHORIZED && basic => {
                req.headers_mut().remove(AUTHORIZATION);
                self.transport.execute(with_auth(req)).await
            }
            _ => Ok(res),
        }
    }

    /// A GET of an absolute URL (a file the upstream's index links to).
    pub async fn get(&self, url: &str) -> Result<Response, UpstreamError> {
        let url = Url::parse(url).map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        self.send(self.request(reqwest::Method::GET, &url)).await
    }
}

/// A response body, refused past `limit` bytes.
/// See [`HttpUpstream::below`].
pub fn below(base: &Url, segments: &[&str]) -> Result<Url, UpstreamError> {
    // Control characters too: url drops tabs and line ends while parsing, so `.\t.` became `..`.
    if segments.iter().any(|s| matches!(*s, "." | "..") || s.chars().any(char::is_control)) {
        return Err(UpstreamError::Invalid(format!("not a name: {segments:?}")));
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| UpstreamError::Invalid(format!("{} cannot hold a path", without_userinfo(base.as_str()))))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

pub async fn read_limited(res: Response, limit: usize) -> Result<Bytes, UpstreamError> {
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Err(UpstreamError::Invalid(format!("{} is larger than {limit} bytes", res.url())));
    }
    let url = res.url().to_string();
    // Grown by doubling, a 20 MiB body passed through 32 MiB and every smaller step.
    let mut body = Vec::with_capacity(res.content_length().map_or(0, |n| n as usize));
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

/// `storage.strictContentTypeValidation` for content from upstream: a file served as a web page
/// (`text/html`, as login portals and error pages are) is refused instead of cached.
pub fn check_content_type(strict: bool, res: &Response) -> Result<(), UpstreamError> {
    if !strict {
        return Ok(());
    }
    let ct = res.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "text/html" || essence == "application/xhtml+xml" {
        return Err(UpstreamError::Invalid(format!(
            "{} answered a web page ({ct}) where a file was expected (storage.strictContentTypeValidation)",
            res.url()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(auto_block: bool) -> ProxySettings {
        let mut attrs = serde_json::Map::new();
        attrs.insert("proxy".into(), json!({"remoteUrl": "http://127.0.0.1:9"}));
        attrs.insert("httpClient".into(), json!({"autoBlock": auto_block}));
        ProxySettings::parse(&attrs).unwrap()
    }

    #[test]
    fn a_name_under_the_base_stays_one_segment_of_it() {
        let base = Url::parse("https://art.example/api/npm/remote/").unwrap();
        let at = |segs: &[&str]| below(&base, segs).map(|u| u.to_string());
        assert_eq!(at(&["left-pad"]).unwrap(), "https://art.example/api/npm/remote/left-pad");
        assert_eq!(at(&["@s/p"]).unwrap(), "https://art.example/api/npm/remote/@s%2Fp");
        assert_eq!(at(&["pkg", ""]).unwrap(), "https://art.example/api/npm/remote/pkg/");
        for hostile in [r"%2E%2E\%2E%2E\system", r"\\10.0.0.5:8080\x", "a/../../b", "%2e%2e"] {
            let url = below(&base, &[hostile]).unwrap();
            assert_eq!(url.host_str(), Some("art.example"), "{hostile}");
            assert!(url.path().starts_with("/api/npm/remote/") && url.path_segments().unwrap().count() == 4, "{hostile}: {url}");
        }
        assert!(at(&[".."]).is_err() && at(&["."]).is_err() && at(&[".\t."]).is_err() && at(&["a\nb"]).is_err());
        let no_slash = Url::parse("https://pypi.example/simple").unwrap();
        assert_eq!(below(&no_slash, &["x", ""]).unwrap().as_str(), "https://pypi.example/simple/x/");
    }

    #[test]
    fn userinfo_is_taken_out_of_urls_and_nothing_else() {
        for (url, want) in [
            ("https://u:p@host.example/a?b#c", "https://host.example/a?b#c"),
            ("http://tok@host.example", "http://host.example"),
            ("http://u:p@ss@host.example:81/x@y", "http://host.example:81/x@y"),
            ("https://host.example/@scope/pkg", "https://host.example/@scope/pkg"),
            ("https://host.example?next=a@b", "https://host.example?next=a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_userinfo(url), want, "{url}");
        }
    }

    #[test]
    fn rate_limit_headers_and_retry_after_are_read() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(RateLimit::from_headers(&h), None);
        h.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
        h.insert("ratelimit-remaining", "76;w=21600".parse().unwrap());
        assert_eq!(RateLimit::from_headers(&h), Some(RateLimit { limit: 100, remaining: 76, window_secs: Some(21600) }));
        h.insert("ratelimit-remaining", "x".parse().unwrap());
        assert_eq!(RateLimit::from_headers(&h), None);

        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(throttle_wait(&h, 0), Some(Duration::from_secs(1)));
        assert_eq!(throttle_wait(&h, 2), Some(Duration::from_secs(4)));
        assert_eq!(throttle_wait(&h, 9), None, "a backoff past the cap is not waited for");
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(throttle_wait(&h, 0), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "21600".parse().unwrap());
        assert_eq!(throttle_wait(&h, 0), None, "hours are not waited for");
        let soon = actix_web::http::header::HttpDate::from(std::time::SystemTime::now() + Duration::from_secs(5));
        h.insert(reqwest::header::RETRY_AFTER, soon.to_string().parse().unwrap());
        assert!(throttle_wait(&h, 0).is_some_and(|w| w <= Duration::from_secs(5)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(throttle_wait(&h, 0), Some(Duration::ZERO), "a date past is now");
    }

    #[tokio::test]
    async fn failures_block_only_with_auto_block_and_reloads_keep_the_state() {
        let healths = Healths::default();
        let probe = Url::parse("http://127.0.0.1:9/").unwrap();
        let h = healths.get(1, &settings(true), reqwest::Client::new(), probe.clone());
        assert!(h.admit().is_ok() && !h.serve_stale_now());
        h.failed("connection refused");
        assert_eq!(h.state(), UpstreamState::AutoBlocked);
        assert!(h.admit().unwrap_err().to_string().contains("auto-blocked after: connection refused"));
        // A reload with autoBlock off: the same failing upstream, now only "failing".
        let again = healths.get(1, &settings(false), reqwest::Client::new(), probe);
        assert!(Arc::ptr_eq(&h, &again));
        assert_eq!(again.state(), UpstreamState::Failing);
        assert!(again.admit().is_ok() && again.serve_stale_now());
        assert_eq!(healths.status(1).unwrap()["lastError"], "connection refused");
        again.succeeded();
        assert_eq!(healths.status(1).unwrap(), json!({"state": "available"}));
    }
}
