//! Prometheus metrics: the registry, the handles the server counts with, and the scrape's
//! text. Counting must cost a request next to nothing: every handle a request touches is
//! resolved once per repository (at configuration reload) or once per label set (on first use,
//! then kept in a `OnceLock`), so the hot path is the `prometheus` crate's atomics only.
//!
//! The `prometheus` crate is used rather than `prometheus-client`: its histograms observe with
//! atomics, where `prometheus-client`'s take a lock per observation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use wharf_format::cache_probe::{CacheKind, CacheResult};
use wharf_format::upstream::{RateLimit, UpstreamObserver, UpstreamOutcome};

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub mod http;
pub mod usage;

/// Request latency buckets, in seconds: from a cached metadata answer to a large upload.
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Task run durations, in seconds.
const TASK_BUCKETS: &[f64] = &[0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 7200.0];

/// Status classes 1xx to 5xx; anything else counts as 5xx.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// GET, HEAD and OPTIONS read; every other method writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodClass {
    Read = 0,
    Write = 1,
}

impl MethodClass {
    pub fn of(m: &actix_web::http::Method) -> MethodClass {
        use actix_web::http::Method;
        if m == Method::GET || m == Method::HEAD || m == Method::OPTIONS {
            MethodClass::Read
        } else {
            MethodClass::Write
        }
    }

    fn label(self) -> &'static str {
        match self {
            MethodClass::Read => "read",
            MethodClass::Write => "write",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    uploads_in_flight: IntGauge,
    logins: IntCounterVec,
    task_runs: IntCounterVec,
    task_seconds: HistogramVec,
    db_pool: IntGaugeVec,
    upstream_requests: IntCounterVec,
    upstream_latency: HistogramVec,
    upstream_throttled: IntCounterVec,
    upstream_ratelimit_limit: IntGaugeVec,
    upstream_ratelimit_remaining: IntGaugeVec,
    upstream_ratelimit_window: IntGaugeVec,
    proxy_cache: IntCounterVec,
    store_used: IntGaugeVec,
    store_available: IntGaugeVec,
    store_quota: IntGaugeVec,
    store_violation: IntGaugeVec,
    store_blobs: IntGaugeVec,
    repo_used: IntGaugeVec,
    repo_hard_quota: IntGaugeVec,
    /// When the usage gauges were last measured (see [`usage`]); held while measuring, so that
    /// concurrent scrapes wait for one measurement.
    usage_at: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Handles per repository name, kept across reloads so that a repository keeps its series.
    repos: Mutex<HashMap<(String, String), Arc<RepoMetrics>>>,
    /// Requests that reached no repository: the admin API, the console, unknown repositories.
    other: Arc<RepoMetrics>,
}

/// One repository's handles. Request series are made on first use (an idle repository shows
/// no empty histograms), then read without a lock.
pub struct RepoMetrics {
    labels: [String; 2],
    requests: [[OnceLock<(IntCounter, Histogram)>; 5]; 2],
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    vecs: (IntCounterVec, HistogramVec),
}

impl RepoMetrics {
    /// The request counter and latency histogram of one method and status class.
    pub fn request(&self, method: MethodClass, status: u16) -> &(IntCounter, Histogram) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[method as usize][class].get_or_init(|| {
            let labels = [self.labels[0].as_str(), self.labels[1].as_str(), method.label(), STATUS_CLASSES[class]];
            (self.vecs.0.with_label_values(&labels), self.vecs.1.with_label_values(&labels))
        })
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let labels = ["repository", "format", "method", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "wharf_http_requests_total",
                "HTTP requests answered, by repository (empty: admin API, console, no repository), format, method class (read, write) and status class",
            ),
            &labels,
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "wharf_http_request_duration_seconds",
                "Time from a request's arrival to its response's headers (a streamed body's transfer is not included)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &labels,
        )?;
        let bytes_in = IntCounterVec::new(
            Opts::new("wharf_http_request_bytes_total", "Request body bytes received, by repository and format"),
            &["repository", "format"],
        )?;
        let bytes_out =
            IntCounterVec::new(Opts::new("wharf_http_response_bytes_total", "Response body bytes sent, by repository and format"), &["repository", "format"])?;
        let uploads_in_flight = IntGauge::new("wharf_http_uploads_in_flight", "Write requests with a body being received or answered now")?;
        let logins = IntCounterVec::new(
            Opts::new("wharf_logins_total", "Password checks, by realm (local, ldap; unknown for a paused name) and result (success, failure)"),
            &["realm", "result"],
        )?;
        let task_runs = IntCounterVec::new(Opts::new("wharf_task_runs_total", "Task runs ended on this node, by task type and result"), &["type", "result"])?;
        let task_seconds = HistogramVec::new(
            HistogramOpts::new("wharf_task_run_duration_seconds", "Task run durations, by task type").buckets(TASK_BUCKETS.to_vec()),
            &["type"],
        )?;
        let db_pool = IntGaugeVec::new(Opts::new("wharf_db_pool_connections", "Database pool connections: in_use, idle, max"), &["state"])?;
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "wharf_proxy_upstream_requests_total",
                "Requests a proxy repository sent to its upstream, by outcome (answered; failed: transport error or 5xx after retries; blocked: not sent)",
            ),
            &["repository", "format", "outcome"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "wharf_proxy_upstream_duration_seconds",
                "Time to an upstream's answer headers, retries included (blocked requests are not observed)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["repository", "format"],
        )?;
        let upstream_throttled = IntCounterVec::new(
            Opts::new(
                "wharf_proxy_upstream_throttled_total",
                "Answers 429 (Too Many Requests) a proxy repository got from its upstream, each attempt counted (short Retry-After waits are sent again)",
            ),
            &["repository", "format"],
        )?;
        let ratelimit = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["repository", "format"]);
        let upstream_ratelimit_limit = ratelimit(
            "wharf_proxy_upstream_ratelimit_limit",
            "The upstream's rate limit as its last answer stated it (Docker Hub's ratelimit-limit header): requests per window",
        )?;
        let upstream_ratelimit_remaining = ratelimit(
            "wharf_proxy_upstream_ratelimit_remaining",
            "Requests left in the upstream's rate-limit window as its last answer stated it (Docker Hub's ratelimit-remaining header)",
        )?;
        let upstream_ratelimit_window = ratelimit(
            "wharf_proxy_upstream_ratelimit_window_seconds",
            "The upstream's rate-limit window in seconds (the w= of Docker Hub's ratelimit headers)",
        )?;
        let proxy_cache = IntCounterVec::new(
            Opts::new(
                "wharf_proxy_cache_requests_total",
                "Requests a proxy repository answered through its cache, by kind (metadata: tags, project pages, packuments; content: files, manifests by digest) and result (hit: the upstream was not asked; miss: it was asked, fetched or revalidated; stale: answered from the cache because the upstream failed)",
            ),
            &["repository", "format", "kind", "result"],
        )?;
        let store = |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(Opts::new(name, help), labels);
        let store_used = store(
            "wharf_blob_store_used_bytes",
            "Bytes a blob store holds, each blob counted once (measured at most once a minute, when scraped, and by the soft quota check)",
            &["blob_store"],
        )?;
        let store_blobs = store("wharf_blob_store_blobs", "Blobs a blob store holds (measured with wharf_blob_store_used_bytes)", &["blob_store"])?;
        let store_available = store("wharf_blob_store_available_bytes", "Space left on a file blob store's file system, when last measured", &["blob_store"])?;
        let repo_used = store(
            "wharf_repository_used_bytes",
            "Bytes a repository with a hard quota references, each blob counted once (what its quota is checked against)",
            &["repository"],
        )?;
        let repo_hard_quota = store("wharf_repository_hard_quota_bytes", "A repository's hard quota (storage.hardQuota.limit)", &["repository"])?;
        let store_quota = store(
            "wharf_blob_store_soft_quota_bytes",
            "A blob store's soft quota limit, by type (spaceUsedQuota, spaceRemainingQuota)",
            &["blob_store", "type"],
        )?;
        let store_violation = store("wharf_blob_store_soft_quota_violation", "1 while a blob store is over its soft quota", &["blob_store"])?;
        let build = IntGaugeVec::new(Opts::new("wharf_build_info", "Always 1; the labels say which build this is"), &["version", "commit"])?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("WHARF_GIT_COMMIT").unwrap_or("")]).set(1);
        for c in [&requests, &bytes_in, &bytes_out, &logins, &task_runs, &upstream_requests, &upstream_throttled, &proxy_cache] {
            registry.register(Box::new(c.clone()))?;
        }
        for h in [&latency, &task_seconds, &upstream_latency] {
            registry.register(Box::new(h.clone()))?;
        }
        registry.register(Box::new(uploads_in_flight.clone()))?;
        registry.register(Box::new(db_pool.clone()))?;
        for g in [
            &store_used,
            &store_available,
            &store_quota,
            &store_violation,
            &store_blobs,
            &repo_used,
            &repo_hard_quota,
            &upstream_ratelimit_limit,
            &upstream_ratelimit_remaining,
            &upstream_ratelimit_window,
        ] {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(build))?;
        let other = Arc::new(repo_metrics(&requests, &latency, &bytes_in, &bytes_out, "", ""));
        Ok(Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_flight,
            logins,
            task_runs,
            task_seconds,
            db_pool,
            upstream_requests,
            upstream_latency,
            upstream_throttled,
            upstream_ratelimit_limit,
            upstream_ratelimit_remaining,
            upstream_ratelimit_window,
            proxy_cache,
            store_used,
            store_available,
            store_quota,
            store_violation,
            store_blobs,
            repo_used,
            repo_hard_quota,
            usage_at: tokio::sync::Mutex::new(None),
            repos: Mutex::default(),
            other,
        })
    }

    /// The handles of repository `name` of `format` (made on first call; called at reload).
    pub fn repo(&self, name: &str, format: &str) -> Arc<RepoMetrics> {
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        repos
            .entry((name.to_string(), format.to_string()))
            .or_insert_with(|| Arc::new(repo_metrics(&self.requests, &self.latency, &self.bytes_in, &self.bytes_out, name, format)))
            .clone()
    }

    /// What proxy repository `name` reports of its upstream requests.
    pub fn upstream(&self, name: &str, format: &str) -> Arc<dyn UpstreamObserver> {
        let outcome = |o: &str| self.upstream_requests.with_label_values(&[name, format, o]);
        Arc::new(UpstreamMetrics {
            answered: outcome("answered"),
            failed: outcome("failed"),
            blocked: outcome("blocked"),
            latency: self.upstream_latency.with_label_values(&[name, format]),
            throttled: self.upstream_throttled.with_label_values(&[name, format]),
            cache: [CacheKind::Metadata, CacheKind::Content].map(|k| {
                [CacheResult::Hit, CacheResult::Miss, CacheResult::Stale].map(|r| self.proxy_cache.with_label_values(&[name, format, k.as_str(), r.as_str()]))
            }),
            ratelimit: RateLimitGauges {
                vecs: [self.upstream_ratelimit_limit.clone(), self.upstream_ratelimit_remaining.clone(), self.upstream_ratelimit_window.clone()],
                labels: [name.to_string(), format.to_string()],
                gauges: OnceLock::new(),
            },
        })
    }

    /// The stores a soft quota check measured; stores no longer measured (removed, or their
    /// quota unset) lose their quota series (their usage series go at the next usage
    /// measurement, see [`usage`]).
    pub fn soft_quota_stores<'a>(&self, stores: impl Iterator<Item = StoreGauges<'a>>) {
        for g in [&self.store_quota, &self.store_violation] {
            g.reset();
        }
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for s in stores {
            self.store_used.with_label_values(&[s.name]).set(bytes(s.used));
            if let Some(a) = s.available {
                self.store_available.with_label_values(&[s.name]).set(bytes(a));
            }
            self.store_quota.with_label_values(&[s.name, s.quota_kind]).set(bytes(s.quota_limit));
            self.store_violation.with_label_values(&[s.name]).set(i64::from(s.violation));
        }
    }

    /// A usage measurement: every store's usage, every repository with a hard quota's usage
    /// and limit; what it no longer finds loses its series.
    pub fn usage_measured(&self, stores: &[usage::StoreUsage<'_>], repos: &[(&str, u64, u64)]) {
        for g in [&self.store_used, &self.store_blobs, &self.store_available, &self.repo_used, &self.repo_hard_quota] {
            g.reset();
        }
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for s in stores {
            self.store_used.with_label_values(&[s.name]).set(n(s.bytes));
            self.store_blobs.with_label_values(&[s.name]).set(n(s.blobs));
            if let Some(a) = s.available {
                self.store_available.with_label_values(&[s.name]).set(n(a));
            }
        }
        for (name, used, limit) in repos {
            self.repo_used.with_label_values(&[name]).set(n(*used));
            self.repo_hard_quota.with_label_values(&[name]).set(n(*limit));
        }
    }

    /// Requests that reached no repository.
    pub fn other(&self) -> &Arc<RepoMetrics> {
        &self.other
    }

    pub fn uploads_in_flight(&self) -> &IntGauge {
        &self.uploads_in_flight
    }

    /// A password check's outcome in `realm`.
    pub fn login(&self, realm: &str, success: bool) {
        self.logins.with_label_values(&[realm, if success { "success" } else { "failure" }]).inc();
    }

    /// A task run that ended. Its duration first: a scrape that sees the run counted sees its
    /// duration too (a scrape between the two saw a run without one).
    pub fn task_run(&self, type_id: &str, result: &str, seconds: f64) {
        self.task_seconds.with_label_values(&[type_id]).observe(seconds);
        self.task_runs.with_label_values(&[type_id, result]).inc();
    }

    /// The text exposition, after setting the gauges that are read at scrape time.
    pub fn render(&self, pool: PoolState) -> Result<String, MetricsError> {
        self.db_pool.with_label_values(&["in_use"]).set(i64::from(pool.connections - pool.idle));
        self.db_pool.with_label_values(&["idle"]).set(i64::from(pool.idle));
        self.db_pool.with_label_values(&["max"]).set(i64::from(pool.max));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        // Only fails for duplicate or malformed names, which the constants above are not.
        Metrics::new().expect("metric definitions are valid")
    }
}

/// One proxy's upstream handles, resolved when it is opened.
struct UpstreamMetrics {
    answered: IntCounter,
    failed: IntCounter,
    blocked: IntCounter,
    latency: Histogram,
    throttled: IntCounter,
    /// By kind (metadata, content), then result (hit, miss, stale).
    cache: [[IntCounter; 3]; 2],
    ratelimit: RateLimitGauges,
}

/// A proxy's rate-limit gauges, made when its upstream first states a limit: an upstream that
/// never does (npm, PyPI, most registries) has no series, rather than a limit of 0.
struct RateLimitGauges {
    vecs: [IntGaugeVec; 3],
    labels: [String; 2],
    gauges: OnceLock<[IntGauge; 3]>,
}

impl RateLimitGauges {
    fn get(&self) -> &[IntGauge; 3] {
        self.gauges.get_or_init(|| {
            let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
            [self.vecs[0].with_label_values(&labels), self.vecs[1].with_label_values(&labels), self.vecs[2].with_label_values(&labels)]
        })
    }
}

impl UpstreamObserver for UpstreamMetrics {
    fn observe(&self, outcome: UpstreamOutcome, seconds: f64) {
        match outcome {
            UpstreamOutcome::Answered => self.answered.inc(),
            UpstreamOutcome::Failed => self.failed.inc(),
            UpstreamOutcome::Blocked => return self.blocked.inc(),
        }
        self.latency.observe(seconds);
    }

    fn throttled(&self) {
        self.throttled.inc();
    }

    fn cache(&self, kind: CacheKind, result: CacheResult) {
        let k = match kind {
            CacheKind::Metadata => 0,
            CacheKind::Content => 1,
        };
        let r = match result {
            CacheResult::Hit => 0,
            CacheResult::Miss => 1,
            CacheResult::Stale => 2,
        };
        self.cache[k][r].inc();
    }

    fn rate_limit(&self, limit: RateLimit) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let [max, remaining, window] = self.ratelimit.get();
        max.set(n(limit.limit));
        remaining.set(n(limit.remaining));
        if let Some(w) = limit.window_secs {
            window.set(n(w));
        }
    }
}

/// One blob store's numbers from a soft quota check.
pub struct StoreGauges<'a> {
    pub name: &'a str,
    pub used: u64,
    pub available: Option<u64>,
    pub quota_kind: &'static str,
    pub quota_limit: u64,
    pub violation: bool,
}

/// The database pool at one moment (r2d2's `state()` and `max_size()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

fn repo_metrics(
    requests: &IntCounterVec,
    latency: &HistogramVec,
    bytes_in: &IntCounterVec,
    bytes_out: &IntCounterVec,
    name: &str,
    format: &str,
) -> RepoMetrics {
    RepoMetrics {
        labels: [name.to_string(), format.to_string()],
        requests: Default::default(),
        bytes_in: bytes_in.with_label_values(&[name, format]),
        bytes_out: bytes_out.with_label_values(&[name, format]),
        vecs: (requests.clone(), latency.clone()),
    }
}

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_keeps_its_handles_and_classes_are_bounded() {
        let m = Metrics::new().unwrap();
        let a = m.repo("docker-hosted", "docker");
        assert!(Arc::ptr_eq(&a, &m.repo("docker-hosted", "docker")));
        a.request(MethodClass::Read, 200).0.inc();
        a.request(MethodClass::Read, 204).0.inc();
        a.request(MethodClass::Write, 999).0.inc();
        a.request(MethodClass::Write, 0).1.observe(0.5);
        let text = m.render(PoolState { connections: 3, idle: 1, max: 10 }).unwrap();
        assert!(text.contains(r#"wharf_http_requests_total{format="docker",method="read",repository="docker-hosted",status="2xx"} 2"#), "{text}");
        assert!(text.contains(r#"wharf_http_requests_total{format="docker",method="write",repository="docker-hosted",status="5xx"} 1"#), "{text}");
        assert!(
            text.contains(r#"wharf_http_request_duration_seconds_count{format="docker",method="write",repository="docker-hosted",status="1xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"wharf_db_pool_connections{state="in_use"} 2"#), "{text}");
        assert!(text.contains("wharf_build_info{"), "{text}");
    }

    #[test]
    fn a_store_no_longer_measured_loses_its_series() {
        let m = Metrics::new().unwrap();
        let g = |name| StoreGauges { name, used: 10, available: None, quota_kind: "spaceUsedQuota", quota_limit: 5, violation: true };
        m.soft_quota_stores([g("a"), g("b")].into_iter());
        m.soft_quota_stores([g("b")].into_iter());
        let text = m.render(PoolState::default()).unwrap();
        assert!(text.contains(r#"wharf_blob_store_soft_quota_violation{blob_store="b"} 1"#), "{text}");
        assert!(text.contains(r#"wharf_blob_store_soft_quota_bytes{blob_store="b",type="spaceUsedQuota"} 5"#), "{text}");
        assert!(!text.contains(r#"wharf_blob_store_soft_quota_violation{blob_store="a"}"#), "{text}");
        assert!(!text.contains(r#"wharf_blob_store_soft_quota_bytes{blob_store="a""#), "{text}");
        assert!(!text.contains("wharf_blob_store_available_bytes{"), "{text}");
        // The next usage measurement no longer finds "a": its usage series go too.
        m.usage_measured(&[usage::StoreUsage { name: "b", blobs: 2, bytes: 10, available: Some(99) }], &[("r", 7, 100)]);
        let text = m.render(PoolState::default()).unwrap();
        assert!(!text.contains(r#"blob_store="a""#), "{text}");
        assert!(text.contains(r#"wharf_blob_store_blobs{blob_store="b"} 2"#), "{text}");
        assert!(text.contains(r#"wharf_blob_store_available_bytes{blob_store="b"} 99"#), "{text}");
        assert!(text.contains(r#"wharf_repository_used_bytes{repository="r"} 7"#), "{text}");
        assert!(text.contains(r#"wharf_repository_hard_quota_bytes{repository="r"} 100"#), "{text}");
    }
}
