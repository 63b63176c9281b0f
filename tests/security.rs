//! Users, roles and privileges (Nexus's `/service/rest/v1/security/...`), and the same decision
//! enforced by every protocol: a user who may read but not write pulls and installs, and gets
//! each protocol's own 403 on push and upload.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        let s = TestServer::start();
        s.admin().create_docker_hosted(json!({"name": "docker-team", "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": {}}));
        s
    })
}

fn admin(method: Method, path: &str) -> reqwest::blocking::RequestBuilder {
    server().admin().request(method, path)
}

fn as_user(user: &str, pass: &str, method: Method, path: &str) -> reqwest::blocking::RequestBuilder {
    common::client().request(method, server().url(path)).basic_auth(user, Some(pass))
}

fn create_role(id: &str, privileges: &[&str], roles: &[&str]) {
    let r = admin(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": id, "name": id, "description": "test", "privileges": privileges, "roles": roles}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

fn create_user(id: &str, pass: &str, roles: &[&str]) {
    let r = admin(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": id, "firstName": "T", "lastName": "User", "emailAddress": format!("{id}@example.test"), "password": pass, "status": "active", "roles": roles}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

fn dist(dir: &Path, name: &str, version: &str) -> PathBuf {
    common::pypi::dist(dir, name, version, &[]).0
}

fn twine(user: &str, pass: &str, file: &Path) -> Output {
    common::pypi::twine(&server().url("/repository/pypi-hosted/"), user, pass, &[file])
}

fn pip_install(user: &str, pass: &str, target: &Path, req: &str) -> Output {
    let index = format!("http://{user}:{pass}@{}/repository/pypi-hosted/simple/", server().addr);
    Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated", "install", "--no-cache-dir", "--index-url", &index, "--target"])
        .arg(target)
        .arg(req)
        .env_remove("PIP_FIND_LINKS")
        .output()
        .unwrap()
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed")
}

#[test]
fn a_reader_installs_and_pulls_but_cannot_upload_or_push() {
    create_role("team-readers", &["nx-repository-view-pypi-pypi-hosted-read", "nx-repository-view-docker-docker-team-browse"], &[]);
    create_user("reader", "reader-password", &["team-readers"]);
    let tmp = tempfile::tempdir().unwrap();

    // PyPI: the admin uploads, the reader installs, the reader's upload is a 403.
    let whl = dist(&tmp.path().join("a"), "sec-reader-pkg", "1.0");
    assert!(twine("admin", ADMIN_PASSWORD, &whl).status.success());
    let out = pip_install("reader", "reader-password", &tmp.path().join("site"), "sec-reader-pkg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mine = dist(&tmp.path().join("b"), "sec-reader-own", "1.0");
    let out = twine("reader", "reader-password", &mine);
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("403"), "twine shows the 403: {text}");

    // Docker: the admin pushes, the reader pulls; the reader's push is denied, and the token
    // the reader gets carries pull only.
    let layout = tmp.path().join("layout");
    common::oci::image(&layout, "v1", &["amd64"], 7, 4096);
    let src = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{}/docker-team/app:v1", server().addr);
    let admin_creds = format!("admin:{ADMIN_PASSWORD}");
    let out = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &admin_creds, &src, &dest]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pulled = format!("oci:{}:v1", tmp.path().join("pulled").display());
    let out = skopeo(&["copy", "--src-tls-verify=false", "--src-creds", "reader:reader-password", &dest, &pulled]);
    assert!(out.status.success(), "the reader pulls: {}", String::from_utf8_lossy(&out.stderr));
    let out =
        skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", "reader:reader-password", &src, &format!("docker://{}/docker-team/app:v2", server().addr)]);
    assert!(!out.status.success(), "the reader cannot push");
    let r = common::client()
        .get(server().url("/v2/token?service=wharf&scope=repository:docker-team/app:pull,push"))
        .basic_auth("reader", Some("reader-password"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]), "{claims}");
    // With the token, the upload start is refused in the registry's own error shape.
    let r = common::client().post(server().url("/v2/docker-team/app/blobs/uploads/")).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "UNAUTHORIZED");
    // Basic credentials that may only read get DENIED on a push.
    let r = as_user("reader", "reader-password", Method::POST, "/v2/docker-team/app/blobs/uploads/").send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "DENIED");

    // Not an administrator: the admin API is closed.
    let r = as_user("reader", "reader-password", Method::GET, "/service/rest/v1/security/users").send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = as_user("reader", "reader-password", Method::POST, "/service/rest/v1/repositories/pypi/hosted")
        .json(&json!({"name": "x", "storage": {"blobStoreName": "default"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[test]
fn a_user_without_roles_reads_nothing_and_a_disabled_user_is_refused() {
    create_user("nobody", "nobody-password", &[]);
    let r = as_user("nobody", "nobody-password", Method::GET, "/repository/pypi-hosted/simple/").send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Nested roles: a role holding a role that holds the privilege.
    create_role("inner-read", &["nx-repository-view-pypi-*-read"], &[]);
    create_role("outer", &[], &["inner-read"]);
    let r = admin(Method::PUT, "/service/rest/v1/security/users/nobody")
        .json(&json!({"userId": "nobody", "firstName": "T", "lastName": "U", "emailAddress": "n@example.test", "status": "active", "roles": ["outer"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    let r = as_user("nobody", "nobody-password", Method::GET, "/repository/pypi-hosted/simple/").send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "roles changes apply at once");
    // Disabled: the credentials stop working.
    let r = admin(Method::PUT, "/service/rest/v1/security/users/nobody")
        .json(&json!({"userId": "nobody", "status": "disabled", "roles": ["outer"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = as_user("nobody", "nobody-password", Method::GET, "/repository/pypi-hosted/simple/").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Deleted: gone from the list.
    assert_eq!(admin(Method::DELETE, "/service/rest/v1/security/users/nobody").send().unwrap().status(), StatusCode::NO_CONTENT);
    let users: Vec<Value> = admin(Method::GET, "/service/rest/v1/security/users").send().unwrap().json().unwrap();
    assert!(!users.iter().any(|u| u["userId"] == "nobody"));
    assert!(users.iter().any(|u| u["userId"] == "admin" && u["roles"] == json!(["nx-admin"])));
}

#[test]
fn anonymous_access_is_what_the_anonymous_role_grants() {
    let url = "/repository/pypi-hosted/simple/";
    assert_eq!(common::client().get(server().url(url)).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let r = admin(Method::PUT, "/service/rest/v1/security/roles/nx-anonymous")
        .json(&json!({"id": "nx-anonymous", "name": "nx-anonymous", "privileges": ["nx-repository-view-pypi-pypi-hosted-read"], "roles": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    assert_eq!(common::client().get(server().url(url)).send().unwrap().status(), StatusCode::OK);
    // Reading only: an anonymous upload still asks for credentials.
    let form = reqwest::blocking::multipart::Form::new().text(":action", "file_upload").text("name", "x").text("version", "1");
    let r = common::client().post(server().url("/repository/pypi-hosted/")).multipart(form).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The anonymous role cannot be made an administrator, nor deleted.
    let r = admin(Method::PUT, "/service/rest/v1/security/roles/nx-anonymous").json(&json!({"privileges": ["nx-all"]})).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(admin(Method::DELETE, "/service/rest/v1/security/roles/nx-anonymous").send().unwrap().status(), StatusCode::BAD_REQUEST);
    // Revoked again: closed again.
    let r = admin(Method::PUT, "/service/rest/v1/security/roles/nx-anonymous").json(&json!({"privileges": []})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(common::client().get(server().url(url)).send().unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn passwords_change_and_bad_input_is_named() {
    create_user("changer", "first-password", &[]);
    // A user changes their own password; not someone else's.
    let r = as_user("changer", "first-password", Method::PUT, "/service/rest/v1/security/users/changer/change-password")
        .header("Content-Type", "text/plain")
        .body("second-password")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = as_user("changer", "first-password", Method::GET, "/repository/pypi-hosted/simple/").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old password is dead at once");
    let r =
        as_user("changer", "second-password", Method::PUT, "/service/rest/v1/security/users/admin/change-password").body("hijacked-password").send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = as_user("changer", "second-password", Method::PUT, "/service/rest/v1/security/users/changer/change-password").body("short").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let bad = |path: &str, body: Value, field: &str| {
        let r = admin(Method::POST, path).json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().unwrap();
        assert_eq!(v[0]["id"], format!("PARAMETER {field}"), "{v}");
    };
    bad("/service/rest/v1/security/users", json!({"userId": "a:b", "password": "long-enough"}), "userId");
    bad("/service/rest/v1/security/users", json!({"userId": "ok-user", "password": "long-enough", "roles": ["no-such-role"]}), "roles");
    bad("/service/rest/v1/security/users", json!({"userId": "ok-user"}), "password");
    bad("/service/rest/v1/security/users", json!({"userId": "changer", "password": "long-enough"}), "userId");
    bad("/service/rest/v1/security/roles", json!({"id": "r1", "privileges": ["nx-repository-view-maven-x-read"]}), "privileges");
    bad("/service/rest/v1/security/roles", json!({"id": "r1", "privileges": ["nx-repository-view-pypi-x-fly"]}), "privileges");
    bad("/service/rest/v1/security/roles", json!({"id": "r1", "colour": "red"}), "colour");
    // A role in use cannot be deleted; the admin cannot delete or demote themself.
    create_role("in-use", &[], &[]);
    create_user("holder", "holder-password", &["in-use"]);
    assert_eq!(admin(Method::DELETE, "/service/rest/v1/security/roles/in-use").send().unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(admin(Method::DELETE, "/service/rest/v1/security/users/admin").send().unwrap().status(), StatusCode::BAD_REQUEST);
    let r = admin(Method::PUT, "/service/rest/v1/security/users/admin").json(&json!({"userId": "admin", "roles": []})).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Privileges on offer include every repository's.
    let privs: Vec<Value> = admin(Method::GET, "/service/rest/v1/security/privileges").send().unwrap().json().unwrap();
    assert!(privs.iter().any(|p| p["name"] == "nx-repository-view-docker-docker-team-read"));
    assert!(privs.iter().any(|p| p["name"] == "nx-all"));
}

#[test]
fn api_tokens_act_for_their_user_within_their_limits() {
    let create = |body: Value| {
        let r = admin(Method::POST, "/service/rest/v1/security/tokens").json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        let v: Value = r.json().unwrap();
        (v["id"].as_str().unwrap().to_string(), v["token"].as_str().unwrap().to_string())
    };
    let read = |token: &str, path: &str| common::client().get(server().url(path)).bearer_auth(token).send().unwrap().status();
    let (id, token) = create(json!({"name": "ci"}));
    assert!(token.starts_with("wharf_"));
    // Listed without the secret.
    let list: Vec<Value> = admin(Method::GET, "/service/rest/v1/security/tokens").send().unwrap().json().unwrap();
    let listed = list.iter().find(|t| t["id"] == id.as_str()).expect("listed");
    assert!(listed.get("token").is_none() && token.starts_with(listed["prefix"].as_str().unwrap()));
    // As a Bearer token, and as the password in Basic credentials (for its own user only).
    assert_eq!(read(&token, "/repository/pypi-hosted/simple/"), StatusCode::OK);
    assert_eq!(as_user("admin", &token, Method::GET, "/repository/pypi-hosted/simple/").send().unwrap().status(), StatusCode::OK);
    assert_eq!(as_user("someone", &token, Method::GET, "/repository/pypi-hosted/simple/").send().unwrap().status(), StatusCode::UNAUTHORIZED);
    // Read-only: reads, never writes.
    let (_, ro) = create(json!({"name": "ro", "readOnly": true}));
    assert_eq!(read(&ro, "/repository/pypi-hosted/simple/"), StatusCode::OK);
    let form = reqwest::blocking::multipart::Form::new().text(":action", "file_upload").text("name", "x").text("version", "1");
    let r = common::client().post(server().url("/repository/pypi-hosted/")).bearer_auth(&ro).multipart(form).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(read(&ro, "/service/rest/v1/security/users"), StatusCode::FORBIDDEN, "a read-only admin token is no admin");
    // One repository: another repository is closed to it.
    let (_, scoped) = create(json!({"name": "pypi only", "repository": "pypi-hosted"}));
    assert_eq!(read(&scoped, "/repository/pypi-hosted/simple/"), StatusCode::OK);
    assert_eq!(read(&scoped, "/v2/docker-team/some/image/tags/list"), StatusCode::FORBIDDEN);
    let r = admin(Method::POST, "/service/rest/v1/security/tokens").json(&json!({"repository": "no-such-repo"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Expired: refused.
    let (_, short) = create(json!({"name": "short", "expiresInDays": 0.00002}));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(read(&short, "/repository/pypi-hosted/simple/"), StatusCode::UNAUTHORIZED);
    // Revoked: refused at once; an unknown token never worked.
    assert_eq!(admin(Method::DELETE, &format!("/service/rest/v1/security/tokens/{id}")).send().unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(read(&token, "/repository/pypi-hosted/simple/"), StatusCode::UNAUTHORIZED);
    assert_eq!(read("wharf_not-a-real-token", "/repository/pypi-hosted/simple/"), StatusCode::UNAUTHORIZED);
}

#[test]
fn wrong_passwords_pause_password_checks_for_a_while_only() {
    let s =
        TestServer::start_with_env(&[("WHARF_SECURITY__LOCKOUT_AFTER", "3"), ("WHARF_SECURITY__LOCKOUT_SECS", "2"), ("WHARF_SECURITY__LOCKOUT_MAX_SECS", "4")]);
    let path = "/repository/pypi-hosted/simple/";
    let status = |user: &str, pass: &str| common::client().get(s.url(path)).basic_auth(user, Some(pass)).send().unwrap().status();
    // A token made before the attack, and (below) a session that logged in before it.
    let r = s.admin().request(Method::POST, "/service/rest/v1/security/tokens").json(&json!({"name": "t"})).send().unwrap();
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let r = s
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "victim", "password": "victim-password", "roles": ["nx-admin"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(status("admin", ADMIN_PASSWORD), StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(status("victim", "guess"), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status("victim", "victim-password"), StatusCode::UNAUTHORIZED, "paused: even the right password is not checked");
    // Guesses at the admin's password from elsewhere pause that address only, even for the
    // right password (a remembered login is no way around the pause).
    let elsewhere = Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let status_elsewhere = |user: &str, pass: &str| elsewhere.get(s.url(path)).basic_auth(user, Some(pass)).send().unwrap().status();
    for _ in 0..3 {
        assert_eq!(status_elsewhere("admin", "guess"), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status_elsewhere("admin", ADMIN_PASSWORD), StatusCode::UNAUTHORIZED);
    assert_eq!(status("admin", ADMIN_PASSWORD), StatusCode::OK, "the admin's own address is not paused");
    assert_eq!(common::client().get(s.url(path)).bearer_auth(&token).send().unwrap().status(), StatusCode::OK, "tokens are not paused");
    std::thread::sleep(std::time::Duration::from_millis(2600));
    assert_eq!(status("victim", "victim-password"), StatusCode::OK, "after the pause the right password works");

    // A name longer than any user's is refused without a password check or a count (a count
    // under it would have to tell the other nodes of a pause in more than PostgreSQL's
    // 8,000-byte notification).
    let long = "x".repeat(9000);
    for _ in 0..4 {
        let r = common::client().post(s.url("/service/rest/v1/session")).json(&json!({"username": long, "password": "guess"})).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let counted = if s.is_postgres() {
        std::process::Command::new("psql").arg(s.database_url()).args(["-tAc", "SELECT count(*) FROM login_failures"]).output()
    } else {
        std::process::Command::new("sqlite3").arg(s.data_dir().join("wharf.db")).arg("SELECT count(*) FROM login_failures").output()
    };
    let counted = String::from_utf8_lossy(&counted.expect("psql or sqlite3").stdout).trim().to_string();
    assert_eq!(counted, "1", "only the address that guessed the admin's password is counted");
}

#[test]
fn console_sessions_are_httponly_cookies_with_csrf_protection() {
    let login = |user: &str, pass: &str| {
        common::client().post(server().url("/service/rest/v1/session")).json(&json!({"username": user, "password": pass})).send().unwrap()
    };
    assert_eq!(login("admin", "wrong").status(), StatusCode::UNAUTHORIZED);
    let r = login("admin", ADMIN_PASSWORD);
    assert_eq!(r.status(), StatusCode::OK);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict") && set_cookie.contains("Path=/"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let body: Value = r.json().unwrap();
    assert_eq!(body["admin"], true);
    let csrf = body["csrfToken"].as_str().unwrap().to_string();
    let with_cookie = |m: Method, path: &str| common::client().request(m, server().url(path)).header("Cookie", &cookie);
    assert_eq!(with_cookie(Method::GET, "/service/rest/v1/security/users").send().unwrap().status(), StatusCode::OK);
    let me: Value = with_cookie(Method::GET, "/service/rest/v1/session").send().unwrap().json().unwrap();
    assert_eq!((me["userId"].as_str(), me["csrfToken"].as_str()), (Some("admin"), Some(csrf.as_str())));
    // A state change with the cookie alone is refused; with the CSRF token it passes.
    let role = json!({"id": "from-console", "privileges": []});
    assert_eq!(with_cookie(Method::POST, "/service/rest/v1/security/roles").json(&role).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        with_cookie(Method::POST, "/service/rest/v1/security/roles").header("X-CSRF-Token", "forged").json(&role).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // From another site's page (the browser names it in Origin): refused even with the token.
    let evil = json!({"id": "from-elsewhere", "privileges": []});
    let r =
        with_cookie(Method::POST, "/service/rest/v1/security/roles").header("X-CSRF-Token", &csrf).header("Origin", "http://evil.example").json(&evil).send();
    assert_eq!(r.unwrap().status(), StatusCode::FORBIDDEN);
    let r = common::client()
        .post(server().url("/service/rest/v1/session"))
        .header("Origin", "http://evil.example")
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}));
    assert_eq!(r.send().unwrap().status(), StatusCode::FORBIDDEN, "no sign-in from another site's form");
    let r = with_cookie(Method::POST, "/service/rest/v1/security/roles").header("X-CSRF-Token", &csrf).header("Origin", server().base.as_str()).json(&role);
    assert_eq!(r.send().unwrap().status(), StatusCode::OK);
    // A non-administrator's session reads what they may, and no admin page.
    create_user("console-reader", "console-reader-pw", &[]);
    let r = login("console-reader", "console-reader-pw");
    let reader_cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_eq!(r.json::<Value>().unwrap()["admin"], false);
    let r = common::client().get(server().url("/service/rest/v1/security/users")).header("Cookie", &reader_cookie).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A Docker registry token is no session.
    let token: Value = common::client().get(server().url("/v2/token?service=wharf")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().json().unwrap();
    let fake = format!("wharf_session={}", token["token"].as_str().unwrap());
    assert_eq!(common::client().get(server().url("/service/rest/v1/security/users")).header("Cookie", fake).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    // Logout clears the cookie, and ends the session on the server: the old cookie is dead.
    let r = with_cookie(Method::DELETE, "/service/rest/v1/session").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie(Method::GET, "/service/rest/v1/security/users").send().unwrap().status(), StatusCode::UNAUTHORIZED);
}

/// A browser that once answered wharf's Basic challenge sends that password with every later
/// request to wharf, also with a form another site's page posts: `text/plain` that reads as
/// JSON would create an administrator, `multipart/form-data` would upload a wheel. Such writes
/// are refused whatever their credentials; the same requests without a browser's headers pass.
#[test]
fn a_write_another_sites_page_makes_with_remembered_basic_credentials_is_refused() {
    let user = "{\"userId\":\"csrf-made\",\"password\":\"Passw0rd-csrf\",\"roles\":[\"nx-admin\"],\"status\":\"active\",\"emailAddress\":\"x@example.test\",\"lastName\":\"x\",\"firstName\":\"=\"}\r\n";
    let post_user = |headers: &[(&str, &str)]| {
        let mut r = as_user("admin", ADMIN_PASSWORD, Method::POST, "/service/rest/v1/security/users").header("Content-Type", "text/plain").body(user);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    };
    let exists = || {
        let found: Value = admin(Method::GET, "/service/rest/v1/security/users?userId=csrf-made").send().unwrap().json().unwrap();
        found.as_array().unwrap().iter().any(|u| u["userId"] == "csrf-made")
    };
    for headers in [[("Origin", "https://evil.example")], [("Sec-Fetch-Site", "cross-site")], [("Origin", "null")]] {
        let r = post_user(&headers);
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(r.text().unwrap().contains("another site"));
        assert!(!exists(), "{headers:?}: the user was created");
    }

    let dir = tempfile::tempdir().unwrap();
    let wheel = dist(dir.path(), "csrf-made", "1.0");
    let upload = |headers: &[(&str, &str)]| {
        let form = reqwest::blocking::multipart::Form::new()
            .text(":action", "file_upload")
            .text("protocol_version", "1")
            .text("name", "csrf-made")
            .text("version", "1.0")
            .text("filetype", "bdist_wheel")
            .file("content", &wheel)
            .unwrap();
        let mut r = as_user("admin", ADMIN_PASSWORD, Method::POST, "/repository/pypi-hosted/").multipart(form);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    };
    let listed = || admin(Method::GET, "/repository/pypi-hosted/simple/csrf-made/").send().unwrap().status();
    assert_eq!(upload(&[("Sec-Fetch-Site", "same-site"), ("Origin", "https://docs.example")]).status(), StatusCode::FORBIDDEN);
    assert_eq!(listed(), StatusCode::NOT_FOUND, "the wheel was uploaded");

    // The same requests from a client that is no browser, and from wharf's own pages, pass.
    assert_eq!(upload(&[]).status(), StatusCode::OK);
    assert_eq!(listed(), StatusCode::OK);
    let r = post_user(&[("Origin", server().base.trim_end_matches('/'))]);
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    assert!(exists());
}

/// Logs `user` in to the console; the cookie (`name=value`) and the CSRF token.
fn console_login(user: &str, pass: &str) -> (String, String) {
    let r = common::client().post(server().url("/service/rest/v1/session")).json(&json!({"username": user, "password": pass})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "console login as {user}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = r.json::<Value>().unwrap()["csrfToken"].as_str().unwrap().to_string();
    (cookie, csrf)
}

#[test]
fn narrowed_credentials_never_create_or_widen_credentials() {
    create_user("narrow-admin", "narrow-admin-password", &["nx-admin"]);
    let token = |body: Value| -> String {
        let r = as_user("narrow-admin", "narrow-admin-password", Method::POST, "/service/rest/v1/security/tokens").json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
    };
    let read_only = token(json!({"name": "ro", "readOnly": true}));
    let one_repo = token(json!({"name": "one", "repository": "pypi-hosted"}));
    let full = token(json!({"name": "full"}));
    let r = common::client()
        .get(server().url("/v2/token?service=wharf&scope=repository:docker-team/app:pull"))
        .basic_auth("narrow-admin", Some("narrow-admin-password"))
        .send()
        .unwrap();
    let bearer = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    for (i, (what, cred)) in
        [("read-only token", &read_only), ("one-repository token", &one_repo), ("full token", &full), ("Docker bearer token", &bearer)].into_iter().enumerate()
    {
        // Each from an address of its own: these count as wrong passwords, and the pause that
        // follows enough of them must not stand in for the refusals under test.
        let c = Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 20 + i as u8])).build().unwrap();
        let r = c.post(server().url("/service/rest/v1/security/tokens")).bearer_auth(cred).json(&json!({"name": "wider"})).send().unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "a {what} mints no token");
        let r = c.post(server().url("/service/rest/v1/session")).json(&json!({"username": "narrow-admin", "password": cred})).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a {what} opens no console session");
        let r = c
            .put(server().url("/repository/npm-hosted/-/user/org.couchdb.user:narrow-admin"))
            .json(&json!({"name": "narrow-admin", "password": cred}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a {what} gets no token from npm login");
        let r = c
            .post(server().url("/repository/npm-hosted/-/npm/v1/tokens"))
            .bearer_auth(cred)
            .json(&json!({"password": cred, "readonly": false}))
            .send()
            .unwrap();
        assert!(matches!(r.status(), StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), "a {what} gets no token from npm token create: {}", r.status());
        let r = c
            .put(server().url("/service/rest/v1/security/users/narrow-admin/change-password"))
            .bearer_auth(cred)
            .header("Content-Type", "text/plain")
            .body("hijacked-password")
            .send()
            .unwrap();
        assert!(r.status().is_client_error(), "a {what} changes no password: {}", r.status());
    }
    // A token in place of the password in Basic credentials is still that token.
    let r = as_user("narrow-admin", &read_only, Method::POST, "/service/rest/v1/security/tokens").json(&json!({})).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The password still works, and still makes tokens; so does a console session.
    let r = as_user("narrow-admin", "narrow-admin-password", Method::GET, "/repository/pypi-hosted/simple/").send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the password was not changed");
    let (cookie, csrf) = console_login("narrow-admin", "narrow-admin-password");
    let r = common::client()
        .post(server().url("/service/rest/v1/security/tokens"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"name": "from the console"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = common::client()
        .post(server().url("/repository/npm-hosted/-/npm/v1/tokens"))
        .bearer_auth(&read_only)
        .json(&json!({"password": "narrow-admin-password", "readonly": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "npm token create with the password");
    // A narrowed token cannot revoke the user's other tokens.
    let list: Vec<Value> = as_user("narrow-admin", "narrow-admin-password", Method::GET, "/service/rest/v1/security/tokens").send().unwrap().json().unwrap();
    let full_id = list.iter().find(|t| t["name"] == "full").unwrap()["id"].as_str().unwrap().to_string();
    let r = common::client().delete(server().url(&format!("/service/rest/v1/security/tokens/{full_id}"))).bearer_auth(&read_only).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[test]
fn changing_ones_own_password_needs_the_current_one() {
    create_user("self-changer", "self-changer-first", &[]);
    let (cookie, csrf) = console_login("self-changer", "self-changer-first");
    let change = |body: reqwest::blocking::RequestBuilder| body.header("Cookie", &cookie).header("X-CSRF-Token", &csrf).send().unwrap().status();
    let url = server().url("/service/rest/v1/security/users/self-changer/change-password");
    // A session alone is not proof: someone at an unlocked screen must not lock the user out.
    assert_eq!(change(common::client().put(&url).header("Content-Type", "text/plain").body("self-changer-second")), StatusCode::BAD_REQUEST);
    let wrong = json!({"currentPassword": "not-it", "newPassword": "self-changer-second"});
    assert_eq!(change(common::client().put(&url).json(&wrong)), StatusCode::FORBIDDEN);
    let right = json!({"currentPassword": "self-changer-first", "newPassword": "self-changer-second"});
    assert_eq!(change(common::client().put(&url).json(&right)), StatusCode::NO_CONTENT);
    let status = |p: &str| as_user("self-changer", p, Method::GET, "/service/rest/v1/session").send().unwrap().status();
    assert_eq!((status("self-changer-first"), status("self-changer-second")), (StatusCode::UNAUTHORIZED, StatusCode::OK));
    // The password change ended the session it was made with.
    let r = common::client().get(server().url("/service/rest/v1/session")).header("Cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An administrator sets another user's password without knowing it (Nexus's text/plain).
    let r = admin(Method::PUT, "/service/rest/v1/security/users/self-changer/change-password")
        .header("Content-Type", "text/plain")
        .body("set-by-admin-pw")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(status("set-by-admin-pw"), StatusCode::OK);
}

/// Login timing must not tell which user names exist: an unknown or disabled user is refused
/// after the same argon2 work as a wrong password.
#[test]
fn login_time_does_not_tell_user_names_apart() {
    let s = TestServer::start_with_env(&[("WHARF_SECURITY__LOCKOUT_AFTER", "0")]);
    for (id, status) in [("timed-user", "active"), ("timed-disabled", "disabled")] {
        let r = s
            .admin()
            .request(Method::POST, "/service/rest/v1/security/users")
            .json(&json!({"userId": id, "password": "timed-password", "status": status}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let c = common::client();
    let time = |user: &str, i: usize| {
        let started = std::time::Instant::now();
        let r = c.get(s.url("/repository/pypi-hosted/simple/")).basic_auth(user, Some(format!("wrong-{i}"))).send().unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        took
    };
    // Interleaved rounds, so that a busy spell of the machine (other tests hash passwords too)
    // slows all three alike rather than one of them.
    let (mut existing, mut unknown, mut disabled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..9 {
        existing.push(time("timed-user", i));
        unknown.push(time("timed-nobody", i));
        disabled.push(time("timed-disabled", i));
    }
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (existing, unknown, disabled) = (median(existing), median(unknown), median(disabled));
    // Same order of magnitude (a wide margin: the machine is busy); before, unknown was ~1%.
    assert!(unknown.as_secs_f64() >= 0.3 * existing.as_secs_f64(), "unknown {unknown:?} vs existing {existing:?}");
    assert!(disabled.as_secs_f64() >= 0.3 * existing.as_secs_f64(), "disabled {disabled:?} vs existing {existing:?}");
}

/// Wrong guesses from one address pause that address only, under the canonical name.
#[test]
fn the_failed_login_pause_is_per_address_and_per_canonical_name() {
    let s = TestServer::start_with_env(&[
        ("WHARF_SECURITY__LOCKOUT_AFTER", "3"),
        ("WHARF_SECURITY__LOCKOUT_SECS", "600"),
        ("WHARF_SECURITY__LOCKOUT_MAX_SECS", "600"),
    ]);
    let r = s
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "paused-admin", "password": "paused-admin-pw", "roles": ["nx-admin"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let from = |last: u8| Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, last])).build().unwrap();
    let status = |c: &Client, user: &str, pass: &str| c.get(s.url("/service/rest/v1/session")).basic_auth(user, Some(pass)).send().unwrap().status();
    let (attacker, legit, other) = (from(2), from(1), from(3));
    for _ in 0..3 {
        assert_eq!(status(&attacker, "paused-admin", "guess"), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status(&attacker, "paused-admin", "paused-admin-pw"), StatusCode::UNAUTHORIZED, "the guessing address is paused");
    assert_eq!(status(&attacker, "PAUSED-ADMIN", "paused-admin-pw"), StatusCode::UNAUTHORIZED, "in every spelling");
    assert_eq!(status(&legit, "paused-admin", "paused-admin-pw"), StatusCode::OK, "another address is not kept out");
    // Guesses under another spelling count for the same name.
    for _ in 0..3 {
        assert_eq!(status(&other, "Paused-Admin", "guess"), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status(&other, "paused-admin", "paused-admin-pw"), StatusCode::UNAUTHORIZED);

    // Guesses sent side by side: as many are checked as one after the other would be (3), and
    // the rest are refused by the pause. Each used to be checked, the pause read before any of
    // them was counted: a burst of thousands was a way around the pause.
    let local_failures = || -> f64 {
        let text = s.admin().request(Method::GET, "/service/metrics/prometheus").send().unwrap().text().unwrap();
        text.lines()
            .filter(|l| l.starts_with("wharf_logins_total{") && l.contains("realm=\"local\"") && l.contains("result=\"failure\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = local_failures();
    let burst = from(4);
    let answers: Vec<StatusCode> = std::thread::scope(|scope| {
        let all: Vec<_> = (0..24)
            .map(|i| {
                let c = burst.clone();
                let status = &status;
                scope.spawn(move || status(&c, "paused-admin", &format!("guess-{i}")))
            })
            .collect();
        all.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{answers:?}");
    assert_eq!(local_failures() - before, 3.0, "wrong passwords checked in a burst of 24 with a pause after 3");
    // A name padded with spaces is no one's (a directory would find the name in it, each
    // spelling with a count of its own): refused unchecked, also with the right password.
    let fresh = from(5);
    for padded in [" paused-admin", "paused-admin ", "paused-admin\t"] {
        assert_eq!(status(&fresh, padded, "paused-admin-pw"), StatusCode::UNAUTHORIZED, "{padded:?}");
    }
    assert_eq!(local_failures() - before, 3.0, "a padded name is not checked");
    assert_eq!(status(&fresh, "paused-admin", "paused-admin-pw"), StatusCode::OK);
}

/// Recording a token's last use is best effort: while another process holds SQLite's write lock,
/// a valid token still logs in (it used to wait out the busy timeout and get 401).
#[test]
fn a_busy_database_never_refuses_a_valid_token() {
    use std::io::{BufRead, BufReader, Write};
    let s = TestServer::start();
    if s.is_postgres() {
        return;
    }
    let r = s.admin().request(Method::POST, "/service/rest/v1/security/tokens").json(&json!({"name": "busy"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    // Ends with its stdin, also when the test fails half-way.
    let mut locker = Command::new("sqlite3")
        .arg(s.data_dir().join("wharf.db"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3 is installed");
    let mut stdin = locker.stdin.take().unwrap();
    writeln!(stdin, ".timeout 20000\nBEGIN IMMEDIATE;\nSELECT 'locked';").unwrap();
    let mut line = String::new();
    BufReader::new(locker.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked", "the other process holds the write lock");
    let status = common::client().get(s.url("/repository/pypi-hosted/simple/")).bearer_auth(&token).send().unwrap().status();
    writeln!(stdin, "COMMIT;\n.quit").unwrap();
    drop(stdin);
    locker.wait().unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// Whatever a user may read they may see through the REST API the console uses (the
/// repository, its usage and its components); what they may not read does not exist for them.
#[test]
fn a_reader_sees_the_repositories_they_may_read_and_no_other() {
    create_role("pypi-only-reader", &["nx-repository-view-pypi-pypi-hosted-read", "nx-repository-view-pypi-pypi-hosted-browse"], &[]);
    create_user("pypi-only", "pypi-only-password", &["pypi-only-reader"]);
    let get = |path: &str| as_user("pypi-only", "pypi-only-password", Method::GET, path).send().unwrap().status();
    for path in
        ["/service/rest/v1/repositories/pypi-hosted", "/service/rest/v1/repositories/pypi-hosted/usage", "/service/rest/v1/components?repository=pypi-hosted"]
    {
        assert_eq!(get(path), StatusCode::OK, "{path}");
    }
    for path in
        ["/service/rest/v1/repositories/docker-team", "/service/rest/v1/repositories/docker-team/usage", "/service/rest/v1/components?repository=docker-team"]
    {
        assert_eq!(get(path), StatusCode::NOT_FOUND, "{path}");
    }
    // Settings stay an admin's.
    assert_eq!(get("/service/rest/v1/repositories/pypi/hosted/pypi-hosted"), StatusCode::FORBIDDEN);
}
