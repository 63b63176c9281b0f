//! Server configuration: built-in defaults < TOML file (`--config`) < `WHARF_*` environment.
//! `config/wharf.toml` documents every key with its default.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the main port: admin API, console, `/repository/...`, `/v2/...`.
    pub listen: String,
    /// Where wharf keeps its SQLite database, file blob stores and the first admin password.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; empty means `sqlite://<data_dir>/wharf.db`.
    pub database_url: String,
    /// The first start's admin password; empty means a random one in `<data_dir>/admin.password`.
    pub admin_password: String,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub docker: DockerConfig,
    pub uploads: UploadsConfig,
    pub gc: GcConfig,
    pub security: SecurityConfig,
    pub tls: TlsConfig,
    pub s3: S3Config,
    pub blob_cache: BlobCacheConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    #[serde(default)]
    pub disk: DiskConfig,
    /// LDAP servers from the file (`[[ldap]]`, the API's field names), asked before those added
    /// through the API; read-only there.
    #[serde(default)]
    pub ldap: Vec<crate::security::ldap::LdapServer>,
}

/// How log lines are written (to standard output; `RUST_LOG` chooses which).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (for Loki, Elasticsearch, CloudWatch): the event's fields, and
    /// the request id of the request it belongs to under `span`.
    Json,
}

/// HTTPS for the main port and every repository port (`wharf cert` makes the files).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: plain HTTP.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Wrong passwords in a row for one user name from one address before that name's password
    /// checks from that address pause.
    pub lockout_after: u32,
    /// The first pause, in seconds; each further wrong password doubles it.
    pub lockout_secs: u64,
    /// The longest pause: nobody is locked out for good.
    pub lockout_max_secs: u64,
    /// Audit events older than this many days are deleted.
    pub audit_retention_days: u64,
    /// The realms logins are checked in: `local`, `ldap`. A local name (any spelling) is decided
    /// locally only, whatever the order.
    pub realms: Vec<String>,
    /// How long a verified login (local or LDAP) is remembered, in seconds.
    pub login_cache_secs: u64,
    /// An API token without an expiry, neither used nor created for this many days, stops
    /// working (the next token created deletes it); 0: never. One given an expiry keeps it.
    pub token_idle_days: u64,
    /// The key that encrypts stored secrets; empty means `<data_dir>/secret.key`.
    /// `WHARF_SECRET_KEY` (the key itself, base64) takes precedence.
    #[serde(default)]
    pub secret_key_file: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// An upload untouched for this long is abandoned: its session and staged bytes are removed.
    pub ttl_secs: u64,
    /// How often each node looks for abandoned uploads.
    pub sweep_interval_secs: u64,
    /// Large uploads into file blob stores are written with `O_DIRECT`, past the page cache.
    pub direct_writes: bool,
}

/// Garbage collection of blob stores (the "Compact blob stores" task).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// A blob that no asset names is deleted once nobody has written or linked it for this long;
    /// at least `uploads.ttl_secs`.
    pub grace_secs: u64,
    /// How long a blob stays marked for deletion before a writer that needs it, or the next
    /// pass, finishes a deletion that a pass left (it was killed, or stalled).
    pub deletion_lease_secs: u64,
    /// When the built-in "Compact blob stores" task runs: a cron expression (UTC, seconds
    /// optional), or empty for manual runs only.
    pub schedule: String,
    /// When the built-in "Cleanup service" task (repositories' cleanup policies) runs; the same
    /// syntax. Set it before `schedule`, so that what a cleanup frees goes in the same night.
    pub cleanup_schedule: String,
}

/// Repositories' health checks (the integrity check of their content, see
/// `lifecycle::health_check`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// When the built-in "Verify repository integrity" task checks the repositories whose
    /// health check is enabled: a cron expression (UTC, seconds optional), or empty for manual
    /// runs only.
    pub schedule: String,
    /// How fast a check reads blobs, in MiB per second (0: as fast as the store gives them):
    /// what it reads is not read for clients meanwhile.
    pub read_mib_per_sec: u64,
}

impl Default for HealthCheckConfig {
    fn default() -> HealthCheckConfig {
        HealthCheckConfig { schedule: "0 0 3 * * *".into(), read_mib_per_sec: 64 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub pool_size: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Worker threads of the main port; 0 means one per core.
    pub workers: usize,
    /// Seconds that in-flight requests get to finish at shutdown.
    pub shutdown_timeout_secs: u64,
    /// A request body that delivers no byte for this many seconds ends its request (408).
    pub body_idle_timeout_secs: u64,
    /// Reverse proxies (addresses or networks) whose forwarding headers are believed; from any
    /// other peer they are ignored.
    pub trusted_proxies: Vec<Net>,
    /// The one family of forwarding headers the trusted proxies write; the other is ignored,
    /// since a proxy passes a family it does not write through from the client untouched.
    pub forwarded_headers: ForwardedHeaders,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`.
    XForwarded,
    /// RFC 7239 `Forwarded`.
    Forwarded,
}

/// An address or a network: `10.0.0.0/8`, `192.0.2.7`, `::1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net(pub ipnet::IpNet);

impl Net {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&crate::http::mount::unmapped(ip))
    }
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let net = if s.contains('/') { s.parse::<ipnet::IpNet>().ok() } else { s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from) };
        net.map(Net).ok_or_else(|| format!("{s:?} is not an IP address or network (like 10.0.0.0/8)"))
    }
}

impl Serialize for Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Net, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Lifetime of the bearer tokens the token endpoint issues.
    pub token_ttl_secs: u64,
    /// The `service` named in challenges and tokens.
    pub token_service: String,
}

/// Local disks wharf writes to (the data directory, file blob stores, the blob cache).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Writes that make the data grow stop once a file system has this many MiB free (at most 5%
    /// of its size), so that deletions, tasks and garbage collection keep room. 0: none.
    pub reserve_mib: u64,
}

impl DiskConfig {
    pub fn reserve(&self) -> wharf_format::DiskReserve {
        wharf_format::DiskReserve::mib(self.reserve_mib)
    }
}

impl Default for DiskConfig {
    fn default() -> DiskConfig {
        DiskConfig { reserve_mib: 512 }
    }
}

/// This node's copies of S3 blob stores' blobs, made as they are read whole and served instead
/// of the bucket next time (content-addressed, so never stale). `max_mib = 0`: none.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobCacheConfig {
    /// The most the copies may take, in MiB; the least recently read go first.
    pub max_mib: u64,
    /// Where; empty: `<data_dir>/cache/blobs`. One directory per node (never shared).
    pub dir: String,
}

/// Webhook deliveries (see `src/webhooks`): how often and how long a failing receiver is retried.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Attempts per delivery, the first included; then it is `failed` (and stays in the log).
    pub max_attempts: u32,
    /// The pause before the first retry, in milliseconds; each further retry waits twice as long.
    pub retry_ms: u64,
    /// How long one attempt may take (connect, send, answer), in seconds.
    pub timeout_secs: u64,
    /// Finished deliveries (delivered or failed) are kept this many days in the delivery log.
    pub retention_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> WebhooksConfig {
        WebhooksConfig { max_attempts: 5, retry_ms: 10_000, timeout_secs: 10, retention_days: 7 }
    }
}

/// The `default` blob store in an S3 bucket instead of `<data_dir>/blobs/default` (set before
/// the first start; a cluster's nodes share it). Empty `bucket`: a file store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub force_path_style: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8081".into(),
            data_dir: PathBuf::from("./data"),
            database_url: String::new(),
            admin_password: String::new(),
            database: DatabaseConfig { pool_size: 16 },
            http: HttpConfig {
                workers: 0,
                shutdown_timeout_secs: 30,
                body_idle_timeout_secs: 30,
                trusted_proxies: Vec::new(),
                forwarded_headers: ForwardedHeaders::XForwarded,
            },
            docker: DockerConfig { token_ttl_secs: 300, token_service: "wharf".into() },
            uploads: UploadsConfig { ttl_secs: 86_400, sweep_interval_secs: 600, direct_writes: false },
            gc: GcConfig { grace_secs: 86_400, deletion_lease_secs: 120, schedule: "0 0 2 * * *".into(), cleanup_schedule: "0 0 1 * * *".into() },
            tls: TlsConfig::default(),
            ldap: Vec::new(),
            security: SecurityConfig {
                lockout_after: 5,
                lockout_secs: 5,
                lockout_max_secs: 900,
                audit_retention_days: 90,
                realms: vec!["local".into(), "ldap".into()],
                login_cache_secs: 60,
                token_idle_days: 365,
                secret_key_file: String::new(),
            },
            s3: S3Config { region: "us-east-1".into(), ..Default::default() },
            blob_cache: BlobCacheConfig::default(),
            webhooks: WebhooksConfig::default(),
            log: LogConfig::default(),
            health_check: HealthCheckConfig::default(),
            disk: DiskConfig::default(),
        }
    }
}

/// The environment variables that configure wharf (others starting with `WHARF_` are ignored,
/// so test and tooling variables cannot break start-up).
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "admin_password",
    "database",
    "http",
    "docker",
    "uploads",
    "gc",
    "security",
    "tls",
    "s3",
    "blob_cache",
    "webhooks",
    "log",
    "health_check",
    "disk",
    "ldap",
];

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            fig = fig.merge(Toml::file_exact(file));
        }
        let known = |k: &str| {
            let k = k.to_ascii_lowercase();
            ENV_KEYS.iter().any(|known| k == *known || k.starts_with(&format!("{known}.")))
        };
        // figment reads a variable's text as a number or a boolean when it looks like one, and
        // then refuses it for a key that takes text: a password "0123", an access key "true" or
        // a prefix "2024" would stop the start. Keys whose default is text take the text as it is.
        let defaults = Figment::from(Serialized::defaults(Config::default()));
        let text = move |k: &str| matches!(defaults.find_value(&k.to_ascii_lowercase()), Ok(figment::value::Value::String(..)));
        let env = Env::prefixed("WHARF_").split("__");
        for (k, v) in env.iter().filter(|(k, _)| known(k.as_str()) && text(k.as_str())) {
            fig = fig.merge(Serialized::default(k.as_str(), v));
        }
        fig = fig.merge(env.filter(move |k| known(k.as_str()) && !text(k.as_str())));
        let mut cfg: Config = fig.extract().map_err(Box::new)?;
        for s in &cfg.ldap {
            if let Err((_, m)) = s.validate() {
                return Err(Box::new(figment::Error::from(format!("ldap server {}: {m}", s.name))));
            }
        }
        if let Some(bad) = cfg.security.realms.iter().find(|r| *r != "local" && *r != "ldap") {
            return Err(Box::new(figment::Error::from(format!("security.realms: unknown realm {bad:?} (local, ldap)"))));
        }
        if cfg.http.body_idle_timeout_secs == 0 {
            return Err(Box::new(figment::Error::from("http.body_idle_timeout_secs: must be at least 1".to_string())));
        }
        if cfg.gc.grace_secs < cfg.uploads.ttl_secs {
            return Err(Box::new(figment::Error::from(format!(
                "gc.grace_secs: must be at least uploads.ttl_secs ({}): a blob is kept at least as long as an upload session lives",
                cfg.uploads.ttl_secs
            ))));
        }
        // Accepted and then changed behind the admin's back, these were: 0 made a run a second
        // (uploads), one try (webhooks); beyond a hundred years a retention wrapped into the
        // past and deleted everything.
        for (name, value, least) in [
            ("uploads.sweep_interval_secs", cfg.uploads.sweep_interval_secs, 1),
            ("webhooks.timeout_secs", cfg.webhooks.timeout_secs, 1),
            ("webhooks.max_attempts", u64::from(cfg.webhooks.max_attempts), 1),
        ] {
            if value < least {
                return Err(Box::new(figment::Error::from(format!("{name}: must be at least {least}"))));
            }
        }
        for (name, days) in [("security.audit_retention_days", cfg.security.audit_retention_days), ("webhooks.retention_days", cfg.webhooks.retention_days)] {
            if days > wharf_format::MAX_DAYS {
                return Err(Box::new(figment::Error::from(format!("{name}: must be at most {} days", wharf_format::MAX_DAYS))));
            }
        }
        if cfg.gc.deletion_lease_secs == 0 {
            return Err(Box::new(figment::Error::from("gc.deletion_lease_secs: must be at least 1".to_string())));
        }
        if let Err(e) = crate::lifecycle::schedule::Frequency::cron(&cfg.gc.schedule) {
            return Err(Box::new(figment::Error::from(format!("gc.schedule: {e}"))));
        }
        if let Err(e) = crate::lifecycle::schedule::Frequency::cron(&cfg.gc.cleanup_schedule) {
            return Err(Box::new(figment::Error::from(format!("gc.cleanup_schedule: {e}"))));
        }
        if let Err(e) = crate::lifecycle::schedule::Frequency::cron(&cfg.health_check.schedule) {
            return Err(Box::new(figment::Error::from(format!("health_check.schedule: {e}"))));
        }
        let s3 = &cfg.s3;
        if s3.bucket.is_empty()
            && (!s3.endpoint.is_empty() || !s3.prefix.is_empty() || !s3.access_key_id.is_empty() || !s3.secret_access_key.is_empty() || s3.force_path_style)
        {
            return Err(Box::new(figment::Error::from(
                "s3.bucket: required when any other [s3] key is set (the [s3] section makes the default blob store an S3 bucket)".to_string(),
            )));
        }
        if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
            return Err(Box::new(figment::Error::from("s3.secret_access_key: give both s3.access_key_id and s3.secret_access_key, or neither (credentials from the environment or the instance's role)".to_string())));
        }
        if cfg.database_url.is_empty() {
            cfg.database_url = format!("sqlite://{}", cfg.data_dir.join("wharf.db").display());
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_default_file_is_the_default() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let documented = Config::load(Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/wharf.toml")))).unwrap();
        let defaults = Config::load(None).unwrap();
        assert_eq!(format!("{documented:?}"), format!("{defaults:?}"));
    }

    /// Several tests set WHARF_* variables; the environment is the process's.
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn text_from_the_environment_stays_text() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let vars = [
            ("WHARF_ADMIN_PASSWORD", "0123"),
            ("WHARF_S3__BUCKET", "true"),
            ("WHARF_S3__PREFIX", "2024"),
            ("WHARF_S3__ACCESS_KEY_ID", "1e5"),
            ("WHARF_S3__SECRET_ACCESS_KEY", "[x]"),
            ("WHARF_S3__FORCE_PATH_STYLE", "true"),
            ("WHARF_DATABASE__POOL_SIZE", "7"),
            ("WHARF_HTTP__TRUSTED_PROXIES", "[\"10.0.0.0/8\", \"192.168.0.0/16\"]"),
        ];
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let cfg = Config::load(None);
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        let cfg = cfg.unwrap();
        assert_eq!(cfg.admin_password, "0123");
        assert_eq!((cfg.s3.bucket.as_str(), cfg.s3.prefix.as_str()), ("true", "2024"));
        assert_eq!((cfg.s3.access_key_id.as_str(), cfg.s3.secret_access_key.as_str()), ("1e5", "[x]"));
        assert!(cfg.s3.force_path_style);
        assert_eq!(cfg.database.pool_size, 7);
        assert_eq!(cfg.http.trusted_proxies.len(), 2);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let nets: Vec<Net> = ["127.0.0.1", "10.0.0.0/8", "::1"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(nets[0].contains("127.0.0.1".parse().unwrap()));
        assert!(nets[0].contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!nets[0].contains("127.0.0.2".parse().unwrap()));
        assert!(nets[1].contains("10.200.0.1".parse().unwrap()));
        assert!(nets[2].contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("proxy.example.com".parse::<Net>().is_err());
    }
}
