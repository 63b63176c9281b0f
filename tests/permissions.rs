//! The permission matrix: for each protocol and each of browse, read, write and delete, a user
//! who holds that privilege (and nothing else) may do it, and a user who holds every other one
//! may not; and anonymous access follows the anonymous role, on and off.
//!
//! browse and read are one right in wharf (listing and downloading go together), so the user
//! "without browse" holds neither. PyPI has no delete in its protocol: deleting goes through the
//! components API, which is for administrators.

mod common;

use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::RequestBuilder;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b)))
}

/// A user holding exactly `actions` on `format`/`repo`.
fn user_with(name: &str, format: &str, repo: &str, actions: &[&str]) {
    let admin = server().admin();
    let privileges: Vec<String> = actions.iter().map(|a| format!("nx-repository-view-{format}-{repo}-{a}")).collect();
    let r =
        admin.request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": format!("role-{name}"), "privileges": privileges})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": name, "password": "matrix-password", "roles": [format!("role-{name}")]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

fn allowed(s: StatusCode) -> bool {
    s.is_success()
}

fn denied(s: StatusCode) -> bool {
    s == StatusCode::FORBIDDEN || s == StatusCode::UNAUTHORIZED
}

/// An action's name and the request that exercises it, made as the given user.
type ActionCheck<'a> = (&'a str, &'a dyn Fn(&str) -> StatusCode);

/// For each action: the users with and without it, then the check run as each.
fn matrix(format: &str, repo: &str, actions: &[ActionCheck]) {
    for (action, check) in actions {
        let holder = format!("{format}-{action}-yes");
        let other = format!("{format}-{action}-no");
        user_with(&holder, format, repo, &[action]);
        let others: Vec<&str> = ["browse", "read", "add", "delete"]
            .into_iter()
            .filter(|a| *a != *action && !(matches!(*action, "browse" | "read") && matches!(*a, "browse" | "read")))
            .collect();
        user_with(&other, format, repo, &others);
        let no = check(&other);
        assert!(denied(no), "{format} {action}: a user without it got {no}");
        let yes = check(&holder);
        assert!(allowed(yes), "{format} {action}: a user with it got {yes}");
    }
}

fn as_user(user: &str, method: Method, path: &str) -> RequestBuilder {
    common::client().request(method, server().url(path)).basic_auth(user, Some("matrix-password"))
}

#[test]
fn docker_browse_read_write_delete() {
    let http = common::client();
    let config = b"{\"matrix\": true}";
    let r = http
        .post(server().url(&format!("/v2/docker-hosted/matrix/img/blobs/uploads/?digest={}", sha256(config))))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(&config[..])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()}, "layers": []})
    .to_string();
    let digest = sha256(manifest.as_bytes());
    let r = http
        .put(server().url("/v2/docker-hosted/matrix/img/manifests/v1"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let browse = |u: &str| as_user(u, Method::GET, "/v2/docker-hosted/matrix/img/tags/list").send().unwrap().status();
    let read = |u: &str| {
        as_user(u, Method::GET, "/v2/docker-hosted/matrix/img/manifests/v1")
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
            .status()
    };
    let write = |u: &str| as_user(u, Method::POST, "/v2/docker-hosted/matrix/img/blobs/uploads/").send().unwrap().status();
    let delete = |u: &str| as_user(u, Method::DELETE, &format!("/v2/docker-hosted/matrix/img/manifests/{digest}")).send().unwrap().status();
    matrix("docker", "docker-hosted", &[("browse", &browse), ("read", &read), ("add", &write), ("delete", &delete)]);
}

#[test]
fn pypi_browse_read_write() {
    let tmp = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
        let out = std::process::Command::new("python3").arg(script).arg(tmp.path().join(name)).arg(name).arg("1.0").output().unwrap();
        std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().next().unwrap())
    };
    let upload = |user: &str, pass: &str, name: &str| {
        let whl = make(name);
        let form = reqwest::blocking::multipart::Form::new().text(":action", "file_upload").text("name", name.to_string()).text("version", "1.0").part(
            "content",
            reqwest::blocking::multipart::Part::bytes(std::fs::read(&whl).unwrap()).file_name(whl.file_name().unwrap().to_string_lossy().to_string()),
        );
        common::client().post(server().url("/repository/pypi-hosted/")).basic_auth(user, Some(pass)).multipart(form).send().unwrap().status()
    };
    assert_eq!(upload("admin", ADMIN_PASSWORD, "matrix-pkg"), StatusCode::OK);
    let browse = |u: &str| as_user(u, Method::GET, "/repository/pypi-hosted/simple/").send().unwrap().status();
    let read = |u: &str| as_user(u, Method::GET, "/repository/pypi-hosted/packages/matrix-pkg/matrix_pkg-1.0-py3-none-any.whl").send().unwrap().status();
    let write = |u: &str| upload(u, "matrix-password", &format!("matrix-{u}"));
    matrix("pypi", "pypi-hosted", &[("browse", &browse), ("read", &read), ("add", &write)]);
}

#[test]
fn npm_browse_read_write_delete() {
    let publish = |user: &str, pass: &str, name: &str| {
        let body = common::npm::publish_body(name, "1.0.0");
        common::client().put(server().url(&common::npm::publish_path("npm-hosted", name))).basic_auth(user, Some(pass)).json(&body).send().unwrap().status()
    };

    assert_eq!(publish("admin", ADMIN_PASSWORD, "matrix-npm"), StatusCode::OK);
    let browse = |u: &str| as_user(u, Method::GET, "/repository/npm-hosted/matrix-npm").send().unwrap().status();
    let read = |u: &str| as_user(u, Method::GET, "/repository/npm-hosted/matrix-npm/-/matrix-npm-1.0.0.tgz").send().unwrap().status();
    let write = |u: &str| publish(u, "matrix-password", &format!("matrix-{u}"));
    let delete = |u: &str| {
        let rev = common::client()
            .get(server().url("/repository/npm-hosted/matrix-npm"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["_rev"]
            .as_str()
            .unwrap()
            .to_string();
        as_user(u, Method::DELETE, &format!("/repository/npm-hosted/matrix-npm/-rev/{rev}")).send().unwrap().status()
    };
    matrix("npm", "npm-hosted", &[("browse", &browse), ("read", &read), ("add", &write), ("delete", &delete)]);
}

/// A reader may send a document back only to star (the stargazers: small); one parsed whole
/// took about 18 times its size in memory, and the repository's upload limit (256 MiB) let one
/// reader's request hold gigabytes. A writer's documents (unpublish, deprecate: the whole
/// package document) may be twice the stored one, and at least 16 MiB.
#[test]
fn a_document_sent_back_is_small_from_a_reader_and_bounded_from_a_writer() {
    let admin_put = |path: &str, body: &Value| common::client().put(server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).json(body).send().unwrap();
    assert_eq!(
        admin_put(&common::npm::publish_path("npm-hosted", "reader-bound"), &common::npm::publish_body("reader-bound", "1.0.0")).status(),
        StatusCode::OK
    );
    user_with("npm-reader-bound", "npm", "npm-hosted", &["read"]);
    let doc = || {
        common::client()
            .get(server().url("/repository/npm-hosted/reader-bound"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    };
    let rev = doc()["_rev"].as_str().unwrap().to_string();
    let path = format!("/repository/npm-hosted/reader-bound/-rev/{rev}");
    let r = as_user("npm-reader-bound", Method::PUT, &path).json(&json!({"users": {"npm-reader-bound": true}})).send().unwrap();
    assert!(r.status().is_success(), "a star: {}", r.status());
    assert_eq!(doc()["users"]["npm-reader-bound"], json!(true));
    // `n` zeros in a JSON array: about 2n bytes, 18 times that once parsed.
    let zeros = |n: usize| [b"[".to_vec(), b"0,".repeat(n), b"0]".to_vec()].concat();
    let admin_put_raw = |path: &str, body: Vec<u8>| {
        common::client().put(server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Content-Type", "application/json").body(body).send().unwrap()
    };
    let big = zeros(1 << 20);
    let rev = doc()["_rev"].as_str().unwrap().to_string();
    let path = format!("/repository/npm-hosted/reader-bound/-rev/{rev}");
    let r = as_user("npm-reader-bound", Method::PUT, &path).header("Content-Type", "application/json").body(big.clone()).send().unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("larger than"));
    // A writer's body of that size is read (and refused for what it says, not for its size).
    let r = admin_put_raw(&path, big);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{}", r.text().unwrap_or_default());
    // A writer's is bounded too: by twice the stored document and a publish's document (16
    // MiB), not by the repository's upload limit (256 MiB). 17 MiB:
    let r = admin_put_raw(&path, zeros(17 << 19));
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("larger than"));
}

#[test]
fn anonymous_access_follows_the_anonymous_role_for_every_protocol() {
    let set = |privileges: Value| {
        let r = server().admin().request(Method::PUT, "/service/rest/v1/security/roles/nx-anonymous").json(&json!({"privileges": privileges})).send().unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    };
    let paths = ["/v2/docker-hosted/anon/img/tags/list", "/repository/pypi-hosted/simple/", "/repository/npm-hosted/anon-pkg"];
    let anon = |p: &str| common::client().get(server().url(p)).send().unwrap().status();
    for p in paths {
        assert_eq!(anon(p), StatusCode::UNAUTHORIZED, "off: {p}");
    }
    set(json!(["nx-repository-view-*-*-read"]));
    for p in paths {
        let s = anon(p);
        assert!(s == StatusCode::OK || s == StatusCode::NOT_FOUND, "on: {p} answered {s}");
    }
    // Reading only: writing still asks for credentials.
    assert_eq!(common::client().post(server().url("/v2/docker-hosted/anon/img/blobs/uploads/")).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(common::client().put(server().url("/repository/npm-hosted/anon-pkg")).json(&json!({})).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    set(json!([]));
    for p in paths {
        assert_eq!(anon(p), StatusCode::UNAUTHORIZED, "off again: {p}");
    }
}
