//! A repository's health check (`/service/rest/v1/repositories/{name}/health-check`), with the
//! real clients: content uploaded with twine and pushed with skopeo is all healthy; then one
//! blob's bytes are overwritten and another's file deleted on disk, and the next check names
//! exactly those two assets with the right problem each, and changes nothing. Enabling and
//! disabling are the administrators', audited, refused while frozen; the check itself runs
//! frozen. A proxy's report says its upstream does not answer. On SQLite, and on PostgreSQL
//! with `WHARF_TEST_DATABASE_URL`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{oci, TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PYPI: &str = "pypi-checked";
const DOCKER: &str = "docker-checked";

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    // Manual runs only: a scheduled run must not land between the test's steps.
    S.get_or_init(|| TestServer::start_with_env(&[("WHARF_HEALTH_CHECK__SCHEDULE", "")]))
}

fn api(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server().admin().json(method, path, body)
}

fn as_user(user: &str, password: &str, method: Method, path: &str) -> StatusCode {
    common::client().request(method, server().url(path)).basic_auth(user, Some(password)).send().unwrap().status()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn health_path(repo: &str) -> String {
    format!("/service/rest/v1/repositories/{repo}/health-check")
}

/// Where the default file store keeps a blob.
fn blob_file(digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    server().data_dir().join("blobs/default/blobs/sha256").join(&hex[..2]).join(hex)
}

/// A wheel (with a few MiB of payload, so that it is read in many chunks) and an sdist.
fn dist(dir: &Path) -> (PathBuf, PathBuf) {
    common::pypi::dist_with_payload(dir, "checked", "1.0", &[], 3_000_000)
}

fn twine(files: &[&Path]) {
    common::pypi::uploaded(common::pypi::twine(&format!("{}/repository/{PYPI}/", server().base), "admin", ADMIN_PASSWORD, files));
}

fn skopeo_push(layout: &Path, tag: &str) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dest = format!("docker://{}/{DOCKER}/app:{tag}", server().addr);
    let creds = format!("admin:{ADMIN_PASSWORD}");
    ok(Command::new("skopeo")
        .args(["copy", "--retry-times", "0", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &dest])
        .output()
        .expect("skopeo is installed (the test command installs it)"));
}

/// Waits for a report of `repo` newer than `after` (its `finishedAt`), and returns the state.
fn report_after(repo: &str, after: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, v) = api(Method::GET, &health_path(repo), None);
        assert_eq!(status, StatusCode::OK, "{v}");
        if !v["report"].is_null() && v["report"]["finishedAt"] != *after {
            return v;
        }
        assert!(Instant::now() < deadline, "no new report of {repo}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every asset of `repo` that names a blob, as (path, sha256).
fn assets(repo: &str) -> Vec<(String, String)> {
    let (status, v) = api(Method::GET, &format!("/service/rest/v1/assets?repository={repo}"), None);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["continuationToken"].is_null(), "one page: {v}");
    v["items"].as_array().unwrap().iter().filter_map(|a| Some((a["path"].as_str()?.to_string(), a["checksum"]["sha256"].as_str()?.to_string()))).collect()
}

fn create(format: &str) {
    let name = if format == "pypi" { PYPI } else { DOCKER };
    let mut body = json!({"name": name, "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}});
    if format == "docker" {
        body["docker"] = json!({"forceBasicAuth": true});
    }
    let (status, v) = api(Method::POST, &format!("/service/rest/v1/repositories/{format}/hosted"), Some(body));
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

#[test]
fn a_health_check_names_exactly_the_damaged_blobs_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    create("pypi");
    create("docker");
    let (wheel, sdist) = dist(&tmp.path().join("dist"));
    twine(&[&wheel, &sdist]);
    let layout = tmp.path().join("layout");
    oci::image(&layout, "1.0", &["amd64"], 7, 600_000);
    skopeo_push(&layout, "1.0");

    // Not enabled, never run.
    let (status, v) = api(Method::GET, &health_path(PYPI), None);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["enabled"].clone(), v["report"].clone()), (json!(false), Value::Null), "{v}");

    // Enabling starts a first check; all healthy.
    for repo in [PYPI, DOCKER] {
        let (status, v) = api(Method::POST, &health_path(repo), None);
        assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    }
    let wheel_bytes = std::fs::read(&wheel).unwrap();
    let sdist_bytes = std::fs::read(&sdist).unwrap();
    let pypi_assets = assets(PYPI);
    for repo in [PYPI, DOCKER] {
        let v = report_after(repo, &Value::Null);
        let r = &v["report"];
        assert_eq!(v["enabled"], json!(true), "{v}");
        assert_eq!(v["changedBy"], json!("admin"), "{v}");
        assert_eq!(r["ok"], json!(true), "{v}");
        assert_eq!(r["complete"], json!(true), "{v}");
        assert!(r["assetsChecked"].as_u64().unwrap() >= 2, "{v}");
        assert_eq!(r["healthy"], r["assetsChecked"], "{v}");
        assert_eq!((r["missingBlob"].as_u64(), r["digestMismatch"].as_u64(), r["unreadable"].as_u64()), (Some(0), Some(0), Some(0)), "{v}");
        assert_eq!(r["problems"], json!([]), "{v}");
        assert!(r["durationMs"].as_i64().unwrap() >= 0 && r["startedAt"].is_string(), "{v}");
    }
    let first = api(Method::GET, &health_path(PYPI), None).1;
    let r = &first["report"];
    // The assets API leaves out the wheels' PEP 658 metadata, an asset with a blob of its own.
    assert_eq!(r["assetsChecked"].as_u64().unwrap(), pypi_assets.len() as u64 + 1, "every asset with a blob: {pypi_assets:?} {first}");
    assert!(r["bytesRead"].as_u64().unwrap() >= (wheel_bytes.len() + sdist_bytes.len()) as u64, "{first}");

    // Damage the store: the wheel's bytes changed in place (same length), the sdist's gone.
    let (wheel_digest, sdist_digest) = (sha256_of(&wheel_bytes), sha256_of(&sdist_bytes));
    let wheel_path = &pypi_assets.iter().find(|(_, d)| *d == wheel_digest[7..]).expect("the wheel is an asset").0;
    let sdist_path = &pypi_assets.iter().find(|(_, d)| *d == sdist_digest[7..]).expect("the sdist is an asset").0;
    let mut damaged = wheel_bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(blob_file(&wheel_digest), &damaged).unwrap();
    std::fs::remove_file(blob_file(&sdist_digest)).unwrap();

    // A run by hand through the tasks API checks every enabled repository.
    let (status, v) = api(Method::POST, "/service/rest/v1/tasks/repository-health-check/run", None);
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let v = report_after(PYPI, &first["report"]["finishedAt"]);
    let r = &v["report"];
    assert_eq!(r["ok"], json!(false), "{v}");
    assert_eq!((r["missingBlob"].as_u64(), r["digestMismatch"].as_u64(), r["unreadable"].as_u64()), (Some(1), Some(1), Some(0)), "{v}");
    assert_eq!(r["healthy"].as_u64().unwrap(), first["report"]["assetsChecked"].as_u64().unwrap() - 2, "{v}");
    let mut problems: Vec<(String, String, String)> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_string(), p["blobDigest"].as_str().unwrap().to_string(), p["problem"].as_str().unwrap().to_string()))
        .collect();
    problems.sort();
    let mut expected =
        vec![(wheel_path.clone(), wheel_digest.clone(), "digestMismatch".to_string()), (sdist_path.clone(), sdist_digest.clone(), "missingBlob".to_string())];
    expected.sort();
    assert_eq!(problems, expected, "{v}");
    let mismatch = r["problems"].as_array().unwrap().iter().find(|p| p["problem"] == "digestMismatch").unwrap();
    assert!(mismatch["detail"].as_str().unwrap().contains(&sha256_of(&damaged)), "{mismatch}");
    // The other repository's content is untouched and still healthy.
    let docker = api(Method::GET, &health_path(DOCKER), None).1;
    assert_eq!(docker["report"]["ok"], json!(true), "{docker}");

    // Nothing was repaired or removed.
    assert_eq!(std::fs::read(blob_file(&wheel_digest)).unwrap(), damaged);
    assert!(!blob_file(&sdist_digest).exists());
    assert_eq!(assets(PYPI), pypi_assets);

    // The task's history has the run, with every enabled repository in its report.
    let (_, runs) = api(Method::GET, "/service/rest/v1/tasks/repository-health-check/runs", None);
    let newest = &runs["items"][0];
    assert_eq!(newest["result"], json!("OK"), "{runs}");
    let checked: Vec<&str> = newest["report"]["repositories"].as_array().unwrap().iter().map(|r| r["repository"].as_str().unwrap()).collect();
    assert_eq!(checked, vec![DOCKER, PYPI], "{runs}");

    // Rights: administrators only; unknown repositories are 404.
    let (status, v) =
        api(Method::POST, "/service/rest/v1/security/roles", Some(json!({"id": "reader", "privileges": [format!("nx-repository-view-pypi-{PYPI}-read")]})));
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) =
        api(Method::POST, "/service/rest/v1/security/users", Some(json!({"userId": "reader", "password": "reader-password", "roles": ["reader"]})));
    assert_eq!(status, StatusCode::OK, "{v}");
    for method in [Method::GET, Method::POST, Method::DELETE] {
        assert_eq!(as_user("reader", "reader-password", method.clone(), &health_path(PYPI)), StatusCode::FORBIDDEN, "{method}");
        assert_eq!(common::client().request(method.clone(), server().url(&health_path(PYPI))).send().unwrap().status(), StatusCode::UNAUTHORIZED, "{method}");
        let (status, v) = api(method.clone(), &health_path("no-such-repository"), None);
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {v}");
    }

    // Read-only mode: enabling and disabling are writes and refused; the check runs.
    let (status, v) = api(Method::POST, "/service/rest/v1/read-only/freeze", Some(json!({"reason": "backup"})));
    assert_eq!(status, StatusCode::OK, "{v}");
    let frozen = {
        let (status, v) = api(Method::DELETE, &health_path(PYPI), None);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        let (status, v) = api(Method::POST, "/service/rest/v1/tasks/repository-health-check/run", None);
        assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
        report_after(PYPI, &r["finishedAt"])
    };
    let (status, v) = api(Method::POST, "/service/rest/v1/read-only/release", None);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(frozen["report"]["digestMismatch"], json!(1), "{frozen}");

    // Disabled: the last report stays; audited both ways.
    let (status, v) = api(Method::DELETE, &health_path(PYPI), None);
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let (_, v) = api(Method::GET, &health_path(PYPI), None);
    assert_eq!(v["enabled"], json!(false), "{v}");
    assert_eq!(v["report"]["digestMismatch"], json!(1), "{v}");
    let (_, audit) = api(Method::GET, "/service/rest/v1/audit?limit=1000", None);
    let text = audit.to_string();
    assert!(text.contains("repository.health-check.enable") && text.contains("repository.health-check.disable"), "{audit}");

    // A proxy whose upstream does not answer: its report says so, and is not ok.
    let remote = format!("http://127.0.0.1:{}/", common::free_port());
    let body = json!({
        "name": "pypi-unreachable", "online": true,
        "storage": {"blobStoreName": "default"},
        "proxy": {"remoteUrl": remote, "contentMaxAge": 1440, "metadataMaxAge": 1440},
        "negativeCache": {"enabled": false, "timeToLive": 1440},
        "httpClient": {"blocked": false, "autoBlock": false, "connection": {"timeout": 2, "connectTimeout": 1, "retries": 0}},
    });
    let (status, v) = api(Method::POST, "/service/rest/v1/repositories/pypi/proxy", Some(body));
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let r = common::client().get(server().url("/repository/pypi-unreachable/simple/anything/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let (status, v) = api(Method::POST, &health_path("pypi-unreachable"), None);
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let v = report_after("pypi-unreachable", &Value::Null);
    let r = &v["report"];
    assert_eq!((r["upstream"]["state"].as_str(), r["ok"].as_bool(), r["assetsChecked"].as_u64()), (Some("failing"), Some(false), Some(0)), "{v}");
}
