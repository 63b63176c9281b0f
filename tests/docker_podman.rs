//! The real `podman` (the Docker CLI's peer, daemonless, so it runs in CI): login, pull, tag,
//! push against wharf, with a private storage root (vfs driver) and auth file.

mod common;

use std::process::{Command, Output};

use common::{oci, TestServer, ADMIN_PASSWORD};

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman { dir: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.path().join("root");
        let runroot = self.dir.path().join("runroot");
        let mut cmd = Command::new("podman");
        cmd.arg("--root").arg(&root).arg("--runroot").arg(&runroot).arg("--storage-driver").arg("vfs").arg("--events-backend").arg("none");
        cmd.args(args).env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"));
        cmd.output().expect("podman is installed (the test command installs it)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

fn skopeo_ok(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn podman_logs_in_pulls_and_pushes() {
    let server = TestServer::start();
    let host = &server.addr;
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("src");
    oci::image(&layout, "v1", &["amd64"], 11, 50_000);
    let creds = format!("admin:{ADMIN_PASSWORD}");
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{host}/docker-hosted/team/podman:1"),
    ]);

    let podman = Podman::new();
    let refused = podman.run(&["login", "--tls-verify=false", "-u", "admin", "-p", "wrong", host]);
    assert!(!refused.status.success(), "a wrong password must not log in");
    let out = podman.ok(&["login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, host]);
    assert!(out.contains("Login Succeeded"), "{out}");

    podman.ok(&["pull", "--tls-verify=false", &format!("{host}/docker-hosted/team/podman:1")]);
    podman.ok(&["tag", &format!("{host}/docker-hosted/team/podman:1"), &format!("{host}/docker-hosted/team/podman-copy:2")]);
    podman.ok(&["push", "--tls-verify=false", &format!("{host}/docker-hosted/team/podman-copy:2")]);

    let tags = skopeo_ok(&["list-tags", "--tls-verify=false", "--creds", &creds, &format!("docker://{host}/docker-hosted/team/podman-copy")]);
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["2"]));
    // podman pushed the same layer (by digest) it pulled.
    let pulled: serde_json::Value =
        serde_json::from_str(&skopeo_ok(&["inspect", "--tls-verify=false", "--creds", &creds, &format!("docker://{host}/docker-hosted/team/podman:1")]))
            .unwrap();
    let pushed: serde_json::Value =
        serde_json::from_str(&skopeo_ok(&["inspect", "--tls-verify=false", "--creds", &creds, &format!("docker://{host}/docker-hosted/team/podman-copy:2")]))
            .unwrap();
    assert_eq!(pulled["Layers"], pushed["Layers"]);
}
