//! npm hosted registries with the real clients: `npm login` (in a pseudo-terminal), publish,
//! install with a cold cache, pnpm, dist-tags, deprecate, unpublish, tokens; and bad publishes
//! over raw HTTP.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// A client: its own user config and an empty cache.
struct Client_ {
    dir: tempfile::TempDir,
}

impl Client_ {
    fn new(repo: &str) -> Client_ {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("npmrc"), format!("registry={}\n", registry(repo))).unwrap();
        Client_ { dir }
    }

    fn npmrc(&self) -> PathBuf {
        self.dir.path().join("npmrc")
    }

    fn login(&self, repo: &str, user: &str, password: &str) -> Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/npm/login.py");
        Command::new("python3").arg(script).arg(registry(repo)).arg(self.npmrc()).arg(user).arg(password).output().unwrap()
    }

    fn with_token(&self, repo: &str, token: &str) {
        let url = registry(repo);
        let host_path = url.trim_start_matches("http:");
        std::fs::write(self.npmrc(), format!("registry={url}\n{host_path}:_authToken={token}\n")).unwrap();
    }

    fn cmd(&self, program: &str, cwd: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env("npm_config_userconfig", self.npmrc())
            .env("npm_config_cache", self.dir.path().join("cache"))
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env_remove("npm_config_registry")
            .output()
            .unwrap_or_else(|e| panic!("{program} runs (the test command installs it): {e}"))
    }

    fn npm(&self, cwd: &Path, args: &[&str]) -> Output {
        self.cmd("npm", cwd, args)
    }
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A package directory whose index.js exports "<name>@<version>" and re-exports its deps.
fn package(dir: &Path, name: &str, version: &str, deps: &[(&str, &str)]) -> PathBuf {
    let d = dir.join(name.replace('/', "_")).join(version);
    std::fs::create_dir_all(&d).unwrap();
    let deps_json: serde_json::Map<String, Value> = deps.iter().map(|(n, v)| (n.to_string(), json!(v))).collect();
    std::fs::write(d.join("package.json"), json!({"name": name, "version": version, "main": "index.js", "description": format!("{name} for wharf tests"), "keywords": ["wharf-test"], "dependencies": deps_json}).to_string()).unwrap();
    let requires: Vec<String> = deps.iter().map(|(n, _)| format!("require({n:?})")).collect();
    std::fs::write(d.join("index.js"), format!("module.exports = {{ me: {:?}, deps: [{}] }};\n", format!("{name}@{version}"), requires.join(", "))).unwrap();
    d
}

fn project(dir: &Path) -> PathBuf {
    let p = dir.join(format!("project-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("package.json"), r#"{"name": "consumer", "version": "1.0.0", "private": true}"#).unwrap();
    p
}

fn node_eval(cwd: &Path, code: &str) -> String {
    let out = Command::new("node").arg("-e").arg(code).current_dir(cwd).output().unwrap();
    ok(out).trim().to_string()
}

fn login_token(c: &Client_) -> String {
    let text = std::fs::read_to_string(c.npmrc()).unwrap();
    text.lines().find_map(|l| l.split_once(":_authToken=").map(|(_, t)| t.to_string())).expect("npm login wrote a token")
}

#[test]
fn login_publish_and_install_scoped_and_unscoped_with_a_cold_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Client_::new("npm-hosted");
    let out = c.login("npm-hosted", "admin", ADMIN_PASSWORD);
    assert!(out.status.success(), "npm login: {}", String::from_utf8_lossy(&out.stdout));
    assert!(login_token(&c).starts_with("wharf_"));
    assert_eq!(ok(c.npm(tmp.path(), &["whoami"])).trim(), "admin");
    ok(c.npm(tmp.path(), &["ping"]));

    let lib = package(tmp.path(), "wharf-it-lib", "1.0.0", &[]);
    ok(c.npm(&lib, &["publish"]));
    let app = package(tmp.path(), "@wharf-it/app", "2.0.0", &[("wharf-it-lib", "^1.0.0")]);
    ok(c.npm(&app, &["publish"]));

    // A fresh project and an empty cache: everything comes from wharf.
    let fresh = Client_::new("npm-hosted");
    fresh.with_token("npm-hosted", &login_token(&c));
    let p = project(tmp.path());
    ok(fresh.npm(&p, &["install", "--prefer-online", "@wharf-it/app"]));
    assert_eq!(node_eval(&p, r#"const a = require("@wharf-it/app"); console.log(a.me, a.deps[0].me)"#), "@wharf-it/app@2.0.0 wharf-it-lib@1.0.0");
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(p.join("package-lock.json")).unwrap()).unwrap();
    let resolved = lock["packages"]["node_modules/@wharf-it/app"]["resolved"].as_str().unwrap();
    assert_eq!(resolved, format!("{}@wharf-it/app/-/app-2.0.0.tgz", registry("npm-hosted")));

    // pnpm, with its own empty store.
    let pnpm = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-npm/node_modules/.bin/pnpm");
    let p2 = project(tmp.path());
    let store = tmp.path().join("pnpm-store");
    let out = fresh.cmd(pnpm, &p2, &["add", "@wharf-it/app", "--store-dir", store.to_str().unwrap(), "--registry", &registry("npm-hosted")]);
    assert!(out.status.success(), "pnpm: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    assert_eq!(node_eval(&p2, r#"console.log(require("@wharf-it/app").deps[0].me)"#), "wharf-it-lib@1.0.0");

    // The abbreviated packument, as npm asks for it.
    let r = common::client()
        .get(server().url("/repository/npm-hosted/@wharf-it%2fapp"))
        .bearer_auth(login_token(&c))
        .header("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/vnd.npm.install-v1+json");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let v: Value = r.json().unwrap();
    assert_eq!(v["dist-tags"]["latest"], "2.0.0");
    assert!(v["versions"]["2.0.0"]["dist"]["integrity"].as_str().unwrap().starts_with("sha512-"));
    assert!(v["versions"]["2.0.0"].get("description").is_none(), "abbreviated");
    let r = common::client()
        .get(server().url("/repository/npm-hosted/@wharf-it%2fapp"))
        .bearer_auth(login_token(&c))
        .header("Accept", "application/vnd.npm.install-v1+json")
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Forwarding headers from a peer that is not a trusted proxy (http.trusted_proxies) move
    // no URL: tests/input_bounds.rs covers the trusted case.
    let v: Value = common::client()
        .get(server().url("/repository/npm-hosted/wharf-it-lib"))
        .bearer_auth(login_token(&c))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "npm.example.com")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["versions"]["1.0.0"]["dist"]["tarball"], format!("{}/repository/npm-hosted/wharf-it-lib/-/wharf-it-lib-1.0.0.tgz", server().base));
}

#[test]
fn dist_tags_deprecate_search_unpublish_and_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Client_::new("npm-hosted");
    assert!(c.login("npm-hosted", "admin", ADMIN_PASSWORD).status.success());
    ok(c.npm(&package(tmp.path(), "wharf-tags", "1.0.0", &[]), &["publish"]));
    ok(c.npm(&package(tmp.path(), "wharf-tags", "1.1.0-beta.1", &[]), &["publish", "--tag", "beta"]));
    let ls = ok(c.npm(tmp.path(), &["dist-tag", "ls", "wharf-tags"]));
    assert!(ls.contains("beta: 1.1.0-beta.1") && ls.contains("latest: 1.0.0"), "{ls}");
    ok(c.npm(tmp.path(), &["dist-tag", "add", "wharf-tags@1.1.0-beta.1", "next"]));
    ok(c.npm(tmp.path(), &["dist-tag", "rm", "wharf-tags", "beta"]));
    let ls = ok(c.npm(tmp.path(), &["dist-tag", "ls", "wharf-tags"]));
    assert!(ls.contains("next: 1.1.0-beta.1") && !ls.contains("beta:"), "{ls}");

    ok(c.npm(tmp.path(), &["deprecate", "wharf-tags@1.0.0", "use 1.1"]));
    assert_eq!(ok(c.npm(tmp.path(), &["view", "wharf-tags@1.0.0", "deprecated"])).trim(), "use 1.1");

    let found = ok(c.npm(tmp.path(), &["search", "--json", "wharf-tags"]));
    let found: Value = serde_json::from_str(&found).unwrap();
    assert!(found.as_array().unwrap().iter().any(|p| p["name"] == "wharf-tags"), "{found}");

    // Republishing a version is refused by the server too (not only by npm's own check).
    let r = raw_publish(&login_token(&c), "wharf-tags", "1.0.0", &tgz("wharf-tags", "1.0.0"), None, None);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    ok(c.npm(tmp.path(), &["unpublish", "wharf-tags@1.1.0-beta.1"]));
    let versions: Value = serde_json::from_str(&ok(c.npm(tmp.path(), &["view", "wharf-tags", "versions", "--json"]))).unwrap();
    assert!(versions == json!(["1.0.0"]) || versions == json!("1.0.0"), "{versions}");
    ok(c.npm(tmp.path(), &["unpublish", "wharf-tags", "--force"]));
    assert!(!c.npm(tmp.path(), &["view", "wharf-tags"]).status.success());

    // Tokens: listed; a revoked one stops working at once.
    let list = ok(c.npm(tmp.path(), &["token", "list", "--json"]));
    let list: Value = serde_json::from_str(&list).unwrap();
    let mine = login_token(&c);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| mine.starts_with(t["token"].as_str().unwrap().trim_end_matches('…')))
        .expect("the login token is listed")
        .clone();
    assert_eq!(ok(c.npm(tmp.path(), &["whoami"])).trim(), "admin");
    ok(c.npm(tmp.path(), &["token", "revoke", entry["key"].as_str().unwrap()]));
    assert!(!c.npm(tmp.path(), &["whoami"]).status.success(), "a revoked token is dead");
}

fn tgz(name: &str, version: &str) -> Vec<u8> {
    tgz_with(json!({"name": name, "version": version}))
}

fn tgz_with(pkg: Value) -> Vec<u8> {
    common::npm::tarball_with(&pkg)
}

/// A publish as npm sends it; `integrity`/`shasum` override the true ones.
#[expect(clippy::too_many_arguments, reason = "each argument is one part of the request a test varies")]
fn raw_publish_to(
    repo: &str,
    auth: Option<(&str, &str)>,
    token: Option<&str>,
    name: &str,
    version: &str,
    data: &[u8],
    integrity: Option<String>,
    shasum: Option<String>,
) -> reqwest::blocking::Response {
    let mut body = common::npm::publish_body_of(name, version, data);
    let dist = &mut body["versions"][version]["dist"];
    if let Some(i) = integrity {
        dist["integrity"] = json!(i);
    }
    if let Some(s) = shasum {
        dist["shasum"] = json!(s);
    }
    let mut r = common::client().put(server().url(&common::npm::publish_path(repo, name))).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some((u, p)) = auth {
        r = r.basic_auth(u, Some(p));
    }
    r.send().unwrap()
}

fn raw_publish(token: &str, name: &str, version: &str, data: &[u8], integrity: Option<String>, shasum: Option<String>) -> reqwest::blocking::Response {
    raw_publish_to("npm-hosted", None, Some(token), name, version, data, integrity, shasum)
}

fn admin_basic() -> Option<(&'static str, &'static str)> {
    Some(("admin", ADMIN_PASSWORD))
}

#[test]
fn bad_publishes_are_refused_and_leave_nothing() {
    let publish = |name: &str, version: &str, data: &[u8], integrity: Option<String>, shasum: Option<String>| {
        raw_publish_to("npm-hosted", admin_basic(), None, name, version, data, integrity, shasum)
    };
    let good = tgz("wharf-bad", "1.0.0");
    // Integrity and shasum mismatches.
    let r = publish("wharf-bad", "1.0.0", &good, Some(format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode([0u8; 64]))), None);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("integrity"));
    let r = publish("wharf-bad", "1.0.0", &good, None, Some("0".repeat(40)));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The tarball's package.json disagrees with the publish.
    let other = tgz("someone-else", "1.0.0");
    let r = publish("wharf-bad", "1.0.0", &other, None, None);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("someone-else"));
    let r = publish("wharf-bad", "1.0.0", &tgz("wharf-bad", "9.9.9"), None, None);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Not a tarball at all; a path-traversal name; an invalid package name.
    assert_eq!(publish("wharf-bad", "1.0.0", b"not gzip", None, None).status(), StatusCode::BAD_REQUEST);
    assert_eq!(publish("Wharf-Bad", "1.0.0", &tgz("Wharf-Bad", "1.0.0"), None, None).status(), StatusCode::BAD_REQUEST);
    assert_eq!(publish("wharf-bad", "../1", &good, None, None).status(), StatusCode::BAD_REQUEST);
    // Malformed JSON.
    let r = common::client()
        .put(server().url("/repository/npm-hosted/wharf-bad"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("JSON"));
    // Nothing of it exists.
    let r = common::client().get(server().url("/repository/npm-hosted/wharf-bad")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Without credentials, and with a user who may only read.
    assert_eq!(raw_publish_to("npm-hosted", None, None, "wharf-bad", "1.0.0", &good, None, None).status(), StatusCode::UNAUTHORIZED);
    let admin = server().admin();
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": "npm-readers", "privileges": ["nx-repository-view-npm-*-read"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "npm-reader", "password": "npm-reader-pw", "roles": ["npm-readers"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = raw_publish_to("npm-hosted", Some(("npm-reader", "npm-reader-pw")), None, "wharf-bad", "1.0.0", &good, None, None);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.json::<Value>().unwrap()["error"].as_str().is_some());
    // A reader may star (a small document): a larger one is not read, let alone parsed whole
    // (16 MiB of [0,0,...] held about 290 MB).
    let big = format!(r#"{{"users":{{}},"x":[{}0]}}"#, "0,".repeat(1 << 20));
    let r = common::client()
        .put(server().url("/repository/npm-hosted/wharf-bad"))
        .basic_auth("npm-reader", Some("npm-reader-pw"))
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json::<Value>().unwrap()["error"].as_str().is_some());
    // The reader logs in with npm's protocol and reads, but the token cannot publish either.
    let r = common::client()
        .put(server().url("/repository/npm-hosted/-/user/org.couchdb.user:npm-reader"))
        .json(&json!({"name": "npm-reader", "password": "npm-reader-pw"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    assert_eq!(raw_publish("", "x", "1.0.0", &good, None, None).status(), StatusCode::UNAUTHORIZED);
    assert_eq!(raw_publish(&token, "wharf-bad", "1.0.0", &good, None, None).status(), StatusCode::FORBIDDEN);
    let r = common::client()
        .put(server().url("/repository/npm-hosted/-/user/org.couchdb.user:npm-reader"))
        .json(&json!({"name": "npm-reader", "password": "wrong"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Oversized: a repository with a 1 MiB limit.
    let r = admin
        .request(Method::POST, "/service/rest/v1/repositories/npm/hosted")
        .json(&json!({"name": "npm-small", "storage": {"blobStoreName": "default", "writePolicy": "allow_once"}, "npm": {"uploadMaxSize": 1}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let mut big = Vec::new();
    {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(&mut big, flate2::Compression::none()));
        let data = common::oci::noise(3, 2 << 20);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, "package/blob.bin", &data[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let r = raw_publish_to("npm-small", admin_basic(), None, "wharf-big", "1.0.0", &big, None, None);
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn no_document_body_is_read_from_a_caller_who_may_not_read_the_package() {
    let r = server()
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "npm-outsider", "password": "npm-outsider-pw", "roles": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Malformed JSON: a 400 would mean the body was read before the rights were checked.
    for path in ["/repository/npm-hosted/wharf-outside", "/repository/npm-hosted/wharf-outside/-rev/1-0"] {
        let r = common::client()
            .put(server().url(path))
            .basic_auth("npm-outsider", Some("npm-outsider-pw"))
            .header("Content-Type", "application/json")
            .body("{\"name\": ")
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

/// A user with read and write rights on every npm repository, and an npm token for them.
fn npm_writer(user: &str, password: &str) -> String {
    let admin = server().admin();
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": format!("{user}-role"), "privileges": ["nx-repository-view-npm-*-read", "nx-repository-view-npm-*-add"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": user, "password": password, "roles": [format!("{user}-role")]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
    let r = common::client()
        .put(server().url(&format!("/repository/npm-hosted/-/user/org.couchdb.user:{user}")))
        .json(&json!({"name": user, "password": password}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
}

/// `npm star` sends the document with `users` only, `npm owner add` with `maintainers` only:
/// neither may remove a version (both used to unpublish every version, tarballs included).
#[test]
fn star_and_owner_add_keep_every_version() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Client_::new("npm-hosted");
    assert!(c.login("npm-hosted", "admin", ADMIN_PASSWORD).status.success());
    ok(c.npm(&package(tmp.path(), "wharf-starred", "1.0.0", &[]), &["publish"]));
    ok(c.npm(&package(tmp.path(), "wharf-starred", "1.1.0", &[]), &["publish"]));
    let versions =
        |c: &Client_| -> Value { serde_json::from_str(&ok(c.npm(tmp.path(), &["view", "wharf-starred", "versions", "--json", "--prefer-online"]))).unwrap() };

    ok(c.npm(tmp.path(), &["star", "wharf-starred"]));
    assert_eq!(versions(&c), json!(["1.0.0", "1.1.0"]), "npm star keeps every version");
    let doc: Value = common::client().get(server().url("/repository/npm-hosted/wharf-starred")).bearer_auth(login_token(&c)).send().unwrap().json().unwrap();
    assert_eq!(doc["users"], json!({"admin": true}));

    // Another user with write rights makes themselves an owner.
    let token = npm_writer("npm-owner2", "npm-owner2-pw");
    let other = Client_::new("npm-hosted");
    other.with_token("npm-hosted", &token);
    ok(other.npm(tmp.path(), &["owner", "add", "npm-owner2", "wharf-starred"]));
    assert_eq!(versions(&c), json!(["1.0.0", "1.1.0"]), "npm owner add keeps every version");
    let owners = ok(c.npm(tmp.path(), &["owner", "ls", "wharf-starred", "--prefer-online"]));
    assert!(owners.contains("admin") && owners.contains("npm-owner2"), "{owners}");
    ok(other.npm(tmp.path(), &["owner", "rm", "npm-owner2", "wharf-starred"]));
    ok(c.npm(tmp.path(), &["unstar", "wharf-starred"]));
    assert_eq!(versions(&c), json!(["1.0.0", "1.1.0"]));

    // The tarballs are all still there: a fresh install of each version works.
    for v in ["1.0.0", "1.1.0"] {
        let fresh = Client_::new("npm-hosted");
        fresh.with_token("npm-hosted", &login_token(&c));
        let p = project(tmp.path());
        ok(fresh.npm(&p, &["install", "--prefer-online", &format!("wharf-starred@{v}")]));
        assert_eq!(node_eval(&p, r#"console.log(require("wharf-starred").me)"#), format!("wharf-starred@{v}"));
    }

    // A document that names none of versions, maintainers or users changes nothing.
    let rev = common::client().get(server().url("/repository/npm-hosted/wharf-starred")).bearer_auth(login_token(&c)).send().unwrap().json::<Value>().unwrap()
        ["_rev"]
        .as_str()
        .unwrap()
        .to_string();
    let r = common::client()
        .put(server().url(&format!("/repository/npm-hosted/wharf-starred/-rev/{rev}")))
        .bearer_auth(login_token(&c))
        .json(&json!({"_id": "wharf-starred", "_rev": rev}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(versions(&c), json!(["1.0.0", "1.1.0"]));
}

/// 20 real `npm publish` processes of distinct versions of one package at once: every one is
/// answered success (npm does not retry a 409), and every version is in the packument. Run on
/// PostgreSQL too (`WHARF_TEST_DATABASE_URL`).
#[test]
fn concurrent_publishes_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Client_::new("npm-hosted");
    assert!(c.login("npm-hosted", "admin", ADMIN_PASSWORD).status.success());
    let token = login_token(&c);
    let clients: Vec<Client_> = (0..20)
        .map(|_| {
            let k = Client_::new("npm-hosted");
            k.with_token("npm-hosted", &token);
            k
        })
        .collect();
    let children: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let dir = package(tmp.path(), "wharf-crowd", &format!("1.0.{i}"), &[]);
            // npm 11 wants a tag for a version below one already published.
            Command::new("npm")
                .args(["publish", "--tag", &format!("crowd{i}")])
                .current_dir(&dir)
                .env("npm_config_userconfig", k.npmrc())
                .env("npm_config_cache", k.dir.path().join("cache"))
                .env("npm_config_update_notifier", "false")
                .env_remove("npm_config_registry")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let failures: Vec<String> = children
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap())
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
        .collect();
    assert!(failures.is_empty(), "{} of 20 publishes failed:\n{}", failures.len(), failures.join("\n---\n"));
    let doc: Value = common::client().get(server().url("/repository/npm-hosted/wharf-crowd")).bearer_auth(&token).send().unwrap().json().unwrap();
    let mut got: Vec<String> = doc["versions"].as_object().unwrap().keys().cloned().collect();
    got.sort_by_key(|v| v.rsplit('.').next().unwrap().parse::<u32>().unwrap());
    let want: Vec<String> = (0..20).map(|i| format!("1.0.{i}")).collect();
    assert_eq!(got, want, "every published version is in the packument");
    for v in &want {
        let r = common::client().get(server().url(&format!("/repository/npm-hosted/wharf-crowd/-/wharf-crowd-{v}.tgz"))).bearer_auth(&token).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{v}'s tarball");
    }
}
