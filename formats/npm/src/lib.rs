//! npm format for wharf: the registry API that npm, pnpm and yarn speak (packuments, tarballs,
//! publish, dist-tags, deprecate, unpublish, search, login and tokens); hosted, proxy and group.

mod access;
mod attachment;
mod config;
mod describe;
mod doc;
mod error;
mod group;
mod hosted;
pub(crate) mod meta;
mod model;
mod packument;
mod provenance;
mod proxy;
mod raw_json;
mod routes;
mod search;
mod source;
mod store;
mod tarball;
mod upstream;
mod user;
mod version;
mod weblogin;

use std::sync::Arc;

use wharf_format::{Asset, ComponentKey, ConfigError, Format, FormatEnv, GroupSettings, Kind, ProxySettings, Repo, RepoConfig, RepoLookup};

pub struct Npm;

#[async_trait::async_trait(?Send)]
impl Format for Npm {
    fn name(&self) -> &'static str {
        "npm"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Hosted, Kind::Proxy, Kind::Group]
    }

    fn validate(&self, kind: Kind, attributes: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        config::validate(kind, attributes)
    }

    fn validate_references(&self, config: &RepoConfig, repos: &dyn RepoLookup) -> Result<(), ConfigError> {
        match config.kind {
            Kind::Hosted => {
                return wharf_format::config::content_always_checked(
                    config,
                    "a published tarball must be a gzip tar whose package.json names the package and version",
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

    fn refuse_write(&self, req: &actix_web::HttpRequest, path: &str, message: &str) -> Option<actix_web::HttpResponse> {
        use actix_web::http::Method;
        // An audit is a POST that only reads.
        let reads = matches!(*req.method(), Method::GET | Method::HEAD) || matches!(routes::parse(path), Some(routes::Endpoint::Audit(_)));
        (!reads).then(|| error::NpmError::ReadOnly(message.to_string()).to_response())
    }

    fn unavailable(&self, _req: &actix_web::HttpRequest, message: &str) -> actix_web::HttpResponse {
        actix_web::HttpResponse::ServiceUnavailable().insert_header(wharf_format::retry_after()).json(serde_json::json!({ "error": message }))
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
        Some(meta::TARBALL)
    }

    /// A component is a published version (its tarball).
    fn component_of(&self, asset: &Asset) -> Option<ComponentKey> {
        if asset.kind != meta::TARBALL {
            return None;
        }
        let name = asset.component.clone()?;
        let (group, short) = match name.split_once('/') {
            Some((scope, n)) => (Some(scope.to_string()), n.to_string()),
            None => (None, name.clone()),
        };
        Some(ComponentKey {
            group,
            name: short,
            version: asset.attributes.get("version")?.as_str()?.to_string(),
            download_path: Some(format!("{name}/-/{}", asset.path.rsplit('/').next()?)),
        })
    }

    /// The package's tarballs: a hosted version's is `<basename>-<version>.tgz`, but a proxy
    /// keeps whatever file name the upstream gives, and may hold two of one version.
    fn component_prefix(&self, key: &ComponentKey) -> Option<String> {
        Some(meta::tarballs_prefix(&key.full_name()))
    }

    fn versions(&self) -> Option<&dyn wharf_format::Versions> {
        Some(&version::Semver)
    }
}
