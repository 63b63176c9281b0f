//! Finding the repository a request is for, whichever way it arrived, and handing it over:
//!
//! * `/repository/<repo>/<rest>` on the main port ([`Mount::Prefix`]),
//! * a format's root path with the repository as first segment, e.g. `/v2/<repo>/<image>/...`
//!   ([`Mount::Segment`]),
//! * the repository's own port, or a Host header whose first label is its subdomain
//!   ([`Mount::Own`]).
//!
//! The server checks existence and online state and identifies the caller; the format does
//! the rest.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use wharf_format::{Mount, RepoCtx, RootCtx};

use crate::state::AppState;

/// `scheme://host[:port]` as the client addressed us.
pub fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// The client's address for the audit log: `X-Forwarded-For`'s first entry when present (the
/// header is the proxy's word, recorded as such), else the peer.
pub fn client(req: &HttpRequest) -> String {
    req.connection_info().realip_remote_addr().unwrap_or("unknown").to_string()
}

pub async fn dispatch(state: &AppState, req: HttpRequest, body: web::Payload, repo: &str, path: String, mount: Mount) -> HttpResponse {
    let Some(r) = state.registry.get(repo) else {
        return not_found(&req, repo);
    };
    if !r.config.online {
        return HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("repository {repo} is offline\n"));
    }
    let principal = state.auth.principal(&req).await;
    let origin = origin(&req);
    let ctx = RepoCtx {
        repo: r.config.clone(),
        path,
        query: req.query_string().to_string(),
        mount,
        principal,
        token_realm: format!("{origin}/v2/token"),
        token_service: state.auth.tokens.service().to_string(),
        origin,
        client: client(&req),
    };
    r.repo.handle(ctx, req, body).await
}

/// 404 for an unknown repository, in the Docker error shape on Docker paths.
fn not_found(req: &HttpRequest, repo: &str) -> HttpResponse {
    if req.path().starts_with("/v2/") {
        let body = serde_json::json!({"errors":[{"code":"NAME_UNKNOWN","message":format!("repository {repo} not known to registry"),"detail":null}]});
        return HttpResponse::build(StatusCode::NOT_FOUND).content_type("application/json").body(body.to_string());
    }
    HttpResponse::NotFound().content_type("text/plain").body(format!("repository {repo} not found\n"))
}

/// The repository whose subdomain is the first label of the Host header, if any.
pub fn subdomain_repo(state: &AppState, req: &HttpRequest) -> Option<String> {
    let host = req.connection_info().host().to_string();
    let host = host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(host);
    let (label, rest) = host.split_once('.')?;
    if rest.is_empty() {
        return None;
    }
    state.registry.snapshot().by_subdomain.get(label).cloned()
}

/// `/repository/<repo>/<rest>`
pub async fn by_prefix(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let raw = req.path().to_string();
    let rest = raw.strip_prefix("/repository/").unwrap_or("");
    let (repo, path) = match rest.split_once('/') {
        Some((r, p)) => (r.to_string(), format!("/{p}")),
        None => (rest.to_string(), "/".to_string()),
    };
    let mount = Mount::Prefix { prefix: format!("/repository/{repo}") };
    dispatch(&state, req, body, &repo, path, mount).await
}

/// A format's root path on the main port (`/v2/...`): by subdomain, else the first segment.
pub async fn by_root(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    if let Some(repo) = subdomain_repo(&state, &req) {
        let path = req.path().to_string();
        return dispatch(&state, req, body, &repo, path, Mount::Own).await;
    }
    let raw = req.path().to_string();
    let Some(format) = state.formats.iter().find(|f| f.root_path().is_some_and(|root| raw == root || raw.starts_with(&format!("{root}/")))).cloned() else {
        return HttpResponse::NotFound().finish();
    };
    let root = format.root_path().unwrap_or_default();
    let rest = raw[root.len()..].trim_start_matches('/');
    match rest.split_once('/') {
        Some((repo, tail)) if !repo.starts_with('_') => {
            let path = format!("{root}/{tail}");
            let mount = Mount::Segment { segment: repo.to_string() };
            let repo = repo.to_string();
            dispatch(&state, req, body, &repo, path, mount).await
        }
        _ => {
            let snap = state.registry.snapshot();
            let mut repos: Vec<_> = snap.repos.values().filter(|r| r.config.format == format.name()).cloned().collect();
            repos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
            let origin = origin(&req);
            let ctx = RootCtx {
                principal: state.auth.principal(&req).await,
                repos,
                meta: state.meta.clone(),
                token_realm: format!("{origin}/v2/token"),
                token_service: state.auth.tokens.service().to_string(),
                origin,
            };
            match format.handle_root(ctx, req).await {
                Some(res) => res,
                None => HttpResponse::NotFound().finish(),
            }
        }
    }
}

/// Everything on a repository's own port.
pub async fn by_port(state: web::Data<AppState>, port: u16, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let Some(repo) = state.registry.snapshot().by_port.get(&port).cloned() else {
        return HttpResponse::NotFound().content_type("text/plain").body("no repository on this port\n");
    };
    let path = req.path().to_string();
    dispatch(&state, req, body, &repo, path, Mount::Own).await
}
