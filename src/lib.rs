//! The wharf server: configuration, HTTP, authentication, storage and the admin API. Formats
//! live in their own crates under `formats/`; this crate registers them in [`formats`].

pub mod audit;
pub mod backup;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod http;
pub mod janitor;
pub mod lifecycle;
pub mod log_output;
pub mod metrics;
pub mod read_only;
pub mod security;
pub mod state;
pub mod storage;
pub mod tls;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpServer};
use base64::Engine;
use wharf_format::Format;

use crate::config::Config;
use crate::db::{meta::SqlMeta, repos, settings, Db};
use crate::security::token::TokenKeys;
use crate::security::Authenticator;
use crate::state::{AppState, FileWrites, RepoRegistry};

/// Every format this build serves. Adding a format is one line here.
pub fn formats() -> Vec<Arc<dyn Format>> {
    vec![Arc::new(wharf_docker::Docker), Arc::new(wharf_pypi::Pypi), Arc::new(wharf_npm::Npm)]
}

/// How often a node checks whether another node changed the configuration: only a safety net,
/// since changes are heard at once (`db::notify` on PostgreSQL, `db::counters` on SQLite).
const RELOAD_POLL: Duration = Duration::from_secs(15);

/// While the change listener is cut off from PostgreSQL, how often a node forgets what it
/// keeps in memory and rereads the configuration (it cannot hear other nodes' changes).
const DEAF_REFRESH: Duration = Duration::from_millis(500);

/// How often a running node looks for migrations it does not know (a newer version migrated
/// the database under it): it then stops (`db::precheck::still_not_newer`).
const SCHEMA_POLL: Duration = Duration::from_secs(5);

/// How often a node looks for blob store removals whose owner died (one indexed read of a
/// table that is nearly always empty).
const ABANDONED_REMOVALS_POLL: Duration = Duration::from_secs(60);

/// Runs the server until SIGINT/SIGTERM (or, with `exit_on_stdin_eof`, until stdin closes).
/// Says at start how many API tokens `security.token_idle_days` stopped: a server upgraded to
/// the rule, or back after a long stop, refuses those at once, and their owners will ask why.
async fn log_unused_tokens(state: &web::Data<AppState>) {
    let Some(idle_before) = state.auth.idle_before(wharf_format::now_millis()) else { return };
    let days = state.cfg.security.token_idle_days;
    match state.db.run(move |c| db::tokens::count_unused(c, idle_before)).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            tokens = n,
            days,
            "API tokens without an expiry, unused for security.token_idle_days, no longer work; the next token made deletes them (audited as token.purge)"
        ),
        Err(e) => tracing::warn!(error = %e, "counting unused API tokens failed"),
    }
}

pub async fn run(cfg: Config, exit_on_stdin_eof: bool) -> anyhow::Result<()> {
    bootstrap::owner_only_umask();
    bootstrap::raise_open_files_limit();
    bootstrap::private_dir(&cfg.data_dir)?;
    let startup = db::StartupLock::acquire(&cfg.database_url)?;
    let db = Db::open(&cfg.database_url, cfg.database.pool_size)?;
    tracing::info!(backend = ?db.backend, "database ready");
    bootstrap::secret_key(&db, &cfg.data_dir, &cfg.security.secret_key_file)?;
    bootstrap::first_start(&db, &cfg.data_dir, &cfg.admin_password, &cfg.s3)?;
    bootstrap::private_blob_stores(&db, &cfg.data_dir)?;
    let secret = db.run_sync(|c| {
        settings::get_or_init_secret(c, bootstrap::TOKEN_SECRET_KEY, || {
            let mut key = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut key);
            base64::engine::general_purpose::STANDARD.encode(key)
        })
    })?;
    drop(startup);
    let secret = base64::engine::general_purpose::STANDARD.decode(secret.trim()).unwrap_or_else(|_| secret.into_bytes());
    let meta = Arc::new(SqlMeta::new(db.clone()).with_formats(formats()));
    let metrics = Arc::new(metrics::Metrics::new()?);
    let audit_log: Arc<audit::AuditLog> = Arc::new(audit::AuditLog::new(db.clone()));
    let auth = Arc::new(
        Authenticator::new(
            db.clone(),
            audit_log.clone(),
            TokenKeys::new(&secret, &cfg.docker.token_service),
            formats().iter().map(|f| f.name()).collect(),
            crate::security::principal::Lockout {
                after: cfg.security.lockout_after,
                first: Duration::from_secs(cfg.security.lockout_secs),
                max: Duration::from_secs(cfg.security.lockout_max_secs),
            },
        )
        .with_realms(cfg.security.realms.clone(), Duration::from_secs(cfg.security.login_cache_secs), cfg.ldap.clone())
        .with_token_idle_days(cfg.security.token_idle_days)
        .with_metrics(metrics.clone()),
    );
    let downloads = Arc::new(lifecycle::downloads::DownloadLog::new(db.clone()));
    let state = web::Data::new(AppState {
        registry: RepoRegistry::new(
            cfg.data_dir.clone(),
            auth.clone(),
            audit_log.clone(),
            downloads.clone(),
            (cfg.gc.deletion_lease_secs as i64).saturating_mul(1000),
            FileWrites { direct: cfg.uploads.direct_writes, reserve: cfg.disk.reserve() },
            metrics.clone(),
        ),
        metrics,
        tasks: Default::default(),
        downloads,
        auth,
        audit: audit_log,
        formats: formats(),
        listeners: Default::default(),
        started: std::time::Instant::now(),
        read_only: Default::default(),
        meta,
        db,
        cfg: cfg.clone(),
    });
    if cfg.blob_cache.max_mib > 0 {
        let dir = if cfg.blob_cache.dir.is_empty() { cfg.data_dir.join("cache").join("blobs") } else { std::path::PathBuf::from(&cfg.blob_cache.dir) };
        let cache = wharf_format::ReadCache::open(&dir, cfg.blob_cache.max_mib.saturating_mul(1 << 20), cfg.disk.reserve())
            .map_err(|e| anyhow::anyhow!("blob_cache.dir: cannot use {}: {e}", dir.display()))?;
        state.registry.set_read_cache(cache);
    }
    state.registry.reload(&state.db, state.meta.clone(), &state.formats).await?;
    reload_realms(&state).await;
    log_unused_tokens(&state).await;
    if state.read_only.refresh(&state.db).await? {
        tracing::warn!("wharf is in read-only mode: writes are refused until an administrator releases it (POST /service/rest/v1/read-only/release)");
    }
    check_s3_stores(&state, !state.cfg.s3.bucket.is_empty()).await?;

    let listener = std::net::TcpListener::bind(&cfg.listen)?;
    let addr = listener.local_addr()?;
    let data = state.clone();
    let mut server = HttpServer::new(move || {
        let data = data.clone();
        App::new()
            .app_data(data.clone())
            .wrap(middleware::from_fn(http::cross_site::refuse_cross_site))
            .wrap(middleware::from_fn(http::bound_body_idle))
            .wrap(middleware::from_fn(http::log_request))
            .wrap(middleware::from_fn(metrics::http::track))
            .wrap(middleware::from_fn(http::request_id::tag))
            .configure(|c| http::main_routes(c, &data))
    })
    .on_connect(http::on_connect)
    .shutdown_timeout(cfg.http.shutdown_timeout_secs);
    if cfg.http.workers > 0 {
        server = server.workers(cfg.http.workers);
    }
    let server = if cfg.tls.cert_file.is_empty() {
        server.listen(listener)?.run()
    } else {
        let tls = tls::server_config(std::path::Path::new(&cfg.tls.cert_file), std::path::Path::new(&cfg.tls.key_file))?;
        tracing::info!(cert = %cfg.tls.cert_file, "HTTPS on the main port");
        server.listen_rustls_0_23(listener, (*tls).clone())?.run()
    };
    let handle = server.handle();
    http::listeners::reconcile(&state).await;
    // Written after the port is bound, so whoever waits for it can connect at once.
    std::fs::write(cfg.data_dir.join("wharf.addr"), addr.to_string())?;
    tracing::info!(%addr, "wharf listening");

    let listening = state.db.backend == db::Backend::Postgres;
    let changes = if listening { db::notify::listen(&cfg.database_url) } else { db::counters::watch(state.db.clone()) };
    let listen_state = state.clone();
    actix_rt::spawn(async move { on_changes(listen_state, changes).await });
    let poll_state = state.clone();
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(RELOAD_POLL).await;
            reload_if_changed(&poll_state).await;
        }
    });
    lifecycle::tasks::ensure_builtins(&state).await?;
    lifecycle::tasks::start(state.clone());
    // A blob store removal cut short (a crash) is finished at the next start, or by any node
    // once its owner's claim ran out.
    let (removal_db, data_dir) = (state.db.clone(), cfg.data_dir.clone());
    actix_rt::spawn(async move {
        let dir = data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || lifecycle::store_removal::sweep_trash(&dir)).await;
        loop {
            lifecycle::store_removal::finish_abandoned(&removal_db, &data_dir).await;
            tokio::time::sleep(ABANDONED_REMOVALS_POLL).await;
        }
    });
    // A node left on this version while a newer one migrated the database stops, as it would
    // refuse to start: what it writes from then on the newer version may misread.
    let newer = Arc::new(std::sync::OnceLock::new());
    let (schema_db, schema_handle, schema_newer) = (state.db.clone(), handle.clone(), newer.clone());
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(SCHEMA_POLL).await;
            // A failed read (the database down) says nothing: the next poll asks again.
            if let Ok(Err(db::DbError::Newer(why))) = schema_db.run(|c| Ok(db::precheck::still_not_newer(c))).await {
                let why =
                    format!("{why} This node stops: the requests in flight finish (http.shutdown_timeout_secs); download counts and webhooks are not written.");
                tracing::error!("{why}");
                let _ = schema_newer.set(why);
                schema_handle.stop(true).await;
                return;
            }
        }
    });
    let quota_state = state.clone();
    actix_rt::spawn(async move { lifecycle::store_usage::watch_soft_quotas(&quota_state).await });
    let flush_state = state.clone();
    let flush_newer = newer.clone();
    actix_rt::spawn(async move { flush_state.downloads.run(|| flush_state.read_only.current().is_some() || flush_newer.get().is_some()).await });
    webhooks::set_node(&state.tasks.node);
    let deliverer = webhooks::Deliverer::new(state.db.clone(), cfg.webhooks.clone())?;
    let hooks_state = state.clone();
    let hooks_newer = newer.clone();
    actix_rt::spawn(async move { deliverer.run(|| hooks_state.read_only.current().is_some() || hooks_newer.get().is_some()).await });
    if exit_on_stdin_eof {
        let h = handle.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            actix_rt::System::new().block_on(h.stop(false));
        });
    }
    server.await?;
    state.listeners.stop_all().await;
    if newer.get().is_some() {
        tracing::warn!("the database is a newer version's: the download counts of this run are not written");
    } else if state.read_only.current().is_some() {
        tracing::warn!("read-only mode: the download counts of this run are not written");
    } else if let Err(e) = state.downloads.flush().await {
        tracing::warn!(error = %e, "writing download counts at shutdown");
    }
    tracing::info!("wharf stopped");
    match newer.get() {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

/// Rereads the configuration if its generation moved (on another node, or here).
async fn reload_if_changed(state: &web::Data<AppState>) {
    let current = state.registry.snapshot().generation;
    if let Ok(g) = state.db.run(repos::generation).await {
        if g != current {
            http::apply_config_change(state).await;
        }
    }
}

/// Acts on what the change listener hears (see `db::notify`): other nodes' changes (and this
/// node's own, heard back) reach this node's views within the listener's poll. Changes that
/// arrive together are acted on once.
async fn on_changes(state: web::Data<AppState>, mut changes: tokio::sync::mpsc::UnboundedReceiver<db::notify::Change>) {
    use db::notify::Change;
    // Cut off (the listener says so, or has not said its connection answers for this long):
    // nothing kept in memory may be trusted for longer than the promised bound.
    const SILENCE: Duration = Duration::from_millis(1500);
    let (mut deaf, mut heard) = (false, std::time::Instant::now());
    loop {
        let first = match tokio::time::timeout(DEAF_REFRESH, changes.recv()).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(_) => {
                if deaf || heard.elapsed() > SILENCE {
                    state.auth.invalidate();
                    reload_if_changed(&state).await;
                    read_only::on_change(&state).await;
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while let Ok(c) = changes.try_recv() {
            batch.push(c);
        }
        let (mut auth, mut config, mut read_only, mut realms) = (false, false, false, false);
        for c in batch {
            match c {
                Change::Alive(at) => {
                    heard = heard.max(at);
                    deaf = false;
                }
                Change::Everything => {
                    heard = std::time::Instant::now();
                    deaf = false;
                    auth = true;
                    config = true;
                    read_only = true;
                    realms = true;
                }
                Change::Deaf => {
                    deaf = true;
                    auth = true;
                    config = true;
                    read_only = true;
                    realms = true;
                }
                // This node's own changes to users, roles and LDAP servers were forgotten here
                // when they were made (after their commit; see `Authenticator::invalidate`):
                // forgetting again would only drop logins verified since.
                Change::Table { table, own } => match table.as_str() {
                    "users" | "roles" | "privileges" => auth |= !own,
                    "repositories" | "blob_stores" => config = true,
                    _ => {
                        auth = true;
                        config = true;
                    }
                },
                Change::Setting { key, .. } if key == repos::GENERATION_KEY => config = true,
                Change::Setting { key, own } if key == security::ldap::SETTINGS_KEY => auth |= !own,
                Change::Setting { key, .. } if key == db::read_only::KEY => read_only = true,
                Change::Setting { key, own } if key == security::realms::ANONYMOUS_KEY => auth |= !own,
                Change::Setting { key, .. } if key == security::realms::REALMS_KEY => realms = true,
                Change::Setting { .. } => {}
                Change::Pause { user, client, until } => state.auth.note_pause(&user, &client, until),
            }
        }
        if deaf || heard.elapsed() > SILENCE {
            auth = true;
            config = true;
            read_only = true;
        }
        if read_only {
            read_only::on_change(&state).await;
        }
        if realms {
            reload_realms(&state).await;
        }
        if auth {
            state.auth.invalidate();
        }
        if config {
            reload_if_changed(&state).await;
        }
    }
}

/// The realms set through the API, when they were: they replace the configuration's.
async fn reload_realms(state: &AppState) {
    match state.db.run(security::realms::stored).await {
        Ok(Some(r)) => state.auth.set_realms(r),
        Ok(None) => state.auth.set_realms(state.cfg.security.realms.clone()),
        Err(e) => tracing::warn!(error = %e, "reading the active realms"),
    }
}

/// Every S3 store must answer and take a write at start; one that does not is named in the log
/// with its bucket and endpoint. When `[s3]` makes the `default` store a bucket, the start stops
/// there instead: a node that cannot reach its content should not serve.
async fn check_s3_stores(state: &AppState, default_is_s3: bool) -> anyhow::Result<()> {
    let snap = state.registry.snapshot();
    for (name, store) in &snap.blob_stores {
        if store.s3_settings().is_none() {
            continue;
        }
        if let Err(e) = store.check_writable().await {
            if default_is_s3 && name == "default" {
                anyhow::bail!("blob store default ({}, from [s3]) is not usable: {e}", store.location());
            }
            tracing::error!(blob_store = %name, location = %store.location(), error = %e, "S3 blob store is not usable");
        }
    }
    Ok(())
}
