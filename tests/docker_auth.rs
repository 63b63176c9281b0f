//! Docker authentication: the Bearer challenge, the token endpoint (GET and OAuth2 POST), and
//! tokens carrying only what the caller may do, for the repository they were issued for.

mod common;

use std::sync::OnceLock;

use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn server() -> &'static (TestServer, u16) {
    static S: OnceLock<(TestServer, u16)> = OnceLock::new();
    S.get_or_init(|| {
        let s = TestServer::start();
        let port = common::free_port();
        s.admin().create_docker_hosted(json!({"name": "auth-port", "storage": {"blobStoreName": "default"}, "docker": {"httpPort": port}}));
        s.admin().create_docker_hosted(json!({"name": "auth-basic", "storage": {"blobStoreName": "default"}, "docker": {"forceBasicAuth": true}}));
        (s, port)
    })
}

fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn token(query: &str, creds: Option<(&str, &str)>) -> (StatusCode, Value) {
    let mut r = http().get(server().0.url(&format!("/v2/token?service=wharf&{query}")));
    if let Some((u, p)) = creds {
        r = r.basic_auth(u, Some(p));
    }
    let r = r.send().unwrap();
    (r.status(), r.json().unwrap_or(Value::Null))
}

fn start_upload(url: &str, bearer: Option<&str>) -> reqwest::blocking::Response {
    let mut r = http().post(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    r.send().unwrap()
}

#[test]
fn anonymous_requests_get_a_bearer_challenge_naming_the_scope() {
    let r = http().post(server().0.url("/v2/docker-hosted/team/app/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert_eq!(challenge, format!(r#"Bearer realm="{}/v2/token",service="wharf",scope="repository:docker-hosted/team/app:pull,push""#, server().0.base));
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
}

#[test]
fn force_basic_auth_challenges_with_basic() {
    let r = http().get(server().0.url("/v2/auth-basic/team/app/tags/list")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic "));
}

#[test]
fn a_token_grants_what_was_asked_and_allowed_and_nothing_more() {
    let (status, body) = token("scope=repository:docker-hosted/team/tok:pull,push", Some(("admin", ADMIN_PASSWORD)));
    assert_eq!(status, StatusCode::OK);
    let t = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], body["token"]);
    let ok = start_upload(&server().0.url("/v2/docker-hosted/team/tok/blobs/uploads/"), Some(&t));
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    // Another image: not in the token.
    let other = start_upload(&server().0.url("/v2/docker-hosted/team/other/blobs/uploads/"), Some(&t));
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);

    // Pull only: push is refused with a challenge for the missing action.
    let (_, body) = token("scope=repository:docker-hosted/team/tok:pull", Some(("admin", ADMIN_PASSWORD)));
    let pull_only = body["token"].as_str().unwrap().to_string();
    let r = start_upload(&server().0.url("/v2/docker-hosted/team/tok/blobs/uploads/"), Some(&pull_only));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("pull,push"));
}

#[test]
fn anonymous_tokens_hold_nothing_for_private_repositories() {
    let (status, body) = token("scope=repository:docker-hosted/team/app:pull", None);
    assert_eq!(status, StatusCode::OK, "anonymous callers get a token, as Distribution's token servers do");
    let t = body["token"].as_str().unwrap();
    let r = http().get(server().0.url("/v2/docker-hosted/team/app/tags/list")).bearer_auth(t).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn wrong_credentials_and_forged_tokens_are_refused() {
    let (status, _) = token("scope=repository:docker-hosted/x:pull", Some(("admin", "wrong")));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = token("scope=repository:docker-hosted/x:pull", Some(("nobody", "x")));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = http().get(server().0.url("/v2/docker-hosted/team/app/tags/list")).bearer_auth("eyJhbGciOiJub25lIn0.e30.").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http().get(server().0.url("/v2/docker-hosted/team/app/tags/list")).basic_auth("admin", Some("wrong")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_token_is_bound_to_the_repository_it_was_issued_for() {
    let (s, port) = server();
    // Issued on the main port for docker-hosted/team/app ...
    let (_, body) = token("scope=repository:docker-hosted/team/app:pull,push", Some(("admin", ADMIN_PASSWORD)));
    let t = body["token"].as_str().unwrap().to_string();
    // ... it does not open team/app in the repository on its own port.
    let r = start_upload(&format!("http://127.0.0.1:{port}/v2/team/app/blobs/uploads/"), Some(&t));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token from that port's own endpoint names images without a repository segment.
    let r = http()
        .get(format!("http://127.0.0.1:{port}/v2/token?service=wharf&scope=repository:team/app:pull,push"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    let t2 = r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let r = start_upload(&format!("http://127.0.0.1:{port}/v2/team/app/blobs/uploads/"), Some(&t2));
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let _ = s;
}

#[test]
fn the_oauth2_password_grant_issues_tokens_too() {
    let form = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("service", "wharf"),
        ("scope", "repository:docker-hosted/team/oauth:pull,push"),
        ("client_id", "test"),
    ];
    let r = http().post(server().0.url("/v2/token")).form(&form).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t = r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(start_upload(&server().0.url("/v2/docker-hosted/team/oauth/blobs/uploads/"), Some(&t)).status(), StatusCode::ACCEPTED);
    let bad = [("grant_type", "password"), ("username", "admin"), ("password", "nope")];
    assert_eq!(http().post(server().0.url("/v2/token")).form(&bad).send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    assert_eq!(http().post(server().0.url("/v2/token")).form(&refresh).send().unwrap().status(), StatusCode::BAD_REQUEST);
}

/// An API token used as the password at the token endpoint gives no more than the token
/// allows: a read-only token no push, a one-repository token nothing elsewhere.
#[test]
fn a_narrowed_api_token_at_the_token_endpoint_gets_no_wider_grants() {
    let (s, _) = server();
    let api_token = |body: Value| {
        let r = s.admin().request(reqwest::Method::POST, "/service/rest/v1/security/tokens").json(&body).send().unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
    };
    let scope = "scope=repository:docker-hosted/team/narrow:pull,push";
    let upload = s.url("/v2/docker-hosted/team/narrow/blobs/uploads/");

    let read_only = api_token(json!({"name": "ro", "readOnly": true}));
    let (status, body) = token(scope, Some(("admin", &read_only)));
    assert_eq!(status, StatusCode::OK);
    let claims = jwt_claims(body["token"].as_str().unwrap());
    assert_eq!(claims["access"], json!([{"type": "repository", "name": "docker-hosted/team/narrow", "actions": ["pull"]}]), "{claims}");
    assert_eq!(start_upload(&upload, body["token"].as_str()).status(), StatusCode::UNAUTHORIZED, "no push with a read-only token's bearer");

    let elsewhere = api_token(json!({"name": "pypi only", "repository": "pypi-hosted"}));
    let (status, body) = token(scope, Some(("admin", &elsewhere)));
    assert_eq!(status, StatusCode::OK);
    let claims = jwt_claims(body["token"].as_str().unwrap());
    assert_eq!(claims["access"], json!([{"type": "repository", "name": "docker-hosted/team/narrow", "actions": []}]), "{claims}");
    let r = http().get(s.url("/v2/docker-hosted/team/narrow/tags/list")).bearer_auth(body["token"].as_str().unwrap()).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "nothing outside the token's repository");

    // Its own repository: pull and push there, as the token allows.
    let here = api_token(json!({"name": "docker only", "repository": "docker-hosted"}));
    let (_, body) = token(scope, Some(("admin", &here)));
    assert_eq!(jwt_claims(body["token"].as_str().unwrap())["access"][0]["actions"], json!(["pull", "push"]));
    assert_eq!(start_upload(&upload, body["token"].as_str()).status(), StatusCode::ACCEPTED);
}

/// The claims of a JWT (its middle part), unverified.
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A user holding exactly `privileges` (Nexus privilege names), with password `mount-password`.
fn user_with(name: &str, privileges: &[&str]) {
    let admin = server().0.admin();
    let r = admin
        .request(reqwest::Method::POST, "/service/rest/v1/security/roles")
        .json(&json!({"id": format!("role-{name}"), "privileges": privileges}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    let r = admin
        .request(reqwest::Method::POST, "/service/rest/v1/security/users")
        .json(&json!({"userId": name, "password": "mount-password", "roles": [format!("role-{name}")]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
}

/// Pushes `data` as a blob of `image` (a path-routed name, repository first) as the admin.
fn admin_push_blob(image: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)));
    let r = http()
        .post(server().0.url(&format!("/v2/{image}/blobs/uploads/?digest={digest}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    digest
}

/// The `scope` parameter of a Bearer challenge.
fn challenge_scope(r: &reqwest::blocking::Response) -> String {
    let c = r.headers()["www-authenticate"].to_str().unwrap();
    let start = c.find("scope=\"").expect("the challenge names a scope") + 7;
    c[start..].split('"').next().unwrap().to_string()
}

/// A token for exactly the challenge's scope, as a token client fetches it.
fn token_for(scope: &str, user: &str) -> String {
    let r = http().get(server().0.url("/v2/token")).query(&[("service", "wharf"), ("scope", scope)]).basic_auth(user, Some("mount-password")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_string()
}

/// The mount challenge asks for pull on the `from` image too, so that a client fetching its
/// token from the challenge (as the conformance suite and containerd do) can mount; a token
/// missing that pull, which its holder may have, is answered with the same challenge rather
/// than an upload; a caller who may not read the source gets an ordinary upload session.
#[test]
fn a_mount_challenge_asks_for_pull_on_the_source_and_the_token_mounts() {
    static USERS: OnceLock<()> = OnceLock::new();
    USERS.get_or_init(|| {
        let admin = server().0.admin();
        admin.create_docker_hosted(json!({"name": "auth-private", "storage": {"blobStoreName": "default"}, "docker": {}}));
        user_with("mounter", &["nx-repository-view-docker-docker-hosted-read", "nx-repository-view-docker-docker-hosted-add"]);
    });
    let d = admin_push_blob("docker-hosted/team/mount-src", b"a blob worth mounting");
    let mount_url = |to: &str, from: &str| server().0.url(&format!("/v2/docker-hosted/team/{to}/blobs/uploads/?mount={d}&from={from}"));

    // Anonymous: the challenge names both scopes, in one parameter.
    let r = start_upload(&mount_url("mount-dst", "docker-hosted/team/mount-src"), None);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let scope = challenge_scope(&r);
    assert_eq!(scope, "repository:docker-hosted/team/mount-dst:pull,push repository:docker-hosted/team/mount-src:pull");
    let t = token_for(&scope, "mounter");
    assert_eq!(
        jwt_claims(&t)["access"],
        json!([
            {"type": "repository", "name": "docker-hosted/team/mount-dst", "actions": ["pull", "push"]},
            {"type": "repository", "name": "docker-hosted/team/mount-src", "actions": ["pull"]},
        ])
    );
    let r = start_upload(&mount_url("mount-dst", "docker-hosted/team/mount-src"), Some(&t));
    assert_eq!(r.status(), StatusCode::CREATED, "mounted, not uploaded again");
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), d);
    let r = http().head(server().0.url(&format!("/v2/docker-hosted/team/mount-dst/blobs/{d}"))).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A token for the target only, as a client gets from a plain push challenge: its holder
    // may read the source, so the answer is the mount challenge, and the new token mounts.
    let push_only = token_for("repository:docker-hosted/team/mount-dst2:pull,push", "mounter");
    let r = start_upload(&mount_url("mount-dst2", "docker-hosted/team/mount-src"), Some(&push_only));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let scope = challenge_scope(&r);
    assert_eq!(scope, "repository:docker-hosted/team/mount-dst2:pull,push repository:docker-hosted/team/mount-src:pull");
    let r = start_upload(&mount_url("mount-dst2", "docker-hosted/team/mount-src"), Some(&token_for(&scope, "mounter")));
    assert_eq!(r.status(), StatusCode::CREATED);

    // A source the user may not read: the token endpoint grants nothing there, and the mount
    // falls back to an upload session (no second challenge: a new token would not help).
    admin_push_blob("auth-private/team/src", b"a blob worth mounting");
    let r = start_upload(&mount_url("mount-dst3", "auth-private/team/src"), None);
    let scope = challenge_scope(&r);
    assert_eq!(scope, "repository:docker-hosted/team/mount-dst3:pull,push repository:auth-private/team/src:pull");
    let t = token_for(&scope, "mounter");
    assert_eq!(jwt_claims(&t)["access"][1]["actions"], json!([]), "no pull where the user may not read");
    let r = start_upload(&mount_url("mount-dst3", "auth-private/team/src"), Some(&t));
    assert_eq!(r.status(), StatusCode::ACCEPTED, "an ordinary upload session");
    assert!(r.headers()["location"].to_str().unwrap().contains("/blobs/uploads/"));
    let r = http().head(server().0.url(&format!("/v2/docker-hosted/team/mount-dst3/blobs/{d}"))).bearer_auth(&t).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was mounted");
    // ... and the same for a blob the source does not have, to a caller who may read it.
    let missing = format!("sha256:{}", "0".repeat(64));
    let r = start_upload(
        &server().0.url(&format!("/v2/docker-hosted/team/mount-dst4/blobs/uploads/?mount={missing}&from=docker-hosted/team/mount-src")),
        Some(&push_only),
    );
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "push_only is for mount-dst2");
    let t = token_for("repository:docker-hosted/team/mount-dst4:pull,push", "mounter");
    let r =
        start_upload(&server().0.url(&format!("/v2/docker-hosted/team/mount-dst4/blobs/uploads/?mount={missing}&from=docker-hosted/team/mount-src")), Some(&t));
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// The real `skopeo`, copying between two images of one registry as a user who may read the
/// source and push the target: it asks for a token naming both and mounts the layers and the
/// config instead of uploading them again.
#[test]
fn skopeo_copies_between_images_by_mounting_with_a_token_for_both() {
    static USERS: OnceLock<()> = OnceLock::new();
    USERS.get_or_init(|| user_with("copier", &["nx-repository-view-docker-docker-hosted-read", "nx-repository-view-docker-docker-hosted-add"]));
    let s = &server().0;
    let tmp = tempfile::tempdir().unwrap();
    let layout = common::oci::image(&tmp.path().join("src"), "v1", &["amd64"], 21, 40_000);
    let skopeo = |args: &[&str]| std::process::Command::new("skopeo").args(args).output().expect("skopeo is installed");
    let src = format!("docker://{}/docker-hosted/team/sk-src:1", s.addr);
    let admin = format!("admin:{ADMIN_PASSWORD}");
    let out = skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &admin, &format!("oci:{}:v1", tmp.path().join("src").display()), &src]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dest = format!("docker://{}/docker-hosted/team/sk-dst:1", s.addr);
    let out = skopeo(&[
        "--debug",
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        "copier:mount-password",
        "--dest-creds",
        "copier:mount-password",
        &src,
        &dest,
    ]);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    // skopeo asks for both scopes itself (its own mount code adds the source's pull), so this
    // checks that the token endpoint grants them and the mount succeeds for a non-admin; the
    // challenge that brings other token clients there is checked over raw HTTP above.
    assert!(log.contains("scope=repository%3Adocker-hosted%2Fteam%2Fsk-dst%3Apull%2Cpush&scope=repository%3Adocker-hosted%2Fteam%2Fsk-src%3Apull"), "{log}");
    let layer = layout.blobs.iter().find(|b| {
        log.contains(&format!(
            "Trying to mount /v2/docker-hosted/team/sk-dst/blobs/uploads/?from=docker-hosted%2Fteam%2Fsk-src&mount={}",
            b.replace(':', "%3A")
        ))
    });
    assert!(layer.is_some(), "skopeo tried to mount a layer:\n{log}");
    assert!(log.contains("... mount OK"), "the mount succeeded, no upload of the layer:\n{log}");
    let r = http().head(s.url(&format!("/v2/docker-hosted/team/sk-dst/blobs/{}", layer.unwrap()))).basic_auth("copier", Some("mount-password")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Every name of `/v2/_catalog?n=<n>` as `auth` sees it, page by page along its Link headers.
fn catalog_walk(n: usize, auth: impl Fn(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut next = Some(format!("/v2/_catalog?n={n}"));
    while let Some(path) = next.take() {
        let r = auth(http().get(server().0.url(&path))).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        next = r.headers().get("link").map(|l| l.to_str().unwrap().trim_start_matches('<').split('>').next().unwrap().to_string());
        let page: Vec<String> = serde_json::from_value(r.json::<Value>().unwrap()["repositories"].clone()).unwrap();
        assert!(page.len() <= n && (next.is_none() || page.len() == n), "{path}: {} names", page.len());
        names.extend(page);
    }
    assert!(names.windows(2).all(|w| w[0] < w[1]), "in order, each once");
    names
}

/// The catalog reaches every image however many a repository holds (past 10,000, the largest
/// page), repository by repository in the order of their names with a `/` (`cat-wide-x/`
/// before `cat-wide/`), and shows a caller only what they may read: a user of one repository
/// its images, a bearer token for two images those two.
#[test]
fn the_catalog_walks_every_image_a_caller_may_read() {
    use wharf_format::{MetaStore, NewAsset, Write};
    let admin = server().0.admin();
    for name in ["cat-wide", "cat-wide-x"] {
        admin.create_docker_hosted(json!({"name": name, "storage": {"blobStoreName": "default"}, "docker": {}}));
    }
    // Image rows written directly: pushing 10,050 images would take minutes.
    let db = wharf::db::Db::open(&server().0.database_url(), 2).unwrap();
    let meta = wharf::db::meta::SqlMeta::new(db.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (repo, count) in [("cat-wide", 10_050), ("cat-wide-x", 3)] {
        let id = db.run_sync(move |c| wharf::db::repos::get(c, repo)).unwrap().unwrap().id;
        let writes = (0..count)
            .map(|i| {
                let image = format!("w{i:05}");
                Write::InsertIfAbsent {
                    repo: id,
                    asset: NewAsset { path: format!("_image/{image}"), kind: "image".into(), component: Some(image), ..Default::default() },
                }
            })
            .collect();
        rt.block_on(meta.commit(vec![], writes)).unwrap();
    }

    let all = catalog_walk(10_000, |r| r.basic_auth("admin", Some(ADMIN_PASSWORD)));
    let mine: Vec<&String> = all.iter().filter(|n| n.starts_with("cat-wide")).collect();
    assert_eq!(mine.len(), 10_053);
    assert_eq!((mine[0].as_str(), mine[3].as_str(), mine[10_052].as_str()), ("cat-wide-x/w00000", "cat-wide/w00000", "cat-wide/w10049"));

    user_with("cat-reader", &["nx-repository-view-docker-cat-wide-x-read"]);
    assert_eq!(catalog_walk(2, |r| r.basic_auth("cat-reader", Some("mount-password"))), ["cat-wide-x/w00000", "cat-wide-x/w00001", "cat-wide-x/w00002"]);

    user_with("cat-puller", &["nx-repository-view-docker-cat-wide-read"]);
    let bearer = token_for("repository:cat-wide/w00007:pull repository:cat-wide/w00003:pull", "cat-puller");
    assert_eq!(catalog_walk(1, |r| r.bearer_auth(&bearer)), ["cat-wide/w00003", "cat-wide/w00007"]);
    // The catalog's own scope, as crane and regctl ask for it: what the holder may read (it
    // was dropped, and every token client's catalog was empty).
    let lister = token_for("registry:catalog:*", "cat-reader");
    assert_eq!(catalog_walk(2, |r| r.bearer_auth(&lister)), ["cat-wide-x/w00000", "cat-wide-x/w00001", "cat-wide-x/w00002"]);
    let r = http().get(server().0.url("/v2/cat-wide-x/_catalog")).bearer_auth(&lister).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["repositories"], json!(["w00000", "w00001", "w00002"]));
    // And a group's own catalog (a group is what a Nexus-shaped setup gives its own port).
    let r = admin
        .request(reqwest::Method::POST, "/service/rest/v1/repositories/docker/group")
        .json(&json!({"name": "cat-group", "online": true, "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["cat-wide-x"]}, "docker": {}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap_or_default());
    user_with("cat-group-reader", &["nx-repository-view-docker-cat-group-read"]);
    let group_lister = token_for("registry:catalog:*", "cat-group-reader");
    let r = http().get(server().0.url("/v2/cat-group/_catalog")).bearer_auth(&group_lister).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["repositories"], json!(["w00000", "w00001", "w00002"]));
    let r = http().get(server().0.url("/v2/cat-group/_catalog")).bearer_auth(&lister).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["repositories"], json!([]), "cat-reader may not read the group");
    // A page size that is not one: 400 PAGINATION_NUMBER_INVALID everywhere (a repository's
    // catalog and tag list said 405 UNSUPPORTED, the main catalog sent its largest page).
    assert_eq!(
        http().get(server().0.url("/v2/_catalog?n=")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().status(),
        StatusCode::OK,
        "an empty n is none"
    );
    for path in ["/v2/_catalog?n=abc", "/v2/cat-wide-x/_catalog?n=-1", "/v2/cat-wide-x/w00000/tags/list?n=x"] {
        let r = http().get(server().0.url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "PAGINATION_NUMBER_INVALID", "{path}");
    }
    // It lists, it does not read: no manifest or blob with it.
    let r = http().get(server().0.url("/v2/cat-wide-x/w00000/tags/list")).bearer_auth(&lister).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
