//! The admin console end to end in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from npm; tests/console/e2e.js): an admin creates one repository of each
//! format and type through the forms, real clients use them, the console browses and deletes,
//! and a read-only user sees no admin pages. Screenshots go to target/console-screenshots.

mod common;

use std::process::Command;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::json;

fn e2e(server: &TestServer, phase: &str, user: &str, password: &str) {
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/console-screenshots");
    std::fs::create_dir_all(shots).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/e2e.js");
    let out = Command::new("node").arg(script).args([phase, &server.base, user, password, shots]).output().expect("node runs");
    assert!(out.status.success(), "console {phase}: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
}

#[test]
fn an_admin_manages_repositories_in_the_console_and_clients_use_them() {
    let server = TestServer::start();
    e2e(&server, "create", "admin", ADMIN_PASSWORD);

    // A real client uses a repository the console made.
    let tmp = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let out = Command::new("python3").arg(script).arg(tmp.path()).arg("ui-console-pkg").arg("1.0").output().unwrap();
    let whl = String::from_utf8(out.stdout).unwrap().lines().next().unwrap().to_string();
    let out = Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", &server.url("/repository/ui-pypi-hosted/"), "-u", "admin", "-p", ADMIN_PASSWORD, &whl])
        .output()
        .expect("twine is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layout = tmp.path().join("layout");
    common::oci::image(&layout, "v1", &["amd64"], 5, 1024);
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &format!("admin:{ADMIN_PASSWORD}")])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/ui-docker-hosted/team/app:v1", server.addr))
        .output()
        .expect("skopeo is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    e2e(&server, "browse", "admin", ADMIN_PASSWORD);
    let r = server.admin().request(Method::GET, "/service/rest/v1/repositories/ui-npm-proxy").send().unwrap();
    assert_eq!(r.status().as_u16(), 404, "deleted from the console");

    let admin = server.admin();
    let r = admin.request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": "console-readers", "privileges": ["nx-repository-view-*-*-read"]})).send().unwrap();
    assert!(r.status().is_success());
    let r = admin.request(Method::POST, "/service/rest/v1/security/users").json(&json!({"userId": "console-reader", "password": "console-reader-pw", "roles": ["console-readers"]})).send().unwrap();
    assert!(r.status().is_success());
    e2e(&server, "reader", "console-reader", "console-reader-pw");
}
