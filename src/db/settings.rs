//! Server-wide values that every node must agree on (the token signing key).

use diesel::prelude::*;

use super::schema::settings;
use super::{is_unique_violation, AnyConnection, DbError};

pub fn get(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, DbError> {
    Ok(settings::table.find(key).select(settings::value).first(conn).optional()?)
}

/// Returns the stored value, storing `make()` first if there is none. When two nodes race, both
/// get the winner's value.
pub fn get_or_init(conn: &mut AnyConnection, key: &str, make: impl FnOnce() -> String) -> Result<String, DbError> {
    if let Some(v) = get(conn, key)? {
        return Ok(v);
    }
    match diesel::insert_into(settings::table).values((settings::key.eq(key), settings::value.eq(make()))).execute(conn) {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {}
        Err(e) => return Err(e.into()),
    }
    get(conn, key)?.ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// Stores `value` under `key`, replacing what was there.
pub fn set(conn: &mut AnyConnection, key: &str, value: &str) -> Result<(), DbError> {
    let n = diesel::update(settings::table.find(key)).set(settings::value.eq(value)).execute(conn)?;
    if n == 0 {
        diesel::insert_into(settings::table).values((settings::key.eq(key), settings::value.eq(value))).execute(conn)?;
    }
    Ok(())
}
