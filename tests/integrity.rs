//! Data that must not be lost, tried the way a careless operator or an unlucky crowd would:
//! concurrent writes to one tag, overlapping chunks of one upload, someone else's upload
//! session, deleting a blob a tag uses, and a full disk. Every test runs on SQLite and, with
//! `WHARF_TEST_DATABASE_URL`, on PostgreSQL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const REPO: &str = "docker-hosted";

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(120)).build().unwrap()
}

fn req(method: Method, path: &str) -> RequestBuilder {
    let url = if path.starts_with("http") { path.to_string() } else { server().url(path) };
    http().request(method, url).basic_auth("admin", Some(ADMIN_PASSWORD))
}

fn v2(repo: &str, name: &str, rest: &str) -> String {
    format!("/v2/{repo}/{name}/{rest}")
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn error_of(r: Response) -> (String, String) {
    let v: Value = r.json().expect("error bodies are JSON");
    (v["errors"][0]["code"].as_str().unwrap_or_default().to_string(), v["errors"][0]["message"].as_str().unwrap_or_default().to_string())
}

fn location(r: &Response) -> String {
    let l = header(r, "location");
    assert!(!l.is_empty(), "a Location header");
    if l.starts_with("http") {
        l
    } else {
        server().url(&l)
    }
}

fn with_digest(url: &str, d: &str) -> String {
    format!("{url}{}digest={d}", if url.contains('?') { '&' } else { '?' })
}

fn push_blob(repo: &str, name: &str, data: &[u8]) -> String {
    let d = digest_of(data);
    let r = req(Method::POST, &with_digest(&v2(repo, name, "blobs/uploads/"), &d)).body(data.to_vec()).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    d
}

fn manifest_for(config: &str, config_len: usize, layer: &str, layer_len: usize, note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_len},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": layer_len}],
        "annotations": {"note": note}
    }))
    .unwrap()
}

fn put_manifest(repo: &str, name: &str, reference: &str, body: &[u8]) -> Response {
    req(Method::PUT, &v2(repo, name, &format!("manifests/{reference}"))).header("Content-Type", OCI_MANIFEST).body(body.to_vec()).send().unwrap()
}

/// A user whose role may read and push every Docker repository.
fn docker_pusher(user: &str) {
    let admin = server().admin();
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": format!("{user}-role"), "privileges": ["nx-repository-view-docker-*-read", "nx-repository-view-docker-*-add"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": user, "password": format!("{user}-pw"), "roles": [format!("{user}-role")]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
}

/// 100 concurrent manifest PUTs to one tag: every one is a valid request and gets 201 (SQLite
/// answered 20 of them 500 `database is locked`: audit and upload writes ran beside the
/// serialized commit on other connections).
#[test]
fn concurrent_manifest_puts_to_one_tag_all_succeed() {
    let name = "crowd/one-tag";
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"a layer for the crowd".to_vec();
    let config_d = push_blob(REPO, name, config);
    let layer_d = push_blob(REPO, name, &layer);
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let m = manifest_for(&config_d, config.len(), &layer_d, layer.len(), &format!("writer {i}"));
            std::thread::spawn(move || {
                let r = put_manifest(REPO, name, "hot", &m);
                (r.status(), r.text().unwrap_or_default())
            })
        })
        .collect();
    let failed: Vec<String> =
        threads.into_iter().map(|t| t.join().unwrap()).filter(|(s, _)| *s != StatusCode::CREATED).map(|(s, b)| format!("{s}: {b}")).collect();
    assert!(failed.is_empty(), "{} of 100 PUTs failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let r = req(Method::GET, &v2(REPO, name, "manifests/hot")).header("Accept", OCI_MANIFEST).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(digest_of(&r.bytes().unwrap()), header_digest(name, "hot"));
}

fn header_digest(name: &str, reference: &str) -> String {
    let r = req(Method::HEAD, &v2(REPO, name, &format!("manifests/{reference}"))).header("Accept", OCI_MANIFEST).send().unwrap();
    header(&r, "docker-content-digest")
}

/// The staged file of upload `id` in the default blob store.
fn staged(id: &str) -> PathBuf {
    server().data_dir().join("blobs/default/uploads").join(id)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two overlapping PATCHes to one upload: one is refused, and whatever the store then holds
/// under a digest hashes to that digest. (The loser's bytes used to land in the file after the
/// winner's hash was recorded, and `PUT ?digest=<winner>` published them under the winner's name.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_patches_never_corrupt_the_store() {
    let name = "race/patch";
    let start = tokio::task::spawn_blocking(|| req(Method::POST, &v2(REPO, name, "blobs/uploads/")).send().unwrap()).await.unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let url = location(&start);
    let id = header(&start, "docker-upload-uuid");
    let client = reqwest::Client::new();

    // A: 1 MiB now (the server writes it: the staged file grows), 1 MiB more later.
    const MIB: usize = 1 << 20;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let a = tokio::spawn(client.patch(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Content-Type", "application/octet-stream").body(body).send());
    tx.send(Ok(vec![b'A'; MIB])).await.unwrap();
    let file = staged(&id);
    tokio::task::spawn_blocking(move || wait_for("A's first MiB on disk", || std::fs::metadata(&file).map(|m| m.len() >= MIB as u64).unwrap_or(false)))
        .await
        .unwrap();

    // B: 2 MiB in one go while A is still writing. B waits for A's claim, so it cannot answer
    // before A ends; the old code answered at once, and then A's second MiB landed inside B's
    // bytes. The bounded wait only lets that old interleaving happen; the assertions below hold
    // whichever way it goes.
    let b_bytes = vec![b'B'; 2 * MIB];
    let b_req = client.patch(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Content-Type", "application/octet-stream").body(b_bytes.clone());
    let mut b = tokio::spawn(b_req.send());
    let b_early = tokio::time::timeout(Duration::from_secs(3), &mut b).await.ok();

    tx.send(Ok(vec![b'a'; MIB])).await.unwrap();
    drop(tx);
    let a_status = a.await.unwrap().map(|r| r.status()).ok();
    let b_status = match b_early {
        Some(r) => r,
        None => b.await,
    }
    .unwrap()
    .unwrap()
    .status();
    let mut a_bytes = vec![b'A'; MIB];
    a_bytes.extend(vec![b'a'; MIB]);

    let winner = match (a_status, b_status) {
        (Some(StatusCode::ACCEPTED), s) => {
            assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE, "the session has one writer at a time");
            a_bytes
        }
        (_, StatusCode::ACCEPTED) => b_bytes,
        other => panic!("neither PATCH won: {other:?}"),
    };
    let d = digest_of(&winner);
    let url2 = url.clone();
    let (put_status, stored) = tokio::task::spawn_blocking(move || {
        let r = req(Method::PUT, &with_digest(&url2, &d)).send().unwrap();
        let status = r.status();
        let stored = req(Method::GET, &v2(REPO, name, &format!("blobs/{d}"))).send().unwrap();
        (status, (stored.status(), stored.bytes().unwrap().to_vec(), d))
    })
    .await
    .unwrap();
    let (get_status, bytes, d) = stored;
    if put_status == StatusCode::CREATED {
        assert_eq!(get_status, StatusCode::OK);
        assert_eq!(digest_of(&bytes), d, "the bytes stored under a digest hash to it");
    } else {
        // Refusing is fine too (the staged bytes were not what the client meant); storing is not.
        assert_eq!(put_status, StatusCode::BAD_REQUEST);
        assert_eq!(get_status, StatusCode::NOT_FOUND);
    }
}

fn tokio_stream(mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// An upload session is its starter's: another user with push rights on the same image can
/// neither read, append to, finish nor cancel it.
#[test]
fn an_upload_session_belongs_to_whoever_started_it() {
    docker_pusher("mallory");
    let name = "owned/upload";
    let r = req(Method::POST, &v2(REPO, name, "blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let url = location(&r);
    let r = req(Method::PATCH, &url).header("Content-Type", "application/octet-stream").body(b"mine".to_vec()).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let as_mallory = |m: Method, u: &str| http().request(m, u).basic_auth("mallory", Some("mallory-pw"));
    // Mallory may push to the image (her own upload works)...
    let r = as_mallory(Method::POST, &server().url(&v2(REPO, name, "blobs/uploads/"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // ...but not touch admin's.
    for r in [
        as_mallory(Method::GET, &url).send().unwrap(),
        as_mallory(Method::PATCH, &url).header("Content-Type", "application/octet-stream").body(b"theirs".to_vec()).send().unwrap(),
        as_mallory(Method::PUT, &with_digest(&url, &digest_of(b"mine"))).send().unwrap(),
        as_mallory(Method::DELETE, &url).send().unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_of(r).0, "BLOB_UPLOAD_UNKNOWN");
    }
    // The session is untouched and finishes for its owner.
    let r = req(Method::GET, &url).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-3");
    let r = req(Method::PUT, &with_digest(&url, &digest_of(b"mine"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
}

/// A blob that a manifest of the image uses cannot be deleted (the tag would answer 404 for
/// it); once the manifest is gone, it can.
#[test]
fn a_blob_a_manifest_uses_cannot_be_deleted() {
    let name = "keep/layers";
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let layer = b"a layer a tag needs".to_vec();
    let config_d = push_blob(REPO, name, config);
    let layer_d = push_blob(REPO, name, &layer);
    let m = manifest_for(&config_d, config.len(), &layer_d, layer.len(), "keep");
    assert_eq!(put_manifest(REPO, name, "v1", &m).status(), StatusCode::CREATED);
    for d in [&layer_d, &config_d] {
        let r = req(Method::DELETE, &v2(REPO, name, &format!("blobs/{d}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let (code, message) = error_of(r);
        assert_eq!(code, "UNSUPPORTED");
        assert!(message.contains(&digest_of(&m)) && message.contains("delete the manifest first"), "{message}");
    }
    // The tag still pulls whole.
    let r = req(Method::GET, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().unwrap().to_vec(), layer);
    // A blob nothing uses, and the layer once its manifest is deleted, can go.
    let loose = push_blob(REPO, name, b"nobody uses me");
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{loose}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{}", digest_of(&m)))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A manifest an index lists cannot be deleted while the index is there (the index's tag would
/// pull a platform that is gone); once the index is deleted, it can.
#[test]
fn a_manifest_an_index_lists_cannot_be_deleted() {
    let name = "keep/multi";
    let config = br#"{"architecture":"riscv64","os":"linux"}"#;
    let layer = b"a layer of one platform".to_vec();
    let config_d = push_blob(REPO, name, config);
    let layer_d = push_blob(REPO, name, &layer);
    let child = manifest_for(&config_d, config.len(), &layer_d, layer.len(), "child");
    let child_d = digest_of(&child);
    assert_eq!(put_manifest(REPO, name, &child_d, &child).status(), StatusCode::CREATED);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child_d, "size": child.len(), "platform": {"architecture": "riscv64", "os": "linux"}}]
    }))
    .unwrap();
    let index_d = digest_of(&index);
    let r = req(Method::PUT, &v2(REPO, name, "manifests/multi")).header("Content-Type", OCI_INDEX).body(index.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());

    let r = req(Method::DELETE, &v2(REPO, name, &format!("manifests/{child_d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (code, message) = error_of(r);
    assert_eq!(code, "UNSUPPORTED");
    assert!(message.contains(&index_d) && message.contains("delete the index first"), "{message}");
    // The tag still pulls whole: the index, and the platform it lists.
    let r = req(Method::GET, &v2(REPO, name, "manifests/multi")).header("Accept", OCI_INDEX).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = req(Method::GET, &v2(REPO, name, &format!("manifests/{child_d}"))).header("Accept", OCI_MANIFEST).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().unwrap().to_vec(), child);

    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{index_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{child_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
}

/// A manifest stored before uses were recorded (no `ref` rows) whose bytes no longer parse:
/// what it uses is unknown, so deleting any blob of the image is refused rather than guessed
/// safe; deleting the broken manifest itself is allowed, and then the blob can go.
#[test]
fn a_legacy_manifest_that_cannot_be_read_keeps_its_image_blobs() {
    let name = "keep/legacy";
    let (layer_d, m_d) = push_small_image(name, "legacy");
    let old = OldData::make_legacy(name, &m_d);
    let hex = m_d.trim_start_matches("sha256:");
    let bytes = server().data_dir().join("blobs/default/blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::write(&bytes, b"not a manifest any more").unwrap();

    let r = req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "a blob an unreadable manifest may use stays");
    let (_, message) = error_of(r);
    assert!(message.contains(&m_d), "{message}");
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{m_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert!(old.image_marked(name));
}

/// An image with a legacy manifest (readable) is read on every delete until the manifest goes:
/// a delete that finds it, even one it does not concern, leaves the image unmarked (it
/// remembers where the legacy manifest is), so the manifest's blobs stay guarded; the first
/// delete that finds none marks the image, and later deletes skip the read.
#[test]
fn an_image_is_marked_as_recording_its_uses_only_once_no_legacy_manifest_is_left() {
    let name = "keep/legacy-readable";
    let (layer_d, m_d) = push_small_image(name, "readable");
    let spare = push_blob(REPO, name, b"a blob no manifest uses");
    let old = OldData::make_legacy(name, &m_d);

    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{spare}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert!(!old.image_marked(name), "an image with a legacy manifest is not marked");
    // What that delete found is remembered: the next ones read the legacy manifest alone.
    assert_eq!(old.image_attributes(name)["legacy"], json!([format!("{name}/manifests/{m_d}")]));
    let r = req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "the legacy manifest's layer stays");
    assert!(error_of(r).1.contains(&m_d));
    // Deleting the legacy manifest itself does not mark the image either (the delete may fail
    // after the check): the next delete does.
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{m_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert!(!old.image_marked(name));
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert!(old.image_marked(name));
}

/// The legacy manifests an image's row remembers only shrink: a deleted one leaves the list, a
/// re-pushed one (which records its uses) does too, and the image is marked once none is left.
#[test]
fn an_image_forgets_legacy_manifests_that_are_deleted_or_pushed_again() {
    let name = "keep/legacy-shrinks";
    let (_, gone) = push_small_image(name, "shrinks-gone");
    let (layer_d, again) = push_small_image(name, "shrinks-again");
    let m_again = manifest_bytes("shrinks-again");
    let spare = push_blob(REPO, name, b"a blob no manifest of keep/legacy-shrinks uses");
    let old = OldData::make_all_legacy(name, &[&gone, &again]);
    let path = |d: &str| format!("{name}/manifests/{d}");

    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{spare}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    let mut remembered: Vec<String> = serde_json::from_value(old.image_attributes(name)["legacy"].clone()).unwrap();
    remembered.sort();
    let mut both = vec![path(&gone), path(&again)];
    both.sort();
    assert_eq!(remembered, both);

    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{gone}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    // The delete of `gone` read the list before it went; the next delete finds it shorter.
    let r = req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "the other legacy manifest's layer stays");
    assert_eq!(old.image_attributes(name)["legacy"], json!([path(&again)]));

    // Pushed again, the manifest records its uses: it is legacy no more, and its layer is now
    // guarded by its `ref` rows rather than by the list.
    assert_eq!(put_manifest(REPO, name, "again", &m_again).status(), StatusCode::CREATED);
    let r = req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "a recorded use keeps the layer");
    assert!(old.image_marked(name), "no legacy manifest is left");
    assert_eq!(old.image_attributes(name).get("legacy"), None);
}

/// An image with more legacy manifests than its row keeps remembers none and is listed on
/// every delete: the guard holds all the same.
#[test]
fn an_image_with_more_legacy_manifests_than_its_row_keeps_is_still_guarded() {
    let name = "keep/legacy-many";
    let pushed: Vec<(String, String)> = (0..65).map(|i| push_small_image(name, &format!("many-{i}"))).collect();
    let manifests: Vec<&str> = pushed.iter().map(|(_, m)| m.as_str()).collect();
    let old = OldData::make_all_legacy(name, &manifests);
    for (layer_d, m_d) in &pushed {
        let r = req(Method::DELETE, &v2(REPO, name, &format!("blobs/{layer_d}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(error_of(r).1.contains(m_d.as_str()));
    }
    assert_eq!(old.image_attributes(name), json!(null), "nothing is remembered past 64");
    // Down to 64, the list is remembered.
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("manifests/{}", pushed[0].1))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::DELETE, &v2(REPO, name, &format!("blobs/{}", pushed[0].0))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(old.image_attributes(name)["legacy"].as_array().map(Vec::len), Some(64));
}

/// A config, a layer and a manifest of them tagged `old`; answers the layer's and the
/// manifest's digests.
fn push_small_image(name: &str, note: &str) -> (String, String) {
    let (config, layer) = small_image_blobs(note);
    let layer_d = push_blob(REPO, name, &layer);
    push_blob(REPO, name, config.as_bytes());
    let m = manifest_bytes(note);
    assert_eq!(put_manifest(REPO, name, "old", &m).status(), StatusCode::CREATED);
    (layer_d, digest_of(&m))
}

fn small_image_blobs(note: &str) -> (String, Vec<u8>) {
    let config = format!(r#"{{"architecture":"s390x","os":"linux","note":"{note}"}}"#);
    (config, format!("a layer an old manifest needs ({note})").into_bytes())
}

/// The manifest [`push_small_image`] pushes for `note`.
fn manifest_bytes(note: &str) -> Vec<u8> {
    let (config, layer) = small_image_blobs(note);
    manifest_for(&digest_of(config.as_bytes()), config.len(), &digest_of(&layer), layer.len(), note)
}

/// The test server's metadata, read and written directly to make what an older wharf stored.
struct OldData {
    meta: wharf::db::meta::SqlMeta,
    repo: i64,
    rt: tokio::runtime::Runtime,
}

impl OldData {
    /// Makes manifest `m_d` of image `name` what a wharf before uses were recorded stored: no
    /// `refs` attribute and no `ref` rows, and its image's row without the mark that every
    /// manifest records its uses.
    fn make_legacy(name: &str, m_d: &str) -> OldData {
        OldData::make_all_legacy(name, &[m_d])
    }

    /// [`OldData::make_legacy`] for several manifests of one image at once.
    fn make_all_legacy(name: &str, manifests: &[&str]) -> OldData {
        use wharf_format::{ListQuery, MetaStore, NewAsset, Write};
        let db = wharf::db::Db::open(&server().database_url(), 2).unwrap();
        let repo = db.run_sync(|c| wharf::db::repos::get(c, REPO)).unwrap().unwrap().id;
        let old = OldData { meta: wharf::db::meta::SqlMeta::new(db), repo, rt: tokio::runtime::Runtime::new().unwrap() };
        old.rt.block_on(async {
            let meta = &old.meta;
            let image = meta.get(repo, &format!("_image/{name}")).await.unwrap().unwrap();
            assert_eq!(image.attributes["refs"], json!(true), "a new image is marked");
            let image = NewAsset { attributes: json!(null), ..NewAsset::from(image) };
            let mut writes = vec![Write::Upsert { repo, asset: image }];
            for m_d in manifests {
                let path = format!("{name}/manifests/{m_d}");
                let a = meta.get(repo, &path).await.unwrap().unwrap();
                writes.push(Write::Upsert { repo, asset: NewAsset { attributes: json!({}), ..NewAsset::from(a) } });
                let q = ListQuery { prefix: Some(format!("{name}/refs/")), ..Default::default() };
                let refs: Vec<_> = meta.list(repo, q).await.unwrap().into_iter().filter(|r| r.path.ends_with(&format!("/{m_d}"))).collect();
                assert_eq!(refs.len(), 2, "the push recorded the uses of {m_d}");
                writes.extend(refs.into_iter().map(|a| Write::Delete { repo, path: a.path }));
            }
            meta.commit(vec![], writes).await.unwrap();
        });
        assert!(!old.image_marked(name));
        old
    }

    fn image_attributes(&self, name: &str) -> Value {
        use wharf_format::MetaStore;
        self.rt.block_on(self.meta.get(self.repo, &format!("_image/{name}"))).unwrap().unwrap().attributes
    }

    fn image_marked(&self, name: &str) -> bool {
        self.image_attributes(name).get("refs").and_then(Value::as_bool) == Some(true)
    }
}

/// Unmounts on drop, whatever the test did.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes until the file system is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

/// With the blob store's disk full, a push, a publish and an upload each answer 507 in their
/// protocol's shape, a failed chunk leaves neither its bytes nor a broken session behind, and
/// writes work again as soon as there is room.
#[test]
fn a_full_disk_is_reported_and_recovered_from() {
    if is_root() {
        run_full_disk();
    } else {
        eprintln!("\n\n!!!!! SKIPPED a_full_disk_is_reported_and_recovered_from: mounting a small tmpfs needs root !!!!!\n");
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run_full_disk() {
    let dir = server().data_dir().join("blobs/tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&dir).status().unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _mount = Mount(dir.clone());
    let admin = server().admin();
    let r = admin.request(Method::POST, "/service/rest/v1/blobstores/file").json(&json!({"name": "tiny", "path": "tiny"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    admin.create_docker_hosted(json!({"name": "docker-tiny", "online": true, "storage": {"blobStoreName": "tiny", "writePolicy": "allow"}, "docker": {}}));
    for (format, name) in [("npm", "npm-tiny"), ("pypi", "pypi-tiny")] {
        let r = admin
            .request(Method::POST, &format!("/service/rest/v1/repositories/{format}/hosted"))
            .json(&json!({"name": name, "online": true, "storage": {"blobStoreName": "tiny", "writePolicy": "allow_once"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    }

    let name = "full/disk";
    let r = req(Method::POST, &v2("docker-tiny", name, "blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let url = location(&r);
    let id = header(&r, "docker-upload-uuid");
    let filler = fill(&dir);

    // Docker: a chunk that does not fit.
    let layer = vec![7u8; 1 << 20];
    let r = req(Method::PATCH, &url).header("Content-Type", "application/octet-stream").body(layer.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let (code, message) = error_of(r);
    assert_eq!(code, "UNKNOWN");
    assert!(message.contains("out of space"), "{message}");
    let r = req(Method::GET, &url).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "the session survives");
    assert_eq!(header(&r, "range"), "0-0", "nothing was acknowledged");
    assert_eq!(std::fs::metadata(dir.join("uploads").join(&id)).unwrap().len(), 0, "unacknowledged bytes are cut back");
    // A monolithic push too.
    let r = req(Method::POST, &with_digest(&v2("docker-tiny", name, "blobs/uploads/"), &digest_of(&layer))).body(layer.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    // npm: {"error"}.
    let tgz = npm_tgz("wharf-full", "1.0.0");
    let r = npm_publish("npm-tiny", "wharf-full", "1.0.0", &tgz);
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("out of space"));
    // PyPI: plain text.
    let r = pypi_upload("pypi-tiny");
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(r.text().unwrap().contains("out of space"));

    // Room again: the same session continues, and everything else works.
    std::fs::remove_file(&filler).unwrap();
    let r = req(Method::PATCH, &url).header("Content-Type", "application/octet-stream").body(layer.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().unwrap_or_default());
    let r = req(Method::PUT, &with_digest(&url, &digest_of(&layer))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let r = req(Method::GET, &v2("docker-tiny", name, &format!("blobs/{}", digest_of(&layer)))).send().unwrap();
    assert_eq!(r.bytes().unwrap().to_vec(), layer);
    assert_eq!(npm_publish("npm-tiny", "wharf-full", "1.0.0", &tgz).status(), StatusCode::OK);
    assert_eq!(pypi_upload("pypi-tiny").status(), StatusCode::OK);
}

/// The default layout, database and blobs on one file system, filled by pushes: new content
/// stops at the reserve (`disk.reserve_mib`), with a 507 that says so, and the room left is
/// enough to delete images and run the task and the compaction that give the space back.
/// Without the reserve the pushes took the last byte, and then the deletion itself failed (the
/// database had no room to record it), as did the task and the compaction: nothing could free
/// a byte.
#[test]
fn a_disk_filled_by_pushes_keeps_the_room_to_empty_it() {
    if is_root() {
        run_disk_filled_by_pushes();
    } else {
        eprintln!("\n\n!!!!! SKIPPED a_disk_filled_by_pushes_keeps_the_room_to_empty_it: mounting a small tmpfs needs root !!!!!\n");
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let s = rustix::fs::statvfs(dir).unwrap();
    s.f_bavail * s.f_frsize
}

fn run_disk_filled_by_pushes() {
    let env = [("WHARF_DISK__RESERVE_MIB", "8"), ("WHARF_GC__GRACE_SECS", "1"), ("WHARF_UPLOADS__TTL_SECS", "1")];
    let mut s = TestServer::unstarted(&env);
    let dir = s.data_dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=160m", "tmpfs"]).arg(&dir).status().unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _mount = Mount(dir.clone());
    s.spawn();
    let admin = s.admin();
    // A file store of its own: on S3 test runs the default store is a bucket.
    let r = admin.request(Method::POST, "/service/rest/v1/blobstores/file").json(&json!({"name": "onfs", "path": "onfs"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    let repo = "docker-onfs";
    admin.create_docker_hosted(json!({"name": repo, "online": true, "storage": {"blobStoreName": "onfs", "writePolicy": "allow"}, "docker": {}}));
    let r = admin
        .request(Method::POST, "/service/rest/v1/repositories/npm/hosted")
        .json(&json!({"name": "npm-onfs", "online": true, "storage": {"blobStoreName": "onfs", "writePolicy": "allow"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    // A pull-through cache of the same server's hosted images, on the same disk (in a store of
    // its own, so that what it caches is not already there).
    let r = admin.request(Method::POST, "/service/rest/v1/blobstores/file").json(&json!({"name": "onfs-cache", "path": "onfs-cache"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    let r = admin
        .request(Method::POST, "/service/rest/v1/repositories/docker/proxy")
        .json(&json!({
            "name": "docker-onfs-cache", "online": true,
            "storage": {"blobStoreName": "onfs-cache", "strictContentTypeValidation": true},
            "proxy": {"remoteUrl": s.base, "contentMaxAge": -1, "metadataMaxAge": 0.02},
            "negativeCache": {"enabled": false, "timeToLive": 1},
            "httpClient": {"blocked": false, "autoBlock": false,
                "authentication": {"type": "username", "username": "admin", "password": ADMIN_PASSWORD}},
            "docker": {"v1Enabled": false, "forceBasicAuth": false},
            "dockerProxy": {"indexType": "REGISTRY"}
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let call = |method: Method, path: &str| http().request(method, s.url(path)).basic_auth("admin", Some(ADMIN_PASSWORD));
    // A package whose document is large (each version's description is 300 KiB).
    for version in ["1.0.0", "2.0.0"] {
        let mut body = common::npm::publish_body("wharf-room", version);
        body["versions"][version]["description"] = json!("a long description ".repeat(16 << 10));
        let r = call(Method::PUT, &common::npm::publish_path("npm-onfs", "wharf-room")).json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
    }
    let r = call(Method::PUT, &common::npm::publish_path("npm-onfs", "wharf-tiny")).json(&common::npm::publish_body("wharf-tiny", "1.0.0")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
    let push =
        |name: &str, data: &[u8]| call(Method::POST, &with_digest(&v2(repo, name, "blobs/uploads/"), &digest_of(data))).body(data.to_vec()).send().unwrap();

    // Images of a 1 MiB layer each, until the disk refuses one.
    let mut images = Vec::new(); // (name, manifest digest, layer)
    let refused = loop {
        assert!(images.len() < 200, "160 MiB took 200 images of 1 MiB");
        let name = format!("fill/img{}", images.len());
        let layer: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761).wrapping_add(images.len() as u32 * 7919) >> 13) as u8).collect();
        let r = push(&name, &layer);
        if r.status() != StatusCode::CREATED {
            break r;
        }
        let config = format!("{{\"image\":{}}}", images.len()).into_bytes();
        assert_eq!(push(&name, &config).status(), StatusCode::CREATED);
        let body = manifest_for(&digest_of(&config), config.len(), &digest_of(&layer), layer.len(), "fill");
        let r = call(Method::PUT, &v2(repo, &name, "manifests/v1")).header("Content-Type", OCI_MANIFEST).body(body).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
        images.push((name, header(&r, "docker-content-digest"), layer));
    };
    assert_eq!(refused.status(), StatusCode::INSUFFICIENT_STORAGE);
    let (code, message) = error_of(refused);
    assert_eq!(code, "UNKNOWN");
    assert!(message.contains("out of space") && message.contains("disk.reserve_mib"), "{message}");
    assert!(images.len() >= 100, "the reserve refused early: {} images", images.len());
    // Smaller pushes go on where a large one no longer fits, as on a busy registry: each size
    // until it is refused. Without the reserve they took the last bytes.
    for size in [64 << 10, 4 << 10, 256] {
        for n in 0u32.. {
            assert!(n < 2000, "{size}-byte blobs were never refused");
            let data: Vec<u8> = format!("{size}-{n}-").bytes().cycle().take(size).collect();
            let r = push("fill/small", &data);
            if r.status() != StatusCode::CREATED {
                assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
                let (_, message) = error_of(r);
                assert!(message.contains("disk.reserve_mib"), "{message}");
                break;
            }
        }
    }
    let free = free_bytes(&dir);
    assert!(free >= 7 << 20, "the pushes ate into the reserve: {free} bytes free");
    let (st, check) = admin.json(Method::GET, "/service/rest/v1/status/check", None);
    assert_eq!(st, StatusCode::OK);
    assert_eq!(check["Disk space"]["healthy"], false, "{check}");
    assert_eq!(check["Disk space"]["reservedBytes"], 8 << 20, "{check}");
    // The cache serves what it cannot keep: the layer whole, twice, and nothing kept.
    let (name, _, layer) = &images[images.len() - 1];
    for _ in 0..2 {
        let path = format!("/v2/docker-onfs-cache/{repo}/{name}/blobs/{}", digest_of(layer));
        let r = call(Method::GET, &path).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.bytes().expect("the whole body");
        assert!(body[..] == layer[..], "{} bytes of {}", body.len(), layer.len());
    }
    // Several at once: one fetches, the others find nothing kept and fetch too (they waited
    // for a fill, and were answered 502 when the leader kept nothing).
    let (name, _, layer) = &images[images.len() - 2];
    let path = format!("/v2/docker-onfs-cache/{repo}/{name}/blobs/{}", digest_of(layer));
    std::thread::scope(|t| {
        let pulls: Vec<_> = (0..6).map(|_| t.spawn(|| call(Method::GET, &path).send().unwrap())).collect();
        for p in pulls {
            let r = p.join().unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
            assert!(r.bytes().expect("the whole body")[..] == layer[..]);
        }
    });
    assert!(free_bytes(&dir) >= free - (256 << 10), "the cache kept the layer: {} bytes free, {free} before", free_bytes(&dir));
    // The cache holds a tag's manifest, and the tag then moves upstream (a push is a document:
    // it may go into half the reserve).
    let (first, ..) = &images[0];
    let through_cache = || {
        let r = call(Method::GET, &format!("/v2/docker-onfs-cache/{repo}/{first}/manifests/v1")).header("Accept", OCI_MANIFEST).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap_or_default());
        header(&r, "docker-content-digest")
    };
    let cached = through_cache();
    let (config, layer) = (format!("{{\"image\":{}}}", 0).into_bytes(), &images[0].2);
    // Larger than the small document whose stars fill the rest below.
    let moved = manifest_for(&digest_of(&config), config.len(), &digest_of(layer), layer.len(), &"moved ".repeat(3000));
    let r = call(Method::PUT, &v2(repo, first, "manifests/v1")).header("Content-Type", OCI_MANIFEST).body(moved).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    assert_ne!(header(&r, "docker-content-digest"), cached);
    // Documents written whole (here npm stars, which read rights allow, each rewriting the
    // package's document) go into half the reserve, no further.
    let star = |package: &str, on: bool| {
        let doc: Value = call(Method::GET, &format!("/repository/npm-onfs/{package}")).send().unwrap().json().unwrap();
        let rev = doc["_rev"].as_str().unwrap().to_string();
        call(Method::PUT, &format!("/repository/npm-onfs/{package}/-rev/{rev}")).json(&json!({"users": {"admin": on}})).send().unwrap()
    };
    // The large document, then a small one, until each is refused: what is left is then half
    // the reserve, give or take a small document.
    for package in ["wharf-room", "wharf-tiny"] {
        for n in 0.. {
            assert!(n < 2000, "stars of {package} never stopped");
            let r = star(package, n % 2 == 0);
            if !r.status().is_success() {
                assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
                let message = r.text().unwrap();
                assert!(message.contains("disk.reserve_mib"), "{message}");
                break;
            }
        }
    }
    assert!(free_bytes(&dir) >= 3 << 20, "documents went past half the reserve: {} bytes free", free_bytes(&dir));
    // With no room for the moved tag's manifest, the cache serves the one it has, as it would
    // with its upstream down (it answered 507).
    std::thread::sleep(Duration::from_millis(1500)); // past the proxy's metadataMaxAge
    assert_eq!(through_cache(), cached);
    // A deletion that writes a document, as npm's unpublish does (the document less the version,
    // sent back), goes into the rest.
    let doc: Value = call(Method::GET, "/repository/npm-onfs/wharf-room").send().unwrap().json().unwrap();
    let mut less = doc.clone();
    less["versions"].as_object_mut().unwrap().remove("1.0.0");
    less["time"].as_object_mut().unwrap().remove("1.0.0");
    let rev = doc["_rev"].as_str().unwrap();
    let r = call(Method::PUT, &format!("/repository/npm-onfs/wharf-room/-rev/{rev}")).json(&less).send().unwrap();
    assert!(r.status().is_success(), "{} {}", r.status(), r.text().unwrap_or_default());
    let doc: Value = call(Method::GET, "/repository/npm-onfs/wharf-room").send().unwrap().json().unwrap();
    assert!(doc["versions"].get("1.0.0").is_none() && doc["versions"].get("2.0.0").is_some(), "{doc}");

    // The admin makes room: half the images go, then the task that unlinks their blobs and a
    // compaction.
    let (gone, kept) = images.split_at(images.len() / 2);
    for (name, digest, _) in gone {
        let r = call(Method::DELETE, &v2(repo, name, &format!("manifests/{digest}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().unwrap_or_default());
    }
    let (st, task) = admin.json(
        Method::POST,
        "/service/rest/v1/tasks",
        Some(json!({"type": "repository.docker.gc", "name": "make room", "frequency": {"schedule": "manual"}, "properties": {"repositoryName": repo, "olderThanDays": 0}})),
    );
    assert!(st.is_success(), "{st} {task}");
    let id = task["id"].as_str().unwrap();
    let r = admin.request(Method::POST, &format!("/service/rest/v1/tasks/{id}/run")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    wait_for("the task's run", || {
        let (_, runs) = admin.json(Method::GET, &format!("/service/rest/v1/tasks/{id}/runs"), None);
        runs["items"].as_array().is_some_and(|a| a.iter().any(|r| r["result"] != "RUNNING"))
    });
    let (_, runs) = admin.json(Method::GET, &format!("/service/rest/v1/tasks/{id}/runs"), None);
    assert_eq!(runs["items"][0]["result"], "OK", "{runs}");
    std::thread::sleep(Duration::from_millis(1500)); // past gc.grace_secs
    let (st, report) = admin.json(Method::POST, "/service/rest/v1/blobstores/onfs/compact", None);
    assert_eq!(st, StatusCode::OK, "{report}");
    // Less what the database grew by for the deletions.
    let freed = free_bytes(&dir).saturating_sub(free);
    assert!(freed >= gone.len() as u64 * (1 << 20) * 8 / 10, "{} images deleted, {freed} bytes freed", gone.len());

    // New content is taken again, and what was kept is whole.
    let r = push("after/room", b"after the room was made");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    for (name, digest, layer) in kept {
        let r = call(Method::GET, &v2(repo, name, "manifests/v1")).header("Accept", OCI_MANIFEST).send().unwrap();
        assert_eq!(header(&r, "docker-content-digest"), *digest);
        let r = call(Method::GET, &v2(repo, name, &format!("blobs/{}", digest_of(layer)))).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.bytes().unwrap()[..] == layer[..], "{name}: its layer");
    }
    s.kill();
}

fn npm_tgz(name: &str, version: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let data = json!({"name": name, "version": version}).to_string();
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "package/package.json", data.as_bytes()).unwrap();
    // Incompressible padding, so that the tarball needs room.
    let pad: Vec<u8> = (0..(256u32 << 10)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(pad.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "package/pad.bin", &pad[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

fn npm_publish(repo: &str, name: &str, version: &str, data: &[u8]) -> Response {
    req(Method::PUT, &common::npm::publish_path(repo, name)).json(&common::npm::publish_body_of(name, version, data)).send().unwrap()
}

/// A wheel with just enough in it: METADATA that agrees with the form.
fn pypi_upload(repo: &str) -> Response {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("wharf_full-1.0.dist-info/METADATA", opts).unwrap();
        z.write_all(b"Metadata-Version: 2.1\nName: wharf-full\nVersion: 1.0\n").unwrap();
        let pad: Vec<u8> = (0..(256u32 << 10)).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        z.start_file("wharf_full/pad.bin", opts).unwrap();
        z.write_all(&pad).unwrap();
        z.finish().unwrap();
    }
    let data = buf.into_inner();
    let form = reqwest::blocking::multipart::Form::new()
        .text(":action", "file_upload")
        .text("protocol_version", "1")
        .text("name", "wharf-full")
        .text("version", "1.0")
        .text("filetype", "bdist_wheel")
        .text("metadata_version", "2.1")
        .text("sha256_digest", hex::encode(Sha256::digest(&data)))
        .part("content", reqwest::blocking::multipart::Part::bytes(data).file_name("wharf_full-1.0-py3-none-any.whl"));
    req(Method::POST, &format!("/repository/{repo}/")).multipart(form).send().unwrap()
}
