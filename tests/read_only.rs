//! Read-only mode (Nexus's freeze) with the real clients: while frozen, `skopeo copy`, `twine
//! upload` and `npm publish` are refused with a message that says so, while pulls, downloads
//! and installs go on; the admin API refuses changes (503, code `read_only`) but signing in and
//! releasing; `status/writable` answers 503; another node sharing the database refuses writes
//! within the cluster's 2 s; after the release everything writes again.
//!
//! One test: a freeze stops every write on the server, so nothing else may run beside it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{oci, TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn api(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    s.admin().json(method, &format!("/service/rest/v1{path}"), body)
}

fn expect(s: &TestServer, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
    let (status, v) = api(s, method.clone(), path, body);
    assert_eq!(status.as_u16(), want, "{method} {path}: {v}");
    v
}

fn combined(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}", combined(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The client failed and said why: read-only mode, and the administrator's reason.
fn refused_read_only(out: &Output) {
    assert!(!out.status.success(), "expected a refusal: {}", combined(out));
    let said = combined(out).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(said.contains("read-only mode") && said.contains("(nightly backup)"), "the client says why: {said}");
}

fn push(s: &TestServer, layout: &Path, dest: &str) -> Output {
    Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &format!("admin:{ADMIN_PASSWORD}")])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{}/docker-ro/{dest}", s.addr))
        .output()
        .expect("skopeo is installed")
}

fn pull(s: &TestServer, image: &str, into: &Path) -> Output {
    Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--src-creds", &format!("admin:{ADMIN_PASSWORD}")])
        .arg(format!("docker://{}/docker-ro/{image}", s.addr))
        .arg(format!("oci:{}:1", into.display()))
        .output()
        .expect("skopeo is installed")
}

fn dist(dir: &Path, name: &str, version: &str) -> PathBuf {
    common::pypi::dist(dir, name, version, &[]).0
}

fn twine(s: &TestServer, file: &Path) -> Output {
    common::pypi::twine(&format!("{}/repository/pypi-ro/", s.base), "admin", ADMIN_PASSWORD, &[file])
}

fn pip_download(s: &TestServer, spec: &str, into: &Path) -> Output {
    Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated", "download", "--no-cache-dir", "--no-deps", "-d"])
        .arg(into)
        .args(["--index-url", &common::pypi::index_url(s, "pypi-ro"), spec])
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .output()
        .unwrap()
}

fn npmrc(s: &TestServer, dir: &Path) -> PathBuf {
    let registry = format!("{}/repository/npm-ro/", s.base);
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("admin:{ADMIN_PASSWORD}"));
    let rc = dir.join(format!("npmrc-{}", s.addr.replace([':', '.'], "-")));
    std::fs::write(&rc, format!("registry={registry}\n{}:_auth={auth}\n", registry.trim_start_matches("http:"))).unwrap();
    rc
}

fn npm(dir: &Path, rc: &Path, args: &[&str]) -> Output {
    Command::new("npm")
        .args(args)
        .current_dir(dir)
        .env("npm_config_userconfig", rc)
        .env("npm_config_cache", rc.with_file_name("npm-cache"))
        .env("npm_config_update_notifier", "false")
        .env_remove("npm_config_registry")
        .output()
        .expect("npm is installed")
}

fn npm_package(dir: &Path, version: &str) -> PathBuf {
    let d = dir.join(format!("ro-lib-{version}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("package.json"), json!({"name": "ro-lib", "version": version, "main": "index.js"}).to_string()).unwrap();
    std::fs::write(d.join("index.js"), format!("module.exports = {version:?};\n")).unwrap();
    d
}

#[test]
fn a_frozen_server_refuses_every_write_and_serves_every_read_until_released() {
    let s = TestServer::start();
    expect(&s, Method::POST, "/repositories/docker/hosted", Some(json!({"name": "docker-ro", "storage": {"blobStoreName": "default"}, "docker": {}})), 201);
    expect(&s, Method::POST, "/repositories/pypi/hosted", Some(json!({"name": "pypi-ro", "storage": {"blobStoreName": "default"}})), 201);
    expect(&s, Method::POST, "/repositories/npm/hosted", Some(json!({"name": "npm-ro", "storage": {"blobStoreName": "default"}})), 201);
    let tmp = tempfile::tempdir().unwrap();
    let (app, later) = (tmp.path().join("app"), tmp.path().join("later"));
    oci::image_of_layers(&app, "1", &[1, 2], 32 << 10, "kept");
    oci::image_of_layers(&later, "1", &[3, 4], 32 << 10, "later");
    ok(push(&s, &app, "app:1"));
    ok(twine(&s, &dist(tmp.path(), "ro-pkg", "1.0")));
    let rc = npmrc(&s, tmp.path());
    ok(npm(&npm_package(tmp.path(), "1.0.0"), &rc, &["publish"]));
    assert_eq!(expect(&s, Method::GET, "/read-only", None, 200)["frozen"], json!(false));
    let http = reqwest::blocking::Client::new();
    assert_eq!(http.get(s.url("/service/rest/v1/status/writable")).send().unwrap().status(), StatusCode::OK);

    // Freeze, with a reason every refusal repeats.
    let f = expect(&s, Method::POST, "/read-only/freeze", Some(json!({"reason": "nightly backup"})), 200);
    assert_eq!((f["frozen"].clone(), f["frozenBy"].clone(), f["tasksStillRunning"].clone()), (json!(true), json!("admin"), json!([])), "{f}");
    let state = expect(&s, Method::GET, "/read-only", None, 200);
    assert!(state["summaryReason"].as_str().unwrap().contains("(nightly backup)"), "{state}");
    assert_eq!(http.get(s.url("/service/rest/v1/status/writable")).send().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(http.get(s.url("/service/rest/v1/status")).send().unwrap().status(), StatusCode::OK, "still readable");
    let check = expect(&s, Method::GET, "/status/check", None, 200);
    assert_eq!(check["Read-only"]["healthy"], json!(false), "{check}");

    // Writes in every protocol: refused, saying why.
    refused_read_only(&push(&s, &later, "later:1"));
    refused_read_only(&twine(&s, &dist(tmp.path(), "ro-pkg", "1.1")));
    refused_read_only(&npm(&npm_package(tmp.path(), "1.0.1"), &rc, &["publish"]));
    refused_read_only(&npm(tmp.path(), &rc, &["dist-tag", "add", "ro-lib@1.0.0", "stable"]));
    let deleted = http.delete(s.url("/v2/docker-ro/app/manifests/1")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(deleted.status(), StatusCode::FORBIDDEN);
    assert_eq!(deleted.json::<Value>().unwrap()["errors"][0]["code"], json!("DENIED"));

    // Reads: pulls, downloads and installs.
    ok(pull(&s, "app:1", &tmp.path().join("pulled")));
    ok(pip_download(&s, "ro-pkg==1.0", &tmp.path().join("dl")));
    let view = ok(npm(tmp.path(), &rc, &["view", "ro-lib", "versions", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&view).unwrap(), json!(["1.0.0"]), "{view}");
    ok(npm(tmp.path(), &rc, &["pack", "ro-lib@1.0.0"]));

    // The admin API: changes refused (503, coded), reads and signing in go on.
    for (method, path, body) in [
        (Method::POST, "/repositories/npm/hosted", Some(json!({"name": "npm-new", "storage": {"blobStoreName": "default"}}))),
        (Method::DELETE, "/repositories/npm-ro", None),
        (
            Method::POST,
            "/security/users",
            Some(
                json!({"userId": "u", "firstName": "u", "lastName": "u", "emailAddress": "u@x.org", "password": "pw-123456789", "status": "active", "roles": []}),
            ),
        ),
    ] {
        let (status, v) = api(&s, method.clone(), path, body);
        assert_eq!((status, v["code"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("read_only")), "{method} {path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("(nightly backup)"), "{v}");
    }
    let tasks = expect(&s, Method::GET, "/tasks", None, 200);
    let task = tasks["items"].as_array().unwrap().first().cloned().unwrap_or_else(|| panic!("built-in tasks: {tasks}"));
    let (status, v) = api(&s, Method::POST, &format!("/tasks/{}/run", task["id"].as_str().unwrap()), None);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a task does not start: {v}");
    let signed_in = http.post(s.url("/service/rest/v1/session")).json(&json!({"username": "admin", "password": ADMIN_PASSWORD})).send().unwrap();
    assert!(signed_in.status().is_success(), "signing in works while frozen: {}", signed_in.status());

    // Another node on the same database hears of the freeze and of its release within 2 s.
    let mut b = s.second_node();
    let rc_b = npmrc(&b, tmp.path());
    let probe = || {
        http.put(b.url("/repository/npm-ro/-/package/ro-lib/dist-tags/probe")).basic_auth("admin", Some(ADMIN_PASSWORD)).json(&"1.0.0").send().unwrap().status()
    };
    assert_eq!(probe(), StatusCode::FORBIDDEN, "a node started while frozen is frozen");
    refused_read_only(&npm(&npm_package(tmp.path(), "1.0.2"), &rc_b, &["publish"]));

    expect(&s, Method::POST, "/read-only/release", None, 200);
    assert_eq!(expect(&s, Method::GET, "/read-only", None, 200)["frozen"], json!(false));
    let released = Instant::now();
    while !probe().is_success() {
        assert!(released.elapsed() < Duration::from_secs(2), "node b still refuses writes {:?} after the release", released.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    // And a freeze made on a node reaches the other as quickly.
    expect(&s, Method::POST, "/read-only/freeze", None, 200);
    let frozen = Instant::now();
    while probe() != StatusCode::FORBIDDEN {
        assert!(frozen.elapsed() < Duration::from_secs(2), "node b still takes writes {:?} after the freeze", frozen.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Released on b: a hears of it as quickly.
    expect(&b, Method::POST, "/read-only/force-release", None, 200);
    let released = Instant::now();
    while expect(&s, Method::GET, "/read-only", None, 200)["frozen"] != json!(false) {
        assert!(released.elapsed() < Duration::from_secs(2), "node a still frozen {:?} after b released", released.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    b.kill();

    // Released: every client writes again.
    ok(push(&s, &later, "later:1"));
    ok(twine(&s, &dist(tmp.path(), "ro-pkg", "1.1")));
    ok(npm(&npm_package(tmp.path(), "1.0.1"), &rc, &["publish"]));
    expect(&s, Method::POST, "/repositories/npm/hosted", Some(json!({"name": "npm-new", "storage": {"blobStoreName": "default"}})), 201);
    let audit = expect(&s, Method::GET, "/audit?action=system.freeze", None, 200);
    assert!(audit.to_string().contains("system.freeze"), "{audit}");

    // Who may freeze: administrators only; anyone signed in may look.
    let anon = http.post(s.url("/service/rest/v1/read-only/freeze")).send().unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let (status, v) = api(&s, Method::POST, "/read-only/freeze", Some(json!({"why": "x"})));
    assert_eq!((status, v[0]["id"].clone()), (StatusCode::BAD_REQUEST, json!("PARAMETER why")), "{v}");
}

/// A freeze made while writers publish and upload as fast as they can: every write that was
/// acknowledged is there, and from the moment the freeze answers nothing changes any more
/// (the writers keep trying, and are refused). On PostgreSQL the freeze waits for the writes
/// already past their check; on SQLite writes are serialized with it.
#[test]
fn a_freeze_amid_concurrent_writes_keeps_every_acknowledged_write_and_lets_none_through() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let s = Arc::new(TestServer::start());
    expect(&s, Method::POST, "/repositories/npm/hosted", Some(json!({"name": "npm-race", "storage": {"blobStoreName": "default"}})), 201);
    expect(&s, Method::POST, "/repositories/docker/hosted", Some(json!({"name": "docker-race", "storage": {"blobStoreName": "default"}, "docker": {}})), 201);
    const NPM_WRITERS: usize = 3;
    const DOCKER_WRITERS: usize = 2;
    let stop = Arc::new(AtomicBool::new(false));
    let acked_versions = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_blobs = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused: Arc<Vec<AtomicUsize>> = Arc::new((0..NPM_WRITERS + DOCKER_WRITERS).map(|_| AtomicUsize::new(0)).collect());
    let mut writers = Vec::new();
    for w in 0..NPM_WRITERS + DOCKER_WRITERS {
        let (s, stop, versions, blobs, refused) = (s.clone(), stop.clone(), acked_versions.clone(), acked_blobs.clone(), refused.clone());
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let status = if w < NPM_WRITERS {
                    let version = format!("1.{w}.{i}");
                    let body = common::npm::publish_body("race-pkg", &version);
                    let r = s.admin().request(Method::PUT, &common::npm::publish_path("npm-race", "race-pkg")).json(&body).send().unwrap();
                    if r.status().is_success() {
                        versions.lock().unwrap().push(version);
                    }
                    r.status()
                } else {
                    let data = format!("blob {w} {i} {:?}", Instant::now()).into_bytes();
                    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)));
                    let r = s.admin().request(Method::POST, &format!("/v2/docker-race/img/blobs/uploads/?digest={digest}")).body(data).send().unwrap();
                    if r.status() == StatusCode::CREATED {
                        blobs.lock().unwrap().push(digest);
                    }
                    r.status()
                };
                match status {
                    s if s.is_success() => {}
                    // Refused in each protocol's way (npm 403, Docker 403 DENIED).
                    StatusCode::FORBIDDEN => {
                        refused[w].fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!("writer {w}: unexpected {other}"),
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_versions.lock().unwrap().len() < 10 || acked_blobs.lock().unwrap().len() < 10 {
        assert!(Instant::now() < deadline, "the writers made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused.iter().all(|r| r.load(Ordering::SeqCst) == 0), "refused before the freeze");
    expect(&s, Method::POST, "/read-only/freeze", Some(json!({"reason": "race"})), 200);
    let versions_of = || -> std::collections::BTreeSet<String> {
        let r = s.admin().request(Method::GET, "/repository/npm-race/race-pkg").send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().unwrap()["versions"].as_object().unwrap().keys().cloned().collect()
    };
    let at_freeze = versions_of();
    // Every writer is refused a few times after the freeze answered.
    let counts: Vec<usize> = refused.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    while refused.iter().zip(&counts).any(|(r, c)| r.load(Ordering::SeqCst) < c + 3) {
        assert!(Instant::now() < deadline, "the writers stopped trying");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let at_end = versions_of();
    assert_eq!(at_freeze, at_end, "versions appeared after the freeze answered");
    let acked: std::collections::BTreeSet<String> = acked_versions.lock().unwrap().iter().cloned().collect();
    assert!(acked.is_subset(&at_end), "acknowledged but missing: {:?}", acked.difference(&at_end).collect::<Vec<_>>());
    for digest in acked_blobs.lock().unwrap().iter() {
        let r = s.admin().request(Method::HEAD, &format!("/v2/docker-race/img/blobs/{digest}")).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "acknowledged blob {digest} is missing");
    }
    expect(&s, Method::POST, "/read-only/release", None, 200);
}
