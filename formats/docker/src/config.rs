//! The `docker` section of a repository's JSON (Nexus's shape) and its validation.

use serde_json::{Map, Value};
use wharf_format::proxy::{object, only};
pub use wharf_format::GroupSettings;
use wharf_format::{ConfigError, Kind};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerSettings {
    pub v1_enabled: bool,
    /// `true`: challenge with Basic; `false`: with the Bearer token flow. Either credential is
    /// accepted whatever the challenge.
    pub force_basic_auth: bool,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    pub subdomain: Option<String>,
}

/// Sections each kind of Docker repository may carry besides name, online and storage.
fn sections(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Hosted => &["docker", "cleanup", "component"],
        Kind::Proxy => &["docker", "cleanup", "proxy", "negativeCache", "httpClient", "dockerProxy", "routingRule", "routingRuleName", "replication"],
        Kind::Group => &["docker", "group"],
    }
}

pub fn validate(kind: Kind, attrs: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    for key in attrs.keys() {
        if !sections(kind).contains(&key.as_str()) {
            return Err(ConfigError::unknown_field(key.clone()));
        }
    }
    let settings = DockerSettings::parse(attrs.get("docker"))?;
    let mut out = Map::new();
    out.insert("docker".into(), settings.to_json());
    match kind {
        Kind::Proxy => {
            let p = ProxySettings::parse(attrs)?;
            out.extend(p.to_json());
        }
        Kind::Group => {
            let g = GroupSettings::parse(attrs.get("group"))?;
            out.insert("group".into(), g.to_json());
        }
        Kind::Hosted => {}
    }
    for key in ["routingRule", "routingRuleName", "replication"] {
        if attrs.get(key).is_some_and(|v| !v.is_null()) {
            return Err(ConfigError::new(key, "routing rules and replication are not supported"));
        }
    }
    if let Some(cleanup) = attrs.get("cleanup") {
        out.insert("cleanup".into(), wharf_format::proxy::cleanup(cleanup)?);
    }
    if let Some(component) = attrs.get("component") {
        out.insert("component".into(), wharf_format::proxy::component(component)?);
    }
    Ok(out)
}

/// A Docker proxy's settings: the shared upstream sections plus Nexus's `dockerProxy`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    pub upstream: wharf_format::ProxySettings,
    /// `HUB`: single-name images get Docker Hub's `library/` prefix.
    pub index_type: String,
    raw: Map<String, Value>,
}

impl std::ops::Deref for ProxySettings {
    type Target = wharf_format::ProxySettings;
    fn deref(&self) -> &Self::Target {
        &self.upstream
    }
}

impl ProxySettings {
    pub fn parse(attrs: &Map<String, Value>) -> Result<ProxySettings, ConfigError> {
        let upstream = wharf_format::ProxySettings::parse(attrs)?;
        let empty = Map::new();
        let dp = match attrs.get("dockerProxy") {
            Some(v) if !v.is_null() => object(v, "dockerProxy")?,
            _ => &empty,
        };
        only(dp, "dockerProxy", &["indexType", "indexUrl", "cacheForeignLayers", "foreignLayerUrlWhitelist"])?;
        let index_type = match dp.get("indexType") {
            None | Some(Value::Null) => "REGISTRY".to_string(),
            Some(v) => v.as_str().ok_or_else(|| ConfigError::new("dockerProxy.indexType", "must be REGISTRY or HUB"))?.to_ascii_uppercase(),
        };
        match index_type.as_str() {
            "REGISTRY" | "HUB" => {}
            "CUSTOM" => return Err(ConfigError::new("dockerProxy.indexType", "CUSTOM (a separate search index) is not supported: use REGISTRY or HUB")),
            _ => return Err(ConfigError::new("dockerProxy.indexType", "must be REGISTRY or HUB")),
        }
        if dp.get("indexUrl").is_some_and(|v| !v.is_null() && v.as_str() != Some("")) {
            return Err(ConfigError::new("dockerProxy.indexUrl", "a separate search index is not supported"));
        }
        if dp.get("cacheForeignLayers").is_some_and(|v| v.as_bool() != Some(false) && !v.is_null()) {
            return Err(ConfigError::new("dockerProxy.cacheForeignLayers", "foreign layers are not fetched by wharf"));
        }
        if dp.get("foreignLayerUrlWhitelist").is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(ConfigError::new("dockerProxy.foreignLayerUrlWhitelist", "foreign layers are not fetched by wharf"));
        }
        let mut raw = upstream.raw.clone();
        raw.insert(
            "dockerProxy".into(),
            serde_json::json!({"indexType": index_type, "indexUrl": null, "cacheForeignLayers": false, "foreignLayerUrlWhitelist": []}),
        );
        Ok(ProxySettings { upstream, index_type, raw })
    }

    pub fn to_json(&self) -> Map<String, Value> {
        self.raw.clone()
    }

    /// How long a cached tag → manifest mapping is served before the upstream is asked again
    /// (`None`: never): the shorter of `metadataMaxAge` and `contentMaxAge`. wharf has counted a
    /// tag as metadata; Nexus counts a manifest fetched by tag as content. Honouring both means
    /// a tag is never trusted longer than either setting says, so a configuration written for
    /// either reading gets its tags rechecked at least as often as it asks. (Blobs and manifests
    /// by digest never change and are never fetched again.)
    pub fn tag_max_age(&self) -> Option<std::time::Duration> {
        match (self.metadata_max_age, self.content_max_age) {
            (Some(m), Some(c)) => Some(m.min(c)),
            (m, c) => m.or(c),
        }
    }

    /// Docker Hub wants `library/` before single-name images.
    pub fn is_hub(&self) -> bool {
        self.index_type == "HUB" || self.remote_url.contains("registry-1.docker.io")
    }
}

impl DockerSettings {
    pub fn parse(v: Option<&Value>) -> Result<DockerSettings, ConfigError> {
        let mut s = DockerSettings::default();
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(s) };
        for (k, val) in object(v, "docker")? {
            let field = format!("docker.{k}");
            match k.as_str() {
                "v1Enabled" => s.v1_enabled = bool_field(val, &field)?,
                "forceBasicAuth" => s.force_basic_auth = bool_field(val, &field)?,
                "httpPort" => s.http_port = port_field(val, &field)?,
                "httpsPort" => s.https_port = port_field(val, &field)?,
                "subdomain" => s.subdomain = subdomain_field(val, &field)?,
                _ => return Err(ConfigError::unknown_field(field)),
            }
        }
        if s.v1_enabled {
            return Err(ConfigError::new("docker.v1Enabled", "the Docker V1 API is not supported"));
        }
        if s.https_port.is_some() && s.https_port == s.http_port {
            return Err(ConfigError::new("docker.httpsPort", "must differ from docker.httpPort"));
        }
        Ok(s)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "v1Enabled": self.v1_enabled,
            "forceBasicAuth": self.force_basic_auth,
            "httpPort": self.http_port,
            "httpsPort": self.https_port,
            "subdomain": self.subdomain,
        })
    }
}

fn bool_field(v: &Value, field: &str) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| ConfigError::not_boolean(field))
}

fn port_field(v: &Value, field: &str) -> Result<Option<u16>, ConfigError> {
    if v.is_null() {
        return Ok(None);
    }
    match v.as_u64() {
        Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
        _ => Err(ConfigError::new(field, "must be a port number between 1 and 65535")),
    }
}

fn subdomain_field(v: &Value, field: &str) -> Result<Option<String>, ConfigError> {
    if v.is_null() {
        return Ok(None);
    }
    let s = v.as_str().ok_or_else(|| ConfigError::not_string(field))?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        return Err(ConfigError::new(field, "must be one DNS label: lowercase letters, digits and '-'"));
    }
    Ok(Some(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let attrs = |v: Value| v.as_object().unwrap().clone();
        let e = validate(Kind::Hosted, &attrs(json!({"docker": {"httpPort": 70000}}))).unwrap_err();
        assert_eq!(e.field, "docker.httpPort");
        let e = validate(Kind::Hosted, &attrs(json!({"docker": {"colour": "red"}}))).unwrap_err();
        assert_eq!(e.field, "docker.colour");
        let e = validate(Kind::Hosted, &attrs(json!({"dockr": {}}))).unwrap_err();
        assert_eq!(e.field, "dockr");
        let e = validate(Kind::Hosted, &attrs(json!({"docker": {"subdomain": "Bad_Name"}}))).unwrap_err();
        assert_eq!(e.field, "docker.subdomain");
        let ok = validate(Kind::Hosted, &attrs(json!({"docker": {"v1Enabled": false, "forceBasicAuth": true, "httpPort": 5000}}))).unwrap();
        assert_eq!(ok["docker"]["httpPort"], 5000);
    }

    #[test]
    fn a_tag_is_trusted_for_the_shorter_of_metadata_max_age_and_content_max_age() {
        let age = |content: f64, metadata: f64| {
            let attrs = json!({"proxy": {"remoteUrl": "https://registry.example", "contentMaxAge": content, "metadataMaxAge": metadata}});
            ProxySettings::parse(attrs.as_object().unwrap()).unwrap().tag_max_age().map(|d| d.as_secs())
        };
        assert_eq!(age(1440.0, 60.0), Some(3600));
        assert_eq!(age(5.0, 1440.0), Some(300), "contentMaxAge acts on tags, as in Nexus");
        assert_eq!(age(-1.0, 60.0), Some(3600));
        assert_eq!(age(90.0, -1.0), Some(5400));
        assert_eq!(age(-1.0, -1.0), None, "-1 for both: never revalidated");
    }
}
