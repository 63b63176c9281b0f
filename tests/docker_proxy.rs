//! Docker proxy (pull-through cache) and group repositories against real upstreams on
//! loopback: Debian's `docker-registry` (CNCF Distribution), anonymous and with htpasswd, and
//! another wharf behind the Bearer token flow. Clients are skopeo and plain HTTP.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{oci, Guarded, SpawnGuarded, TestServer, ADMIN_PASSWORD};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A Distribution registry on a loopback port, its access log in a file.
struct Registry {
    addr: String,
    dir: tempfile::TempDir,
    child: Option<Guarded>,
    creds: Option<(String, String)>,
}

impl Registry {
    fn start(with_auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut auth = String::new();
        let mut creds = None;
        if with_auth {
            let out = Command::new("htpasswd").args(["-Bbn", "upstream", "upstream-secret"]).output().expect("htpasswd (apache2-utils)");
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n", dir.path().join("htpasswd").display());
            creds = Some(("upstream".to_string(), "upstream-secret".to_string()));
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut r = Registry { addr: format!("127.0.0.1:{port}"), dir, child: None, creds };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        // The access log (combined format) goes to stdout, the rest to stderr.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = common::guarded("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(Stdio::null())
            .spawn_guarded()
            .expect("docker-registry is installed (the test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// How many GETs of this path the registry has answered.
    fn gets(&self, path: &str) -> usize {
        self.requests("GET", path)
    }

    fn requests(&self, method: &str, path: &str) -> usize {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("\"{method} {path} "))).count()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn push(&self, layout: &std::path::Path, tag: &str, image: &str) {
        let mut args = vec!["copy".to_string(), "--dest-tls-verify=false".into()];
        if let Some((u, p)) = &self.creds {
            args.push("--dest-creds".into());
            args.push(format!("{u}:{p}"));
        }
        args.push("--all".into());
        args.push(format!("oci:{}:{tag}", layout.display()));
        args.push(format!("docker://{}/{image}", self.addr));
        let out = Command::new("skopeo").args(&args).output().unwrap();
        assert!(out.status.success(), "push to upstream: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(60)).build().unwrap()
}

fn create(server: &TestServer, kind: &str, body: Value) {
    let r = server.admin().request(reqwest::Method::POST, &format!("/service/rest/v1/repositories/docker/{kind}")).json(&body).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "create {kind}: {}", r.text().unwrap_or_default());
}

fn proxy_body(name: &str, remote: &str, extra: Value) -> Value {
    let mut b = json!({
        "name": name, "online": true,
        "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
        "proxy": {"remoteUrl": remote, "contentMaxAge": -1, "metadataMaxAge": 0.05},
        "negativeCache": {"enabled": true, "timeToLive": 0.05},
        "httpClient": {"blocked": false, "autoBlock": true, "connection": {"timeout": 10, "connectTimeout": 2}},
        "docker": {"v1Enabled": false, "forceBasicAuth": false},
        "dockerProxy": {"indexType": "REGISTRY"}
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut b, extra) {
        b.extend(e);
    }
    b
}

fn raw_digest(image: &str) -> Result<String, String> {
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let out = Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds, image]).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out.stdout))))
}

fn pull(image: &str, dir: &std::path::Path) -> Result<(), String> {
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false", "--src-creds", &creds, image, &format!("oci:{}:x", dir.display())])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

struct Env {
    server: TestServer,
    upstream: Registry,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let server = TestServer::start();
        let upstream = Registry::start(false);
        create(&server, "proxy", proxy_body("hub-proxy", &upstream.url(), json!({})));
        // Ages of 6 s: long enough that "before it expires" cannot be missed on a loaded machine.
        create(
            &server,
            "proxy",
            proxy_body(
                "timed-proxy",
                &upstream.url(),
                json!({
                    "proxy": {"remoteUrl": upstream.url(), "contentMaxAge": -1, "metadataMaxAge": 0.1},
                    "negativeCache": {"enabled": true, "timeToLive": 0.1}
                }),
            ),
        );
        Env { server, upstream }
    })
}

#[test]
fn cold_and_warm_pulls_fetch_each_blob_once() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64", "arm64"], 21, 100_000);
    e.upstream.push(&tmp.path().join("src"), "v1", "team/cached:1");
    let image = format!("docker://{}/hub-proxy/team/cached:1", e.server.addr);
    pull(&image, &tmp.path().join("cold")).unwrap();
    assert_eq!(raw_digest(&image).unwrap(), layout.top_digest);
    pull(&image, &tmp.path().join("warm")).unwrap();
    for blob in &layout.blobs {
        assert_eq!(e.upstream.gets(&format!("/v2/team/cached/blobs/{blob}")), 1, "{blob} fetched from upstream exactly once");
    }
}

#[test]
fn the_proxy_is_read_only() {
    let e = env();
    let r = http().post(e.server.url("/v2/hub-proxy/team/x/blobs/uploads/")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "UNSUPPORTED");
}

#[test]
fn a_tag_moved_upstream_is_seen_after_metadata_max_age_and_not_before() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let first = oci::image(&tmp.path().join("a"), "v1", &["amd64"], 22, 10_000);
    let second = oci::image(&tmp.path().join("b"), "v1", &["amd64"], 23, 10_000);
    e.upstream.push(&tmp.path().join("a"), "v1", "team/moving:latest");
    let image = format!("docker://{}/timed-proxy/team/moving:latest", e.server.addr);
    assert_eq!(raw_digest(&image).unwrap(), first.top_digest);
    e.upstream.push(&tmp.path().join("b"), "v1", "team/moving:latest");
    assert_eq!(raw_digest(&image).unwrap(), first.top_digest, "within metadataMaxAge the cached tag is served");
    std::thread::sleep(Duration::from_millis(6500));
    assert_eq!(raw_digest(&image).unwrap(), second.top_digest, "after metadataMaxAge the move is seen");
}

#[test]
fn upstream_404s_are_negatively_cached_for_their_ttl() {
    let e = env();
    let url = e.server.url("/v2/timed-proxy/team/late/manifests/1");
    let get = || http().get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Accept", "application/vnd.oci.image.manifest.v1+json").send().unwrap();
    let r = get();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().unwrap()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let upstream_asks = e.upstream.requests("HEAD", "/v2/team/late/manifests/1");
    assert!(upstream_asks >= 1, "the first miss asked the upstream");
    let tmp = tempfile::tempdir().unwrap();
    oci::image(&tmp.path().join("s"), "v1", &["amd64"], 24, 1000);
    e.upstream.push(&tmp.path().join("s"), "v1", "team/late:1");
    assert_eq!(get().status(), StatusCode::NOT_FOUND, "still negatively cached");
    assert_eq!(e.upstream.requests("HEAD", "/v2/team/late/manifests/1"), upstream_asks, "the negative cache spared the upstream");
    std::thread::sleep(Duration::from_millis(6500));
    assert_eq!(get().status(), StatusCode::OK, "after the TTL the upstream is asked again");
}

#[test]
fn concurrent_cold_pulls_of_one_layer_make_one_upstream_fetch() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64"], 25, 8 << 20);
    e.upstream.push(&tmp.path().join("src"), "v1", "team/big:1");
    let layer = layout.blobs[0].clone();
    let url = e.server.url(&format!("/v2/hub-proxy/team/big/blobs/{layer}"));
    let expected = std::fs::read(tmp.path().join("src/blobs/sha256").join(layer.strip_prefix("sha256:").unwrap())).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || http().get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap().bytes().unwrap().to_vec())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() == expected, "every client got the whole, correct layer");
    }
    assert_eq!(e.upstream.gets(&format!("/v2/team/big/blobs/{layer}")), 1, "one upstream fetch for 8 concurrent cold pulls");
}

#[test]
fn cached_content_is_served_when_the_upstream_is_down() {
    let server = &env().server;
    let mut upstream = Registry::start(false);
    create(server, "proxy", proxy_body("flaky-proxy", &upstream.url(), json!({})));
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64"], 26, 50_000);
    upstream.push(&tmp.path().join("src"), "v1", "team/kept:1");
    let image = format!("docker://{}/flaky-proxy/team/kept:1", server.addr);
    pull(&image, &tmp.path().join("first")).unwrap();
    upstream.stop();
    std::thread::sleep(Duration::from_millis(3500)); // past metadataMaxAge: revalidation fails
    assert_eq!(raw_digest(&image).unwrap(), layout.top_digest, "by tag, from cache");
    let by_digest = format!("docker://{}/flaky-proxy/team/kept@{}", server.addr, layout.top_digest);
    assert_eq!(raw_digest(&by_digest).unwrap(), layout.top_digest, "by digest, from cache");
    pull(&image, &tmp.path().join("second")).unwrap();
    // Something never cached: a clear error, quickly, not a hang.
    let started = Instant::now();
    let r = http().get(server.url("/v2/flaky-proxy/team/never/manifests/1")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.json::<Value>().unwrap()["errors"][0]["message"].as_str().unwrap().contains("upstream"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_upstream_with_basic_auth_is_used_with_the_configured_credentials() {
    let server = &env().server;
    let upstream = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64"], 27, 20_000);
    upstream.push(&tmp.path().join("src"), "v1", "team/private:1");
    let auth =
        json!({"httpClient": {"connection": {"timeout": 10}, "authentication": {"type": "username", "username": "upstream", "password": "upstream-secret"}}});
    create(server, "proxy", proxy_body("auth-proxy", &upstream.url(), auth));
    assert_eq!(raw_digest(&format!("docker://{}/auth-proxy/team/private:1", server.addr)).unwrap(), layout.top_digest);
    pull(&format!("docker://{}/auth-proxy/team/private:1", server.addr), &tmp.path().join("back")).unwrap();
    // The password never comes back out of the API.
    let cfg: Value = server.admin().request(reqwest::Method::GET, "/service/rest/v1/repositories/docker/proxy/auth-proxy").send().unwrap().json().unwrap();
    assert_eq!(cfg["httpClient"]["authentication"]["username"], "upstream");
    assert_eq!(cfg["httpClient"]["authentication"]["password"], Value::Null);

    let wrong = json!({"httpClient": {"authentication": {"type": "username", "username": "upstream", "password": "wrong"}}});
    create(server, "proxy", proxy_body("wrong-auth-proxy", &upstream.url(), wrong));
    let r = http().get(server.url("/v2/wrong-auth-proxy/team/private/manifests/1")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
}

#[test]
fn another_wharf_behind_the_token_flow_is_an_upstream() {
    let server = &env().server;
    let upstream = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64", "arm64"], 28, 30_000);
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", tmp.path().join("src").display()),
            &format!("docker://{}/docker-hosted/team/tokened:1", upstream.addr),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The upstream wharf answers anonymous requests with a Bearer challenge: the proxy must
    // fetch a token with its credentials.
    let auth = json!({"httpClient": {"authentication": {"type": "username", "username": "admin", "password": ADMIN_PASSWORD}}});
    create(server, "proxy", proxy_body("wharf-proxy", &format!("{}/v2/docker-hosted", upstream.base).replace("/v2/docker-hosted", ""), auth));
    // The upstream's repository is path-routed, so the proxy's image names carry it.
    let image = format!("docker://{}/wharf-proxy/docker-hosted/team/tokened:1", server.addr);
    assert_eq!(raw_digest(&image).unwrap(), layout.top_digest);
    pull(&image, &tmp.path().join("back")).unwrap();
}

#[test]
fn a_proxy_on_its_own_port_works_as_a_docker_hub_mirror() {
    let e = env();
    let port = common::free_port();
    let mut body = proxy_body("mirror", &e.upstream.url(), json!({"dockerProxy": {"indexType": "HUB"}}));
    body["docker"]["httpPort"] = json!(port);
    create(&e.server, "proxy", body);
    let tmp = tempfile::tempdir().unwrap();
    let layout = oci::image(&tmp.path().join("src"), "v1", &["amd64"], 29, 10_000);
    e.upstream.push(&tmp.path().join("src"), "v1", "library/alpine:3");
    // As the Docker daemon asks a mirror: no repository segment, and `library/` for official images.
    let r = http()
        .get(format!("http://127.0.0.1:{port}/v2/library/alpine/manifests/3"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], layout.top_digest.as_str());
    // The short name maps onto library/ too.
    assert_eq!(raw_digest(&format!("docker://127.0.0.1:{port}/alpine:3")).unwrap(), layout.top_digest);
}

#[test]
fn a_group_pulls_from_its_members_in_order_and_pushes_to_the_writable_one() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    create(&e.server, "hosted", json!({"name": "group-hosted", "storage": {"blobStoreName": "default"}, "docker": {}}));
    create(
        &e.server,
        "group",
        json!({"name": "docker-all", "storage": {"blobStoreName": "default"}, "docker": {},
        "group": {"memberNames": ["group-hosted", "hub-proxy"], "writableMember": "group-hosted"}}),
    );
    // Only the proxy's upstream has this image.
    let upstream_only = oci::image(&tmp.path().join("up"), "v1", &["amd64"], 30, 10_000);
    e.upstream.push(&tmp.path().join("up"), "v1", "team/grouped:from-upstream");
    let via_group = format!("docker://{}/docker-all/team/grouped", e.server.addr);
    assert_eq!(raw_digest(&format!("{via_group}:from-upstream")).unwrap(), upstream_only.top_digest);
    // A push to the group lands in the writable member.
    let pushed = oci::image(&tmp.path().join("mine"), "v1", &["amd64"], 31, 10_000);
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", tmp.path().join("mine").display()),
            &format!("{via_group}:pushed"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "push via group: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(raw_digest(&format!("docker://{}/group-hosted/team/grouped:pushed", e.server.addr)).unwrap(), pushed.top_digest);
    // Tags are merged across members.
    let out = Command::new("skopeo").args(["list-tags", "--tls-verify=false", "--creds", &creds, &via_group]).output().unwrap();
    let tags: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags["Tags"], json!(["from-upstream", "pushed"]));
    // A missing member is refused with the field named.
    let r = e
        .server
        .admin()
        .request(reqwest::Method::POST, "/service/rest/v1/repositories/docker/group")
        .json(&json!({"name": "bad-group", "storage": {"blobStoreName": "default"}, "group": {"memberNames": ["nope"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().unwrap()[0]["id"], "PARAMETER group.memberNames");
}

#[test]
fn a_mount_through_a_group_becomes_an_upload() {
    let e = env();
    create(&e.server, "hosted", json!({"name": "mount-secret", "storage": {"blobStoreName": "default"}, "docker": {}}));
    create(&e.server, "hosted", json!({"name": "mount-target", "storage": {"blobStoreName": "default"}, "docker": {}}));
    create(
        &e.server,
        "group",
        json!({"name": "mount-group", "storage": {"blobStoreName": "default"}, "docker": {},
        "group": {"memberNames": ["mount-target"], "writableMember": "mount-target"}}),
    );
    let data = b"secret layer".to_vec();
    let d = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)));
    let r = http()
        .post(e.server.url(&format!("/v2/mount-secret/x/blobs/uploads/?digest={d}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(data)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http()
        .post(e.server.url(&format!("/v2/mount-group/y/blobs/uploads/?mount={d}&from=mount-secret/x")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "no mount through a group: an upload session instead");
    assert!(r.headers()["location"].to_str().unwrap().contains("/v2/mount-group/y/blobs/uploads/"));
}

/// An upstream's Bearer challenge names the token realm, the second place the stored upstream
/// password goes. From a plain-http upstream it goes there only on the upstream's own origin
/// (from an https one also to https realms: see the unit test in formats/docker): a realm
/// elsewhere is asked for a token without it.
#[test]
fn the_upstream_password_goes_to_a_token_realm_of_a_plain_http_upstream_only_on_its_own_origin() {
    use common::upstream::Upstream;
    let server = &env().server;
    let auth = || json!({"httpClient": {"connection": {"timeout": 10}, "authentication": {"type": "username", "username": "upstream", "password": "upstream-secret"}}});
    let basic = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "upstream:upstream-secret"));
    let ask = |repo: &str| {
        http()
            .get(server.url(&format!("/v2/{repo}/team/app/manifests/1")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
    };

    // The realm on another port (another origin), plain http.
    let trap = Upstream::start();
    let elsewhere = Upstream::start();
    elsewhere.challenge_bearer(&format!("http://127.0.0.1:{}/token", trap.port));
    create(server, "proxy", proxy_body("realm-elsewhere-proxy", &elsewhere.url(), auth()));
    ask("realm-elsewhere-proxy");
    let asked: Vec<_> = trap.seen().into_iter().filter(|s| s.path.starts_with("/token")).collect();
    assert!(!asked.is_empty(), "the proxy asked the realm for a token");
    assert!(asked.iter().all(|s| s.authorization.is_none()), "no credentials to another origin in clear text: {asked:?}");

    // The realm on the upstream's own origin gets them, and the flow completes.
    let own = Upstream::start();
    own.challenge_bearer(&format!("{}token", own.url()));
    create(server, "proxy", proxy_body("realm-own-proxy", &own.url(), auth()));
    ask("realm-own-proxy");
    let asked: Vec<_> = own.seen().into_iter().filter(|s| s.path.starts_with("/token")).collect();
    assert!(!asked.is_empty() && asked.iter().all(|s| s.authorization.as_deref() == Some(basic.as_str())), "{asked:?}");
    assert!(own.seen().iter().any(|s| s.path.starts_with("/v2/team/app/manifests/") && s.authorization.as_deref() == Some("Bearer upstream-token")));
}

/// `contentMaxAge` acts on tags too (Nexus counts a manifest fetched by tag as content): with
/// `metadataMaxAge` a day and `contentMaxAge` 6 s, a tag moved upstream is seen after 6 s, and
/// not before.
#[test]
fn a_tag_moved_upstream_is_seen_after_content_max_age_when_that_is_shorter() {
    let e = env();
    create(
        &e.server,
        "proxy",
        proxy_body("content-aged-proxy", &e.upstream.url(), json!({"proxy": {"remoteUrl": e.upstream.url(), "contentMaxAge": 0.1, "metadataMaxAge": 1440}})),
    );
    let tmp = tempfile::tempdir().unwrap();
    let first = oci::image(&tmp.path().join("a"), "v1", &["amd64"], 31, 10_000);
    let second = oci::image(&tmp.path().join("b"), "v1", &["amd64"], 32, 10_000);
    e.upstream.push(&tmp.path().join("a"), "v1", "team/content-aged:latest");
    let image = format!("docker://{}/content-aged-proxy/team/content-aged:latest", e.server.addr);
    // Taken before the first pull: the tag's age is never more than this clock says.
    let started = Instant::now();
    assert_eq!(raw_digest(&image).unwrap(), first.top_digest);
    e.upstream.push(&tmp.path().join("b"), "v1", "team/content-aged:latest");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = raw_digest(&image).unwrap();
        if seen == second.top_digest {
            assert!(started.elapsed() >= Duration::from_secs(6), "the move was seen after {:?}, within contentMaxAge", started.elapsed());
            break;
        }
        assert_eq!(seen, first.top_digest);
        assert!(Instant::now() < deadline, "the move was never seen: contentMaxAge does not act on tags");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The proxy's metrics text, scraped as the admin.
fn metrics_text(server: &TestServer) -> String {
    let r = http().get(server.url("/service/metrics/prometheus")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().unwrap()
}

/// The value of `metric` for `repository`, if the text has that series.
fn metric_of(text: &str, metric: &str, repository: &str) -> Option<f64> {
    let label = format!("repository=\"{repository}\"");
    text.lines().filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label)).find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Docker Hub answers 429 with `Retry-After` when its rate limit bites, and states the limit in
/// `ratelimit-limit` / `ratelimit-remaining` on every answer. The proxy waits as asked and
/// sends again (the pull succeeds), and the metrics show the limit and the 429; a
/// `Retry-After` of hours is not waited for: the client gets 429 `TOOMANYREQUESTS` at once.
#[test]
fn a_rate_limited_upstream_is_waited_for_and_its_limits_are_in_the_metrics() {
    use common::upstream::Upstream;
    let server = &env().server;
    let hub = Upstream::start();
    // One small image: a config and a layer (content is not checked by the proxy beyond digests).
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = oci::noise(41, 20_000);
    let config_digest = hub.add_blob("team/limited", config.clone());
    let layer_digest = hub.add_blob("team/limited", layer.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}]
    })
    .to_string()
    .into_bytes();
    let manifest_digest = hub.add_manifest("team/limited", "1", manifest, "application/vnd.oci.image.manifest.v1+json");
    hub.rate_limit("100;w=21600", "76;w=21600");
    hub.throttle(1, "1");
    create(server, "proxy", proxy_body("throttled-proxy", &hub.url(), json!({})));

    let tmp = tempfile::tempdir().unwrap();
    let image = format!("docker://{}/throttled-proxy/team/limited:1", server.addr);
    pull(&image, &tmp.path().join("pulled")).expect("the pull succeeds after the upstream's Retry-After");
    assert_eq!(raw_digest(&image).unwrap(), manifest_digest);

    // The throttled request was sent again, no sooner than its Retry-After.
    let seen = hub.seen();
    let first = &seen[0];
    let again = seen.iter().skip(1).find(|s| s.path == first.path && s.method == first.method).expect("the throttled request was sent again");
    assert!(again.at.duration_since(first.at) >= Duration::from_secs(1), "sent again after {:?}", again.at.duration_since(first.at));

    let text = metrics_text(server);
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_throttled_total", "throttled-proxy"), Some(1.0), "{text}");
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_ratelimit_limit", "throttled-proxy"), Some(100.0));
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_ratelimit_remaining", "throttled-proxy"), Some(76.0));
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_ratelimit_window_seconds", "throttled-proxy"), Some(21600.0));
    // Upstreams that state no limit have no rate-limit series (not a limit of 0).
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_ratelimit_limit", "hub-proxy"), None);

    // Hours to wait (the pull limit used up): the client is told at once.
    hub.rate_limit("100;w=21600", "0;w=21600");
    hub.throttle(10, "21600");
    let started = Instant::now();
    let r = http()
        .get(server.url("/v2/throttled-proxy/team/other/manifests/1"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("21600"), "the upstream's Retry-After is passed on");
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert!(started.elapsed() < Duration::from_secs(25), "not kept waiting: {:?}", started.elapsed());
    let text = metrics_text(server);
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_ratelimit_remaining", "throttled-proxy"), Some(0.0));
    assert_eq!(metric_of(&text, "wharf_proxy_upstream_throttled_total", "throttled-proxy"), Some(2.0), "one more 429, not waited for");
}
