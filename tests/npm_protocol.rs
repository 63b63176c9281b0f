//! npm protocol features with the real client: publish with a provenance bundle, web login,
//! `npm owner` and `npm access`, `npm audit` through hosted, proxy and group repositories, and
//! `npm search` from the database.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServer, ADMIN_PASSWORD};
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

/// npm with its own user config and an empty cache.
struct Npm {
    dir: tempfile::TempDir,
}

impl Npm {
    fn new(repo: &str, token: Option<&str>) -> Npm {
        let dir = tempfile::tempdir().unwrap();
        let url = registry(repo);
        let mut rc = format!("registry={url}\n");
        if let Some(t) = token {
            rc.push_str(&format!("{}:_authToken={t}\n", url.trim_start_matches("http:")));
        }
        std::fs::write(dir.path().join("npmrc"), rc).unwrap();
        Npm { dir }
    }

    fn npmrc(&self) -> PathBuf {
        self.dir.path().join("npmrc")
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("npm");
        c.args(args)
            .current_dir(cwd)
            .env("npm_config_userconfig", self.npmrc())
            .env("npm_config_cache", self.dir.path().join("cache"))
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env_remove("npm_config_registry");
        c
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args).output().unwrap()
    }
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn package(dir: &Path, name: &str, version: &str, extra: Value) -> PathBuf {
    let d = dir.join(name.replace('/', "_")).join(version);
    std::fs::create_dir_all(&d).unwrap();
    let mut pkg = json!({"name": name, "version": version, "main": "index.js", "description": format!("{name} for wharf tests")});
    for (k, v) in extra.as_object().into_iter().flatten() {
        pkg[k] = v.clone();
    }
    std::fs::write(d.join("package.json"), pkg.to_string()).unwrap();
    std::fs::write(d.join("index.js"), format!("module.exports = {:?};\n", format!("{name}@{version}"))).unwrap();
    d
}

fn get(path: &str, token: &str) -> reqwest::blocking::Response {
    common::client().get(server().url(path)).bearer_auth(token).send().unwrap()
}

fn create(kind: &str, body: Value) {
    let r = server().admin().request(Method::POST, &format!("/service/rest/v1/repositories/npm/{kind}")).json(&body).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
}

// ---- provenance ------------------------------------------------------------------------------

/// A sigstore bundle as npm sends it, its statement about `purl` with this sha512 (hex). The
/// signature and certificate are placeholders: wharf checks the bundle's shape and subject,
/// clients verify signatures against Sigstore's trust root.
fn provenance_bundle(purl: &str, sha512_hex: &str) -> Value {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": purl, "digest": {"sha512": sha512_hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.test/wharf"}, "runDetails": {"builder": {"id": "https://example.test/ci"}}},
    });
    json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": base64::engine::general_purpose::STANDARD.encode(b"not a real certificate")}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64::engine::general_purpose::STANDARD.encode(statement.to_string()),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64::engine::general_purpose::STANDARD.encode(b"not a real signature"), "keyid": ""}],
        },
    })
}

/// npm checks a `--provenance-file` bundle with `sigstore.verify`, which needs Sigstore's trust
/// root from its TUF repository on the network; this test runs offline, so that one call is
/// replaced (preloaded with `NODE_OPTIONS=--require`). Everything else is npm's own publish.
fn offline_sigstore(dir: &Path) -> String {
    let stub = dir.join("offline-sigstore.js");
    std::fs::write(
        &stub,
        r#"const Module = require('module');
const load = Module._load;
Module._load = function (request, parent, isMain) {
  const m = load.apply(this, arguments);
  // sigstore's index re-exports verify with a getter over ./sigstore: replace it there.
  if (request === './sigstore' && parent && /[\\/]sigstore[\\/]dist[\\/]index\.js$/.test(parent.filename) && !m.__wharfOffline) {
    m.verify = async () => undefined;
    m.__wharfOffline = true;
  }
  return m;
};
"#,
    )
    .unwrap();
    format!("--require {}", stub.display())
}

#[test]
fn publish_with_a_provenance_file_stores_and_serves_the_attestation() {
    let tmp = tempfile::tempdir().unwrap();
    let npm = Npm::new("npm-hosted", Some(&admin_token()));
    let dir = package(tmp.path(), "@wharf-prov/lib", "1.0.0", json!({}));
    // The tarball first, so that the bundle can speak of its digest; then npm publishes it.
    let packed: Value = serde_json::from_str(&ok(npm.run(&dir, &["pack", "--json", "--pack-destination", tmp.path().to_str().unwrap()]))).unwrap();
    let tgz = tmp.path().join(packed[0]["filename"].as_str().unwrap());
    let sri = packed[0]["integrity"].as_str().unwrap();
    let sha512 = hex::encode(base64::engine::general_purpose::STANDARD.decode(sri.trim_start_matches("sha512-")).unwrap());
    let bundle = provenance_bundle("pkg:npm/%40wharf-prov/lib@1.0.0", &sha512);
    let bundle_file = tmp.path().join("provenance.sigstore.json");
    std::fs::write(&bundle_file, bundle.to_string()).unwrap();
    let out = npm
        .command(tmp.path(), &["publish", tgz.to_str().unwrap(), "--provenance-file", bundle_file.to_str().unwrap()])
        .env("NODE_OPTIONS", offline_sigstore(tmp.path()))
        .output()
        .unwrap();
    ok(out);

    // The version announces it, as the public registry does, and the endpoint serves it.
    let dist: Value = serde_json::from_str(&ok(npm.run(tmp.path(), &["view", "@wharf-prov/lib@1.0.0", "dist", "--json"]))).unwrap();
    let url = format!("{}-/npm/v1/attestations/@wharf-prov/lib@1.0.0", registry("npm-hosted"));
    assert_eq!(dist["attestations"], json!({"url": url, "provenance": {"predicateType": "https://slsa.dev/provenance/v1"}}), "{dist}");
    let r = common::client().get(&url).bearer_auth(admin_token()).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let served: Value = r.json().unwrap();
    assert_eq!(served, json!({"attestations": [{"predicateType": "https://slsa.dev/provenance/v1", "bundle": bundle}]}));
    // Scoped names may come encoded, as clients send them.
    assert_eq!(get("/repository/npm-hosted/-/npm/v1/attestations/%40wharf-prov%2flib@1.0.0", &admin_token()).status(), StatusCode::OK);
    assert_eq!(get("/repository/npm-hosted/-/npm/v1/attestations/@wharf-prov/lib@9.9.9", &admin_token()).status(), StatusCode::NOT_FOUND);

    // A bundle about another tarball is refused, with npm's error shape, and leaves nothing.
    // (npm compares the digest itself before sending: this refusal is the server's, over HTTP.)
    let dir2 = package(tmp.path(), "@wharf-prov/lib", "1.0.1", json!({}));
    let packed: Value = serde_json::from_str(&ok(npm.run(&dir2, &["pack", "--json", "--pack-destination", tmp.path().to_str().unwrap()]))).unwrap();
    let data = std::fs::read(tmp.path().join(packed[0]["filename"].as_str().unwrap())).unwrap();
    let publish = |bundle: &Value| {
        let body = json!({
            "_id": "@wharf-prov/lib", "name": "@wharf-prov/lib", "dist-tags": {"latest": "1.0.1"},
            "versions": {"1.0.1": {"name": "@wharf-prov/lib", "version": "1.0.1", "dist": {"integrity": packed[0]["integrity"]}}},
            "_attachments": {
                "@wharf-prov/lib-1.0.1.tgz": {"content_type": "application/octet-stream", "data": base64::engine::general_purpose::STANDARD.encode(&data), "length": data.len()},
                "@wharf-prov/lib-1.0.1.sigstore": {"content_type": "application/vnd.dev.sigstore.bundle.v0.3+json", "data": bundle.to_string()},
            },
        });
        common::client().put(server().url("/repository/npm-hosted/@wharf-prov%2flib")).bearer_auth(admin_token()).json(&body).send().unwrap()
    };
    let r = publish(&provenance_bundle("pkg:npm/%40wharf-prov/lib@1.0.1", &"0".repeat(128)));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().unwrap();
    assert!(e["error"].as_str().is_some_and(|m| m.contains("provenance") && m.contains("digest")), "{e}");
    let r = publish(&json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let doc: Value = get("/repository/npm-hosted/@wharf-prov%2flib", &admin_token()).json().unwrap();
    assert_eq!(doc["versions"].as_object().unwrap().keys().collect::<Vec<_>>(), ["1.0.0"]);

    // A version unpublished takes its attestation with it.
    ok(npm.run(&dir2, &["publish"]));
    assert!(get("/repository/npm-hosted/@wharf-prov%2flib", &admin_token()).json::<Value>().unwrap()["versions"]["1.0.1"]["dist"]
        .get("attestations")
        .is_none());
    ok(npm.run(tmp.path(), &["unpublish", "@wharf-prov/lib@1.0.0"]));
    assert_eq!(get("/repository/npm-hosted/-/npm/v1/attestations/@wharf-prov/lib@1.0.0", &admin_token()).status(), StatusCode::NOT_FOUND);
}

// ---- HEAD ------------------------------------------------------------------------------------

#[test]
fn heads_and_ranges_say_what_gets_would_send() {
    let tmp = tempfile::tempdir().unwrap();
    let npm = Npm::new("npm-hosted", Some(&admin_token()));
    ok(npm.run(&package(tmp.path(), "@wharf-head/lib", "1.0.0", json!({})), &["publish"]));
    let base = registry("npm-hosted");
    for (path, accept) in [
        ("@wharf-head%2flib", "application/json"),
        ("@wharf-head%2flib", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"),
        ("@wharf-head/lib/-/lib-1.0.0.tgz", "*/*"),
        ("@wharf-head%2flib/1.0.0", "application/json"),
    ] {
        common::assert_head_matches_get(&format!("{base}{path}"), &[("Accept", accept)]);
    }
    let tarball = format!("{base}@wharf-head/lib/-/lib-1.0.0.tgz");
    let whole = common::client().get(&tarball).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap();
    assert!(whole.len() > 200, "{}", whole.len());
    common::assert_ranges_served(&tarball, &whole);
}

// ---- web login -------------------------------------------------------------------------------

/// `npm login` (web, npm's default) prints the login URL when it has no terminal; a browser
/// would open it. The test approves as a browser would (the form's POST) and npm, polling,
/// gets a token.
#[test]
fn npm_web_login_is_approved_in_the_browser_page_and_npm_gets_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let npm = Npm::new("npm-hosted", None);
    let mut child = npm
        .command(tmp.path(), &["login", "--auth-type=web", "--registry", &registry("npm-hosted")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let login_url = loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("npm prints the login URL");
        if let Some(at) = line.find("http") {
            if line.contains("/-/v1/login/") {
                break line[at..].trim().to_string();
            }
        }
    };
    assert!(login_url.starts_with(&format!("{}-/v1/login/", registry("npm-hosted"))), "{login_url}");

    // The page, as a browser gets it; a wrong password is refused and the login stays open.
    let page = common::client().get(&login_url).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().unwrap().contains("<form method=\"post\""));
    let approve = |user: &str, password: &str| common::client().post(&login_url).form(&[("username", user), ("password", password)]).send().unwrap();
    assert_eq!(approve("admin", "wrong").status(), StatusCode::UNAUTHORIZED);
    let r = approve("admin", ADMIN_PASSWORD);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().unwrap().contains("admin"));

    // npm, polling, finishes by itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "npm login did not finish after the approval");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "npm login: {err}");
    let rc = std::fs::read_to_string(npm.npmrc()).unwrap();
    assert!(rc.contains(":_authToken=wharf_"), "{rc}");
    assert_eq!(ok(npm.run(tmp.path(), &["whoami"])).trim(), "admin");
    // The link is spent once npm collected its token.
    assert_eq!(approve("admin", ADMIN_PASSWORD).status(), StatusCode::NOT_FOUND);
    assert!(common::client().get(&login_url).send().unwrap().text().unwrap().contains("used already"));
}

#[test]
fn web_login_polls_answer_202_until_approved_then_the_token_once() {
    let start = common::client().post(server().url("/repository/npm-hosted/-/v1/login")).json(&json!({})).send().unwrap();
    assert_eq!(start.status(), StatusCode::OK);
    let urls: Value = start.json().unwrap();
    let (login_url, done_url) = (urls["loginUrl"].as_str().unwrap().to_string(), urls["doneUrl"].as_str().unwrap().to_string());
    let poll = || common::client().get(&done_url).send().unwrap();
    let r = poll();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["retry-after"], "1");
    // A user without a password of theirs gets nothing; then the admin approves.
    let r = common::client().post(&login_url).form(&[("username", "nobody"), ("password", "x")]).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(poll().status(), StatusCode::ACCEPTED);
    let r = common::client().post(&login_url).form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = poll();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let who: Value = get("/repository/npm-hosted/-/whoami", &token).json().unwrap();
    assert_eq!(who["username"], "admin");
    // Handed out once; unknown ids and secrets are 404s.
    let r = poll();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("npm login"));
    assert_eq!(common::client().get(server().url("/repository/npm-hosted/-/v1/login/nonexistent")).send().unwrap().status(), StatusCode::NOT_FOUND);
    // The token is a wharf API token like any other: listed, revocable.
    let tokens: Value = get("/repository/npm-hosted/-/npm/v1/tokens", &token).json().unwrap();
    assert!(tokens["objects"].as_array().unwrap().iter().any(|t| t["name"] == "npm web login"), "{tokens}");
}

// ---- npm owner, npm access ---------------------------------------------------------------------

/// A user whose roles may read (and with `write`, publish to) every npm repository, and an npm
/// token for them.
fn npm_user(user: &str, write: bool) -> String {
    let mut privileges = vec!["nx-repository-view-npm-*-read".to_string()];
    if write {
        privileges.push("nx-repository-view-npm-*-add".to_string());
    }
    user_with_privileges(user, &privileges);
    let r = common::client()
        .put(server().url(&format!("/repository/npm-hosted/-/user/org.couchdb.user:{user}")))
        .json(&json!({"name": user, "password": format!("{user}-pw")}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
}

/// A user `user` (password `<user>-pw`) whose one role holds `privileges`.
fn user_with_privileges(user: &str, privileges: &[String]) {
    let admin = server().admin();
    let r =
        admin.request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": format!("{user}-role"), "privileges": privileges})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": user, "password": format!("{user}-pw"), "roles": [format!("{user}-role")]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
}

fn json_out(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn failed(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn npm_owner_and_npm_access_answer_from_wharf_rights() {
    let tmp = tempfile::tempdir().unwrap();
    let admin = Npm::new("npm-hosted", Some(&admin_token()));
    ok(admin.run(&package(tmp.path(), "@wharf-acc/one", "1.0.0", json!({})), &["publish"]));
    ok(admin.run(&package(tmp.path(), "wharf-acc-two", "1.0.0", json!({})), &["publish"]));
    let reader = Npm::new("npm-hosted", Some(&npm_user("acc-reader", false)));

    // npm owner ls: the maintainers of the document.
    let owners = ok(admin.run(tmp.path(), &["owner", "ls", "@wharf-acc/one"]));
    assert!(owners.trim().starts_with("admin <"), "{owners}");

    // Packages by scope, and by user (npm asks /-/org/<name> first, then /-/user/<name>).
    let scoped = json_out(admin.run(tmp.path(), &["access", "list", "packages", "@wharf-acc", "--json"]));
    assert_eq!(scoped, json!({"@wharf-acc/one": "read-write"}));
    let mine = json_out(admin.run(tmp.path(), &["access", "list", "packages", "--json"]));
    assert_eq!(mine["@wharf-acc/one"], "read-write");
    assert_eq!(mine["wharf-acc-two"], "read-write");
    let theirs = json_out(reader.run(tmp.path(), &["access", "list", "packages", "--json"]));
    assert_eq!(theirs["@wharf-acc/one"], "read-only");
    assert_eq!(theirs["wharf-acc-two"], "read-only");
    // Someone else's list is not wharf's to tell (rights come from roles).
    assert!(failed(reader.run(tmp.path(), &["access", "list", "packages", "admin", "--json"])).contains("signed-in user"));

    // Collaborators: the maintainers, and the caller as wharf sees them.
    let collaborators = json_out(reader.run(tmp.path(), &["access", "list", "collaborators", "@wharf-acc/one", "--json"]));
    assert_eq!(collaborators, json!({"admin": "read-write", "acc-reader": "read-only"}));

    // Status: public when the repository is readable without credentials.
    let public = common::client().get(server().url("/repository/npm-hosted/@wharf-acc%2fone")).send().unwrap().status() == StatusCode::OK;
    let status = json_out(admin.run(tmp.path(), &["access", "get", "status", "@wharf-acc/one", "--json"]));
    assert_eq!(status, json!({"@wharf-acc/one": if public { "public" } else { "private" }}));

    // What wharf does not model is refused, and npm prints why.
    let other = if public { "private" } else { "public" };
    let err = failed(admin.run(tmp.path(), &["access", "set", &format!("status={other}"), "@wharf-acc/one"]));
    assert!(err.contains("does not set visibility per package"), "{err}");
    let same = if public { "public" } else { "private" };
    ok(admin.run(tmp.path(), &["access", "set", &format!("status={same}"), "@wharf-acc/one"]));
    let err = failed(admin.run(tmp.path(), &["access", "grant", "read-only", "wharf-acc:devs", "@wharf-acc/one"]));
    assert!(err.contains("no npm teams"), "{err}");
    let err = failed(admin.run(tmp.path(), &["access", "set", "mfa=publish", "@wharf-acc/one"]));
    assert!(err.contains("two-factor"), "{err}");
    // A reader may not even ask for a change.
    let err = failed(reader.run(tmp.path(), &["access", "set", &format!("status={same}"), "@wharf-acc/one"]));
    assert!(err.contains("403"), "{err}");
}

// ---- npm audit -------------------------------------------------------------------------------

/// A registry's audit endpoint, standing in for registry.npmjs.org: it answers the bulk
/// advisory request with one advisory for `wharf-audit-dep` below 2.0.0, records what it was
/// sent, and says 404 to anything else.
/// Requests an upstream received: method, path, body (gunzipped).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>;

struct AuditUpstream {
    port: u16,
    seen: Received,
}

impl AuditUpstream {
    fn start() -> AuditUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Received = Default::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut head = Vec::new();
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        head.push(line.trim_end().to_string());
                        line.clear();
                    }
                    let first: Vec<String> = head.first().map(|l| l.split(' ').map(str::to_string).collect()).unwrap_or_default();
                    let length: usize = head
                        .iter()
                        .find_map(|h| h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    let gzip = head.iter().any(|h| h.to_ascii_lowercase().starts_with("content-encoding:") && h.contains("gzip"));
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    if gzip {
                        let mut plain = Vec::new();
                        let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain);
                        body = plain;
                    }
                    let (method, path) = (first.first().cloned().unwrap_or_default(), first.get(1).cloned().unwrap_or_default());
                    log.lock().unwrap().push((method.clone(), path.clone(), body));
                    let (status, answer) = if method == "POST" && path == "/-/npm/v1/security/advisories/bulk" {
                        let advisory = json!({"wharf-audit-dep": [{
                            "id": 1_000_001, "url": "https://example.test/advisories/1000001", "title": "wharf test advisory",
                            "severity": "high", "vulnerable_versions": "<2.0.0", "cwe": ["CWE-400"], "cvss": {"score": 7.5, "vectorString": null},
                        }]});
                        ("200 OK", advisory.to_string())
                    } else if method == "HEAD" {
                        ("200 OK", String::new())
                    } else {
                        ("404 Not Found", r#"{"error":"not found"}"#.to_string())
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                });
            }
        });
        AuditUpstream { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn bulk_requests(&self) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(m, p, _)| m == "POST" && p.ends_with("/advisories/bulk"))
            .map(|(_, _, b)| serde_json::from_slice(b).unwrap_or(Value::Null))
            .collect()
    }
}

#[test]
fn npm_audit_goes_through_a_group_s_proxy_and_hosted_says_it_has_no_source() {
    let tmp = tempfile::tempdir().unwrap();
    let up = AuditUpstream::start();
    create(
        "proxy",
        json!({
            "name": "npm-audit-proxy", "online": true, "storage": {"blobStoreName": "default"},
            "proxy": {"remoteUrl": up.url(), "contentMaxAge": 1440, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": false, "timeToLive": 1}, "httpClient": {"blocked": false, "autoBlock": false},
        }),
    );
    create(
        "group",
        json!({"name": "npm-audit-group", "online": true, "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["npm-hosted", "npm-audit-proxy"]}}),
    );
    create(
        "group",
        json!({"name": "npm-audit-hosted-only", "online": true, "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["npm-hosted"]}}),
    );
    let publisher = Npm::new("npm-hosted", Some(&admin_token()));
    ok(publisher.run(&package(tmp.path(), "wharf-audit-dep", "1.0.0", json!({})), &["publish"]));

    // A project that depends on the vulnerable version, installed through the group.
    let project = tmp.path().join("audited");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("package.json"), r#"{"name": "audited", "version": "1.0.0", "private": true, "dependencies": {"wharf-audit-dep": "1.0.0"}}"#)
        .unwrap();
    let through_group = Npm::new("npm-audit-group", Some(&admin_token()));
    ok(through_group.run(&project, &["install", "--no-audit"]));

    // npm audit through the group: the proxy member asked its upstream, npm reports what it said.
    let out = through_group.run(&project, &["audit", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    assert!(!out.status.success(), "vulnerabilities make npm audit fail");
    assert_eq!(report["vulnerabilities"]["wharf-audit-dep"]["severity"], "high", "{report}");
    assert_eq!(report["metadata"]["vulnerabilities"]["high"], 1, "{report}");
    let asked = up.bulk_requests();
    assert_eq!(asked.last().unwrap(), &json!({"wharf-audit-dep": ["1.0.0"]}), "the upstream got npm's request as npm sent it");
    // And the proxy itself, asked directly.
    let direct = Npm::new("npm-audit-proxy", Some(&admin_token()));
    let out = direct.run(&project, &["audit", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["vulnerabilities"]["wharf-audit-dep"]["severity"], "high", "{report}");
    // Only npm's audit paths go upstream (with the proxy's credentials): a path that climbs
    // out of them is not passed on.
    for repo in ["npm-audit-proxy", "npm-audit-group"] {
        let r = common::client()
            .post(server().url(&format!("/repository/{repo}/-/npm/v1/security/..%2F..%2F..%2F..%2Fapi%2Fsecurity%2Fusers")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .unwrap();
        assert!(r.status().is_client_error(), "{repo}: {}", r.status());
    }
    let outside: Vec<String> = up.seen.lock().unwrap().iter().map(|(_, p, _)| p.clone()).filter(|p| p.contains("api")).collect();
    assert!(outside.is_empty(), "the upstream was asked for {outside:?}");

    // A hosted registry, and a group without a proxy member, say they have no audit source;
    // npm prints it (not "found 0 vulnerabilities").
    for repo in ["npm-hosted", "npm-audit-hosted-only"] {
        let npm = Npm::new(repo, Some(&admin_token()));
        let out = npm.run(&project, &["audit"]);
        assert!(!out.status.success(), "{repo}");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(all.contains("has no source of security advisories") && all.contains(repo), "{repo}: {all}");
        assert!(!all.contains("found 0 vulnerabilities"), "{all}");
        let r = common::client()
            .post(server().url(&format!("/repository/{repo}/-/npm/v1/security/audits/quick")))
            .bearer_auth(admin_token())
            .json(&json!({}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("no source of security advisories"));
    }
}

// ---- npm search ------------------------------------------------------------------------------

/// Runs SQL on the server's database; its output.
fn sql(sql: &str) -> String {
    server().sql(sql).trim().to_string()
}

/// The digest of a package's stored document in the default blob store, from the database.
fn packument_blob(repo: &str, name: &str) -> PathBuf {
    let digest = sql(&format!(
        "SELECT a.digest FROM assets a JOIN repositories r ON r.id = a.repository_id WHERE r.name = '{repo}' AND a.path = 'pkg/{name}/packument'"
    ));
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("a digest for {name}: {digest:?}"));
    server().data_dir().join("blobs/default/blobs/sha256").join(&hex[..2]).join(hex)
}

#[test]
fn npm_search_is_answered_from_the_database_with_paging() {
    let tmp = tempfile::tempdir().unwrap();
    let npm = Npm::new("npm-hosted", Some(&admin_token()));
    ok(npm.run(&package(tmp.path(), "wharf-find-alpha", "1.0.0", json!({"description": "An alpha finder", "keywords": ["wharf-find", "zeta"]})), &["publish"]));
    ok(npm.run(&package(tmp.path(), "wharf-find-beta", "1.0.0", json!({"description": "Beta", "keywords": ["wharf-find"]})), &["publish"]));
    ok(npm.run(&package(tmp.path(), "@wharf-find/gamma", "1.0.0", json!({"description": "Gamma finder", "keywords": ["wharf-find"]})), &["publish"]));
    ok(npm.run(&package(tmp.path(), "wharf-find-doomed", "1.0.0", json!({"keywords": ["wharf-find"]})), &["publish"]));
    let search = |npm: &Npm, text: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(&ok(npm.run(tmp.path(), &["search", "--json", "--prefer-online", text]))).unwrap();
        let mut names: Vec<String> = v.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(search(&npm, "wharf-find"), ["@wharf-find/gamma", "wharf-find-alpha", "wharf-find-beta", "wharf-find-doomed"]);
    assert_eq!(search(&npm, "finder"), ["@wharf-find/gamma", "wharf-find-alpha"]);
    assert_eq!(search(&npm, "keywords:zeta"), ["wharf-find-alpha"]);
    assert_eq!(search(&npm, "scope:wharf-find"), ["@wharf-find/gamma"]);
    let v: Value = serde_json::from_str(&ok(npm.run(tmp.path(), &["search", "--json", "wharf-find-beta"]))).unwrap();
    assert_eq!(v[0]["description"], "Beta");
    assert_eq!(v[0]["version"], "1.0.0");
    assert_eq!(v[0]["publisher"]["username"], "admin");

    // The latest version's fields count; an unpublished package is gone.
    ok(npm.run(&package(tmp.path(), "wharf-find-alpha", "2.0.0", json!({"description": "Renamed thing", "keywords": ["wharf-find"]})), &["publish"]));
    ok(npm.run(tmp.path(), &["unpublish", "wharf-find-doomed", "--force"]));
    assert_eq!(search(&npm, "finder"), ["@wharf-find/gamma"]);
    assert_eq!(search(&npm, "wharf-find").len(), 3);

    // Paging, over the raw API.
    let page =
        |from: usize| -> Value { get(&format!("/repository/npm-hosted/-/v1/search?text=wharf-find&size=2&from={from}"), &admin_token()).json().unwrap() };
    let (first, second) = (page(0), page(2));
    assert_eq!((first["total"].as_u64(), second["total"].as_u64()), (Some(3), Some(3)));
    let names: Vec<&str> =
        first["objects"].as_array().unwrap().iter().chain(second["objects"].as_array().unwrap()).map(|o| o["package"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["@wharf-find/gamma", "wharf-find-alpha", "wharf-find-beta"]);

    // Through a group, the same.
    create("group", json!({"name": "npm-find-group", "online": true, "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["npm-hosted"]}}));
    assert_eq!(search(&Npm::new("npm-find-group", Some(&admin_token())), "keywords:zeta").len(), 0);
    assert_eq!(search(&Npm::new("npm-find-group", Some(&admin_token())), "finder"), ["@wharf-find/gamma"]);

    // A proxy searches what it has cached (here of the hosted registry, another wharf repository).
    create(
        "proxy",
        json!({
            "name": "npm-find-proxy", "online": true, "storage": {"blobStoreName": "default"},
            "proxy": {"remoteUrl": registry("npm-hosted"), "contentMaxAge": 1440, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": false, "timeToLive": 1},
            "httpClient": {"authentication": {"type": "username", "username": "admin", "password": ADMIN_PASSWORD}},
        }),
    );
    assert_eq!(get("/repository/npm-find-proxy/wharf-find-beta", &admin_token()).status(), StatusCode::OK);
    let through_proxy = Npm::new("npm-find-proxy", Some(&admin_token()));
    assert_eq!(search(&through_proxy, "wharf-find"), ["wharf-find-beta"]);
    assert_eq!(search(&through_proxy, "keywords:wharf-find beta"), ["wharf-find-beta"]);

    // No document is read: with one document's blob away, the package is still found (a file
    // store only: the test moves the file).
    if !common::s3::servers_on_s3() {
        let blob = packument_blob("npm-hosted", "wharf-find-beta");
        let aside = blob.with_extension("aside");
        std::fs::rename(&blob, &aside).unwrap();
        let found = get("/repository/npm-hosted/-/v1/search?text=beta%20wharf-find", &admin_token());
        std::fs::rename(&aside, &blob).unwrap();
        let found: Value = found.json().unwrap();
        assert_eq!(found["objects"][0]["package"]["name"], "wharf-find-beta", "{found}");
    }
}

/// A document saved by a wharf that kept no search fields (its row's attributes hold only the
/// revision) is found by its description after the upgrade: the first search derives them.
#[test]
fn documents_stored_without_search_fields_get_them_at_the_first_search() {
    let tmp = tempfile::tempdir().unwrap();
    create("hosted", json!({"name": "npm-find-old", "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow_once"}}));
    let npm = Npm::new("npm-find-old", Some(&admin_token()));
    ok(npm.run(&package(tmp.path(), "wharf-old-pkg", "1.0.0", json!({"description": "legacy words"})), &["publish"]));
    let row = "FROM assets a JOIN repositories r ON r.id = a.repository_id WHERE r.name = 'npm-find-old' AND a.path = 'pkg/wharf-old-pkg/packument'";
    sql("UPDATE assets SET attributes = '{\"rev\": \"1-0\"}' WHERE path = 'pkg/wharf-old-pkg/packument' AND repository_id = (SELECT id FROM repositories WHERE name = 'npm-find-old')");
    assert!(!sql(&format!("SELECT a.attributes {row}")).contains("legacy"));
    let found: Value = get("/repository/npm-find-old/-/v1/search?text=legacy", &admin_token()).json().unwrap();
    assert_eq!(found["objects"][0]["package"]["name"], "wharf-old-pkg", "{found}");
    assert_eq!(found["objects"][0]["package"]["description"], "legacy words");
    assert!(sql(&format!("SELECT a.attributes {row}")).contains("legacy words"), "written back");
}

/// Web logins live in the database: begun on one node, approved on another, collected on the
/// first.
#[test]
fn a_web_login_spans_nodes() {
    let other = server().second_node();
    let urls: Value = common::client().post(server().url("/repository/npm-hosted/-/v1/login")).json(&json!({})).send().unwrap().json().unwrap();
    let (login_url, done_url) = (urls["loginUrl"].as_str().unwrap(), urls["doneUrl"].as_str().unwrap());
    let on_other = login_url.replace(&server().base, &other.base);
    assert_ne!(on_other, login_url);
    let r = common::client().post(&on_other).form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = common::client().get(done_url).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let who: Value = common::client().get(other.url("/repository/npm-hosted/-/whoami")).bearer_auth(&token).send().unwrap().json().unwrap();
    assert_eq!(who["username"], "admin");
}

// ---- writes through a group ------------------------------------------------------------------

/// A user who may only publish through a group cannot unpublish through it: npm unpublishes one
/// version with `PUT /<pkg>/-rev/<rev>` and the document without it, which the group took for a
/// write and passed to its hosted member with every right (the member's own delete check saw an
/// administrator). With the group's delete right the same request unpublishes.
#[test]
fn publishing_through_a_group_does_not_allow_unpublishing_through_it() {
    create(
        "group",
        json!({"name": "npm-write-group", "online": true, "storage": {"blobStoreName": "default"},
               "group": {"memberNames": ["npm-hosted"], "writableMember": "npm-hosted"}}),
    );
    let user_with = |user: &str, actions: &[&str]| -> String {
        let privileges: Vec<String> = actions.iter().map(|a| format!("nx-repository-view-npm-npm-write-group-{a}")).collect();
        user_with_privileges(user, &privileges);
        format!("{user}-pw")
    };
    let publisher_pw = user_with("group-publisher", &["read", "add", "edit"]);
    let remover_pw = user_with("group-remover", &["read", "add", "edit", "delete"]);
    let name = "wharf-group-unpublish";
    for v in ["1.0.0", "1.1.0"] {
        let r = common::client()
            .put(server().url(&common::npm::publish_path("npm-write-group", name)))
            .basic_auth("group-publisher", Some(&publisher_pw))
            .json(&common::npm::publish_body(name, v))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "publishing through the group: {} {}", r.status(), r.text().unwrap_or_default());
    }
    let versions = || -> Vec<String> {
        let doc: Value = get(&format!("/repository/npm-hosted/{name}"), &admin_token()).json().unwrap();
        doc["versions"].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(versions(), ["1.0.0", "1.1.0"]);
    // npm unpublish wharf-group-unpublish@1.0.0: the document without 1.0.0 under its _rev.
    let unpublish = |user: &str, pw: &str| {
        let mut doc: Value = common::client()
            .get(server().url(&format!("/repository/npm-write-group/{name}?write=true")))
            .basic_auth(user, Some(pw))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let rev = doc["_rev"].as_str().unwrap().to_string();
        doc["versions"].as_object_mut().unwrap().remove("1.0.0");
        common::client().put(server().url(&format!("/repository/npm-write-group/{name}/-rev/{rev}"))).basic_auth(user, Some(pw)).json(&doc).send().unwrap()
    };
    let r = unpublish("group-publisher", &publisher_pw);
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().unwrap_or_default());
    assert_eq!(versions(), ["1.0.0", "1.1.0"], "nothing unpublished");
    let r = unpublish("group-remover", &remover_pw);
    assert!(r.status().is_success(), "{} {}", r.status(), r.text().unwrap_or_default());
    assert_eq!(versions(), ["1.1.0"]);
}

/// `DELETE /<pkg>/-rev/<rev>` (npm unpublish of a whole package) removes the package as the
/// caller saw it: a version published since answers 409 (it was deleted unseen); and an update
/// that unpublishes every version removes the package (a document of no versions stayed,
/// listed in search).
#[test]
fn a_package_is_deleted_only_at_the_revision_read_and_unpublishing_every_version_removes_it() {
    let token = admin_token();
    let publish = |name: &str, v: &str| {
        let r = common::client()
            .put(server().url(&common::npm::publish_path("npm-hosted", name)))
            .bearer_auth(&token)
            .json(&common::npm::publish_body(name, v))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{} {}", r.status(), r.text().unwrap_or_default());
    };
    let doc = |name: &str| get(&format!("/repository/npm-hosted/{name}?write=true"), &token);
    let name = "wharf-rev-delete";
    publish(name, "1.0.0");
    let seen: Value = doc(name).json().unwrap();
    let rev = seen["_rev"].as_str().unwrap().to_string();
    publish(name, "1.1.0");
    let delete = |rev: &str| common::client().delete(server().url(&format!("/repository/npm-hosted/{name}/-rev/{rev}"))).bearer_auth(&token).send().unwrap();
    let r = delete(&rev);
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("conflict"));
    let now: Value = doc(name).json().unwrap();
    assert_eq!(now["versions"].as_object().unwrap().len(), 2, "nothing deleted");
    assert_eq!(delete(now["_rev"].as_str().unwrap()).status(), StatusCode::OK);
    assert_eq!(doc(name).status(), StatusCode::NOT_FOUND);

    let name = "wharf-unpublish-every-version";
    publish(name, "2.0.0");
    publish(name, "2.1.0");
    let mut sent: Value = doc(name).json().unwrap();
    let rev = sent["_rev"].as_str().unwrap().to_string();
    sent["versions"] = json!({});
    let r = common::client().put(server().url(&format!("/repository/npm-hosted/{name}/-rev/{rev}"))).bearer_auth(&token).json(&sent).send().unwrap();
    assert!(r.status().is_success(), "{} {}", r.status(), r.text().unwrap_or_default());
    assert_eq!(doc(name).status(), StatusCode::NOT_FOUND);
    let found: Value = get(&format!("/repository/npm-hosted/-/v1/search?text={name}"), &token).json().unwrap();
    assert_eq!(found["objects"], json!([]), "{found}");
    // The name is free again, without the old maintainers.
    publish(name, "3.0.0");
    let again: Value = doc(name).json().unwrap();
    assert_eq!(again["versions"].as_object().unwrap().keys().collect::<Vec<_>>(), ["3.0.0"]);
}
