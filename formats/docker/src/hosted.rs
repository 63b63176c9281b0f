//! A hosted Docker repository: the OCI Distribution API over the blob store and asset table.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_format::{
    now_millis, Action, AnyDigest, Asset, AuditEvent, Check, ComponentKey, DeleteError, Digest, FormatEnv, HashState, ListQuery, MetaError, Mount, NewAsset,
    Repo, RepoConfig, RepoCtx, UploadRow, Want, Write, WritePolicy,
};

use crate::access;
use crate::config::DockerSettings;
use crate::error::{range_header, DockerError};
use crate::meta::{self, blob_path, image_path, manifest_path, ref_path, refs_prefix, tag_path};
use crate::model::{self, accepts, Manifest, Reference, MT_OCI_INDEX};
use crate::routes::{self, Endpoint};

/// Manifests larger than this are refused (Distribution's limit too).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The most tags or catalog entries one page returns when the client names no `n`.
const MAX_PAGE: i64 = 10_000;
/// How long a request's claim on an upload session lasts unless renewed: a request renews it
/// every [`UPLOAD_RENEW`] while it writes, and releases it when it ends however it ends, so the
/// lease only matters when a node dies mid-write (then the next request waits at most this
/// long for the session).
const UPLOAD_LEASE_MS: i64 = 15_000;
const UPLOAD_RENEW: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Hosted {
    pub(crate) cfg: Arc<RepoConfig>,
    settings: DockerSettings,
    pub(crate) env: FormatEnv,
    /// Pushes of one tag on this node take turns instead of racing in the database.
    tag_writers: wharf_format::KeyedLocks,
}

type Result<T, E = DockerError> = std::result::Result<T, E>;

/// The most legacy manifests an image's row remembers (see `Hosted::legacy_user_of`): the row
/// is read whole by tag lists and the catalog too, and a delete reads each path.
const LEGACY_KEPT: usize = 64;

#[async_trait(?Send)]
impl Repo for Hosted {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        crate::error::respond(self.route(&ctx, &req, body).await)
    }

    async fn run_task(&self, type_id: &str, run: wharf_format::TaskRun<'_>) -> Option<Result<wharf_format::TaskReport, String>> {
        (type_id == crate::cleanup::UNUSED_MANIFESTS).then_some(())?;
        Some(self.delete_unused(run).await.map_err(|e| e.to_string()))
    }

    /// As in Nexus, deleting a Docker component removes its tag only; the manifest and its
    /// blobs go once nothing tags or references them (the untagged-manifests task).
    async fn delete_component(&self, component: &ComponentKey, assets: &[Asset]) -> Result<Vec<Asset>, DeleteError> {
        delete_tags(&*self.env.meta, self.repo_id(), component, assets).await
    }

    async fn describe_component(&self, component: &ComponentKey, assets: &[Asset]) -> Result<serde_json::Value, wharf_format::DescribeError> {
        crate::describe::describe(&*self.env.meta, &self.env.blobs, self.repo_id(), component, assets).await
    }
}

/// Removes a component's tag, only while it still names the manifest it was listed with.
pub(crate) async fn delete_tags(meta: &dyn wharf_format::MetaStore, repo: i64, component: &ComponentKey, assets: &[Asset]) -> Result<Vec<Asset>, DeleteError> {
    let tags: Vec<Asset> = assets.iter().filter(|a| a.kind == meta::TAG).cloned().collect();
    wharf_format::lifecycle::delete_assets(meta, repo, &format!("{}:{}", component.name, component.version), &tags).await
}

impl Hosted {
    pub fn new(cfg: Arc<RepoConfig>, settings: DockerSettings, env: FormatEnv) -> Hosted {
        Hosted { cfg, settings, env, tag_writers: Default::default() }
    }

    pub(crate) async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(DockerError::NameUnknown)?;
        let q = query(&ctx.query);
        let m = req.method();
        match endpoint {
            Endpoint::Base => self.base(ctx),
            Endpoint::Catalog if wharf_format::reads(m) => self.catalog(ctx, &q).await,
            Endpoint::Tags { name } if wharf_format::reads(m) => self.tags(ctx, &name, &q).await,
            Endpoint::Manifest { name, reference } => {
                self.check_name(ctx, &name)?;
                // Authorized before the reference is looked at: a caller who may not see the
                // image learns nothing from how its references answer.
                match *m {
                    Method::GET | Method::HEAD => {
                        self.authorize(ctx, Action::Read, &name)?;
                        let reference = Reference::parse_existing(&reference)?;
                        self.get_manifest(ctx, req, &name, &reference, m == Method::HEAD).await
                    }
                    Method::PUT => {
                        self.authorize(ctx, Action::Write, &name)?;
                        self.put_manifest(ctx, req, &name, &Reference::parse(&reference)?, body).await
                    }
                    Method::DELETE => {
                        self.authorize(ctx, Action::Delete, &name)?;
                        self.delete_manifest(ctx, &name, &Reference::parse_existing(&reference)?).await
                    }
                    _ => Err(unsupported(m)),
                }
            }
            Endpoint::Blob { name, digest } => {
                self.check_name(ctx, &name)?;
                match *m {
                    Method::GET => self.get_blob(ctx, req, &name, &digest, false).await,
                    Method::HEAD => self.get_blob(ctx, req, &name, &digest, true).await,
                    Method::DELETE => self.delete_blob(ctx, &name, &digest).await,
                    _ => Err(unsupported(m)),
                }
            }
            Endpoint::StartUpload { name } if m == Method::POST => {
                self.check_name(ctx, &name)?;
                self.start_upload(ctx, &name, &q, body).await
            }
            Endpoint::Upload { name, id } => {
                self.check_name(ctx, &name)?;
                match *m {
                    Method::GET => self.upload_status(ctx, &name, &id).await,
                    Method::PATCH => self.patch_upload(ctx, req, &name, &id, body).await,
                    Method::PUT => self.finish_upload(ctx, req, &name, &id, &q, body).await,
                    Method::DELETE => self.cancel_upload(ctx, &name, &id).await,
                    _ => Err(unsupported(m)),
                }
            }
            Endpoint::Referrers { name, digest } if wharf_format::reads(m) => self.referrers(ctx, &name, &digest, &q).await,
            _ => Err(unsupported(m)),
        }
    }

    // ---- access ---------------------------------------------------------------------------

    fn client_name(&self, ctx: &RepoCtx, name: &str) -> String {
        access::client_name(ctx, name)
    }

    fn check_name(&self, ctx: &RepoCtx, name: &str) -> Result<()> {
        access::check_name(ctx, name)
    }

    fn challenge(&self, ctx: &RepoCtx, scope: Option<(&str, Action)>) -> String {
        access::challenge(self.settings.force_basic_auth, ctx, scope)
    }

    pub(crate) fn authorize(&self, ctx: &RepoCtx, action: Action, name: &str) -> Result<()> {
        access::authorize(self.settings.force_basic_auth, ctx, action, name)
    }

    fn writable(&self) -> Result<()> {
        if self.cfg.write_policy == WritePolicy::Deny {
            return Err(DockerError::Denied(format!("repository {} is read-only (write policy deny)", self.cfg.name)));
        }
        Ok(())
    }

    fn url(&self, ctx: &RepoCtx, name: &str, suffix: &str) -> String {
        access::url(ctx, name, suffix)
    }

    fn repo_id(&self) -> i64 {
        self.cfg.id
    }

    // ---- base and discovery ----------------------------------------------------------------

    fn base(&self, ctx: &RepoCtx) -> Result<HttpResponse> {
        if ctx.principal.is_anonymous() && ctx.check(Action::Read, "*").is_err() {
            return Err(DockerError::Unauthorized { challenge: self.challenge(ctx, None) });
        }
        Ok(HttpResponse::Ok().content_type("application/json").body("{}"))
    }

    pub(crate) async fn catalog(&self, ctx: &RepoCtx, q: &HashMap<String, String>) -> Result<HttpResponse> {
        if ctx.principal.is_anonymous() && ctx.check(Action::Read, "*").is_err() {
            return Err(DockerError::Unauthorized { challenge: self.challenge(ctx, None) });
        }
        let n = page_size(q)?;
        let after = q.get("last").map(|l| image_path(l));
        let rows = if n == Some(0) {
            vec![]
        } else {
            let limit = n.unwrap_or(MAX_PAGE) + 1;
            let query = ListQuery { kind: Some(meta::IMAGE.into()), prefix: Some("_image/".into()), after, limit: Some(limit), ..Default::default() };
            self.env.meta.list(self.repo_id(), query).await?
        };
        let mut names: Vec<String> = rows.into_iter().filter_map(|a| a.component).collect();
        let more = n.is_some_and(|n| names.len() as i64 > n) || (n.is_none() && names.len() as i64 > MAX_PAGE);
        names.truncate(n.unwrap_or(MAX_PAGE) as usize);
        // The next page starts after the last name read, readable or not: a page whose every
        // name the caller may not read still links on to those it may.
        let read_up_to = names.last().cloned();
        let listable = ctx.principal.access.listable(&ctx.repo);
        names.retain(|name| listable.includes(name));
        let mut res = HttpResponse::Ok();
        if let (true, Some(last)) = (more, read_up_to) {
            res.insert_header(("Link", format!(r#"<{}?n={}&last={last}>; rel="next""#, access::catalog_path(ctx), n.unwrap_or(MAX_PAGE))));
        }
        Ok(res.json(json!({ "repositories": names })))
    }

    pub(crate) async fn tags(&self, ctx: &RepoCtx, name: &str, q: &HashMap<String, String>) -> Result<HttpResponse> {
        self.check_name(ctx, name)?;
        self.authorize(ctx, Action::Read, name)?;
        if self.env.meta.get(self.repo_id(), &image_path(name)).await?.is_none() {
            return Err(DockerError::NameUnknown);
        }
        let n = page_size(q)?;
        let rows = if n == Some(0) {
            vec![]
        } else {
            let query = ListQuery {
                kind: Some(meta::TAG.into()),
                component: Some(name.to_string()),
                prefix: Some(tag_path(name, "")),
                after: q.get("last").map(|l| tag_path(name, l)),
                limit: Some(n.unwrap_or(MAX_PAGE) + 1),
                ..Default::default()
            };
            self.env.meta.list(self.repo_id(), query).await?
        };
        let limit = n.unwrap_or(MAX_PAGE);
        let more = rows.len() as i64 > limit;
        let tags: Vec<&str> = rows.iter().take(limit as usize).map(|a| meta::tag_of(&a.path)).collect();
        let mut res = HttpResponse::Ok();
        if more {
            let link = self.url(ctx, name, "tags/list");
            let link = link.strip_prefix(&ctx.origin).unwrap_or(&link);
            res.insert_header(("Link", format!(r#"<{link}?n={limit}&last={}>; rel="next""#, tags.last().unwrap_or(&""))));
        }
        Ok(res.json(json!({ "name": self.client_name(ctx, name), "tags": tags })))
    }

    async fn referrers(&self, ctx: &RepoCtx, name: &str, digest: &str, q: &HashMap<String, String>) -> Result<HttpResponse> {
        self.check_name(ctx, name)?;
        self.authorize(ctx, Action::Read, name)?;
        let digest: AnyDigest = digest.parse()?;
        let query = ListQuery { kind: Some(meta::MANIFEST.into()), component: Some(name.to_string()), link: Some(digest.to_string()), ..Default::default() };
        let rows = self.env.meta.list(self.repo_id(), query).await?;
        let filter = q.get("artifactType");
        let manifests: Vec<serde_json::Value> = rows
            .iter()
            .filter(|a| filter.is_none() || a.attributes.get("artifactType").and_then(|v| v.as_str()) == filter.map(String::as_str))
            .map(|a| {
                let mut d = json!({
                    "mediaType": a.content_type,
                    "digest": meta::key_of(&a.path),
                    "size": a.size,
                });
                for key in ["artifactType", "annotations"] {
                    if let Some(v) = a.attributes.get(key).filter(|v| !v.is_null()) {
                        d[key] = v.clone();
                    }
                }
                d
            })
            .collect();
        let mut res = HttpResponse::Ok();
        res.content_type(MT_OCI_INDEX);
        if filter.is_some() {
            res.insert_header(("OCI-Filters-Applied", "artifactType"));
        }
        let body = json!({ "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests });
        Ok(res.body(body.to_string()))
    }

    // ---- manifests -------------------------------------------------------------------------

    pub(crate) async fn get_manifest(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str, reference: &Reference, head: bool) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Read, name)?;
        let path = match reference {
            Reference::Tag(t) => tag_path(name, t),
            Reference::Digest(d) => manifest_path(name, &d.to_string()),
        };
        let asset = self.env.meta.get(self.repo_id(), &path).await?.ok_or_else(|| DockerError::ManifestUnknown(reference_str(reference)))?;
        // The bytes are stored under their sha256 (the row's digest); the client knows the
        // manifest by the digest it asked for (a tag's is that sha256).
        let stored: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| DockerError::Internal(Box::new(e)))?;
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(_) => AnyDigest::from(stored.clone()),
        };
        let media_type = asset.content_type.clone().unwrap_or_default();
        let accept: Vec<&str> = req.headers().get_all(header::ACCEPT).filter_map(|v| v.to_str().ok()).collect();
        if !accepts(&accept, &media_type) {
            return Err(DockerError::ManifestUnknown(format!("{} is a {media_type}, which the request does not accept", reference_str(reference))));
        }
        let mut res = HttpResponse::Ok();
        res.insert_header(("Docker-Content-Digest", digest.to_string())).insert_header((header::ETAG, format!("\"{digest}\""))).content_type(media_type);
        if head {
            return Ok(wharf_format::head_response(res, Some(asset.size as u64)));
        }
        let bytes = self.env.blobs.read_small(&stored, MAX_MANIFEST_BYTES).await?;
        // A pull by tag is the tag's download, by digest the manifest's.
        self.env.downloads.record(self.repo_id(), &path);
        Ok(res.body(bytes))
    }

    async fn put_manifest(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str, reference: &Reference, body: web::Payload) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Write, name)?;
        self.writable()?;
        self.env.usage.check_write(&self.cfg).await?;
        let bytes = read_limited(body, MAX_MANIFEST_BYTES).await?;
        // Pushed by digest, the manifest is known by that digest's algorithm; by tag, by sha256.
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = AnyDigest::of(d.algorithm(), &bytes);
                if actual != *d {
                    return Err(DockerError::DigestInvalid(format!("manifest digest is {actual}, pushed as {d}")));
                }
                actual
            }
            Reference::Tag(_) => AnyDigest::from(Digest::of(&bytes)),
        };
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let manifest = Manifest::parse(&bytes, content_type)?;
        let repo = self.repo_id();
        let digest_str = digest.to_string();

        let mut checks = Vec::new();
        for b in &manifest.blobs {
            checks.push(Check::Exists { repo, path: blob_path(name, &b.to_string()) });
        }
        for c in &manifest.children {
            checks.push(Check::Exists { repo, path: manifest_path(name, &c.to_string()) });
        }
        let refs_checked = checks.len();
        if let Reference::Tag(tag) = reference {
            let exempt = tag == "latest" && self.cfg.latest_policy;
            if self.cfg.write_policy == WritePolicy::AllowOnce && !exempt {
                checks.push(Check::AbsentOrDigest { repo, path: tag_path(name, tag), digest: digest_str.clone() });
            }
        }

        let _turn = match reference {
            Reference::Tag(tag) => Some(self.tag_writers.lock(&tag_path(name, tag)).await),
            Reference::Digest(_) => None,
        };
        match self.save_manifest(name, bytes, &manifest, reference, checks, Some(ctx)).await {
            Ok(()) => {}
            Err(DockerError::Meta(MetaError::CheckFailed(i))) if i < manifest.blobs.len() => {
                return Err(DockerError::ManifestBlobUnknown(manifest.blobs[i].to_string()))
            }
            Err(DockerError::Meta(MetaError::CheckFailed(i))) if i < refs_checked => {
                return Err(DockerError::ManifestBlobUnknown(manifest.children[i - manifest.blobs.len()].to_string()))
            }
            Err(DockerError::Meta(MetaError::CheckFailed(_))) => return Err(DockerError::TagImmutable(reference_str(reference))),
            Err(e) => return Err(e),
        }
        let mut event = AuditEvent::of(ctx, "docker.push", format!("{name}:{}", reference_str(reference)));
        event.detail = json!({ "digest": digest_str });
        self.env.audit.record(event);
        let mut res = HttpResponse::Created();
        res.insert_header((header::LOCATION, self.url(ctx, name, &format!("manifests/{digest}")))).insert_header(("Docker-Content-Digest", digest_str));
        if let Some(subject) = &manifest.subject {
            res.insert_header(("OCI-Subject", subject.to_string()));
        }
        Ok(res.finish())
    }

    /// Stores a manifest's bytes, then its metadata (and the tag, for a tag reference) in one
    /// batch guarded by `checks`. Content first: metadata never points at bytes that are not there.
    /// `pusher` is the push's request (a proxy's fill has none): the tag records who pushed it
    /// and from where, as the other formats' uploads do.
    pub(crate) async fn save_manifest(
        &self,
        name: &str,
        bytes: Bytes,
        manifest: &Manifest,
        reference: &Reference,
        checks: Vec<Check>,
        pusher: Option<&RepoCtx>,
    ) -> Result<()> {
        let repo = self.repo_id();
        // Stored under its sha256 (the row's digest, which garbage collection and the blob
        // ledger go by); known to clients by `digest_str`, the path's key and what uses and
        // referrers name.
        let stored = Digest::of(&bytes).to_string();
        let digest_str = match reference {
            Reference::Digest(d) => d.to_string(),
            Reference::Tag(_) => stored.clone(),
        };
        let size = bytes.len() as i64;
        self.env.blobs.put_bytes(bytes).await?;

        let mut writes = vec![
            // A new image's manifests all record their uses (see `legacy_user_of`).
            Write::InsertIfAbsent {
                repo,
                asset: NewAsset {
                    path: image_path(name),
                    kind: meta::IMAGE.into(),
                    component: Some(name.into()),
                    attributes: json!({ "refs": true }),
                    ..Default::default()
                },
            },
            Write::Upsert {
                repo,
                asset: NewAsset {
                    path: manifest_path(name, &digest_str),
                    kind: meta::MANIFEST.into(),
                    component: Some(name.into()),
                    digest: Some(stored.clone()),
                    size,
                    content_type: Some(manifest.media_type.clone()),
                    link: manifest.subject.as_ref().map(|s| s.to_string()),
                    // `refs`: this manifest's uses are recorded as `ref` rows (older ones were not).
                    attributes: json!({ "artifactType": manifest.artifact_type, "annotations": manifest.annotations, "refs": true }),
                },
            },
        ];
        for used in manifest.blobs.iter().chain(&manifest.children) {
            let asset = NewAsset {
                path: ref_path(name, &used.to_string(), &digest_str),
                kind: meta::REF.into(),
                component: Some(name.into()),
                link: Some(digest_str.clone()),
                ..Default::default()
            };
            writes.push(Write::Upsert { repo, asset });
        }
        if let Reference::Tag(tag) = reference {
            writes.push(Write::Upsert {
                repo,
                asset: NewAsset {
                    path: tag_path(name, tag),
                    kind: meta::TAG.into(),
                    component: Some(name.into()),
                    digest: Some(digest_str.clone()),
                    size,
                    content_type: Some(manifest.media_type.clone()),
                    attributes: pusher.map_or(serde_json::Value::Null, |ctx| json!({ "uploader": ctx.principal.user, "uploader_ip": ctx.client })),
                    ..Default::default()
                },
            });
        }
        self.env.meta.commit(checks, writes).await.map_err(DockerError::Meta)
    }

    async fn delete_manifest(&self, ctx: &RepoCtx, name: &str, reference: &Reference) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Delete, name)?;
        self.writable()?;
        let repo = self.repo_id();
        match reference {
            // Only the tag: the manifest and its other tags stay.
            Reference::Tag(tag) => {
                let path = tag_path(name, tag);
                self.env.meta.get(repo, &path).await?.ok_or_else(|| DockerError::ManifestUnknown(tag.clone()))?;
                self.env
                    .meta
                    .commit(vec![Check::Exists { repo, path: path.clone() }], vec![Write::Delete { repo, path }])
                    .await
                    .map_err(gone_is_unknown(tag))?;
            }
            Reference::Digest(d) => {
                let path = manifest_path(name, &d.to_string());
                self.env.meta.get(repo, &path).await?.ok_or_else(|| DockerError::ManifestUnknown(d.to_string()))?;
                // A child of an index stays while the index does: a tag must always be pullable.
                if let Some(index) = self.legacy_user_of(name, &d.to_string()).await? {
                    return Err(DockerError::ManifestInUse { manifest: d.to_string(), index });
                }
                let prefix = refs_prefix(name, &d.to_string());
                let mut writes =
                    vec![Write::Delete { repo, path }, Write::DeleteByDigest { repo, kind: meta::TAG.into(), component: name.into(), digest: d.to_string() }];
                // What it used is free again. A ref left behind by a racing re-push only keeps a
                // blob from being deleted, never breaks a pull.
                let q = ListQuery { kind: Some(meta::REF.into()), component: Some(name.into()), link: Some(d.to_string()), ..Default::default() };
                writes.extend(self.env.meta.list(repo, q).await?.into_iter().map(|a| Write::Delete { repo, path: a.path }));
                // Checked in the same transaction: an index pushed meanwhile checks that this
                // manifest exists, so one of the two waits or loses.
                match self.env.meta.commit(vec![Check::NoneUnder { repo, prefix: prefix.clone() }], writes).await {
                    Ok(()) => {}
                    Err(MetaError::CheckFailed(_)) => {
                        return Err(DockerError::ManifestInUse { manifest: d.to_string(), index: self.first_user(&prefix).await? })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.env.audit.record(AuditEvent::of(ctx, "docker.delete", format!("{name}:{}", reference_str(reference))));
        Ok(HttpResponse::Accepted().finish())
    }

    // ---- blobs -----------------------------------------------------------------------------

    pub(crate) async fn get_blob(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str, digest: &str, head: bool) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Read, name)?;
        let digest: AnyDigest = digest.parse()?;
        let asset = self.env.meta.get(self.repo_id(), &blob_path(name, &digest.to_string())).await?.ok_or(DockerError::BlobUnknown)?;
        let stored = stored_digest(&digest, &asset)?;
        let size = asset.size as u64;
        let mut res = HttpResponse::Ok();
        res.insert_header(("Docker-Content-Digest", digest.to_string()))
            .insert_header((header::ETAG, format!("\"{digest}\"")))
            .insert_header((header::CACHE_CONTROL, "max-age=31536000"))
            .content_type("application/octet-stream");
        let want = if head { Want::Head } else { Want::of(req) };
        if !head {
            // Distribution's `redirect`: the client fetches the bytes (and its range) from the bucket.
            if let Some(url) = self.env.blobs.download_url(&stored).await? {
                if want.counts_as_download() {
                    self.env.downloads.record(self.repo_id(), &asset.path);
                }
                return Ok(HttpResponse::TemporaryRedirect()
                    .insert_header(("Docker-Content-Digest", digest.to_string()))
                    .insert_header((header::LOCATION, url))
                    .finish());
            }
        }
        let res = wharf_format::download::respond(&self.env.blobs, &stored, size, &want, res).await?;
        if want.counts_as_download() {
            self.env.downloads.record(self.repo_id(), &asset.path);
        }
        Ok(res)
    }

    async fn delete_blob(&self, ctx: &RepoCtx, name: &str, digest: &str) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Delete, name)?;
        self.writable()?;
        let digest: AnyDigest = digest.parse()?;
        let repo = self.repo_id();
        let path = blob_path(name, &digest.to_string());
        self.env.meta.get(repo, &path).await?.ok_or(DockerError::BlobUnknown)?;
        if let Some(manifest) = self.legacy_user_of(name, &digest.to_string()).await? {
            return Err(DockerError::BlobInUse { blob: digest.to_string(), manifest });
        }
        // The link goes, in the same transaction as the check that no manifest uses it (a
        // manifest pushed meanwhile checks that the blob exists: one of the two waits or loses).
        // The bytes stay until garbage collection finds nothing referring to them.
        let prefix = refs_prefix(name, &digest.to_string());
        let checks = vec![Check::NoneUnder { repo, prefix: prefix.clone() }];
        match self.env.meta.commit(checks, vec![Write::Delete { repo, path }]).await {
            Ok(()) => Ok(HttpResponse::Accepted().finish()),
            Err(MetaError::CheckFailed(_)) => Err(DockerError::BlobInUse { blob: digest.to_string(), manifest: self.first_user(&prefix).await? }),
            Err(e) => Err(e.into()),
        }
    }

    /// The manifest of the first `ref` row under `prefix` (for the error that names it).
    async fn first_user(&self, prefix: &str) -> Result<String> {
        let q = ListQuery { prefix: Some(prefix.to_string()), limit: Some(1), ..Default::default() };
        Ok(self.env.meta.list(self.repo_id(), q).await?.into_iter().next().and_then(|a| a.link).unwrap_or_default())
    }

    /// A manifest pushed before uses were recorded (no `refs` attribute) that uses `digest`
    /// (a blob, or a manifest an index lists). One whose bytes cannot be read or parsed counts
    /// as a user: what it uses is unknown, and a delete that might break a tag is refused.
    ///
    /// Nothing writes a manifest without its uses any more, so an image's legacy manifests only
    /// ever go. The image's row remembers what the last delete found: `refs` when none is left
    /// (every image created since uses were recorded starts so), else `legacy`, their paths,
    /// which the next delete reads one by one. Only an image with more than [`LEGACY_KEPT`] of
    /// them, or none remembered yet, has all its manifests listed: 96 ms per DELETE at 20,000
    /// manifests. The legacy manifests are not given `ref` rows here: a backfill racing a
    /// manifest delete could bring the manifest's row back. A wharf older than 670d1f0 (which
    /// stored manifests without their uses) must not run against the database again: what it
    /// pushed into a marked image would not be guarded.
    async fn legacy_user_of(&self, name: &str, digest: &str) -> Result<Option<String>> {
        let repo = self.repo_id();
        let image = self.env.meta.get(repo, &image_path(name)).await?;
        let attrs = image.as_ref().map(|a| &a.attributes);
        if attrs.and_then(|a| a.get("refs")).and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let is_legacy = |a: &Asset| a.kind == meta::MANIFEST && a.attributes.get("refs").and_then(Value::as_bool) != Some(true);
        let remembered: Option<Vec<String>> = attrs.and_then(|a| a.get("legacy")).and_then(|l| serde_json::from_value(l.clone()).ok());
        let mut legacy = Vec::new();
        match &remembered {
            Some(paths) => {
                for p in paths {
                    legacy.extend(self.env.meta.get(repo, p).await?.filter(is_legacy));
                }
            }
            None => {
                let q = ListQuery { kind: Some(meta::MANIFEST.into()), component: Some(name.into()), ..Default::default() };
                legacy = self.env.meta.list(repo, q).await?.into_iter().filter(is_legacy).collect();
            }
        }
        let paths: Vec<String> = legacy.iter().map(|a| a.path.clone()).collect();
        if let Some(image) = image.filter(|_| remembered.as_ref() != Some(&paths)) {
            self.remember_legacy(image, &paths).await;
        }
        for a in legacy {
            if a.digest.as_deref() == Some(digest) {
                continue;
            }
            let used = match self.legacy_uses(&a).await {
                Some(uses) => uses.iter().any(|u| u == digest),
                // What it uses is unknown: refuse deletes it might break.
                None => true,
            };
            if used {
                return Ok(Some(a.digest.unwrap_or(a.path)));
            }
        }
        Ok(None)
    }

    /// Writes in an image's row what a delete found of its legacy manifests (see
    /// `legacy_user_of`): `refs` when there are none. Best effort: a row left as it was is
    /// only read again by the next delete.
    async fn remember_legacy(&self, image: Asset, legacy: &[String]) {
        let repo = self.repo_id();
        let path = image.path.clone();
        let check = Check::Unchanged { repo, path: path.clone(), updated_at: image.updated_at };
        let mut asset = NewAsset::from(image);
        let mut attrs = match std::mem::take(&mut asset.attributes) {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        match legacy.len() {
            0 => {
                attrs.remove("legacy");
                attrs.insert("refs".into(), Value::Bool(true));
            }
            n if n <= LEGACY_KEPT => drop(attrs.insert("legacy".into(), json!(legacy))),
            _ => return,
        }
        asset.attributes = Value::Object(attrs);
        if let Err(e) = self.env.meta.commit(vec![check], vec![Write::Upsert { repo, asset }]).await {
            tracing::debug!(%path, error = %e, "an image's legacy manifests were not remembered");
        }
    }

    /// What a manifest pushed before uses were recorded uses (blobs and child manifests), read
    /// from its content; `None` when that cannot be read or parsed (then nothing it might use
    /// may go).
    pub(crate) async fn legacy_uses(&self, a: &Asset) -> Option<Vec<String>> {
        let d: Digest = a.digest.as_deref()?.parse().ok()?;
        let parsed = match self.env.blobs.read_small(&d, MAX_MANIFEST_BYTES).await {
            Ok(bytes) => Manifest::parse(&bytes, a.content_type.as_deref()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(m) => Some(m.blobs.iter().chain(&m.children).map(|b| b.to_string()).collect()),
            Err(e) => {
                tracing::warn!(manifest = %d, error = %e, "a stored manifest cannot be read or parsed; what it uses is kept");
                None
            }
        }
    }

    /// Links a blob the image knows as `digest`, stored as `stored` (its sha256), into image
    /// `name`.
    pub(crate) async fn link_blob(&self, name: &str, digest: &AnyDigest, stored: &Digest, size: u64) -> Result<()> {
        let repo = self.repo_id();
        let asset = NewAsset {
            path: blob_path(name, &digest.to_string()),
            kind: meta::BLOB.into(),
            component: Some(name.into()),
            digest: Some(stored.to_string()),
            size: size as i64,
            ..Default::default()
        };
        self.env.meta.commit(vec![], vec![Write::Upsert { repo, asset }]).await.map_err(DockerError::Meta)?;
        Ok(())
    }

    fn blob_created(&self, ctx: &RepoCtx, name: &str, digest: &AnyDigest) -> HttpResponse {
        HttpResponse::Created()
            .insert_header((header::LOCATION, self.url(ctx, name, &format!("blobs/{digest}"))))
            .insert_header(("Docker-Content-Digest", digest.to_string()))
            .finish()
    }

    // ---- uploads ---------------------------------------------------------------------------

    async fn start_upload(&self, ctx: &RepoCtx, name: &str, q: &HashMap<String, String>, body: web::Payload) -> Result<HttpResponse> {
        // A mount's challenge asks for pull on the source too (as Distribution's does), so that
        // a client that fetches its token from the challenge can mount.
        let mount_from = q.get("mount").and(q.get("from")).filter(|f| model::valid_name(f));
        self.authorize(ctx, Action::Write, name).map_err(|e| match (e, mount_from) {
            (DockerError::Unauthorized { .. }, Some(from)) => {
                DockerError::Unauthorized { challenge: access::mount_challenge(self.settings.force_basic_auth, ctx, name, from) }
            }
            (e, _) => e,
        })?;
        self.writable()?;
        // Refused before any byte is sent; checked again where the bytes would be linked.
        self.env.usage.check_write(&self.cfg).await?;
        if let Some(mount) = q.get("mount") {
            let digest: AnyDigest = mount.parse()?;
            match self.mountable(ctx, q.get("from").map(String::as_str), &digest).await? {
                Mountable::Yes { size, stored } => match self.link_blob(name, &digest, &stored, size).await {
                    Ok(()) => return Ok(self.blob_created(ctx, name, &digest)),
                    // Garbage collection took it since the source named it: the client uploads.
                    Err(DockerError::Meta(MetaError::BlobGone(_))) => {}
                    Err(e) => return Err(e),
                },
                // The caller's token lacks pull on the source, which a new token would hold:
                // ask for it (Distribution's insufficient-scope answer) rather than make the
                // client upload what is here already.
                Mountable::WithAnotherToken { from } => {
                    return Err(DockerError::Unauthorized { challenge: access::mount_challenge(self.settings.force_basic_auth, ctx, name, &from) })
                }
                Mountable::No => {}
            }
            // Not mountable: the spec's answer is an ordinary upload session.
        } else if let Some(d) = q.get("digest") {
            let digest: AnyDigest = d.parse()?;
            let staged = self.env.blobs.stage_stream(body).await?;
            staged.verify(&digest).await?;
            // The body took its time: writes that finished meanwhile count (see `wharf_format::quota`).
            self.env.usage.check_write(&self.cfg).await?;
            let size = staged.size();
            let stored = staged.publish().await?;
            self.link_blob(name, &digest, &stored, size).await?;
            return Ok(self.blob_created(ctx, name, &digest));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.env.blobs.stage_create(&id).await?;
        let now = now_millis();
        self.env
            .meta
            .upload_create(UploadRow {
                id: id.clone(),
                repo: self.repo_id(),
                component: name.to_string(),
                blob_store: self.env.blobs.name().to_string(),
                owner: ctx.principal.user.clone(),
                offset: 0,
                hash_state: HashState::empty(),
                created_at: now,
                updated_at: now,
            })
            .await?;
        Ok(self.upload_accepted(ctx, name, &id, 0, HttpResponse::Accepted()))
    }

    /// Whether `digest` can be mounted from the `from` image: the caller may read it there and
    /// it shares our blob store (so that linking it costs no copy).
    async fn mountable(&self, ctx: &RepoCtx, from: Option<&str>, digest: &AnyDigest) -> Result<Mountable> {
        let Some(from) = from else { return Ok(Mountable::No) };
        let (repo_name, image) = match ctx.mount {
            Mount::Own => (self.cfg.name.clone(), from.to_string()),
            _ => match from.split_once('/') {
                Some((r, i)) => (r.to_string(), i.to_string()),
                None => return Ok(Mountable::No),
            },
        };
        if !model::valid_name(&image) {
            return Ok(Mountable::No);
        }
        let (source_cfg, same_store) = if repo_name == self.cfg.name {
            (self.cfg.clone(), true)
        } else {
            match self.env.repos.repo(&repo_name) {
                Some(r) if r.config.format == self.cfg.format => {
                    let same = r.blobs.name() == self.env.blobs.name();
                    (r.config, same)
                }
                _ => return Ok(Mountable::No),
            }
        };
        if !same_store || !source_cfg.online {
            return Ok(Mountable::No);
        }
        let source_ctx = RepoCtx { repo: source_cfg.clone(), ..ctx.clone() };
        let readable = source_ctx.check(Action::Read, &image).is_ok();
        // Looked up only for a caller who may read the source, or whose holder may: nobody
        // learns from a mount whether a blob exists where they may not look.
        if !readable && !access::token_would_allow(&source_ctx, Action::Read, &image) {
            return Ok(Mountable::No);
        }
        let Some(asset) = self.env.meta.get(source_cfg.id, &blob_path(&image, &digest.to_string())).await? else {
            return Ok(Mountable::No);
        };
        if !readable {
            return Ok(Mountable::WithAnotherToken { from: from.to_string() });
        }
        Ok(Mountable::Yes { size: asset.size as u64, stored: stored_digest(digest, &asset)? })
    }

    fn upload_accepted(&self, ctx: &RepoCtx, name: &str, id: &str, offset: u64, mut res: HttpResponseBuilder) -> HttpResponse {
        res.insert_header((header::LOCATION, self.url(ctx, name, &format!("blobs/uploads/{id}"))))
            .insert_header(("Range", range_header(offset)))
            .insert_header(("Docker-Upload-UUID", id.to_string()))
            .finish()
    }

    /// The session, if it is this image's and the caller started it: another user with push
    /// rights on the image must not read, append to, finish or cancel it.
    async fn load_upload(&self, ctx: &RepoCtx, name: &str, id: &str) -> Result<UploadRow> {
        let row = self.env.meta.upload_get(id).await?.ok_or(DockerError::BlobUploadUnknown)?;
        if row.repo != self.repo_id() || row.component != name || row.owner != ctx.principal.user {
            return Err(DockerError::BlobUploadUnknown);
        }
        Ok(row)
    }

    /// Makes this request the session's only writer (across nodes). While another request
    /// writes to it, this one waits (at most a lease: the other may have died); once the
    /// session has moved past the offset this request was meant for, it answers 416 with the
    /// session's offset.
    async fn claim(&self, ctx: &RepoCtx, name: &str, row: &UploadRow) -> Result<Claim> {
        let writer = uuid::Uuid::new_v4().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(UPLOAD_LEASE_MS as u64 + 1000);
        let mut attempt = 0;
        loop {
            match self.env.meta.upload_claim(&row.id, row.offset, &writer, UPLOAD_LEASE_MS).await {
                Ok(_) => {
                    return Ok(Claim { meta: self.env.meta.clone(), blobs: self.env.blobs.clone(), id: row.id.clone(), offset: row.offset, writer, open: true })
                }
                Err(MetaError::Conflict) => {
                    let now = self.env.meta.upload_get(&row.id).await?.ok_or(DockerError::BlobUploadUnknown)?;
                    if now.offset != row.offset || std::time::Instant::now() >= deadline {
                        let location = self.url(ctx, name, &format!("blobs/uploads/{}", row.id));
                        return Err(DockerError::RangeInvalid { upload_offset: now.offset as u64, location });
                    }
                    attempt += 1;
                    tokio::time::sleep(wharf_format::backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs `work` while renewing `claim`'s lease, so that a long write keeps its session.
    async fn leased<T>(&self, claim: &Claim, work: impl std::future::Future<Output = T>) -> T {
        let renew = async {
            loop {
                tokio::time::sleep(UPLOAD_RENEW).await;
                // Lost: someone took over after a stall; our advance will fail and say so.
                let _ = self.env.meta.upload_renew(&claim.id, &claim.writer, UPLOAD_LEASE_MS).await;
            }
        };
        tokio::select! {
            out = work => out,
            never = renew => never,
        }
    }

    async fn upload_status(&self, ctx: &RepoCtx, name: &str, id: &str) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Write, name)?;
        let row = self.load_upload(ctx, name, id).await?;
        Ok(self.upload_accepted(ctx, name, id, row.offset as u64, HttpResponse::NoContent()))
    }

    /// Appends a request body to an upload, honouring `Content-Range` when the client sends one.
    async fn append(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str, row: &UploadRow, body: web::Payload) -> Result<(u64, Vec<u8>)> {
        let offset = row.offset as u64;
        let location = self.url(ctx, name, &format!("blobs/uploads/{}", row.id));
        let range = match req.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
            Some(h) => {
                let (start, end) = parse_content_range(h).ok_or_else(|| DockerError::BlobUploadInvalid(format!("bad Content-Range {h:?}")))?;
                // OCI dist-spec: a chunk that does not start at the current offset is a 416.
                if start != offset || end < start {
                    return Err(DockerError::RangeInvalid { upload_offset: offset, location });
                }
                Some((start, end))
            }
            None => None,
        };
        let (new_offset, state) = self.env.blobs.stage_append(&row.id, offset, &row.hash_state, body).await?;
        if let Some((start, end)) = range {
            if new_offset - offset != end - start + 1 {
                return Err(DockerError::RangeInvalid { upload_offset: offset, location });
            }
        }
        Ok((new_offset, state))
    }

    async fn patch_upload(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str, id: &str, body: web::Payload) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Write, name)?;
        self.writable()?;
        let row = self.load_upload(ctx, name, id).await?;
        let claim = self.claim(ctx, name, &row).await?;
        let (new_offset, state) = match self.leased(&claim, self.append(ctx, req, name, &row, body)).await {
            Ok(r) => r,
            Err(e) => {
                claim.abandon().await;
                return Err(e);
            }
        };
        match self.env.meta.upload_advance(id, row.offset, new_offset as i64, state, &claim.writer).await {
            Ok(()) => {
                claim.done();
                Ok(self.upload_accepted(ctx, name, id, new_offset, HttpResponse::Accepted()))
            }
            Err(MetaError::Conflict) => {
                // The claim ran out and another request took the session over: its bytes are
                // the session's now, and ours must not be cut back over them.
                claim.done();
                Err(DockerError::RangeInvalid { upload_offset: row.offset as u64, location: self.url(ctx, name, &format!("blobs/uploads/{id}")) })
            }
            Err(e) => {
                claim.abandon().await;
                Err(e.into())
            }
        }
    }

    async fn finish_upload(
        &self,
        ctx: &RepoCtx,
        req: &HttpRequest,
        name: &str,
        id: &str,
        q: &HashMap<String, String>,
        body: web::Payload,
    ) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Write, name)?;
        self.writable()?;
        let digest: AnyDigest = q.get("digest").ok_or_else(|| DockerError::DigestInvalid("the digest parameter is required".into()))?.parse()?;
        let row = self.load_upload(ctx, name, id).await?;
        let claim = self.claim(ctx, name, &row).await?;
        let (size, state) = match self.leased(&claim, self.append(ctx, req, name, &row, body)).await {
            Ok(r) => r,
            Err(e) => {
                claim.abandon().await;
                return Err(e);
            }
        };
        // The session was checked when it started; sessions that finished since count too, so
        // that many sessions opened under the quota cannot all land above it. A refusal ends
        // the session and frees its bytes: nothing is published.
        match self.leased(&claim, self.env.usage.check_write(&self.cfg)).await {
            Ok(()) => {}
            Err(e @ wharf_format::QuotaError::Exceeded(_)) => {
                claim.done();
                self.env.meta.upload_delete(id).await?;
                self.env.blobs.stage_discard(id).await;
                return Err(e.into());
            }
            // Usage could not be measured: the session stays as it was, for a retry.
            Err(e) => {
                claim.abandon().await;
                return Err(e.into());
            }
        }
        // Still this session's writer? A request that stalled past its lease may have lost the
        // session to another, whose bytes are in the file now: it must not publish. And
        // whether anyone ever took the session over decides whether the file is hashed again.
        let sole_writers = match self.env.meta.upload_renew(id, &claim.writer, UPLOAD_LEASE_MS).await {
            Ok(taken_over) => (!taken_over).then_some(size),
            Err(MetaError::Conflict) => {
                claim.done();
                return Err(DockerError::RangeInvalid { upload_offset: row.offset as u64, location: self.url(ctx, name, &format!("blobs/uploads/{id}")) });
            }
            Err(e) => {
                claim.abandon().await;
                return Err(e.into());
            }
        };
        let stored = match self.leased(&claim, self.env.blobs.stage_finish_any(id, &state, &digest, sole_writers)).await {
            Ok(stored) => stored,
            Err(e @ (wharf_format::BlobError::DigestMismatch { .. } | wharf_format::BlobError::ContentMismatch { .. })) => {
                // A failed verification ends the session: its bytes are not what the client meant.
                claim.done();
                self.env.meta.upload_delete(id).await?;
                return Err(e.into());
            }
            Err(e) => {
                claim.abandon().await;
                return Err(e.into());
            }
        };
        claim.done();
        let linked = self.link_blob(name, &digest, &stored, size).await;
        // The staged file is published (or gone): the session is over either way.
        self.env.meta.upload_delete(id).await?;
        linked?;
        Ok(self.blob_created(ctx, name, &digest))
    }

    async fn cancel_upload(&self, ctx: &RepoCtx, name: &str, id: &str) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Write, name)?;
        self.load_upload(ctx, name, id).await?;
        self.env.meta.upload_delete(id).await?;
        self.env.blobs.stage_discard(id).await;
        Ok(HttpResponse::NoContent().finish())
    }
}

/// What a cross-repository mount request can do.
enum Mountable {
    /// Link the blob (of this size, stored under this sha256) into the target image.
    Yes { size: u64, stored: Digest },
    /// The caller's bearer token lacks pull on the source, which its holder may have.
    WithAnotherToken { from: String },
    /// Not here, not readable, or not in our blob store: an ordinary upload.
    No,
}

/// One request's claim on an upload session. A request that fails, or is dropped (its client
/// went away), cuts the staged file back to what the session acknowledged, which frees the
/// space at once (a full disk must not stay full), and then releases the claim.
struct Claim {
    meta: Arc<dyn wharf_format::MetaStore>,
    blobs: Arc<wharf_format::BlobStore>,
    id: String,
    offset: i64,
    writer: String,
    open: bool,
}

impl Claim {
    /// The session moved on (or ended) under this claim: nothing to undo.
    fn done(mut self) {
        self.open = false;
    }

    async fn abandon(mut self) {
        self.open = false;
        release(self.meta.clone(), self.blobs.clone(), self.id.clone(), self.offset, self.writer.clone()).await;
    }
}

/// Cuts the staged file back only while the claim is provably still ours: if the lease ran out
/// (a renew lost to a database stall) another request may be writing past `offset` now, and its
/// bytes must not be cut. The renew is the conditional check (rows affected = 1) and also keeps
/// anyone from taking the session over between it and the cut; the release comes after the cut,
/// so that no next writer starts before it.
async fn release(meta: Arc<dyn wharf_format::MetaStore>, blobs: Arc<wharf_format::BlobStore>, id: String, offset: i64, writer: String) {
    match meta.upload_renew(&id, &writer, UPLOAD_LEASE_MS).await {
        Ok(_) => {}
        // Not ours any more: the session and its file belong to whoever holds it.
        Err(MetaError::Conflict) => return,
        Err(e) => {
            // Ownership unknown: leave the bytes (the next append drops anything past the
            // acknowledged offset itself); the lease frees the session.
            tracing::warn!(upload = %id, error = %e, "checking an upload claim before cutting it back");
            return;
        }
    }
    if let Err(e) = blobs.stage_truncate(&id, offset as u64).await {
        tracing::warn!(upload = %id, error = %e, "cutting a failed upload back");
    }
    if let Err(e) = meta.upload_release(&id, &writer).await {
        tracing::warn!(upload = %id, error = %e, "releasing an upload");
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.open {
            actix_web::rt::spawn(release(self.meta.clone(), self.blobs.clone(), self.id.clone(), self.offset, std::mem::take(&mut self.writer)));
        }
    }
}

/// The sha256 a blob link's bytes are stored under: the digest itself, or (a blob known by
/// another algorithm) the row's.
fn stored_digest(digest: &AnyDigest, asset: &Asset) -> Result<Digest> {
    match digest.sha256() {
        Some(d) => Ok(d),
        None => asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| DockerError::Internal(Box::new(e))),
    }
}

fn unsupported(m: &Method) -> DockerError {
    DockerError::Unsupported(format!("method {m} is not supported here"))
}

fn reference_str(r: &Reference) -> String {
    match r {
        Reference::Tag(t) => t.clone(),
        Reference::Digest(d) => d.to_string(),
    }
}

fn gone_is_unknown(what: &str) -> impl FnOnce(MetaError) -> DockerError + '_ {
    move |e| match e {
        MetaError::CheckFailed(_) => DockerError::ManifestUnknown(what.to_string()),
        other => other.into(),
    }
}

fn query(q: &str) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(q).map(|q| q.into_inner()).unwrap_or_default()
}

fn page_size(q: &HashMap<String, String>) -> Result<Option<i64>> {
    Ok(requested_page_size(q)?.map(|n| i64::try_from(n).unwrap_or(i64::MAX).min(MAX_PAGE)))
}

/// The page size `n` a listing was asked for (catalogs, tag lists): none when absent or empty
/// (as Distribution reads it), `PAGINATION_NUMBER_INVALID` when not a number of at least 0.
pub fn requested_page_size(q: &HashMap<String, String>) -> Result<Option<usize>> {
    match q.get("n").filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) => n.parse::<usize>().map(Some).map_err(|_| DockerError::PaginationNumberInvalid(format!("n={n}"))),
    }
}

async fn read_limited(mut body: web::Payload, limit: u64) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| DockerError::ManifestInvalid(format!("request body: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(DockerError::ManifestTooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// An upload chunk's `Content-Range: <start>-<end>` (also accepting a `bytes ` prefix).
fn parse_content_range(h: &str) -> Option<(u64, u64)> {
    let h = h.trim();
    let h = h.strip_prefix("bytes ").or_else(|| h.strip_prefix("bytes=")).unwrap_or(h);
    let h = h.split('/').next()?;
    let (a, b) = h.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use wharf_format::{Asset, UploadRow};

    /// An upload table of one row, enough for a claim's release.
    struct OneUpload {
        writer: Mutex<Option<String>>,
    }

    #[async_trait]
    impl wharf_format::MetaStore for OneUpload {
        async fn get(&self, _: i64, _: &str) -> Result<Option<Asset>, MetaError> {
            unimplemented!()
        }
        async fn list(&self, _: i64, _: ListQuery) -> Result<Vec<Asset>, MetaError> {
            unimplemented!()
        }
        async fn commit(&self, _: Vec<Check>, _: Vec<Write>) -> Result<(), MetaError> {
            unimplemented!()
        }
        async fn upload_create(&self, _: UploadRow) -> Result<(), MetaError> {
            unimplemented!()
        }
        async fn upload_get(&self, _: &str) -> Result<Option<UploadRow>, MetaError> {
            unimplemented!()
        }
        async fn upload_claim(&self, _: &str, _: i64, _: &str, _: i64) -> Result<bool, MetaError> {
            unimplemented!()
        }
        async fn upload_renew(&self, _: &str, writer: &str, _: i64) -> Result<bool, MetaError> {
            match self.writer.lock().unwrap().as_deref() == Some(writer) {
                true => Ok(false),
                false => Err(MetaError::Conflict),
            }
        }
        async fn upload_advance(&self, _: &str, _: i64, _: i64, _: Vec<u8>, _: &str) -> Result<(), MetaError> {
            unimplemented!()
        }
        async fn upload_release(&self, _: &str, writer: &str) -> Result<(), MetaError> {
            let mut w = self.writer.lock().unwrap();
            if w.as_deref() == Some(writer) {
                *w = None;
            }
            Ok(())
        }
        async fn upload_delete(&self, _: &str) -> Result<(), MetaError> {
            unimplemented!()
        }
    }

    /// A request whose lease ran out (its renew was lost) must not cut the bytes of the request
    /// that took the session over; a request that still holds it cuts its own bytes back.
    #[tokio::test]
    async fn a_lost_claim_never_cuts_the_next_writers_bytes() {
        let dir = std::env::temp_dir().join(format!("wharf-claim-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let blobs = Arc::new(wharf_format::BlobStore::filesystem("t", &dir).unwrap());
        blobs.stage_create("u").await.unwrap();
        let staged = dir.join("uploads/u");
        std::fs::write(&staged, b"acked+the next writer's bytes").unwrap();

        let meta = Arc::new(OneUpload { writer: Mutex::new(Some("next".into())) });
        release(meta.clone(), blobs.clone(), "u".into(), 5, "lost".into()).await;
        assert_eq!(std::fs::read(&staged).unwrap(), b"acked+the next writer's bytes");
        assert_eq!(meta.writer.lock().unwrap().as_deref(), Some("next"), "the session stays the next writer's");

        release(meta.clone(), blobs.clone(), "u".into(), 5, "next".into()).await;
        assert_eq!(std::fs::read(&staged).unwrap(), b"acked");
        assert_eq!(*meta.writer.lock().unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("x"), None);
    }
}
