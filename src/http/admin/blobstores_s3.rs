//! `/service/rest/v1/blobstores/s3[/{name}]`: S3 blob stores in Nexus's shape. A store is
//! checked before it is saved (the bucket answers, takes a write and gives it back), and its
//! secrets are write-only: GET shows a placeholder, which PUT takes as "unchanged".

use actix_web::{web, HttpRequest, HttpResponse};
use wharf_format::{BlobStore, ConfigError};

use super::{parse_json, require_admin, AdminError};
use crate::db::repos;
use crate::state::AppState;
use crate::storage::s3::S3Store;

/// Opens the store and writes, reads back and deletes a small object: a store that cannot take
/// blobs is refused with what went wrong, naming the bucket and endpoint.
pub async fn check_reachable(state: &AppState, store: &S3Store) -> Result<BlobStore, ConfigError> {
    let scratch = state.cfg.data_dir.join("tmp").join("s3-check").join(uuid::Uuid::new_v4().simple().to_string());
    let where_ = store.settings.location();
    let opened = BlobStore::s3(&store.name, &store.settings, &scratch).map_err(|e| ConfigError::new("bucketConfiguration", format!("{where_}: {e}")))?;
    let res = opened.check_writable().await;
    let _ = std::fs::remove_dir_all(&scratch);
    res.map_err(|e| ConfigError::new("bucketConfiguration", format!("{where_} is not usable: {e}")))?;
    Ok(opened)
}

/// Two stores never share objects: the same bucket at the same endpoint with prefixes of which
/// one contains the other is refused, the endpoint compared as a URL (scheme and host in lower
/// case, the default port, no trailing slash) and the prefixes as the keys hold them (`a//b` is
/// `a/b`): compared as text, `http://minio:9000/` passed beside `http://minio:9000`, and the
/// second store's GC adopted the first one's objects and deleted them.
fn overlapping(store: &S3Store, rows: &[repos::BlobStoreRow]) -> Option<String> {
    let mine = store.settings.prefix_segments();
    let endpoint = same_endpoint_key(&store.settings.endpoint);
    rows.iter().filter(|r| r.kind == "s3" && r.name != store.name).find_map(|r| {
        let other = S3Store::from_row(r).ok()?;
        let theirs = other.settings.prefix_segments();
        let same_bucket = other.settings.bucket == store.settings.bucket && same_endpoint_key(&other.settings.endpoint) == endpoint;
        (same_bucket && (mine.starts_with(&theirs) || theirs.starts_with(&mine))).then(|| r.name.clone())
    })
}

/// An endpoint as the service it names (empty: AWS).
fn same_endpoint_key(endpoint: &str) -> String {
    match url::Url::parse(endpoint.trim()) {
        Ok(u) => format!(
            "{}://{}:{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default().to_ascii_lowercase(),
            u.port_or_known_default().unwrap_or(0),
            u.path().trim_end_matches('/')
        ),
        Err(_) => endpoint.trim().trim_end_matches('/').to_ascii_lowercase(),
    }
}

/// Why `store` may not be created: its name is taken or still reserved by a removal, or its
/// objects would overlap a store's or those of a deleted store still being removed. Checked
/// before the bucket is tried and again in the create's transaction.
fn refusal(conn: &mut crate::db::AnyConnection, store: &S3Store) -> Result<Option<ConfigError>, crate::db::DbError> {
    let rows = repos::list_blob_stores(conn)?;
    if rows.iter().any(|r| r.name == store.name) {
        return Ok(Some(ConfigError::new("name", format!("blob store {} already exists", store.name))));
    }
    if let Some(other) = overlapping(store, &rows) {
        return Ok(Some(ConfigError::new("bucketConfiguration.bucket.prefix", format!("overlaps the objects of blob store {other} (same bucket)"))));
    }
    // One read of the removals: a name is reserved whatever the store was, objects only by S3 ones.
    let removing: Vec<repos::BlobStoreRow> = crate::db::removals::list(conn)?.iter().map(crate::db::removals::RemovalRow::as_store_row).collect();
    if let Some(gone) = removing.iter().find(|r| r.name == store.name) {
        let what = if gone.kind == "s3" { "objects" } else { "files" };
        return Ok(Some(ConfigError::new("name", format!("blob store {} was deleted and its {what} are still being removed; try again later", store.name))));
    }
    if let Some(other) = overlapping(store, &removing) {
        return Ok(Some(ConfigError::new(
            "bucketConfiguration.bucket.prefix",
            format!("overlaps the objects of deleted blob store {other}, which are still being removed; try again later"),
        )));
    }
    Ok(None)
}

async fn find(state: &AppState, name: &str) -> Result<S3Store, AdminError> {
    let rows = state.db.run(repos::list_blob_stores).await?;
    let row = rows.iter().find(|r| r.name == name).ok_or_else(|| AdminError::NotFound(format!("Unable to find S3 '{name}' blobstore")))?;
    if row.kind != "s3" {
        return Err(ConfigError::new("name", format!("{name} is not an S3 blob store")).into());
    }
    S3Store::from_row(row).map_err(|e| AdminError::Internal(format!("blob store {name}: {e}").into()))
}

pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let store = S3Store::parse(&parse_json(&body)?, None, None)?;
    store.check_soft_quota()?;
    if !super::blobstores::valid_name(&store.name) {
        return Err(ConfigError::new("name", "letters, digits, '-', '_', '.'").into());
    }
    let s = store.clone();
    if let Some(refusal) = state.db.run(move |c| refusal(c, &s)).await? {
        return Err(refusal.into());
    }
    let opened = check_reachable(&state, &store).await?;
    // A prefix that holds no blobs yet needs no walk for objects the database does not know.
    let empty = futures::StreamExt::next(&mut opened.list_blobs()).await.is_none();
    let attrs = store.attributes().map_err(|e| AdminError::Internal(e.to_string().into()))?;
    let (name, location) = (store.name.clone(), opened.location());
    let res = state
        .db
        .write(move |c| {
            if let Some(refusal) = refusal(c, &store)? {
                return Ok(Some(refusal));
            }
            repos::insert_blob_store(c, &store.name, "s3", &attrs)?;
            if empty {
                crate::lifecycle::gc::walked_at_creation(c, &store.name, &location)?;
            }
            Ok(None)
        })
        .await;
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
    Ok(HttpResponse::Created().finish())
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(find(&state, &path.into_inner()).await?.to_json(true)))
}

/// Nexus's update: the whole settings again. Credentials, endpoint, encryption, presigned URLs
/// and the soft quota may change; the bucket and prefix may not (the store's content is there).
pub async fn update(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let old = find(&state, &name).await?;
    let new = S3Store::parse(&parse_json(&body)?, Some(&name), Some(&old))?;
    new.check_soft_quota()?;
    if new.settings.bucket != old.settings.bucket {
        return Err(ConfigError::new(
            "bucketConfiguration.bucket.name",
            format!("cannot be changed (it is {}): the store's content is there", old.settings.bucket),
        )
        .into());
    }
    if new.settings.prefix_segments() != old.settings.prefix_segments() {
        return Err(ConfigError::new(
            "bucketConfiguration.bucket.prefix",
            format!("cannot be changed (it is {:?}): the store's content is there", old.settings.prefix),
        )
        .into());
    }
    if new.settings != old.settings {
        check_reachable(&state, &new).await?;
    }
    let attrs = new.attributes().map_err(|e| AdminError::Internal(e.to_string().into()))?;
    let n = name.clone();
    if !state.db.write(move |c| repos::update_blob_store(c, &n, &attrs)).await? {
        return Err(AdminError::NotFound(format!("Unable to find S3 '{name}' blobstore")));
    }
    super::record(&state, &req, &actor, "blobstore.update", &name, None);
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}
