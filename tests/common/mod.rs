//! Test harness: starts the real `wharf` binary on an ephemeral loopback port.
//!
//! One server per test file (a `OnceLock` in the file), so a test file pays one start.
//! The server exits when our end of its stdin closes (`WHARF_EXIT_ON_STDIN_EOF`), so a
//! test binary that ends, or panics, never leaves a server behind.
#![allow(dead_code)]

pub mod npm;
pub mod oci;
pub mod pypi;
pub mod s3;
pub mod slapd;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "test-admin-password";

pub struct TestServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    database_url: Option<String>,
}

impl TestServer {
    /// Starts a server on an empty data dir. The database is SQLite in the data dir, unless
    /// `WHARF_TEST_DATABASE_URL` names a PostgreSQL server: then a fresh database is created
    /// on it for this server.
    pub fn start() -> TestServer {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> TestServer {
        let mut s = Self::unstarted(env);
        s.spawn();
        s
    }

    /// A server not started yet, on an empty data dir and database (for a test that prepares
    /// the database before the first start: [`TestServer::command`], then [`TestServer::spawn`]).
    pub fn unstarted(env: &[(&str, &str)]) -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let database_url = std::env::var("WHARF_TEST_DATABASE_URL").ok().map(|u| fresh_pg_database(&u));
        let mut extra_env: Vec<(String, String)> = Vec::new();
        if s3::servers_on_s3() {
            let s3 = s3::env().expect("WHARF_TEST_BLOB_STORE=s3 needs WHARF_TEST_S3_* (tests/run.sh starts SeaweedFS)");
            extra_env.extend(s3.server_env(&format!("test-{}", uuid_like())));
        }
        extra_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestServer { base: String::new(), addr: String::new(), data_dir, _tmp: Some(tmp), child: None, extra_env, database_url }
    }

    /// A second node: another process on the same data dir (blob store) and database.
    pub fn second_node(&self) -> TestServer {
        let mut s = TestServer {
            base: String::new(),
            addr: String::new(),
            data_dir: self.data_dir.clone(),
            _tmp: None,
            child: None,
            extra_env: self.extra_env.clone(),
            database_url: self.database_url.clone(),
        };
        // spawn() removes the shared address file before starting, so it waits for this node's.
        s.spawn();
        s
    }

    /// Another node on this server's database (SQLite file or PostgreSQL database) with a data
    /// dir of its own, as a node on another host would have; `env` is added to this server's.
    pub fn node_on_own_data_dir(&self, env: &[(&str, &str)]) -> TestServer {
        let mut s = self.unstarted_node_on_own_data_dir(env);
        s.spawn();
        s
    }

    /// The same, not started (for [`TestServer::command`]).
    pub fn unstarted_node_on_own_data_dir(&self, env: &[(&str, &str)]) -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut extra_env = self.extra_env.clone();
        extra_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestServer {
            base: String::new(),
            addr: String::new(),
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            child: None,
            extra_env,
            database_url: Some(self.database_url()),
        }
    }

    /// Whether the blob with this digest (`sha256:<hex>`) is in the server's `default` store,
    /// asked of the store itself (its directory, or its bucket).
    pub fn store_holds(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let rel = format!("blobs/sha256/{}/{hex}", &hex[..2]);
        match self.extra_env.iter().find(|(k, _)| k == "WHARF_S3__PREFIX") {
            Some((_, prefix)) => {
                let key = format!("{prefix}/{rel}");
                s3::env().expect("an S3 gateway").keys(&key).contains(&key)
            }
            None => self.data_dir.join("blobs/default").join(rel).exists(),
        }
    }

    /// Where the `default` store stages one-shot uploads on this node (in its directory, or for
    /// an S3 store in the node's scratch directory).
    pub fn staging_dir(&self) -> PathBuf {
        if self.extra_env.iter().any(|(k, _)| k == "WHARF_S3__PREFIX") {
            self.data_dir.join("tmp/s3/default/uploads")
        } else {
            self.data_dir.join("blobs/default/uploads")
        }
    }

    /// The database URL the server uses.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("wharf.db").display()))
    }

    /// Runs `stmt` on the server's database (psql or sqlite3); what it printed.
    pub fn sql(&self, stmt: &str) -> String {
        let out = if self.is_postgres() {
            Command::new("psql").arg(self.database_url()).args(["-v", "ON_ERROR_STOP=1", "-tAc", stmt]).output()
        } else {
            Command::new("sqlite3").arg(self.data_dir().join("wharf.db")).arg(stmt).output()
        }
        .expect("psql or sqlite3");
        assert!(out.status.success(), "{stmt}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url().starts_with("postgres")
    }

    /// The command that starts this server (for a start expected to fail: `.output()`).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .env("WHARF_LISTEN", "127.0.0.1:0")
            .env("WHARF_DATA_DIR", &self.data_dir)
            .env("WHARF_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("WHARF_EXIT_ON_STDIN_EOF", "1")
            // The nightly cleanup and compaction run when a test asks, never because the clock
            // passed 01:00 during a test.
            .env("WHARF_GC__SCHEDULE", "")
            .env("WHARF_GC__CLEANUP_SCHEDULE", "")
            .env("RUST_LOG", std::env::var("WHARF_TEST_LOG").unwrap_or_else(|_| "warn,actix_http::h1::dispatcher=off".into()))
            .stdin(Stdio::piped());
        if let Some(url) = &self.database_url {
            cmd.env("WHARF_DATABASE_URL", url);
        }
        for (k, v) in &self.extra_env {
            // Not a server setting: the configuration file to pass with --config.
            if k == "WHARF_TEST_CONFIG_FILE" {
                cmd.arg("--config").arg(v);
                continue;
            }
            // Nor is this: a file the server's output (its log is on stdout) is appended to,
            // each start adding to it.
            if k == "WHARF_TEST_LOG_FILE" {
                let file = || std::fs::OpenOptions::new().create(true).append(true).open(v).expect("the log file");
                cmd.stdout(file()).stderr(file());
                continue;
            }
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts (or restarts) the process on the same data dir and database.
    pub fn spawn(&mut self) {
        let addr_file = self.data_dir.join("wharf.addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = self.command().spawn().expect("start wharf");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                let a = a.trim().to_string();
                if !a.is_empty() {
                    self.addr = a;
                    break;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wharf exited during start: {status}");
            }
            assert!(Instant::now() < deadline, "wharf did not start within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.base = format!("http://{}", self.addr);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself; its status, or `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A blocking client that sends admin credentials.
    pub fn admin(&self) -> Admin {
        Admin { base: self.base.clone(), http: client() }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a new database on the PostgreSQL server of `url` and returns its URL.
/// The databases a storage-level test runs on, by backend name and URL: a fresh SQLite file,
/// and a fresh PostgreSQL database when `WHARF_TEST_DATABASE_URL` names a server (required
/// when `WHARF_TEST_REQUIRE_PG` is set, as in CI).
pub fn test_databases() -> Vec<(String, String)> {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let mut out = vec![("sqlite".to_string(), format!("sqlite://{}", dir.join("t.db").display()))];
    match std::env::var("WHARF_TEST_DATABASE_URL") {
        Ok(url) => out.push(("postgres".to_string(), fresh_pg_database(&url))),
        Err(_) => assert!(std::env::var("WHARF_TEST_REQUIRE_PG").is_err(), "WHARF_TEST_REQUIRE_PG is set but no PostgreSQL URL"),
    }
    out
}

fn fresh_pg_database(url: &str) -> String {
    let name = format!("wharf_test_{}", uuid_like());
    let out = Command::new("psql").arg(url).arg("-v").arg("ON_ERROR_STOP=1").arg("-c").arg(format!("CREATE DATABASE {name}")).output().expect("psql");
    assert!(out.status.success(), "CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr));
    let (head, _) = url.rsplit_once('/').expect("database url has a path");
    format!("{head}/{name}")
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

pub struct Admin {
    pub base: String,
    pub http: reqwest::blocking::Client,
}

impl Admin {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path)).basic_auth("admin", Some(ADMIN_PASSWORD))
    }

    /// A call with an optional JSON body: the status, and the answer as JSON (or its text as a
    /// JSON string).
    pub fn json(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> (reqwest::StatusCode, serde_json::Value) {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().unwrap();
        let status = res.status();
        let text = res.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// POST /service/rest/v1/repositories/docker/hosted with the given JSON; panics unless 201.
    pub fn create_docker_hosted(&self, body: serde_json::Value) {
        let r = self.request(reqwest::Method::POST, "/service/rest/v1/repositories/docker/hosted").json(&body).send().unwrap();
        let status = r.status();
        assert_eq!(status.as_u16(), 201, "create repository: {}", r.text().unwrap_or_default());
    }
}

/// Runs `"$@"` in the background and kills it (SIGKILL) as soon as our end of the shell's stdin
/// closes: when [`Guarded`] stops it, and when the test binary exits however it exits (the
/// kernel closes the pipe even on SIGKILL). Statics (one upstream per test file) are never
/// dropped, so a `Drop` alone would leave them running.
// The reader runs in the background because a shell runs traps only between commands: a
// foreground `read` would hold off a SIGTERM to the guard, and the guard would die alone.
const GUARD_SCRIPT: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
child=$!
(read -r _ <&3 || :) &
reader=$!
exec 3<&-
trap 'kill -KILL "$child" "$reader" 2>/dev/null; wait; exit 143' HUP INT TERM
wait "$reader"
kill -KILL "$child" 2>/dev/null
wait "$child"
"#;

/// A `Command` for a long-lived helper process (an upstream registry, slapd, ...) that dies
/// with the test binary: add arguments, environment and output as usual, then
/// [`SpawnGuarded::spawn_guarded`]. Its stdin is /dev/null.
pub fn guarded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(GUARD_SCRIPT).arg("wharf-test-guard").arg(program).stdin(Stdio::piped());
    cmd
}

pub trait SpawnGuarded {
    fn spawn_guarded(&mut self) -> std::io::Result<Guarded>;
}

impl SpawnGuarded for Command {
    fn spawn_guarded(&mut self) -> std::io::Result<Guarded> {
        Ok(Guarded { shell: self.spawn()? })
    }
}

/// A helper process started by [`guarded`]: `kill` then `wait` stop it for good.
pub struct Guarded {
    shell: Child,
}

impl Guarded {
    /// Asks the guard to kill the process (it does at once; [`Guarded::wait`] waits for that).
    pub fn kill(&mut self) -> std::io::Result<()> {
        drop(self.shell.stdin.take());
        Ok(())
    }

    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        drop(self.shell.stdin.take());
        self.shell.wait()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

/// A free loopback port (bound, then released: only for configs that need a number up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Fails unless a HEAD of `url` answers as its GET does: status, content type and length
/// (RFC 9110: the same header fields, without the body). `headers` go with both.
pub fn assert_head_matches_get(url: &str, headers: &[(&str, &str)]) {
    let send = |method: reqwest::Method| {
        let mut req = client().request(method, url).basic_auth("admin", Some(ADMIN_PASSWORD));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().unwrap()
    };
    let head = send(reqwest::Method::HEAD);
    let get = send(reqwest::Method::GET);
    let field = |r: &reqwest::blocking::Response, name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(head.status(), get.status(), "{url}");
    assert_eq!(field(&head, "content-type"), field(&get, "content-type"), "{url}");
    let (head_length, body) = (field(&head, "content-length"), get.bytes().unwrap());
    assert_eq!(head_length, Some(body.len().to_string()), "a HEAD of {url} tells the GET's length");
    assert!(head.bytes().unwrap().is_empty(), "{url}");
}

/// Fails unless `url` (a stored file whose bytes are `whole`) answers byte ranges as RFC 9110
/// says: one range, a suffix, an open end, several ranges (the whole file), and a range past
/// the end (416 naming the size).
pub fn assert_ranges_served(url: &str, whole: &[u8]) {
    let get = |range: &str| client().get(url).basic_auth("admin", Some(ADMIN_PASSWORD)).header("Range", range).send().unwrap();
    let len = whole.len();
    for (range, start, end) in
        [("bytes=10-109", 10, 110), (&format!("bytes=-{}", 100) as &str, len - 100, len), (&format!("bytes={}-", len - 7) as &str, len - 7, len)]
    {
        let r = get(range);
        assert_eq!(r.status(), reqwest::StatusCode::PARTIAL_CONTENT, "{url} {range}");
        assert_eq!(r.headers()["content-range"], format!("bytes {start}-{}/{len}", end - 1).as_str(), "{url} {range}");
        assert_eq!(r.bytes().unwrap().as_ref(), &whole[start..end], "{url} {range}");
    }
    let r = get("bytes=0-0,5-9");
    assert_eq!(r.status(), reqwest::StatusCode::OK, "several ranges: the whole file");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().unwrap().as_ref(), whole);
    let r = get(&format!("bytes={len}-"));
    assert_eq!(r.status(), reqwest::StatusCode::RANGE_NOT_SATISFIABLE, "{url}");
    assert_eq!(r.headers()["content-range"], format!("bytes */{len}").as_str());
}

/// A blocking HTTP client whose idle connections are dropped well before the server's
/// keep-alive timeout (actix's 5 s) closes them: a connection the server closes just as the
/// client sends on it fails the request (`IncompleteMessage`), which on a busy machine made a
/// test that paused between two requests of one client fail by timing.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().expect("an HTTP client")
}
