//! The registry's user endpoints, the same for every kind of repository: CouchDB-style login
//! (`npm login --auth-type=legacy`, `npm adduser`), `npm whoami`, `npm logout`, and
//! `npm token list/create/revoke`. Users live in wharf (local or LDAP); npm cannot create them.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_format::{FormatEnv, RepoCtx, TokenInfo, TokenSpec};

use crate::error::NpmError;
use crate::model::iso;

type Result<T, E = NpmError> = std::result::Result<T, E>;

pub async fn small_json(body: web::Payload, limit: usize) -> Result<Value> {
    let buf = small_body(body, limit).await?;
    serde_json::from_slice(&buf).map_err(|e| NpmError::BadRequest(format!("malformed JSON: {e}")))
}

/// A request body of at most `limit` bytes.
pub async fn small_body(body: web::Payload, limit: usize) -> Result<Vec<u8>> {
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| NpmError::BadRequest(format!("request body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(NpmError::TooLarge(format!("the request body is larger than {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn caller(ctx: &RepoCtx) -> Result<&str> {
    ctx.principal.user.as_deref().ok_or(NpmError::Unauthorized)
}

/// `PUT /-/user/org.couchdb.user:<name>`: checks the password and answers with a new token.
/// Only the password itself will do: an API token in its place gets no new token.
pub async fn login(env: &FormatEnv, ctx: &RepoCtx, name: &str, body: web::Payload) -> Result<HttpResponse> {
    let body = small_json(body, 64 << 10).await?;
    let user = body.get("name").and_then(Value::as_str).unwrap_or(name);
    let password = body.get("password").and_then(Value::as_str).ok_or_else(|| NpmError::BadRequest("password is required".into()))?;
    if user != name {
        return Err(NpmError::BadRequest("the name in the body differs from the URL".into()));
    }
    let Some(principal) = env.identity.login(user, password, &ctx.client).await? else {
        // Same answer whether the user exists or not; npm cannot register users here.
        return Ok(HttpResponse::Unauthorized()
            .content_type("application/json")
            .body(json!({"error": "invalid username or password (users are created by a wharf administrator)"}).to_string()));
    };
    let t = env.identity.create_token(&principal, TokenSpec { name: "npm login".into(), ..Default::default() }, &ctx.client).await?;
    let id = principal.user.as_deref().unwrap_or(user);
    Ok(HttpResponse::Created().json(json!({"ok": true, "id": format!("org.couchdb.user:{id}"), "rev": "1", "token": t.secret})))
}

pub fn whoami(ctx: &RepoCtx) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(json!({ "username": caller(ctx)? })))
}

/// `DELETE /-/user/token/<token>`: the token itself is revoked (holding its secret is
/// enough to end it).
pub async fn logout(env: &FormatEnv, ctx: &RepoCtx, token: &str) -> Result<HttpResponse> {
    caller(ctx)?;
    env.identity.revoke_secret(token, &ctx.client).await?;
    Ok(HttpResponse::Ok().json(json!({"ok": true})))
}

fn token_json(t: &TokenInfo, secret: Option<&str>) -> Value {
    json!({
        "token": secret.map(str::to_string).unwrap_or_else(|| format!("{}…", t.prefix)),
        "name": t.name,
        "id": t.id,
        "key": t.key,
        "cidr_whitelist": null,
        "readonly": t.readonly,
        "automation": false,
        "created": iso(t.created_at),
        "updated": iso(t.last_used_at.unwrap_or(t.created_at)),
    })
}

/// `GET/POST /-/npm/v1/tokens`
pub async fn tokens(env: &FormatEnv, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
    let user = caller(ctx)?;
    if req.method() == Method::POST {
        let body = small_json(body, 64 << 10).await?;
        let password = body.get("password").and_then(Value::as_str).ok_or_else(|| NpmError::BadRequest("password is required".into()))?;
        if body.get("cidr_whitelist").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            return Err(NpmError::BadRequest("CIDR-restricted tokens are not supported".into()));
        }
        // The new token stands on the password, whatever credential carried the request.
        let Some(owner) = env.identity.login(user, password, &ctx.client).await?.filter(|p| p.realm == ctx.principal.realm) else {
            return Err(NpmError::Forbidden("wrong password".into()));
        };
        let readonly = body.get("readonly").and_then(Value::as_bool).unwrap_or(false);
        let t = env.identity.create_token(&owner, TokenSpec { name: "npm token create".into(), readonly, ..Default::default() }, &ctx.client).await?;
        return Ok(HttpResponse::Ok().json(token_json(&t.info, Some(&t.secret))));
    }
    if req.method() != Method::GET {
        return Err(NpmError::MethodNotAllowed);
    }
    let list = env.identity.tokens(&ctx.principal).await?;
    Ok(HttpResponse::Ok().json(json!({
        "objects": list.iter().map(|t| token_json(t, None)).collect::<Vec<_>>(),
        "total": list.len(),
        "urls": {},
    })))
}

/// `DELETE /-/npm/v1/tokens/token/<key>`: `key` is the token's key or its id.
pub async fn revoke(env: &FormatEnv, ctx: &RepoCtx, key: &str) -> Result<HttpResponse> {
    caller(ctx)?;
    if !env.identity.revoke_token(&ctx.principal, key, &ctx.client).await? {
        return Err(NpmError::NotFound);
    }
    Ok(HttpResponse::NoContent().finish())
}
