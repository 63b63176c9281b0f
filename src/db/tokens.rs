//! User API tokens. The table holds a sha256 of each secret (secrets are 190 random bits, so a
//! plain hash is enough), never the secret.

use diesel::prelude::*;

use super::schema::api_tokens;
use super::{lower, AnyConnection, DbError};

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    pub id: String,
    pub username: String,
    pub name: String,
    pub token_hash: String,
    pub prefix: String,
    pub readonly: bool,
    pub repository: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// `local` or `ldap`: the realm of `username`.
    pub realm: String,
}

/// How long an expired token stays listed (its owner sees that it expired) before an insert
/// deletes it.
pub const EXPIRED_KEPT_MS: i64 = 30 * 86_400_000;

/// Inserts a token, and deletes the tokens that expired over [`EXPIRED_KEPT_MS`] ago: only
/// inserts make the table grow, and a client that logs in on every run (a CI job's `npm login`
/// with a token of limited life) would otherwise add a row for ever.
pub fn insert(conn: &mut AnyConnection, row: &TokenRow) -> Result<(), DbError> {
    diesel::delete(api_tokens::table.filter(api_tokens::expires_at.lt(row.created_at - EXPIRED_KEPT_MS))).execute(conn)?;
    diesel::insert_into(api_tokens::table).values(row.clone()).execute(conn)?;
    Ok(())
}

pub fn by_hash(conn: &mut AnyConnection, hash: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(api_tokens::table.filter(api_tokens::token_hash.eq(hash)).select(TokenRow::as_select()).get_result(conn).optional()?)
}

pub fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(api_tokens::table.filter(api_tokens::id.eq(id)).select(TokenRow::as_select()).get_result(conn).optional()?)
}

/// Tokens of `username` (any ASCII case) in `realm`.
macro_rules! owned_by {
    ($username:expr, $realm:expr) => {
        api_tokens::table.filter(lower(api_tokens::username).eq(wharf_format::canonical_user($username))).filter(api_tokens::realm.eq($realm))
    };
}

pub fn of_user(conn: &mut AnyConnection, username: &str, realm: &str) -> Result<Vec<TokenRow>, DbError> {
    Ok(owned_by!(username, realm).order(api_tokens::created_at.asc()).select(TokenRow::as_select()).load(conn)?)
}

/// Deletes one of `username`'s tokens by id or by its hash; `false` if there is none.
pub fn delete(conn: &mut AnyConnection, username: &str, realm: &str, key: &str) -> Result<bool, DbError> {
    let n = diesel::delete(owned_by!(username, realm).filter(api_tokens::id.eq(key).or(api_tokens::token_hash.eq(key)))).execute(conn)?;
    Ok(n > 0)
}

/// Deletes the token with this hash; its (owner, id) if there was one.
pub fn delete_by_hash(conn: &mut AnyConnection, hash: &str) -> Result<Option<(String, String)>, DbError> {
    let found: Option<(String, String)> =
        api_tokens::table.filter(api_tokens::token_hash.eq(hash)).select((api_tokens::username, api_tokens::id)).get_result(conn).optional()?;
    if found.is_some() {
        diesel::delete(api_tokens::table.filter(api_tokens::token_hash.eq(hash))).execute(conn)?;
    }
    Ok(found)
}

pub fn delete_of_user(conn: &mut AnyConnection, username: &str, realm: &str) -> Result<usize, DbError> {
    Ok(diesel::delete(owned_by!(username, realm)).execute(conn)?)
}

pub fn touch(conn: &mut AnyConnection, id: &str, at: i64) -> Result<(), DbError> {
    diesel::update(api_tokens::table.filter(api_tokens::id.eq(id))).set(api_tokens::last_used_at.eq(Some(at))).execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, created_at: i64, expires_at: Option<i64>) -> TokenRow {
        TokenRow {
            id: id.into(),
            username: "u".into(),
            name: id.into(),
            token_hash: format!("hash-{id}"),
            prefix: "p".into(),
            readonly: false,
            repository: None,
            created_at,
            expires_at,
            last_used_at: None,
            realm: "local".into(),
        }
    }

    #[test]
    fn an_insert_deletes_the_tokens_expired_long_ago_and_keeps_the_others() {
        let day = 86_400_000;
        let now = 400 * day;
        let (left, _) = crate::db::plans::with_db(|c| {
            insert(c, &token("long-expired", 0, Some(now - EXPIRED_KEPT_MS - 1))).unwrap();
            insert(c, &token("just-expired", 0, Some(now - day))).unwrap();
            insert(c, &token("never-expires", 0, None)).unwrap();
            insert(c, &token("new", now, Some(now + day))).unwrap();
            let mut ids: Vec<String> = of_user(c, "u", "local").unwrap().into_iter().map(|t| t.id).collect();
            ids.sort();
            ids
        });
        assert_eq!(left, ["just-expired", "never-expires", "new"]);
    }
}
