//! Secrets at rest: the data directory and everything wharf writes in it are owner-only, and the
//! secrets wharf stores (the token/session-signing key, LDAP bind passwords, proxy upstream
//! passwords) are encrypted with a key outside the database: neither the SQLite file nor a
//! PostgreSQL dump shows them. Sessions survive restarts and key upgrades; a node with another
//! key, or none, refuses to start and names the key.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::{oci, TestServer, ADMIN_PASSWORD};
use diesel::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wharf::db::{schema, settings, Db};
use wharf::security::secrets::{KeySource, SecretKey};

const LDAP_PASSWORD: &str = "ldap-bind-Secret-7f3a2c";
const PROXY_PASSWORD: &str = "proxy-upstream-Secret-91c2d4";
/// Where the bind password of the server `corp` is sealed (its associated data).
const LDAP_CORP: &str = "settings/ldap.servers/corp/authPassword";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn ldap_server(name: &str) -> Value {
    json!({
        "name": name, "protocol": "ldap", "host": "127.0.0.1", "port": 1,
        "searchBase": "dc=example,dc=test", "authScheme": "SIMPLE",
        "authUsername": "cn=wharf-service,dc=example,dc=test", "authPassword": LDAP_PASSWORD,
        "connectionTimeoutSeconds": 2, "readTimeoutSeconds": 2,
    })
}

fn proxy_repo(name: &str) -> Value {
    json!({
        "name": name, "online": true,
        "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
        "proxy": {"remoteUrl": "http://127.0.0.1:1/", "contentMaxAge": 1440, "metadataMaxAge": 1440},
        "negativeCache": {"enabled": true, "timeToLive": 1440},
        "httpClient": {"blocked": false, "autoBlock": false, "authentication": {"type": "username", "username": "up", "password": PROXY_PASSWORD}},
    })
}

/// Stores an LDAP server and a PyPI proxy with upstream credentials, as an admin would.
fn store_secrets(s: &TestServer, password: &str, suffix: &str) {
    let http = common::client();
    let r = http.post(s.url("/service/rest/v1/security/ldap")).basic_auth("admin", Some(password)).json(&ldap_server(&format!("corp{suffix}"))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let r = http
        .post(s.url("/service/rest/v1/repositories/pypi/proxy"))
        .basic_auth("admin", Some(password))
        .json(&proxy_repo(&format!("pypi-upstream{suffix}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

/// A console session: the cookie to send back.
fn session(s: &TestServer, password: &str) -> String {
    let r = common::client().post(s.url("/service/rest/v1/session")).json(&json!({"username": "admin", "password": password})).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

fn session_user(s: &TestServer, cookie: &str) -> Option<String> {
    let r = common::client().get(s.url("/service/rest/v1/session")).header("Cookie", cookie).send().unwrap();
    if r.status() != StatusCode::OK {
        return None;
    }
    r.json::<Value>().unwrap()["userId"].as_str().map(str::to_string)
}

/// Every byte the database keeps: the SQLite file and its WAL, or a dump of the PostgreSQL
/// database's rows.
fn raw_database(s: &TestServer) -> Vec<u8> {
    if s.is_postgres() {
        let out = Command::new("pg_dump").arg("--data-only").arg(s.database_url()).output().expect("pg_dump (postgresql-client)");
        assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    } else {
        let mut all = Vec::new();
        for f in ["wharf.db", "wharf.db-wal"] {
            if let Ok(b) = std::fs::read(s.data_dir().join(f)) {
                all.extend(b);
            }
        }
        assert!(!all.is_empty());
        all
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn open_db(s: &TestServer) -> Db {
    Db::open(&s.database_url(), 2).expect("open the test database")
}

fn raw_setting(s: &TestServer, key: &str) -> Option<String> {
    let key = key.to_string();
    open_db(s).run_sync(|c| settings::get(c, &key)).unwrap()
}

fn raw_repo_config(s: &TestServer, name: &str) -> String {
    let name = name.to_string();
    open_db(s)
        .run_sync(|c| Ok(schema::repositories::table.filter(schema::repositories::name.eq(&name)).select(schema::repositories::config).first::<String>(c)?))
        .unwrap()
}

fn key_of(data_dir: &Path) -> SecretKey {
    KeySource::File(data_dir.join("secret.key")).load(false).expect("the key file")
}

/// The signing key in plaintext (opened with the key file), checked to be the key that signs
/// the given session.
fn signing_key(s: &TestServer, cookie: &str) -> Vec<u8> {
    let raw = raw_setting(s, "token.secret").expect("a signing key");
    assert!(raw.starts_with("enc:v2:"), "the signing key is stored sealed: {raw}");
    let plain = key_of(s.data_dir()).open(&raw, "settings/token.secret").unwrap();
    let key = b64().decode(plain.trim()).unwrap();
    let jwt = cookie.split_once('=').unwrap().1;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_secret(&key), &v).expect("the opened key verifies the session");
    key
}

/// Asserts that none of the secrets shows in the database's bytes, in any of the forms wharf
/// used to store them.
fn assert_no_clear_secrets(s: &TestServer, signing: &[u8]) {
    let raw = raw_database(s);
    for (what, needle) in [
        ("LDAP bind password", LDAP_PASSWORD.as_bytes().to_vec()),
        ("proxy password", PROXY_PASSWORD.as_bytes().to_vec()),
        ("signing key (base64)", b64().encode(signing).into_bytes()),
        ("signing key (bytes)", signing.to_vec()),
    ] {
        assert!(!contains(&raw, &needle), "the {what} is in the database in clear");
    }
}

/// Asserts the modes: directories 0700, files without group or other bits; returns the names seen.
fn assert_owner_only(dir: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            seen.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}", e.path().display());
                stack.push(e.path());
            } else {
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
            }
        }
    }
    seen
}

fn push_image(s: &TestServer, password: &str, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    oci::image(tmp.path(), "v1", &["amd64"], seed, 64 * 1024);
    let creds = format!("admin:{password}");
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &creds])
        .arg(format!("oci:{}:v1", tmp.path().display()))
        .arg(format!("docker://{}/docker-hosted/at-rest:v1", s.addr))
        .output()
        .expect("skopeo is installed");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_data_dir_is_owner_only_and_the_database_holds_no_secret_in_clear() {
    // A random admin password: wharf writes it to admin.password.
    let s = TestServer::start_with_env(&[("WHARF_ADMIN_PASSWORD", "")]);
    let password = std::fs::read_to_string(s.data_dir().join("admin.password")).unwrap().trim().to_string();
    store_secrets(&s, &password, "");
    push_image(&s, &password, 1);
    let cookie = session(&s, &password);
    let signing = signing_key(&s, &cookie);
    assert_no_clear_secrets(&s, &signing);
    let ldap = raw_setting(&s, "ldap.servers").unwrap();
    let stored: Value = serde_json::from_str(&ldap).unwrap();
    assert!(stored[0]["authPassword"].as_str().unwrap().starts_with("enc:v2:"), "{ldap}");
    assert_eq!(key_of(s.data_dir()).open(stored[0]["authPassword"].as_str().unwrap(), LDAP_CORP).unwrap(), LDAP_PASSWORD);
    let repo = raw_repo_config(&s, "pypi-upstream");
    assert!(repo.contains("enc:v2:") && !repo.contains(PROXY_PASSWORD), "{repo}");

    let seen = assert_owner_only(s.data_dir());
    let mut expected = vec!["secret.key", "admin.password", "wharf.addr", "blobs/default"];
    if !s.is_postgres() {
        expected.extend(["wharf.db", "wharf.db-wal", "wharf.db-shm"]);
    }
    for name in expected {
        assert!(seen.iter().any(|n| n == name), "{name} in {seen:?}");
    }
    assert!(seen.iter().filter(|n| n.starts_with("blobs/default/")).count() > 3, "the pushed blobs are there: {seen:?}");
}

#[test]
fn sessions_survive_a_restart_and_an_older_data_dir_is_made_private_and_sealed() {
    let mut s = TestServer::start();
    store_secrets(&s, ADMIN_PASSWORD, "");
    push_image(&s, ADMIN_PASSWORD, 2);
    let cookie = session(&s, ADMIN_PASSWORD);
    let signing = signing_key(&s, &cookie);
    s.kill();
    s.spawn();
    assert_eq!(session_user(&s, &cookie).as_deref(), Some("admin"), "a session made before a restart still verifies");
    s.kill();

    // Turn the data into what an older version left: every secret in plaintext, no key, and
    // files anyone can read.
    let db = open_db(&s);
    let (ldap, repo) = (raw_setting(&s, "ldap.servers").unwrap(), raw_repo_config(&s, "pypi-upstream"));
    let (mut ldap, mut repo): (Value, Value) = (serde_json::from_str(&ldap).unwrap(), serde_json::from_str(&repo).unwrap());
    ldap[0]["authPassword"] = json!(LDAP_PASSWORD);
    repo["httpClient"]["authentication"]["password"] = json!(PROXY_PASSWORD);
    let signing_b64 = b64().encode(&signing);
    db.run_sync(|c| {
        settings::set(c, "token.secret", &signing_b64)?;
        settings::set(c, "ldap.servers", &ldap.to_string())?;
        diesel::delete(schema::settings::table.filter(schema::settings::key.eq("secrets.key_id"))).execute(c)?;
        diesel::update(schema::repositories::table.filter(schema::repositories::name.eq("pypi-upstream")))
            .set(schema::repositories::config.eq(repo.to_string()))
            .execute(c)?;
        Ok(())
    })
    .unwrap();
    drop(db);
    assert!(contains(&raw_database(&s), PROXY_PASSWORD.as_bytes()), "the test wrote plaintext");
    std::fs::remove_file(s.data_dir().join("secret.key")).unwrap();
    let mut stack = vec![s.data_dir().to_path_buf()];
    while let Some(d) = stack.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }

    s.spawn();
    assert_owner_only(s.data_dir());
    assert_no_clear_secrets(&s, &signing);
    assert_eq!(session_user(&s, &cookie).as_deref(), Some("admin"), "the sealed signing key is the same key");
    assert_eq!(signing_key(&s, &cookie), signing);
    let stored: Value = serde_json::from_str(&raw_setting(&s, "ldap.servers").unwrap()).unwrap();
    assert_eq!(key_of(s.data_dir()).open(stored[0]["authPassword"].as_str().unwrap(), LDAP_CORP).unwrap(), LDAP_PASSWORD);
    let repo: Value = serde_json::from_str(&raw_repo_config(&s, "pypi-upstream")).unwrap();
    let at = "repositories/pypi-upstream/httpClient/authentication/password";
    assert_eq!(key_of(s.data_dir()).open(repo["httpClient"]["authentication"]["password"].as_str().unwrap(), at).unwrap(), PROXY_PASSWORD);
    // And an unchanged save stores the same bytes (the ciphertext is kept, not made anew).
    let before = raw_repo_config(&s, "pypi-upstream");
    let mut shown: Value = s.admin().request(Method::GET, "/service/rest/v1/repositories/pypi/proxy/pypi-upstream").send().unwrap().json().unwrap();
    assert!(shown["httpClient"]["authentication"]["password"].is_null(), "{shown}");
    shown.as_object_mut().unwrap().retain(|k, _| !["url", "format", "type"].contains(&k.as_str()));
    let r = s.admin().request(Method::PUT, "/service/rest/v1/repositories/pypi/proxy/pypi-upstream").json(&shown).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    assert_eq!(raw_repo_config(&s, "pypi-upstream"), before);
}

#[test]
fn a_missing_or_different_key_stops_the_start_and_names_the_key() {
    let mut s = TestServer::start();
    store_secrets(&s, ADMIN_PASSWORD, "");
    let cookie = session(&s, ADMIN_PASSWORD);
    s.kill();
    let key_file = s.data_dir().join("secret.key");
    let good = std::fs::read(&key_file).unwrap();

    std::fs::remove_file(&key_file).unwrap();
    let out = s.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&key_file.display().to_string()) && err.contains("does not exist"), "{err}");
    assert!(!key_file.exists(), "no new key is made for a database that has secrets");

    std::fs::write(&key_file, b64().encode([9u8; 32])).unwrap();
    let out = s.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&key_file.display().to_string()) && err.contains("not the key"), "{err}");

    std::fs::write(&key_file, &good).unwrap();
    s.spawn();
    assert_eq!(session_user(&s, &cookie).as_deref(), Some("admin"));
}

#[test]
fn a_second_node_with_the_same_key_shares_sessions_and_secrets_and_one_without_refuses() {
    let a = TestServer::start();
    let cookie = session(&a, ADMIN_PASSWORD);
    let key = std::fs::read_to_string(a.data_dir().join("secret.key")).unwrap();

    // A node on another host: its own data dir, the cluster's key from the environment.
    let b = a.node_on_own_data_dir(&[("WHARF_SECRET_KEY", key.trim())]);
    assert_eq!(session_user(&b, &cookie).as_deref(), Some("admin"), "node B verifies node A's session");
    store_secrets(&b, ADMIN_PASSWORD, "-b");
    assert!(!b.data_dir().join("secret.key").exists(), "the key came from the environment");
    let stored: Value = serde_json::from_str(&raw_setting(&a, "ldap.servers").unwrap()).unwrap();
    let at = "settings/ldap.servers/corp-b/authPassword";
    assert_eq!(key_of(a.data_dir()).open(stored[0]["authPassword"].as_str().unwrap(), at).unwrap(), LDAP_PASSWORD, "node A reads what node B sealed");
    let listed: Vec<Value> = a.admin().request(Method::GET, "/service/rest/v1/security/ldap").send().unwrap().json().unwrap();
    assert_eq!(listed.len(), 1);

    // The same key from a file named in the configuration.
    let shared = tempfile::tempdir().unwrap();
    let key_path = shared.path().join("cluster.key");
    std::fs::write(&key_path, &key).unwrap();
    let c = a.node_on_own_data_dir(&[("WHARF_SECURITY__SECRET_KEY_FILE", key_path.to_str().unwrap())]);
    assert_eq!(session_user(&c, &cookie).as_deref(), Some("admin"));

    // Without the key: its own secret.key does not exist, and it is not made.
    let d = a.unstarted_node_on_own_data_dir(&[]);
    let out = d.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = d.data_dir().join("secret.key");
    assert!(!out.status.success() && err.contains(&expected.display().to_string()), "{err}");
    // With another key in the environment: the variable is named.
    let e = a.unstarted_node_on_own_data_dir(&[("WHARF_SECRET_KEY", &b64().encode([5u8; 32]))]);
    let out = e.command().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("WHARF_SECRET_KEY") && err.contains("not the key"), "{err}");
}

/// Accepts one connection on `listener` and returns what the client sent first: bytes up to
/// `complete(bytes)`, or up to the client's closing (bounded by the read timeout). `reply` is
/// written back after that.
fn capture(listener: std::net::TcpListener, complete: fn(&[u8]) -> bool, reply: &'static [u8]) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !complete(&got) {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn.write_all(reply);
        got
    })
}

/// One whole BER element (an LDAP message): tag, length, content.
fn ber_complete(b: &[u8]) -> bool {
    let Some(&first) = b.get(1) else { return false };
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if b.len() < 2 + n {
            return false;
        }
        (b[2..2 + n].iter().fold(0usize, |a, &x| a << 8 | x as usize), 2 + n)
    };
    b.len() >= head + len
}

fn http_head_complete(b: &[u8]) -> bool {
    contains(b, b"\r\n\r\n")
}

#[test]
fn a_sealed_value_copied_to_another_place_is_a_literal_password_never_decrypted() {
    let s = TestServer::start();
    store_secrets(&s, ADMIN_PASSWORD, "-src");
    let stored: Value = serde_json::from_str(&raw_setting(&s, "ldap.servers").unwrap()).unwrap();
    let ldap_sealed = stored[0]["authPassword"].as_str().unwrap().to_string();
    let repo: Value = serde_json::from_str(&raw_repo_config(&s, "pypi-upstream-src")).unwrap();
    let proxy_sealed = repo["httpClient"]["authentication"]["password"].as_str().unwrap().to_string();
    assert!(ldap_sealed.starts_with("enc:") && proxy_sealed.starts_with("enc:"));

    // From a database dump and an admin session: the proxy's sealed password pasted into a new
    // LDAP server on a host of the sender's choosing, then sent there by a connection check.
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = evil.local_addr().unwrap().port();
    let seen = capture(evil, ber_complete, b"");
    let mut server = ldap_server("evil");
    server["port"] = json!(port);
    server["authPassword"] = json!(proxy_sealed);
    let r = s.admin().request(Method::POST, "/service/rest/v1/security/ldap").json(&server).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    server.as_object_mut().unwrap().remove("authPassword");
    let r = s.admin().request(Method::POST, "/service/rest/v1/security/ldap/verify-connection").json(&server).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    let bind = seen.join().unwrap();
    assert!(!contains(&bind, PROXY_PASSWORD.as_bytes()), "the proxy's password went to the new LDAP host");
    assert!(contains(&bind, proxy_sealed.as_bytes()), "the pasted text is the bind password, as sent: {}", String::from_utf8_lossy(&bind));

    // The same the other way: the LDAP server's sealed password in a new proxy's credentials.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let seen = capture(upstream, http_head_complete, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let mut proxy = proxy_repo("pypi-pasted");
    proxy["proxy"]["remoteUrl"] = json!(format!("http://127.0.0.1:{port}/"));
    proxy["httpClient"]["authentication"]["password"] = json!(ldap_sealed);
    let r = s.admin().request(Method::POST, "/service/rest/v1/repositories/pypi/proxy").json(&proxy).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
    let _ = s.admin().request(Method::GET, "/repository/pypi-pasted/simple/anything/").send().unwrap();
    let head = String::from_utf8_lossy(&seen.join().unwrap()).to_ascii_lowercase();
    let auth = |pw: &str| format!("authorization: basic {}", b64().encode(format!("up:{pw}"))).to_ascii_lowercase();
    assert!(!head.contains(&auth(LDAP_PASSWORD)), "the LDAP bind password went to the new upstream: {head}");
    assert!(head.contains(&auth(&ldap_sealed)), "the pasted text is the upstream password, as sent: {head}");
}
