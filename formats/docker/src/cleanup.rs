//! "Docker - Delete unused manifests and images" (Nexus's task of that name, wharf's type
//! `repository.docker.gc`): removes manifests that no tag names and that are older than
//! `olderThanDays`, and then the image's links to blobs that no remaining manifest uses. What it
//! removes is handed to the server as it commits (`TaskRun::released`), which frees the bytes
//! nothing else names beside the run.
//!
//! What stays: every tagged manifest, and everything a kept manifest reaches: the children of
//! a kept index, the subject of a kept referrer, and the referrers (signatures, SBOMs) of a
//! kept manifest. Removals are committed in batches whose transaction re-checks, for each one,
//! that nothing changed since it was judged (no tag was pushed to it, no index now lists it, the row was not
//! written again), so a push during the run wins over the clean-up.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};
use wharf_format::{now_millis, Asset, Check, ConfigError, FormatTask, ListQuery, MetaError, TaskReport, TaskRun, Write};

use crate::error::DockerError;
use crate::hosted::Hosted;
use crate::meta::{self, refs_prefix};

pub const UNUSED_MANIFESTS: &str = "repository.docker.gc";

/// Blob links removed per commit.
const LINK_BATCH: usize = 256;

pub static TASKS: [FormatTask; 1] = [FormatTask {
    type_id: UNUSED_MANIFESTS,
    name: "Docker - Delete unused manifests and images",
    description: "Removes untagged manifests older than olderThanDays (default 1; never younger than uploads.ttl_secs; kept while an index or a referrer's subject that is kept needs them) and the image's links to blobs no remaining manifest uses, freeing the bytes nothing else names (past gc.grace_secs). Properties: olderThanDays, dryRun.",
    validate,
}];

fn validate(p: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    wharf_format::known_properties(p, &["olderThanDays", "dryRun"], UNUSED_MANIFESTS)?;
    let mut out = p.clone();
    match p.get("olderThanDays") {
        None => {
            out.insert("olderThanDays".into(), json!(1));
        }
        Some(v) if v.is_u64() => {}
        Some(_) => return Err(ConfigError::new("properties.olderThanDays", "must be a whole number of days (0: any age)")),
    }
    wharf_format::flag_property(&mut out, "dryRun", false)?;
    Ok(out)
}

/// An image's manifest, by image name and digest.
type Key = (String, String);

/// The repository's Docker content, indexed for the judgement.
#[derive(Default)]
struct Content {
    manifests: HashMap<Key, Asset>,
    tagged: HashSet<Key>,
    /// What a manifest uses (blobs and child manifests), by the manifest.
    uses: HashMap<Key, HashSet<String>>,
    /// The `ref` rows' paths, by the manifest that uses.
    ref_rows: HashMap<Key, Vec<String>>,
    /// Manifests whose subject is the key.
    referrers: HashMap<Key, Vec<String>>,
    blobs: Vec<Asset>,
    /// Images with a manifest whose uses cannot be known (unreadable): left alone.
    unknown: HashSet<String>,
}

impl Hosted {
    pub(crate) async fn delete_unused(&self, run: TaskRun<'_>) -> Result<TaskReport, DockerError> {
        let days = run.properties.get("olderThanDays").and_then(Value::as_u64).unwrap_or(1);
        let dry_run = run.properties.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
        let cutoff = now_millis() - ((days as i64) * 86_400_000).max(run.min_age_ms);
        let c = self.content().await?;

        // Kept: tagged or young manifests, and what they reach.
        let mut kept: HashSet<Key> =
            c.manifests.iter().filter(|(k, a)| c.tagged.contains(*k) || a.updated_at >= cutoff || c.unknown.contains(&k.0)).map(|(k, _)| k.clone()).collect();
        let mut todo: Vec<Key> = kept.iter().cloned().collect();
        let mut steps = 0usize;
        while let Some(k) = todo.pop() {
            wharf_format::task::yield_sometimes(&mut steps).await;
            let mut reach: Vec<String> = c.uses.get(&k).map(|u| u.iter().cloned().collect()).unwrap_or_default();
            reach.extend(c.manifests.get(&k).and_then(|a| a.link.clone()));
            reach.extend(c.referrers.get(&k).cloned().unwrap_or_default());
            for d in reach {
                let next = (k.0.clone(), d);
                if c.manifests.contains_key(&next) && kept.insert(next.clone()) {
                    todo.push(next);
                }
            }
        }

        let mut doomed: Vec<&Key> = c.manifests.keys().filter(|k| !kept.contains(*k)).collect();
        doomed.sort();
        let mut removed_manifests = Vec::new();
        let mut removed: HashSet<Key> = HashSet::new();
        if dry_run {
            removed_manifests = doomed.iter().map(|k| format!("{}@{}", k.0, k.1)).collect();
            removed = doomed.iter().map(|k| (*k).clone()).collect();
        } else {
            // An index goes before its children (a child's removal checks that nothing uses
            // it): rounds until one makes no progress.
            loop {
                let mut left = Vec::new();
                let mut progressed = false;
                for batch in doomed.chunks(LINK_BATCH) {
                    if run.stop.requested() {
                        break;
                    }
                    // A batch holding an index and its child fails as a whole (the child is
                    // still used when the checks run) and is judged again one by one.
                    let gone: Vec<&Key> = if self.remove_manifests(batch, &c).await? {
                        // A manifest's own bytes (its `ref` rows have none).
                        (run.released)(batch.iter().filter_map(|k| c.manifests[*k].digest.clone()).collect());
                        batch.to_vec()
                    } else {
                        let mut gone = Vec::new();
                        for k in batch {
                            if self.remove_manifests(std::slice::from_ref(k), &c).await? {
                                (run.released)(c.manifests[*k].digest.iter().cloned().collect());
                                gone.push(*k);
                            } else {
                                left.push(*k);
                            }
                        }
                        gone
                    };
                    progressed |= !gone.is_empty();
                    for k in gone {
                        removed_manifests.push(format!("{}@{}", k.0, k.1));
                        removed.insert(k.clone());
                    }
                }
                if run.stop.requested() || left.is_empty() || !progressed {
                    break;
                }
                doomed = left;
            }
        }

        // Blob links no remaining manifest uses: kept ones, and doomed ones whose removal did
        // not go through (tagged or listed meanwhile; a legacy one has no `ref` rows to guard
        // its links in the removal's transaction).
        let remaining = c.manifests.keys().filter(|k| !removed.contains(*k));
        let used: HashSet<Key> = remaining.flat_map(|k| c.uses.get(k).into_iter().flatten().map(move |d| (k.0.clone(), d.clone()))).collect();
        let unused: Vec<(&str, &str, &Asset)> = c
            .blobs
            .iter()
            .filter_map(|b| match (&b.component, meta::key_of(&b.path)) {
                // The path's digest: the one manifests' uses name (see `content`).
                (Some(name), digest) if b.updated_at < cutoff && !c.unknown.contains(name) && !used.contains(&(name.clone(), digest.to_string())) => {
                    Some((name.as_str(), digest, b))
                }
                _ => None,
            })
            .collect();
        let mut removed_blobs = 0u64;
        // A commit per batch, not per link: the transaction, not the row, is what costs. A
        // batch in which one link changed meanwhile is judged again link by link.
        for batch in unused.chunks(LINK_BATCH) {
            if run.stop.requested() {
                break;
            }
            if dry_run {
                removed_blobs += batch.len() as u64;
                continue;
            }
            if self.remove_blob_links(batch).await? {
                removed_blobs += batch.len() as u64;
                (run.released)(batch.iter().filter_map(|(_, _, b)| b.digest.clone()).collect());
                continue;
            }
            for link in batch {
                if self.remove_blob_links(std::slice::from_ref(link)).await? {
                    removed_blobs += 1;
                    (run.released)(link.2.digest.iter().cloned().collect());
                }
            }
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        Ok(TaskReport {
            assets_deleted: removed_manifests.len() as u64 + removed_blobs,
            message: format!("{verb} {} unused manifests and {removed_blobs} unused blob links", removed_manifests.len()),
            details: json!({ "manifests": removed_manifests, "blobLinks": removed_blobs, "dryRun": dry_run }),
        })
    }

    async fn content(&self) -> Result<Content, DockerError> {
        let mut c = Content::default();
        let repo = self.cfg.id;
        let mut steps = 0usize;
        for a in self.env.meta.list(repo, ListQuery::default()).await? {
            wharf_format::task::yield_sometimes(&mut steps).await;
            let Some(name) = a.component.clone() else { continue };
            match a.kind.as_str() {
                meta::MANIFEST => {
                    // Known by the path's digest (sha256 or sha512), which uses and tags name;
                    // the row's digest is the sha256 the bytes are stored under.
                    let d = meta::key_of(&a.path).to_string();
                    if let Some(subject) = &a.link {
                        c.referrers.entry((name.clone(), subject.clone())).or_default().push(d.clone());
                    }
                    c.manifests.insert((name, d), a);
                }
                meta::TAG => {
                    if let Some(d) = a.digest {
                        c.tagged.insert((name, d));
                    }
                }
                meta::REF => {
                    // `<name>/refs/<used>/<by>`; `by` is also the row's link.
                    let mut parts = a.path.rsplitn(3, '/');
                    let (Some(by), Some(used)) = (parts.next(), parts.next()) else { continue };
                    let key = (name, by.to_string());
                    c.uses.entry(key.clone()).or_default().insert(used.to_string());
                    c.ref_rows.entry(key).or_default().push(a.path);
                }
                meta::BLOB => c.blobs.push(a),
                _ => {}
            }
        }
        // Manifests pushed before uses were recorded: their uses come from their content.
        let legacy: Vec<Key> =
            c.manifests.iter().filter(|(_, a)| a.attributes.get("refs").and_then(Value::as_bool) != Some(true)).map(|(k, _)| k.clone()).collect();
        for k in legacy {
            match self.legacy_uses(&c.manifests[&k]).await {
                Some(uses) => c.uses.entry(k).or_default().extend(uses),
                None => {
                    c.unknown.insert(k.0);
                }
            }
        }
        Ok(c)
    }

    /// Removes manifests and their `ref` rows, all or none: each only if it is still untagged,
    /// unused and unchanged.
    async fn remove_manifests(&self, keys: &[&Key], c: &Content) -> Result<bool, DockerError> {
        let repo = self.cfg.id;
        let mut checks = Vec::new();
        let mut writes = Vec::new();
        for k in keys {
            let a = &c.manifests[*k];
            checks.extend([
                Check::Unchanged { repo, path: a.path.clone(), updated_at: a.updated_at },
                Check::NoneWithDigest { repo, kind: meta::TAG.into(), digest: k.1.clone() },
                Check::NoneUnder { repo, prefix: refs_prefix(&k.0, &k.1) },
            ]);
            writes.push(Write::Delete { repo, path: a.path.clone() });
            writes.extend(c.ref_rows.get(*k).into_iter().flatten().map(|p| Write::Delete { repo, path: p.clone() }));
        }
        match self.env.meta.commit(checks, writes).await {
            Ok(()) => Ok(true),
            Err(MetaError::CheckFailed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes images' links to blobs, all or none: each only if no manifest uses it and the
    /// link is unchanged.
    async fn remove_blob_links(&self, links: &[(&str, &str, &Asset)]) -> Result<bool, DockerError> {
        let repo = self.cfg.id;
        let checks = links
            .iter()
            .flat_map(|(name, digest, b)| {
                [Check::Unchanged { repo, path: b.path.clone(), updated_at: b.updated_at }, Check::NoneUnder { repo, prefix: refs_prefix(name, digest) }]
            })
            .collect();
        let writes = links.iter().map(|(_, _, b)| Write::Delete { repo, path: b.path.clone() }).collect();
        match self.env.meta.commit(checks, writes).await {
            Ok(()) => Ok(true),
            Err(MetaError::CheckFailed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
