//! `/service/rest/v1/blobstores...`: file blob stores (S3 comes with its own issue), their usage
//! and soft quotas (Nexus's shapes).

use std::path::Path;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use wharf_format::ConfigError;

use super::{parse_json, require_admin, AdminError};
use crate::db::repos;
use crate::lifecycle::soft_quota::SoftQuota;
use crate::lifecycle::store_removal::{self, Deletion};
use crate::lifecycle::store_usage::{self, FileStore, Scope, StoreReport};
use crate::state::AppState;

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') && !name.starts_with('.')
}

/// An absolute path, or one under the blob area made of plain names that do not start with a
/// dot (`.`, `..` and the area's own `.deleted-*` trash are not store paths).
fn check_path(path: &str) -> Result<(), ConfigError> {
    if Path::new(path).is_absolute() {
        if path.split('/').any(|seg| seg == "..") {
            return Err(ConfigError::new("path", "may not contain '..'"));
        }
        return Ok(());
    }
    if path.is_empty() || path.split(['/', '\\']).any(|seg| seg.is_empty() || seg.starts_with('.')) {
        return Err(ConfigError::new("path", "must be absolute, or names under the blob area that do not start with '.'"));
    }
    Ok(())
}

async fn report(state: &AppState, name: &str) -> Result<StoreReport, AdminError> {
    store_usage::reports(&state.db, &state.cfg.data_dir, Scope::One(name.to_string())).await?.pop().ok_or_else(|| AdminError::missing("blob store", name))
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let out: Vec<Value> = store_usage::reports(&state.db, &state.cfg.data_dir, Scope::All).await?.iter().map(StoreReport::to_json).collect();
    Ok(HttpResponse::Ok().json(out))
}

/// A create or update body.
#[derive(Default)]
struct Body {
    /// Only on create.
    name: Option<String>,
    path: Option<String>,
    soft_quota: Option<SoftQuota>,
}

fn parse_body(body: &Value, with_name: bool) -> Result<Body, ConfigError> {
    let obj: &Map<String, Value> = body.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    let mut out = Body::default();
    for (k, val) in obj {
        match k.as_str() {
            "name" if with_name => out.name = Some(val.as_str().ok_or_else(|| ConfigError::not_string("name"))?.to_string()),
            "path" => out.path = Some(val.as_str().ok_or_else(|| ConfigError::not_string("path"))?.to_string()),
            "softQuota" => out.soft_quota = SoftQuota::parse(val)?,
            _ => return Err(ConfigError::unknown_field(k.clone())),
        }
    }
    Ok(out)
}

pub async fn create_file(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let Body { name, path, soft_quota } = parse_body(&parse_json(&body)?, true)?;
    let name = name.filter(|n| valid_name(n)).ok_or_else(|| ConfigError::new("name", "is required: letters, digits, '-', '_', '.'"))?;
    let path = path.unwrap_or_else(|| name.clone());
    check_path(&path)?;
    let store = FileStore { name: name.clone(), path, soft_quota };
    let root = store.root(&state.cfg.data_dir);
    // Two stores never share files (so deleting one can remove its directory), and a deleted
    // store's name and directory stay taken until its files are gone.
    let (n, data_dir, r) = (name.clone(), state.cfg.data_dir.clone(), root.clone());
    if let Some(refusal) = state.db.run(move |c| store_removal::conflict(c, &data_dir, &n, &r)).await? {
        return Err(refusal.into());
    }
    let empty = crate::lifecycle::gc::holds_no_blobs(&root);
    std::fs::create_dir_all(&root).map_err(|e| ConfigError::new("path", format!("cannot create {}: {e}", root.display())))?;
    let data_dir = state.cfg.data_dir.clone();
    // Checked again with the insert, against a store created or deleted meanwhile.
    let res = state.db.write(move |c| store_removal::insert_if_free(c, &data_dir, &store, empty)).await;
    match res {
        Ok(None) => {}
        Ok(Some(refusal)) => return Err(refusal.into()),
        Err(crate::db::DbError::Query(e)) if crate::db::is_unique_violation(&e) => {
            return Err(ConfigError::new("name", format!("blob store {name} already exists")).into())
        }
        Err(e) => return Err(e.into()),
    }
    super::record(&state, &req, &actor, "blobstore.create", &name, None);
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

async fn find(state: &AppState, name: &str) -> Result<FileStore, AdminError> {
    let rows = state.db.run(repos::list_blob_stores).await?;
    let row = rows.iter().find(|r| r.name == name).ok_or_else(|| AdminError::missing("blob store", name))?;
    if row.kind != "file" {
        return Err(ConfigError::new("name", format!("{name} is not a file blob store")).into());
    }
    Ok(FileStore::from_row(row))
}

pub async fn get_file(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let store = find(&state, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({ "path": store.path, "softQuota": store.soft_quota.map(|q| q.to_json()) })))
}

/// Nexus's update: the whole settings again. Only the soft quota can change (a store's content
/// lives at its path).
pub async fn update_file(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let Body { path: new_path, soft_quota, .. } = parse_body(&parse_json(&body)?, false)?;
    let store = find(&state, &name).await?;
    if new_path.as_ref().is_some_and(|p| *p != store.path) {
        return Err(ConfigError::new("path", format!("cannot be changed (it is {}): the store's content lives there", store.path)).into());
    }
    let attrs = FileStore { soft_quota, ..store }.attributes();
    let n = name.clone();
    if !state.db.write(move |c| repos::update_blob_store(c, &n, &attrs)).await? {
        return Err(AdminError::missing("blob store", &name));
    }
    super::record(&state, &req, &actor, "blobstore.update", &name, None);
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn quota_status(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(report(&state, &path.into_inner()).await?.quota_json()))
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let n = name.clone();
    // Fixed before the transaction, which may run more than once.
    let token = uuid::Uuid::new_v4().to_string();
    // The check and the delete in one write transaction: a repository created on this store
    // meanwhile either commits first (and is seen here) or fails its blob store reference. The
    // same transaction reserves the name and directory until the files are gone.
    let outcome = state.db.write(move |c| store_removal::delete_store(c, &n, &token)).await;
    let (claim, tasks) = match outcome {
        Ok(Deletion::Deleted(claim, tasks)) => (claim, tasks),
        Ok(Deletion::InUse(users)) => return Err(in_use(&name, &users)),
        Ok(Deletion::TaskRunning(task, id)) => {
            return Err(AdminError::Conflict(format!("task {task} is running on blob store {name}: stop it first (POST /service/rest/v1/tasks/{id}/stop)")));
        }
        Ok(Deletion::NotFound) => return Err(AdminError::missing("blob store", &name)),
        // A repository that committed on this store between our check and the delete.
        Err(crate::db::DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _))) => {
            let n = name.clone();
            let users = state.db.run(move |c| repos::repos_using_blob_store(c, &n)).await?;
            return Err(in_use(&name, &users));
        }
        Err(e) => return Err(e.into()),
    };
    super::record(&state, &req, &actor, "blobstore.delete", &name, None);
    for t in &tasks {
        super::record_because(&state, &req, &actor, "task.delete", t, None, serde_json::json!({ "blobstoreName": name, "because": "blobstore.delete" }));
    }
    crate::http::apply_config_change(&state).await;
    match claim {
        // A bucket prefix may hold many objects: removed a page at a time in the background,
        // under the claim (another node finishes it if this one dies).
        Some(claim) if claim.is_s3() => {
            let (db, dir, n) = (state.db.clone(), state.cfg.data_dir.clone(), name.clone());
            crate::lifecycle::in_background(move || async move {
                store_removal::log_outcome(&n, &store_removal::carry_out(&db, &dir, claim).await);
            });
        }
        Some(claim) => store_removal::log_outcome(&name, &store_removal::carry_out(&state.db, &state.cfg.data_dir, claim).await),
        None => {}
    }
    Ok(HttpResponse::NoContent().finish())
}

fn in_use(name: &str, users: &[String]) -> AdminError {
    let list = if users.is_empty() { "a repository".to_string() } else { format!("repositories {}", users.join(", ")) };
    ConfigError::new("name", format!("blob store {name} is used by {list}")).into()
}

#[derive(serde::Deserialize)]
pub struct CompactParams {
    #[serde(rename = "dryRun", default)]
    dry_run: bool,
    #[serde(rename = "fullScan", default)]
    full_scan: bool,
}

/// One garbage-collection pass over a store, answered when it is done: with `dryRun=true`, what
/// it would delete (the same pass the "Compact blob store" task runs, deleting nothing).
pub async fn compact(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, q: web::Query<CompactParams>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let opts = crate::lifecycle::gc::Options { grace: std::time::Duration::from_secs(state.cfg.gc.grace_secs), dry_run: q.dry_run, full_scan: q.full_scan };
    let (pass_state, store) = (state.clone(), name.clone());
    let pass = crate::lifecycle::in_background_then(move || async move {
        crate::lifecycle::gc::collect(&pass_state, Some(&store), opts, &wharf_format::Stop::default()).await
    });
    let report = pass.await.ok_or_else(|| AdminError::Internal("the garbage collection pass was cut short".into()))?.map_err(|e| match e {
        crate::lifecycle::gc::GcError::NoSuchStore(_) => AdminError::NotFound(e.to_string()),
        crate::lifecycle::gc::GcError::Db(e) => e.into(),
        other => AdminError::Internal(Box::new(other)),
    })?;
    if !q.dry_run {
        super::record(&state, &req, &actor, "blobstore.compact", &name, None);
    }
    Ok(HttpResponse::Ok().json(report))
}
