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
    /// For a directory user, the DN of the entry the token was made for.
    pub directory_dn: Option<String>,
}

/// How long an expired token stays listed (its owner sees that it expired) before an insert
/// deletes it.
pub const EXPIRED_KEPT_MS: i64 = 30 * 86_400_000;

/// A token [`insert`] removed on the way, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    pub id: String,
    pub username: String,
    pub realm: String,
    pub name: String,
    /// `expired` (over [`EXPIRED_KEPT_MS`] ago) or `unused` (not used since the idle limit).
    pub reason: &'static str,
}

/// Tokens [`insert`] removes at most per insert: the first insert after the idle limit is set
/// on a server of many logins does not hold the writer for all of them; each later insert
/// removes more than it adds.
pub const PURGE_BATCH: i64 = 1000;

/// Whether a token that never expires was neither used nor created since `idle_before`. One
/// given an expiry keeps the life it was given (and goes once expired).
pub fn unused_since(row: &TokenRow, idle_before: i64) -> bool {
    row.expires_at.is_none() && row.last_used_at.unwrap_or(row.created_at) < idle_before
}

/// Tokens without an expiry, neither used nor created since `at`: two ranges of
/// `api_tokens_idle` (expires_at, last_used_at, created_at).
macro_rules! unused_before {
    ($at:expr) => {
        api_tokens::expires_at
            .is_null()
            .and(api_tokens::last_used_at.lt($at))
            .or(api_tokens::expires_at.is_null().and(api_tokens::last_used_at.is_null()).and(api_tokens::created_at.lt($at)))
    };
}

/// How many tokens [`unused_since`] says no longer work (logged at start).
pub fn count_unused(conn: &mut AnyConnection, idle_before: i64) -> Result<i64, DbError> {
    Ok(api_tokens::table.filter(unused_before!(idle_before)).count().get_result(conn)?)
}

/// Inserts a token, and deletes the tokens that expired over [`EXPIRED_KEPT_MS`] ago and,
/// with `idle_before`, those without an expiry neither used nor created since (see
/// [`unused_since`]): only inserts
/// make the table grow, and a client that logs in on every run (a CI job's `npm login`, whose
/// tokens never expire) would otherwise add a row, and a live secret, for ever. What went is
/// answered for the audit log.
pub fn insert(conn: &mut AnyConnection, row: &TokenRow, idle_before: Option<i64>) -> Result<Vec<Purged>, DbError> {
    type Found = (String, String, String, String);
    let cols = (api_tokens::id, api_tokens::username, api_tokens::realm, api_tokens::name);
    let expired: Vec<Found> =
        api_tokens::table.filter(api_tokens::expires_at.lt(row.created_at - EXPIRED_KEPT_MS)).select(cols).limit(PURGE_BATCH).load(conn)?;
    let mut purged: Vec<Purged> = expired.into_iter().map(|(id, username, realm, name)| Purged { id, username, realm, name, reason: "expired" }).collect();
    if let Some(at) = idle_before {
        let room = PURGE_BATCH - purged.len() as i64;
        let unused: Vec<Found> = api_tokens::table.filter(unused_before!(at)).select(cols).limit(room.max(0)).load(conn)?;
        for (id, username, realm, name) in unused {
            if !purged.iter().any(|p| p.id == id) {
                purged.push(Purged { id, username, realm, name, reason: "unused" });
            }
        }
    }
    let ids: Vec<&String> = purged.iter().map(|p| &p.id).collect();
    if !ids.is_empty() {
        diesel::delete(api_tokens::table.filter(api_tokens::id.eq_any(ids))).execute(conn)?;
    }
    diesel::insert_into(api_tokens::table).values(row.clone()).execute(conn)?;
    Ok(purged)
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
            directory_dn: None,
        }
    }

    #[test]
    fn an_insert_deletes_the_tokens_expired_long_ago_and_keeps_the_others() {
        let day = 86_400_000;
        let now = 400 * day;
        let ((left, purged), _) = crate::db::plans::with_db(|c| {
            insert(c, &token("long-expired", 0, Some(now - EXPIRED_KEPT_MS - 1)), None).unwrap();
            insert(c, &token("just-expired", 0, Some(now - day)), None).unwrap();
            insert(c, &token("never-expires", 0, None), None).unwrap();
            let purged = insert(c, &token("new", now, Some(now + day)), None).unwrap();
            let mut ids: Vec<String> = of_user(c, "u", "local").unwrap().into_iter().map(|t| t.id).collect();
            ids.sort();
            (ids, purged)
        });
        assert_eq!(left, ["just-expired", "never-expires", "new"]);
        assert_eq!(purged.iter().map(|p| (p.id.as_str(), p.reason)).collect::<Vec<_>>(), [("long-expired", "expired")]);
    }

    /// A token that never expires goes once neither used nor created within the idle limit: a
    /// CI job's `npm login` on every run no longer adds a row, and a live secret, for ever.
    #[test]
    fn an_insert_deletes_the_tokens_unused_since_the_idle_limit() {
        let day = 86_400_000;
        let now = 800 * day;
        let idle_before = now - 365 * day;
        let used = |id: &str, created_at: i64, last_used_at: Option<i64>| TokenRow { last_used_at, ..token(id, created_at, None) };
        let ((left, purged), _) = crate::db::plans::with_db(|c| {
            insert(c, &used("never-used-old", idle_before - 1, None), None).unwrap();
            insert(c, &used("never-used-recent", idle_before + 1, None), None).unwrap();
            insert(c, &used("used-long-ago", 0, Some(idle_before - 1)), None).unwrap();
            insert(c, &used("used-lately", 0, Some(idle_before + 1)), None).unwrap();
            insert(c, &token("long-expired-and-unused", 0, Some(now - EXPIRED_KEPT_MS - 1)), None).unwrap();
            insert(c, &token("expires-later-unused", 0, Some(now + day)), None).unwrap();
            assert_eq!(count_unused(c, idle_before).unwrap(), 2);
            let purged = insert(c, &token("new", now, None), Some(idle_before)).unwrap();
            let mut ids: Vec<String> = of_user(c, "u", "local").unwrap().into_iter().map(|t| t.id).collect();
            ids.sort();
            (ids, purged)
        });
        assert_eq!(left, ["expires-later-unused", "never-used-recent", "new", "used-lately"], "a token given an expiry keeps it");
        let mut why: Vec<(&str, &str)> = purged.iter().map(|p| (p.id.as_str(), p.reason)).collect();
        why.sort();
        assert_eq!(why, [("long-expired-and-unused", "expired"), ("never-used-old", "unused"), ("used-long-ago", "unused")]);
        assert!(unused_since(&used("x", 0, Some(idle_before - 1)), idle_before) && !unused_since(&used("x", 0, Some(idle_before)), idle_before));
        assert!(!unused_since(&token("x", 0, Some(now + day)), idle_before));
    }
}
