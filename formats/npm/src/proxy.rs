//! A proxy (pull-through cache) npm registry.
//!
//! - Packuments are fetched whole from the upstream, kept as a blob with the upstream's tarball
//!   URLs, trusted for `metadataMaxAge`, then revalidated with the upstream's ETag; served stale
//!   when the upstream is unreachable, answers 5xx or rate-limits. Clients get them (full or
//!   abbreviated) with tarball URLs that point at wharf.
//! - A tarball not yet cached streams to the client while it is written to the blob store, and
//!   is kept only if it matches the upstream's `dist.integrity` (sha512) or `dist.shasum`; the
//!   last chunk waits for that check. Concurrent misses make one upstream fetch.
//! - `npm audit` requests are passed to the upstream.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use sha1::Digest as _;
use wharf_format::cache_probe::CacheKind;
use wharf_format::proxy::{self, Fill, Served};
use wharf_format::{
    now_millis, Action, Asset, ComponentKey, DeleteError, FormatEnv, ListQuery, NegativeCache, NewAsset, Outcome, ProxySettings, Repo, RepoConfig, RepoCtx,
    SingleFlight, Want, Write,
};

use crate::error::NpmError;
use crate::meta::{self, package_path, tarball_path};
use crate::model;
use crate::packument::{self, Packument};
use crate::routes::{self, Endpoint};
use crate::source::{self, authorize, base_url, Result, Source};
use crate::upstream::{Doc, Upstream, UpstreamError};

pub struct Proxy {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
    settings: ProxySettings,
    upstream: Upstream,
    negative: NegativeCache,
    flights: SingleFlight,
    cache: packument::RenderCache,
}

#[async_trait(?Send)]
impl Repo for Proxy {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        match self.route(&ctx, &req, body).await {
            Ok(res) => res,
            Err(e) => e.to_response(),
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// Cached tarballs: the next install fetches them from the upstream again (the cached
    /// packument is the upstream's and still lists the version).
    async fn delete_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Vec<Asset>, DeleteError> {
        let what = format!("{}@{}", crate::hosted::package_of(component), component.version);
        wharf_format::lifecycle::delete_assets(&*self.env.meta, self.cfg.id, &what, assets).await
    }

    /// From the cached document, however old: a detail page does not refresh the cache.
    async fn describe_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Value, wharf_format::DescribeError> {
        crate::describe::describe(&self.env, self.cfg.id, component, assets).await
    }
}

impl Proxy {
    pub fn new(cfg: Arc<RepoConfig>, settings: ProxySettings, env: FormatEnv) -> Result<Proxy, String> {
        let upstream = Upstream::new(&settings, &env.upstreams, cfg.id)?;
        Ok(Proxy {
            negative: NegativeCache::new(settings.negative_cache),
            cfg,
            env,
            settings,
            upstream,
            flights: SingleFlight::default(),
            cache: Default::default(),
        })
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(NpmError::NotFound)?;
        let m = req.method().clone();
        let read = wharf_format::reads(&m);
        if source::is_common(&endpoint) {
            return source::common(&self.env, ctx, req, endpoint, body).await;
        }
        if crate::access::is_access(&endpoint) {
            return crate::access::handle(self, ctx, req, endpoint, body).await;
        }
        match endpoint {
            Endpoint::Package(name) if read => {
                authorize(ctx, Action::Read, &name)?;
                let asset = self.upstream.through_cache(CacheKind::Metadata, self.current(&name)).await?.ok_or(NpmError::NotFound)?;
                let state = asset.digest.clone().unwrap_or_default();
                packument::respond(req, &self.cache, &state, &base_url(ctx), asset.size as u64, || self.load(&asset)).await
            }
            Endpoint::Version { name, version } if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, _) = self.doc(&name).await?.ok_or(NpmError::NotFound)?;
                source::version_response(&doc, &version, &base_url(ctx))
            }
            Endpoint::DistTags(name) if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, _) = self.doc(&name).await?.ok_or(NpmError::NotFound)?;
                Ok(source::dist_tags_response(&doc))
            }
            Endpoint::Tarball { name, file } if read => {
                authorize(ctx, Action::Read, &name)?;
                self.serve_tarball(&name, &file, &Want::of(req)).await
            }
            Endpoint::Search if read => {
                authorize(ctx, Action::Read, "*")?;
                source::search_response(self, ctx).await
            }
            Endpoint::Audit(path) if m == Method::POST => {
                authorize(ctx, Action::Read, "*")?;
                self.audit(req, &path, body).await
            }
            _ if read => Err(NpmError::NotFound),
            _ => Err(NpmError::MethodNotAllowed),
        }
    }

    fn upstream_error(&self, e: UpstreamError) -> NpmError {
        match e {
            UpstreamError::NotFound => NpmError::NotFound,
            other => NpmError::Upstream(format!("{other} ({})", self.settings.remote_url)),
        }
    }

    async fn audit(&self, req: &HttpRequest, path: &str, mut body: web::Payload) -> Result<HttpResponse> {
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| NpmError::BadRequest(format!("request body: {e}")))?;
            if buf.len() + chunk.len() > 16 << 20 {
                return Err(NpmError::TooLarge("the audit request is larger than 16 MiB".into()));
            }
            buf.extend_from_slice(&chunk);
        }
        let h = |n: header::HeaderName| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (status, ct, out) = self
            .upstream
            .forward(path, Bytes::from(buf), h(header::CONTENT_TYPE).as_deref(), h(header::CONTENT_ENCODING).as_deref())
            .await
            .map_err(|e| self.upstream_error(e))?;
        // An audit answers JSON; whatever else the upstream sent (an HTML error page) is not
        // rendered on wharf's origin.
        let json = ct.is_some_and(|ct| ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
        let mut res = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
        res.content_type(if json { "application/json" } else { "application/octet-stream" });
        Ok(res.body(out))
    }

    // ---- packuments --------------------------------------------------------------------------

    async fn cached(&self, name: &str) -> Result<Option<Asset>> {
        Ok(self.env.meta.get(self.cfg.id, &package_path(name)).await?)
    }

    async fn load(&self, asset: &Asset) -> Result<Packument> {
        crate::store::packument(&self.env, asset).await
    }

    /// The cached packument asset, refreshed from the upstream when it is older than
    /// `metadataMaxAge` (or absent); `None` when the upstream does not know the package.
    async fn current(&self, name: &str) -> Result<Option<Asset>> {
        if !model::valid_name(&name.to_ascii_lowercase()) {
            // Old packages may have capitals; anything else that is not a name is not asked for.
            return Ok(None);
        }
        let cached = self.cached(name).await?;
        if let Some(a) = &cached {
            if !self.settings.metadata_stale(a.updated_at) {
                return Ok(cached);
            }
        }
        let key = format!("p:{name}");
        if cached.is_none() && self.negative.contains(&key) {
            return Ok(None);
        }
        let classify = |r: &Result<bool>| match r {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::NotFound,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let reply = |o: Outcome| match o {
            Outcome::NotFound => Ok(false),
            Outcome::Failed(m) => Err(NpmError::Upstream(m)),
            _ => Ok(true),
        };
        let fetch = || async {
            let cached = self.cached(name).await?;
            if let Some(answer) = self.settings.settled(cached.as_ref().map(|a| a.updated_at), self.upstream.health(), self.negative.contains(&key)) {
                return Ok(answer);
            }
            self.refresh(name, cached.as_ref(), &key).await
        };
        if !self.flights.once(&key, fetch, classify, reply).await? {
            return Ok(None);
        }
        self.cached(name).await
    }

    /// Asks the upstream for the packument and updates the cache; `false` when the upstream
    /// does not know the package. Serves stale (`true`) when the upstream cannot answer.
    async fn refresh(&self, name: &str, cached: Option<&Asset>, key: &str) -> Result<bool> {
        let repo = self.cfg.id;
        let etag = cached.and_then(|a| a.attributes.get("etag")).and_then(Value::as_str);
        match self.upstream.packument(name, etag).await {
            Ok(Doc::NotModified) if cached.is_some() => {
                // Unchanged upstream: the same asset again, which records when it was checked
                // (with the search fields a row cached by an older wharf lacks).
                let cached = cached.expect("checked");
                let mut asset = NewAsset::from(cached.clone());
                if asset.attributes.get("search").is_none() && asset.attributes.is_object() {
                    asset.attributes["search"] = self.load(cached).await?.search_fields(name);
                }
                self.env.meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await?;
                Ok(true)
            }
            Ok(Doc::NotModified) => Err(NpmError::Upstream(format!("{} answered 304 to an unconditional request", self.settings.remote_url))),
            Ok(Doc::Fresh { doc, etag }) => {
                let search = doc.search_fields(name);
                let bytes = doc.into_bytes();
                let size = bytes.len() as i64;
                let Some(digest) = wharf_format::proxy::keep_refreshed(&self.env.blobs, bytes, cached.is_some()).await? else {
                    tracing::warn!(repository = %self.cfg.name, package = name, "no room on the disk for the upstream's new packument; serving the cached one");
                    return Ok(true);
                };
                let asset = NewAsset {
                    path: package_path(name),
                    kind: meta::PACKUMENT.into(),
                    component: Some(name.to_string()),
                    digest: Some(digest.to_string()),
                    size,
                    content_type: Some("application/json".into()),
                    link: None,
                    attributes: json!({ "etag": etag, "search": search }),
                };
                self.env.meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await?;
                Ok(true)
            }
            Err(UpstreamError::NotFound) => {
                self.negative.insert(key);
                if cached.is_some() {
                    self.env.meta.commit(vec![], vec![Write::Delete { repo, path: package_path(name) }]).await?;
                }
                Ok(false)
            }
            Err(e) if cached.is_some() => {
                tracing::warn!(repository = %self.cfg.name, package = name, error = %e, "upstream unavailable; serving the cached packument");
                Ok(true)
            }
            Err(e) => Err(self.upstream_error(e)),
        }
    }

    // ---- tarballs ----------------------------------------------------------------------------

    /// A cached tarball younger than `contentMaxAge`.
    async fn fresh_tarball(&self, name: &str, file: &str) -> Result<Option<Asset>> {
        let a = self.env.meta.get(self.cfg.id, &tarball_path(name, file)).await?;
        Ok(a.filter(|a| !self.settings.content_stale(a.updated_at)))
    }

    /// Fetches a tarball; `cached` is a copy past `contentMaxAge`, served when the upstream
    /// cannot give it again.
    async fn fetch_tarball(&self, name: &str, file: &str, cached: Option<Asset>) -> Result<Served> {
        let repo = self.cfg.id;
        let doc = match self.doc(name).await {
            Ok(d) => d,
            Err(_) if cached.is_some() => return source::blob_response(&self.env, cached.as_ref().expect("checked"), &Want::whole()).await.map(Served::from),
            Err(e) => return Err(e),
        };
        let manifest = doc.as_ref().and_then(|(doc, _)| doc.manifest_of(file));
        let Some(manifest) = manifest else {
            return match &cached {
                Some(a) => source::blob_response(&self.env, a, &Want::whole()).await.map(Served::from),
                None => Err(NpmError::NotFound),
            };
        };
        let url = manifest.pointer("/dist/tarball").and_then(Value::as_str).ok_or(NpmError::NotFound)?.to_string();
        let integrity = manifest.pointer("/dist/integrity").and_then(Value::as_str).map(str::to_string);
        let shasum = manifest.pointer("/dist/shasum").and_then(Value::as_str).map(str::to_string);
        let version = manifest.get("version").and_then(Value::as_str).unwrap_or_default().to_string();
        let key = format!("t:{name}/{file}");
        let flight = loop {
            break match self.flights.join_checked(&key, || self.fresh_tarball(name, file)).await? {
                Fill::Cached(a) => return source::blob_response(&self.env, &a, &Want::whole()).await.map(Served::from),
                Fill::Follow(rx) => {
                    return match SingleFlight::wait(rx).await {
                        Outcome::Done => {
                            let a = self.env.meta.get(repo, &tarball_path(name, file)).await?.ok_or(NpmError::NotFound)?;
                            source::blob_response(&self.env, &a, &Want::whole()).await.map(Served::from)
                        }
                        Outcome::NotFound => Err(NpmError::NotFound),
                        Outcome::Failed(m) => Err(NpmError::Upstream(m)),
                        // Nothing cached (the leader left early, or passed the file through): fetch
                        // it, or follow whoever does now.
                        Outcome::Abandoned => continue,
                    };
                }
                Fill::Lead(f) => f,
            };
        };
        let fetched = match self.upstream.get(&url).await {
            Ok(r) => wharf_format::upstream::check_content_type(self.cfg.strict_content_type, &r).map(|()| r),
            Err(e) => Err(e),
        };
        let res = match fetched {
            Ok(r) => r,
            Err(e) => {
                if let Some(a) = &cached {
                    tracing::warn!(repository = %self.cfg.name, tarball = file, error = %e, "upstream unavailable; serving the cached tarball");
                    flight.finish(Outcome::Done);
                    return source::blob_response(&self.env, a, &Want::whole()).await.map(Served::from);
                }
                flight.finish(if matches!(e, UpstreamError::NotFound) { Outcome::NotFound } else { Outcome::Failed(e.to_string()) });
                return Err(self.upstream_error(e));
            }
        };
        let length = res.content_length();
        // npm's checksums are sha512 and sha1; the blob store checks sha256. Hash on the way.
        let hashers = Rc::new(RefCell::new((sha2::Sha512::new(), sha1::Sha1::new())));
        let h = hashers.clone();
        let body = Box::pin(res.bytes_stream().inspect(move |c| {
            if let Ok(c) = c {
                let mut h = h.borrow_mut();
                h.0.update(c);
                h.1.update(c);
            }
        }));
        let (meta, downloads) = (self.env.meta.clone(), self.env.downloads.clone());
        let (name, file) = (name.to_string(), file.to_string());
        let label = format!("{}/{name}/{file}", self.cfg.name);
        let sums = move |hashers: &RefCell<(sha2::Sha512, sha1::Sha1)>| {
            let h = hashers.borrow();
            let (sha512, sha1) = (h.0.clone().finalize(), h.1.clone().finalize());
            (format!("sha512-{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sha512)), hex::encode(sha1))
        };
        // npm's own sums, checked before the tarball is recorded or its last chunk leaves.
        let check = {
            let (hashers, what) = (hashers.clone(), format!("{name}/{file}"));
            move || {
                let (sri, sha1) = sums(&hashers);
                let ok = match (&integrity, &shasum) {
                    (Some(i), _) => model::integrity_matches(i, &sri, &sha1),
                    (None, Some(s)) => s.eq_ignore_ascii_case(&sha1),
                    (None, None) => true,
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("{what} does not match the upstream's integrity {}", integrity.or(shasum).unwrap_or_default()))
                }
            }
        };
        let expected = proxy::Expected { sha256: None, check: Box::new(check) };
        let out = proxy::stream_through(self.env.blobs.clone(), body, length, expected, flight, label, move |digest, size| async move {
            let (sri, sha1) = sums(&hashers);
            let asset = NewAsset {
                path: tarball_path(&name, &file),
                kind: meta::TARBALL.into(),
                component: Some(name.clone()),
                digest: Some(digest.to_string()),
                size: size as i64,
                content_type: Some("application/octet-stream".into()),
                link: None,
                attributes: json!({
                    "version": version, "integrity": sri, "cached_at": now_millis(),
                    "checksum": { "sha1": sha1, "sha512": model::sri_hex(&sri) },
                }),
            };
            let path = asset.path.clone();
            meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await.map_err(|e| e.to_string())?;
            downloads.record(repo, &path);
            Ok(())
        });
        let mut res = HttpResponse::Ok();
        res.content_type("application/octet-stream");
        let response = match length {
            Some(n) => res.body(actix_web::body::SizedStream::new(n, out)),
            None => res.streaming(out),
        };
        Ok(Served { response, counted_by_fill: true })
    }
}

#[async_trait(?Send)]
impl Source for Proxy {
    // Counted here rather than where a request is routed, so that a group's reads through
    // this proxy count as its cache's too.
    async fn doc(&self, name: &str) -> Result<Option<(Packument, String)>> {
        match self.upstream.through_cache(CacheKind::Metadata, self.current(name)).await? {
            Some(a) => Ok(Some((self.load(&a).await?, a.digest.clone().unwrap_or_default()))),
            None => Ok(None),
        }
    }

    async fn names(&self) -> Result<Vec<String>> {
        let q = ListQuery { kind: Some(meta::PACKUMENT.into()), ..Default::default() };
        Ok(self.env.meta.list(self.cfg.id, q).await?.into_iter().filter_map(|a| a.component).collect())
    }

    async fn packuments(&self, contains: Vec<String>) -> Result<Vec<Asset>> {
        source::packuments(&self.env, self.cfg.id, contains).await
    }

    async fn serve_tarball(&self, name: &str, file: &str, want: &Want) -> Result<HttpResponse> {
        let served = self.upstream.through_cache(CacheKind::Content, self.tarball(name, file, want)).await?;
        if want.counts_as_download() && !served.counted_by_fill && served.response.status().is_success() {
            self.env.downloads.record(self.cfg.id, &tarball_path(name, file));
        }
        Ok(served.response)
    }
}

impl Proxy {
    /// The tarball, from the cache or streamed through from the upstream (then the fill counts
    /// the download, once the tarball's asset exists).
    async fn tarball(&self, name: &str, file: &str, want: &Want) -> Result<Served> {
        let head = want.is_head();
        let cached = self.env.meta.get(self.cfg.id, &tarball_path(name, file)).await?;
        if let Some(a) = &cached {
            // Past contentMaxAge the tarball is fetched again, unless the upstream is known to fail.
            if head || !self.settings.content_stale(a.updated_at) || self.upstream.health().serve_stale_now() {
                return source::blob_response(&self.env, a, want).await.map(Served::from);
            }
        }
        if head {
            // Known upstream, not cached: say so without fetching it.
            let (doc, _) = self.doc(name).await?.ok_or(NpmError::NotFound)?;
            return if doc.lists_tarball(file) {
                Ok(Served::from(wharf_format::head_response(HttpResponse::Ok().content_type("application/octet-stream").take(), None)))
            } else {
                Err(NpmError::NotFound)
            };
        }
        self.fetch_tarball(name, file, cached).await
    }
}
