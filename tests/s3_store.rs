//! S3 blob stores against a real S3 server (SeaweedFS, started by tests/run.sh): the REST API
//! checks a store before saving it and never shows its secrets; Docker pushes and pulls through
//! it with skopeo; a chunked upload started on one node is finished on another that shares
//! nothing with it but the database and the bucket; presigned redirects; garbage collection
//! deletes the objects.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{oci, s3, TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest as _;

const GC_ENV: &[(&str, &str)] = &[("WHARF_UPLOADS__TTL_SECS", "1"), ("WHARF_GC__GRACE_SECS", "1")];

fn gateway() -> Option<s3::S3Env> {
    let env = s3::env();
    if env.is_none() {
        eprintln!("no S3 gateway (WHARF_TEST_S3_*): skipped; tests/run.sh starts one");
    }
    env
}

fn api(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server.admin().json(method, path, body)
}

fn store_body(s3: &s3::S3Env, name: &str, prefix: &str, secret: &str) -> Value {
    json!({
        "name": name,
        "bucketConfiguration": {
            "bucket": {"region": "us-east-1", "name": s3.bucket, "prefix": prefix, "expiration": -1},
            "bucketSecurity": {"accessKeyId": s3.access_key, "secretAccessKey": secret},
            "advancedBucketConnection": {"endpoint": s3.endpoint, "forcePathStyle": true},
        }
    })
}

fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// An S3 store and a Docker hosted repository on it.
fn docker_on_s3(server: &TestServer, s3: &s3::S3Env, presigned: bool) -> (String, String) {
    let (store, prefix) = (unique("s3"), unique("prefix"));
    let mut body = store_body(s3, &store, &prefix, &s3.secret_key);
    body["bucketConfiguration"]["preSignedUrlEnabled"] = json!(presigned);
    let (st, v) = api(server, Method::POST, "/service/rest/v1/blobstores/s3", Some(body));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let repo = unique("docker");
    server.admin().create_docker_hosted(json!({
        "name": repo, "online": true,
        "storage": {"blobStoreName": store, "strictContentTypeValidation": true, "writePolicy": "allow"},
        "docker": {"v1Enabled": false, "forceBasicAuth": true},
    }));
    (repo, prefix)
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed (the test command installs it)")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes an image in `dir/img` and pushes it with skopeo as `<repo>/app:v1`.
fn push_image(server: &TestServer, repo: &str, dir: &Path, seed: u64, layer_size: usize) -> oci::Layout {
    let layout = oci::image(&dir.join("img"), "v1", &["amd64"], seed, layer_size);
    ok(skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds(),
        &format!("oci:{}:v1", dir.join("img").display()),
        &format!("docker://{}/{repo}/app:v1", server.addr),
    ]));
    layout
}

/// Pulls `<repo>/app:v1` with skopeo into the OCI layout `dest`.
fn pull_image(server: &TestServer, repo: &str, dest: &Path) {
    ok(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds(),
        &format!("docker://{}/{repo}/app:v1", server.addr),
        &format!("oci:{}:v1", dest.display()),
    ]));
}

fn creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn s3_stores_are_checked_before_they_are_saved_and_never_show_their_secrets() {
    let Some(s3) = gateway() else { return };
    let server = TestServer::start();
    let name = unique("s3");
    let prefix = unique("p");

    // A wrong secret: refused, naming the bucket and the endpoint; nothing saved.
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(store_body(&s3, &name, &prefix, "not-the-secret")));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let text = v.to_string();
    assert!(text.contains(&s3.bucket) && text.contains(&s3.endpoint), "{text}");
    assert_eq!(api(&server, Method::GET, &format!("/service/rest/v1/blobstores/s3/{name}"), None).0, StatusCode::NOT_FOUND);
    // Settings wharf cannot honour are refused by name.
    let mut body = store_body(&s3, &name, &prefix, &s3.secret_key);
    body["bucketConfiguration"]["bucket"]["expiration"] = json!(3);
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(body));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("bucketConfiguration.bucket.expiration"), "{v}");

    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(store_body(&s3, &name, &prefix, &s3.secret_key)));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, shown) = api(&server, Method::GET, &format!("/service/rest/v1/blobstores/s3/{name}"), None);
    assert_eq!(st, StatusCode::OK);
    assert_eq!(shown["bucketConfiguration"]["bucketSecurity"]["secretAccessKey"], "#~NXRM~PLACEHOLDER~PASSWORD~#", "{shown}");
    assert!(!shown.to_string().contains(&s3.secret_key), "{shown}");
    // The secret is sealed in the database too.
    let stored = if server.is_postgres() {
        Command::new("psql").arg(server.database_url()).args(["-tAc", "SELECT attributes FROM blob_stores"]).output()
    } else {
        Command::new("sqlite3").arg(server.data_dir().join("wharf.db")).arg("SELECT attributes FROM blob_stores").output()
    };
    let stored = String::from_utf8_lossy(&stored.expect("psql or sqlite3").stdout).into_owned();
    assert!(stored.contains(&s3.access_key), "the query read the stores: {stored}");
    assert!(!stored.contains(&s3.secret_key), "the secret is stored in the clear: {stored}");
    // What GET shows goes back unchanged (the placeholder keeps the secret).
    let (st, v) = api(&server, Method::PUT, &format!("/service/rest/v1/blobstores/s3/{name}"), Some(shown.clone()));
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    // The bucket and prefix hold the content: they do not change.
    let mut moved = shown.clone();
    moved["bucketConfiguration"]["bucket"]["prefix"] = json!("elsewhere");
    let (st, v) = api(&server, Method::PUT, &format!("/service/rest/v1/blobstores/s3/{name}"), Some(moved));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Another store over the same objects is refused.
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(store_body(&s3, &unique("s3"), &prefix, &s3.secret_key)));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains(&name), "{v}");
    // Also when the endpoint or the prefix is spelled otherwise: the objects would be the same.
    let mut respelled = store_body(&s3, &unique("s3"), &format!("/{prefix}//"), &s3.secret_key);
    respelled["bucketConfiguration"]["advancedBucketConnection"]["endpoint"] = json!(format!("{}/", s3.endpoint));
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(respelled));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains(&name), "{v}");
    let mut upper = store_body(&s3, &unique("s3"), &format!("{prefix}/inner"), &s3.secret_key);
    upper["bucketConfiguration"]["advancedBucketConnection"]["endpoint"] = json!(s3.endpoint.to_uppercase().replacen("HTTP://", "http://", 1));
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(upper));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A soft quota on the space left cannot act on a bucket: refused, naming the field.
    let mut remaining = store_body(&s3, &unique("s3"), &unique("p"), &s3.secret_key);
    remaining["softQuota"] = json!({"type": "spaceRemainingQuota", "limit": 1000});
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(remaining));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("softQuota.type"), "{v}");
    // The store is listed, and a file store's endpoint does not take it.
    let (_, list) = api(&server, Method::GET, "/service/rest/v1/blobstores", None);
    let listed = list.as_array().unwrap().iter().find(|s| s["name"] == name.as_str()).cloned();
    assert_eq!(listed.as_ref().map(|s| s["type"].clone()), Some(json!("S3")), "{list}");
    assert_eq!(api(&server, Method::GET, &format!("/service/rest/v1/blobstores/file/{name}"), None).0, StatusCode::BAD_REQUEST);
}

#[test]
fn images_push_and_pull_through_s3_and_an_upload_begun_on_one_node_ends_on_another() {
    let Some(s3) = gateway() else { return };
    let a = TestServer::start();
    let (repo, prefix) = docker_on_s3(&a, &s3, false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = push_image(&a, &repo, tmp.path(), 41, 3 << 20);
    for blob in &layout.blobs {
        let hex = blob.strip_prefix("sha256:").unwrap();
        let key = format!("{prefix}/blobs/sha256/{}/{hex}", &hex[..2]);
        assert_eq!(s3.keys(&key), vec![key.clone()], "{blob} is an object in the bucket");
    }

    // Node B shares only the database and the bucket: its own data directory, no local file of A's.
    let key = std::fs::read_to_string(a.data_dir().join("secret.key")).unwrap();
    let b = a.node_on_own_data_dir(&[("WHARF_SECRET_KEY", key.trim())]);
    let pulled = tmp.path().join("pulled");
    pull_image(&b, &repo, &pulled);
    for blob in &layout.blobs {
        let hex = blob.strip_prefix("sha256:").unwrap();
        let got = std::fs::read(pulled.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(sha256(&got), *blob, "pulled bytes hash to their digest");
    }

    // A chunked upload: started and fed on A, continued and finished on B.
    let http = common::client();
    let part1: Vec<u8> = oci::noise(7, 6 << 20);
    let part2: Vec<u8> = oci::noise(9, 1 << 20);
    let whole = [part1.clone(), part2.clone()].concat();
    let digest = sha256(&whole);
    let r = http.post(a.url(&format!("/v2/{repo}/chunked/blobs/uploads/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let path = location.trim_start_matches(&a.base).to_string();
    let patch = |server: &TestServer, from: usize, bytes: &[u8]| {
        http.patch(server.url(&path))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{from}-{}", from + bytes.len() - 1))
            .body(bytes.to_vec())
            .send()
            .unwrap()
    };
    assert_eq!(patch(&a, 0, &part1).status(), StatusCode::ACCEPTED);
    assert_eq!(patch(&b, part1.len(), &part2).status(), StatusCode::ACCEPTED);
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = http.put(b.url(&format!("{path}{sep}digest={digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let got = http.get(a.url(&format!("/v2/{repo}/chunked/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(sha256(&got.bytes().unwrap()), digest);
    // A range comes from the object's range.
    let r = http
        .get(a.url(&format!("/v2/{repo}/chunked/blobs/{digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Range", "bytes=6291450-6291460")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().as_ref(), &whole[6_291_450..=6_291_460]);
    // The upload's parts are gone from the bucket once it is a blob.
    assert!(s3.keys(&format!("{prefix}/uploads/")).is_empty(), "{:?}", s3.keys(&format!("{prefix}/uploads/")));

    // A wrong digest publishes nothing.
    let r = http
        .post(a.url(&format!("/v2/{repo}/chunked/blobs/uploads/?digest={}", sha256(b"other"))))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(b"bytes".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let hex = sha256(b"other");
    let key = format!("{prefix}/blobs/sha256/{}/{}", &hex[7..9], &hex[7..]);
    assert!(s3.keys(&key).is_empty(), "an unverified object became visible");
}

/// Feeds a request body slowly: `pieces` of `size` bytes, `pause` apart.
struct Slow {
    bytes: Vec<u8>,
    at: usize,
    piece: usize,
    pause: Duration,
}

impl std::io::Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.bytes.len() {
            return Ok(0);
        }
        if self.at > 0 && self.at.is_multiple_of(self.piece) {
            std::thread::sleep(self.pause);
        }
        let end = (self.at + buf.len()).min(self.bytes.len()).min((self.at / self.piece + 1) * self.piece);
        let n = end - self.at;
        buf[..n].copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(n)
    }
}

/// A node killed with SIGKILL in the middle of a push costs the client a retry on the other
/// node, and nothing it had acknowledged is lost: its images pull from the other node, and an
/// upload whose first chunk it acknowledged is continued and finished there.
#[test]
fn a_node_killed_mid_push_costs_a_retry_and_loses_nothing_acknowledged() {
    let Some(s3) = gateway() else { return };
    let mut a = TestServer::start();
    let (repo, prefix) = docker_on_s3(&a, &s3, false);
    let key = std::fs::read_to_string(a.data_dir().join("secret.key")).unwrap();
    let b = a.node_on_own_data_dir(&[("WHARF_SECRET_KEY", key.trim())]);
    let tmp = tempfile::tempdir().unwrap();
    let http = common::client();

    // Acknowledged by A: an image, and the first chunk of an upload.
    let first = push_image(&a, &repo, &tmp.path().join("first"), 61, 1 << 20);
    let part1 = oci::noise(63, 3 << 20);
    let part2 = oci::noise(65, 1 << 20);
    let whole = [part1.clone(), part2.clone()].concat();
    let r = http.post(a.url(&format!("/v2/{repo}/chunked/blobs/uploads/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let path = r.headers()["location"].to_str().unwrap().trim_start_matches(&a.base).to_string();
    let r = http
        .patch(a.url(&path))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("0-{}", part1.len() - 1))
        .body(part1.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // In flight when A dies: a 24 MiB blob streamed to A a MiB every 100 ms.
    let big = oci::noise(67, 24 << 20);
    let big_digest = sha256(&big);
    let url = a.url(&format!("/v2/{repo}/big/blobs/uploads/?digest={big_digest}"));
    let body = Slow { bytes: big.clone(), at: 0, piece: 1 << 20, pause: Duration::from_millis(100) };
    let sender = std::thread::spawn(move || {
        Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
            .post(url)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::blocking::Body::sized(body, (24 << 20) as u64))
            .send()
            .map(|r| r.status())
    });
    std::thread::sleep(Duration::from_millis(800));
    a.kill();
    let outcome = sender.join().unwrap();
    assert!(!matches!(outcome, Ok(StatusCode::CREATED)), "the upload cannot have finished: {outcome:?}");
    let hex = &big_digest[7..];
    let big_key = format!("{prefix}/blobs/sha256/{}/{hex}", &hex[..2]);
    assert!(s3.keys(&big_key).is_empty(), "a blob the killed node never verified is visible");

    // The retry, on B.
    let r = http
        .post(b.url(&format!("/v2/{repo}/big/blobs/uploads/?digest={big_digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/octet-stream")
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = http.get(b.url(&format!("/v2/{repo}/big/blobs/{big_digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(sha256(&got.bytes().unwrap()), big_digest);
    // A whole image pushed to B after the crash.
    let second = push_image(&b, &repo, &tmp.path().join("second"), 69, 1 << 20);

    // What A acknowledged: the upload continues on B from where A acknowledged it...
    let r = http
        .patch(b.url(&path))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("{}-{}", part1.len(), whole.len() - 1))
        .body(part2)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().unwrap_or_default());
    let digest = sha256(&whole);
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = http.put(b.url(&format!("{path}{sep}digest={digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    // ... and its image's blobs are all there (the tag now names the second image, pulled below).
    for blob in first.blobs.iter().chain(&second.blobs) {
        let r = http.get(b.url(&format!("/v2/{repo}/app/blobs/{blob}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{blob}");
        assert_eq!(sha256(&r.bytes().unwrap()), *blob);
    }
    let pulled = tmp.path().join("pulled");
    pull_image(&b, &repo, &pulled);
    assert!(pulled.join("index.json").exists());
}

#[test]
fn with_presigned_urls_blob_downloads_go_to_the_bucket() {
    let Some(s3) = gateway() else { return };
    let server = TestServer::start();
    let (repo, _) = docker_on_s3(&server, &s3, true);
    let tmp = tempfile::tempdir().unwrap();
    let layout = push_image(&server, &repo, tmp.path(), 43, 1 << 20);
    let no_redirects = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let layer = &layout.blobs[0];
    let r = no_redirects.get(server.url(&format!("/v2/{repo}/app/blobs/{layer}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&s3.endpoint) && to.contains("X-Amz-Signature="), "{to}");
    // The URL alone fetches the bytes (no credentials of wharf's go along).
    let bytes = common::client().get(&to).send().unwrap().bytes().unwrap();
    assert_eq!(sha256(&bytes), *layer);
    // Without credentials there is no redirect, only the challenge.
    let r = no_redirects.get(server.url(&format!("/v2/{repo}/app/blobs/{layer}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // skopeo follows it.
    let pulled = tmp.path().join("pulled");
    pull_image(&server, &repo, &pulled);
    assert!(Path::new(&pulled.join("index.json")).exists());
}

#[test]
fn garbage_collection_deletes_the_objects_nothing_names() {
    let Some(s3) = gateway() else { return };
    let server = TestServer::start_with_env(GC_ENV);
    let (repo, prefix) = docker_on_s3(&server, &s3, false);
    let http = common::client();
    // Three blobs; the links of two go. A pass deletes a batch in one DeleteObjects request.
    let keys: Vec<(String, String)> = (0..3u64)
        .map(|i| {
            // Odd seeds: `noise` sets the lowest bit, so 12 and 13 give the same bytes.
            let blob = oci::noise(21 + 2 * i, 100_000);
            let digest = sha256(&blob);
            let r = http
                .post(server.url(&format!("/v2/{repo}/junk/blobs/uploads/?digest={digest}")))
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .body(blob)
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let hex = &digest[7..];
            let key = format!("{prefix}/blobs/sha256/{}/{hex}", &hex[..2]);
            assert_eq!(s3.keys(&key), vec![key.clone()]);
            (digest, key)
        })
        .collect();
    for (digest, _) in &keys[..2] {
        let r = http.delete(server.url(&format!("/v2/{repo}/junk/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut reports = Vec::new();
    loop {
        let (st, report) = api(&server, Method::POST, &format!("/service/rest/v1/blobstores/{}/compact", store_of(&server, &repo)), None);
        assert_eq!(st, StatusCode::OK, "{report}");
        reports.push(report.clone());
        if keys[..2].iter().all(|(_, key)| s3.keys(key).is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the objects were never deleted: {report}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Still linked: kept, and it reads back.
    assert_eq!(s3.keys(&keys[2].1), vec![keys[2].1.clone()], "{reports:?} {keys:?}");
    let r = http.get(server.url(&format!("/v2/{repo}/junk/blobs/{}", keys[2].0))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().unwrap()), keys[2].0);
}

/// An HTTP/1 connection is driven by the runtime of the thread that opened it, and a pooled
/// client hands it to whichever thread asks next. A storage-lifecycle thread (on `SCHED_IDLE`,
/// hardly running while the CPUs are busy) must not leave a request such a connection: blob
/// GETs on one waited for the lifecycle (docs/benchmarks.md, "S3 connections and the
/// lifecycle"). Here the lifecycle's thread stops running altogether after one call (its runtime
/// is kept and never driven again), the sharpest form of that wait: the requests' calls after it
/// must still answer.
#[test]
fn a_lifecycle_thread_that_stops_running_holds_up_no_request_on_its_s3_store() {
    let Some(s3) = gateway() else { return };
    let settings = wharf_format::S3Settings {
        bucket: s3.bucket.clone(),
        region: "us-east-1".into(),
        prefix: unique("threads"),
        endpoint: s3.endpoint.clone(),
        force_path_style: true,
        access_key_id: s3.access_key.clone(),
        secret_access_key: s3.secret_key.clone(),
        ..Default::default()
    };
    let scratch = tempfile::tempdir().expect("scratch");
    let store = std::sync::Arc::new(wharf_format::BlobStore::s3("threads", &settings, scratch.path()).expect("an S3 store"));
    let digest: wharf_format::Digest = format!("sha256:{}", "ab".repeat(32)).parse().expect("a digest");
    let (theirs, d) = (store.clone(), digest.clone());
    let stalled = std::thread::spawn(move || {
        wharf_format::ThreadClass::Idle.set_current();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            assert_eq!(theirs.size(&d).await.expect("the lifecycle's HEAD"), None);
            // The connection's task hands the connection back to the pool meanwhile.
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        rt
    })
    .join()
    .expect("the lifecycle thread");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    for i in 0..3 {
        let answer = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), store.size(&digest)).await });
        assert!(matches!(answer, Ok(Ok(None))), "request {i} waited for the stalled lifecycle thread's connection: {answer:?}");
    }
    drop(stalled);
}

/// SQL on the server's own database.
/// Deleting an S3 blob store removes what wharf wrote under its prefix (blobs, staging) and no
/// other object of the bucket; while a removal runs, no S3 store may be created over its
/// objects nor under its name.
#[test]
fn deleting_an_s3_store_removes_its_objects_and_only_those() {
    let Some(s3) = gateway() else { return };
    let server = TestServer::start_with_env(GC_ENV);
    let (repo, prefix) = docker_on_s3(&server, &s3, false);
    let store = store_of(&server, &repo);
    let http = common::client();
    for i in 0..3u64 {
        let blob = oci::noise(41 + 2 * i, 50_000);
        let digest = sha256(&blob);
        let r = http
            .post(server.url(&format!("/v2/{repo}/img/blobs/uploads/?digest={digest}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(blob)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // A chunked upload left open: its staged part is the store's too.
    let r = http.post(server.url(&format!("/v2/{repo}/img/blobs/uploads/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") { location } else { server.url(&location) };
    let r = http.patch(&location).basic_auth("admin", Some(ADMIN_PASSWORD)).body(vec![7u8; 10_000]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(s3.keys(&format!("{prefix}/blobs/")).len(), 3);
    assert!(!s3.keys(&format!("{prefix}/uploads/")).is_empty());
    // Not wharf's: an object beside the store's under its prefix, and a neighbour prefix.
    let notes = format!("{prefix}/notes.txt");
    let neighbour = format!("{prefix}-neighbour/blobs/sha256/aa/keep");
    s3.put(&notes, b"the admin's");
    s3.put(&neighbour, b"another tool's");

    let (st, v) = api(&server, Method::DELETE, &format!("/service/rest/v1/blobstores/{store}"), None);
    assert_eq!(st, StatusCode::BAD_REQUEST, "in use: {v}");
    let (st, v) = api(&server, Method::DELETE, &format!("/service/rest/v1/repositories/{repo}"), None);
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, v) = api(&server, Method::DELETE, &format!("/service/rest/v1/blobstores/{store}"), None);
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(s3.keys(&format!("{prefix}/blobs/")).is_empty() && s3.keys(&format!("{prefix}/uploads/")).is_empty()) {
        assert!(std::time::Instant::now() < deadline, "the store's objects were never removed: {:?}", s3.keys(&prefix));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s3.keys(&format!("{prefix}/")), vec![notes.clone()]);
    assert_eq!(s3.keys(&neighbour), vec![neighbour.clone()]);
    // The reservation ends with the removal.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.sql("SELECT count(*) FROM blob_store_removals").trim() != "0" {
        assert!(std::time::Instant::now() < deadline, "the removal row stayed");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A removal in progress (as a node that is still deleting would leave it) reserves the
    // name and the objects.
    let held = unique("prefix");
    let gone = unique("s3");
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(store_body(&s3, &gone, &held, &s3.secret_key)));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let attrs = server.sql(&format!("SELECT attributes FROM blob_stores WHERE name = '{gone}'"));
    let far = wharf_format::now_millis() + 3_600_000;
    server.sql(&format!("DELETE FROM blob_stores WHERE name = '{gone}'"));
    server.sql(
        &format!(
            "INSERT INTO blob_store_removals (name, path, trash, owner, claimed_until, created_at, kind, attributes) VALUES ('{gone}', 's3', 't', 'someone', {far}, 0, 's3', '{}')",
            attrs.trim().replace('\'', "''")
        ),
    );
    for (name, prefix, field) in
        [(gone.clone(), unique("prefix"), "name"), (unique("s3"), format!("{held}/inner"), "prefix"), (unique("s3"), held.clone(), "prefix")]
    {
        let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(store_body(&s3, &name, &prefix, &s3.secret_key)));
        assert_eq!(st, StatusCode::BAD_REQUEST, "{name} at {prefix}: {v}");
        assert!(v.to_string().contains("still being removed") && v.to_string().contains(field), "{v}");
    }
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(store_body(&s3, &unique("s3"), &unique("prefix"), &s3.secret_key)));
    assert_eq!(st, StatusCode::CREATED, "elsewhere in the bucket: {v}");
}

fn store_of(server: &TestServer, repo: &str) -> String {
    let (_, v) = api(server, Method::GET, &format!("/service/rest/v1/repositories/docker/hosted/{repo}"), None);
    v["storage"]["blobStoreName"].as_str().unwrap().to_string()
}

/// `[s3]` makes the default store a bucket; one that cannot be used stops the start with an
/// error naming it, and a usable one is healthy in the status check.
#[test]
fn the_default_store_in_s3_is_checked_at_start_and_in_the_status_check() {
    let Some(s3) = gateway() else { return };
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let server = TestServer::unstarted(&[
        ("WHARF_S3__ENDPOINT", dead.as_str()),
        ("WHARF_S3__BUCKET", "nowhere"),
        ("WHARF_S3__ACCESS_KEY_ID", "k"),
        ("WHARF_S3__SECRET_ACCESS_KEY", "s"),
        ("WHARF_S3__FORCE_PATH_STYLE", "true"),
    ]);
    let out = server.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere") && err.contains(&dead), "{err}");

    let prefix = unique("default");
    let env = s3.server_env(&prefix);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with_env(&env);
    let (st, v) = api(&server, Method::GET, "/service/rest/v1/status/check", None);
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["Blob store default"]["healthy"], true, "{v}");
    let (_, list) = api(&server, Method::GET, "/service/rest/v1/blobstores", None);
    assert_eq!(list[0]["type"], "S3", "{list}");

    // [s3] may not move the store: with another prefix (or bucket) a node does not start, and
    // the store stays where its content is. The same prefix spelled otherwise is the same.
    for (key, value) in [("WHARF_S3__PREFIX", format!("{prefix}-moved")), ("WHARF_S3__BUCKET", "another-bucket".to_string())] {
        let moved = server.unstarted_node_on_own_data_dir(&[(key, value.as_str())]);
        with_secret_key_of(&server, &moved);
        let out = moved.command().output().unwrap();
        assert!(!out.status.success(), "{key}={value} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("s3.bucket and s3.prefix cannot move the blob store `default`") && err.contains(&prefix), "{err}");
    }
    let respelled = format!("/{prefix}//");
    let mut same = server.unstarted_node_on_own_data_dir(&[("WHARF_S3__PREFIX", respelled.as_str())]);
    with_secret_key_of(&server, &same);
    same.spawn();
    let (st, v) = api(&same, Method::GET, "/service/rest/v1/status/check", None);
    assert_eq!((st, &v["Blob store default"]["healthy"]), (StatusCode::OK, &json!(true)), "{v}");
    drop(same);
    let (_, store) = api(&server, Method::GET, "/service/rest/v1/blobstores/s3/default", None);
    assert_eq!(store["bucketConfiguration"]["bucket"]["prefix"].as_str().map(|p| p.trim_matches('/')), Some(prefix.as_str()), "{store}");
}

/// Gives `node` (on a data directory of its own) the key `server` seals secrets with, as every
/// node of a cluster shares it.
fn with_secret_key_of(server: &TestServer, node: &TestServer) {
    std::fs::create_dir_all(&node.data_dir).unwrap();
    std::fs::copy(server.data_dir().join("secret.key"), node.data_dir.join("secret.key")).unwrap();
}

/// A TCP relay in front of the S3 gateway that can go silent: it keeps accepting connections
/// and reading requests but passes nothing on either way, as a hung gateway or a black-holed
/// network path does. Without a target it is silent from the start.
struct Relay {
    url: String,
    silent: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(target: Option<String>) -> Relay {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let silent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(target.is_none()));
        let flag = silent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let upstream = target.as_ref().and_then(|t| std::net::TcpStream::connect(t).ok());
                let Some(upstream) = upstream else {
                    // Held open, never read or answered, until the test process ends.
                    std::mem::forget(client);
                    continue;
                };
                for (mut from, mut to) in [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                let _ = to.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            while flag.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Relay { url, silent }
    }

    fn go_silent(&self, silent: bool) {
        self.silent.store(silent, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn an_s3_endpoint_that_stops_answering_is_named_within_seconds() {
    let Some(s3) = gateway() else { return };
    // A node whose `default` store is on a gateway that never answers stops at start, naming
    // it, instead of hanging for the client's timeouts and retries.
    let dead = Relay::start(None);
    let server = TestServer::unstarted(&[
        ("WHARF_S3__ENDPOINT", dead.url.as_str()),
        ("WHARF_S3__BUCKET", "silent-bucket"),
        ("WHARF_S3__ACCESS_KEY_ID", "k"),
        ("WHARF_S3__SECRET_ACCESS_KEY", "s"),
        ("WHARF_S3__FORCE_PATH_STYLE", "true"),
    ]);
    let mut child = server.command().stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("a node on a silent S3 gateway still starting after 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("silent-bucket") && err.contains(&dead.url) && err.contains("no answer within"), "{err}");

    // Creating a store there is refused the same way, within the check's deadline.
    let server = TestServer::start();
    let mut body = store_body(&s3, &unique("s3"), &unique("p"), &s3.secret_key);
    body["bucketConfiguration"]["advancedBucketConnection"]["endpoint"] = json!(dead.url);
    let t = std::time::Instant::now();
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(body));
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains(&dead.url) && v.to_string().contains("no answer within"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    // A store whose gateway goes silent later shows as unhealthy in the status check, within
    // the deadline, and healthy again once it answers.
    let relay = Relay::start(Some(s3.endpoint.trim_start_matches("http://").to_string()));
    let name = unique("s3");
    let mut body = store_body(&s3, &name, &unique("p"), &s3.secret_key);
    body["bucketConfiguration"]["advancedBucketConnection"]["endpoint"] = json!(relay.url);
    let (st, v) = api(&server, Method::POST, "/service/rest/v1/blobstores/s3", Some(body));
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let check = || {
        let (st, v) = api(&server, Method::GET, "/service/rest/v1/status/check", None);
        assert_eq!(st, StatusCode::OK);
        v[format!("Blob store {name}")].clone()
    };
    assert_eq!(check()["healthy"], true);
    relay.go_silent(true);
    let t = std::time::Instant::now();
    let v = check();
    assert_eq!(v["healthy"], false, "{v}");
    assert!(v["message"].as_str().unwrap().contains("no answer within"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    relay.go_silent(false);
    assert_eq!(check()["healthy"], true);
}

#[test]
fn a_node_serves_blobs_it_read_before_from_its_own_copies_within_their_limit() {
    let Some(s3) = gateway() else { return };
    let server = TestServer::start_with_env(&[("WHARF_BLOB_CACHE__MAX_MIB", "1")]);
    let (repo, prefix) = docker_on_s3(&server, &s3, false);
    let http = common::client();
    let get = |digest: &str, range: Option<&str>| {
        let mut r = http.get(server.url(&format!("/v2/{repo}/cached/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD));
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        r.send().unwrap()
    };
    let copy = |digest: &str| server.data_dir().join("cache/blobs").join(&digest[7..9]).join(&digest[7..]);
    // Three blobs of 400 KiB: two fit in the 1 MiB of copies, three do not.
    let blobs: Vec<(String, Vec<u8>, String)> = (0..3u64)
        .map(|i| {
            let blob = oci::noise(41 + 2 * i, 400 << 10);
            let digest = sha256(&blob);
            let r = http
                .post(server.url(&format!("/v2/{repo}/cached/blobs/uploads/?digest={digest}")))
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .body(blob.clone())
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let key = format!("{prefix}/blobs/sha256/{}/{}", &digest[7..9], &digest[7..]);
            (digest, blob, key)
        })
        .collect();
    let eventually = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (a, a_bytes, a_key) = &blobs[0];
    // A range read makes no copy; a whole read does, once it is complete and verified.
    assert_eq!(get(a, Some("bytes=0-9")).status(), StatusCode::PARTIAL_CONTENT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!copy(a).exists(), "a range read is not copied");
    assert_eq!(get(a, None).bytes().unwrap().as_ref(), a_bytes.as_slice());
    eventually("the first read left a copy", &|| copy(a).exists());
    assert_eq!(std::fs::read(copy(a)).unwrap(), *a_bytes);

    // Gone from the bucket, the blob still comes whole and in ranges from this node's copy.
    s3.delete(a_key);
    assert!(s3.keys(a_key).is_empty());
    let r = get(a, None);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().unwrap()), *a);
    let r = get(a, Some("bytes=100-199"));
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().as_ref(), &a_bytes[100..200]);

    // Two more: past 1 MiB the least recently read copy (a) goes, and a is gone for good.
    for (d, bytes, _) in &blobs[1..] {
        assert_eq!(get(d, None).bytes().unwrap().as_ref(), bytes.as_slice());
        eventually("the read left a copy", &|| copy(d).exists());
    }
    eventually("the oldest copy was dropped", &|| !copy(a).exists());
    assert_ne!(get(a, None).status(), StatusCode::OK, "neither the bucket nor the node has it now");
    let held: u64 = blobs[1..].iter().map(|(d, _, _)| std::fs::metadata(copy(d)).unwrap().len()).sum();
    assert!(held <= 1 << 20, "the copies stay within their limit: {held}");

    // A chunked push of a blob this node holds a copy of, to a repository on another bucket
    // prefix: the bytes go to that store (the copy said "already there", and nothing was
    // written: the push was acknowledged and the blob missing wherever the copy was not).
    let (c, c_bytes, _) = &blobs[2];
    assert!(copy(c).exists());
    let (other_repo, other_prefix) = docker_on_s3(&server, &s3, false);
    let r = http.post(server.url(&format!("/v2/{other_repo}/cached/blobs/uploads/"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let at = |loc: &str| if loc.starts_with("http") { loc.to_string() } else { server.url(loc) };
    let r = http
        .patch(at(&location))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/octet-stream")
        .body(c_bytes.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http.put(format!("{}{sep}digest={c}", at(&location))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let other_key = format!("{other_prefix}/blobs/sha256/{}/{}", &c[7..9], &c[7..]);
    assert_eq!(s3.keys(&other_key), vec![other_key.clone()], "the pushed blob is in its own store's bucket");
}
