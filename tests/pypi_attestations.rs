//! PEP 740 attestations on a hosted PyPI repository, with the real twine (`--attestations`) and
//! pip: what is uploaded is linked from both Simple API pages and served by the Integrity API,
//! directly and through a group; what does not fit the file is refused with the reason in
//! twine's output and leaves nothing; deleting a file deletes its provenance; a proxy passes its
//! upstream's provenance on.
//!
//! The attestations are structurally valid but not signed by Sigstore (a self-signed
//! certificate, random signature bytes): wharf checks their shape and their subject, not their
//! signature (docs/api.md, "PEP 740 attestations").

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::pypi::pip;
use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

const INTEGRITY_TYPE: &str = "application/vnd.pypi.integrity.v1+json";
const PUBLISH: &str = "https://docs.pypi.org/attestations/publish/v1";

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

/// Builds a wheel and an sdist (tests/pypi/make_dist.py); returns their paths.
fn dist(dir: &Path, name: &str, version: &str) -> (PathBuf, PathBuf) {
    common::pypi::dist(dir, name, version, &[])
}

/// `twine upload --attestations`: twine pairs each `<dist>.<kind>.attestation` with its dist.
fn twine_attested(files: &[&Path]) -> Output {
    Command::new("twine")
        .args(["upload", "--attestations", "--non-interactive", "--disable-progress-bar", "--repository-url", &repo_url(), "-u", "admin", "-p", ADMIN_PASSWORD])
        .args(files)
        .output()
        .expect("twine is installed (the test command installs it into target/test-venv)")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// twine's whole output for a refused upload, its lines (wrapped to the terminal) joined.
fn refused(out: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the upload should have been refused: {text}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn http() -> Client {
    common::client()
}

fn get(url: &str, accept: &str) -> reqwest::blocking::Response {
    http().get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Accept", accept).send().unwrap()
}

fn sha256_of(p: &Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(p).unwrap()))
}

/// A self-signed certificate, DER: the shape a Sigstore certificate has, not its issuer.
fn certificate() -> &'static str {
    static CERT: OnceLock<String> = OnceLock::new();
    CERT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (key, der) = (dir.path().join("key.pem"), dir.path().join("cert.der"));
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=wharf-test",
                "-days",
                "1",
                "-outform",
                "DER",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&der)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        STANDARD.encode(std::fs::read(&der).unwrap())
    })
}

/// A PEP 740 attestation object whose in-toto statement names `subject` with `sha256`.
fn attestation(subject: &str, sha256: &str) -> Value {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject, "digest": {"sha256": sha256}}],
        "predicateType": PUBLISH,
        "predicate": null,
    });
    let signature: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(sha256.len() as u8)).collect();
    json!({
        "version": 1,
        "verification_material": {
            "certificate": certificate(),
            "transparency_entries": [{"logIndex": "12345", "logId": {"keyId": STANDARD.encode(b"log")}, "kindVersion": {"kind": "dsse", "version": "0.0.1"}}],
        },
        "envelope": {"statement": STANDARD.encode(statement.to_string()), "signature": STANDARD.encode(signature)},
    })
}

/// Writes `<dist>.publish.attestation` (twine's naming) and returns its path.
fn write_attestation(dist: &Path, a: &Value) -> PathBuf {
    let path = PathBuf::from(format!("{}.publish.attestation", dist.display()));
    std::fs::write(&path, serde_json::to_vec(a).unwrap()).unwrap();
    path
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

fn provenance_url(repo: &str, project: &str, version: &str, file: &Path) -> String {
    format!("{}/repository/{repo}/integrity/{project}/{version}/{}/provenance", server().base, name_of(file))
}

fn components(repo: &str) -> Vec<Value> {
    let v: Value = get(&format!("{}/service/rest/v1/components?repository={repo}", server().base), "application/json").json().unwrap();
    v["items"].as_array().unwrap().clone()
}

#[test]
fn twine_uploads_attestations_that_the_simple_and_integrity_apis_serve_until_the_file_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = dist(tmp.path(), "wharf-attested", "1.0");
    let (whl_att, sdist_att) = (attestation(&name_of(&whl), &sha256_of(&whl)), attestation(&name_of(&sdist), &sha256_of(&sdist)));
    let files = [whl.clone(), sdist.clone(), write_attestation(&whl, &whl_att), write_attestation(&sdist, &sdist_att)];
    ok(twine_attested(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>()));
    let (whl_url, sdist_url) = (provenance_url("pypi-hosted", "wharf-attested", "1.0", &whl), provenance_url("pypi-hosted", "wharf-attested", "1.0", &sdist));

    // PEP 691: each file's entry names its provenance; PEP 503: each anchor carries it.
    let page: Value = get(&format!("{}simple/wharf-attested/", repo_url()), "application/vnd.pypi.simple.v1+json").json().unwrap();
    let entry = |name: &str| page["files"].as_array().unwrap().iter().find(|f| f["filename"] == name).cloned().unwrap();
    assert_eq!(entry(&name_of(&whl))["provenance"], whl_url.as_str(), "{page}");
    assert_eq!(entry(&name_of(&sdist))["provenance"], sdist_url.as_str(), "{page}");
    let html = get(&format!("{}simple/wharf-attested/", repo_url()), "text/html").text().unwrap();
    assert!(html.contains(&format!("data-provenance=\"{whl_url}\"")), "{html}");

    // The Integrity API: one bundle holding the attestation as uploaded.
    let r = get(&whl_url, "*/*");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], INTEGRITY_TYPE);
    let p: Value = r.json().unwrap();
    assert_eq!(p["version"], 1);
    assert_eq!(p["attestation_bundles"].as_array().unwrap().len(), 1);
    assert_eq!(p["attestation_bundles"][0]["attestations"], json!([whl_att]));
    assert_eq!(p["attestation_bundles"][0]["publisher"]["kind"], "wharf-unverified", "no Trusted Publisher vouched for it");
    let p: Value = get(&sdist_url, "*/*").json().unwrap();
    assert_eq!(p["attestation_bundles"][0]["attestations"], json!([sdist_att]));
    // A wrong version, an unknown file, and the provenance asset read as a file: nothing.
    assert_eq!(get(&provenance_url("pypi-hosted", "wharf-attested", "2.0", &whl), "*/*").status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{}packages/wharf-attested/{}.provenance", repo_url(), name_of(&whl)), "*/*").status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{}/repository/pypi-hosted/integrity/wharf-attested/1.0/x.whl/provenance", server().base), "*/*").status(), StatusCode::NOT_FOUND);

    // pip does not mind.
    let site = tmp.path().join("site");
    ok(pip(&["install", "--no-cache-dir", "--index-url", &index_url(), "--target", site.to_str().unwrap(), "wharf-attested==1.0"]));
    assert!(site.join("wharf_attested/__init__.py").exists());

    // A group serves its member's provenance under its own URLs.
    let r = server()
        .admin()
        .request(reqwest::Method::POST, "/service/rest/v1/repositories/pypi/group")
        .json(&json!({"name": "pypi-attested-group", "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["pypi-hosted"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let via_group = provenance_url("pypi-attested-group", "wharf-attested", "1.0", &whl);
    let page: Value =
        get(&format!("{}/repository/pypi-attested-group/simple/wharf-attested/", server().base), "application/vnd.pypi.simple.v1+json").json().unwrap();
    assert!(page["files"].as_array().unwrap().iter().any(|f| f["provenance"] == via_group.as_str()), "{page}");
    let r = get(&via_group, "*/*");
    assert_eq!((r.status(), r.headers()["content-type"].to_str().unwrap().to_string()), (StatusCode::OK, INTEGRITY_TYPE.to_string()));
    assert_eq!(r.json::<Value>().unwrap()["attestation_bundles"][0]["attestations"], json!([whl_att]));

    // Deleting the wheel (assets API) takes its provenance, not the sdist's; deleting the
    // release (components API) takes the rest.
    let c = components("pypi-hosted").into_iter().find(|c| c["name"] == "wharf-attested" && c["version"] == "1.0").expect("component listed");
    let wheel_asset =
        c["assets"].as_array().unwrap().iter().find(|a| a["path"].as_str().unwrap().ends_with(".whl")).unwrap()["id"].as_str().unwrap().to_string();
    let r = http().delete(format!("{}/service/rest/v1/assets/{wheel_asset}", server().base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&whl_url, "*/*").status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&via_group, "*/*").status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&sdist_url, "*/*").status(), StatusCode::OK);
    let id = c["id"].as_str().unwrap();
    let r = http().delete(format!("{}/service/rest/v1/components/{id}", server().base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&sdist_url, "*/*").status(), StatusCode::NOT_FOUND);
}

#[test]
fn attestations_that_do_not_fit_the_file_are_refused_with_the_reason_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, sdist) = dist(tmp.path(), "wharf-misattested", "1.0");
    let page = || get(&format!("{}simple/wharf-misattested/", repo_url()), "text/html").status();
    let cases: Vec<(&str, Value, &str)> = vec![
        // The sdist's digest under the wheel's name: an attestation of another file.
        ("another file's digest", attestation(&name_of(&whl), &sha256_of(&sdist)), "the statement's subject has sha256"),
        ("another file's name", attestation(&name_of(&sdist), &sha256_of(&whl)), "not the uploaded file"),
        (
            "malformed",
            {
                let mut a = attestation(&name_of(&whl), &sha256_of(&whl));
                a["version"] = json!(2);
                a
            },
            "version must be 1",
        ),
        (
            "oversized",
            {
                let mut a = attestation(&name_of(&whl), &sha256_of(&whl));
                a["padding"] = json!("x".repeat(200 << 10));
                a
            },
            "larger than 128 KiB",
        ),
    ];
    for (what, a, reason) in cases {
        let att = write_attestation(&whl, &a);
        let text = refused(twine_attested(&[&whl, &att]));
        // twine prints the status line: Warehouse's words and why.
        assert!(text.contains("400") && text.contains("Invalid attestations supplied during upload") && text.contains(reason), "{what}: {text}");
        assert_eq!(page(), StatusCode::NOT_FOUND, "{what}: nothing of the refused upload is listed");
    }
    // The same file with a fitting attestation is accepted afterwards (allow_once saw no file).
    let att = write_attestation(&whl, &attestation(&name_of(&whl), &sha256_of(&whl)));
    ok(twine_attested(&[&whl, &att]));
    assert_eq!(page(), StatusCode::OK);
    assert_eq!(get(&provenance_url("pypi-hosted", "wharf-misattested", "1.0", &whl), "*/*").status(), StatusCode::OK);
}

#[test]
fn files_uploaded_without_attestations_have_no_provenance() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(tmp.path(), "wharf-unattested", "1.0");
    let out = Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", &repo_url(), "-u", "admin", "-p", ADMIN_PASSWORD])
        .arg(&whl)
        .output()
        .unwrap();
    ok(out);
    let page: Value = get(&format!("{}simple/wharf-unattested/", repo_url()), "application/vnd.pypi.simple.v1+json").json().unwrap();
    assert!(page["files"][0].get("provenance").is_none(), "{page}");
    let html = get(&format!("{}simple/wharf-unattested/", repo_url()), "text/html").text().unwrap();
    assert!(html.contains(&name_of(&whl)) && !html.contains("data-provenance"), "{html}");
    assert_eq!(get(&provenance_url("pypi-hosted", "wharf-unattested", "1.0", &whl), "*/*").status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_proxy_links_and_passes_on_its_upstreams_provenance() {
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(tmp.path(), "wharf-proxied-attested", "0.3");
    let att = attestation(&name_of(&whl), &sha256_of(&whl));
    ok(twine_attested(&[&whl, &write_attestation(&whl, &att)]));
    // The upstream is this wharf's hosted repository (JSON pages), behind credentials.
    let r = server()
        .admin()
        .request(reqwest::Method::POST, "/service/rest/v1/repositories/pypi/proxy")
        .json(&json!({
            "name": "pypi-attested-proxy", "online": true,
            "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
            "proxy": {"remoteUrl": format!("{}/repository/pypi-hosted/", server().base), "contentMaxAge": 1440, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": true, "timeToLive": 1440},
            "httpClient": {"blocked": false, "autoBlock": false, "connection": {"timeout": 10, "connectTimeout": 2},
                "authentication": {"type": "username", "username": "admin", "password": ADMIN_PASSWORD}},
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let url = provenance_url("pypi-attested-proxy", "wharf-proxied-attested", "0.3", &whl);
    let page: Value =
        get(&format!("{}/repository/pypi-attested-proxy/simple/wharf-proxied-attested/", server().base), "application/vnd.pypi.simple.v1+json").json().unwrap();
    assert_eq!(page["files"][0]["provenance"], url.as_str(), "wharf's URL, not the upstream's: {page}");
    let r = get(&url, "*/*");
    assert_eq!((r.status(), r.headers()["content-type"].to_str().unwrap().to_string()), (StatusCode::OK, INTEGRITY_TYPE.to_string()));
    assert_eq!(r.json::<Value>().unwrap()["attestation_bundles"][0]["attestations"], json!([att]));
    assert_eq!(get(&provenance_url("pypi-attested-proxy", "wharf-proxied-attested", "9.9", &whl), "*/*").status(), StatusCode::NOT_FOUND);
}

/// Garbage collection reads only assets' digests: the provenance blob has its asset, so it
/// stays while the file exists and goes once the file is deleted.
#[test]
fn garbage_collection_keeps_a_files_provenance_until_the_file_is_deleted() {
    let gc_env = [("WHARF_UPLOADS__TTL_SECS", "1"), ("WHARF_GC__GRACE_SECS", "1"), ("WHARF_GC__DELETION_LEASE_SECS", "2"), ("WHARF_GC__SCHEDULE", "")];
    let own = TestServer::start_with_env(&gc_env);
    let tmp = tempfile::tempdir().unwrap();
    let (whl, _) = dist(tmp.path(), "wharf-collected", "1.0");
    let att = write_attestation(&whl, &attestation(&name_of(&whl), &sha256_of(&whl)));
    let out = Command::new("twine")
        .args(["upload", "--attestations", "--non-interactive", "--disable-progress-bar", "-u", "admin", "-p", ADMIN_PASSWORD, "--repository-url"])
        .arg(format!("{}/repository/pypi-hosted/", own.base))
        .arg(&whl)
        .arg(&att)
        .output()
        .unwrap();
    ok(out);
    let url = format!("{}/repository/pypi-hosted/integrity/wharf-collected/1.0/{}/provenance", own.base, name_of(&whl));
    let body = get(&url, "*/*").bytes().unwrap();
    // Served as stored, so its digest is the blob's.
    let blob = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)));
    assert!(own.store_holds(&blob));
    let compact = || {
        let (status, v) = own.admin().json(reqwest::Method::POST, "/service/rest/v1/blobstores/default/compact?dryRun=false", None);
        assert_eq!(status, StatusCode::OK, "{v}");
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    compact();
    assert!(own.store_holds(&blob), "named by the provenance asset, kept");
    assert_eq!(get(&url, "*/*").status(), StatusCode::OK);

    let components: Value = get(&format!("{}/service/rest/v1/components?repository=pypi-hosted", own.base), "application/json").json().unwrap();
    let id = components["items"].as_array().unwrap().iter().find(|c| c["name"] == "wharf-collected").expect("listed")["id"].as_str().unwrap().to_string();
    let r = http().delete(format!("{}/service/rest/v1/components/{id}", own.base)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while own.store_holds(&blob) {
        assert!(std::time::Instant::now() < deadline, "the provenance blob outlived its file");
        std::thread::sleep(std::time::Duration::from_millis(300));
        compact();
    }
}
