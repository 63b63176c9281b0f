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

use crate::blob::{BlobStore, HashState};
use crate::config::ConfigError;
use crate::digest::Digest;

/// A proxy repository's upstream and caching. Ages are in minutes as in Nexus, fractions
/// allowed; -1 (`None`) is forever.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    /// Without a trailing `/`.
    pub remote_url: String,
    pub content_max_age: Option<Duration>,
    pub metadata_max_age: Option<Duration>,
    /// Time to live of remembered upstream 404s; zero when the negative cache is off.
    pub negative_cache: Option<Duration>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// The three sections as stored and shown (defaults filled in).
    pub raw: Map<String, Value>,
}

pub fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| ConfigError::new(field, "must be an object"))
}

/// Refuses any key of `obj` not in `allowed`, naming it as `section.key`.
pub fn only(obj: &Map<String, Value>, section: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ConfigError::new(format!("{section}.{k}"), "unknown field"));
        }
    }
    Ok(())
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
    Ok(Some(Duration::from_secs_f64(m * 60.0)))
}

fn seconds(v: Option<&Value>, field: &str, default: f64) -> Result<Duration, ConfigError> {
    let s = match v {
        None | Some(Value::Null) => default,
        Some(v) => v.as_f64().filter(|s| *s > 0.0).ok_or_else(|| ConfigError::new(field, "must be a positive number of seconds"))?,
    };
    Ok(Duration::from_secs_f64(s))
}

impl ProxySettings {
    /// Reads `proxy`, `negativeCache` and `httpClient` from a repository's attributes.
    pub fn parse(attrs: &Map<String, Value>) -> Result<ProxySettings, ConfigError> {
        let empty = Map::new();
        let proxy = match attrs.get("proxy") {
            Some(v) => object(v, "proxy")?,
            None => return Err(ConfigError::new("proxy", "is required (an object with remoteUrl)")),
        };
        only(proxy, "proxy", &["remoteUrl", "contentMaxAge", "metadataMaxAge"])?;
        let remote_url = proxy.get("remoteUrl").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::new("proxy.remoteUrl", "is required"))?;
        let parsed = url::Url::parse(remote_url).map_err(|e| ConfigError::new("proxy.remoteUrl", format!("not a URL: {e}")))?;
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
        only(
            conn,
            "httpClient.connection",
            &["timeout", "connectTimeout", "retries", "userAgentSuffix", "enableCircularRedirects", "enableCookies", "useTrustStore"],
        )?;
        let (mut username, mut password) = (None, None);
        if let Some(auth) = http.get("authentication").filter(|v| !v.is_null()) {
            let auth = object(auth, "httpClient.authentication")?;
            only(auth, "httpClient.authentication", &["type", "username", "password", "ntlmHost", "ntlmDomain", "preemptive"])?;
            match auth.get("type").and_then(|v| v.as_str()).unwrap_or("username") {
                "username" => {}
                other => return Err(ConfigError::new("httpClient.authentication.type", format!("{other} is not supported (only username)"))),
            }
            username = Some(
                auth.get("username").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::new("httpClient.authentication.username", "is required"))?.to_string(),
            );
            password = Some(
                auth.get("password").and_then(|v| v.as_str()).ok_or_else(|| ConfigError::new("httpClient.authentication.password", "is required"))?.to_string(),
            );
        }
        let mut p = ProxySettings {
            remote_url: remote_url.trim_end_matches('/').to_string(),
            content_max_age: minutes(proxy.get("contentMaxAge"), "proxy.contentMaxAge", 1440.0)?,
            metadata_max_age: minutes(proxy.get("metadataMaxAge"), "proxy.metadataMaxAge", 1440.0)?,
            negative_cache: if neg_enabled { minutes(neg.get("timeToLive"), "negativeCache.timeToLive", 1440.0)? } else { Some(Duration::ZERO) },
            username,
            password,
            connect_timeout: seconds(conn.get("connectTimeout"), "httpClient.connection.connectTimeout", 10.0)?,
            read_timeout: seconds(conn.get("timeout"), "httpClient.connection.timeout", 60.0)?,
            raw: Map::new(),
        };
        let mut raw = Map::new();
        raw.insert("proxy".into(), json!({"remoteUrl": p.remote_url, "contentMaxAge": proxy.get("contentMaxAge").cloned().unwrap_or(1440.into()), "metadataMaxAge": proxy.get("metadataMaxAge").cloned().unwrap_or(1440.into())}));
        raw.insert("negativeCache".into(), json!({"enabled": neg_enabled, "timeToLive": neg.get("timeToLive").cloned().unwrap_or(1440.into())}));
        let mut http_out = json!({"blocked": false, "autoBlock": false, "connection": {
            "timeout": p.read_timeout.as_secs_f64(), "connectTimeout": p.connect_timeout.as_secs_f64()
        }, "authentication": null});
        if let (Some(u), Some(pw)) = (&p.username, &p.password) {
            http_out["authentication"] = json!({"type": "username", "username": u, "password": pw});
        }
        raw.insert("httpClient".into(), http_out);
        p.raw = raw;
        Ok(p)
    }

    /// Whether something fetched `age_ms` milliseconds ago is due for revalidation.
    pub fn metadata_stale(&self, age_ms: i64) -> bool {
        self.metadata_max_age.is_some_and(|max| age_ms >= max.as_millis() as i64)
    }
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
    /// The leader went away before finishing (its client disconnected): try again.
    Abandoned,
}

type Flights = Arc<Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>>;

/// Concurrent misses for one key make one upstream fetch: the first caller leads, the others
/// wait for its [`Outcome`] and then read what it cached.
#[derive(Clone, Default)]
pub struct SingleFlight {
    flights: Flights,
}

/// The leader's side of a shared fetch; finishing (or being dropped) wakes the followers.
pub struct Flight {
    key: String,
    flights: Flights,
    tx: watch::Sender<Option<Outcome>>,
}

impl Flight {
    pub fn finish(self, outcome: Outcome) {
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.flights.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
        if self.tx.borrow().is_none() {
            let _ = self.tx.send(Some(Outcome::Abandoned));
        }
    }
}

pub enum Join {
    Leader(Flight),
    Follower(watch::Receiver<Option<Outcome>>),
}

impl SingleFlight {
    pub fn join(&self, key: &str) -> Join {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = flights.get(key) {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.to_string(), rx);
        Join::Leader(Flight { key: key.to_string(), flights: self.flights.clone(), tx })
    }

    pub async fn wait(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
        match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.clone().unwrap_or(Outcome::Abandoned),
            Err(_) => Outcome::Abandoned,
        }
    }

    /// Runs `fetch` once for every concurrent caller with the same key. `classify` tells how
    /// the leader's result reads to the followers; a follower turns the outcome back into a
    /// result with `reply` (`Abandoned` makes it fetch on its own rather than fail).
    pub async fn once<T, E, F, Fut>(
        &self,
        key: &str,
        fetch: F,
        classify: impl Fn(&Result<T, E>) -> Outcome,
        reply: impl Fn(Outcome) -> Result<T, E>,
    ) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.join(key) {
            Join::Follower(rx) => match Self::wait(rx).await {
                Outcome::Abandoned => fetch().await,
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

/// Streams an upstream body to the client while a background task writes it to the blob
/// store. The content is kept, and `commit` (which records it in the metadata) called, only once
/// its sha256 verifies against `expected` (when the upstream told it); then the flight finishes
/// `Done`, or `Failed` and the client's stream ends in an error. A client that goes away does
/// not stop the cache filling.
pub fn stream_through<S, E, F, Fut>(
    blobs: Arc<BlobStore>,
    body: S,
    expected: Option<Digest>,
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
    actix_web::rt::spawn(async move {
        // Each chunk goes to the client when the next one arrives; the last only once the
        // content verifies, so a client never receives a complete file that failed the check.
        let held: Arc<Mutex<Option<Bytes>>> = Arc::default();
        let (to_client, held_in) = (tx.clone(), held.clone());
        let tee = Box::pin(body.then(move |chunk| {
            let to_client = to_client.clone();
            let previous = match &chunk {
                Ok(c) => held_in.lock().unwrap_or_else(|e| e.into_inner()).replace(c.clone()),
                Err(_) => None,
            };
            async move {
                if let Some(p) = previous {
                    // A closed channel means the client left; keep caching.
                    let _ = to_client.send(Ok(p)).await;
                }
                chunk
            }
        }));
        let id = uuid::Uuid::new_v4().to_string();
        let outcome = async {
            let (size, state) = blobs.stage_append(&id, 0, &HashState::empty(), tee).await.map_err(|e| e.to_string())?;
            let digest = blobs.stage_finish(&id, &state, expected.as_ref()).await.map_err(|e| e.to_string())?;
            commit(digest, size).await
        }
        .await;
        let last = held.lock().unwrap_or_else(|e| e.into_inner()).take();
        match outcome {
            Ok(()) => {
                if let Some(last) = last {
                    let _ = tx.send(Ok(last)).await;
                }
                flight.finish(Outcome::Done)
            }
            Err(e) => {
                blobs.stage_discard(&id).await;
                tracing::warn!(what = %label, error = %e, "caching upstream content failed");
                let _ = tx.send(Err(std::io::Error::other(e.clone()))).await;
                flight.finish(Outcome::Failed(e));
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Upstream 404s, remembered for a time to live so that a miss does not ask the upstream again.
pub struct NegativeCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Instant>>,
}

impl NegativeCache {
    /// `None`: remembered for ever; zero: off.
    pub fn new(ttl: Option<Duration>) -> NegativeCache {
        NegativeCache { ttl: ttl.unwrap_or(Duration::from_secs(365 * 86_400)), entries: Mutex::new(HashMap::new()) }
    }

    pub fn contains(&self, key: &str) -> bool {
        let mut neg = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match neg.get(key) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                neg.remove(key);
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
        if neg.len() > 100_000 {
            let now = Instant::now();
            neg.retain(|_, until| *until > now);
        }
        neg.insert(key.to_string(), Instant::now() + self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
