//! `/service/rest/v1/read-only` (Nexus's shape: `GET` the state, `POST .../freeze`,
//! `.../release`, `.../force-release`) and the gate that refuses the admin API's changes while
//! the server is frozen. What read-only mode means: `crate::read_only`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{parse_json, record, require_admin, AdminError};
use crate::read_only::{self, Freeze};
use crate::state::AppState;

fn describe(f: Option<&Freeze>) -> Value {
    match f {
        None => json!({ "frozen": false, "systemInitiated": false, "summaryReason": "" }),
        Some(f) => json!({
            "frozen": true,
            "systemInitiated": false,
            "summaryReason": f.message(),
            "reason": f.reason,
            "frozenBy": f.by,
            "frozenAt": wharf_format::rfc3339_millis(f.at),
        }),
    }
}

/// Anyone signed in may see whether the server is frozen (the console shows it to everyone).
pub async fn get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    if super::caller(&state, &req).await?.user.is_none() {
        return Err(AdminError::Unauthenticated);
    }
    Ok(HttpResponse::Ok().json(describe(state.read_only.current().as_ref())))
}

/// `POST .../freeze`, optionally with `{"reason": "..."}`. Answers once no task runs on any
/// node; `tasksStillRunning` names those that had not stopped within the wait.
pub async fn freeze(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        let v = parse_json(&body)?;
        let obj = v.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
        if let Some(k) = obj.keys().find(|k| *k != "reason") {
            return Err(ConfigError::unknown_field(k).into());
        }
        match obj.get("reason") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.chars().count() <= 500 => s.trim().to_string(),
            Some(Value::String(_)) => return Err(ConfigError::new("reason", "at most 500 characters").into()),
            Some(_) => return Err(ConfigError::not_string("reason").into()),
        }
    };
    let (f, running) = read_only::freeze(&state, reason, actor.clone()).await?;
    record(&state, &req, &actor, "system.freeze", "read-only", None);
    let mut out = describe(Some(&f));
    out["tasksStillRunning"] = json!(running);
    Ok(HttpResponse::Ok().json(out))
}

/// `POST .../release` and `.../force-release` (the same here: wharf never freezes by itself).
pub async fn release(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    read_only::release(&state).await?;
    record(&state, &req, &actor, "system.release", "read-only", None);
    Ok(HttpResponse::Ok().json(describe(None)))
}

/// What may change while frozen: signing in and out, and read-only mode itself; and the
/// requests that are POSTs but only read.
fn allowed_while_frozen(method: &Method, path: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let p = path.trim_start_matches("/service/rest");
    p == "/v1/session"
        || p.starts_with("/v1/read-only")
        || p == "/v1/cleanup-policies/preview"
        || p == "/v1/security/ldap/verify-connection"
        || p == "/v1/security/ldap/verify-login"
        // The health check only reads (its run is the task's bookkeeping, not content).
        || p == "/v1/tasks/repository-health-check/run"
}

pub async fn gate(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let frozen = req.app_data::<web::Data<AppState>>().and_then(|s| s.read_only.current());
    match frozen {
        Some(f) if !allowed_while_frozen(req.method(), req.path()) => {
            let res = AdminError::ReadOnly(f.message()).error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
        _ => Ok(next.call(req).await?.map_into_left_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sign_in_release_and_reads_pass_a_freeze() {
        assert!(allowed_while_frozen(&Method::GET, "/service/rest/v1/repositories"));
        assert!(allowed_while_frozen(&Method::POST, "/service/rest/v1/session"));
        assert!(allowed_while_frozen(&Method::DELETE, "/service/rest/v1/session"));
        assert!(allowed_while_frozen(&Method::POST, "/service/rest/v1/read-only/release"));
        assert!(allowed_while_frozen(&Method::POST, "/service/rest/v1/cleanup-policies/preview"));
        assert!(!allowed_while_frozen(&Method::POST, "/service/rest/v1/repositories/npm/hosted"));
        assert!(!allowed_while_frozen(&Method::DELETE, "/service/rest/v1/components/abc"));
        assert!(!allowed_while_frozen(&Method::POST, "/service/rest/v1/tasks/x/run"));
        assert!(allowed_while_frozen(&Method::POST, "/service/rest/v1/tasks/repository-health-check/run"));
        assert!(!allowed_while_frozen(&Method::POST, "/service/rest/v1/repositories/pypi-hosted/health-check"));
        assert!(!allowed_while_frozen(&Method::DELETE, "/service/rest/v1/repositories/pypi-hosted/health-check"));
        assert!(!allowed_while_frozen(&Method::POST, "/service/rest/v1/session-other"));
    }
}
