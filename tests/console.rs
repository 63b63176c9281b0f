//! The admin console end to end in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from npm; tests/console/e2e.js): an admin creates one repository of each
//! format and type through the forms, real clients use them, the console browses and deletes,
//! and a read-only user sees no admin pages. Screenshots go to target/console-screenshots.

mod common;

use std::process::Command;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::json;

fn e2e(server: &TestServer, phase: &str, user: &str, password: &str, ldap_port: u16) {
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/console-screenshots");
    std::fs::create_dir_all(shots).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/e2e.js");
    let port = common::free_port().to_string();
    let out = Command::new("node").arg(script).args([phase, &server.base, user, password, shots, &port, &ldap_port.to_string()]).output().expect("node runs");
    assert!(out.status.success(), "console {phase}: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
}

#[test]
fn an_admin_manages_repositories_in_the_console_and_clients_use_them() {
    let server = TestServer::start();
    // A directory for the LDAP page's test buttons.
    let slapd = common::slapd::Slapd::start();
    e2e(&server, "create", "admin", ADMIN_PASSWORD, slapd.port);

    // The user and role the console made exist as the API sees them.
    let users: Vec<serde_json::Value> = server.admin().request(Method::GET, "/service/rest/v1/security/users?userId=ui-user").send().unwrap().json().unwrap();
    assert_eq!(users[0]["roles"], json!(["ui-readers"]));
    assert_eq!((users[0]["firstName"].as_str(), users[0]["emailAddress"].as_str()), (Some("Uma"), Some("uma@example.test")));
    // The password the console set is the one that works.
    let status = |pw: &str| {
        reqwest::blocking::Client::new().get(server.url("/service/rest/v1/repositories")).basic_auth("ui-user", Some(pw)).send().unwrap().status().as_u16()
    };
    assert_eq!((status("ui-user-password-2"), status("ui-user-password")), (200, 401));

    // A real client uses a repository the console made.
    let tmp = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pypi/make_dist.py");
    let out = Command::new("python3").arg(script).arg(tmp.path()).arg("ui-console-pkg").arg("1.0").output().unwrap();
    let whl = String::from_utf8(out.stdout).unwrap().lines().next().unwrap().to_string();
    let out = Command::new("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            &server.url("/repository/ui-pypi-hosted/"),
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
            &whl,
        ])
        .output()
        .expect("twine is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // pip installs it through the console-made group (hosted first, then the proxy).
    let target = tmp.path().join("site");
    let out = Command::new("python3")
        .args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--isolated", "install", "--no-cache-dir", "--index-url"])
        .arg(common::pypi::index_url(&server, "ui-pypi-group"))
        .arg("--target")
        .arg(&target)
        .arg("ui-console-pkg")
        .output()
        .unwrap();
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

    // npm publishes to the npm registry the console made.
    let r = reqwest::blocking::Client::new()
        .put(server.url("/repository/ui-npm-hosted/-/user/org.couchdb.user:admin"))
        .json(&json!({"name": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .unwrap();
    let token = r.json::<serde_json::Value>().unwrap()["token"].as_str().unwrap().to_string();
    // The token npm login made is in the audit log, with where the login came from.
    let audit: serde_json::Value = server.admin().request(Method::GET, "/service/rest/v1/audit?action=token.create").send().unwrap().json().unwrap();
    let made = audit["items"].as_array().unwrap().iter().find(|e| e["detail"]["name"] == "npm login").cloned();
    assert_eq!(made.as_ref().map(|e| (e["actor"].clone(), e["address"].clone())), Some((json!("admin"), json!("127.0.0.1"))), "{audit}");
    let pkg = tmp.path().join("npm-pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("package.json"), r#"{"name": "ui-console-npm", "version": "1.0.0"}"#).unwrap();
    // Markup in a README is shown as text by the component page.
    std::fs::write(pkg.join("README.md"), "# ui-console-npm\n\n<script>alert('readme')</script>\n").unwrap();
    let registry = server.url("/repository/ui-npm-hosted/");
    std::fs::write(tmp.path().join("npmrc"), format!("registry={registry}\n{}:_authToken={token}\n", registry.trim_start_matches("http:"))).unwrap();
    let out = Command::new("npm")
        .arg("publish")
        .current_dir(&pkg)
        .env("npm_config_userconfig", tmp.path().join("npmrc"))
        .env("npm_config_cache", tmp.path().join("npm-cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The dashboard's numbers come from the API.
    let repos: Vec<serde_json::Value> = server.admin().request(Method::GET, "/service/rest/v1/repositories").send().unwrap().json().unwrap();
    let pypi = repos.iter().find(|r| r["name"] == "ui-pypi-hosted").unwrap();
    assert!(pypi["blobCount"].as_i64().unwrap() >= 1 && pypi["totalSizeInBytes"].as_i64().unwrap() > 0, "{pypi}");

    e2e(&server, "browse", "admin", ADMIN_PASSWORD, slapd.port);
    let r = server.admin().request(Method::GET, "/service/rest/v1/repositories/ui-npm-proxy").send().unwrap();
    assert_eq!(r.status().as_u16(), 404, "deleted from the console");

    let admin = server.admin();
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": "console-readers", "privileges": ["nx-repository-view-*-*-read"]}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let r = admin
        .request(Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": "console-reader", "password": "console-reader-pw", "roles": ["console-readers"]}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    e2e(&server, "reader", "console-reader", "console-reader-pw", slapd.port);
}

/// Edit → Save in the console, untouched, changes nothing: settings the form does not show
/// (upstream credentials, contentMaxAge, negative cache, connection settings, subdomain,
/// indexType, uploadMaxSize, latestPolicy, online) read back byte for byte as before.
#[test]
fn saving_an_untouched_edit_form_keeps_every_setting() {
    let server = TestServer::start();
    let admin = server.admin();
    let create = |format: &str, kind: &str, body: serde_json::Value| {
        let r = admin.request(Method::POST, &format!("/service/rest/v1/repositories/{format}/{kind}")).json(&body).send().unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    };
    create(
        "docker",
        "proxy",
        json!({
            "name": "rt-docker-proxy", "online": false,
            "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
            "proxy": {"remoteUrl": "https://registry.example.test", "contentMaxAge": 90, "metadataMaxAge": 15},
            "negativeCache": {"enabled": true, "timeToLive": 7},
            "httpClient": {"blocked": false, "autoBlock": false,
                "connection": {"timeout": 12, "connectTimeout": 3, "retries": 2, "userAgentSuffix": "corp/1"},
                "authentication": {"type": "username", "username": "mirror", "password": "s3cret", "preemptive": false}},
            "dockerProxy": {"indexType": "HUB"},
            "docker": {"v1Enabled": false, "forceBasicAuth": true, "subdomain": "mirror"},
        }),
    );
    create(
        "npm",
        "hosted",
        json!({"name": "rt-npm-hosted", "storage": {"blobStoreName": "default", "writePolicy": "allow_once"}, "npm": {"uploadMaxSize": 17}, "anonymousRead": true}),
    );
    create("pypi", "hosted", json!({"name": "rt-pypi-hosted", "storage": {"blobStoreName": "default"}, "pypi": {"uploadMaxSize": 33}}));
    create(
        "docker",
        "hosted",
        json!({"name": "rt-docker-hosted", "storage": {"blobStoreName": "default", "writePolicy": "allow_once", "latestPolicy": true},
               "docker": {"v1Enabled": false, "forceBasicAuth": false, "subdomain": "team"}}),
    );
    let repos = [
        ("docker", "proxy", "rt-docker-proxy"),
        ("npm", "hosted", "rt-npm-hosted"),
        ("pypi", "hosted", "rt-pypi-hosted"),
        ("docker", "hosted", "rt-docker-hosted"),
    ];
    let read = || -> Vec<String> {
        repos
            .iter()
            .map(|(f, k, n)| admin.request(Method::GET, &format!("/service/rest/v1/repositories/{f}/{k}/{n}")).send().unwrap().text().unwrap())
            .collect()
    };
    // GET shows passwords as null: what is stored (the sealed upstream password among it) is
    // compared in the database too.
    let stored = || -> Vec<String> { repos.iter().map(|(_, _, n)| stored_config(&server, n)).collect() };
    let (before, stored_before) = (read(), stored());
    let sealed_before = stored_password(&stored_before[0]);
    assert!(sealed_before.starts_with("enc:v2:"), "the upstream password is stored sealed: {}", stored_before[0]);
    e2e(&server, "roundtrip", "admin", ADMIN_PASSWORD, 0);
    let (after, stored_after) = (read(), stored());
    for (i, (_, _, name)) in repos.iter().enumerate() {
        assert_eq!(before[i], after[i], "{name} changed by an untouched save");
        assert_eq!(stored_before[i], stored_after[i], "{name}'s stored configuration changed by an untouched save");
    }
    let key = wharf::security::secrets::KeySource::File(server.data_dir().join("secret.key")).load(false).expect("the key file");
    let opened = key.open(&stored_password(&stored_after[0]), "repositories/rt-docker-proxy/httpClient/authentication/password");
    assert_eq!(opened.ok().as_deref(), Some("s3cret"), "the upstream password survives the save");
    // (That the kept password still goes to the same remote: tests/proxy_upstream.rs.)
}

/// A repository's configuration as stored in the database.
fn stored_config(server: &TestServer, name: &str) -> String {
    use diesel::prelude::*;
    use wharf::db::{schema, Db};
    let name = name.to_string();
    Db::open(&server.database_url(), 2)
        .expect("open the test database")
        .run_sync(move |c| {
            Ok(schema::repositories::table.filter(schema::repositories::name.eq(&name)).select(schema::repositories::config).first::<String>(c)?)
        })
        .unwrap()
}

fn stored_password(config: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(config).unwrap();
    v["httpClient"]["authentication"]["password"].as_str().unwrap_or_default().to_string()
}
