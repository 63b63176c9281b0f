//! The `docker` section of a repository's JSON (Nexus's shape) and its validation.

use serde_json::{Map, Value};
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
            return Err(ConfigError::new(key.clone(), "unknown field"));
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
        out.insert("cleanup".into(), validate_cleanup(cleanup)?);
    }
    if let Some(component) = attrs.get("component") {
        let obj = object(component, "component")?;
        for (k, v) in obj {
            match k.as_str() {
                "proprietaryComponents" if v.is_boolean() => {}
                "proprietaryComponents" => return Err(ConfigError::new("component.proprietaryComponents", "must be a boolean")),
                _ => return Err(ConfigError::new(format!("component.{k}"), "unknown field")),
            }
        }
        out.insert("component".into(), component.clone());
    }
    Ok(out)
}

/// A proxy repository's upstream and caching (Nexus's `proxy`, `negativeCache`, `httpClient`,
/// `dockerProxy` sections). Ages are in minutes as in Nexus, fractions allowed; -1 is forever.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    pub remote_url: String,
    /// `None`: content never expires (it is immutable by digest anyway).
    pub content_max_age: Option<std::time::Duration>,
    pub metadata_max_age: Option<std::time::Duration>,
    pub negative_cache: Option<std::time::Duration>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: std::time::Duration,
    pub read_timeout: std::time::Duration,
    /// `HUB`: single-name images get Docker Hub's `library/` prefix.
    pub index_type: String,
    pub raw: Map<String, Value>,
}

fn minutes(v: Option<&Value>, field: &str, default: f64) -> Result<Option<std::time::Duration>, ConfigError> {
    let m = match v {
        None | Some(Value::Null) => default,
        Some(v) => v.as_f64().ok_or_else(|| ConfigError::new(field, "must be a number of minutes (-1: forever)"))?,
    };
    if m < 0.0 {
        if m == -1.0 {
            return Ok(None);
        }
        return Err(ConfigError::new(field, "must be -1 (forever) or a number of minutes >= 0"));
    }
    Ok(Some(std::time::Duration::from_secs_f64(m * 60.0)))
}

fn seconds(v: Option<&Value>, field: &str, default: f64) -> Result<std::time::Duration, ConfigError> {
    let s = match v {
        None | Some(Value::Null) => default,
        Some(v) => v.as_f64().filter(|s| *s > 0.0).ok_or_else(|| ConfigError::new(field, "must be a positive number of seconds"))?,
    };
    Ok(std::time::Duration::from_secs_f64(s))
}

fn only(obj: &Map<String, Value>, section: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ConfigError::new(format!("{section}.{k}"), "unknown field"));
        }
    }
    Ok(())
}

impl ProxySettings {
    pub fn parse(attrs: &Map<String, Value>) -> Result<ProxySettings, ConfigError> {
        let empty = Map::new();
        let proxy = match attrs.get("proxy") {
            Some(v) => object(v, "proxy")?,
            None => return Err(ConfigError::new("proxy", "is required (an object with remoteUrl)")),
        };
        only(proxy, "proxy", &["remoteUrl", "contentMaxAge", "metadataMaxAge"])?;
        let remote_url = proxy.get("remoteUrl").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::new("proxy.remoteUrl", "is required"))?;
        let parsed = reqwest::Url::parse(remote_url).map_err(|e| ConfigError::new("proxy.remoteUrl", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::new("proxy.remoteUrl", "must be an http:// or https:// URL"));
        }
        let neg = match attrs.get("negativeCache") {
            Some(v) if !v.is_null() => object(v, "negativeCache")?,
            _ => &empty,
        };
        only(neg, "negativeCache", &["enabled", "timeToLive"])?;
        let neg_enabled = match neg.get("enabled") {
            None => true,
            Some(v) => v.as_bool().ok_or_else(|| ConfigError::new("negativeCache.enabled", "must be a boolean"))?,
        };
        let http = match attrs.get("httpClient") {
            Some(v) if !v.is_null() => object(v, "httpClient")?,
            _ => &empty,
        };
        only(http, "httpClient", &["blocked", "autoBlock", "connection", "authentication"])?;
        if http.get("blocked").and_then(|v| v.as_bool()) == Some(true) {
            return Err(ConfigError::new("httpClient.blocked", "blocking the upstream is not supported; set the repository offline instead"));
        }
        let conn = match http.get("connection") {
            Some(v) if !v.is_null() => object(v, "httpClient.connection")?,
            _ => &empty,
        };
        only(conn, "httpClient.connection", &["timeout", "connectTimeout", "retries", "userAgentSuffix", "enableCircularRedirects", "enableCookies", "useTrustStore"])?;
        let (mut username, mut password) = (None, None);
        if let Some(auth) = http.get("authentication").filter(|v| !v.is_null()) {
            let auth = object(auth, "httpClient.authentication")?;
            only(auth, "httpClient.authentication", &["type", "username", "password", "ntlmHost", "ntlmDomain", "preemptive"])?;
            match auth.get("type").and_then(|v| v.as_str()).unwrap_or("username") {
                "username" => {}
                other => return Err(ConfigError::new("httpClient.authentication.type", format!("{other} is not supported (only username)"))),
            }
            username = Some(auth.get("username").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::new("httpClient.authentication.username", "is required"))?.to_string());
            password = Some(auth.get("password").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::new("httpClient.authentication.password", "is required"))?.to_string());
        }
        let dp = match attrs.get("dockerProxy") {
            Some(v) if !v.is_null() => object(v, "dockerProxy")?,
            _ => &empty,
        };
        only(dp, "dockerProxy", &["indexType", "indexUrl", "cacheForeignLayers", "foreignLayerUrlWhitelist"])?;
        let index_type = dp.get("indexType").and_then(|v| v.as_str()).unwrap_or("REGISTRY").to_ascii_uppercase();
        if !["REGISTRY", "HUB", "CUSTOM"].contains(&index_type.as_str()) {
            return Err(ConfigError::new("dockerProxy.indexType", "must be REGISTRY, HUB or CUSTOM"));
        }
        let mut p = ProxySettings {
            remote_url: remote_url.trim_end_matches('/').to_string(),
            content_max_age: minutes(proxy.get("contentMaxAge"), "proxy.contentMaxAge", 1440.0)?,
            metadata_max_age: minutes(proxy.get("metadataMaxAge"), "proxy.metadataMaxAge", 1440.0)?,
            negative_cache: if neg_enabled { minutes(neg.get("timeToLive"), "negativeCache.timeToLive", 1440.0)? } else { Some(std::time::Duration::ZERO) },
            username,
            password,
            connect_timeout: seconds(conn.get("connectTimeout"), "httpClient.connection.connectTimeout", 10.0)?,
            read_timeout: seconds(conn.get("timeout"), "httpClient.connection.timeout", 60.0)?,
            index_type,
            raw: Map::new(),
        };
        let mut raw = Map::new();
        raw.insert("proxy".into(), serde_json::json!({"remoteUrl": p.remote_url, "contentMaxAge": proxy.get("contentMaxAge").cloned().unwrap_or(1440.into()), "metadataMaxAge": proxy.get("metadataMaxAge").cloned().unwrap_or(1440.into())}));
        raw.insert("negativeCache".into(), serde_json::json!({"enabled": neg_enabled, "timeToLive": neg.get("timeToLive").cloned().unwrap_or(1440.into())}));
        let mut http_out = serde_json::json!({"blocked": false, "autoBlock": false, "connection": {
            "timeout": p.read_timeout.as_secs_f64(), "connectTimeout": p.connect_timeout.as_secs_f64()
        }, "authentication": null});
        if let (Some(u), Some(pw)) = (&p.username, &p.password) {
            http_out["authentication"] = serde_json::json!({"type": "username", "username": u, "password": pw});
        }
        raw.insert("httpClient".into(), http_out);
        raw.insert("dockerProxy".into(), serde_json::json!({"indexType": p.index_type, "indexUrl": dp.get("indexUrl").cloned().unwrap_or(Value::Null), "cacheForeignLayers": false}));
        p.raw = raw;
        Ok(p)
    }

    pub fn to_json(&self) -> Map<String, Value> {
        self.raw.clone()
    }

    /// Docker Hub wants `library/` before single-name images.
    pub fn is_hub(&self) -> bool {
        self.index_type == "HUB" || self.remote_url.contains("registry-1.docker.io")
    }
}

/// A group's members, in the order they are asked, and the one that takes pushes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    pub members: Vec<String>,
    pub writable: Option<String>,
}

impl GroupSettings {
    pub fn parse(v: Option<&Value>) -> Result<GroupSettings, ConfigError> {
        let obj = object(v.ok_or_else(|| ConfigError::new("group", "is required (an object with memberNames)"))?, "group")?;
        only(obj, "group", &["memberNames", "writableMember"])?;
        let members: Vec<String> = obj
            .get("memberNames")
            .and_then(|v| v.as_array())
            .ok_or_else(|| ConfigError::new("group.memberNames", "is required: a list of repository names"))?
            .iter()
            .map(|m| m.as_str().map(str::to_string).ok_or_else(|| ConfigError::new("group.memberNames", "must be a list of strings")))
            .collect::<Result<_, _>>()?;
        if members.is_empty() {
            return Err(ConfigError::new("group.memberNames", "needs at least one member"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = members.iter().find(|m| !seen.insert(*m)) {
            return Err(ConfigError::new("group.memberNames", format!("{dup} is listed twice")));
        }
        let writable = match obj.get("writableMember") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ConfigError::new("group.writableMember", "must be a repository name")),
        };
        if let Some(w) = &writable {
            if !members.contains(w) {
                return Err(ConfigError::new("group.writableMember", format!("{w} is not a member of the group")));
            }
        }
        Ok(GroupSettings { members, writable })
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"memberNames": self.members, "writableMember": self.writable})
    }
}

fn validate_cleanup(v: &Value) -> Result<Value, ConfigError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let obj = object(v, "cleanup")?;
    for (k, v) in obj {
        match k.as_str() {
            "policyNames" if v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {}
            "policyNames" => return Err(ConfigError::new("cleanup.policyNames", "must be a list of strings")),
            _ => return Err(ConfigError::new(format!("cleanup.{k}"), "unknown field")),
        }
    }
    Ok(v.clone())
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| ConfigError::new(field, "must be an object"))
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
                _ => return Err(ConfigError::new(field, "unknown field")),
            }
        }
        if s.v1_enabled {
            return Err(ConfigError::new("docker.v1Enabled", "the Docker V1 API is not supported"));
        }
        if s.https_port.is_some() {
            return Err(ConfigError::new("docker.httpsPort", "HTTPS repository ports are not supported yet"));
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
    v.as_bool().ok_or_else(|| ConfigError::new(field, "must be a boolean"))
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
    let s = v.as_str().ok_or_else(|| ConfigError::new(field, "must be a string"))?;
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
}
