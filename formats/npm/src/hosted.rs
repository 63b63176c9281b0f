//! A hosted npm registry: publish, packuments (full and abbreviated), tarballs, dist-tags,
//! deprecate, unpublish, search.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use wharf_format::{
    backoff, now_millis, Action, Asset, AuditEvent, Check, ComponentKey, ComponentUpload, DeleteError, Digest, FormatEnv, KeyedLocks, ListQuery, NewAsset,
    Repo, RepoConfig, RepoCtx, SideHashes, Staged, UploadError, UploadedFile, Want, Write, WritePolicy, CONTENTION_DEADLINE,
};

use crate::attachment;
use crate::config::HostedSettings;
use crate::doc::Doc;
use crate::error::NpmError;
use crate::meta::{self, tarball_path, tarballs_prefix};
use crate::model::{self, iso, tarball_file, valid_name, valid_version};
use crate::packument::{self, Packument};
use crate::provenance;
use crate::routes::{self, Endpoint};
use crate::source::{self, authorize, base_url, Result, Source};
use crate::store::{self, Saved};
use crate::tarball;

/// The largest document a caller with read rights only may send back (`npm star`: the
/// stargazers). A document is parsed whole into a JSON value, which takes up to about 18 times
/// its size in memory: a body of 32 MiB of `[0,0,...]` held 578 MB, and the repository's upload
/// limit (256 MiB by default) let one reader's request hold gigabytes.
const READER_BODY: usize = 1 << 20;

pub struct Hosted {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
    settings: HostedSettings,
    cache: packument::RenderCache,
    /// One writer per package on this node; other nodes are kept honest by the compare-and-swap.
    writers: KeyedLocks,
    /// Documents saved by a wharf that kept no search fields got them (see [`Hosted::backfill_search`]).
    search_backfilled: std::sync::atomic::AtomicBool,
}

/// Retries of a compare-and-swap that another node won: waited out with jittered backoff up
/// to [`CONTENTION_DEADLINE`], never answered as an error while there is time.
struct Contention {
    deadline: std::time::Instant,
    attempt: u32,
}

impl Contention {
    fn new() -> Contention {
        Contention { deadline: std::time::Instant::now() + CONTENTION_DEADLINE, attempt: 0 }
    }

    /// Waits before the next attempt; an error once the deadline has passed.
    async fn wait(&mut self, name: &str) -> Result<()> {
        if std::time::Instant::now() >= self.deadline {
            return Err(NpmError::Conflict(format!("{name} is being changed by others; try again")));
        }
        self.attempt += 1;
        tokio::time::sleep(backoff(self.attempt)).await;
        Ok(())
    }
}

#[async_trait(?Send)]
impl Repo for Hosted {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        match self.route(&ctx, &req, body).await {
            Ok(res) => res,
            Err(e) => e.to_response(),
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    async fn delete_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Vec<Asset>, DeleteError> {
        let removed = self.unpublish_version(&package_of(component), &component.version, assets, false).await.map_err(|e| DeleteError::Other(Box::new(e)))?;
        Ok(removed.unwrap_or_default())
    }

    async fn describe_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Value, wharf_format::DescribeError> {
        crate::describe::describe(&self.env, self.cfg.id, component, assets).await
    }

    async fn upload_component(&self, ctx: RepoCtx, upload: ComponentUpload) -> std::result::Result<ComponentKey, UploadError> {
        self.upload_tarball(&ctx, upload).await
    }

    /// What the dist-tags name, as clients see the document (a tag naming a version whose
    /// tarball is gone does not count: clients no longer get that version either).
    async fn pinned_versions(&self, component: &ComponentKey) -> std::result::Result<Vec<String>, DeleteError> {
        let Some((doc, _)) = self.packument(&package_of(component)).await.map_err(|e| DeleteError::Other(Box::new(e)))? else { return Ok(Vec::new()) };
        Ok(tagged(&doc.dist_tags()).map(str::to_string).collect())
    }

    async fn clean_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Vec<Asset>, DeleteError> {
        let name = package_of(component);
        match self.unpublish_version(&name, &component.version, assets, true).await {
            Ok(Some(removed)) => Ok(removed),
            Ok(None) => Err(DeleteError::Pinned(format!("{name}@{} (a dist-tag names it)", component.version))),
            Err(e) => Err(DeleteError::Other(Box::new(e))),
        }
    }
}

impl Hosted {
    pub fn new(cfg: Arc<RepoConfig>, env: FormatEnv) -> Hosted {
        let settings = HostedSettings::parse(cfg.attributes.get("npm")).unwrap_or_default();
        Hosted { cfg, env, settings, cache: Default::default(), writers: Default::default(), search_backfilled: Default::default() }
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
            Endpoint::Search if read => {
                authorize(ctx, Action::Read, "*")?;
                source::search_response(self, ctx).await
            }
            Endpoint::Audit(_) if m == Method::POST => {
                authorize(ctx, Action::Read, "*")?;
                Err(source::no_audit_source(ctx))
            }
            Endpoint::Package(name) if read => {
                authorize(ctx, Action::Read, &name)?;
                let (asset, files) = self.listing(&name).await?;
                let asset = asset.filter(|_| !files.is_empty()).ok_or(NpmError::NotFound)?;
                let state = state_of(&asset, &files);
                let size = asset.size as u64;
                packument::respond(req, &self.cache, &state, &base_url(ctx), size, || async { self.shown(&asset, files).await?.ok_or(NpmError::NotFound) })
                    .await
            }
            Endpoint::Version { name, version } if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, _) = self.packument(&name).await?.ok_or(NpmError::NotFound)?;
                source::version_response(&doc, &version, &base_url(ctx))
            }
            Endpoint::Tarball { name, file } if read => {
                authorize(ctx, Action::Read, &name)?;
                self.tarball(&name, &file, &Want::of(req)).await
            }
            Endpoint::DistTags(name) if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, _) = self.packument(&name).await?.ok_or(NpmError::NotFound)?;
                Ok(source::dist_tags_response(&doc))
            }
            Endpoint::Attestations { name, version } if read => {
                authorize(ctx, Action::Read, &name)?;
                self.attestations(&name, &version).await
            }
            Endpoint::Package(name) if m == Method::PUT => self.publish(ctx, &name, body).await,
            Endpoint::PackageRev { name, rev } if m == Method::PUT => self.update(ctx, &name, &rev, body).await,
            Endpoint::PackageRev { name, rev } if m == Method::DELETE => self.delete_package(ctx, &name, &rev).await,
            Endpoint::TarballRev { name, file } if m == Method::DELETE => self.delete_tarball(ctx, &name, &file).await,
            Endpoint::DistTag { name, tag } if m == Method::PUT || m == Method::DELETE => self.dist_tag(ctx, &name, &tag, m == Method::PUT, body).await,
            _ => Err(NpmError::MethodNotAllowed),
        }
    }

    /// The least a caller needs before a document body is read: some right on the package —
    /// read (a star) or write (a publish: an add-only user may publish what it cannot read) —
    /// and for an anonymous caller, who can star nothing, write rights.
    fn may_send_a_body(&self, ctx: &RepoCtx, name: &str) -> Result<()> {
        if ctx.principal.is_anonymous() {
            return self.writable(ctx, Action::Write, name);
        }
        authorize(ctx, Action::Write, name).or_else(|_| authorize(ctx, Action::Read, name))
    }

    fn writable(&self, ctx: &RepoCtx, action: Action, name: &str) -> Result<()> {
        authorize(ctx, action, name)?;
        if self.cfg.write_policy == WritePolicy::Deny {
            return Err(NpmError::Forbidden(format!("repository {} is read-only", self.cfg.name)));
        }
        Ok(())
    }

    /// The package's document asset and the tarball files present, in one query.
    async fn listing(&self, name: &str) -> Result<(Option<Asset>, HashSet<String>)> {
        let q = ListQuery { prefix: Some(meta::package_prefix(name)), ..Default::default() };
        let mut doc = None;
        let mut files = HashSet::new();
        for a in self.env.meta.list(self.cfg.id, q).await? {
            if a.kind == meta::PACKUMENT {
                doc = Some(a);
            } else if a.kind == meta::TARBALL {
                files.extend(a.path.rsplit('/').next().map(str::to_string));
            }
        }
        Ok((doc, files))
    }

    /// The stored document with versions whose tarball is gone (deleted through the
    /// components API) left out; `None` when no version is left.
    async fn shown(&self, asset: &Asset, files: HashSet<String>) -> Result<Option<Packument>> {
        Ok(store::packument(&self.env, asset).await?.with_files_present(files))
    }

    /// The document as clients see it, and a name for its state (for ETags and caching).
    async fn packument(&self, name: &str) -> Result<Option<(Packument, String)>> {
        let (asset, files) = self.listing(name).await?;
        let Some(asset) = asset else { return Ok(None) };
        let state = state_of(&asset, &files);
        Ok(self.shown(&asset, files).await?.map(|d| (d, state)))
    }

    async fn tarball(&self, name: &str, file: &str, want: &Want) -> Result<HttpResponse> {
        let asset = self.env.meta.get(self.cfg.id, &tarball_path(name, file)).await?.ok_or(NpmError::NotFound)?;
        let res = source::blob_response(&self.env, &asset, want).await?;
        if want.counts_as_download() {
            self.env.downloads.record(self.cfg.id, &asset.path);
        }
        Ok(res)
    }

    /// `GET /-/npm/v1/attestations/<name>@<version>`, as the public registry answers it.
    async fn attestations(&self, name: &str, version: &str) -> Result<HttpResponse> {
        let asset = self.env.meta.get(self.cfg.id, &meta::attestation_path(name, version)).await?.ok_or(NpmError::NotFound)?;
        let digest: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| NpmError::Internal(Box::new(e)))?;
        let bytes = self.env.blobs.read_small(&digest, provenance::MAX_BUNDLE as u64).await?;
        let bundle: Value = serde_json::from_slice(&bytes).map_err(|e| NpmError::Internal(Box::new(e)))?;
        let predicate_type = asset.attributes.get("predicateType").cloned().unwrap_or(Value::Null);
        Ok(HttpResponse::Ok().json(json!({ "attestations": [{ "predicateType": predicate_type, "bundle": bundle }] })))
    }

    /// Once per node: documents saved by a wharf that kept no search fields with them (found
    /// by name only) get them, each written back only while it is still the document read.
    async fn backfill_search(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.search_backfilled.load(Ordering::Relaxed) {
            return Ok(());
        }
        let repo = self.cfg.id;
        let q = ListQuery { kind: Some(meta::PACKUMENT.into()), ..Default::default() };
        for a in self.env.meta.list(repo, q).await?.into_iter().filter(|a| a.attributes.get("search").is_none() && a.attributes.is_object()) {
            let (Some(name), Some(digest)) = (a.component.clone(), a.digest.clone()) else { continue };
            let doc = match store::packument(&self.env, &a).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(repository = %self.cfg.name, package = %name, error = %e, "search fields not derived");
                    continue;
                }
            };
            let mut asset = NewAsset::from(a.clone());
            asset.attributes["search"] = doc.search_fields(&name);
            let check = Check::AbsentOrDigest { repo, path: a.path.clone(), digest };
            match self.env.meta.commit(vec![check, Check::Exists { repo, path: a.path.clone() }], vec![Write::Upsert { repo, asset }]).await {
                Ok(()) | Err(wharf_format::MetaError::CheckFailed(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.search_backfilled.store(true, Ordering::Relaxed);
        Ok(())
    }

    // ---- publish ----------------------------------------------------------------------------

    async fn publish(&self, ctx: &RepoCtx, name: &str, body: web::Payload) -> Result<HttpResponse> {
        // A star needs only read rights, so write rights are checked once the body says what it
        // is; no body is read (up to upload_max_bytes, staged on disk) from a caller who may not
        // even read the package, and an anonymous caller can star nothing.
        self.may_send_a_body(ctx, name)?;
        if !valid_name(name) {
            return Err(NpmError::BadRequest(format!("invalid package name {name:?}")));
        }
        if authorize(ctx, Action::Write, name).is_err() {
            // A reader can only star: a small document (see READER_BODY), as `update` reads
            // it. Read like a publish, up to 16 MiB of document were parsed whole first.
            let body = Doc::parse(&crate::user::small_body(body, READER_BODY).await?).map_err(|e| NpmError::BadRequest(format!("malformed JSON: {e}")))?;
            if body.get("name").and_then(Value::as_str).is_some_and(|n| n != name) {
                return Err(NpmError::BadRequest(format!("the document names {}, the URL {name}", body["name"])));
            }
            let rev = body.get("_rev").and_then(Value::as_str).unwrap_or_default().to_string();
            return self.update_doc(ctx, name, &rev, body, false).await;
        }
        let (body, staged, received) = self.receive(body).await?;
        if body.get("name").and_then(Value::as_str).is_some_and(|n| n != name) {
            return Err(NpmError::BadRequest(format!("the document names {}, the URL {name}", body["name"])));
        }
        // npm deprecate PUTs the whole document back without a tarball, npm star a document of
        // `users` only.
        if body.get("_attachments").and_then(Value::as_object).is_none_or(|a| a.is_empty()) {
            let rev = body.get("_rev").and_then(Value::as_str).unwrap_or_default().to_string();
            return self.update_doc(ctx, name, &rev, body, false).await;
        }
        self.writable(ctx, Action::Write, name)?;
        // Only a publish adds content; deprecations, dist-tags and unpublishes go on over the quota.
        self.env.usage.check_write(&self.cfg).await?;
        let (version, manifest) = match (body.version_count(), body.versions().next()) {
            (1, Some(v)) => (v.clone(), body.manifest(v).unwrap_or(Value::Null)),
            _ => return Err(NpmError::BadRequest("a publish carries exactly one version".into())),
        };
        let (version, manifest) = (&version, &manifest);
        if !valid_version(version) {
            return Err(NpmError::BadRequest(format!("invalid version {version:?}")));
        }
        if manifest.get("name").and_then(Value::as_str) != Some(name) || manifest.get("version").and_then(Value::as_str) != Some(version) {
            return Err(NpmError::BadRequest(format!("version {version}'s manifest does not name {name}@{version}")));
        }
        let attachments = body.get("_attachments").and_then(Value::as_object).cloned().unwrap_or_default();
        let (bundles, tarballs): (Vec<_>, Vec<_>) = attachments.iter().partition(|(f, _)| attachment::is_bundle_name(f));
        if tarballs.len() != 1 || bundles.len() > 1 {
            return Err(NpmError::BadRequest("a publish carries exactly one tarball in _attachments (and at most its .sigstore provenance bundle)".into()));
        }
        let attachment = tarballs[0].1;
        let bundle = bundles.first().map(|(f, a)| (f.as_str(), *a));
        if let Some((f, _)) = bundle {
            if f != provenance::attachment_name(name, version) {
                return Err(NpmError::BadRequest(format!("the provenance bundle is named {f}, not {}", provenance::attachment_name(name, version))));
            }
        }
        let received = received.ok_or_else(|| NpmError::BadRequest("the attachment has no data".into()))?;
        if attachment.get("length").and_then(Value::as_u64).is_some_and(|l| l != received.length) {
            return Err(NpmError::BadRequest(format!("the attachment is {} bytes, its length says {}", received.length, attachment["length"])));
        }
        let (sri, sha1) = (received.integrity, received.shasum);
        let integrity = manifest.pointer("/dist/integrity").and_then(Value::as_str);
        let shasum = manifest.pointer("/dist/shasum").and_then(Value::as_str);
        if integrity.is_none() && shasum.is_none() {
            return Err(NpmError::BadRequest("dist.integrity or dist.shasum is required".into()));
        }
        if integrity.is_some_and(|i| !model::integrity_matches(i, &sri, &sha1)) {
            return Err(NpmError::BadRequest(format!("dist.integrity {} does not match the tarball ({sri})", integrity.unwrap_or_default())));
        }
        if shasum.is_some_and(|s| !s.eq_ignore_ascii_case(&sha1)) {
            return Err(NpmError::BadRequest(format!("dist.shasum {} does not match the tarball ({sha1})", shasum.unwrap_or_default())));
        }
        let compressed = staged.size();
        let pkg = staged_package_json(&staged, false).await?.0;
        if pkg.get("name").and_then(Value::as_str) != Some(name) || pkg.get("version").and_then(Value::as_str) != Some(version) {
            return Err(NpmError::BadRequest(format!(
                "the tarball's package.json says {}@{}, the publish {name}@{version}",
                pkg.get("name").and_then(Value::as_str).unwrap_or("?"),
                pkg.get("version").and_then(Value::as_str).unwrap_or("?")
            )));
        }
        let provenance = match bundle {
            Some((_, a)) => {
                let sha512 = model::sri_hex(&sri).unwrap_or_default();
                Some(provenance::check(a, name, version, &sha512).map_err(NpmError::BadRequest)?)
            }
            None => None,
        };
        let size = compressed as i64;
        let digest = staged.publish().await?;
        let attestation = match &provenance {
            Some(p) => {
                let bytes = bytes::Bytes::from(p.bundle.clone().into_bytes());
                let size = bytes.len() as i64;
                let digest = self.env.blobs.put_bytes(bytes).await?;
                Some(NewAsset {
                    path: meta::attestation_path(name, version),
                    kind: meta::ATTESTATION.into(),
                    component: Some(name.to_string()),
                    digest: Some(digest.to_string()),
                    size,
                    content_type: Some(p.media_type.clone()),
                    link: None,
                    attributes: json!({ "version": version, "predicateType": p.predicate_type }),
                })
            }
            None => None,
        };
        let new = NewVersion { name, version, manifest, sent: &body, tags: Tags::Sent, digest, size, sri, sha1, provenance, attestation };
        self.commit_version(ctx, new).await?;
        Ok(HttpResponse::Ok().json(json!({"ok": true, "id": name, "success": true})))
    }

    /// `POST /service/rest/v1/components` with `npm.asset`: the tarball alone, so the name,
    /// version and manifest are its `package/package.json`'s, and the version goes into the
    /// document as a publish's does (same checks, compare-and-swap, duplicate rule and events).
    /// `latest` moves to it only if it is the highest version (a migration uploads old
    /// versions too; `npm publish` would move it to each).
    async fn upload_tarball(&self, ctx: &RepoCtx, upload: ComponentUpload) -> std::result::Result<ComponentKey, UploadError> {
        self.writable(ctx, Action::Write, "*")?;
        self.env.usage.check_write(&self.cfg).await.map_err(NpmError::from)?;
        let limit = self.settings.upload_max_bytes as u64;
        let UploadedFile { filename, staged } = upload.single_asset(&self.env.blobs, limit).await?;
        let invalid = |m: String| UploadError::invalid(ASSET_FIELD, format!("{filename}: {m}"));
        let (pkg, sums) = match staged_package_json(&staged, true).await {
            Ok(r) => r,
            Err(NpmError::BadRequest(m)) => return Err(invalid(m)),
            Err(e) => return Err(e.into()),
        };
        let (sri, sha1) = sums.expect("asked for checksums");
        let field = |k: &str| pkg.get(k).and_then(Value::as_str).unwrap_or_default();
        let (name, version) = (field("name"), field("version"));
        if !valid_name(name) {
            return Err(invalid(format!("its package.json names no valid package ({name:?})")));
        }
        if !valid_version(version) {
            return Err(invalid(format!("its package.json has no valid version ({version:?})")));
        }
        self.writable(ctx, Action::Write, name)?;
        self.env.usage.check_write(&self.cfg).await.map_err(NpmError::from)?;
        let size = staged.size() as i64;
        let digest = staged.publish().await.map_err(NpmError::from)?;
        let sent = Doc::from_value(pkg.clone());
        let new =
            NewVersion { name, version, manifest: &pkg, sent: &sent, tags: Tags::IfHighest, digest, size, sri, sha1, provenance: None, attestation: None };
        self.commit_version(ctx, new).await?;
        let key = ComponentKey { group: None, name: name.to_string(), version: version.to_string(), download_path: None };
        Ok(match name.split_once('/') {
            Some((scope, short)) => ComponentKey { group: Some(scope.to_string()), name: short.to_string(), ..key },
            None => key,
        })
    }

    /// Adds a checked version, its tarball already a blob, to the package's document with a
    /// compare-and-swap (retried while others change the document), and reports it.
    async fn commit_version(&self, ctx: &RepoCtx, new: NewVersion<'_>) -> Result<()> {
        let NewVersion { name, version, manifest, sent: body, tags, digest, size, sri, sha1, provenance, attestation } = new;
        let file = tarball_file(name, version);
        let repo = self.cfg.id;
        let email = self.env.identity.email_of(&ctx.principal).await;
        let _writer = self.writers.lock(name).await;
        let mut contention = Contention::new();
        loop {
            let mut cur = store::load(&self.env, repo, name).await?;
            let now = iso(now_millis());
            let mut doc = match cur.as_mut() {
                Some(c) => c.take_doc(),
                None => Doc::from_value(json!({"_id": name, "name": name, "dist-tags": {}, "versions": {}, "time": {"created": now}})),
            };
            if doc.has_version(version) && self.cfg.write_policy != WritePolicy::Allow {
                return Err(cannot_republish(name, version));
            }
            let mut m = manifest.clone();
            m["_id"] = json!(format!("{name}@{version}"));
            let mut dist = m.get("dist").and_then(Value::as_object).cloned().unwrap_or_default();
            dist.insert("integrity".into(), json!(sri));
            dist.insert("shasum".into(), json!(sha1));
            dist.insert("tarball".into(), json!(file));
            // Only a bundle checked here is announced (a URL relative to the registry: see
            // packument::render).
            dist.remove("attestations");
            if let Some(p) = &provenance {
                dist.insert(
                    "attestations".into(),
                    json!({ "url": format!("-/npm/v1/attestations/{name}@{version}"), "provenance": { "predicateType": p.predicate_type } }),
                );
            }
            m["dist"] = Value::Object(dist);
            if let Some(u) = &ctx.principal.user {
                let mut me = json!({"name": u});
                if let Some(e) = &email {
                    me["email"] = json!(e);
                }
                m["_npmUser"] = me.clone();
                if body.get("maintainers").is_none() && doc.get("maintainers").is_none() {
                    doc["maintainers"] = json!([me]);
                }
            }
            doc.insert_version(version, m);
            doc["time"][version] = json!(now);
            doc["time"]["modified"] = json!(now);
            for k in
                ["description", "readme", "readmeFilename", "maintainers", "keywords", "license", "repository", "homepage", "bugs", "author", "contributors"]
            {
                if let Some(v) = body.get(k) {
                    doc[k] = v.clone();
                }
            }
            match tags {
                Tags::Sent => {
                    for (tag, v) in body.get("dist-tags").and_then(Value::as_object).into_iter().flatten() {
                        if v.as_str().is_some_and(|v| doc.has_version(v)) {
                            doc["dist-tags"][tag] = v.clone();
                        }
                    }
                }
                Tags::IfHighest => {
                    if crate::version::fallback_latest(doc.versions().map(String::as_str)) == Some(version) {
                        doc["dist-tags"]["latest"] = json!(version);
                    }
                }
            }
            if doc["dist-tags"].get("latest").is_none() {
                doc["dist-tags"]["latest"] = json!(version);
            }
            let checks = match self.cfg.write_policy {
                WritePolicy::Allow => vec![],
                _ => vec![Check::Absent { repo, path: tarball_path(name, &file) }],
            };
            let asset = NewAsset {
                path: tarball_path(name, &file),
                kind: meta::TARBALL.into(),
                component: Some(name.to_string()),
                digest: Some(digest.to_string()),
                size,
                content_type: Some("application/octet-stream".into()),
                link: None,
                attributes: json!({
                    "version": version, "uploader": ctx.principal.user, "uploader_ip": ctx.client, "integrity": sri,
                    "checksum": { "sha1": sha1, "sha512": model::sri_hex(&sri) },
                }),
            };
            let mut writes = vec![Write::Upsert { repo, asset }];
            writes.push(match &attestation {
                Some(a) => Write::Upsert { repo, asset: a.clone() },
                // A version published again (writePolicy allow) without provenance has none.
                None => Write::Delete { repo, path: meta::attestation_path(name, version) },
            });
            match store::save(&self.env, repo, name, cur.as_ref(), doc, store::Along { checks, writes, room: wharf_format::Room::Document }).await? {
                Saved::Done => {
                    self.env.audit.record(AuditEvent::of(ctx, "npm.publish", format!("{name}@{version}")));
                    return Ok(());
                }
                Saved::Conflict => contention.wait(name).await?,
                Saved::CheckFailed(_) => return Err(cannot_republish(name, version)),
            }
        }
    }

    /// Reads a publish body as it arrives: the tarball is decoded into a staged upload (a blob
    /// only once the publish is accepted) and hashed on its way, the rest is parsed.
    async fn receive(&self, mut body: web::Payload) -> Result<(Doc, Staged<'_>, Option<attachment::Tarball>)> {
        let limit = self.settings.upload_max_bytes as u64;
        let mut scanner = attachment::Scanner::default();
        let mut seen = 0u64;
        let failure: Cell<Option<NpmError>> = Cell::new(None);
        let decoded = (&mut body).map(|chunk| {
            let fail = |e: NpmError| {
                let message = e.to_string();
                failure.set(Some(e));
                Err(message)
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return fail(NpmError::BadRequest(format!("request body: {e}"))),
            };
            seen += chunk.len() as u64;
            if seen > limit {
                return fail(NpmError::TooLarge(format!("the publish is larger than this repository's limit of {} MiB", limit >> 20)));
            }
            scanner.feed(&chunk).or_else(|e| fail(scan_error(e)))
        });
        // npm's checksums of the tarball, on threads of their own while it is staged (the
        // actix worker only decodes).
        let side = SideHashes::start(vec![Box::new(sha2::Sha512::default()), Box::new(sha1::Sha1::default())]);
        let staged = match self.env.blobs.stage_stream(side.tap(decoded)).await {
            Ok(s) => s,
            Err(e) => return Err(failure.take().unwrap_or_else(|| e.into())),
        };
        let digests = side.finish().await.map_err(|e| NpmError::Internal(Box::new(e)))?;
        let (doc, length) = scanner.finish().map_err(scan_error)?;
        let received = length.map(|n| attachment::Tarball::new(n, &digests[0], &digests[1]));
        let doc = Doc::parse(&doc).map_err(|e| NpmError::BadRequest(format!("malformed JSON: {e}")))?;
        Ok((doc, staged, received))
    }

    // ---- updates: deprecate, unpublish, star, owners, dist-tags -------------------------------

    /// `PUT /<name>/-rev/<rev>`: npm unpublish (the whole document, less the version) and
    /// npm owner add/rm (a document of `maintainers` only).
    async fn update(&self, ctx: &RepoCtx, name: &str, rev: &str, body: web::Payload) -> Result<HttpResponse> {
        self.may_send_a_body(ctx, name)?;
        let limit = if authorize(ctx, Action::Write, name).is_ok() { self.writer_body(name).await? } else { READER_BODY };
        // The bytes go once parsed: the document holds its manifests' text itself.
        let body = Doc::parse(&crate::user::small_body(body, limit).await?).map_err(|e| NpmError::BadRequest(format!("malformed JSON: {e}")))?;
        self.update_doc(ctx, name, rev, body, true).await
    }

    /// The largest document a writer may send back: npm sends the stored document less what
    /// it unpublishes, or with a message on each version it deprecates, so up to twice the
    /// stored one, and never less than a publish's document ([`attachment::MAX_DOCUMENT`]).
    /// The repository's upload limit (256 MiB by default), which applied before, let one
    /// writer's request hold gigabytes once parsed (see [`READER_BODY`]).
    async fn writer_body(&self, name: &str) -> Result<usize> {
        let stored = self.env.meta.get(self.cfg.id, &meta::package_path(name)).await?.map_or(0, |a| usize::try_from(a.size).unwrap_or(0));
        Ok(attachment::MAX_DOCUMENT.max(stored.saturating_mul(2)).min(self.settings.upload_max_bytes))
    }

    /// A document sent back, taken for what it is by what it carries (npm sends each of these
    /// as a partial CouchDB document): `versions` is the whole document (deprecate, and with
    /// `by_rev` unpublish of the versions left out), `maintainers` alone is npm owner, `users`
    /// alone is npm star. Nothing else in a body is taken, and a body without `versions` never
    /// touches a version.
    async fn update_doc(&self, ctx: &RepoCtx, name: &str, rev: &str, body: Doc, by_rev: bool) -> Result<HttpResponse> {
        if body.has_versions() {
            return self.update_versions(ctx, name, rev, &body, by_rev).await;
        }
        if let Some(m) = body.get("maintainers") {
            return self.update_maintainers(ctx, name, rev, m).await;
        }
        if let Some(users) = body.get("users").and_then(Value::as_object) {
            return self.star(ctx, name, users).await;
        }
        Err(NpmError::BadRequest("the document changes nothing: versions, maintainers or users are expected".into()))
    }

    /// This node's writer lock on the package: it spares this node's requests each other's
    /// compare-and-swap retries; the swap itself is what keeps writers apart, as it keeps this
    /// node apart from others. The storage lifecycle's threads (a cleanup unpublishing
    /// versions) do without it, as another node's writers do: held on a `SCHED_IDLE` thread
    /// while it loads, rewrites and saves the document, it would keep every publish of the
    /// package waiting for as long as busy CPUs keep that thread from running.
    async fn writer_lock(&self, name: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match wharf_format::ThreadClass::current() {
            wharf_format::ThreadClass::Normal => Some(self.writers.lock(name).await),
            wharf_format::ThreadClass::Nice | wharf_format::ThreadClass::Idle => None,
        }
    }

    /// Loads the document under this node's writer lock ([`Hosted::writer_lock`]), applies
    /// `change` and saves, retrying when another writer saved first. `change` answers `None`
    /// when there is nothing to write.
    async fn change_doc<F>(&self, name: &str, mut change: F) -> Result<Option<Vec<Write>>>
    where
        F: FnMut(&mut store::Stored) -> Result<Option<(Doc, Vec<Write>)>>,
    {
        let _writer = self.writer_lock(name).await;
        let mut contention = Contention::new();
        loop {
            let mut cur = store::load(&self.env, self.cfg.id, name).await?.ok_or(NpmError::NotFound)?;
            let before = cur.doc.version_count();
            let Some((mut doc, writes)) = change(&mut cur)? else { return Ok(None) };
            doc["time"]["modified"] = json!(iso(now_millis()));
            // A change that takes versions out (an unpublish, a cleanup) and leaves a smaller
            // document records a deletion: it may go further into the disk's reserve, which is
            // there for deletions.
            let freeing = doc.version_count() < before && doc.to_bytes().len() as i64 <= cur.asset.size;
            let room = if freeing { wharf_format::Room::Freeing } else { wharf_format::Room::Document };
            match store::save(&self.env, self.cfg.id, name, Some(&cur), doc, store::Along { checks: vec![], writes: writes.clone(), room }).await? {
                Saved::Done => return Ok(Some(writes)),
                _ => contention.wait(name).await?,
            }
        }
    }

    async fn update_versions(&self, ctx: &RepoCtx, name: &str, rev: &str, sent: &Doc, by_rev: bool) -> Result<HttpResponse> {
        self.writable(ctx, Action::Write, name)?;
        let repo = self.cfg.id;
        let mut removed: Vec<String> = Vec::new();
        let mut delete_checked = false;
        // The document that lost its last version here: the package goes, as with npm
        // unpublish of the last version (a document of no versions stayed, listed and found
        // by search, and its maintainers went on to the next publish of the name).
        let mut emptied: Option<String> = None;
        let outcome = self
            .change_doc(name, |cur| {
                emptied = None;
                if cur.rev() != rev {
                    return Err(NpmError::Conflict(format!("document update conflict: {name} is at revision {}, not {rev}", cur.rev())));
                }
                let mut doc = cur.take_doc();
                let mut writes = Vec::new();
                removed.clear();
                let stored_versions: Vec<String> = doc.versions().cloned().collect();
                if sent.versions().any(|v| !stored_versions.contains(v)) {
                    return Err(NpmError::BadRequest("new versions are published with npm publish, not by updating the document".into()));
                }
                for v in &stored_versions {
                    match sent.manifest(v) {
                        // Only npm unpublish (PUT /<name>/-rev/<rev>) removes a version it
                        // leaves out; deprecate sends the document to /<name>, where a version
                        // left out (one hidden because its tarball is gone) stays as it is.
                        None if by_rev => {
                            if !delete_checked {
                                self.writable(ctx, Action::Delete, name)?;
                                delete_checked = true;
                            }
                            writes.extend(remove_version(&mut doc, repo, name, v));
                            removed.push(v.clone());
                        }
                        None => {}
                        Some(m) => {
                            let wanted = match m.get("deprecated") {
                                Some(Value::String(msg)) if !msg.is_empty() => Some(json!(msg)),
                                _ => None,
                            };
                            // Only a manifest whose message changes becomes values again.
                            if doc.manifest(v).and_then(|s| s.get("deprecated").cloned()) != wanted {
                                if let Some(o) = doc.manifest_mut(v).and_then(Value::as_object_mut) {
                                    match wanted {
                                        Some(msg) => drop(o.insert("deprecated".into(), msg)),
                                        None => drop(o.remove("deprecated")),
                                    }
                                }
                            }
                        }
                    }
                }
                if !removed.is_empty() && doc.version_count() == 0 {
                    emptied = Some(cur.digest().to_string());
                    return Ok(None);
                }
                if let Some(tags) = sent.get("dist-tags").and_then(Value::as_object) {
                    doc["dist-tags"] = Value::Object(tags.clone());
                }
                retain_tags(&mut doc);
                Ok(Some((doc, writes)))
            })
            .await?;
        if let Some(digest) = emptied {
            if !self.remove_package(name, Some(&digest)).await? {
                return Err(NpmError::Conflict(format!("document update conflict: {name} changed meanwhile")));
            }
            for v in &removed {
                self.env.audit.record(AuditEvent::of(ctx, "npm.unpublish", format!("{name}@{v}")));
            }
            return Ok(HttpResponse::Created().json(json!({"ok": true, "id": name})));
        }
        if outcome.is_some() {
            for v in &removed {
                self.env.audit.record(AuditEvent::of(ctx, "npm.unpublish", format!("{name}@{v}")));
            }
            if removed.is_empty() {
                self.env.audit.record(AuditEvent::of(ctx, "npm.update", name));
            }
        }
        Ok(HttpResponse::Created().json(json!({"ok": true, "id": name})))
    }

    /// npm owner add/rm. wharf decides who may publish by roles, not by this list: it is
    /// what `npm owner ls` shows.
    async fn update_maintainers(&self, ctx: &RepoCtx, name: &str, rev: &str, sent: &Value) -> Result<HttpResponse> {
        self.writable(ctx, Action::Write, name)?;
        let list = sent.as_array().ok_or_else(|| NpmError::BadRequest("maintainers is a list of {\"name\", \"email\"}".into()))?;
        if list.is_empty() {
            return Err(NpmError::BadRequest("a package keeps at least one maintainer".into()));
        }
        let mut maintainers = Vec::new();
        for m in list {
            let user = m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty() && n.len() <= 214);
            let Some(user) = user else { return Err(NpmError::BadRequest("each maintainer has a name".into())) };
            let mut entry = json!({ "name": user });
            if let Some(email) = m.get("email").and_then(Value::as_str) {
                entry["email"] = json!(email);
            }
            maintainers.push(entry);
        }
        self.change_doc(name, |cur| {
            if cur.rev() != rev {
                return Err(NpmError::Conflict(format!("document update conflict: {name} is at revision {}, not {rev}", cur.rev())));
            }
            let mut doc = cur.take_doc();
            doc["maintainers"] = Value::Array(maintainers.clone());
            Ok(Some((doc, vec![])))
        })
        .await?;
        let mut event = AuditEvent::of(ctx, "npm.owner", name);
        event.detail = json!({ "maintainers": maintainers.iter().map(|m| m["name"].clone()).collect::<Vec<_>>() });
        self.env.audit.record(event);
        Ok(HttpResponse::Created().json(json!({"ok": true, "id": name})))
    }

    /// npm star / unstar: the caller's own entry in `users`, whatever else the body says.
    async fn star(&self, ctx: &RepoCtx, name: &str, users: &Map<String, Value>) -> Result<HttpResponse> {
        authorize(ctx, Action::Read, name)?;
        let user = ctx.principal.user.clone().ok_or(NpmError::Unauthorized)?;
        let starred = users.get(&user).is_some_and(|v| v == &Value::Bool(true));
        self.change_doc(name, |cur| {
            let has = cur.doc.get("users").and_then(|u| u.get(&user)).is_some();
            if has == starred {
                return Ok(None);
            }
            let mut doc = cur.take_doc();
            if !doc.get("users").is_some_and(Value::is_object) {
                doc["users"] = json!({});
            }
            let entries = doc["users"].as_object_mut().expect("an object");
            if starred {
                entries.insert(user.clone(), json!(true));
            } else {
                entries.remove(&user);
            }
            Ok(Some((doc, vec![])))
        })
        .await?;
        Ok(HttpResponse::Created().json(json!({"ok": true, "id": name})))
    }

    /// `DELETE /<name>/-rev/<rev>`: the package as the caller saw it at `rev`, or 409 (a
    /// version published since the caller read the document would go with it unseen).
    async fn delete_package(&self, ctx: &RepoCtx, name: &str, rev: &str) -> Result<HttpResponse> {
        self.writable(ctx, Action::Delete, name)?;
        match store::load(&self.env, self.cfg.id, name).await? {
            Some(cur) => {
                if cur.rev() != rev {
                    return Err(NpmError::Conflict(format!("document update conflict: {name} is at revision {}, not {rev}", cur.rev())));
                }
                if !self.remove_package(name, Some(cur.digest())).await? {
                    return Err(NpmError::Conflict(format!("document update conflict: {name} changed meanwhile")));
                }
            }
            // Tarballs without a document (left by an older wharf): they go, as before.
            None => {
                self.remove_package(name, None).await?;
            }
        }
        self.env.audit.record(AuditEvent::of(ctx, "npm.unpublish", name));
        Ok(HttpResponse::Ok().json(json!({"ok": true})))
    }

    /// Deletes the package's document and every tarball; with `only_if`, only while the
    /// document is still the one with that digest (`false` if it changed: someone published).
    async fn remove_package(&self, name: &str, only_if: Option<&str>) -> Result<bool> {
        let repo = self.cfg.id;
        let _writer = self.writer_lock(name).await;
        let mut contention = Contention::new();
        loop {
            // The tarballs listed are all there are only while the document is the one read: a
            // publish in between would leave a tarball behind that blocks its version for good.
            let (doc, _) = self.listing(name).await?;
            if let Some(expected) = only_if {
                if doc.as_ref().and_then(|d| d.digest.as_deref()) != Some(expected) {
                    return Ok(false);
                }
            }
            let q = ListQuery { prefix: Some(tarballs_prefix(name)), ..Default::default() };
            let mut writes: Vec<Write> = self.env.meta.list(repo, q).await?.into_iter().map(|a| Write::Delete { repo, path: a.path }).collect();
            let path = meta::package_path(name);
            writes.push(Write::Delete { repo, path: path.clone() });
            let check = match doc.and_then(|d| d.digest) {
                Some(digest) => Check::AbsentOrDigest { repo, path, digest },
                None => Check::Absent { repo, path },
            };
            match self.env.meta.commit(vec![check], writes).await {
                Ok(()) => return Ok(true),
                Err(wharf_format::MetaError::CheckFailed(_)) if only_if.is_some() => return Ok(false),
                Err(wharf_format::MetaError::CheckFailed(_)) => contention.wait(name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes one version as `npm unpublish <name>@<version>` does, through the same
    /// compare-and-swap: out of the document with its tarball, dist-tags naming it dropped and
    /// `latest` moved to the highest version left ([`crate::version::fallback_latest`]); the
    /// last version takes the package with it. Returns the assets removed; `None` when
    /// `keep_tagged` and a dist-tag names the version in the document the swap would replace
    /// (a cleanup never takes what clients get without naming a version).
    async fn unpublish_version(&self, name: &str, version: &str, assets: &[Asset], keep_tagged: bool) -> Result<Option<Vec<Asset>>> {
        let repo = self.cfg.id;
        // The document that had this as its last version: the package goes only while it is
        // still that one (a version published meanwhile must not go with it).
        let mut last: Option<String> = None;
        let mut pinned = false;
        loop {
            let changed = self
                .change_doc(name, |cur| {
                    let mut doc = cur.take_doc();
                    last = None;
                    if !doc.has_version(version) {
                        return Ok(None);
                    }
                    pinned = keep_tagged && tagged(&doc["dist-tags"]).any(|v| v == version);
                    if pinned {
                        return Ok(None);
                    }
                    let writes = remove_version(&mut doc, repo, name, version);
                    let left: Vec<String> = doc.versions().cloned().collect();
                    if left.is_empty() {
                        last = Some(cur.digest().to_string());
                        return Ok(None);
                    }
                    if doc["dist-tags"].get("latest").and_then(Value::as_str) == Some(version) {
                        if let Some(v) = crate::version::fallback_latest(left.iter().map(String::as_str)) {
                            doc["dist-tags"]["latest"] = json!(v);
                        }
                    }
                    retain_tags(&mut doc);
                    Ok(Some((doc, writes)))
                })
                .await;
            return match changed {
                Ok(Some(_)) => Ok(Some(assets.to_vec())),
                Ok(None) if pinned => Ok(None),
                Ok(None) if last.is_some() => {
                    if !self.remove_package(name, last.as_deref()).await? {
                        // Published meanwhile: this version goes on its own.
                        continue;
                    }
                    Ok(Some(assets.to_vec()))
                }
                // Not (or no longer) in the document: only its tarball is left to remove.
                Ok(None) | Err(NpmError::NotFound) => {
                    let what = format!("{name}@{version}");
                    wharf_format::lifecycle::delete_assets(&*self.env.meta, repo, &what, assets).await.map(Some).map_err(delete_error)
                }
                Err(e) => Err(e),
            };
        }
    }

    async fn delete_tarball(&self, ctx: &RepoCtx, name: &str, file: &str) -> Result<HttpResponse> {
        self.writable(ctx, Action::Delete, name)?;
        let repo = self.cfg.id;
        self.env.meta.commit(vec![], vec![Write::Delete { repo, path: tarball_path(name, file) }]).await?;
        Ok(HttpResponse::Ok().json(json!({"ok": true})))
    }

    async fn dist_tag(&self, ctx: &RepoCtx, name: &str, tag: &str, set: bool, body: web::Payload) -> Result<HttpResponse> {
        self.writable(ctx, Action::Write, name)?;
        let version = if set {
            let v = crate::user::small_json(body, 4096).await?;
            Some(v.as_str().ok_or_else(|| NpmError::BadRequest("the body is a JSON string: the version".into()))?.to_string())
        } else {
            None
        };
        if !set && tag == "latest" {
            return Err(NpmError::BadRequest("the latest tag cannot be removed".into()));
        }
        if valid_version(tag) {
            return Err(NpmError::BadRequest(format!("{tag} looks like a version; tags cannot")));
        }
        self.change_doc(name, |cur| {
            let mut doc = cur.take_doc();
            match &version {
                Some(v) if !doc.has_version(v) => return Err(NpmError::BadRequest(format!("{name} has no version {v}"))),
                Some(v) => doc["dist-tags"][tag] = json!(v),
                None => {
                    if let Some(t) = doc["dist-tags"].as_object_mut() {
                        t.remove(tag);
                    }
                }
            }
            Ok(Some((doc, vec![])))
        })
        .await?;
        let mut event = AuditEvent::of(ctx, "npm.dist-tag", name);
        event.detail = json!({ "tag": tag, "version": version });
        self.env.audit.record(event);
        Ok(HttpResponse::Ok().json(json!({"ok": true})))
    }
}

/// The components API's form field for the tarball (Nexus's name).
const ASSET_FIELD: &str = "npm.asset";

/// A version checked, its tarball published, ready to go into the package's document: from
/// npm publish, or from the components API (then the manifest is the tarball's package.json).
struct NewVersion<'a> {
    name: &'a str,
    version: &'a str,
    manifest: &'a Value,
    /// What the package-level fields (description, maintainers, keywords, ...) and, with
    /// [`Tags::Sent`], the dist-tags come from.
    sent: &'a Doc,
    tags: Tags,
    digest: Digest,
    size: i64,
    /// `sha512-<base64>` and hex sha1 of the tarball.
    sri: String,
    sha1: String,
    provenance: Option<provenance::Provenance>,
    attestation: Option<NewAsset>,
}

/// Where the dist-tags go when a version is added.
enum Tags {
    /// As the publish says (npm publish sends `latest`, or its `--tag`).
    Sent,
    /// `latest` moves to the new version only if it is the highest (see
    /// [`crate::version::fallback_latest`]).
    IfHighest,
}

/// The staged tarball's package.json and, if asked, its sha512 (SRI) and sha1, in one pass
/// off the worker thread. A refused tarball is a `BadRequest` saying why.
async fn staged_package_json(staged: &Staged<'_>, checksums: bool) -> Result<(Value, Option<(String, String)>)> {
    let (path, compressed) = (staged.path().to_path_buf(), staged.size());
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<std::result::Result<_, tarball::TarballError>> {
        let file = std::fs::File::open(&path)?;
        let pkg = match tarball::package_json(std::io::BufReader::new(file), compressed) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let sums = if checksums { Some(tarball::checksums_of(&path)?) } else { None };
        Ok(Ok((pkg, sums)))
    })
    .await
    .map_err(|e| NpmError::Internal(Box::new(e)))?
    .map_err(|e| NpmError::Internal(Box::new(e)))?;
    read.map_err(|e| NpmError::BadRequest(e.to_string()))
}

fn scan_error(e: attachment::ScanError) -> NpmError {
    match e {
        attachment::ScanError::DocumentTooLarge => NpmError::TooLarge(e.to_string()),
        e => NpmError::BadRequest(e.to_string()),
    }
}

/// The stored document and the tarballs present, as one name.
fn state_of(asset: &Asset, files: &HashSet<String>) -> String {
    let mut names: Vec<&String> = files.iter().collect();
    names.sort();
    let mut key = asset.digest.clone().unwrap_or_default();
    for n in names {
        key.push('|');
        key.push_str(n);
    }
    Digest::of(key.as_bytes()).hex().to_string()
}

fn cannot_republish(name: &str, version: &str) -> NpmError {
    NpmError::Forbidden(format!("cannot publish over the previously published version {name}@{version}"))
}

/// Takes `version` out of the document; the writes delete its tarball.
fn remove_version(doc: &mut Doc, repo: i64, name: &str, version: &str) -> Vec<Write> {
    let mut writes = Vec::new();
    if let Some(file) = doc.manifest(version).as_ref().and_then(|m| m.pointer("/dist/tarball")).and_then(Value::as_str) {
        writes.push(Write::Delete { repo, path: tarball_path(name, packument::tarball_file(file)) });
    }
    writes.push(Write::Delete { repo, path: meta::attestation_path(name, version) });
    doc.remove_version(version);
    if let Some(t) = doc["time"].as_object_mut() {
        t.remove(version);
    }
    writes
}

fn delete_error(e: wharf_format::DeleteError) -> NpmError {
    match e {
        wharf_format::DeleteError::Meta(m) => m.into(),
        other => NpmError::Internal(Box::new(other)),
    }
}

/// The package a component names (`@scope` is its group).
pub(crate) fn package_of(component: &ComponentKey) -> String {
    match &component.group {
        Some(scope) => format!("{scope}/{}", component.name),
        None => component.name.clone(),
    }
}

/// The versions `tags` (dist-tags) name.
fn tagged(tags: &Value) -> impl Iterator<Item = &str> {
    tags.as_object().into_iter().flat_map(|t| t.values()).filter_map(Value::as_str)
}

/// Drops dist-tags that point at versions the document no longer has; `latest` falls back to
/// the most recently published version left.
fn retain_tags(doc: &mut Doc) {
    let versions: std::collections::BTreeSet<String> = doc.versions().cloned().collect();
    let tags: Map<String, Value> = doc["dist-tags"].as_object().cloned().unwrap_or_default();
    let time = |v: &str| doc["time"].get(v).and_then(Value::as_str).unwrap_or_default().to_string();
    doc["dist-tags"] = Value::Object(packument::retained_tags(tags, &versions, time));
}

#[async_trait(?Send)]
impl Source for Hosted {
    async fn doc(&self, name: &str) -> Result<Option<(Packument, String)>> {
        self.packument(name).await
    }

    async fn names(&self) -> Result<Vec<String>> {
        let q = ListQuery { kind: Some(meta::PACKUMENT.into()), ..Default::default() };
        Ok(self.env.meta.list(self.cfg.id, q).await?.into_iter().filter_map(|a| a.component).collect())
    }

    async fn packuments(&self, contains: Vec<String>) -> Result<Vec<Asset>> {
        self.backfill_search().await?;
        source::packuments(&self.env, self.cfg.id, contains).await
    }

    async fn serve_tarball(&self, name: &str, file: &str, want: &Want) -> Result<HttpResponse> {
        self.tarball(name, file, want).await
    }

    /// The package is there when its document is and a tarball is (the document shows only
    /// versions whose tarball is there); `file` is listed when its row is.
    async fn has_tarball(&self, name: &str, file: &str) -> Result<Option<bool>> {
        let repo = self.cfg.id;
        if self.env.meta.get(repo, &meta::package_path(name)).await?.is_none_or(|a| a.kind != meta::PACKUMENT) {
            return Ok(None);
        }
        if self.env.meta.get(repo, &tarball_path(name, file)).await?.is_some_and(|a| a.kind == meta::TARBALL) {
            return Ok(Some(true));
        }
        let q = ListQuery { kind: Some(meta::TARBALL.into()), prefix: Some(meta::tarballs_prefix(name)), limit: Some(1), ..Default::default() };
        Ok((!self.env.meta.list(repo, q).await?.is_empty()).then_some(false))
    }

    async fn serve_attestations(&self, name: &str, version: &str) -> Result<HttpResponse> {
        self.attestations(name, version).await
    }

    fn accepts_publishes(&self) -> bool {
        self.cfg.write_policy != WritePolicy::Deny
    }
}
