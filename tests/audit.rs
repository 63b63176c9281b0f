//! The audit log: logins, pushes, uploads, publishes and configuration changes, with who, when
//! and from where; queryable with filters and paging; never a secret in it.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn audit(query: &str) -> Value {
    let r = server().admin().request(Method::GET, &format!("/service/rest/v1/audit?{query}")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().unwrap()
}

/// Events are written in the background: wait until `query` finds at least `n`.
fn wait_for(query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let items = audit(query)["items"].as_array().unwrap().clone();
        if items.len() >= n || Instant::now() > deadline {
            return items;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b)))
}

#[test]
fn changes_and_logins_are_recorded_without_secrets() {
    let http = common::client();
    let admin = server().admin();
    // A user, a failed and a good login.
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "audited", "password": "audited-secret-pw", "roles": ["nx-admin"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.get(server().url("/repository/pypi-hosted/simple/")).basic_auth("audited", Some("wrong-password-123")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http.get(server().url("/repository/pypi-hosted/simple/")).basic_auth("audited", Some("audited-secret-pw")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A token, a repository, a push, an upload and a publish.
    let token = admin.request(Method::POST, "/service/rest/v1/security/tokens").json(&json!({"name": "audit"})).send().unwrap().json::<Value>().unwrap()
        ["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = admin
        .request(Method::POST, "/service/rest/v1/repositories/npm/hosted")
        .json(&json!({"name": "npm-audited", "storage": {"blobStoreName": "default"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let config = b"{}";
    let r = http
        .post(server().url(&format!("/v2/docker-hosted/audit/img/blobs/uploads/?digest={}", sha256(config))))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(&config[..])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": 2}, "layers": []})
    .to_string();
    let r = http
        .put(server().url("/v2/docker-hosted/audit/img/manifests/v1"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let form = reqwest::blocking::multipart::Form::new()
        .text(":action", "file_upload")
        .text("name", "audited-pkg")
        .text("version", "1.0")
        .part("content", reqwest::blocking::multipart::Part::bytes(b"sdist bytes".to_vec()).file_name("audited_pkg-1.0.tar.gz"));
    // Not a real archive: refused, so not recorded. A real upload is covered by the filter below.
    let _ = http.post(server().url("/repository/pypi-hosted/")).basic_auth("admin", Some(ADMIN_PASSWORD)).multipart(form).send().unwrap();
    let body = common::npm::publish_body("audited-npm", "1.0.0");
    let r = http.put(server().url("/repository/npm-audited/audited-npm")).bearer_auth(&token).json(&body).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());

    let failures = wait_for("action=login.failure&actor=audited", 1);
    assert_eq!(failures[0]["address"], "127.0.0.1");
    assert!(!wait_for("action=login.success&actor=audited", 1).is_empty());
    let push = wait_for("action=docker.push", 1);
    assert_eq!(push[0]["object"], "audit/img:v1");
    assert_eq!(push[0]["actor"], "admin");
    assert_eq!(push[0]["repository"], "docker-hosted");
    let publish = wait_for("action=npm.*&repository=npm-audited", 1);
    assert_eq!(publish[0]["action"], "npm.publish");
    assert_eq!(publish[0]["object"], "audited-npm@1.0.0");
    assert!(
        audit("action=pypi.upload&repository=pypi-hosted")["items"].as_array().unwrap().iter().all(|e| e["object"] != "audited_pkg-1.0.tar.gz"),
        "a refused upload is no upload"
    );
    assert!(!wait_for("action=repository.create", 1).is_empty());
    assert!(!wait_for("action=user.create", 1).is_empty());
    assert!(!wait_for("action=token.create", 1).is_empty());

    // Paging: newest first, one at a time, no repeats.
    let first = audit("limit=1");
    let token_page = first["continuationToken"].as_str().expect("more pages").to_string();
    let second = audit(&format!("limit=1&continuationToken={token_page}"));
    let key = |page: &serde_json::Value| (page["items"][0]["timestamp"].as_str().unwrap().to_string(), page["items"][0]["id"].as_i64().unwrap());
    assert!(key(&first) > key(&second), "{first} then {second}");
    // A token of before tokens carried the time (an event's id) still pages on from that event.
    let by_id = audit(&format!("limit=1&continuationToken={}", first["items"][0]["id"]));
    assert_eq!(by_id["items"][0]["id"], second["items"][0]["id"]);
    let r = server().admin().request(Method::GET, "/service/rest/v1/audit?continuationToken=x.1").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Time filters.
    assert!(audit("until=2000-01-01T00:00:00Z")["items"].as_array().unwrap().is_empty());
    assert!(!audit("since=2000-01-01T00:00:00Z")["items"].as_array().unwrap().is_empty());
    let r = server().admin().request(Method::GET, "/service/rest/v1/audit?since=yesterday").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Never a secret: not the passwords, not the token.
    let all = serde_json::to_string(&audit("limit=1000")).unwrap();
    for secret in ["audited-secret-pw", "wrong-password-123", ADMIN_PASSWORD, &token] {
        assert!(!all.contains(secret), "{secret} leaked into the audit log");
    }
    // Administrators only.
    let r = http.get(server().url("/service/rest/v1/audit")).basic_auth("audited", Some("audited-secret-pw")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "audited holds nx-admin");
    let r = admin.request(Method::POST, "/service/rest/v1/security/users").json(&json!({"userId": "plain", "password": "plain-password"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.get(server().url("/service/rest/v1/audit")).basic_auth("plain", Some("plain-password")).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// Retention deletes the events older than its days, a batch per transaction (so that a year
/// of events does not hold the writer permit in one go), and keeps the rest.
#[test]
fn retention_deletes_old_events_in_batches_and_keeps_the_recent_ones() {
    use diesel::RunQueryDsl as _;
    let s = server();
    let admin = s.admin();
    assert_eq!(admin.request(Method::GET, "/service/rest/v1/status").send().unwrap().status(), StatusCode::OK);
    let recent = wait_for("limit=1", 1);
    assert!(!recent.is_empty(), "an event of this run");
    // 2,500 events from 1970, more than two batches, written straight into the database.
    let db = wharf::db::Db::open(&s.database_url(), 2).unwrap();
    let old = "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'test.ancient'";
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |q: &'static str| db.run_sync(move |c| Ok(diesel::sql_query(q).get_result::<Count>(c)?.n)).unwrap();
    db.run_sync(|c| {
        diesel::sql_query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
             INSERT INTO audit_events (at, actor, action, detail) SELECT 1000 + i, 'ancient', 'test.ancient', 'null' FROM n",
        )
        .execute(c)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(count(old), 2500);
    let all_before = count("SELECT COUNT(*) AS n FROM audit_events");

    let r = admin
        .request(Method::POST, "/service/rest/v1/tasks")
        .json(&json!({"type": "audit.retention", "name": "retention-test", "frequency": {"schedule": "manual"}, "properties": {"days": 1}}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let r = admin.request(Method::POST, &format!("/service/rest/v1/tasks/{id}/run")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs: Value = admin.request(Method::GET, &format!("/service/rest/v1/tasks/{id}/runs")).send().unwrap().json().unwrap();
        let newest = runs["items"][0].clone();
        if !newest.is_null() && newest["result"] != "RUNNING" {
            break newest;
        }
        assert!(Instant::now() < deadline, "the retention run did not finish: {runs}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(run["result"], "OK", "{run}");
    assert_eq!(count(old), 0, "{run}");
    // The recent ones stay (the run adds its own events meanwhile).
    assert!(count("SELECT COUNT(*) AS n FROM audit_events") >= all_before - 2500, "{run}");
    assert!(!wait_for(&format!("action={}", recent[0]["action"].as_str().unwrap()), 1).is_empty());
    assert!(run["message"].as_str().unwrap_or_default().contains("deleted 2500 audit events"), "{run}");
}
