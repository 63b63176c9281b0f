//! A proxy's dealings with its upstream, against an upstream written in the test
//! (tests/common/upstream.rs) that counts what it gets: a hung upstream is known as failing (stale
//! answers at once, `autoBlock`, recovery by a background probe, the state in the admin API),
//! every `httpClient` and `proxy` setting acts or is refused naming its field, and updates keep
//! stored secrets away from new destinations and content in its blob store.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::upstream::{Mode, Upstream};
use common::{TestServer, ADMIN_PASSWORD};
use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn get(path: &str) -> Response {
    Client::builder().timeout(Duration::from_secs(120)).build().unwrap().get(server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap()
}

fn proxy_body(name: &str, remote: &str, http_client: Value, proxy: Value) -> Value {
    let mut p = json!({"remoteUrl": remote, "contentMaxAge": 1440, "metadataMaxAge": 1440});
    p.as_object_mut().unwrap().extend(proxy.as_object().unwrap().clone());
    json!({
        "name": name, "online": true,
        "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
        "proxy": p,
        "httpClient": http_client,
    })
}

fn create(format: &str, kind: &str, body: &Value) -> Response {
    server().admin().request(Method::POST, &format!("/service/rest/v1/repositories/{format}/{kind}")).json(body).send().unwrap()
}

fn create_ok(format: &str, kind: &str, body: &Value) {
    let r = create(format, kind, body);
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

fn refused(r: Response, field: &str) {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().unwrap();
    assert!(text.contains(&format!("PARAMETER {field}")), "the error names {field}: {text}");
}

fn status(name: &str) -> Value {
    let v: Value = server().admin().request(Method::GET, &format!("/service/rest/v1/repositories/{name}")).send().unwrap().json().unwrap();
    v["status"].clone()
}

#[test]
fn a_hung_upstream_is_auto_blocked_stale_answers_come_at_once_and_it_is_unblocked_when_it_answers() {
    let up = Upstream::start();
    up.add("cached-proj", "cached_proj-1.0.tar.gz", b"cached bytes".to_vec(), "application/octet-stream");
    up.add("other-proj", "other_proj-1.0.tar.gz", b"other bytes".to_vec(), "application/octet-stream");
    // metadataMaxAge 0: every page request asks the upstream, so the hang is met each time.
    let timeout = 4.0;
    create_ok(
        "pypi",
        "proxy",
        &proxy_body(
            "hung-proxy",
            &up.url(),
            json!({"autoBlock": true, "connection": {"timeout": timeout, "connectTimeout": timeout}}),
            json!({"metadataMaxAge": 0}),
        ),
    );
    assert_eq!(get("/repository/hung-proxy/simple/cached-proj/").status(), StatusCode::OK);
    assert_eq!(get("/repository/hung-proxy/packages/cached-proj/cached_proj-1.0.tar.gz").status(), StatusCode::OK);
    assert_eq!(status("hung-proxy")["upstream"]["state"], "available");

    up.set_mode(Mode::Hang);
    // The first request meets the hang: it waits the timeout, then gets the cached page.
    let r = get("/repository/hung-proxy/simple/cached-proj/");
    assert_eq!(r.status(), StatusCode::OK);
    let st = status("hung-proxy");
    assert_eq!(st["upstream"]["state"], "auto-blocked", "{st}");
    assert!(!st["upstream"]["lastError"].as_str().unwrap_or("").is_empty(), "{st}");
    assert_eq!(st["online"], true);
    // Later ones are answered at once: stale from the cache, or refused when nothing is cached.
    let quick = Duration::from_secs_f64(timeout / 2.0);
    let started = Instant::now();
    let r = get("/repository/hung-proxy/simple/cached-proj/");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().unwrap().contains("cached_proj-1.0.tar.gz"));
    assert_eq!(get("/repository/hung-proxy/packages/cached-proj/cached_proj-1.0.tar.gz").bytes().unwrap().as_ref(), b"cached bytes");
    assert!(started.elapsed() < quick, "stale answers wait for nothing: {:?}", started.elapsed());
    let started = Instant::now();
    let r = get("/repository/hung-proxy/simple/other-proj/");
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.text().unwrap().contains("auto-blocked"));
    assert!(started.elapsed() < quick, "an uncached request fails fast while blocked: {:?}", started.elapsed());
    let before = up.count("/simple/other-proj/");
    assert_eq!(before, 0, "a blocked upstream is not asked");

    // The upstream answers again: the background probe unblocks it.
    up.set_mode(Mode::Answer);
    let deadline = Instant::now() + Duration::from_secs(90);
    while status("hung-proxy")["upstream"]["state"] != "available" {
        assert!(Instant::now() < deadline, "still blocked: {}", status("hung-proxy"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up.seen().iter().any(|s| s.method == "HEAD"), "the probe asked the upstream");
    assert_eq!(get("/repository/hung-proxy/simple/other-proj/").status(), StatusCode::OK);
}

/// The same for an npm proxy: packuments and tarballs stale at once while the upstream hangs,
/// nothing uncached asked while it is auto-blocked, and unblocked when it answers again.
#[test]
fn an_npm_proxy_serves_stale_at_once_and_is_auto_blocked_while_its_upstream_hangs() {
    let up = Upstream::start();
    let tgz = b"not really a tarball, but the upstream's integrity holds".to_vec();
    up.add_npm("hung-lib", "1.0.0", tgz.clone());
    up.add_npm("other-lib", "1.0.0", b"other".to_vec());
    let timeout = 4.0;
    create_ok(
        "npm",
        "proxy",
        &proxy_body(
            "npm-hung-proxy",
            &up.url(),
            json!({"autoBlock": true, "connection": {"timeout": timeout, "connectTimeout": timeout}}),
            json!({"metadataMaxAge": 0}),
        ),
    );
    let packument = || get("/repository/npm-hung-proxy/hung-lib");
    let r = packument();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().unwrap();
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"].as_str().unwrap().to_string();
    let tarball_path = tarball.strip_prefix(&server().base).expect("the tarball URL points at wharf").to_string();
    assert_eq!(get(&tarball_path).bytes().unwrap().to_vec(), tgz);
    assert_eq!(status("npm-hung-proxy")["upstream"]["state"], "available");

    up.set_mode(Mode::Hang);
    // The first request meets the hang: the timeout, then the cached packument.
    assert_eq!(packument().status(), StatusCode::OK);
    assert_eq!(status("npm-hung-proxy")["upstream"]["state"], "auto-blocked");
    let quick = Duration::from_secs_f64(timeout / 2.0);
    let started = Instant::now();
    let r = packument();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["versions"]["1.0.0"]["dist"]["tarball"], tarball.as_str());
    assert_eq!(get(&tarball_path).bytes().unwrap().to_vec(), tgz);
    assert!(started.elapsed() < quick, "stale answers wait for nothing: {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(get("/repository/npm-hung-proxy/other-lib").status(), StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() < quick, "an uncached request fails fast while blocked: {:?}", started.elapsed());
    assert_eq!(up.count("/other-lib"), 0, "a blocked upstream is not asked");

    up.set_mode(Mode::Answer);
    let deadline = Instant::now() + Duration::from_secs(90);
    while status("npm-hung-proxy")["upstream"]["state"] != "available" {
        assert!(Instant::now() < deadline, "still blocked: {}", status("npm-hung-proxy"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get("/repository/npm-hung-proxy/other-lib").status(), StatusCode::OK);
}

#[test]
fn without_auto_block_stale_answers_still_come_at_once_and_uncached_requests_still_go_out() {
    let up = Upstream::start();
    up.add("soft-proj", "soft_proj-1.0.tar.gz", b"soft".to_vec(), "application/octet-stream");
    create_ok("pypi", "proxy", &proxy_body("soft-proxy", &up.url(), json!({"autoBlock": false, "connection": {"timeout": 4}}), json!({"metadataMaxAge": 0})));
    assert_eq!(get("/repository/soft-proxy/simple/soft-proj/").status(), StatusCode::OK);
    up.set_mode(Mode::Fail);
    assert_eq!(get("/repository/soft-proxy/simple/soft-proj/").status(), StatusCode::OK, "stale on 503");
    assert_eq!(status("soft-proxy")["upstream"]["state"], "failing");
    let asked = up.count("/simple/soft-proj/");
    assert_eq!(get("/repository/soft-proxy/simple/soft-proj/").status(), StatusCode::OK);
    assert_eq!(up.count("/simple/soft-proj/"), asked, "known failing: the cached page without asking");
    assert_eq!(get("/repository/soft-proxy/simple/new-proj/").status(), StatusCode::BAD_GATEWAY);
    assert_eq!(up.count("/simple/new-proj/"), 1, "not blocked: an uncached request still asks");
}

#[test]
fn user_agent_suffix_retries_and_challenge_authentication_reach_the_upstream() {
    let up = Upstream::start();
    up.add("ua-proj", "ua_proj-1.0.tar.gz", b"ua".to_vec(), "application/octet-stream");
    up.require_auth("mirror", "s3cret");
    create_ok(
        "pypi",
        "proxy",
        &proxy_body(
            "ua-proxy",
            &up.url(),
            json!({"autoBlock": false, "connection": {"userAgentSuffix": "corp-mirror/7", "retries": 2},
                   "authentication": {"type": "username", "username": "mirror", "password": "s3cret", "preemptive": false}}),
            json!({}),
        ),
    );
    assert_eq!(get("/repository/ua-proxy/simple/ua-proj/").status(), StatusCode::OK);
    let seen: Vec<_> = up.seen().into_iter().filter(|s| s.path == "/simple/ua-proj/").collect();
    assert_eq!(seen.len(), 2, "not preemptive: asked without credentials, then with them after the challenge: {seen:?}");
    assert_eq!(seen[0].authorization, None);
    assert!(seen[1].authorization.as_deref().unwrap_or("").starts_with("Basic "));
    let ua = seen[0].user_agent.clone().unwrap_or_default();
    assert!(ua.starts_with("wharf/") && ua.ends_with(" corp-mirror/7"), "{ua}");

    // retries: 2 → three attempts at a 503 before the proxy gives up.
    up.set_mode(Mode::Fail);
    assert_eq!(get("/repository/ua-proxy/simple/flaky-proj/").status(), StatusCode::BAD_GATEWAY);
    assert_eq!(up.count("/simple/flaky-proj/"), 3);

    // Preemptive (the default): credentials with the first request.
    up.set_mode(Mode::Answer);
    create_ok(
        "pypi",
        "proxy",
        &proxy_body("pre-proxy", &up.url(), json!({"authentication": {"type": "username", "username": "mirror", "password": "s3cret"}}), json!({})),
    );
    let before = up.seen().len();
    assert_eq!(get("/repository/pre-proxy/simple/ua-proj/").status(), StatusCode::OK);
    let after: Vec<_> = up.seen().into_iter().skip(before).filter(|s| s.path == "/simple/ua-proj/").collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].authorization.is_some());
}

#[test]
fn content_max_age_and_strict_content_type_validation_act() {
    let up = Upstream::start();
    up.add("age-proj", "age_proj-1.0.tar.gz", b"v1".to_vec(), "application/octet-stream");
    up.add("html-proj", "html_proj-1.0.tar.gz", b"<html>please log in</html>".to_vec(), "text/html; charset=utf-8");
    // contentMaxAge 0: a cached file is fetched again on every request.
    create_ok("pypi", "proxy", &proxy_body("age0-proxy", &up.url(), json!({}), json!({"contentMaxAge": 0})));
    create_ok("pypi", "proxy", &proxy_body("age-proxy", &up.url(), json!({}), json!({"contentMaxAge": 1440})));
    for _ in 0..2 {
        assert_eq!(get("/repository/age0-proxy/packages/age-proj/age_proj-1.0.tar.gz").bytes().unwrap().as_ref(), b"v1");
    }
    assert_eq!(up.count("/files/age_proj-1.0.tar.gz"), 2, "past contentMaxAge the file is fetched again");
    for _ in 0..2 {
        assert_eq!(get("/repository/age-proxy/packages/age-proj/age_proj-1.0.tar.gz").bytes().unwrap().as_ref(), b"v1");
    }
    assert_eq!(up.count("/files/age_proj-1.0.tar.gz"), 3, "within contentMaxAge the cached file is served");

    // A web page where a file should be: refused under strict validation, passed without it.
    let r = get("/repository/age-proxy/packages/html-proj/html_proj-1.0.tar.gz");
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.text().unwrap().contains("strictContentTypeValidation"));
    let mut lax = proxy_body("lax-proxy", &up.url(), json!({}), json!({}));
    lax["storage"]["strictContentTypeValidation"] = json!(false);
    create_ok("pypi", "proxy", &lax);
    assert_eq!(get("/repository/lax-proxy/packages/html-proj/html_proj-1.0.tar.gz").status(), StatusCode::OK);

    // httpClient.blocked: only the cache answers; the upstream is never asked.
    create_ok("pypi", "proxy", &proxy_body("blocked-proxy", &up.url(), json!({"blocked": true}), json!({})));
    assert_eq!(get("/repository/blocked-proxy/simple/age-proj/").status(), StatusCode::BAD_GATEWAY);
    assert_eq!(up.count("/simple/age-proj/"), 2, "only the two other proxies asked");
    assert_eq!(status("blocked-proxy")["upstream"]["state"], "blocked");
}

#[test]
fn settings_that_would_do_nothing_are_refused_naming_the_field() {
    let remote = "http://127.0.0.1:9/";
    for (http, field) in [
        (json!({"connection": {"useTrustStore": true}}), "httpClient.connection.useTrustStore"),
        (json!({"connection": {"enableCookies": true}}), "httpClient.connection.enableCookies"),
        (json!({"connection": {"enableCircularRedirects": true}}), "httpClient.connection.enableCircularRedirects"),
        (json!({"connection": {"retries": 11}}), "httpClient.connection.retries"),
        (json!({"connection": {"userAgentSuffix": "bad\nheader"}}), "httpClient.connection.userAgentSuffix"),
        (json!({"authentication": {"type": "ntlm", "username": "u", "password": "p"}}), "httpClient.authentication.type"),
        (json!({"authentication": {"type": "username", "username": "u", "password": "p", "ntlmHost": "h"}}), "httpClient.authentication.ntlmHost"),
    ] {
        refused(create("npm", "proxy", &proxy_body("refused-proxy", remote, http, json!({}))), field);
    }
    let mut b = proxy_body("refused-proxy", remote, json!({}), json!({}));
    b["cleanup"] = json!({"policyNames": ["weekly"]});
    refused(create("npm", "proxy", &b), "cleanup.policyNames");
    let mut b = proxy_body("refused-proxy", remote, json!({}), json!({}));
    b["npm"] = json!({"removeQuarantined": true});
    refused(create("npm", "proxy", &b), "npm.removeQuarantined");
    let mut b = proxy_body("refused-proxy", remote, json!({}), json!({}));
    b["docker"] = json!({});
    b["dockerProxy"] = json!({"indexType": "CUSTOM", "indexUrl": "https://index.example"});
    refused(create("docker", "proxy", &b), "dockerProxy.indexType");
    b["dockerProxy"] = json!({"indexType": "HUB", "cacheForeignLayers": true});
    refused(create("docker", "proxy", &b), "dockerProxy.cacheForeignLayers");
    let hosted = json!({"name": "refused-hosted", "storage": {"blobStoreName": "default"}, "cleanup": {"policyNames": ["x"]}});
    refused(create("pypi", "hosted", &hosted), "cleanup.policyNames");
    let hosted = json!({"name": "refused-hosted", "storage": {"blobStoreName": "default"}, "component": {"proprietaryComponents": true}});
    refused(create("pypi", "hosted", &hosted), "component.proprietaryComponents");
    // An empty policy list is what Nexus's clients send by default: accepted.
    let mut b = proxy_body("cleanup-empty", remote, json!({}), json!({}));
    b["cleanup"] = json!({"policyNames": []});
    create_ok("npm", "proxy", &b);
}

#[test]
fn updates_keep_content_in_its_blob_store_and_stored_passwords_at_their_remote() {
    let up = Upstream::start();
    let admin = server().admin();
    let r = admin.request(Method::POST, "/service/rest/v1/blobstores/file").json(&json!({"name": "second-store", "path": "second-store"})).send().unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let auth = json!({"authentication": {"type": "username", "username": "mirror", "password": "s3cret"}});
    create_ok("pypi", "proxy", &proxy_body("moving-proxy", &up.url(), auth, json!({})));
    let path = "/service/rest/v1/repositories/pypi/proxy/moving-proxy";
    let shown: Value = admin.request(Method::GET, path).send().unwrap().json().unwrap();
    assert_eq!(shown["httpClient"]["authentication"]["password"], Value::Null);
    let put = |body: &Value| admin.request(Method::PUT, path).json(body).send().unwrap();

    let mut b = shown.clone();
    b["storage"]["blobStoreName"] = json!("second-store");
    refused(put(&b), "storage.blobStoreName");

    // Another host with the stored password: refused, naming the password.
    let other = Upstream::start();
    let mut b = shown.clone();
    b["proxy"]["remoteUrl"] = json!(other.url());
    refused(put(&b), "httpClient.authentication.password");
    b["httpClient"]["authentication"].as_object_mut().unwrap().remove("password");
    refused(put(&b), "httpClient.authentication.password");
    // With the password sent again it is accepted.
    b["httpClient"]["authentication"]["password"] = json!("new-s3cret");
    assert_eq!(put(&b).status(), StatusCode::NO_CONTENT);
    // Same origin, another path: the stored password stays and may be kept.
    let mut b: Value = admin.request(Method::GET, path).send().unwrap().json().unwrap();
    b["proxy"]["remoteUrl"] = json!(format!("{}simple/", other.url()));
    assert_eq!(put(&b).status(), StatusCode::NO_CONTENT);
    other.require_auth("mirror", "new-s3cret");
    other.add("kept-proj", "kept_proj-1.0.tar.gz", b"k".to_vec(), "application/octet-stream");
    assert_eq!(get("/repository/moving-proxy/simple/kept-proj/").status(), StatusCode::OK, "the kept password reaches the same remote");
}

/// `strictContentTypeValidation: false` is refused, naming the field, wherever wharf validates
/// content regardless (hosted uploads are read as what their names say, Docker content is
/// checked by media type and digest, groups serve their members' content); `true`, Nexus's
/// default, is accepted everywhere, and `false` stays accepted by PyPI and npm proxies, where it
/// acts (see above).
#[test]
fn strict_content_type_validation_false_is_refused_where_it_cannot_act() {
    let lax = json!({"blobStoreName": "default", "strictContentTypeValidation": false});
    let strict = json!({"blobStoreName": "default", "strictContentTypeValidation": true});
    let docker = json!({"v1Enabled": false, "forceBasicAuth": true});
    for (format, kind, mut body) in [
        ("docker", "hosted", json!({"name": "lax-docker-hosted", "online": true, "docker": docker})),
        (
            "docker",
            "proxy",
            json!({"name": "lax-docker-proxy", "online": true, "docker": docker, "dockerProxy": {"indexType": "REGISTRY"},
            "proxy": {"remoteUrl": "http://127.0.0.1:1/", "contentMaxAge": 1440, "metadataMaxAge": 1440}, "httpClient": {}}),
        ),
        ("docker", "group", json!({"name": "lax-docker-group", "online": true, "docker": docker, "group": {"memberNames": ["lax-docker-hosted"]}})),
        ("pypi", "hosted", json!({"name": "lax-pypi-hosted", "online": true})),
        ("pypi", "group", json!({"name": "lax-pypi-group", "online": true, "group": {"memberNames": ["lax-pypi-hosted"]}})),
        ("npm", "hosted", json!({"name": "lax-npm-hosted", "online": true})),
        ("npm", "group", json!({"name": "lax-npm-group", "online": true, "group": {"memberNames": ["lax-npm-hosted"]}})),
    ] {
        body["storage"] = lax.clone();
        refused(create(format, kind, &body), "storage.strictContentTypeValidation");
        body["storage"] = strict.clone();
        create_ok(format, kind, &body);
    }
    let mut npm_proxy = proxy_body("lax-npm-proxy", "http://127.0.0.1:1/", json!({}), json!({}));
    npm_proxy["storage"] = lax;
    create_ok("npm", "proxy", &npm_proxy);
}

/// An asset's download count, read from the server's database.
fn download_count(repo: &str, path: &str) -> i64 {
    use diesel::prelude::*;
    use wharf::db::schema::assets;
    static DB: OnceLock<wharf::db::Db> = OnceLock::new();
    let db = DB.get_or_init(|| wharf::db::Db::open(&server().database_url(), 2).unwrap());
    let (repo, path) = (repo.to_string(), path.to_string());
    let id = db.run_sync(|c| wharf::db::repos::get(c, &repo)).unwrap().unwrap().id;
    db.run_sync(move |c| {
        Ok(assets::table.filter(assets::repository_id.eq(id).and(assets::path.eq(&path))).select(assets::download_count).first::<i64>(c).optional()?)
    })
    .unwrap()
    .unwrap_or(0)
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A download a proxy streams through while it fills its cache is counted, however long the fill
/// takes: counts reach the database every 2 s and go only to assets that exist, so a count
/// recorded before the fill commits its asset was lost when a flush came in between. Here every
/// format's fill is held half-way by the upstream until a flush has certainly passed (a download
/// started after the fills' answers began is seen counted), then let go; each is counted once.
#[test]
fn a_download_whose_fill_outlasts_a_flush_is_counted_once() {
    let up = Upstream::start();
    let body = |seed: u8| (0..64 * 1024).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>();
    up.add("slow-proj", "slow_proj-1.0.tar.gz", body(1), "application/octet-stream");
    up.add("warm-proj", "warm_proj-1.0.tar.gz", body(2), "application/octet-stream");
    up.add_npm("slow-lib", "1.0.0", body(3));
    let digest = up.add_blob("slow/img", body(4));
    create_ok("pypi", "proxy", &proxy_body("count-pypi", &up.url(), json!({}), json!({})));
    create_ok("npm", "proxy", &proxy_body("count-npm", &up.url(), json!({}), json!({})));
    let mut docker = proxy_body("count-docker", &up.url(), json!({}), json!({}));
    docker["docker"] = json!({"v1Enabled": false, "forceBasicAuth": true});
    docker["dockerProxy"] = json!({"indexType": "REGISTRY"});
    create_ok("docker", "proxy", &docker);

    let warm = "/repository/count-pypi/packages/warm-proj/warm_proj-1.0.tar.gz";
    assert_eq!(get(warm).bytes().unwrap().to_vec(), body(2), "cached before the hold");
    let doc: Value = get("/repository/count-npm/slow-lib").json().unwrap();
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"].as_str().unwrap().strip_prefix(&server().base).expect("a URL of wharf's").to_string();
    assert_eq!(get("/repository/count-pypi/simple/slow-proj/").status(), StatusCode::OK);
    let fills = [
        (
            "count-pypi",
            "/repository/count-pypi/packages/slow-proj/slow_proj-1.0.tar.gz".to_string(),
            "packages/slow-proj/slow_proj-1.0.tar.gz".to_string(),
            body(1),
        ),
        ("count-npm", tarball, "pkg/slow-lib/-/slow-lib-1.0.0.tgz".to_string(), body(3)),
        ("count-docker", format!("/v2/count-docker/slow/img/blobs/{digest}"), format!("slow/img/blobs/{digest}"), body(4)),
    ];

    up.hold();
    let (started_tx, started) = std::sync::mpsc::channel();
    let clients: Vec<_> = fills
        .iter()
        .map(|(_, url, _, _)| {
            let (url, started_tx) = (server().url(url), started_tx.clone());
            std::thread::spawn(move || {
                let r = Client::builder().timeout(Duration::from_secs(120)).build().unwrap().get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
                started_tx.send(()).unwrap();
                (r.status(), r.bytes().unwrap().to_vec())
            })
        })
        .collect();
    for _ in &fills {
        started.recv_timeout(Duration::from_secs(60)).expect("the fill's answer began");
    }
    // A flush after the answers began: the next change of a cached file's count is written by one.
    let before = download_count("count-pypi", "packages/warm-proj/warm_proj-1.0.tar.gz");
    assert_eq!(get(warm).bytes().unwrap().to_vec(), body(2));
    eventually("a flush passed", || download_count("count-pypi", "packages/warm-proj/warm_proj-1.0.tar.gz") > before);
    for (repo, _, path, _) in &fills {
        assert_eq!(download_count(repo, path), 0, "{repo}: not cached yet");
    }
    up.release();
    for (client, (repo, _, _, want)) in clients.into_iter().zip(&fills) {
        let (status, got) = client.join().unwrap();
        assert_eq!((status, got.len()), (StatusCode::OK, want.len()), "{repo}");
        assert!(got == *want, "{repo}: the content");
    }
    for (repo, _, path, _) in &fills {
        eventually(&format!("{repo}'s fill is counted"), || download_count(repo, path) == 1);
    }
    // Once: after one more flush, still one each.
    let before = download_count("count-pypi", "packages/warm-proj/warm_proj-1.0.tar.gz");
    assert_eq!(get(warm).bytes().unwrap().to_vec(), body(2));
    eventually("a flush passed", || download_count("count-pypi", "packages/warm-proj/warm_proj-1.0.tar.gz") > before);
    for (repo, _, path, _) in &fills {
        assert_eq!(download_count(repo, path), 1, "{repo}");
    }
}

/// Credentials in `proxy.remoteUrl` would be stored in plaintext, shown by GET and logged
/// wherever the remote is named: they are refused, naming the field and without repeating
/// them, for every format, at create and update. A URL an older version stored with them has
/// them moved into `httpClient.authentication` at start (sealed, never shown), keeps working,
/// and neither the database nor the log holds them in clear afterwards.
#[test]
fn credentials_in_a_remote_url_are_refused_and_moved_out_of_one_stored_before() {
    const PASSWORD: &str = "pw-in-url-3f9c";
    let up = Upstream::start();
    up.require_auth("mirror", PASSWORD);
    up.add("auth-proj", "auth_proj-1.0.tar.gz", b"a".to_vec(), "application/octet-stream");
    let with_credentials = format!("http://mirror:{PASSWORD}@127.0.0.1:{}/", up.port);
    let refused_quietly = |r: Response| {
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = r.text().unwrap();
        assert!(text.contains("PARAMETER proxy.remoteUrl") && text.contains("httpClient.authentication"), "{text}");
        assert!(!text.contains(PASSWORD), "the answer repeats the password: {text}");
    };
    for format in ["pypi", "npm", "docker"] {
        let mut b = proxy_body(&format!("url-creds-{format}"), &with_credentials, json!({}), json!({}));
        if format == "docker" {
            b["docker"] = json!({"v1Enabled": false, "forceBasicAuth": true});
        }
        refused_quietly(create(format, "proxy", &b));
        b["proxy"]["remoteUrl"] = json!(up.url());
        create_ok(format, "proxy", &b);
        b["proxy"]["remoteUrl"] = json!(format!("http://token@127.0.0.1:{}/", up.port));
        refused_quietly(
            server().admin().request(Method::PUT, &format!("/service/rest/v1/repositories/{format}/proxy/url-creds-{format}")).json(&b).send().unwrap(),
        );
    }

    // As an older version stored it: the credentials in the URL, no authentication section.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("wharf.log");
    let mut node = TestServer::start_with_env(&[("WHARF_TEST_LOG_FILE", log.to_str().unwrap()), ("RUST_LOG", "debug,actix_http::h1::dispatcher=off")]);
    let r = node
        .admin()
        .request(Method::POST, "/service/rest/v1/repositories/pypi/proxy")
        .json(&proxy_body("old-proxy", &up.url(), json!({}), json!({})))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    node.kill();
    let stored_config = |node: &TestServer| {
        use diesel::prelude::*;
        use wharf::db::schema::repositories;
        let db = wharf::db::Db::open(&node.database_url(), 2).unwrap();
        db.run_sync(|c| Ok(repositories::table.filter(repositories::name.eq("old-proxy")).select(repositories::config).first::<String>(c)?)).unwrap()
    };
    let mut old: Value = serde_json::from_str(&stored_config(&node)).unwrap();
    old["proxy"]["remoteUrl"] = json!(with_credentials.trim_end_matches('/'));
    old["httpClient"]["authentication"] = Value::Null;
    {
        use diesel::prelude::*;
        use wharf::db::schema::repositories;
        let db = wharf::db::Db::open(&node.database_url(), 2).unwrap();
        let text = old.to_string();
        db.run_sync(move |c| {
            diesel::update(repositories::table.filter(repositories::name.eq("old-proxy"))).set(repositories::config.eq(&text)).execute(c)?;
            Ok(())
        })
        .unwrap();
    }
    node.spawn();
    let shown: Value = node.admin().request(Method::GET, "/service/rest/v1/repositories/pypi/proxy/old-proxy").send().unwrap().json().unwrap();
    assert_eq!(shown["proxy"]["remoteUrl"], up.url().trim_end_matches('/'), "{shown}");
    assert_eq!(shown["httpClient"]["authentication"]["username"], "mirror", "{shown}");
    assert_eq!(shown["httpClient"]["authentication"]["password"], Value::Null, "{shown}");
    let get = |path: &str| node.admin().request(Method::GET, path).send().unwrap();
    let before = up.seen().len();
    assert_eq!(get("/repository/old-proxy/simple/auth-proj/").status(), StatusCode::OK, "the moved credentials reach the upstream");
    assert!(up.seen()[before..].iter().all(|s| s.authorization.is_some()), "sent with the first request, as the URL's were");
    // A failing upstream is logged, naming its remote.
    up.set_mode(Mode::Fail);
    assert_eq!(get("/repository/old-proxy/simple/other-proj/").status(), StatusCode::BAD_GATEWAY);
    up.set_mode(Mode::Answer);
    assert!(!stored_config(&node).contains(PASSWORD), "stored sealed");
    node.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("moved credentials out of proxy.remoteUrl") && text.contains("old-proxy"), "{text}");
    assert!(text.contains("upstream failing"), "the remote was logged: {text}");
    assert!(!text.contains(PASSWORD), "the password is in the log");
}

fn invalidate(name: &str) -> Response {
    server().admin().request(Method::POST, &format!("/service/rest/v1/repositories/{name}/invalidate-cache")).send().unwrap()
}

#[test]
fn invalidating_a_cache_sends_the_next_request_upstream_once() {
    let up = Upstream::start();
    up.add("inval-proj", "inval_proj-1.0.tar.gz", b"inval bytes".to_vec(), "application/octet-stream");
    up.add_npm("inval-lib", "1.0.0", b"inval lib".to_vec());
    create_ok("pypi", "proxy", &proxy_body("inval-pypi", &up.url(), json!({}), json!({})));
    create_ok("npm", "proxy", &proxy_body("inval-npm", &up.url(), json!({}), json!({})));
    create_ok(
        "pypi",
        "group",
        &json!({"name": "inval-group", "online": true, "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["inval-pypi"]}}),
    );
    let page = || assert_eq!(get("/repository/inval-pypi/simple/inval-proj/").status(), StatusCode::OK);
    let doc = || assert_eq!(get("/repository/inval-npm/inval-lib").status(), StatusCode::OK);
    page();
    page();
    doc();
    doc();
    assert_eq!((up.count("/simple/inval-proj/"), up.count("/inval-lib")), (1, 1), "within metadataMaxAge (a day) the cached copies answer");

    assert_eq!(invalidate("inval-pypi").status(), StatusCode::NO_CONTENT);
    page();
    page();
    doc();
    assert_eq!(
        (up.count("/simple/inval-proj/"), up.count("/inval-lib")),
        (2, 1),
        "the invalidated proxy asks once, then is fresh again; the other is untouched"
    );

    // A group invalidates the proxies among its members.
    assert_eq!(invalidate("inval-group").status(), StatusCode::NO_CONTENT);
    page();
    assert_eq!(up.count("/simple/inval-proj/"), 3);
    assert_eq!(invalidate("inval-npm").status(), StatusCode::NO_CONTENT);
    doc();
    assert_eq!(up.count("/inval-lib"), 2);

    // Nothing to invalidate: named in the error; an unknown repository is 404; admins only.
    create_ok("pypi", "hosted", &json!({"name": "inval-hosted", "online": true, "storage": {"blobStoreName": "default", "writePolicy": "allow"}}));
    refused(invalidate("inval-hosted"), "name");
    assert_eq!(invalidate("no-such-repository").status(), StatusCode::NOT_FOUND);
    let anon = common::client().post(server().url("/service/rest/v1/repositories/inval-pypi/invalidate-cache")).send().unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

/// A request sent byte for byte as written (an HTTP client library would fold `\` and `%2e%2e`
/// before sending): its status.
fn raw_get(path: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = server().url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    // admin:test-admin-password
    assert_eq!(ADMIN_PASSWORD, "test-admin-password");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YWRtaW46dGVzdC1hZG1pbi1wYXNzd29yZA==\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let head = String::from_utf8_lossy(&answer);
    head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status for {path}: {head}"))
}

/// A name a client sends is one name under the upstream's index, never a path: with `\` and
/// `%2e%2e` a PyPI project name made the proxy ask any host (`\\10.0.0.5:8080\...`) or any path of
/// its upstream's host with the proxy's credentials, and an npm package name with one capital
/// letter did the same.
#[test]
fn names_in_requests_never_lead_a_proxy_outside_its_upstream_index() {
    let up = Upstream::start();
    up.add("ok-proj", "ok_proj-1.0.tar.gz", b"ok".to_vec(), "application/octet-stream");
    up.add_npm("ok-pkg", "1.0.0", b"not a real tarball".to_vec());
    let auth = json!({"authentication": {"type": "username", "username": "mirror", "password": "s3cret"}});
    create_ok("pypi", "proxy", &proxy_body("names-pypi", &format!("{}mirror/simple", up.url()), auth.clone(), json!({})));
    create_ok("npm", "proxy", &proxy_body("names-npm", &format!("{}mirror/npm", up.url()), auth, json!({})));
    let other = Upstream::start();

    let other_host = format!("127%2e0%2e0%2e1:{}", other.port);
    for path in [
        format!(r"/repository/names-pypi/simple/\\{other_host}\x\y/"),
        r"/repository/names-pypi/simple/\admin\secret/".to_string(),
        r"/repository/names-pypi/simple/%2e%2e\%2e%2e\admin/".to_string(),
        r"/repository/names-pypi/pypi/%2e%2e\%2e%2e\admin/json".to_string(),
        r"/repository/names-npm/%2E%2E\%2E%2E\A\..\system\version".to_string(),
        r"/repository/names-npm/X\..\..\admin".to_string(),
        format!(r"/repository/names-npm/\\{other_host}\A"),
    ] {
        let status = raw_get(&path);
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    // What a name still reaches: its own page, under the index.
    assert_eq!(raw_get("/repository/names-pypi/simple/ok-proj/"), 200);
    assert_eq!(raw_get("/repository/names-npm/ok-pkg"), 200);
    let seen: Vec<String> = up.seen().into_iter().filter(|s| s.method == "GET").map(|s| s.path).collect();
    assert!(seen.iter().any(|p| p == "/mirror/simple/ok-proj/") && seen.iter().any(|p| p == "/mirror/npm/ok-pkg"), "{seen:?}");
    let outside: Vec<&String> = seen.iter().filter(|p| !p.starts_with("/mirror/simple/ok-proj/") && !p.starts_with("/mirror/npm/ok-pkg")).collect();
    assert!(outside.is_empty(), "the upstream was asked for {outside:?}");
    assert!(other.seen().is_empty(), "another host was asked: {:?}", other.seen());
}
