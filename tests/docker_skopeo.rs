//! The real `skopeo` against a wharf server: push and pull round trips (single- and
//! multi-architecture), path-routed and on a repository's own port, with and without
//! credentials, tag listing and deletion, and cross-repository mounts.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{oci, TestServer, ADMIN_PASSWORD};
use serde_json::json;

struct Env {
    server: TestServer,
    /// The `docker-port` repository's own port.
    port: u16,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let server = TestServer::start();
        let port = common::free_port();
        let admin = server.admin();
        admin.create_docker_hosted(json!({
            "name": "docker-port", "online": true,
            "storage": {"blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "allow"},
            "docker": {"v1Enabled": false, "forceBasicAuth": false, "httpPort": port}
        }));
        admin.create_docker_hosted(json!({
            "name": "docker-public", "online": true, "anonymousRead": true,
            "storage": {"blobStoreName": "default", "writePolicy": "ALLOW"},
            "docker": {"forceBasicAuth": false}
        }));
        admin.create_docker_hosted(json!({
            "name": "docker-other", "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": {}
        }));
        Env { server, port }
    })
}

fn creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed (the test command installs it)")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "skopeo failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stdout).unwrap()
}

fn push(layout: &Path, tag: &str, dest: &str, all: bool) -> Output {
    let src = format!("oci:{}:{tag}", layout.display());
    let creds = creds();
    let mut args = vec!["copy", "--dest-tls-verify=false", "--dest-creds", &creds];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dest]);
    skopeo(&args)
}

fn raw_digest(image: &str, with_creds: bool) -> String {
    let creds = creds();
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if with_creds {
        args.extend(["--creds", &creds]);
    }
    args.push(image);
    let raw = ok(skopeo(&args));
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes())))
}

fn tags(image: &str) -> Vec<String> {
    let creds = creds();
    let out = ok(skopeo(&["list-tags", "--tls-verify=false", "--creds", &creds, image]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

/// Pulls `image` (all platforms) into a fresh layout and returns what its tag points at.
fn pull_digest(image: &str, dir: &Path) -> String {
    let creds = creds();
    let dest = format!("oci:{}:pulled", dir.display());
    ok(skopeo(&["copy", "--all", "--src-tls-verify=false", "--src-creds", &creds, image, &dest]));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn single_arch_image_round_trips_with_identical_digest_on_the_main_port() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64"], 1, 200_000);
    let image = format!("docker://{}/docker-hosted/team/single:1.0", e.server.addr);
    ok(push(&tmp.path().join("src"), "v1", &image, false));
    assert_eq!(raw_digest(&image, true), layout.top_digest);
    assert_eq!(pull_digest(&image, &tmp.path().join("back")), layout.top_digest);
}

#[test]
fn multi_arch_image_round_trips_with_identical_digest_on_its_own_port() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64", "arm64", "s390x"], 2, 100_000);
    // No repository segment on the repository's own port.
    let image = format!("docker://127.0.0.1:{}/team/multi:2", e.port);
    ok(push(&tmp.path().join("src"), "v1", &image, true));
    assert_eq!(raw_digest(&image, true), layout.top_digest);
    let back = tmp.path().join("back");
    assert_eq!(pull_digest(&image, &back), layout.top_digest);
    for blob in &layout.blobs {
        let hex = blob.strip_prefix("sha256:").unwrap();
        assert!(back.join("blobs/sha256").join(hex).exists(), "blob {blob} came back");
    }
    // The same repository is reachable path-routed on the main port too.
    let via_main = format!("docker://{}/docker-port/team/multi:2", e.server.addr);
    assert_eq!(raw_digest(&via_main, true), layout.top_digest);
}

#[test]
fn without_credentials_push_and_pull_are_refused_unless_anonymous_read_is_granted() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let layout = oci::image(&src, "v1", &["amd64"], 3, 10_000);
    let private = format!("docker://{}/docker-hosted/team/private:1", e.server.addr);
    let anon_push = skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:v1", src.display()), &private]);
    assert!(!anon_push.status.success(), "anonymous push must fail");
    let wrong = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", "admin:wrong", &format!("oci:{}:v1", src.display()), &private]);
    assert!(!wrong.status.success(), "push with a wrong password must fail");
    ok(push(&src, "v1", &private, false));
    let anon_pull = skopeo(&["inspect", "--raw", "--tls-verify=false", &private]);
    assert!(!anon_pull.status.success(), "anonymous pull of a private repository must fail");

    let public = format!("docker://{}/docker-public/team/open:1", e.server.addr);
    ok(push(&src, "v1", &public, false));
    assert_eq!(raw_digest(&public, false), layout.top_digest, "anonymous pull where anonymousRead is granted");
    let anon_push_public =
        skopeo(&["copy", "--dest-tls-verify=false", &format!("oci:{}:v1", src.display()), &format!("docker://{}/docker-public/team/open:2", e.server.addr)]);
    assert!(!anon_push_public.status.success(), "anonymous read does not mean anonymous write");
}

#[test]
fn tags_are_listed_and_deleting_one_image_keeps_the_others() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let a = oci::image(&tmp.path().join("a"), "v1", &["amd64"], 4, 5_000);
    let b = oci::image(&tmp.path().join("b"), "v1", &["amd64"], 5, 5_000);
    let base = format!("docker://{}/docker-hosted/team/tagged", e.server.addr);
    ok(push(&tmp.path().join("a"), "v1", &format!("{base}:1.0"), false));
    ok(push(&tmp.path().join("a"), "v1", &format!("{base}:latest"), false));
    ok(push(&tmp.path().join("b"), "v1", &format!("{base}:2.0"), false));
    assert_eq!(tags(&base), vec!["1.0", "2.0", "latest"]);
    // skopeo deletes by digest: image b (tag 2.0) goes, image a and its two tags stay.
    let creds = creds();
    ok(skopeo(&["delete", "--tls-verify=false", "--creds", &creds, &format!("{base}:2.0")]));
    assert_eq!(tags(&base), vec!["1.0", "latest"]);
    assert_eq!(raw_digest(&format!("{base}:1.0"), true), a.top_digest);
    assert_ne!(a.top_digest, b.top_digest);
}

#[test]
fn copies_between_repositories_keep_digests_and_share_blobs() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64"], 6, 300_000);
    let first = format!("docker://{}/docker-hosted/team/mounted:1", e.server.addr);
    ok(push(&tmp.path().join("src"), "v1", &first, false));
    for dest in [format!("docker://{}/docker-hosted/team/mounted-copy:1", e.server.addr), format!("docker://{}/docker-other/team/mounted:1", e.server.addr)] {
        let creds = creds();
        let out =
            ok(skopeo(&["--debug", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", &creds, "--dest-creds", &creds, &first, &dest]));
        let _ = out;
        assert_eq!(raw_digest(&dest, true), layout.top_digest);
    }
    // Identical content is kept once: one object per layer digest in the shared store.
    for blob in &layout.blobs {
        assert!(e.server.store_holds(blob), "{blob} is in the shared store");
    }
}

#[test]
fn cross_repository_mount_is_what_the_client_asks_for() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    oci::image(&tmp.path().join("src"), "v1", &["amd64"], 7, 50_000);
    let from = format!("docker://{}/docker-hosted/team/mount-src:1", e.server.addr);
    ok(push(&tmp.path().join("src"), "v1", &from, false));
    let creds = creds();
    let dest = format!("docker://{}/docker-other/team/mount-dst:1", e.server.addr);
    let out = skopeo(&["--debug", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", &creds, "--dest-creds", &creds, &from, &dest]);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("mount="), "skopeo tried a cross-repository mount:\n{log}");
    assert!(log.contains("from=docker-hosted"), "mounting from the path-routed source name:\n{log}");
}
