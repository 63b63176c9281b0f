//! Nexus's components API (`/service/rest/v1/components`): a repository's content grouped the
//! way its format says (`Format::component_of`), listed, fetched, uploaded (by the format,
//! `Repo::upload_component`) and deleted; plus wharf's yank endpoint for formats that know
//! yanking (PyPI, PEP 592).

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use wharf_format::{Action, Asset, ComponentKey, ComponentUpload, ConfigError, DeleteError, MetaStore, Mount, NewAsset, RepoCtx, UploadError, Write};

use super::{parse_json, require_admin, require_reader, AdminError};
use crate::http::mount::{client, origin};
use crate::state::AppState;

const PAGE: usize = 100;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A component's id: its repository, full name (with the group: an npm scope) and version. Ids
/// made before the group was in them are the same for every component without one.
pub(crate) fn component_id(repo: &str, key: &ComponentKey) -> String {
    B64.encode(format!("{repo}\n{}\n{}", key.full_name(), key.version))
}

fn parse_id(id: &str) -> Option<(String, String, String)> {
    let raw = String::from_utf8(B64.decode(id).ok()?).ok()?;
    let mut parts = raw.splitn(3, '\n');
    Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
}

pub(crate) fn render(repo: &wharf_format::RepoRef, key: &ComponentKey, assets: &[Asset], format: &dyn wharf_format::Format, origin: &str) -> Value {
    let name = &repo.config.name;
    json!({
        "id": component_id(name, key),
        "repository": name,
        "format": repo.config.format,
        "group": key.group,
        "name": key.name,
        "version": key.version,
        "assets": assets.iter().map(|a| render_asset(repo, a, format, origin)).collect::<Vec<_>>(),
    })
}

pub(crate) fn asset_id(repo: &str, path: &str) -> String {
    B64.encode(format!("{repo}\n{path}"))
}

/// `(repository, path)` of an asset id.
pub(crate) fn parse_asset_id(id: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(B64.decode(id).ok()?).ok()?;
    let (repo, path) = raw.split_once('\n')?;
    Some((repo.to_string(), path.to_string()))
}

/// One asset in Nexus's shape (`/assets`, `/search/assets`, and within a component).
pub(crate) fn render_asset(repo: &wharf_format::RepoRef, a: &Asset, format: &dyn wharf_format::Format, origin: &str) -> Value {
    let name = &repo.config.name;
    let download = format.component_of(a).and_then(|k| k.download_path).map(|p| format!("{origin}/repository/{name}/{p}"));
    json!({
        "id": asset_id(name, &a.path),
        "path": a.path,
        "downloadUrl": download,
        "repository": name,
        "format": repo.config.format,
        "checksum": checksums(a),
        "contentType": a.content_type,
        "fileSize": a.size,
        "lastModified": a.updated_at,
        "blobCreated": a.created_at,
        "lastDownloaded": a.last_downloaded.map(wharf_format::rfc3339_millis),
        "downloadCount": a.download_count,
        "uploader": a.attributes.get("uploader"),
        "uploaderIp": a.attributes.get("uploader_ip"),
        "attributes": a.attributes,
    })
}

/// Every checksum the asset's row holds: its digest (sha256), and what the format checked and
/// kept in its `checksum` attribute (npm's sha1 and sha512, PyPI's md5), all as hex.
fn checksums(a: &Asset) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("sha256".into(), json!(a.digest.as_deref().map(|d| d.trim_start_matches("sha256:"))));
    for (k, v) in a.attributes.get("checksum").and_then(Value::as_object).into_iter().flatten() {
        if v.is_string() && k != "sha256" {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

#[derive(serde::Deserialize)]
pub struct ListParams {
    repository: String,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

/// A page of `repository`'s components with the next page's token (the search walk over one
/// repository), for a caller who may read it: what the components and the assets lists show.
pub(crate) async fn repository_page(
    state: &AppState,
    req: &HttpRequest,
    repository: String,
    token: Option<String>,
) -> Result<(Vec<super::search::Found>, Option<String>), AdminError> {
    let principal = super::reader(state, req, &repository).await?;
    super::search::page(state, &principal.access, super::search::Params::of_repository(repository, token), PAGE).await
}

/// One repository's components, a page at a time.
pub async fn list(state: web::Data<AppState>, req: HttpRequest, q: web::Query<ListParams>) -> Result<HttpResponse, AdminError> {
    let q = q.into_inner();
    let (found, next) = repository_page(&state, &req, q.repository, q.continuation_token).await?;
    let origin = origin(&req);
    let items: Vec<Value> = found
        .iter()
        .map(|f| {
            let format = state.format(&f.repo.config.format).expect("a listed repository's format is in this build");
            render(&f.repo, &f.key, &f.assets, format.as_ref(), &origin)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": next })))
}

#[derive(serde::Deserialize)]
pub struct UploadParams {
    repository: Option<String>,
}

/// `POST ...?repository=<name>` with a multipart form (`-F "pypi.asset=@pkg.whl"`, `-F
/// "npm.asset=@pkg.tgz"`): the repository's format takes the file as its own clients' upload
/// (`Repo::upload_component`), rights included: the caller needs write rights on the
/// repository, not administrator rights. 204 on success, as Nexus answers.
pub async fn upload(state: web::Data<AppState>, req: HttpRequest, q: web::Query<UploadParams>, body: web::Payload) -> Result<HttpResponse, AdminError> {
    let name = q.repository.as_deref().filter(|n| !n.is_empty()).ok_or(AdminError::ParameterRequired("repository"))?;
    let principal = super::caller(&state, &req).await?;
    // As everywhere in the admin API, a repository the caller may not even see is not there
    // for them (and an anonymous caller is asked to sign in, whether it is there or not); one
    // they may read but not write to gets the format's refusal (403).
    let visible = state.registry.get(name).filter(|r| [Action::Read, Action::Write].iter().any(|a| principal.access.allows(&r.config, *a, "*")));
    let r = match visible {
        Some(r) => r,
        None if principal.user.is_none() => return Err(AdminError::Unauthenticated),
        None => return Err(AdminError::missing("repository", name)),
    };
    if !r.config.online {
        return Err(ConfigError::new("repository", "Repository offline").into());
    }
    let (origin, client) = (origin(&req), client(&req));
    let initiator = crate::webhooks::initiator_of(principal.user.as_deref(), &client);
    let actor = principal.user.clone();
    let ctx = RepoCtx {
        repo: r.config.clone(),
        path: "/".into(),
        query: String::new(),
        mount: Mount::Prefix { prefix: format!("/repository/{name}") },
        principal,
        token_realm: format!("{origin}/v2/token"),
        token_service: state.auth.tokens.service().to_string(),
        origin,
        client: client.clone(),
    };
    let form = ComponentUpload::new(&r.config.format, req.headers(), body);
    // What the upload changes, webhooks hear of as this caller's doing.
    let key = crate::webhooks::with_initiator(initiator, r.repo.upload_component(ctx, form)).await.map_err(upload_refused)?;
    let object = format!("{}@{}", key.full_name(), key.version);
    use wharf_format::Audit;
    state.audit.record(wharf_format::AuditEvent {
        actor,
        address: Some(client),
        action: "component.upload".into(),
        repository: Some(r.config.name.clone()),
        object: Some(object),
        detail: serde_json::Value::Null,
    });
    Ok(HttpResponse::NoContent().finish())
}

/// The one mapping of a format's upload refusal to the admin API's answer: Nexus's 400
/// validation shape for what is wrong with the form or the file.
fn upload_refused(e: UploadError) -> AdminError {
    match e {
        UploadError::Unsupported(m) => AdminError::Invalid(ConfigError::new("repository", m)),
        UploadError::Invalid { field, message } => AdminError::Invalid(ConfigError::new(field, message)),
        UploadError::Unauthenticated => AdminError::Unauthenticated,
        UploadError::Forbidden(m) => AdminError::Refused(m),
        e @ UploadError::QuotaExceeded(_) => AdminError::Refused(e.to_string()),
        UploadError::Conflict(m) => AdminError::Conflict(m),
        UploadError::TooLarge(m) => AdminError::TooLarge(m),
        UploadError::ReadOnly(m) => AdminError::ReadOnly(m),
        UploadError::NoSpace(m) => AdminError::NoSpace(m),
        e @ UploadError::Internal(_) => AdminError::Internal(Box::new(e)),
    }
}

/// The component an id names, with its assets: read by its name (the assets of the format's
/// component kind under it), not by walking the repository.
async fn find(state: &AppState, id: &str) -> Result<(wharf_format::RepoRef, ComponentKey, Vec<Asset>), AdminError> {
    let missing = || AdminError::missing("component", id);
    let (repo, name, version) = parse_id(id).ok_or_else(missing)?;
    let r = state.registry.get(&repo).ok_or_else(|| AdminError::missing("repository", &repo))?;
    let format = state.format(&r.config.format).ok_or_else(|| AdminError::NotFound(format!("format {} is not in this build", r.config.format)))?;
    let kind = format.component_kind().ok_or_else(missing)?;
    let mut key = None;
    let mut assets = Vec::new();
    for a in state.meta.component_assets(r.config.id, kind, vec![name.clone()]).await? {
        let Some(mut k) = format.component_of(&a) else { continue };
        k.download_path = None;
        if k.version == version && k.full_name() == name {
            key.get_or_insert(k);
            assets.push(a);
        }
    }
    let key = key.ok_or_else(missing)?;
    Ok((r, key, assets))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let repo = parse_id(&id).map(|(repo, _, _)| repo).ok_or_else(|| AdminError::missing("component", &id))?;
    require_reader(&state, &req, &repo).await?;
    let (r, key, assets) = find(&state, &id).await?;
    let format = state.format(&r.config.format).expect("find found the format");
    let mut out = render(&r, &key, &assets, format.as_ref(), &origin(&req));
    // Only here, never in the list: a description reads blobs (manifests, documents, metadata).
    out["details"] = r.repo.describe_component(&key, &assets).await.map_err(|e| AdminError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok().json(out))
}

/// Deletes a component the way its format does (an npm version leaves the packument, a PyPI
/// release takes its metadata and, when last, the project; a Docker tag goes, its manifest
/// stays until nothing uses it). Blobs stay until garbage collection.
pub async fn delete(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    let (r, key, assets) = find(&state, &id).await?;
    let initiator = crate::webhooks::initiator_of(Some(&user), &crate::http::mount::client(&req));
    crate::webhooks::with_initiator(initiator, r.repo.delete_component(&key, &assets)).await.map_err(deletion_refused)?;
    super::record(&state, &req, &user, "component.delete", &format!("{}@{}", key.full_name(), key.version), Some(&r.config.name));
    Ok(HttpResponse::NoContent().finish())
}

pub(crate) fn deletion_refused(e: DeleteError) -> AdminError {
    match e {
        DeleteError::Unsupported(why) => AdminError::Invalid(ConfigError::new("id", why)),
        DeleteError::Changed(what) => AdminError::Invalid(ConfigError::new("id", format!("{what} changed while it was being deleted; try again"))),
        DeleteError::Meta(e) => e.into(),
        other => AdminError::Internal(Box::new(other)),
    }
}

/// `POST .../components/{id}/yank` with `{"reason": "..."}` yanks; `DELETE` un-yanks.
pub async fn yank(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    let (r, key, assets) = find(&state, &id).await?;
    let reason = if req.method() == actix_web::http::Method::DELETE {
        None
    } else {
        let v = if body.is_empty() { json!({}) } else { parse_json(&body)? };
        match v.get("reason") {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ConfigError::not_string("reason").into()),
        }
    };
    let format = state.format(&r.config.format).expect("find found the format");
    let mut writes = Vec::new();
    for a in assets {
        let mut asset = NewAsset::from(a);
        if !format.yank(&mut asset, reason.as_deref()) {
            return Err(ConfigError::new("id", format!("{} components cannot be yanked", r.config.format)).into());
        }
        writes.push(Write::Upsert { repo: r.config.id, asset });
    }
    let initiator = crate::webhooks::initiator_of(Some(&user), &crate::http::mount::client(&req));
    crate::webhooks::with_initiator(initiator, state.meta.commit(vec![], writes)).await?;
    super::record(
        &state,
        &req,
        &user,
        if reason.is_some() { "component.yank" } else { "component.unyank" },
        &format!("{}@{}", key.full_name(), key.version),
        Some(&r.config.name),
    );
    Ok(HttpResponse::NoContent().finish())
}
