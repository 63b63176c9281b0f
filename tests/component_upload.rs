//! Nexus's component upload (`POST /service/rest/v1/components?repository=...`) driven by curl
//! as a Nexus script calls it: wheels, sdists and npm tarballs go in, and the real pip and npm
//! install them from the repository; every refusal (no such repository, a group, a proxy,
//! Docker, a wrong field, a corrupt file, a version already there, a reader, read-only mode)
//! answers as Nexus or the format's own client would be answered, and leaves nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine;
use common::pypi::pip;
use common::{TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

/// Tests that freeze the server or count staged files hold this exclusively; the others share it.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner())
}

const ADMIN: Option<(&str, &str)> = Some(("admin", ADMIN_PASSWORD));

/// `curl -u user:pass -X POST "<base>/service/rest/v1/components<query>" -F ...`: the status
/// and the body.
fn curl(user: Option<(&str, &str)>, query: &str, form: &[String]) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"]);
    if let Some((u, p)) = user {
        c.arg("-u").arg(format!("{u}:{p}"));
    }
    for f in form {
        c.arg("-F").arg(f);
    }
    c.arg(server().url(&format!("/service/rest/v1/components{query}")));
    let out = c.output().expect("curl is installed");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("curl wrote the status last");
    (code.trim().parse().expect("a status code"), body.to_string())
}

fn upload(repo: &str, field: &str, file: &Path) -> (u16, String) {
    curl(ADMIN, &format!("?repository={repo}"), &[format!("{field}=@{}", file.display())])
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn admin(method: Method, path: &str) -> reqwest::blocking::RequestBuilder {
    common::client().request(method, server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD))
}

/// `name@version (n assets)` of every component of a repository.
fn components(repo: &str) -> Vec<String> {
    let v: Value = admin(Method::GET, &format!("/service/rest/v1/components?repository={repo}")).send().unwrap().json().unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let group = c["group"].as_str().map(|g| format!("{g}/")).unwrap_or_default();
            format!("{group}{}@{} ({} assets)", c["name"].as_str().unwrap(), c["version"].as_str().unwrap(), c["assets"].as_array().unwrap().len())
        })
        .collect()
}

/// Files in the blob store's staging directory (where uploads wait for their checks).
fn staged_files() -> usize {
    let dir = server().staging_dir();
    assert!(dir.is_dir(), "uploads were staged in {}", dir.display());
    std::fs::read_dir(dir).unwrap().count()
}

// ---- PyPI ------------------------------------------------------------------------------------

/// A wheel and an sdist of a tiny project (tests/pypi/make_dist.py).
fn dist(dir: &Path, name: &str, version: &str) -> (PathBuf, PathBuf) {
    common::pypi::dist(dir, name, version, &[])
}

#[test]
fn curl_uploads_a_wheel_and_an_sdist_and_pip_installs_the_release() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = dist(tmp.path(), "Wharf_Upload.Lib", "1.2");
    assert_eq!(upload("pypi-hosted", "pypi.asset", &whl), (204, String::new()));
    assert_eq!(upload("pypi-hosted", "pypi.asset", &sdist), (204, String::new()));
    assert!(components("pypi-hosted").contains(&"wharf-upload-lib@1.2 (2 assets)".to_string()), "{:?}", components("pypi-hosted"));

    // pip, cold, from the repository's index.
    let index = common::pypi::index_url(server(), "pypi-hosted");
    let target = tmp.path().join("site");
    ok(pip(&["install", "--no-cache-dir", "--index-url", &index, "--target", target.to_str().unwrap(), "wharf-upload-lib==1.2"]));
    let installed = std::fs::read_to_string(target.join("wharf_upload_lib/__init__.py")).unwrap();
    assert!(installed.contains("1.2"), "{installed}");

    // As a twine upload is served: the name as the file spells it, PEP 658 metadata for the
    // wheel (served; a wheel this small is listed without it), requires-python and the summary
    // from the file's metadata.
    let page: Value = common::client()
        .get(server().url("/repository/pypi-hosted/simple/wharf-upload-lib/"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let files = page["files"].as_array().unwrap();
    let wheel = files.iter().find(|f| f["filename"].as_str().unwrap().ends_with(".whl")).unwrap();
    assert_eq!(wheel["requires-python"], ">=3.8");
    assert_eq!(wheel["core-metadata"], json!(false), "{wheel}");
    let sd = files.iter().find(|f| f["filename"].as_str().unwrap().ends_with(".tar.gz")).unwrap();
    assert_eq!(sd["core-metadata"], json!(false), "a Metadata-Version 2.1 PKG-INFO names the release but is not served: {sd}");
    let meta =
        common::client().get(format!("{}.metadata", wheel["url"].as_str().unwrap())).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().text().unwrap();
    assert!(meta.contains("Name: Wharf_Upload.Lib"), "{meta}");

    // Audited as the upload it is, and as a twine upload would be.
    assert!(audited("component.upload", "wharf-upload-lib@1.2"));
    assert!(audited("pypi.upload", "Wharf_Upload_Lib-1.2-py3-none-any.whl"));
}

/// Whether the audit log holds `action` on `object` (written in the background: waited for).
fn audited(action: &str, object: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v: Value = admin(Method::GET, &format!("/service/rest/v1/audit?action={action}&limit=1000")).send().unwrap().json().unwrap();
        if v["items"].as_array().unwrap().iter().any(|e| e["object"] == object && e["actor"] == "admin") {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_pypi_file_already_there_gets_the_answer_twine_gets() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(tmp.path(), "wharf-upload-twice", "1.0");
    assert_eq!(upload("pypi-hosted", "pypi.asset", &whl).0, 204);
    let (status, body) = upload("pypi-hosted", "pypi.asset", &whl);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("File already exists: wharf_upload_twice-1.0-py3-none-any.whl"), "{body}");
    // twine, for the same file: the same status and words.
    let twine = Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--verbose", "-u", "admin", "-p", ADMIN_PASSWORD, "--repository-url"])
        .arg(server().url("/repository/pypi-hosted/"))
        .arg(&whl)
        .output()
        .expect("twine is installed in target/test-venv");
    let said = format!("{}{}", String::from_utf8_lossy(&twine.stdout), String::from_utf8_lossy(&twine.stderr));
    assert!(!twine.status.success() && said.contains("400") && said.contains("File already exists"), "{said}");
}

#[test]
fn a_file_whose_name_disagrees_with_its_metadata_or_that_is_no_archive_is_refused_and_nothing_stays() {
    let _g = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let before = components("pypi-hosted");
    // Not a zip at all.
    let junk = tmp.path().join("wharf_junk-1.0-py3-none-any.whl");
    std::fs::write(&junk, b"this is not a wheel").unwrap();
    let (status, body) = upload("pypi-hosted", "pypi.asset", &junk);
    assert_eq!(status, 400, "{body}");
    let errors: Value = serde_json::from_str(&body).unwrap();
    assert!(errors[0]["message"].as_str().unwrap().contains("not a readable archive"), "{body}");
    // A real wheel renamed to another project: the metadata decides, and disagrees.
    let (whl, _) = dist(&tmp.path().join("r"), "wharf-upload-real", "1.0");
    let renamed = tmp.path().join("wharf_other-1.0-py3-none-any.whl");
    std::fs::copy(&whl, &renamed).unwrap();
    let (status, body) = upload("pypi-hosted", "pypi.asset", &renamed);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not a file of project wharf-upload-real"), "{body}");
    // Neither a wheel nor an sdist.
    let exe = tmp.path().join("setup.exe");
    std::fs::write(&exe, b"MZ").unwrap();
    let (status, body) = upload("pypi-hosted", "pypi.asset", &exe);
    assert!(status == 400 && body.contains("only wheels"), "{status} {body}");
    // An npm tarball without package.json.
    let empty = tmp.path().join("empty-1.0.0.tgz");
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "package/index.js", &b"{}"[..]).unwrap();
    std::fs::write(&empty, b.into_inner().unwrap().finish().unwrap()).unwrap();
    let npm_before = components("npm-hosted");
    let (status, body) = upload("npm-hosted", "npm.asset", &empty);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no package.json"), "{body}");
    // Nothing was stored, nothing is left staged.
    assert_eq!(components("pypi-hosted"), before);
    assert_eq!(components("npm-hosted"), npm_before);
    assert_eq!(staged_files(), 0, "refused uploads leave no staged file");
}

// ---- npm -------------------------------------------------------------------------------------

/// `npm pack` of a package whose index.js exports "<name>@<version>"; the tarball and what
/// npm says of it (shasum, integrity).
fn pack(dir: &Path, name: &str, version: &str) -> (PathBuf, Value) {
    let d = dir.join(name.replace('/', "_")).join(version);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("package.json"),
        json!({"name": name, "version": version, "main": "index.js", "description": "uploaded through the components API", "license": "MIT"}).to_string(),
    )
    .unwrap();
    std::fs::write(d.join("index.js"), format!("module.exports = {:?};\n", format!("{name}@{version}"))).unwrap();
    let out = Command::new("npm").args(["pack", "--json"]).current_dir(&d).env("npm_config_cache", dir.join("npm-cache")).output().unwrap();
    let info: Value = serde_json::from_str(&ok(out)).unwrap();
    let info = info[0].clone();
    (d.join(info["filename"].as_str().unwrap()), info)
}

/// npm with its own config (the registry, Basic credentials) and an empty cache.
fn npm(dir: &Path, cwd: &Path, args: &[&str]) -> Output {
    let registry = server().url("/repository/npm-hosted/");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let npmrc = dir.join("npmrc");
    std::fs::write(&npmrc, format!("registry={registry}\n{}:_auth={auth}\n", registry.trim_start_matches("http:"))).unwrap();
    Command::new("npm")
        .args(args)
        .current_dir(cwd)
        .env("npm_config_userconfig", &npmrc)
        .env("npm_config_cache", dir.join("cache"))
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env_remove("npm_config_registry")
        .output()
        .unwrap()
}

fn packument(name: &str) -> Value {
    admin(Method::GET, &format!("/repository/npm-hosted/{}", name.replacen('/', "%2f", 1))).send().unwrap().json().unwrap()
}

#[test]
fn curl_uploads_npm_tarballs_and_npm_installs_them() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (v2, info2) = pack(tmp.path(), "@wharf-up/lib", "2.0.0");
    let (v1, info1) = pack(tmp.path(), "@wharf-up/lib", "1.0.0");
    assert_eq!(upload("npm-hosted", "npm.asset", &v2), (204, String::new()));
    // An older version afterwards (a migration): it joins, and latest stays on the highest.
    assert_eq!(upload("npm-hosted", "npm.asset", &v1), (204, String::new()));
    let doc = packument("@wharf-up/lib");
    assert_eq!(doc["dist-tags"]["latest"], "2.0.0", "{doc}");
    for (v, info) in [("1.0.0", &info1), ("2.0.0", &info2)] {
        let dist = &doc["versions"][v]["dist"];
        assert_eq!(dist["shasum"], info["shasum"], "as npm pack computed it");
        assert_eq!(dist["integrity"], info["integrity"]);
        assert_eq!(dist["tarball"], server().url(&format!("/repository/npm-hosted/@wharf-up/lib/-/lib-{v}.tgz")));
    }
    assert_eq!(doc["versions"]["2.0.0"]["_npmUser"]["name"], "admin");
    assert_eq!(doc["description"], "uploaded through the components API");
    let list = components("npm-hosted");
    assert!(list.contains(&"@wharf-up/lib@1.0.0 (1 assets)".to_string()) && list.contains(&"@wharf-up/lib@2.0.0 (1 assets)".to_string()), "{list:?}");

    // npm installs it from the repository with an empty cache.
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("package.json"), r#"{"name": "consumer", "version": "1.0.0", "private": true}"#).unwrap();
    ok(npm(tmp.path(), &project, &["install", "@wharf-up/lib"]));
    let got = ok(Command::new("node").arg("-e").arg(r#"console.log(require("@wharf-up/lib"))"#).current_dir(&project).output().unwrap());
    assert_eq!(got.trim(), "@wharf-up/lib@2.0.0");
    ok(npm(tmp.path(), &project, &["install", "@wharf-up/lib@1.0.0"]));
    let got = ok(Command::new("node").arg("-e").arg(r#"console.log(require("@wharf-up/lib"))"#).current_dir(&project).output().unwrap());
    assert_eq!(got.trim(), "@wharf-up/lib@1.0.0");
}

#[test]
fn an_npm_version_already_there_gets_the_answer_npm_publish_gets() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (tgz, _) = pack(tmp.path(), "wharf-up-twice", "1.0.0");
    assert_eq!(upload("npm-hosted", "npm.asset", &tgz).0, 204);
    let (status, body) = upload("npm-hosted", "npm.asset", &tgz);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cannot publish over the previously published version wharf-up-twice@1.0.0"), "{body}");
    // npm publish of the same version is refused in the same words (npm sees the version in
    // the document and does not even send it; the server's refusal is the one above).
    let dir = tgz.parent().unwrap();
    let out = npm(tmp.path(), dir, &["publish"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && said.contains("cannot publish over the previously published version"), "{said}");
}

// ---- refusals ----------------------------------------------------------------------------------

fn message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON: {body}"));
    v.get(0).and_then(|e| e["message"].as_str()).or_else(|| v["message"].as_str()).unwrap_or_default().to_string()
}

#[test]
fn requests_nexus_refuses_are_refused_as_nexus_does() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(tmp.path(), "wharf-upload-refused", "1.0");
    let file = format!("pypi.asset=@{}", whl.display());
    // No repository parameter: Nexus's 422.
    let (status, body) = curl(ADMIN, "", std::slice::from_ref(&file));
    assert_eq!((status, message(&body)), (422, "parameter 'repository' is required".to_string()), "{body}");
    // No such repository.
    let (status, body) = curl(ADMIN, "?repository=nowhere", std::slice::from_ref(&file));
    assert_eq!(status, 404, "{body}");
    // Docker has no component upload.
    let (status, body) = curl(ADMIN, "?repository=docker-hosted", &[format!("docker.asset=@{}", whl.display())]);
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("Uploading components to 'docker' repositories is unsupported"), "{body}");
    // Groups and proxies take none either.
    let r = admin(Method::POST, "/service/rest/v1/repositories/pypi/group")
        .json(&json!({"name": "pypi-up-group", "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["pypi-hosted"], "writableMember": "pypi-hosted"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let (status, body) = curl(ADMIN, "?repository=pypi-up-group", std::slice::from_ref(&file));
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("Uploading components to a 'group' type repository is unsupported, must be 'hosted'"), "{body}");
    let r = admin(Method::POST, "/service/rest/v1/repositories/npm/proxy")
        .json(&json!({
            "name": "npm-up-proxy", "online": true, "storage": {"blobStoreName": "default"},
            "proxy": {"remoteUrl": "http://127.0.0.1:9/", "contentMaxAge": 1440, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": true, "timeToLive": 1440},
            "httpClient": {"connection": {"timeout": 20, "connectTimeout": 2}},
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let (status, body) = curl(ADMIN, "?repository=npm-up-proxy", &[format!("npm.asset=@{}", whl.display())]);
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("Uploading components to a 'proxy' type repository is unsupported"), "{body}");
    // A field of another format, a text field, no file at all.
    let (status, body) = curl(ADMIN, "?repository=pypi-hosted", &[format!("npm.asset=@{}", whl.display())]);
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("Unknown component field 'npm.asset'"), "{body}");
    let (status, body) = curl(ADMIN, "?repository=pypi-hosted", &[file.clone(), "pypi.version=2.0".into()]);
    assert!(status == 400 && message(&body).contains("Unknown component field 'pypi.version'"), "{status} {body}");
    let (status, body) = curl(ADMIN, "?repository=pypi-hosted", &["pypi.asset=just text".into()]);
    assert!(status == 400 && message(&body).contains("is not a file"), "{status} {body}");
    let (status, body) = curl(ADMIN, "?repository=pypi-hosted", &[]);
    assert_eq!(status, 400, "{body}");
    assert!(!components("pypi-hosted").iter().any(|c| c.starts_with("wharf-upload-refused@")));
}

#[test]
fn only_callers_who_may_write_to_the_repository_upload() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(tmp.path(), "wharf-upload-rights", "1.0");
    let file = [format!("pypi.asset=@{}", whl.display())];
    for (user, actions) in [("up-reader", vec!["read", "browse"]), ("up-writer", vec!["read", "add"]), ("up-stranger", vec![])] {
        let privileges: Vec<String> = actions.iter().map(|a| format!("nx-repository-view-pypi-pypi-hosted-{a}")).collect();
        let r = admin(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": format!("role-{user}"), "privileges": privileges})).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
        let r = admin(Method::POST, "/service/rest/v1/security/users")
            .json(&json!({"userId": user, "password": "upload-password", "roles": [format!("role-{user}")]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    }
    let (status, body) = curl(None, "?repository=pypi-hosted", &file);
    assert_eq!(status, 401, "{body}");
    let (status, body) = curl(None, "?repository=nowhere", &file);
    assert_eq!(status, 401, "whether a repository is there is not told to anonymous callers: {body}");
    let (status, body) = curl(Some(("up-stranger", "upload-password")), "?repository=pypi-hosted", &file);
    assert_eq!(status, 404, "a repository the caller may not see is not there for them: {body}");
    let (status, body) = curl(Some(("up-reader", "upload-password")), "?repository=pypi-hosted", &file);
    assert_eq!(status, 403, "{body}");
    assert!(!components("pypi-hosted").iter().any(|c| c.starts_with("wharf-upload-rights@")));
    // Write rights are enough: no administrator needed, as for twine.
    let (status, body) = curl(Some(("up-writer", "upload-password")), "?repository=pypi-hosted", &file);
    assert_eq!(status, 204, "{body}");
    let asset = admin(Method::GET, "/service/rest/v1/components?repository=pypi-hosted").send().unwrap().json::<Value>().unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "wharf-upload-rights")
        .map(|c| c["assets"][0].clone())
        .unwrap();
    assert_eq!(asset["uploader"], "up-writer");
}

#[test]
fn read_only_mode_refuses_uploads() {
    let _g = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let (tgz, _) = pack(tmp.path(), "wharf-up-frozen", "1.0.0");
    let r = admin(Method::POST, "/service/rest/v1/read-only/freeze").json(&json!({"reason": "upload test"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    let (status, body) = upload("npm-hosted", "npm.asset", &tgz);
    let r = admin(Method::POST, "/service/rest/v1/read-only/release").send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(status, 503, "{body}");
    assert!(message(&body).contains("upload test"), "{body}");
    assert_eq!(staged_files(), 0);
    assert!(!components("npm-hosted").iter().any(|c| c.starts_with("wharf-up-frozen@")));
    // Released, the same upload goes through.
    assert_eq!(upload("npm-hosted", "npm.asset", &tgz).0, 204);
}

#[test]
fn a_file_over_the_repository_limit_or_a_read_only_repository_is_refused() {
    let _g = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let r = admin(Method::POST, "/service/rest/v1/repositories/pypi/hosted")
        .json(&json!({"name": "pypi-up-small", "storage": {"blobStoreName": "default", "writePolicy": "allow_once"}, "pypi": {"uploadMaxSize": 1}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    // A 2 MiB wheel (incompressible) against a 1 MiB limit.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let out = Command::new("python3").arg(script).arg(tmp.path()).arg("wharf-upload-big").arg("1.0").env("WHARF_DIST_PAYLOAD", "2097152").output().unwrap();
    let big = PathBuf::from(ok(out).lines().next().unwrap());
    let (status, body) = upload("pypi-up-small", "pypi.asset", &big);
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("larger than this repository's limit of 1 MiB"), "{body}");
    assert_eq!(components("pypi-up-small"), Vec::<String>::new());
    assert_eq!(staged_files(), 0);
    // A repository whose write policy is deny: as twine is told.
    let r = admin(Method::POST, "/service/rest/v1/repositories/pypi/hosted")
        .json(&json!({"name": "pypi-up-deny", "storage": {"blobStoreName": "default", "writePolicy": "deny"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let (small, _) = dist(&tmp.path().join("s"), "wharf-upload-deny", "1.0");
    let (status, body) = upload("pypi-up-deny", "pypi.asset", &small);
    assert_eq!((status, message(&body)), (403, "repository pypi-up-deny is read-only".to_string()), "{body}");
}

#[test]
fn concurrent_npm_uploads_of_one_package_all_land() {
    let _g = shared();
    let tmp = tempfile::tempdir().unwrap();
    let versions: Vec<String> = (1..=6).map(|i| format!("1.{i}.0")).collect();
    let tarballs: Vec<PathBuf> = versions.iter().map(|v| pack(tmp.path(), "wharf-up-race", v).0).collect();
    let threads: Vec<_> = tarballs.into_iter().map(|t| std::thread::spawn(move || upload("npm-hosted", "npm.asset", &t))).collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 204, "{body}");
    }
    let doc = packument("wharf-up-race");
    let mut got: Vec<&String> = doc["versions"].as_object().unwrap().keys().collect();
    got.sort();
    assert_eq!(got, versions.iter().collect::<Vec<_>>(), "every upload's version is in the document");
    assert_eq!(doc["dist-tags"]["latest"], "1.6.0", "the highest, whatever order they landed in");
}
