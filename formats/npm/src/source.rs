//! What every kind of npm repository shares: authorization, URLs, the user endpoints, and the
//! [`Source`] trait through which a group reads its members.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use serde_json::json;
use wharf_format::{Action, Asset, Denied, Digest, FormatEnv, Mount, RepoCtx, RepoRef, Want};

use crate::error::NpmError;
use crate::packument::Packument;
use crate::routes::Endpoint;
use crate::user;

pub type Result<T, E = NpmError> = std::result::Result<T, E>;

#[async_trait(?Send)]
pub trait Source {
    /// The package's document as stored (tarballs by file name or upstream URL) and an ETag
    /// for it, or `None` when this repository does not have the package.
    async fn doc(&self, name: &str) -> Result<Option<(Packument, String)>>;
    /// The packages this repository holds (a proxy: those it has cached).
    async fn names(&self) -> Result<Vec<String>>;
    /// The packument assets (with their search fields, see [`crate::search`]) whose rows
    /// contain each of `contains`, in name order.
    async fn packuments(&self, contains: Vec<String>) -> Result<Vec<Asset>>;
    async fn serve_tarball(&self, name: &str, file: &str, want: &Want) -> Result<HttpResponse>;
    /// Whether this repository has the package (`None`: it does not) and, if so, whether its
    /// document lists tarball `file`: what a group asks of its members before serving a
    /// tarball, on every install. By default from the document; a hosted repository answers
    /// from its rows instead of reading every tarball row and the whole document.
    async fn has_tarball(&self, name: &str, file: &str) -> Result<Option<bool>> {
        Ok(self.doc(name).await?.map(|(doc, _)| doc.lists_tarball(file)))
    }
    /// Whether publishes are taken here (a hosted registry that is not read-only, a group with a
    /// writable member).
    fn accepts_publishes(&self) -> bool {
        false
    }
    /// A version's provenance (hosted only: a proxy's documents link the upstream's).
    async fn serve_attestations(&self, _name: &str, _version: &str) -> Result<HttpResponse> {
        Err(NpmError::NotFound)
    }
}

pub fn source_of(r: &RepoRef) -> Option<&dyn Source> {
    let any = r.repo.as_any()?;
    if let Some(h) = any.downcast_ref::<crate::hosted::Hosted>() {
        return Some(h);
    }
    if let Some(p) = any.downcast_ref::<crate::proxy::Proxy>() {
        return Some(p);
    }
    None
}

pub fn authorize(ctx: &RepoCtx, action: Action, object: &str) -> Result<()> {
    match ctx.check(action, object) {
        Ok(()) => Ok(()),
        Err(Denied::Unauthenticated) => Err(NpmError::Unauthorized),
        Err(Denied::Forbidden) => {
            Err(NpmError::Forbidden(format!("{} access to {object} in {} is denied", format!("{action:?}").to_lowercase(), ctx.repo.name)))
        }
    }
}

/// The registry URL as the client reached it (after `X-Forwarded-*`), without a trailing `/`.
pub fn base_url(ctx: &RepoCtx) -> String {
    match &ctx.mount {
        Mount::Prefix { prefix } => format!("{}{prefix}", ctx.origin),
        _ => format!("{}/repository/{}", ctx.origin, ctx.repo.name),
    }
}

pub fn is_common(e: &Endpoint) -> bool {
    matches!(
        e,
        Endpoint::Ping
            | Endpoint::Whoami
            | Endpoint::User(_)
            | Endpoint::Logout(_)
            | Endpoint::Tokens
            | Endpoint::Token(_)
            | Endpoint::WebLogin
            | Endpoint::WebLoginPage(_)
            | Endpoint::WebLoginDone(_)
    )
}

/// The endpoints about the caller rather than packages.
pub async fn common(env: &FormatEnv, ctx: &RepoCtx, req: &HttpRequest, e: Endpoint, body: web::Payload) -> Result<HttpResponse> {
    let m = req.method();
    match e {
        Endpoint::Ping => Ok(HttpResponse::Ok().json(json!({}))),
        Endpoint::Whoami => user::whoami(ctx),
        Endpoint::User(name) if m == Method::PUT => user::login(env, ctx, &name, body).await,
        Endpoint::User(name) if wharf_format::reads(m) => {
            if ctx.principal.user.as_deref() != Some(name.as_str()) {
                return Err(NpmError::NotFound);
            }
            Ok(HttpResponse::Ok().json(json!({"_id": format!("org.couchdb.user:{name}"), "name": name, "type": "user", "roles": []})))
        }
        Endpoint::Logout(token) if m == Method::DELETE => user::logout(env, ctx, &token).await,
        Endpoint::Tokens => user::tokens(env, ctx, req, body).await,
        Endpoint::Token(key) if m == Method::DELETE => user::revoke(env, ctx, &key).await,
        Endpoint::WebLogin if m == Method::POST => crate::weblogin::start(env, ctx).await,
        Endpoint::WebLoginPage(id) if m == Method::GET => crate::weblogin::page(env, &id).await,
        Endpoint::WebLoginPage(id) if m == Method::POST => crate::weblogin::approve(env, ctx, &id, body).await,
        Endpoint::WebLoginDone(done) if m == Method::GET => crate::weblogin::done(env, &done).await,
        _ => Err(NpmError::MethodNotAllowed),
    }
}

pub async fn blob_response(env: &FormatEnv, asset: &Asset, want: &Want) -> Result<HttpResponse> {
    let digest: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| NpmError::Internal(Box::new(e)))?;
    let mut res = HttpResponse::Ok();
    res.content_type("application/octet-stream").insert_header(("Cache-Control", "max-age=31536000, immutable"));
    Ok(wharf_format::download::respond(&env.blobs, &digest, asset.size as u64, want, res).await?)
}

/// `GET /<name>/<version or tag>`: one version's manifest.
pub fn version_response(doc: &Packument, wanted: &str, base: &str) -> Result<HttpResponse> {
    let m = doc.version(wanted, base).ok_or(NpmError::NotFound)?;
    Ok(HttpResponse::Ok().content_type("application/json").body(m))
}

/// `GET /-/package/<name>/dist-tags`.
pub fn dist_tags_response(doc: &Packument) -> HttpResponse {
    HttpResponse::Ok().json(doc.dist_tags())
}

/// `GET /-/v1/search?text=&size=&from=` (see [`crate::search`]).
pub async fn search_response(src: &dyn Source, ctx: &RepoCtx) -> Result<HttpResponse> {
    let q: Vec<(String, String)> = web::Query::<Vec<(String, String)>>::from_query(&ctx.query).map(|q| q.into_inner()).unwrap_or_default();
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let query = crate::search::Query::parse(&get("text").unwrap_or_default());
    let size: usize = get("size").and_then(|s| s.parse().ok()).unwrap_or(20).min(crate::search::MAX_SIZE);
    let from: usize = get("from").and_then(|s| s.parse().ok()).unwrap_or(0);
    let rows = src.packuments(query.narrowing()).await?;
    let base = base_url(ctx);
    let mut total = 0;
    let mut page = Vec::new();
    for a in rows.iter().filter(|a| query.matches(a) && a.component.as_deref().is_some_and(|n| ctx.check(Action::Read, n).is_ok())) {
        if total >= from && page.len() < size {
            page.push(crate::search::result(a, &base));
        }
        total += 1;
    }
    Ok(HttpResponse::Ok().json(json!({"objects": page, "total": total, "time": crate::model::iso(wharf_format::now_millis())})))
}

/// A repository's packument assets whose rows contain each of `contains`.
pub async fn packuments(env: &FormatEnv, repo: i64, contains: Vec<String>) -> Result<Vec<Asset>> {
    let q = wharf_format::ListQuery { kind: Some(crate::meta::PACKUMENT.into()), contains, ..Default::default() };
    Ok(env.meta.list(repo, q).await?)
}

/// `npm audit` asked of a repository with no upstream to ask (hosted, or a group without an
/// online proxy member): said plainly, as npm prints the body, rather than an empty report that
/// reads as "no vulnerabilities". A 4xx: npm retries 5xx answers before giving up.
pub fn no_audit_source(ctx: &RepoCtx) -> NpmError {
    let what = match ctx.repo.kind {
        wharf_format::Kind::Group => "a group without an online proxy member",
        _ => "a hosted registry",
    };
    NpmError::NotProvided(format!(
        "{} is {what}: it has no source of security advisories. Run npm audit against a proxy of a registry that has them \
         (or a group with such a proxy member), e.g. npm audit --registry <wharf>/repository/<npm-proxy>/",
        ctx.repo.name
    ))
}
