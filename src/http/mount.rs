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

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use wharf_format::{Mount, RepoCtx, RootCtx};

use crate::state::AppState;

fn proxies(req: &HttpRequest) -> &[crate::config::Net] {
    req.app_data::<web::Data<AppState>>().map(|s| s.cfg.http.trusted_proxies.as_slice()).unwrap_or_default()
}

fn from_trusted_proxy(req: &HttpRequest) -> bool {
    let nets = proxies(req);
    !nets.is_empty() && req.peer_addr().is_some_and(|a| nets.iter().any(|n| n.contains(a.ip())))
}

/// `http` or `https`, as the client addressed us: the listener's own scheme, or a trusted
/// proxy's word.
pub fn scheme(req: &HttpRequest) -> String {
    if from_trusted_proxy(req) {
        return req.connection_info().scheme().to_string();
    }
    if req.app_config().secure() { "https" } else { "http" }.to_string()
}

/// `host[:port]` as the client addressed us: the Host header (HTTP/2: the authority), or a
/// trusted proxy's word.
pub fn host(req: &HttpRequest) -> String {
    if from_trusted_proxy(req) {
        return req.connection_info().host().to_string();
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| req.app_config().host().to_string())
}

/// `scheme://host[:port]` as the client addressed us.
pub fn origin(req: &HttpRequest) -> String {
    format!("{}://{}", scheme(req), host(req))
}

/// The client's address for the audit log and login pauses: the peer's, or behind trusted
/// proxies the nearest address in their chain (`Forwarded: for=`, else `X-Forwarded-For`)
/// that is not itself a trusted proxy: entries further left were written by whoever the
/// first untrusted hop was, so they prove nothing.
pub fn client(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else { return "unknown".into() };
    if !from_trusted_proxy(req) {
        return unmapped(peer).to_string();
    }
    let nets = proxies(req);
    for hop in forwarded_chain(req).iter().rev() {
        match parse_hop(hop) {
            Some(ip) if nets.iter().any(|n| n.contains(ip)) => continue,
            Some(ip) => return unmapped(ip).to_string(),
            // `unknown` or an obfuscated name: the chain cannot be followed past it.
            None => return "unknown".into(),
        }
    }
    unmapped(peer).to_string()
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The forwarded-for chain, client first: `Forwarded`'s `for=` values when that header is
/// present, else `X-Forwarded-For`'s entries (every header line, in order).
fn forwarded_chain(req: &HttpRequest) -> Vec<String> {
    let lines = |name: &str| req.headers().get_all(name).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).collect::<Vec<_>>();
    let forwarded = lines("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_string())
                })
            })
            .collect();
    }
    lines("x-forwarded-for").into_iter().filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// An address from a forwarded-for entry: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.parse().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Content from repositories is whatever was uploaded: browsers must not guess a type for it.
fn nosniff(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
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
    let host = host(req);
    let host = host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(host);
    let (label, rest) = host.split_once('.')?;
    if rest.is_empty() {
        return None;
    }
    state.registry.snapshot().by_subdomain.get(label).cloned()
}

/// `/repository/<repo>/<rest>`
pub async fn by_prefix(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    nosniff(prefixed(state, req, body).await)
}

async fn prefixed(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
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
    nosniff(rooted(state, req, body).await)
}

async fn rooted(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
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
    nosniff(on_port(state, port, req, body).await)
}

async fn on_port(state: web::Data<AppState>, port: u16, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let Some(repo) = state.registry.snapshot().by_port.get(&port).cloned() else {
        return HttpResponse::NotFound().content_type("text/plain").body("no repository on this port\n");
    };
    let path = req.path().to_string();
    dispatch(&state, req, body, &repo, path, Mount::Own).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_hops_parse() {
        assert_eq!(parse_hop("192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(parse_hop("192.0.2.1:4711"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(parse_hop("[2001:db8::1]:4711"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_hop("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_hop("unknown"), None);
        assert_eq!(parse_hop("_hidden"), None);
    }

    #[test]
    fn the_chain_comes_from_forwarded_else_x_forwarded_for() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Forwarded", r#"for=198.51.100.1;proto=https, for="[2001:db8::1]:80""#))
            .insert_header(("X-Forwarded-For", "203.0.113.9"))
            .to_http_request();
        assert_eq!(forwarded_chain(&req), ["198.51.100.1", "[2001:db8::1]:80"]);
        let req = actix_web::test::TestRequest::default()
            .append_header(("X-Forwarded-For", "1.1.1.1, 2.2.2.2"))
            .append_header(("X-Forwarded-For", "3.3.3.3"))
            .to_http_request();
        assert_eq!(forwarded_chain(&req), ["1.1.1.1", "2.2.2.2", "3.3.3.3"]);
    }
}
