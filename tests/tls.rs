//! HTTPS end to end: `wharf cert` makes a CA and a server certificate; with them configured,
//! skopeo, pip, twine and npm succeed when they trust the CA and fail when they do not, on the
//! main port and on a Docker repository's own HTTPS port.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{free_port, TestServer, ADMIN_PASSWORD};
use serde_json::{json, Value};

struct Env {
    server: TestServer,
    certs: PathBuf,
    https_port: u16,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let out = Command::new(env!("CARGO_BIN_EXE_wharf")).args(["cert", "--name", "127.0.0.1", "--name", "localhost", "--out"]).arg(&certs).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("/etc/docker/certs.d/127.0.0.1:") && text.contains("PIP_CERT=") && text.contains("npm config set cafile"), "{text}");
        let (cert, key) = (certs.join("server.crt"), certs.join("server.key"));
        let server = TestServer::start_with_env(&[("WHARF_TLS__CERT_FILE", cert.to_str().unwrap()), ("WHARF_TLS__KEY_FILE", key.to_str().unwrap())]);
        let https_port = free_port();
        let r = trusting(&certs)
            .post(format!("https://{}/service/rest/v1/repositories/docker/hosted", server.addr))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&json!({"name": "docker-tls", "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": {"httpsPort": https_port}}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
        Env { server, certs, https_port, _dir: dir }
    })
}

fn ca(certs: &Path) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.crt")).unwrap()).unwrap()
}

fn trusting(certs: &Path) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().add_root_certificate(ca(certs)).build().unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn https_answers_only_clients_that_trust_the_ca() {
    let e = env();
    let url = format!("https://{}/service/rest/v1/status", e.server.addr);
    assert_eq!(trusting(&e.certs).get(&url).send().unwrap().status().as_u16(), 200);
    assert!(reqwest::blocking::Client::new().get(&url).send().is_err(), "an unknown CA is refused");
    // Plain HTTP on the HTTPS port gets nowhere.
    assert!(reqwest::blocking::Client::new()
        .get(format!("http://{}/service/rest/v1/status", e.server.addr))
        .send()
        .map(|r| !r.status().is_success())
        .unwrap_or(true));
    // Tarball and file URLs follow the scheme the client used.
    let v: Value = trusting(&e.certs)
        .get(format!("https://{}/repository/npm-hosted/-/ping", e.server.addr))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v, json!({}));
}

#[test]
fn skopeo_pushes_and_pulls_over_https_with_the_ca_and_fails_without() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    // skopeo reads CA files (*.crt) from a directory, as /etc/containers/certs.d/<host:port>/ does.
    let cert_dir = tmp.path().join("certs.d");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(e.certs.join("ca.crt"), cert_dir.join("ca.crt")).unwrap();
    let layout = tmp.path().join("layout");
    common::oci::image(&layout, "v1", &["amd64"], 11, 2048);
    let src = format!("oci:{}:v1", layout.display());
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let skopeo = |args: &[&str]| Command::new("skopeo").args(args).output().expect("skopeo is installed");
    let on_main = format!("docker://{}/docker-hosted/tls/app:v1", e.server.addr);
    let out = skopeo(&["copy", "--dest-creds", &creds, &src, &on_main]);
    assert!(!out.status.success(), "without the CA skopeo refuses");
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"), "{}", String::from_utf8_lossy(&out.stderr));
    ok(skopeo(&["copy", "--dest-cert-dir", cert_dir.to_str().unwrap(), "--dest-creds", &creds, &src, &on_main]));
    let back = format!("oci:{}:v1", tmp.path().join("back").display());
    ok(skopeo(&["copy", "--src-cert-dir", cert_dir.to_str().unwrap(), "--src-creds", &creds, &on_main, &back]));
    // The repository's own HTTPS port, where image names carry no repository segment.
    let on_port = format!("docker://127.0.0.1:{}/app:v1", e.https_port);
    ok(skopeo(&["copy", "--dest-cert-dir", cert_dir.to_str().unwrap(), "--dest-creds", &creds, &src, &on_port]));
    let tags = ok(skopeo(&["list-tags", "--cert-dir", cert_dir.to_str().unwrap(), "--creds", &creds, &format!("docker://127.0.0.1:{}/app", e.https_port)]));
    assert!(tags.contains("v1"), "{tags}");
}

#[test]
fn pip_twine_and_npm_work_over_https_with_the_ca_and_fail_without() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = e.certs.join("ca.crt");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let out = Command::new("python3").arg(script).arg(tmp.path().join("d")).arg("wharf-tls-pkg").arg("1.0").output().unwrap();
    let whl = PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().next().unwrap());
    let repo = format!("https://{}/repository/pypi-hosted/", e.server.addr);
    let twine = |extra: &[&str]| {
        Command::new("twine")
            .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", &repo, "-u", "admin", "-p", ADMIN_PASSWORD])
            .args(extra)
            .arg(&whl)
            // requests lets these override twine's --cert; this machine sets them.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .expect("twine is installed")
    };
    assert!(!twine(&[]).status.success(), "twine without the CA refuses");
    ok(twine(&["--cert", ca_file.to_str().unwrap()]));
    let index = format!("https://admin:{ADMIN_PASSWORD}@{}/repository/pypi-hosted/simple/", e.server.addr);
    let pip = |extra: &[&str], target: &str| {
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                "--isolated",
                "install",
                "--no-cache-dir",
                "--index-url",
                &index,
                "--target",
                target,
            ])
            .args(extra)
            .arg("wharf-tls-pkg")
            .env_remove("PIP_CERT")
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .unwrap()
    };
    let t1 = tmp.path().join("t1");
    assert!(!pip(&[], t1.to_str().unwrap()).status.success(), "pip without the CA refuses");
    let t2 = tmp.path().join("t2");
    ok(pip(&["--cert", ca_file.to_str().unwrap()], t2.to_str().unwrap()));
    assert!(t2.join("wharf_tls_pkg/__init__.py").exists());

    // npm: publish and install with `cafile`, refused without.
    let registry = format!("https://{}/repository/npm-hosted/", e.server.addr);
    let token = {
        let r = trusting(&e.certs)
            .put(format!("{registry}-/user/org.couchdb.user:admin"))
            .json(&json!({"name": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .unwrap();
        r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
    };
    let rc = tmp.path().join("npmrc");
    std::fs::write(&rc, format!("registry={registry}\n{}:_authToken={token}\n", registry.trim_start_matches("https:"))).unwrap();
    let pkg = tmp.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("package.json"), r#"{"name": "wharf-tls-npm", "version": "1.0.0"}"#).unwrap();
    let npm = |cwd: &Path, args: &[&str]| {
        Command::new("npm")
            .args(args)
            .current_dir(cwd)
            .env("npm_config_userconfig", &rc)
            .env("npm_config_cache", tmp.path().join("cache"))
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fetch_retries", "0")
            .env_remove("NODE_EXTRA_CA_CERTS")
            .output()
            .unwrap()
    };
    assert!(!npm(&pkg, &["publish"]).status.success(), "npm without the CA refuses");
    ok(npm(&pkg, &["publish", "--cafile", ca_file.to_str().unwrap()]));
    let proj = tmp.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("package.json"), r#"{"name": "consumer", "version": "1.0.0", "private": true}"#).unwrap();
    ok(npm(&proj, &["install", "--cafile", ca_file.to_str().unwrap(), "wharf-tls-npm"]));
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(proj.join("package-lock.json")).unwrap()).unwrap();
    assert!(lock["packages"]["node_modules/wharf-tls-npm"]["resolved"].as_str().unwrap().starts_with("https://"), "tarball URLs follow the scheme");
}

/// `httpsPort` is checked as `httpPort` is: another repository's port (either kind), the main
/// port, and the repository's own httpPort are refused, naming the field (an https port taken
/// from another repository was accepted, and the later name won the port).
#[test]
fn an_https_port_cannot_take_another_repositorys_port() {
    let e = env();
    let create = |name: &str, docker: Value| {
        trusting(&e.certs)
            .post(format!("https://{}/service/rest/v1/repositories/docker/hosted", e.server.addr))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&json!({"name": name, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": docker}))
            .send()
            .unwrap()
    };
    let main_port: u16 = e.server.addr.rsplit(':').next().unwrap().parse().unwrap();
    let own = free_port();
    for (docker, why) in [
        (json!({"httpsPort": e.https_port}), "docker-tls's https port"),
        (json!({"httpsPort": main_port}), "the main port"),
        (json!({"httpPort": own, "httpsPort": own}), "its own httpPort"),
    ] {
        let r = create("zzz-https", docker);
        assert_eq!(r.status().as_u16(), 400, "{why}");
        assert!(r.text().unwrap().contains("docker.httpsPort"), "{why}");
    }
}
