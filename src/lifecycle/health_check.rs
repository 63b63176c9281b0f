//! A repository's health check: what wharf offers in the place of Nexus's Repository Health
//! Check (which asks Sonatype's vulnerability service; wharf has no such data). It answers the
//! question a long-lived repository raises: is every file still there, and still the bytes
//! that were published?
//!
//! For every asset of the repository that names a blob, the blob is read back from the
//! repository's blob store (streamed, never held whole, at most `health_check.read_mib_per_sec`,
//! never from or into this node's read cache) and its sha256 compared with the digest the asset
//! records. A proxy's report also says how this node last found its upstream.
//!
//! The check reads only: it repairs nothing, deletes nothing, and so runs in read-only mode too.
//! A problem is reported only while the asset still names that blob when the problem is found,
//! so content replaced or deleted during the check is never reported as damaged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use wharf_format::{now_millis, rfc3339_millis, BlobError, BlobStore, Digest, Kind, RepoRef, Stop};

use crate::db::{health_checks as rows, DbError};
use crate::state::AppState;

/// Assets read from the database at a time.
const PAGE: i64 = 500;
/// Problems a report names; the rest are counted.
pub const REPORTED_PROBLEMS: usize = 100;
/// Blobs whose verdict a check remembers, so that a blob several assets name (a layer in many
/// images) is read once; past this many, blobs are read again rather than memory grown.
const REMEMBERED: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    #[error("repository {0} not found")]
    UnknownRepository(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What is wrong with an asset's blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    /// The blob store does not hold the blob.
    MissingBlob,
    /// The blob's bytes hash to another digest than the asset records.
    DigestMismatch,
    /// The store failed to give the bytes (an I/O error, a permission), or the recorded digest
    /// is not a sha256 one.
    Unreadable,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub path: String,
    pub blob_digest: String,
    pub problem: ProblemKind,
    /// For people: what the content hashes to, or the store's error.
    pub detail: String,
}

/// One check of one repository.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub repository: String,
    pub format: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub blob_store: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    /// `false` when the run was stopped before it had seen every asset.
    pub complete: bool,
    pub assets_checked: u64,
    pub healthy: u64,
    pub missing_blob: u64,
    pub digest_mismatch: u64,
    pub unreadable: u64,
    pub bytes_read: u64,
    /// The first [`REPORTED_PROBLEMS`] problems, in asset path order.
    pub problems: Vec<Problem>,
    /// Problems past those.
    pub problems_not_listed: u64,
    /// A proxy's upstream as the node that ran the check found it (`state`, and while failing
    /// the last error): each node learns it from its own requests.
    pub upstream: Option<Value>,
    /// Every asset healthy and, for a proxy, its upstream available.
    pub ok: bool,
    pub node: String,
    /// A line for people.
    pub message: String,
}

impl Report {
    fn summary(&self) -> String {
        let mut s = format!(
            "{} assets checked: {} healthy, {} missing blob, {} digest mismatch, {} unreadable; {} bytes read",
            self.assets_checked, self.healthy, self.missing_blob, self.digest_mismatch, self.unreadable, self.bytes_read
        );
        if let Some(state) = self.upstream.as_ref().and_then(|u| u.get("state")).and_then(Value::as_str) {
            s.push_str(&format!("; upstream {state}"));
        }
        if !self.complete {
            s.push_str("; stopped before the end");
        }
        s
    }
}

/// What a blob was found to be.
#[derive(Clone, Debug)]
enum Verdict {
    Healthy,
    Missing,
    Mismatch(String),
    Unreadable(String),
}

/// Keeps a run's reads at `health_check.read_mib_per_sec` on average.
struct Pace {
    bytes_per_sec: Option<f64>,
    start: Instant,
    bytes: u64,
}

impl Pace {
    fn new(mib_per_sec: u64) -> Pace {
        Pace { bytes_per_sec: (mib_per_sec > 0).then_some(mib_per_sec as f64 * 1024.0 * 1024.0), start: Instant::now(), bytes: 0 }
    }

    async fn read(&mut self, n: usize) {
        self.bytes += n as u64;
        if let Some(rate) = self.bytes_per_sec {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate);
            let elapsed = self.start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
}

/// Reads the blob back and hashes it; `None` if the run was asked to stop meanwhile.
async fn verify(store: &BlobStore, digest: &Digest, pace: &mut Pace, stop: &Stop) -> Option<Verdict> {
    let read = match store.get_stored(digest).await {
        Ok(r) => r,
        Err(BlobError::NotFound) => return Some(Verdict::Missing),
        Err(e) => return Some(Verdict::Unreadable(e.to_string())),
    };
    let mut body = read.body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                hasher.update(&c);
                pace.read(c.len()).await;
            }
            Err(e) => return Some(Verdict::Unreadable(e.to_string())),
        }
        if stop.requested() {
            return None;
        }
    }
    let actual = hex::encode(hasher.finalize());
    Some(if actual == digest.hex() { Verdict::Healthy } else { Verdict::Mismatch(format!("sha256:{actual}")) })
}

/// Checks one repository; stores and returns its report.
pub async fn check(state: &AppState, repo: &RepoRef, stop: &Stop) -> Result<Report, HealthCheckError> {
    let started = now_millis();
    let repo_id = repo.config.id;
    let mut pace = Pace::new(state.cfg.health_check.read_mib_per_sec);
    let mut report = Report {
        repository: repo.config.name.clone(),
        format: repo.config.format.clone(),
        kind: repo.config.kind.as_str().to_string(),
        blob_store: repo.config.blob_store.clone(),
        started_at: rfc3339_millis(started),
        finished_at: String::new(),
        duration_ms: 0,
        complete: true,
        assets_checked: 0,
        healthy: 0,
        missing_blob: 0,
        digest_mismatch: 0,
        unreadable: 0,
        bytes_read: 0,
        problems: Vec::new(),
        problems_not_listed: 0,
        upstream: None,
        ok: false,
        node: state.tasks.node.clone(),
        message: String::new(),
    };
    let mut seen: HashMap<String, Verdict> = HashMap::new();
    let mut after = String::new();
    'pages: loop {
        let cursor = after.clone();
        let page = state.db.run(move |c| Ok(rows::asset_page(c, repo_id, &cursor, PAGE)?)).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (path, recorded) in page {
            if stop.requested() {
                report.complete = false;
                break 'pages;
            }
            let verdict = match seen.get(&recorded) {
                Some(v) => v.clone(),
                None => {
                    let before = pace.bytes;
                    let v = match recorded.parse::<Digest>() {
                        Ok(d) => match verify(&repo.blobs, &d, &mut pace, stop).await {
                            Some(v) => v,
                            None => {
                                report.complete = false;
                                break 'pages;
                            }
                        },
                        Err(e) => Verdict::Unreadable(format!("the recorded digest is not a sha256 digest: {e}")),
                    };
                    report.bytes_read += pace.bytes - before;
                    if seen.len() < REMEMBERED {
                        seen.insert(recorded.clone(), v.clone());
                    }
                    v
                }
            };
            if !matches!(verdict, Verdict::Healthy) {
                // Replaced or deleted since its page was read: what it named is no longer its
                // content, and its blob may rightly be gone.
                let (p, d) = (path.clone(), recorded.clone());
                if !state.db.run(move |c| Ok(rows::still_names(c, repo_id, &p, &d)?)).await? {
                    continue;
                }
            }
            report.assets_checked += 1;
            let (kind, detail) = match verdict {
                Verdict::Healthy => {
                    report.healthy += 1;
                    continue;
                }
                Verdict::Missing => {
                    report.missing_blob += 1;
                    (ProblemKind::MissingBlob, format!("blob store {} does not hold the blob", repo.config.blob_store))
                }
                Verdict::Mismatch(actual) => {
                    report.digest_mismatch += 1;
                    (ProblemKind::DigestMismatch, format!("the content hashes to {actual}"))
                }
                Verdict::Unreadable(e) => {
                    report.unreadable += 1;
                    (ProblemKind::Unreadable, e)
                }
            };
            if report.problems.len() < REPORTED_PROBLEMS {
                report.problems.push(Problem { path, blob_digest: recorded, problem: kind, detail });
            } else {
                report.problems_not_listed += 1;
            }
        }
    }
    if repo.config.kind == Kind::Proxy {
        report.upstream = Some(state.registry.upstreams.status(repo_id).unwrap_or_else(|| json!({ "state": "available" })));
    }
    let upstream_ok = report.upstream.as_ref().is_none_or(|u| u.get("state").and_then(Value::as_str) == Some("available"));
    report.ok = report.healthy == report.assets_checked && upstream_ok;
    let finished = now_millis();
    report.finished_at = rfc3339_millis(finished);
    report.duration_ms = finished - started;
    report.message = report.summary();
    let text = serde_json::to_string(&report).expect("a report serializes");
    let stored = state.db.write(move |c| rows::store_report(c, repo_id, finished, &text)).await;
    match stored {
        Ok(()) => {}
        // The repository was deleted while it was checked: nothing to keep the report with.
        Err(DbError::Query(e)) if is_foreign_key_violation(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(report)
}

fn is_foreign_key_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _))
}

/// What a run of the task checked: `Some(name)`, that repository (enabled or not: an
/// administrator asked); `None`, every repository whose check is enabled.
pub async fn run(state: &AppState, target: Option<&str>, stop: &Stop) -> Result<(String, Value), HealthCheckError> {
    let snap = state.registry.snapshot();
    let repos: Vec<RepoRef> = match target {
        Some(name) => vec![snap.repos.get(name).cloned().ok_or_else(|| HealthCheckError::UnknownRepository(name.to_string()))?],
        None => {
            let enabled = state.db.run(|c| Ok(rows::enabled(c)?)).await?;
            let mut repos: Vec<RepoRef> = snap.repos.values().filter(|r| enabled.contains(&r.config.id)).cloned().collect();
            repos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
            repos
        }
    };
    let mut summaries = Vec::new();
    let mut damaged = Vec::new();
    for repo in &repos {
        if stop.requested() {
            break;
        }
        let r = check(state, repo, stop).await?;
        if !r.ok {
            damaged.push(r.repository.clone());
        }
        summaries.push(json!({
            "repository": r.repository,
            "ok": r.ok,
            "complete": r.complete,
            "assetsChecked": r.assets_checked,
            "healthy": r.healthy,
            "missingBlob": r.missing_blob,
            "digestMismatch": r.digest_mismatch,
            "unreadable": r.unreadable,
            "bytesRead": r.bytes_read,
            "message": r.message,
        }));
    }
    let message = match (summaries.len(), damaged.is_empty()) {
        (0, _) => "no repository to check".to_string(),
        (n, true) => format!("{n} repositories checked, all healthy (nothing was changed)"),
        (n, false) => format!("{n} repositories checked; not healthy: {} (nothing was changed)", damaged.join(", ")),
    };
    Ok((message, json!({ "repositories": summaries })))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// A blob read in many chunks is healthy while its bytes are the ones published; changed in
    /// place it is a mismatch naming what it hashes to now; gone, it is missing.
    #[actix_rt::test]
    async fn a_blob_is_healthy_changed_or_missing_as_its_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::filesystem("t", dir.path()).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let digest = store.put_bytes(Bytes::from(data.clone())).await.unwrap();
        let (stop, mut pace) = (Stop::default(), Pace::new(0));
        assert!(matches!(verify(&store, &digest, &mut pace, &stop).await, Some(Verdict::Healthy)));
        assert_eq!(pace.bytes, data.len() as u64);

        let file = dir.path().join("blobs/sha256").join(&digest.hex()[..2]).join(digest.hex());
        let mut changed = data.clone();
        changed[700_000] ^= 1;
        std::fs::write(&file, &changed).unwrap();
        match verify(&store, &digest, &mut pace, &stop).await {
            Some(Verdict::Mismatch(actual)) => assert_eq!(actual, Digest::of(&changed).to_string()),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(verify(&store, &digest, &mut pace, &stop).await, Some(Verdict::Missing)));

        // Asked to stop, a read gives no verdict rather than a wrong one.
        std::fs::write(&file, &data).unwrap();
        stop.request();
        assert!(verify(&store, &digest, &mut pace, &stop).await.is_none());
    }

    /// Reads are held to the configured rate: half a MiB at 1 MiB/s takes half a second.
    #[actix_rt::test]
    async fn reads_keep_to_the_configured_rate() {
        let mut pace = Pace::new(1);
        let started = Instant::now();
        pace.read(256 * 1024).await;
        pace.read(256 * 1024).await;
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
        let mut unlimited = Pace::new(0);
        let started = Instant::now();
        unlimited.read(1 << 30).await;
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
