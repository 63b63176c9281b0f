//! Webhooks against a real HTTP receiver started here: a twine upload is a component CREATED
//! event (Nexus's payload and headers, signed with the shared secret), a delete is DELETED; npm
//! publish and unpublish, and a skopeo push, moved tag and deleted tag, likewise; a global
//! webhook hears audit and repository events; a receiver that fails twice gets the
//! delivery on the third attempt, each attempt in the delivery log; two nodes on one database
//! deliver each event once; secrets are never shown; bodies are validated.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServer, ADMIN_PASSWORD};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Retries come quickly here (production waits seconds).
fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| TestServer::start_with_env(&[("WHARF_WEBHOOKS__RETRY_MS", "200")]))
}

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on 127.0.0.1 in this process: records every request, and answers 500 to the
/// first `fail[path]` requests of a path, 200 to the rest.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail: Arc<Mutex<HashMap<String, u32>>>,
}

fn receiver() -> &'static Receiver {
    static R: OnceLock<Receiver> = OnceLock::new();
    R.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let (g, f) = (got.clone(), fail.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (g, f) = (g.clone(), f.clone());
                std::thread::spawn(move || serve(conn, &g, &f));
            }
        });
        Receiver { base, got, fail }
    })
}

/// One request per connection (answered with `Connection: close`).
fn serve(conn: std::net::TcpStream, got: &Mutex<Vec<Received>>, fail: &Mutex<HashMap<String, u32>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let status = {
        let mut f = fail.lock().unwrap();
        match f.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                "500 Internal Server Error"
            }
            _ => "200 OK",
        }
    };
    got.lock().unwrap().push(Received { path, headers, body });
    let mut out = conn;
    let _ = write!(out, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits (up to a deadline generous for a busy 2-core machine) until `done` holds for what
    /// `path` received.
    fn wait_for(&self, path: &str, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.at(path);
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received within 60 s; got {:#?}",
                got.iter().map(|r| (r.header("X-Nexus-Webhook-Id"), r.json())).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn events<'a>(got: &'a [Received], id: &str) -> Vec<&'a Received> {
    got.iter().filter(|r| r.header("X-Nexus-Webhook-Id") == id).collect()
}

fn hmac_sha1(key: &str, body: &[u8]) -> String {
    let mut m = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

fn hmac_sha256(key: &str, body: &[u8]) -> String {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

fn api(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server().admin().json(method, &format!("/service/rest/v1{path}"), body)
}

fn create_webhook(body: Value) {
    let (st, v) = api(Method::POST, "/webhooks", Some(body));
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn twine_upload(files: &[&Path]) {
    ok(Command::new("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            &server().url("/repository/pypi-hosted/"),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ])
        .args(files)
        .output()
        .expect("twine is installed"));
}

fn make_dist(dir: &Path, name: &str, version: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let text = ok(Command::new("python3").arg(script).arg(dir).arg(name).arg(version).output().unwrap());
    let mut lines = text.lines();
    (lines.next().unwrap().into(), lines.next().unwrap().into())
}

fn component_id(repo: &str, name: &str, version: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{repo}\n{name}\n{version}"))
}

/// Polls the delivery log until `done` holds for its items.
fn deliveries_until(name: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, v) = api(Method::GET, &format!("/webhooks/{name}/deliveries"), None);
        assert_eq!(st, StatusCode::OK, "{v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if done(&items) {
            return items;
        }
        assert!(Instant::now() < deadline, "{what}: not in the delivery log within 60 s: {items:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_twine_upload_is_a_signed_component_created_event_and_a_delete_is_deleted() {
    let r = receiver();
    let secret = "a shared secret";
    create_webhook(json!({"name": "pypi-content", "url": r.url("/pypi"), "eventTypes": ["component", "asset"], "repository": "pypi-hosted", "secret": secret}));

    // The secret is write-only.
    for (path, one) in [("/webhooks/pypi-content", true), ("/webhooks", false)] {
        let (st, v) = api(Method::GET, path, None);
        assert_eq!(st, StatusCode::OK);
        let hook = if one { v.clone() } else { v.as_array().unwrap().iter().find(|h| h["name"] == "pypi-content").unwrap().clone() };
        assert_eq!(hook["hasSecret"], json!(true), "{hook}");
        assert!(hook.get("secret").is_none() && !v.to_string().contains(secret), "{v}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = make_dist(tmp.path(), "hook-project", "1.0");
    twine_upload(&[&whl, &sdist]);

    // Two files: the first creates the component, the second updates it; each is an asset.
    let got = r
        .wait_for("/pypi", "the component and both assets", |g| events(g, "rm:repository:component").len() >= 2 && events(g, "rm:repository:asset").len() >= 2);
    let components = events(&got, "rm:repository:component");
    let created: Vec<&&Received> = components.iter().filter(|e| e.json()["action"] == "CREATED").collect();
    assert_eq!(created.len(), 1, "one CREATED for the component: {:?}", components.iter().map(|e| e.json()).collect::<Vec<_>>());
    let e = created[0];
    let p = e.json();
    let id = component_id("pypi-hosted", "hook-project", "1.0");
    assert_eq!(p["repositoryName"], json!("pypi-hosted"));
    assert_eq!(p["initiator"], json!("admin/127.0.0.1"));
    assert_eq!(p["component"], json!({"id": id, "componentId": id, "format": "pypi", "name": "hook-project", "group": null, "version": "1.0"}));
    assert!(p["nodeId"].as_str().is_some_and(|n| !n.is_empty()) && p["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{p}");
    assert_eq!(e.header("Content-Type"), "application/json; charset=UTF-8");
    assert!(uuid_like(e.header("X-Nexus-Webhook-Delivery")), "{:?}", e.headers);
    // Nexus's signature: hex HMAC-SHA1 of the body; wharf's SHA-256 one beside it.
    assert_eq!(e.header("X-Nexus-Webhook-Signature"), hmac_sha1(secret, &e.body));
    assert_eq!(e.header("X-Wharf-Webhook-Signature-256"), format!("sha256={}", hmac_sha256(secret, &e.body)));
    assert!(components.iter().any(|e| e.json()["action"] == "UPDATED"), "the second file updates the component");
    // The component id is the components API's.
    let (st, c) = api(Method::GET, &format!("/components/{id}"), None);
    assert_eq!((st, c["version"].as_str()), (StatusCode::OK, Some("1.0")));

    let assets = events(&got, "rm:repository:asset");
    let mut names: Vec<String> =
        assets.iter().filter(|e| e.json()["action"] == "CREATED").map(|e| e.json()["asset"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    let file = |p: &Path| format!("packages/hook-project/{}", p.file_name().unwrap().to_str().unwrap());
    let mut expected = vec![file(&whl), file(&sdist)];
    expected.sort();
    assert_eq!(names, expected);
    assert!(assets.iter().all(|e| e.json()["asset"]["format"] == "pypi" && e.header("X-Nexus-Webhook-Signature") == hmac_sha1(secret, &e.body)));

    // Deleted through the components API: one DELETED for the component, one per file.
    let (st, v) = api(Method::DELETE, &format!("/components/{id}"), None);
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let got = r.wait_for("/pypi", "the component's deletion", |g| {
        events(g, "rm:repository:component").iter().any(|e| e.json()["action"] == "DELETED")
            && events(g, "rm:repository:asset").iter().filter(|e| e.json()["action"] == "DELETED").count() >= 2
    });
    let deleted: Vec<Value> = events(&got, "rm:repository:component").iter().map(|e| e.json()).filter(|p| p["action"] == "DELETED").collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!((deleted[0]["component"]["id"].as_str(), deleted[0]["initiator"].as_str()), (Some(id.as_str()), Some("admin/127.0.0.1")));

    // Every one of them is in the delivery log: delivered at the first attempt.
    let n = got.len();
    let log = deliveries_until("pypi-content", "every delivery delivered", |items| items.len() >= n && items.iter().all(|d| d["status"] == "delivered"));
    for d in &log {
        assert_eq!((d["attempts"].as_i64(), d["attemptLog"][0]["statusCode"].as_i64()), (Some(1), Some(200)), "{d}");
        assert!(got.iter().any(|r| r.header("X-Nexus-Webhook-Delivery") == d["id"].as_str().unwrap()), "{d}");
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[test]
fn a_global_webhook_hears_audit_events_and_repository_changes() {
    let r = receiver();
    create_webhook(json!({"name": "everything-global", "url": r.url("/global"), "eventTypes": ["audit", "repository"]}));
    let body =
        json!({"name": "hooked-pypi", "online": true, "storage": {"blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "ALLOW"}});
    let (st, v) = api(Method::POST, "/repositories/pypi/hosted", Some(body));
    assert_eq!(st, StatusCode::CREATED, "{v}");

    let got = r.wait_for("/global", "the repository's audit and repository events", |g| {
        events(g, "rm:global:audit")
            .iter()
            .any(|e| e.json()["audit"]["domain"] == "repository" && e.json()["audit"]["attributes"]["repository"] == "hooked-pypi")
            && events(g, "rm:global:repository").iter().any(|e| e.json()["repository"]["name"] == "hooked-pypi")
    });
    let audit = events(&got, "rm:global:audit").into_iter().map(Received::json).find(|p| p["audit"]["attributes"]["repository"] == "hooked-pypi").unwrap();
    assert_eq!(audit["initiator"], json!("admin/127.0.0.1"));
    assert_eq!((audit["audit"]["type"].as_str(), audit["audit"]["context"].as_str()), (Some("create"), Some("hooked-pypi")), "{audit}");
    let repo = events(&got, "rm:global:repository").into_iter().map(Received::json).find(|p| p["repository"]["name"] == "hooked-pypi").unwrap();
    assert_eq!(repo["action"], json!("CREATED"));
    assert_eq!(repo["repository"], json!({"format": "pypi", "name": "hooked-pypi", "type": "hosted"}));
    // Unsigned without a secret.
    assert!(got.iter().all(|e| e.header("X-Nexus-Webhook-Signature").is_empty()));
    // Its own creation was audited, and so heard.
    let got = r.wait_for("/global", "the webhook's own creation", |g| {
        events(g, "rm:global:audit").iter().any(|e| e.json()["audit"]["context"] == "everything-global")
    });
    let own = events(&got, "rm:global:audit").into_iter().map(Received::json).find(|p| p["audit"]["context"] == "everything-global").unwrap();
    assert_eq!((own["audit"]["domain"].as_str(), own["audit"]["type"].as_str()), (Some("webhook"), Some("create")), "{own}");
}

/// A receiver that takes the connection and never answers holds each send for the whole
/// timeout. Its backlog once filled every claim, and a batch waited for its slowest send, so
/// every other webhook waited too; now it holds a few sends, and the others' go out meanwhile.
#[test]
fn a_receiver_that_never_answers_does_not_hold_up_the_others() {
    let s = TestServer::start_with_env(&[("WHARF_WEBHOOKS__RETRY_MS", "200"), ("WHARF_WEBHOOKS__TIMEOUT_SECS", "60")]);
    let api = |method: Method, path: &str, body: Option<Value>| s.admin().json(method, &format!("/service/rest/v1{path}"), body);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/never", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let (st, v) = api(Method::POST, "/webhooks", Some(json!({"name": "silent", "url": silent_url, "eventTypes": ["audit"]})));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // A backlog for the silent receiver: each change is an audit event.
    for i in 0..24 {
        let (st, v) = api(Method::POST, "/security/roles", Some(json!({"id": format!("backlog-{i}"), "name": "b", "privileges": []})));
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let r = receiver();
    let (st, v) = api(Method::POST, "/webhooks", Some(json!({"name": "answering", "url": r.url("/answering"), "eventTypes": ["audit"]})));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = api(Method::POST, "/security/roles", Some(json!({"id": "after-the-backlog", "name": "a", "privileges": []})));
    assert_eq!(st, StatusCode::OK, "{v}");
    r.wait_for("/answering", "the answering receiver's event", |g| g.iter().any(|e| e.json()["audit"]["context"] == "after-the-backlog"));
    // It came while the silent receiver's first sends still wait out their minute.
    let (st, log) = api(Method::GET, "/webhooks/silent/deliveries", None);
    assert_eq!(st, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    assert!(items.len() >= 24, "{log}");
    assert!(items.iter().all(|d| d["attempts"] == 0 && d["status"] == "pending"), "an attempt of the silent receiver ended first: {log}");
}

#[test]
fn a_receiver_that_fails_twice_gets_the_delivery_at_the_third_attempt() {
    let r = receiver();
    r.fail.lock().unwrap().insert("/flaky".into(), 2);
    // Hears nothing else (nothing is published to npm-hosted here), so the failures are the ping's.
    create_webhook(json!({"name": "flaky", "url": r.url("/flaky"), "eventTypes": ["asset"], "repository": "npm-hosted", "secret": "k"}));
    let (st, v) = api(Method::POST, "/webhooks/flaky/test", None);
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let delivery = v["deliveryId"].as_str().unwrap().to_string();

    let log = deliveries_until("flaky", "the ping delivered", |items| items.iter().any(|d| d["id"] == delivery.as_str() && d["status"] == "delivered"));
    let d = log.iter().find(|d| d["id"] == delivery.as_str()).unwrap();
    assert_eq!(d["eventId"], json!("wharf:ping"));
    assert_eq!(d["attempts"], json!(3), "{d}");
    let attempts = d["attemptLog"].as_array().unwrap();
    assert_eq!(attempts.iter().map(|a| a["statusCode"].as_i64().unwrap()).collect::<Vec<_>>(), vec![500, 500, 200], "{d}");
    assert_eq!(attempts.iter().map(|a| a["attempt"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(attempts[0]["error"], json!("HTTP 500 Internal Server Error"));
    // Backoff: the third attempt waited about twice as long as the second.
    let at = |i: usize| chrono_millis(attempts[i]["at"].as_str().unwrap());
    assert!(at(1) - at(0) >= 200 && at(2) - at(1) >= 400, "{attempts:?}");
    // The receiver saw the same delivery three times and answered 200 once.
    let pings: Vec<Received> = r.at("/flaky").into_iter().filter(|e| e.header("X-Nexus-Webhook-Delivery") == delivery).collect();
    assert_eq!(pings.len(), 3);
    assert!(pings.iter().all(|e| e.body == pings[0].body && e.header("X-Nexus-Webhook-Signature") == hmac_sha1("k", &e.body)));
    assert_eq!(pings[0].json()["ping"]["webhook"], json!("flaky"));
}

/// `2026-12-03T20:00:00.123Z` in milliseconds (for differences only).
fn chrono_millis(t: &str) -> i64 {
    let (hms, ms) = t.trim_end_matches('Z').split_once('.').unwrap();
    let time = hms.split('T').nth(1).unwrap();
    let p: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + ms.parse::<i64>().unwrap()
}

#[test]
fn a_failing_receiver_is_given_up_after_the_last_attempt() {
    let r = receiver();
    r.fail.lock().unwrap().insert("/down".into(), 1000);
    create_webhook(json!({"name": "down", "url": r.url("/down"), "eventTypes": ["asset"], "repository": "npm-hosted"}));
    let (st, v) = api(Method::POST, "/webhooks/down/test", None);
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let delivery = v["deliveryId"].as_str().unwrap().to_string();
    // 5 attempts: 200 + 400 + 800 + 1600 ms of pauses.
    let log = deliveries_until("down", "the ping failed", |items| items.iter().any(|d| d["id"] == delivery.as_str() && d["status"] == "failed"));
    let d = log.iter().find(|d| d["id"] == delivery.as_str()).unwrap();
    assert_eq!((d["attempts"].as_i64(), d["attemptLog"].as_array().unwrap().len()), (Some(5), 5), "{d}");
    assert!(d["finishedAt"].is_string() && d["nextAttemptAt"].is_null(), "{d}");
}

/// On a pair of nodes of their own (a node killed while it holds a claim would hold up the
/// other tests' deliveries for a lease).
#[test]
fn two_nodes_on_one_database_deliver_each_event_once() {
    let r = receiver();
    let a = TestServer::start_with_env(&[("WHARF_WEBHOOKS__RETRY_MS", "200")]);
    let key = std::fs::read_to_string(a.data_dir().join("secret.key")).unwrap();
    let b = a.node_on_own_data_dir(&[("WHARF_SECRET_KEY", key.trim())]);
    let (st, v) = a.admin().json(
        Method::POST,
        "/service/rest/v1/webhooks",
        Some(json!({"name": "twice", "url": r.url("/twice"), "eventTypes": ["audit"], "secret": "both nodes read it"})),
    );
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let mut ids = Vec::new();
    for i in 0..30 {
        // Queued through both nodes, so both are woken and race for the rows.
        let node = if i % 2 == 0 { &a } else { &b };
        let (st, v) = node.admin().json(Method::POST, "/service/rest/v1/webhooks/twice/test", None);
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
        ids.push(v["deliveryId"].as_str().unwrap().to_string());
    }
    let got = r.wait_for("/twice", "every ping", |g| ids.iter().all(|id| g.iter().any(|e| e.header("X-Nexus-Webhook-Delivery") == id)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let (_, v) = a.admin().json(Method::GET, "/service/rest/v1/webhooks/twice/deliveries", None);
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 30 && items.iter().all(|d| d["status"] == "delivered") {
            break items;
        }
        assert!(Instant::now() < deadline, "not all delivered: {items:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for id in &ids {
        let sent: Vec<&Received> = got.iter().filter(|e| e.header("X-Nexus-Webhook-Delivery") == id).collect();
        assert_eq!(sent.len(), 1, "delivery {id} was sent once");
        assert_eq!(sent[0].header("X-Nexus-Webhook-Signature"), hmac_sha1("both nodes read it", &sent[0].body));
    }
    assert!(log.iter().all(|d| d["attempts"] == 1 && d["attemptLog"].as_array().unwrap().len() == 1), "{log:#?}");
    let nodes: std::collections::BTreeSet<&str> = log.iter().map(|d| d["attemptLog"][0]["node"].as_str().unwrap()).collect();
    eprintln!("deliveries by node: {nodes:?}");
}

#[test]
fn bodies_are_checked_and_secrets_are_kept_changed_or_removed() {
    let r = receiver();
    let bad = |body: Value, field: &str, code: &str| {
        let (st, v) = api(Method::POST, "/webhooks", Some(body.clone()));
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!((v[0]["id"].as_str(), v[0]["code"].as_str()), (Some(format!("PARAMETER {field}").as_str()), Some(code)), "{body}: {v}");
    };
    let url = r.url("/checked");
    bad(json!({"name": "x", "url": url, "eventTypes": ["audit"], "colour": "red"}), "colour", "unknown");
    bad(json!({"name": "x", "url": "ftp://example.com/", "eventTypes": ["audit"]}), "url", "invalid");
    bad(json!({"name": "x", "url": "http://user:pw@example.com/", "eventTypes": ["audit"]}), "url", "invalid");
    bad(json!({"name": "x", "eventTypes": ["audit"]}), "url", "required");
    bad(json!({"name": "x", "url": url, "eventTypes": ["pushes"]}), "eventTypes", "invalid");
    bad(json!({"name": "x", "url": url, "eventTypes": "audit"}), "eventTypes", "type.strings");
    bad(json!({"name": "x", "url": url, "eventTypes": ["audit"], "repository": "pypi-hosted"}), "eventTypes", "invalid");
    bad(json!({"name": "x", "url": url, "eventTypes": ["component"], "repository": "no-such-repo"}), "repository", "invalid");
    bad(json!({"name": "../x", "url": url, "eventTypes": ["audit"]}), "name", "invalid");

    create_webhook(json!({"name": "checked", "url": url, "eventTypes": ["component"], "repository": "npm-hosted", "secret": "first"}));
    let (st, v) = api(Method::POST, "/webhooks", Some(json!({"name": "checked", "url": url, "eventTypes": ["audit"]})));
    assert_eq!(st, StatusCode::BAD_REQUEST, "a second webhook of the same name: {v}");
    // Left out, the secret stays; null removes it.
    let (st, v) =
        api(Method::PUT, "/webhooks/checked", Some(json!({"url": url, "eventTypes": ["component", "asset"], "repository": "npm-hosted", "enabled": false})));
    assert_eq!(
        (st, v["hasSecret"].clone(), v["enabled"].clone(), v["eventTypes"].clone()),
        (StatusCode::OK, json!(true), json!(false), json!(["component", "asset"])),
        "{v}"
    );
    let (st, v) = api(Method::PUT, "/webhooks/checked", Some(json!({"name": "renamed", "url": url, "eventTypes": ["component"]})));
    assert_eq!((st, v[0]["id"].as_str()), (StatusCode::BAD_REQUEST, Some("PARAMETER name")), "{v}");
    // A disabled webhook is not sent a test.
    let (st, _) = api(Method::POST, "/webhooks/checked/test", None);
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, v) = api(Method::PUT, "/webhooks/checked", Some(json!({"url": url, "eventTypes": ["component"], "secret": null})));
    assert_eq!((st, v["hasSecret"].clone(), v["repository"].clone()), (StatusCode::OK, json!(false), Value::Null), "{v}");

    // Administrators only; every change is in the audit log.
    let anon = reqwest::blocking::Client::new().get(server().url("/service/rest/v1/webhooks")).send().unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let (st, _) = api(Method::DELETE, "/webhooks/checked", None);
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = api(Method::GET, "/webhooks/checked", None);
    assert_eq!((st, v["code"].as_str(), v["kind"].as_str()), (StatusCode::NOT_FOUND, Some("not_found"), Some("webhook")));
    // Audit events are written in the background: polled.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, audit) = api(Method::GET, "/audit?action=webhook.*", None);
        let seen: Vec<(String, String)> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["object"] == "checked")
            .map(|e| (e["action"].as_str().unwrap().to_string(), e["actor"].as_str().unwrap().to_string()))
            .collect();
        if ["webhook.create", "webhook.update", "webhook.delete"].iter().all(|a| seen.contains(&(a.to_string(), "admin".to_string()))) {
            break;
        }
        assert!(Instant::now() < deadline, "webhook changes missing from the audit log: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn npm(dir: &Path, cwd: &Path, args: &[&str]) -> String {
    ok(Command::new("npm")
        .args(args)
        .current_dir(cwd)
        .env("npm_config_userconfig", dir.join("npmrc"))
        .env("npm_config_cache", dir.join("cache"))
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env_remove("npm_config_registry")
        .output()
        .expect("npm is installed"))
}

/// npm publish and npm unpublish, through the registry protocol: the events name the caller.
#[test]
fn npm_publish_and_unpublish_are_component_events_of_their_caller() {
    let r = receiver();
    create_webhook(json!({"name": "npm-content", "url": r.url("/npm"), "eventTypes": ["component"], "repository": "npm-hosted"}));
    let tmp = tempfile::tempdir().unwrap();
    let token = reqwest::blocking::Client::new()
        .put(server().url("/repository/npm-hosted/-/user/org.couchdb.user:admin"))
        .json(&json!({"name": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let registry = server().url("/repository/npm-hosted/");
    std::fs::write(tmp.path().join("npmrc"), format!("registry={registry}\n{}:_authToken={token}\n", registry.trim_start_matches("http:"))).unwrap();
    for version in ["1.0.0", "1.1.0"] {
        let pkg = tmp.path().join(version);
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("package.json"), json!({"name": "@hooks/pkg", "version": version}).to_string()).unwrap();
        npm(tmp.path(), &pkg, &["publish"]);
    }
    let created =
        |g: &[Received], v: &str| events(g, "rm:repository:component").iter().any(|e| e.json()["action"] == "CREATED" && e.json()["component"]["version"] == v);
    let got = r.wait_for("/npm", "both versions created", |g| created(g, "1.0.0") && created(g, "1.1.0"));
    let p = events(&got, "rm:repository:component").into_iter().map(Received::json).find(|p| p["component"]["version"] == "1.0.0").unwrap();
    let id = component_id("npm-hosted", "@hooks/pkg", "1.0.0");
    assert_eq!(p["component"], json!({"id": id, "componentId": id, "format": "npm", "name": "pkg", "group": "@hooks", "version": "1.0.0"}));
    assert_eq!((p["action"].as_str(), p["initiator"].as_str(), p["repositoryName"].as_str()), (Some("CREATED"), Some("admin/127.0.0.1"), Some("npm-hosted")));

    npm(tmp.path(), tmp.path(), &["unpublish", "@hooks/pkg@1.0.0", "--force"]);
    let got = r.wait_for("/npm", "the version's deletion", |g| {
        events(g, "rm:repository:component").iter().any(|e| e.json()["action"] == "DELETED" && e.json()["component"]["version"] == "1.0.0")
    });
    let actions: Vec<(String, String)> = events(&got, "rm:repository:component")
        .into_iter()
        .map(Received::json)
        .map(|p| (p["action"].as_str().unwrap().to_string(), p["component"]["version"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(actions.iter().filter(|(a, _)| a == "DELETED").count(), 1, "only 1.0.0 is deleted: {actions:?}");
    let deleted = events(&got, "rm:repository:component").into_iter().map(Received::json).find(|p| p["action"] == "DELETED").unwrap();
    assert_eq!(deleted["initiator"], json!("admin/127.0.0.1"), "the caller of the unpublish, through the registry protocol");
}

/// A skopeo push is a tag (Docker's component) CREATED; pushed again to new content, UPDATED;
/// deleted through the registry API, DELETED.
#[test]
fn a_skopeo_push_moves_and_deletes_a_tag() {
    let r = receiver();
    create_webhook(json!({"name": "docker-content", "url": r.url("/docker"), "eventTypes": ["component"], "repository": "docker-hosted"}));
    let tmp = tempfile::tempdir().unwrap();
    let push = |seed: u64| {
        let layout = tmp.path().join(format!("layout-{seed}"));
        common::oci::image(&layout, "v1", &["amd64"], seed, 512);
        ok(Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &format!("admin:{ADMIN_PASSWORD}")])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/docker-hosted/hooks/app:v1", server().addr))
            .output()
            .expect("skopeo is installed"));
    };
    let tagged = |g: &[Received], action: &str| {
        events(g, "rm:repository:component").iter().filter(|e| e.json()["action"] == action && e.json()["component"]["version"] == "v1").count()
    };
    push(11);
    let got = r.wait_for("/docker", "the tag created", |g| tagged(g, "CREATED") == 1);
    let p = events(&got, "rm:repository:component")[0].json();
    let id = component_id("docker-hosted", "hooks/app", "v1");
    assert_eq!(p["component"], json!({"id": id, "componentId": id, "format": "docker", "name": "hooks/app", "group": null, "version": "v1"}));
    assert_eq!(p["initiator"], json!("admin/127.0.0.1"));
    push(12);
    r.wait_for("/docker", "the tag moved", |g| tagged(g, "UPDATED") >= 1);
    let (st, v) = api(Method::DELETE, &format!("/components/{id}"), None);
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let got = r.wait_for("/docker", "the tag deleted", |g| tagged(g, "DELETED") == 1);
    assert_eq!(tagged(&got, "CREATED"), 1, "created once");
}

/// Read-only mode keeps the database still for a backup: webhook changes are refused and
/// deliveries wait; after the release what was queued meanwhile goes out. On a server of its
/// own (a freeze stops every write on the server).
#[test]
fn deliveries_wait_while_the_server_is_read_only() {
    let r = receiver();
    let s = TestServer::start_with_env(&[("WHARF_WEBHOOKS__RETRY_MS", "200")]);
    let call = |m: Method, path: &str, body: Option<Value>| s.admin().json(m, &format!("/service/rest/v1{path}"), body);
    let (st, v) = call(Method::POST, "/webhooks", Some(json!({"name": "frozen", "url": r.url("/frozen"), "eventTypes": ["audit"]})));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    r.wait_for("/frozen", "the webhook's own creation", |g| !g.is_empty());
    let (st, v) = call(Method::POST, "/read-only/freeze", Some(json!({"reason": "backup"})));
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(Method::POST, "/webhooks/frozen/test", None);
    assert_eq!((st, v["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("read_only")), "{v}");
    // A sign-in is audited while frozen: queued, not sent.
    let before = r.at("/frozen").len();
    let login = reqwest::blocking::Client::new()
        .post(s.url("/service/rest/v1/session"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .unwrap();
    assert!(login.status().is_success(), "{}", login.status());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, log) = call(Method::GET, "/webhooks/frozen/deliveries", None);
        if log["items"].as_array().unwrap().iter().any(|d| d["status"] == "pending") {
            break;
        }
        assert!(Instant::now() < deadline, "the sign-in's event is queued: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two of the deliverer's polls pass without a delivery.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(r.at("/frozen").len(), before, "nothing is sent while frozen");
    let (st, v) = call(Method::POST, "/read-only/release", None);
    assert_eq!(st, StatusCode::OK, "{v}");
    r.wait_for("/frozen", "the queued event after the release", |g| g.len() > before);
}
