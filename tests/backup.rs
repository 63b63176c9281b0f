//! `wharf backup` of a node on SQLite while pushes go on, restored by starting a server on the
//! copy (docs/deploy.md): every image acknowledged before the backup started is there with its
//! bytes, every image the copy names pulls whole, and a store that lost a blob the database names
//! makes the backup fail rather than leave a copy that cannot serve it.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const REPO: &str = "docker-hosted";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn http() -> Client {
    Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An image pushed and acknowledged: its tag, manifest digest, and layer.
#[derive(Clone)]
struct Pushed {
    name: String,
    manifest: String,
    layer: Vec<u8>,
}

/// Pushes image `app<i>:v1` (a config and a layer of its own) through raw HTTP.
fn push_image(base: &str, i: usize) -> Pushed {
    let name = format!("app{i}");
    let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#).into_bytes();
    let layer: Vec<u8> = (0..4096 + i).map(|k| (k * 31 + i * 7) as u8).collect();
    for blob in [&config, &layer] {
        let url = format!("{base}/v2/{REPO}/{name}/blobs/uploads/?digest={}", digest_of(blob));
        let r = http().post(url).basic_auth("admin", Some(ADMIN_PASSWORD)).body(blob.clone()).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(&layer), "size": layer.len()}]
    }))
    .unwrap();
    let r = http()
        .put(format!("{base}/v2/{REPO}/{name}/manifests/v1"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    Pushed { name, manifest: digest_of(&manifest), layer }
}

fn get(server: &TestServer, path: &str) -> (StatusCode, Vec<u8>, String) {
    let r = http().get(format!("{}{path}", server.base)).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Accept", OCI_MANIFEST).send().unwrap();
    let digest = r.headers().get("docker-content-digest").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (r.status(), r.bytes().unwrap().to_vec(), digest)
}

fn backup(server: &TestServer, to: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["backup", "--to"])
        .arg(to)
        .arg("--key-to")
        .arg(to.with_extension("key"))
        .env("WHARF_DATA_DIR", server.data_dir())
        .env("WHARF_DATABASE_URL", server.database_url())
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_backup_taken_while_pushes_go_on_restores_every_image_it_names() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    if common::s3::servers_on_s3() {
        eprintln!("skipped: the default blob store is in S3, which a backup does not copy");
        return;
    }
    if server.is_postgres() {
        let out = backup(&server, &tmp.path().join("b"));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"), "{}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let before: Vec<Pushed> = (0..20).map(|i| push_image(&server.base, i)).collect();

    // A blob the database names is gone from the store: the backup says so and fails.
    let hex = digest_of(&before[3].layer).trim_start_matches("sha256:").to_string();
    let file = server.data_dir().join("blobs/default/blobs/sha256").join(&hex[..2]).join(&hex);
    let kept = tmp.path().join("kept");
    std::fs::rename(&file, &kept).unwrap();
    let out = backup(&server, &tmp.path().join("broken"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&hex) && err.contains("not in the copy"), "{err}");
    assert!(!tmp.path().join("broken").exists(), "a failed backup leaves nothing");
    // Nor may a backup go into a store it copies.
    let out = backup(&server, &server.data_dir().join("blobs/default/backup"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("inside blob store default"), "{err}");
    assert!(!server.data_dir().join("blobs/default/backup").exists());
    std::fs::rename(&kept, &file).unwrap();

    // Pushes go on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(Mutex::new(Vec::new()));
    let pusher = {
        let (stop, during) = (stop.clone(), during.clone());
        let base = server.base.clone();
        std::thread::spawn(move || {
            let mut i = 100;
            while !stop.load(Ordering::SeqCst) {
                let p = push_image(&base, i);
                during.lock().unwrap().push(p);
                i += 1;
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while during.lock().unwrap().len() < 3 {
        assert!(!pusher.is_finished() && std::time::Instant::now() < deadline, "the pushes beside the backup stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked_before: Vec<Pushed> = before.iter().cloned().chain(during.lock().unwrap().iter().cloned()).collect();
    let to = tmp.path().join("backup");
    let out = backup(&server, &to);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("keep it apart"), "{said}");
    // The key is apart from the backup (a copy of the database alone reveals no secret).
    assert!(!to.join("secret.key").exists());
    let key = to.with_extension("key");
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(server.data_dir().join("secret.key")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    for private in [to.clone(), to.join("wharf.db"), key.clone()] {
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}: only its owner may read a backup", private.display());
    }
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();

    // Restored: a server started on a copy of the backup as its data directory.
    let mut restored = TestServer::unstarted(&[]);
    copy_dir(&to, &restored.data_dir);
    std::fs::copy(&key, restored.data_dir.join("secret.key")).unwrap();
    restored.spawn();
    for p in &acked_before {
        let (status, _, digest) = get(&restored, &format!("/v2/{REPO}/{}/manifests/v1", p.name));
        assert_eq!((status, digest.as_str()), (StatusCode::OK, p.manifest.as_str()), "{}", p.name);
        let (status, bytes, _) = get(&restored, &format!("/v2/{REPO}/{}/blobs/{}", p.name, digest_of(&p.layer)));
        assert_eq!(status, StatusCode::OK);
        assert!(bytes == p.layer, "{}: the layer's bytes", p.name);
    }
    // Whatever else the copy names (pushed while it was taken) pulls whole.
    let (_, body, _) = get(&restored, "/v2/_catalog?n=10000");
    let catalog: Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<String> = catalog["repositories"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    assert!(names.len() >= acked_before.len(), "{names:?}");
    for full in &names {
        let (status, body, _) = get(&restored, &format!("/v2/{full}/manifests/v1"));
        assert_eq!(status, StatusCode::OK, "{full}");
        let m: Value = serde_json::from_slice(&body).unwrap();
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            let (status, bytes, _) = get(&restored, &format!("/v2/{full}/blobs/{}", d["digest"].as_str().unwrap()));
            assert_eq!(status, StatusCode::OK, "{full}: {d}");
            assert_eq!(digest_of(&bytes), d["digest"].as_str().unwrap(), "{full}");
        }
    }
}

/// A database that a newer version migrated is not backed up by this one: what the newer
/// version added, this one would not know to copy. The backup fails, names the migration and
/// leaves nothing.
#[test]
fn a_backup_of_a_database_a_newer_version_migrated_fails_and_names_it() {
    let mut server = TestServer::unstarted(&[]);
    if server.is_postgres() || common::s3::servers_on_s3() {
        return;
    }
    server.spawn();
    server.kill();
    let url = server.database_url();
    use diesel::{Connection as _, RunQueryDsl as _};
    let mut c = diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
    diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000003')").execute(&mut c).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = backup(&server, &tmp.path().join("b"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("migration 20991231000003 is unknown") && err.contains("back it up with the version that serves it"), "{err}");
    assert!(!tmp.path().join("b").exists(), "a failed backup leaves nothing");
}
