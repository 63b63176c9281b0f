//! "Docker - Delete unused manifests and images" (Nexus's task of that name, wharf's type
//! `repository.docker.gc`): removes manifests that no tag names and that are older than
//! `olderThanDays`, and then the image's links to blobs that no remaining manifest uses. What it
//! removes is handed to the server as it commits (`TaskRun::released`), which frees the bytes
//! nothing else names beside the run.
//!
//! An image left with nothing (no manifest, tag or blob link) loses its own row too, so the
//! catalog stops listing it.
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
    description: "Removes untagged manifests older than olderThanDays (default 1; never younger than uploads.ttl_secs; kept while an index or a referrer's subject that is kept needs them) and the image's links to blobs no remaining manifest uses, freeing the bytes nothing else names (past gc.grace_secs); an image left with nothing leaves the catalog. Properties: olderThanDays, dryRun.",
    validate,
}];

fn validate(p: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    wharf_format::known_properties(p, &["olderThanDays", "dryRun"], UNUSED_MANIFESTS)?;
    let mut out = p.clone();
    match p.get("olderThanDays") {
        None => {
            out.insert("olderThanDays".into(), json!(1));
        }
        Some(v) if v.as_u64().is_some_and(|d| d <= wharf_format::MAX_DAYS) => {}
        Some(_) => {
            return Err(ConfigError::new("properties.olderThanDays", format!("must be a whole number of days up to {} (0: any age)", wharf_format::MAX_DAYS)))
        }
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
    /// The images' own rows (`_image/<name>`), by name.
    images: HashMap<String, Asset>,
    /// Images with a manifest whose uses cannot be known (unreadable): left alone.
    unknown: HashSet<String>,
}

impl Content {
    /// The rows of images that `removed` (manifests) and `links_gone` (blob links, counted by
    /// image) left with nothing, in name order.
    fn emptied(&self, removed: &HashSet<Key>, links_gone: &HashMap<&str, usize>) -> Vec<&Asset> {
        let mut busy: HashSet<&str> = self.manifests.keys().filter(|k| !removed.contains(*k)).map(|k| k.0.as_str()).collect();
        busy.extend(self.tagged.iter().map(|k| k.0.as_str()));
        busy.extend(self.unknown.iter().map(String::as_str));
        let mut links: HashMap<&str, usize> = HashMap::new();
        for b in &self.blobs {
            if let Some(name) = &b.component {
                *links.entry(name).or_default() += 1;
            }
        }
        let mut out: Vec<&Asset> = self
            .images
            .iter()
            .filter(|(name, _)| {
                !busy.contains(name.as_str()) && links.get(name.as_str()).copied().unwrap_or(0) == links_gone.get(name.as_str()).copied().unwrap_or(0)
            })
            .map(|(_, a)| a)
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

impl Hosted {
    pub(crate) async fn delete_unused(&self, run: TaskRun<'_>) -> Result<TaskReport, DockerError> {
        let days = run.properties.get("olderThanDays").and_then(Value::as_u64).unwrap_or(1);
        let dry_run = run.properties.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
        let cutoff = now_millis().saturating_sub(wharf_format::days_millis(days).max(run.min_age_ms));
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
        // Links gone, by image: an image left with nothing goes too (below).
        let mut links_gone: HashMap<&str, usize> = HashMap::new();
        // A commit per batch, not per link: the transaction, not the row, is what costs. A
        // batch in which one link changed meanwhile is judged again link by link.
        for batch in unused.chunks(LINK_BATCH) {
            if run.stop.requested() {
                break;
            }
            if dry_run {
                removed_blobs += batch.len() as u64;
                batch.iter().for_each(|(name, _, _)| *links_gone.entry(name).or_default() += 1);
                continue;
            }
            if self.remove_blob_links(batch).await? {
                removed_blobs += batch.len() as u64;
                batch.iter().for_each(|(name, _, _)| *links_gone.entry(name).or_default() += 1);
                (run.released)(batch.iter().filter_map(|(_, _, b)| b.digest.clone()).collect());
                continue;
            }
            for link in batch {
                if self.remove_blob_links(std::slice::from_ref(link)).await? {
                    removed_blobs += 1;
                    *links_gone.entry(link.0).or_default() += 1;
                    (run.released)(link.2.digest.iter().cloned().collect());
                }
            }
        }

        // Images left with nothing (no manifest, tag or blob link): their row goes, so that the
        // catalog stops listing them (Distribution's lists a deleted image for ever) and a year
        // of per-branch image names does not stay behind. A push meanwhile keeps it.
        let empty = if run.stop.requested() { Vec::new() } else { c.emptied(&removed, &links_gone) };
        let mut removed_images = Vec::new();
        for batch in empty.chunks(LINK_BATCH) {
            if dry_run {
                removed_images.extend(batch.iter().map(|a| a.component.clone().unwrap_or_default()));
            } else if self.remove_images(batch).await? {
                removed_images.extend(batch.iter().map(|a| a.component.clone().unwrap_or_default()));
            } else {
                for a in batch {
                    if self.remove_images(std::slice::from_ref(a)).await? {
                        removed_images.push(a.component.clone().unwrap_or_default());
                    }
                }
            }
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        let mut message = format!("{verb} {} unused manifests and {removed_blobs} unused blob links", removed_manifests.len());
        if !removed_images.is_empty() {
            message.push_str(&format!(" and {} empty images", removed_images.len()));
        }
        Ok(TaskReport {
            assets_deleted: removed_manifests.len() as u64 + removed_blobs + removed_images.len() as u64,
            message,
            details: json!({ "manifests": removed_manifests, "blobLinks": removed_blobs, "images": removed_images, "dryRun": dry_run }),
        })
    }

    /// Removes images' own rows, all or none: each only if nothing is stored under the image
    /// (a push meanwhile linked a blob, put a manifest or a tag) and the row is unchanged. A
    /// name's rows all start with one of these prefixes; another image's may too (`a/tags/`
    /// holds the image `a/tags`), which only keeps a row that could have gone.
    async fn remove_images(&self, images: &[&Asset]) -> Result<bool, DockerError> {
        let repo = self.cfg.id;
        let mut checks = Vec::new();
        for a in images {
            let Some(name) = &a.component else { return Ok(false) };
            checks.push(Check::Unchanged { repo, path: a.path.clone(), updated_at: a.updated_at });
            for part in ["blobs", "manifests", "tags", "refs"] {
                checks.push(Check::NoneUnder { repo, prefix: format!("{name}/{part}/") });
            }
        }
        let writes = images.iter().map(|a| Write::Delete { repo, path: a.path.clone() }).collect();
        self.commit_if(checks, writes).await
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
                meta::IMAGE => {
                    c.images.insert(name, a);
                }
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

    /// Commits `writes` if every one of `checks` holds; `false` (nothing written) if one does not.
    async fn commit_if(&self, checks: Vec<Check>, writes: Vec<Write>) -> Result<bool, DockerError> {
        match self.env.meta.commit(checks, writes).await {
            Ok(()) => Ok(true),
            Err(MetaError::CheckFailed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
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
        self.commit_if(checks, writes).await
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
        self.commit_if(checks, writes).await
    }
}
