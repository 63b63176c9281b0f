//! Local users. Passwords are argon2 PHC strings; hashing happens in `security`.

use diesel::prelude::*;
use wharf_format::now_millis;

use super::schema::users;
use super::{AnyConnection, DbError};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub status: String,
    pub admin: bool,
    pub created_at: i64,
}

pub fn get(conn: &mut AnyConnection, username: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table.filter(users::username.eq(username)).select(UserRow::as_select()).first(conn).optional()?)
}

pub fn count(conn: &mut AnyConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

pub fn insert(conn: &mut AnyConnection, username: &str, password_hash: &str, admin: bool) -> Result<(), DbError> {
    diesel::insert_into(users::table)
        .values((
            users::username.eq(username),
            users::password_hash.eq(password_hash),
            users::admin.eq(admin),
            users::created_at.eq(now_millis()),
        ))
        .execute(conn)?;
    Ok(())
}
