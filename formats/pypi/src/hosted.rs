//! A hosted PyPI repository: twine uploads, the Simple API for pip and uv, file downloads.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_format::{
    now_millis, Action, Asset, AuditEvent, Check, ComponentKey, ComponentUpload, DeleteError, FormatEnv, ListQuery, MetaError, Mount, NewAsset, Repo,
    RepoConfig, RepoCtx, SideHashes, Staged, UploadError, UploadedFile, Want, Write, WritePolicy,
};

use crate::archive;
use crate::attestation::{self, AttestationError};
use crate::config::HostedSettings;
use crate::error::PypiError;
use crate::index::{self, FileEntry};
use crate::meta::{self, file_path, files_prefix, metadata_path, project_path, provenance_path};
use crate::model::{check_filename, normalize, valid_project_name, FileKind};
use crate::routes::{self, Endpoint};
use crate::source::{self, Result, Source};

/// Text fields of an upload form may hold this much each: names, versions, digests,
/// classifiers and dependency specifiers are short.
const MAX_FIELD: usize = 64 << 10;
/// `description` carries the long description (a whole README).
const MAX_DESCRIPTION: usize = 4 << 20;
/// Fields per upload: twine sends one per classifier and per dependency, a few hundred at most.
const MAX_FIELDS: usize = 1000;
/// All text fields together.
const MAX_FORM_TEXT: usize = 16 << 20;
/// The fields an upload is checked against; the others (description, classifiers, ...) are
/// read, bounded and dropped: the file's own metadata is what is served.
const KEPT_FIELDS: &[&str] = &[":action", "name", "version", "sha256_digest", "md5_digest", "filetype", "requires_python", "summary", "blake2_256_digest"];
/// A summary is one line (core metadata's rule); what is kept of a longer one.
const MAX_SUMMARY: usize = 512;
/// The components API's form field for the file (Nexus's name).
const ASSET_FIELD: &str = "pypi.asset";

pub struct Hosted {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
    settings: HostedSettings,
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
        delete_release(&self.env, self.cfg.id, component, assets, true).await
    }

    async fn describe_component(&self, component: &ComponentKey, assets: &[Asset]) -> std::result::Result<Value, wharf_format::DescribeError> {
        crate::describe::describe(&*self.env.meta, &self.env.blobs, self.cfg.id, component, assets).await
    }

    async fn upload_component(&self, ctx: RepoCtx, upload: ComponentUpload) -> std::result::Result<ComponentKey, UploadError> {
        self.upload_asset(&ctx, upload).await
    }
}

/// A distribution file checked and staged, ready to be stored: from a twine upload (its form
/// fields checked against the file) or from the components API (the file's own metadata).
struct NewFile<'a> {
    /// The project's name as the upload spells it.
    name: &'a str,
    version: &'a str,
    filename: &'a str,
    kind: FileKind,
    staged: Staged<'a>,
    requires_python: Option<&'a str>,
    summary: Option<&'a str>,
    /// Digests other than sha256 that were checked (twine's md5 and blake2).
    checksum: serde_json::Map<String, Value>,
    /// The core metadata to serve (PEP 658), checked to name this project and version.
    core_metadata: Option<Vec<u8>>,
    /// PEP 740 attestations, checked against the file.
    attestations: Option<Vec<Value>>,
}

/// Deletes a release's files with their PEP 658 metadata and PEP 740 provenance, and (`marker`, hosted) the project's
/// marker once its last file is gone, so that the index no longer lists an empty project.
pub(crate) async fn delete_release(
    env: &FormatEnv,
    repo: i64,
    component: &ComponentKey,
    assets: &[Asset],
    marker: bool,
) -> std::result::Result<Vec<Asset>, DeleteError> {
    let files: Vec<&Asset> = assets.iter().filter(|a| a.kind == meta::FILE).collect();
    let mut doomed: Vec<Asset> = files.iter().map(|a| (*a).clone()).collect();
    for f in &files {
        for suffix in [".metadata", ".provenance"] {
            if let Some(m) = env.meta.get(repo, &format!("{}{suffix}", f.path)).await? {
                doomed.push(m);
            }
        }
    }
    let what = format!("{} {}", component.name, component.version);
    let deleted = wharf_format::lifecycle::delete_assets(&*env.meta, repo, &what, &doomed).await?;
    let Some(project) = files.first().and_then(|f| f.component.clone()) else { return Ok(deleted) };
    if marker {
        // Checked in the transaction: an upload that lands meanwhile keeps (or re-adds) it.
        let checks = vec![Check::NoneUnder { repo, prefix: files_prefix(&project) }];
        match env.meta.commit(checks, vec![Write::Delete { repo, path: project_path(&project) }]).await {
            Ok(()) | Err(MetaError::CheckFailed(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

impl Hosted {
    pub fn new(cfg: Arc<RepoConfig>, env: FormatEnv) -> Hosted {
        let settings = HostedSettings::parse(cfg.attributes.get("pypi")).unwrap_or_default();
        Hosted { cfg, env, settings }
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(PypiError::NotFound)?;
        let m = req.method();
        let read = wharf_format::reads(m);
        match endpoint {
            Endpoint::Upload if m == Method::POST => self.upload(ctx, req, body).await,
            Endpoint::Index if read => self.index(ctx, req).await,
            Endpoint::Project(p) if read => self.project(ctx, req, &p).await,
            Endpoint::File { project, filename } if read => self.download(ctx, &project, &filename, &Want::of(req)).await,
            Endpoint::Provenance { project, version, filename } if read => {
                let normalized = normalize(&project);
                self.authorize(ctx, Action::Read, &normalized)?;
                self.provenance(&normalized, &version, &filename).await
            }
            Endpoint::Json { project, version } if read => {
                let normalized = normalize(&project);
                self.authorize(ctx, Action::Read, &normalized)?;
                crate::json_api::answer(self, &base_url(ctx, &self.cfg.name), &normalized, version.as_deref()).await
            }
            _ => Err(PypiError::MethodNotAllowed),
        }
    }

    fn authorize(&self, ctx: &RepoCtx, action: Action, object: &str) -> Result<()> {
        source::authorize(ctx, action, object)
    }

    // ---- upload ------------------------------------------------------------------------------

    /// What every upload checks before its file is read: write rights, the write policy, the
    /// quota (checked again before the file is published).
    async fn may_upload(&self, ctx: &RepoCtx) -> Result<()> {
        self.authorize(ctx, Action::Write, "*")?;
        if self.cfg.write_policy == WritePolicy::Deny {
            return Err(PypiError::Forbidden(format!("repository {} is read-only", self.cfg.name)));
        }
        self.env.usage.check_write(&self.cfg).await?;
        Ok(())
    }

    async fn upload(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        self.may_upload(ctx).await?;
        let mut form = actix_multipart::Multipart::new(req.headers(), body);
        let mut fields: HashMap<String, String> = HashMap::new();
        // The file's name, the file staged, and the other digests (hex, by field name) that
        // were computed on its way in.
        type Received<'a> = (String, Staged<'a>, HashMap<&'static str, String>);
        let mut file: Option<Received<'_>> = None;
        let mut attestations: Option<Vec<u8>> = None;
        let (mut count, mut text) = (0usize, 0usize);
        while let Some(field) = form.next().await {
            let mut field = field.map_err(|e| PypiError::BadRequest(format!("malformed upload form: {e}")))?;
            count += 1;
            if count > MAX_FIELDS {
                return Err(PypiError::BadRequest(format!("the upload form has more than {MAX_FIELDS} fields")));
            }
            let name = field.name().unwrap_or_default().to_string();
            if name == "content" {
                let filename = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename().map(str::to_string))
                    .ok_or_else(|| PypiError::BadRequest("the content field has no file name".into()))?;
                if file.is_some() {
                    return Err(PypiError::BadRequest("one file per upload".into()));
                }
                // Staged, not yet a blob: it is published only once every check below passed.
                // twine sends its MD5 and BLAKE2b-256 before the file: they are computed while
                // the file arrives. A client that sends them after it gets a second pass below.
                let limit = self.settings.upload_max_bytes;
                let sent: Vec<&'static str> = OTHER_DIGESTS.into_iter().filter(|k| fields.get(*k).is_some_and(|v| !v.trim().is_empty())).collect();
                let side = SideHashes::start(sent.iter().map(|k| other_hasher(k)).collect());
                let staged = match self.env.blobs.stage_limited(side.tap(&mut field), limit).await {
                    Ok(r) => r,
                    Err(wharf_format::BlobError::TooLarge { .. }) => {
                        return Err(PypiError::TooLarge(format!("{filename} is larger than this repository's limit of {} MiB", limit >> 20)))
                    }
                    Err(e) => return Err(e.into()),
                };
                let side = side.finish().await.map_err(|e| PypiError::Internal(Box::new(e)))?;
                file = Some((filename, staged, sent.into_iter().zip(side.iter().map(hex::encode)).collect()));
            } else if name == "attestations" {
                // PEP 740 (twine --attestations): a JSON array, checked once the file's digest is known.
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| PypiError::BadRequest(format!("malformed upload form: {e}")))?;
                    if value.len() + chunk.len() > attestation::MAX_FIELD {
                        return Err(AttestationError::TooLarge.into());
                    }
                    value.extend_from_slice(&chunk);
                }
                attestations = Some(value);
            } else {
                let max = if name == "description" { MAX_DESCRIPTION } else { MAX_FIELD };
                let keep = KEPT_FIELDS.contains(&name.as_str());
                let mut value = Vec::new();
                let mut len = 0usize;
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| PypiError::BadRequest(format!("malformed upload form: {e}")))?;
                    len += chunk.len();
                    text += chunk.len();
                    if len > max {
                        return Err(PypiError::BadRequest(format!("form field {name} is larger than {} KiB", max >> 10)));
                    }
                    if text > MAX_FORM_TEXT {
                        return Err(PypiError::BadRequest(format!("the upload form's text fields are larger than {} MiB", MAX_FORM_TEXT >> 20)));
                    }
                    if keep {
                        value.extend_from_slice(&chunk);
                    }
                }
                if keep {
                    fields.insert(name, String::from_utf8_lossy(&value).into_owned());
                }
            }
        }
        let field = |k: &str| fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        if field(":action") != Some("file_upload") {
            return Err(PypiError::BadRequest(format!("unsupported :action {:?}", field(":action").unwrap_or(""))));
        }
        let name = field("name").ok_or_else(|| PypiError::BadRequest("the name field is required".into()))?;
        let version = field("version").ok_or_else(|| PypiError::BadRequest("the version field is required".into()))?;
        if !valid_project_name(name) {
            return Err(PypiError::BadRequest(format!("invalid project name {name:?}")));
        }
        let (filename, staged, side_digests) = file.ok_or_else(|| PypiError::BadRequest("no file was uploaded (content field)".into()))?;
        let digest = staged.digest().clone();
        let kind = check_filename(&filename, name, version).map_err(PypiError::BadRequest)?;
        let attestations = attestations.map(|raw| attestation::check(&raw, &filename, digest.hex())).transpose()?;
        if let Some(expected) = field("sha256_digest") {
            if !expected.eq_ignore_ascii_case(digest.hex()) {
                return Err(PypiError::BadRequest(format!("sha256_digest {expected} does not match the uploaded file ({})", digest.hex())));
            }
        }
        // The other digests a client sent are checked, then kept: the component detail shows
        // every checksum it can vouch for. Computed as the file arrived, or else in one more
        // pass over the staged file, only if asked.
        let (want_md5, want_blake2) = (field("md5_digest"), field("blake2_256_digest"));
        let mut checksum = serde_json::Map::new();
        if want_md5.is_some() || want_blake2.is_some() {
            let (md5, blake2) = match (side_digests.get("md5_digest"), side_digests.get("blake2_256_digest")) {
                (md5, blake2) if (md5.is_some() || want_md5.is_none()) && (blake2.is_some() || want_blake2.is_none()) => {
                    (md5.cloned().unwrap_or_default(), blake2.cloned().unwrap_or_default())
                }
                _ => {
                    let path = staged.path().to_path_buf();
                    tokio::task::spawn_blocking(move || other_digests(&path))
                        .await
                        .map_err(|e| PypiError::Internal(Box::new(e)))?
                        .map_err(|e| PypiError::Internal(Box::new(e)))?
                }
            };
            for (name, expected, actual, key) in [("md5_digest", want_md5, md5, "md5"), ("blake2_256_digest", want_blake2, blake2, "blake2b_256")] {
                let Some(expected) = expected else { continue };
                if !expected.eq_ignore_ascii_case(&actual) {
                    return Err(PypiError::BadRequest(format!("{name} {expected} does not match the uploaded file ({actual})")));
                }
                checksum.insert(key.into(), json!(actual));
            }
        }
        if let Some(ft) = field("filetype") {
            if ft != kind.packagetype() {
                return Err(PypiError::BadRequest(format!("filetype {ft} does not match {filename}")));
            }
        }
        let normalized = normalize(name);
        self.authorize(ctx, Action::Write, &normalized)?;
        let core_metadata = self.core_metadata(&filename, staged.path(), kind, &normalized, version).await?;
        let file = NewFile {
            name,
            version,
            filename: &filename,
            kind,
            staged,
            requires_python: field("requires_python"),
            summary: field("summary"),
            checksum,
            core_metadata,
            attestations,
        };
        self.commit_file(ctx, file).await?;
        Ok(HttpResponse::Ok().content_type("text/plain").body("OK\n"))
    }

    /// `POST /service/rest/v1/components` with `pypi.asset`: no form fields, so the project and
    /// version are the file's own metadata's (a wheel's METADATA, an sdist's PKG-INFO), and the
    /// file's name must agree with them; then it is stored as a twine upload is.
    async fn upload_asset(&self, ctx: &RepoCtx, upload: ComponentUpload) -> std::result::Result<ComponentKey, UploadError> {
        self.may_upload(ctx).await?;
        let UploadedFile { filename, staged } = upload.single_asset(&self.env.blobs, self.settings.upload_max_bytes).await?;
        let invalid = |m: String| UploadError::invalid(ASSET_FIELD, m);
        let Some((kind, _)) = FileKind::of(&filename) else {
            return Err(invalid(format!("{filename}: only wheels (.whl) and source distributions (.tar.gz, .zip) are accepted")));
        };
        let path = staged.path().to_path_buf();
        let read = tokio::task::spawn_blocking(move || archive::metadata(&path, kind)).await.map_err(|e| UploadError::Internal(Box::new(e)))?;
        let raw = read.map_err(|e| invalid(format!("{filename}: {e}")))?.ok_or_else(|| {
            let member = if kind == FileKind::Wheel { "*.dist-info/METADATA" } else { "PKG-INFO" };
            invalid(format!("{filename} has no core metadata ({member})"))
        })?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let meta = |k: &str| archive::field(&text, k).filter(|v| !v.is_empty());
        let name = meta("Name").ok_or_else(|| invalid(format!("{filename}: its metadata has no Name")))?;
        let version = meta("Version").ok_or_else(|| invalid(format!("{filename}: its metadata has no Version")))?;
        if !valid_project_name(name) {
            return Err(invalid(format!("{filename}: invalid project name {name:?}")));
        }
        check_filename(&filename, name, version).map_err(invalid)?;
        let normalized = normalize(name);
        self.authorize(ctx, Action::Write, &normalized)?;
        let file = NewFile {
            name,
            version,
            filename: &filename,
            kind,
            staged,
            requires_python: meta("Requires-Python"),
            summary: meta("Summary"),
            checksum: serde_json::Map::new(),
            core_metadata: archive::servable(kind, raw),
            attestations: None,
        };
        self.commit_file(ctx, file).await?;
        Ok(ComponentKey { group: None, name: normalized, version: version.to_string(), download_path: None })
    }

    /// Stores a checked file: refused if the write policy keeps the one already there, or over
    /// the quota; else published with its metadata and the project marker in one commit, and
    /// reported (audit; webhooks hear of the commit).
    async fn commit_file(&self, ctx: &RepoCtx, file: NewFile<'_>) -> Result<()> {
        let NewFile { name, version, filename, kind, staged, requires_python, summary, checksum, core_metadata, attestations } = file;
        let filename = filename.to_string();
        let (digest, size) = (staged.digest().clone(), staged.size());
        let normalized = normalize(name);
        let repo = self.cfg.id;
        let path = file_path(&normalized, &filename);
        let checks = match self.cfg.write_policy {
            WritePolicy::AllowOnce => vec![Check::Absent { repo, path: path.clone() }],
            _ => vec![],
        };
        if !checks.is_empty() {
            // Refused before anything is published; the commit's check below closes the race.
            if self.env.meta.get(repo, &path).await?.is_some() {
                return Err(PypiError::FileExists(filename));
            }
            // Nor under another spelling of the same file of the release (`FOO-1.0.tar.gz`,
            // `foo-1.0.zip` or `foo-1.0.0.tar.gz` beside `foo-1.0.tar.gz`): a client choosing
            // between them may take the new bytes, which is what keeping the first one is for.
            if let Some(slot) = crate::model::release_slot(&filename) {
                let q = ListQuery { kind: Some(meta::FILE.into()), prefix: Some(files_prefix(&normalized)), ..Default::default() };
                let taken = self.env.meta.list(repo, q).await?.into_iter().find_map(|a| {
                    let existing = a.path.rsplit('/').next()?.to_string();
                    (crate::model::release_slot(&existing).as_ref() == Some(&slot)).then_some(existing)
                });
                if let Some(existing) = taken {
                    return Err(PypiError::FileExists(format!("{filename} is the same file of this release as {existing}")));
                }
            }
        }
        // The file took its time to arrive: uploads that finished meanwhile count (see
        // `wharf_format::quota`). Refused here, the staged file goes with `staged`.
        self.env.usage.check_write(&self.cfg).await?;
        staged.publish().await?;
        // The metadata is a blob of its own, named by an asset of its own (what refers to a
        // blob is always an asset's digest: garbage collection reads nothing else).
        let mut metadata_asset = None;
        let core_metadata = match core_metadata {
            Some(bytes) => {
                let size = bytes.len() as i64;
                let d = self.env.blobs.put_bytes(Bytes::from(bytes)).await?;
                metadata_asset = Some(NewAsset {
                    path: metadata_path(&normalized, &filename),
                    kind: meta::METADATA.into(),
                    component: Some(normalized.clone()),
                    digest: Some(d.to_string()),
                    size,
                    content_type: Some("text/plain".into()),
                    link: None,
                    attributes: json!({ "version": version }),
                });
                Some(d.hex().to_string())
            }
            None => None,
        };
        // The provenance object is built here, once: the Integrity API serves the blob as is.
        let provenance = match attestations {
            Some(list) => {
                let count = list.len();
                let bytes = serde_json::to_vec(&attestation::provenance(list)).map_err(|e| PypiError::Internal(Box::new(e)))?;
                let size = bytes.len() as i64;
                let d = self.env.blobs.put_bytes(Bytes::from(bytes)).await?;
                Some((d, size, count))
            }
            None => None,
        };
        let provenance_write = match &provenance {
            Some((d, size, _)) => Write::Upsert {
                repo,
                asset: NewAsset {
                    path: provenance_path(&normalized, &filename),
                    kind: meta::PROVENANCE.into(),
                    component: Some(normalized.clone()),
                    digest: Some(d.to_string()),
                    size: *size,
                    content_type: Some(attestation::INTEGRITY_TYPE.into()),
                    link: None,
                    attributes: json!({ "version": version }),
                },
            },
            // A file uploaded again without attestations must not keep the old file's.
            None => Write::Delete { repo, path: provenance_path(&normalized, &filename) },
        };
        let asset = NewAsset {
            path,
            kind: meta::FILE.into(),
            component: Some(normalized.clone()),
            digest: Some(digest.to_string()),
            size: size as i64,
            content_type: Some(kind.content_type().into()),
            link: None,
            attributes: json!({
                "name": name,
                "version": version,
                "filetype": kind.packagetype(),
                "requires_python": requires_python,
                "upload_time": now_millis(),
                "summary": summary.map(|s| wharf_format::describe::cut(s, MAX_SUMMARY).0),
                "uploader": ctx.principal.user,
                "uploader_ip": ctx.client,
                "checksum": checksum,
                "yanked": null,
                "core_metadata": core_metadata,
                "provenance": provenance.as_ref().map(|(d, _, _)| d.hex()),
            }),
        };
        let project = NewAsset {
            path: project_path(&normalized),
            kind: meta::PROJECT.into(),
            component: Some(normalized.clone()),
            attributes: json!({ "name": name }),
            ..Default::default()
        };
        let mut writes = vec![Write::InsertIfAbsent { repo, asset: project }, Write::Upsert { repo, asset }];
        writes.extend(metadata_asset.map(|asset| Write::Upsert { repo, asset }));
        writes.push(provenance_write);
        match self.env.meta.commit(checks, writes).await {
            Ok(()) => {}
            Err(MetaError::CheckFailed(_)) => return Err(PypiError::FileExists(filename)),
            Err(e) => return Err(e.into()),
        }
        let mut event = AuditEvent::of(ctx, "pypi.upload", filename.clone());
        event.detail = json!({ "project": normalized, "version": version, "sha256": digest.hex(), "attestations": provenance.map_or(0, |(_, _, n)| n) });
        self.env.audit.record(event);
        Ok(())
    }

    /// Reads the file's metadata under limits and checks it names this project and version,
    /// whatever its metadata version (a file without, or with an old one, was stored unchecked
    /// under whatever name the form gave); the core metadata to serve (PEP 658), if it is one.
    async fn core_metadata(&self, filename: &str, path: &std::path::Path, kind: FileKind, normalized: &str, version: &str) -> Result<Option<Vec<u8>>> {
        let path = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || archive::metadata(&path, kind))
            .await
            .map_err(|e| PypiError::Internal(Box::new(e)))?
            .map_err(|e| PypiError::BadRequest(format!("{filename}: {e}")))?;
        let Some(bytes) = read else {
            let wanted = if kind == FileKind::Wheel { "a *.dist-info/METADATA" } else { "a PKG-INFO" };
            return Err(PypiError::BadRequest(format!("{filename}: has no metadata ({wanted} naming its project and version)")));
        };
        let text = String::from_utf8_lossy(&bytes);
        let meta_name = archive::field(&text, "Name").map(normalize);
        let meta_version = archive::field(&text, "Version");
        if meta_name.as_deref() != Some(normalized) || !meta_version.is_some_and(|v| crate::model::same_version(v, version)) {
            return Err(PypiError::BadRequest(format!(
                "{filename}: its metadata names {} {}, the upload {normalized} {version}",
                meta_name.unwrap_or_default(),
                meta_version.unwrap_or_default()
            )));
        }
        Ok(archive::servable(kind, bytes))
    }

    // ---- simple API and files ------------------------------------------------------------

    async fn index(&self, ctx: &RepoCtx, req: &HttpRequest) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Read, "*")?;
        let projects = self.projects().await?;
        Ok(index::index_page(req, &base_url(ctx, &self.cfg.name), &projects))
    }

    async fn project(&self, ctx: &RepoCtx, req: &HttpRequest, project: &str) -> Result<HttpResponse> {
        let normalized = normalize(project);
        self.authorize(ctx, Action::Read, &normalized)?;
        let files = self.files(&normalized).await?.ok_or(PypiError::NotFound)?;
        Ok(index::project_page(req, &base_url(ctx, &self.cfg.name), &normalized, &files))
    }

    async fn download(&self, ctx: &RepoCtx, project: &str, filename: &str, want: &Want) -> Result<HttpResponse> {
        let normalized = normalize(project);
        self.authorize(ctx, Action::Read, &normalized)?;
        self.serve(&normalized, filename, want).await
    }
}

#[async_trait(?Send)]
impl Source for Hosted {
    async fn files(&self, normalized: &str) -> Result<Option<Vec<FileEntry>>> {
        let q =
            ListQuery { kind: Some(meta::FILE.into()), component: Some(normalized.to_string()), prefix: Some(files_prefix(normalized)), ..Default::default() };
        let files = self.env.meta.list(self.cfg.id, q).await?;
        Ok(if files.is_empty() { None } else { Some(files.iter().map(source::entry_of).collect()) })
    }

    async fn has_file(&self, normalized: &str, filename: &str) -> Result<Option<bool>> {
        if self.env.meta.get(self.cfg.id, &file_path(normalized, filename)).await?.is_some_and(|a| a.kind == meta::FILE) {
            return Ok(Some(true));
        }
        let q = ListQuery {
            kind: Some(meta::FILE.into()),
            component: Some(normalized.to_string()),
            prefix: Some(files_prefix(normalized)),
            limit: Some(1),
            ..Default::default()
        };
        Ok((!self.env.meta.list(self.cfg.id, q).await?.is_empty()).then_some(false))
    }

    async fn projects(&self) -> Result<Vec<(String, String)>> {
        let q = ListQuery { kind: Some(meta::PROJECT.into()), prefix: Some("_project/".into()), ..Default::default() };
        let rows = self.env.meta.list(self.cfg.id, q).await?;
        Ok(rows
            .into_iter()
            .filter_map(|a| {
                let norm = a.component?;
                let display = a.attributes.get("name").and_then(Value::as_str).unwrap_or(&norm).to_string();
                Some((norm, display))
            })
            .collect())
    }

    async fn serve(&self, normalized: &str, filename: &str, want: &Want) -> Result<HttpResponse> {
        // PEP 658: `<file URL>.metadata` is the file's core metadata.
        if let Some(dist) = filename.strip_suffix(".metadata") {
            let asset = self.env.meta.get(self.cfg.id, &file_path(normalized, dist)).await?.ok_or(PypiError::NotFound)?;
            let hex = asset.attributes.get("core_metadata").and_then(Value::as_str).ok_or(PypiError::NotFound)?;
            return source::metadata_response(&self.env.blobs, hex).await;
        }
        // Only a file: its `.metadata` and `.provenance` assets live beside it, under its name.
        let asset = self.env.meta.get(self.cfg.id, &file_path(normalized, filename)).await?.filter(|a| a.kind == meta::FILE).ok_or(PypiError::NotFound)?;
        let res = source::file_response(&self.env.blobs, &asset, want).await?;
        if want.counts_as_download() {
            self.env.downloads.record(self.cfg.id, &asset.path);
        }
        Ok(res)
    }

    async fn provenance(&self, normalized: &str, version: &str, filename: &str) -> Result<HttpResponse> {
        let asset = self.env.meta.get(self.cfg.id, &file_path(normalized, filename)).await?.filter(|a| a.kind == meta::FILE).ok_or(PypiError::NotFound)?;
        if asset.attributes.get("version").and_then(Value::as_str) != Some(version) {
            return Err(PypiError::NotFound);
        }
        let hex = asset.attributes.get("provenance").and_then(Value::as_str).ok_or(PypiError::NotFound)?;
        let digest = format!("sha256:{hex}").parse().map_err(|e| PypiError::Internal(Box::new(e)))?;
        let bytes = self.env.blobs.read_small(&digest, attestation::MAX_PROVENANCE).await?;
        Ok(source::provenance_response(bytes))
    }
}

pub fn accept(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// The repository's base URL as the client reached it.
pub fn base_url(ctx: &RepoCtx, name: &str) -> String {
    match &ctx.mount {
        Mount::Prefix { prefix } => format!("{}{prefix}", ctx.origin),
        _ => format!("{}/repository/{name}", ctx.origin),
    }
}

/// The form fields of the digests a client may send besides `sha256_digest`.
const OTHER_DIGESTS: [&str; 2] = ["md5_digest", "blake2_256_digest"];

fn other_hasher(field: &str) -> Box<dyn wharf_format::SideHasher> {
    match field {
        "md5_digest" => Box::new(md5::Md5::default()),
        _ => Box::new(blake2::Blake2b256::default()),
    }
}

/// MD5 and BLAKE2b-256 of a stored file, for twine's `md5_digest` and `blake2_256_digest`
/// (checksums here, not security measures: `sha256_digest` is the one that counts).
fn other_digests(path: &std::path::Path) -> std::io::Result<(String, String)> {
    use md5::Digest as _;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut md5 = md5::Md5::new();
    let mut blake2 = blake2::Blake2b256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        blake2.update(&buf[..n]);
    }
    Ok((hex::encode(md5.finalize()), hex::encode(blake2.finalize())))
}
