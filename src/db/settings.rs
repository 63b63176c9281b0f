//! Server-wide values that every node must agree on (the token signing key). Secret values go
//! through the `*_secret` functions: stored sealed with the secret key (see
//! [`crate::security::secrets`]), returned in plaintext.

use diesel::prelude::*;

use super::schema::settings;
use super::{AnyConnection, DbError};
use crate::security::secrets;

pub fn get(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, DbError> {
    Ok(settings::table.find(key).select(settings::value).get_result(conn).optional()?)
}

/// Returns the stored value, storing `make()` first if there is none. When two nodes race, both
/// get the winner's value.
///
/// One `INSERT ... ON CONFLICT DO NOTHING`, not "insert and catch the unique violation": inside a
/// transaction PostgreSQL refuses every statement after an error, so the read that follows
/// would fail. diesel's `MultiConnection` has no `on_conflict`, hence the same query per backend.
pub fn get_or_init(conn: &mut AnyConnection, key: &str, make: impl FnOnce() -> String) -> Result<String, DbError> {
    if let Some(v) = get(conn, key)? {
        return Ok(v);
    }
    let row = (settings::key.eq(key), settings::value.eq(make()));
    match conn {
        AnyConnection::Postgresql(c) => diesel::insert_into(settings::table).values(row).on_conflict_do_nothing().execute(c)?,
        AnyConnection::Sqlite(c) => diesel::insert_into(settings::table).values(row).on_conflict_do_nothing().execute(c)?,
    };
    get(conn, key)?.ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// Stores `value` under `key`, replacing what was there (one upsert, see [`get_or_init`]).
pub fn set(conn: &mut AnyConnection, key: &str, value: &str) -> Result<(), DbError> {
    let row = (settings::key.eq(key), settings::value.eq(value));
    match conn {
        AnyConnection::Postgresql(c) => {
            diesel::insert_into(settings::table).values(row).on_conflict(settings::key).do_update().set(settings::value.eq(value)).execute(c)?
        }
        AnyConnection::Sqlite(c) => {
            diesel::insert_into(settings::table).values(row).on_conflict(settings::key).do_update().set(settings::value.eq(value)).execute(c)?
        }
    };
    Ok(())
}

/// Replaces the value only if it is still `old`; whether it did (a compare-and-swap that holds
/// on both databases: one conditional UPDATE, checked by rows affected).
pub fn replace_if(conn: &mut AnyConnection, key: &str, old: &str, new: &str) -> Result<bool, DbError> {
    let n = diesel::update(settings::table.filter(settings::key.eq(key)).filter(settings::value.eq(old))).set(settings::value.eq(new)).execute(conn)?;
    Ok(n == 1)
}

/// A secret setting in plaintext.
pub fn get_secret(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, DbError> {
    get(conn, key)?.map(|v| secrets::open(&v, &secrets::setting_location(key))).transpose().map_err(DbError::from)
}

/// [`get_or_init`] for a secret: `make()`'s value is stored sealed; the plaintext is returned.
pub fn get_or_init_secret(conn: &mut AnyConnection, key: &str, make: impl FnOnce() -> String) -> Result<String, DbError> {
    let at = secrets::setting_location(key);
    let sealed = secrets::seal(&make(), &at)?;
    let stored = get_or_init(conn, key, || sealed)?;
    Ok(secrets::open(&stored, &at)?)
}

/// Seals a secret setting stored in plaintext or as v1 by an older version; whether it did.
pub fn seal_in_place(conn: &mut AnyConnection, key: &str) -> Result<bool, DbError> {
    match get(conn, key)? {
        Some(v) if !secrets::is_current(&v) => replace_if(conn, key, &v, &secrets::reseal(&v, &secrets::setting_location(key))?),
        _ => Ok(false),
    }
}
