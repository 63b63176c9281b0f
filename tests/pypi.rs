//! PyPI hosted repositories with the real clients: twine uploads, pip installs and downloads
//! (cold, `--no-cache-dir`), `--require-hashes`, the PEP 691 JSON API, and bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::pypi::pip;
use common::pypi::{dist, dist_with_payload, LISTED_METADATA_PAYLOAD};
use common::{SpawnGuarded, TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn repo_url() -> String {
    format!("{}/repository/pypi-hosted/", server().base)
}

fn index_url() -> String {
    common::pypi::index_url(server(), "pypi-hosted")
}

fn twine(files: &[&Path], user: &str, password: &str) -> Output {
    common::pypi::twine(&repo_url(), user, password, files)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn http() -> Client {
    common::client()
}

/// A project's page as PEP 691 JSON.
fn json_page(project: &str) -> Value {
    http()
        .get(format!("{}simple/{project}/", repo_url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn sha256_of(p: &Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(p).unwrap()))
}

#[test]
fn twine_uploads_and_pip_installs_packages_that_depend_on_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_whl, a_sdist) = dist(&tmp.path().join("a"), "wharf-test-lib", "1.0", &[]);
    let (b_whl, b_sdist) = dist(&tmp.path().join("b"), "wharf-test-app", "2.1", &["wharf-test-lib>=1.0"]);
    ok(twine(&[&a_whl, &a_sdist, &b_whl, &b_sdist], "admin", ADMIN_PASSWORD));
    let target = tmp.path().join("site");
    ok(pip(&["install", "--no-cache-dir", "--index-url", &index_url(), "--target", target.to_str().unwrap(), "wharf-test-app"]));
    let app = std::fs::read_to_string(target.join("wharf_test_app/__init__.py")).unwrap();
    assert!(app.contains("2.1"));
    assert!(target.join("wharf_test_lib/__init__.py").exists(), "the dependency came from wharf too");
    // pip download, cold: the wheels come back byte for byte.
    let dl = tmp.path().join("dl");
    ok(pip(&["download", "--no-cache-dir", "--index-url", &index_url(), "-d", dl.to_str().unwrap(), "wharf-test-app==2.1"]));
    assert_eq!(sha256_of(&dl.join("wharf_test_app-2.1-py3-none-any.whl")), sha256_of(&b_whl));
    assert_eq!(sha256_of(&dl.join("wharf_test_lib-1.0-py3-none-any.whl")), sha256_of(&a_whl));
    // The sdist, by its URL (pip would build it, which needs a build backend from an index).
    let r = http().get(format!("{}packages/wharf-test-lib/wharf_test_lib-1.0.tar.gz", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(r.bytes().unwrap())), sha256_of(&a_sdist));
}

#[test]
fn pip_install_with_require_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(&tmp.path().join("h"), "wharf-hashed", "0.3", &[]);
    ok(twine(&[&whl], "admin", ADMIN_PASSWORD));
    let req = tmp.path().join("requirements.txt");
    std::fs::write(&req, format!("wharf-hashed==0.3 --hash=sha256:{}\n", sha256_of(&whl))).unwrap();
    let target = tmp.path().join("site");
    ok(pip(&["install", "--no-cache-dir", "--require-hashes", "--index-url", &index_url(), "--target", target.to_str().unwrap(), "-r", req.to_str().unwrap()]));
    std::fs::write(&req, format!("wharf-hashed==0.3 --hash=sha256:{}\n", "0".repeat(64))).unwrap();
    let wrong = pip(&[
        "install",
        "--no-cache-dir",
        "--require-hashes",
        "--index-url",
        &index_url(),
        "--target",
        tmp.path().join("site2").to_str().unwrap(),
        "-r",
        req.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success(), "a wrong hash must stop pip");
}

#[test]
fn the_simple_api_speaks_html_and_json_and_normalizes_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = dist(&tmp.path().join("n"), "Wharf_Norm.Pkg", "1.0", &[]);
    ok(twine(&[&whl, &sdist], "admin", ADMIN_PASSWORD));
    let get = |path: &str, accept: &str| {
        http().get(format!("{}{path}", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Accept", accept).send().unwrap()
    };
    let r = get("simple/wharf-norm-pkg/", "application/vnd.pypi.simple.v1+json");
    assert_eq!(r.headers()["content-type"], "application/vnd.pypi.simple.v1+json");
    let v: Value = r.json().unwrap();
    assert_eq!(v["name"], "wharf-norm-pkg");
    assert_eq!(v["meta"]["api-version"], "1.1");
    assert_eq!(v["versions"], serde_json::json!(["1.0"]));
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let wheel = files.iter().find(|f| f["filename"].as_str().unwrap().ends_with(".whl")).unwrap();
    assert_eq!(wheel["hashes"]["sha256"], sha256_of(&whl));
    assert_eq!(wheel["requires-python"], ">=3.8", "from twine's requires_python field");
    assert_eq!(wheel["size"], std::fs::metadata(&whl).unwrap().len());
    assert!(wheel["upload-time"].as_str().unwrap().ends_with('Z'));
    // Any spelling of the name is the same project.
    for spelling in ["Wharf_Norm.Pkg", "WHARF-NORM-PKG", "wharf.norm_pkg"] {
        let r = get(&format!("simple/{spelling}/"), "text/html");
        assert_eq!(r.status(), StatusCode::OK, "{spelling}");
        let html = r.text().unwrap();
        assert!(html.contains(&format!("#sha256={}", sha256_of(&whl))), "{html}");
    }
    let index = get("simple/", "application/vnd.pypi.simple.v1+json").json::<Value>().unwrap();
    // The index keeps the name as uploaded (twine sends `Wharf-Norm.Pkg`); it normalizes to the project.
    let listed: Vec<String> =
        index["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_lowercase().replace(['_', '.'], "-")).collect();
    assert!(listed.contains(&"wharf-norm-pkg".to_string()), "{index}");
    assert_eq!(get("simple/no-such-project/", "text/html").status(), StatusCode::NOT_FOUND);
}

/// A twine-like upload with chosen fields.
fn raw_upload(user: Option<(&str, &str)>, filename: &str, data: &[u8], name: &str, version: &str, sha256: Option<String>) -> reqwest::blocking::Response {
    let mut form = reqwest::blocking::multipart::Form::new()
        .text(":action", "file_upload")
        .text("protocol_version", "1")
        .text("name", name.to_string())
        .text("version", version.to_string());
    if let Some(s) = sha256 {
        form = form.text("sha256_digest", s);
    }
    form = form.part("content", reqwest::blocking::multipart::Part::bytes(data.to_vec()).file_name(filename.to_string()));
    let mut r = http().post(repo_url()).multipart(form);
    if let Some((u, p)) = user {
        r = r.basic_auth(u, Some(p));
    }
    r.send().unwrap()
}

#[test]
fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let admin = Some(("admin", ADMIN_PASSWORD));
    let data = b"not really a wheel".to_vec();
    let good = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    // Wrong digest.
    let r = raw_upload(admin, "wharf_bad-1.0-py3-none-any.whl", &data, "wharf-bad", "1.0", Some("0".repeat(64)));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("does not match"));
    // Wrong md5 (twine sends both digests).
    let form = reqwest::blocking::multipart::Form::new()
        .text(":action", "file_upload")
        .text("name", "wharf-bad")
        .text("version", "1.0")
        .text("sha256_digest", good.clone())
        .text("md5_digest", "0".repeat(32))
        .part("content", reqwest::blocking::multipart::Part::bytes(data.clone()).file_name("wharf_bad-1.0.tar.gz"));
    let r = http().post(repo_url()).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("md5_digest"));
    // Unknown file type.
    let r = raw_upload(admin, "wharf_bad-1.0.exe", &data, "wharf-bad", "1.0", Some(good.clone()));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A file of another project or version.
    let r = raw_upload(admin, "other-1.0-py3-none-any.whl", &data, "wharf-bad", "1.0", Some(good.clone()));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A path in the file name.
    let r = raw_upload(admin, "../wharf_bad-1.0.tar.gz", &data, "wharf-bad", "1.0", Some(good.clone()));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // An sdist whose (pre-2.2) PKG-INFO names another project, and a wheel without metadata:
    // stored unchecked under the form's name before.
    let sdist = {
        let pkg_info = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n";
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
        let mut h = tar::Header::new_gnu();
        h.set_size(pkg_info.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "wharf_bad-1.0/PKG-INFO", &pkg_info[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap()
    };
    let wheel = {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        z.start_file("wharf_bad/__init__.py", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, b"print('hi')\n").unwrap();
        z.finish().unwrap().into_inner()
    };
    for (file, bytes, says) in [("wharf_bad-1.0.tar.gz", &sdist, "requests 2.31.0"), ("wharf_bad-1.0-py3-none-any.whl", &wheel, "has no metadata")] {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let r = raw_upload(admin, file, bytes, "wharf-bad", "1.0", Some(sha));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{file}");
        let text = r.text().unwrap();
        assert!(text.contains(says), "{file}: {text}");
    }
    // Nothing of it is listed.
    let r = http().get(format!("{}simple/wharf-bad/", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // No credentials, wrong credentials.
    let r = raw_upload(None, "wharf_bad-1.0-py3-none-any.whl", &data, "wharf-bad", "1.0", Some(good.clone()));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let r = raw_upload(Some(("admin", "wrong")), "wharf_bad-1.0-py3-none-any.whl", &data, "wharf-bad", "1.0", Some(good.clone()));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Anonymous reads are refused too (anonymousRead is off).
    let r = http().get(format!("{}simple/", repo_url())).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn an_upload_over_the_repository_limit_is_refused_and_leaves_nothing() {
    let admin = server().admin();
    let body = serde_json::json!({"name": "pypi-small", "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow_once"}, "pypi": {"uploadMaxSize": 1}});
    let r = admin.request(reqwest::Method::POST, "/service/rest/v1/repositories/pypi/hosted").json(&body).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let bad = serde_json::json!({"name": "pypi-small2", "storage": {"blobStoreName": "default"}, "pypi": {"uploadMaxSize": 0}});
    let r = admin.request(reqwest::Method::POST, "/service/rest/v1/repositories/pypi/hosted").json(&bad).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("pypi.uploadMaxSize"));
    let url = format!("{}/repository/pypi-small/", server().base);
    let upload = |size: usize| {
        let form = reqwest::blocking::multipart::Form::new()
            .text(":action", "file_upload")
            .text("name", "wharf-big")
            .text("version", "1.0")
            .part("content", reqwest::blocking::multipart::Part::bytes(vec![b'x'; size]).file_name("wharf_big-1.0.tar.gz"));
        http().post(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().unwrap()
    };
    let r = upload(2 << 20);
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().unwrap().contains("1 MiB"));
    let r = http().get(format!("{url}simple/wharf-big/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Other tests stage only small files at the same time: nothing near a MiB may be left.
    let staging = server().staging_dir();
    assert!(staging.is_dir());
    let big: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().filter(|e| e.metadata().map(|m| m.len() > 512 << 10).unwrap_or(false)).collect();
    assert!(big.is_empty(), "the refused upload's staging file is gone: {big:?}");
    let v: Value = admin.request(reqwest::Method::GET, "/service/rest/v1/repositories/pypi/hosted/pypi-small").send().unwrap().json().unwrap();
    assert_eq!(v["pypi"]["uploadMaxSize"], 1);
}

#[test]
fn a_file_cannot_be_uploaded_twice_and_a_normalized_name_is_the_same_project() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(&tmp.path().join("o"), "wharf-once", "1.0", &[]);
    ok(twine(&[&whl], "admin", ADMIN_PASSWORD));
    let again = twine(&[&whl], "admin", ADMIN_PASSWORD);
    assert!(!again.status.success(), "pypi-hosted is allow_once: no redeploy");
    let text = format!("{}{}", String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&again.stderr));
    assert!(text.contains("400") || text.contains("already exists"), "{text}");
    // Another spelling of the same project adds a version to it.
    let (whl2, _) = dist(&tmp.path().join("o2"), "Wharf_Once", "1.1", &[]);
    ok(twine(&[&whl2], "admin", ADMIN_PASSWORD));
    let v: Value = json_page("wharf-once");
    assert_eq!(v["versions"], serde_json::json!(["1.0", "1.1"]));
    // Nor under another spelling of the same file of the release: the wheel with its name in
    // capitals or its version as 1.0.0, a second sdist as .zip beside the .tar.gz.
    let (_, sdist) = dist(&tmp.path().join("o3"), "wharf-once", "1.2", &[]);
    ok(twine(&[&sdist], "admin", ADMIN_PASSWORD));
    let wheel_bytes = std::fs::read(&whl).unwrap();
    for (filename, version, bytes) in [
        ("WHARF_ONCE-1.0-py3-none-any.whl", "1.0", wheel_bytes.clone()),
        (
            "wharf_once-1.0.0-py3-none-any.whl",
            "1.0.0",
            zip_bytes(&[("wharf_once-1.0.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: wharf-once\nVersion: 1.0.0\n".to_vec())]),
        ),
        ("wharf_once-1.2.zip", "1.2", zip_bytes(&[("wharf_once-1.2/PKG-INFO", b"Metadata-Version: 2.1\nName: wharf-once\nVersion: 1.2\n".to_vec())])),
    ] {
        let r = upload_zip(filename, "wharf-once", version, bytes);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{filename}");
        assert!(r.text().unwrap().contains("already exists"), "{filename}");
    }
    let v: Value = json_page("wharf-once");
    assert_eq!(v["files"].as_array().unwrap().len(), 3, "{v}");
}

fn zip_bytes(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn upload_zip(filename: &str, name: &str, version: &str, data: Vec<u8>) -> reqwest::blocking::Response {
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    raw_upload(Some(("admin", ADMIN_PASSWORD)), filename, &data, name, version, Some(sha))
}

#[test]
fn core_metadata_is_extracted_and_served_per_pep_658() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist_with_payload(&tmp.path().join("m"), "wharf-meta", "1.0", &["wharf-test-lib"], LISTED_METADATA_PAYLOAD);
    ok(twine(&[&whl], "admin", ADMIN_PASSWORD));
    let v: Value = json_page("wharf-meta");
    let file = &v["files"][0];
    let url = format!("{}.metadata", file["url"].as_str().unwrap());
    let meta = http().get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap();
    let text = String::from_utf8(meta.to_vec()).unwrap();
    assert!(text.contains("Name: wharf-meta") && text.contains("Requires-Dist: wharf-test-lib"), "{text}");
    assert_eq!(file["core-metadata"]["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&meta)));
    let html = http().get(format!("{}simple/wharf-meta/", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().text().unwrap();
    assert!(html.contains("data-core-metadata=\"sha256="), "{html}");
    // HEADs say what the GETs would send.
    let file_url = file["url"].as_str().unwrap();
    for (u, accept) in [
        (format!("{}simple/wharf-meta/", repo_url()), "application/vnd.pypi.simple.v1+json"),
        (format!("{}simple/wharf-meta/", repo_url()), "text/html"),
        (file_url.to_string(), "*/*"),
        (url.clone(), "*/*"),
        (format!("{}pypi/wharf-meta/json", repo_url()), "*/*"),
    ] {
        common::assert_head_matches_get(&u, &[("Accept", accept)]);
    }
    // Byte ranges, for a resumed download or a lazy wheel.
    common::assert_ranges_served(file_url, &std::fs::read(&whl).unwrap());
}

#[test]
fn an_unchanged_page_is_revalidated_with_a_304() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = dist(&tmp.path().join("e"), "wharf-etag", "1.0", &[]);
    ok(twine(&[&whl], "admin", ADMIN_PASSWORD));
    let url = format!("{}simple/wharf-etag/", repo_url());
    let fetch = |accept: &str, etag: Option<&str>| {
        let mut r = http().get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Accept", accept);
        if let Some(e) = etag {
            r = r.header("If-None-Match", e);
        }
        r.send().unwrap()
    };
    let json_type = "application/vnd.pypi.simple.v1+json";
    let first = fetch(json_type, None);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let html_etag = fetch("text/html", None).headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(etag, html_etag, "each representation has its own");
    let again = fetch(json_type, Some(&etag));
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().unwrap().is_empty());
    assert_eq!(fetch(json_type, Some(&format!("W/{etag}, \"other\""))).status(), StatusCode::NOT_MODIFIED);
    assert_eq!(fetch(json_type, Some(&html_etag)).status(), StatusCode::OK);
    assert_eq!(fetch(json_type, Some("*")).status(), StatusCode::NOT_MODIFIED);
    assert_eq!(fetch(json_type, Some(&etag)).headers()["vary"], "Accept", "a 304 says what it varies on");
    let typed = fetch("application/vnd.pypi.simple.v1+html", None).headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(typed, html_etag, "the same HTML under another type is another representation");
    // A new file changes the page: the old copy is not current any more.
    ok(twine(&[&sdist], "admin", ADMIN_PASSWORD));
    let changed = fetch(json_type, Some(&etag));
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(changed.json::<Value>().unwrap()["files"].as_array().unwrap().len(), 2);
}

#[test]
fn a_small_wheel_is_listed_without_its_metadata_which_stays_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = dist(&tmp.path().join("s"), "wharf-small", "1.0", &["wharf-test-lib"]);
    assert!(std::fs::metadata(&whl).unwrap().len() < 16 << 10);
    ok(twine(&[&whl, &sdist], "admin", ADMIN_PASSWORD));
    let v: Value = json_page("wharf-small");
    let files = v["files"].as_array().unwrap();
    let wheel = files.iter().find(|f| f["filename"].as_str().unwrap().ends_with(".whl")).unwrap();
    assert_eq!(wheel["core-metadata"], false, "pip would fetch it and then the wheel anyway: {wheel}");
    assert_eq!(wheel["dist-info-metadata"], false, "{wheel}");
    let html = http().get(format!("{}simple/wharf-small/", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().text().unwrap();
    assert!(!html.contains("data-core-metadata") && !html.contains("data-dist-info-metadata"), "{html}");
    // Still served to a client that asks, and the JSON API still reads it.
    let meta = http().get(format!("{}.metadata", wheel["url"].as_str().unwrap())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(meta.status(), StatusCode::OK);
    assert!(meta.text().unwrap().contains("Requires-Dist: wharf-test-lib"));
    let info: Value = http().get(format!("{}pypi/wharf-small/json", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().json().unwrap();
    assert_eq!(info["info"]["requires_dist"], serde_json::json!(["wharf-test-lib"]), "{info}");
}

#[test]
fn malicious_archives_are_refused_not_unpacked() {
    let meta = b"Metadata-Version: 2.1\nName: wharf-evil\nVersion: 1.0\n".to_vec();
    // A zip bomb: 8 MiB of spaces in METADATA compress to a few KiB.
    let bomb = zip_bytes(&[("wharf_evil-1.0.dist-info/METADATA", vec![b' '; 8 << 20])]);
    assert!(bomb.len() < 200_000);
    let r = upload_zip("wharf_evil-1.0-py3-none-any.whl", "wharf-evil", "1.0", bomb);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("zip bomb"));
    // Entries that name paths outside the archive.
    let traversal = zip_bytes(&[("../../etc/cron.d/evil", b"x".to_vec()), ("wharf_evil-1.0.dist-info/METADATA", meta.clone())]);
    let r = upload_zip("wharf_evil-1.0-py3-none-any.whl", "wharf-evil", "1.0", traversal);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("outside the archive"));
    // Not an archive at all.
    let r = upload_zip("wharf_evil-1.0-py3-none-any.whl", "wharf-evil", "1.0", b"garbage".to_vec());
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Metadata of another project.
    let other = zip_bytes(&[("wharf_evil-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: requests\nVersion: 1.0\n".to_vec())]);
    let r = upload_zip("wharf_evil-1.0-py3-none-any.whl", "wharf-evil", "1.0", other);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // None of it became a project.
    let r = http().get(format!("{}simple/wharf-evil/", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A well-formed one is accepted.
    let good = zip_bytes(&[("wharf_evil/__init__.py", b"".to_vec()), ("wharf_evil-1.0.dist-info/METADATA", meta)]);
    assert_eq!(upload_zip("wharf_evil-1.0-py3-none-any.whl", "wharf-evil", "1.0", good).status(), StatusCode::OK);
}

#[test]
fn uv_installs_from_a_hosted_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, _) = dist(&tmp.path().join("l"), "wharf-uv-lib", "0.1", &[]);
    let (app, _) = dist(&tmp.path().join("a"), "wharf-uv-app", "0.2", &["wharf-uv-lib==0.1"]);
    ok(twine(&[&lib, &app], "admin", ADMIN_PASSWORD));
    let target = tmp.path().join("site");
    let out = Command::new("uv")
        .args(["pip", "install", "--no-cache", "--index-url", &index_url(), "--target", target.to_str().unwrap(), "wharf-uv-app"])
        .env_remove("UV_INDEX_URL")
        .env_remove("PIP_FIND_LINKS")
        .output()
        .expect("uv is installed (the test command installs it into target/test-venv)");
    assert!(out.status.success(), "uv: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(target.join("wharf_uv_app/__init__.py")).unwrap().contains("0.2"));
    assert!(target.join("wharf_uv_lib/__init__.py").exists());
}

fn components(repo: &str) -> Vec<Value> {
    let v: Value = http()
        .get(format!("{}/service/rest/v1/components?repository={repo}", server().base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["items"].as_array().unwrap().clone()
}

fn component_id(name: &str, version: &str) -> String {
    components("pypi-hosted").into_iter().find(|c| c["name"] == name && c["version"] == version).expect("component listed")["id"].as_str().unwrap().to_string()
}

#[test]
fn releases_are_components_that_can_be_yanked_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v1_sdist) = dist(&tmp.path().join("1"), "wharf-yank", "1.0", &[]);
    let (v2, _) = dist(&tmp.path().join("2"), "wharf-yank", "2.0", &[]);
    ok(twine(&[&v1, &v1_sdist, &v2], "admin", ADMIN_PASSWORD));
    let c = components("pypi-hosted").into_iter().find(|c| c["name"] == "wharf-yank" && c["version"] == "1.0").unwrap();
    assert_eq!(c["format"], "pypi");
    assert_eq!(c["assets"].as_array().unwrap().len(), 2, "wheel and sdist");
    assert!(c["assets"][0]["downloadUrl"].as_str().unwrap().contains("/repository/pypi-hosted/packages/wharf-yank/"));

    // Yank 2.0: pip then picks 1.0 unless 2.0 is pinned.
    let id2 = component_id("wharf-yank", "2.0");
    let r = http()
        .post(format!("{}/service/rest/v1/components/{id2}/yank", server().base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"reason": "broken build"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let html = http().get(format!("{}simple/wharf-yank/", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().text().unwrap();
    assert!(html.contains("data-yanked=\"broken build\""), "{html}");
    let site = tmp.path().join("site");
    ok(pip(&["install", "--no-cache-dir", "--index-url", &index_url(), "--target", site.to_str().unwrap(), "wharf-yank"]));
    assert!(std::fs::read_to_string(site.join("wharf_yank/__init__.py")).unwrap().contains("1.0"), "the yanked release was skipped");
    let pinned = tmp.path().join("pinned");
    ok(pip(&["install", "--no-cache-dir", "--index-url", &index_url(), "--target", pinned.to_str().unwrap(), "wharf-yank==2.0"]));
    assert!(std::fs::read_to_string(pinned.join("wharf_yank/__init__.py")).unwrap().contains("2.0"), "an exact pin still gets it");

    // Delete 1.0, then 2.0: the project disappears from the index.
    let id1 = component_id("wharf-yank", "1.0");
    assert_eq!(
        http().delete(format!("{}/service/rest/v1/components/{id1}", server().base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let v: Value = json_page("wharf-yank");
    assert_eq!(v["versions"], serde_json::json!(["2.0"]));
    assert_eq!(v["files"][0]["yanked"], "broken build");
    assert_eq!(
        http().delete(format!("{}/service/rest/v1/components/{id2}", server().base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        http().get(format!("{}simple/wharf-yank/", repo_url())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let index: Value = http()
        .get(format!("{}simple/", repo_url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(!index["projects"].as_array().unwrap().iter().any(|p| p["name"] == "wharf-yank"), "{index}");
    assert_eq!(
        http().delete(format!("{}/service/rest/v1/components/{id2}", server().base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Only administrators.
    assert_eq!(http().get(format!("{}/service/rest/v1/components?repository=pypi-hosted", server().base)).send().unwrap().status(), StatusCode::UNAUTHORIZED);
}

/// Warehouse's JSON API, as Poetry, pip-audit, dependabot and renovate read it: the latest
/// release (the highest final one), every release's files with their digests, the release's
/// core metadata in `info`, one version's answer, yanked releases, a group serving its member's.
#[test]
fn the_json_api_answers_in_warehouse_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let mut uploaded = Vec::new();
    for version in ["1.0", "1.10", "2.0rc1"] {
        let (wheel, sdist) = dist(tmp.path(), "json-api-pkg", version, &["requests>=2", "idna; extra == 'x'"]);
        ok(twine(&[&wheel, &sdist], "admin", ADMIN_PASSWORD));
        uploaded.push((version, wheel, sdist));
    }
    let get = |path: &str| {
        let r = http().get(format!("{}{path}", repo_url().trim_end_matches('/'))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        let status = r.status();
        (status, if status.is_success() { r.json::<Value>().unwrap() } else { Value::Null })
    };
    let (status, doc) = get("/pypi/JSON_API.pkg/json");
    assert_eq!(status, StatusCode::OK);
    let info = &doc["info"];
    assert_eq!(info["version"], "1.10", "the highest final release, by PEP 440 (not 2.0rc1, not text order): {info}");
    assert_eq!(info["name"], "json-api-pkg");
    assert_eq!(info["summary"], "test package json-api-pkg");
    assert_eq!(info["requires_python"], ">=3.8");
    assert_eq!(info["requires_dist"], serde_json::json!(["requests>=2", "idna; extra == 'x'"]));
    let releases = doc["releases"].as_object().unwrap();
    assert_eq!(releases.keys().cloned().collect::<std::collections::BTreeSet<_>>(), ["1.0", "1.10", "2.0rc1"].map(String::from).into());
    let urls = doc["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2, "the wheel and the sdist of 1.10: {doc}");
    let (_, wheel, sdist) = &uploaded[1];
    for (file, kind, py) in [(wheel, "bdist_wheel", "py3"), (sdist, "sdist", "source")] {
        let name = file.file_name().unwrap().to_str().unwrap();
        let u = urls.iter().find(|u| u["filename"] == name).unwrap_or_else(|| panic!("{name} in {doc}"));
        assert_eq!(u["digests"]["sha256"], sha256_of(file));
        assert_eq!(u["size"], std::fs::metadata(file).unwrap().len());
        assert_eq!((u["packagetype"].as_str().unwrap(), u["python_version"].as_str().unwrap()), (kind, py));
        assert_eq!(u["yanked"], false);
        // The URL serves the very file.
        let body = http().get(u["url"].as_str().unwrap()).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap();
        assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)), sha256_of(file));
    }

    // One version: its files, no `releases`; versions compare as PEP 440 says.
    let (status, one) = get("/pypi/json-api-pkg/2.0rc1/json");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["info"]["version"], "2.0rc1");
    assert!(one.get("releases").is_none(), "{one}");
    assert_eq!(get("/pypi/json-api-pkg/1.0.0/json").1["info"]["version"], "1.0");
    assert_eq!(get("/pypi/json-api-pkg/9.9/json").0, StatusCode::NOT_FOUND);
    assert_eq!(get("/pypi/no-such-project/json").0, StatusCode::NOT_FOUND);

    // A yanked release is not the latest any more, and says so.
    let id = component_id("json-api-pkg", "1.10");
    let r = server()
        .admin()
        .request(reqwest::Method::POST, &format!("/service/rest/v1/components/{id}/yank"))
        .json(&serde_json::json!({"reason": "broken"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    assert_eq!(get("/pypi/json-api-pkg/json").1["info"]["version"], "1.0");
    let yanked = get("/pypi/json-api-pkg/1.10/json").1;
    assert_eq!((yanked["info"]["yanked"].clone(), yanked["info"]["yanked_reason"].clone()), (serde_json::json!(true), serde_json::json!("broken")), "{yanked}");

    // Through a group: the member's answer under the group's URLs.
    let r = server()
        .admin()
        .request(reqwest::Method::POST, "/service/rest/v1/repositories/pypi/group")
        .json(&serde_json::json!({"name": "pypi-json-group", "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["pypi-hosted"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let via = http().get(server().url("/repository/pypi-json-group/pypi/json-api-pkg/json")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(via.status(), StatusCode::OK);
    let via: Value = via.json().unwrap();
    assert_eq!(via["info"]["summary"], "test package json-api-pkg");
    assert!(via["urls"][0]["url"].as_str().unwrap().contains("/repository/pypi-json-group/packages/json-api-pkg/"), "{via}");
    // Readers only.
    assert_eq!(http().get(server().url("/repository/pypi-hosted/pypi/json-api-pkg/json")).send().unwrap().status(), StatusCode::UNAUTHORIZED);
}

/// pip-audit reads only `https://pypi.org/pypi/<project>/<version>/json`: behind a front door
/// that answers for pypi.org as a reverse proxy in front of wharf would (tests/pypi), with the
/// client's credentials from its netrc, it audits what wharf holds and names as not found what
/// wharf does not have (an unknown version, an unknown project).
#[test]
fn pip_audit_audits_against_the_json_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, sdist) = dist(tmp.path(), "audited-pkg", "1.3", &[]);
    ok(twine(&[&wheel, &sdist], "admin", ADMIN_PASSWORD));

    let certs = tmp.path().join("certs");
    ok(Command::new(env!("CARGO_BIN_EXE_wharf")).args(["cert", "--name", "pypi.org", "--out"]).arg(&certs).output().unwrap());
    let port = common::free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/pypi_org_front.py");
    let mut front = common::guarded("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(certs.join("server.crt"))
        .arg(certs.join("server.key"))
        .arg(repo_url())
        .stdout(std::process::Stdio::null())
        .spawn_guarded()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the front door did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let netrc = tmp.path().join("netrc");
    std::fs::write(&netrc, format!("machine pypi.org login admin password {ADMIN_PASSWORD}\n")).unwrap();
    let requirements = tmp.path().join("requirements.txt");
    std::fs::write(&requirements, "audited-pkg==1.3\naudited-pkg-absent==0.1\n").unwrap();
    let audit = |requirements: &Path| {
        Command::new("pip-audit")
            .args(["--no-deps", "--disable-pip", "--vulnerability-service", "pypi", "--format", "json", "--progress-spinner", "off", "--requirement"])
            .arg(requirements)
            .arg("--cache-dir")
            .arg(tmp.path().join("cache"))
            .env("HTTPS_PROXY", format!("http://127.0.0.1:{port}"))
            .env("REQUESTS_CA_BUNDLE", certs.join("ca.crt"))
            .env("NETRC", &netrc)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .expect("pip-audit is installed (the test command installs it into target/test-venv)")
    };
    let report: Value = serde_json::from_str(&ok(audit(&requirements))).unwrap();
    let deps = report["dependencies"].as_array().unwrap();
    let of = |name: &str| deps.iter().find(|d| d["name"] == name).unwrap_or_else(|| panic!("{name} in {report}")).clone();
    let found = of("audited-pkg");
    assert_eq!((found["version"].as_str(), found.get("skip_reason")), (Some("1.3"), None), "audited from wharf's answer: {report}");
    assert_eq!(found["vulns"], serde_json::json!([]));
    let absent = of("audited-pkg-absent");
    assert!(absent["skip_reason"].as_str().unwrap_or("").contains("not found"), "{report}");

    // A version wharf does not hold is not found either: the answer is per release.
    std::fs::write(&requirements, "audited-pkg==9.9\n").unwrap();
    let report: Value = serde_json::from_str(&ok(audit(&requirements))).unwrap();
    assert!(report["dependencies"][0]["skip_reason"].as_str().unwrap_or("").contains("not found"), "{report}");
    let _ = front.kill();
    let _ = front.wait();
}
