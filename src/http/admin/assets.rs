//! Nexus's assets API (`/service/rest/v1/assets`): the files of a repository's components,
//! listed a page at a time, fetched and deleted one by one. Deleting an asset is its format's
//! deletion of that file within its component (a PyPI file with its metadata, an npm version's
//! tarball with the version, a Docker tag), so that no index is left naming a missing file.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::MetaStore;

use super::components::{deletion_refused, parse_asset_id, render_asset};
use super::{record, require_admin, require_reader, AdminError};
use crate::http::mount::origin;
use crate::state::AppState;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    repository: String,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

/// A page of the repository's assets: those of a page of its components (the components API's
/// walk), so a page holds every file of each component it reaches.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let q: ListParams = serde_urlencoded::from_str(req.query_string()).map_err(|e| wharf_format::ConfigError::new("query", e.to_string()))?;
    let (found, next) = super::components::repository_page(&state, &req, q.repository, q.continuation_token).await?;
    let origin = origin(&req);
    let items: Vec<Value> = found
        .iter()
        .flat_map(|f| {
            let format = state.format(&f.repo.config.format).expect("a listed repository's format is in this build");
            f.assets.iter().map(|a| render_asset(&f.repo, a, format.as_ref(), &origin)).collect::<Vec<_>>()
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": next })))
}

/// The asset and its component's key; "not found" for anything that is not a component's file
/// (an index or a blob a format keeps for itself).
async fn find(state: &AppState, id: &str) -> Result<(wharf_format::RepoRef, wharf_format::Asset, wharf_format::ComponentKey), AdminError> {
    let (repo, path) = parse_asset_id(id).ok_or_else(|| AdminError::missing("asset", id))?;
    let r = state.registry.get(&repo).ok_or_else(|| AdminError::missing("asset", id))?;
    let format = state.format(&r.config.format).ok_or_else(|| AdminError::missing("asset", id))?;
    let asset = state.meta.get(r.config.id, &path).await?.ok_or_else(|| AdminError::missing("asset", id))?;
    let mut key = format.component_of(&asset).ok_or_else(|| AdminError::missing("asset", id))?;
    key.download_path = None;
    Ok((r, asset, key))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let repo = parse_asset_id(&id).map(|(repo, _)| repo).ok_or_else(|| AdminError::missing("asset", &id))?;
    require_reader(&state, &req, &repo).await?;
    let (r, asset, _) = find(&state, &id).await?;
    let format = state.format(&r.config.format).expect("find found the format");
    Ok(HttpResponse::Ok().json(render_asset(&r, &asset, format.as_ref(), &origin(&req))))
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let user = require_admin(&state, &req).await?;
    let (r, asset, key) = find(&state, &id).await?;
    let path = asset.path.clone();
    let initiator = crate::webhooks::initiator_of(Some(&user), &crate::http::mount::client(&req));
    crate::webhooks::with_initiator(initiator, r.repo.delete_component(&key, &[asset])).await.map_err(deletion_refused)?;
    record(&state, &req, &user, "asset.delete", &path, Some(&r.config.name));
    Ok(HttpResponse::NoContent().finish())
}
