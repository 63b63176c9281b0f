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
    assert_eq!(
        (body["ready"].clone(), body["blobStores"]["vanishing"].clone(), body["blobStores"]["default"].clone()),
        (json!(false), json!(false), json!(true)),
        "{body}"
    );
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

#[test]
fn anonymous_access_is_turned_off_and_on_in_nexus_shape() {
    let s = &server().server;
    let (status, v) =
        api(Method::POST, "/repositories/pypi/hosted", Some(json!({"name": "pypi-anon", "anonymousRead": true, "storage": {"blobStoreName": "default"}})));
    assert_eq!(status.as_u16(), 201, "{v}");
    let anonymous = || http().get(s.url("/repository/pypi-anon/simple/")).send().unwrap();
    assert_eq!(anonymous().status(), StatusCode::OK, "anonymousRead lets anyone read");
    assert_eq!(api(Method::GET, "/security/anonymous", None).1, json!({"enabled": true, "userId": "anonymous", "realmName": "NexusAuthorizingRealm"}));

    let (status, v) = api(Method::PUT, "/security/anonymous", Some(json!({"enabled": false})));
    assert_eq!((status, v["enabled"].clone()), (StatusCode::OK, json!(false)), "{v}");
    let refused = anonymous();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "off: nobody reads without credentials, whatever anonymousRead says");
    assert!(refused.headers().get("www-authenticate").is_some(), "and is asked to sign in");
    let admin = http().get(s.url("/repository/pypi-anon/simple/")).basic_auth("admin", Some(common::ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(api(Method::GET, "/security/anonymous", None).1["enabled"], json!(false));

    // Nexus scripts send the whole object back.
    let (status, v) = api(Method::PUT, "/security/anonymous", Some(json!({"enabled": true, "userId": "anonymous", "realmName": "NexusAuthorizingRealm"})));
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(anonymous().status(), StatusCode::OK);
    for (body, field) in [
        (json!({"enabled": "no"}), "enabled"),
        (json!({}), "enabled"),
        (json!({"enabled": true, "userId": "guest"}), "userId"),
        (json!({"enabled": true, "realmName": "LdapRealm"}), "realmName"),
        (json!({"enabled": true, "colour": "red"}), "colour"),
    ] {
        let (status, v) = api(Method::PUT, "/security/anonymous", Some(body.clone()));
        assert_eq!((status, v[0]["id"].clone()), (StatusCode::BAD_REQUEST, json!(format!("PARAMETER {field}"))), "{body}: {v}");
    }
    assert_eq!(http().get(s.url("/service/rest/v1/security/anonymous")).send().unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_active_realms_are_listed_and_set_in_nexus_shape() {
    let (_, available) = api(Method::GET, "/security/realms/available", None);
    let ids: Vec<&str> = available.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["NexusAuthenticatingRealm", "LdapRealm", "DockerToken", "NpmToken"], "{available}");
    let active = || api(Method::GET, "/security/realms/active", None).1;
    assert_eq!(active(), json!(["NexusAuthenticatingRealm", "LdapRealm", "DockerToken", "NpmToken"]));

    let (status, v) = api(Method::PUT, "/security/realms/active", Some(json!(["LdapRealm", "NexusAuthenticatingRealm", "DockerToken", "NpmToken"])));
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(active(), json!(["LdapRealm", "NexusAuthenticatingRealm", "DockerToken", "NpmToken"]), "the order is the order logins are checked in");
    for (body, says) in [
        (json!(["LdapRealm", "DockerToken", "NpmToken"]), "cannot be turned off"),
        (json!(["NexusAuthenticatingRealm", "NpmToken"]), "DockerToken cannot be turned off"),
        (json!(["NexusAuthenticatingRealm", "ConanToken", "DockerToken", "NpmToken"]), "unknown realm \"ConanToken\""),
        (json!(["NexusAuthenticatingRealm", "NexusAuthenticatingRealm", "DockerToken", "NpmToken"]), "listed twice"),
        (json!("NexusAuthenticatingRealm"), "realms"),
    ] {
        let (status, v) = api(Method::PUT, "/security/realms/active", Some(body.clone()));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v[0]["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    // A restart keeps what the API set (it replaces the configuration's `security.realms`).
    let (status, v) = api(Method::PUT, "/security/realms/active", Some(json!(["NexusAuthenticatingRealm", "DockerToken", "NpmToken"])));
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let mut node = server().server.second_node();
    let (_, seen) = node.admin().json(Method::GET, "/service/rest/v1/security/realms/active", None);
    assert_eq!(seen, json!(["NexusAuthenticatingRealm", "DockerToken", "NpmToken"]), "another node (or a restart) reads the API's realms");
    node.kill();
    let (status, _) = api(Method::PUT, "/security/realms/active", Some(json!(["NexusAuthenticatingRealm", "LdapRealm", "DockerToken", "NpmToken"])));
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[test]
fn assets_are_listed_fetched_and_deleted_in_nexus_shape() {
    let s = &server().server;
    let (status, v) = api(Method::POST, "/repositories/pypi/hosted", Some(json!({"name": "pypi-assets", "storage": {"blobStoreName": "default"}})));
    assert_eq!(status.as_u16(), 201, "{v}");
    let tmp = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let mut files = Vec::new();
    for version in ["1.0", "2.0"] {
        let out = std::process::Command::new("python3").arg(script).arg(tmp.path()).arg("asset-pkg").arg(version).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        files.extend(String::from_utf8(out.stdout).unwrap().lines().map(std::path::PathBuf::from));
    }
    let out = std::process::Command::new("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar", "--repository-url", &format!("{}/repository/pypi-assets/", s.base)])
        .args(["-u", "admin", "-p", common::ADMIN_PASSWORD])
        .args(&files)
        .output()
        .expect("twine is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let (status, page) = api(Method::GET, "/assets?repository=pypi-assets", None);
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    let names: std::collections::BTreeSet<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let listed: std::collections::BTreeSet<String> = items.iter().map(|a| a["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(listed, names, "every uploaded file, nothing else (no metadata files): {page}");
    let first = items.iter().find(|a| a["path"].as_str().unwrap().contains("-1.0")).unwrap().clone();
    assert_eq!(first["repository"], json!("pypi-assets"));
    assert_eq!(first["format"], json!("pypi"));
    assert_eq!(first["checksum"]["sha256"].as_str().unwrap().len(), 64, "{first}");
    assert!(first["downloadUrl"].as_str().unwrap().starts_with(&s.base), "{first}");

    let id = first["id"].as_str().unwrap();
    let (status, one) = api(Method::GET, &format!("/assets/{id}"), None);
    assert_eq!((status, one["path"].clone()), (StatusCode::OK, first["path"].clone()), "{one}");
    let (status, _) = api(Method::DELETE, &format!("/assets/{id}"), None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api(Method::GET, &format!("/assets/{id}"), None).0, StatusCode::NOT_FOUND);
    let (_, page) = api(Method::GET, "/assets?repository=pypi-assets", None);
    assert_eq!(page["items"].as_array().unwrap().len(), items.len() - 1, "{page}");
    // The index no longer names the file, and the file is gone.
    let file = first["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let index =
        http().get(s.url("/repository/pypi-assets/simple/asset-pkg/")).basic_auth("admin", Some(common::ADMIN_PASSWORD)).send().unwrap().text().unwrap();
    assert!(!index.contains(&file) && index.contains("2.0"), "{index}");
    assert_eq!(
        http().get(first["downloadUrl"].as_str().unwrap()).basic_auth("admin", Some(common::ADMIN_PASSWORD)).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // What is not an asset id, or another caller's business.
    assert_eq!(api(Method::GET, "/assets/not-an-id", None).0, StatusCode::NOT_FOUND);
    assert_eq!(api(Method::GET, "/assets?repository=pypi-assets&colour=red", None).0, StatusCode::BAD_REQUEST);
    assert_eq!(api(Method::GET, "/assets?repository=no-such-repo", None).0, StatusCode::NOT_FOUND);
    assert_eq!(http().get(s.url("/service/rest/v1/assets?repository=pypi-assets")).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let second = page["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(http().delete(s.url(&format!("/service/rest/v1/assets/{second}"))).send().unwrap().status(), StatusCode::UNAUTHORIZED);

    // Every repository's full configuration in one call.
    let (status, all) = api(Method::GET, "/repositorySettings", None);
    assert_eq!(status, StatusCode::OK, "{all}");
    let mine = all.as_array().unwrap().iter().find(|r| r["name"] == "pypi-assets").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(
        (mine["format"].clone(), mine["type"].clone(), mine["storage"]["blobStoreName"].clone()),
        (json!("pypi"), json!("hosted"), json!("default")),
        "{mine}"
    );
}

#[test]
fn defined_privileges_grant_through_roles_and_follow_their_changes() {
    let s = &server().server;
    for name in ["pypi-priv-a", "pypi-priv-b"] {
        let (status, v) = api(Method::POST, "/repositories/pypi/hosted", Some(json!({"name": name, "storage": {"blobStoreName": "default"}})));
        assert_eq!(status.as_u16(), 201, "{v}");
    }
    let view = json!({"name": "team-read", "description": "read a", "actions": ["READ", "BROWSE"], "format": "pypi", "repository": "pypi-priv-a"});
    let (status, v) = api(Method::POST, "/security/privileges/repository-view", Some(view));
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = api(Method::POST, "/security/privileges/application", Some(json!({"name": "team-metrics", "actions": ["READ"], "domain": "metrics"})));
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (_, got) = api(Method::GET, "/security/privileges/team-read", None);
    assert_eq!(
        got,
        json!({"type": "repository-view", "name": "team-read", "description": "read a", "readOnly": false, "actions": ["READ", "BROWSE"], "format": "pypi", "repository": "pypi-priv-a"})
    );
    let (_, all) = api(Method::GET, "/security/privileges", None);
    assert!(
        all.as_array().unwrap().iter().any(|p| p["name"] == "team-metrics" && p["domain"] == "metrics" && p["readOnly"] == false),
        "listed with the built-in ones"
    );
    let (_, builtin) = api(Method::GET, "/security/privileges/nx-repository-view-pypi-*-read", None);
    assert_eq!((builtin["readOnly"].clone(), builtin["repository"].clone()), (json!(true), json!("*")), "{builtin}");

    let (status, v) = api(Method::POST, "/security/roles", Some(json!({"id": "team", "privileges": ["team-read", "team-metrics"]})));
    assert!(status.is_success(), "{v}");
    let user = json!({"userId": "teammate", "firstName": "T", "lastName": "M", "emailAddress": "t@example.org", "password": "teammate-pass-1", "status": "active", "roles": ["team"]});
    let (status, v) = api(Method::POST, "/security/users", Some(user));
    assert!(status.is_success(), "{v}");
    let as_user = |path: &str| http().get(s.url(path)).basic_auth("teammate", Some("teammate-pass-1")).send().unwrap().status();
    assert_eq!(as_user("/repository/pypi-priv-a/simple/"), StatusCode::OK, "the role's defined privilege grants reading a");
    assert_eq!(as_user("/repository/pypi-priv-b/simple/"), StatusCode::FORBIDDEN);
    assert_eq!(as_user("/service/metrics/prometheus"), StatusCode::OK, "and the metrics");

    // Changed, it grants what it says now (remembered logins are forgotten).
    let moved = json!({"name": "team-read", "actions": ["READ"], "format": "pypi", "repository": "pypi-priv-b"});
    let (status, v) = api(Method::PUT, "/security/privileges/repository-view/team-read", Some(moved));
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(as_user("/repository/pypi-priv-a/simple/"), StatusCode::FORBIDDEN);
    assert_eq!(as_user("/repository/pypi-priv-b/simple/"), StatusCode::OK);

    // Refusals, by field.
    for (path, body, field) in [
        ("/security/privileges/repository-view", json!({"name": "team-read", "actions": ["READ"], "format": "pypi", "repository": "*"}), "name"),
        ("/security/privileges/repository-view", json!({"name": "nx-mine", "actions": ["READ"], "format": "pypi", "repository": "*"}), "name"),
        ("/security/privileges/repository-view", json!({"name": "x1", "actions": ["FLY"], "format": "pypi", "repository": "*"}), "actions"),
        ("/security/privileges/repository-view", json!({"name": "x2", "actions": ["READ"], "format": "maven2", "repository": "*"}), "format"),
        ("/security/privileges/repository-view", json!({"name": "x3", "actions": ["READ"], "format": "npm", "repository": "pypi-priv-a"}), "repository"),
        ("/security/privileges/repository-view", json!({"name": "x4", "actions": ["READ"], "format": "pypi", "repository": "*", "colour": 1}), "colour"),
        ("/security/privileges/application", json!({"name": "x5", "actions": ["READ"], "domain": "users"}), "domain"),
    ] {
        let (status, v) = api(Method::POST, path, Some(body.clone()));
        assert_eq!((status, v[0]["id"].clone()), (StatusCode::BAD_REQUEST, json!(format!("PARAMETER {field}"))), "{body}: {v}");
    }
    let (status, v) = api(Method::DELETE, "/security/privileges/team-read", None);
    assert_eq!(status, StatusCode::BAD_REQUEST, "held by a role: {v}");
    assert!(v[0]["message"].as_str().unwrap().contains("team"), "{v}");
    assert_eq!(api(Method::DELETE, "/security/privileges/nx-all", None).0, StatusCode::BAD_REQUEST);
    let (status, v) = api(Method::PUT, "/security/roles/team", Some(json!({"id": "team", "privileges": ["team-metrics"]})));
    assert!(status.is_success(), "{v}");
    assert_eq!(api(Method::DELETE, "/security/privileges/team-read", None).0, StatusCode::NO_CONTENT);
    assert_eq!(api(Method::GET, "/security/privileges/team-read", None).0, StatusCode::NOT_FOUND);
    assert_eq!(as_user("/repository/pypi-priv-b/simple/"), StatusCode::FORBIDDEN);
    // The anonymous role cannot come to hold the metrics through a defined privilege.
    let (status, _) = api(
        Method::POST,
        "/security/privileges/repository-view",
        Some(json!({"name": "anon-read", "actions": ["READ"], "format": "pypi", "repository": "pypi-priv-a"})),
    );
    assert_eq!(status, StatusCode::CREATED);
    let (status, v) = api(Method::PUT, "/security/roles/nx-anonymous", Some(json!({"id": "nx-anonymous", "privileges": ["anon-read"]})));
    assert!(status.is_success(), "{v}");
    let (status, v) =
        api(Method::PUT, "/security/privileges/application/anon-read", Some(json!({"name": "anon-read", "actions": ["READ"], "domain": "metrics"})));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = api(Method::PUT, "/security/roles/nx-anonymous", Some(json!({"id": "nx-anonymous", "privileges": []})));
    assert!(status.is_success(), "{v}");
}
