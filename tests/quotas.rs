//! Usage and quotas with the real clients: blob store and repository usage counted once per blob
//! (checked against the bytes on disk), hard quotas refusing `skopeo copy`, `twine upload` and
//! `npm publish` while reads go on, soft quotas warning, and blob store deletion.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{oci, TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn api(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server().admin().json(method, &format!("/service/rest/v1{path}"), body)
}

fn expect(method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
    let (status, v) = api(method.clone(), path, body);
    assert_eq!(status.as_u16(), want, "{method} {path}: {v}");
    v
}

fn create_store(name: &str, extra: Value) {
    let mut body = json!({"name": name, "path": name});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    expect(Method::POST, "/blobstores/file", Some(body), 204);
}

fn create_repo(format: &str, kind: &str, body: Value) {
    expect(Method::POST, &format!("/repositories/{format}/{kind}"), Some(body), 201);
}

/// Sets (or with `None` removes) a hosted repository's hard quota through a full PUT, as the
/// console does: what GET shows, changed.
fn set_hard_quota(format: &str, name: &str, limit: Option<u64>) {
    let mut cfg = expect(Method::GET, &format!("/repositories/{format}/hosted/{name}"), None, 200);
    match limit {
        Some(l) => cfg["storage"]["hardQuota"] = json!({"limit": l}),
        None => drop(cfg["storage"].as_object_mut().unwrap().remove("hardQuota")),
    }
    expect(Method::PUT, &format!("/repositories/{format}/hosted/{name}"), Some(cfg), 204);
}

fn store_entry(name: &str) -> Value {
    let stores = expect(Method::GET, "/blobstores", None, 200);
    stores.as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or_else(|| panic!("no blob store {name} in {stores}"))
}

fn repo_usage(name: &str) -> (u64, u64) {
    let u = expect(Method::GET, &format!("/repositories/{name}/usage"), None, 200);
    (u["blobCount"].as_u64().unwrap(), u["totalSizeInBytes"].as_u64().unwrap())
}

fn combined(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout))
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}", combined(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The client failed, saying why on `stream` (what it prints its errors on): the quota, the
/// repository and its limit. Whitespace is normalised: twine wraps its messages.
fn refused_for_quota(out: &Output, stream: &[u8], repo: &str, limit: u64) {
    assert!(!out.status.success(), "expected a refusal: {}", combined(out));
    let said = String::from_utf8_lossy(stream).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(said.contains("quota exceeded"), "the client names the quota: {said}\nall: {}", combined(out));
    assert!(said.contains(repo) && said.contains(&format!("is {limit} bytes")), "the client names the repository and the numbers: {said}");
}

// ---- Docker ------------------------------------------------------------------------------------

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed (the test command installs it)")
}

fn creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

fn push(layout: &Path, tag: &str, dest: &str) -> Output {
    let creds = creds();
    skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &format!("oci:{}:{tag}", layout.display()), dest])
}

fn docker_ref(repo: &str, image: &str) -> String {
    format!("docker://{}/{repo}/{image}", server().addr)
}

/// Two images that share their base layer: `(first, second)` with the layouts' digests.
fn two_images(dir: &Path, seed: u64) -> ((PathBuf, oci::Layout), (PathBuf, oci::Layout)) {
    let (a, b) = (dir.join(format!("a{seed}")), dir.join(format!("b{seed}")));
    let la = oci::image_of_layers(&a, "1", &[seed, seed + 1], 64 << 10, "first");
    let lb = oci::image_of_layers(&b, "1", &[seed, seed + 2], 64 << 10, "second");
    assert_eq!(la.blobs[0], lb.blobs[0], "the base layer is shared");
    ((a, la), (b, lb))
}

/// Every blob file under a store's directory: digest → size.
fn blobs_on_disk(store_dir: &Path) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let root = store_dir.join("blobs/sha256");
    for shard in std::fs::read_dir(&root).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            out.insert(format!("sha256:{}", f.file_name().to_string_lossy()), f.metadata().unwrap().len());
        }
    }
    out
}

#[test]
fn usage_counts_each_blob_once_per_store_and_per_repository() {
    create_store("usage-store", json!({}));
    for name in ["docker-usage-a", "docker-usage-b"] {
        create_repo("docker", "hosted", json!({"name": name, "storage": {"blobStoreName": "usage-store"}, "docker": {}}));
    }
    let tmp = tempfile::tempdir().unwrap();
    let ((a, la), (b, lb)) = two_images(tmp.path(), 11);
    ok(push(&a, "1", &format!("{}:1", docker_ref("docker-usage-a", "app-one"))));
    ok(push(&b, "1", &format!("{}:1", docker_ref("docker-usage-a", "app-two"))));
    ok(push(&a, "1", &format!("{}:1", docker_ref("docker-usage-b", "app-one"))));

    // The store: exactly the files on disk, each once.
    let disk = blobs_on_disk(&server().data_dir().join("blobs/usage-store"));
    let disk_bytes: u64 = disk.values().sum();
    let store = store_entry("usage-store");
    assert_eq!(store["blobCount"].as_u64().unwrap(), disk.len() as u64, "{store}");
    assert_eq!(store["totalSizeInBytes"].as_u64().unwrap(), disk_bytes, "{store}");
    assert!(store["availableSpaceInBytes"].as_u64().unwrap() > 0, "{store}");

    // Repository a references every blob of the store (both images, the base layer once).
    let a_blobs: HashSet<&String> = la.blobs.iter().chain(&lb.blobs).chain([&la.top_digest, &lb.top_digest]).collect();
    assert_eq!(a_blobs.len(), disk.len(), "two images sharing one layer: {} distinct blobs", a_blobs.len());
    assert_eq!(repo_usage("docker-usage-a"), (disk.len() as u64, disk_bytes));
    // Repository b only the first image's; the shared blobs count in each repository.
    let b_blobs: HashSet<&String> = la.blobs.iter().chain([&la.top_digest]).collect();
    let b_bytes: u64 = b_blobs.iter().map(|d| disk[*d]).sum();
    assert_eq!(repo_usage("docker-usage-b"), (b_blobs.len() as u64, b_bytes));
    assert!(repo_usage("docker-usage-a").1 + repo_usage("docker-usage-b").1 > disk_bytes, "shared across repositories: counted in each");

    // The repository list (the console's dashboard) says the same.
    let list = expect(Method::GET, "/repositories", None, 200);
    let entry = list.as_array().unwrap().iter().find(|r| r["name"] == "docker-usage-b").unwrap().clone();
    assert_eq!((entry["blobCount"].as_u64().unwrap(), entry["totalSizeInBytes"].as_u64().unwrap()), (b_blobs.len() as u64, b_bytes), "{entry}");
}

#[test]
fn a_docker_repository_over_its_hard_quota_refuses_pushes_and_serves_pulls() {
    create_repo(
        "docker",
        "hosted",
        json!({"name": "docker-quota", "storage": {"blobStoreName": "default", "hardQuota": {"limit": 100_000_000}}, "docker": {}}),
    );
    create_repo(
        "docker",
        "group",
        json!({"name": "docker-quota-group", "storage": {"blobStoreName": "default"}, "docker": {}, "group": {"memberNames": ["docker-quota"], "writableMember": "docker-quota"}}),
    );
    let shown = expect(Method::GET, "/repositories/docker/hosted/docker-quota", None, 200);
    assert_eq!(shown["storage"]["hardQuota"], json!({"limit": 100_000_000}));
    let tmp = tempfile::tempdir().unwrap();
    let ((a, _), (b, _)) = two_images(tmp.path(), 21);
    ok(push(&a, "1", &format!("{}:1", docker_ref("docker-quota", "app"))));
    let (_, used) = repo_usage("docker-quota");
    assert!(used > 0);

    let limit = used / 2;
    set_hard_quota("docker", "docker-quota", Some(limit));
    let usage = expect(Method::GET, "/repositories/docker-quota/usage", None, 200);
    assert_eq!(usage["quota"]["limit"], json!(limit), "{usage}");
    assert_eq!(usage["quota"]["exceeded"], json!(true), "{usage}");
    let out = push(&b, "1", &format!("{}:2", docker_ref("docker-quota", "app")));
    refused_for_quota(&out, &out.stderr, "docker-quota", limit);
    // Through a group: its writable member's quota applies.
    let out = push(&b, "1", &format!("{}:3", docker_ref("docker-quota-group", "app")));
    refused_for_quota(&out, &out.stderr, "docker-quota", limit);
    assert_eq!(repo_usage("docker-quota").1, used, "nothing was added");

    // Reads go on.
    let creds = creds();
    let image = format!("{}:1", docker_ref("docker-quota", "app"));
    ok(skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &image]));
    let pulled = tmp.path().join("pulled");
    ok(skopeo(&["copy", "--src-tls-verify=false", "--src-creds", &creds, &image, &format!("oci:{}:1", pulled.display())]));

    // Room again: the push goes through.
    set_hard_quota("docker", "docker-quota", Some(used * 4));
    ok(push(&b, "1", &format!("{}:2", docker_ref("docker-quota-group", "app"))));
    assert!(repo_usage("docker-quota").1 > used);
}

/// Upload sessions opened while the repository is under its hard quota and then filled past it:
/// each finishing PUT is checked again, so sessions land only while the repository is under
/// its limit (the last one may cross it), and the rest are refused with Docker's DENIED saying
/// "quota exceeded". A refused session is over and its bytes are not kept.
#[test]
fn docker_upload_sessions_opened_under_the_hard_quota_cannot_all_finish_above_it() {
    const LAYER: usize = 40_000;
    const LIMIT: u64 = 100_000;
    create_repo("docker", "hosted", json!({"name": "docker-sessions", "storage": {"blobStoreName": "default", "hardQuota": {"limit": LIMIT}}, "docker": {}}));
    let http = reqwest::blocking::Client::new();
    let absolute = |location: &str| if location.starts_with('/') { format!("{}{location}", server().base) } else { location.to_string() };
    let sessions: Vec<String> = (0..4)
        .map(|_| {
            let r = http.post(format!("{}/v2/docker-sessions/app/blobs/uploads/", server().base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED, "opened under the quota: nothing is stored yet");
            absolute(r.headers()["location"].to_str().unwrap())
        })
        .collect();
    for (i, session) in sessions.iter().enumerate() {
        let layer: Vec<u8> = (0..LAYER).map(|n| (n * 31 + i * 7 + n / 251) as u8).collect();
        let r = http.patch(session).basic_auth("admin", Some(ADMIN_PASSWORD)).body(layer.clone()).send().unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "session {i}");
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&layer)));
        let sep = if session.contains('?') { '&' } else { '?' };
        let r = http.put(format!("{session}{sep}digest={digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        let status = r.status();
        let body: Value = serde_json::from_str(&r.text().unwrap()).unwrap_or(Value::Null);
        // Stored before this one: 0, 40 000 and 80 000 bytes are under the limit; 120 000 is not.
        if (i * LAYER) < LIMIT as usize {
            assert_eq!(status, StatusCode::CREATED, "session {i}: {body}");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "session {i}: {body}");
            assert_eq!(body["errors"][0]["code"], json!("DENIED"), "{body}");
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains("quota exceeded") && message.contains("docker-sessions"), "{body}");
            let r = http.get(session).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "the refused session is over");
        }
    }
    assert_eq!(repo_usage("docker-sessions"), (3, 3 * LAYER as u64));
}

#[test]
fn a_hard_quota_is_validated_and_only_hosted_repositories_take_one() {
    for (quota, field) in [
        (json!({"limit": 0}), "storage.hardQuota.limit"),
        (json!({"limit": "1 GB"}), "storage.hardQuota.limit"),
        (json!({}), "storage.hardQuota.limit"),
        (json!({"limit": 5, "soft": true}), "storage.hardQuota.soft"),
        (json!(12), "storage.hardQuota"),
    ] {
        let (status, v) = api(
            Method::POST,
            "/repositories/docker/hosted",
            Some(json!({"name": "bad-quota", "storage": {"blobStoreName": "default", "hardQuota": quota}, "docker": {}})),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{quota}: {v}");
        assert_eq!(v[0]["id"], json!(format!("PARAMETER {field}")), "{quota}: {v}");
    }
    let (status, v) = api(
        Method::POST,
        "/repositories/docker/group",
        Some(json!({"name": "bad-quota", "storage": {"blobStoreName": "default", "hardQuota": {"limit": 5}}, "docker": {}, "group": {"memberNames": []}})),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v[0]["message"].as_str().unwrap().contains("writable member"), "{v}");
}

// ---- PyPI --------------------------------------------------------------------------------------

fn dist(dir: &Path, name: &str, version: &str) -> PathBuf {
    common::pypi::dist(dir, name, version, &[]).0
}

fn twine(repo: &str, file: &Path) -> Output {
    common::pypi::twine(&format!("{}/repository/{repo}/", server().base), "admin", ADMIN_PASSWORD, &[file])
}

#[test]
fn a_pypi_repository_over_its_hard_quota_refuses_uploads_and_serves_downloads() {
    create_repo("pypi", "hosted", json!({"name": "pypi-quota", "storage": {"blobStoreName": "default", "hardQuota": {"limit": 1}}}));
    let tmp = tempfile::tempdir().unwrap();
    // Under the limit (nothing yet): the first upload goes through, and uses it up.
    ok(twine("pypi-quota", &dist(tmp.path(), "quota-pkg", "1.0")));
    let second = dist(tmp.path(), "quota-pkg", "1.1");
    // twine prints its errors on stdout; the message is the reason phrase (shown without --verbose).
    let out = twine("pypi-quota", &second);
    refused_for_quota(&out, &out.stdout, "pypi-quota", 1);

    let index = common::pypi::index_url(server(), "pypi-quota");
    let out = Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated", "download", "--no-cache-dir", "--no-deps", "-d"])
        .arg(tmp.path().join("dl"))
        .args(["--index-url", &index, "quota-pkg==1.0"])
        .env_remove("PIP_FIND_LINKS")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .output()
        .unwrap();
    ok(out);

    set_hard_quota("pypi", "pypi-quota", Some(100_000_000));
    ok(twine("pypi-quota", &second));
}

// ---- npm ---------------------------------------------------------------------------------------

fn npm(dir: &Path, npmrc: &Path, args: &[&str]) -> Output {
    Command::new("npm")
        .args(args)
        .current_dir(dir)
        .env("npm_config_userconfig", npmrc)
        .env("npm_config_cache", npmrc.with_file_name("cache"))
        .env("npm_config_update_notifier", "false")
        .env_remove("npm_config_registry")
        .output()
        .expect("npm is installed")
}

fn npm_package(dir: &Path, name: &str, version: &str) -> PathBuf {
    let d = dir.join(format!("{name}-{version}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("package.json"), json!({"name": name, "version": version, "main": "index.js"}).to_string()).unwrap();
    std::fs::write(d.join("index.js"), format!("module.exports = {version:?};\n")).unwrap();
    d
}

#[test]
fn an_npm_registry_over_its_hard_quota_refuses_publishes_and_serves_installs() {
    create_repo("npm", "hosted", json!({"name": "npm-quota", "storage": {"blobStoreName": "default", "hardQuota": {"limit": 1}}}));
    let tmp = tempfile::tempdir().unwrap();
    let registry = format!("{}/repository/npm-quota/", server().base);
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("admin:{ADMIN_PASSWORD}"));
    let npmrc = tmp.path().join("npmrc");
    std::fs::write(&npmrc, format!("registry={registry}\n{}:_auth={auth}\n", registry.trim_start_matches("http:"))).unwrap();

    ok(npm(&npm_package(tmp.path(), "quota-lib", "1.0.0"), &npmrc, &["publish"]));
    let next = npm_package(tmp.path(), "quota-lib", "1.0.1");
    let out = npm(&next, &npmrc, &["publish"]);
    refused_for_quota(&out, &out.stderr, "npm-quota", 1);

    let view = ok(npm(tmp.path(), &npmrc, &["view", "quota-lib", "versions", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&view).unwrap(), json!(["1.0.0"]), "{view}");
    ok(npm(tmp.path(), &npmrc, &["pack", "quota-lib@1.0.0"]));

    set_hard_quota("npm", "npm-quota", None);
    ok(npm(&next, &npmrc, &["publish"]));
}

// ---- soft quotas -------------------------------------------------------------------------------

#[test]
fn a_blob_store_over_its_soft_quota_warns_and_takes_writes() {
    create_store("soft-store", json!({"softQuota": {"type": "spaceUsedQuota", "limit": 1000}}));
    assert_eq!(
        expect(Method::GET, "/blobstores/file/soft-store", None, 200),
        json!({"path": "soft-store", "softQuota": {"type": "spaceUsedQuota", "limit": 1000}})
    );
    let status = expect(Method::GET, "/blobstores/soft-store/quota-status", None, 200);
    assert_eq!(status["isViolation"], json!(false), "{status}");
    assert_eq!(status["blobStoreName"], json!("soft-store"));

    create_repo("pypi", "hosted", json!({"name": "pypi-soft", "storage": {"blobStoreName": "soft-store"}}));
    let tmp = tempfile::tempdir().unwrap();
    ok(twine("pypi-soft", &dist(tmp.path(), "soft-pkg", "1.0")));
    let status = expect(Method::GET, "/blobstores/soft-store/quota-status", None, 200);
    assert_eq!(status["isViolation"], json!(true), "{status}");
    assert!(status["message"].as_str().unwrap().contains("over its soft quota"), "{status}");
    let check = expect(Method::GET, "/status/check", None, 200);
    assert_eq!(check["Blob store soft-store"]["healthy"], json!(false), "{check}");
    assert_eq!(check["Blob store soft-store"]["softQuotaViolation"], json!(true), "{check}");
    assert_eq!(check["Blob store default"]["healthy"], json!(true), "{check}");
    // A warning, not a refusal.
    ok(twine("pypi-soft", &dist(tmp.path(), "soft-pkg", "1.1")));
    assert_eq!(store_entry("soft-store")["softQuota"], json!({"type": "spaceUsedQuota", "limit": 1000}));

    // Space remaining: more than any disk has left is a violation, one byte is not.
    expect(
        Method::PUT,
        "/blobstores/file/soft-store",
        Some(json!({"path": "soft-store", "softQuota": {"type": "spaceRemainingQuota", "limit": 1u64 << 62}})),
        204,
    );
    assert_eq!(expect(Method::GET, "/blobstores/soft-store/quota-status", None, 200)["isViolation"], json!(true));
    expect(Method::PUT, "/blobstores/file/soft-store", Some(json!({"softQuota": {"type": "spaceRemainingQuota", "limit": 1}})), 204);
    assert_eq!(expect(Method::GET, "/blobstores/soft-store/quota-status", None, 200)["isViolation"], json!(false));
    expect(Method::PUT, "/blobstores/file/soft-store", Some(json!({"softQuota": null})), 204);
    assert!(store_entry("soft-store")["softQuota"].is_null());
    assert_eq!(expect(Method::GET, "/status/check", None, 200)["Blob store soft-store"]["healthy"], json!(true));

    // Validation names the field; the path cannot move.
    let (s, v) = api(Method::PUT, "/blobstores/file/soft-store", Some(json!({"softQuota": {"type": "spaceFreeQuota", "limit": 1}})));
    assert_eq!((s, v[0]["id"].clone()), (StatusCode::BAD_REQUEST, json!("PARAMETER softQuota.type")), "{v}");
    let (s, v) = api(Method::PUT, "/blobstores/file/soft-store", Some(json!({"path": "elsewhere", "softQuota": null})));
    assert_eq!((s, v[0]["id"].clone()), (StatusCode::BAD_REQUEST, json!("PARAMETER path")), "{v}");
    assert_eq!(api(Method::GET, "/blobstores/nope/quota-status", None).0, StatusCode::NOT_FOUND);
}

// ---- blob store deletion -----------------------------------------------------------------------

#[test]
fn deleting_a_blob_store_is_refused_while_used_and_then_removes_its_files() {
    create_store("doomed", json!({}));
    create_repo("docker", "hosted", json!({"name": "docker-doomed", "storage": {"blobStoreName": "doomed"}, "docker": {}}));
    let tmp = tempfile::tempdir().unwrap();
    let ((a, _), _) = two_images(tmp.path(), 31);
    ok(push(&a, "1", &format!("{}:1", docker_ref("docker-doomed", "app"))));
    let dir = server().data_dir().join("blobs/doomed");
    assert!(!blobs_on_disk(&dir).is_empty());
    assert_eq!(walk_records("doomed").len(), 1, "a new store is recorded as walked");

    let (status, v) = api(Method::DELETE, "/blobstores/doomed", None);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v[0]["message"].as_str().unwrap().contains("docker-doomed"), "the error names the repository: {v}");
    assert!(!blobs_on_disk(&dir).is_empty(), "nothing removed");

    // Stores never share a directory (so deleting one can remove its own).
    for (path, why) in [("doomed/inner", "doomed"), (".", "path"), ("a/../doomed", "path")] {
        let (s, v) = api(Method::POST, "/blobstores/file", Some(json!({"name": "overlap", "path": path})));
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v[0]["message"].as_str().unwrap().contains(why), "{path}: {v}");
    }

    expect(Method::DELETE, "/repositories/docker-doomed", None, 204);
    expect(Method::DELETE, "/blobstores/doomed", None, 204);
    assert!(!dir.exists(), "the store's directory is gone");
    assert_eq!(walk_records("doomed"), Vec::<String>::new(), "the store's settings go with it");
    assert!(server().data_dir().join("blobs/default/blobs").exists(), "other stores keep theirs");
    let names: Vec<Value> = expect(Method::GET, "/blobstores", None, 200).as_array().unwrap().iter().map(|s| s["name"].clone()).collect();
    assert!(!names.contains(&json!("doomed")), "{names:?}");
    assert_eq!(api(Method::DELETE, "/blobstores/doomed", None).0, StatusCode::NOT_FOUND);
}

/// The settings that record when a store was last walked for unknown objects (GC).
fn walk_records(store: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Key {
        #[diesel(sql_type = diesel::sql_types::Text)]
        key: String,
    }
    let db = wharf::db::Db::open(&server().database_url(), 2).unwrap();
    let keys: Vec<Key> = db.run_sync(|c| Ok(diesel::RunQueryDsl::load(diesel::sql_query("SELECT key FROM settings"), c)?)).unwrap();
    keys.into_iter().map(|k| k.key).filter(|k| k.starts_with(&format!("gc.scanned:{store}:"))).collect()
}

/// A repository created on a store while the store is being deleted: one of them wins, and a
/// repository never ends up on a store that is gone.
#[test]
fn a_blob_store_delete_racing_a_repository_create_never_strands_the_repository() {
    for i in 0..12 {
        let store = format!("race-{i}");
        let repo = format!("pypi-race-{i}");
        create_store(&store, json!({}));
        let (s2, r2) = (store.clone(), repo.clone());
        let creating = std::thread::spawn(move || api(Method::POST, "/repositories/pypi/hosted", Some(json!({"name": r2, "storage": {"blobStoreName": s2}}))));
        let deleting = api(Method::DELETE, &format!("/blobstores/{store}"), None);
        let created = creating.join().unwrap();
        let store_exists = api(Method::GET, &format!("/blobstores/file/{store}"), None).0 == StatusCode::OK;
        let repo_exists = api(Method::GET, &format!("/repositories/{repo}"), None).0 == StatusCode::OK;
        match (created.0.as_u16(), deleting.0.as_u16()) {
            (201, 400) => assert!(store_exists && repo_exists, "{created:?} {deleting:?}"),
            (400, 204) => {
                assert!(!store_exists && !repo_exists, "{created:?} {deleting:?}");
                assert!(created.1[0]["message"].as_str().unwrap().contains("does not exist"), "{created:?}");
                assert!(!server().data_dir().join("blobs").join(&store).exists());
            }
            other => panic!("unexpected outcome {other:?}: {created:?} {deleting:?}"),
        }
        if repo_exists {
            expect(Method::DELETE, &format!("/repositories/{repo}"), None, 204);
            expect(Method::DELETE, &format!("/blobstores/{store}"), None, 204);
        }
    }
}

/// A node that deleted a store and died before it removed the files: the name and the directory
/// stay taken (the admin API refuses to create a store there) until a node takes the removal
/// over (at its start, or once the dead node's claim ran out) and finishes it.
#[test]
fn a_blob_store_removal_cut_short_keeps_its_name_and_directory_until_a_node_finishes_it() {
    use wharf::lifecycle::store_removal::{self, Deletion};
    let mut node = TestServer::start();
    let post = |node: &TestServer, body: Value| {
        let res = node.admin().request(Method::POST, "/service/rest/v1/blobstores/file").json(&body).send().unwrap();
        (res.status(), res.text().unwrap_or_default())
    };
    assert_eq!(post(&node, json!({"name": "cut", "path": "cut"})).0, StatusCode::NO_CONTENT);
    let dir = node.data_dir().join("blobs/cut");
    std::fs::create_dir_all(dir.join("blobs/aa")).unwrap();
    std::fs::write(dir.join("blobs/aa/leftover"), b"bytes").unwrap();

    // What the dead node's delete committed.
    let db = wharf::db::Db::open(&node.database_url(), 2).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let deleted = rt.block_on(db.write(|c| store_removal::delete_store(c, "cut", "dead-node"))).unwrap();
    assert!(matches!(deleted, Deletion::Deleted(..)));

    for (body, field) in [(json!({"name": "cut", "path": "cut"}), "name"), (json!({"name": "cut-again", "path": "cut/inner"}), "path")] {
        let (status, text) = post(&node, body.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["id"], json!(format!("PARAMETER {field}")), "{body}: {v}");
        assert!(v[0]["message"].as_str().unwrap().contains("still being removed"), "{body}: {v}");
    }
    assert!(dir.join("blobs/aa/leftover").exists(), "nothing was removed while the claim held");

    // The claim ran out; a node starts and finishes the removal.
    rt.block_on(db.write(|c| Ok(diesel::RunQueryDsl::execute(diesel::sql_query("UPDATE blob_store_removals SET claimed_until = 0"), c)?))).unwrap();
    node.kill();
    node.spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while dir.exists() {
        assert!(std::time::Instant::now() < deadline, "the removal was not finished");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, text) = post(&node, json!({"name": "cut", "path": "cut"}));
        if status == StatusCode::NO_CONTENT {
            break;
        }
        // The files go before the reservation does.
        assert!(text.contains("still being removed") && std::time::Instant::now() < deadline, "{status}: {text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(dir.join("blobs").is_dir(), "the new store has its directory");
}
