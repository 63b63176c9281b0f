//! Prometheus metrics (`/service/metrics/prometheus`, `/metrics`): who may scrape, and that known
//! traffic moves the right series by exactly what it should. The exposition is parsed line by
//! line (`name{labels} value`), not matched as substrings.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

const REPO: &str = "metrics-docker";
const QUOTA_REPO: &str = "metrics-quota";

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        let s = TestServer::start();
        s.admin().create_docker_hosted(json!({"name": REPO, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": {}}));
        // Made before any scrape, so the first (which measures usage) sees it.
        s.admin().create_docker_hosted(json!({"name": QUOTA_REPO, "storage": {"blobStoreName": "default", "writePolicy": "allow", "hardQuota": {"limit": 5_000_000}}, "docker": {}}));
        let r = s
            .admin()
            .request(Method::POST, "/service/rest/v1/security/roles")
            .json(&json!({"id": "monitoring", "name": "monitoring", "description": "Prometheus", "privileges": ["nx-metrics-all"], "roles": []}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
        for (user, roles) in [("watcher", vec!["monitoring"]), ("plain", vec![]), ("fresh", vec![])] {
            let r = s
                .admin()
                .request(Method::POST, "/service/rest/v1/security/users")
                .json(&json!({"userId": user, "firstName": "T", "lastName": "U", "emailAddress": format!("{user}@example.test"), "password": "secret-pass-1", "status": "active", "roles": roles}))
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
        }
        s
    })
}

/// Series by name and sorted labels.
type Series = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Parses the text exposition format: `# HELP`/`# TYPE` lines are skipped; every other line is
/// `name{k="v",...} value` or `name value`.
fn parse(text: &str) -> Series {
    let mut out = Series::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), vec![]),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = Vec::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                    // Label values here never hold quotes; an escaped one would end in \".
                    let end = after.find('"').unwrap_or_else(|| panic!("unterminated label: {line}"));
                    labels.push((k.to_string(), after[..end].to_string()));
                    rest = after[end + 1..].trim_start_matches(',');
                }
                labels.sort();
                (name.to_string(), labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
        assert!(out.insert((name, labels), value).is_none(), "duplicate series: {line}");
    }
    out
}

fn get(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.sort();
    series.get(&(name.to_string(), l)).copied().unwrap_or(0.0)
}

fn scrape_as(user: Option<(&str, &str)>, path: &str) -> reqwest::blocking::Response {
    let mut r = common::client().get(server().url(path));
    if let Some((u, p)) = user {
        r = r.basic_auth(u, Some(p));
    }
    r.send().unwrap()
}

fn scrape() -> Series {
    let r = scrape_as(Some(("admin", ADMIN_PASSWORD)), "/service/metrics/prometheus");
    assert_eq!(r.status(), StatusCode::OK);
    parse(&r.text().unwrap())
}

/// A PyPI proxy of `http://127.0.0.1:<port>/` that never retries and caches no misses.
fn create_pypi_proxy(name: &str, port: u16, strict_content_types: bool) {
    let r = server()
        .admin()
        .request(Method::POST, "/service/rest/v1/repositories/pypi/proxy")
        .json(&json!({
            "name": name, "online": true,
            "storage": {"blobStoreName": "default", "strictContentTypeValidation": strict_content_types},
            "proxy": {"remoteUrl": format!("http://127.0.0.1:{port}/"), "contentMaxAge": 1440, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": false, "timeToLive": 1440},
            "httpClient": {"blocked": false, "autoBlock": false, "connection": {"timeout": 5, "connectTimeout": 2, "retries": 0}},
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

#[test]
fn only_administrators_and_holders_of_nx_metrics_all_may_scrape() {
    for path in ["/service/metrics/prometheus", "/metrics"] {
        let r = scrape_as(None, path);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.headers().get("www-authenticate").is_some());
        assert_eq!(scrape_as(Some(("plain", "secret-pass-1")), path).status(), StatusCode::FORBIDDEN, "{path}");
        for user in [("watcher", "secret-pass-1"), ("admin", ADMIN_PASSWORD)] {
            let r = scrape_as(Some(user), path);
            assert_eq!(r.status(), StatusCode::OK, "{path} as {}", user.0);
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ct.starts_with("text/plain") && ct.contains("version=0.0.4"), "{ct}");
            let s = parse(&r.text().unwrap());
            assert_eq!(get(&s, "wharf_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("commit", "")]), 1.0, "{s:?}");
        }
    }
    // The privilege is offered where roles are edited, and refused to the anonymous role.
    let privileges: serde_json::Value = server().admin().request(Method::GET, "/service/rest/v1/security/privileges").send().unwrap().json().unwrap();
    assert!(privileges.as_array().unwrap().iter().any(|p| p["name"] == "nx-metrics-all"));
    let r = server()
        .admin()
        .request(Method::PUT, "/service/rest/v1/security/roles/nx-anonymous")
        .json(&json!({"id": "nx-anonymous", "name": "nx-anonymous", "privileges": ["nx-metrics-all"], "roles": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn known_traffic_moves_the_repository_series_by_exactly_that_much() {
    let http = common::client();
    let blob = vec![7u8; 100_000];
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let before = scrape();

    let r = http
        .post(server().url(&format!("/v2/{REPO}/app/blobs/uploads/?digest={digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    const GETS: usize = 3;
    for _ in 0..GETS {
        let r = http.get(server().url(&format!("/v2/{REPO}/app/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().unwrap().len(), blob.len());
    }
    let missing = format!("sha256:{}", "0".repeat(64));
    let r = http.get(server().url(&format!("/v2/{REPO}/app/blobs/{missing}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let after = scrape();
    let delta = |name: &str, labels: &[(&str, &str)]| get(&after, name, labels) - get(&before, name, labels);
    let req = |method: &'static str, status: &'static str| [("repository", REPO), ("format", "docker"), ("method", method), ("status", status)];
    assert_eq!(delta("wharf_http_requests_total", &req("read", "2xx")), GETS as f64);
    assert_eq!(delta("wharf_http_requests_total", &req("read", "4xx")), 1.0);
    assert_eq!(delta("wharf_http_requests_total", &req("write", "2xx")), 1.0);
    assert_eq!(delta("wharf_http_request_duration_seconds_count", &req("read", "2xx")), GETS as f64);
    let inf = [("repository", REPO), ("format", "docker"), ("method", "read"), ("status", "2xx"), ("le", "+Inf")];
    assert_eq!(delta("wharf_http_request_duration_seconds_bucket", &inf), GETS as f64);
    let repo = [("repository", REPO), ("format", "docker")];
    assert!(delta("wharf_http_request_bytes_total", &repo) >= blob.len() as f64);
    assert!(delta("wharf_http_response_bytes_total", &repo) >= (GETS * blob.len()) as f64);
    // The scrapes themselves reached no repository.
    assert!(get(&after, "wharf_http_requests_total", &[("repository", ""), ("format", ""), ("method", "read"), ("status", "2xx")]) >= 1.0);
    // Back to zero once no write is in flight: other tests of this file write meanwhile, so it
    // is waited for (a leaked count would never come back).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(&scrape(), "wharf_http_uploads_in_flight", &[]) != 0.0 {
        assert!(std::time::Instant::now() < deadline, "wharf_http_uploads_in_flight stays above zero");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn password_checks_count_per_realm_and_result() {
    let before = scrape();
    assert_eq!(scrape_as(Some(("fresh", "wrong-password")), "/metrics").status(), StatusCode::UNAUTHORIZED);
    // A first, uncached check of a right password (the user may not scrape: 403, but signed in).
    assert_eq!(scrape_as(Some(("fresh", "secret-pass-1")), "/metrics").status(), StatusCode::FORBIDDEN);
    let after = scrape();
    let delta = |result: &str| {
        get(&after, "wharf_logins_total", &[("realm", "local"), ("result", result)])
            - get(&before, "wharf_logins_total", &[("realm", "local"), ("result", result)])
    };
    // Only this test fails a password; other tests' first logins may succeed meanwhile.
    assert_eq!(delta("failure"), 1.0);
    assert!(delta("success") >= 1.0);
    assert_eq!(get(&after, "wharf_logins_total", &[("realm", "ldap"), ("result", "failure")]), 0.0);
}

#[test]
fn database_pool_gauges_are_sane() {
    let s = scrape();
    let pool = |state: &str| get(&s, "wharf_db_pool_connections", &[("state", state)]);
    assert!(pool("max") >= 1.0, "{s:?}");
    assert!(pool("in_use") >= 0.0 && pool("in_use") <= pool("max"));
    assert!(pool("idle") >= 0.0 && pool("idle") + pool("in_use") <= pool("max"));
}

/// An upstream that answers 404 to everything, on a port of its own (a thread of the test).
fn answering_404() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}

#[test]
fn proxy_upstream_requests_count_by_outcome_per_repository() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let live = answering_404();
    for (name, port) in [("metrics-pypi-dead", dead), ("metrics-pypi-live", live)] {
        create_pypi_proxy(name, port, true);
    }
    let before = scrape();
    for name in ["metrics-pypi-dead", "metrics-pypi-live"] {
        let r =
            common::client().get(server().url(&format!("/repository/{name}/simple/nothing-here/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert!(r.status().is_client_error() || r.status().is_server_error(), "{name}: {}", r.status());
    }
    let after = scrape();
    let delta = |name: &str, labels: &[(&str, &str)]| get(&after, name, labels) - get(&before, name, labels);
    let outcome =
        |repo: &'static str, o: &'static str| delta("wharf_proxy_upstream_requests_total", &[("repository", repo), ("format", "pypi"), ("outcome", o)]);
    let observed = |repo: &'static str| delta("wharf_proxy_upstream_duration_seconds_count", &[("repository", repo), ("format", "pypi")]);
    assert!(outcome("metrics-pypi-dead", "failed") >= 1.0);
    assert_eq!(outcome("metrics-pypi-dead", "answered"), 0.0);
    assert!(outcome("metrics-pypi-live", "answered") >= 1.0);
    assert_eq!(outcome("metrics-pypi-live", "failed"), 0.0);
    for repo in ["metrics-pypi-dead", "metrics-pypi-live"] {
        assert_eq!(observed(repo), outcome(repo, "answered") + outcome(repo, "failed"), "{repo}");
    }
    // Hosted repositories report no upstream.
    assert!(!after.keys().any(|(name, labels)| name == "wharf_proxy_upstream_requests_total" && labels.iter().any(|(_, v)| v == REPO)));
}

#[test]
fn a_task_run_is_counted_by_type_and_result() {
    let runs = |s: &Series| get(s, "wharf_task_runs_total", &[("type", "blobstore.compact"), ("result", "OK")]);
    let durations = |s: &Series| get(s, "wharf_task_run_duration_seconds_count", &[("type", "blobstore.compact")]);
    let before = scrape();
    let r = server().admin().request(Method::POST, "/service/rest/v1/tasks/compact-blob-stores/run").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = scrape();
        if runs(&now) > runs(&before) {
            assert!(durations(&now) >= durations(&before) + 1.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run was not counted");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A PyPI upstream with one project (`demo`, one file) on a port of its own; answers 503 to
/// everything while `failing` is set.
fn pypi_upstream(failing: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let file = b"not really a tarball, but bytes with a digest".to_vec();
    let page = format!(
        "<!DOCTYPE html><html><body><a href=\"http://127.0.0.1:{port}/files/demo-1.0.tar.gz#sha256={}\">demo-1.0.tar.gz</a></body></html>",
        hex::encode(Sha256::digest(&file))
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&seen).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, ctype, body): (&str, &str, Vec<u8>) = if failing.load(std::sync::atomic::Ordering::SeqCst) {
                ("503 Service Unavailable", "text/plain", vec![])
            } else if path.ends_with("/simple/demo/") {
                ("200 OK", "text/html", page.clone().into_bytes())
            } else if path == "/files/demo-1.0.tar.gz" {
                ("200 OK", "application/octet-stream", file.clone())
            } else {
                ("404 Not Found", "text/plain", vec![])
            };
            let _ =
                conn.write_all(format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    port
}

#[test]
fn proxy_cache_hits_misses_and_stale_answers_are_counted() {
    const PROXY: &str = "metrics-pypi-cache";
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = pypi_upstream(failing.clone());
    create_pypi_proxy(PROXY, port, false);
    let fetch = |path: &str| {
        let r = common::client().get(server().url(&format!("/repository/{PROXY}/{path}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.bytes().unwrap()
    };
    let before = scrape();
    fetch("simple/demo/"); // asks the upstream
    fetch("simple/demo/"); // fresh in the cache
    let file = fetch("packages/demo/demo-1.0.tar.gz");
    assert_eq!(&file[..], b"not really a tarball, but bytes with a digest");
    fetch("packages/demo/demo-1.0.tar.gz");
    // Everything cached is now due, and the upstream fails: answered from the cache.
    let r = server().admin().request(Method::POST, &format!("/service/rest/v1/repositories/{PROXY}/invalidate-cache")).send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    fetch("simple/demo/"); // asks, gets a 503, serves the cached page
    fetch("simple/demo/"); // the upstream is known to fail: cached page at once
    fetch("packages/demo/demo-1.0.tar.gz");
    // A group's read through the proxy counts as the proxy's.
    let r = server()
        .admin()
        .request(Method::POST, "/service/rest/v1/repositories/pypi/group")
        .json(&json!({"name": "metrics-pypi-group", "storage": {"blobStoreName": "default"}, "group": {"memberNames": [PROXY]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let r = common::client().get(server().url("/repository/metrics-pypi-group/simple/demo/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let after = scrape();
    let count = |kind: &str, result: &str| {
        let labels = [("repository", PROXY), ("format", "pypi"), ("kind", kind), ("result", result)];
        get(&after, "wharf_proxy_cache_requests_total", &labels) - get(&before, "wharf_proxy_cache_requests_total", &labels)
    };
    // Fetching the file read the (fresh) cached page for its URL: a second metadata hit.
    assert_eq!([count("metadata", "miss"), count("metadata", "hit"), count("metadata", "stale")], [1.0, 2.0, 3.0]);
    assert_eq!([count("content", "miss"), count("content", "hit"), count("content", "stale")], [1.0, 1.0, 1.0]);
    let failed = [("repository", PROXY), ("format", "pypi"), ("outcome", "failed")];
    assert_eq!(get(&after, "wharf_proxy_upstream_requests_total", &failed) - get(&before, "wharf_proxy_upstream_requests_total", &failed), 1.0);
}

/// The exposition as Prometheus's own Python client library reads it: (name, labels, value) of
/// every sample.
fn parse_with_prometheus_client(text: &str) -> Series {
    use std::io::Write;
    const READ: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps([s.name, s.labels, s.value]))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", READ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the test venv's, with prometheus_client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client refused the exposition: {}", String::from_utf8_lossy(&out.stderr));
    let mut series = Series::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (name, labels, value): (String, BTreeMap<String, String>, f64) = serde_json::from_str(line).unwrap();
        series.insert((name, labels.into_iter().collect()), value);
    }
    series
}

#[test]
fn prometheus_client_reads_the_exposition_as_written() {
    // Some traffic first, so that histograms, labelled counters and gauges are all there.
    let r = common::client().get(server().url(&format!("/v2/{REPO}/tags/list"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert!(r.status().is_client_error() || r.status().is_success());
    let r = scrape_as(Some(("admin", ADMIN_PASSWORD)), "/service/metrics/prometheus");
    let text = r.text().unwrap();
    let theirs = parse_with_prometheus_client(&text);
    let ours = parse(&text);
    assert_eq!(theirs.len(), ours.len(), "sample counts differ");
    for (key, value) in &ours {
        let v = theirs.get(key).unwrap_or_else(|| panic!("prometheus_client lacks {key:?}"));
        assert!((v - value).abs() < 1e-9 || (v.is_infinite() && value.is_infinite()), "{key:?}: {v} vs {value}");
    }
    for family in ["wharf_http_requests_total", "wharf_http_request_duration_seconds_bucket", "wharf_db_pool_connections", "wharf_build_info"] {
        assert!(theirs.keys().any(|(name, _)| name == family), "{family} missing");
    }
}

#[test]
fn usage_gauges_cover_every_store_and_each_hard_quota() {
    let s = scrape();
    assert!(s.contains_key(&("wharf_blob_store_used_bytes".to_string(), vec![("blob_store".to_string(), "default".to_string())])), "{s:?}");
    assert!(s.contains_key(&("wharf_blob_store_blobs".to_string(), vec![("blob_store".to_string(), "default".to_string())])), "{s:?}");
    assert!(get(&s, "wharf_blob_store_available_bytes", &[("blob_store", "default")]) > 0.0);
    assert_eq!(get(&s, "wharf_repository_hard_quota_bytes", &[("repository", QUOTA_REPO)]), 5_000_000.0);
    assert!(s.contains_key(&("wharf_repository_used_bytes".to_string(), vec![("repository".to_string(), QUOTA_REPO.to_string())])), "{s:?}");
    // Repositories without a hard quota are not measured.
    assert!(!s.keys().any(|(name, labels)| name == "wharf_repository_used_bytes" && labels.iter().any(|(_, v)| v == REPO)));
}

#[test]
fn a_head_answer_sends_no_bytes_and_counts_none() {
    let r = server()
        .admin()
        .request(Method::POST, "/service/rest/v1/repositories/pypi/hosted")
        .json(&json!({"name": "metrics-pypi-head", "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let page = server().url("/repository/metrics-pypi-head/simple/");
    let repo = [("repository", "metrics-pypi-head"), ("format", "pypi")];
    let before = scrape();
    for _ in 0..5 {
        let r = common::client().head(&page).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let after_heads = scrape();
    assert_eq!(get(&after_heads, "wharf_http_response_bytes_total", &repo) - get(&before, "wharf_http_response_bytes_total", &repo), 0.0);
    let body = common::client().get(&page).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap();
    let after_get = scrape();
    assert_eq!(get(&after_get, "wharf_http_response_bytes_total", &repo) - get(&after_heads, "wharf_http_response_bytes_total", &repo), body.len() as f64);
}
