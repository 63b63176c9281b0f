//! The command line: `wharf config` shows the effective configuration with secrets masked; the
//! test command (tests/run.sh) fails when a test leaves a process behind; a start that a
//! migration would fail on names the problem and what to do; a start raises its limit on open
//! files; credentials that the database cannot check now are 503, not 401.

mod common;

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

#[test]
fn config_shows_file_then_environment_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nadmin_password = \"from-file\"\n[docker]\ntoken_ttl_secs = 60\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["config", "--config"])
        .arg(&file)
        .env("WHARF_DOCKER__TOKEN_TTL_SECS", "120")
        .env("WHARF_DATABASE_URL", "postgres://wharf:hunter2@db:5432/wharf")
        .env("WHARF_TEST_SOMETHING_ELSE", "ignored")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(cfg["listen"].as_str(), Some("0.0.0.0:9000"), "from the file");
    assert_eq!(cfg["docker"]["token_ttl_secs"].as_integer(), Some(120), "the environment wins over the file");
    assert_eq!(cfg["admin_password"].as_str(), Some("********"));
    assert_eq!(cfg["database_url"].as_str(), Some("postgres://wharf:********@db:5432/wharf"));
    assert!(!text.contains("hunter2") && !text.contains("from-file"), "{text}");
}

#[test]
fn an_unknown_key_in_the_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, "listn = \"0.0.0.0:9000\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf")).args(["config", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The test command (tests/run.sh, through tests/leftovers.sh) kills what a test left running
/// and then fails, even when every test passed; a run that failed keeps its exit code.
#[test]
fn the_test_command_fails_when_a_test_leaves_a_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, body: &str| {
        let pid_file = dir.path().join(format!("{name}.pid"));
        let script = format!(
            "set -euo pipefail\n. {lib}\ncleaned() {{ echo cleaned; }}\nleftovers_on_exit cleaned\nPID_FILE={pid}\n{body}\n",
            lib = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/leftovers.sh"),
            pid = pid_file.display()
        );
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        let left = std::fs::read_to_string(&pid_file).ok().map(|p| p.trim().parse::<u32>().unwrap());
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string(), left)
    };
    // A "test" that passes and leaves a sleep running in its group.
    let leaves = r#"in_own_group sh -c 'sleep 30 & echo $! > "$0"' "$PID_FILE""#;
    let gone = |pid: u32| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z")) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    };

    let (code, stdout, stderr, left) = run("passed-but-left", leaves);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("left processes behind") && stderr.contains("sleep 30"), "{stderr}");
    assert!(stdout.contains("cleaned"), "the script's own cleanup still runs");
    assert!(gone(left.expect("the sleep's pid")), "the leftover was killed");

    let (code, _, stderr, left) = run("failed-and-left", &format!("{leaves}\nin_own_group sh -c 'exit 3'"));
    assert_eq!(code, Some(3), "a failed run keeps its exit code: {stderr}");
    assert!(gone(left.unwrap()));

    let (code, stdout, stderr, _) = run("clean", "in_own_group true");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("cleaned") && !stderr.contains("left"), "{stderr}");
    let (code, _, _, _) = run("failed", "in_own_group sh -c 'exit 4'");
    assert_eq!(code, Some(4));
}

/// Migrates `conn` up to (not including) the migration named `stop`.
fn migrate_until<DB: diesel::backend::Backend>(conn: &mut impl MigrationHarness<DB>, source: EmbeddedMigrations, stop: &str)
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    for next in conn.pending_migrations(source).unwrap() {
        if next.name().to_string() == stop {
            return;
        }
        conn.run_migration(&*next).unwrap();
    }
    panic!("no migration {stop}");
}

/// A database from before user names ignored case, holding `Admin` and `admin`: the start
/// stops before migrating, names both users and says what to do; with one of them gone, it
/// starts.
#[test]
fn a_start_that_would_fail_on_users_differing_only_in_case_names_them() {
    const IDENTITY: &str = "2026-12-01-000001_identity";
    let mut s = TestServer::unstarted(&[]);
    std::fs::create_dir_all(s.data_dir()).unwrap();
    let sql = |statement: &str| {
        let url = s.database_url();
        if s.is_postgres() {
            let mut c = diesel::PgConnection::establish(&url).unwrap();
            migrate_until(&mut c, wharf::db::POSTGRES_MIGRATIONS, IDENTITY);
            diesel::sql_query(statement).execute(&mut c).unwrap();
        } else {
            let mut c = diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
            migrate_until(&mut c, wharf::db::SQLITE_MIGRATIONS, IDENTITY);
            diesel::sql_query(statement).execute(&mut c).unwrap();
        }
    };
    // `ÉMILE` and `émile`: one name where the index folds more than ASCII (PostgreSQL's lower()),
    // two on SQLite; the check folds as the index will.
    sql("INSERT INTO users (username, password_hash, created_at) VALUES \
         ('admin', 'x', 0), ('Admin', 'x', 0), ('bob', 'x', 0), ('carol', 'x', 0), ('émile', 'x', 0), ('ÉMILE', 'x', 0)");
    // Tokens: bob's own; one left by renaming a user `Carol` without its tokens, which would
    // become carol's; one of a directory user, whose name no local user has in any case.
    sql("INSERT INTO api_tokens (id, username, token_hash, prefix, created_at) VALUES \
         ('t1', 'bob', 'h1', 'p', 0), ('t2', 'Carol', 'h2', 'p', 0), ('t3', 'dave-ldap', 'h3', 'p', 0)");
    let failed = |s: &TestServer| {
        let (status, err) = exit_within(s.command(), Duration::from_secs(60));
        assert!(!status.success(), "{err}");
        err
    };
    let err = failed(&s);
    assert!(err.contains(r#""Admin" and "admin""#) && !err.contains("bob") && !err.contains("dave"), "the clashing users are named: {err}");
    assert!(err.contains(r#""Carol" (would become "carol"'s)"#), "and the token that would change hands: {err}");
    if s.is_postgres() {
        assert!(err.contains(r#""Admin" and "admin"; "ÉMILE" and "émile""#), "PostgreSQL's lower() folds É: {err}");
    } else {
        assert!(!err.contains("mile"), "SQLite's lower() folds ASCII only: {err}");
    }
    assert!(err.contains(IDENTITY) && err.contains("DELETE /service/rest/v1/security/users/"), "and what to do: {err}");
    assert!(err.contains("UPDATE users") && err.contains("UPDATE api_tokens") && err.contains("DELETE FROM api_tokens"), "renaming takes the tokens: {err}");
    sql("DELETE FROM users WHERE username IN ('Admin', 'ÉMILE')");
    let err = failed(&s);
    assert!(!err.contains("Admin") && err.contains(r#""Carol""#), "the token alone still stops the start: {err}");
    sql("DELETE FROM api_tokens WHERE username = 'Carol'");
    s.spawn();
    let r = reqwest::blocking::get(s.url("/service/rest/v1/status")).unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// A database that a newer version migrated (an upgrade rolled back by starting the old binary
/// again, or a node left on the old version): the start stops, names the migration it does not
/// know and says what to do, and changes nothing; a running node stops once it sees one.
#[test]
fn a_start_on_a_database_a_newer_version_migrated_stops_and_names_it() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut s = TestServer::unstarted(&[("WHARF_TEST_LOG_FILE", log.path().to_str().unwrap())]);
    s.spawn();
    s.kill();
    let (url, postgres) = (s.database_url(), s.is_postgres());
    let sql = |statement: &str| {
        if postgres {
            diesel::sql_query(statement).execute(&mut diesel::PgConnection::establish(&url).unwrap()).unwrap()
        } else {
            let mut c = diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
            // Beside the running server, whose writes hold the lock for moments.
            diesel::connection::SimpleConnection::batch_execute(&mut c, "PRAGMA busy_timeout = 10000;").unwrap();
            diesel::sql_query(statement).execute(&mut c).unwrap()
        }
    };
    sql("INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000001')");
    let addr = s.data_dir().join("wharf.addr");
    std::fs::remove_file(&addr).unwrap();
    let (status, err) = exit_within(s.command(), Duration::from_secs(60));
    assert!(!status.success(), "{err}");
    assert!(!addr.exists(), "refused before it listened (not stopped later by the running check): {err}");
    assert!(err.contains("migrated by a newer version of wharf") && err.contains("migration 20991231000001 is unknown"), "{err}");
    assert!(err.contains("restore the backup taken before the upgrade") && err.contains("not changed"), "and what to do: {err}");
    assert_eq!(sql("DELETE FROM __diesel_schema_migrations WHERE version = '20991231000001'"), 1, "the row is still there");
    s.spawn();
    let r = reqwest::blocking::get(s.url("/service/rest/v1/status")).unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Running, when a newer node migrates the database under it: it stops, and not as a clean stop.
    sql("INSERT INTO __diesel_schema_migrations (version) VALUES ('20991231000002')");
    let status = s.wait_exit(Duration::from_secs(60)).expect("the node stops within a minute");
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(status.code(), Some(1), "{status}: {logged}");
    assert!(logged.contains("migration 20991231000002 is unknown") && logged.contains("This node stops"), "{logged}");
}

/// While the database does not answer (PostgreSQL refusing the server's connections), a caller
/// the server cannot identify is told 503 in each protocol's shape, never 401: a client would
/// take good credentials for bad ones (`docker login`: "incorrect username or password"). Once
/// the database answers again, the same credentials work. SQLite is a file the server keeps
/// open: only the PostgreSQL run can take it away.
#[test]
fn credentials_the_database_cannot_check_now_are_503_not_401() {
    let mut s = TestServer::unstarted(&[]);
    if !s.is_postgres() {
        return;
    }
    s.spawn();
    // Remembered by the login cache before the outage: a password, a bearer token, an API token.
    let bearer = common::client()
        .get(s.url("/v2/token?service=wharf&scope=repository:docker-hosted/app:pull"))
        .basic_auth("remembered", Some("remembered-pw-1"))
        .send()
        .unwrap();
    assert_eq!(bearer.status(), reqwest::StatusCode::UNAUTHORIZED, "no such user yet");
    let r = s
        .admin()
        .request(reqwest::Method::POST, "/service/rest/v1/security/users")
        .json(&serde_json::json!({"userId": "remembered", "password": "remembered-pw-1", "roles": ["nx-admin"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let bearer: serde_json::Value = common::client()
        .get(s.url("/v2/token?service=wharf&scope=repository:docker-hosted/app:pull"))
        .basic_auth("remembered", Some("remembered-pw-1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let bearer = bearer["token"].as_str().unwrap().to_string();
    let api_token: serde_json::Value = common::client()
        .post(s.url("/service/rest/v1/security/tokens"))
        .basic_auth("remembered", Some("remembered-pw-1"))
        .json(&serde_json::json!({"name": "outage"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let api_token = api_token["token"].as_str().unwrap().to_string();
    let remembered = |auth: &dyn Fn(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder, path: &str| {
        let r = auth(common::client().get(s.url(path))).send().unwrap();
        (r.status(), r.text().unwrap())
    };
    let with_password = |r: reqwest::blocking::RequestBuilder| r.basic_auth("remembered", Some("remembered-pw-1"));
    let with_bearer = |r: reqwest::blocking::RequestBuilder| r.bearer_auth(&bearer);
    let with_token = |r: reqwest::blocking::RequestBuilder| r.bearer_auth(&api_token);
    for (auth, path) in [
        (&with_password as &dyn Fn(_) -> _, "/v2/docker-hosted/app/tags/list"),
        (&with_password, "/repository/pypi-hosted/simple/"),
        (&with_bearer, "/v2/docker-hosted/app/tags/list"),
        (&with_token, "/repository/npm-hosted/app"),
    ] {
        let (status, body) = remembered(auth, path);
        assert!(status.is_success() || status == reqwest::StatusCode::NOT_FOUND, "{path} before the outage: {status} {body}");
    }
    let url = s.database_url();
    let (head, name) = url.rsplit_once('/').unwrap();
    let admin_sql = |statement: &str| {
        let out = Command::new("psql").arg(format!("{head}/postgres")).arg("-v").arg("ON_ERROR_STOP=1").arg("-c").arg(statement).output().unwrap();
        assert!(out.status.success(), "{statement}: {}", String::from_utf8_lossy(&out.stderr));
    };
    /// Lets the server's connections in again however the test ends (its stop needs them).
    struct Reopen<F: Fn()>(F);
    impl<F: Fn()> Drop for Reopen<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    let reopen = Reopen(|| admin_sql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")));
    // Waits (up to 5 s each) for the backends to be gone, not only signalled.
    admin_sql(&format!("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{name}'"));
    let get = |path: &str, credentials: bool| {
        let mut r = common::client().get(s.url(path));
        if credentials {
            r = r.basic_auth("admin", Some(common::ADMIN_PASSWORD));
        }
        let r = r.send().unwrap();
        let (status, retry) = (r.status(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()));
        (status, retry, r.text().unwrap())
    };
    // Side by side: each waits out the pool's connection timeout (10 s). The last asks for an
    // anonymous token.
    let paths = [
        ("/v2/", true),
        ("/v2/token?service=wharf", true),
        ("/v2/docker-hosted/app/tags/list", true),
        ("/repository/npm-hosted/app", true),
        ("/repository/pypi-hosted/simple/", true),
        ("/service/rest/v1/repositories", true),
        ("/v2/token?service=wharf", false),
    ];
    let answers: Vec<(reqwest::StatusCode, Option<String>, String)> = std::thread::scope(|t| {
        let running: Vec<_> = paths.iter().map(|&(p, c)| t.spawn(move || get(p, c))).collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Known unreachable now: the next callers are not held for the pool's whole timeout.
    for (path, credentials) in paths {
        let started = Instant::now();
        let (status, _, body) = get(path, credentials);
        assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path} waited {:?} for its 503", started.elapsed());
    }
    // npm's own login, which checks the password itself.
    let r = common::client()
        .put(s.url("/repository/npm-hosted/-/user/org.couchdb.user:admin"))
        .json(&serde_json::json!({"name": "admin", "password": common::ADMIN_PASSWORD}))
        .send()
        .unwrap();
    let (status, retry) = (r.status(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()));
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "npm login: {}", r.text().unwrap());
    assert_eq!(retry.as_deref(), Some("5"), "npm login: Retry-After");
    // Remembered credentials are no different: what they were remembered with must be read
    // again, and the database does not answer.
    for (what, auth, path) in [
        ("a remembered password", &with_password as &dyn Fn(_) -> _, "/v2/docker-hosted/app/tags/list"),
        ("a remembered password", &with_password, "/repository/pypi-hosted/simple/"),
        ("a remembered bearer token", &with_bearer, "/v2/docker-hosted/app/tags/list"),
        ("a remembered API token", &with_token, "/repository/npm-hosted/app"),
    ] {
        let (status, body) = remembered(auth, path);
        assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{what}, {path}: {body}");
    }
    drop(reopen);
    for ((path, _), (status, retry, body)) in paths.iter().zip(&answers) {
        assert_eq!(*status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(body.contains("its database or its LDAP directory does not answer"), "{path}: {body}");
        assert_eq!(retry.as_deref(), Some("5"), "{path}: Retry-After");
    }
    let json = |i: usize| serde_json::from_str::<serde_json::Value>(&answers[i].2).unwrap();
    assert_eq!(json(0)["errors"][0]["code"], "UNAVAILABLE", "Docker's shape");
    assert_eq!(json(2)["errors"][0]["code"], "UNAVAILABLE", "Docker's shape");
    assert!(json(3)["error"].is_string(), "npm's shape");
    assert_eq!(json(5)["code"], "unavailable", "the admin API's shape");
    // The pool retries its connections at least every 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, _, body) = get("/v2/docker-hosted/app/tags/list", true);
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "the same credentials once the database answers: {body}");
}

/// Started with the soft limit on open files a shell or a systemd unit gives (1024, here 256),
/// the server raises it to the hard limit: every connection, staged upload and download holds a
/// descriptor.
#[test]
fn a_start_raises_the_limit_on_open_files_to_the_hard_one() {
    let s = TestServer::unstarted(&[]);
    let server = s.command();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg("ulimit -Sn 256 && exec \"$0\" \"$@\"").arg(server.get_program()).args(server.get_args());
    for (k, v) in server.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.data_dir.join("wharf.addr").exists() {
        assert!(child.try_wait().unwrap().is_none(), "wharf exited during start");
        assert!(Instant::now() < deadline, "wharf did not start within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a line for open files");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_ne!(soft, "256", "{line}");
    let expected = if hard == "unlimited" { "1048576" } else { hard };
    assert_eq!(soft, expected, "{line}");
}

/// Runs `cmd` to its end, which must come within `timeout` (a start expected to fail that
/// succeeded would otherwise serve until killed): its status and its standard error.
fn exit_within(mut cmd: Command, timeout: Duration) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let mut child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&stderr).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {timeout:?}: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&stderr).unwrap())
}
