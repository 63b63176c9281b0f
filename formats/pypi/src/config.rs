//! The sections of a PyPI repository's JSON (Nexus's shape) and their validation.

use serde_json::{Map, Value};
use wharf_format::{ConfigError, GroupSettings, Kind, ProxySettings};

/// Sections each kind may carry besides name, online and storage.
fn sections(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Hosted => &["cleanup", "component"],
        Kind::Proxy => &["cleanup", "proxy", "negativeCache", "httpClient", "routingRule", "routingRuleName", "replication", "pypi"],
        Kind::Group => &["group"],
    }
}

pub fn validate(kind: Kind, attrs: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    let mut out = Map::new();
    for (k, v) in attrs {
        if !sections(kind).contains(&k.as_str()) {
            return Err(ConfigError::new(k.clone(), "unknown field"));
        }
        match k.as_str() {
            "cleanup" | "component" | "pypi" if v.is_null() || v.is_object() => {
                out.insert(k.clone(), v.clone());
            }
            "cleanup" | "component" | "pypi" => return Err(ConfigError::new(k.clone(), "must be an object")),
            "routingRule" | "routingRuleName" | "replication" if !v.is_null() => {
                return Err(ConfigError::new(k.clone(), "routing rules and replication are not supported"));
            }
            _ => {}
        }
    }
    match kind {
        Kind::Proxy => out.extend(ProxySettings::parse(attrs)?.raw),
        Kind::Group => {
            out.insert("group".into(), GroupSettings::parse(attrs.get("group"))?.to_json());
        }
        Kind::Hosted => {}
    }
    Ok(out)
}
