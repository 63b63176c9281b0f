//! What each file blob store holds, what its file system has left, and its soft quota's state:
//! the numbers of `GET /service/rest/v1/blobstores`, its quota status and the status check, and
//! the log's warning when a store goes over its soft quota.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wharf_format::Usage;

use super::soft_quota::{self, QuotaStatus, SoftQuota};
use crate::db::repos::{self, BlobStoreRow};
use crate::db::{usage, Db, DbError};
use crate::state::{blob_store_root, AppState};

/// A file blob store's settings, as `blob_stores.attributes` keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStore {
    pub name: String,
    /// Relative to `<data_dir>/blobs`, or absolute.
    pub path: String,
    pub soft_quota: Option<SoftQuota>,
}

impl FileStore {
    /// The stored JSON was validated when it was written; what does not parse reads as unset
    /// (the path then defaults to the name, as it always has).
    pub fn from_row(row: &BlobStoreRow) -> FileStore {
        let v: Value = serde_json::from_str(&row.attributes).unwrap_or_default();
        FileStore {
            name: row.name.clone(),
            path: v.get("path").and_then(Value::as_str).unwrap_or(&row.name).to_string(),
            soft_quota: v.get("softQuota").and_then(|q| SoftQuota::parse(q).ok().flatten()),
        }
    }

    pub fn attributes(&self) -> String {
        let mut v = json!({ "path": self.path });
        if let Some(q) = &self.soft_quota {
            v["softQuota"] = q.to_json();
        }
        v.to_string()
    }

    pub fn root(&self, data_dir: &Path) -> PathBuf {
        blob_store_root(data_dir, &self.path)
    }
}

/// One store's numbers at one moment.
#[derive(Clone, Debug)]
pub struct StoreReport {
    /// For an S3 store: its name and soft quota (it has no path).
    pub store: FileStore,
    /// Nexus's `type`: `File` or `S3`.
    pub kind: &'static str,
    /// Its directory cannot be read.
    pub unavailable: bool,
    pub usage: Usage,
    /// What the file system under the store has left for wharf (statvfs `f_bavail`).
    pub available: Option<u64>,
    pub quota: QuotaStatus,
}

impl StoreReport {
    /// Nexus's blob store list entry.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.store.name,
            "type": self.kind,
            "unavailable": self.unavailable,
            "blobCount": self.usage.blob_count,
            "totalSizeInBytes": self.usage.bytes,
            "availableSpaceInBytes": self.available,
            "softQuota": self.store.soft_quota.map(|q| q.to_json()),
        })
    }

    /// Nexus's `quota-status` answer.
    pub fn quota_json(&self) -> Value {
        json!({ "isViolation": self.quota.violation, "message": self.quota.message, "blobStoreName": self.store.name })
    }
}

/// Space left to an unprivileged writer on the file system that holds `root`.
fn available_space(root: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(root).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Which stores a report covers.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every store (one aggregation over the ledger).
    All,
    /// One store (its rows of the ledger only).
    One(String),
    /// The stores with a soft quota (their rows only; none at all when no store has one).
    SoftQuotas,
}

/// The reports of the stores in `scope`: one database read, then the file systems on the
/// blocking pool.
pub async fn reports(db: &Db, data_dir: &Path, scope: Scope) -> Result<Vec<StoreReport>, DbError> {
    let (rows, used): (Vec<BlobStoreRow>, HashMap<String, Usage>) = db
        .run(move |c| {
            let rows: Vec<BlobStoreRow> = repos::list_blob_stores(c)?
                .into_iter()
                .filter(|r| match &scope {
                    Scope::All => true,
                    Scope::One(name) => r.name == *name,
                    Scope::SoftQuotas => soft_quota_of(r).is_some(),
                })
                .collect();
            let used = match scope {
                Scope::All => usage::blob_stores_usage(c)?,
                _ => rows.iter().map(|r| Ok((r.name.clone(), usage::blob_store_usage(c, &r.name)?))).collect::<Result<_, DbError>>()?,
            };
            Ok((rows, used))
        })
        .await?;
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let data_dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        rows.iter()
            .map(|row| {
                let usage = used.get(&row.name).copied().unwrap_or_default();
                if row.kind == "s3" {
                    // A bucket has no free space to speak of: only a spaceUsedQuota can trip.
                    let parsed = crate::storage::s3::S3Store::from_row(row);
                    let soft_quota = parsed.as_ref().ok().and_then(|s| s.soft_quota);
                    let quota = soft_quota::evaluate(&row.name, soft_quota.as_ref(), usage.bytes, None);
                    let store = FileStore { name: row.name.clone(), path: String::new(), soft_quota };
                    return StoreReport { kind: "S3", unavailable: parsed.is_err(), usage, available: None, quota, store };
                }
                let store = FileStore::from_row(row);
                let root = store.root(&data_dir);
                let available = available_space(&root);
                let quota = soft_quota::evaluate(&store.name, store.soft_quota.as_ref(), usage.bytes, available);
                StoreReport { kind: "File", unavailable: !root.is_dir(), usage, available, quota, store }
            })
            .collect()
    })
    .await
    .map_err(|e| DbError::Blocking(e.to_string()))
}

/// A store's soft quota, whatever its kind.
fn soft_quota_of(row: &BlobStoreRow) -> Option<SoftQuota> {
    match row.kind.as_str() {
        "s3" => crate::storage::s3::S3Store::from_row(row).ok().and_then(|s| s.soft_quota),
        _ => FileStore::from_row(row).soft_quota,
    }
}

/// How often the log is told about soft quotas.
const SOFT_QUOTA_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks the stores' soft quotas every minute, for ever (see [`warn_soft_quotas`]).
pub async fn watch_soft_quotas(state: &AppState) {
    let mut violating = HashSet::new();
    loop {
        let reports = warn_soft_quotas(&state.db, &state.cfg.data_dir, &mut violating).await;
        // The metrics show what this pass measured anyway: no store is measured for them alone.
        state.metrics.soft_quota_stores(reports.iter().filter_map(|r| {
            let q = r.store.soft_quota?;
            Some(crate::metrics::StoreGauges {
                name: &r.store.name,
                used: r.usage.bytes,
                available: r.available,
                quota_kind: q.kind.as_str(),
                quota_limit: q.limit,
                violation: r.quota.violation,
            })
        }));
        tokio::time::sleep(SOFT_QUOTA_CHECK).await;
    }
}

/// Logs a warning when a store goes over its soft quota (and a note when it is back under);
/// `violating` carries the stores over quota from one call to the next, so that a store over
/// quota is reported once, not at every pass. Only stores with a soft quota are measured: with
/// none, a pass is one read of the store table (it runs on every node). Returns what it measured.
pub async fn warn_soft_quotas(db: &Db, data_dir: &Path, violating: &mut HashSet<String>) -> Vec<StoreReport> {
    let reports = match reports(db, data_dir, Scope::SoftQuotas).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "soft quota check: database");
            return Vec::new();
        }
    };
    let mut now = HashSet::new();
    for r in &reports {
        if r.quota.violation {
            if !violating.contains(&r.store.name) {
                tracing::warn!(blob_store = %r.store.name, "soft quota exceeded: {}", r.quota.message);
            }
            now.insert(r.store.name.clone());
        } else if violating.contains(&r.store.name) {
            tracing::info!(blob_store = %r.store.name, "back within its soft quota: {}", r.quota.message);
        }
    }
    *violating = now;
    reports
}
