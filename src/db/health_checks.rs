//! Rows of `health_checks` (whether a repository's integrity check is enabled, and its last
//! report), and the reads of `assets` the check walks a repository with.

use diesel::prelude::*;

use super::schema::{assets, health_checks};
use super::{AnyConnection, DbError};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = health_checks)]
pub struct HealthCheckRow {
    pub repository_id: i64,
    pub enabled: bool,
    pub changed_by: Option<String>,
    pub changed_at: i64,
    pub checked_at: Option<i64>,
    /// The last report, as JSON text.
    pub report: Option<String>,
}

pub fn get(conn: &mut AnyConnection, repo: i64) -> QueryResult<Option<HealthCheckRow>> {
    health_checks::table.find(repo).select(HealthCheckRow::as_select()).get_result(conn).optional()
}

/// Enables or disables the check of repository `repo`; its last report stays. Run it inside a
/// write transaction (`Db::write`): the read and the write must not be split by another writer.
pub fn set_enabled(conn: &mut AnyConnection, repo: i64, enabled: bool, by: &str, now: i64) -> Result<(), DbError> {
    if get(conn, repo)?.is_some() {
        diesel::update(health_checks::table.find(repo))
            .set((health_checks::enabled.eq(enabled), health_checks::changed_by.eq(by), health_checks::changed_at.eq(now)))
            .execute(conn)?;
    } else {
        diesel::insert_into(health_checks::table)
            .values((
                health_checks::repository_id.eq(repo),
                health_checks::enabled.eq(enabled),
                health_checks::changed_by.eq(by),
                health_checks::changed_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Keeps `report` as the repository's last one. A repository checked by hand without being
/// enabled gets a row that says so. Run it inside a write transaction.
pub fn store_report(conn: &mut AnyConnection, repo: i64, checked_at: i64, report: &str) -> Result<(), DbError> {
    if get(conn, repo)?.is_some() {
        diesel::update(health_checks::table.find(repo)).set((health_checks::checked_at.eq(checked_at), health_checks::report.eq(report))).execute(conn)?;
    } else {
        diesel::insert_into(health_checks::table)
            .values((
                health_checks::repository_id.eq(repo),
                health_checks::enabled.eq(false),
                health_checks::changed_at.eq(checked_at),
                health_checks::checked_at.eq(checked_at),
                health_checks::report.eq(report),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The ids of the repositories whose check is enabled.
pub fn enabled(conn: &mut AnyConnection) -> QueryResult<Vec<i64>> {
    health_checks::table.filter(health_checks::enabled.eq(true)).select(health_checks::repository_id).load(conn)
}

/// Up to `limit` of the repository's assets that name a blob, as (path, digest), in path order
/// after `after`: the primary key serves it in that order, so a page costs its own rows however
/// large the repository.
pub fn asset_page(conn: &mut AnyConnection, repo: i64, after: &str, limit: i64) -> QueryResult<Vec<(String, String)>> {
    let rows: Vec<(String, Option<String>)> = assets::table
        .filter(assets::repository_id.eq(repo))
        .filter(assets::path.gt(after))
        .filter(assets::digest.is_not_null())
        .order(assets::path.asc())
        .limit(limit)
        .select((assets::path, assets::digest))
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(p, d)| Some((p, d?))).collect())
}

/// Whether the asset at `path` still names `digest` (it may have been replaced or deleted since
/// the page that listed it was read).
pub fn still_names(conn: &mut AnyConnection, repo: i64, path: &str, digest: &str) -> QueryResult<bool> {
    let now: Option<Option<String>> =
        assets::table.filter(assets::repository_id.eq(repo)).filter(assets::path.eq(path)).select(assets::digest).get_result(conn).optional()?;
    Ok(now.flatten().as_deref() == Some(digest))
}
