//! The sections of an npm repository's JSON (Nexus's shape) and their validation.

use serde_json::{Map, Value};
use wharf_format::{ConfigError, GroupSettings, Kind, ProxySettings};

fn sections(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Hosted => &["cleanup", "component", "npm"],
        Kind::Proxy => &["cleanup", "proxy", "negativeCache", "httpClient", "routingRule", "routingRuleName", "replication", "npm"],
        Kind::Group => &["group"],
    }
}

pub fn validate(kind: Kind, attrs: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    let mut out = Map::new();
    for (k, v) in attrs {
        if !sections(kind).contains(&k.as_str()) {
            return Err(ConfigError::unknown_field(k.clone()));
        }
        match k.as_str() {
            "npm" if kind == Kind::Hosted => {
                out.insert(k.clone(), HostedSettings::parse(Some(v))?.to_json());
            }
            "cleanup" => {
                out.insert(k.clone(), wharf_format::proxy::cleanup(v)?);
            }
            "component" => {
                out.insert(k.clone(), wharf_format::proxy::component(v)?);
            }
            // Nexus's firewall switches for proxies: wharf has no firewall, so only `false`.
            "npm" => {
                out.insert(k.clone(), wharf_format::proxy::firewall(v, "npm", &["removeNonCataloged", "removeQuarantined"])?);
            }
            "routingRule" | "routingRuleName" | "replication" if !v.is_null() => {
                return Err(ConfigError::new(k.clone(), "routing rules and replication are not supported"));
            }
            _ => {}
        }
    }
    match kind {
        Kind::Hosted => {
            out.entry("npm").or_insert_with(|| HostedSettings::default().to_json());
        }
        Kind::Proxy => out.extend(ProxySettings::parse(attrs)?.raw),
        Kind::Group => {
            out.insert("group".into(), GroupSettings::parse(attrs.get("group"))?.to_json());
        }
    }
    Ok(out)
}

/// wharf's addition for hosted repositories: `npm.uploadMaxSize`, in MiB, the largest publish
/// body (the tarball travels base64-encoded inside it, so about 4/3 of the tarball).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedSettings {
    pub upload_max_bytes: usize,
}

impl Default for HostedSettings {
    fn default() -> Self {
        HostedSettings { upload_max_bytes: 256 << 20 }
    }
}

impl HostedSettings {
    pub fn parse(v: Option<&Value>) -> Result<HostedSettings, ConfigError> {
        let mut s = HostedSettings::default();
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(s) };
        let obj = wharf_format::proxy::object(v, "npm")?;
        wharf_format::proxy::only(obj, "npm", &["uploadMaxSize"])?;
        if let Some(m) = obj.get("uploadMaxSize").filter(|v| !v.is_null()) {
            let mib = m
                .as_u64()
                .filter(|m| *m >= 1 && *m <= 4096)
                .ok_or_else(|| ConfigError::new("npm.uploadMaxSize", "must be a whole number of MiB between 1 and 4096"))?;
            s.upload_max_bytes = (mib as usize) << 20;
        }
        Ok(s)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({ "uploadMaxSize": self.upload_max_bytes >> 20 })
    }
}
