//! PyPI format for wharf: the Simple API (PEP 503/691/700) for pip and uv, and the legacy
//! upload API for twine with PEP 740 attestations and the Integrity API; hosted, proxy and group
//! repositories.

mod archive;
mod attestation;
mod config;
mod describe;
mod error;
mod group;
mod hosted;
mod index;
mod json_api;
pub(crate) mod meta;
mod model;
mod proxy;
mod routes;
mod source;
mod upstream;
mod version;

use std::sync::Arc;

use wharf_format::{Asset, ComponentKey, ConfigError, Format, FormatEnv, GroupSettings, Kind, NewAsset, ProxySettings, Repo, RepoConfig, RepoLookup};

pub struct Pypi;

#[async_trait::async_trait(?Send)]
impl Format for Pypi {
    fn name(&self) -> &'static str {
        "pypi"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Hosted, Kind::Proxy, Kind::Group]
    }

    fn refuse_write(&self, req: &actix_web::HttpRequest, _path: &str, message: &str) -> Option<actix_web::HttpResponse> {
        // An upload is the one request that writes (a POST); pip only reads.
        let reads = wharf_format::reads(req.method());
        (!reads).then(|| error::PypiError::Frozen(message.to_string()).to_response())
    }

    fn validate(&self, kind: Kind, attributes: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        config::validate(kind, attributes)
    }

    fn validate_references(&self, config: &RepoConfig, repos: &dyn RepoLookup) -> Result<(), ConfigError> {
        match config.kind {
            Kind::Hosted => {
                return wharf_format::config::content_always_checked(
                    config,
                    "an uploaded wheel must be a zip and an sdist a gzip tar or zip whose metadata names the project and version",
                )
            }
            Kind::Proxy => return Ok(()),
            // A group serves its members' content as they validated it.
            Kind::Group => wharf_format::config::content_always_checked(config, "a group serves what its members validated; set it on a proxy member")?,
        }
        let g = GroupSettings::parse(config.attributes.get("group"))?;
        g.check_references(config, repos)?;
        g.refuse_nested(config, repos)
    }

    fn open(&self, config: Arc<RepoConfig>, env: FormatEnv) -> Result<Arc<dyn Repo>, ConfigError> {
        Ok(match config.kind {
            Kind::Hosted => Arc::new(hosted::Hosted::new(config, env)),
            Kind::Proxy => {
                let settings = ProxySettings::of(&config)?;
                Arc::new(proxy::Proxy::new(config, settings, env).map_err(|e| ConfigError::new("httpClient", e))?)
            }
            Kind::Group => {
                let g = GroupSettings::parse(config.attributes.get("group"))?;
                Arc::new(group::Group::new(config, g, env))
            }
        })
    }

    fn component_kind(&self) -> Option<&'static str> {
        Some(meta::FILE)
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

    fn versions(&self) -> Option<&dyn wharf_format::Versions> {
        Some(&version::Pep440)
    }

    /// PEP 592: a yanked file stays installable by exact pin, and is skipped otherwise.
    fn yank(&self, asset: &mut NewAsset, reason: Option<&str>) -> bool {
        if let Some(attrs) = asset.attributes.as_object_mut() {
            attrs.insert("yanked".into(), reason.map_or(serde_json::Value::Null, |r| serde_json::Value::String(r.to_string())));
        }
        true
    }
}
