//! `/service/rest/v1/status...` and the OpenAPI document.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{require_admin, AdminError};
use crate::db::repos;
use crate::lifecycle::store_usage;
use crate::state::AppState;

/// Is the node up and its database reachable? Unauthenticated, for load balancers.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    match state.db.run(repos::generation).await {
        Ok(_) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

pub async fn writable(state: web::Data<AppState>) -> HttpResponse {
    status(state).await
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
