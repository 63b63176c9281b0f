//! Checks that run before pending migrations: what a migration would refuse with a raw SQL error
//! (and a server that stops on it) is found first and named, with what to do. Nothing is changed.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_migrations::MigrationHarness;

use super::schema::users;
use super::{AnyConnection, DbError, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

/// The first migration: while it is pending the database is empty.
const INIT: &str = "2026-11-24-000001_init";
/// Makes user names one name whatever their ASCII case: a unique index on `lower(username)`.
const IDENTITY: &str = "2026-12-01-000001_identity";

/// Fails, naming the users and the remedy, where a pending migration would fail on the data.
pub fn before_migrations(conn: &mut AnyConnection) -> Result<(), DbError> {
    let pending = pending(conn)?;
    if pending.iter().any(|m| m == INIT) || !pending.iter().any(|m| m == IDENTITY) {
        return Ok(());
    }
    let names: Vec<String> = users::table.select(users::username).load(conn)?;
    let clashes = case_clashes(names);
    if clashes.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = clashes.iter().map(|group| group.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" and ")).collect();
    let example = &clashes[0][0];
    Err(DbError::Precheck(format!(
        "cannot upgrade the database: from this version user names ignore ASCII case (migration {IDENTITY}), and these users' names differ only in \
         case: {}. Keep one user of each: delete the others with the version of wharf that made them (DELETE \
         /service/rest/v1/security/users/<name>), or rename them in the database (for example UPDATE users SET username = '{example}-2' WHERE \
         username = '{example}'), then start again. The database was not changed.",
        listed.join("; ")
    )))
}

/// The names of the migrations not applied yet.
fn pending(conn: &mut AnyConnection) -> Result<Vec<String>, DbError> {
    let names = match conn {
        AnyConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|p| p.iter().map(|m| m.name().to_string()).collect()),
        AnyConnection::Postgresql(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|p| p.iter().map(|m| m.name().to_string()).collect()),
    };
    names.map_err(|e| DbError::Migration(e.to_string()))
}

/// Groups of two or more names equal but for ASCII case, each sorted, in order of their
/// canonical name.
fn case_clashes(names: Vec<String>) -> Vec<Vec<String>> {
    let mut by_canonical: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in names {
        by_canonical.entry(wharf_format::canonical_user(&n)).or_default().push(n);
    }
    by_canonical
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
        let names = ["admin", "Admin", "bob", "carol", "CAROL", "Carol"].map(String::from).to_vec();
        assert_eq!(case_clashes(names), vec![vec!["Admin".to_string(), "admin".into()], vec!["CAROL".into(), "Carol".into(), "carol".into()]]);
        assert!(case_clashes(vec!["a".into(), "b".into()]).is_empty());
    }
}
