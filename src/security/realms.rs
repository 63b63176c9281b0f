//! Server-wide security switches an administrator sets through the API (Nexus's
//! `/security/anonymous` and `/security/realms/active`), kept as settings so that every node
//! agrees and hears of a change (`db::notify`, `db::counters`).
//!
//! - Anonymous access (on unless turned off): off, a caller without credentials holds nothing,
//!   whatever the `nx-anonymous` role or a repository's `anonymousRead` grant, and is asked to
//!   sign in.
//! - The active realms: `local` and `ldap`, in the order logins are checked; once set here they
//!   replace the configuration file's `security.realms`.

use crate::db::{settings, AnyConnection, DbError};

pub const ANONYMOUS_KEY: &str = "security.anonymous";
pub const REALMS_KEY: &str = "security.realms";

/// Nexus's realm ids and wharf's names for them. Docker bearer tokens and npm tokens are always
/// on in wharf: their ids are accepted (scripts written for Nexus list them) and must be listed.
pub const LOCAL_ID: &str = "NexusAuthenticatingRealm";
pub const LDAP_ID: &str = "LdapRealm";
pub const ALWAYS_ON: &[(&str, &str)] = &[("DockerToken", "Docker Bearer Token Realm"), ("NpmToken", "npm Bearer Token Realm")];

pub fn id_of(realm: &str) -> &'static str {
    match realm {
        "ldap" => LDAP_ID,
        _ => LOCAL_ID,
    }
}

pub fn anonymous_enabled(conn: &mut AnyConnection) -> Result<bool, DbError> {
    Ok(settings::get(conn, ANONYMOUS_KEY)?.as_deref() != Some("false"))
}

pub fn set_anonymous(conn: &mut AnyConnection, enabled: bool) -> Result<(), DbError> {
    settings::set(conn, ANONYMOUS_KEY, if enabled { "true" } else { "false" })
}

/// The realms set through the API (`local`, `ldap`), if any.
pub fn stored(conn: &mut AnyConnection) -> Result<Option<Vec<String>>, DbError> {
    Ok(settings::get(conn, REALMS_KEY)?.and_then(|v| serde_json::from_str(&v).ok()))
}

pub fn store(conn: &mut AnyConnection, realms: &[String]) -> Result<(), DbError> {
    settings::set(conn, REALMS_KEY, &serde_json::to_string(realms).unwrap_or_default())
}
