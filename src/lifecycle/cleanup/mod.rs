//! Cleanup policies and retention: what a repository's policies delete ([`evaluate`]), shown
//! before it happens ([`preview`]) and applied by [`run_cleanup`], which deletes exactly what
//! the preview of the same policies lists, each component through its format's own
//! [`wharf_format::Repo::clean_component`] (so that an npm packument or a PyPI project stays
//! consistent), and audits each deletion.
//!
//! A repository is read a few component names at a time ([`scan`]): only the assets of the
//! kind its format makes components of, never the whole repository at once.
//!
//! What clients get without naming a version ([`wharf_format::Repo::pinned_versions`]: npm's
//! dist-tags) is never deleted, whatever the policies say.
//!
//! Docker: a component is a tag, and deleting it removes the tag only; the manifest and its
//! blobs are removed by the "Docker untagged manifests" task once nothing tags or references
//! them, so what an index or a referrer still uses is never taken from under it here.
//!
//! A run goes on past what it cannot do: a stored policy this build cannot parse is skipped
//! (and reported) in the repositories that name it, a repository whose listing fails is
//! reported and the next one cleaned, a component that cannot be deleted is reported.

pub mod evaluate;
pub mod policy;
mod report;
mod scan;

use std::collections::{BTreeMap, HashMap, HashSet};

use wharf_format::{now_millis, Asset, Audit as _, AuditEvent, ConfigError, MetaError, RepoRef, Versions};

use self::evaluate::Component;
use self::policy::Policy;
pub use self::report::{CleanupReport, Failure, PlannedAsset, PlannedComponent, RepositoryReport, SkippedPolicy};
use crate::db::{cleanup as rows, DbError};
use crate::state::AppState;

/// Assets read from the database at a time (a batch also holds the rest of its last name).
const PAGE: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("repository {0} not found")]
    UnknownRepository(String),
    #[error("cleanup policy {0} not found")]
    UnknownPolicy(String),
    /// The policy is for another format than the repository's.
    #[error(transparent)]
    NotApplicable(ConfigError),
    /// A stored policy this build cannot apply (for a format it lacks, or written by another
    /// version of wharf).
    #[error("stored cleanup policy {name} cannot be applied: {source}")]
    Stored { name: String, source: ConfigError },
    /// Which versions of a name clients get without naming one could not be read: none of its
    /// versions is judged.
    #[error("{component}: which versions clients get without naming one is unknown: {error}")]
    Pins { component: String, error: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Every stored policy, parsed where this build can; a policy it cannot parse is kept with
/// the reason, for the list to show and runs to skip.
pub async fn load_policies(state: &AppState) -> Result<Vec<(rows::PolicyRow, Result<Policy, CleanupError>)>, CleanupError> {
    let stored = state.db.run(rows::list).await?;
    let formats = state.format_names();
    Ok(stored
        .into_iter()
        .map(|r| {
            let parsed = parse_stored(&r, &formats);
            (r, parsed)
        })
        .collect())
}

pub fn parse_stored(row: &rows::PolicyRow, formats: &[&str]) -> Result<Policy, CleanupError> {
    let v: serde_json::Value =
        serde_json::from_str(&row.config).map_err(|e| CleanupError::Stored { name: row.name.clone(), source: ConfigError::new("config", e.to_string()) })?;
    Policy::parse(&v, formats, Some(&row.name)).map_err(|source| CleanupError::Stored { name: row.name.clone(), source })
}

fn repository(state: &AppState, name: &str) -> Result<RepoRef, CleanupError> {
    state.registry.get(name).ok_or_else(|| CleanupError::UnknownRepository(name.to_string()))
}

/// One repository as cleanup sees it: its format's components, read a batch at a time.
struct Reader<'a> {
    state: &'a AppState,
    repo: &'a RepoRef,
    format: Option<std::sync::Arc<dyn wharf_format::Format>>,
    pages: scan::Pages,
}

impl<'a> Reader<'a> {
    fn new(state: &'a AppState, repo: &'a RepoRef) -> Reader<'a> {
        Reader { state, repo, format: state.format(&repo.config.format), pages: scan::Pages::new(PAGE) }
    }

    fn versions(&self) -> Option<&dyn Versions> {
        self.format.as_deref().and_then(|f| f.versions())
    }

    /// The next batch of components, each name with all its versions; `None` at the end.
    async fn next(&mut self) -> Result<Option<Vec<Component>>, CleanupError> {
        let Some(format) = self.format.clone() else { return Ok(None) };
        let Some(kind) = format.component_kind() else { return Ok(None) };
        let (meta, id) = (&self.state.meta, self.repo.config.id);
        let Some(assets) = self.pages.next(|after, limit| meta.component_page(id, kind, after, limit)).await? else { return Ok(None) };
        let mut digests: Vec<String> = assets.iter().filter_map(|a| a.digest.clone()).collect();
        digests.sort();
        digests.dedup();
        let downloads = meta.last_downloads(id, digests).await?;
        Ok(Some(Component::gather(assets, |a| format.component_of(a), &downloads)))
    }
}

/// What a batch's policies delete: each chosen component with the policies that chose it,
/// less what the repository pins (asked once per name, and only for names with something
/// chosen); `Err` for the chosen components of a name whose pins could not be read.
async fn judge(
    repo: &RepoRef,
    policies: &[Policy],
    components: &[Component],
    versions: Option<&dyn Versions>,
) -> Vec<(usize, Result<Vec<String>, CleanupError>)> {
    let mut pins: HashMap<(Option<String>, String), Result<HashSet<String>, String>> = HashMap::new();
    let mut out = Vec::new();
    for (i, chosen_by) in evaluate::select_all(policies, components, versions, now_millis()) {
        let key = &components[i].key;
        let name = (key.group.clone(), key.name.clone());
        if !pins.contains_key(&name) {
            let read = repo.repo.pinned_versions(key).await.map(|v| v.into_iter().collect()).map_err(|e| e.to_string());
            pins.insert(name.clone(), read);
        }
        match &pins[&name] {
            Ok(pinned) if pinned.contains(&key.version) => {}
            Ok(_) => out.push((i, Ok(chosen_by.into_iter().map(str::to_string).collect()))),
            Err(e) => out.push((i, Err(CleanupError::Pins { component: label(&components[i]), error: e.clone() }))),
        }
    }
    out
}

fn label(c: &Component) -> String {
    match &c.key.group {
        Some(g) => format!("{g}/{}@{}", c.key.name, c.key.version),
        None => format!("{}@{}", c.key.name, c.key.version),
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
    let mut reader = Reader::new(state, &r);
    let mut out = Vec::new();
    while let Some(batch) = reader.next().await? {
        for (i, chosen) in judge(&r, std::slice::from_ref(policy), &batch, reader.versions()).await {
            out.push(PlannedComponent::of(repo, &batch[i], chosen?));
        }
    }
    Ok(out)
}

/// Applies each repository's cleanup policies (or only `repository`'s): deletes what they
/// choose, or with `dry_run` only reports it. Run by the "cleanup" task (`POST .../run` is a run
/// of that task); deletions are audited as `actor`'s (the administrator who asked), or as the
/// server's own. A stop requested meanwhile ends the run between two components. Fails only
/// when `repository` does not exist or the policies cannot be read at all.
pub async fn run_cleanup(
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
    let policies: HashMap<String, Result<Policy, CleanupError>> = load_policies(state).await?.into_iter().map(|(r, p)| (r.name, p)).collect();
    let mut report = CleanupReport { dry_run, ..Default::default() };
    for r in repos {
        if stop.requested() {
            break;
        }
        let mut rr = RepositoryReport { repository: r.config.name.clone(), format: r.config.format.clone(), ..Default::default() };
        let chosen = applicable(&policies, &r, &mut rr.skipped_policies);
        rr.policies = chosen.iter().map(|p| p.name.clone()).collect();
        if !chosen.is_empty() {
            if let Err(e) = clean_repository(state, &r, &chosen, dry_run, actor, stop, &mut rr).await {
                tracing::warn!(repository = %rr.repository, error = %e, "cleanup of a repository ended early; going on with the next");
                rr.error = Some(e.to_string());
            }
        } else if rr.skipped_policies.is_empty() {
            continue;
        }
        report.components_deleted += rr.components_deleted;
        report.assets_deleted += rr.assets_deleted;
        report.bytes_freed += rr.bytes_freed;
        report.freed.add(&rr.freed);
        report.repositories.push(rr);
    }
    report.stopped = stop.requested();
    Ok(report)
}

/// The policies of `r` a run applies; the others are noted in `skipped`.
fn applicable(policies: &HashMap<String, Result<Policy, CleanupError>>, r: &RepoRef, skipped: &mut Vec<SkippedPolicy>) -> Vec<Policy> {
    let mut chosen = Vec::new();
    for n in wharf_format::proxy::cleanup_policy_names(&r.config.attributes) {
        let reason = match policies.get(&n) {
            Some(Ok(p)) if p.applies_to(&r.config.format) => {
                chosen.push(p.clone());
                continue;
            }
            Some(Ok(p)) => format!("the policy is for {} repositories", p.format),
            Some(Err(e)) => e.to_string(),
            None => "no such policy".to_string(),
        };
        tracing::warn!(repository = %r.config.name, policy = %n, %reason, "cleanup policy skipped");
        skipped.push(SkippedPolicy { policy: n, reason });
    }
    chosen
}

/// [`repository`], under a name that the parameter of the same name does not shadow.
fn repository_of(state: &AppState, name: &str) -> Result<RepoRef, CleanupError> {
    repository(state, name)
}

/// Cleans one repository into `rr`, a batch of names at a time. An error ends it early, with
/// what it did until then in `rr`.
async fn clean_repository(
    state: &AppState,
    r: &RepoRef,
    policies: &[Policy],
    dry_run: bool,
    actor: Option<&str>,
    stop: &wharf_format::Stop,
    rr: &mut RepositoryReport,
) -> Result<(), CleanupError> {
    let name = r.config.name.clone();
    let mut reader = Reader::new(state, r);
    let mut gone = Freed::default();
    let mut steps = 0;
    // What the run deletes is freed beside it.
    let (outcome, freed) = crate::lifecycle::gc::freeing_beside(state, &r.config.blob_store, stop, |releaser| async {
        // Moved in: the freeing ends when the run does.
        let releaser = releaser;
        while let Some(batch) = reader.next().await? {
            for (i, chosen) in judge(r, policies, &batch, reader.versions()).await {
                if stop.requested() {
                    return Ok(());
                }
                // A dry run has no await of its own here.
                wharf_format::task::yield_sometimes(&mut steps).await;
                let c = &batch[i];
                let chosen_by = match chosen {
                    Ok(by) => by,
                    Err(e) => {
                        rr.failed.push(Failure { component: label(c), error: e.to_string() });
                        continue;
                    }
                };
                if dry_run {
                    rr.assets_deleted += c.assets.len();
                    gone.add(&c.assets);
                    rr.components.push(PlannedComponent::of(&name, c, chosen_by));
                    continue;
                }
                match r.repo.clean_component(&c.key, &c.assets).await {
                    Ok(removed) => {
                        rr.assets_deleted += removed.len();
                        let mut p = PlannedComponent::of(&name, c, chosen_by.clone());
                        p.assets = removed.iter().map(PlannedAsset::from).collect();
                        rr.components.push(p);
                        state.audit.record(AuditEvent {
                            actor: actor.map(str::to_string),
                            address: None,
                            action: "cleanup.delete".into(),
                            repository: Some(name.clone()),
                            object: Some(label(c)),
                            detail: serde_json::json!({ "policies": chosen_by, "assets": removed.iter().map(|a| a.path.clone()).collect::<Vec<_>>() }),
                        });
                        gone.add(&removed);
                        releaser.release(removed.iter().filter_map(|a| a.digest.clone()).collect());
                    }
                    Err(e) => {
                        tracing::warn!(repository = %name, component = %label(c), error = %e, "cleanup could not delete a component");
                        rr.failed.push(Failure { component: label(c), error: e.to_string() });
                    }
                }
            }
        }
        Ok(())
    })
    .await;
    rr.freed = freed;
    rr.components_deleted = rr.components.len();
    // What went before an error is freed all the same.
    rr.bytes_freed = gone.bytes(state, &r.config.blob_store, dry_run).await?;
    outcome
}

/// The content a run deleted (or would), by digest: its size and how many deleted assets
/// named it. One entry per digest, however many batches the run reads.
#[derive(Default)]
struct Freed(BTreeMap<String, (i64, i64)>);

impl Freed {
    fn add(&mut self, assets: &[Asset]) {
        for a in assets {
            if let Some(d) = &a.digest {
                let e = self.0.entry(d.clone()).or_insert((a.size, 0));
                e.0 = e.0.max(a.size);
                e.1 += 1;
            }
        }
    }

    /// Bytes of the content that nothing else on the blob store refers to: after a run, no
    /// asset left names it; in a dry run, no asset but those that would go.
    async fn bytes(self, state: &AppState, blob_store: &str, dry_run: bool) -> Result<i64, CleanupError> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let digests: Vec<String> = self.0.keys().cloned().collect();
        let store = blob_store.to_string();
        let refs = state.db.run(move |c| Ok(crate::db::blobs::references(c, &store, &digests)?)).await?;
        Ok(self
            .0
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
}
