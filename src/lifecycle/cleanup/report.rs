//! What a cleanup preview or run answers: the components it deletes (or would), and what it
//! could not do, per component, per policy and per repository.

use serde::Serialize;
use wharf_format::{rfc3339_millis, Asset};

use super::evaluate::Component;
use crate::lifecycle::gc::Reclaimed;

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

impl PlannedComponent {
    pub fn of(repo: &str, c: &Component, policies: Vec<String>) -> PlannedComponent {
        PlannedComponent {
            id: crate::http::admin::components::component_id(repo, &c.key),
            group: c.key.group.clone(),
            name: c.key.name.clone(),
            version: c.key.version.clone(),
            policies,
            size: c.assets.iter().map(|a| a.size).sum(),
            assets: c.assets.iter().map(PlannedAsset::from).collect(),
        }
    }
}

/// A component that was chosen and not deleted.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub component: String,
    pub error: String,
}

/// A policy a repository names that its run did not apply.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedPolicy {
    pub policy: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryReport {
    pub repository: String,
    pub format: String,
    /// The policies applied.
    pub policies: Vec<String>,
    pub skipped_policies: Vec<SkippedPolicy>,
    /// Deleted (or, in a dry run, to be deleted).
    pub components: Vec<PlannedComponent>,
    pub components_deleted: usize,
    pub assets_deleted: usize,
    /// Bytes of content no asset on the blob store refers to any more (garbage collection
    /// reclaims them after its grace period).
    pub bytes_freed: i64,
    /// Of those, what the run deleted from the blob store itself (the rest is younger than the
    /// grace period, or still named elsewhere, and waits for a compaction).
    pub freed: Reclaimed,
    pub failed: Vec<Failure>,
    /// Why the repository's run ended early (its listing failed): what it deleted before is
    /// reported, the other repositories are cleaned all the same.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    pub dry_run: bool,
    /// A stop was asked for (`POST /service/rest/v1/tasks/cleanup/stop`): the run ended between
    /// two components, and the report says what it did until then.
    pub stopped: bool,
    pub repositories: Vec<RepositoryReport>,
    pub components_deleted: usize,
    pub assets_deleted: usize,
    pub bytes_freed: i64,
    pub freed: Reclaimed,
}

impl CleanupReport {
    /// A line for the task list.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        let mut line =
            format!("{verb} {} components ({} assets); {} bytes no longer referenced", self.components_deleted, self.assets_deleted, self.bytes_freed);
        line.push_str(&self.freed.suffix());
        let count = |f: &dyn Fn(&RepositoryReport) -> usize| self.repositories.iter().map(f).sum::<usize>();
        let (failed, skipped, broken) = (count(&|r| r.failed.len()), count(&|r| r.skipped_policies.len()), count(&|r| usize::from(r.error.is_some())));
        let unfreed = count(&|r| usize::from(r.freed.error.is_some()));
        for (n, what) in [
            (failed, "components not deleted"),
            (skipped, "policies skipped"),
            (broken, "repositories failed"),
            (unfreed, "repositories not freed beside the run"),
        ] {
            if n > 0 {
                line.push_str(&format!("; {n} {what}"));
            }
        }
        if self.stopped {
            line.push_str("; stopped");
        }
        line
    }
}
