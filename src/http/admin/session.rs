//! `/service/rest/v1/session`: the console's login. A session is a signed cookie (HttpOnly,
//! SameSite=Strict, Secure over HTTPS) naming a row of the `sessions` table, so that logout,
//! or a password change, disabling or deleting the user, ends it on every node. Only the
//! password opens one (never an API token); state-changing requests made with it must also send
//! the session's CSRF token, and come from wharf's own origin when the browser names one.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::{Access, ConfigError};

use super::{parse_json, AdminError};
use crate::security::principal::{same_origin, SESSION_COOKIE};
use crate::state::AppState;

/// How long a console session lasts, in seconds.
const SESSION_TTL: u64 = 8 * 3600;

fn secure(req: &HttpRequest) -> bool {
    crate::http::mount::scheme(req) == "https"
}

/// `POST {"username", "password"}` → the session cookie, and the CSRF token in the body.
pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    // A login form on another site must not sign the browser in (as the attacker).
    if !same_origin(&req) {
        return Err(AdminError::NotAllowed("the console signs in from its own pages only"));
    }
    let body = parse_json(&body)?;
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| AdminError::Invalid(ConfigError::new(k, "required")));
    let (user, pass) = (field("username")?, field("password")?);
    let Some(p) = super::unless_silent(crate::db::failures::noting(state.auth.password_login(&user, &pass, &crate::http::mount::client(&req))).await)? else {
        return Err(AdminError::Unauthenticated);
    };
    let (jwt, claims) = state.auth.open_session(&p, SESSION_TTL).await?;
    let cookie = Cookie::build(SESSION_COOKIE, jwt)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(&req))
        .max_age(actix_web::cookie::time::Duration::seconds(SESSION_TTL as i64))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(json!({ "userId": claims.sub, "admin": matches!(p.access, Access::All), "csrfToken": claims.csrf })))
}

/// The current session's user (the console asks on load).
pub async fn current(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let p = super::caller(&state, &req).await?;
    let user = p.user.clone().ok_or(AdminError::Unauthenticated)?;
    let csrf = req.cookie(SESSION_COOKIE).and_then(|c| state.auth.tokens.verify_session(c.value())).map(|c| c.csrf);
    // For "My account": a local user's name, e-mail and roles (a directory user's roles come
    // from their groups and are not listed here).
    let local = p.realm == Some(wharf_format::Realm::Local);
    let name = user.clone();
    let row = if local { state.db.run(move |c| crate::db::users::get(c, &name)).await? } else { None };
    Ok(HttpResponse::Ok().json(json!({
        "userId": user,
        "admin": matches!(p.access, Access::All),
        "csrfToken": csrf,
        "source": p.realm.map(|r| if r == wharf_format::Realm::Local { "default" } else { "LDAP" }),
        "firstName": row.as_ref().map(|r| r.first_name.clone()),
        "lastName": row.as_ref().map(|r| r.last_name.clone()),
        "emailAddress": row.as_ref().map(|r| r.email.clone()),
        "roles": row.as_ref().map(|r| r.role_ids()),
    })))
}

/// Logout: the session ends on the server, and the cookie is cleared.
pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        state.auth.close_session(c.value()).await?;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").http_only(true).same_site(SameSite::Strict).secure(secure(&req)).finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}
