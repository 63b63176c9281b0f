//! Cleanup policies, retention and download tracking with the real clients: the policies API
//! and its refusals; previews of retention, pre-release, regex and keep-pattern policies over
//! content pushed with twine, npm publish and skopeo, checked against what a run deletes; what
//! pip, npm and skopeo see afterwards; download counts and `criteriaLastDownloaded`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{oci, TestServer, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn api(method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, v) = server().admin().json(method, path, body);
    (status.as_u16(), v)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A 400 in the admin API's shape whose id names `field`.
fn refused(res: (u16, Value), field: &str) {
    assert_eq!(res.0, 400, "{}", res.1);
    let id = res.1[0]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id, format!("PARAMETER {field}"), "{}", res.1);
}

fn create_policy(body: Value) {
    let (status, v) = api(Method::POST, "/service/rest/v1/cleanup-policies", Some(body));
    assert_eq!(status, 201, "{v}");
}

fn repo_body(name: &str, format: &str, policies: &[&str]) -> Value {
    let mut b = json!({"name": name, "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "cleanup": {"policyNames": policies}});
    if format == "docker" {
        b["docker"] = json!({"forceBasicAuth": true});
    }
    b
}

fn create_repo(format: &str, name: &str, policies: &[&str]) {
    let (status, v) = api(Method::POST, &format!("/service/rest/v1/repositories/{format}/hosted"), Some(repo_body(name, format, policies)));
    assert_eq!(status, 201, "{v}");
}

fn set_policies(format: &str, name: &str, policies: &[&str]) {
    let (status, v) = api(Method::PUT, &format!("/service/rest/v1/repositories/{format}/hosted/{name}"), Some(repo_body(name, format, policies)));
    assert_eq!(status, 204, "{v}");
}

/// `name@version` of each component a stored policy's preview lists.
fn preview(policy: &str, repo: &str) -> BTreeSet<String> {
    let (status, v) = api(Method::GET, &format!("/service/rest/v1/cleanup-policies/{policy}/preview?repository={repo}"), None);
    assert_eq!(status, 200, "{v}");
    labels(&v["components"])
}

fn labels(components: &Value) -> BTreeSet<String> {
    components.as_array().unwrap().iter().map(|c| format!("{}@{}", c["name"].as_str().unwrap(), c["version"].as_str().unwrap())).collect()
}

/// The whole report of a run of one repository's policies. A run is a run of the cleanup task:
/// while another test's run holds it, the answer is 409, and this waits its turn.
fn run_report(repo: &str, dry_run: bool) -> Value {
    let path = format!("/service/rest/v1/cleanup-policies/run?repository={repo}&dryRun={dry_run}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, v) = api(Method::POST, &path, None);
        if status == 409 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(status, 200, "{v}");
        return v;
    }
}

fn run(repo: &str, dry_run: bool) -> Value {
    let v = run_report(repo, dry_run);
    assert_eq!(v["repositories"].as_array().unwrap().len(), 1, "{v}");
    v["repositories"][0].clone()
}

fn components(repo: &str) -> Vec<Value> {
    let (status, v) = api(Method::GET, &format!("/service/rest/v1/components?repository={repo}"), None);
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Moves a repository's content `days` into the past (publish times, and download times where
/// there are any), as if it had been there that long.
fn age(repo: &str, days: i64) {
    use diesel::prelude::*;
    use wharf::db::schema::assets;
    let db = wharf::db::Db::open(&server().database_url(), 2).unwrap();
    let id = db.run_sync(|c| wharf::db::repos::get(c, repo)).unwrap().unwrap().id;
    let ms = days * 86_400_000;
    db.run_sync(|c| {
        diesel::update(assets::table.filter(assets::repository_id.eq(id)))
            .set((assets::created_at.eq(assets::created_at - ms), assets::updated_at.eq(assets::updated_at - ms)))
            .execute(c)?;
        Ok(())
    })
    .unwrap();
}

/// Polls until `check` holds (download counts reach the database in batches, off the request
/// path); panics after a minute.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- PyPI ---------------------------------------------------------------------------------

fn dist(dir: &Path, name: &str, version: &str) -> (PathBuf, PathBuf) {
    common::pypi::dist(dir, name, version, &[])
}

fn twine(repo: &str, files: &[PathBuf]) {
    common::pypi::uploaded(common::pypi::twine(&format!("{}/repository/{repo}/", server().base), "admin", ADMIN_PASSWORD, files));
}

fn upload(repo: &str, dir: &Path, name: &str, versions: &[&str]) {
    let mut files = Vec::new();
    for v in versions {
        let (whl, sdist) = dist(&dir.join(format!("{name}-{v}")), name, v);
        files.push(whl);
        files.push(sdist);
    }
    twine(repo, &files);
}

fn pip(repo: &str, args: &[&str]) -> Output {
    let index = common::pypi::index_url(server(), repo);
    common::pypi::pip(&[args, &["--no-cache-dir", "--index-url", &index]].concat())
}

#[test]
fn pypi_previews_list_what_the_run_deletes_and_pip_installs_what_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    create_repo("pypi", "pypi-clean", &[]);
    upload("pypi-clean", tmp.path(), "wharf-cl-py", &["1.0", "1.1", "2.0rc1", "2.0", "2.1.dev1"]);
    upload("pypi-clean", tmp.path(), "wharf-cl-gone", &["0.1"]);

    create_policy(json!({"name": "py-retain2", "format": "pypi", "retain": 2}));
    create_policy(json!({"name": "py-pre", "format": "pypi", "criteriaReleaseType": "PRERELEASES"}));
    create_policy(json!({"name": "py-regex", "format": "pypi", "criteriaAssetRegex": "packages/wharf-cl-py/wharf_cl_py-1\\..*"}));
    create_policy(json!({"name": "py-keep", "format": "pypi", "criteriaLastBlobUpdated": 1, "keepVersionRegex": "1\\.0|2\\.0"}));
    create_policy(json!({"name": "py-gone", "format": "*", "criteriaAssetRegex": "packages/wharf-cl-gone/.*"}));

    // PEP 440: 2.1.dev1 > 2.0 > 2.0rc1 > 1.1 > 1.0; a project with one version keeps it.
    assert_eq!(preview("py-retain2", "pypi-clean"), set(&["wharf-cl-py@1.0", "wharf-cl-py@1.1", "wharf-cl-py@2.0rc1"]));
    assert_eq!(preview("py-pre", "pypi-clean"), set(&["wharf-cl-py@2.0rc1", "wharf-cl-py@2.1.dev1"]));
    assert_eq!(preview("py-regex", "pypi-clean"), set(&["wharf-cl-py@1.0", "wharf-cl-py@1.1"]));
    // Nothing is a day old yet.
    assert_eq!(preview("py-keep", "pypi-clean"), set(&[]));
    age("pypi-clean", 2);
    assert_eq!(preview("py-keep", "pypi-clean"), set(&["wharf-cl-gone@0.1", "wharf-cl-py@1.1", "wharf-cl-py@2.0rc1", "wharf-cl-py@2.1.dev1"]));
    // An unsaved policy body previews the same way.
    let (status, v) = api(
        Method::POST,
        "/service/rest/v1/cleanup-policies/preview?repository=pypi-clean",
        Some(json!({"format": "pypi", "criteriaReleaseType": "RELEASES", "retain": 1})),
    );
    assert_eq!(status, 200, "{v}");
    // retain counts every version (2.1.dev1 is the newest) and keeps the highest release (2.0,
    // what pip installs); the criterion picks releases.
    assert_eq!(labels(&v["components"]), set(&["wharf-cl-py@1.0", "wharf-cl-py@1.1"]));
    assert_eq!(v["assetCount"], 4, "a wheel and an sdist each");

    set_policies("pypi", "pypi-clean", &["py-retain2", "py-gone"]);
    let expected: BTreeSet<String> = preview("py-retain2", "pypi-clean").union(&preview("py-gone", "pypi-clean")).cloned().collect();
    let dry = run("pypi-clean", true);
    assert_eq!(labels(&dry["components"]), expected);
    assert_eq!(components("pypi-clean").len(), 6, "a dry run deletes nothing");
    let done = run("pypi-clean", false);
    assert_eq!(labels(&done["components"]), expected, "the run deletes exactly what the previews listed: {done}");
    assert_eq!(done["componentsDeleted"], 4);
    assert!(done["failed"].as_array().unwrap().is_empty(), "{done}");
    assert!(done["bytesFreed"].as_i64().unwrap() > 0, "the files' content is no longer referenced: {done}");
    let left: BTreeSet<String> =
        components("pypi-clean").iter().map(|c| format!("{}@{}", c["name"].as_str().unwrap(), c["version"].as_str().unwrap())).collect();
    assert_eq!(left, set(&["wharf-cl-py@2.0", "wharf-cl-py@2.1.dev1"]));

    // pip installs a kept version; a deleted one is gone from the index.
    let site = tmp.path().join("site");
    ok(pip("pypi-clean", &["install", "--target", site.to_str().unwrap(), "wharf-cl-py==2.0"]));
    assert!(std::fs::read_to_string(site.join("wharf_cl_py/__init__.py")).unwrap().contains("2.0"));
    let gone = pip("pypi-clean", &["download", "-d", tmp.path().join("dl").to_str().unwrap(), "wharf-cl-py==1.1"]);
    assert!(!gone.status.success(), "1.1 was deleted");
    // The last release of a project takes the project with it.
    let index = server().admin().request(Method::GET, "/repository/pypi-clean/simple/").send().unwrap().text().unwrap();
    assert!(index.contains("wharf-cl-py") && !index.contains("wharf-cl-gone"), "{index}");
    let page = server().admin().request(Method::GET, "/repository/pypi-clean/simple/wharf-cl-gone/").send().unwrap();
    assert_eq!(page.status().as_u16(), 404);
}

#[test]
fn pypi_retention_keeps_the_release_pip_installs() {
    let tmp = tempfile::tempdir().unwrap();
    create_repo("pypi", "pypi-rel", &[]);
    upload("pypi-rel", tmp.path(), "wharf-cl-rel", &["1.0", "2.0rc1", "2.0rc2"]);
    create_policy(json!({"name": "rel-retain2", "format": "pypi", "retain": 2}));
    create_policy(json!({"name": "rel-retain1", "format": "pypi", "retain": 1}));
    // The newest are release candidates; 1.0, the one release, is what pip installs: it stays.
    assert_eq!(preview("rel-retain2", "pypi-rel"), set(&[]));
    assert_eq!(preview("rel-retain1", "pypi-rel"), set(&["wharf-cl-rel@2.0rc1"]));
    set_policies("pypi", "pypi-rel", &["rel-retain1"]);
    let done = run("pypi-rel", false);
    assert_eq!(labels(&done["components"]), set(&["wharf-cl-rel@2.0rc1"]), "{done}");
    let site = tmp.path().join("site");
    ok(pip("pypi-rel", &["install", "--target", site.to_str().unwrap(), "wharf-cl-rel"]));
    assert!(std::fs::read_to_string(site.join("wharf_cl_rel/__init__.py")).unwrap().contains("\"1.0\""), "pip installs the release");
}

// ---- npm ----------------------------------------------------------------------------------

struct Npm {
    dir: tempfile::TempDir,
}

impl Npm {
    fn new(repo: &str) -> Npm {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("{}/repository/{repo}/", server().base);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
        let host_path = url.trim_start_matches("http:");
        std::fs::write(dir.path().join("npmrc"), format!("registry={url}\n{host_path}:_auth={auth}\n")).unwrap();
        Npm { dir }
    }

    fn npm(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new("npm")
            .args(args)
            .current_dir(cwd)
            .env("npm_config_userconfig", self.dir.path().join("npmrc"))
            .env("npm_config_cache", self.dir.path().join("cache"))
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false")
            .env_remove("npm_config_registry")
            .output()
            .expect("npm is installed")
    }

    fn publish(&self, name: &str, version: &str) {
        let d = self.dir.path().join("src").join(version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("package.json"), json!({"name": name, "version": version, "main": "index.js"}).to_string()).unwrap();
        std::fs::write(d.join("index.js"), format!("module.exports = {:?};\n", format!("{name}@{version}"))).unwrap();
        let mut args = vec!["publish"];
        if version.contains('-') {
            args.extend(["--tag", "beta"]);
        }
        ok(self.npm(&d, &args));
    }

    fn view(&self, what: &str) -> Value {
        let out = ok(self.npm(self.dir.path(), &["view", what, "--json"]));
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }
}

#[test]
fn npm_run_deletes_what_the_preview_listed_and_a_deleted_latest_moves_to_a_remaining_version() {
    create_repo("npm", "npm-clean", &[]);
    let c = Npm::new("npm-clean");
    for v in ["1.0.0", "1.1.0", "1.2.0", "2.0.0-beta.1", "2.0.0-beta.2"] {
        c.publish("wharf-cl-npm", v);
    }
    let tags = &c.view("wharf-cl-npm")["dist-tags"];
    assert_eq!((tags["latest"].as_str(), tags["beta"].as_str()), (Some("1.2.0"), Some("2.0.0-beta.2")));

    create_policy(json!({"name": "npm-pre", "format": "npm", "criteriaReleaseType": "PRERELEASES"}));
    create_policy(json!({"name": "npm-retain", "format": "npm", "retain": 2, "sortBy": "version"}));
    create_policy(json!({"name": "npm-keep", "format": "npm", "retain": 1, "keepVersionRegex": "1\\.1\\..*"}));
    // beta names 2.0.0-beta.2: only the older pre-release goes.
    assert_eq!(preview("npm-pre", "npm-clean"), set(&["wharf-cl-npm@2.0.0-beta.1"]));
    // semver: 2.0.0-beta.2 > 2.0.0-beta.1 > 1.2.0 > 1.1.0 > 1.0.0; 1.2.0 is the highest release.
    assert_eq!(preview("npm-retain", "npm-clean"), set(&["wharf-cl-npm@1.0.0", "wharf-cl-npm@1.1.0"]));
    let expected = preview("npm-keep", "npm-clean");
    assert_eq!(expected, set(&["wharf-cl-npm@1.0.0", "wharf-cl-npm@2.0.0-beta.1"]));

    set_policies("npm", "npm-clean", &["npm-keep"]);
    let done = run("npm-clean", false);
    assert_eq!(labels(&done["components"]), expected, "{done}");
    assert!(done["failed"].as_array().unwrap().is_empty(), "{done}");
    let doc = c.view("wharf-cl-npm");
    let versions: BTreeSet<String> = doc["versions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(versions, set(&["1.1.0", "1.2.0", "2.0.0-beta.2"]), "{doc}");
    let stored = server().admin().request(Method::GET, "/repository/npm-clean/wharf-cl-npm").send().unwrap().json::<Value>().unwrap();
    assert!(stored["versions"].get("1.0.0").is_none() && stored["time"].get("1.0.0").is_none(), "{stored}");

    // Deleting through the components API takes what a tag names too; latest moves to the
    // highest release left.
    let comps = components("npm-clean");
    let id_of = |version: &str| comps.iter().find(|x| x["version"] == version).unwrap()["id"].as_str().unwrap().to_string();
    let (status, v) = api(Method::DELETE, &format!("/service/rest/v1/components/{}", id_of("1.2.0")), None);
    assert_eq!(status, 204, "{v}");
    let doc = c.view("wharf-cl-npm");
    assert_eq!(doc["dist-tags"]["latest"], "1.1.0", "{doc}");
    assert_eq!(doc["dist-tags"]["beta"], "2.0.0-beta.2", "{doc}");

    // npm installs what is kept, and `latest` resolves to it.
    let p = c.dir.path().join("project");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("package.json"), r#"{"name": "consumer", "version": "1.0.0", "private": true}"#).unwrap();
    ok(c.npm(&p, &["install", "--prefer-online", "wharf-cl-npm"]));
    let installed: Value = serde_json::from_str(&std::fs::read_to_string(p.join("node_modules/wharf-cl-npm/package.json")).unwrap()).unwrap();
    assert_eq!(installed["version"], "1.1.0");
    let missing = c.npm(&p, &["install", "--prefer-online", "wharf-cl-npm@1.2.0"]);
    assert!(!missing.status.success(), "1.2.0 was deleted");

    let (status, v) = api(Method::DELETE, &format!("/service/rest/v1/components/{}", id_of("2.0.0-beta.2")), None);
    assert_eq!(status, 204, "{v}");
    let doc = c.view("wharf-cl-npm");
    let versions = match &doc["versions"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    assert_eq!(versions, [json!("1.1.0")], "{doc}");
    assert!(doc["dist-tags"].get("beta").is_none(), "{doc}");
}

#[test]
fn npm_cleanup_never_deletes_a_version_a_dist_tag_names() {
    create_repo("npm", "npm-tags", &[]);
    let c = Npm::new("npm-tags");
    for v in ["1.0.0", "2.0.0-rc.1", "2.0.0-rc.2"] {
        c.publish("wharf-cl-tags", v);
    }
    create_policy(json!({"name": "tags-retain", "format": "npm", "retain": 2}));
    create_policy(json!({"name": "tags-old", "format": "npm", "criteriaLastBlobUpdated": 1}));
    // The two release candidates are the newest, yet 1.0.0 is the one release, `latest`: it
    // stays (deleted, latest would move to 2.0.0-rc.2 and `npm install` get a pre-release).
    assert_eq!(preview("tags-retain", "npm-tags"), set(&[]));
    // Every version is old enough; what latest and beta name stays.
    age("npm-tags", 2);
    assert_eq!(preview("tags-old", "npm-tags"), set(&["wharf-cl-tags@2.0.0-rc.1"]));

    set_policies("npm", "npm-tags", &["tags-retain", "tags-old"]);
    let done = run("npm-tags", false);
    assert_eq!(labels(&done["components"]), set(&["wharf-cl-tags@2.0.0-rc.1"]), "{done}");
    assert!(done["failed"].as_array().unwrap().is_empty(), "{done}");
    let doc = c.view("wharf-cl-tags");
    assert_eq!(doc["versions"], json!(["1.0.0", "2.0.0-rc.2"]), "{doc}");
    assert_eq!((doc["dist-tags"]["latest"].as_str(), doc["dist-tags"]["beta"].as_str()), (Some("1.0.0"), Some("2.0.0-rc.2")), "{doc}");

    let p = c.dir.path().join("project");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("package.json"), r#"{"name": "consumer", "version": "1.0.0", "private": true}"#).unwrap();
    ok(c.npm(&p, &["install", "--prefer-online", "wharf-cl-tags"]));
    let installed: Value = serde_json::from_str(&std::fs::read_to_string(p.join("node_modules/wharf-cl-tags/package.json")).unwrap()).unwrap();
    assert_eq!(installed["version"], "1.0.0", "npm installs the release");
}

// ---- Docker -------------------------------------------------------------------------------

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed")
}

fn creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

fn push(dir: &Path, tag: &str, seed: u64) {
    oci::image(&dir.join(tag), tag, &["amd64"], seed, 4096);
    let src = format!("oci:{}:{tag}", dir.join(tag).display());
    let dest = format!("docker://{}/docker-clean/app:{tag}", server().addr);
    ok(skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds(), &src, &dest]));
}

#[test]
fn docker_run_removes_exactly_the_previewed_tags_and_the_rest_still_pulls() {
    let tmp = tempfile::tempdir().unwrap();
    create_repo("docker", "docker-clean", &[]);
    for (i, tag) in ["v1", "v2", "keep-1", "v3"].iter().enumerate() {
        push(tmp.path(), tag, 100 + i as u64);
    }
    create_policy(json!({"name": "dk-retain", "format": "docker", "retain": 2, "keepVersionRegex": "keep-.*"}));
    create_policy(json!({"name": "dk-regex", "format": "docker", "criteriaAssetRegex": "app/tags/v[12]"}));
    // Newest by date: v3, keep-1; keep-1 is kept by pattern too.
    let expected = preview("dk-retain", "docker-clean");
    assert_eq!(expected, set(&["app@v1", "app@v2"]));
    assert_eq!(preview("dk-regex", "docker-clean"), set(&["app@v1", "app@v2"]));

    set_policies("docker", "docker-clean", &["dk-retain"]);
    let done = run("docker-clean", false);
    assert_eq!(labels(&done["components"]), expected, "{done}");
    assert_eq!(done["bytesFreed"], 0, "a tag's manifest stays until the untagged-manifests task: {done}");
    let image = format!("docker://{}/docker-clean/app", server().addr);
    let tags: Value = serde_json::from_str(&ok(skopeo(&["list-tags", "--tls-verify=false", "--creds", &creds(), &image]))).unwrap();
    assert_eq!(tags["Tags"], json!(["keep-1", "v3"]));
    assert!(!skopeo(&["inspect", "--tls-verify=false", "--creds", &creds(), &format!("{image}:v1")]).status.success());
    // What is left pulls whole, and the pull is counted on the tag.
    let out = tmp.path().join("pulled");
    ok(skopeo(&["copy", "--src-tls-verify=false", "--src-creds", &creds(), &format!("{image}:v3"), &format!("oci:{}:v3", out.display())]));
    eventually("the pull of v3 is counted", || {
        components("docker-clean").iter().any(|c| c["version"] == "v3" && c["assets"][0]["downloadCount"].as_i64().unwrap_or(0) >= 1)
    });
}

// ---- Downloads ------------------------------------------------------------------------------

#[test]
fn downloads_are_counted_and_last_downloaded_spares_what_was_used() {
    let tmp = tempfile::tempdir().unwrap();
    create_repo("pypi", "pypi-downloads", &[]);
    upload("pypi-downloads", tmp.path(), "wharf-cl-dl", &["1.0", "2.0"]);
    let file = "/repository/pypi-downloads/packages/wharf-cl-dl/wharf_cl_dl-1.0-py3-none-any.whl";
    for _ in 0..2 {
        let r = server().admin().request(Method::GET, file).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().unwrap();
    }
    let wheel_of = |version: &str| {
        let comps = components("pypi-downloads");
        let c = comps.iter().find(|c| c["version"] == version).cloned().unwrap();
        c["assets"].as_array().unwrap().iter().find(|a| a["path"].as_str().unwrap().ends_with(".whl")).cloned().unwrap()
    };
    eventually("both downloads are counted", || wheel_of("1.0")["downloadCount"].as_i64() == Some(2));
    let wheel = wheel_of("1.0");
    assert!(wheel["lastDownloaded"].as_str().is_some_and(|t| t.ends_with('Z')), "{wheel}");
    assert_eq!(wheel_of("2.0")["downloadCount"], 0);
    assert_eq!(wheel_of("2.0")["lastDownloaded"], Value::Null);
    // Neither a HEAD nor the rest of a download that broke off counts again. Counts are written
    // in batches, in order: once a later whole GET shows, anything counted before it shows too.
    assert_eq!(server().admin().request(Method::HEAD, file).send().unwrap().status().as_u16(), 200);
    let rest = server().admin().request(Method::GET, file).header("Range", "bytes=10-").send().unwrap();
    assert_eq!(rest.status().as_u16(), 206);
    rest.bytes().unwrap();
    server().admin().request(Method::GET, file).send().unwrap().bytes().unwrap();
    eventually("the third whole download is counted", || wheel_of("1.0")["downloadCount"].as_i64() >= Some(3));
    assert_eq!(wheel_of("1.0")["downloadCount"], 3);

    // Published ten days ago; 1.0 downloaded just now (its download time is not aged).
    age("pypi-downloads", 10);
    create_policy(json!({"name": "dl-unused", "format": "pypi", "criteriaLastDownloaded": 5}));
    create_policy(json!({"name": "dl-old", "format": "pypi", "criteriaLastBlobUpdated": 5}));
    assert_eq!(preview("dl-unused", "pypi-downloads"), set(&["wharf-cl-dl@2.0"]), "never downloaded counts from publish time");
    assert_eq!(preview("dl-old", "pypi-downloads"), set(&["wharf-cl-dl@1.0", "wharf-cl-dl@2.0"]));
    set_policies("pypi", "pypi-downloads", &["dl-unused"]);
    let done = run("pypi-downloads", false);
    assert_eq!(labels(&done["components"]), set(&["wharf-cl-dl@2.0"]));
    let left: Vec<String> = components("pypi-downloads").iter().map(|c| c["version"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["1.0"]);
}

// ---- Runs are the cleanup task's; what a run cannot do is skipped and reported --------------

fn db() -> wharf::db::Db {
    wharf::db::Db::open(&server().database_url(), 2).unwrap()
}

/// Claims the cleanup task as another node would (once whatever run holds it has ended); the
/// claim's run id.
fn hold_cleanup_task(db: &wharf::db::Db) -> String {
    let run_id = format!("held-by-test-{}", std::process::id());
    eventually("the cleanup task is free to claim", || {
        let now = wharf_format::now_millis();
        let claim = wharf::db::tasks::Claim { run_id: &run_id, node: "another-node", trigger: "manual", now, lease_until: now + 600_000, due_only: false };
        db.run_sync(|c| Ok(wharf::db::tasks::claim(c, "cleanup", &claim)?)).unwrap()
    });
    run_id
}

fn release_cleanup_task(db: &wharf::db::Db, run_id: &str) {
    let now = wharf_format::now_millis();
    let next_run = |_: &wharf::db::tasks::TaskRow| None;
    let finished =
        wharf::db::tasks::Finished { result: "CANCELED", message: "held by a test", report: "null", started_at: now, finished_at: now, next_run: &next_run };
    db.run_sync(|c| Ok(wharf::db::tasks::finish(c, "cleanup", run_id, &finished)?)).unwrap();
}

#[test]
fn a_run_on_demand_is_a_run_of_the_cleanup_task() {
    let tmp = tempfile::tempdir().unwrap();
    create_repo("pypi", "pypi-task", &[]);
    upload("pypi-task", tmp.path(), "wharf-cl-task", &["1.0", "2.0"]);
    create_policy(json!({"name": "task-retain", "format": "pypi", "retain": 1}));
    set_policies("pypi", "pypi-task", &["task-retain"]);

    // While the task runs on another node, a run on demand waits its turn, as the task's own
    // run does.
    let db = db();
    let held = hold_cleanup_task(&db);
    let (status, v) = api(Method::POST, "/service/rest/v1/cleanup-policies/run?repository=pypi-task&dryRun=false", None);
    let (task_status, _) = api(Method::POST, "/service/rest/v1/tasks/cleanup/run", None);
    release_cleanup_task(&db, &held);
    assert_eq!(status, 409, "{v}");
    assert_eq!(task_status, 409);
    assert_eq!(components("pypi-task").len(), 2, "nothing ran");

    let report = run_report("pypi-task", false);
    assert_eq!(labels(&report["repositories"][0]["components"]), set(&["wharf-cl-task@1.0"]), "{report}");
    assert_eq!(report["stopped"], false, "{report}");
    // The run is in the task's history with its report.
    let (status, runs) = api(Method::GET, "/service/rest/v1/tasks/cleanup/runs", None);
    assert_eq!(status, 200, "{runs}");
    let ours = runs["items"].as_array().unwrap().iter().find(|r| r["report"]["repositories"][0]["repository"] == "pypi-task").cloned();
    let ours = ours.unwrap_or_else(|| panic!("the run is in the cleanup task's history: {runs}"));
    assert_eq!((ours["trigger"].as_str(), ours["result"].as_str()), (Some("manual"), Some("OK")), "{ours}");
    assert_eq!(ours["report"], report);
    // An unknown repository is refused before any run.
    let (status, _) = api(Method::POST, "/service/rest/v1/cleanup-policies/run?repository=no-such-repo", None);
    assert_eq!(status, 404);
}

#[test]
fn a_policy_this_build_cannot_parse_is_shown_as_stored_and_skipped_by_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = "/service/rest/v1/cleanup-policies";
    create_repo("pypi", "pypi-broken", &[]);
    upload("pypi-broken", tmp.path(), "wharf-cl-brk", &["1.0", "2.0"]);
    create_policy(json!({"name": "brk-good", "format": "pypi", "retain": 1}));
    create_policy(json!({"name": "brk-future", "format": "pypi", "retain": 1}));
    set_policies("pypi", "pypi-broken", &["brk-future", "brk-good"]);
    // As a newer wharf would have stored it: a criterion this build does not know.
    let future = r#"{"name": "brk-future", "format": "pypi", "retain": 1, "criteriaFromTheFuture": 3}"#;
    assert!(db().run_sync(|c| wharf::db::cleanup::update(c, "brk-future", "pypi", future)).unwrap());

    let (status, all) = api(Method::GET, policies, None);
    assert_eq!(status, 200, "one policy this build cannot parse does not hide the others: {all}");
    let named = |n: &str| all.as_array().unwrap().iter().find(|p| p["name"] == n).cloned().unwrap();
    let broken = named("brk-future");
    assert_eq!(broken["criteriaFromTheFuture"], 3, "shown as stored: {broken}");
    assert!(broken["problem"].as_str().unwrap().contains("criteriaFromTheFuture"), "{broken}");
    assert!(named("brk-good").get("problem").is_none());
    let (status, one) = api(Method::GET, &format!("{policies}/brk-future"), None);
    assert_eq!((status, one["problem"].is_string()), (200, true), "{one}");
    let (status, v) = api(Method::GET, &format!("{policies}/brk-future/preview?repository=pypi-broken"), None);
    assert_eq!(status, 409, "{v}");

    // The run applies the policy it can, and says which it skipped and why.
    let done = run("pypi-broken", false);
    assert_eq!(done["policies"], json!(["brk-good"]), "{done}");
    assert_eq!(done["skippedPolicies"][0]["policy"], "brk-future", "{done}");
    assert!(done["skippedPolicies"][0]["reason"].as_str().unwrap().contains("criteriaFromTheFuture"), "{done}");
    assert_eq!(labels(&done["components"]), set(&["wharf-cl-brk@1.0"]), "{done}");
    assert_eq!(done["error"], Value::Null, "{done}");

    // Stored again by this build, it is whole again.
    let (status, v) = api(Method::PUT, &format!("{policies}/brk-future"), Some(json!({"format": "pypi", "retain": 2})));
    assert_eq!(status, 204, "{v}");
    let (_, one) = api(Method::GET, &format!("{policies}/brk-future"), None);
    assert!(one.get("problem").is_none() && one["retain"] == 2, "{one}");
    assert_eq!(run("pypi-broken", true)["skippedPolicies"], json!([]));
}

// ---- The policies API ---------------------------------------------------------------------------

#[test]
fn policies_are_created_listed_changed_and_deleted_and_refusals_name_the_field() {
    let policies = "/service/rest/v1/cleanup-policies";
    create_policy(json!({"name": "crud-a", "notes": "old betas", "format": "npm", "criteriaReleaseType": "prereleases", "criteriaLastBlobUpdated": 30}));
    let (status, v) = api(Method::GET, &format!("{policies}/crud-a"), None);
    assert_eq!(status, 200);
    assert_eq!(v["criteriaReleaseType"], "PRERELEASES");
    assert_eq!(v["criteriaLastDownloaded"], Value::Null);
    let (_, all) = api(Method::GET, policies, None);
    assert!(all.as_array().unwrap().iter().any(|p| p["name"] == "crud-a"));
    let (status, _) = api(Method::POST, policies, Some(json!({"name": "crud-a", "format": "npm", "retain": 1})));
    assert_eq!(status, 400, "a name is taken once");

    // Refusals, each naming its field.
    refused(api(Method::POST, policies, Some(json!({"name": "x1", "format": "npm", "retain": 1, "criteriaSize": 5}))), "criteriaSize");
    refused(api(Method::POST, policies, Some(json!({"name": "x2", "format": "npm", "notes": "nothing chosen"}))), "criteria");
    refused(api(Method::POST, policies, Some(json!({"name": "x3", "format": "pypi", "criteriaAssetRegex": "packages/(oops"}))), "criteriaAssetRegex");
    refused(api(Method::POST, policies, Some(json!({"name": "x4", "format": "docker", "criteriaReleaseType": "RELEASES"}))), "criteriaReleaseType");
    refused(api(Method::POST, policies, Some(json!({"name": "../x5", "format": "npm", "retain": 1}))), "name");
    refused(api(Method::POST, policies, Some(json!({"name": "x6", "format": "raw", "retain": 1}))), "format");
    refused(api(Method::POST, "/service/rest/v1/repositories/npm/hosted", Some(repo_body("crud-repo", "npm", &["no-such-policy"]))), "cleanup.policyNames");
    refused(api(Method::POST, "/service/rest/v1/repositories/pypi/hosted", Some(repo_body("crud-repo", "pypi", &["crud-a"]))), "cleanup.policyNames");
    let (status, _) = api(Method::GET, &format!("{policies}/no-such-policy"), None);
    assert_eq!(status, 404);

    // A policy in use is not deleted, nor moved to a format its repositories are not.
    create_repo("npm", "crud-repo", &["crud-a"]);
    let (status, v) = api(Method::GET, "/service/rest/v1/repositories/npm/hosted/crud-repo", None);
    assert_eq!(status, 200);
    assert_eq!(v["cleanup"]["policyNames"], json!(["crud-a"]));
    let res = api(Method::DELETE, &format!("{policies}/crud-a"), None);
    assert!(res.1.to_string().contains("crud-repo"), "{}", res.1);
    refused(res, "name");
    refused(api(Method::PUT, &format!("{policies}/crud-a"), Some(json!({"format": "pypi", "retain": 3}))), "format");
    refused(api(Method::PUT, &format!("{policies}/crud-a"), Some(json!({"name": "renamed", "format": "npm", "retain": 3}))), "name");
    let (status, v) = api(Method::PUT, &format!("{policies}/crud-a"), Some(json!({"format": "*", "retain": 3, "sortBy": "date"})));
    assert_eq!(status, 204, "{v}");
    let (_, v) = api(Method::GET, &format!("{policies}/crud-a"), None);
    assert_eq!(
        (v["format"].clone(), v["retain"].clone(), v["sortBy"].clone(), v["criteriaReleaseType"].clone()),
        (json!("*"), json!(3), json!("date"), Value::Null)
    );
    // A preview for a repository of another format than the policy's is refused.
    create_policy(json!({"name": "crud-docker", "format": "docker", "retain": 1}));
    refused(api(Method::GET, &format!("{policies}/crud-docker/preview?repository=crud-repo"), None), "repository");

    set_policies("npm", "crud-repo", &[]);
    let (status, _) = api(Method::DELETE, &format!("{policies}/crud-a"), None);
    assert_eq!(status, 204);
    let (status, _) = api(Method::GET, &format!("{policies}/crud-a"), None);
    assert_eq!(status, 404);
}
