//! Run-time state shared by every request: the database, the formats, and the registry of
//! opened repositories, rebuilt from the database whenever the configuration changes (on this
//! node, or on another one: nodes poll the configuration generation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};

use wharf_format::{BlobStore, ConfigError, Format, FormatEnv, Kind, RepoConfig, RepoLookup, RepoRef, UsageMeter, WritePolicy};

use crate::config::Config;
use crate::db::meta::SqlMeta;
use crate::db::repos::{self, RepoRow};
use crate::db::{Db, DbError};
use crate::security::Authenticator;

pub struct AppState {
    pub cfg: Config,
    pub db: Db,
    pub meta: Arc<SqlMeta>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<crate::audit::AuditLog>,
    pub formats: Vec<Arc<dyn Format>>,
    pub registry: Arc<RepoRegistry>,
    /// Downloads counted in memory until their next flush (see `lifecycle::downloads`).
    pub downloads: Arc<crate::lifecycle::downloads::DownloadLog>,
    pub listeners: crate::http::listeners::Listeners,
    pub started: std::time::Instant,
    /// This node's task scheduler (its node name, and the stops of the runs it holds).
    pub tasks: crate::lifecycle::tasks::Scheduler,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This node's copy of read-only mode (the database holds the truth: `crate::read_only`).
    pub read_only: crate::read_only::ReadOnly,
}

impl AppState {
    pub fn format(&self, name: &str) -> Option<Arc<dyn Format>> {
        self.formats.iter().find(|f| f.name() == name).cloned()
    }

    pub fn format_names(&self) -> Vec<&'static str> {
        self.formats.iter().map(|f| f.name()).collect()
    }
}

/// One consistent view of every configured repository.
#[derive(Default)]
pub struct Snapshot {
    pub generation: i64,
    pub repos: HashMap<String, RepoRef>,
    pub blob_stores: HashMap<String, Arc<BlobStore>>,
    /// Each open store's row id (ids are never reused): what tells a store kept across reloads
    /// from one deleted and created again under its name.
    store_ids: HashMap<String, i64>,
    pub by_port: HashMap<u16, String>,
    /// The ports of `by_port` that speak HTTPS.
    pub tls_ports: std::collections::HashSet<u16>,
    pub by_subdomain: HashMap<String, String>,
    /// Each repository's metric handles, found with the repository and without a lock.
    pub metrics: HashMap<String, Arc<crate::metrics::RepoMetrics>>,
}

impl Snapshot {
    /// The repository named `name` and, for a group, every repository it reaches through its
    /// members (nested groups included), each once, in the order they are reached.
    pub fn with_members(&self, name: &str) -> Vec<RepoRef> {
        let mut out: Vec<RepoRef> = Vec::new();
        let mut todo: Vec<String> = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            let Some(r) = self.repos.get(&n) else { continue };
            if out.iter().any(|o| o.config.name == n) {
                continue;
            }
            if r.config.kind == Kind::Group {
                let members = r.config.attributes.get("group").and_then(|g| g.get("memberNames")).and_then(serde_json::Value::as_array);
                // Reversed so that members are reached in their order.
                todo.extend(members.into_iter().flatten().rev().filter_map(|m| m.as_str().map(str::to_string)));
            }
            out.push(r.clone());
        }
        out
    }
}

pub struct RepoRegistry {
    current: RwLock<Arc<Snapshot>>,
    data_dir: PathBuf,
    identity: Arc<dyn wharf_format::Identity>,
    audit: Arc<dyn wharf_format::Audit>,
    downloads: Arc<dyn wharf_format::Downloads>,
    /// Every proxy's upstream health (state across reloads; the admin API's `status`).
    pub upstreams: Arc<wharf_format::upstream::Healths>,
    /// `gc.deletion_lease_secs`, in milliseconds, for every blob store opened.
    deletion_lease_ms: i64,
    /// For every file blob store opened.
    file_writes: FileWrites,
    metrics: Arc<crate::metrics::Metrics>,
    /// `[blob_cache]`: this node's copies, shared by every S3 store (blobs are the same bytes
    /// whichever store holds them).
    read_cache: std::sync::OnceLock<Arc<wharf_format::ReadCache>>,
}

/// How file blob stores (and S3 stores' scratch files) write.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileWrites {
    /// `uploads.direct_writes`.
    pub direct: bool,
    /// `disk.reserve_mib`.
    pub reserve: wharf_format::DiskReserve,
}

/// Formats look other repositories up through this; it does not keep the registry alive.
struct Lookup(Weak<RepoRegistry>);

impl RepoLookup for Lookup {
    fn repo(&self, name: &str) -> Option<RepoRef> {
        self.0.upgrade()?.get(name)
    }
}

impl RepoLookup for RepoRegistry {
    fn repo(&self, name: &str) -> Option<RepoRef> {
        self.get(name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("repository {repo}: {source}")]
    Config { repo: String, source: ConfigError },
}

impl RepoRegistry {
    pub fn new(
        data_dir: PathBuf,
        identity: Arc<dyn wharf_format::Identity>,
        audit: Arc<dyn wharf_format::Audit>,
        downloads: Arc<dyn wharf_format::Downloads>,
        deletion_lease_ms: i64,
        file_writes: FileWrites,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<RepoRegistry> {
        Arc::new(RepoRegistry {
            deletion_lease_ms,
            file_writes,
            metrics,
            read_cache: std::sync::OnceLock::new(),
            current: RwLock::new(Arc::new(Snapshot { generation: -1, ..Default::default() })),
            data_dir,
            identity,
            audit,
            downloads,
            upstreams: Arc::default(),
        })
    }

    /// Gives S3 stores opened from now on this node's read cache.
    pub fn set_read_cache(&self, cache: Arc<wharf_format::ReadCache>) {
        let _ = self.read_cache.set(cache);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn get(&self, name: &str) -> Option<RepoRef> {
        self.snapshot().repos.get(name).cloned()
    }

    /// Re-reads the configuration and reopens every repository. A repository whose stored
    /// configuration no longer opens is left out (and logged) rather than stopping the others.
    pub async fn reload(self: &Arc<Self>, db: &Db, meta: Arc<SqlMeta>, formats: &[Arc<dyn Format>]) -> Result<Arc<Snapshot>, LoadError> {
        let (generation, rows, stores) = db
            .run(|conn| {
                let generation = repos::generation(conn)?;
                Ok((generation, repos::list(conn)?, repos::list_blob_stores(conn)?))
            })
            .await?;
        let old = self.snapshot();
        // One meter across reloads: it remembers recent usage (see `db::usage_cache`).
        let usage: Arc<dyn UsageMeter> = meta.clone();
        let mut snap = Snapshot { generation, ..Default::default() };
        for s in stores {
            // Keep a store that is already open (it may be streaming to clients) while its
            // settings are the same. One deleted and created again under its name between two
            // reloads is another store (even at the same place) and is opened afresh.
            let existing = old.blob_stores.get(&s.name).filter(|_| old.store_ids.get(&s.name) == Some(&s.id));
            let opened: Result<Option<BlobStore>, String> = match s.kind.as_str() {
                "s3" => crate::storage::s3::S3Store::from_row(&s).and_then(|cfg| match existing {
                    Some(e) if e.s3_settings() == Some((&cfg.settings, cfg.presigned_urls)) => Ok(None),
                    _ => BlobStore::s3(&s.name, &cfg.settings, &self.data_dir.join("tmp").join("s3").join(&s.name))
                        .map(|b| {
                            let b = b.with_presigned_urls(cfg.presigned_urls).with_read_cache(self.read_cache.get().cloned());
                            Some(b.with_disk_reserve(self.file_writes.reserve))
                        })
                        .map_err(|e| e.to_string()),
                }),
                _ => {
                    let attrs: serde_json::Value = serde_json::from_str(&s.attributes).unwrap_or_default();
                    let path = attrs.get("path").and_then(|p| p.as_str()).unwrap_or(&s.name).to_string();
                    let root = blob_store_root(&self.data_dir, &path);
                    match existing {
                        Some(e) if e.root() == Some(root.as_path()) => Ok(None),
                        _ => BlobStore::filesystem(&s.name, &root)
                            .map(|b| Some(b.with_direct_writes(self.file_writes.direct).with_disk_reserve(self.file_writes.reserve)))
                            .map_err(|e| format!("{}: {e}", root.display())),
                    }
                }
            };
            let store = match (opened, existing) {
                (Ok(Some(b)), _) => Arc::new(b.with_ledger(meta.clone(), self.deletion_lease_ms)),
                (Ok(None), Some(e)) => e.clone(),
                (Ok(None), None) => continue,
                (Err(e), _) => {
                    tracing::error!(blob_store = %s.name, error = %e, "cannot open blob store");
                    continue;
                }
            };
            snap.store_ids.insert(s.name.clone(), s.id);
            snap.blob_stores.insert(s.name.clone(), store);
        }
        for row in rows {
            let name = row.name.clone();
            match open_repo(row, old.repos.get(&name), &snap, self, meta.clone(), &usage, formats) {
                Ok(Some((r, listener))) => {
                    if let Some(p) = listener.https_port {
                        snap.by_port.insert(p, name.clone());
                        snap.tls_ports.insert(p);
                    }
                    if let Some(p) = listener.port {
                        snap.by_port.insert(p, name.clone());
                    }
                    if let Some(s) = listener.subdomain {
                        snap.by_subdomain.insert(s, name.clone());
                    }
                    snap.metrics.insert(name.clone(), self.metrics.repo(&name, &r.config.format));
                    snap.repos.insert(name, r);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(repository = %name, error = %e, "cannot open repository"),
            }
        }
        // Reloads run side by side (every change triggers one): a reload that read an older
        // generation must not replace a newer view. Rows are read after the generation, so a
        // view holds at least what its generation promises.
        let snap = Arc::new(snap);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if snap.generation > current.generation {
            *current = snap;
        }
        Ok(current.clone())
    }
}

pub fn blob_store_root(data_dir: &std::path::Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        p
    } else {
        data_dir.join("blobs").join(p)
    }
}

fn open_repo(
    row: RepoRow,
    previous: Option<&RepoRef>,
    snap: &Snapshot,
    registry: &Arc<RepoRegistry>,
    meta: Arc<SqlMeta>,
    usage: &Arc<dyn UsageMeter>,
    formats: &[Arc<dyn Format>],
) -> Result<Option<(RepoRef, wharf_format::Listener)>, ConfigError> {
    let Some(format) = formats.iter().find(|f| f.name() == row.format) else {
        tracing::warn!(repository = %row.name, format = %row.format, "no such format in this build; repository skipped");
        return Ok(None);
    };
    let config = Arc::new(stored_config(&row)?);
    let blobs = snap
        .blob_stores
        .get(&config.blob_store)
        .cloned()
        .ok_or_else(|| ConfigError::new("storage.blobStoreName", format!("blob store {} is not available", config.blob_store)))?;
    // A repository whose configuration did not change keeps its runtime object: reopening
    // builds an upstream client (certificate roots parsed) per proxy, on the worker that runs
    // the reload, for every change to any repository.
    if let Some(prev) = previous.filter(|p| *p.config == *config && Arc::ptr_eq(&p.blobs, &blobs)) {
        return Ok(Some((prev.clone(), format.listener(&prev.config))));
    }
    if config.kind == Kind::Proxy {
        registry.upstreams.observe(config.id, registry.metrics.upstream(&config.name, &config.format));
    }
    let env = FormatEnv {
        blobs: blobs.clone(),
        meta,
        repos: Arc::new(Lookup(Arc::downgrade(registry))),
        identity: registry.identity.clone(),
        audit: registry.audit.clone(),
        upstreams: registry.upstreams.clone(),
        usage: usage.clone(),
        downloads: registry.downloads.clone(),
    };
    let repo = format.open(config.clone(), env)?;
    let listener = format.listener(&config);
    Ok(Some((RepoRef { config, repo, blobs }, listener)))
}

/// Rebuilds a [`RepoConfig`] from its row (the JSON was validated when it was written).
pub fn stored_config(row: &RepoRow) -> Result<RepoConfig, ConfigError> {
    let json: serde_json::Value = serde_json::from_str(&row.config).map_err(|e| ConfigError::new("config", e.to_string()))?;
    let mut attributes = json.as_object().cloned().unwrap_or_default();
    let storage = attributes.remove("storage").unwrap_or_default();
    let online = attributes.remove("online").and_then(|v| v.as_bool()).unwrap_or(true);
    let anonymous_read = attributes.remove("anonymousRead").and_then(|v| v.as_bool()).unwrap_or(false);
    attributes.remove("name");
    Ok(RepoConfig {
        id: row.id,
        name: row.name.clone(),
        format: row.format.clone(),
        kind: row.kind.parse::<Kind>().map_err(|()| ConfigError::new("type", format!("unknown kind {}", row.kind)))?,
        online,
        blob_store: row.blob_store.clone(),
        write_policy: storage.get("writePolicy").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()).unwrap_or(WritePolicy::Allow),
        strict_content_type: storage.get("strictContentTypeValidation").and_then(|v| v.as_bool()).unwrap_or(true),
        latest_policy: storage.get("latestPolicy").and_then(|v| v.as_bool()).unwrap_or(false),
        anonymous_read,
        hard_quota: storage.pointer("/hardQuota/limit").and_then(serde_json::Value::as_u64),
        cache_invalidated_at: row.cache_invalidated_at,
        attributes,
    })
}
