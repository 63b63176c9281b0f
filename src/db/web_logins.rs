//! Web logins in progress (npm's `/-/v1/login`), shared by every node: the browser's approval
//! and the client's polls may reach different nodes. See the migration for the columns.

use diesel::prelude::*;

use super::schema::web_logins as wl;
use super::{AnyConnection, DbError};

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = wl)]
pub struct WebLoginRow {
    pub id: String,
    pub done_hash: String,
    pub repository: String,
    pub client: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub username: Option<String>,
    /// The new token's secret, sealed, once approved.
    pub token: Option<String>,
}

pub fn insert(conn: &mut AnyConnection, row: &WebLoginRow) -> Result<(), DbError> {
    diesel::insert_into(wl::table).values(row.clone()).execute(conn)?;
    Ok(())
}

/// Removes the logins that expired before `now` and returns them (an approved one's token was
/// never collected: the caller revokes it).
pub fn take_expired(conn: &mut AnyConnection, now: i64) -> Result<Vec<WebLoginRow>, DbError> {
    let rows: Vec<WebLoginRow> = wl::table.filter(wl::expires_at.lt(now)).select(WebLoginRow::as_select()).load(conn)?;
    diesel::delete(wl::table.filter(wl::expires_at.lt(now))).execute(conn)?;
    Ok(rows)
}

/// The login `id`, unless it expired.
pub fn by_id(conn: &mut AnyConnection, id: &str, now: i64) -> Result<Option<WebLoginRow>, DbError> {
    Ok(wl::table.find(id).filter(wl::expires_at.ge(now)).select(WebLoginRow::as_select()).get_result(conn).optional()?)
}

/// Records the approval of a login still open (not approved, not expired); `false` if it is not.
pub fn approve(conn: &mut AnyConnection, id: &str, username: &str, sealed_token: &str, now: i64) -> Result<bool, DbError> {
    let n = diesel::update(wl::table.find(id).filter(wl::token.is_null()).filter(wl::expires_at.ge(now)))
        .set((wl::username.eq(username), wl::token.eq(sealed_token)))
        .execute(conn)?;
    Ok(n == 1)
}

/// The login the client polls with this secret's hash, unless it expired; an approved one is
/// taken (deleted): its token is handed out once.
pub fn poll(conn: &mut AnyConnection, done_hash: &str, now: i64) -> Result<Option<WebLoginRow>, DbError> {
    let row: Option<WebLoginRow> =
        wl::table.filter(wl::done_hash.eq(done_hash)).filter(wl::expires_at.ge(now)).select(WebLoginRow::as_select()).get_result(conn).optional()?;
    if let Some(r) = &row {
        if r.token.is_some() && diesel::delete(wl::table.find(&r.id).filter(wl::token.is_not_null())).execute(conn)? != 1 {
            // Another poll took it first.
            return Ok(None);
        }
    }
    Ok(row)
}
