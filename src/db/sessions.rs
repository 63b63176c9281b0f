//! Console sessions. The cookie is a signed token naming a row here; a session is valid only
//! while its row exists, so logout, a password change, disabling or deleting the user end it
//! on every node at once.

use diesel::prelude::*;

use super::schema::sessions;
use super::{lower, AnyConnection, DbError};

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub username: String,
    /// `local` or `ldap`.
    pub realm: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Stores a new session, and forgets the ones that have expired.
pub fn insert(conn: &mut AnyConnection, row: &SessionRow) -> Result<(), DbError> {
    diesel::delete(sessions::table.filter(sessions::expires_at.lt(row.created_at))).execute(conn)?;
    diesel::insert_into(sessions::table).values(row.clone()).execute(conn)?;
    Ok(())
}

/// The session `id`, unless it has expired.
pub fn get(conn: &mut AnyConnection, id: &str, now: i64) -> Result<Option<SessionRow>, DbError> {
    Ok(sessions::table.filter(sessions::id.eq(id)).filter(sessions::expires_at.gt(now)).select(SessionRow::as_select()).get_result(conn).optional()?)
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(sessions::table.filter(sessions::id.eq(id))).execute(conn)? > 0)
}

/// Ends every session of `username` (any ASCII case), in every realm: the name now means
/// someone else, or their password changed.
pub fn delete_of_user(conn: &mut AnyConnection, username: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(sessions::table.filter(lower(sessions::username).eq(wharf_format::canonical_user(username)))).execute(conn)?)
}
