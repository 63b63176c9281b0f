//! PyPI format for wharf: the Simple API (PEP 503/691/700) for pip and uv, and the legacy
//! upload API for twine.

mod archive;
mod config;
mod error;
mod hosted;
mod meta;
mod model;
mod routes;

use std::sync::Arc;

use wharf_format::{ConfigError, Format, FormatEnv, Kind, Repo, RepoConfig};

pub struct Pypi;

#[async_trait::async_trait(?Send)]
impl Format for Pypi {
    fn name(&self) -> &'static str {
        "pypi"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Hosted]
    }

    fn validate(
        &self,
        kind: Kind,
        attributes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        config::validate(kind, attributes)
    }

    fn open(&self, config: Arc<RepoConfig>, env: FormatEnv) -> Result<Arc<dyn Repo>, ConfigError> {
        Ok(Arc::new(hosted::Hosted::new(config, env)))
    }
}
