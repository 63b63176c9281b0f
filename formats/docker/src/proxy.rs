//! A proxy (pull-through cache) repository: reads are served from this repository's own
//! storage (a [`Hosted`] used as the cache), filled from the upstream on a miss.
//!
//! - By digest, content is immutable: once cached it is served forever.
//! - By tag, the cached answer is trusted for the shorter of `metadataMaxAge` and `contentMaxAge`
//!   ([`ProxySettings::tag_max_age`]), then revalidated with a HEAD;
//!   when the upstream is unreachable, answers 5xx or rate-limits, the cached manifest is served.
//! - An uncached blob streams to the client while it is written to the blob store, and is kept
//!   only if its digest verifies. Concurrent misses for one blob or manifest make one upstream
//!   fetch: the first request leads, the others wait for it and then read the cache.
//! - Upstream 404s are remembered for the negative cache's time to live.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use wharf_format::cache_probe::CacheKind;
use wharf_format::proxy::{self, Fill, Flight};
use wharf_format::{
    now_millis, Action, Asset, BlobStore, Check, ComponentKey, DeleteError, Digest, FormatEnv, MetaError, MetaStore, NegativeCache, NewAsset, Outcome, Repo,
    RepoConfig, RepoCtx, SingleFlight, Write,
};

use crate::access;
use crate::config::{DockerSettings, ProxySettings};
use crate::error::DockerError;
use crate::hosted::{Hosted, MAX_MANIFEST_BYTES};
use crate::meta::{self, blob_path, manifest_path, tag_path};
use crate::model::{Manifest, Reference, MANIFEST_TYPES};
use crate::routes::{self, Endpoint};
use crate::upstream::{Upstream, UpstreamError};

type Result<T, E = DockerError> = std::result::Result<T, E>;

pub struct Proxy {
    cfg: Arc<RepoConfig>,
    settings: DockerSettings,
    proxy: ProxySettings,
    cache: Hosted,
    upstream: Arc<Upstream>,
    blobs: Arc<BlobStore>,
    meta: Arc<dyn MetaStore>,
    downloads: Arc<dyn wharf_format::Downloads>,
    negative: NegativeCache,
    flights: SingleFlight,
}

#[async_trait(?Send)]
impl Repo for Proxy {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        crate::error::respond(self.route(&ctx, &req, body).await)
    }

    /// The cache is a hosted repository's content: what it no longer needs goes the same way
    /// (and is fetched again on demand).
    async fn run_task(&self, type_id: &str, run: wharf_format::TaskRun<'_>) -> Option<Result<wharf_format::TaskReport, String>> {
        self.cache.run_task(type_id, run).await
    }

    /// A cached tag: the next pull asks the upstream again.
    async fn delete_component(&self, component: &ComponentKey, assets: &[Asset]) -> Result<Vec<Asset>, DeleteError> {
        crate::hosted::delete_tags(&*self.meta, self.cfg.id, component, assets).await
    }

    /// What the cache holds: platforms not pulled yet are listed without their layers.
    async fn describe_component(&self, component: &ComponentKey, assets: &[Asset]) -> Result<serde_json::Value, wharf_format::DescribeError> {
        crate::describe::describe(&*self.meta, &self.blobs, self.cfg.id, component, assets).await
    }
}

impl Proxy {
    pub fn new(cfg: Arc<RepoConfig>, settings: DockerSettings, proxy: ProxySettings, env: FormatEnv) -> Result<Proxy, String> {
        let upstream = Upstream::new(&proxy, proxy.is_hub(), &env.upstreams, cfg.id)?;
        Ok(Proxy {
            blobs: env.blobs.clone(),
            meta: env.meta.clone(),
            downloads: env.downloads.clone(),
            cache: Hosted::new(cfg.clone(), settings.clone(), env),
            cfg,
            settings,
            negative: NegativeCache::new(proxy.negative_cache),
            proxy,
            upstream: Arc::new(upstream),
            flights: SingleFlight::default(),
        })
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(DockerError::NameUnknown)?;
        let m = req.method().clone();
        let read = wharf_format::reads(&m);
        match endpoint {
            Endpoint::Manifest { name, reference } if read => {
                access::check_name(ctx, &name)?;
                self.authorize(ctx, &name)?;
                let reference = Reference::parse_existing(&reference)?;
                let kind = if matches!(reference, Reference::Tag(_)) { CacheKind::Metadata } else { CacheKind::Content };
                self.upstream
                    .through_cache(kind, async {
                        self.ensure_manifest(&name, &reference).await?;
                        self.cache.get_manifest(ctx, req, &name, &reference, m == Method::HEAD).await
                    })
                    .await
            }
            Endpoint::Blob { name, digest } if read => {
                access::check_name(ctx, &name)?;
                self.authorize(ctx, &name)?;
                // sha256 only (see `ensure_manifest`); any other well-formed digest is unknown here.
                let digest: Digest = match digest.parse::<wharf_format::AnyDigest>()?.sha256() {
                    Some(d) => d,
                    None => return Err(DockerError::BlobUnknown),
                };
                self.upstream.through_cache(CacheKind::Content, self.get_blob(ctx, req, &name, &digest, m == Method::HEAD)).await
            }
            Endpoint::Tags { name } if read => {
                access::check_name(ctx, &name)?;
                self.authorize(ctx, &name)?;
                self.upstream.through_cache(CacheKind::Metadata, self.tags(ctx, &name)).await
            }
            Endpoint::Base | Endpoint::Catalog | Endpoint::Referrers { .. } if read => self.cache.route(ctx, req, body).await,
            _ => Err(DockerError::Unsupported(format!("{} is a proxy repository: it is read-only", self.cfg.name))),
        }
    }

    fn authorize(&self, ctx: &RepoCtx, name: &str) -> Result<()> {
        access::authorize(self.settings.force_basic_auth, ctx, Action::Read, name)
    }

    // ---- shared fetches and the negative cache ----------------------------------------------

    /// Runs `fetch` once for every concurrent caller with the same key.
    async fn once<F, Fut>(&self, key: &str, not_found: impl Fn() -> DockerError, fetch: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let classify = |r: &Result<()>| match r {
            Ok(()) => Outcome::Done,
            Err(DockerError::ManifestUnknown(_) | DockerError::BlobUnknown) => Outcome::NotFound,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let reply = |o: Outcome| match o {
            Outcome::NotFound => Err(not_found()),
            Outcome::Failed(m) => Err(DockerError::Upstream(m)),
            _ => Ok(()),
        };
        self.flights.once(key, fetch, classify, reply).await
    }

    fn negatively_cached(&self, key: &str) -> bool {
        self.negative.contains(key)
    }

    fn remember_not_found(&self, key: &str) {
        self.negative.insert(key)
    }

    fn upstream_error(&self, e: UpstreamError, not_found: DockerError, key: &str) -> DockerError {
        match e {
            UpstreamError::NotFound => {
                self.remember_not_found(key);
                not_found
            }
            UpstreamError::TooManyRequests { retry_after } => {
                DockerError::TooManyRequests { message: format!("upstream {} rate-limits us", self.proxy.remote_url), retry_after }
            }
            UpstreamError::Unauthorized => DockerError::Upstream(format!("upstream {} refused wharf's credentials", self.proxy.remote_url)),
            other => DockerError::Upstream(other.to_string()),
        }
    }

    // ---- manifests ---------------------------------------------------------------------------

    async fn ensure_manifest(&self, name: &str, reference: &Reference) -> Result<()> {
        let repo = self.cfg.id;
        match reference {
            Reference::Digest(d) => {
                // Content named by sha512 is not fetched through a proxy (its blobs could not be
                // verified while they stream in): unknown here, said why.
                let Some(d) = d.sha256() else {
                    return Err(DockerError::ManifestUnknown(format!("{d}: a proxy repository fetches content by sha256 digests only")));
                };
                let d = &d;
                if self.meta.get(repo, &manifest_path(name, &d.to_string())).await?.is_some() {
                    return Ok(());
                }
                let key = format!("m:{name}:{d}");
                let unknown = || DockerError::ManifestUnknown(d.to_string());
                if self.negatively_cached(&key) {
                    return Err(unknown());
                }
                self.once(&key, unknown, || async {
                    // Holding the key: a fetch that finished since the look above is not repeated.
                    if self.meta.get(repo, &manifest_path(name, &d.to_string())).await?.is_some() {
                        return Ok(());
                    }
                    let m = self.upstream.get_manifest(name, &d.to_string(), MAX_MANIFEST_BYTES).await.map_err(|e| self.upstream_error(e, unknown(), &key))?;
                    self.store_manifest(name, m.bytes, m.content_type.as_deref(), Some(d), None).await
                })
                .await
            }
            Reference::Tag(tag) => {
                let cached = self.meta.get(repo, &tag_path(name, tag)).await?;
                if cached.as_ref().is_some_and(|a| self.tag_fresh(a.updated_at)) {
                    return Ok(());
                }
                let key = format!("m:{name}:{tag}");
                let unknown = || DockerError::ManifestUnknown(tag.clone());
                if cached.is_none() && self.negatively_cached(&key) {
                    return Err(unknown());
                }
                self.once(&key, unknown, || self.revalidate_tag(name, tag, cached.as_ref().and_then(|a| a.digest.clone()), &key)).await
            }
        }
    }

    /// Whether a tag checked with the upstream at `checked_at` is served without asking again.
    fn tag_fresh(&self, checked_at: i64) -> bool {
        !self.proxy.invalidated(checked_at) && self.proxy.tag_max_age().is_none_or(|max| now_millis() - checked_at < max.as_millis() as i64)
    }

    /// Asks the upstream where `tag` points now and updates the cache; serves stale when the
    /// upstream cannot answer.
    async fn revalidate_tag(&self, name: &str, tag: &str, cached: Option<String>, key: &str) -> Result<()> {
        let repo = self.cfg.id;
        let unknown = || DockerError::ManifestUnknown(tag.to_string());
        // Holding the key: a revalidation that finished since the caller looked is not repeated.
        let now = self.meta.get(repo, &tag_path(name, tag)).await?;
        if let Some(a) = &now {
            if self.tag_fresh(a.updated_at) {
                return Ok(());
            }
            if self.upstream.health().serve_stale_now() {
                // The upstream is known not to answer: the cached manifest, at once.
                return Ok(());
            }
        } else if self.negatively_cached(key) {
            return Err(unknown());
        }
        let cached = now.and_then(|a| a.digest).or(cached);
        let current = match self.upstream.head_manifest(name, tag).await {
            Ok(d) => d,
            Err(UpstreamError::NotFound) => {
                self.remember_not_found(key);
                if cached.is_some() {
                    self.meta.commit(vec![], vec![Write::Delete { repo, path: tag_path(name, tag) }]).await?;
                }
                return Err(unknown());
            }
            Err(e) if cached.is_some() => {
                tracing::warn!(repository = %self.cfg.name, image = name, tag, error = %e, "upstream unavailable; serving the cached manifest");
                return Ok(());
            }
            Err(e) => return Err(self.upstream_error(e, unknown(), key)),
        };
        let reference = Reference::Tag(tag.to_string());
        if let Some(d) = current.as_deref().and_then(|d| d.parse::<Digest>().ok()) {
            if let Some(m) = self.meta.get(repo, &manifest_path(name, &d.to_string())).await? {
                // Known content: (re)point the tag, which also records when it was checked.
                let asset = NewAsset {
                    path: tag_path(name, tag),
                    kind: meta::TAG.into(),
                    component: Some(name.into()),
                    digest: Some(d.to_string()),
                    size: m.size,
                    content_type: m.content_type,
                    ..Default::default()
                };
                // Only while the manifest is still there: the unused-manifests task may have
                // removed it (and its image) since it was read, and a tag must always pull.
                let there = vec![Check::Exists { repo, path: manifest_path(name, &d.to_string()) }];
                match self.meta.commit(there, vec![Write::Upsert { repo, asset }]).await {
                    Ok(()) => return Ok(()),
                    // Fetched and stored again below, image and all.
                    Err(MetaError::CheckFailed(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let m = self.upstream.get_manifest(name, &d.to_string(), MAX_MANIFEST_BYTES).await.map_err(|e| self.upstream_error(e, unknown(), key))?;
            let stored = self.store_manifest(name, m.bytes, m.content_type.as_deref(), Some(&d), Some(&reference)).await;
            return self.stale_if_full(stored, cached.is_some(), name, tag);
        }
        // No digest in the HEAD answer: fetch by tag.
        let m = self.upstream.get_manifest(name, tag, MAX_MANIFEST_BYTES).await.map_err(|e| self.upstream_error(e, unknown(), key))?;
        let stored = self.store_manifest(name, m.bytes, m.content_type.as_deref(), None, Some(&reference)).await;
        self.stale_if_full(stored, cached.is_some(), name, tag)
    }

    /// A tag's new manifest that the disk has no room for (below its reserve) leaves the
    /// cached one served, as an upstream that does not answer does.
    fn stale_if_full(&self, stored: Result<()>, cached: bool, name: &str, tag: &str) -> Result<()> {
        match stored {
            Err(e @ (DockerError::NoSpace(_) | DockerError::Meta(MetaError::NoSpace))) if cached => {
                tracing::warn!(repository = %self.cfg.name, image = name, tag, error = %e, "no room for the upstream's new manifest; serving the cached one");
                Ok(())
            }
            other => other,
        }
    }

    async fn store_manifest(&self, name: &str, bytes: Bytes, content_type: Option<&str>, expected: Option<&Digest>, tag: Option<&Reference>) -> Result<()> {
        let actual = Digest::of(&bytes);
        if let Some(e) = expected {
            if *e != actual {
                return Err(DockerError::Upstream(format!("upstream manifest {e} has digest {actual}")));
            }
        }
        // Only trust the upstream's Content-Type when it names a manifest type.
        let content_type = content_type.filter(|c| MANIFEST_TYPES.contains(&c.split(';').next().unwrap_or("").trim()));
        let manifest = Manifest::parse(&bytes, content_type)?;
        let reference = tag.cloned().unwrap_or(Reference::Digest(actual.into()));
        self.cache.save_manifest(name, bytes, &manifest, &reference, vec![], None).await
    }

    // ---- blobs -------------------------------------------------------------------------------

    async fn get_blob(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str, digest: &Digest, head: bool) -> Result<HttpResponse> {
        let repo = self.cfg.id;
        if self.meta.get(repo, &blob_path(name, &digest.to_string())).await?.is_some() {
            return self.cache.get_blob(ctx, req, name, &digest.to_string(), head).await;
        }
        let key = format!("b:{name}:{digest}");
        if self.negatively_cached(&key) {
            return Err(DockerError::BlobUnknown);
        }
        if head {
            let size = self.upstream.head_blob(name, &digest.to_string()).await.map_err(|e| self.upstream_error(e, DockerError::BlobUnknown, &key))?;
            let mut res = HttpResponse::Ok();
            res.insert_header(("Docker-Content-Digest", digest.to_string())).content_type("application/octet-stream");
            return Ok(wharf_format::head_response(res, size));
        }
        let cached = || async { Ok::<_, DockerError>(self.meta.get(repo, &blob_path(name, &digest.to_string())).await?.map(|_| ())) };
        loop {
            return match self.flights.join_checked(&key, cached).await? {
                Fill::Cached(()) => self.cache.get_blob(ctx, req, name, &digest.to_string(), false).await,
                Fill::Follow(rx) => match SingleFlight::wait(rx).await {
                    Outcome::Done => self.cache.get_blob(ctx, req, name, &digest.to_string(), false).await,
                    Outcome::NotFound => Err(DockerError::BlobUnknown),
                    Outcome::Failed(m) => Err(DockerError::Upstream(m)),
                    // Nothing cached (the leader left early, or passed the blob through): fetch
                    // it, or follow whoever does now.
                    Outcome::Abandoned => continue,
                },
                Fill::Lead(flight) => self.stream_through(name, digest, &key, flight).await,
            };
        }
    }

    /// Fetches a blob from upstream, streaming it to the client while a background task writes
    /// it to the blob store; the blob is linked only once its digest verifies.
    async fn stream_through(&self, name: &str, digest: &Digest, key: &str, flight: Flight) -> Result<HttpResponse> {
        let res = match self.upstream.get_blob(name, &digest.to_string()).await {
            Ok(r) => r,
            Err(e) => {
                let err = self.upstream_error(e, DockerError::BlobUnknown, key);
                flight.finish(if matches!(err, DockerError::BlobUnknown) { Outcome::NotFound } else { Outcome::Failed(err.to_string()) });
                return Err(err);
            }
        };
        let length = res.content_length();
        let (meta, downloads) = (self.meta.clone(), self.downloads.clone());
        let repo = self.cfg.id;
        let name = name.to_string();
        let label = format!("{}/{name}@{digest}", self.cfg.name);
        let body = proxy::stream_through(
            self.blobs.clone(),
            res.bytes_stream(),
            length,
            proxy::Expected::sha256(Some(digest.clone())),
            flight,
            label,
            move |digest, size| async move {
                let path = blob_path(&name, &digest.to_string());
                let asset = NewAsset {
                    path: path.clone(),
                    kind: meta::BLOB.into(),
                    component: Some(name.clone()),
                    digest: Some(digest.to_string()),
                    size: size as i64,
                    ..Default::default()
                };
                meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await.map_err(|e| e.to_string())?;
                // Counted once the asset exists: a count for an asset not there yet would be
                // written to no row (a fill can outlast the flush interval).
                downloads.record(repo, &path);
                Ok(())
            },
        );
        let mut out = HttpResponse::Ok();
        out.insert_header(("Docker-Content-Digest", digest.to_string())).content_type("application/octet-stream");
        Ok(match length {
            Some(n) => out.body(SizedStream::new(n, body)),
            None => out.streaming(body),
        })
    }

    // ---- tags --------------------------------------------------------------------------------

    async fn tags(&self, ctx: &RepoCtx, name: &str) -> Result<HttpResponse> {
        let query: Vec<(String, String)> = url_query(&ctx.query).into_iter().filter(|(k, _)| k == "n" || k == "last").collect();
        match self.upstream.tags(name, &query).await {
            Ok((tags, link)) => {
                let mut res = HttpResponse::Ok();
                if let Some(link) = link {
                    // Point the client at our own URL, keeping the upstream's paging parameters.
                    if let Some(q) = link.split('?').nth(1).and_then(|q| q.split('>').next()) {
                        let own = access::url(ctx, name, "tags/list");
                        let own = own.strip_prefix(&ctx.origin).unwrap_or(&own).to_string();
                        res.insert_header(("Link", format!(r#"<{own}?{q}>; rel="next""#)));
                    }
                }
                Ok(res.json(json!({ "name": access::client_name(ctx, name), "tags": tags })))
            }
            Err(UpstreamError::NotFound) => Err(DockerError::NameUnknown),
            Err(e) => {
                tracing::warn!(repository = %self.cfg.name, image = name, error = %e, "upstream tags unavailable; listing cached tags");
                let q = query.into_iter().collect::<HashMap<_, _>>();
                self.cache.tags(ctx, name, &q).await
            }
        }
    }
}

fn url_query(q: &str) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(q).map(|q| q.into_inner()).unwrap_or_default()
}
