//! The LDAP realm against a real OpenLDAP `slapd` on loopback, loaded from
//! `tests/ldap/fixture.ldif`: logins through the REST API, twine/pip, skopeo and npm; groups
//! mapped onto roles (static and attribute-based); wrong passwords, users outside the base DN,
//! disabled users, filter injection, and the directory going down.

mod common;

use common::slapd::Slapd;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Env {
    server: TestServer,
    slapd: Mutex<Slapd>,
}

fn server_json(port: u16) -> Value {
    json!({
        "name": "corp", "protocol": "ldap", "host": "127.0.0.1", "port": port,
        "searchBase": "dc=example,dc=test", "authScheme": "SIMPLE",
        "authUsername": "cn=wharf-service,dc=example,dc=test", "authPassword": "service-secret",
        "connectionTimeoutSeconds": 2, "readTimeoutSeconds": 5,
        "userBaseDn": "ou=people", "userSubtree": true, "userObjectClass": "inetOrgPerson",
        "userLdapFilter": "(!(employeeType=disabled))", "userIdAttribute": "uid",
        "userRealNameAttribute": "cn", "userEmailAddressAttribute": "mail",
        "ldapGroupsAsRoles": true, "groupType": "static", "groupBaseDn": "ou=groups", "groupSubtree": true,
        "groupObjectClass": "groupOfNames", "groupIdAttribute": "cn", "groupMemberAttribute": "member", "groupMemberFormat": "${dn}",
    })
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let slapd = Slapd::start();
        let server = TestServer::start();
        let admin = server.admin();
        for (id, privileges) in [("devs", json!(["nx-repository-view-*-*-*"])), ("readers", json!(["nx-repository-view-*-*-read"]))] {
            let r = admin.request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": id, "privileges": privileges})).send().unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let r = admin.request(Method::POST, "/service/rest/v1/security/ldap").json(&server_json(slapd.port)).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        Env { server, slapd: Mutex::new(slapd) }
    })
}

fn read_status(user: &str, pass: &str) -> StatusCode {
    common::client().get(env().server.url("/repository/pypi-hosted/simple/")).basic_auth(user, Some(pass)).send().unwrap().status()
}

fn dist(name: &str) -> PathBuf {
    let tmp = std::env::temp_dir().join(format!("wharf-ldap-{name}-{}", std::process::id()));
    common::pypi::dist(&tmp, name, "1.0", &[]).0
}

fn twine(user: &str, pass: &str, file: &PathBuf) -> std::process::Output {
    common::pypi::twine(&env().server.url("/repository/pypi-hosted/"), user, pass, &[file])
}

#[test]
fn directory_users_log_in_everywhere_and_their_groups_decide() {
    let e = env();
    // alice is in devs (everything), bob in readers (reads), carol in no group.
    assert_eq!(read_status("alice", "alice-password"), StatusCode::OK);
    assert_eq!(read_status("bob", "bob-password"), StatusCode::OK);
    assert_eq!(read_status("carol", "carol-password"), StatusCode::FORBIDDEN, "a known user without roles may not read");
    let out = twine("alice", "alice-password", &dist("ldap-alice-pkg"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = twine("bob", "bob-password", &dist("ldap-bob-pkg"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("403") || String::from_utf8_lossy(&out.stderr).contains("403"));

    // pip as alice.
    let target = tempfile::tempdir().unwrap();
    let index = format!("http://alice:alice-password@{}/repository/pypi-hosted/simple/", e.server.addr);
    let out = Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated", "install", "--no-cache-dir", "--index-url", &index, "--target"])
        .arg(target.path())
        .arg("ldap-alice-pkg")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // skopeo as alice: a push to the Docker repository.
    let tmp = tempfile::tempdir().unwrap();
    common::oci::image(&tmp.path().join("l"), "v1", &["amd64"], 21, 1024);
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-password"])
        .arg(format!("oci:{}:v1", tmp.path().join("l").display()))
        .arg(format!("docker://{}/docker-hosted/ldap/app:v1", e.server.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // npm's login gives alice a token; the token works later without her password.
    let r = common::client()
        .put(e.server.url("/repository/npm-hosted/-/user/org.couchdb.user:alice"))
        .json(&json!({"name": "alice", "password": "alice-password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let who: Value = common::client().get(e.server.url("/repository/npm-hosted/-/whoami")).bearer_auth(&token).send().unwrap().json().unwrap();
    assert_eq!(who["username"], "alice");

    // The console's login takes directory users too; the session carries alice's roles.
    let r = common::client().post(e.server.url("/service/rest/v1/session")).json(&json!({"username": "alice", "password": "alice-password"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_eq!(r.json::<Value>().unwrap()["admin"], false);
    let repos: Vec<Value> = common::client().get(e.server.url("/service/rest/v1/repositories")).header("Cookie", &cookie).send().unwrap().json().unwrap();
    assert!(repos.iter().any(|r| r["name"] == "pypi-hosted"), "{repos:?}");
    let r = common::client().get(e.server.url("/service/rest/v1/security/users")).header("Cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[test]
fn wrong_passwords_outsiders_disabled_users_and_injection_are_refused() {
    let _ = env();
    assert_eq!(read_status("alice", "wrong"), StatusCode::UNAUTHORIZED);
    assert_eq!(read_status("alice", ""), StatusCode::UNAUTHORIZED, "an empty password is no unauthenticated bind");
    assert_eq!(read_status("dave", "dave-password"), StatusCode::UNAUTHORIZED, "outside the user base DN");
    assert_eq!(read_status("eve", "eve-password"), StatusCode::UNAUTHORIZED, "excluded by the user filter");
    assert_eq!(read_status("nobody", "x"), StatusCode::UNAUTHORIZED);
    // Filter metacharacters are data, not filter syntax.
    for evil in ["*", "al*", "alice)(uid=*", "*)(|(uid=*", "alice\\2a"] {
        assert_eq!(read_status(evil, "alice-password"), StatusCode::UNAUTHORIZED, "{evil}");
    }
    // Over-long credentials.
    assert_eq!(read_status(&"a".repeat(5000), "x"), StatusCode::UNAUTHORIZED);
    assert_eq!(read_status("alice", &"p".repeat(5000)), StatusCode::UNAUTHORIZED);
    // A local user wins over a directory entry of the same name.
    assert_eq!(read_status("admin", "directory-admin-password"), StatusCode::UNAUTHORIZED);
    assert_eq!(read_status("admin", ADMIN_PASSWORD), StatusCode::OK);
}

#[test]
fn the_checks_test_connection_and_login_and_groups_can_come_from_a_user_attribute() {
    let e = env();
    let admin = e.server.admin();
    let port = e.slapd.lock().unwrap().port;
    let r: Value = admin
        .request(Method::POST, "/service/rest/v1/security/ldap/verify-connection")
        .json(&json!({"server": server_json(port)}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    let mut wrong = server_json(port);
    wrong["authPassword"] = json!("not-it");
    let r: Value =
        admin.request(Method::POST, "/service/rest/v1/security/ldap/verify-connection").json(&json!({"server": wrong})).send().unwrap().json().unwrap();
    assert_eq!(r["success"], false);
    let r: Value = admin
        .request(Method::POST, "/service/rest/v1/security/ldap/verify-login")
        .json(&json!({"server": server_json(port), "username": "alice", "password": "alice-password"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["user"]["email"], "alice@example.test");
    assert_eq!(r["roles"], json!(["devs"]));
    // The stored server reads back without its password.
    let listed: Vec<Value> = admin.request(Method::GET, "/service/rest/v1/security/ldap").send().unwrap().json().unwrap();
    assert_eq!(listed[0]["name"], "corp");
    assert!(listed[0]["authPassword"].is_null());
    // Bad configuration is named.
    let mut bad = server_json(port);
    bad["name"] = json!("bad");
    bad["protocol"] = json!("gopher");
    let r = admin.request(Method::POST, "/service/rest/v1/security/ldap").json(&bad).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("protocol"));
    // Groups from a user attribute (memberOf, or here businessCategory): bob's names devs, and
    // two DNs that are not groups of this server (nx-admin outside the group base, a DN without
    // the search base), which grant nothing.
    let mut dynamic = server_json(port);
    dynamic["groupType"] = json!("dynamic");
    dynamic["userMemberOfAttribute"] = json!("businessCategory");
    let r: Value = admin
        .request(Method::POST, "/service/rest/v1/security/ldap/verify-login")
        .json(&json!({"server": dynamic, "username": "bob", "password": "bob-password"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["roles"], json!(["devs"]), "{r}");
    // Static groups that list user names (posixGroup memberUid) rather than DNs.
    let mut by_uid = server_json(port);
    by_uid["groupObjectClass"] = json!("posixGroup");
    by_uid["groupMemberAttribute"] = json!("memberUid");
    by_uid["groupMemberFormat"] = json!("${username}");
    let r: Value = admin
        .request(Method::POST, "/service/rest/v1/security/ldap/verify-login")
        .json(&json!({"server": by_uid, "username": "bob", "password": "bob-password"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["user"]["groups"], json!(["ops"]), "{r}");
}

#[test]
fn a_directory_outage_is_503_for_directory_names_pauses_no_one_and_locks_out_no_local_admin() {
    // A directory and a server of its own: stopping it must not disturb the other tests.
    let mut slapd = Slapd::start();
    let server = TestServer::start();
    let r = server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": "readers", "privileges": ["nx-repository-view-*-*-read"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = server.admin().request(Method::POST, "/service/rest/v1/security/ldap").json(&server_json(slapd.port)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "loc", "password": "loc-password-1", "roles": ["readers"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let status = |u: &str, p: &str| common::client().get(server.url("/repository/pypi-hosted/simple/")).basic_auth(u, Some(p)).send().unwrap().status();
    // On SQLite the change counters tell this node of its own role and directory changes too,
    // a poll (250 ms) later, and it forgets its logins then: bob's must be remembered after
    // that, or the outage below would meet an empty cache.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(status("bob", "bob-password"), StatusCode::OK);
    slapd.stop();
    let started = Instant::now();
    // Not "wrong password" (a client would give up on good credentials): 503, try again. More
    // times than a pause takes (`lockout_after`, 5), which none may start: it would outlast
    // the outage.
    for attempt in 0..7 {
        let r = common::client().get(server.url("/repository/pypi-hosted/simple/")).basic_auth("carol", Some("carol-password")).send().unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "attempt {attempt}");
        assert!(r.text().unwrap().contains("LDAP directory does not answer"));
    }
    assert!(started.elapsed() < Duration::from_secs(20), "an unreachable directory fails fast");
    // A local name's wrong password is answered alike meanwhile (a 401 would tell local names
    // apart), though counted as ever.
    assert_eq!(status("loc", "not-locs-password"), StatusCode::SERVICE_UNAVAILABLE, "a local name, while the directory is silent");
    assert_eq!(status("loc", "loc-password-1"), StatusCode::OK, "a local user's right password decides alone");
    // Its wrong passwords still count, and once it is paused the refusal is a 503 too (a 401
    // of a paused name told the local names from the others during the outage).
    for attempt in 0..6 {
        assert_eq!(status("loc", &format!("guess-{attempt}")), StatusCode::SERVICE_UNAVAILABLE, "attempt {attempt}");
    }
    assert_eq!(status("loc", "loc-password-1"), StatusCode::SERVICE_UNAVAILABLE, "paused, while the directory is silent");
    let token = common::client()
        .get(server.url("/v2/token?service=wharf&scope=repository:docker-hosted/app:pull"))
        .basic_auth("carol", Some("carol-password"))
        .send()
        .unwrap();
    assert_eq!(token.status(), StatusCode::SERVICE_UNAVAILABLE, "Docker's token endpoint too");
    // npm login checks the password in its own handler (the request itself is anonymous).
    let npm = common::client()
        .put(server.url("/repository/npm-hosted/-/user/org.couchdb.user:carol"))
        .json(&json!({"name": "carol", "password": "carol-password"}))
        .send()
        .unwrap();
    assert_eq!(npm.status(), StatusCode::SERVICE_UNAVAILABLE, "npm login too: {}", npm.text().unwrap());
    assert_eq!(status("admin", ADMIN_PASSWORD), StatusCode::OK, "local admins still log in");
    assert_eq!(status("bob", "bob-password"), StatusCode::OK, "a login verified before the outage stays valid for its cache time");
    slapd.spawn();
    assert_eq!(status("carol", "carol-password"), StatusCode::FORBIDDEN, "back: carol is known again (and has no roles), and not paused");
    assert_eq!(status("carol", "not-carols-password"), StatusCode::UNAUTHORIZED, "back: a wrong password is refused again");
}

#[test]
fn with_one_of_two_directories_down_a_wrong_password_still_counts() {
    // The answering server cannot tell a wrong password from a name it does not hold: the
    // refusal counts, or a dead server left in the list would let guesses go uncounted.
    let e = env();
    let port = e.slapd.lock().unwrap().port;
    let server = TestServer::start();
    for (name, port) in [("up", port), ("down", common::free_port())] {
        let mut s = server_json(port);
        s["name"] = json!(name);
        let r = server.admin().request(Method::POST, "/service/rest/v1/security/ldap").json(&s).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    }
    let status = |u: &str, p: &str| common::client().get(server.url("/repository/pypi-hosted/simple/")).basic_auth(u, Some(p)).send().unwrap().status();
    for attempt in 0..5 {
        assert_eq!(status("bob", "not-bobs-password"), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    assert_eq!(status("bob", "bob-password"), StatusCode::UNAUTHORIZED, "paused after five wrong passwords");
}

#[test]
fn whatever_the_realm_order_a_local_name_is_never_the_directorys() {
    let slapd = Slapd::start();
    let server = TestServer::start_with_env(&[("WHARF_SECURITY__REALMS", r#"["ldap", "local"]"#)]);
    let r = server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": "devs", "privileges": ["nx-repository-view-*-*-*"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = server.admin().request(Method::POST, "/service/rest/v1/security/ldap").json(&server_json(slapd.port)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let status = |u: &str, p: &str| common::client().get(server.url("/repository/pypi-hosted/simple/")).basic_auth(u, Some(p)).send().unwrap().status();
    // LDAP first: other names are the directory's ...
    assert_eq!(status("alice", "alice-password"), StatusCode::OK);
    // ... but the directory's admin entry never answers for the local admin.
    assert_eq!(status("admin", "directory-admin-password"), StatusCode::UNAUTHORIZED);
    assert_eq!(status("admin", ADMIN_PASSWORD), StatusCode::OK);
}

/// The directory has `uid=admin`: logging in as `Admin` (or any spelling) with the directory's
/// password must not act as the local `admin` anywhere, and a directory user whose name a local
/// user takes later loses what they had.
#[test]
fn a_directory_entry_never_acts_as_a_local_user_in_any_spelling() {
    let e = env();
    let c = common::client();
    let url = |p: &str| e.server.url(p);
    for (i, name) in ["Admin", "ADMIN", "admin", "aDmin"].into_iter().enumerate() {
        // Each spelling from an address of its own, so that no pause after wrong passwords
        // stands in for the refusal under test.
        let c = Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 10 + i as u8])).build().unwrap();
        let read_status = |u: &str, p: &str| c.get(url("/repository/pypi-hosted/simple/")).basic_auth(u, Some(p)).send().unwrap().status();
        assert_eq!(read_status(name, "directory-admin-password"), StatusCode::UNAUTHORIZED, "{name}");
        let r = c.post(url("/service/rest/v1/session")).json(&json!({"username": name, "password": "directory-admin-password"})).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no console session as {name}");
        let r = c.post(url("/service/rest/v1/security/tokens")).basic_auth(name, Some("directory-admin-password")).json(&json!({})).send().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no token as {name}");
        let r = c
            .put(url("/service/rest/v1/security/users/admin/change-password"))
            .basic_auth(name, Some("directory-admin-password"))
            .body("taken-over-password")
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no password change as {name}");
        let r = c
            .put(url(&format!("/repository/npm-hosted/-/user/org.couchdb.user:{name}")))
            .json(&json!({"name": name, "password": "directory-admin-password"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no npm login as {name}");
    }
    // The local admin's own password works in any spelling, as the local admin.
    assert_eq!(read_status("ADMIN", ADMIN_PASSWORD), StatusCode::OK);
    let r = c.get(url("/service/rest/v1/security/users")).basic_auth("Admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A second local user differing only in case is refused.
    let r = e
        .server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "ADMIN", "password": "another-password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().unwrap()[0]["id"], "PARAMETER userId");

    // frank (directory) has a token and a console session; then a local user Frank appears.
    let r = c.put(url("/repository/npm-hosted/-/user/org.couchdb.user:frank")).json(&json!({"name": "frank", "password": "frank-password"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let r = c.post(url("/service/rest/v1/session")).json(&json!({"username": "frank", "password": "frank-password"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let with_token = || c.get(url("/repository/pypi-hosted/simple/")).bearer_auth(&token).send().unwrap().status();
    let with_session = || c.get(url("/service/rest/v1/session")).header("Cookie", &cookie).send().unwrap().status();
    assert_eq!((with_token(), with_session()), (StatusCode::OK, StatusCode::OK));
    let r = e
        .server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "Frank", "password": "local-frank-password", "roles": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(with_token(), StatusCode::UNAUTHORIZED, "the directory's frank is not the local Frank");
    assert_eq!(with_session(), StatusCode::UNAUTHORIZED);
    assert_eq!(read_status("frank", "frank-password"), StatusCode::UNAUTHORIZED, "frank is a local name now");
    assert_eq!(read_status("frank", "local-frank-password"), StatusCode::FORBIDDEN, "the local Frank, without roles");
}

#[test]
fn ldaps_and_starttls_trust_the_configured_ca_only() {
    let certs = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf")).args(["cert", "--name", "127.0.0.1", "--out"]).arg(certs.path()).output().unwrap();
    assert!(out.status.success());
    let slapd = Slapd::start_with(Some(certs.path()));
    let admin = env().server.admin();
    let check = |server: Value| -> Value {
        admin
            .request(Method::POST, "/service/rest/v1/security/ldap/verify-login")
            .json(&json!({"server": server, "username": "alice", "password": "alice-password"}))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let ca = certs.path().join("ca.crt").display().to_string();
    let mut ldaps = server_json(slapd.tls_port.unwrap());
    ldaps["name"] = json!("corp-tls");
    ldaps["protocol"] = json!("ldaps");
    ldaps["caFile"] = json!(ca);
    let r = check(ldaps.clone());
    assert_eq!(r["success"], true, "ldaps with the CA: {r}");
    ldaps["caFile"] = Value::Null;
    let r = check(ldaps);
    assert_eq!(r["success"], false, "ldaps without the CA must not trust the server: {r}");
    let mut starttls = server_json(slapd.port);
    starttls["name"] = json!("corp-starttls");
    starttls["startTls"] = json!(true);
    starttls["caFile"] = json!(ca);
    let r = check(starttls);
    assert_eq!(r["success"], true, "StartTLS with the CA: {r}");
}

#[test]
fn ldap_servers_can_come_from_the_configuration_file() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(
        &file,
        format!(
            "[[ldap]]\nname = \"from-file\"\nprotocol = \"ldap\"\nhost = \"127.0.0.1\"\nport = {}\nsearchBase = \"dc=example,dc=test\"\n\
             authScheme = \"SIMPLE\"\nauthUsername = \"cn=wharf-service,dc=example,dc=test\"\nauthPassword = \"service-secret\"\n\
             userBaseDn = \"ou=people\"\ngroupBaseDn = \"ou=groups\"\n",
            slapd.port
        ),
    )
    .unwrap();
    // The effective configuration shows it, its password masked.
    let out = Command::new(env!("CARGO_BIN_EXE_wharf")).arg("config").arg("--config").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("from-file") && !shown.contains("service-secret"), "{shown}");
    let server = TestServer::start_with_env(&[("WHARF_TEST_CONFIG_FILE", file.to_str().unwrap())]);
    let r = server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": "readers", "privileges": ["nx-repository-view-*-*-read"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let status = |u: &str, p: &str| common::client().get(server.url("/repository/pypi-hosted/simple/")).basic_auth(u, Some(p)).send().unwrap().status();
    assert_eq!(status("bob", "bob-password"), StatusCode::OK, "bob reads through the file's server");
    let listed: Vec<Value> = server.admin().request(Method::GET, "/service/rest/v1/security/ldap").send().unwrap().json().unwrap();
    assert_eq!(listed[0]["name"], "from-file");
    assert_eq!(listed[0]["readOnly"], true);
    assert!(listed[0]["authPassword"].is_null());
}

#[test]
fn a_stored_bind_password_is_only_sent_to_the_server_it_was_given_for() {
    // A server of its own: for a moment its LDAP server points at a port that never answers.
    let port = env().slapd.lock().unwrap().port;
    let server = TestServer::start();
    let admin = server.admin();
    let r = admin.request(Method::POST, "/service/rest/v1/security/ldap").json(&server_json(port)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Where an attacker would like the password sent: a port that records any connection.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let keeping = |changes: Value, mask: bool| {
        let mut v = server_json(port);
        v.as_object_mut().unwrap().remove("authPassword");
        if mask {
            v["authPassword"] = json!("********");
        }
        for (k, val) in changes.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    for (change, mask) in [
        (json!({"port": trap_port}), false),
        (json!({"port": trap_port}), true),
        (json!({"host": "localhost"}), false),
        (json!({"protocol": "ldaps"}), true),
        (json!({"startTls": true}), false),
    ] {
        let r = admin.request(Method::PUT, "/service/rest/v1/security/ldap/corp").json(&keeping(change.clone(), mask)).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{change} keeping the stored password");
        assert!(r.text().unwrap().contains("authPassword"), "the error names the password field");
        // The checks (test connection, test login) take a stored server's password the same way.
        let r = admin
            .request(Method::POST, "/service/rest/v1/security/ldap/verify-connection")
            .json(&json!({"server": keeping(change.clone(), mask)}))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{change}: {}", r.text().unwrap());
    }
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/ldap/verify-login")
        .json(&json!({"server": keeping(json!({"port": trap_port}), false), "username": "alice", "password": "alice-password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(trap.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nothing was sent to the new destination");
    // The same destination keeps the stored password, which still works.
    let r = admin.request(Method::PUT, "/service/rest/v1/security/ldap/corp").json(&keeping(json!({"readTimeoutSeconds": 4}), true)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    let r: Value = admin
        .request(Method::POST, "/service/rest/v1/security/ldap/verify-connection")
        .json(&json!({"server": keeping(json!({}), false)}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(
        common::client().get(server.url("/repository/pypi-hosted/simple/")).basic_auth("alice", Some("alice-password")).send().unwrap().status(),
        StatusCode::FORBIDDEN,
        "alice is known (no roles on this server): the service bind works with the kept password"
    );
    // A new destination with the password given again is fine.
    let mut moved = keeping(json!({"host": "localhost"}), false);
    moved["authPassword"] = json!("service-secret");
    let r = admin.request(Method::PUT, "/service/rest/v1/security/ldap/corp").json(&moved).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
}

/// A TCP relay to `target` that holds each request for `delay` before passing it on: a directory
/// across a slow network, so that each LDAP round trip costs a time a test can see. The delay is
/// on the way to the server because a client sends each request in one write, while the server
/// may answer one request in several (a search: each entry, then its end), which the relay may
/// read apart or together: a delay per read there would make one round trip cost one delay or two.
fn slow_relay(target: u16, delay: Duration) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
            let (mut c_in, mut c_out) = (client.try_clone().unwrap(), client);
            let (mut s_in, mut s_out) = (server.try_clone().unwrap(), server);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n @ 1..) = c_in.read(&mut buf) {
                    std::thread::sleep(delay);
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n @ 1..) = s_in.read(&mut buf) {
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Wrong passwords for a local user, a name nobody has, and a directory user are refused in the
/// same time, however slow the directory: a local name costs the same directory round trips as
/// the others (decoys), and an unknown name the same bind as a directory user.
#[test]
fn with_a_directory_login_time_does_not_tell_local_directory_and_unknown_names_apart() {
    let slapd = Slapd::start();
    // Each directory request takes 100 ms: a refused directory user costs three of them (service
    // bind, search, user bind).
    let relay = slow_relay(slapd.port, Duration::from_millis(100));
    let server = TestServer::start_with_env(&[("WHARF_SECURITY__LOCKOUT_AFTER", "0")]);
    let r = server.admin().request(Method::POST, "/service/rest/v1/security/ldap").json(&server_json(relay)).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let r = server
        .admin()
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "local-timed", "password": "local-password", "roles": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c = common::client();
    let refused_in = |user: &str, i: usize| {
        let started = Instant::now();
        let r = c.get(server.url("/repository/pypi-hosted/simple/")).basic_auth(user, Some(format!("wrong-{i}"))).send().unwrap();
        let took = started.elapsed();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user}");
        took
    };
    let names = ["local-timed", "nobody-here", "alice"];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    // Interleaved, so that load on the machine falls on every name alike.
    for i in 0..9 {
        for (n, name) in names.iter().enumerate() {
            times[n].push(refused_in(name, i));
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2].as_secs_f64()
        })
        .collect();
    let slowest = medians.iter().copied().fold(0.0, f64::max);
    for (name, m) in names.iter().zip(&medians) {
        // Before, a local name took argon2 alone (tens of ms) against argon2 + 300 ms.
        assert!(*m >= 0.75 * slowest, "{name}: median {m:.3} s against the slowest {slowest:.3} s ({names:?} → {medians:?})");
    }
}

/// Runs `ldif` through ldapmodify as the directory's root.
fn ldap_modify(port: u16, ldif: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ldapmodify")
        .args(["-x", "-H", &format!("ldap://127.0.0.1:{port}"), "-D", "cn=root,dc=example,dc=test", "-w", "root-secret"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ldapmodify");
    child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "{ldif}");
}

/// A directory user's API token stops with the user's entry, and its refused uses are not
/// recorded as uses (they kept a gone owner's token out of the idle purge for ever).
#[test]
fn a_directory_users_token_stops_with_the_entry_and_refused_uses_are_not_recorded() {
    let e = env();
    let port = e.slapd.lock().unwrap().port;
    ldap_modify(
        port,
        "dn: uid=gina,ou=people,dc=example,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\nuid: gina\ncn: Gina\nsn: G\nemployeeType: staff\nuserPassword: gina-password\n",
    );
    let r = common::client()
        .post(e.server.url("/service/rest/v1/security/tokens"))
        .basic_auth("gina", Some("gina-password"))
        .json(&json!({"name": "gina-ci"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let token = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let with_token = || common::client().get(e.server.url("/repository/pypi-hosted/simple/")).bearer_auth(&token).send().unwrap().status();
    assert_eq!(with_token(), StatusCode::FORBIDDEN, "gina's token stands (she holds no role)");
    let last_used = || e.server.sql("SELECT COALESCE(last_used_at, 0) FROM api_tokens WHERE name = 'gina-ci'").trim().to_string();
    // A use is recorded in the background.
    let deadline = Instant::now() + Duration::from_secs(20);
    while last_used() == "0" {
        assert!(Instant::now() < deadline, "a use is recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    ldap_modify(port, "dn: uid=gina,ou=people,dc=example,dc=test\nchangetype: delete\n");
    // A change of roles makes every node forget what it remembered of logins and the
    // directory (else the entry is asked for again after the caches' 60 s).
    let r = e.server.admin().request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": "gina-forget", "privileges": []})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Two minutes ago: a use now would be recorded (they are, once a minute).
    let earlier = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() - 120_000).to_string();
    e.server.sql(&format!("UPDATE api_tokens SET last_used_at = {earlier} WHERE name = 'gina-ci'"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while with_token() != StatusCode::UNAUTHORIZED {
        assert!(Instant::now() < deadline, "the token outlived its owner's entry");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(with_token(), StatusCode::UNAUTHORIZED);
    // A use is recorded in the background: time for one to land.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(last_used(), earlier, "refused uses are not recorded");

    // The name given to someone else (another entry, another DN): the token was made for the
    // first gina's entry, and stays refused; the new gina logs in with her own password.
    ldap_modify(port, "dn: ou=contractors,ou=people,dc=example,dc=test\nchangetype: add\nobjectClass: organizationalUnit\nou: contractors\n");
    ldap_modify(
        port,
        "dn: uid=gina,ou=contractors,ou=people,dc=example,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\nuid: gina\ncn: Gina Two\nsn: T\nemployeeType: staff\nuserPassword: gina-two-password\n",
    );
    let r =
        e.server.admin().request(Method::POST, "/service/rest/v1/security/roles").json(&json!({"id": "gina-forget-again", "privileges": []})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    std::thread::sleep(Duration::from_millis(1500));
    let new_gina = common::client().get(e.server.url("/repository/pypi-hosted/simple/")).basic_auth("gina", Some("gina-two-password")).send().unwrap().status();
    assert_eq!(new_gina, StatusCode::FORBIDDEN, "the new gina is known (and holds no role)");
    assert_eq!(with_token(), StatusCode::UNAUTHORIZED, "the first gina's token is not the new gina's");
}
