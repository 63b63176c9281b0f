//! The usage gauges: what each blob store holds and what each repository with a hard quota
//! references. Measuring them reads the blob ledger (one aggregate over every store) and each
//! quota'd repository's assets, which is too much for every scrape: a scrape measures when the
//! last measurement is a minute old, so a node costs one measurement a minute however often it
//! is scraped, and a node nobody scrapes measures nothing.

use std::time::{Duration, Instant};

use crate::lifecycle::store_usage::{self, Scope};
use wharf_format::UsageMeter as _;

use crate::state::AppState;

/// How old a measurement may be before a scrape measures again.
const MAX_AGE: Duration = Duration::from_secs(60);

/// One blob store's numbers.
pub struct StoreUsage<'a> {
    pub name: &'a str,
    pub blobs: u64,
    pub bytes: u64,
    /// The free space of a file store's file system.
    pub available: Option<u64>,
}

/// Measures the usage gauges unless a measurement younger than a minute stands. A failed
/// measurement keeps the previous numbers (and is logged): the scrape still answers.
pub async fn refresh_if_due(state: &AppState) {
    let mut measured = state.metrics.usage_at.lock().await;
    if measured.is_some_and(|at| at.elapsed() < MAX_AGE) {
        return;
    }
    let stores = match store_usage::reports(&state.db, &state.cfg.data_dir, Scope::All).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: measuring blob store usage failed");
            return;
        }
    };
    let snap = state.registry.snapshot();
    let mut repos = Vec::new();
    for r in snap.repos.values() {
        let Some(limit) = r.config.hard_quota else { continue };
        match state.meta.repository_usage(&r.config).await {
            Ok(u) => repos.push((r.config.name.as_str(), u.bytes, limit)),
            Err(e) => tracing::warn!(repository = %r.config.name, error = %e, "metrics: measuring repository usage failed"),
        }
    }
    let stores: Vec<StoreUsage> =
        stores.iter().map(|r| StoreUsage { name: &r.store.name, blobs: r.usage.blob_count, bytes: r.usage.bytes, available: r.available }).collect();
    state.metrics.usage_measured(&stores, &repos);
    *measured = Some(Instant::now());
}
