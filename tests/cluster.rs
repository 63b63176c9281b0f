//! Two wharf nodes on one PostgreSQL database, sharing one blob store (a bucket when the test
//! command started an S3 gateway and `WHARF_TEST_BLOB_STORE` is not `file`, else one directory
//! both use), each with a data directory of
//! its own: what is done on one node takes effect on the other within 2 s (tokens, users,
//! passwords, roles, repositories), content written through one is read through the other
//! (skopeo, npm, twine/pip), concurrent publishes split across the nodes all land, and wrong
//! passwords count across both. Nodes started together on an empty database all start.
//! Skipped without `WHARF_TEST_DATABASE_URL` (SQLite is one node), unless
//! `WHARF_TEST_REQUIRE_PG` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{oci, s3, TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What the issue promises: a change on one node acts on every node within this.
const BOUND: Duration = Duration::from_secs(2);
/// How long a check keeps asking before it fails: the bound plus the time one request of a
/// busy machine may take.
const GIVE_UP: Duration = Duration::from_millis(2500);

const STORE: &str = "shared";
const DOCKER: &str = "cl-docker";
const NPM: &str = "cl-npm";
const PYPI: &str = "cl-pypi";

struct Cluster {
    a: TestServer,
    b: TestServer,
    /// The file blob store's directory (when not on S3).
    _blobs: Option<tempfile::TempDir>,
}

fn cluster() -> Option<&'static Cluster> {
    static C: OnceLock<Option<Cluster>> = OnceLock::new();
    C.get_or_init(|| {
        if std::env::var("WHARF_TEST_DATABASE_URL").map(|u| u.is_empty()).unwrap_or(true) {
            assert!(std::env::var("WHARF_TEST_REQUIRE_PG").is_err(), "WHARF_TEST_REQUIRE_PG is set but WHARF_TEST_DATABASE_URL is not");
            eprintln!("cluster tests skipped: they need PostgreSQL (set WHARF_TEST_DATABASE_URL; tests/run.sh does)");
            return None;
        }
        let a = TestServer::start_with_env(&[
            ("WHARF_SECURITY__LOCKOUT_AFTER", "3"),
            ("WHARF_SECURITY__LOCKOUT_SECS", "600"),
            ("WHARF_SECURITY__LOCKOUT_MAX_SECS", "600"),
        ]);
        assert!(a.is_postgres());
        // On S3 when the test command started a gateway (the cluster of the issue: PostgreSQL and
        // a bucket), unless `WHARF_TEST_BLOB_STORE=file` asks for one directory both nodes share.
        let on_s3 = if std::env::var("WHARF_TEST_BLOB_STORE").as_deref() == Ok("file") { None } else { s3::env() };
        let blobs = match on_s3 {
            Some(s3) => {
                let prefix = format!("cluster-{}", uuid::Uuid::new_v4().simple());
                let body = json!({
                    "name": STORE,
                    "bucketConfiguration": {
                        "bucket": {"region": "us-east-1", "name": s3.bucket, "prefix": prefix, "expiration": -1},
                        "bucketSecurity": {"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key},
                        "advancedBucketConnection": {"endpoint": s3.endpoint, "forcePathStyle": true},
                    }
                });
                let (st, v) = a.admin().json(Method::POST, "/service/rest/v1/blobstores/s3", Some(body));
                assert_eq!(st, StatusCode::CREATED, "{v}");
                None
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                let (st, v) =
                    a.admin().json(Method::POST, "/service/rest/v1/blobstores/file", Some(json!({"name": STORE, "path": dir.path().to_str().unwrap()})));
                assert!(st.is_success(), "{st} {v}");
                Some(dir)
            }
        };
        let storage = json!({"blobStoreName": STORE, "strictContentTypeValidation": true, "writePolicy": "allow"});
        a.admin().create_docker_hosted(json!({"name": DOCKER, "online": true, "storage": storage, "docker": {"v1Enabled": false, "forceBasicAuth": true}}));
        for (format, name) in [("npm", NPM), ("pypi", PYPI)] {
            let (st, v) = a.admin().json(
                Method::POST,
                &format!("/service/rest/v1/repositories/{format}/hosted"),
                Some(json!({"name": name, "online": true, "storage": storage})),
            );
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }
        // B shares the database and the blob store, nothing else (the secret key, as every node
        // of a cluster is given it).
        let key = std::fs::read_to_string(a.data_dir().join("secret.key")).unwrap();
        let b = a.node_on_own_data_dir(&[("WHARF_SECRET_KEY", key.trim())]);
        Some(Cluster { a, b, _blobs: blobs })
    })
    .as_ref()
}

/// Tests that measure the 2 s bound hold this shared; the test that cuts the nodes' listening
/// connections holds it alone, so that its cut does not land in another test's measurement.
fn measuring() -> std::sync::RwLockReadGuard<'static, ()> {
    LISTENING.read().unwrap_or_else(|e| e.into_inner())
}

static LISTENING: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn unique(what: &str) -> String {
    format!("{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Asks `check` every 100 ms until it holds; fails if it still does not after [`GIVE_UP`]
/// (counted from the call: the change it waits for has been answered already). Returns how long
/// it took.
fn within_bound(what: &str, check: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            let took = start.elapsed();
            eprintln!("{what}: {} ms", took.as_millis());
            return took;
        }
        assert!(start.elapsed() < GIVE_UP, "{what}: not within {} s", BOUND.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(server: &TestServer, path: &str, auth: &Auth) -> StatusCode {
    let r = common::client().get(server.url(path));
    let r = match auth {
        Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
        Auth::Bearer(t) => r.bearer_auth(t),
    };
    r.send().unwrap().status()
}

enum Auth {
    Basic(String, String),
    Bearer(String),
}

fn basic(u: &str, p: &str) -> Auth {
    Auth::Basic(u.into(), p.into())
}

fn admin_auth() -> Auth {
    basic("admin", ADMIN_PASSWORD)
}

fn pypi_index() -> String {
    format!("/repository/{PYPI}/simple/")
}

/// A role that may read the cluster's PyPI repository, and a user holding it.
fn reader(a: &TestServer, user: &str, password: &str) -> String {
    let role = format!("role-{user}");
    let (st, v) = a.admin().json(
        Method::POST,
        "/service/rest/v1/security/roles",
        Some(json!({"id": role, "privileges": [format!("nx-repository-view-pypi-{PYPI}-read"), format!("nx-repository-view-pypi-{PYPI}-browse")]})),
    );
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = a.admin().json(Method::POST, "/service/rest/v1/security/users", Some(json!({"userId": user, "password": password, "roles": [role]})));
    assert_eq!(st, StatusCode::OK, "{v}");
    role
}

#[test]
fn an_api_token_made_on_a_works_on_b_and_revoked_on_a_is_refused_by_b() {
    let Some(c) = cluster() else { return };
    let _measuring = measuring();
    let r = common::client()
        .post(c.a.url("/service/rest/v1/security/tokens"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"name": "cluster"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().unwrap();
    let (id, token) = (created["id"].as_str().unwrap().to_string(), created["token"].as_str().unwrap().to_string());
    let t = Auth::Bearer(token);
    within_bound("token made on A works on B", || get(&c.b, &pypi_index(), &t) == StatusCode::OK);
    let r = common::client().delete(c.a.url(&format!("/service/rest/v1/security/tokens/{id}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    within_bound("token revoked on A refused by B", || get(&c.b, &pypi_index(), &t) == StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.a, &pypi_index(), &t), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_user_disabled_on_a_is_refused_by_b() {
    let Some(c) = cluster() else { return };
    let _measuring = measuring();
    let (user, pw) = ("cl-disabled", "cl-disabled-password");
    let role = reader(&c.a, user, pw);
    // B remembers the login (its cache is warm) before the change.
    within_bound("user made on A logs in on B", || get(&c.b, &pypi_index(), &basic(user, pw)) == StatusCode::OK);
    assert_eq!(get(&c.b, &pypi_index(), &basic(user, pw)), StatusCode::OK);
    let (st, v) = c.a.admin().json(
        Method::PUT,
        &format!("/service/rest/v1/security/users/{user}"),
        Some(json!({"userId": user, "firstName": "", "lastName": "", "emailAddress": "", "status": "disabled", "roles": [role]})),
    );
    assert!(st.is_success(), "{st} {v}");
    within_bound("user disabled on A refused by B", || get(&c.b, &pypi_index(), &basic(user, pw)) == StatusCode::UNAUTHORIZED);
}

#[test]
fn a_password_changed_on_a_is_the_only_one_b_takes() {
    let Some(c) = cluster() else { return };
    let _measuring = measuring();
    let (user, old, new) = ("cl-repassword", "cl-old-password-1", "cl-new-password-2");
    reader(&c.a, user, old);
    within_bound("user made on A logs in on B", || get(&c.b, &pypi_index(), &basic(user, old)) == StatusCode::OK);
    let r =
        c.a.admin()
            .request(Method::PUT, &format!("/service/rest/v1/security/users/{user}/change-password"))
            .header("Content-Type", "text/plain")
            .body(new)
            .send()
            .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    within_bound("old password refused by B", || get(&c.b, &pypi_index(), &basic(user, old)) == StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.b, &pypi_index(), &basic(user, new)), StatusCode::OK, "the new password works on B");
}

#[test]
fn a_privilege_removed_from_a_role_on_a_is_gone_on_b() {
    let Some(c) = cluster() else { return };
    let _measuring = measuring();
    let (user, pw) = ("cl-narrowed", "cl-narrowed-password");
    let role = reader(&c.a, user, pw);
    // Password (remembered login) and token: both get their privileges from the role.
    let r = common::client().post(c.a.url("/service/rest/v1/security/tokens")).basic_auth(user, Some(pw)).json(&json!({"name": "t"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = Auth::Bearer(r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string());
    within_bound("role's privilege on B", || get(&c.b, &pypi_index(), &basic(user, pw)) == StatusCode::OK);
    assert_eq!(get(&c.b, &pypi_index(), &token), StatusCode::OK);
    let (st, v) = c.a.admin().json(Method::PUT, &format!("/service/rest/v1/security/roles/{role}"), Some(json!({"id": role, "name": role, "privileges": []})));
    assert!(st.is_success(), "{st} {v}");
    let refused = |st: StatusCode| st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND;
    within_bound("privilege removed on A gone on B (password)", || refused(get(&c.b, &pypi_index(), &basic(user, pw))));
    let st = get(&c.b, &pypi_index(), &token);
    assert!(refused(st), "and for the token: {st}");
}

#[test]
fn a_repository_made_on_a_is_served_by_b_and_deleted_on_a_is_gone_from_b() {
    let Some(c) = cluster() else { return };
    let _measuring = measuring();
    let name = unique("cl-repo");
    let index = format!("/repository/{name}/simple/");
    assert_eq!(get(&c.b, &index, &admin_auth()), StatusCode::NOT_FOUND);
    let (st, v) = c.a.admin().json(
        Method::POST,
        "/service/rest/v1/repositories/pypi/hosted",
        Some(json!({"name": name, "online": true, "storage": {"blobStoreName": STORE, "writePolicy": "allow"}})),
    );
    assert_eq!(st, StatusCode::CREATED, "{v}");
    within_bound("repository made on A served by B", || get(&c.b, &index, &admin_auth()) == StatusCode::OK);
    let (st, v) = c.a.admin().json(Method::DELETE, &format!("/service/rest/v1/repositories/{name}"), None);
    assert!(st.is_success(), "{st} {v}");
    within_bound("repository deleted on A gone from B", || get(&c.b, &index, &admin_auth()) == StatusCode::NOT_FOUND);
}

/// Makes a PyPI repository on A and waits (within the bound) for B to serve it; then deletes it.
fn repository_reaches_b(c: &Cluster, what: &str) {
    let name = unique("cl-repo");
    let index = format!("/repository/{name}/simple/");
    let (st, v) = c.a.admin().json(
        Method::POST,
        "/service/rest/v1/repositories/pypi/hosted",
        Some(json!({"name": name, "online": true, "storage": {"blobStoreName": STORE, "writePolicy": "allow"}})),
    );
    assert_eq!(st, StatusCode::CREATED, "{v}");
    within_bound(what, || get(&c.b, &index, &admin_auth()) == StatusCode::OK);
    let (st, v) = c.a.admin().json(Method::DELETE, &format!("/service/rest/v1/repositories/{name}"), None);
    assert!(st.is_success(), "{st} {v}");
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)))
}

#[test]
fn an_image_pushed_through_a_is_pulled_through_b() {
    let Some(c) = cluster() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("img"), "v1", &["amd64"], 77, 2 << 20);
    let creds = format!("admin:{ADMIN_PASSWORD}");
    ok(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds])
        .arg(format!("oci:{}:v1", tmp.path().join("img").display()))
        .arg(format!("docker://{}/{DOCKER}/app:v1", c.a.addr))
        .output()
        .expect("skopeo is installed (the test command installs it)"));
    let pulled = tmp.path().join("pulled");
    ok(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--src-creds", &creds])
        .arg(format!("docker://{}/{DOCKER}/app:v1", c.b.addr))
        .arg(format!("oci:{}:v1", pulled.display()))
        .output()
        .unwrap());
    for blob in &layout.blobs {
        let hex = blob.strip_prefix("sha256:").unwrap();
        let got = std::fs::read(pulled.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("{blob} pulled through B: {e}"));
        assert_eq!(sha256(&got), *blob, "bytes pulled through B hash to their digest");
    }
}

/// Nodes of a new cluster are often started together (a Deployment's replicas, `docker compose
/// up`): on an empty database every one of them starts, and the first start's work is done once.
#[test]
fn nodes_started_together_on_an_empty_database_all_start() {
    if std::env::var("WHARF_TEST_DATABASE_URL").map(|u| u.is_empty()).unwrap_or(true) {
        assert!(std::env::var("WHARF_TEST_REQUIRE_PG").is_err(), "WHARF_TEST_REQUIRE_PG is set but WHARF_TEST_DATABASE_URL is not");
        return;
    }
    // Every node of a cluster is given the same key; base64 of 32 bytes.
    let key = [("WHARF_SECRET_KEY", "c3RhcnRlZC10b2dldGhlci10ZXN0LWtleS0zMmJ5dGU=")];
    let first = TestServer::unstarted(&key);
    let mut nodes: Vec<TestServer> = (0..2).map(|_| first.unstarted_node_on_own_data_dir(&[])).collect();
    nodes.push(first);
    // spawn() panics if the process exits during its start.
    std::thread::scope(|s| {
        for n in nodes.iter_mut() {
            s.spawn(move || n.spawn());
        }
    });
    for n in &nodes {
        let (st, repos) = n.admin().json(Method::GET, "/service/rest/v1/repositories", None);
        assert_eq!(st, StatusCode::OK, "{repos}");
        let mut names: Vec<&str> = repos.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["docker-hosted", "npm-hosted", "pypi-hosted"]);
        let (st, stores) = n.admin().json(Method::GET, "/service/rest/v1/blobstores", None);
        assert_eq!(st, StatusCode::OK, "{stores}");
        assert_eq!(stores.as_array().unwrap().len(), 1, "{stores}");
    }
}

/// An npm client's config for `server`'s cluster npm repository with an API token.
fn npmrc(dir: &Path, server: &TestServer, token: &str) -> PathBuf {
    let url = format!("{}/repository/{NPM}/", server.base);
    let path = dir.join("npmrc");
    std::fs::write(&path, format!("registry={url}\n{}:_authToken={token}\n", url.trim_start_matches("http:"))).unwrap();
    path
}

#[test]
fn twenty_concurrent_npm_publishes_across_both_nodes_all_land() {
    let Some(c) = cluster() else { return };
    let r = common::client()
        .post(c.a.url("/service/rest/v1/security/tokens"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"name": "npm"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let name = "wharf-cluster-crowd";
    let children: Vec<_> = (0..20)
        .map(|i| {
            let node = if i % 2 == 0 { &c.a } else { &c.b };
            let dir = tmp.path().join(format!("v{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("package.json"), json!({"name": name, "version": format!("1.0.{i}"), "main": "index.js"}).to_string()).unwrap();
            std::fs::write(dir.join("index.js"), format!("module.exports = {i};\n")).unwrap();
            let rc = npmrc(&dir, node, &token);
            // npm 11 wants a tag for a version below one already published.
            Command::new("npm")
                .args(["publish", "--tag", &format!("crowd{i}")])
                .current_dir(&dir)
                .env("npm_config_userconfig", rc)
                .env("npm_config_cache", dir.join("cache"))
                .env("npm_config_update_notifier", "false")
                .env("npm_config_fund", "false")
                .env_remove("npm_config_registry")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("npm is installed (the test command installs it)")
        })
        .collect();
    let failures: Vec<String> = children
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap())
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
        .collect();
    assert!(failures.is_empty(), "{} of 20 publishes failed:\n{}", failures.len(), failures.join("\n---\n"));
    let want: Vec<String> = (0..20).map(|i| format!("1.0.{i}")).collect();
    for (node, server) in [("A", &c.a), ("B", &c.b)] {
        let doc: Value = common::client().get(server.url(&format!("/repository/{NPM}/{name}"))).bearer_auth(&token).send().unwrap().json().unwrap();
        let mut got: Vec<String> = doc["versions"].as_object().unwrap_or_else(|| panic!("a packument from {node}: {doc}")).keys().cloned().collect();
        got.sort_by_key(|v| v.rsplit('.').next().unwrap().parse::<u32>().unwrap());
        assert_eq!(got, want, "every version in the packument from {node}");
        for v in &want {
            let r = common::client().get(server.url(&format!("/repository/{NPM}/{name}/-/{name}-{v}.tgz"))).bearer_auth(&token).send().unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{v}'s tarball from {node}");
        }
    }
}

#[test]
fn twine_uploads_to_a_and_pip_installs_from_b() {
    let Some(c) = cluster() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let out = ok(Command::new("python3").arg(script).arg(tmp.path()).arg("wharf-cluster-pkg").arg("1.2.3").output().unwrap());
    let wheel = PathBuf::from(out.lines().next().unwrap());
    ok(Command::new("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            &c.a.url(&format!("/repository/{PYPI}/")),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ])
        .arg(&wheel)
        .output()
        .expect("twine is installed (the test command installs it into target/test-venv)"));
    let target = tmp.path().join("site");
    ok(Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated", "install", "--no-cache-dir", "--index-url"])
        .arg(common::pypi::index_url(&c.b, PYPI))
        .arg("--target")
        .arg(&target)
        .arg("wharf-cluster-pkg==1.2.3")
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .output()
        .unwrap());
    let installed = std::fs::read_dir(&target).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect::<Vec<_>>();
    assert!(installed.iter().any(|n| n.starts_with("wharf_cluster_pkg")), "installed from B: {installed:?}");
}

#[test]
fn wrong_passwords_count_across_nodes() {
    let Some(c) = cluster() else { return };
    let _measuring = measuring();
    let (user, pw) = ("cl-victim", "cl-victim-password");
    reader(&c.a, user, pw);
    // A remembers the right password before the guessing starts: its cache must not answer
    // during a pause that B started.
    within_bound("victim logs in on A", || get(&c.a, &pypi_index(), &basic(user, pw)) == StatusCode::OK);
    // Three wrong passwords (the pause threshold) split across the nodes: one on A, two on B.
    assert_eq!(get(&c.a, &pypi_index(), &basic(user, "guess-1")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.b, &pypi_index(), &basic(user, "guess-2")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.b, &pypi_index(), &basic(user, "guess-3")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.b, &pypi_index(), &basic(user, pw)), StatusCode::UNAUTHORIZED, "B pauses: the count reached 3 across both nodes");
    within_bound("A pauses too, even for its remembered login", || get(&c.a, &pypi_index(), &basic(user, pw)) == StatusCode::UNAUTHORIZED);
    // The other way round: two wrong on A, one on B, for a user of its own.
    let (user2, pw2) = ("cl-victim-2", "cl-victim-2-password");
    reader(&c.a, user2, pw2);
    assert_eq!(get(&c.a, &pypi_index(), &basic(user2, "guess-1")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.a, &pypi_index(), &basic(user2, "guess-2")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.b, &pypi_index(), &basic(user2, "guess-3")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&c.a, &pypi_index(), &basic(user2, pw2)), StatusCode::UNAUTHORIZED, "A pauses after B's wrong password");
    assert_eq!(get(&c.b, &pypi_index(), &basic(user2, pw2)), StatusCode::UNAUTHORIZED, "B pauses");
    // Another address is not kept out: the refusals above are pauses, not a broken login.
    let elsewhere = Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    for (node, s) in [("A", &c.a), ("B", &c.b)] {
        let st = elsewhere.get(s.url(&pypi_index())).basic_auth(user2, Some(pw2)).send().unwrap().status();
        assert_eq!(st, StatusCode::OK, "{node}: another address is not paused");
    }
}

#[test]
fn a_node_whose_listening_connection_is_cut_reconnects_and_misses_nothing() {
    let Some(c) = cluster() else { return };
    let _alone = LISTENING.write().unwrap_or_else(|e| e.into_inner());
    let (user, pw) = ("cl-cut", "cl-cut-password");
    let role = reader(&c.a, user, pw);
    within_bound("role's privilege on B", || get(&c.b, &pypi_index(), &basic(user, pw)) == StatusCode::OK);
    // Cut both nodes' listening connections (as a PostgreSQL restart or a failover would), then
    // change the role at once: the change is told while nobody listens.
    let db = c.a.database_url();
    let out = ok(Command::new("psql")
        .arg(&db)
        .args(["-tA", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'wharf-listen' AND datname = current_database()")
        .output()
        .expect("psql"));
    assert_eq!(out.trim(), "2", "both nodes were listening");
    let (st, v) = c.a.admin().json(Method::PUT, &format!("/service/rest/v1/security/roles/{role}"), Some(json!({"id": role, "name": role, "privileges": []})));
    assert!(st.is_success(), "{st} {v}");
    let refused = |st: StatusCode| st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND;
    within_bound("a change made while B was not listening", || refused(get(&c.b, &pypi_index(), &basic(user, pw))));
    // B could not have learnt of this repository but from the listener (or its 15 s poll).
    repository_reaches_b(c, "a repository made while B was not listening");
    // Both listen again.
    within_bound("both nodes listen again", || {
        let out = Command::new("psql")
            .arg(&db)
            .args(["-tA", "-c", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wharf-listen' AND datname = current_database()"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "2"
    });
}

#[test]
fn a_scheduled_task_runs_on_one_node_per_due_time() {
    let Some(c) = cluster() else { return };
    // Every 2 s on both nodes' schedulers: each due time is claimed by one of them. Were both to
    // run it, there would be about twice as many runs as due times.
    let (st, t) = c.a.admin().json(
        Method::POST,
        "/service/rest/v1/tasks",
        Some(json!({"type": "blobstore.compact", "name": unique("cl-task"), "frequency": {"schedule": "interval", "intervalSeconds": 2}, "properties": {"dryRun": true}})),
    );
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let (_, v) = c.b.admin().json(Method::GET, &format!("/service/rest/v1/tasks/{id}/runs"), None);
        let runs: Vec<Value> = v["items"].as_array().unwrap().iter().filter(|r| r["trigger"] == "schedule" && !r["finishedAt"].is_null()).cloned().collect();
        if runs.len() >= 6 {
            break runs;
        }
        assert!(Instant::now() < deadline, "the schedulers did not run the task 6 times: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (st, _) = c.a.admin().json(Method::DELETE, &format!("/service/rest/v1/tasks/{id}"), None);
    assert!(st.is_success());
    let started: Vec<i64> = runs.iter().map(|r| chrono::DateTime::parse_from_rfc3339(r["startedAt"].as_str().unwrap()).unwrap().timestamp_millis()).collect();
    let span = started.iter().max().unwrap() - started.iter().min().unwrap();
    let due_times = span / 2000 + 1;
    let nodes: std::collections::BTreeSet<&str> = runs.iter().map(|r| r["node"].as_str().unwrap()).collect();
    eprintln!("{} runs over {span} ms on {nodes:?}", runs.len());
    assert!((runs.len() as i64) <= due_times + 1, "{} runs for {due_times} due times: some ran on both nodes: {runs:?}", runs.len());
}

/// Resumes the stopped processes when dropped (also when the test fails).
struct Stopped(Vec<String>);

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill").args(["-CONT", pid]).status();
        }
    }
}

#[test]
fn a_node_whose_listening_connection_hangs_stops_trusting_its_caches() {
    let Some(c) = cluster() else { return };
    let _alone = LISTENING.write().unwrap_or_else(|e| e.into_inner());
    let (user, pw) = ("cl-hung", "cl-hung-password");
    let role = reader(&c.a, user, pw);
    within_bound("role's privilege on B", || get(&c.b, &pypi_index(), &basic(user, pw)) == StatusCode::OK);
    // Freeze the PostgreSQL processes serving both listeners: their connections stay open and
    // answer nothing, as behind a network that drops packets without a word.
    let out = ok(Command::new("psql")
        .arg(c.a.database_url())
        .args(["-tA", "-c", "SELECT pid FROM pg_stat_activity WHERE application_name = 'wharf-listen' AND datname = current_database()"])
        .output()
        .expect("psql"));
    let pids: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    assert_eq!(pids.len(), 2, "both nodes listen: {out}");
    let mut stopped = Stopped(Vec::new());
    for pid in &pids {
        if !Command::new("kill").args(["-STOP", pid]).status().is_ok_and(|s| s.success()) {
            eprintln!("cannot stop PostgreSQL's process {pid} (not its owner?): the hanging connection is not tested");
            return;
        }
        stopped.0.push(pid.clone());
    }
    let (st, v) = c.a.admin().json(Method::PUT, &format!("/service/rest/v1/security/roles/{role}"), Some(json!({"id": role, "name": role, "privileges": []})));
    assert!(st.is_success(), "{st} {v}");
    let refused = |st: StatusCode| st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND;
    // The listener's silence (1.5 s without an answer to its check) plus one refresh: a change
    // made the moment the connection hung takes up to about 2 s, never the 60 s of the cache.
    // B's login may or may not still be remembered here (B forgets them when it hears of the
    // new user and role); a repository B can only learn of by hearing, or by its silence.
    repository_reaches_b(c, "a repository made while B's listener hangs");
    within_bound("a change made while B's listener hangs", || refused(get(&c.b, &pypi_index(), &basic(user, pw))));
    drop(stopped);
}

#[test]
fn each_node_lists_the_nodes_of_its_cluster() {
    let Some(c) = cluster() else { return };
    let system = |n: &TestServer| n.admin().json(Method::GET, "/service/rest/v1/system", None).1;
    let (a, b) = (system(&c.a), system(&c.b));
    assert_ne!(a["node"], b["node"], "{a} {b}");
    for v in [&a, &b] {
        let nodes: Vec<&Value> = v["nodes"].as_array().unwrap().iter().map(|n| &n["node"]).collect();
        assert!(nodes.contains(&&a["node"]) && nodes.contains(&&b["node"]), "{v}");
        assert_eq!(v["database"], "Postgres");
    }
}
