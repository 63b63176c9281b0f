//! Search and browse in Nexus's shapes (`/service/rest/v1/search`, `/search/assets`,
//! `/search/assets/download`) and wharf's `/search/names`, over PyPI content uploaded with
//! twine, npm packages published as npm sends them and Docker tags pushed over the registry
//! API: filters, keyword, pre-releases, checksums, sorting by version, the "latest" download
//! scripts use, server-side paging across names and repositories, groups, and who sees what.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;

const TAGS: usize = 120;

/// One server with the content every test reads (and nothing a test changes).
fn server() -> &'static TestServer {
    static S: OnceLock<(TestServer, tempfile::TempDir)> = OnceLock::new();
    &S.get_or_init(|| {
        let s = TestServer::start();
        let dir = tempfile::tempdir().unwrap();
        seed(&s, dir.path());
        (s, dir)
    })
    .0
}

fn api_as(s: &TestServer, who: Option<(&str, &str)>, path: &str) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new().get(s.url(path));
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    let res = r.send().unwrap();
    let status = res.status().as_u16();
    let text = res.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(path: &str) -> Value {
    let (status, v) = api_as(server(), Some(("admin", ADMIN_PASSWORD)), path);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// `name@version (repository)` of each item of a search answer, in the answer's order.
fn labels(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = match c["group"].as_str() {
                Some(g) => format!("{g}/{}", c["name"].as_str().unwrap()),
                None => c["name"].as_str().unwrap().to_string(),
            };
            format!("{name}@{} ({})", c["version"].as_str().unwrap(), c["repository"].as_str().unwrap())
        })
        .collect()
}

fn set(v: &Value) -> BTreeSet<String> {
    labels(v).into_iter().collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A 400 in the admin API's shape whose id names `field`.
fn refused(path: &str, field: &str) {
    let (status, v) = api_as(server(), Some(("admin", ADMIN_PASSWORD)), path);
    assert_eq!(status, 400, "{path}: {v}");
    assert_eq!(v[0]["id"].as_str().unwrap_or_default(), format!("PARAMETER {field}"), "{path}: {v}");
}

// ---- content ------------------------------------------------------------------------------

fn create(s: &TestServer, format: &str, kind: &str, body: Value) {
    let (status, v) = s.admin().json(Method::POST, &format!("/service/rest/v1/repositories/{format}/{kind}"), Some(body));
    assert_eq!(status.as_u16(), 201, "{v}");
}

fn hosted(name: &str) -> Value {
    json!({"name": name, "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}})
}

fn seed(s: &TestServer, dir: &Path) {
    create(s, "pypi", "hosted", hosted("pypi-a"));
    create(s, "pypi", "hosted", hosted("pypi-b"));
    create(
        s,
        "pypi",
        "group",
        json!({"name": "pypi-all", "online": true, "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["pypi-a", "pypi-b"]}}),
    );
    create(s, "npm", "hosted", hosted("npm-a"));
    let mut docker = hosted("docker-a");
    docker["docker"] = json!({"forceBasicAuth": true});
    create(s, "docker", "hosted", docker);

    let mut files = Vec::new();
    for v in ["1.9", "1.10", "2.0rc1"] {
        files.extend(dist(&dir.join(format!("searchpkg-{v}")), "searchpkg", v));
    }
    twine(s, "pypi-a", &files);
    twine(s, "pypi-b", &dist(&dir.join("otherpkg-1.0"), "otherpkg", "1.0"));

    npm_publish(s, "@acme/searchpkg", "1.0.0");
    npm_publish(s, "@acme/searchpkg", "1.2.0-beta.1");
    npm_publish(s, "left-pad-x", "0.1.0");

    let config = docker_blob(s, "app/search", br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1}, "layers": []})
    .to_string();
    for i in 0..TAGS {
        docker_manifest(s, "app/search", &format!("t{i:03}"), &manifest);
    }
    docker_blob(s, "app/zzz", br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    docker_manifest(s, "app/zzz", "only", &manifest);
}

fn dist(dir: &Path, name: &str, version: &str) -> Vec<PathBuf> {
    let (wheel, sdist) = common::pypi::dist(dir, name, version, &[]);
    vec![wheel, sdist]
}

fn twine(s: &TestServer, repo: &str, files: &[PathBuf]) {
    common::pypi::uploaded(common::pypi::twine(&format!("{}/repository/{repo}/", s.base), "admin", ADMIN_PASSWORD, files));
}

/// A publish as npm sends it.
fn npm_publish(s: &TestServer, name: &str, version: &str) {
    let r = s.admin().request(Method::PUT, &common::npm::publish_path("npm-a", name)).json(&common::npm::publish_body(name, version)).send().unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
}

fn docker_blob(s: &TestServer, image: &str, data: &[u8]) -> (String, usize) {
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
    let r = s.admin().request(Method::POST, &format!("/v2/docker-a/{image}/blobs/uploads/?digest={digest}")).body(data.to_vec()).send().unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
    (digest, data.len())
}

fn docker_manifest(s: &TestServer, image: &str, tag: &str, manifest: &str) {
    let r = s
        .admin()
        .request(Method::PUT, &format!("/v2/docker-a/{image}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn filters_keyword_and_prerelease_narrow_across_formats() {
    let by_name = get("/service/rest/v1/search?name=searchpkg");
    assert_eq!(
        set(&by_name),
        strings(&[
            "searchpkg@1.9 (pypi-a)",
            "searchpkg@1.10 (pypi-a)",
            "searchpkg@2.0rc1 (pypi-a)",
            "@acme/searchpkg@1.0.0 (npm-a)",
            "@acme/searchpkg@1.2.0-beta.1 (npm-a)"
        ])
    );
    // Each component carries its files, with their sha256 and a working download URL.
    let pypi = by_name["items"].as_array().unwrap().iter().find(|c| c["version"] == "1.9").unwrap();
    assert_eq!(pypi["assets"].as_array().unwrap().len(), 2, "{pypi}");

    assert_eq!(set(&get("/service/rest/v1/search?name=searchpkg&format=npm")).len(), 2);
    assert_eq!(
        set(&get("/service/rest/v1/search?name=search*&version=1.*")),
        strings(&["searchpkg@1.9 (pypi-a)", "searchpkg@1.10 (pypi-a)", "@acme/searchpkg@1.0.0 (npm-a)", "@acme/searchpkg@1.2.0-beta.1 (npm-a)"])
    );
    assert_eq!(set(&get("/service/rest/v1/search?prerelease=true")), strings(&["searchpkg@2.0rc1 (pypi-a)", "@acme/searchpkg@1.2.0-beta.1 (npm-a)"]));
    assert_eq!(set(&get("/service/rest/v1/search?q=SEARCHPKG%202.0")), strings(&["searchpkg@2.0rc1 (pypi-a)"]));
    assert_eq!(set(&get("/service/rest/v1/search?npm.scope=acme")).len(), 2);
    assert_eq!(set(&get("/service/rest/v1/search?group=@acme&version=1.0.0")), strings(&["@acme/searchpkg@1.0.0 (npm-a)"]));
    assert_eq!(set(&get("/service/rest/v1/search?docker.imageName=app/zzz")), strings(&["app/zzz@only (docker-a)"]));
    assert_eq!(set(&get("/service/rest/v1/search?name=nothing-like-this")).len(), 0);

    // A checksum finds its one file; /search/assets lists only that file.
    let file = &pypi["assets"][0];
    let sha = file["checksum"]["sha256"].as_str().unwrap();
    let found = get(&format!("/service/rest/v1/search/assets?sha256={sha}"));
    let paths: Vec<&str> = found["items"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec![file["path"].as_str().unwrap()]);
}

#[test]
fn sort_by_version_is_newest_first_and_download_fetches_the_latest() {
    let v = get("/service/rest/v1/search?repository=pypi-a&name=searchpkg&sort=version");
    assert_eq!(labels(&v), vec!["searchpkg@2.0rc1 (pypi-a)", "searchpkg@1.10 (pypi-a)", "searchpkg@1.9 (pypi-a)"], "PEP 440 order, newest first");
    let v = get("/service/rest/v1/search?repository=pypi-a&name=searchpkg&sort=version&direction=asc");
    assert_eq!(labels(&v)[0], "searchpkg@1.9 (pypi-a)");
    let v = get("/service/rest/v1/search?name=searchpkg&format=npm&sort=version");
    assert_eq!(labels(&v), vec!["@acme/searchpkg@1.2.0-beta.1 (npm-a)", "@acme/searchpkg@1.0.0 (npm-a)"], "semver order");

    // "The latest release": a 302 to a file of 1.10, whose bytes are what search says.
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let latest = client
        .get(server().url("/service/rest/v1/search/assets/download?repository=pypi-a&name=searchpkg&sort=version&prerelease=false"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(latest.status().as_u16(), 302);
    let location = latest.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("searchpkg-1.10"), "{location}");
    let body = client.get(&location).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap();
    let listed = get("/service/rest/v1/search/assets?repository=pypi-a&name=searchpkg&version=1.10");
    let asset =
        listed["items"].as_array().unwrap().iter().find(|a| a["downloadUrl"].as_str() == Some(location.as_str())).expect("the download is one of 1.10's files");
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), asset["checksum"]["sha256"].as_str().unwrap());

    // One match needs no sort; several without sort are refused by name; none is a 404.
    let one = client
        .get(server().url(&format!("/service/rest/v1/search/assets/download?sha256={}", asset["checksum"]["sha256"].as_str().unwrap())))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!((one.status().as_u16(), one.headers()["location"].to_str().unwrap()), (302, location.as_str()));
    refused("/service/rest/v1/search/assets/download?repository=pypi-a&name=searchpkg", "sort");
    let (status, _) = api_as(server(), Some(("admin", ADMIN_PASSWORD)), "/service/rest/v1/search/assets/download?name=nothing-like-this");
    assert_eq!(status, 404);
}

#[test]
fn pages_walk_every_component_once_in_order_across_names() {
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/service/rest/v1/search?repository=docker-a&continuationToken={t}"),
            None => "/service/rest/v1/search?repository=docker-a".to_string(),
        };
        let v = get(&path);
        sizes.push(v["items"].as_array().unwrap().len());
        seen.extend(labels(&v));
        match v["continuationToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(sizes, vec![50, 50, TAGS + 1 - 100], "pages of 50, the last one crossing into the next image");
    let mut want: Vec<String> = (0..TAGS).map(|i| format!("app/search@t{i:03} (docker-a)")).collect();
    want.push("app/zzz@only (docker-a)".into());
    assert_eq!(seen, want);

    // The components list of one repository pages the same walk, 100 at a time.
    let first = get("/service/rest/v1/components?repository=docker-a");
    assert_eq!(first["items"].as_array().unwrap().len(), 100);
    let rest = get(&format!("/service/rest/v1/components?repository=docker-a&continuationToken={}", first["continuationToken"].as_str().unwrap()));
    assert_eq!(rest["items"].as_array().unwrap().len(), TAGS + 1 - 100);
    assert!(rest["continuationToken"].is_null());

    // Browse's first level: one row per image with its tag count; a keyword narrows it.
    let names = get("/service/rest/v1/search/names?repository=docker-a");
    let rows: Vec<(String, u64)> =
        names["items"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap().to_string(), r["components"].as_u64().unwrap())).collect();
    assert_eq!(rows, vec![("app/search".to_string(), TAGS as u64), ("app/zzz".to_string(), 1)]);
    let names = get("/service/rest/v1/search/names?repository=docker-a&q=t11");
    assert_eq!(names["items"][0]["components"], 10, "t110..t119");
}

#[test]
fn a_group_searches_its_members_under_their_own_names() {
    assert_eq!(
        set(&get("/service/rest/v1/search?repository=pypi-all")),
        strings(&["searchpkg@1.9 (pypi-a)", "searchpkg@1.10 (pypi-a)", "searchpkg@2.0rc1 (pypi-a)", "otherpkg@1.0 (pypi-b)"])
    );
    let names = get("/service/rest/v1/search/names?repository=pypi-all");
    let rows: Vec<(&str, &str)> = names["items"].as_array().unwrap().iter().map(|r| (r["repository"].as_str().unwrap(), r["name"].as_str().unwrap())).collect();
    assert_eq!(rows, vec![("pypi-a", "searchpkg"), ("pypi-b", "otherpkg")]);
}

#[test]
fn search_shows_only_what_the_caller_may_read() {
    let s = server();
    let (status, v) = s.admin().json(
        Method::POST,
        "/service/rest/v1/security/roles",
        Some(json!({"id": "b-reader", "name": "b-reader", "description": "t", "privileges": ["nx-repository-view-pypi-pypi-b-read"], "roles": []})),
    );
    assert_eq!(status.as_u16(), 200, "{v}");
    let (status, v) = s.admin().json(
        Method::POST,
        "/service/rest/v1/security/users",
        Some(json!({"userId": "b-user", "firstName": "B", "lastName": "User", "emailAddress": "b@example.test", "password": "b-user-password", "status": "active", "roles": ["b-reader"]})),
    );
    assert_eq!(status.as_u16(), 200, "{v}");
    let me = Some(("b-user", "b-user-password"));
    let (status, v) = api_as(s, me, "/service/rest/v1/search");
    assert_eq!(status, 200, "{v}");
    assert_eq!(set(&v), strings(&["otherpkg@1.0 (pypi-b)"]));
    // A group shows only the members they may read; another repository is not there at all.
    let (status, _) = api_as(s, me, "/service/rest/v1/search?repository=pypi-all");
    assert_eq!(status, 404, "the group itself is not theirs to read");
    let (status, _) = api_as(s, me, "/service/rest/v1/search?repository=pypi-a");
    assert_eq!(status, 404);
    let (status, v) = api_as(s, me, "/service/rest/v1/search/assets/download?name=searchpkg&sort=version");
    assert_eq!(status, 404, "{v}");
    // Without credentials, and nothing granted to anonymous: sign in first.
    let (status, _) = api_as(s, None, "/service/rest/v1/search?name=searchpkg");
    assert_eq!(status, 401);
}

#[test]
fn bad_parameters_are_refused_by_name() {
    server();
    refused("/service/rest/v1/search?sort=size", "sort");
    refused("/service/rest/v1/search?sort=name&direction=up", "direction");
    refused("/service/rest/v1/search?continuationToken=not-ours", "continuationToken");
    refused("/service/rest/v1/search?sha256=abc", "sha256");
    refused("/service/rest/v1/search?name=a&docker.imageName=b", "name");
    refused("/service/rest/v1/search/names?repository=docker-a&sort=name", "sort");
    let (status, v) = api_as(server(), Some(("admin", ADMIN_PASSWORD)), "/service/rest/v1/search?colour=blue");
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("colour"), "the unknown parameter is named: {v}");
}

/// A token narrowed to one repository reads that repository through the search, components
/// and assets APIs, and nothing else (another repository is "not found", as one that is not
/// there).
#[test]
fn a_token_narrowed_to_one_repository_sees_only_it() {
    let r = reqwest::blocking::Client::new()
        .post(server().url("/service/rest/v1/security/tokens"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"name": "only-pypi-a", "repository": "pypi-a", "readOnly": true}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let token: Value = r.json().unwrap();
    let secret = token["token"].as_str().or(token["secret"].as_str()).unwrap_or_else(|| panic!("{token}")).to_string();
    let who = Some(("admin", secret.as_str()));
    let (status, v) = api_as(server(), who, "/service/rest/v1/search?name=*pkg*");
    assert_eq!(status, 200, "{v}");
    let found = set(&v);
    assert!(!found.is_empty() && found.iter().all(|l| l.ends_with("(pypi-a)")), "{found:?}");
    for path in ["/service/rest/v1/components?repository=pypi-a", "/service/rest/v1/assets?repository=pypi-a"] {
        let (status, v) = api_as(server(), who, path);
        assert_eq!(status, 200, "{path}: {v}");
        assert!(!v["items"].as_array().unwrap().is_empty(), "{path}: {v}");
    }
    for path in ["/service/rest/v1/components?repository=pypi-b", "/service/rest/v1/assets?repository=npm-a", "/service/rest/v1/search?repository=pypi-b"] {
        let (status, v) = api_as(server(), who, path);
        let empty = status == 200 && v["items"].as_array().is_some_and(|i| i.is_empty());
        assert!(status == 404 || empty, "{path}: {status} {v}");
    }
    // Through the group, only the member the token names.
    let (status, v) = api_as(server(), who, "/service/rest/v1/search?repository=pypi-all");
    assert!(status == 404 || set(&v).iter().all(|l| l.ends_with("(pypi-a)")), "{status} {v}");
}
