//! Rows of `blob_store_removals`: deleted blob stores whose files are still being removed.
//!
//! A row is written in the transaction that deletes the store's row and lives until its files
//! are gone, so that for that whole time no node can create a store under the name or over the
//! directory (see `lifecycle::store_removal`). Its owner holds it under a lease, as an upload
//! session's writer does: a node that dies mid-removal leaves a row whose claim runs out, and
//! another node takes it over and finishes.

use diesel::prelude::*;

use super::schema::blob_store_removals;
use super::{AnyConnection, DbError};

#[derive(Queryable, Selectable, Insertable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = blob_store_removals)]
pub struct RemovalRow {
    pub name: String,
    /// The store's path as it was configured (relative to the blob area, or absolute).
    pub path: String,
    /// Names the directory the files are moved to before they are deleted.
    pub trash: String,
    pub owner: String,
    pub claimed_until: i64,
    pub created_at: i64,
    /// `file` or `s3`.
    pub kind: String,
    /// An S3 store's settings as `blob_stores` held them (secrets sealed); empty for a file store.
    pub attributes: String,
}

impl RemovalRow {
    /// The deleted store as a `blob_stores` row (an S3 store's settings are kept here).
    pub fn as_store_row(&self) -> super::repos::BlobStoreRow {
        super::repos::BlobStoreRow { id: 0, name: self.name.clone(), kind: self.kind.clone(), attributes: self.attributes.clone(), created_at: self.created_at }
    }
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<RemovalRow>, DbError> {
    Ok(blob_store_removals::table.order(blob_store_removals::name.asc()).select(RemovalRow::as_select()).load(conn)?)
}

pub fn insert(conn: &mut AnyConnection, row: &RemovalRow) -> Result<(), DbError> {
    diesel::insert_into(blob_store_removals::table).values(row).execute(conn)?;
    Ok(())
}

/// Extends `owner`'s claim while it still holds it (not run out, not taken over); false when
/// it does not, and then the owner must not touch the files: another node may have finished
/// the removal and a new store may live at the path.
pub fn renew(conn: &mut AnyConnection, name: &str, owner: &str, now: i64, lease_ms: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        blob_store_removals::table
            .filter(blob_store_removals::name.eq(name))
            .filter(blob_store_removals::owner.eq(owner))
            .filter(blob_store_removals::claimed_until.gt(now)),
    )
    .set(blob_store_removals::claimed_until.eq(now + lease_ms))
    .execute(conn)?;
    Ok(n == 1)
}

/// Claims for `owner` every removal whose claim ran out before `now` (its owner died); the rows
/// taken, with their new claim.
pub fn take_abandoned(conn: &mut AnyConnection, owner: &str, now: i64, lease_ms: i64) -> Result<Vec<RemovalRow>, DbError> {
    let stale: Vec<RemovalRow> = blob_store_removals::table.filter(blob_store_removals::claimed_until.le(now)).select(RemovalRow::as_select()).load(conn)?;
    let mut taken = Vec::new();
    for row in stale {
        // Conditional on the claim read: of two nodes taking over at once, one gets the row.
        let n = diesel::update(
            blob_store_removals::table
                .filter(blob_store_removals::name.eq(&row.name))
                .filter(blob_store_removals::owner.eq(&row.owner))
                .filter(blob_store_removals::claimed_until.eq(row.claimed_until)),
        )
        .set((blob_store_removals::owner.eq(owner), blob_store_removals::claimed_until.eq(now + lease_ms)))
        .execute(conn)?;
        if n == 1 {
            taken.push(RemovalRow { owner: owner.to_string(), claimed_until: now + lease_ms, ..row });
        }
    }
    Ok(taken)
}

/// Ends the removal (its name and directory are free again), if `owner` still holds it.
pub fn finish(conn: &mut AnyConnection, name: &str, owner: &str) -> Result<bool, DbError> {
    let n = diesel::delete(blob_store_removals::table.filter(blob_store_removals::name.eq(name)).filter(blob_store_removals::owner.eq(owner))).execute(conn)?;
    Ok(n == 1)
}
