//! `/service/rest/v1/status...` and the OpenAPI document.
//!
//! Four probes, from cheapest to fullest:
//! - `status/live`: the process answers (nothing is asked of anything else), for a liveness
//!   probe that should restart a hung node and never one whose database is down;
//! - `status` (Nexus's "readable"): the database answers;
//! - `status/ready`: the database and every blob store answer, for a readiness probe or a load
//!   balancer that should send no request a node cannot serve;
//! - `status/writable` (Nexus's): as `status`, and the server is not in read-only mode;
//!
//! and `status/check` for an administrator: one entry per check, with messages.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{require_admin, AdminError};
use crate::db::repos;
use crate::lifecycle::store_usage;
use crate::state::AppState;

/// A blob store that does not answer a readiness probe within this is not ready: probes come
/// every few seconds and must not pile up.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// Below this much free space under the data directory or a file blob store (or twice the
/// reserve, `disk.reserve_mib`, if that is more), `status/check` says so: a warning before
/// the reserve refuses writes.
const LOW_DISK_BYTES: u64 = 1 << 30;
const LOW_DISK_PERCENT: u64 = 5;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Is the node up and its database reachable? Unauthenticated, for load balancers.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    match state.db.run(repos::generation).await {
        Ok(_) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// Unauthenticated, so it says what failed by name only (no paths, buckets or endpoints): the
/// administrator's `status/check` has the messages.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.run(repos::generation).await.is_ok();
    let snap = state.registry.snapshot();
    let stores: Vec<_> = snap.blob_stores.iter().map(|(n, s)| (n.clone(), s.clone())).collect();
    drop(snap);
    let checks = futures::future::join_all(stores.iter().map(|(_, s)| s.check_reachable(READY_DEADLINE))).await;
    let mut blob_stores = serde_json::Map::new();
    for ((name, _), res) in stores.iter().zip(&checks) {
        blob_stores.insert(name.clone(), json!(res.is_ok()));
    }
    let ready = db && checks.iter().all(Result::is_ok);
    let body = json!({ "ready": ready, "database": db, "blobStores": blob_stores });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn writable(state: web::Data<AppState>) -> HttpResponse {
    if state.read_only.current().is_some() {
        return HttpResponse::ServiceUnavailable().finish();
    }
    status(state).await
}

/// Free space under `path` (statvfs: what an unprivileged writer may use) and the file
/// system's size.
fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize)))
}

fn disk_entry(what: &str, path: &std::path::Path, reserve: wharf_format::DiskReserve) -> serde_json::Value {
    match disk_space(path) {
        None => json!({ "healthy": false, "message": format!("{what}: cannot read the free space of {}", path.display()) }),
        Some((free, total)) => {
            let reserved = reserve.of(total);
            // Said before writes begin to be refused, whatever the reserve.
            let low = free < LOW_DISK_BYTES.max(reserved.saturating_mul(2)) || (total > 0 && free.saturating_mul(100) / total < LOW_DISK_PERCENT);
            let mib = |b: u64| b >> 20;
            let mut message = format!("{what}: {} MiB free of {} MiB on {}", mib(free), mib(total), path.display());
            if reserved > 0 {
                message.push_str(&format!("; new content that would leave less than {} MiB free is refused (disk.reserve_mib)", mib(reserved)));
            }
            json!({
                "healthy": !low,
                "message": if low { format!("low disk space: {message}") } else { message },
                "freeBytes": free,
                "totalBytes": total,
                "reservedBytes": reserved,
            })
        }
    }
}

pub async fn check(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let db = state.db.run(repos::generation).await;
    let snap = state.registry.snapshot();
    let stores_ok = snap.blob_stores.len();
    let mut out = json!({
        "Database": { "healthy": db.is_ok(), "message": db.err().map(|e| e.to_string()), "backend": format!("{:?}", state.db.backend) },
        "Blob Stores": { "healthy": true, "message": format!("{stores_ok} blob stores open") },
        "Repositories": { "healthy": true, "message": format!("{} repositories open", snap.repos.len()) },
        "Uptime": { "healthy": true, "message": format!("{} s", state.started.elapsed().as_secs()) },
    });
    // One entry per blob store: unhealthy while it cannot be read or is over its soft quota
    // (a warning: writes go on).
    if let Ok(reports) = store_usage::reports(&state.db, &state.cfg.data_dir, store_usage::Scope::All).await {
        for r in reports {
            let (healthy, message) = if r.unavailable {
                (false, format!("Blob store {} is unavailable: its directory cannot be read", r.store.name))
            } else {
                (!r.quota.violation, r.quota.message.clone())
            };
            out[format!("Blob store {}", r.store.name)] = json!({ "healthy": healthy, "message": message, "softQuotaViolation": r.quota.violation });
        }
    }
    // An S3 store is healthy when its bucket takes a write and gives it back.
    let s3: Vec<_> = snap.blob_stores.iter().filter(|(_, s)| s.s3_settings().is_some()).collect();
    let checks = futures::future::join_all(s3.iter().map(|(_, s)| s.check_writable())).await;
    for ((name, store), res) in s3.into_iter().zip(checks) {
        if let Err(p) = res {
            out[format!("Blob store {name}")] =
                json!({ "healthy": false, "message": format!("Blob store {name} ({}) is not usable: {p}", store.location()), "softQuotaViolation": false });
        }
    }
    // Free space where wharf writes: the data directory (database, staging, caches) and each
    // file store that lives elsewhere.
    let data_dir = state.cfg.data_dir.clone();
    let reserve = state.cfg.disk.reserve();
    let stores: Vec<(String, std::path::PathBuf)> = snap.blob_stores.iter().filter_map(|(n, s)| s.root().map(|r| (n.clone(), r.to_path_buf()))).collect();
    let disks = tokio::task::spawn_blocking(move || {
        let mut v = vec![("Disk space".to_string(), disk_entry("data directory", &data_dir, reserve))];
        for (name, root) in stores {
            let dev = std::fs::metadata(&root).ok().map(|m| std::os::unix::fs::MetadataExt::dev(&m));
            if dev.is_some() && dev == std::fs::metadata(&data_dir).ok().map(|m| std::os::unix::fs::MetadataExt::dev(&m)) {
                continue;
            }
            v.push((format!("Disk space {name}"), disk_entry(&format!("blob store {name}"), &root, reserve)));
        }
        v
    })
    .await
    .unwrap_or_default();
    for (k, v) in disks {
        out[k] = v;
    }
    // Each LDAP server: connects and binds as its service account, as the console's "verify
    // connection" does (bounded by the server's own connection timeout).
    let servers = state.auth.config_ldap().iter().cloned().chain(state.db.run(crate::security::ldap::load).await.unwrap_or_default()).collect::<Vec<_>>();
    let checks = futures::future::join_all(servers.iter().map(crate::security::ldap::verify_connection)).await;
    for (s, res) in servers.iter().zip(checks) {
        let message = match &res {
            Ok(()) => format!("{} answers and the service account binds", s.url()),
            Err(e) => e.to_string(),
        };
        out[format!("LDAP {}", s.name)] = json!({ "healthy": res.is_ok(), "message": message });
    }
    if let Some(f) = state.read_only.current() {
        out["Read-only"] = json!({ "healthy": false, "message": f.message() });
    }
    Ok(HttpResponse::Ok().json(out))
}

/// wharf's `GET /service/rest/v1/system`: this node (version, start, uptime, database) and the
/// nodes of its cluster: on PostgreSQL every process whose pooled connections carry wharf's
/// `application_name` right now (see `db::notify::node_tag`), on SQLite this one.
pub async fn system(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let this = crate::db::notify::node_tag().to_string();
    let uptime = state.started.elapsed();
    let started_ms = wharf_format::now_millis() - uptime.as_millis() as i64;
    let nodes = match state.db.backend {
        crate::db::Backend::Postgres => state.db.run(crate::db::notify::connected_nodes).await?,
        crate::db::Backend::Sqlite => vec![(this.clone(), None)],
    };
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": this,
        "host": state.tasks.node,
        "startedAt": wharf_format::rfc3339_millis(started_ms),
        "uptimeSeconds": uptime.as_secs(),
        "database": format!("{:?}", state.db.backend),
        "nodes": nodes.into_iter().map(|(name, address)| json!({ "node": name, "address": address })).collect::<Vec<_>>(),
    })))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("../../../docs/openapi.json"))
}
