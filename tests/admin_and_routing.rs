//! The admin API and the three ways to reach a Docker repository: path-routed, own port
//! (opened and closed without a restart), and Host subdomain. Also first-start security.

mod common;

use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn admin(method: Method, path: &str) -> reqwest::blocking::RequestBuilder {
    http().request(method, server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD))
}

fn hosted(name: &str, docker: Value) -> Value {
    json!({"name": name, "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}, "docker": docker})
}

#[test]
fn first_start_creates_the_defaults_and_no_fixed_password() {
    let s = TestServer::start_with_env(&[("WHARF_ADMIN_PASSWORD", "")]);
    let file = s.data_dir().join("admin.password");
    let password = std::fs::read_to_string(&file).expect("admin.password written").trim().to_string();
    assert_eq!(password.len(), 24);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let c = http();
    let r = c.get(s.url("/service/rest/v1/repositories")).basic_auth("admin", Some(&password)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let repos: Value = r.json().unwrap();
    assert_eq!(repos[0]["name"], "docker-hosted");
    assert_eq!(repos[0]["format"], "docker");
    let r = c.get(s.url("/service/rest/v1/repositories")).basic_auth("admin", Some("admin123")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "Nexus's old default password does not work");
    let r = c.get(s.url("/service/rest/v1/blobstores")).basic_auth("admin", Some(&password)).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()[0]["name"], "default");
    // Once the admin chose a password, the first one's file goes (a backup copied it, and it
    // told anyone who could read the data directory a password that might still work).
    let r = c
        .put(s.url("/service/rest/v1/security/users/admin/change-password"))
        .basic_auth("admin", Some(&password))
        .header("Content-Type", "text/plain")
        .body("a-password-the-admin-chose")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    assert!(!file.exists(), "the first start's password file is gone");
}

#[test]
fn admin_api_requires_an_administrator() {
    let r = http().get(server().url("/service/rest/v1/repositories")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let r = http().get(server().url("/service/rest/v1/status")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "status needs no credentials");
    let r = admin(Method::GET, "/service/rest/v1/status/check").send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["Database"]["healthy"], true);
}

#[test]
fn bad_repository_json_gets_a_400_naming_the_field() {
    // Each error carries a code the console words in the user's language ("invalid": the
    // message alone says what is wrong).
    for (body, field, code) in [
        (json!({"name": "bad1", "storage": {"blobStoreName": "default"}, "docker": {"httpPort": 70000}}), "docker.httpPort", "invalid"),
        (json!({"name": "bad2", "storage": {"blobStoreName": "default"}, "docker": {}, "colour": "red"}), "colour", "unknown"),
        (json!({"name": "bad3", "storage": {"blobStoreName": "default", "writePolicy": "sometimes"}}), "storage.writePolicy", "invalid"),
        (json!({"name": "bad4", "storage": {"blobStoreName": "nope"}}), "storage.blobStoreName", "invalid"),
        (json!({"name": "Bad Name", "storage": {"blobStoreName": "default"}}), "name", "invalid"),
        (json!({"name": "docker-hosted", "storage": {"blobStoreName": "default"}}), "name", "invalid"),
        (json!({"storage": {"blobStoreName": "default"}}), "name", "required"),
        (json!({"name": 5, "storage": {"blobStoreName": "default"}}), "name", "type.string"),
        (json!({"name": "bad5", "online": "yes", "storage": {"blobStoreName": "default"}}), "online", "type.boolean"),
    ] {
        let r = admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let errors: Value = r.json().unwrap();
        assert_eq!(errors[0]["id"], format!("PARAMETER {field}"), "{body}: {errors}");
        assert_eq!(errors[0]["code"], code, "{body}: {errors}");
    }
    // Something not there is named with its kind, for the console to word.
    let r = admin(Method::GET, "/service/rest/v1/repositories/no-such-repo").send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().unwrap();
    assert_eq!((v["code"].as_str(), v["kind"].as_str(), v["name"].as_str()), (Some("not_found"), Some("repository"), Some("no-such-repo")), "{v}");
    let r = admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").header("content-type", "application/json").body("{nope").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The message names its field once, whichever API refuses (some said `roles: roles: ...`).
    for (path, body, message) in [
        ("/service/rest/v1/security/users", json!({"userId": "u1", "password": "long-enough-1", "status": "asleep"}), "status: must be active or disabled"),
        ("/service/rest/v1/security/users", json!({"userId": "u1", "password": "long-enough-1", "roles": ["no-role"]}), "roles: role no-role does not exist"),
        ("/service/rest/v1/security/roles", json!({"id": "r1", "colour": "red"}), "colour: unknown field"),
        (
            "/service/rest/v1/security/realms/active",
            json!(["NexusAuthenticatingRealm", "NexusAuthenticatingRealm"]),
            "realms: NexusAuthenticatingRealm is listed twice",
        ),
    ] {
        let method = if path.ends_with("active") { Method::PUT } else { Method::POST };
        let r = admin(method, path).json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        let v: Value = r.json().unwrap();
        assert_eq!(v[0]["message"], message, "{path} {body}");
    }
    let r = admin(Method::GET, "/service/rest/v1/audit?limit=0").send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()[0]["message"], "limit: between 1 and 1000");
}

#[test]
fn repository_ports_open_move_and_close_without_a_restart() {
    let port = common::free_port();
    let r = admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted("ported", json!({"httpPort": port}))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let ping = |p: u16| http().get(format!("http://127.0.0.1:{p}/v2/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().map(|r| r.status());
    assert_eq!(ping(port).unwrap(), StatusCode::OK);

    // Another repository cannot take the same port.
    let r = admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted("ported2", json!({"httpPort": port}))).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().unwrap()[0]["id"], "PARAMETER docker.httpPort");

    let moved = common::free_port();
    let r = admin(Method::PUT, "/service/rest/v1/repositories/docker/hosted/ported").json(&hosted("ported", json!({"httpPort": moved}))).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(ping(moved).unwrap(), StatusCode::OK);
    assert!(ping(port).is_err(), "the old port is closed");
    let got: Value = admin(Method::GET, "/service/rest/v1/repositories/docker/hosted/ported").send().unwrap().json().unwrap();
    assert_eq!(got["docker"]["httpPort"], moved);

    let r = admin(Method::DELETE, "/service/rest/v1/repositories/ported").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(ping(moved).is_err(), "deleting the repository closes its port");
    let r = admin(Method::GET, "/service/rest/v1/repositories/ported").send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_host_subdomain_selects_the_repository() {
    let r = admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted("by-host", json!({"subdomain": "team-images"}))).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(config)));
    // Pushed through the subdomain, with no repository segment in the path...
    let r = http()
        .post(server().url(&format!("/v2/app/blobs/uploads/?digest={digest}")))
        .header("Host", "team-images.wharf.example.com")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(config.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("http://team-images.wharf.example.com/v2/app/blobs/"));
    // ...it is in that repository, path-routed on the main port.
    let r = http().head(server().url(&format!("/v2/by-host/app/blobs/{digest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], config.len().to_string().as_str());
}

fn push_manifest(repo: &str, name: &str, tag: &str, seed: u8) -> StatusCode {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(config.as_bytes())));
    let r = http()
        .post(server().url(&format!("/v2/{repo}/{name}/blobs/uploads/?digest={digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(config.clone())
        .send()
        .unwrap();
    if r.status() != StatusCode::CREATED {
        return r.status();
    }
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": config.len()}, "layers": []});
    http()
        .put(server().url(&format!("/v2/{repo}/{name}/manifests/{tag}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .unwrap()
        .status()
}

/// A signature pushed to a group's second member is found through the group (the first
/// member's empty index answered alone), and the group's catalog pages link on.
#[test]
fn a_group_serves_every_members_referrers_and_pages_its_catalog() {
    for name in ["ref-a", "ref-b"] {
        assert_eq!(
            admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted(name, json!({}))).send().unwrap().status(),
            StatusCode::CREATED
        );
    }
    let group = json!({"name": "ref-g", "online": true, "storage": {"blobStoreName": "default"}, "docker": {}, "group": {"memberNames": ["ref-a", "ref-b"]}});
    assert_eq!(admin(Method::POST, "/service/rest/v1/repositories/docker/group").json(&group).send().unwrap().status(), StatusCode::CREATED);
    assert_eq!(push_manifest("ref-a", "other", "1.0", 52), StatusCode::CREATED);
    assert_eq!(push_manifest("ref-b", "app", "1.0", 51), StatusCode::CREATED);
    let auth = |r: reqwest::blocking::RequestBuilder| r.basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    let head = auth(http().head(server().url("/v2/ref-b/app/manifests/1.0")).header("Accept", "application/vnd.oci.image.manifest.v1+json"));
    let subject = head.headers()["docker-content-digest"].to_str().unwrap().to_string();
    let subject_size: u64 = head.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let empty = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    assert_eq!(auth(http().post(server().url(&format!("/v2/ref-b/app/blobs/uploads/?digest={empty}"))).body("{}")).status(), StatusCode::CREATED);
    let signature = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}, "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size}})
    .to_string();
    let sig_digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(signature.as_bytes())));
    let r = auth(
        http()
            .put(server().url(&format!("/v2/ref-b/app/manifests/{sig_digest}")))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(signature),
    );
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = auth(http().get(server().url(&format!("/v2/ref-g/app/referrers/{subject}"))));
    assert_eq!(r.status(), StatusCode::OK);
    let index: Value = r.json().unwrap();
    let found: Vec<&str> = index["manifests"].as_array().unwrap().iter().filter_map(|m| m["digest"].as_str()).collect();
    assert_eq!(found, [sig_digest.as_str()], "{index}");
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.example.signature");

    let r = auth(http().get(server().url("/v2/ref-g/_catalog?n=1")));
    assert_eq!(r.status(), StatusCode::OK);
    let link = r.headers().get("link").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(r.json::<Value>().unwrap()["repositories"], json!(["app"]));
    assert!(link.starts_with("</v2/ref-g/_catalog?n=1&last=app>") && link.contains("rel=\"next\""), "{link:?}");
    let r = auth(http().get(server().url("/v2/ref-g/_catalog?n=1&last=app")));
    assert_eq!(r.json::<Value>().unwrap()["repositories"], json!(["other"]), "the link's page is the group's next");
}

#[test]
fn write_policies_allow_once_and_deny() {
    let once = json!({"name": "once", "storage": {"blobStoreName": "default", "writePolicy": "ALLOW_ONCE", "latestPolicy": true}, "docker": {}});
    assert_eq!(admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&once).send().unwrap().status(), StatusCode::CREATED);
    assert_eq!(push_manifest("once", "app", "1.0", 1), StatusCode::CREATED);
    assert_eq!(push_manifest("once", "app", "1.0", 1), StatusCode::CREATED, "re-pushing the same content is fine");
    assert_eq!(push_manifest("once", "app", "1.0", 2), StatusCode::FORBIDDEN, "a set tag cannot be moved");
    assert_eq!(push_manifest("once", "app", "latest", 1), StatusCode::CREATED);
    assert_eq!(push_manifest("once", "app", "latest", 2), StatusCode::CREATED, "latestPolicy exempts latest");

    let deny = json!({"name": "readonly", "storage": {"blobStoreName": "default", "writePolicy": "deny"}, "docker": {}});
    assert_eq!(admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&deny).send().unwrap().status(), StatusCode::CREATED);
    let r = http().post(server().url("/v2/readonly/app/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "DENIED");
}

#[test]
fn an_offline_repository_answers_503() {
    let body = json!({"name": "sleepy", "online": false, "storage": {"blobStoreName": "default"}, "docker": {}});
    assert_eq!(admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&body).send().unwrap().status(), StatusCode::CREATED);
    let r = http().get(server().url("/v2/sleepy/app/tags/list")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_none(), "offline until an administrator acts: no retry hint");
    let v: Value = r.json().expect("Docker's error JSON");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("sleepy is offline"), "{v}");
}

#[test]
fn the_console_and_the_api_document_are_served_from_the_binary() {
    let r = http().get(server().url("/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().unwrap().contains("wharf"));
    let r = http().get(server().url("/service/rest/swagger.json")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every admin route the server registers is documented.
    let routes = include_str!("../src/http/admin/mod.rs");
    for line in routes.lines().filter(|l| l.trim_start().starts_with(".route(\"/")) {
        let path = line.split('"').nth(1).unwrap();
        if path == "/swagger.json" {
            continue;
        }
        // Generic format routes are documented per format.
        let full = format!("/service/rest{path}").replace("{format}", "docker").replace("{kind}", "hosted");
        assert!(doc["paths"].get(&full).is_some(), "{full} is missing from docs/openapi.json");
    }
    assert!(doc["paths"].get("/v2/token").is_some());
}

#[test]
fn docker_components_are_tags_and_deleting_one_keeps_the_others() {
    let body = json!({"name": "comp", "storage": {"blobStoreName": "default"}, "docker": {}});
    assert_eq!(admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&body).send().unwrap().status(), StatusCode::CREATED);
    assert_eq!(push_manifest("comp", "app", "1.0", 7), StatusCode::CREATED);
    assert_eq!(push_manifest("comp", "app", "latest", 7), StatusCode::CREATED);
    let list: Value = admin(Method::GET, "/service/rest/v1/components?repository=comp").send().unwrap().json().unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        items.iter().map(|c| format!("{}:{}", c["name"].as_str().unwrap(), c["version"].as_str().unwrap())).collect::<Vec<_>>(),
        vec!["app:1.0", "app:latest"]
    );
    let id = items[0]["id"].as_str().unwrap();
    assert_eq!(admin(Method::DELETE, &format!("/service/rest/v1/components/{id}")).send().unwrap().status(), StatusCode::NO_CONTENT);
    let tags: Value = http().get(server().url("/v2/comp/app/tags/list")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().json().unwrap();
    assert_eq!(tags["tags"], json!(["latest"]));
    let r = admin(Method::POST, &format!("/service/rest/v1/components/{}/yank", list["items"][1]["id"].as_str().unwrap())).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "docker has no yanking");
}

#[test]
fn concurrent_configuration_changes_are_all_seen_at_once() {
    // Each thread creates a repository and at once a group that names it: the group's
    // validation must see the repository even while other threads' reloads run.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let member = json!({"name": format!("race-{i}"), "storage": {"blobStoreName": "default"}, "docker": {}});
                let r = admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&member).send().unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                let group = json!({"name": format!("race-group-{i}"), "storage": {"blobStoreName": "default"}, "docker": {},
                    "group": {"memberNames": [format!("race-{i}")]}});
                let r = admin(Method::POST, "/service/rest/v1/repositories/docker/group").json(&group).send().unwrap();
                assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all: Value = admin(Method::GET, "/service/rest/v1/repositories").send().unwrap().json().unwrap();
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for i in 0..8 {
        assert!(names.contains(&format!("race-{i}").as_str()) && names.contains(&format!("race-group-{i}").as_str()));
    }
}

/// A load balancer's or a monitor's `HEAD` check must see what a GET sees (RFC 9110: every
/// server answers both), on the REST API, the status checks, the metrics and the console alike.
#[test]
fn heads_are_answered_wherever_gets_are() {
    for path in ["/service/rest/v1/status", "/", "/ui/"] {
        common::assert_head_matches_get(&server().url(path), &[]);
    }
    // Bodies that other tests of this server change between two requests (repositories, usage,
    // uptime): the same status and type, and no body.
    for path in [
        "/service/rest/v1/status/check",
        "/service/rest/v1/repositories",
        "/service/rest/v1/blobstores",
        "/service/rest/v1/tasks",
        "/service/rest/v1/security/users",
        "/service/metrics/prometheus",
    ] {
        let send = |m: Method| http().request(m, server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        let (head, get) = (send(Method::HEAD), send(Method::GET));
        assert_eq!((head.status(), get.status()), (StatusCode::OK, StatusCode::OK), "{path}");
        assert_eq!(head.headers().get("content-type"), get.headers().get("content-type"), "{path}");
        assert!(head.bytes().unwrap().is_empty(), "{path}");
    }

    // The formats' reads, in hosted, group and proxy repositories alike (a HEAD there was 405).
    let create = |format: &str, kind: &str, body: Value| {
        let r = admin(Method::POST, &format!("/service/rest/v1/repositories/{format}/{kind}")).json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    };
    for format in ["docker", "npm"] {
        // Only Docker's repositories have a section of their format.
        let with_format = |mut v: Value| {
            if format == "docker" {
                v["docker"] = json!({});
            }
            v
        };
        create(
            format,
            "group",
            with_format(json!({"name": format!("head-{format}-group"), "online": true, "storage": {"blobStoreName": "default"},
            "group": {"memberNames": [format!("{format}-hosted")]}})),
        );
        create(
            format,
            "proxy",
            with_format(json!({"name": format!("head-{format}-proxy"), "online": true, "storage": {"blobStoreName": "default"},
            "proxy": {"remoteUrl": "http://127.0.0.1:9/", "contentMaxAge": 1440, "metadataMaxAge": 1440},
            "negativeCache": {"enabled": true, "timeToLive": 1440}, "httpClient": {"blocked": false, "autoBlock": false}})),
        );
    }
    let zeros = format!("sha256:{}", "0".repeat(64));
    for repo in ["docker-hosted", "head-docker-group", "head-docker-proxy"] {
        for rest in ["head-probe/tags/list".to_string(), format!("head-probe/referrers/{zeros}")] {
            let send = |m: Method| http().request(m, server().url(&format!("/v2/{repo}/{rest}"))).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
            let (head, get) = (send(Method::HEAD), send(Method::GET));
            assert_ne!(head.status(), StatusCode::METHOD_NOT_ALLOWED, "{repo}/{rest}");
            assert_eq!(head.status(), get.status(), "{repo}/{rest}");
            assert!(head.bytes().unwrap().is_empty(), "{repo}/{rest}");
        }
    }
    for repo in ["npm-hosted", "head-npm-group", "head-npm-proxy"] {
        for rest in [
            "-/v1/search?text=head-probe",
            "-/package/head-probe/dist-tags",
            "-/npm/v1/attestations/head-probe@1.0.0",
            "-/user/org.couchdb.user:admin",
            "-/org/headprobe/package",
        ] {
            let url = server().url(&format!("/repository/{repo}/{rest}"));
            let send = |m: Method| http().request(m, &url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
            let (head, get) = (send(Method::HEAD), send(Method::GET));
            assert_ne!(head.status(), StatusCode::METHOD_NOT_ALLOWED, "{url}");
            assert_eq!(head.status(), get.status(), "{url}");
            assert_eq!(head.headers().get("content-type"), get.headers().get("content-type"), "{url}");
            assert!(head.bytes().unwrap().is_empty(), "{url}");
        }
    }
}

/// A deleted repository leaves every group it was in (as in Nexus), and its scoped task and
/// webhook go with it: a repository created later under its name is not served through the
/// group, cleaned by the old task, or reported to the old webhook. The only member of a group
/// is refused with a 409 that says why.
/// Docker groups may hold groups, never in a loop: a group asked through one asked itself
/// without end (and the stack overflowed, taking the process down).
#[test]
fn groups_that_would_contain_each_other_are_refused() {
    assert_eq!(
        admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted("loop-h", json!({}))).send().unwrap().status(),
        StatusCode::CREATED
    );
    let group = |name: &str, members: &[&str]| json!({"name": name, "online": true, "storage": {"blobStoreName": "default"}, "docker": {}, "group": {"memberNames": members}});
    for (name, members) in [("loop-g1", &["loop-h"][..]), ("loop-g2", &["loop-g1"][..]), ("loop-g3", &["loop-g2"][..])] {
        let r = admin(Method::POST, "/service/rest/v1/repositories/docker/group").json(&group(name, members)).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    }
    // g1 -> g3 -> g2 -> g1, and g1 -> g2 -> g1.
    for members in [&["loop-h", "loop-g3"][..], &["loop-g2"][..]] {
        let r = admin(Method::PUT, "/service/rest/v1/repositories/docker/group/loop-g1").json(&group("loop-g1", members)).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{members:?}");
        let text = r.text().unwrap();
        assert!(text.contains("group.memberNames") && text.contains("contains loop-g1 again"), "{text}");
    }
    let g1: Value = admin(Method::GET, "/service/rest/v1/repositories/docker/group/loop-g1").send().unwrap().json().unwrap();
    assert_eq!(g1["group"]["memberNames"], json!(["loop-h"]), "unchanged");
    // The nesting that is no loop serves.
    assert_eq!(push_manifest("loop-h", "app", "1.0", 43), StatusCode::CREATED);
    let r = http().get(server().url("/v2/loop-g3/app/manifests/1.0")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http().get(server().url("/v2/loop-g3/app/manifests/2.0")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn a_deleted_repository_leaves_its_groups_tasks_and_webhooks() {
    for name in ["leaving", "staying"] {
        assert_eq!(
            admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted(name, json!({}))).send().unwrap().status(),
            StatusCode::CREATED
        );
    }
    let group = |name: &str, members: &[&str]| {
        json!({"name": name, "online": true, "storage": {"blobStoreName": "default"}, "docker": {},
            "group": {"memberNames": members, "writableMember": members[0]}})
    };
    for (name, members) in [("leaving-group", &["leaving", "staying"][..]), ("staying-alone", &["staying"][..])] {
        let r = admin(Method::POST, "/service/rest/v1/repositories/docker/group").json(&group(name, members)).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    }
    let task = json!({"type": "repository.docker.gc", "name": "leaving-gc", "frequency": {"schedule": "manual"}, "properties": {"repositoryName": "leaving"}});
    let r = admin(Method::POST, "/service/rest/v1/tasks").json(&task).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let task_id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let hook = json!({"name": "leaving-hook", "url": "http://127.0.0.1:9/", "eventTypes": ["component"], "repository": "leaving"});
    let r = admin(Method::POST, "/service/rest/v1/webhooks").json(&hook).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    assert_eq!(push_manifest("leaving", "app", "1.0", 41), StatusCode::CREATED);
    let through_group = || http().get(server().url("/v2/leaving-group/app/manifests/1.0")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().status();
    assert_eq!(through_group(), StatusCode::OK);

    let r = admin(Method::DELETE, "/service/rest/v1/repositories/staying").send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().unwrap().contains("only member of group staying-alone"));
    assert_eq!(admin(Method::GET, "/service/rest/v1/repositories/staying").send().unwrap().status(), StatusCode::OK, "refused: still there");

    assert_eq!(admin(Method::DELETE, "/service/rest/v1/repositories/leaving").send().unwrap().status(), StatusCode::NO_CONTENT);
    let g: Value = admin(Method::GET, "/service/rest/v1/repositories/docker/group/leaving-group").send().unwrap().json().unwrap();
    assert_eq!(g["group"], json!({"memberNames": ["staying"], "writableMember": null}));
    assert_eq!(admin(Method::GET, &format!("/service/rest/v1/tasks/{task_id}")).send().unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(admin(Method::GET, "/service/rest/v1/webhooks/leaving-hook").send().unwrap().status(), StatusCode::NOT_FOUND);
    // The group can be edited again as it is (a dangling member made every PUT fail).
    let mut edited = g.clone();
    edited["online"] = json!(true);
    let r = admin(Method::PUT, "/service/rest/v1/repositories/docker/group/leaving-group").json(&edited).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());

    // A task for a repository that does not exist, or is not of the task's format, is refused:
    // the first would take up whatever repository is created later under the name.
    let pypi = json!({"name": "leaving-pypi", "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}});
    assert_eq!(admin(Method::POST, "/service/rest/v1/repositories/pypi/hosted").json(&pypi).send().unwrap().status(), StatusCode::CREATED);
    for (repository, why) in [("leaving", "repository leaving does not exist"), ("leaving-pypi", "leaving-pypi is a pypi repository, not docker")] {
        let task = json!({"type": "repository.docker.gc", "name": "early", "properties": {"repositoryName": repository}});
        let r = admin(Method::POST, "/service/rest/v1/tasks").json(&task).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().unwrap();
        assert_eq!(v[0]["id"], "PARAMETER properties.repositoryName", "{v}");
        assert!(v[0]["message"].as_str().unwrap().contains(why), "{v}");
    }

    // A new repository under the old name is not a member, and the group does not serve it.
    assert_eq!(
        admin(Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&hosted("leaving", json!({}))).send().unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(push_manifest("leaving", "app", "1.0", 42), StatusCode::CREATED);
    assert_eq!(through_group(), StatusCode::NOT_FOUND);

    // What went with the repository is in the audit log, each saying why.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // A group's update reads as one made by hand (object format/type, the group as repository).
    let wanted = [
        ("task.delete", "leaving-gc", Value::Null),
        ("webhook.delete", "leaving-hook", Value::Null),
        ("repository.update", "docker/group", json!("leaving-group")),
    ];
    loop {
        let events: Value = admin(Method::GET, "/service/rest/v1/audit?limit=200").send().unwrap().json().unwrap();
        let found =
            wanted.iter().filter(|(action, object, repository)| {
                events["items"].as_array().unwrap().iter().any(|e| {
                    e["action"] == *action && e["object"] == *object && e["repository"] == *repository && e["detail"]["because"] == "repository.delete"
                })
            });
        if found.count() == wanted.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audit events missing: {events}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A deleted blob store takes its compaction tasks along (a store created later under the name
/// would take them up), and a task cannot name a store that does not exist.
#[test]
fn a_deleted_blob_store_takes_its_compaction_tasks_along() {
    let r = admin(Method::POST, "/service/rest/v1/blobstores/file").json(&json!({"name": "passing", "path": "passing"})).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    let compact = |store: &str| json!({"type": "blobstore.compact", "name": format!("compact {store}"), "properties": {"blobstoreName": store}});
    let r = admin(Method::POST, "/service/rest/v1/tasks").json(&compact("passing")).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    let id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let r = admin(Method::POST, "/service/rest/v1/tasks").json(&compact("never-made")).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().unwrap();
    assert_eq!(
        (v[0]["id"].as_str(), v[0]["message"].as_str()),
        (Some("PARAMETER properties.blobstoreName"), Some("properties.blobstoreName: blob store never-made does not exist")),
        "{v}"
    );

    assert_eq!(admin(Method::DELETE, "/service/rest/v1/blobstores/passing").send().unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(admin(Method::GET, &format!("/service/rest/v1/tasks/{id}")).send().unwrap().status(), StatusCode::NOT_FOUND);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events: Value = admin(Method::GET, "/service/rest/v1/audit?action=task.delete").send().unwrap().json().unwrap();
        if events["items"].as_array().unwrap().iter().any(|e| e["object"] == "compact passing" && e["detail"]["because"] == "blobstore.delete") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no audit event: {events}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A file store's directory is compared with the others as the file system resolves it: the
/// default store's directory under another spelling or through a symbolic link is refused (its
/// compactions, and the default's, were skipped for good: the disk filled), and so is a place in
/// the data directory outside its blob area (its caches delete files they do not know at start).
#[test]
fn a_file_store_cannot_take_another_stores_directory_or_the_data_directory_under_another_name() {
    let data = server().data_dir().canonicalize().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let link = outside.path().join("link-to-default");
    std::os::unix::fs::symlink(data.join("blobs/default"), &link).unwrap();
    let create = |name: &str, path: &str| admin(Method::POST, "/service/rest/v1/blobstores/file").json(&json!({"name": name, "path": path})).send().unwrap();
    let s3_default = common::s3::servers_on_s3();
    for (path, why) in [
        (link.to_str().unwrap().to_string(), "a link to the default store's directory"),
        (data.join("blobs/./default/inner").to_str().unwrap().to_string(), "inside the default store's directory"),
        (data.join("cache/blobs").to_str().unwrap().to_string(), "the data directory's cache"),
        (data.to_str().unwrap().to_string(), "the data directory itself"),
        (data.parent().unwrap().to_str().unwrap().to_string(), "around the data directory"),
    ] {
        if s3_default && why.contains("default store") {
            continue; // the default store is a bucket: its directory is no one's
        }
        let r = create("overlapping", &path);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}: {path}");
        assert!(r.text().unwrap().contains("path"), "{why}");
    }
    let own = outside.path().join("own");
    let r = create("own-directory", own.to_str().unwrap());
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
    assert_eq!(admin(Method::DELETE, "/service/rest/v1/blobstores/own-directory").send().unwrap().status(), StatusCode::NO_CONTENT);
}
