//! What an operator watches: the liveness and readiness probes, `status/check`'s entries (disk
//! space, LDAP servers), request ids in responses and in the log, and the JSON log format.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Server {
    server: TestServer,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// One server for the file, logging JSON at info level into a file the tests read.
fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("wharf.log");
        let server = TestServer::start_with_env(&[
            ("WHARF_LOG__FORMAT", "json"),
            ("RUST_LOG", "info,actix_http::h1::dispatcher=off"),
            ("WHARF_TEST_LOG_FILE", log.to_str().unwrap()),
        ]);
        Server { server, log, _dir: dir }
    })
}

fn api(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server().server.admin().json(method, &format!("/service/rest/v1{path}"), body)
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

/// The log's JSON lines (each must parse: nothing else is written there).
fn log_lines() -> Vec<Value> {
    let text = std::fs::read_to_string(&server().log).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect()
}

#[test]
fn probes_answer_without_credentials_and_readiness_names_what_is_not_ready() {
    let s = &server().server;
    let live = http().get(s.url("/service/rest/v1/status/live")).send().unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = http().get(s.url("/service/rest/v1/status/ready")).send().unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().unwrap();
    assert_eq!(body["ready"], json!(true), "{body}");
    assert_eq!(body["database"], json!(true), "{body}");
    assert_eq!(body["blobStores"]["default"], json!(true), "{body}");

    // A file blob store whose directory is gone: not ready, and it is named (without its path).
    let (status, v) = api(Method::POST, "/blobstores/file", Some(json!({"name": "vanishing", "path": "vanishing"})));
    assert_eq!(status.as_u16(), 204, "{v}");
    let dir = s.data_dir().join("blobs/vanishing");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.is_dir() {
        assert!(Instant::now() < deadline, "the store's directory {} was not made", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let ready = http().get(s.url("/service/rest/v1/status/ready")).send().unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().unwrap();
    assert_eq!((body["ready"].clone(), body["blobStores"]["vanishing"].clone(), body["blobStores"]["default"].clone()), (json!(false), json!(false), json!(true)), "{body}");
    assert!(!body.to_string().contains(s.data_dir().to_str().unwrap()), "no paths to anonymous callers: {body}");
    // Liveness does not care: restarting the node would not bring the directory back.
    assert_eq!(http().get(s.url("/service/rest/v1/status/live")).send().unwrap().status(), StatusCode::OK);
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(http().get(s.url("/service/rest/v1/status/ready")).send().unwrap().status(), StatusCode::OK);
    let (status, v) = api(Method::DELETE, "/blobstores/vanishing", None);
    assert_eq!(status.as_u16(), 204, "{v}");
}

#[test]
fn the_status_check_reports_disk_space_and_each_ldap_server() {
    // An LDAP server nobody listens on: its entry says it does not answer.
    let port = common::free_port();
    let ldap = json!({
        "name": "nowhere", "protocol": "ldap", "host": "127.0.0.1", "port": port, "searchBase": "dc=example,dc=org",
        "authScheme": "NONE", "connectionTimeoutSeconds": 2, "userBaseDn": "ou=people", "userObjectClass": "inetOrgPerson",
        "userIdAttribute": "uid", "userRealNameAttribute": "cn", "userEmailAddressAttribute": "mail",
    });
    let (status, v) = api(Method::POST, "/security/ldap", Some(ldap));
    assert!(status.is_success(), "{v}");
    let (status, check) = api(Method::GET, "/status/check", None);
    assert_eq!(status, StatusCode::OK, "{check}");
    let disk = &check["Disk space"];
    assert!(disk["freeBytes"].as_u64().unwrap() > 0 && disk["totalBytes"].as_u64().unwrap() >= disk["freeBytes"].as_u64().unwrap(), "{check}");
    assert!(disk["message"].as_str().unwrap().contains("MiB free of"), "{check}");
    let entry = &check["LDAP nowhere"];
    assert_eq!(entry["healthy"], json!(false), "{check}");
    assert!(entry["message"].as_str().unwrap().contains(&port.to_string()), "the message names the server: {check}");
    assert_eq!(check["Database"]["healthy"], json!(true), "{check}");
    let (status, v) = api(Method::DELETE, "/security/ldap/nowhere", None);
    assert!(status.is_success(), "{v}");

    // Administrators only.
    let anon = http().get(server().server.url("/service/rest/v1/status/check")).send().unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn every_response_names_its_request_id_and_every_log_line_of_the_request_carries_it() {
    let s = &server().server;
    // A made-up id, given back and logged with the request's line.
    let res = http().get(s.url("/repository/no-such-repo/simple/")).send().unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    // The client's own id is kept when it is a plain token; a hostile one is replaced.
    let res = http().get(s.url("/service/rest/v1/status")).header("X-Request-Id", "lb-0042.a").send().unwrap();
    assert_eq!(res.headers()["x-request-id"], "lb-0042.a");
    let res = http().get(s.url("/service/rest/v1/status")).header("X-Request-Id", "x\"}, {\"forged\": 1").send().unwrap();
    assert_ne!(res.headers()["x-request-id"], "x\"}, {\"forged\": 1");
    // Two requests never share an id.
    let again = http().get(s.url("/repository/no-such-repo/simple/")).send().unwrap();
    assert_ne!(again.headers()["x-request-id"].to_str().unwrap(), id);

    // The request lines are JSON with the request's id in their span (the log is written as the
    // request ends: wait for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = log_lines().into_iter().find(|l| l["span"]["id"] == json!(id));
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "no log line with request id {id}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(line["fields"]["message"], json!("request"), "{line}");
    assert_eq!(line["fields"]["status"], json!(404), "{line}");
    assert_eq!(line["fields"]["path"], json!("/repository/no-such-repo/simple/"), "{line}");
    assert_eq!(line["level"], json!("INFO"), "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_lines().iter().any(|l| l["span"]["id"] == json!("lb-0042.a")) {
        assert!(Instant::now() < deadline, "the client's request id is not in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unknown_log_format_stops_the_start_naming_the_key() {
    let s = TestServer::unstarted(&[("WHARF_LOG__FORMAT", "yaml")]);
    let out = s.command().stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.format") || err.contains("format"), "{err}");
    assert!(err.contains("yaml"), "{err}");
}
