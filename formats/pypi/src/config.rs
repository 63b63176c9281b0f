//! The sections of a PyPI repository's JSON (Nexus's shape) and their validation.

use serde_json::{Map, Value};
use wharf_format::{ConfigError, Kind};

pub fn validate(kind: Kind, attrs: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    if kind != Kind::Hosted {
        return Err(ConfigError::new("type", format!("pypi {kind} repositories are not supported yet")));
    }
    let mut out = Map::new();
    for (k, v) in attrs {
        match k.as_str() {
            "cleanup" | "component" if v.is_null() || v.is_object() => {
                out.insert(k.clone(), v.clone());
            }
            "cleanup" | "component" => return Err(ConfigError::new(k.clone(), "must be an object")),
            _ => return Err(ConfigError::new(k.clone(), "unknown field")),
        }
    }
    Ok(out)
}
