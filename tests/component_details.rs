//! The component detail (`GET /service/rest/v1/components/{id}`) of what real clients pushed:
//! a Docker image and a multi-architecture index (skopeo), an npm package with dist-tags and a
//! README (npm), a PyPI release (twine); every checksum stored, the uploader and their address,
//! and a read-only user's view of the same.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::Engine;
use common::{oci, TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The components API's id of a component (repository, name with its group, version).
fn id(repo: &str, name: &str, version: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{repo}\n{name}\n{version}"))
}

fn detail(repo: &str, name: &str, version: &str) -> Value {
    let (status, body) = server().admin().json(Method::GET, &format!("/service/rest/v1/components/{}", id(repo, name, version)), None);
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap()
}

fn skopeo_push(layout: &Path, tag: &str, image: &str) {
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let dest = format!("docker://{}/docker-hosted/{image}", server().addr);
    ok(Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false", "--dest-creds", &creds])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(&dest)
        .output()
        .expect("skopeo is installed"));
}

/// A manifest's config and layers as the layout holds them: (digest, size) each.
fn parts(dir: &Path, manifest: &Value) -> Vec<(String, i64)> {
    let mut out = vec![(manifest["config"]["digest"].as_str().unwrap().to_string(), manifest["config"]["size"].as_i64().unwrap())];
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap().to_string();
        assert_eq!(layout_blob(dir, &d).len() as i64, l["size"].as_i64().unwrap());
        out.push((d, l["size"].as_i64().unwrap()));
    }
    out
}

#[test]
fn an_image_pushed_with_skopeo_shows_its_layers_and_the_size_a_pull_fetches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let layout = oci::image(&dir, "v1", &["amd64"], 41, 50_000);
    skopeo_push(&dir, "v1", "team/detail:v1");

    let c = detail("docker-hosted", "team/detail", "v1");
    let manifest_bytes = layout_blob(&dir, &layout.top_digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let d = &c["details"];
    assert_eq!(d["manifest"]["digest"], json!(layout.top_digest), "{c}");
    assert_eq!(d["manifest"]["size"], json!(manifest_bytes.len()));
    assert_eq!(d["config"]["digest"], manifest["config"]["digest"]);
    let layers = d["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["digest"], manifest["layers"][0]["digest"]);
    assert_eq!(layers[0]["mediaType"], json!("application/vnd.oci.image.layer.v1.tar+gzip"));
    // The total is the manifest, its config and its layers: what a pull fetches, far more
    // than the manifest's few hundred bytes the tag's row holds.
    let expected: i64 = manifest_bytes.len() as i64 + parts(&dir, &manifest).iter().map(|(_, s)| s).sum::<i64>();
    assert_eq!(d["totalSize"], json!(expected), "{d}");
    assert!(expected > 50_000 && c["assets"][0]["fileSize"].as_i64().unwrap() < 2_000);
    assert_eq!(d["layersSize"], json!(manifest["layers"][0]["size"]));

    // Who pushed it, from where, and its checksum (the manifest's digest).
    let asset = &c["assets"][0];
    assert_eq!((asset["uploader"].as_str(), asset["uploaderIp"].as_str()), (Some("admin"), Some("127.0.0.1")), "{asset}");
    assert_eq!(asset["checksum"]["sha256"], json!(sha256_hex(&manifest_bytes)));

    // The list stays cheap: no details there.
    let (_, list) = server().admin().json(Method::GET, "/service/rest/v1/components?repository=docker-hosted", None);
    let listed = list["items"].as_array().unwrap().iter().find(|i| i["name"] == "team/detail").unwrap().clone();
    assert!(listed.get("details").is_none(), "{listed}");
}

#[test]
fn a_multi_architecture_index_shows_each_platform_with_its_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("multi");
    let layout = oci::image(&dir, "m1", &["amd64", "arm64"], 43, 20_000);
    skopeo_push(&dir, "m1", "team/multi:m1");

    let c = detail("docker-hosted", "team/multi", "m1");
    let d = &c["details"];
    let index_bytes = layout_blob(&dir, &layout.top_digest);
    let index: Value = serde_json::from_slice(&index_bytes).unwrap();
    assert_eq!(d["manifest"]["mediaType"], json!("application/vnd.oci.image.index.v1+json"), "{d}");
    let platforms = d["platforms"].as_array().unwrap();
    assert_eq!(platforms.iter().map(|p| p["architecture"].as_str().unwrap()).collect::<Vec<_>>(), vec!["amd64", "arm64"]);
    let mut total = index_bytes.len() as i64;
    for (p, entry) in platforms.iter().zip(index["manifests"].as_array().unwrap()) {
        assert_eq!((p["os"].as_str(), p["digest"].as_str(), p["present"].as_bool()), (Some("linux"), entry["digest"].as_str(), Some(true)), "{p}");
        let child_bytes = layout_blob(&dir, entry["digest"].as_str().unwrap());
        let child: Value = serde_json::from_slice(&child_bytes).unwrap();
        let own: i64 = child_bytes.len() as i64 + parts(&dir, &child).iter().map(|(_, s)| s).sum::<i64>();
        assert_eq!(p["totalSize"], json!(own), "a platform's total is its manifest, config and layers: {p}");
        assert_eq!(p["layers"][0]["digest"], child["layers"][0]["digest"]);
        total += own;
    }
    // The platforms share nothing here, so the image's total is the index plus each platform's.
    assert_eq!(d["totalSize"], json!(total));
}

/// An index and an image without layers, pushed over plain HTTP: sizes come from what the
/// repository holds, however the content came.
#[test]
fn an_index_pushed_over_plain_http_is_described_too() {
    let admin = server().admin();
    let put = |path: &str, ct: &str, body: Vec<u8>| {
        let r = admin.request(Method::PUT, &format!("/v2/docker-hosted/team/partial/{path}")).header("Content-Type", ct).body(body).send().unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.text().unwrap());
    };
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let r = admin
        .request(Method::POST, &format!("/v2/docker-hosted/team/partial/blobs/uploads/?digest={config_digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(config.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let image = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []
    });
    let image_bytes = serde_json::to_vec(&image).unwrap();
    let image_digest = format!("sha256:{}", sha256_hex(&image_bytes));
    put(&format!("manifests/{image_digest}"), "application/vnd.oci.image.manifest.v1+json", image_bytes.clone());
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest, "size": image_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    put("manifests/p1", "application/vnd.oci.image.index.v1+json", index_bytes.clone());

    let d = detail("docker-hosted", "team/partial", "p1")["details"].clone();
    assert_eq!(d["platforms"][0]["present"], json!(true), "{d}");
    assert_eq!(d["platforms"][0]["totalSize"], json!(image_bytes.len() + config.len()));
    assert_eq!(d["totalSize"], json!(index_bytes.len() + image_bytes.len() + config.len()));
    assert_eq!(d["platforms"][0]["variant"], Value::Null);
}

/// A client for the npm-hosted registry with its own config and cache, sending Basic auth.
fn npm(dir: &Path, cwd: &Path, args: &[&str]) -> String {
    let registry = server().url("/repository/npm-hosted/");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let npmrc = dir.join("npmrc");
    std::fs::write(&npmrc, format!("registry={registry}\n{}:_auth={auth}\n", registry.trim_start_matches("http:"))).unwrap();
    ok(Command::new("npm")
        .args(args)
        .current_dir(cwd)
        .env("npm_config_userconfig", &npmrc)
        .env("npm_config_cache", dir.join("cache"))
        .env("npm_config_update_notifier", "false")
        .env_remove("npm_config_registry")
        .output()
        .expect("npm runs"))
}

fn npm_package(dir: &Path, version: &str, readme: &str) -> std::path::PathBuf {
    let p = dir.join(version);
    std::fs::create_dir_all(&p).unwrap();
    let manifest = json!({
        "name": "detail-pkg", "version": version, "description": "a package for the detail page", "license": "MIT",
        "dependencies": {"left-pad": "^1.3.0", "is-odd": "^3.0.1"}
    });
    std::fs::write(p.join("package.json"), manifest.to_string()).unwrap();
    std::fs::write(p.join("README.md"), readme).unwrap();
    std::fs::write(p.join("index.js"), "module.exports = 1;\n").unwrap();
    p
}

#[test]
fn an_npm_version_shows_the_dist_tags_naming_it_its_readme_and_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let readme = "# detail-pkg\n\n<script>alert('not HTML')</script>\n";
    let v1 = npm_package(tmp.path(), "1.0.0", readme);
    npm(tmp.path(), &v1, &["publish"]);
    let v2 = npm_package(tmp.path(), "2.0.0-beta.1", &format!("# detail-pkg 2\n\n{}", "long line of text\n".repeat(5000)));
    npm(tmp.path(), &v2, &["publish", "--tag", "beta"]);
    npm(tmp.path(), tmp.path(), &["dist-tag", "add", "detail-pkg@1.0.0", "stable"]);

    let c = detail("npm-hosted", "detail-pkg", "1.0.0");
    let d = &c["details"];
    let mut tags: Vec<&str> = d["distTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort();
    assert_eq!(tags, vec!["latest", "stable"], "{d}");
    assert_eq!(
        (d["description"].as_str(), d["license"].as_str(), d["dependencyCount"].as_u64()),
        (Some("a package for the detail page"), Some("MIT"), Some(2))
    );
    assert_eq!(d["readme"]["text"].as_str(), Some(readme), "the README as written, markup and all (the console shows it as text): {d}");
    assert_eq!(d["readme"]["truncated"], json!(false));

    // Every checksum of the tarball, checked against the bytes npm serves.
    let asset = &c["assets"][0];
    let tgz = server().admin().request(Method::GET, "/repository/npm-hosted/detail-pkg/-/detail-pkg-1.0.0.tgz").send().unwrap().bytes().unwrap();
    assert_eq!(asset["checksum"]["sha256"], json!(sha256_hex(&tgz)), "{asset}");
    assert_eq!(asset["checksum"]["sha1"], json!(hex::encode(<sha1::Sha1 as sha1::Digest>::digest(&tgz))));
    assert_eq!(asset["checksum"]["sha512"], json!(hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&tgz))));
    assert_eq!(d["shasum"], asset["checksum"]["sha1"]);
    assert_eq!((asset["uploader"].as_str(), asset["uploaderIp"].as_str()), (Some("admin"), Some("127.0.0.1")));

    let beta = detail("npm-hosted", "detail-pkg", "2.0.0-beta.1")["details"].clone();
    assert_eq!(beta["distTags"], json!(["beta"]));
    assert_eq!(beta["latest"], json!("1.0.0"));
    let text = beta["readme"]["text"].as_str().unwrap_or_default();
    assert!(beta["readme"]["truncated"] == json!(true) && text.len() == 64 << 10 && text.starts_with("# detail-pkg 2"), "a long README is cut and says so");
}

/// `twin` and `@side/twin`, both 1.0.0: two components with two ids (the scope is in the id),
/// each fetched and deleted as itself, not as the first one of that short name.
#[test]
fn a_scoped_npm_package_and_an_unscoped_one_of_the_same_name_are_two_components() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["twin", "@side/twin"] {
        let p = tmp.path().join(name.replace('/', "_"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("package.json"), json!({"name": name, "version": "1.0.0", "description": format!("I am {name}")}).to_string()).unwrap();
        std::fs::write(p.join("index.js"), "module.exports = 1;\n").unwrap();
        npm(tmp.path(), &p, &["publish", "--access", "public"]);
    }
    let (_, list) = server().admin().json(Method::GET, "/service/rest/v1/search?repository=npm-hosted&name=twin", None);
    let items = list["items"].as_array().unwrap();
    let ids: Vec<(Option<&str>, &str)> = items.iter().map(|c| (c["group"].as_str(), c["id"].as_str().unwrap())).collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert_ne!(ids[0].1, ids[1].1, "one id each");
    assert_eq!(id("npm-hosted", "@side/twin", "1.0.0"), ids.iter().find(|(g, _)| *g == Some("@side")).unwrap().1);

    let scoped = detail("npm-hosted", "@side/twin", "1.0.0");
    assert_eq!((scoped["group"].as_str(), scoped["name"].as_str()), (Some("@side"), Some("twin")));
    assert_eq!(scoped["details"]["description"], json!("I am @side/twin"));
    assert_eq!(detail("npm-hosted", "twin", "1.0.0")["details"]["description"], json!("I am twin"));

    let (status, body) = server().admin().json(Method::DELETE, &format!("/service/rest/v1/components/{}", id("npm-hosted", "@side/twin", "1.0.0")), None);
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let gone = server().admin().request(Method::GET, "/repository/npm-hosted/@side%2ftwin").send().unwrap();
    assert!(gone.status() == StatusCode::NOT_FOUND || gone.json::<Value>().unwrap()["versions"].get("1.0.0").is_none(), "the scoped version went");
    let kept: Value = server().admin().request(Method::GET, "/repository/npm-hosted/twin").send().unwrap().json().unwrap();
    assert!(kept["versions"].get("1.0.0").is_some(), "the unscoped one stays: {kept}");
    let (status, _) = server().admin().json(Method::GET, &format!("/service/rest/v1/components/{}", id("npm-hosted", "@side/twin", "1.0.0")), None);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn make_dist(dir: &Path, name: &str, version: &str, requires: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let text = ok(Command::new("python3").arg(script).arg(dir).arg(name).arg(version).args(requires).output().unwrap());
    let mut lines = text.lines();
    (lines.next().unwrap().into(), lines.next().unwrap().into())
}

/// md5 and BLAKE2b-256 of a file, as Python (and so twine) computes them.
fn python_digests(p: &Path) -> (String, String) {
    let code = "import hashlib,sys;d=open(sys.argv[1],'rb').read();print(hashlib.md5(d).hexdigest(), hashlib.blake2b(d, digest_size=32).hexdigest())";
    let out = ok(Command::new("python3").arg("-c").arg(code).arg(p).output().unwrap());
    let mut it = out.split_whitespace();
    (it.next().unwrap().to_string(), it.next().unwrap().to_string())
}

#[test]
fn a_pypi_release_uploaded_with_twine_shows_its_summary_requires_python_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = make_dist(tmp.path(), "detail-project", "0.4", &["requests>=2"]);
    ok(Command::new("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            &server().url("/repository/pypi-hosted/"),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ])
        .args([&whl, &sdist])
        .output()
        .expect("twine is installed"));

    let c = detail("pypi-hosted", "detail-project", "0.4");
    let d = &c["details"];
    assert_eq!((d["summary"].as_str(), d["requiresPython"].as_str()), (Some("test package detail-project"), Some(">=3.8")), "{d}");
    assert_eq!(d["requiresDist"], json!(["requests>=2"]), "read from the wheel's core metadata");
    let files = d["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        let path = if f["filename"].as_str().unwrap().ends_with(".whl") { &whl } else { &sdist };
        let bytes = std::fs::read(path).unwrap();
        let (md5, blake2) = python_digests(path);
        assert_eq!(f["checksum"], json!({"sha256": sha256_hex(&bytes), "blake2b_256": blake2}), "{f}");
        // twine sends md5 no more; had it, it would be checked and kept too.
        assert_ne!(f["checksum"]["md5"], json!(md5));
        assert_eq!((f["size"].as_u64(), f["yanked"].clone(), f["uploader"].as_str()), (Some(bytes.len() as u64), Value::Null, Some("admin")));
    }
    let asset = c["assets"].as_array().unwrap().iter().find(|a| a["path"].as_str().unwrap().ends_with(".whl")).unwrap().clone();
    assert_eq!(asset["uploaderIp"], json!("127.0.0.1"));
    assert!(asset["checksum"]["blake2b_256"].is_string(), "{asset}");

    // Yanked, the file says why.
    let r = server()
        .admin()
        .request(Method::POST, &format!("/service/rest/v1/components/{}/yank", id("pypi-hosted", "detail-project", "0.4")))
        .json(&json!({"reason": "broken"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let d = detail("pypi-hosted", "detail-project", "0.4")["details"].clone();
    assert!(d["files"].as_array().unwrap().iter().all(|f| f["yanked"] == json!("broken")), "{d}");
}

/// A digest a client sends is checked before it is kept: a wrong md5 refuses the upload.
#[test]
fn a_wrong_md5_digest_refuses_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = make_dist(tmp.path(), "detail-md5", "1.0", &[]);
    let bytes = std::fs::read(&whl).unwrap();
    let (md5, _) = python_digests(&whl);
    let upload = |md5: &str| {
        let form = reqwest::blocking::multipart::Form::new()
            .text(":action", "file_upload")
            .text("name", "detail-md5")
            .text("version", "1.0")
            .text("filetype", "bdist_wheel")
            .text("md5_digest", md5.to_string())
            .part("content", reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(whl.file_name().unwrap().to_string_lossy().to_string()));
        server().admin().request(Method::POST, "/repository/pypi-hosted/").multipart(form).send().unwrap().status()
    };
    assert_eq!(upload(&"0".repeat(32)), StatusCode::BAD_REQUEST);
    assert_eq!(upload(&md5), StatusCode::OK);
    let c = detail("pypi-hosted", "detail-md5", "1.0");
    assert_eq!(c["assets"][0]["checksum"]["md5"], json!(md5), "{c}");
    assert_eq!(c["details"]["files"][0]["checksum"]["md5"], json!(md5));

    // twine sends the digests before the file, and they are computed as it arrives; a client
    // that sends them after it is checked all the same (a pass over the staged file).
    let (whl, _) = make_dist(tmp.path(), "detail-md5-late", "1.0", &[]);
    let bytes = std::fs::read(&whl).unwrap();
    let (md5, blake2) = python_digests(&whl);
    let upload_late = |md5: &str, blake2: &str| {
        let form = reqwest::blocking::multipart::Form::new()
            .text(":action", "file_upload")
            .text("name", "detail-md5-late")
            .text("version", "1.0")
            .part("content", reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(whl.file_name().unwrap().to_string_lossy().to_string()))
            .text("md5_digest", md5.to_string())
            .text("blake2_256_digest", blake2.to_string());
        server().admin().request(Method::POST, "/repository/pypi-hosted/").multipart(form).send().unwrap().status()
    };
    assert_eq!(upload_late(&md5, &"0".repeat(64)), StatusCode::BAD_REQUEST);
    assert_eq!(upload_late(&"0".repeat(32), &blake2), StatusCode::BAD_REQUEST);
    assert_eq!(upload_late(&md5, &blake2), StatusCode::OK);
    let c = detail("pypi-hosted", "detail-md5-late", "1.0");
    assert_eq!(c["assets"][0]["checksum"]["md5"], json!(md5), "{c}");
    assert_eq!(c["assets"][0]["checksum"]["blake2b_256"], json!(blake2), "{c}");
}

/// A user who may only read the repository sees the same detail.
#[test]
fn a_reader_sees_the_detail() {
    let admin = server().admin();
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = make_dist(tmp.path(), "detail-read", "1.0", &[]);
    ok(Command::new("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            &server().url("/repository/pypi-hosted/"),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
        ])
        .arg(&whl)
        .output()
        .unwrap());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": "detail-readers", "privileges": ["nx-repository-view-pypi-pypi-hosted-read"]}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "detail-reader", "password": "detail-reader-pw", "roles": ["detail-readers"]}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let url = server().url(&format!("/service/rest/v1/components/{}", id("pypi-hosted", "detail-read", "1.0")));
    let r = reqwest::blocking::Client::new().get(&url).basic_auth("detail-reader", Some("detail-reader-pw")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().unwrap();
    assert_eq!(body["details"]["summary"], json!("test package detail-read"));
    let other = server().url(&format!("/service/rest/v1/components/{}", id("npm-hosted", "detail-pkg", "1.0.0")));
    let r = reqwest::blocking::Client::new().get(&other).basic_auth("detail-reader", Some("detail-reader-pw")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not a repository they may read: as if it did not exist");
}

/// A proxy that fetched an index and one of its platforms only (this server is its own
/// upstream, path-routed as another wharf would be): the other platform is listed without
/// layers, and the total counts what the proxy holds.
#[test]
fn a_proxy_lists_a_platform_it_has_not_fetched_without_its_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("half");
    let layout = oci::image(&dir, "h1", &["amd64", "arm64"], 47, 10_000);
    skopeo_push(&dir, "h1", "team/halfway:h1");
    let admin = server().admin();
    let r = admin
        .request(Method::POST, "/service/rest/v1/repositories/docker/proxy")
        .json(&json!({
            "name": "docker-cache", "online": true,
            "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
            "proxy": {"remoteUrl": server().base, "contentMaxAge": -1, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": false, "timeToLive": 1},
            "httpClient": {"blocked": false, "autoBlock": false,
                "authentication": {"type": "username", "username": "admin", "password": ADMIN_PASSWORD}},
            "docker": {"v1Enabled": false, "forceBasicAuth": false},
            "dockerProxy": {"indexType": "REGISTRY"}
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let index: Value = serde_json::from_slice(&layout_blob(&dir, &layout.top_digest)).unwrap();
    let amd64 = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    for (reference, accept) in [("h1", "application/vnd.oci.image.index.v1+json"), (amd64.as_str(), "application/vnd.oci.image.manifest.v1+json")] {
        let r =
            admin.request(Method::GET, &format!("/v2/docker-cache/docker-hosted/team/halfway/manifests/{reference}")).header("Accept", accept).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{reference}: {}", r.text().unwrap());
    }

    let d = detail("docker-cache", "docker-hosted/team/halfway", "h1")["details"].clone();
    let platforms = d["platforms"].as_array().unwrap();
    assert_eq!((platforms[0]["architecture"].as_str(), platforms[0]["present"].as_bool()), (Some("amd64"), Some(true)), "{d}");
    assert_eq!((platforms[1]["architecture"].as_str(), platforms[1]["present"].as_bool()), (Some("arm64"), Some(false)));
    assert!(platforms[1].get("layers").is_none() && platforms[1].get("totalSize").is_none(), "{d}");
    let child_bytes = layout_blob(&dir, &amd64);
    let child: Value = serde_json::from_slice(&child_bytes).unwrap();
    let own = child_bytes.len() as i64 + parts(&dir, &child).iter().map(|(_, s)| s).sum::<i64>();
    assert_eq!(platforms[0]["totalSize"], json!(own));
    assert_eq!(d["totalSize"], json!(layout_blob(&dir, &layout.top_digest).len() as i64 + own));
}
