//! The Docker token endpoint (`GET /v2/token?service=...&scope=...`), as in Distribution's
//! token authentication spec: the client presents Basic credentials (or none), asks for scopes,
//! and gets a short-lived signed token holding the subset it may have. An API token may stand in
//! for the password; the bearer token then holds no more than that token allows.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use wharf_format::{Action, Mount, Principal, RepoCtx};

use crate::db::failures::noting;
use crate::http::mount::{origin, subdomain_repo};
use crate::security::principal::decode_basic;
use crate::security::token::{action_name, AccessEntry, BearerSource, GrantClaim};
use crate::state::AppState;

pub async fn on_main(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let own = subdomain_repo(&state, &req);
    get_token(&state, &req, own).await
}

pub async fn on_port(state: web::Data<AppState>, port: u16, req: HttpRequest) -> HttpResponse {
    let own = state.registry.snapshot().by_port.get(&port).cloned();
    get_token(&state, &req, own).await
}

pub async fn oauth_on_main(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let own = subdomain_repo(&state, &req);
    post_token(&state, &req, own, &body).await
}

pub async fn oauth_on_port(state: web::Data<AppState>, port: u16, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let own = state.registry.snapshot().by_port.get(&port).cloned();
    post_token(&state, &req, own, &body).await
}

/// The OAuth2 form of the token endpoint (`POST`, `grant_type=password`), which containerd-based
/// clients try first when they hold credentials.
async fn post_token(state: &AppState, req: &HttpRequest, own: Option<String>, body: &[u8]) -> HttpResponse {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() != Some("password") {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type", "error_description": "only the password grant is supported"}));
    }
    let (Some(user), Some(pass)) = (field("username"), field("password")) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request", "error_description": "username and password are required"}));
    };
    let (found, failed) = noting(state.auth.basic_for_bearer(&user, &pass, &crate::http::mount::client(req))).await;
    let Some((principal, source)) = found else {
        if failed {
            return HttpResponse::ServiceUnavailable()
                .insert_header(wharf_format::retry_after())
                .json(json!({"error": "temporarily_unavailable", "error_description": crate::http::mount::NO_ANSWER}));
        }
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_grant", "error_description": "invalid username or password"}));
    };
    let scopes: Vec<String> = form.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    issue(state, req, own, principal, source, &scopes)
}

async fn get_token(state: &AppState, req: &HttpRequest, own: Option<String>) -> HttpResponse {
    let (principal, source) = match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        None => match noting(state.auth.anonymous()).await {
            (_, true) => return unavailable(state, req),
            (anonymous, false) => (anonymous, BearerSource::default()),
        },
        Some(h) => {
            let Some(b64) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")) else {
                return unauthorized("use Basic credentials at the token endpoint");
            };
            let Some((user, pass)) = decode_basic(b64.trim()) else { return unauthorized("malformed Basic credentials") };
            match noting(state.auth.basic_for_bearer(&user, &pass, &crate::http::mount::client(req))).await {
                (Some(found), _) => found,
                (None, true) => return unavailable(state, req),
                (None, false) => return unauthorized("invalid username or password"),
            }
        }
    };
    let scopes: Vec<String> = url::form_urlencoded::parse(req.query_string().as_bytes()).filter(|(k, _)| k == "scope").map(|(_, v)| v.into_owned()).collect();
    issue(state, req, own, principal, source, &scopes)
}

/// The database did not answer: Docker's 503, not "invalid username or password" (see
/// `db::failures`).
fn unavailable(state: &AppState, req: &HttpRequest) -> HttpResponse {
    let message = crate::http::mount::NO_ANSWER;
    state.format("docker").map_or_else(|| wharf_format::unavailable_text(message), |docker| docker.unavailable(req, message))
}

fn unauthorized(msg: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", r#"Basic realm="wharf""#))
        .json(json!({"errors":[{"code":"UNAUTHORIZED","message":msg,"detail":null}]}))
}

/// Signs a token holding the part of `scopes` that `principal` may have, and `source`: how the
/// principal proved it, checked again whenever the token is used. `own`: the repository this
/// listener serves (own port or subdomain), where scope names carry no repository segment.
fn issue(state: &AppState, req: &HttpRequest, own: Option<String>, principal: Principal, source: BearerSource, scopes: &[String]) -> HttpResponse {
    let origin = origin(req);
    let mut access = Vec::new();
    let mut grants = Vec::new();
    for v in scopes {
        for scope in v.split(' ').filter(|s| !s.is_empty()) {
            let Some((kind, rest)) = scope.split_once(':') else { continue };
            let Some((name, actions)) = rest.rsplit_once(':') else { continue };
            // `registry:catalog:*` (crane catalog, regctl repo ls): the token may list, and the
            // listing shows what its holder may read. Dropped, every token client's catalog
            // was empty, an administrator's too.
            if kind == "registry" && name == "catalog" && principal.user.is_some() {
                if !grants.iter().any(|g: &GrantClaim| g.repository.is_empty() && g.object == wharf_format::CATALOG_GRANT) {
                    grants.push(GrantClaim {
                        repository: String::new(),
                        object: wharf_format::CATALOG_GRANT.into(),
                        actions: vec![action_name(Action::Read).into()],
                    });
                    access.push(AccessEntry { kind: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] });
                }
                continue;
            }
            if kind != "repository" {
                continue;
            }
            let (repo, object) = match &own {
                Some(r) => (r.clone(), name.to_string()),
                None => match name.split_once('/') {
                    Some((r, o)) => (r.to_string(), o.to_string()),
                    None => continue,
                },
            };
            let Some(r) = state.registry.get(&repo) else { continue };
            let ctx = RepoCtx {
                repo: r.config.clone(),
                path: String::new(),
                query: String::new(),
                mount: if own.is_some() { Mount::Own } else { Mount::Segment { segment: repo.clone() } },
                principal: principal.clone(),
                origin: origin.clone(),
                client: crate::http::mount::client(req),
                token_realm: String::new(),
                token_service: String::new(),
            };
            let mut granted_names = Vec::new();
            let mut granted = Vec::new();
            for a in actions.split(',') {
                let wanted: &[(Action, &str)] = match a {
                    "pull" => &[(Action::Read, "pull")],
                    "push" => &[(Action::Write, "push")],
                    "delete" => &[(Action::Delete, "delete")],
                    "*" => &[(Action::Read, "pull"), (Action::Write, "push"), (Action::Delete, "delete")],
                    _ => &[],
                };
                for (action, label) in wanted {
                    if ctx.check(*action, &object).is_ok() && !granted.contains(action) {
                        granted.push(*action);
                        granted_names.push(label.to_string());
                    }
                }
            }
            access.push(AccessEntry { kind: "repository".into(), name: name.to_string(), actions: granted_names });
            if !granted.is_empty() {
                grants.push(GrantClaim { repository: repo, object, actions: granted.into_iter().map(|a| action_name(a).to_string()).collect() });
            }
        }
    }
    let ttl = state.cfg.docker.token_ttl_secs;
    let claims = state.auth.tokens.claims(principal.user.as_deref().zip(principal.realm), source, ttl, access, grants);
    let issued_at = claims.iat;
    let token = state.auth.tokens.sign(&claims);
    HttpResponse::Ok().json(json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": wharf_format::rfc3339_millis(issued_at as i64 * 1000),
        "scope": scopes.join(" "),
    }))
}
