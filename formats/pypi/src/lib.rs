//! PyPI format for wharf: the Simple API (PEP 503/691/700) for pip and uv, and the legacy
//! upload API for twine.

mod archive;
mod config;
mod error;
mod hosted;
pub(crate) mod meta;
mod model;
mod routes;

use std::sync::Arc;

use wharf_format::{Asset, ComponentKey, ConfigError, Format, FormatEnv, Kind, NewAsset, Repo, RepoConfig};

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

    /// A component is a release: the files of one project version.
    fn component_of(&self, asset: &Asset) -> Option<ComponentKey> {
        if asset.kind != meta::FILE {
            return None;
        }
        Some(ComponentKey {
            group: None,
            name: asset.component.clone()?,
            version: asset.attributes.get("version")?.as_str()?.to_string(),
            download_path: Some(asset.path.clone()),
        })
    }

    fn markers(&self, name: &str) -> Vec<String> {
        vec![meta::project_path(name)]
    }

    /// PEP 592: a yanked file stays installable by exact pin, and is skipped otherwise.
    fn yank(&self, asset: &mut NewAsset, reason: Option<&str>) -> bool {
        if let Some(attrs) = asset.attributes.as_object_mut() {
            attrs.insert("yanked".into(), reason.map_or(serde_json::Value::Null, |r| serde_json::Value::String(r.to_string())));
        }
        true
    }
}
