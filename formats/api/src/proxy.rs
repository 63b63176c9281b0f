//! What every format's proxy and group repositories share: Nexus's `proxy`, `negativeCache`,
//! `httpClient` and `group` sections, one upstream fetch per key for concurrent misses
//! ([`SingleFlight`]), and the negative cache for upstream 404s ([`NegativeCache`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

use crate::blob::BlobStore;
use crate::config::ConfigError;
use crate::digest::Digest;

/// A proxy repository's upstream and caching. Ages are in minutes as in Nexus, fractions
/// allowed; -1 (`None`) is forever.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    /// Without a trailing `/`, and without credentials (refused: they belong in
    /// `httpClient.authentication`), so it may be logged and shown.
    pub remote_url: String,
    pub content_max_age: Option<Duration>,
    pub metadata_max_age: Option<Duration>,
    /// Time to live of remembered upstream 404s; zero when the negative cache is off.
    pub negative_cache: Option<Duration>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Credentials with the first request (`authentication.preemptive`; wharf's default `true`),
    /// or only in answer to the upstream's challenge.
    pub preemptive: bool,
    /// `httpClient.blocked`: the upstream is never asked; only cached content is served.
    pub blocked: bool,
    /// `httpClient.autoBlock`: a failing upstream is not asked until a probe finds it answering.
    pub auto_block: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// What was cached before this time (ms) is stale whatever its age: the repository's
    /// cache was invalidated then (not a JSON setting: [`ProxySettings::of`] takes it from the
    /// repository).
    pub invalidated_at: Option<i64>,
    /// `connection.retries`: further attempts after a transport error or a 502/503/504.
    pub retries: u32,
    /// `connection.userAgentSuffix`, appended to `wharf/<version>`.
    pub user_agent_suffix: Option<String>,
    /// The three sections as stored and shown (defaults filled in).
    pub raw: Map<String, Value>,
}

pub fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| ConfigError::not_object(field))
}

/// Refuses any key of `obj` not in `allowed`, naming it as `section.key`.
pub fn only(obj: &Map<String, Value>, section: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ConfigError::unknown_field(format!("{section}.{k}")));
        }
    }
    Ok(())
}

/// Nexus's `cleanup` section: the names of the cleanup policies that apply to the repository.
/// Only their spelling is checked here; that each exists and fits the repository's format is
/// the server's check (it owns the policies), made when the configuration is written.
pub fn cleanup(v: &Value) -> Result<Value, ConfigError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let obj = object(v, "cleanup")?;
    only(obj, "cleanup", &["policyNames"])?;
    let names = match obj.get("policyNames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut names: Vec<String> = Vec::new();
            for n in a {
                let n = n.as_str().ok_or_else(|| ConfigError::not_strings("cleanup.policyNames"))?;
                if !valid_policy_name(n) {
                    return Err(ConfigError::new("cleanup.policyNames", format!("{n:?} is not a cleanup policy name")));
                }
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
            names
        }
        Some(_) => return Err(ConfigError::not_strings("cleanup.policyNames")),
    };
    Ok(json!({ "policyNames": names }))
}

/// The cleanup policies a repository's stored configuration names.
pub fn cleanup_policy_names(attributes: &Map<String, Value>) -> Vec<String> {
    attributes
        .get("cleanup")
        .and_then(|c| c.get("policyNames"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// A cleanup policy's name (Nexus's rule for names): 1-255 of letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit. Nothing that could be a path or need escaping in a URL.
pub fn valid_policy_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b.len() <= 255 && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Nexus's `component` section: `proprietaryComponents` marks content for its firewall, which
/// wharf does not have, so only `false` is accepted.
pub fn component(v: &Value) -> Result<Value, ConfigError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let obj = object(v, "component")?;
    only(obj, "component", &["proprietaryComponents"])?;
    only_false(obj, "component", "proprietaryComponents", "proprietary components (a firewall feature) are not supported")?;
    Ok(json!({"proprietaryComponents": false}))
}

/// A format section of Nexus's firewall switches (`npm.removeQuarantined`, ...): wharf has no
/// firewall, so each is accepted only as `false`.
pub fn firewall(v: &Value, section: &str, switches: &[&str]) -> Result<Value, ConfigError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let obj = object(v, section)?;
    only(obj, section, switches)?;
    let mut out = Map::new();
    for s in switches {
        only_false(obj, section, s, "wharf has no repository firewall")?;
        out.insert(s.to_string(), Value::Bool(false));
    }
    Ok(Value::Object(out))
}

/// A boolean that wharf supports only as `false` (or absent): `true` is refused, naming it.
fn only_false(obj: &Map<String, Value>, section: &str, key: &str, why: &str) -> Result<(), ConfigError> {
    let field = format!("{section}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => Err(ConfigError::new(field, why)),
        Some(_) => Err(ConfigError::not_boolean(field)),
    }
}

fn bool_or(obj: &Map<String, Value>, section: &str, key: &str, default: bool) -> Result<bool, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ConfigError::not_boolean(format!("{section}.{key}"))),
    }
}

fn minutes(v: Option<&Value>, field: &str, default: f64) -> Result<Option<Duration>, ConfigError> {
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
    // A time to live is added to the clock: past a century it overflowed, and every miss, or
    // the setting's own parse, panicked.
    if m > MAX_MINUTES {
        return Err(ConfigError::new(field, format!("must be -1 (forever) or at most {MAX_MINUTES} minutes (100 years)")));
    }
    Ok(Some(Duration::from_secs_f64(m * 60.0)))
}

/// The longest age or time to live in minutes that is not "forever" (-1): 100 years.
const MAX_MINUTES: f64 = 100.0 * 365.0 * 24.0 * 60.0;

fn seconds(v: Option<&Value>, field: &str, default: f64) -> Result<Duration, ConfigError> {
    let s = match v {
        None | Some(Value::Null) => default,
        Some(v) => v.as_f64().filter(|s| *s > 0.0 && *s <= 3600.0).ok_or_else(|| ConfigError::new(field, "must be a number of seconds between 0 and 3600"))?,
    };
    Ok(Duration::from_secs_f64(s))
}

/// An age as stored and shown: whole minutes as integers (`1440`, not `1440.0`), so that what a
/// client reads and sends back compares equal.
fn minutes_json(v: Option<&Value>, default: f64) -> Value {
    let m = v.and_then(Value::as_f64).unwrap_or(default);
    if m.fract() == 0.0 && m.abs() < 1e15 {
        json!(m as i64)
    } else {
        json!(m)
    }
}

impl ProxySettings {
    /// Reads `proxy`, `negativeCache` and `httpClient` from a repository's attributes. Every
    /// field is either acted on or refused with an error naming it.
    pub fn parse(attrs: &Map<String, Value>) -> Result<ProxySettings, ConfigError> {
        let empty = Map::new();
        let proxy = match attrs.get("proxy") {
            Some(v) => object(v, "proxy")?,
            None => return Err(ConfigError::new("proxy", "is required (an object with remoteUrl)")),
        };
        only(proxy, "proxy", &["remoteUrl", "contentMaxAge", "metadataMaxAge"])?;
        let remote_url = proxy.get("remoteUrl").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::required("proxy.remoteUrl"))?;
        let parsed = url::Url::parse(remote_url).map_err(|e| ConfigError::new("proxy.remoteUrl", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::new("proxy.remoteUrl", "must be an http:// or https:// URL"));
        }
        // In the URL, credentials would be stored in plaintext, shown by GET and written to logs
        // wherever the remote is named; httpClient.authentication keeps them sealed and unshown
        // (Nexus takes them only there too). The answer does not repeat the URL.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ConfigError::new(
                "proxy.remoteUrl",
                "must not contain credentials (user:password@): give them in httpClient.authentication, where they are stored encrypted and never shown",
            ));
        }
        let neg = match attrs.get("negativeCache") {
            Some(v) if !v.is_null() => object(v, "negativeCache")?,
            _ => &empty,
        };
        only(neg, "negativeCache", &["enabled", "timeToLive"])?;
        let neg_enabled = bool_or(neg, "negativeCache", "enabled", true)?;
        let http = match attrs.get("httpClient") {
            Some(v) if !v.is_null() => object(v, "httpClient")?,
            _ => &empty,
        };
        only(http, "httpClient", &["blocked", "autoBlock", "connection", "authentication"])?;
        let blocked = bool_or(http, "httpClient", "blocked", false)?;
        // Nexus's console turns auto-blocking on for new proxies; so does wharf when unsaid.
        let auto_block = bool_or(http, "httpClient", "autoBlock", true)?;
        let conn = match http.get("connection") {
            Some(v) if !v.is_null() => object(v, "httpClient.connection")?,
            _ => &empty,
        };
        let cs = "httpClient.connection";
        only(conn, cs, &["timeout", "connectTimeout", "retries", "userAgentSuffix", "enableCircularRedirects", "enableCookies", "useTrustStore"])?;
        only_false(conn, cs, "enableCircularRedirects", "circular redirects are not followed by wharf")?;
        only_false(conn, cs, "enableCookies", "wharf keeps no cookies from upstreams")?;
        only_false(conn, cs, "useTrustStore", "wharf has no trust store of its own: upstream certificates are checked against the system's roots")?;
        let retries = match conn.get("retries") {
            None | Some(Value::Null) => 0,
            Some(v) => {
                v.as_u64().filter(|r| *r <= 10).ok_or_else(|| ConfigError::new("httpClient.connection.retries", "must be a whole number from 0 to 10"))? as u32
            }
        };
        let user_agent_suffix = match conn.get("userAgentSuffix") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) if s.len() <= 200 && s.bytes().all(|b| (0x20..0x7f).contains(&b)) => Some(s.trim().to_string()),
            Some(_) => return Err(ConfigError::new("httpClient.connection.userAgentSuffix", "must be up to 200 printable ASCII characters")),
        };
        let (mut username, mut password, mut preemptive) = (None, None, true);
        if let Some(auth) = http.get("authentication").filter(|v| !v.is_null()) {
            let a = "httpClient.authentication";
            let auth = object(auth, a)?;
            only(auth, a, &["type", "username", "password", "ntlmHost", "ntlmDomain", "preemptive"])?;
            match auth.get("type").and_then(|v| v.as_str()).unwrap_or("username") {
                "username" => {}
                other => return Err(ConfigError::new("httpClient.authentication.type", format!("{other} is not supported (only username)"))),
            }
            for k in ["ntlmHost", "ntlmDomain"] {
                if auth.get(k).is_some_and(|v| !v.is_null() && v.as_str() != Some("")) {
                    return Err(ConfigError::new(format!("{a}.{k}"), "NTLM is not supported"));
                }
            }
            preemptive = bool_or(auth, a, "preemptive", true)?;
            username =
                Some(auth.get("username").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::required("httpClient.authentication.username"))?.to_string());
            password =
                Some(auth.get("password").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::required("httpClient.authentication.password"))?.to_string());
        }
        let mut p = ProxySettings {
            remote_url: remote_url.trim_end_matches('/').to_string(),
            content_max_age: minutes(proxy.get("contentMaxAge"), "proxy.contentMaxAge", 1440.0)?,
            metadata_max_age: minutes(proxy.get("metadataMaxAge"), "proxy.metadataMaxAge", 1440.0)?,
            negative_cache: if neg_enabled { minutes(neg.get("timeToLive"), "negativeCache.timeToLive", 1440.0)? } else { Some(Duration::ZERO) },
            username,
            password,
            preemptive,
            blocked,
            auto_block,
            connect_timeout: seconds(conn.get("connectTimeout"), "httpClient.connection.connectTimeout", 10.0)?,
            read_timeout: seconds(conn.get("timeout"), "httpClient.connection.timeout", 60.0)?,
            retries,
            user_agent_suffix,
            raw: Map::new(),
            invalidated_at: None,
        };
        let mut raw = Map::new();
        raw.insert(
            "proxy".into(),
            json!({"remoteUrl": p.remote_url, "contentMaxAge": minutes_json(proxy.get("contentMaxAge"), 1440.0), "metadataMaxAge": minutes_json(proxy.get("metadataMaxAge"), 1440.0)}),
        );
        raw.insert("negativeCache".into(), json!({"enabled": neg_enabled, "timeToLive": minutes_json(neg.get("timeToLive"), 1440.0)}));
        let mut http_out = json!({"blocked": p.blocked, "autoBlock": p.auto_block, "connection": {
            "timeout": p.read_timeout.as_secs_f64(), "connectTimeout": p.connect_timeout.as_secs_f64(), "retries": p.retries,
            "userAgentSuffix": p.user_agent_suffix, "enableCircularRedirects": false, "enableCookies": false, "useTrustStore": false,
        }, "authentication": null});
        if let (Some(u), Some(pw)) = (&p.username, &p.password) {
            http_out["authentication"] = json!({"type": "username", "username": u, "password": pw, "preemptive": p.preemptive});
        }
        raw.insert("httpClient".into(), http_out);
        p.raw = raw;
        Ok(p)
    }

    /// A repository's proxy settings, with the time its cache was last invalidated.
    pub fn of(config: &crate::RepoConfig) -> Result<ProxySettings, ConfigError> {
        let mut p = ProxySettings::parse(&config.attributes)?;
        p.invalidated_at = config.cache_invalidated_at;
        Ok(p)
    }

    /// Whether something cached at `at` (ms) predates the last invalidation of the cache.
    pub fn invalidated(&self, at: i64) -> bool {
        self.invalidated_at.is_some_and(|cut| at < cut)
    }

    /// Whether cached content fetched at `at` (ms) is due to be fetched again
    /// (`contentMaxAge`, or the cache was invalidated since).
    pub fn content_stale(&self, at: i64) -> bool {
        self.invalidated(at) || self.content_max_age.is_some_and(|max| crate::now_millis() - at >= max.as_millis() as i64)
    }

    /// Whether something fetched at `at` (ms) is due for revalidation (`metadataMaxAge`, or
    /// the cache was invalidated since).
    pub fn metadata_stale(&self, at: i64) -> bool {
        self.invalidated(at) || self.metadata_max_age.is_some_and(|max| crate::now_millis() - at >= max.as_millis() as i64)
    }

    /// What a metadata refresh that holds the single-flight key decides before asking the
    /// upstream, given when the cached copy (if any) was last checked: `Some(true)` answer with
    /// the cached copy (fresh, or the upstream is known to be failing), `Some(false)` the
    /// upstream is known not to have it, `None` ask. A refresh that finished since the caller's
    /// first look is thereby never repeated.
    pub fn settled(&self, cached_at: Option<i64>, health: &crate::upstream::Health, known_missing: bool) -> Option<bool> {
        match cached_at {
            Some(at) if !self.metadata_stale(at) || health.serve_stale_now() => Some(true),
            None if known_missing => Some(false),
            _ => None,
        }
    }
}

/// What a group asks of its members in order (`members`): the first answer there is, with the
/// member that gave it, so that the member listed first shadows the others (dependency
/// confusion). A member whose upstream fails (`unavailable` says which errors mean that) is
/// passed over with a warning; its error is returned only if no later member answers.
pub async fn first_answer<T, E, Fut>(
    group: &str,
    members: Vec<crate::RepoRef>,
    unavailable: impl Fn(&E) -> bool,
    mut ask: impl FnMut(crate::RepoRef) -> Fut,
) -> Result<Option<(crate::RepoRef, T)>, E>
where
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
    E: std::fmt::Display,
{
    let mut failure = None;
    for r in members {
        match ask(r.clone()).await {
            Ok(Some(answer)) => return Ok(Some((r, answer))),
            Ok(None) => {}
            Err(e) if unavailable(&e) => {
                tracing::warn!(group, member = %r.config.name, error = %e, "member unavailable");
                failure = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    failure.map_or(Ok(None), Err)
}

/// A group's members, in the order they are asked, and the one that takes writes.
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
            .map(|m| m.as_str().map(str::to_string).ok_or_else(|| ConfigError::not_strings("group.memberNames")))
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
        json!({"memberNames": self.members, "writableMember": self.writable})
    }

    /// For formats whose groups read members as hosted or proxy repositories (PyPI, npm):
    /// refuses groups among the members.
    pub fn refuse_nested(&self, group: &crate::RepoConfig, repos: &dyn crate::RepoLookup) -> Result<(), ConfigError> {
        for m in &self.members {
            if repos.repo(m).is_some_and(|r| r.config.kind == crate::Kind::Group) {
                return Err(ConfigError::new(
                    "group.memberNames",
                    format!("{m} is a group: a {} group's members are hosted or proxy repositories", group.format),
                ));
            }
        }
        Ok(())
    }

    /// The member through which this group's members, and theirs, come back to `name`, if one
    /// does: a group asked through such a loop would ask itself without end.
    pub fn reaches(&self, name: &str, repos: &dyn crate::RepoLookup) -> Option<String> {
        let mut seen = std::collections::HashSet::new();
        let mut todo: Vec<(&str, String)> = self.members.iter().map(|m| (m.as_str(), m.clone())).collect();
        while let Some((first, m)) = todo.pop() {
            if m == name {
                return Some(first.to_string());
            }
            if !seen.insert(m.clone()) {
                continue;
            }
            let Some(r) = repos.repo(&m) else { continue };
            if r.config.kind != crate::Kind::Group {
                continue;
            }
            let Ok(g) = GroupSettings::parse(r.config.attributes.get("group")) else { continue };
            todo.extend(g.members.into_iter().map(|n| (first, n)));
        }
        None
    }

    /// Checks the members against the repositories that exist: each of `format`, not the group
    /// itself, and the writable one hosted.
    pub fn check_references(&self, group: &crate::RepoConfig, repos: &dyn crate::RepoLookup) -> Result<(), ConfigError> {
        for m in &self.members {
            let Some(r) = repos.repo(m) else {
                return Err(ConfigError::new("group.memberNames", format!("repository {m} does not exist")));
            };
            if r.config.format != group.format {
                return Err(ConfigError::new("group.memberNames", format!("{m} is a {} repository, not {}", r.config.format, group.format)));
            }
            if *m == group.name {
                return Err(ConfigError::new("group.memberNames", "a group cannot contain itself"));
            }
        }
        if let Some(through) = self.reaches(&group.name, repos) {
            return Err(ConfigError::new(
                "group.memberNames",
                format!("{through} contains {} again: groups must not contain each other in a loop", group.name),
            ));
        }
        if let Some(w) = &self.writable {
            if repos.repo(w).is_some_and(|r| r.config.kind != crate::Kind::Hosted) {
                return Err(ConfigError::new("group.writableMember", format!("{w} is not a hosted repository")));
            }
        }
        Ok(())
    }
}

/// How a shared fetch ended, for the requests that waited on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    NotFound,
    Failed(String),
    /// Nothing was cached: the leader went away before finishing (its client disconnected),
    /// or passed the content through without keeping it. Try again.
    Abandoned,
}

/// What the followers of a [`SingleFlight`] learn of how its leader ended: a proxy's fetch
/// ends in an [`Outcome`]; other shared work (a password check) says what its followers need.
pub trait FlightOutcome: Clone + Send + Sync + 'static {
    /// The result is where the followers read it (the cache): what a leader that found it
    /// already there says.
    const DONE: Self;
    /// The leader went away without saying how it ended: the followers try on their own.
    const ABANDONED: Self;
    fn is_abandoned(&self) -> bool;
}

impl FlightOutcome for Outcome {
    const DONE: Self = Outcome::Done;
    const ABANDONED: Self = Outcome::Abandoned;
    fn is_abandoned(&self) -> bool {
        *self == Outcome::Abandoned
    }
}

type Flights<O> = Arc<Mutex<HashMap<String, watch::Receiver<Option<O>>>>>;

/// Concurrent misses for one key make one upstream fetch: the first caller leads, the others
/// wait for its outcome and then read what it cached.
#[derive(Clone)]
pub struct SingleFlight<O: FlightOutcome = Outcome> {
    flights: Flights<O>,
}

impl<O: FlightOutcome> Default for SingleFlight<O> {
    fn default() -> Self {
        SingleFlight { flights: Arc::default() }
    }
}

/// The leader's side of a shared fetch; finishing (or being dropped) wakes the followers.
pub struct Flight<O: FlightOutcome = Outcome> {
    key: String,
    flights: Flights<O>,
    tx: watch::Sender<Option<O>>,
}

impl<O: FlightOutcome> Flight<O> {
    pub fn finish(self, outcome: O) {
        let _ = self.tx.send(Some(outcome));
    }
}

impl<O: FlightOutcome> Drop for Flight<O> {
    fn drop(&mut self) {
        self.flights.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
        if self.tx.borrow().is_none() {
            let _ = self.tx.send(Some(O::ABANDONED));
        }
    }
}

pub enum Join<O: FlightOutcome = Outcome> {
    Leader(Flight<O>),
    Follower(watch::Receiver<Option<O>>),
}

/// What [`SingleFlight::join_checked`] found.
pub enum Fill<T, O: FlightOutcome = Outcome> {
    /// Already cached (by a fill that finished just before): serve it.
    Cached(T),
    /// Fetch it, and finish the flight.
    Lead(Flight<O>),
    /// Another request is fetching it: wait for its outcome.
    Follow(watch::Receiver<Option<O>>),
}

impl<O: FlightOutcome> SingleFlight<O> {
    pub fn join(&self, key: &str) -> Join<O> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = flights.get(key) {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.to_string(), rx);
        Join::Leader(Flight { key: key.to_string(), flights: self.flights.clone(), tx })
    }

    /// Joins the flight for `key`; a caller that would lead first asks `cached` again, now that
    /// it holds the key. A fill finishes (and leaves the map) only after its result is cached,
    /// so a caller that looked at the cache before that fill finished, and joins after, finds
    /// the result here instead of fetching it a second time.
    pub async fn join_checked<T, E, Fut>(&self, key: &str, cached: impl FnOnce() -> Fut) -> Result<Fill<T, O>, E>
    where
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        match self.join(key) {
            Join::Follower(rx) => Ok(Fill::Follow(rx)),
            Join::Leader(flight) => match cached().await? {
                Some(t) => {
                    flight.finish(O::DONE);
                    Ok(Fill::Cached(t))
                }
                None => Ok(Fill::Lead(flight)),
            },
        }
    }

    pub async fn wait(mut rx: watch::Receiver<Option<O>>) -> O {
        match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.clone().unwrap_or(O::ABANDONED),
            Err(_) => O::ABANDONED,
        }
    }

    /// Runs `fetch` once for every concurrent caller with the same key. `classify` tells how
    /// the leader's result reads to the followers; a follower turns the outcome back into a
    /// result with `reply` (`Abandoned` makes it fetch on its own rather than fail). `fetch`
    /// runs holding the key, so it should look at the cache first (see
    /// [`SingleFlight::join_checked`]).
    pub async fn once<T, E, F, Fut>(&self, key: &str, fetch: F, classify: impl Fn(&Result<T, E>) -> O, reply: impl Fn(O) -> Result<T, E>) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.join(key) {
            Join::Follower(rx) => match Self::wait(rx).await {
                o if o.is_abandoned() => fetch().await,
                other => reply(other),
            },
            Join::Leader(flight) => {
                let res = fetch().await;
                flight.finish(classify(&res));
                res
            }
        }
    }
}

/// A proxy's answer to a request for a file, and whether its download is counted already: a
/// fill counts its own in its `commit`, once the asset exists (see [`stream_through`]), so
/// the caller counts only the others.
pub struct Served {
    pub response: actix_web::HttpResponse,
    pub counted_by_fill: bool,
}

impl From<actix_web::HttpResponse> for Served {
    fn from(response: actix_web::HttpResponse) -> Served {
        Served { response, counted_by_fill: false }
    }
}

/// Keeps a proxy's refreshed document (an index page, a packument) whole: its digest, or `None`
/// when the disk has no room for it (below the reserve's share for documents) and `cached` says
/// the one kept before can be served instead, as with its upstream down.
pub async fn keep_refreshed(blobs: &BlobStore, bytes: Bytes, cached: bool) -> Result<Option<Digest>, crate::BlobError> {
    match blobs.put_bytes(bytes).await {
        Ok(digest) => Ok(Some(digest)),
        Err(crate::BlobError::NoSpace(_)) if cached => Ok(None),
        Err(e) => Err(e),
    }
}

/// How long a fill waits for its client to take a part of the content before it goes on without
/// that client: the fill moves at its client's pace, and the requests for the same content wait
/// for the fill, so a client that stopped reading (and kept its connection) held every one of
/// them for as long as it stayed connected. That client's response then ends in an error.
const CLIENT_STALL: Duration = Duration::from_secs(30);
/// The parts a fill hands its client, whatever the size of the upstream's chunks (a fast
/// upstream's reach hundreds of KiB): the stall bound is then a rate, a client that takes less
/// than about 2 KiB a second, not one that reads big chunks slowly but steadily.
const CLIENT_PART: usize = 64 << 10;

/// Streams an upstream body (of `length` bytes, when the upstream said) to the client while a
/// background task writes it to the blob store. The content is kept, and `commit` (which
/// records it in the metadata) called, only once it passes `expected`; then the flight finishes
/// `Done`, or `Failed` and the client's stream ends in an error. A client that goes away does
/// not stop the cache filling. A format counts the download in `commit`, after the asset is
/// written: counts go to existing assets only, and a fill can take longer than a flush. A store
/// whose disk has no room for it beyond its reserve keeps nothing: the client gets the content
/// as it arrives, checked against `expected` all the same, and the flight ends abandoned.
pub fn stream_through<S, E, F, Fut>(
    blobs: Arc<BlobStore>,
    body: S,
    length: Option<u64>,
    expected: Expected,
    flight: Flight,
    label: String,
    commit: F,
) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + 'static,
    E: std::fmt::Display + 'static,
    F: FnOnce(Digest, u64) -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let given_up = stalled.clone();
    actix_web::rt::spawn(async move {
        if !blobs.has_room(length).await {
            // The disk is down to its reserve: the client still gets the content, the store
            // does not keep it. Followers of the flight fetch on their own (it ends abandoned).
            drop(flight);
            tracing::warn!(what = %label, "served without caching: the blob store's disk is down to its reserve");
            pass_through(body, expected, tx).await;
            return;
        }
        // Each chunk goes to the client when the next one arrives; the last only once the
        // content verifies, so a client never receives a complete file that failed the check.
        let held: Arc<Mutex<Option<Bytes>>> = Arc::default();
        let (to_client, held_in, stalled_in) = (tx.clone(), held.clone(), stalled.clone());
        let tee = Box::pin(body.then(move |chunk| {
            let (to_client, stalled) = (to_client.clone(), stalled_in.clone());
            let previous = match &chunk {
                Ok(c) => held_in.lock().unwrap_or_else(|e| e.into_inner()).replace(c.clone()),
                Err(_) => None,
            };
            async move {
                if let Some(p) = previous {
                    // A closed channel means the client left; keep caching.
                    in_parts_to_client(&to_client, &stalled, p).await;
                }
                chunk
            }
        }));
        let outcome = async {
            let (digest, size) = blobs.put_stream(tee, expected.sha256.as_ref()).await.map_err(|e| e.to_string())?;
            (expected.check)()?;
            commit(digest, size).await
        }
        .await;
        let last = held.lock().unwrap_or_else(|e| e.into_inner()).take();
        // The others first: what they wait for is in the store (or failed), whatever this
        // client does with its last chunk.
        match outcome {
            Ok(()) => {
                flight.finish(Outcome::Done);
                if let Some(last) = last {
                    in_parts_to_client(&tx, &stalled, last).await;
                }
            }
            Err(e) => {
                tracing::warn!(what = %label, error = %e, "caching upstream content failed");
                flight.finish(Outcome::Failed(e.clone()));
                to_client_within_stall(&tx, &stalled, Err(std::io::Error::other(e))).await;
            }
        }
        if stalled.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(what = %label, "a client took no chunk for {} s: the fill went on without it", CLIENT_STALL.as_secs());
        }
    });
    // A client left behind gets what was queued for it, then an error: never an end that would
    // pass a partial body for a whole one.
    futures::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        std::task::Poll::Ready(None) if given_up.swap(false, std::sync::atomic::Ordering::Relaxed) => {
            std::task::Poll::Ready(Some(Err(std::io::Error::other(format!("no chunk taken for {} s", CLIENT_STALL.as_secs())))))
        }
        other => other,
    })
}

/// Sends `chunk` to a fill's client in parts of at most [`CLIENT_PART`], each within the stall bound.
async fn in_parts_to_client(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, stalled: &std::sync::atomic::AtomicBool, mut chunk: Bytes) {
    while !chunk.is_empty() && !stalled.load(std::sync::atomic::Ordering::Relaxed) {
        let part = chunk.split_to(chunk.len().min(CLIENT_PART));
        to_client_within_stall(tx, stalled, Ok(part)).await;
    }
}

/// Sends `item` to a fill's client unless it has stalled, waiting at most [`CLIENT_STALL`];
/// past that the client is left behind (`stalled`) and nothing more is sent to it.
async fn to_client_within_stall(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    stalled: &std::sync::atomic::AtomicBool,
    item: Result<Bytes, std::io::Error>,
) {
    use std::sync::atomic::Ordering;
    if stalled.load(Ordering::Relaxed) {
        return;
    }
    if tokio::time::timeout(CLIENT_STALL, tx.send(item)).await.is_err() {
        stalled.store(true, Ordering::Relaxed);
    }
}

/// What a proxy's fill must be: its sha256 when the upstream said, and whatever else the
/// format checks once the whole has arrived (npm's sha512 or sha1, hashed on the way): in the
/// store's fill before anything is recorded, in a pass-through before the last chunk leaves.
pub struct Expected {
    pub sha256: Option<Digest>,
    pub check: Box<dyn FnOnce() -> Result<(), String>>,
}

impl Expected {
    pub fn sha256(sha256: Option<Digest>) -> Expected {
        Expected { sha256, check: Box::new(|| Ok(())) }
    }
}

/// Sends `body` to the client as [`stream_through`] does (the last chunk only once the content
/// verifies against `expected`), keeping nothing.
async fn pass_through<S, E>(mut body: S, expected: Expected, tx: mpsc::Sender<Result<Bytes, std::io::Error>>)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use sha2::Digest as _;
    let Expected { sha256: expected, check } = expected;
    let mut hasher = expected.as_ref().map(|_| sha2::Sha256::new());
    let mut held: Option<Bytes> = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if let Some(h) = hasher.as_mut() {
                    h.update(&c);
                }
                if let Some(previous) = held.replace(c) {
                    if tx.send(Ok(previous)).await.is_err() {
                        return; // the client left, and nothing is kept
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        }
    }
    if let (Some(expected), Some(h)) = (expected, hasher) {
        let actual = Digest::from_sha256_bytes(&h.finalize());
        if actual != expected {
            let _ = tx.send(Err(std::io::Error::other(format!("the upstream's content is {actual}, expected {expected}")))).await;
            return;
        }
    }
    if let Err(e) = check() {
        let _ = tx.send(Err(std::io::Error::other(e))).await;
        return;
    }
    if let Some(last) = held {
        let _ = tx.send(Ok(last)).await;
    }
}

/// Upstream 404s, remembered for a time to live so that a miss does not ask the upstream again.
/// Clients choose the names that miss, so the entries are capped: past [`NEGATIVE_CACHE_CAP`]
/// the least recently asked goes (it is asked upstream again when next missed), where sweeping
/// only expired entries let a client that asks for new names grow the map for as long as the
/// time to live (a year for "for ever").
pub struct NegativeCache {
    ttl: Duration,
    entries: Mutex<lru::LruCache<String, Instant>>,
}

/// Misses remembered per proxy repository: more than the names its clients mistype or keep
/// private in a year, a few MB at most.
pub const NEGATIVE_CACHE_CAP: usize = 20_000;

impl NegativeCache {
    /// `None`: remembered for ever; zero: off.
    pub fn new(ttl: Option<Duration>) -> NegativeCache {
        NegativeCache::with_cap(ttl, NEGATIVE_CACHE_CAP)
    }

    fn with_cap(ttl: Option<Duration>, cap: usize) -> NegativeCache {
        let cap = std::num::NonZeroUsize::new(cap).unwrap_or(std::num::NonZeroUsize::MIN);
        NegativeCache { ttl: ttl.unwrap_or(Duration::from_secs(365 * 86_400)), entries: Mutex::new(lru::LruCache::new(cap)) }
    }

    pub fn contains(&self, key: &str) -> bool {
        let mut neg = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match neg.get(key) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                neg.pop(key);
                false
            }
            None => false,
        }
    }

    pub fn insert(&self, key: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut neg = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        neg.put(key.to_string(), Instant::now() + self.ttl);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content a store cannot keep reaches the client as kept content does: the last chunk
    /// only once the whole verifies, an error instead when it does not.
    #[tokio::test]
    async fn content_passed_through_is_checked_before_its_last_chunk() {
        let chunks = [Bytes::from_static(b"one "), Bytes::from_static(b"two "), Bytes::from_static(b"three")];
        let run = |expected: Option<Digest>| {
            let chunks = chunks.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(8);
                pass_through(futures::stream::iter(chunks.map(Ok::<_, std::io::Error>)), Expected::sha256(expected), tx).await;
                let mut got = Vec::new();
                while let Some(item) = rx.recv().await {
                    got.push(item.map_err(|e| e.to_string()));
                }
                got
            }
        };
        let whole = Digest::of(b"one two three");
        let ok: Vec<_> = chunks.iter().cloned().map(Ok).collect();
        assert_eq!(run(Some(whole)).await, ok);
        assert_eq!(run(None).await, ok);
        let wrong = Digest::of(b"something else");
        let got = run(Some(wrong)).await;
        assert_eq!(got[..2], ok[..2]);
        assert!(got.len() == 3 && got[2].as_ref().is_err_and(|e| e.contains("expected")), "{got:?}");
    }

    /// A client that stops reading (and keeps its connection) held the fill, and so every
    /// request waiting for it, for as long as it stayed. Now the others get the content after
    /// the stall bound, and that client what was queued for it, then an error.
    #[actix_web::test]
    async fn a_client_that_stops_reading_holds_up_the_others_for_a_while_only() {
        tokio::time::pause();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::filesystem("t", dir.path()).unwrap());
        let chunks: Vec<Bytes> = (0..32u8).map(|i| Bytes::from(vec![i; 64 << 10])).collect();
        let digest = Digest::of(&chunks.concat());
        let sf = SingleFlight::default();
        let (Join::Leader(flight), Join::Follower(waiting)) = (sf.join("k"), sf.join("k")) else { panic!("one leader, one follower") };
        let body = futures::stream::iter(chunks.clone().into_iter().map(Ok::<_, std::io::Error>));
        let length = Some(32 * (64 << 10));
        let mut client =
            Box::pin(stream_through(store.clone(), body, length, Expected::sha256(Some(digest.clone())), flight, "t".into(), |_, _| async { Ok(()) }));
        let started = tokio::time::Instant::now();
        let waited = tokio::time::timeout(CLIENT_STALL * 4, SingleFlight::wait(waiting)).await;
        assert_eq!(waited.expect("the others wait for the stalled client for a while only"), Outcome::Done);
        assert!(started.elapsed() >= CLIENT_STALL, "the fill waited for the client first");
        let stored = store.get(&digest, None).await.expect("the content is in the store");
        assert_eq!(stored.total, 32 * (64 << 10));
        let mut got = Vec::new();
        while let Some(item) = client.next().await {
            got.push(item);
        }
        let (last, queued) = got.split_last().unwrap();
        assert!(last.as_ref().is_err_and(|e| e.to_string().contains("no chunk taken")), "{last:?}");
        assert!(queued.len() < chunks.len() && queued.iter().zip(&chunks).all(|(q, c)| q.as_ref().ok() == Some(c)), "{} queued", queued.len());
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_fetch() {
        let sf = SingleFlight::default();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<u32, String>(7)
        };
        let classify = |r: &Result<u32, String>| if r.is_ok() { Outcome::Done } else { Outcome::Failed("x".into()) };
        let reply = |o: Outcome| if o == Outcome::Done { Ok(7) } else { Err("failed".to_string()) };
        let (a, b, c) = tokio::join!(sf.once("k", fetch, classify, reply), sf.once("k", fetch, classify, reply), sf.once("k", fetch, classify, reply));
        assert_eq!((a, b, c), (Ok(7), Ok(7), Ok(7)));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Finished flights are forgotten: the next miss fetches again.
        assert_eq!(sf.once("k", fetch, classify, reply).await, Ok(7));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// The interleaving that made two upstream fetches: a caller looks at the cache (miss), the
    /// fill in flight finishes and leaves, then the caller joins. It must find the fill's result.
    #[tokio::test]
    async fn a_caller_that_joins_after_the_fill_finished_finds_its_result() {
        let sf = SingleFlight::default();
        let cache: Arc<Mutex<Option<u32>>> = Arc::default();
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        let look = || {
            let cache = cache.clone();
            async move { Ok::<_, String>(*cache.lock().unwrap()) }
        };
        // The late caller's own look at the cache, before any fill.
        assert_eq!(look().await, Ok(None));
        // Meanwhile a leader fills the cache and finishes.
        let Ok(Fill::Lead(flight)) = sf.join_checked("k", look).await else { panic!("the first caller leads") };
        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *cache.lock().unwrap() = Some(7);
        flight.finish(Outcome::Done);
        // The late caller joins now: no flight is left, and it must not fetch again.
        match sf.join_checked("k", look).await {
            Ok(Fill::Cached(v)) => assert_eq!(v, 7),
            _ => panic!("the late caller fetched again"),
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn credentials_in_the_remote_url_are_refused_without_repeating_them() {
        for url in ["https://mirror:s3cret-pw@registry.example/", "https://mirror@registry.example", "http://:s3cret-pw@registry.example/simple/"] {
            let mut attrs = Map::new();
            attrs.insert("proxy".into(), json!({ "remoteUrl": url }));
            let e = ProxySettings::parse(&attrs).unwrap_err();
            assert_eq!(e.field, "proxy.remoteUrl", "{url}");
            assert!(!e.to_string().contains("s3cret-pw") && !e.to_string().contains("mirror"), "{url}: {e}");
        }
        let mut attrs = Map::new();
        attrs.insert("proxy".into(), json!({ "remoteUrl": "https://registry.example/v2/@scope" }));
        assert!(ProxySettings::parse(&attrs).is_ok(), "an @ in the path is no credential");
    }

    #[test]
    fn ages_past_a_century_are_refused_naming_the_field_not_a_panic() {
        for (ttl, ok) in [(json!(-1), true), (json!(52_560_000), true), (json!(52_560_001), false), (json!(1e300), false), (json!(-2), false)] {
            let mut attrs = Map::new();
            attrs.insert("proxy".into(), json!({ "remoteUrl": "https://registry.example/" }));
            attrs.insert("negativeCache".into(), json!({ "enabled": true, "timeToLive": ttl }));
            match ProxySettings::parse(&attrs) {
                Ok(s) => {
                    assert!(ok, "{ttl} was taken");
                    let n = NegativeCache::new(s.negative_cache);
                    n.insert("a");
                    assert!(n.contains("a"));
                }
                Err(e) => assert!(!ok && e.field == "negativeCache.timeToLive", "{ttl}: {e}"),
            }
        }
    }

    #[test]
    fn negative_cache_expires_and_can_be_off() {
        let n = NegativeCache::new(Some(Duration::from_millis(30)));
        n.insert("a");
        assert!(n.contains("a") && !n.contains("b"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!n.contains("a"));
        let off = NegativeCache::new(Some(Duration::ZERO));
        off.insert("a");
        assert!(!off.contains("a"));
    }

    #[test]
    fn negative_cache_holds_at_most_its_cap_and_keeps_what_is_asked_for() {
        let n = NegativeCache::with_cap(None, 3);
        for k in ["a", "b", "c"] {
            n.insert(k);
        }
        assert!(n.contains("a"), "asked for again: now the most recent");
        n.insert("d");
        assert!(n.contains("a") && !n.contains("b") && n.contains("c") && n.contains("d"), "the least recently asked goes, not the first in");
        for i in 0..1000 {
            n.insert(&format!("new-{i}"));
        }
        assert_eq!(n.len(), 3, "a client's stream of new names does not grow the cache");
        assert!(!n.contains("a") && n.contains("new-999"));
        assert_eq!(NegativeCache::new(None).entries.lock().unwrap().cap().get(), NEGATIVE_CACHE_CAP);
    }
}
