//! [`MetaStore`] over the `assets` and `uploads` tables.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use diesel::prelude::*;
use wharf_format::{now_millis, Asset, Check, ListQuery, MetaError, MetaStore, NewAsset, UploadRow, Write};

use super::schema::{assets, uploads};
use super::{is_unique_violation, AnyConnection, Backend, Db, DbError};

#[derive(Queryable, Selectable)]
#[diesel(table_name = assets)]
struct AssetRow {
    path: String,
    kind: String,
    component: Option<String>,
    digest: Option<String>,
    size: i64,
    content_type: Option<String>,
    link: Option<String>,
    attributes: String,
    created_at: i64,
    updated_at: i64,
}

impl From<AssetRow> for Asset {
    fn from(r: AssetRow) -> Asset {
        Asset {
            path: r.path,
            kind: r.kind,
            component: r.component,
            digest: r.digest,
            size: r.size,
            content_type: r.content_type,
            link: r.link,
            attributes: serde_json::from_str(&r.attributes).unwrap_or(serde_json::Value::Null),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = uploads)]
struct UploadDbRow {
    id: String,
    repository_id: i64,
    component: String,
    blob_store: String,
    upload_offset: i64,
    hash_state: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

pub struct SqlMeta {
    db: Db,
    /// SQLite allows one writer; taking turns here avoids its busy errors on lock upgrades.
    /// PostgreSQL needs no such thing (and several nodes share it).
    write_lock: Arc<Mutex<()>>,
}

impl SqlMeta {
    pub fn new(db: Db) -> SqlMeta {
        SqlMeta { db, write_lock: Arc::new(Mutex::new(())) }
    }
}

fn backend(e: DbError) -> MetaError {
    MetaError::Backend(Box::new(e))
}

/// Why a batch stopped inside its transaction.
enum Abort {
    Check(usize),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for Abort {
    fn from(e: diesel::result::Error) -> Abort {
        Abort::Db(e)
    }
}

fn exists(conn: &mut AnyConnection, repo: i64, path: &str) -> QueryResult<Option<Option<String>>> {
    assets::table.filter(assets::repository_id.eq(repo).and(assets::path.eq(path))).select(assets::digest).first::<Option<String>>(conn).optional()
}

fn insert(conn: &mut AnyConnection, repo: i64, a: &NewAsset, now: i64) -> QueryResult<usize> {
    diesel::insert_into(assets::table)
        .values((
            assets::repository_id.eq(repo),
            assets::path.eq(&a.path),
            assets::kind.eq(&a.kind),
            assets::component.eq(&a.component),
            assets::digest.eq(&a.digest),
            assets::size.eq(a.size),
            assets::content_type.eq(&a.content_type),
            assets::link.eq(&a.link),
            assets::attributes.eq(a.attributes.to_string()),
            assets::created_at.eq(now),
            assets::updated_at.eq(now),
        ))
        .execute(conn)
}

fn apply(conn: &mut AnyConnection, checks: &[Check], writes: &[Write]) -> Result<(), Abort> {
    for (i, check) in checks.iter().enumerate() {
        let ok = match check {
            Check::Exists { repo, path } => exists(conn, *repo, path)?.is_some(),
            Check::Absent { repo, path } => exists(conn, *repo, path)?.is_none(),
            Check::AbsentOrDigest { repo, path, digest } => match exists(conn, *repo, path)? {
                None => true,
                Some(d) => d.as_deref() == Some(digest.as_str()),
            },
        };
        if !ok {
            return Err(Abort::Check(i));
        }
    }
    let now = now_millis();
    for w in writes {
        match w {
            Write::Upsert { repo, asset: a } => {
                let updated = diesel::update(assets::table.filter(assets::repository_id.eq(*repo).and(assets::path.eq(&a.path))))
                    .set((
                        assets::kind.eq(&a.kind),
                        assets::component.eq(&a.component),
                        assets::digest.eq(&a.digest),
                        assets::size.eq(a.size),
                        assets::content_type.eq(&a.content_type),
                        assets::link.eq(&a.link),
                        assets::attributes.eq(a.attributes.to_string()),
                        assets::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                if updated == 0 {
                    insert(conn, *repo, a, now)?;
                }
            }
            Write::InsertIfAbsent { repo, asset } => {
                if exists(conn, *repo, &asset.path)?.is_none() {
                    insert(conn, *repo, asset, now)?;
                }
            }
            Write::Delete { repo, path } => {
                diesel::delete(assets::table.filter(assets::repository_id.eq(*repo).and(assets::path.eq(path)))).execute(conn)?;
            }
            Write::DeleteByDigest { repo, kind, component, digest } => {
                diesel::delete(
                    assets::table
                        .filter(assets::repository_id.eq(*repo).and(assets::kind.eq(kind)).and(assets::component.eq(component)).and(assets::digest.eq(digest))),
                )
                .execute(conn)?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl MetaStore for SqlMeta {
    async fn get(&self, repo: i64, path: &str) -> Result<Option<Asset>, MetaError> {
        let path = path.to_string();
        self.db
            .run(move |conn| {
                Ok(assets::table.filter(assets::repository_id.eq(repo).and(assets::path.eq(path))).select(AssetRow::as_select()).first(conn).optional()?)
            })
            .await
            .map(|r| r.map(Asset::from))
            .map_err(backend)
    }

    async fn list(&self, repo: i64, q: ListQuery) -> Result<Vec<Asset>, MetaError> {
        self.db
            .run(move |conn| {
                let mut query = assets::table.filter(assets::repository_id.eq(repo)).select(AssetRow::as_select()).into_boxed();
                if let Some(kind) = q.kind {
                    query = query.filter(assets::kind.eq(kind));
                }
                if let Some(component) = q.component {
                    query = query.filter(assets::component.eq(component));
                }
                if let Some(link) = q.link {
                    query = query.filter(assets::link.eq(link));
                }
                if let Some(digest) = q.digest {
                    query = query.filter(assets::digest.eq(digest));
                }
                if let Some(prefix) = q.prefix {
                    // A range instead of LIKE: no escaping, and the primary key index serves it.
                    let mut upper = prefix.clone().into_bytes();
                    if let Some(last) = upper.last_mut() {
                        *last += 1;
                    }
                    let upper = String::from_utf8(upper).unwrap_or_default();
                    query = query.filter(assets::path.ge(prefix)).filter(assets::path.lt(upper));
                }
                if let Some(after) = q.after {
                    query = query.filter(assets::path.gt(after));
                }
                query = query.order(assets::path.asc());
                if let Some(limit) = q.limit {
                    query = query.limit(limit);
                }
                Ok(query.load(conn)?)
            })
            .await
            .map(|rows| rows.into_iter().map(Asset::from).collect())
            .map_err(backend)
    }

    async fn commit(&self, checks: Vec<Check>, writes: Vec<Write>) -> Result<(), MetaError> {
        let lock = (self.db.backend == Backend::Sqlite).then(|| self.write_lock.clone());
        let outcome = self
            .db
            .run(move |conn| {
                let _guard = lock.as_ref().map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
                // Two nodes upserting the same new path both try to insert; the loser retries
                // and then finds the row.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let res = conn.transaction::<(), Abort, _>(|conn| apply(conn, &checks, &writes));
                    match res {
                        Ok(()) => return Ok(None),
                        Err(Abort::Check(i)) => return Ok(Some(i)),
                        Err(Abort::Db(e)) if is_unique_violation(&e) && attempt < 3 => continue,
                        Err(Abort::Db(e)) => return Err(DbError::Query(e)),
                    }
                }
            })
            .await
            .map_err(backend)?;
        match outcome {
            None => Ok(()),
            Some(i) => Err(MetaError::CheckFailed(i)),
        }
    }

    async fn upload_create(&self, u: UploadRow) -> Result<(), MetaError> {
        self.db
            .run(move |conn| {
                let row = UploadDbRow {
                    id: u.id,
                    repository_id: u.repo,
                    component: u.component,
                    blob_store: u.blob_store,
                    upload_offset: u.offset,
                    hash_state: u.hash_state,
                    created_at: u.created_at,
                    updated_at: u.updated_at,
                };
                diesel::insert_into(uploads::table).values(&row).execute(conn)?;
                Ok(())
            })
            .await
            .map_err(backend)
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRow>, MetaError> {
        let id = id.to_string();
        let row = self.db.run(move |conn| Ok(uploads::table.find(id).select(UploadDbRow::as_select()).first(conn).optional()?)).await.map_err(backend)?;
        Ok(row.map(|r| UploadRow {
            id: r.id,
            repo: r.repository_id,
            component: r.component,
            blob_store: r.blob_store,
            offset: r.upload_offset,
            hash_state: r.hash_state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }))
    }

    async fn upload_advance(&self, id: &str, from: i64, to: i64, state: Vec<u8>) -> Result<(), MetaError> {
        let id = id.to_string();
        let n = self
            .db
            .run(move |conn| {
                Ok(diesel::update(uploads::table.filter(uploads::id.eq(id).and(uploads::upload_offset.eq(from))))
                    .set((uploads::upload_offset.eq(to), uploads::hash_state.eq(state), uploads::updated_at.eq(now_millis())))
                    .execute(conn)?)
            })
            .await
            .map_err(backend)?;
        if n == 1 {
            Ok(())
        } else {
            Err(MetaError::Conflict)
        }
    }

    async fn upload_delete(&self, id: &str) -> Result<(), MetaError> {
        let id = id.to_string();
        self.db
            .run(move |conn| {
                diesel::delete(uploads::table.find(id)).execute(conn)?;
                Ok(())
            })
            .await
            .map_err(backend)
    }
}
