//! `/service/rest/v1/blobstores...`: file blob stores (S3 comes with its own issue).

use std::path::Path;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use wharf_format::ConfigError;

use super::{parse_json, require_admin, AdminError};
use crate::db::repos;
use crate::state::{blob_store_root, AppState};

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') && !name.starts_with('.')
}

/// Blob count and bytes under a store's `blobs/` (a walk: fine at today's sizes; a counter
/// table is the plan once stores hold millions of blobs).
fn usage(root: &Path) -> (u64, u64) {
    fn walk(dir: &Path, acc: &mut (u64, u64)) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path(), acc),
                Ok(m) => {
                    acc.0 += 1;
                    acc.1 += m.len();
                }
                Err(_) => {}
            }
        }
    }
    let mut acc = (0, 0);
    walk(&root.join("blobs"), &mut acc);
    acc
}

fn store_path(attributes: &str, name: &str) -> String {
    let v: Value = serde_json::from_str(attributes).unwrap_or_default();
    v.get("path").and_then(|p| p.as_str()).unwrap_or(name).to_string()
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let rows = state.db.run(repos::list_blob_stores).await?;
    let data_dir = state.cfg.data_dir.clone();
    let out = web::block(move || {
        rows.iter()
            .map(|r| {
                let root = blob_store_root(&data_dir, &store_path(&r.attributes, &r.name));
                let (count, bytes) = usage(&root);
                json!({
                    "name": r.name,
                    "type": "File",
                    "unavailable": !root.exists(),
                    "blobCount": count,
                    "totalSizeInBytes": bytes,
                    "availableSpaceInBytes": null,
                    "softQuota": null,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| AdminError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok().json(out))
}

pub async fn create_file(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let v = parse_json(&body)?;
    let obj = v.as_object().ok_or_else(|| ConfigError::new("body", "must be a JSON object"))?;
    let mut name = None;
    let mut path = None;
    for (k, val) in obj {
        match k.as_str() {
            "name" => name = val.as_str().map(str::to_string),
            "path" => path = val.as_str().map(str::to_string),
            "softQuota" if val.is_null() => {}
            "softQuota" => return Err(ConfigError::new("softQuota", "soft quotas are not supported yet").into()),
            _ => return Err(ConfigError::new(k.clone(), "unknown field").into()),
        }
    }
    let name = name.filter(|n| valid_name(n)).ok_or_else(|| ConfigError::new("name", "is required: letters, digits, '-', '_', '.'"))?;
    let path = path.unwrap_or_else(|| name.clone());
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(ConfigError::new("path", "may not contain '..'").into());
    }
    let root = blob_store_root(&state.cfg.data_dir, &path);
    std::fs::create_dir_all(&root).map_err(|e| ConfigError::new("path", format!("cannot create {}: {e}", root.display())))?;
    let attrs = json!({ "path": path }).to_string();
    let n = name.clone();
    match state.db.write(move |c| repos::insert_blob_store(c, &n, "file", &attrs)).await {
        Ok(()) => {}
        Err(crate::db::DbError::Query(e)) if crate::db::is_unique_violation(&e) => {
            return Err(ConfigError::new("name", format!("blob store {name} already exists")).into())
        }
        Err(e) => return Err(e.into()),
    }
    super::record(&state, &req, &actor, "blobstore.create", &name, None);
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn get_file(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let name = path.into_inner();
    let rows = state.db.run(repos::list_blob_stores).await?;
    let row = rows.into_iter().find(|r| r.name == name).ok_or_else(|| AdminError::NotFound(format!("blob store {name} not found")))?;
    Ok(HttpResponse::Ok().json(json!({ "path": store_path(&row.attributes, &row.name), "softQuota": null })))
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let n = name.clone();
    // The check and the delete in one write transaction: a repository created on this store
    // meanwhile must not be left without one.
    let (users, deleted) = state
        .db
        .write(move |c| {
            let users = repos::repos_using_blob_store(c, &n)?;
            Ok((users, users == 0 && repos::delete_blob_store(c, &n)?))
        })
        .await?;
    if users > 0 {
        return Err(ConfigError::new("name", format!("blob store {name} is used by {users} repositories")).into());
    }
    if !deleted {
        return Err(AdminError::NotFound(format!("blob store {name} not found")));
    }
    super::record(&state, &req, &actor, "blobstore.delete", &name, None);
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize)]
pub struct CompactParams {
    #[serde(rename = "dryRun", default)]
    dry_run: bool,
}

/// One garbage-collection pass over a store, answered when it is done: with `dryRun=true`, what
/// it would delete (the same pass the "Compact blob store" task runs, deleting nothing).
pub async fn compact(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, q: web::Query<CompactParams>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let grace = std::time::Duration::from_secs(state.cfg.gc.grace_secs);
    let stop = wharf_format::Stop::default();
    let report = crate::lifecycle::gc::collect(&state, Some(&name), grace, q.dry_run, &stop).await.map_err(|e| match e {
        crate::lifecycle::gc::GcError::NoSuchStore(_) => AdminError::NotFound(e.to_string()),
        other => AdminError::Internal(Box::new(other)),
    })?;
    if !q.dry_run {
        super::record(&state, &req, &actor, "blobstore.compact", &name, None);
    }
    Ok(HttpResponse::Ok().json(report))
}
