//! Read-only mode as the database holds it: the setting `read_only` (empty: the server
//! writes), which every node reads at start and again when it hears that the setting changed
//! (`db::notify`, `db::counters`).
//!
//! What makes a freeze hold for a backup on a cluster, where a node may not have heard of it
//! yet: every metadata write checks the setting inside its own transaction ([`guard`]). On
//! PostgreSQL that check share-locks the setting's row (`FOR SHARE`) and a freeze updates the
//! row ([`store`]), so a freeze waits for the writes already past their check, and a write that
//! reads the row while a freeze holds it fails to serialize once the freeze commits and is run
//! again (`Db::write` retries), this time seeing the freeze: once the freeze has committed, no
//! metadata write commits. The row always exists (migration 000040): a row lock cannot guard
//! a row that is not there. An advisory lock did not do: the transactions are SERIALIZABLE, so
//! a write's snapshot was taken when it began waiting for the lock, before the freeze
//! committed, and it read the setting as it was before the freeze. On SQLite writers are
//! serialized by the database itself.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::settings as table;
use super::{settings, AnyConnection, DbError};

pub const KEY: &str = "read_only";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// Why, in the administrator's words (may be empty).
    pub reason: String,
    /// Who froze it.
    pub by: String,
    /// When, in milliseconds since the epoch.
    pub at: i64,
}

impl Freeze {
    /// What a refused client is told.
    pub fn message(&self) -> String {
        let why = if self.reason.is_empty() { String::new() } else { format!(" ({})", self.reason) };
        format!("wharf is in read-only mode since {}{why}: writes are refused until an administrator releases it", wharf_format::rfc3339_millis(self.at))
    }
}

pub fn load(conn: &mut AnyConnection) -> Result<Option<Freeze>, DbError> {
    Ok(parse(settings::get(conn, KEY)?))
}

fn parse(value: Option<String>) -> Option<Freeze> {
    // A value this version cannot read still freezes: better refuse writes than lose a backup.
    value
        .filter(|v| !v.is_empty())
        .map(|v| serde_json::from_str(&v).unwrap_or_else(|_| Freeze { reason: "set by another version of wharf".into(), by: String::new(), at: 0 }))
}

/// For a write transaction, before it writes: the freeze that forbids it, if any (see the
/// module documentation for the row lock it takes on PostgreSQL, held until the transaction
/// ends).
pub fn guard(conn: &mut AnyConnection) -> Result<Option<Freeze>, DbError> {
    if let AnyConnection::Postgresql(c) = conn {
        let value = table::table.find(KEY).select(table::value).for_share().get_result::<String>(c).optional()?;
        return Ok(parse(value));
    }
    load(conn)
}

/// Freezes (`Some`) or releases (`None`), inside the caller's transaction.
pub fn store(conn: &mut AnyConnection, freeze: Option<&Freeze>) -> Result<(), DbError> {
    let value = freeze.map(|f| serde_json::to_string(f).unwrap_or_default()).unwrap_or_default();
    settings::set(conn, KEY, &value)
}
