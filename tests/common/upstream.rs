//! A small upstream PyPI index (and npm registry, and Docker registry for blobs) for proxy
//! tests, written here so that a test sees every request it gets (method, path, User-Agent,
//! Authorization), counts them at the server, and can make it hang (accept and never answer),
//! fail (503), ask for credentials, or hold a file's (tarball's, blob's) body until the test
//! lets it go.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Answer,
    /// Accept connections and never answer.
    Hang,
    /// Answer every request with 503.
    Fail,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub authorization: Option<String>,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Files {
    /// project → file names on its page.
    pages: HashMap<String, Vec<String>>,
    /// file name → (bytes, Content-Type).
    files: HashMap<String, (Vec<u8>, String)>,
    /// npm package → (version, tarball bytes).
    npm: HashMap<String, Vec<(String, Vec<u8>)>>,
    /// npm package → its packument as given (no tarballs).
    npm_docs: HashMap<String, Vec<u8>>,
    /// Docker blobs: `<image>/blobs/<digest>` → bytes.
    blobs: HashMap<String, Vec<u8>>,
    /// Docker manifests: `<image>/manifests/<tag or digest>` → (bytes, media type, digest).
    manifests: HashMap<String, (Vec<u8>, String, String)>,
}

struct State {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
    files: Mutex<Files>,
    /// `Authorization` value required, answered 401 with a Basic challenge otherwise.
    require: Mutex<Option<String>>,
    /// A Docker-style Bearer challenge naming this token realm: every request but `/token...`
    /// without `Authorization: Bearer upstream-token` gets 401 and the challenge; `/token`
    /// answers that token.
    bearer_realm: Mutex<Option<String>>,
    /// Docker Hub's rate limiting: the next `n` requests under `/v2/` answer 429 with this
    /// `Retry-After`; every answer under `/v2/` carries the `ratelimit-limit` and
    /// `ratelimit-remaining` values.
    throttle: Mutex<(u32, String)>,
    rate_limit: Mutex<Option<(String, String)>>,
    /// While set, a file's body stops after its first half until [`Upstream::release`].
    hold: Mutex<bool>,
    held: Condvar,
    stop: AtomicBool,
}

pub struct Upstream {
    pub port: u16,
    state: Arc<State>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Answer),
            seen: Mutex::default(),
            files: Mutex::default(),
            require: Mutex::default(),
            bearer_realm: Mutex::default(),
            throttle: Mutex::default(),
            rate_limit: Mutex::default(),
            hold: Mutex::new(false),
            held: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Upstream { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Adds `filename` (served as `content_type`) to `project`'s page.
    pub fn add(&self, project: &str, filename: &str, data: Vec<u8>, content_type: &str) {
        let mut f = self.state.files.lock().unwrap();
        f.pages.entry(project.to_string()).or_default().push(filename.to_string());
        f.files.insert(filename.to_string(), (data, content_type.to_string()));
    }

    /// Adds `version` of the npm package `name` (unscoped): its packument at `/<name>`, the
    /// tarball at `/<name>/-/<name>-<version>.tgz` with its sha512 integrity.
    pub fn add_npm(&self, name: &str, version: &str, tgz: Vec<u8>) {
        self.state.files.lock().unwrap().npm.entry(name.to_string()).or_default().push((version.to_string(), tgz));
    }

    /// Serves `doc` as the packument of npm package `name` (unscoped), as it is.
    pub fn add_npm_doc(&self, name: &str, doc: Vec<u8>) {
        self.state.files.lock().unwrap().npm_docs.insert(name.to_string(), doc);
    }

    /// Adds a Docker blob of image `name` (served at `/v2/<name>/blobs/<digest>`); its digest.
    pub fn add_blob(&self, name: &str, data: Vec<u8>) -> String {
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)));
        self.state.files.lock().unwrap().blobs.insert(format!("{name}/blobs/{digest}"), data);
        digest
    }

    /// Adds a Docker manifest of image `name` under `tag` and under its digest; its digest.
    pub fn add_manifest(&self, name: &str, tag: &str, data: Vec<u8>, media_type: &str) -> String {
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)));
        let mut f = self.state.files.lock().unwrap();
        for r in [tag, digest.as_str()] {
            f.manifests.insert(format!("{name}/manifests/{r}"), (data.clone(), media_type.to_string(), digest.clone()));
        }
        digest
    }

    /// The next `n` requests under `/v2/` answer 429 with `Retry-After: <retry_after>`.
    pub fn throttle(&self, n: u32, retry_after: &str) {
        *self.state.throttle.lock().unwrap() = (n, retry_after.to_string());
    }

    /// Answers under `/v2/` carry Docker Hub's `ratelimit-limit` and `ratelimit-remaining`.
    pub fn rate_limit(&self, limit: &str, remaining: &str) {
        *self.state.rate_limit.lock().unwrap() = Some((limit.to_string(), remaining.to_string()));
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn require_auth(&self, user: &str, password: &str) {
        use base64::Engine;
        *self.state.require.lock().unwrap() = Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))));
    }

    /// Answers like a registry behind the token flow whose realm is `realm` (see `State::bearer_realm`).
    pub fn challenge_bearer(&self, realm: &str) {
        *self.state.bearer_realm.lock().unwrap() = Some(realm.to_string());
    }

    pub fn hold(&self) {
        *self.state.hold.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.state.hold.lock().unwrap() = false;
        self.state.held.notify_all();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many requests for `path` (any method) arrived.
    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.release();
        self.set_mode(Mode::Answer);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, s: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 << 10 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    s.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        user_agent: header("user-agent"),
        authorization: header("authorization"),
        at: std::time::Instant::now(),
    });
    // An index or registry under a path of the host: `/mirror/simple/...`, `/mirror/npm/...`.
    let path = ["/mirror/npm", "/mirror"].iter().find_map(|p| path.strip_prefix(p)).map(str::to_string).unwrap_or(path);
    let mode = *s.mode.lock().unwrap();
    match mode {
        Mode::Hang => {
            // Hold the connection, silent, until the test ends the hang (then close it).
            while *s.mode.lock().unwrap() == Mode::Hang && !s.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        Mode::Fail => return respond(&mut conn, "503 Service Unavailable", "text/plain", b"down", &[]),
        Mode::Answer => {}
    }
    let required = s.require.lock().unwrap().clone();
    if let Some(r) = required {
        if header("authorization").as_deref() != Some(r.as_str()) {
            return respond(&mut conn, "401 Unauthorized", "text/plain", b"who are you", &["WWW-Authenticate: Basic realm=\"upstream\""]);
        }
    }
    let realm = s.bearer_realm.lock().unwrap().clone();
    if let Some(realm) = realm {
        if path.starts_with("/token") {
            return respond(&mut conn, "200 OK", "application/json", br#"{"token": "upstream-token", "expires_in": 60}"#, &[]);
        }
        if header("authorization").as_deref() != Some("Bearer upstream-token") {
            let challenge = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"upstream\"");
            return respond(&mut conn, "401 Unauthorized", "application/json", b"{}", &[&challenge]);
        }
    }
    let limits = s.rate_limit.lock().unwrap().clone().filter(|_| path.starts_with("/v2/"));
    let limits: Vec<String> = limits.map(|(l, r)| vec![format!("ratelimit-limit: {l}"), format!("ratelimit-remaining: {r}")]).unwrap_or_default();
    let limits: Vec<&str> = limits.iter().map(String::as_str).collect();
    {
        let mut t = s.throttle.lock().unwrap();
        if t.0 > 0 && path.starts_with("/v2/") {
            t.0 -= 1;
            let retry = format!("Retry-After: {}", t.1);
            drop(t);
            let mut extra = limits.clone();
            extra.push(&retry);
            let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
            return respond(&mut conn, "429 Too Many Requests", "application/json", body, &extra);
        }
    }
    let files = s.files.lock().unwrap();
    if let Some((data, ct, digest)) = path.strip_prefix("/v2/").and_then(|p| files.manifests.get(p)).cloned() {
        drop(files);
        let dcd = format!("Docker-Content-Digest: {digest}");
        let mut extra = limits.clone();
        extra.push(&dcd);
        let body = if method == "HEAD" { &b""[..] } else { &data[..] };
        return respond(&mut conn, "200 OK", &ct, body, &extra);
    }
    if let Some(project) = path.strip_prefix("/simple/").map(|p| p.trim_end_matches('/')).filter(|p| !p.is_empty()) {
        let Some(names) = files.pages.get(project) else { return respond(&mut conn, "404 Not Found", "text/plain", b"no", &[]) };
        let mut html = String::from("<!DOCTYPE html><html><body>\n");
        for n in names {
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&files.files[n].0));
            html.push_str(&format!("<a href=\"/files/{n}#sha256={sha}\">{n}</a><br/>\n"));
        }
        html.push_str("</body></html>\n");
        drop(files);
        return respond(&mut conn, "200 OK", "text/html", html.as_bytes(), &[]);
    }
    if let Some(doc) = files.npm_docs.get(path.trim_start_matches('/')).cloned() {
        drop(files);
        return respond(&mut conn, "200 OK", "application/json", &doc, &[]);
    }
    if let Some(versions) = files.npm.get(path.trim_start_matches('/')) {
        use base64::Engine;
        let name = path.trim_start_matches('/');
        let mut all = serde_json::Map::new();
        for (v, tgz) in versions {
            let integrity = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(<sha2::Sha512 as sha2::Digest>::digest(tgz)));
            let tarball = format!("http://127.0.0.1:{}/{name}/-/{name}-{v}.tgz", conn.local_addr().unwrap().port());
            all.insert(v.clone(), serde_json::json!({"name": name, "version": v, "dist": {"tarball": tarball, "integrity": integrity}}));
        }
        let latest = versions.last().map(|(v, _)| v.clone()).unwrap_or_default();
        let doc = serde_json::json!({"name": name, "dist-tags": {"latest": latest}, "versions": all});
        drop(files);
        return respond(&mut conn, "200 OK", "application/json", doc.to_string().as_bytes(), &[]);
    }
    let tarball = path.split_once("/-/").and_then(|(n, file)| {
        let versions = files.npm.get(n.trim_start_matches('/'))?;
        versions.iter().find(|(v, _)| file == format!("{}-{v}.tgz", n.trim_start_matches('/'))).map(|(_, t)| t.clone())
    });
    if let Some(tgz) = tarball {
        drop(files);
        return respond_holding(&mut conn, s, "application/octet-stream", &tgz);
    }
    if let Some(data) = path.strip_prefix("/v2/").and_then(|p| files.blobs.get(p)).cloned() {
        drop(files);
        if method == "HEAD" {
            return respond(&mut conn, "200 OK", "application/octet-stream", b"", &limits);
        }
        return respond_holding(&mut conn, s, "application/octet-stream", &data);
    }
    if let Some((data, ct)) = path.strip_prefix("/files/").and_then(|n| files.files.get(n)).cloned() {
        drop(files);
        if method == "HEAD" {
            return respond(&mut conn, "200 OK", &ct, b"", &[]);
        }
        return respond_holding(&mut conn, s, &ct, &data);
    }
    drop(files);
    // The base URL and anything else (the health probe's HEAD): present.
    respond(&mut conn, "200 OK", "text/plain", b"ok", &[])
}

/// A 200 with `data`, its second half held back while [`Upstream::hold`] is in force.
fn respond_holding(conn: &mut TcpStream, s: &State, ct: &str, data: &[u8]) {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len());
    let half = data.len() / 2;
    if conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(&data[..half])).and_then(|()| conn.flush()).is_err() {
        return;
    }
    let mut hold = s.hold.lock().unwrap();
    while *hold {
        hold = s.held.wait(hold).unwrap();
    }
    drop(hold);
    let _ = conn.write_all(&data[half..]);
}

fn respond(conn: &mut TcpStream, status: &str, ct: &str, body: &[u8], extra: &[&str]) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for e in extra {
        head.push_str(e);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}
