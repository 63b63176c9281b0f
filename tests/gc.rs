//! Garbage collection and the tasks that run it, with the real clients: what no asset names is
//! freed (exactly that, counted in bytes on disk), what is shared or still named stays and pulls
//! with skopeo; a pass running against concurrent pushes that reuse layers never takes a blob an
//! acknowledged manifest needs; a pass killed with SIGKILL leaves nothing broken and the next
//! one finishes its job; the tasks API runs, reports, refuses and remembers.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{oci, TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Blobs untouched for a second are fair game; marks older than two seconds are stale.
const GC_ENV: &[(&str, &str)] =
    &[("WHARF_UPLOADS__TTL_SECS", "1"), ("WHARF_GC__GRACE_SECS", "1"), ("WHARF_GC__DELETION_LEASE_SECS", "2"), ("WHARF_GC__SCHEDULE", "")];

fn creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed (the test command installs it)")
}

fn push(layout: &Path, tag: &str, dest: &str) -> Output {
    let src = format!("oci:{}:{tag}", layout.display());
    skopeo(&["copy", "--retry-times", "0", "--dest-tls-verify=false", "--dest-creds", &creds(), &src, dest])
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Files and bytes under the default blob store's `blobs/`.
fn on_disk(server: &TestServer) -> (HashSet<String>, u64) {
    fn walk(dir: &Path, names: &mut HashSet<String>, bytes: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            // A pass may delete it between the listing and this look.
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), names, bytes);
            } else {
                names.insert(format!("sha256:{}", e.file_name().to_string_lossy()));
                *bytes += m.len();
            }
        }
    }
    let (mut names, mut bytes) = (HashSet::new(), 0);
    walk(&server.data_dir().join("blobs/default/blobs"), &mut names, &mut bytes);
    (names, bytes)
}

fn admin_json(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server.admin().json(method, path, body)
}

fn compact(server: &TestServer, dry_run: bool) -> Value {
    let (status, v) = admin_json(server, Method::POST, &format!("/service/rest/v1/blobstores/default/compact?dryRun={dry_run}"), None);
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Runs a task now and waits for that run to end; returns the task as the API shows it then.
fn run_task(server: &TestServer, id: &str) -> Value {
    let newest = |server: &TestServer| admin_json(server, Method::GET, &format!("/service/rest/v1/tasks/{id}/runs"), None).1["items"][0].clone();
    let before = newest(server)["id"].clone();
    let (status, v) = admin_json(server, Method::POST, &format!("/service/rest/v1/tasks/{id}/run"), None);
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = newest(server);
        if run["id"] != before && run["result"] != "RUNNING" {
            return admin_json(server, Method::GET, &format!("/service/rest/v1/tasks/{id}"), None).1;
        }
        assert!(Instant::now() < deadline, "task {id} did not finish: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls a dry run until it reports exactly `count` blobs (the grace period has to pass first:
/// a lower bound, not a race).
fn dry_run_until(server: &TestServer, count: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = compact(server, true);
        if v["blobCount"] == count {
            return v;
        }
        assert!(Instant::now() < deadline, "the dry run never reported {count} blobs: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn docker_cleanup_task(server: &TestServer) -> String {
    let (status, v) = admin_json(
        server,
        Method::POST,
        "/service/rest/v1/tasks",
        Some(
            json!({"type": "repository.docker.gc", "name": "unused manifests", "frequency": {"schedule": "manual"}, "properties": {"repositoryName": "docker-hosted", "olderThanDays": 0}}),
        ),
    );
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn delete_manifest(server: &TestServer, image: &str, digest: &str) -> StatusCode {
    common::client()
        .delete(server.url(&format!("/v2/docker-hosted/{image}/manifests/{digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .status()
}

/// The images of docker-hosted that `/v2/_catalog` lists.
fn catalog(server: &TestServer) -> Vec<String> {
    let v: Value = common::client().get(server.url("/v2/_catalog")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().json().unwrap();
    v["repositories"].as_array().unwrap().iter().filter_map(Value::as_str).filter(|n| n.starts_with("docker-hosted/")).map(str::to_string).collect()
}

fn dist(dir: &Path, name: &str, version: &str) -> PathBuf {
    common::pypi::dist(dir, name, version, &[]).0
}

#[test]
fn deleted_images_are_freed_exactly_and_what_is_shared_or_named_stays() {
    let server = TestServer::start_with_env(GC_ENV);
    let tmp = tempfile::tempdir().unwrap();
    let host = &server.addr;
    // app:a = [L1, L2], app:b = [L2, L3], other:c = [L4]: L2 is shared by a kept and a deleted image.
    // (Odd seeds: `noise` makes the same bytes for 2k and 2k+1.)
    let a = oci::image_of_layers(&tmp.path().join("a"), "a", &[1, 3], 200_000, "a");
    let b = oci::image_of_layers(&tmp.path().join("b"), "b", &[3, 5], 200_000, "b");
    let c = oci::image_of_layers(&tmp.path().join("c"), "c", &[7], 200_000, "c");
    ok(push(&tmp.path().join("a"), "a", &format!("docker://{host}/docker-hosted/app:a")));
    ok(push(&tmp.path().join("b"), "b", &format!("docker://{host}/docker-hosted/app:b")));
    ok(push(&tmp.path().join("c"), "c", &format!("docker://{host}/docker-hosted/other:c")));
    // A PyPI upload: its file and its PEP 658 metadata are blobs that must stay.
    let wheel = dist(tmp.path(), "gc-kept", "1.0");
    let repo_url = format!("{}/repository/pypi-hosted/", server.base);
    ok(Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", &repo_url, "-u", "admin", "-p", ADMIN_PASSWORD])
        .arg(&wheel)
        .output()
        .unwrap());
    let (files_before, bytes_before) = on_disk(&server);

    assert_eq!(delete_manifest(&server, "app", &b.top_digest), StatusCode::ACCEPTED);
    assert_eq!(delete_manifest(&server, "other", &c.top_digest), StatusCode::ACCEPTED);
    // Still linked to their images: only the two manifests' own bytes are free so far.
    let freed_now: HashSet<&String> = [&b.top_digest, &c.top_digest].into_iter().collect();
    dry_run_until(&server, 2);

    // The Docker clean-up unlinks what no remaining manifest uses: L3 and b's config, L4 and c's
    // config; and frees their bytes beside its run (nothing else names them, and the grace period
    // has passed for them: the manifests pushed after them are past it).
    let unlinked: HashSet<String> = [b.blobs[1].clone(), b.blobs[2].clone(), c.blobs[0].clone(), c.blobs[1].clone()].into();
    assert!(!unlinked.contains(&a.blobs[1]), "L2 is a's too");
    let size_of = |d: &String| {
        if *d == b.top_digest || b.blobs.contains(d) {
            oci::blob_size(&tmp.path().join("b"), d)
        } else {
            oci::blob_size(&tmp.path().join("c"), d)
        }
    };
    let unlinked_bytes: u64 = unlinked.iter().map(size_of).sum();
    assert_eq!(catalog(&server), ["docker-hosted/app", "docker-hosted/other"], "a deleted manifest leaves its image's links");
    let task = docker_cleanup_task(&server);
    let t = run_task(&server, &task);
    assert_eq!(t["lastRunResult"], "OK", "{t}");
    // `other` is left with nothing: it leaves the catalog; `app` keeps a tag.
    assert_eq!(catalog(&server), ["docker-hosted/app"], "an image left with nothing leaves the catalog");
    assert_eq!(
        t["message"],
        format!("docker-hosted: removed 0 unused manifests and 4 unused blob links and 1 empty images; freed 4 blobs, {unlinked_bytes} bytes"),
        "{t}"
    );
    let (files_mid, bytes_mid) = on_disk(&server);
    assert_eq!(bytes_before - bytes_mid, unlinked_bytes, "the task's run freed exactly what it unlinked");
    assert_eq!(files_before.difference(&files_mid).cloned().collect::<HashSet<String>>(), unlinked);
    let runs = admin_json(&server, Method::GET, &format!("/service/rest/v1/tasks/{task}/runs"), None).1;
    assert_eq!(runs["items"][0]["report"]["repositories"]["docker-hosted"]["freed"], json!({"blobCount": 4, "bytes": unlinked_bytes}), "{runs}");

    // The compaction frees the rest: the two manifests' own bytes.
    let expected: HashSet<String> = freed_now.into_iter().cloned().collect();
    let expected_bytes: u64 = expected.iter().map(size_of).sum();
    let report = dry_run_until(&server, expected.len() as u64);
    assert_eq!(report["bytes"], expected_bytes, "{report}");
    assert_eq!(on_disk(&server).1, bytes_mid, "a dry run deletes nothing");

    let t = run_task(&server, "compact-blob-stores");
    assert_eq!(t["lastRunResult"], "OK", "{t}");
    assert_eq!(t["message"], format!("deleted {} blobs, {expected_bytes} bytes", expected.len()), "{t}");
    let (files_after, bytes_after) = on_disk(&server);
    assert_eq!(bytes_before - bytes_after, expected_bytes + unlinked_bytes, "bytes on disk fell by exactly what nothing names");
    let gone: HashSet<String> = files_before.difference(&files_after).cloned().collect();
    assert_eq!(gone, expected.union(&unlinked).cloned().collect());
    assert_eq!(compact(&server, true)["blobCount"], 0, "nothing left to collect");

    // What stays pulls whole, and the PyPI file's metadata is still served.
    let pulled = tmp.path().join("pulled");
    ok(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds(),
        &format!("docker://{host}/docker-hosted/app:a"),
        &format!("oci:{}:a", pulled.display()),
    ]));
    let page_url = reqwest::Url::parse(&format!("{repo_url}simple/gc-kept/")).unwrap();
    let simple: Value = common::client()
        .get(page_url.clone())
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut file_url = page_url.join(simple["files"][0]["url"].as_str().unwrap()).unwrap();
    file_url.set_fragment(None);
    let meta = common::client().get(format!("{file_url}.metadata")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(meta.status(), StatusCode::OK, "the wheel's metadata is served after GC");
    assert!(meta.text().unwrap().contains("Name: gc-kept"));
    let wheel_got = common::client().get(file_url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(wheel_got.status(), StatusCode::OK);
    assert_eq!(wheel_got.bytes().unwrap().to_vec(), std::fs::read(&wheel).unwrap());

    // The run is in the history and the audit log.
    let runs = admin_json(&server, Method::GET, "/service/rest/v1/tasks/compact-blob-stores/runs", None).1;
    assert_eq!(runs["items"][0]["result"], "OK");
    assert_eq!(runs["items"][0]["report"]["blobCount"], expected.len() as u64, "{runs}");
    // The audit line is written in the background: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = admin_json(&server, Method::GET, "/service/rest/v1/audit?action=task.run", None).1;
        if audit.to_string().contains("Compact blob stores") {
            break;
        }
        assert!(Instant::now() < deadline, "no audit event for the run: {audit}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The emptied image pushed again is an image again, and pulls.
    ok(push(&tmp.path().join("c"), "c", &format!("docker://{host}/docker-hosted/other:c")));
    assert_eq!(catalog(&server), ["docker-hosted/app", "docker-hosted/other"]);
    ok(skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds(),
        &format!("docker://{host}/docker-hosted/other:c"),
        &format!("oci:{}:c", pulled.display()),
    ]));
}

/// Puts an object into a store's directory behind wharf's back (as content older than the
/// ledger is), dated long ago; returns its path.
fn foreign_object(store_dir: &Path, content: &[u8]) -> PathBuf {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(content));
    let path = store_dir.join("blobs/sha256").join(&hex[..2]).join(&hex);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let touched = Command::new("touch").args(["-d", "2020-01-01"]).arg(&path).status().unwrap();
    assert!(touched.success());
    path
}

#[test]
fn objects_the_database_never_knew_are_found_by_a_stores_first_walk_and_when_asked() {
    let server = TestServer::start_with_env(GC_ENV);
    // The default store was created over an empty directory: a pass does not walk it.
    let stray = foreign_object(&server.data_dir().join("blobs/default"), b"written before the ledger");
    let r = compact(&server, false);
    assert_eq!((r["blobCount"].as_u64(), r["blobStores"][0]["scanned"].as_bool()), (Some(0), Some(false)), "{r}");
    assert!(stray.exists());
    // Asked to, it walks: the dry run counts the object and leaves it, the pass frees it.
    let (status, r) = admin_json(&server, Method::POST, "/service/rest/v1/blobstores/default/compact?dryRun=true&fullScan=true", None);
    assert_eq!((status, r["blobCount"].as_u64(), r["bytes"].as_u64()), (StatusCode::OK, Some(1), Some(25)), "{r}");
    assert!(stray.exists());
    let (status, r) = admin_json(&server, Method::POST, "/service/rest/v1/blobstores/default/compact?fullScan=true", None);
    assert_eq!((status, r["blobCount"].as_u64(), r["blobStores"][0]["adopted"].as_u64()), (StatusCode::OK, Some(1), Some(1)), "{r}");
    assert!(!stray.exists(), "the object nobody names is freed");

    // A store created over a directory that already holds content is walked by its first pass,
    // and not by the next.
    let dir = tempfile::tempdir().unwrap();
    let old = foreign_object(dir.path(), b"an older installation's blob");
    let (status, v) =
        admin_json(&server, Method::POST, "/service/rest/v1/blobstores/file", Some(json!({"name": "reused", "path": dir.path().to_str().unwrap()})));
    assert!(status.is_success(), "{status} {v}");
    let (status, r) = admin_json(&server, Method::POST, "/service/rest/v1/blobstores/reused/compact", None);
    assert_eq!((status, r["blobCount"].as_u64(), r["blobStores"][0]["scanned"].as_bool()), (StatusCode::OK, Some(1), Some(true)), "{r}");
    assert!(!old.exists());
    foreign_object(dir.path(), b"put there after the first walk");
    let (_, r) = admin_json(&server, Method::POST, "/service/rest/v1/blobstores/reused/compact", None);
    assert_eq!((r["blobCount"].as_u64(), r["blobStores"][0]["scanned"].as_bool()), (Some(0), Some(false)), "{r}");
}

#[test]
fn the_tasks_api_lists_validates_and_refuses() {
    let server = TestServer::start_with_env(GC_ENV);
    let (_, list) = admin_json(&server, Method::GET, "/service/rest/v1/tasks", None);
    let ids: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    for builtin in ["cleanup", "compact-blob-stores", "upload-sweep", "audit-retention", "repository-health-check"] {
        assert!(ids.contains(&builtin), "{list}");
    }
    let compact_task = list["items"].as_array().unwrap().iter().find(|t| t["id"] == "compact-blob-stores").unwrap();
    assert_eq!(compact_task["frequency"]["schedule"], "manual", "gc.schedule = \"\" means manual: {compact_task}");
    assert_eq!(compact_task["currentState"], "WAITING");
    let (_, types) = admin_json(&server, Method::GET, "/service/rest/v1/tasks/types", None);
    assert!(types.to_string().contains("repository.docker.gc"), "{types}");

    for (body, field) in [
        (json!({"type": "nope", "name": "x"}), "PARAMETER type"),
        (json!({"type": "blobstore.compact", "name": "x", "properties": {"blobstoreName": "default", "speed": 3}}), "PARAMETER properties.speed"),
        (
            json!({"type": "blobstore.compact", "name": "x", "frequency": {"schedule": "cron", "cronExpression": "every day"}}),
            "PARAMETER frequency.cronExpression",
        ),
        (json!({"type": "repository.docker.gc", "name": "x", "properties": {"olderThanDays": "one"}}), "PARAMETER properties.olderThanDays"),
        (json!({"type": "audit.retention", "name": "x", "alertEmail": "ops@example.com"}), "PARAMETER alertEmail"),
        // A count of days past a hundred years wrapped into the past: u64::MAX days deleted
        // every audit event, this task's own creation included.
        (json!({"type": "audit.retention", "name": "x", "properties": {"days": u64::MAX}}), "PARAMETER properties.days"),
        (json!({"type": "repository.docker.gc", "name": "x", "properties": {"olderThanDays": 36_501}}), "PARAMETER properties.olderThanDays"),
        // Accepted, these were never honoured: a cron time that never comes, the other
        // schedule's field, an id of one's choosing (the task got another).
        (
            json!({"type": "audit.retention", "name": "x", "frequency": {"schedule": "cron", "cronExpression": "0 0 30 2 *"}}),
            "PARAMETER frequency.cronExpression",
        ),
        (json!({"type": "audit.retention", "name": "x", "frequency": {"schedule": "manual", "intervalSeconds": 60}}), "PARAMETER frequency.intervalSeconds"),
        (
            json!({"type": "audit.retention", "name": "x", "frequency": {"schedule": "interval", "intervalSeconds": 60, "cronExpression": "0 2 * * *"}}),
            "PARAMETER frequency.cronExpression",
        ),
        (json!({"type": "audit.retention", "name": "x", "id": "nightly"}), "PARAMETER id"),
    ] {
        let (status, v) = admin_json(&server, Method::POST, "/service/rest/v1/tasks", Some(body.clone()));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v[0]["id"], field, "{body}: {v}");
    }
    // A task of one's own, on an interval: the scheduler runs it without being asked.
    let (status, t) = admin_json(
        &server,
        Method::POST,
        "/service/rest/v1/tasks",
        Some(
            json!({"type": "blobstore.compact", "name": "dry every second", "frequency": {"schedule": "interval", "intervalSeconds": 1}, "properties": {"dryRun": true}}),
        ),
    );
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = admin_json(&server, Method::GET, &format!("/service/rest/v1/tasks/{id}/runs"), None).1;
        if runs["items"].as_array().unwrap().iter().filter(|r| r["result"] == "OK" && r["trigger"] == "schedule").count() >= 2 {
            assert!(runs["items"][0]["message"].as_str().unwrap().starts_with("would delete"), "{runs}");
            break;
        }
        assert!(Instant::now() < deadline, "the scheduler did not run the task twice: {runs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Disabled: no next run, and the scheduler leaves it alone.
    let (status, t) = admin_json(&server, Method::PUT, &format!("/service/rest/v1/tasks/{id}"), Some(json!({"enabled": false})));
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["nextRun"], Value::Null);
    // Stopping a task that is not running is a conflict; unknown tasks are 404.
    assert_eq!(admin_json(&server, Method::POST, "/service/rest/v1/tasks/upload-sweep/stop", None).0, StatusCode::CONFLICT);
    assert_eq!(admin_json(&server, Method::POST, "/service/rest/v1/tasks/no-such-task/run", None).0, StatusCode::NOT_FOUND);
    // Built-in tasks follow the configuration: their schedule cannot be changed here, nor can they be deleted.
    let (status, v) = admin_json(&server, Method::PUT, "/service/rest/v1/tasks/upload-sweep", Some(json!({"frequency": {"schedule": "manual"}})));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("uploads.sweep_interval_secs"), "{v}");
    assert_eq!(admin_json(&server, Method::DELETE, "/service/rest/v1/tasks/upload-sweep", None).0, StatusCode::BAD_REQUEST);
    assert_eq!(admin_json(&server, Method::DELETE, &format!("/service/rest/v1/tasks/{id}"), None).0, StatusCode::NO_CONTENT);
    // Only administrators.
    let r = common::client().get(server.url("/service/rest/v1/tasks")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// The built-in tasks' definitions come from the configuration, but administrators may switch
/// them off: every one of them takes back what GET showed, and `enabled` alone, and stays
/// switched off across a restart. A row an older version wrote without a property added since
/// (the compact task's `fullScan`) is brought up to date at start and updates like the others.
#[test]
fn every_builtin_task_can_be_updated_and_disabled_and_stays_disabled_across_a_restart() {
    const BUILTINS: [&str; 5] = ["cleanup", "compact-blob-stores", "upload-sweep", "audit-retention", "repository-health-check"];
    let mut server = TestServer::start_with_env(GC_ENV);
    let task = |server: &TestServer, id: &str| admin_json(server, Method::GET, &format!("/service/rest/v1/tasks/{id}"), None).1;
    let put = |server: &TestServer, id: &str, body: Value| {
        let (status, v) = admin_json(server, Method::PUT, &format!("/service/rest/v1/tasks/{id}"), Some(body.clone()));
        assert_eq!(status, StatusCode::OK, "PUT {id} {body}: {v}");
        v
    };
    let definition =
        |t: &Value| json!({"name": t["name"], "type": t["type"], "enabled": t["enabled"], "frequency": t["frequency"], "properties": t["properties"]});
    for id in BUILTINS {
        let shown = task(&server, id);
        assert_eq!(definition(&put(&server, id, definition(&shown))), definition(&shown), "{id}: sending back what GET showed changes nothing");
        let off = put(&server, id, json!({"enabled": false}));
        assert_eq!((off["enabled"].clone(), off["nextRun"].clone()), (json!(false), Value::Null), "{id}: {off}");
        let on = put(&server, id, json!({"enabled": true}));
        assert_eq!(definition(&on), definition(&shown), "{id}");
        assert_eq!(on["nextRun"].is_null(), on["frequency"]["schedule"] == "manual", "{id}: scheduled again when enabled: {on}");
        put(&server, id, json!({"enabled": false}));
    }

    // The compact task as an older version stored it: without fullScan.
    server.kill();
    {
        use diesel::prelude::*;
        use wharf::db::schema::tasks;
        let db = wharf::db::Db::open(&server.database_url(), 2).unwrap();
        db.run_sync(|c| {
            diesel::update(tasks::table.find("compact-blob-stores")).set(tasks::properties.eq(r#"{"blobstoreName":"*","dryRun":false}"#)).execute(c)?;
            Ok(())
        })
        .unwrap();
    }
    server.spawn();
    for id in BUILTINS {
        let t = task(&server, id);
        assert_eq!(t["enabled"], false, "{id} stays disabled across a restart: {t}");
    }
    let compact = task(&server, "compact-blob-stores");
    assert_eq!(compact["properties"], json!({"blobstoreName": "*", "dryRun": false, "fullScan": false}), "{compact}");
    for id in BUILTINS {
        put(&server, id, json!({"enabled": true}));
    }
    // What the configuration decides still cannot change here.
    let (status, v) = admin_json(&server, Method::PUT, "/service/rest/v1/tasks/compact-blob-stores", Some(json!({"properties": {"fullScan": true}})));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

/// Garbage-collection passes back to back until `stop`: how many, and the blobs they freed.
fn passes_until(server: &TestServer, stop: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let (stop, base) = (stop.clone(), server.base.clone());
    std::thread::spawn(move || {
        let http = common::client();
        let (mut passes, mut freed) = (0u64, 0u64);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = http.post(format!("{base}/service/rest/v1/blobstores/default/compact")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            freed += r.json::<Value>().unwrap()["blobCount"].as_u64().unwrap();
            passes += 1;
        }
        (passes, freed)
    })
}

/// Every blob of an acknowledged manifest, fetched and hashed.
fn verify_image(http: &Client, server: &TestServer, image: &str, tag: &str) -> Result<(), String> {
    let r = http
        .get(server.url(&format!("/v2/docker-hosted/{image}/manifests/{tag}")))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    if r.status() != StatusCode::OK {
        return Err(format!("{image}:{tag}: manifest {}", r.status()));
    }
    let m: Value = r.json().unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    digests.extend(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    for d in digests {
        let r = http.get(server.url(&format!("/v2/docker-hosted/{image}/blobs/{d}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        if r.status() != StatusCode::OK {
            return Err(format!("{image}:{tag}: blob {d} answers {}", r.status()));
        }
        let body = r.bytes().unwrap();
        let actual = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)));
        if actual != d {
            return Err(format!("{image}:{tag}: blob {d} has content {actual}"));
        }
    }
    Ok(())
}

#[test]
fn concurrent_pushes_reusing_layers_never_lose_a_blob_to_repeated_passes() {
    let server = TestServer::start_with_env(GC_ENV);
    let tmp = tempfile::tempdir().unwrap();
    let host = server.addr.clone();
    // Six layers shared by every image: each push re-links layers that earlier deletions made
    // unreferenced, while passes keep marking and deleting them.
    const PUSHERS: u64 = 3;
    const ROUNDS: u64 = 10;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = passes_until(&server, &stop);
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (host, dir, base) = (host.clone(), tmp.path().to_path_buf(), server.base.clone());
            std::thread::spawn(move || {
                let http = common::client();
                let mut kept = Vec::new();
                let mut failures = Vec::new();
                for round in 0..ROUNDS {
                    let n = p * ROUNDS + round;
                    let tag = format!("t{n}");
                    let layout = dir.join(&tag);
                    let l = oci::image_of_layers(&layout, &tag, &[(n % 6) * 2 + 1, ((n + 1) % 6) * 2 + 1, ((n + 3) % 6) * 2 + 1], 64 << 10, &tag);
                    let out = push(&layout, &tag, &format!("docker://{host}/docker-hosted/app-{p}:{tag}"));
                    if !out.status.success() {
                        // Refused, never half-done: the client was told, and nothing is acknowledged.
                        failures.push(String::from_utf8_lossy(&out.stderr).to_string());
                        continue;
                    }
                    // Every other image is deleted again, with the image's links to its blobs
                    // (refused for a blob another manifest of the image still uses), so that
                    // its layers become garbage the next pushes may need again.
                    if round % 2 == 1 {
                        let r = http
                            .delete(format!("{base}/v2/docker-hosted/app-{p}/manifests/{}", l.top_digest))
                            .basic_auth("admin", Some(ADMIN_PASSWORD))
                            .send()
                            .unwrap();
                        assert_eq!(r.status(), StatusCode::ACCEPTED);
                        for d in &l.blobs {
                            let r = http.delete(format!("{base}/v2/docker-hosted/app-{p}/blobs/{d}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
                            assert!(r.status() == StatusCode::ACCEPTED || r.status() == StatusCode::METHOD_NOT_ALLOWED, "{}", r.status());
                        }
                    } else {
                        kept.push((format!("app-{p}"), tag));
                    }
                }
                (kept, failures)
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut failures = Vec::new();
    for p in pushers {
        let (k, f) = p.join().unwrap();
        kept.extend(k);
        failures.extend(f);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (passes, freed) = collector.join().unwrap();
    // One more pass after the pushes, once the grace period has passed for everything.
    std::thread::sleep(Duration::from_millis(1100));
    let last = compact(&server, false);
    let freed = freed + last["blobCount"].as_u64().unwrap();
    assert!(passes >= 2, "the passes ran during the pushes ({passes})");
    assert!(freed > 0, "the passes had garbage to take (freed {freed})");
    assert!(failures.len() as u64 <= PUSHERS * ROUNDS / 4, "most pushes go through: {failures:#?}");
    assert!(!kept.is_empty());
    let http = common::client();
    let broken: Vec<String> = kept.iter().filter_map(|(image, tag)| verify_image(&http, &server, image, tag).err()).collect();
    assert!(broken.is_empty(), "acknowledged images lost blobs: {broken:?}");
    eprintln!("{} images kept and verified, {} pushes refused, {passes} passes freed {freed} blobs", kept.len(), failures.len());
    // No refused push left anything behind that the last pass did not take.
    assert_eq!(compact(&server, true)["blobCount"], 0);
}

#[test]
fn a_pass_killed_midway_leaves_nothing_broken_and_the_next_one_finishes() {
    let mut server = TestServer::start_with_env(GC_ENV);
    let tmp = tempfile::tempdir().unwrap();
    let host = server.addr.clone();
    let kept = oci::image_of_layers(&tmp.path().join("kept"), "kept", &[11, 13], 100_000, "kept");
    ok(push(&tmp.path().join("kept"), "kept", &format!("docker://{host}/docker-hosted/kept:1")));
    // Over a thousand small blobs, uploaded and unlinked again: garbage for a pass that takes a while.
    let http = common::client();
    let mut garbage = HashMap::new();
    for i in 0..1200u32 {
        let data = format!("garbage blob {i}").into_bytes();
        let d = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)));
        let r = http
            .post(server.url(&format!("/v2/docker-hosted/junk/blobs/uploads/?digest={d}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(data)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = http.delete(server.url(&format!("/v2/docker-hosted/junk/blobs/{d}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        garbage.insert(d, ());
    }
    let (all, _) = on_disk(&server);
    dry_run_until(&server, 1200);
    // Start a pass and kill the server once it has deleted some, but not all.
    let r = server.admin().request(Method::POST, "/service/rest/v1/tasks/compact-blob-stores/run").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(60);
    let left_at_kill = loop {
        let (now, _) = on_disk(&server);
        if now.len() < all.len() {
            server.kill();
            break on_disk(&server).0.len();
        }
        assert!(Instant::now() < deadline, "the pass never started deleting");
        std::thread::sleep(Duration::from_millis(2));
    };
    server.spawn();
    // Nothing an asset names is missing: the kept image pulls whole at once.
    verify_image(&http, &server, "kept", "1").unwrap();
    // The next pass (once the killed pass's marks are stale) finishes the job.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let r = compact(&server, false);
        let (now, _) = on_disk(&server);
        if now.iter().all(|d| !garbage.contains_key(d)) {
            assert_eq!(compact(&server, true)["blobCount"], 0, "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "garbage left after the next passes: {} blobs", now.iter().filter(|d| garbage.contains_key(*d)).count());
    }
    let (after, _) = on_disk(&server);
    for d in &kept.blobs {
        assert!(after.contains(d), "kept blob {d} is still on disk");
    }
    verify_image(&http, &server, "kept", "1").unwrap();
    eprintln!("killed with {left_at_kill} of {} blobs on disk", all.len());
}

/// The race itself, aimed at: a layer is pushed and deleted again (garbage now), and just as
/// the grace period runs out, while passes run back to back, the same layer is pushed again and
/// kept. Whether the pass takes it first (then the push writes it afresh) or the push touches it
/// first (then the pass leaves it), every acknowledged manifest must verify at the end.
#[test]
fn a_layer_pushed_again_as_it_becomes_garbage_is_never_lost() {
    let server = TestServer::start_with_env(GC_ENV);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = passes_until(&server, &stop);
    const WORKERS: usize = 4;
    const EVENTS: usize = 8;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                let http = common::client();
                let image = format!("race-{w}");
                let mut kept = Vec::new();
                let mut refused = 0;
                for k in 0..EVENTS {
                    let layer = oci::noise((w * 1000 + k) as u64 * 2 + 1, 4096);
                    let push = |tag: &str| -> Option<String> {
                        let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
                        let mut digests = Vec::new();
                        for blob in [layer.as_slice(), config.as_slice()] {
                            let d = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(blob)));
                            let r = http
                                .post(format!("{base}/v2/docker-hosted/{image}/blobs/uploads/?digest={d}"))
                                .basic_auth("admin", Some(ADMIN_PASSWORD))
                                .body(blob.to_vec())
                                .send()
                                .unwrap();
                            if r.status() != StatusCode::CREATED {
                                return None;
                            }
                            digests.push((d, blob.len()));
                        }
                        let manifest = json!({
                            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[1].0, "size": digests[1].1},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digests[0].0, "size": digests[0].1}]
                        });
                        let r = http
                            .put(format!("{base}/v2/docker-hosted/{image}/manifests/{tag}"))
                            .basic_auth("admin", Some(ADMIN_PASSWORD))
                            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                            .body(manifest.to_string())
                            .send()
                            .unwrap();
                        (r.status() == StatusCode::CREATED).then(|| r.headers()["docker-content-digest"].to_str().unwrap().to_string())
                    };
                    // Pushed, then deleted with its links: the layer is garbage from here on.
                    let Some(digest) = push(&format!("gone-{k}")) else {
                        refused += 1;
                        continue;
                    };
                    let r =
                        http.delete(format!("{base}/v2/docker-hosted/{image}/manifests/{digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                    let layer_digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&layer)));
                    let r =
                        http.delete(format!("{base}/v2/docker-hosted/{image}/blobs/{layer_digest}")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                    // Around the end of the one-second grace period: sometimes before, sometimes after.
                    std::thread::sleep(Duration::from_millis(900 + ((w * 37 + k * 53) % 300) as u64));
                    let tag = format!("kept-{k}");
                    match push(&tag) {
                        Some(_) => kept.push((image.clone(), tag)),
                        None => refused += 1,
                    }
                }
                (kept, refused)
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut refused = 0;
    for w in workers {
        let (k, r) = w.join().unwrap();
        kept.extend(k);
        refused += r;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_, freed) = collector.join().unwrap();
    assert!(freed > 0, "the passes had garbage to take");
    assert!(refused <= WORKERS * EVENTS / 4, "{refused} pushes refused");
    let http = common::client();
    let broken: Vec<String> = kept.iter().filter_map(|(image, tag)| verify_image(&http, &server, image, tag).err()).collect();
    assert!(broken.is_empty(), "acknowledged images lost blobs: {broken:?}");
    eprintln!("{} images kept and verified, {refused} pushes refused, passes freed {freed} blobs", kept.len());
}

#[test]
fn of_two_nodes_on_one_database_exactly_one_runs_each_due_run() {
    let server = TestServer::start_with_env(GC_ENV);
    let key = std::fs::read_to_string(server.data_dir().join("secret.key")).unwrap();
    let other = server.node_on_own_data_dir(&[("WHARF_SECRET_KEY", key.trim())]);
    let (status, t) = admin_json(
        &server,
        Method::POST,
        "/service/rest/v1/tasks",
        Some(json!({"type": "uploads.sweep", "name": "sweep every second", "frequency": {"schedule": "interval", "intervalSeconds": 1}})),
    );
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = admin_json(&other, Method::GET, &format!("/service/rest/v1/tasks/{id}/runs"), None).1["items"].as_array().cloned().unwrap();
        if runs.iter().filter(|r| r["result"] == "OK").count() >= 6 {
            break runs;
        }
        assert!(Instant::now() < deadline, "the task did not run six times: {runs:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Each run starts at least an interval after the one before ended: had both nodes taken a
    // due run, two runs would start together.
    let ms = |v: &Value| -> i64 { chrono_like(v.as_str().unwrap()) };
    let mut done: Vec<(i64, i64)> = runs.iter().filter(|r| r["result"] == "OK").map(|r| (ms(&r["startedAt"]), ms(&r["finishedAt"]))).collect();
    done.sort();
    for w in done.windows(2) {
        assert!(w[1].0 >= w[0].1 + 1000, "runs overlap or come too soon: {w:?} in {runs:?}");
    }
    let nodes: HashSet<&str> = runs.iter().map(|r| r["node"].as_str().unwrap()).collect();
    eprintln!("{} runs on {} node(s)", done.len(), nodes.len());
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as wharf writes it
/// (`2026-12-02T12:54:30.189Z`).
fn chrono_like(s: &str) -> i64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) + frac.parse::<i64>().unwrap()
}

/// The untagged-manifests task frees the bytes of what it unlinks beside its run, but only what
/// a compaction would: a blob another image still links stays, and with a grace period longer
/// than the content's age nothing goes (the compaction takes it once the period has passed).
#[test]
fn a_task_frees_what_it_unlinks_only_where_a_compaction_would() {
    // Another image links `common`: only the untagged manifest, its config and its own layer go.
    let server = TestServer::start_with_env(GC_ENV);
    let left = Registry { server: &server, http: common::client(), image: "left", sha512: false };
    let right = Registry { server: &server, http: common::client(), image: "right", sha512: false };
    let common = left.blob(b"a layer both images use");
    right.blob(b"a layer both images use");
    let (config, own) = (left.blob(b"{\"architecture\":\"arm64\",\"os\":\"linux\"}"), left.blob(b"a layer only the untagged manifest uses"));
    let untagged = left.image(&config, &[&common, &own], None, None);
    let right_config = right.blob(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    right.image(&right_config, &[&common], None, Some("kept"));
    std::thread::sleep(Duration::from_millis(1500));
    let (files_before, bytes_before) = on_disk(&server);
    let freed_bytes = left.size(&untagged) + config.1 + own.1;
    let t = run_task(&server, &docker_cleanup_task(&server));
    assert_eq!(
        t["message"],
        format!("docker-hosted: removed 1 unused manifests and 3 unused blob links and 1 empty images; freed 3 blobs, {freed_bytes} bytes"),
        "{t}"
    );
    let (files_after, bytes_after) = on_disk(&server);
    assert_eq!(bytes_before - bytes_after, freed_bytes as u64);
    let gone: HashSet<String> = files_before.difference(&files_after).cloned().collect();
    assert_eq!(gone, [untagged.clone(), config.0.clone(), own.0.clone()].into(), "the shared layer stays");
    assert_eq!(right.get("blobs", &common.0), StatusCode::OK);
    assert_eq!(right.get("manifests", "kept"), StatusCode::OK);
    drop(server);

    // Within the grace period: unlinked, and left for a later compaction.
    let young = TestServer::start_with_env(&[("WHARF_UPLOADS__TTL_SECS", "1"), ("WHARF_GC__GRACE_SECS", "3600"), ("WHARF_GC__SCHEDULE", "")]);
    let reg = Registry { server: &young, http: common::client(), image: "young", sha512: false };
    let config = reg.blob(b"{\"architecture\":\"s390x\",\"os\":\"linux\"}");
    let layer = reg.blob(b"a layer pushed within the grace period");
    let untagged = reg.image(&config, &[&layer], None, None);
    std::thread::sleep(Duration::from_millis(1500));
    let before = on_disk(&young);
    let task = docker_cleanup_task(&young);
    let t = run_task(&young, &task);
    assert_eq!(t["message"], "docker-hosted: removed 1 unused manifests and 2 unused blob links and 1 empty images", "{t}");
    let runs = admin_json(&young, Method::GET, &format!("/service/rest/v1/tasks/{task}/runs"), None).1;
    assert_eq!(runs["items"][0]["report"]["repositories"]["docker-hosted"]["freed"], json!({"blobCount": 0, "bytes": 0}), "{runs}");
    assert_eq!(reg.get("manifests", &untagged), StatusCode::NOT_FOUND);
    assert_eq!(on_disk(&young), before, "nothing freed within the grace period");
}

/// A cleanup run frees the bytes of what its policies delete beside the run, as the Docker task
/// does: the deleted project's files go from disk at once, the kept one's stay and install.
#[test]
fn a_cleanup_run_frees_what_it_deletes() {
    let server = TestServer::start_with_env(GC_ENV);
    let tmp = tempfile::tempdir().unwrap();
    let (status, v) = admin_json(
        &server,
        Method::POST,
        "/service/rest/v1/cleanup-policies",
        Some(json!({"name": "gone", "format": "pypi", "criteriaAssetRegex": "packages/gc-gone/.*"})),
    );
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let body =
        json!({"name": "pypi-hosted", "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "cleanup": {"policyNames": ["gone"]}});
    let (status, v) = admin_json(&server, Method::PUT, "/service/rest/v1/repositories/pypi/hosted/pypi-hosted", Some(body));
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let (gone, kept) = (dist(tmp.path(), "gc-gone", "1.0"), dist(tmp.path(), "gc-stays", "1.0"));
    let repo_url = format!("{}/repository/pypi-hosted/", server.base);
    ok(Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", &repo_url, "-u", "admin", "-p", ADMIN_PASSWORD])
        .args([&gone, &kept])
        .output()
        .unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let (files_before, bytes_before) = on_disk(&server);

    let (status, report) = admin_json(&server, Method::POST, "/service/rest/v1/cleanup-policies/run?repository=pypi-hosted", None);
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["componentsDeleted"], 1, "{report}");
    let (files_after, bytes_after) = on_disk(&server);
    let freed: HashSet<String> = files_before.difference(&files_after).cloned().collect();
    let wheel = format!("sha256:{}", sha256_hex(&std::fs::read(&gone).unwrap()));
    assert!(freed.contains(&wheel), "the deleted wheel's bytes are gone: {freed:?}");
    assert!(files_after.contains(&format!("sha256:{}", sha256_hex(&std::fs::read(&kept).unwrap()))), "the kept wheel's bytes stay");
    assert_eq!(report["freed"], json!({"blobCount": freed.len(), "bytes": bytes_before - bytes_after}), "{report}");
    assert_eq!(report["repositories"][0]["freed"], report["freed"], "{report}");
    assert_eq!(compact(&server, true)["blobCount"], 0, "nothing left for a compaction: {report}");
    let site = tmp.path().join("site");
    let index = common::pypi::index_url(&server, "pypi-hosted");
    ok(common::pypi::pip(&["install", "--no-cache-dir", "--target", site.to_str().unwrap(), "--index-url", &index, "gc-stays"]));
}

/// Pushes with the registry API (monolithic blob uploads), for manifests skopeo does not make:
/// indexes of untagged children, referrers.
struct Registry<'a> {
    server: &'a TestServer,
    http: Client,
    image: &'a str,
    /// Blobs, and manifests pushed by digest, named by sha512 (a tag push is sha256 always).
    sha512: bool,
}

impl Registry<'_> {
    fn digest_of(&self, bytes: &[u8]) -> String {
        match self.sha512 {
            true => format!("sha512:{}", hex::encode(<sha2::Sha512 as sha2::Digest>::digest(bytes))),
            false => format!("sha256:{}", sha256_hex(bytes)),
        }
    }

    fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = self.digest_of(bytes);
        let r = self
            .http
            .post(self.server.url(&format!("/v2/docker-hosted/{}/blobs/uploads/?digest={digest}", self.image)))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        (digest, bytes.len())
    }

    fn manifest(&self, reference: Option<&str>, body: &Value) -> String {
        let bytes = serde_json::to_vec(body).unwrap();
        let digest = match reference {
            Some(_) => format!("sha256:{}", sha256_hex(&bytes)),
            None => self.digest_of(&bytes),
        };
        let r = self
            .http
            .put(self.server.url(&format!("/v2/docker-hosted/{}/manifests/{}", self.image, reference.unwrap_or(&digest))))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Content-Type", body["mediaType"].as_str().unwrap())
            .body(bytes)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        digest
    }

    /// An image manifest of `layers`, optionally a referrer of `subject`.
    fn image(&self, config: &(String, usize), layers: &[&(String, usize)], subject: Option<&str>, tag: Option<&str>) -> String {
        let desc = |(d, n): &(String, usize), t: &str| json!({"mediaType": t, "digest": d, "size": n});
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc(config, "application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        });
        if let Some(s) = subject {
            m["artifactType"] = json!("application/vnd.example.signature");
            m["subject"] = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": s, "size": self.size(s)});
        }
        self.manifest(tag, &m)
    }

    fn index(&self, children: &[&str], tag: Option<&str>) -> String {
        let manifests: Vec<Value> = children
            .iter()
            .map(|d| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": self.size(d), "platform": {"architecture": "amd64", "os": "linux"}}))
            .collect();
        self.manifest(tag, &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}))
    }

    fn get(&self, what: &str, reference: &str) -> StatusCode {
        self.http
            .get(self.server.url(&format!("/v2/docker-hosted/{}/{what}/{reference}", self.image)))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
            .send()
            .unwrap()
            .status()
    }

    fn size(&self, digest: &str) -> usize {
        let r = self
            .http
            .head(self.server.url(&format!("/v2/docker-hosted/{}/manifests/{digest}", self.image)))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
            .send()
            .unwrap();
        r.headers()["content-length"].to_str().unwrap().parse().unwrap()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The untagged-manifests task removes what no tag reaches (an untagged index goes with its
/// untagged children, a referrer with its untagged subject) and keeps what a kept tag reaches:
/// the children of a tagged index, the referrers of a tagged manifest. Then the links to blobs
/// only removed manifests used go; a layer a kept manifest shares stays.
#[test]
fn untagged_manifests_go_and_what_a_tag_reaches_stays() {
    let server = TestServer::start_with_env(GC_ENV);
    let reg = Registry { server: &server, http: common::client(), image: "multi", sha512: false };
    let config = reg.blob(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let shared = reg.blob(b"shared layer");
    let (own1, own2, own3) = (reg.blob(b"layer of m1"), reg.blob(b"layer only an untagged manifest uses"), reg.blob(b"layer of m4"));
    // Kept: a tagged index and its two untagged children; a tagged manifest and its referrer.
    let m1 = reg.image(&config, &[&shared, &own1], None, None);
    let m2 = reg.image(&config, &[&shared], None, None);
    let idx = reg.index(&[&m1, &m2], Some("idx"));
    let signed = reg.image(&config, &[&shared], None, Some("signed"));
    let sig = reg.image(&config, &[], Some(&signed), None);
    // Removed: an untagged manifest; an untagged one with its referrer; an untagged index with
    // its untagged child (judged in one batch, which fails as a whole: the index still lists the
    // child when the checks run).
    let m3 = reg.image(&config, &[&shared, &own2], None, None);
    let own4 = reg.blob(b"layer of u");
    let u = reg.image(&config, &[&shared, &own4], None, None);
    let ru = reg.image(&config, &[], Some(&u), None);
    let m4 = reg.image(&config, &[&own3], None, None);
    let j = reg.index(&[&m4], None);
    // olderThanDays 0 still spares what is younger than the upload TTL (1 s here).
    std::thread::sleep(Duration::from_millis(1500));

    // What the run frees beside it: the removed manifests' own bytes and the layers only they used.
    let freed_bytes = [&m3, &u, &ru, &m4, &j].map(|d| reg.size(d)).iter().sum::<usize>() + own2.1 + own3.1 + own4.1;
    let task = docker_cleanup_task(&server);
    let t = run_task(&server, &task);
    assert_eq!(t["lastRunResult"], "OK", "{t}");
    let status = |names: &[(&str, &String)]| -> Vec<String> { names.iter().map(|(n, d)| format!("{n} {}", reg.get("manifests", d).as_u16())).collect() };
    let kept = [("m1", &m1), ("m2", &m2), ("idx", &idx), ("signed", &signed), ("sig", &sig)];
    let gone = [("m3", &m3), ("u", &u), ("ru", &ru), ("m4", &m4), ("j", &j)];
    assert_eq!(status(&kept), kept.map(|(n, _)| format!("{n} 200")), "{t}");
    assert_eq!(status(&gone), gone.map(|(n, _)| format!("{n} 404")), "{t}");
    assert_eq!(t["message"], format!("docker-hosted: removed 5 unused manifests and 3 unused blob links; freed 8 blobs, {freed_bytes} bytes"), "{t}");
    for tag in ["idx", "signed"] {
        assert_eq!(reg.get("manifests", tag), StatusCode::OK, "tag {tag}");
    }
    for kept in [&config.0, &shared.0, &own1.0] {
        assert_eq!(reg.get("blobs", kept), StatusCode::OK, "{kept} is still used");
    }
    for gone in [&own2.0, &own3.0, &own4.0] {
        assert_eq!(reg.get("blobs", gone), StatusCode::NOT_FOUND, "{gone} is used by nothing kept");
    }
    // Run again: nothing more to do.
    let t = run_task(&server, &task);
    assert_eq!(t["message"], "docker-hosted: removed 0 unused manifests and 0 unused blob links", "{t}");
}

/// Content named by sha512 is stored under its sha256, and the collectors reason with both
/// right: the untagged-manifests task keeps what a tag reaches through sha512 descriptors (an
/// index pushed by tag, its children and their layers by sha512) and removes the rest; the blob
/// store pass keeps the bytes of every sha512 link that stays and frees those of the ones that
/// went.
#[test]
fn sha512_content_is_kept_while_a_tag_reaches_it_and_freed_when_nothing_does() {
    let server = TestServer::start_with_env(GC_ENV);
    let reg = Registry { server: &server, http: common::client(), image: "multi512", sha512: true };
    let config = reg.blob(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let shared = reg.blob(b"sha512 shared layer");
    let own1 = reg.blob(b"sha512 layer of a child the tag reaches");
    let own2 = reg.blob(b"sha512 layer only an untagged manifest uses");
    let m1 = reg.image(&config, &[&shared, &own1], None, None);
    let m2 = reg.image(&config, &[&shared, &own2], None, None);
    assert!(m1.starts_with("sha512:") && m2.starts_with("sha512:"));
    let idx = reg.index(&[&m1], Some("idx512"));
    assert!(idx.starts_with("sha256:"), "a tag push is known by sha256");
    std::thread::sleep(Duration::from_millis(1500));
    let freed_bytes = reg.size(&m2) + own2.1;

    let task = docker_cleanup_task(&server);
    let t = run_task(&server, &task);
    assert_eq!(t["lastRunResult"], "OK", "{t}");
    assert_eq!(t["message"], format!("docker-hosted: removed 1 unused manifests and 1 unused blob links; freed 2 blobs, {freed_bytes} bytes"), "{t}");
    for (n, d) in [("m1", &m1), ("idx", &idx)] {
        assert_eq!(reg.get("manifests", d), StatusCode::OK, "{n} is reached by the tag");
    }
    assert_eq!(reg.get("manifests", &m2), StatusCode::NOT_FOUND, "m2 is reached by nothing");
    for kept in [&config.0, &shared.0, &own1.0] {
        assert_eq!(reg.get("blobs", kept), StatusCode::OK, "{kept} is still used");
    }
    assert_eq!(reg.get("blobs", &own2.0), StatusCode::NOT_FOUND);

    // The run freed the bytes of the link that went; those of every kept sha512 link stay.
    let stored = |bytes: &[u8]| format!("sha256:{}", sha256_hex(bytes));
    assert!(!on_disk(&server).0.contains(&stored(b"sha512 layer only an untagged manifest uses")), "the unused layer's bytes were freed");
    let disk = on_disk(&server).0;
    for kept in [&b"sha512 shared layer"[..], b"sha512 layer of a child the tag reaches"] {
        assert!(disk.contains(&stored(kept)), "kept bytes stay on disk");
    }
    for kept in [&config.0, &shared.0, &own1.0] {
        let r = reg.http.get(server.url(&format!("/v2/docker-hosted/multi512/blobs/{kept}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r.bytes().unwrap().is_empty());
    }
    assert_eq!(reg.get("manifests", "idx512"), StatusCode::OK);
}
