//! `/service/rest/v1/session`: the console's login. A session is a signed cookie (HttpOnly,
//! SameSite=Strict, Secure over HTTPS) that any node can check, so nodes keep no session state;
//! state-changing requests made with it must also send the session's CSRF token.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::{Access, ConfigError};

use super::{parse_json, AdminError};
use crate::security::principal::SESSION_COOKIE;
use crate::state::AppState;

/// How long a console session lasts, in seconds.
const SESSION_TTL: u64 = 8 * 3600;

fn secure(req: &HttpRequest) -> bool {
    crate::http::mount::scheme(req) == "https"
}

/// `POST {"username", "password"}` → the session cookie, and the CSRF token in the body.
pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let body = parse_json(&body)?;
    let field =
        |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| AdminError::Invalid(ConfigError::new(k, format!("{k}: required"))));
    let (user, pass) = (field("username")?, field("password")?);
    let Some(p) = state.auth.login_from(&user, &pass, Some(crate::http::mount::client(&req))).await else {
        return Err(AdminError::Unauthenticated);
    };
    let name = p.user.clone().unwrap_or(user);
    let (jwt, claims) = state.auth.tokens.sign_session(&name, SESSION_TTL);
    let cookie = Cookie::build(SESSION_COOKIE, jwt)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(&req))
        .max_age(actix_web::cookie::time::Duration::seconds(SESSION_TTL as i64))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(json!({ "userId": name, "admin": matches!(p.access, Access::All), "csrfToken": claims.csrf })))
}

/// The current session's user (the console asks on load).
pub async fn current(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let p = state.auth.principal(&req).await;
    let user = p.user.clone().ok_or(AdminError::Unauthenticated)?;
    let csrf = req.cookie(SESSION_COOKIE).and_then(|c| state.auth.tokens.verify_session(c.value())).map(|c| c.csrf);
    Ok(HttpResponse::Ok().json(json!({ "userId": user, "admin": matches!(p.access, Access::All), "csrfToken": csrf })))
}

/// Logout: the cookie is cleared.
pub async fn delete(req: HttpRequest) -> HttpResponse {
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").http_only(true).same_site(SameSite::Strict).secure(secure(&req)).finish();
    gone.make_removal();
    HttpResponse::NoContent().cookie(gone).finish()
}
