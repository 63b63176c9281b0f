//! A hosted PyPI repository: twine uploads, the Simple API for pip and uv, file downloads.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_format::{now_millis, Action, Check, Denied, Digest, FormatEnv, ListQuery, MetaError, Mount, NewAsset, Repo, RepoConfig, RepoCtx, Write, WritePolicy};

use crate::archive;
use crate::error::PypiError;
use crate::meta::{self, file_path, files_prefix, project_path};
use crate::model::{self, check_filename, html_escape, negotiate, normalize, valid_project_name, Representation, FileKind};
use crate::routes::{self, Endpoint};

type Result<T, E = PypiError> = std::result::Result<T, E>;

/// Text fields of an upload form (summary, description, ...) may hold this much each.
const MAX_FIELD: usize = 1 << 20;

pub struct Hosted {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
}

#[async_trait(?Send)]
impl Repo for Hosted {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        match self.route(&ctx, &req, body).await {
            Ok(res) => res,
            Err(e) => e.to_response(),
        }
    }
}

impl Hosted {
    pub fn new(cfg: Arc<RepoConfig>, env: FormatEnv) -> Hosted {
        Hosted { cfg, env }
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(PypiError::NotFound)?;
        let m = req.method();
        let read = m == Method::GET || m == Method::HEAD;
        match endpoint {
            Endpoint::Upload if m == Method::POST => self.upload(ctx, req, body).await,
            Endpoint::Index if read => self.index(ctx, req).await,
            Endpoint::Project(p) if read => self.project(ctx, req, &p).await,
            Endpoint::File { project, filename } if read => self.download(ctx, &project, &filename, m == Method::HEAD).await,
            _ => Err(PypiError::MethodNotAllowed),
        }
    }

    fn authorize(&self, ctx: &RepoCtx, action: Action, object: &str) -> Result<()> {
        match ctx.check(action, object) {
            Ok(()) => Ok(()),
            Err(Denied::Unauthenticated) => Err(PypiError::Unauthorized),
            Err(Denied::Forbidden) => Err(PypiError::Forbidden(format!("{action:?} access to {} is denied", self.cfg.name).to_lowercase())),
        }
    }

    /// The repository's base URL as the client reached it.
    fn base_url(&self, ctx: &RepoCtx) -> String {
        match &ctx.mount {
            Mount::Prefix { prefix } => format!("{}{prefix}", ctx.origin),
            _ => format!("{}/repository/{}", ctx.origin, self.cfg.name),
        }
    }

    // ---- upload ------------------------------------------------------------------------------

    async fn upload(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Write, "*")?;
        if self.cfg.write_policy == WritePolicy::Deny {
            return Err(PypiError::Forbidden(format!("repository {} is read-only", self.cfg.name)));
        }
        let mut form = actix_multipart::Multipart::new(req.headers(), body);
        let mut fields: HashMap<String, String> = HashMap::new();
        let mut file: Option<(String, Digest, u64)> = None;
        while let Some(field) = form.next().await {
            let mut field = field.map_err(|e| PypiError::BadRequest(format!("malformed upload form: {e}")))?;
            let name = field.name().unwrap_or_default().to_string();
            if name == "content" {
                let filename = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename().map(str::to_string))
                    .ok_or_else(|| PypiError::BadRequest("the content field has no file name".into()))?;
                if file.is_some() {
                    return Err(PypiError::BadRequest("one file per upload".into()));
                }
                // Stored content-addressed now; only the metadata commit below makes it visible.
                let (digest, size) = self.env.blobs.put_stream(&mut field, None).await?;
                file = Some((filename, digest, size));
            } else {
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| PypiError::BadRequest(format!("malformed upload form: {e}")))?;
                    if value.len() + chunk.len() > MAX_FIELD {
                        return Err(PypiError::BadRequest(format!("form field {name} is too large")));
                    }
                    value.extend_from_slice(&chunk);
                }
                fields.insert(name, String::from_utf8_lossy(&value).into_owned());
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
        let (filename, digest, size) = file.ok_or_else(|| PypiError::BadRequest("no file was uploaded (content field)".into()))?;
        let kind = check_filename(&filename, name, version).map_err(PypiError::BadRequest)?;
        if let Some(expected) = field("sha256_digest") {
            if !expected.eq_ignore_ascii_case(digest.hex()) {
                return Err(PypiError::BadRequest(format!("sha256_digest {expected} does not match the uploaded file ({})", digest.hex())));
            }
        }
        if let Some(expected) = field("md5_digest") {
            let path = self.env.blobs.local_path(&digest);
            let actual = tokio::task::spawn_blocking(move || md5_of(&path))
                .await
                .map_err(|e| PypiError::Internal(Box::new(e)))?
                .map_err(|e| PypiError::Internal(Box::new(e)))?;
            if !expected.eq_ignore_ascii_case(&actual) {
                return Err(PypiError::BadRequest(format!("md5_digest {expected} does not match the uploaded file ({actual})")));
            }
        }
        if let Some(ft) = field("filetype") {
            if ft != kind.packagetype() {
                return Err(PypiError::BadRequest(format!("filetype {ft} does not match {filename}")));
            }
        }
        let normalized = normalize(name);
        self.authorize(ctx, Action::Write, &normalized)?;
        let core_metadata = self.core_metadata(&filename, &digest, kind, &normalized, version).await?;
        let repo = self.cfg.id;
        let path = file_path(&normalized, &filename);
        let checks = match self.cfg.write_policy {
            WritePolicy::AllowOnce => vec![Check::Absent { repo, path: path.clone() }],
            _ => vec![],
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
                "requires_python": field("requires_python"),
                "upload_time": now_millis(),
                "uploader": ctx.principal.user,
                "yanked": null,
                "core_metadata": core_metadata,
            }),
        };
        let project = NewAsset {
            path: project_path(&normalized),
            kind: meta::PROJECT.into(),
            component: Some(normalized.clone()),
            attributes: json!({ "name": name }),
            ..Default::default()
        };
        match self.env.meta.commit(checks, vec![Write::InsertIfAbsent { repo, asset: project }, Write::Upsert { repo, asset }]).await {
            Ok(()) => {}
            Err(MetaError::CheckFailed(_)) => return Err(PypiError::FileExists(filename)),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(repository = %self.cfg.name, project = %normalized, %filename, "uploaded");
        Ok(HttpResponse::Ok().content_type("text/plain").body("OK\n"))
    }

    /// Reads the file's core metadata (PEP 658) under limits, checks it names this project and
    /// version, stores it, and returns its sha256 (hex); `None` when the file has none to serve.
    async fn core_metadata(&self, filename: &str, digest: &Digest, kind: FileKind, normalized: &str, version: &str) -> Result<Option<String>> {
        let path = self.env.blobs.local_path(digest);
        let read = tokio::task::spawn_blocking(move || archive::core_metadata(&path, kind))
            .await
            .map_err(|e| PypiError::Internal(Box::new(e)))?
            .map_err(|e| PypiError::BadRequest(format!("{filename}: {e}")))?;
        let Some(bytes) = read else { return Ok(None) };
        let text = String::from_utf8_lossy(&bytes);
        let meta_name = archive::field(&text, "Name").map(normalize);
        let meta_version = archive::field(&text, "Version");
        if meta_name.as_deref() != Some(normalized) || meta_version != Some(version) {
            return Err(PypiError::BadRequest(format!(
                "{filename}: its metadata names {} {}, the upload {normalized} {version}",
                meta_name.unwrap_or_default(),
                meta_version.unwrap_or_default()
            )));
        }
        let d = self.env.blobs.put_bytes(Bytes::from(bytes)).await?;
        Ok(Some(d.hex().to_string()))
    }

    // ---- simple API --------------------------------------------------------------------------

    async fn index(&self, ctx: &RepoCtx, req: &HttpRequest) -> Result<HttpResponse> {
        self.authorize(ctx, Action::Read, "*")?;
        let q = ListQuery { kind: Some(meta::PROJECT.into()), prefix: Some("_project/".into()), ..Default::default() };
        let rows = self.env.meta.list(self.cfg.id, q).await?;
        let projects: Vec<(String, String)> = rows
            .into_iter()
            .filter_map(|a| {
                let norm = a.component?;
                let display = a.attributes.get("name").and_then(Value::as_str).unwrap_or(&norm).to_string();
                Some((norm, display))
            })
            .collect();
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
        Ok(match negotiate(accept) {
            Representation::Json => json_response(json!({
                "meta": {"api-version": "1.1"},
                "projects": projects.iter().map(|(_, d)| json!({"name": d})).collect::<Vec<_>>(),
            })),
            Representation::Html => {
                let base = self.base_url(ctx);
                let mut html = String::from("<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Simple index</title></head>\n<body>\n");
                for (norm, display) in &projects {
                    html.push_str(&format!("<a href=\"{base}/simple/{}/\">{}</a><br/>\n", html_escape(norm), html_escape(display)));
                }
                html.push_str("</body>\n</html>\n");
                html_response(html, accept)
            }
        })
    }

    async fn project(&self, ctx: &RepoCtx, req: &HttpRequest, project: &str) -> Result<HttpResponse> {
        let normalized = normalize(project);
        self.authorize(ctx, Action::Read, &normalized)?;
        let q = ListQuery {
            kind: Some(meta::FILE.into()),
            component: Some(normalized.clone()),
            prefix: Some(files_prefix(&normalized)),
            ..Default::default()
        };
        let files = self.env.meta.list(self.cfg.id, q).await?;
        if files.is_empty() {
            return Err(PypiError::NotFound);
        }
        let base = self.base_url(ctx);
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let entries: Vec<FileEntry> = files
            .iter()
            .map(|a| {
                let filename = a.path.rsplit('/').next().unwrap_or_default().to_string();
                let hex = a.digest.as_deref().unwrap_or_default().trim_start_matches("sha256:").to_string();
                let attr = |k: &str| a.attributes.get(k).and_then(Value::as_str).map(str::to_string);
                FileEntry {
                    url: format!("{base}/packages/{normalized}/{filename}"),
                    filename,
                    sha256: hex,
                    requires_python: attr("requires_python"),
                    yanked: match a.attributes.get("yanked") {
                        Some(Value::String(reason)) => Some(reason.clone()),
                        Some(Value::Bool(true)) => Some(String::new()),
                        _ => None,
                    },
                    size: a.size,
                    upload_time: a.attributes.get("upload_time").and_then(Value::as_i64).unwrap_or(a.created_at),
                    version: attr("version").unwrap_or_default(),
                    core_metadata: attr("core_metadata"),
                }
            })
            .collect();
        Ok(match negotiate(accept) {
            Representation::Json => {
                let versions: BTreeSet<&str> = entries.iter().map(|e| e.version.as_str()).collect();
                json_response(json!({
                    "meta": {"api-version": "1.1"},
                    "name": normalized,
                    "versions": versions,
                    "files": entries.iter().map(|e| json!({
                        "filename": e.filename,
                        "url": e.url,
                        "hashes": {"sha256": e.sha256},
                        "requires-python": e.requires_python,
                        "yanked": match &e.yanked { Some(r) if !r.is_empty() => json!(r), Some(_) => json!(true), None => json!(false) },
                        "size": e.size,
                        "upload-time": wharf_format::rfc3339_millis(e.upload_time),
                        "core-metadata": e.core_metadata.as_ref().map_or(json!(false), |h| json!({"sha256": h})),
                        "dist-info-metadata": e.core_metadata.as_ref().map_or(json!(false), |h| json!({"sha256": h})),
                    })).collect::<Vec<_>>(),
                }))
            }
            Representation::Html => {
                let mut html = format!(
                    "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Links for {0}</title></head>\n<body>\n<h1>Links for {0}</h1>\n",
                    html_escape(&normalized)
                );
                for e in &entries {
                    html.push_str(&format!("<a href=\"{}#sha256={}\"", html_escape(&e.url), e.sha256));
                    if let Some(rp) = &e.requires_python {
                        html.push_str(&format!(" data-requires-python=\"{}\"", html_escape(rp)));
                    }
                    if let Some(h) = &e.core_metadata {
                        // PEP 714's name, and PEP 658's for clients that predate it.
                        html.push_str(&format!(" data-core-metadata=\"sha256={h}\" data-dist-info-metadata=\"sha256={h}\""));
                    }
                    if let Some(reason) = &e.yanked {
                        html.push_str(&format!(" data-yanked=\"{}\"", html_escape(reason)));
                    }
                    html.push_str(&format!(">{}</a><br/>\n", html_escape(&e.filename)));
                }
                html.push_str("</body>\n</html>\n");
                html_response(html, accept)
            }
        })
    }

    // ---- files -------------------------------------------------------------------------------

    async fn download(&self, ctx: &RepoCtx, project: &str, filename: &str, head: bool) -> Result<HttpResponse> {
        let normalized = normalize(project);
        self.authorize(ctx, Action::Read, &normalized)?;
        // PEP 658: `<file URL>.metadata` is the file's core metadata.
        if let Some(dist) = filename.strip_suffix(".metadata") {
            let asset = self.env.meta.get(self.cfg.id, &file_path(&normalized, dist)).await?.ok_or(PypiError::NotFound)?;
            let hex = asset.attributes.get("core_metadata").and_then(Value::as_str).ok_or(PypiError::NotFound)?;
            let digest: Digest = format!("sha256:{hex}").parse().map_err(|e| PypiError::Internal(Box::new(e)))?;
            let bytes = self.env.blobs.read_small(&digest, archive::MAX_METADATA).await?;
            return Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(if head { Bytes::new() } else { bytes }));
        }
        let asset = self.env.meta.get(self.cfg.id, &file_path(&normalized, filename)).await?.ok_or(PypiError::NotFound)?;
        let digest: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| PypiError::Internal(Box::new(e)))?;
        let mut res = HttpResponse::Ok();
        res.content_type(asset.content_type.clone().unwrap_or_else(|| FileKind::Wheel.content_type().into()))
            .insert_header((header::ETAG, format!("\"{}\"", digest.hex())))
            .insert_header((header::CACHE_CONTROL, "max-age=31536000, immutable"));
        if head {
            return Ok(res.body(SizedStream::new(asset.size as u64, futures::stream::empty::<Result<Bytes, std::io::Error>>())));
        }
        let read = self.env.blobs.get(&digest, None).await?;
        Ok(res.body(SizedStream::new(read.total, read.body)))
    }
}

/// MD5 of a stored file, for twine's `md5_digest` (a checksum here, not a security measure:
/// `sha256_digest` is the one that counts).
fn md5_of(path: &std::path::Path) -> std::io::Result<String> {
    use md5::Digest as _;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

struct FileEntry {
    filename: String,
    url: String,
    sha256: String,
    requires_python: Option<String>,
    yanked: Option<String>,
    size: i64,
    upload_time: i64,
    version: String,
    core_metadata: Option<String>,
}

fn json_response(v: Value) -> HttpResponse {
    HttpResponse::Ok().content_type(model::JSON_TYPE).insert_header((header::VARY, "Accept")).body(v.to_string())
}

fn html_response(html: String, accept: Option<&str>) -> HttpResponse {
    let ct = if accept.is_some_and(|a| a.contains(model::HTML_TYPE)) { model::HTML_TYPE } else { "text/html; charset=utf-8" };
    HttpResponse::Ok().content_type(ct).insert_header((header::VARY, "Accept")).body(html)
}
