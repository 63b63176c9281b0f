//! Conformance with the OCI Distribution Specification v1.1: every client-observable MUST of
//! the pull, push, content discovery and content management categories, and the referrers
//! API, checked over HTTP against a real server (path-routed on the main port, so image
//! `team/app` of repository `docker-hosted` is `/v2/docker-hosted/team/app/...`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const REPO: &str = "docker-hosted";

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        let s = TestServer::start();
        s.admin().create_docker_hosted(json!({"name": "docker-other", "storage": {"blobStoreName": "default"}, "docker": {}}));
        s
    })
}

fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn req(method: Method, path: &str) -> RequestBuilder {
    let url = if path.starts_with("http") { path.to_string() } else { server().url(path) };
    http().request(method, url).basic_auth("admin", Some(ADMIN_PASSWORD))
}

fn v2(name: &str, rest: &str) -> String {
    format!("/v2/{REPO}/{name}/{rest}")
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// The spec's error body: `{"errors": [{"code": ..., "message": ..., "detail": ...}]}`.
fn error_code(r: Response) -> String {
    let v: Value = r.json().expect("error bodies are JSON");
    v["errors"][0]["code"].as_str().expect("errors[0].code").to_string()
}

/// Location may be relative or absolute.
fn location(r: &Response) -> String {
    let l = header(r, "location");
    assert!(!l.is_empty(), "a Location header");
    if l.starts_with("http") {
        l
    } else {
        server().url(&l)
    }
}

fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

fn push_blob(name: &str, data: &[u8]) -> String {
    let d = digest_of(data);
    let r = req(Method::POST, &format!("{}?digest={d}", v2(name, "blobs/uploads/"))).body(data.to_vec()).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    d
}

fn manifest_for(config: &str, config_len: usize, layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<Value> = layers.iter().map(|(d, n)| json!({"mediaType": OCI_LAYER, "digest": d, "size": n})).collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_len},
        "layers": layers
    }))
    .unwrap()
}

fn put_manifest(name: &str, reference: &str, media_type: &str, body: &[u8]) -> Response {
    req(Method::PUT, &v2(name, &format!("manifests/{reference}"))).header("Content-Type", media_type).body(body.to_vec()).send().unwrap()
}

struct Image {
    manifest: Vec<u8>,
    digest: String,
    config: String,
    layer: String,
    layer_bytes: Vec<u8>,
}

/// Pushes a small image (config + one layer) under `tag`.
fn push_image(name: &str, tag: &str, seed: u8) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{name}-{seed}"}}"#).into_bytes();
    let layer_bytes: Vec<u8> = (0..4096u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(name.len() as u8)).collect();
    let config_d = push_blob(name, &config);
    let layer_d = push_blob(name, &layer_bytes);
    let manifest = manifest_for(&config_d, config.len(), &[(&layer_d, layer_bytes.len())]);
    let r = put_manifest(name, tag, OCI_MANIFEST, &manifest);
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    Image { digest: digest_of(&manifest), manifest, config: config_d, layer: layer_d, layer_bytes }
}

/// A request with an exact path, bypassing URL normalisation (for traversal attempts).
fn raw_status(method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(&server().addr).unwrap();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    };
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", server().addr).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

// ---- pull ------------------------------------------------------------------------------------

#[test]
fn pull_manifest_by_tag_and_by_digest_returns_the_pushed_bytes() {
    let img = push_image("pull/manifest", "v1", 1);
    for reference in ["v1", img.digest.as_str()] {
        let r = req(Method::GET, &v2("pull/manifest", &format!("manifests/{reference}"))).header("Accept", OCI_MANIFEST).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "docker-content-digest"), img.digest);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
        assert_eq!(r.bytes().unwrap().to_vec(), img.manifest, "byte for byte as pushed");
    }
}

#[test]
fn head_manifest_gives_length_digest_and_no_body() {
    let img = push_image("pull/head", "v1", 2);
    let r = req(Method::HEAD, &v2("pull/head", "manifests/v1")).header("Accept", OCI_MANIFEST).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), img.manifest.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), img.digest);
    assert!(r.bytes().unwrap().is_empty());
}

#[test]
fn pull_blob_by_get_and_head() {
    let img = push_image("pull/blob", "v1", 3);
    let r = req(Method::GET, &v2("pull/blob", &format!("blobs/{}", img.layer))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), img.layer);
    assert_eq!(r.bytes().unwrap().to_vec(), img.layer_bytes);
    let r = req(Method::HEAD, &v2("pull/blob", &format!("blobs/{}", img.layer))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), img.layer_bytes.len().to_string());
    assert!(r.bytes().unwrap().is_empty());
    let r = req(Method::HEAD, &v2("pull/blob", &format!("blobs/{}", img.config))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the config blob too");
}

#[test]
fn blob_range_requests_are_partial_content() {
    let img = push_image("pull/range", "v1", 4);
    let r = req(Method::GET, &v2("pull/range", &format!("blobs/{}", img.layer))).header("Range", "bytes=10-19").send().unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), format!("bytes 10-19/{}", img.layer_bytes.len()));
    assert_eq!(r.bytes().unwrap().to_vec(), img.layer_bytes[10..20].to_vec());
    let r = req(Method::GET, &v2("pull/range", &format!("blobs/{}", img.layer))).header("Range", "bytes=4000-").send().unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().to_vec(), img.layer_bytes[4000..].to_vec());
    let r = req(Method::GET, &v2("pull/range", &format!("blobs/{}", img.layer))).header("Range", "bytes=99999-").send().unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[test]
fn unknown_things_are_404_with_the_right_code() {
    push_image("pull/unknown", "v1", 5);
    let missing = digest_of(b"never pushed");
    let r = req(Method::GET, &v2("pull/unknown", "manifests/nope")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    let r = req(Method::GET, &v2("pull/unknown", &format!("manifests/{missing}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    let r = req(Method::HEAD, &v2("pull/unknown", "manifests/nope")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = req(Method::GET, &v2("pull/unknown", &format!("blobs/{missing}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "BLOB_UNKNOWN");
    let r = req(Method::GET, &v2("pull/never-pushed", "tags/list")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "NAME_UNKNOWN");
    let r = req(Method::GET, "/v2/no-such-repository/app/tags/list").send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "NAME_UNKNOWN");
}

/// A reference that is neither a tag nor a digest names nothing: reads and deletes answer 404
/// `MANIFEST_UNKNOWN` as registries do (the conformance suite's `.INVALID_MANIFEST_NAME`), while a
/// push with one is the client's mistake and stays a 400 (the suite's `sha256:baddigeststring`).
#[test]
fn an_invalid_reference_is_unknown_to_reads_and_a_bad_request_to_pushes() {
    let img = push_image("pull/invalid-ref", "v1", 15);
    for bad in [".INVALID_MANIFEST_NAME", "sha256:baddigeststring", "-dash", "sha512:abc"] {
        for method in [Method::GET, Method::DELETE] {
            let r = req(method.clone(), &v2("pull/invalid-ref", &format!("manifests/{bad}"))).send().unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {bad}");
            assert_eq!(error_code(r), "MANIFEST_UNKNOWN", "{method} {bad}");
        }
        let r = req(Method::HEAD, &v2("pull/invalid-ref", &format!("manifests/{bad}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "HEAD {bad}");
    }
    let r = put_manifest("pull/invalid-ref", "sha256:baddigeststring", OCI_MANIFEST, &img.manifest);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    let r = put_manifest("pull/invalid-ref", ".INVALID_MANIFEST_NAME", OCI_MANIFEST, &img.manifest);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "TAG_INVALID");
    // Without credentials the answer is the challenge, whatever the reference.
    let r = http().get(server().url(&v2("pull/invalid-ref", "manifests/.INVALID_MANIFEST_NAME"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_blob_of_another_image_is_not_readable_through_this_one() {
    let img = push_image("pull/owner", "v1", 6);
    let r = req(Method::GET, &v2("pull/stranger", &format!("blobs/{}", img.layer))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn accept_negotiation_refuses_a_type_the_client_does_not_take() {
    push_image("pull/accept", "v1", 7);
    let r = req(Method::GET, &v2("pull/accept", "manifests/v1")).header("Accept", "application/vnd.docker.distribution.manifest.v2+json").send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = req(Method::GET, &v2("pull/accept", "manifests/v1"))
        .header("Accept", format!("application/vnd.docker.distribution.manifest.v2+json, {OCI_MANIFEST}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = req(Method::GET, &v2("pull/accept", "manifests/v1")).header("Accept", "*/*").send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

// ---- push ------------------------------------------------------------------------------------

#[test]
fn post_then_put_uploads_a_blob() {
    let data = b"post then put".to_vec();
    let d = digest_of(&data);
    let r = req(Method::POST, &v2("push/postput", "blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let upload = location(&r);
    let r =
        req(Method::PUT, &with_query(&upload, &format!("digest={d}"))).header("Content-Type", "application/octet-stream").body(data.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(location(&r).ends_with(&format!("/blobs/{d}")));
    let r = req(Method::GET, &v2("push/postput", &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.bytes().unwrap().to_vec(), data);
}

#[test]
fn a_single_post_with_digest_uploads_a_blob() {
    let data = b"single post".to_vec();
    let d = push_blob("push/single", &data);
    let r = req(Method::HEAD, &v2("push/single", &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn chunked_upload_in_order_then_close() {
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let d = digest_of(&data);
    let r = req(Method::POST, &v2("push/chunked", "blobs/uploads/")).header("Content-Length", "0").send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut upload = location(&r);
    for (start, end) in [(0usize, 10_000usize), (10_000, 20_000)] {
        let r = req(Method::PATCH, &upload)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", start, end - 1))
            .header("Content-Length", (end - start).to_string())
            .body(data[start..end].to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), format!("0-{}", end - 1));
        upload = location(&r);
    }
    let r = req(Method::GET, &upload).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-19999");
    // The last chunk travels with the closing PUT.
    let r = req(Method::PUT, &with_query(&upload, &format!("digest={d}")))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "20000-29999")
        .body(data[20_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = req(Method::GET, &v2("push/chunked", &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.bytes().unwrap().to_vec(), data);
}

#[test]
fn a_streamed_patch_without_content_range_is_accepted() {
    let data = vec![42u8; 5000];
    let d = digest_of(&data);
    let r = req(Method::POST, &v2("push/streamed", "blobs/uploads/")).send().unwrap();
    let upload = location(&r);
    let r = req(Method::PATCH, &upload).header("Content-Type", "application/octet-stream").body(data).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-4999");
    let r = req(Method::PUT, &with_query(&location(&r), &format!("digest={d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[test]
fn an_out_of_order_chunk_is_416() {
    let r = req(Method::POST, &v2("push/order", "blobs/uploads/")).send().unwrap();
    let upload = location(&r);
    let r = req(Method::PATCH, &upload).header("Content-Range", "0-9").body(vec![1u8; 10]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let upload = location(&r);
    let r = req(Method::PATCH, &upload).header("Content-Range", "20-29").body(vec![1u8; 10]).send().unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // The upload is unharmed and continues from where it was.
    let r = req(Method::GET, &upload).send().unwrap();
    assert_eq!(header(&r, "range"), "0-9");
    let r = req(Method::PATCH, &upload).header("Content-Range", "5-14").body(vec![1u8; 10]).send().unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "overlapping chunks are out of order too");
}

#[test]
fn a_wrong_digest_is_digest_invalid_and_stores_nothing() {
    let data = b"the real content".to_vec();
    let claimed = digest_of(b"something else");
    let r = req(Method::POST, &v2("push/wrongdigest", "blobs/uploads/")).send().unwrap();
    let upload = location(&r);
    let r = req(Method::PUT, &with_query(&upload, &format!("digest={claimed}"))).body(data.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    for d in [claimed, digest_of(&data)] {
        let r = req(Method::HEAD, &v2("push/wrongdigest", &format!("blobs/{d}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing stored under {d}");
    }
    // Monolithic too.
    let r = req(Method::POST, &format!("{}?digest={}", v2("push/wrongdigest", "blobs/uploads/"), digest_of(b"x"))).body(data).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    let r = req(Method::PUT, &upload).body(vec![]).send().unwrap();
    assert!(r.status().is_client_error(), "a PUT without digest fails");
}

#[test]
fn a_malformed_digest_is_refused() {
    let r = req(Method::POST, &format!("{}?digest=sha256:nothex", v2("push/baddigest", "blobs/uploads/"))).body("x").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
}

#[test]
fn a_cancelled_upload_is_gone() {
    let r = req(Method::POST, &v2("push/cancel", "blobs/uploads/")).send().unwrap();
    let upload = location(&r);
    let r = req(Method::PATCH, &upload).body(vec![0u8; 100]).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = req(Method::DELETE, &upload).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = req(Method::GET, &upload).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "BLOB_UPLOAD_UNKNOWN");
    let r = req(Method::PUT, &with_query(&upload, &format!("digest={}", digest_of(&[0u8; 100])))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn an_upload_belongs_to_its_image() {
    let r = req(Method::POST, &v2("push/mine", "blobs/uploads/")).send().unwrap();
    let upload = location(&r);
    let id = upload.rsplit('/').next().unwrap();
    let r = req(Method::GET, &v2("push/theirs", &format!("blobs/uploads/{id}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn cross_repository_mount_links_a_known_blob_and_falls_back_to_an_upload() {
    let data = b"mount me".to_vec();
    let d = push_blob("push/mount-src", &data);
    // Within the repository.
    let r = req(Method::POST, &format!("{}?mount={d}&from={REPO}/push/mount-src", v2("push/mount-dst", "blobs/uploads/"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(location(&r).ends_with(&format!("/blobs/{d}")));
    let r = req(Method::GET, &v2("push/mount-dst", &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.bytes().unwrap().to_vec(), data);
    // Across repositories of the same blob store.
    let r = req(Method::POST, &format!("/v2/docker-other/push/mounted/blobs/uploads/?mount={d}&from={REPO}/push/mount-src")).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = req(Method::HEAD, &format!("/v2/docker-other/push/mounted/blobs/{d}")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Unknown in `from`: an ordinary upload session instead.
    let unknown = digest_of(b"not there");
    let r = req(Method::POST, &format!("{}?mount={unknown}&from={REPO}/push/mount-src", v2("push/mount-dst", "blobs/uploads/"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(location(&r).contains("/blobs/uploads/"));
}

#[test]
fn manifest_push_by_digest_and_digest_mismatch() {
    let img = push_image("push/bydigest", "v1", 8);
    let r = put_manifest("push/bydigest", &img.digest, OCI_MANIFEST, &img.manifest);
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), img.digest);
    assert!(location(&r).ends_with(&format!("/manifests/{}", img.digest)));
    let r = put_manifest("push/bydigest", &digest_of(b"other"), OCI_MANIFEST, &img.manifest);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
}

#[test]
fn a_manifest_referencing_missing_blobs_is_refused_and_not_stored() {
    let config = b"{}".to_vec();
    let config_d = push_blob("push/missing", &config);
    let missing = digest_of(b"missing layer");
    let m = manifest_for(&config_d, config.len(), &[(&missing, 13)]);
    let r = put_manifest("push/missing", "v1", OCI_MANIFEST, &m);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN");
    let m = manifest_for(&digest_of(b"missing config"), 14, &[]);
    let r = put_manifest("push/missing", "v1", OCI_MANIFEST, &m);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN");
    let r = req(Method::GET, &v2("push/missing", "manifests/v1")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing half-written");
}

#[test]
fn an_index_needs_its_child_manifests() {
    let img = push_image("push/index", "child", 9);
    let index = |children: &[(&str, usize)]| {
        let ms: Vec<Value> = children
            .iter()
            .map(|(d, n)| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": n, "platform": {"architecture": "amd64", "os": "linux"}}))
            .collect();
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ms})).unwrap()
    };
    let missing = digest_of(b"no such manifest");
    let r = put_manifest("push/index", "multi", OCI_INDEX, &index(&[(&img.digest, img.manifest.len()), (&missing, 10)]));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN");
    let body = index(&[(&img.digest, img.manifest.len())]);
    let r = put_manifest("push/index", "multi", OCI_INDEX, &body);
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = req(Method::GET, &v2("push/index", "manifests/multi")).header("Accept", OCI_INDEX).send().unwrap();
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(r.bytes().unwrap().to_vec(), body);
}

#[test]
fn malformed_manifests_are_manifest_invalid() {
    let img = push_image("push/malformed", "v1", 10);
    for (body, content_type) in [
        (b"{not json".to_vec(), OCI_MANIFEST),
        (br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec(), "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (img.manifest.clone(), "application/vnd.docker.distribution.manifest.v2+json"),
        (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_vec(), OCI_MANIFEST),
    ] {
        let r = put_manifest("push/malformed", "bad", content_type, &body);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_code(r), "MANIFEST_INVALID");
    }
    let huge = vec![b' '; 5 << 20];
    let r = put_manifest("push/malformed", "huge", OCI_MANIFEST, &huge);
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn a_manifest_with_a_subject_answers_oci_subject() {
    let img = push_image("push/subject", "v1", 11);
    let empty = push_blob("push/subject", b"{}");
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.manifest.len()}
    }))
    .unwrap();
    let r = put_manifest("push/subject", &digest_of(&artifact), OCI_MANIFEST, &artifact);
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), img.digest);
}

// ---- content discovery ------------------------------------------------------------------------

#[test]
fn tags_are_listed_in_lexical_order_and_paginated() {
    let name = "discover/tags";
    let img = push_image(name, "b", 12);
    for t in ["a", "d", "c", "B"] {
        assert_eq!(put_manifest(name, t, OCI_MANIFEST, &img.manifest).status(), StatusCode::CREATED);
    }
    let r = req(Method::GET, &v2(name, "tags/list")).send().unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["name"], format!("{REPO}/{name}"));
    assert_eq!(v["tags"], json!(["B", "a", "b", "c", "d"]));

    let r = req(Method::GET, &format!("{}?n=2", v2(name, "tags/list"))).send().unwrap();
    let link = header(&r, "link");
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["B", "a"]));
    assert!(link.ends_with(r#">; rel="next""#), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap().to_string();
    let r = req(Method::GET, &next).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["b", "c"]));
    let r = req(Method::GET, &format!("{}?n=2&last=c", v2(name, "tags/list"))).send().unwrap();
    assert!(header(&r, "link").is_empty(), "no next page after the last");
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["d"]));
    let r = req(Method::GET, &format!("{}?n=0", v2(name, "tags/list"))).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!([]));
    let r = req(Method::GET, &format!("{}?last=b", v2(name, "tags/list"))).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["c", "d"]));
}

#[test]
fn the_catalog_lists_pushed_names() {
    push_image("discover/catalog", "v1", 13);
    let r = req(Method::GET, "/v2/_catalog").send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let names = r.json::<Value>().unwrap()["repositories"].clone();
    assert!(names.as_array().unwrap().contains(&json!(format!("{REPO}/discover/catalog"))), "{names}");
    let r = req(Method::GET, "/v2/_catalog?n=1").send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["repositories"].as_array().unwrap().len(), 1);

    // Walked two at a time by its Link headers, it gives every name once, in order (other
    // tests push meanwhile, and images are never removed: what was there before is there).
    for (i, name) in ["discover/catalog-b", "discover/catalog/c", "discover/catalog0"].into_iter().enumerate() {
        push_image(name, "v1", 40 + i as u8);
    }
    let before: Vec<String> =
        serde_json::from_value(req(Method::GET, "/v2/_catalog").send().unwrap().json::<Value>().unwrap()["repositories"].clone()).unwrap();
    let mut walked: Vec<String> = Vec::new();
    let mut next = Some("/v2/_catalog?n=2".to_string());
    while let Some(url) = next.take() {
        let r = req(Method::GET, &url).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        next = r.headers().get("link").map(|l| l.to_str().unwrap().trim_start_matches('<').split('>').next().unwrap().to_string());
        let page: Vec<String> = serde_json::from_value(r.json::<Value>().unwrap()["repositories"].clone()).unwrap();
        assert!(page.len() <= 2 && (next.is_none() || page.len() == 2), "{url}: {page:?}");
        walked.extend(page);
    }
    assert!(walked.windows(2).all(|w| w[0] < w[1]), "in order, each once: {walked:?}");
    assert!(before.iter().all(|n| walked.contains(n)), "{before:?} within {walked:?}");
}

#[test]
fn referrers_list_manifests_whose_subject_is_the_digest() {
    let name = "discover/referrers";
    let img = push_image(name, "v1", 14);
    let empty = push_blob(name, b"{}");
    let mut pushed = vec![];
    for t in ["application/vnd.example.sbom", "application/vnd.example.signature"] {
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": t,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.manifest.len()},
            "annotations": {"org.example.kind": t}
        }))
        .unwrap();
        assert_eq!(put_manifest(name, &digest_of(&m), OCI_MANIFEST, &m).status(), StatusCode::CREATED);
        pushed.push((t, digest_of(&m), m.len()));
    }
    let r = req(Method::GET, &v2(name, &format!("referrers/{}", img.digest))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let index: Value = r.json().unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let got = index["manifests"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    for (t, d, n) in &pushed {
        let entry = got.iter().find(|m| m["digest"] == json!(d)).expect("each referrer listed");
        assert_eq!(entry["artifactType"], json!(t));
        assert_eq!(entry["size"], json!(n));
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert_eq!(entry["annotations"]["org.example.kind"], json!(t));
    }
    let r = req(Method::GET, &format!("{}?artifactType=application/vnd.example.sbom", v2(name, &format!("referrers/{}", img.digest)))).send().unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let filtered: Value = r.json().unwrap();
    assert_eq!(filtered["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["manifests"][0]["artifactType"], "application/vnd.example.sbom");
    let r = req(Method::GET, &v2(name, &format!("referrers/{}", digest_of(b"nothing refers to me")))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["manifests"], json!([]));
}

// ---- content management -----------------------------------------------------------------------

#[test]
fn deleting_a_tag_deletes_only_that_tag() {
    let name = "manage/tag";
    let img = push_image(name, "keep", 15);
    assert_eq!(put_manifest(name, "drop", OCI_MANIFEST, &img.manifest).status(), StatusCode::CREATED);
    let r = req(Method::DELETE, &v2(name, "manifests/drop")).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::GET, &v2(name, "manifests/drop")).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(req(Method::GET, &v2(name, "manifests/keep")).send().unwrap().status(), StatusCode::OK);
    assert_eq!(req(Method::GET, &v2(name, &format!("manifests/{}", img.digest))).send().unwrap().status(), StatusCode::OK);
    let tags: Value = req(Method::GET, &v2(name, "tags/list")).send().unwrap().json().unwrap();
    assert_eq!(tags["tags"], json!(["keep"]));
}

#[test]
fn deleting_a_manifest_by_digest_removes_it_and_its_tags() {
    let name = "manage/manifest";
    let a = push_image(name, "a", 16);
    let b = push_image(name, "b", 17);
    let r = req(Method::DELETE, &v2(name, &format!("manifests/{}", a.digest))).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::GET, &v2(name, &format!("manifests/{}", a.digest))).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(req(Method::GET, &v2(name, "manifests/a")).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(req(Method::GET, &v2(name, "manifests/b")).send().unwrap().status(), StatusCode::OK);
    let r = req(Method::DELETE, &v2(name, &format!("manifests/{}", a.digest))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    let _ = b;
}

#[test]
fn deleting_a_blob() {
    let name = "manage/blob";
    let d = push_blob(name, b"delete me");
    let r = req(Method::DELETE, &v2(name, &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(req(Method::HEAD, &v2(name, &format!("blobs/{d}"))).send().unwrap().status(), StatusCode::NOT_FOUND);
    let r = req(Method::DELETE, &v2(name, &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r), "BLOB_UNKNOWN");
}

// ---- names and base --------------------------------------------------------------------------

#[test]
fn invalid_names_are_name_invalid() {
    let long = "a".repeat(256);
    for name in ["Upper/case", "a__-b", "a/-b", "a.", long.as_str()] {
        let r = req(Method::GET, &format!("/v2/{REPO}/{name}/manifests/latest")).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(error_code(r), "NAME_INVALID", "{name}");
    }
    let r = req(Method::POST, &format!("/v2/{REPO}/a//b/blobs/uploads/")).send().unwrap();
    assert!(r.status().is_client_error(), "empty path component");
}

#[test]
fn traversal_attempts_never_succeed_or_crash() {
    for path in [
        "/v2/docker-hosted/../../etc/passwd/manifests/x",
        "/v2/docker-hosted/%2e%2e/%2e%2e/etc/manifests/x",
        "/v2/docker-hosted/a/blobs/..%2f..%2fwharf.db",
        "/v2/docker-hosted/a/blobs/uploads/..%2F..%2Fwharf.db",
        "/v2/docker-hosted/a/blobs/uploads/../../../wharf.db",
        "/repository/docker-hosted/v2/../../../../etc/passwd",
        "/v2/../service/rest/v1/repositories",
    ] {
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            let status = raw_status(method, path);
            assert!((400..500).contains(&status), "{method} {path} answered {status}");
        }
    }
}

#[test]
fn the_base_endpoint_answers_200_with_credentials_and_401_without() {
    let r = req(Method::GET, "/v2/").send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
    let r = http().get(server().url("/v2/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").starts_with("Bearer realm="));
}

// ---- sha512 ----------------------------------------------------------------------------------
// What the conformance suite's sha512 runs do (conformance/run.go: "blobs-sha512" and the
// "sha512" data set, an index of two images with every digest sha512, pushed by digest only):
// blob pushes of every kind, HEAD, GET, ranges, mounts, deletes, and manifests and an index by
// sha512. The bytes are stored under their sha256, the sha512 recorded beside it.

fn sha512_of(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(<sha2::Sha512 as sha2::Digest>::digest(data)))
}

fn push_blob512(name: &str, data: &[u8]) -> String {
    let d = sha512_of(data);
    let r = req(Method::POST, &format!("{}?digest={d}", v2(name, "blobs/uploads/"))).body(data.to_vec()).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(location(&r).ends_with(&format!("/blobs/{d}")));
    d
}

/// HEAD and GET of a blob by its sha512: the length, the digest it was asked by, the bytes.
fn assert_blob512(name: &str, d: &str, data: &[u8]) {
    let r = req(Method::HEAD, &v2(name, &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "HEAD {name} {d}");
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = req(Method::GET, &v2(name, &format!("blobs/{d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().unwrap().to_vec(), data);
}

fn blob512_gone(name: &str, d: &str) -> bool {
    req(Method::HEAD, &v2(name, &format!("blobs/{d}"))).send().unwrap().status() == StatusCode::NOT_FOUND
}

#[test]
fn sha512_blobs_push_in_every_way_and_read_back() {
    let name = "sha512/blobs";
    // post only
    let data = b"sha512 post only".to_vec();
    let d = push_blob512(name, &data);
    assert_blob512(name, &d, &data);
    // Stored once, under its sha256.
    assert!(server().store_holds(&digest_of(&data)));

    // post + put
    let data = b"sha512 post then put".to_vec();
    let d = sha512_of(&data);
    let r = req(Method::POST, &v2(name, "blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = req(Method::PUT, &with_query(&location(&r), &format!("digest={d}")))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_blob512(name, &d, &data);

    // chunked, the last chunk with the PUT
    let data: Vec<u8> = (0..3067u32).map(|i| (i % 253) as u8).collect();
    let d = sha512_of(&data);
    let r = req(Method::POST, &v2(name, "blobs/uploads/")).header("Content-Length", "0").send().unwrap();
    let mut upload = location(&r);
    for (start, end) in [(0usize, 1024usize), (1024, 2048)] {
        let r = req(Method::PATCH, &upload)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", start, end - 1))
            .body(data[start..end].to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        upload = location(&r);
    }
    let r = req(Method::PUT, &with_query(&upload, &format!("digest={d}")))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "2048-3066")
        .body(data[2048..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    assert_blob512(name, &d, &data);

    // streamed PATCH, then an empty PUT
    let data = vec![7u8; 5000];
    let d = sha512_of(&data);
    let r = req(Method::POST, &v2(name, "blobs/uploads/")).send().unwrap();
    let r = req(Method::PATCH, &location(&r)).header("Content-Type", "application/octet-stream").body(data.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = req(Method::PUT, &with_query(&location(&r), &format!("digest={d}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_blob512(name, &d, &data);

    // ranges
    let r = req(Method::GET, &v2(name, &format!("blobs/{d}"))).header("Range", "bytes=100-199").send().unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), "bytes 100-199/5000");
    assert_eq!(r.bytes().unwrap().len(), 100);

    // well-known contents: empty, and `{}`
    for data in [&b""[..], &b"{}"[..]] {
        let d = push_blob512(name, data);
        assert_blob512(name, &d, data);
        let r = req(Method::DELETE, &v2(name, &format!("blobs/{d}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(blob512_gone(name, &d));
    }

    // delete: the link goes at once, and only the sha512 one
    let data = b"sha512 and sha256 both".to_vec();
    let d512 = push_blob512(name, &data);
    let d256 = push_blob(name, &data);
    let r = req(Method::DELETE, &v2(name, &format!("blobs/{d512}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(blob512_gone(name, &d512));
    assert_eq!(req(Method::HEAD, &v2(name, &format!("blobs/{d256}"))).send().unwrap().status(), StatusCode::OK);
}

#[test]
fn a_wrong_sha512_is_digest_invalid_and_stores_nothing() {
    let name = "sha512/bad";
    let data = b"the real content".to_vec();
    let claimed = sha512_of(b"something else");
    // post only
    let r = req(Method::POST, &format!("{}?digest={claimed}", v2(name, "blobs/uploads/"))).body(data.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    // post + put
    let r = req(Method::POST, &v2(name, "blobs/uploads/")).send().unwrap();
    let upload = location(&r);
    let r = req(Method::PUT, &with_query(&upload, &format!("digest={claimed}"))).body(data.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    // The session is over, and nothing was linked or stored.
    assert_eq!(req(Method::GET, &upload).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert!(blob512_gone(name, &claimed));
    assert!(blob512_gone(name, &sha512_of(&data)));
    assert!(!server().store_holds(&digest_of(&data)), "nothing published under the content's sha256");
    // A sha512 of the wrong length is malformed.
    let r = req(Method::POST, &format!("{}?digest=sha512:abcd", v2(name, "blobs/uploads/"))).body(data).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
}

#[test]
fn sha512_blobs_mount_across_images_and_repositories() {
    let data = b"mount me by sha512".to_vec();
    let d = push_blob512("sha512/mount-src", &data);
    let r = req(Method::POST, &format!("{}?mount={d}&from={REPO}/sha512/mount-src", v2("sha512/mount-dst", "blobs/uploads/"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert!(location(&r).ends_with(&format!("/blobs/{d}")));
    assert_blob512("sha512/mount-dst", &d, &data);
    let r = req(Method::POST, &format!("/v2/docker-other/sha512/mounted/blobs/uploads/?mount={d}&from={REPO}/sha512/mount-src")).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = req(Method::GET, &format!("/v2/docker-other/sha512/mounted/blobs/{d}")).send().unwrap();
    assert_eq!(r.bytes().unwrap().to_vec(), data);
    // Missing at the source: an ordinary upload session.
    let missing = sha512_of(b"never pushed anywhere");
    let r = req(Method::POST, &format!("{}?mount={missing}&from={REPO}/sha512/mount-src", v2("sha512/mount-dst", "blobs/uploads/"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The source's link deleted, the mounted one stays.
    assert_eq!(req(Method::DELETE, &v2("sha512/mount-src", &format!("blobs/{d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
    assert!(blob512_gone("sha512/mount-src", &d));
    assert_blob512("sha512/mount-dst", &d, &data);
}

/// The conformance suite's "sha512" data: an index of two images, every digest sha512, pushed
/// by digest; pulled and HEADed by digest; deleted in reverse.
#[test]
fn an_index_of_images_all_by_sha512_pushes_pulls_and_deletes() {
    let name = "sha512/index";
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    for (seed, arch) in [(3u8, "amd64"), (5, "arm64")] {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#).into_bytes();
        let layer: Vec<u8> = (0..2048u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let (cd, ld) = (push_blob512(name, &config), push_blob512(name, &layer));
        let manifest = manifest_for(&cd, config.len(), &[(&ld, layer.len())]);
        let md = sha512_of(&manifest);
        let r = put_manifest(name, &md, OCI_MANIFEST, &manifest);
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
        assert_eq!(header(&r, "docker-content-digest"), md);
        assert!(location(&r).ends_with(&format!("/manifests/{md}")));
        blobs.push((cd, config));
        blobs.push((ld, layer));
        manifests.push((md, manifest, arch));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": manifests.iter().map(|(d, m, arch)| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(), "platform": {"os": "linux", "architecture": arch}})).collect::<Vec<_>>()
    }))
    .unwrap();
    let id = sha512_of(&index);
    // Pushed as the wrong sha512: refused.
    let r = put_manifest(name, &sha512_of(b"not the index"), OCI_INDEX, &index);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "DIGEST_INVALID");
    let r = put_manifest(name, &id, OCI_INDEX, &index);
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    assert_eq!(header(&r, "docker-content-digest"), id);

    for (d, body, ct) in manifests.iter().map(|(d, m, _)| (d, m, OCI_MANIFEST)).chain([(&id, &index, OCI_INDEX)]) {
        let r = req(Method::HEAD, &v2(name, &format!("manifests/{d}"))).header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}")).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "docker-content-digest"), *d);
        assert_eq!(header(&r, "content-length"), body.len().to_string());
        let r = req(Method::GET, &v2(name, &format!("manifests/{d}"))).header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}")).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), ct);
        assert_eq!(header(&r, "docker-content-digest"), *d);
        assert_eq!(r.bytes().unwrap().to_vec(), *body);
    }
    for (d, data) in &blobs {
        assert_blob512(name, d, data);
    }
    // In use: a layer cannot go while its manifest is there, nor a manifest while its index is.
    assert_eq!(req(Method::DELETE, &v2(name, &format!("blobs/{}", blobs[1].0))).send().unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(req(Method::DELETE, &v2(name, &format!("manifests/{}", manifests[0].0))).send().unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);

    // An index naming a child that is not there is refused.
    let orphan = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha512_of(b"no such manifest"), "size": 10}]
    }))
    .unwrap();
    let r = put_manifest(name, &sha512_of(&orphan), OCI_INDEX, &orphan);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), "MANIFEST_BLOB_UNKNOWN");

    // Delete in reverse: the index, the manifests, the blobs; each gone at once.
    for d in std::iter::once(&id).chain(manifests.iter().map(|(d, _, _)| d)) {
        let r = req(Method::DELETE, &v2(name, &format!("manifests/{d}"))).send().unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "delete {d}");
        assert_eq!(req(Method::HEAD, &v2(name, &format!("manifests/{d}"))).send().unwrap().status(), StatusCode::NOT_FOUND);
    }
    for (d, _) in &blobs {
        assert_eq!(req(Method::DELETE, &v2(name, &format!("blobs/{d}"))).send().unwrap().status(), StatusCode::ACCEPTED);
        assert!(blob512_gone(name, d));
    }
}

/// A manifest whose subject is named by sha512 is listed by the referrers API under that
/// digest, itself named by the digest it was pushed by.
#[test]
fn referrers_of_a_sha512_subject_are_listed_by_their_sha512() {
    let name = "sha512/referrers";
    let config = b"{}".to_vec();
    let cd = push_blob512(name, &config);
    let subject = manifest_for(&cd, config.len(), &[]);
    let sd = sha512_of(&subject);
    assert_eq!(put_manifest(name, &sd, OCI_MANIFEST, &subject).status(), StatusCode::CREATED);
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sha512",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sd, "size": subject.len()}
    }))
    .unwrap();
    let ad = sha512_of(&artifact);
    let r = put_manifest(name, &ad, OCI_MANIFEST, &artifact);
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), sd);
    let r = req(Method::GET, &v2(name, &format!("referrers/{sd}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().unwrap();
    assert_eq!(v["manifests"], json!([{"mediaType": OCI_MANIFEST, "digest": ad, "size": artifact.len(), "artifactType": "application/vnd.example.sha512"}]));
}
