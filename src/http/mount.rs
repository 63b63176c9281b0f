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
use actix_web::http::{Method, StatusCode};
use actix_web::FromRequest;
use actix_web::{web, HttpRequest, HttpResponse};
use wharf_format::{Mount, Principal, RepoCtx, RepoRef, RootCtx};

use crate::db::failures::noting;
use crate::state::AppState;

use crate::config::{ForwardedHeaders, Net};

/// The trusted proxies and the header family they write.
fn proxies(req: &HttpRequest) -> (&[Net], ForwardedHeaders) {
    match req.app_data::<web::Data<AppState>>() {
        Some(s) => (s.cfg.http.trusted_proxies.as_slice(), s.cfg.http.forwarded_headers),
        None => (&[], ForwardedHeaders::XForwarded),
    }
}

/// What a trusted proxy says about the client's connection, when the peer is one.
#[derive(Debug, Default, PartialEq)]
struct Forwarded {
    client: Option<IpAddr>,
    host: Option<String>,
    proto: Option<String>,
}

/// `None` unless the peer is a trusted proxy. The client is the rightmost address of the chain
/// that is not itself a trusted proxy: entries further left were written by that client, so
/// they prove nothing. Only `family` is read: a proxy that writes the other family passes the
/// client's copy through untouched.
fn forwarded(req: &HttpRequest, nets: &[Net], family: ForwardedHeaders) -> Option<Forwarded> {
    let peer = req.peer_addr()?.ip();
    if !nets.iter().any(|n| n.contains(peer)) {
        return None;
    }
    let trusted = |ip: &IpAddr| nets.iter().any(|n| n.contains(*ip));
    let values = |name: &str| -> Vec<String> {
        req.headers().get_all(name).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(|v| v.trim().to_string()).collect()
    };
    // No chain, or one of trusted proxies only: the request starts at the peer.
    let mut out = Forwarded { client: Some(peer), ..Forwarded::default() };
    match family {
        ForwardedHeaders::XForwarded => {
            for hop in values("x-forwarded-for").iter().rev().filter(|h| !h.is_empty()) {
                match parse_hop(hop) {
                    Some(ip) if trusted(&ip) => continue,
                    // `unknown` or an obfuscated name ends the chain: nothing left of it is known.
                    ip => {
                        out.client = ip;
                        break;
                    }
                }
            }
            // Proxies set these rather than append; if one appended, the last value is its own.
            out.host = values("x-forwarded-host").pop();
            out.proto = values("x-forwarded-proto").pop();
        }
        ForwardedHeaders::Forwarded => {
            // Each element describes the connection the proxy that appended it received: the
            // element naming the client is the outermost trusted proxy's, and its host and proto
            // are what the client addressed.
            for element in values("forwarded").iter().rev() {
                let param = |key: &str| {
                    element.split(';').find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_string())
                    })
                };
                let ip = param("for").as_deref().and_then(parse_hop);
                if ip.as_ref().is_some_and(trusted) {
                    continue;
                }
                out = Forwarded { client: ip, host: param("host"), proto: param("proto") };
                break;
            }
        }
    }
    out.host = out.host.filter(|h| is_authority(h));
    out.proto = out.proto.map(|p| p.to_ascii_lowercase()).filter(|p| p == "http" || p == "https");
    Some(out)
}

/// `host[:port]` that can go into a URL unchanged: a forwarded value ends up in answers.
fn is_authority(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

fn trusted_word(req: &HttpRequest) -> Option<Forwarded> {
    let (nets, family) = proxies(req);
    forwarded(req, nets, family)
}

/// `http` or `https`, as the client addressed us: the listener's own scheme, or a trusted
/// proxy's word.
pub fn scheme(req: &HttpRequest) -> String {
    if let Some(proto) = trusted_word(req).and_then(|f| f.proto) {
        return proto;
    }
    if req.app_config().secure() { "https" } else { "http" }.to_string()
}

/// `host[:port]` as the client addressed us: the Host header (HTTP/2: the authority), or a
/// trusted proxy's word.
pub fn host(req: &HttpRequest) -> String {
    if let Some(host) = trusted_word(req).and_then(|f| f.host) {
        return host;
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
/// proxies the client their chain names (see [`forwarded`]); `unknown` when the chain ends in
/// an entry that is no address (`unknown`, an obfuscated name).
pub fn client(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else { return "unknown".into() };
    let (nets, family) = proxies(req);
    client_of(req, peer, nets, family)
}

fn client_of(req: &HttpRequest, peer: IpAddr, nets: &[Net], family: ForwardedHeaders) -> String {
    match forwarded(req, nets, family).map_or(Some(peer), |f| f.client) {
        Some(ip) => unmapped(ip).to_string(),
        None => "unknown".into(),
    }
}

/// An IPv4 client reached over an IPv6 socket shows as `::ffff:a.b.c.d`.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
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
    let snap = state.registry.snapshot();
    let Some(r) = snap.repos.get(repo).cloned() else {
        return not_found(&req, repo);
    };
    if let Some(m) = snap.metrics.get(repo) {
        crate::metrics::http::attribute(&req, m);
    }
    drop(snap);
    if !r.config.online {
        // In the protocol's own shape (a Docker client could not read plain text).
        let message = format!("repository {repo} is offline");
        let mut res = state.format(&r.config.format).map_or_else(|| wharf_format::unavailable_text(&message), |f| f.unavailable(&req, &message));
        // Until an administrator acts: not "try again in 5 s" (pip would, five times).
        res.headers_mut().remove(actix_web::http::header::RETRY_AFTER);
        return res;
    }
    if let Some(freeze) = state.read_only.current() {
        if let Some(refusal) = state.format(&r.config.format).and_then(|f| f.refuse_write(&req, &path, &freeze.message())) {
            return refusal;
        }
    }
    // A request that only reads may start on a remembered login before its re-read, which
    // then rides on its first query (see `db::deferred_check`); if the login no longer holds,
    // its answer is dropped unsent and the request is answered again as any other would be.
    if reads_only(&req) {
        let ((principal, deferred), failed) = noting(state.auth.principal_deferred(&req)).await;
        if failed && principal.user.is_none() {
            return unanswered(state, &r, &req);
        }
        let Some(login) = deferred else {
            return handle(state, &r, req, body, path, mount, principal).await;
        };
        let res = login.check.around(handle(state, &r, req.clone(), body, path.clone(), mount.clone(), principal)).await;
        if state.auth.confirm(&login).await {
            return res;
        }
        drop(res);
        let Some(principal) = state.auth.principal_unless_silent(&req).await else {
            return unanswered(state, &r, &req);
        };
        let body = web::Payload::from_request(&req, &mut actix_web::dev::Payload::None).await.expect("an empty payload");
        return handle(state, &r, req, body, path, mount, principal).await;
    }
    let Some(principal) = state.auth.principal_unless_silent(&req).await else {
        return unanswered(state, &r, &req);
    };
    handle(state, &r, req, body, path, mount, principal).await
}

/// What a caller whom the database or the LDAP directory could not identify is told (in place
/// of a 401).
pub const NO_ANSWER: &str = "the server cannot check credentials now: its database or its LDAP directory does not answer; try again shortly";

/// A 503 in the protocol of repository `r` (see `db::failures`).
fn unanswered(state: &AppState, r: &RepoRef, req: &HttpRequest) -> HttpResponse {
    match state.format(&r.config.format) {
        Some(f) => f.unavailable(req, NO_ANSWER),
        None => wharf_format::unavailable_text(NO_ANSWER),
    }
}

/// Hands the request to its repository's format as `principal`.
async fn handle(state: &AppState, r: &RepoRef, req: HttpRequest, body: web::Payload, path: String, mount: Mount, principal: Principal) -> HttpResponse {
    let origin = origin(&req);
    let initiator = crate::webhooks::initiator_of(principal.user.as_deref(), &client(&req));
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
    // What the request changes, webhooks hear of as this caller's doing.
    crate::webhooks::with_initiator(initiator, r.repo.handle(ctx, req, body)).await
}

/// A GET or HEAD without a body: what may be answered twice (see `dispatch`).
fn reads_only(req: &HttpRequest) -> bool {
    let h = req.headers();
    matches!(*req.method(), Method::GET | Method::HEAD)
        && !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
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
            let Some(principal) = state.auth.principal_unless_silent(&req).await else {
                return format.unavailable(&req, NO_ANSWER);
            };
            let ctx = RootCtx {
                principal,
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

    const PROXY: &str = "10.0.0.1:40000";

    fn nets() -> Vec<Net> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut t = actix_web::test::TestRequest::default().peer_addr(peer.parse().unwrap()).insert_header(("Host", "wharf.example"));
        for h in headers {
            t = t.append_header(*h);
        }
        t.to_http_request()
    }

    fn client_at(peer: &str, family: ForwardedHeaders, headers: &[(&str, &str)]) -> String {
        let req = request(peer, headers);
        client_of(&req, req.peer_addr().unwrap().ip(), &nets(), family)
    }

    /// nginx sets X-Forwarded-* and passes the client's own `Forwarded` through: that one must
    /// move neither the address nor the host.
    #[test]
    fn only_the_configured_family_is_read() {
        let spoofed = [
            ("Forwarded", "for=1.2.3.4;host=evil.example;proto=http"),
            ("X-Forwarded-For", "192.0.2.66, 203.0.113.9"),
            ("X-Forwarded-Host", "repo.example"),
            ("X-Forwarded-Proto", "https"),
        ];
        assert_eq!(client_at(PROXY, ForwardedHeaders::XForwarded, &spoofed), "203.0.113.9");
        let f = forwarded(&request(PROXY, &spoofed), &nets(), ForwardedHeaders::XForwarded).unwrap();
        assert_eq!((f.host.as_deref(), f.proto.as_deref()), (Some("repo.example"), Some("https")));

        let spoofed = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Host", "evil.example"), ("Forwarded", "for=198.51.100.7;host=repo.example;proto=https")];
        assert_eq!(client_at(PROXY, ForwardedHeaders::Forwarded, &spoofed), "198.51.100.7");
        let f = forwarded(&request(PROXY, &spoofed), &nets(), ForwardedHeaders::Forwarded).unwrap();
        assert_eq!((f.host.as_deref(), f.proto.as_deref()), (Some("repo.example"), Some("https")));
    }

    #[test]
    fn the_chain_is_walked_from_the_right_past_trusted_proxies() {
        let xff = |v| client_at(PROXY, ForwardedHeaders::XForwarded, &[("X-Forwarded-For", v)]);
        assert_eq!(xff("1.2.3.4, 203.0.113.9, 10.1.1.1"), "203.0.113.9");
        assert_eq!(xff("10.2.2.2, 10.1.1.1"), "10.0.0.1");
        assert_eq!(xff("1.2.3.4, unknown"), "unknown");
        assert_eq!(xff("::ffff:203.0.113.9"), "203.0.113.9");
        let req = request(PROXY, &[("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), ("X-Forwarded-For", "3.3.3.3")]);
        assert_eq!(client_of(&req, req.peer_addr().unwrap().ip(), &nets(), ForwardedHeaders::XForwarded), "3.3.3.3");
        // The element naming the client is the outermost proxy's, and so are its host and proto.
        let header = r#"for=1.2.3.4;host=evil.example, for="[2001:db8::1]:80";host=repo.example;proto=https, for=10.1.1.1;host=inner;proto=http"#;
        let f = forwarded(&request(PROXY, &[("Forwarded", header)]), &nets(), ForwardedHeaders::Forwarded).unwrap();
        assert_eq!(f, Forwarded { client: Some("2001:db8::1".parse().unwrap()), host: Some("repo.example".into()), proto: Some("https".into()) });
    }

    #[test]
    fn an_untrusted_peer_is_its_own_client_and_forwarded_values_must_fit_a_url() {
        let headers = [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Host", "evil.example")];
        assert!(forwarded(&request("192.0.2.5:1", &headers), &nets(), ForwardedHeaders::XForwarded).is_none());
        assert_eq!(client_at("192.0.2.5:1", ForwardedHeaders::XForwarded, &headers), "192.0.2.5");
        let f = forwarded(&request(PROXY, &[("X-Forwarded-Host", "evil.example/x\\"), ("X-Forwarded-Proto", "gopher")]), &nets(), ForwardedHeaders::XForwarded)
            .unwrap();
        assert_eq!((f.host, f.proto), (None, None));
    }
}
