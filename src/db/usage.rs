//! What blob stores hold and what repositories reference, counted once per blob.
//!
//! A blob store's usage is its ledger (`blobs`: one row per blob it holds, with the true size),
//! whoever references the blobs. A repository's usage is the distinct blobs its assets name,
//! with the sizes the assets recorded: a layer two images of one repository share counts once
//! there, and a layer two repositories share counts in each of them but once in their store. A
//! blob whose assets say 0 bytes counts with the ledger's size.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use wharf_format::Usage;

use super::{AnyConnection, DbError};

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    blob_count: i64,
    #[diesel(sql_type = BigInt)]
    bytes: i64,
}

impl From<&Counted> for Usage {
    fn from(c: &Counted) -> Usage {
        Usage { blob_count: c.blob_count.max(0) as u64, bytes: c.bytes.max(0) as u64 }
    }
}

// The distinct digests of a repository's assets and their sizes, from the repository's rows of
// `assets_by_repository_digest` (migration 2026-12-03-000003). An asset's size is what the
// server counted of the blob's bytes (a commit links only blobs the ledger holds), except rows
// a migration made with size 0 (the PEP 658 metadata of 2026-12-03-000001, whose true size a GC
// walk later wrote in the ledger): only a digest of size 0 is looked up in the ledger. Looking
// up every digest cost 3.6 s at a million assets on SQLite, against 0.4 s (docs/benchmarks.md).
// CAST: SUM of a BIGINT is NUMERIC on PostgreSQL. `$n` placeholders: both backends take them,
// but SQLite numbers them in the order they first appear in the text, so they must appear in
// the order they are bound.
const REPOSITORY_USAGE: &str = "SELECT COUNT(*) AS blob_count, CAST(COALESCE(SUM(CASE WHEN d.size > 0 THEN d.size \
     ELSE (SELECT b.size FROM blobs b WHERE b.blob_store = $1 AND b.digest = d.digest) END), 0) AS BIGINT) AS bytes \
     FROM (SELECT digest, MAX(size) AS size FROM assets WHERE repository_id = $2 AND digest IS NOT NULL GROUP BY digest) d";

/// What one repository references.
pub fn repository_usage(conn: &mut AnyConnection, repository_id: i64, blob_store: &str) -> Result<Usage, DbError> {
    let c: Counted = diesel::sql_query(REPOSITORY_USAGE).bind::<Text, _>(blob_store).bind::<BigInt, _>(repository_id).get_result(conn)?;
    Ok(Usage::from(&c))
}

/// What every repository references, by repository id (repositories that reference nothing are
/// absent).
pub fn repositories_usage(conn: &mut AnyConnection) -> Result<HashMap<i64, Usage>, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        repository_id: i64,
        #[diesel(sql_type = BigInt)]
        blob_count: i64,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT d.repository_id, COUNT(*) AS blob_count, CAST(COALESCE(SUM(CASE WHEN d.size > 0 THEN d.size \
         ELSE (SELECT b.size FROM blobs b WHERE b.blob_store = d.blob_store AND b.digest = d.digest) END), 0) AS BIGINT) AS bytes \
         FROM (SELECT a.repository_id, r.blob_store, a.digest, MAX(a.size) AS size FROM assets a JOIN repositories r ON r.id = a.repository_id \
               WHERE a.digest IS NOT NULL GROUP BY a.repository_id, r.blob_store, a.digest) d \
         GROUP BY d.repository_id",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.repository_id, Usage::from(&Counted { blob_count: r.blob_count, bytes: r.bytes }))).collect())
}

/// What every blob store holds, by name (stores whose ledger is empty are absent). Rows being
/// deleted count until they are gone: their bytes are still on disk.
pub fn blob_stores_usage(conn: &mut AnyConnection) -> Result<HashMap<String, Usage>, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        blob_store: String,
        #[diesel(sql_type = BigInt)]
        blob_count: i64,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT blob_store, COUNT(*) AS blob_count, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM blobs GROUP BY blob_store")
            .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.blob_store, Usage::from(&Counted { blob_count: r.blob_count, bytes: r.bytes }))).collect())
}

/// What one blob store holds (its rows of the ledger, by the primary key's prefix).
pub fn blob_store_usage(conn: &mut AnyConnection, blob_store: &str) -> Result<Usage, DbError> {
    let c: Counted = diesel::sql_query("SELECT COUNT(*) AS blob_count, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM blobs WHERE blob_store = $1")
        .bind::<Text, _>(blob_store)
        .get_result(conn)?;
    Ok(Usage::from(&c))
}
