//! Checks that run before pending migrations: what a migration would refuse with a raw SQL error
//! (and a server that stops on it) is found first and named, with what to do. Nothing is changed.

use std::collections::{BTreeMap, HashSet};

use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use super::{AnyConnection, DbError, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

/// The first migration: while it is pending the database is empty.
const INIT: &str = "2026-11-24-000001_init";
/// Makes user names one name whatever their case: a unique index on `lower(username)` (ASCII
/// case on SQLite; PostgreSQL's `lower()` folds other letters too), and tokens found by
/// `lower(username)`.
const IDENTITY: &str = "2026-12-01-000001_identity";

/// Users whose names the unique index would take for one: `lower()` in SQL, not in Rust, so that
/// the check folds exactly as the index will on this backend.
const CLASHING_USERS: &str = "SELECT lower(username) AS folded, username FROM users \
     WHERE lower(username) IN (SELECT lower(username) FROM users GROUP BY lower(username) HAVING COUNT(*) > 1)";

/// Tokens whose name is no user's but, case ignored, is another user's: after the migration they
/// would log in as that user (a token left behind by renaming `Admin`, say, would become
/// `admin`'s).
const STRAY_TOKENS: &str = "SELECT DISTINCT t.username AS token_user, u.username AS user_name FROM api_tokens t \
     JOIN users u ON lower(u.username) = lower(t.username) \
     WHERE NOT EXISTS (SELECT 1 FROM users x WHERE x.username = t.username)";

#[derive(QueryableByName)]
struct Clashing {
    #[diesel(sql_type = Text)]
    folded: String,
    #[diesel(sql_type = Text)]
    username: String,
}

#[derive(QueryableByName)]
struct Stray {
    #[diesel(sql_type = Text)]
    token_user: String,
    #[diesel(sql_type = Text)]
    user_name: String,
}

/// Fails, naming the users and tokens and the remedy, where a pending migration would fail on the
/// data or give a token to another user.
pub fn before_migrations(conn: &mut AnyConnection) -> Result<(), DbError> {
    let pending = pending(conn)?;
    if pending.iter().any(|m| m == INIT) || !pending.iter().any(|m| m == IDENTITY) {
        return Ok(());
    }
    let clashing: Vec<Clashing> = diesel::sql_query(CLASHING_USERS).load(conn)?;
    let clashes = case_clashes(clashing.into_iter().map(|c| (c.folded, c.username)));
    let mut strays: Vec<Stray> = diesel::sql_query(STRAY_TOKENS).load(conn)?;
    strays.sort_by(|a, b| (&a.token_user, &a.user_name).cmp(&(&b.token_user, &b.user_name)));
    let mut problems = Vec::new();
    if let Some(group) = clashes.first() {
        let listed: Vec<String> = clashes.iter().map(|group| group.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" and ")).collect();
        let example = sql_literal(&group[0]);
        let renamed = sql_literal(&format!("{}-2", group[0]));
        problems.push(format!(
            "user names ignore case from this version (migration {IDENTITY}), and these users' names differ only in case: {}. Keep one user \
             of each: delete the others with the version of wharf that made them (DELETE /service/rest/v1/security/users/<name>, which \
             deletes their tokens too), or rename them in the database together with their tokens, which would otherwise log in as the \
             user whose name they then match (for example UPDATE users SET username = {renamed} WHERE username = {example}; UPDATE \
             api_tokens SET username = {renamed} WHERE username = {example})",
            listed.join("; ")
        ));
    }
    if let Some(first) = strays.first() {
        let listed: Vec<String> = strays.iter().map(|s| format!("{:?} (would become {:?}'s)", s.token_user, s.user_name)).collect();
        problems.push(format!(
            "API tokens of these names, which no user has, would log in as the user whose name matches when case is ignored: {}. Delete \
             them (for example DELETE FROM api_tokens WHERE username = {})",
            listed.join(", "),
            sql_literal(&first.token_user)
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(DbError::Precheck(format!("cannot upgrade the database: {}. Then start again. The database was not changed.", problems.join("; and "))))
}

/// Fails, naming them, when the database holds migrations this version does not know: a newer
/// version migrated it (an upgrade rolled back by starting the old binary again, or a node left
/// on the old version in a cluster). Its rows may mean what this version would misread or
/// overwrite (docs/deploy.md, "Upgrading a cluster"). For the start: the bookkeeping table is
/// made if the database is new.
pub fn not_newer(conn: &mut AnyConnection) -> Result<(), DbError> {
    let applied = match conn {
        AnyConnection::Sqlite(c) => c.applied_migrations(),
        AnyConnection::Postgresql(c) => c.applied_migrations(),
    }
    .map_err(|e| DbError::Migration(e.to_string()))?;
    judge(conn, applied.into_iter().map(|v| v.to_string()).collect()).map_err(|e| match e {
        DbError::Newer(why) => DbError::Newer(format!("{why} The database was not changed.")),
        other => other,
    })
}

/// [`not_newer`] for a running node (a newer node migrated the database under it): a read only.
pub fn still_not_newer(conn: &mut AnyConnection) -> Result<(), DbError> {
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let applied: Vec<Applied> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(conn)?;
    judge(conn, applied.into_iter().map(|a| a.version).collect())
}

fn judge(conn: &AnyConnection, applied: Vec<String>) -> Result<(), DbError> {
    fn known<DB: diesel::backend::Backend>(source: EmbeddedMigrations) -> diesel::migration::Result<HashSet<String>>
    where
        EmbeddedMigrations: MigrationSource<DB>,
    {
        Ok(MigrationSource::<DB>::migrations(&source)?.iter().map(|m| m.name().version().to_string()).collect())
    }
    let known = match conn {
        AnyConnection::Sqlite(_) => known::<diesel::sqlite::Sqlite>(SQLITE_MIGRATIONS),
        AnyConnection::Postgresql(_) => known::<diesel::pg::Pg>(POSTGRES_MIGRATIONS),
    }
    .map_err(|e| DbError::Migration(e.to_string()))?;
    let mut unknown: Vec<String> = applied.into_iter().filter(|v| !known.contains(v)).collect();
    unknown.sort();
    let which = match unknown.as_slice() {
        [] => return Ok(()),
        [one] => format!("migration {one} is"),
        many => format!("migrations {} are", many.join(", ")),
    };
    Err(DbError::Newer(format!(
        "the database was migrated by a newer version of wharf than this one ({}): {which} unknown to it. Start that version or a newer \
         one; to go back to this version, restore the backup taken before the upgrade. Nodes of two versions cannot share a database.",
        env!("CARGO_PKG_VERSION")
    )))
}

/// `s` as an SQL string literal, for statements the message suggests.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The names of the migrations not applied yet.
fn pending(conn: &mut AnyConnection) -> Result<Vec<String>, DbError> {
    let names = match conn {
        AnyConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|p| p.iter().map(|m| m.name().to_string()).collect()),
        AnyConnection::Postgresql(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|p| p.iter().map(|m| m.name().to_string()).collect()),
    };
    names.map_err(|e| DbError::Migration(e.to_string()))
}

/// Names grouped by their folded form (as the database folds them), each group sorted, groups in
/// order of their folded name; only groups of two or more.
fn case_clashes(names: impl IntoIterator<Item = (String, String)>) -> Vec<Vec<String>> {
    let mut by_folded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (folded, n) in names {
        by_folded.entry(folded).or_default().push(n);
    }
    by_folded
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_only_in_case_are_grouped() {
        let names = ["admin", "Admin", "bob", "carol", "CAROL", "Carol"].map(|n| (n.to_ascii_lowercase(), n.to_string()));
        assert_eq!(case_clashes(names), vec![vec!["Admin".to_string(), "admin".into()], vec!["CAROL".into(), "Carol".into(), "carol".into()]]);
        assert!(case_clashes([("a".into(), "a".into()), ("b".into(), "b".into())]).is_empty());
    }
}
