//! The sections of a PyPI repository's JSON (Nexus's shape) and their validation.

use serde_json::{Map, Value};
use wharf_format::{ConfigError, GroupSettings, Kind, ProxySettings};

/// Sections each kind may carry besides name, online and storage.
fn sections(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Hosted => &["cleanup", "component", "pypi"],
        Kind::Proxy => &["cleanup", "proxy", "negativeCache", "httpClient", "routingRule", "routingRuleName", "replication", "pypi"],
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
            "pypi" if kind == Kind::Hosted => {
                out.insert(k.clone(), HostedSettings::parse(Some(v))?.to_json());
            }
            "cleanup" => {
                out.insert(k.clone(), wharf_format::proxy::cleanup(v)?);
            }
            "component" => {
                out.insert(k.clone(), wharf_format::proxy::component(v)?);
            }
            // Nexus's firewall switches for proxies: wharf has no firewall, so only `false`.
            "pypi" => {
                out.insert(k.clone(), wharf_format::proxy::firewall(v, "pypi", &["removeQuarantined"])?);
            }
            "routingRule" | "routingRuleName" | "replication" if !v.is_null() => {
                return Err(ConfigError::new(k.clone(), "routing rules and replication are not supported"));
            }
            _ => {}
        }
    }
    if kind == Kind::Hosted && !out.contains_key("pypi") {
        out.insert("pypi".into(), HostedSettings::default().to_json());
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

/// wharf's addition for hosted repositories: `pypi.uploadMaxSize`, in MiB, the largest file an
/// upload may carry (PyPI's own default limit is 100 MB; wheels of ML frameworks pass 1 GiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedSettings {
    pub upload_max_bytes: u64,
}

impl Default for HostedSettings {
    fn default() -> Self {
        HostedSettings { upload_max_bytes: 4096 << 20 }
    }
}

impl HostedSettings {
    pub fn parse(v: Option<&Value>) -> Result<HostedSettings, ConfigError> {
        let mut s = HostedSettings::default();
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(s) };
        let obj = wharf_format::proxy::object(v, "pypi")?;
        wharf_format::proxy::only(obj, "pypi", &["uploadMaxSize"])?;
        if let Some(m) = obj.get("uploadMaxSize").filter(|v| !v.is_null()) {
            let mib = m
                .as_u64()
                .filter(|m| *m >= 1 && *m <= 1 << 20)
                .ok_or_else(|| ConfigError::new("pypi.uploadMaxSize", "must be a whole number of MiB between 1 and 1048576"))?;
            s.upload_max_bytes = mib << 20;
        }
        Ok(s)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({ "uploadMaxSize": self.upload_max_bytes >> 20 })
    }
}
