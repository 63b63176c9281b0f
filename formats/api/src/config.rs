//! A repository's configuration as the server hands it to its format.
//!
//! The server owns the parts every repository has (name, format, kind, online, storage); all other
//! sections of the Nexus-shaped JSON (`docker`, `proxy`, `group`, ...) are kept verbatim in
//! [`RepoConfig::attributes`] and are the format's to validate and read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hosted,
    Proxy,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hosted => "hosted",
            Kind::Proxy => "proxy",
            Kind::Group => "group",
        }
    }
}

impl FromStr for Kind {
    type Err = ();
    fn from_str(s: &str) -> Result<Kind, ()> {
        match s {
            "hosted" => Ok(Kind::Hosted),
            "proxy" => Ok(Kind::Proxy),
            "group" => Ok(Kind::Group),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Nexus's `storage.writePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePolicy {
    /// Anything may be written and overwritten.
    Allow,
    /// Content may be added but a name (a tag, a file) may not be re-pointed once set.
    AllowOnce,
    /// Read-only.
    Deny,
}

impl WritePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            WritePolicy::Allow => "allow",
            WritePolicy::AllowOnce => "allow_once",
            WritePolicy::Deny => "deny",
        }
    }
}

impl FromStr for WritePolicy {
    type Err = ();
    /// Any letter case: Nexus's own clients send `ALLOW`, its API documents `allow_once`.
    fn from_str(s: &str) -> Result<WritePolicy, ()> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(WritePolicy::Allow),
            "allow_once" => Ok(WritePolicy::AllowOnce),
            "deny" => Ok(WritePolicy::Deny),
            _ => Err(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RepoConfig {
    /// Database id; stable for the life of the repository.
    pub id: i64,
    pub name: String,
    pub format: String,
    pub kind: Kind,
    pub online: bool,
    pub blob_store: String,
    pub write_policy: WritePolicy,
    pub strict_content_type: bool,
    /// With `allow_once`, the tag `latest` may still be moved (Nexus's `storage.latestPolicy`).
    pub latest_policy: bool,
    /// Anonymous callers may read (pull, download). Off unless an admin grants it.
    pub anonymous_read: bool,
    /// `storage.hardQuota.limit` in bytes (hosted repositories): writes are refused once what
    /// the repository references reaches it (see [`crate::quota`]).
    pub hard_quota: Option<u64>,
    /// A proxy's cache invalidated at this time (ms): what it cached before is asked of the
    /// upstream again (`POST .../repositories/{name}/invalidate-cache`).
    pub cache_invalidated_at: Option<i64>,
    /// Every other top-level section of the repository JSON (`docker`, `proxy`, `group`, ...).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl RepoConfig {
    /// An online hosted repository on the `default` blob store with every other setting at
    /// its default (tests and tools; the server builds its configurations from the API's JSON).
    pub fn hosted(id: i64, name: &str, format: &str) -> RepoConfig {
        RepoConfig {
            id,
            name: name.into(),
            format: format.into(),
            kind: Kind::Hosted,
            online: true,
            blob_store: "default".into(),
            write_policy: WritePolicy::Allow,
            strict_content_type: true,
            latest_policy: false,
            anonymous_read: false,
            hard_quota: None,
            cache_invalidated_at: None,
            attributes: Default::default(),
        }
    }

    /// The `attributes[section]` object, or an empty one.
    pub fn section(&self, section: &str) -> serde_json::Map<String, serde_json::Value> {
        match self.attributes.get(section) {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        }
    }
}

/// Refuses `storage.strictContentTypeValidation: false` where the format always validates what
/// it serves (`checked` says how), so that `false` would turn nothing off. Nexus sends `true`
/// by default, and `true` is always accepted.
pub fn content_always_checked(config: &RepoConfig, checked: &str) -> Result<(), ConfigError> {
    if config.strict_content_type {
        return Ok(());
    }
    Err(ConfigError::new("storage.strictContentTypeValidation", format!("must be true for a {} {} repository: {checked}", config.format, config.kind.as_str())))
}

/// A configuration value the server or a format refuses. `field` is the JSON path
/// (`docker.httpPort`) so that the API's 400 names it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
    /// What kind of mistake it is, for clients that word it in their own language (the
    /// console): `required`, `unknown`, `type.string`, `type.boolean`, `type.object`,
    /// `type.strings`; `invalid` for every other (its message says what is wrong).
    pub code: &'static str,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), message: message.into(), code: "invalid" }
    }

    fn coded(field: impl Into<String>, code: &'static str, message: &str) -> ConfigError {
        ConfigError { field: field.into(), message: message.to_string(), code }
    }

    pub fn required(field: impl Into<String>) -> ConfigError {
        ConfigError::coded(field, "required", "is required")
    }

    pub fn unknown_field(field: impl Into<String>) -> ConfigError {
        ConfigError::coded(field, "unknown", "unknown field")
    }

    pub fn not_string(field: impl Into<String>) -> ConfigError {
        ConfigError::coded(field, "type.string", "must be a string")
    }

    pub fn not_boolean(field: impl Into<String>) -> ConfigError {
        ConfigError::coded(field, "type.boolean", "must be true or false")
    }

    pub fn not_object(field: impl Into<String>) -> ConfigError {
        ConfigError::coded(field, "type.object", "must be a JSON object")
    }

    pub fn not_strings(field: impl Into<String>) -> ConfigError {
        ConfigError::coded(field, "type.strings", "must be a list of strings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_policy_accepts_any_case() {
        assert_eq!("ALLOW".parse(), Ok(WritePolicy::Allow));
        assert_eq!("Allow_Once".parse(), Ok(WritePolicy::AllowOnce));
        assert_eq!("deny".parse(), Ok(WritePolicy::Deny));
        assert_eq!("sometimes".parse::<WritePolicy>(), Err(()));
    }
}
