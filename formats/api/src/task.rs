//! Housekeeping a format offers, run as scheduled tasks by the server (Nexus's format-specific
//! tasks, such as "Docker - Delete unused manifests and images"): the format names its task
//! types and their properties, and each of its repositories runs them on its own content.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::ConfigError;

/// A request to stop a run, checked by the run between steps.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Steps of a long loop between two chances for other work (see [`yield_sometimes`]).
const YIELD_EVERY: usize = 4096;

/// Counts a step of a loop that has no await of its own (one over every asset of a
/// repository), and every [`YIELD_EVERY`] steps lets the other work of the thread go first: a
/// repository can hold millions of assets, and a task's thread runs other tasks too.
pub async fn yield_sometimes(steps: &mut usize) {
    *steps += 1;
    if steps.is_multiple_of(YIELD_EVERY) {
        tokio::task::yield_now().await;
    }
}

/// A task's properties, as JSON.
pub type Properties = Map<String, Value>;

/// A task type a format offers.
pub struct FormatTask {
    pub type_id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// Checks the type's own properties (the server handles `repositoryName`) and fills in
    /// defaults; unknown properties are named.
    pub validate: fn(&Properties) -> Result<Properties, ConfigError>,
}

/// One run of a task on one repository.
pub struct TaskRun<'a> {
    /// As the type's `validate` returned them.
    pub properties: &'a Properties,
    pub stop: &'a Stop,
    /// Content younger than this (milliseconds) is never judged unused, whatever the task's
    /// properties say: an upload may still be completing it (the server's upload session TTL).
    pub min_age_ms: i64,
    /// Takes the digests (as assets record them) of content the run has just stopped linking,
    /// batch by batch as its removals commit. The server frees at once, beside the run, those
    /// that nothing else names and nobody touched within the grace period, as a compaction
    /// would: an admin who runs a clean-up gets the disk back without waiting for the night's
    /// compaction. A dry run hands over nothing.
    pub released: &'a dyn Fn(Vec<String>),
}

/// What a run did on one repository.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    /// Assets removed (or, in a dry run, that would be).
    pub assets_deleted: u64,
    /// A line for people.
    pub message: String,
    /// What the format wants to tell in detail (which manifests, which images).
    pub details: Value,
}

/// Checks a boolean property (`dryRun`), filling in `default` when it is absent.
pub fn flag_property(props: &mut Properties, key: &str, default: bool) -> Result<(), ConfigError> {
    match props.get(key) {
        None => {
            props.insert(key.into(), Value::Bool(default));
            Ok(())
        }
        Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(ConfigError::not_boolean(format!("properties.{key}"))),
    }
}

/// Checks a property that names one thing (a repository, a blob store) or `"*"` for all, filling
/// in `"*"` when it is absent.
pub fn name_or_all_property(props: &mut Properties, key: &str, what: &str) -> Result<(), ConfigError> {
    match props.get(key) {
        None => {
            props.insert(key.into(), Value::String("*".into()));
            Ok(())
        }
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(_) => Err(ConfigError::new(format!("properties.{key}"), format!("must be a {what}'s name or \"*\""))),
    }
}

/// Refuses properties outside `allowed`, naming the first.
pub fn known_properties(props: &Properties, allowed: &[&str], type_id: &str) -> Result<(), ConfigError> {
    match props.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ConfigError::new(format!("properties.{k}"), format!("unknown property of a {type_id} task"))),
        None => Ok(()),
    }
}
