//! `/service/rest/v1/status...` and the OpenAPI document.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{require_admin, AdminError};
use crate::db::repos;
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
    Ok(HttpResponse::Ok().json(json!({
        "Database": { "healthy": db.is_ok(), "message": db.err().map(|e| e.to_string()), "backend": format!("{:?}", state.db.backend) },
        "Blob Stores": { "healthy": true, "message": format!("{stores_ok} blob stores open") },
        "Repositories": { "healthy": true, "message": format!("{} repositories open", snap.repos.len()) },
        "Uptime": { "healthy": true, "message": format!("{} s", state.started.elapsed().as_secs()) },
    })))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("../../../docs/openapi.json"))
}
