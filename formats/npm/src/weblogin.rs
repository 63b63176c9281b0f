//! Web login, the flow `npm login` uses by default: `POST /-/v1/login` answers a `loginUrl` the
//! user opens in a browser and a `doneUrl` the client polls (202 with `Retry-After` until the
//! login is approved, then 200 `{"token"}`). The page at `loginUrl` asks for the wharf user's
//! password and approves with it; the token is an API token of that user, as the legacy
//! login's. Logins live in the database ([`wharf_format::Identity`]), so any node may serve any
//! step, and expire after [`wharf_format::WEB_LOGIN_TTL_MS`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;
use wharf_format::{FormatEnv, RepoCtx, TokenSpec, WebLoginPoll};

use crate::error::NpmError;
use crate::model::iso;
use crate::source::base_url;

type Result<T, E = NpmError> = std::result::Result<T, E>;

/// The approval form's body: a user name and a password.
const MAX_FORM: usize = 16 << 10;
/// Seconds the client waits between polls.
const RETRY_AFTER: &str = "1";

pub async fn start(env: &FormatEnv, ctx: &RepoCtx) -> Result<HttpResponse> {
    let login = env.identity.web_login_start(&ctx.repo.name, &ctx.client).await?;
    let base = base_url(ctx);
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({
        "loginUrl": format!("{base}/-/v1/login/{}", login.id),
        "doneUrl": format!("{base}/-/v1/done/{}", login.done),
    })))
}

pub async fn done(env: &FormatEnv, done: &str) -> Result<HttpResponse> {
    match env.identity.web_login_poll(done).await? {
        WebLoginPoll::Pending => {
            Ok(HttpResponse::Accepted().insert_header(("Retry-After", RETRY_AFTER)).insert_header(("Cache-Control", "no-store")).json(json!({})))
        }
        WebLoginPoll::Done(token) => Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({ "token": token }))),
        WebLoginPoll::Unknown => Ok(HttpResponse::NotFound()
            .content_type("application/json")
            .body(json!({"error": "this login is unknown, expired or already complete; run npm login again"}).to_string())),
    }
}

pub async fn page(env: &FormatEnv, id: &str) -> Result<HttpResponse> {
    let Some(info) = env.identity.web_login_info(id).await? else { return Ok(html(StatusCode::NOT_FOUND, &gone())) };
    if let Some(user) = info.approved_by {
        return Ok(html(StatusCode::OK, &format!("<p>This login was approved for <b>{}</b>. You may close this window.</p>", escape(&user))));
    }
    Ok(html(StatusCode::OK, &form(&info.client, info.created_at, None)))
}

pub async fn approve(env: &FormatEnv, ctx: &RepoCtx, id: &str, body: web::Payload) -> Result<HttpResponse> {
    let Some(info) = env.identity.web_login_info(id).await? else { return Ok(html(StatusCode::NOT_FOUND, &gone())) };
    let form_body = read_form(body).await?;
    let field = |k: &str| url::form_urlencoded::parse(&form_body).find(|(key, _)| key == k).map(|(_, v)| v.into_owned()).unwrap_or_default();
    let (user, password) = (field("username"), field("password"));
    let checked = match env.identity.login(&user, &password, &ctx.client).await {
        Err(wharf_format::IdentityError::Unavailable(_)) => {
            let page = form(&info.client, info.created_at, Some("The server cannot check credentials now; try again shortly."));
            let mut res = html(StatusCode::SERVICE_UNAVAILABLE, &page);
            res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from_static(wharf_format::retry_after().1));
            return Ok(res);
        }
        other => other?,
    };
    let Some(principal) = checked.filter(|_| !user.is_empty()) else {
        return Ok(html(StatusCode::UNAUTHORIZED, &form(&info.client, info.created_at, Some("Invalid username or password."))));
    };
    let name = principal.user.clone().unwrap_or(user);
    let spec = TokenSpec { name: "npm web login".into(), ..Default::default() };
    if !env.identity.web_login_approve(id, &principal, spec, &ctx.client).await? {
        return Ok(html(StatusCode::GONE, &gone()));
    }
    Ok(html(StatusCode::OK, &format!("<p>Approved: npm is now signed in as <b>{}</b>. You may close this window.</p>", escape(&name))))
}

async fn read_form(mut body: web::Payload) -> Result<Vec<u8>> {
    use futures::StreamExt;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| NpmError::BadRequest(format!("request body: {e}")))?;
        if buf.len() + chunk.len() > MAX_FORM {
            return Err(NpmError::TooLarge(format!("the form is larger than {MAX_FORM} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn gone() -> String {
    "<p>This login link is unknown, has expired or was used already. Run <code>npm login</code> again.</p>".into()
}

/// The approval form. It says who began the login and when, so that a user sent someone
/// else's link sees that it is not theirs.
fn form(client: &str, created_at: i64, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e))).unwrap_or_default();
    format!(
        "<p>An npm client at <b>{}</b> asked to sign in at {} (UTC). Sign in with your wharf account to approve it; \
         it receives an API token of yours. If you did not run <code>npm login</code> just now, close this window.</p>{error}\
         <form method=\"post\"><label>Username <input name=\"username\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Approve</button></form>",
        escape(client),
        escape(&iso(created_at)),
    )
}

fn html(status: StatusCode, body: &str) -> HttpResponse {
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>wharf: npm login</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
         label{{display:block;margin:.75rem 0}}input{{display:block;width:100%;padding:.4rem;box-sizing:border-box}}\
         button{{padding:.5rem 1.2rem}}.error{{color:#b00020}}</style></head><body><h1>npm login</h1>{body}</body></html>"
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"))
        .body(page)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
