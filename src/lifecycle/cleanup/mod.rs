//! Cleanup policies and retention: what a repository's policies delete ([`evaluate`]), shown
//! before it happens ([`preview`]) and applied by [`run_cleanup`], which deletes exactly what
//! the preview of the same policies lists, each component through its format's own
//! [`wharf_format::Repo::delete_component`] (so that an npm packument or a PyPI project stays
//! consistent), and audits each deletion.
//!
//! Docker: a component is a tag, and deleting it removes the tag only; the manifest and its
//! blobs are removed by the "Docker untagged manifests" task once nothing tags or references
//! them, so what an index or a referrer still uses is never taken from under it here.

pub mod evaluate;
pub mod policy;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use wharf_format::{now_millis, rfc3339_millis, Asset, Audit as _, AuditEvent, ConfigError, ListQuery, MetaError, MetaStore, RepoRef};

use self::evaluate::Component;
use self::policy::Policy;
use crate::db::{cleanup as rows, DbError};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("repository {0} not found")]
    UnknownRepository(String),
    #[error("cleanup policy {0} not found")]
    UnknownPolicy(String),
    /// The policy is for another format than the repository's.
    #[error(transparent)]
    NotApplicable(ConfigError),
    /// A stored policy no longer parses (written by another version of wharf).
    #[error("stored cleanup policy {name}: {source}")]
    Stored { name: String, source: ConfigError },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedAsset {
    pub path: String,
    pub size: i64,
    pub last_blob_updated: String,
    pub last_downloaded: Option<String>,
    pub download_count: i64,
}

impl From<&Asset> for PlannedAsset {
    fn from(a: &Asset) -> PlannedAsset {
        PlannedAsset {
            path: a.path.clone(),
            size: a.size,
            last_blob_updated: rfc3339_millis(a.updated_at),
            last_downloaded: a.last_downloaded.map(rfc3339_millis),
            download_count: a.download_count,
        }
    }
}

/// A component a cleanup deletes (or would).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedComponent {
    /// The components API's id.
    pub id: String,
    pub group: Option<String>,
    pub name: String,
    pub version: String,
    /// The policies that chose it.
    pub policies: Vec<String>,
    /// Bytes of its assets (content shared with others stays until nothing refers to it).
    pub size: i64,
    pub assets: Vec<PlannedAsset>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub component: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryReport {
    pub repository: String,
    pub format: String,
    pub policies: Vec<String>,
    /// Deleted (or, in a dry run, to be deleted).
    pub components: Vec<PlannedComponent>,
    pub components_deleted: usize,
    pub assets_deleted: usize,
    /// Bytes of content no asset on the blob store refers to any more (garbage collection
    /// reclaims them after its grace period).
    pub bytes_freed: i64,
    pub failed: Vec<Failure>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    pub dry_run: bool,
    pub repositories: Vec<RepositoryReport>,
    pub components_deleted: usize,
    pub assets_deleted: usize,
    pub bytes_freed: i64,
}

/// Every stored policy, parsed.
pub async fn load_policies(state: &AppState) -> Result<Vec<Policy>, CleanupError> {
    let stored = state.db.run(rows::list).await?;
    let formats = state.format_names();
    stored.into_iter().map(|r| parse_stored(&r, &formats)).collect()
}

pub fn parse_stored(row: &rows::PolicyRow, formats: &[&str]) -> Result<Policy, CleanupError> {
    let v: serde_json::Value =
        serde_json::from_str(&row.config).map_err(|e| CleanupError::Stored { name: row.name.clone(), source: ConfigError::new("config", e.to_string()) })?;
    Policy::parse(&v, formats, Some(&row.name)).map_err(|source| CleanupError::Stored { name: row.name.clone(), source })
}

fn repository(state: &AppState, name: &str) -> Result<RepoRef, CleanupError> {
    state.registry.get(name).ok_or_else(|| CleanupError::UnknownRepository(name.to_string()))
}

/// The repository's components with what the criteria look at.
async fn components(state: &AppState, repo: &RepoRef) -> Result<Vec<Component>, CleanupError> {
    let Some(format) = state.format(&repo.config.format) else { return Ok(Vec::new()) };
    let assets = state.meta.list(repo.config.id, ListQuery::default()).await?;
    Ok(Component::gather(assets, |a| format.component_of(a)))
}

fn planned(repo: &str, c: &Component, policies: Vec<String>) -> PlannedComponent {
    PlannedComponent {
        id: crate::http::admin::components::component_id(repo, &c.key.name, &c.key.version),
        group: c.key.group.clone(),
        name: c.key.name.clone(),
        version: c.key.version.clone(),
        policies,
        size: c.assets.iter().map(|a| a.size).sum(),
        assets: c.assets.iter().map(PlannedAsset::from).collect(),
    }
}

/// What `policy` would delete from repository `repo` on its own, without deleting anything.
pub async fn preview(state: &AppState, policy: &Policy, repo: &str) -> Result<Vec<PlannedComponent>, CleanupError> {
    let r = repository(state, repo)?;
    if !policy.applies_to(&r.config.format) {
        return Err(CleanupError::NotApplicable(ConfigError::new(
            "repository",
            format!("cleanup policy {} is for {} repositories; {repo} is a {} repository", policy.name, policy.format, r.config.format),
        )));
    }
    let format = state.format(&r.config.format);
    let versions = format.as_ref().and_then(|f| f.versions());
    let all = components(state, &r).await?;
    Ok(evaluate::select(policy, &all, versions, now_millis()).into_iter().map(|i| planned(repo, &all[i], vec![policy.name.clone()])).collect())
}

/// Applies each repository's cleanup policies (or only `repository`'s): deletes what they
/// choose, or with `dry_run` only reports it. Called by the "cleanup" task; deletions are
/// audited as the server's own (no actor).
/// A stop requested meanwhile ends the run between two components.
pub async fn run_cleanup(state: &AppState, repository: Option<&str>, dry_run: bool, stop: &wharf_format::Stop) -> Result<CleanupReport, CleanupError> {
    run_cleanup_by(state, repository, dry_run, None, stop).await
}

/// [`run_cleanup`] on behalf of `actor` (an administrator who asked for it), for the audit log.
pub async fn run_cleanup_by(
    state: &AppState,
    repository: Option<&str>,
    dry_run: bool,
    actor: Option<&str>,
    stop: &wharf_format::Stop,
) -> Result<CleanupReport, CleanupError> {
    let repos: Vec<RepoRef> = match repository {
        Some(name) => vec![repository_of(state, name)?],
        None => {
            let mut all: Vec<RepoRef> = state.registry.snapshot().repos.values().cloned().collect();
            all.sort_by(|a, b| a.config.name.cmp(&b.config.name));
            all
        }
    };
    let policies: HashMap<String, Policy> = load_policies(state).await?.into_iter().map(|p| (p.name.clone(), p)).collect();
    let mut report = CleanupReport { dry_run, ..Default::default() };
    for r in repos {
        let names = wharf_format::proxy::cleanup_policy_names(&r.config.attributes);
        let mut chosen = Vec::new();
        for n in &names {
            match policies.get(n) {
                Some(p) if p.applies_to(&r.config.format) => chosen.push(p.clone()),
                Some(_) => tracing::warn!(repository = %r.config.name, policy = %n, "cleanup policy is for another format; skipped"),
                None => tracing::warn!(repository = %r.config.name, policy = %n, "repository names a cleanup policy that does not exist; skipped"),
            }
        }
        if chosen.is_empty() {
            continue;
        }
        if stop.requested() {
            break;
        }
        let rr = clean_repository(state, &r, &chosen, dry_run, actor, stop).await?;
        report.components_deleted += rr.components_deleted;
        report.assets_deleted += rr.assets_deleted;
        report.bytes_freed += rr.bytes_freed;
        report.repositories.push(rr);
    }
    Ok(report)
}

/// [`repository`], under a name that the parameter of the same name does not shadow.
fn repository_of(state: &AppState, name: &str) -> Result<RepoRef, CleanupError> {
    repository(state, name)
}

async fn clean_repository(
    state: &AppState,
    r: &RepoRef,
    policies: &[Policy],
    dry_run: bool,
    actor: Option<&str>,
    stop: &wharf_format::Stop,
) -> Result<RepositoryReport, CleanupError> {
    let name = r.config.name.clone();
    let format = state.format(&r.config.format);
    let versions = format.as_ref().and_then(|f| f.versions());
    let all = components(state, r).await?;
    let selected = evaluate::select_all(policies, &all, versions, now_millis());
    let mut rr = RepositoryReport {
        repository: name.clone(),
        format: r.config.format.clone(),
        policies: policies.iter().map(|p| p.name.clone()).collect(),
        ..Default::default()
    };
    let mut gone: Vec<Asset> = Vec::new();
    let mut steps = 0;
    for (i, chosen_by) in selected {
        if stop.requested() {
            break;
        }
        // A dry run has no await of its own here.
        wharf_format::task::yield_sometimes(&mut steps).await;
        let c = &all[i];
        let chosen_by: Vec<String> = chosen_by.into_iter().map(str::to_string).collect();
        let label = match &c.key.group {
            Some(g) => format!("{g}/{}@{}", c.key.name, c.key.version),
            None => format!("{}@{}", c.key.name, c.key.version),
        };
        if dry_run {
            rr.assets_deleted += c.assets.len();
            gone.extend(c.assets.iter().cloned());
            rr.components.push(planned(&name, c, chosen_by));
            continue;
        }
        match r.repo.delete_component(&c.key, &c.assets).await {
            Ok(removed) => {
                rr.assets_deleted += removed.len();
                let mut p = planned(&name, c, chosen_by.clone());
                p.assets = removed.iter().map(PlannedAsset::from).collect();
                rr.components.push(p);
                state.audit.record(AuditEvent {
                    actor: actor.map(str::to_string),
                    address: None,
                    action: "cleanup.delete".into(),
                    repository: Some(name.clone()),
                    object: Some(label),
                    detail: serde_json::json!({ "policies": chosen_by, "assets": removed.iter().map(|a| a.path.clone()).collect::<Vec<_>>() }),
                });
                gone.extend(removed);
            }
            Err(e) => {
                tracing::warn!(repository = %name, component = %label, error = %e, "cleanup could not delete a component");
                rr.failed.push(Failure { component: label, error: e.to_string() });
            }
        }
    }
    rr.components_deleted = rr.components.len();
    rr.bytes_freed = freed(state, &r.config.blob_store, &gone, dry_run).await?;
    Ok(rr)
}

/// Bytes of the content `gone` names that nothing else on the blob store refers to: after a
/// run, no asset left names it; in a dry run, no asset but those that would go.
async fn freed(state: &AppState, blob_store: &str, gone: &[Asset], dry_run: bool) -> Result<i64, CleanupError> {
    let mut sizes: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for a in gone {
        if let Some(d) = &a.digest {
            let e = sizes.entry(d.clone()).or_insert((a.size, 0));
            e.0 = e.0.max(a.size);
            e.1 += 1;
        }
    }
    if sizes.is_empty() {
        return Ok(0);
    }
    let digests: Vec<String> = sizes.keys().cloned().collect();
    let store = blob_store.to_string();
    let refs = state.db.run(move |c| Ok(crate::db::blobs::references(c, &store, &digests)?)).await?;
    Ok(sizes
        .iter()
        .filter(|(d, (_, planned))| {
            let left = refs.get(*d).copied().unwrap_or(0);
            if dry_run {
                left <= *planned
            } else {
                left == 0
            }
        })
        .map(|(_, (size, _))| *size)
        .sum())
}
