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
    if let Ok(reports) = store_usage::reports(&state).await {
        for r in reports {
            let (healthy, message) = if r.unavailable {
                (false, format!("Blob store {} is unavailable: its directory cannot be read", r.store.name))
            } else {
                (!r.quota.violation, r.quota.message.clone())
            };
            out[format!("Blob store {}", r.store.name)] = json!({ "healthy": healthy, "message": message, "softQuotaViolation": r.quota.violation });
        }
    }
    Ok(HttpResponse::Ok().json(out))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("../../../docs/openapi.json"))
}
