//! npm proxy and group registries with the real npm. Upstreams are real servers on loopback:
//! verdaccio (from npm), another wharf repository, and Python's http.server for an upstream
//! that lies about a tarball's integrity.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{free_port, Guarded, SpawnGuarded, TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn registry(repo: &str) -> String {
    format!("{}/repository/{repo}/", server().base)
}

/// An admin token for wharf, from npm's login endpoint.
fn admin_token() -> String {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let r = common::client()
            .put(server().url("/repository/npm-hosted/-/user/org.couchdb.user:admin"))
            .json(&json!({"name": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
    })
    .clone()
}

/// npm with its own config (a registry and a token for it) and an empty cache.
struct Npm {
    dir: tempfile::TempDir,
}

impl Npm {
    fn new(registry_url: &str, token: &str) -> Npm {
        let dir = tempfile::tempdir().unwrap();
        let host_path = registry_url.trim_start_matches("http:");
        std::fs::write(dir.path().join("npmrc"), format!("registry={registry_url}\n{host_path}:_authToken={token}\n")).unwrap();
        Npm { dir }
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new("npm")
            .args(args)
            .current_dir(cwd)
            .env("npm_config_userconfig", self.dir.path().join("npmrc"))
            .env("npm_config_cache", self.dir.path().join("cache"))
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env_remove("npm_config_registry")
            .output()
            .unwrap()
    }
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn package(dir: &Path, name: &str, version: &str, deps: &[(&str, &str)], payload: usize) -> PathBuf {
    let d = dir.join(name.replace('/', "_")).join(version);
    std::fs::create_dir_all(&d).unwrap();
    let deps_json: serde_json::Map<String, Value> = deps.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
    std::fs::write(d.join("package.json"), json!({"name": name, "version": version, "main": "index.js", "dependencies": deps_json}).to_string()).unwrap();
    let requires: Vec<String> = deps.iter().map(|(n, _)| format!("require({n:?})")).collect();
    std::fs::write(d.join("index.js"), format!("module.exports = {{ me: {:?}, deps: [{}] }};\n", format!("{name}@{version}"), requires.join(", "))).unwrap();
    if payload > 0 {
        std::fs::write(d.join("payload.bin"), common::oci::noise(payload as u64, payload)).unwrap();
    }
    d
}

fn project(dir: &Path) -> PathBuf {
    let p = dir.join(format!("project-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("package.json"), r#"{"name": "consumer", "version": "1.0.0", "private": true}"#).unwrap();
    p
}

fn node_eval(cwd: &Path, code: &str) -> String {
    ok(Command::new("node").arg("-e").arg(code).current_dir(cwd).output().unwrap()).trim().to_string()
}

fn create(kind: &str, body: Value) {
    let r = server().admin().request(Method::POST, &format!("/service/rest/v1/repositories/npm/{kind}")).json(&body).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

fn create_proxy(name: &str, remote: &str, metadata_max_age: f64, auth: Option<(&str, &str)>) {
    let mut body = json!({
        "name": name, "online": true, "storage": {"blobStoreName": "default"},
        "proxy": {"remoteUrl": remote, "contentMaxAge": 1440, "metadataMaxAge": metadata_max_age},
        "negativeCache": {"enabled": true, "timeToLive": 1440},
        "httpClient": {"connection": {"timeout": 20, "connectTimeout": 2}},
    });
    if let Some((u, p)) = auth {
        body["httpClient"]["authentication"] = json!({"type": "username", "username": u, "password": p});
    }
    create("proxy", body);
}

fn get(path: &str) -> reqwest::blocking::Response {
    common::client().get(server().url(path)).bearer_auth(admin_token()).send().unwrap()
}

/// verdaccio on loopback, anonymous publishing, its log in a file (JSON and synchronous: the
/// pretty format is written by a worker and can lag behind the test).
struct Verdaccio {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Guarded>,
}

impl Verdaccio {
    fn start() -> Verdaccio {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "storage: {}\nauth:\n  htpasswd:\n    file: {}\n    max_users: -1\nuplinks: {{}}\npackages:\n  '**':\n    access: $all\n    publish: $all\n    unpublish: $all\nmax_body_size: 100mb\nlog: {{type: stdout, format: json, level: http, sync: true}}\n",
            dir.path().join("storage").display(),
            dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let mut v = Verdaccio { dir, port: free_port(), child: None };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-npm/node_modules/.bin/verdaccio");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("log")).unwrap();
        let child = common::guarded(bin)
            .args(["--config", self.dir.path().join("config.yaml").to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn_guarded()
            .expect("verdaccio is installed (the test command installs it into target/test-npm)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if common::client().get(format!("{}-/ping", self.url())).send().is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "verdaccio did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Publishes a package directory to verdaccio.
    fn publish(&self, dir: &Path) {
        let npm = Npm::new(&self.url(), "anonymous-is-fine");
        ok(npm.run(dir, &["publish"]));
    }

    /// How many times verdaccio was asked for `path`.
    fn requests(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("requested 'GET {path}'"))).count()
    }
}

impl Drop for Verdaccio {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn npm_installs_through_a_proxy_and_from_its_cache_when_the_upstream_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let mut up = Verdaccio::start();
    up.publish(&package(tmp.path(), "vd-lib", "1.0.0", &[], 0));
    up.publish(&package(tmp.path(), "@vd/app", "1.0.0", &[("vd-lib", "^1.0.0")], 0));
    // metadataMaxAge 0: every packument request asks the upstream, so the outage below is real.
    create_proxy("npm-proxy-vd", &up.url(), 0.0, None);
    let reg = registry("npm-proxy-vd");

    let npm = Npm::new(&reg, &admin_token());
    let p = project(tmp.path());
    ok(npm.run(&p, &["install", "--prefer-online", "@vd/app"]));
    assert_eq!(node_eval(&p, r#"const a = require("@vd/app"); console.log(a.me, a.deps[0].me)"#), "@vd/app@1.0.0 vd-lib@1.0.0");
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(p.join("package-lock.json")).unwrap()).unwrap();
    assert_eq!(lock["packages"]["node_modules/vd-lib"]["resolved"], format!("{reg}vd-lib/-/vd-lib-1.0.0.tgz"));
    assert_eq!(up.requests("/vd-lib/-/vd-lib-1.0.0.tgz"), 1);

    // A second cold install: packuments revalidated, tarballs from wharf's cache.
    let again = Npm::new(&reg, &admin_token());
    let p2 = project(tmp.path());
    ok(again.run(&p2, &["install", "--prefer-online", "@vd/app"]));
    assert_eq!(up.requests("/vd-lib/-/vd-lib-1.0.0.tgz"), 1, "tarballs are fetched upstream once");

    // Upstream stopped: cached packages still install.
    up.stop();
    let offline = Npm::new(&reg, &admin_token());
    let p3 = project(tmp.path());
    ok(offline.run(&p3, &["install", "--prefer-online", "@vd/app"]));
    assert_eq!(node_eval(&p3, r#"console.log(require("@vd/app").deps[0].me)"#), "vd-lib@1.0.0");
    // Never cached: a gateway error, quickly.
    let started = Instant::now();
    assert_eq!(get("/repository/npm-proxy-vd/never-cached").status(), StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() < Duration::from_secs(15));
    // A proxy takes no publishes.
    let r = common::client().put(server().url("/repository/npm-proxy-vd/x")).bearer_auth(admin_token()).json(&json!({"name": "x"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn concurrent_cold_tarball_downloads_make_one_upstream_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let up = Verdaccio::start();
    up.publish(&package(tmp.path(), "vd-bulky", "1.0.0", &[], 12 << 20));
    create_proxy("npm-proxy-bulk", &up.url(), 1440.0, None);
    let doc: Value = get("/repository/npm-proxy-bulk/vd-bulky").json().unwrap();
    let url = doc["versions"]["1.0.0"]["dist"]["tarball"].as_str().unwrap().to_string();
    assert!(url.starts_with(&registry("npm-proxy-bulk")));
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut r = Client::builder().timeout(Duration::from_secs(120)).build().unwrap().get(url).bearer_auth(admin_token()).send().unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let mut body = Vec::new();
                r.read_to_end(&mut body).unwrap();
                body
            })
        })
        .collect();
    let bodies: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let sri = format!("sha512-{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, <sha2::Sha512 as sha2::Digest>::digest(&bodies[0])));
    assert_eq!(doc["versions"]["1.0.0"]["dist"]["integrity"], sri);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(up.requests("/vd-bulky/-/vd-bulky-1.0.0.tgz"), 1, "12 concurrent cold downloads, one upstream fetch");
}

#[test]
fn a_tarball_that_fails_the_upstream_integrity_is_never_completed_nor_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let port = free_port();
    let tgz = {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let data = br#"{"name": "liar-pkg", "version": "1.0.0"}"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, "package/package.json", &data[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap()
    };
    std::fs::write(root.join("liar-pkg-1.0.0.tgz"), &tgz).unwrap();
    let wrong = format!("sha512-{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]));
    let doc = json!({"name": "liar-pkg", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {"name": "liar-pkg", "version": "1.0.0",
        "dist": {"tarball": format!("http://127.0.0.1:{port}/liar-pkg-1.0.0.tgz"), "integrity": wrong}}}});
    std::fs::write(root.join("liar-pkg"), doc.to_string()).unwrap();
    let mut http = common::guarded("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", root.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_guarded()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    create_proxy("npm-proxy-liar", &format!("http://127.0.0.1:{port}/"), 1440.0, None);
    for _ in 0..2 {
        let r = get("/repository/npm-proxy-liar/liar-pkg/-/liar-pkg-1.0.0.tgz");
        let got = r.bytes();
        assert!(got.is_err() || got.unwrap().len() < tgz.len(), "the client never gets the whole unverified tarball");
    }
    let npm = Npm::new(&registry("npm-proxy-liar"), &admin_token());
    assert!(!npm.run(&project(tmp.path()), &["install", "liar-pkg"]).status.success());
    let _ = http.kill();
    let _ = http.wait();
}

#[test]
fn a_group_serves_hosted_packages_first_and_publishes_to_its_writable_member() {
    let tmp = tempfile::tempdir().unwrap();
    let up = Verdaccio::start();
    up.publish(&package(tmp.path(), "grp-dep", "1.0.0", &[], 0));
    up.publish(&package(tmp.path(), "shadowed-pkg", "99.0.0", &[], 0));
    create_proxy("npm-proxy-grp", &up.url(), 1440.0, None);
    let hosted = Npm::new(&registry("npm-hosted"), &admin_token());
    ok(hosted.run(&package(tmp.path(), "shadowed-pkg", "1.0.0", &[], 0), &["publish"]));
    ok(hosted.run(&package(tmp.path(), "grp-top", "1.0.0", &[("grp-dep", "^1.0.0"), ("shadowed-pkg", "*")], 0), &["publish"]));
    create(
        "group",
        json!({"name": "npm-group", "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["npm-hosted", "npm-proxy-grp"], "writableMember": "npm-hosted"}}),
    );

    let npm = Npm::new(&registry("npm-group"), &admin_token());
    let p = project(tmp.path());
    ok(npm.run(&p, &["install", "--prefer-online", "grp-top"]));
    assert_eq!(node_eval(&p, r#"const t = require("grp-top"); console.log(t.deps.map(d => d.me).join(" "))"#), "grp-dep@1.0.0 shadowed-pkg@1.0.0");
    let doc: Value = get("/repository/npm-group/shadowed-pkg").json().unwrap();
    assert_eq!(doc["versions"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["1.0.0"], "the hosted package shadows the public one");
    assert!(doc["versions"]["1.0.0"]["dist"]["tarball"].as_str().unwrap().starts_with(&registry("npm-group")));
    assert_eq!(get("/repository/npm-group/shadowed-pkg/-/shadowed-pkg-99.0.0.tgz").status(), StatusCode::NOT_FOUND);
    let direct: Value = get("/repository/npm-proxy-grp/shadowed-pkg").json().unwrap();
    assert!(direct["versions"].get("99.0.0").is_some(), "through the proxy itself it is there");

    // Publishing to the group lands in its writable member.
    ok(npm.run(&package(tmp.path(), "grp-published", "3.0.0", &[], 0), &["publish"]));
    assert_eq!(get("/repository/npm-hosted/grp-published").status(), StatusCode::OK);
    // npm audit through the group (its proxy member passes the request upstream; verdaccio has no
    // advisories database here, so only the hosted-only chain below can answer).
    let search: Value = get("/repository/npm-group/-/v1/search?text=grp").json().unwrap();
    let names: Vec<&str> = search["objects"].as_array().unwrap().iter().map(|o| o["package"]["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"grp-top") && names.contains(&"grp-dep"), "{names:?}");
}

#[test]
fn a_proxy_of_another_wharf_passes_npm_audit_through() {
    let tmp = tempfile::tempdir().unwrap();
    let hosted = Npm::new(&registry("npm-hosted"), &admin_token());
    ok(hosted.run(&package(tmp.path(), "chain-lib", "0.1.0", &[], 0), &["publish"]));
    // The upstream wants credentials; they go with packument and tarball requests to its origin.
    create_proxy("npm-proxy-chain", &registry("npm-hosted"), 1440.0, Some(("admin", ADMIN_PASSWORD)));
    let npm = Npm::new(&registry("npm-proxy-chain"), &admin_token());
    let p = project(tmp.path());
    ok(npm.run(&p, &["install", "--prefer-online", "chain-lib"]));
    // The upstream wharf's answer comes through as it is: a hosted registry has no advisories
    // and says so (not "found 0 vulnerabilities"); tests/npm_protocol.rs has an upstream with some.
    let out = npm.run(&p, &["audit"]);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("npm-hosted is a hosted registry: it has no source of security advisories"), "{all}");
}
