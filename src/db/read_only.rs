//! Read-only mode as the database holds it: the setting `read_only` (empty or absent: the
//! server writes), which every node reads at start and again when it hears that the setting
//! changed (`db::notify`, `db::counters`).
//!
//! What makes a freeze hold for a backup on a cluster, where a node may not have heard of it
//! yet: every metadata write checks the setting inside its own transaction ([`guard`]). On
//! PostgreSQL that check first takes the shared side of an advisory lock and a freeze takes its
//! exclusive side ([`store`]), so a freeze waits for the writes already past their check, and
//! every write after it sees it: once the freeze has committed, no metadata write commits. On
//! SQLite writers are serialized by the database itself.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde::{Deserialize, Serialize};

use super::{settings, AnyConnection, DbError};

pub const KEY: &str = "read_only";

/// The advisory lock's key on PostgreSQL ("wharf_ro").
const LOCK: i64 = 0x7768_6172_665f_726f;

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
    // A value this version cannot read still freezes: better refuse writes than lose a backup.
    Ok(settings::get(conn, KEY)?
        .filter(|v| !v.is_empty())
        .map(|v| serde_json::from_str(&v).unwrap_or_else(|_| Freeze { reason: "set by another version of wharf".into(), by: String::new(), at: 0 })))
}

/// For a write transaction, before it writes: the freeze that forbids it, if any (see the
/// module documentation for the lock it takes on PostgreSQL, held until the transaction ends).
pub fn guard(conn: &mut AnyConnection) -> Result<Option<Freeze>, DbError> {
    if let AnyConnection::Postgresql(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock_shared($1)").bind::<BigInt, _>(LOCK).execute(c)?;
    }
    load(conn)
}

/// Freezes (`Some`) or releases (`None`), inside the caller's transaction.
pub fn store(conn: &mut AnyConnection, freeze: Option<&Freeze>) -> Result<(), DbError> {
    if let AnyConnection::Postgresql(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<BigInt, _>(LOCK).execute(c)?;
    }
    let value = freeze.map(|f| serde_json::to_string(f).unwrap_or_default()).unwrap_or_default();
    settings::set(conn, KEY, &value)
}
