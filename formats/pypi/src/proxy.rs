//! A proxy (pull-through cache) PyPI repository.
//!
//! - Project pages are fetched from the upstream index (JSON when offered), kept as a blob with
//!   the upstream's file links, and trusted for `metadataMaxAge`; then revalidated (with the
//!   upstream's ETag, so an unchanged page costs a 304). When the upstream is unreachable,
//!   answers 5xx or rate-limits, the cached page is served.
//! - Pages are rendered with wharf's own file URLs. A file not yet cached streams to the client
//!   while it is written to the blob store, and is kept only if it matches the sha256 the
//!   upstream's page gave. Concurrent misses make one upstream fetch.
//! - PEP 658 metadata files are fetched (and verified) on their own, since pip asks for them
//!   before it decides which file to download.
//! - PEP 740 provenance objects an upstream page links are linked under wharf's Integrity API
//!   URL and fetched from the upstream when asked for, not cached: they are small, pip does
//!   not read them, and a verifier wants the upstream's current answer.
//! - Upstream 404s are remembered for the negative cache's time to live.

use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use wharf_format::cache_probe::CacheKind;
use wharf_format::proxy::{self, Fill, Served};
use wharf_format::{
    now_millis, Action, Asset, ComponentKey, DeleteError, Digest, FormatEnv, ListQuery, NegativeCache, NewAsset, Outcome, ProxySettings, Repo, RepoConfig,
    RepoCtx, SingleFlight, Want, Write,
};

use crate::archive;
use crate::error::PypiError;
use crate::hosted::base_url;
use crate::index::{self, FileEntry};
use crate::meta::{self, file_path, index_path, metadata_path};
use crate::model::{normalize, FileKind};
use crate::routes::{self, Endpoint};
use crate::source::{self, Result, Source};
use crate::upstream::{Page, Upstream, UpstreamError};

/// A cached project page (JSON of its entries) may weigh this much.
const MAX_CACHED_PAGE: u64 = 128 << 20;

pub struct Proxy {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
    settings: ProxySettings,
    upstream: Upstream,
    negative: NegativeCache,
    flights: SingleFlight,
}

#[async_trait(?Send)]
impl Repo for Proxy {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, _body: web::Payload) -> HttpResponse {
        match self.route(&ctx, &req).await {
            Ok(res) => res,
            Err(e) => e.to_response(),
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// Cached files: the next request fetches them from the upstream again.
    async fn delete_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Vec<Asset>, DeleteError> {
        crate::hosted::delete_release(&self.env, self.cfg.id, component, assets, false).await
    }

    /// What the cache holds: files fetched so far, and core metadata a client asked for.
    async fn describe_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<serde_json::Value, wharf_format::DescribeError> {
        crate::describe::describe(&*self.env.meta, &self.env.blobs, self.cfg.id, component, assets).await
    }
}

impl Proxy {
    pub fn new(cfg: Arc<RepoConfig>, settings: ProxySettings, env: FormatEnv) -> Result<Proxy, String> {
        let upstream = Upstream::new(&settings, &env.upstreams, cfg.id)?;
        Ok(Proxy { negative: NegativeCache::new(settings.negative_cache), cfg, env, settings, upstream, flights: SingleFlight::default() })
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(PypiError::NotFound)?;
        let m = req.method();
        let read = wharf_format::reads(m);
        match endpoint {
            Endpoint::Index if read => {
                source::authorize(ctx, Action::Read, "*")?;
                Ok(index::index_page(req, &base_url(ctx, &self.cfg.name), &self.projects().await?))
            }
            Endpoint::Project(p) if read => {
                let normalized = normalize(&p);
                source::authorize(ctx, Action::Read, &normalized)?;
                let files = self.files(&normalized).await?.ok_or(PypiError::NotFound)?;
                Ok(index::project_page(req, &base_url(ctx, &self.cfg.name), &normalized, &files))
            }
            Endpoint::File { project, filename } if read => {
                let normalized = normalize(&project);
                source::authorize(ctx, Action::Read, &normalized)?;
                self.serve(&normalized, &filename, &Want::of(req)).await
            }
            Endpoint::Provenance { project, version, filename } if read => {
                let normalized = normalize(&project);
                source::authorize(ctx, Action::Read, &normalized)?;
                self.provenance(&normalized, &version, &filename).await
            }
            // Built from the upstream's project page like the Simple API's, not fetched from an
            // upstream JSON API (which a Simple-only upstream does not have).
            Endpoint::Json { project, version } if read => {
                let normalized = normalize(&project);
                source::authorize(ctx, Action::Read, &normalized)?;
                crate::json_api::answer(self, &base_url(ctx, &self.cfg.name), &normalized, version.as_deref()).await
            }
            Endpoint::Upload => Err(PypiError::ReadOnly(format!("{} is a proxy repository: it is read-only", self.cfg.name))),
            _ => Err(PypiError::MethodNotAllowed),
        }
    }

    fn upstream_error(&self, e: UpstreamError) -> PypiError {
        match e {
            UpstreamError::NotFound => PypiError::NotFound,
            other => PypiError::Upstream(format!("{} ({})", other, self.settings.remote_url)),
        }
    }

    // ---- project pages -----------------------------------------------------------------------

    async fn cached_page(&self, normalized: &str) -> Result<Option<Asset>> {
        Ok(self.env.meta.get(self.cfg.id, &index_path(normalized)).await?)
    }

    async fn load_page(&self, asset: &Asset) -> Result<Vec<FileEntry>> {
        let digest: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| PypiError::Internal(Box::new(e)))?;
        let bytes = self.env.blobs.read_small(&digest, MAX_CACHED_PAGE).await?;
        serde_json::from_slice(&bytes).map_err(|e| PypiError::Internal(Box::new(e)))
    }

    /// Asks the upstream for a project's page and updates the cache; `false` when the upstream
    /// does not know the project. Serves stale (answers `true`) when the upstream cannot answer.
    async fn refresh(&self, normalized: &str, cached: Option<&Asset>, key: &str) -> Result<bool> {
        let repo = self.cfg.id;
        let etag = cached.and_then(|a| a.attributes.get("etag")).and_then(|v| v.as_str());
        match self.upstream.project(normalized, etag).await {
            Ok(Page::NotModified) if cached.is_some() => {
                // Unchanged upstream: the same asset again, which records when it was checked.
                let asset = NewAsset::from(cached.expect("checked").clone());
                self.env.meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await?;
                Ok(true)
            }
            Ok(Page::NotModified) => Err(PypiError::Upstream(format!("{} answered 304 to an unconditional request", self.settings.remote_url))),
            Ok(Page::Fresh { files, etag }) => {
                let bytes = Bytes::from(serde_json::to_vec(&files).map_err(|e| PypiError::Internal(Box::new(e)))?);
                let size = bytes.len() as i64;
                let Some(digest) = wharf_format::proxy::keep_refreshed(&self.env.blobs, bytes, cached.is_some()).await? else {
                    tracing::warn!(repository = %self.cfg.name, project = normalized, "no room on the disk for the upstream's new page; serving the cached one");
                    return Ok(true);
                };
                let asset = NewAsset {
                    path: index_path(normalized),
                    kind: meta::INDEX.into(),
                    component: Some(normalized.to_string()),
                    digest: Some(digest.to_string()),
                    size,
                    content_type: Some("application/json".into()),
                    link: None,
                    attributes: json!({ "etag": etag, "files": files.len() }),
                };
                self.env.meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await?;
                Ok(true)
            }
            Err(UpstreamError::NotFound) => {
                self.negative.insert(key);
                if cached.is_some() {
                    self.env.meta.commit(vec![], vec![Write::Delete { repo, path: index_path(normalized) }]).await?;
                }
                Ok(false)
            }
            Err(e) if cached.is_some() => {
                tracing::warn!(repository = %self.cfg.name, project = normalized, error = %e, "upstream unavailable; serving the cached project page");
                Ok(true)
            }
            Err(e) => Err(self.upstream_error(e)),
        }
    }

    fn find<'a>(files: &'a [FileEntry], filename: &str) -> Option<&'a FileEntry> {
        files.iter().find(|f| f.filename == filename)
    }

    // ---- files -------------------------------------------------------------------------------

    /// A file's core metadata (PEP 658): the cached copy while it is what the project page
    /// (itself revalidated after `metadataMaxAge`) says, else fetched again. A copy was served
    /// for good before, also after the upstream replaced the file (pip then failed on the hash)
    /// and after the cache was invalidated.
    async fn serve_metadata(&self, normalized: &str, dist: &str) -> Result<HttpResponse> {
        let repo = self.cfg.id;
        let cached = self.env.meta.get(repo, &metadata_path(normalized, dist)).await?;
        let serve_cached = |a: &Asset| {
            let hex = a.digest.as_deref().unwrap_or_default().trim_start_matches("sha256:").to_string();
            async move { source::metadata_response(&self.env.blobs, &hex).await }
        };
        let files = match self.files(normalized).await {
            Ok(f) => f,
            Err(_) if cached.is_some() => return serve_cached(cached.as_ref().expect("checked")).await,
            Err(e) => return Err(e),
        };
        let Some(entry) = files.as_deref().and_then(|f| Self::find(f, dist)) else {
            // The upstream no longer lists it: what was cached stays served (as for files).
            return match &cached {
                Some(a) => serve_cached(a).await,
                None => Err(PypiError::NotFound),
            };
        };
        let (Some(hash), Some(url)) = (&entry.core_metadata, &entry.upstream_url) else { return Err(PypiError::NotFound) };
        if let Some(a) = &cached {
            let kept = a.digest.as_deref().unwrap_or_default().trim_start_matches("sha256:");
            let current = if hash.is_empty() { !self.settings.content_stale(a.updated_at) } else { hash.eq_ignore_ascii_case(kept) };
            if current || self.upstream.health().serve_stale_now() {
                return serve_cached(a).await;
            }
        }
        let bytes = self.upstream.get_small(&format!("{url}.metadata"), archive::MAX_METADATA as usize).await.map_err(|e| self.upstream_error(e))?;
        let digest = Digest::of(&bytes);
        if !hash.is_empty() && !hash.eq_ignore_ascii_case(digest.hex()) {
            return Err(PypiError::Upstream(format!("the upstream's metadata for {dist} has sha256 {}, its index says {hash}", digest.hex())));
        }
        // Without a hash to check, the answer must at least be metadata (a login page answered
        // with 200 was kept as it).
        if archive::field(&String::from_utf8_lossy(&bytes), "Name").is_none() {
            return Err(PypiError::Upstream(format!("the upstream's metadata for {dist} names no project: not core metadata")));
        }
        match self.env.blobs.put_bytes(bytes.clone()).await {
            Ok(_) => {}
            // Checked against the index's hash above: served, not kept.
            Err(wharf_format::BlobError::NoSpace(_)) => return Ok(source::metadata_bytes_response(bytes)),
            Err(e) => return Err(e.into()),
        }
        let asset = NewAsset {
            path: metadata_path(normalized, dist),
            kind: meta::METADATA.into(),
            digest: Some(digest.to_string()),
            size: bytes.len() as i64,
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        self.env.meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await?;
        Ok(source::metadata_bytes_response(bytes))
    }

    /// A cached file younger than `contentMaxAge`.
    async fn fresh_file(&self, normalized: &str, filename: &str) -> Result<Option<Asset>> {
        let a = self.env.meta.get(self.cfg.id, &file_path(normalized, filename)).await?;
        Ok(a.filter(|a| !self.settings.content_stale(a.updated_at)))
    }

    /// The file, from the cache or streamed through from the upstream (then the fill counts the
    /// download, once the file's asset exists).
    async fn serve_file(&self, normalized: &str, filename: &str, want: &Want) -> Result<Served> {
        let head = want.is_head();
        let repo = self.cfg.id;
        let cached = self.env.meta.get(repo, &file_path(normalized, filename)).await?;
        if let Some(a) = &cached {
            // Past contentMaxAge the file is fetched again, unless the upstream is known to fail.
            if head || !self.settings.content_stale(a.updated_at) || self.upstream.health().serve_stale_now() {
                return source::file_response(&self.env.blobs, a, want).await.map(Served::from);
            }
        }
        let files = match self.files(normalized).await {
            Ok(f) => f,
            Err(_) if cached.is_some() => return source::file_response(&self.env.blobs, cached.as_ref().expect("checked"), want).await.map(Served::from),
            Err(e) => return Err(e),
        };
        let Some(entry) = files.as_deref().and_then(|f| Self::find(f, filename)).cloned() else {
            return match &cached {
                // The upstream no longer lists it: what was cached stays served.
                Some(a) => source::file_response(&self.env.blobs, a, want).await.map(Served::from),
                None => Err(PypiError::NotFound),
            };
        };
        let url = entry.upstream_url.clone().ok_or(PypiError::NotFound)?;
        let content_type = content_type_of(filename);
        if head {
            // The head the cached file will have, but for ranges: the first GET streams it whole.
            let mut res = HttpResponse::Ok();
            res.content_type(content_type).insert_header((header::CACHE_CONTROL, "max-age=31536000, immutable"));
            if let Some(hex) = &entry.sha256 {
                res.insert_header((header::ETAG, format!("\"{hex}\"")));
            }
            return Ok(Served::from(wharf_format::head_response(res, entry.size.map(|n| n as u64))));
        }
        let key = format!("f:{normalized}/{filename}");
        let flight = loop {
            break match self.flights.join_checked(&key, || self.fresh_file(normalized, filename)).await? {
                Fill::Cached(a) => return source::file_response(&self.env.blobs, &a, want).await.map(Served::from),
                Fill::Follow(rx) => {
                    return match SingleFlight::wait(rx).await {
                        Outcome::Done => {
                            let a = self.env.meta.get(repo, &file_path(normalized, filename)).await?.ok_or(PypiError::NotFound)?;
                            source::file_response(&self.env.blobs, &a, want).await.map(Served::from)
                        }
                        Outcome::NotFound => Err(PypiError::NotFound),
                        Outcome::Failed(m) => Err(PypiError::Upstream(m)),
                        // Nothing cached (the leader left early, or passed the file through): fetch
                        // it, or follow whoever does now.
                        Outcome::Abandoned => continue,
                    };
                }
                Fill::Lead(flight) => flight,
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
                    tracing::warn!(repository = %self.cfg.name, file = filename, error = %e, "upstream unavailable; serving the cached file");
                    flight.finish(Outcome::Done);
                    return source::file_response(&self.env.blobs, a, want).await.map(Served::from);
                }
                flight.finish(if matches!(e, UpstreamError::NotFound) { Outcome::NotFound } else { Outcome::Failed(e.to_string()) });
                return Err(self.upstream_error(e));
            }
        };
        let expected = match entry.sha256.as_deref().map(|h| format!("sha256:{h}").parse::<Digest>()) {
            Some(Ok(d)) => Some(d),
            _ => None,
        };
        let length = res.content_length();
        let etag = expected.as_ref().map(|d| format!("\"{}\"", d.hex()));
        // The JSON API reading a small wheel fills the cache, but is no client's download.
        let counts = want.counts_as_download();
        let (meta, downloads) = (self.env.meta.clone(), self.env.downloads.clone());
        let (normalized, filename) = (normalized.to_string(), filename.to_string());
        let label = format!("{}/{filename}", self.cfg.name);
        let body = proxy::stream_through(
            self.env.blobs.clone(),
            res.bytes_stream(),
            length,
            proxy::Expected::sha256(expected),
            flight,
            label,
            move |digest, size| async move {
                let asset = NewAsset {
                    path: file_path(&normalized, &filename),
                    kind: meta::FILE.into(),
                    component: Some(normalized.clone()),
                    digest: Some(digest.to_string()),
                    size: size as i64,
                    content_type: Some(content_type.to_string()),
                    link: None,
                    attributes: json!({
                        "name": normalized,
                        "version": entry.version,
                        "requires_python": entry.requires_python,
                        "upload_time": now_millis(),
                        "yanked": entry.yanked,
                        // Shown by the components API: never with credentials the index put in its links.
                        "upstream_url": wharf_format::upstream::without_userinfo(&url),
                    }),
                };
                let path = asset.path.clone();
                meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await.map_err(|e| e.to_string())?;
                if counts {
                    downloads.record(repo, &path);
                }
                Ok(())
            },
        );
        let mut out = HttpResponse::Ok();
        out.content_type(content_type).insert_header((header::CACHE_CONTROL, "max-age=31536000, immutable"));
        // The last chunk goes out only once the bytes are seen to have this digest.
        if let Some(etag) = etag {
            out.insert_header((header::ETAG, etag));
        }
        let response = match length {
            Some(n) => out.body(SizedStream::new(n, body)),
            None => out.streaming(body),
        };
        Ok(Served { response, counted_by_fill: true })
    }
}

fn content_type_of(filename: &str) -> &'static str {
    if filename.ends_with(".whl") || filename.ends_with(".zip") {
        FileKind::Wheel.content_type()
    } else if filename.ends_with(".tar.gz") {
        FileKind::SdistTarGz.content_type()
    } else {
        "application/octet-stream"
    }
}

#[async_trait(?Send)]
impl Source for Proxy {
    // Counted here rather than where a request is routed, so that a group's reads through
    // this proxy count as its cache's too.
    async fn files(&self, normalized: &str) -> Result<Option<Vec<FileEntry>>> {
        self.upstream.through_cache(CacheKind::Metadata, self.page_files(normalized)).await
    }

    /// The projects whose pages are cached (the upstream's whole index is not mirrored).
    async fn projects(&self) -> Result<Vec<(String, String)>> {
        let q = ListQuery { kind: Some(meta::INDEX.into()), prefix: Some("_index/".into()), ..Default::default() };
        let rows = self.env.meta.list(self.cfg.id, q).await?;
        Ok(rows.into_iter().filter_map(|a| a.component).map(|n| (n.clone(), n)).collect())
    }

    async fn serve(&self, normalized: &str, filename: &str, want: &Want) -> Result<HttpResponse> {
        self.upstream.through_cache(CacheKind::Content, self.serve_counted(normalized, filename, want)).await
    }

    // Not cached, so not counted as a cache read: the page it reads is.
    async fn provenance(&self, normalized: &str, version: &str, filename: &str) -> Result<HttpResponse> {
        let files = self.files(normalized).await?.ok_or(PypiError::NotFound)?;
        let entry = Self::find(&files, filename).filter(|f| f.version.as_deref() == Some(version)).ok_or(PypiError::NotFound)?;
        let url = entry.provenance.as_deref().ok_or(PypiError::NotFound)?;
        let bytes = self.upstream.get_small(url, crate::attestation::MAX_PROVENANCE as usize).await.map_err(|e| self.upstream_error(e))?;
        // Passed on as the upstream sent it, once it is seen to be a provenance object at all.
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.get("version") == Some(&json!(1)) && v.get("attestation_bundles").is_some_and(serde_json::Value::is_array) => {}
            _ => return Err(PypiError::Upstream(format!("the upstream's provenance for {filename} is not a PEP 740 provenance object"))),
        }
        Ok(source::provenance_response(bytes))
    }
}

impl Proxy {
    /// The project's files from the cached page, refreshed first when it is due.
    async fn page_files(&self, normalized: &str) -> Result<Option<Vec<FileEntry>>> {
        let cached = self.cached_page(normalized).await?;
        if let Some(a) = &cached {
            if !self.settings.metadata_stale(a.updated_at) {
                return Ok(Some(self.load_page(a).await?));
            }
        }
        let key = format!("i:{normalized}");
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
            Outcome::Failed(m) => Err(PypiError::Upstream(m)),
            _ => Ok(true),
        };
        let fetch = || async {
            let cached = self.cached_page(normalized).await?;
            if let Some(answer) = self.settings.settled(cached.as_ref().map(|a| a.updated_at), self.upstream.health(), self.negative.contains(&key)) {
                return Ok(answer);
            }
            self.refresh(normalized, cached.as_ref(), &key).await
        };
        if !self.flights.once(&key, fetch, classify, reply).await? {
            return Ok(None);
        }
        match self.cached_page(normalized).await? {
            Some(a) => Ok(Some(self.load_page(&a).await?)),
            None => Ok(None),
        }
    }

    /// A file (its download counted) or its metadata.
    async fn serve_counted(&self, normalized: &str, filename: &str, want: &Want) -> Result<HttpResponse> {
        match filename.strip_suffix(".metadata") {
            Some(dist) => self.serve_metadata(normalized, dist).await,
            None => {
                let served = self.serve_file(normalized, filename, want).await?;
                if want.counts_as_download() && !served.counted_by_fill && served.response.status().is_success() {
                    self.env.downloads.record(self.cfg.id, &file_path(normalized, filename));
                }
                Ok(served.response)
            }
        }
    }
}
