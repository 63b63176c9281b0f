//! PyPI proxy and group repositories with the real clients. The upstream is a real index on
//! loopback: pypiserver (HTML pages, from PyPI), another wharf repository (JSON pages with PEP
//! 658 metadata), and Python's own http.server for an upstream that lies about a hash.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::pypi::dist;
use common::pypi::pip;
use common::{free_port, Guarded, SpawnGuarded, TestServer, ADMIN_PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(TestServer::start)
}

fn index_url(repo: &str) -> String {
    common::pypi::index_url(server(), repo)
}

fn pip_install(repo: &str, target: &Path, reqs: &[&str]) -> Output {
    let mut args = vec!["install", "--no-cache-dir", "--index-url"];
    let url = index_url(repo);
    args.push(&url);
    args.extend(["--target", target.to_str().unwrap()]);
    args.extend(reqs);
    pip(&args)
}

fn twine(repo: &str, files: &[&Path]) -> Output {
    common::pypi::twine(&format!("{}/repository/{repo}/", server().base), "admin", ADMIN_PASSWORD, files)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

fn get(path: &str, accept: Option<&str>) -> reqwest::blocking::Response {
    let mut r = common::client().get(server().url(path)).basic_auth("admin", Some(ADMIN_PASSWORD));
    if let Some(a) = accept {
        r = r.header("Accept", a);
    }
    r.send().unwrap()
}

fn page(repo: &str, project: &str) -> Value {
    let r = get(&format!("/repository/{repo}/simple/{project}/"), Some("application/vnd.pypi.simple.v1+json"));
    assert_eq!(r.status(), StatusCode::OK, "page {repo}/{project}");
    r.json().unwrap()
}

fn filenames(page: &Value) -> Vec<String> {
    let mut v: Vec<String> = page["files"].as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

fn create(kind: &str, body: Value) -> reqwest::blocking::Response {
    server().admin().request(reqwest::Method::POST, &format!("/service/rest/v1/repositories/pypi/{kind}")).json(&body).send().unwrap()
}

fn create_proxy(name: &str, remote: &str, metadata_max_age: f64, auth: Option<(&str, &str)>) {
    let mut body = json!({
        "name": name, "online": true,
        "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
        "proxy": {"remoteUrl": remote, "contentMaxAge": 1440, "metadataMaxAge": metadata_max_age},
        "negativeCache": {"enabled": true, "timeToLive": 1440},
        "httpClient": {"blocked": false, "autoBlock": false, "connection": {"timeout": 10, "connectTimeout": 2}},
    });
    if let Some((u, p)) = auth {
        body["httpClient"]["authentication"] = json!({"type": "username", "username": u, "password": p});
    }
    let r = create("proxy", body);
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
}

/// pypiserver over a folder of distributions, its access log in a file.
struct PypiServer {
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Guarded>,
}

impl PypiServer {
    fn start(dir: &Path) -> PypiServer {
        let mut s = PypiServer { dir: dir.to_path_buf(), port: free_port(), log: dir.with_extension("log"), child: None };
        s.spawn();
        s
    }

    /// Always the wsgiref server: its access log (one line per request) is what
    /// [`PypiServer::fetches`] counts, whatever else is installed.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = common::guarded("pypi-server")
            .args(["run", "-i", "127.0.0.1", "-p", &self.port.to_string(), "-a", ".", "-P", ".", "--disable-fallback", "-v", "--server", "wsgiref"])
            .arg(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("PYTHONUNBUFFERED", "1")
            .spawn_guarded()
            .expect("pypi-server is installed (the test command installs pypiserver into target/test-venv)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "pypiserver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// How many GETs of `path` the upstream answered.
    fn fetches(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("\"GET {path} "))).count()
    }
}

impl Drop for PypiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn pip_and_uv_install_through_a_proxy_and_from_its_cache_when_the_upstream_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let pkgs = tmp.path().join("pkgs");
    let (lib_whl, _) = dist(&pkgs, "proxied-lib", "1.0", &[]);
    let (app_whl, _) = dist(&pkgs, "proxied-app", "2.0", &["proxied-lib>=1.0"]);
    let mut up = PypiServer::start(&pkgs);
    // metadataMaxAge 0: every page request asks the upstream, so the outage below is real.
    create_proxy("pypi-proxy-a", &up.url(), 0.0, None);

    let target = tmp.path().join("site");
    ok(pip_install("pypi-proxy-a", &target, &["proxied-app"]));
    assert!(std::fs::read_to_string(target.join("proxied_app/__init__.py")).unwrap().contains("2.0"));
    assert!(target.join("proxied_lib/__init__.py").exists(), "the dependency came through the proxy too");

    // The page is rendered with wharf's URLs and the upstream's hashes.
    let p = page("pypi-proxy-a", "Proxied_App");
    let f = &p["files"].as_array().unwrap().iter().find(|f| f["filename"] == "proxied_app-2.0-py3-none-any.whl").unwrap().clone();
    assert_eq!(f["url"], format!("{}/repository/pypi-proxy-a/packages/proxied-app/proxied_app-2.0-py3-none-any.whl", server().base));
    assert_eq!(f["hashes"]["sha256"], sha256_hex(&std::fs::read(&app_whl).unwrap()));

    // uv, cold, through the same proxy.
    let uv_target = tmp.path().join("uv-site");
    let out = Command::new("uv")
        .args([
            "pip",
            "install",
            "--no-cache",
            "--python",
            "python3",
            "--index-url",
            &index_url("pypi-proxy-a"),
            "--target",
            uv_target.to_str().unwrap(),
            "proxied-app",
        ])
        .output()
        .expect("uv is installed");
    assert!(out.status.success(), "uv: {}", String::from_utf8_lossy(&out.stderr));
    assert!(uv_target.join("proxied_lib/__init__.py").exists());

    // pip download: the files come back byte for byte; each was fetched upstream once.
    let dl = tmp.path().join("dl");
    ok(pip(&["download", "--no-cache-dir", "--index-url", &index_url("pypi-proxy-a"), "-d", dl.to_str().unwrap(), "proxied-app==2.0"]));
    assert_eq!(std::fs::read(dl.join("proxied_app-2.0-py3-none-any.whl")).unwrap(), std::fs::read(&app_whl).unwrap());
    assert_eq!(std::fs::read(dl.join("proxied_lib-1.0-py3-none-any.whl")).unwrap(), std::fs::read(&lib_whl).unwrap());
    assert_eq!(up.fetches("/packages/proxied_app-2.0-py3-none-any.whl"), 1, "cached after the first download");

    // Upstream stopped: cached projects still install.
    up.stop();
    let again = tmp.path().join("site-offline");
    ok(pip_install("pypi-proxy-a", &again, &["proxied-app"]));
    assert!(again.join("proxied_lib/__init__.py").exists());
    // A project never cached fails fast with a gateway error, not a hang or a 404.
    let started = Instant::now();
    let r = get("/repository/pypi-proxy-a/simple/never-cached/", None);
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() < Duration::from_secs(15));
    // The proxy takes no uploads.
    let (w, _) = dist(&tmp.path().join("x"), "proxied-upload", "1.0", &[]);
    let out = twine("pypi-proxy-a", &[&w]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("405") || String::from_utf8_lossy(&out.stderr).contains("405"), "{out:?}");
}

#[test]
fn a_new_upstream_version_is_seen_after_metadata_max_age_and_404s_are_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let pkgs = tmp.path().join("pkgs");
    dist(&pkgs, "aging-lib", "1.0", &[]);
    let up = PypiServer::start(&pkgs);
    // Three seconds.
    create_proxy("pypi-proxy-age", &up.url(), 0.05, None);
    assert_eq!(filenames(&page("pypi-proxy-age", "aging-lib")), vec!["aging_lib-1.0-py3-none-any.whl", "aging_lib-1.0.tar.gz"]);
    dist(&pkgs, "aging-lib", "1.1", &[]);
    assert_eq!(filenames(&page("pypi-proxy-age", "aging-lib")).len(), 2, "within metadataMaxAge the cached page is served");
    std::thread::sleep(Duration::from_millis(3500));
    let p = page("pypi-proxy-age", "aging-lib");
    assert_eq!(filenames(&p).len(), 4, "after metadataMaxAge the upstream's new version shows: {p}");
    assert_eq!(p["versions"], Value::Null, "pypiserver's HTML gives no sizes, so the page is API 1.0");
    assert_eq!(p["meta"]["api-version"], "1.0");

    // An unknown project: asked upstream once, then answered from the negative cache.
    assert_eq!(get("/repository/pypi-proxy-age/simple/no-such-project/", None).status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/repository/pypi-proxy-age/simple/no-such-project/", None).status(), StatusCode::NOT_FOUND);
    assert_eq!(up.fetches("/simple/no-such-project/"), 1);
}

/// One GET over a raw connection: the request is written before this returns, so the test knows
/// it reached wharf. The body comes back from the returned handle.
fn raw_get(path: &str) -> std::thread::JoinHandle<(u16, Vec<u8>)> {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(&server().addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("admin:{ADMIN_PASSWORD}"));
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n", server().addr).unwrap();
    conn.flush().unwrap();
    std::thread::spawn(move || {
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let mut body = raw[split..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            let (mut out, mut rest) = (Vec::new(), &body[..]);
            loop {
                let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
                rest = &rest[line_end + 4 + n..];
            }
            body = out;
        }
        (status, body)
    })
}

/// Twelve concurrent misses for one file make exactly one upstream fetch. The upstream (written
/// in the test, counting at the server) holds the second half of the file until all twelve
/// requests were sent, so they overlap the fetch; a request wharf reads only after the fill
/// finished must find the cached file rather than fetch again (the gap this test once hit).
#[test]
fn concurrent_cold_downloads_make_one_upstream_fetch() {
    let mut data = vec![0u8; 4 << 20];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    let name = "bulky_blob-1.0-py3-none-any.whl";
    let up = common::upstream::Upstream::start();
    up.add("bulky-blob", name, data.clone(), "application/octet-stream");
    create_proxy("pypi-proxy-bulk", &up.url(), 1440.0, None);
    page("pypi-proxy-bulk", "bulky-blob");
    let want = sha256_hex(&data);
    up.hold();
    let path = format!("/repository/pypi-proxy-bulk/packages/bulky-blob/{name}");
    let first = raw_get(&path);
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.count(&format!("/files/{name}")) == 0 {
        assert!(Instant::now() < deadline, "the first download reached the upstream");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut all: Vec<_> = (0..11).map(|_| raw_get(&path)).collect();
    all.push(first);
    up.release();
    for h in all {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(sha256_hex(&body), want);
    }
    // Late callers too: the file is cached now.
    let (status, body) = raw_get(&path).join().unwrap();
    assert_eq!((status, sha256_hex(&body)), (200, want));
    assert_eq!(up.count(&format!("/files/{name}")), 1, "12 concurrent cold downloads and a late one, one upstream fetch");
}

#[test]
fn a_file_that_fails_the_upstream_hash_is_never_completed_nor_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("www");
    let (whl, _) = dist(&root.join("files"), "liar-pkg", "1.0", &[]);
    std::fs::create_dir_all(root.join("simple/liar-pkg")).unwrap();
    let page_html =
        format!("<html><body><a href=\"../../files/liar_pkg-1.0-py3-none-any.whl#sha256={}\">liar_pkg-1.0-py3-none-any.whl</a></body></html>", "0".repeat(64));
    std::fs::write(root.join("simple/liar-pkg/index.html"), page_html).unwrap();
    let port = free_port();
    let mut http_server = common::guarded("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", root.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_guarded()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    create_proxy("pypi-proxy-liar", &format!("http://127.0.0.1:{port}/"), 1440.0, None);
    let full = std::fs::read(&whl).unwrap();
    for _ in 0..2 {
        let r = get("/repository/pypi-proxy-liar/packages/liar-pkg/liar_pkg-1.0-py3-none-any.whl", None);
        let got = r.bytes();
        assert!(got.is_err() || got.unwrap().len() < full.len(), "the client never gets the whole unverified file");
    }
    let target = tmp.path().join("site");
    assert!(!pip_install("pypi-proxy-liar", &target, &["liar-pkg"]).status.success());
    let _ = http_server.kill();
    let _ = http_server.wait();
}

#[test]
fn a_proxy_of_another_wharf_reads_json_pages_and_pep_658_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, _) = dist(&tmp.path().join("l"), "chained-lib", "0.5", &[]);
    let (app, _) = common::pypi::dist_with_payload(&tmp.path().join("a"), "chained-app", "0.6", &["chained-lib==0.5"], common::pypi::LISTED_METADATA_PAYLOAD);
    ok(twine("pypi-hosted", &[&lib, &app]));
    // The upstream needs credentials: they go with page and file requests to its own origin.
    create_proxy("pypi-proxy-chain", &format!("{}/repository/pypi-hosted/", server().base), 1440.0, Some(("admin", ADMIN_PASSWORD)));
    let p = page("pypi-proxy-chain", "chained-app");
    assert_eq!(p["meta"]["api-version"], "1.1", "JSON upstream pages keep sizes and upload times");
    assert_eq!(p["versions"], json!(["0.6"]));
    let f = &p["files"][0];
    let hash = f["core-metadata"]["sha256"].as_str().expect("PEP 658 metadata is advertised").to_string();
    let md = get("/repository/pypi-proxy-chain/packages/chained-app/chained_app-0.6-py3-none-any.whl.metadata", None);
    assert_eq!(md.status(), StatusCode::OK);
    let md = md.bytes().unwrap();
    assert_eq!(sha256_hex(&md), hash);
    assert!(String::from_utf8_lossy(&md).contains("Requires-Dist: chained-lib==0.5"));
    let target = tmp.path().join("site");
    ok(pip_install("pypi-proxy-chain", &target, &["chained-app"]));
    assert!(target.join("chained_lib/__init__.py").exists());
    // The lib's wheel is small: the upstream lists it without its metadata, and pip never asked
    // for it. The JSON API and the component's details read it from the wheel instead.
    assert_eq!(page("pypi-proxy-chain", "chained-lib")["files"][0]["core-metadata"], json!(false));
    let info: Value = get("/repository/pypi-proxy-chain/pypi/chained-lib/json", None).json().unwrap();
    assert_eq!(info["info"]["summary"], "test package chained-lib", "{info}");
    use base64::Engine as _;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("pypi-proxy-chain\nchained-lib\n0.5");
    let r = server().admin().request(reqwest::Method::GET, &format!("/service/rest/v1/components/{id}")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let detail: Value = r.json().unwrap();
    assert_eq!(detail["details"]["metadataVersion"], "2.1", "{detail}");

    // The upstream replaces the wheel (a new build of 0.6 with other requirements), and the
    // proxy's cache is invalidated: the metadata served is the new file's, as its page says
    // (the first copy was served for good, and pip failed on the page's new hash).
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("pypi-hosted\nchained-app\n0.6");
    let r = server().admin().request(reqwest::Method::DELETE, &format!("/service/rest/v1/components/{id}")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (rebuilt, _) =
        common::pypi::dist_with_payload(&tmp.path().join("a2"), "chained-app", "0.6", &["chained-lib>=0.5"], common::pypi::LISTED_METADATA_PAYLOAD);
    ok(twine("pypi-hosted", &[&rebuilt]));
    let r = server().admin().request(reqwest::Method::POST, "/service/rest/v1/repositories/pypi-proxy-chain/invalidate-cache").send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let p = page("pypi-proxy-chain", "chained-app");
    let new_hash = p["files"][0]["core-metadata"]["sha256"].as_str().unwrap().to_string();
    assert_ne!(new_hash, hash);
    let md = get("/repository/pypi-proxy-chain/packages/chained-app/chained_app-0.6-py3-none-any.whl.metadata", None).bytes().unwrap();
    assert_eq!(sha256_hex(&md), new_hash, "{}", String::from_utf8_lossy(&md));
    assert!(String::from_utf8_lossy(&md).contains("Requires-Dist: chained-lib>=0.5"));
}

#[test]
fn a_group_serves_hosted_projects_first_and_shadows_public_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let pkgs = tmp.path().join("pkgs");
    let (grp_lib, _) = dist(&pkgs, "grp-lib", "1.0", &[]);
    dist(&pkgs, "shadowed-name", "99.0", &[]);
    let up = PypiServer::start(&pkgs);
    create_proxy("pypi-proxy-grp", &up.url(), 1440.0, None);
    let (app, _) = dist(&tmp.path().join("h1"), "grp-app", "1.0", &["grp-lib", "shadowed-name"]);
    let (ours, _) = dist(&tmp.path().join("h2"), "shadowed-name", "1.0", &[]);
    ok(twine("pypi-hosted", &[&app, &ours]));
    let r = create(
        "group",
        json!({
            "name": "pypi-group", "online": true,
            "storage": {"blobStoreName": "default", "strictContentTypeValidation": true},
            "group": {"memberNames": ["pypi-hosted", "pypi-proxy-grp"], "writableMember": "pypi-hosted"},
        }),
    );
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());

    // Not cached yet: a HEAD tells what the cached file will say, without fetching it.
    let url = server().url("/repository/pypi-proxy-grp/packages/grp-lib/grp_lib-1.0-py3-none-any.whl");
    let head = common::client().head(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), format!("\"{}\"", sha256_hex(&std::fs::read(&grp_lib).unwrap())));
    assert_eq!(head.headers()["cache-control"], "max-age=31536000, immutable");
    let target = tmp.path().join("site");
    ok(pip_install("pypi-group", &target, &["grp-app"]));
    assert!(target.join("grp_lib/__init__.py").exists(), "a dependency only the proxy has");
    assert!(std::fs::read_to_string(target.join("shadowed_name/__init__.py")).unwrap().contains("\"1.0\""), "the hosted project wins");
    let dl = tmp.path().join("dl");
    ok(pip(&["download", "--no-cache-dir", "--index-url", &index_url("pypi-group"), "-d", dl.to_str().unwrap(), "grp-app"]));
    assert_eq!(std::fs::read(dl.join("grp_app-1.0-py3-none-any.whl")).unwrap(), std::fs::read(&app).unwrap());
    assert_eq!(std::fs::read(dl.join("grp_lib-1.0-py3-none-any.whl")).unwrap(), std::fs::read(&grp_lib).unwrap());
    assert_eq!(std::fs::read(dl.join("shadowed_name-1.0-py3-none-any.whl")).unwrap(), std::fs::read(&ours).unwrap());
    // Byte ranges of a cached file, from the proxy and through the group, and of a hosted one.
    let lib = std::fs::read(&grp_lib).unwrap();
    common::assert_ranges_served(&server().url("/repository/pypi-proxy-grp/packages/grp-lib/grp_lib-1.0-py3-none-any.whl"), &lib);
    common::assert_ranges_served(&server().url("/repository/pypi-group/packages/grp-lib/grp_lib-1.0-py3-none-any.whl"), &lib);
    common::assert_ranges_served(&server().url("/repository/pypi-group/packages/grp-app/grp_app-1.0-py3-none-any.whl"), &std::fs::read(&app).unwrap());

    // The public 99.0 is neither listed nor downloadable through the group.
    let p = page("pypi-group", "shadowed-name");
    assert_eq!(p["versions"], json!(["1.0"]));
    assert!(p["files"][0]["url"].as_str().unwrap().starts_with(&format!("{}/repository/pypi-group/packages/", server().base)));
    assert_eq!(get("/repository/pypi-group/packages/shadowed-name/shadowed_name-99.0-py3-none-any.whl", None).status(), StatusCode::NOT_FOUND);
    // Through the proxy itself it is there.
    assert!(filenames(&page("pypi-proxy-grp", "shadowed-name")).iter().any(|f| f.contains("99.0")));

    // Uploads to the group land in its writable member.
    let (pushed, _) = dist(&tmp.path().join("h3"), "grp-pushed", "3.0", &[]);
    ok(twine("pypi-group", &[&pushed]));
    assert_eq!(filenames(&page("pypi-hosted", "grp-pushed")), vec!["grp_pushed-3.0-py3-none-any.whl"]);
    let idx: Value = get("/repository/pypi-group/simple/", Some("application/vnd.pypi.simple.v1+json")).json().unwrap();
    let names: Vec<&str> = idx["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"grp-pushed") && names.contains(&"grp-lib"), "{names:?}");
}

#[test]
fn proxy_and_group_configurations_are_validated() {
    let base = json!({"online": true, "storage": {"blobStoreName": "default", "strictContentTypeValidation": true}});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let r = create("proxy", with(json!({"name": "bad-proxy", "proxy": {"contentMaxAge": 1}})));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("proxy.remoteUrl"));
    let r = create("proxy", with(json!({"name": "bad-proxy", "proxy": {"remoteUrl": "ftp://x"}})));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = create("group", with(json!({"name": "bad-group", "group": {"memberNames": ["no-such-repo"]}})));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("no-such-repo"));
    let r = create("group", with(json!({"name": "bad-group", "group": {"memberNames": ["docker-hosted"]}})));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("not pypi"));
    // What was stored reads back in Nexus's shape, defaults filled in.
    create_proxy("pypi-proxy-shape", "https://pypi.org", 60.0, Some(("u", "secret")));
    let v: Value = server().admin().request(reqwest::Method::GET, "/service/rest/v1/repositories/pypi/proxy/pypi-proxy-shape").send().unwrap().json().unwrap();
    assert_eq!(v["proxy"]["remoteUrl"], "https://pypi.org");
    assert_eq!(v["negativeCache"]["enabled"], true);
    assert_ne!(v["httpClient"]["authentication"]["password"], "secret", "passwords are not shown");
}
