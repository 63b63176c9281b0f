//! Docker / OCI Distribution format for wharf.

mod access;
mod cleanup;
mod config;
mod describe;
mod error;
mod group;
mod hosted;
pub(crate) mod meta;
mod model;
mod proxy;
mod root;
mod routes;
mod upstream;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use async_trait::async_trait;
use wharf_format::{Asset, ComponentKey, ConfigError, Format, FormatEnv, Kind, Listener, Repo, RepoConfig, RepoLookup, RootCtx};

pub use config::DockerSettings;

pub struct Docker;

#[async_trait(?Send)]
impl Format for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Hosted, Kind::Proxy, Kind::Group]
    }

    fn root_path(&self) -> Option<&'static str> {
        Some("/v2")
    }

    fn validate(&self, kind: Kind, attributes: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        config::validate(kind, attributes)
    }

    fn component_kind(&self) -> Option<&'static str> {
        Some(meta::TAG)
    }

    /// As in Nexus, a component is a tagged image (`name:tag`); deleting it deletes the tag only.
    fn component_of(&self, asset: &Asset) -> Option<ComponentKey> {
        if asset.kind != meta::TAG {
            return None;
        }
        Some(ComponentKey { group: None, name: asset.component.clone()?, version: meta::tag_of(&asset.path).to_string(), download_path: None })
    }

    /// A tag is one asset, at its path.
    fn component_prefix(&self, key: &ComponentKey) -> Option<String> {
        Some(meta::tag_path(&key.full_name(), &key.version))
    }

    fn tasks(&self) -> &'static [wharf_format::FormatTask] {
        &cleanup::TASKS
    }

    fn listener(&self, config: &RepoConfig) -> Listener {
        let s = DockerSettings::parse(config.attributes.get("docker")).unwrap_or_default();
        Listener { port: s.http_port, https_port: s.https_port, subdomain: s.subdomain }
    }

    fn open(&self, config: Arc<RepoConfig>, env: FormatEnv) -> Result<Arc<dyn Repo>, ConfigError> {
        let settings = DockerSettings::parse(config.attributes.get("docker"))?;
        Ok(match config.kind {
            Kind::Hosted => Arc::new(hosted::Hosted::new(config, settings, env)),
            Kind::Proxy => {
                let mut p = config::ProxySettings::parse(&config.attributes)?;
                p.upstream.invalidated_at = config.cache_invalidated_at;
                Arc::new(proxy::Proxy::new(config, settings, p, env).map_err(|e| ConfigError::new("httpClient", e))?)
            }
            Kind::Group => {
                let g = config::GroupSettings::parse(config.attributes.get("group"))?;
                Arc::new(group::Group::new(config, settings, g, env))
            }
        })
    }

    fn validate_references(&self, config: &RepoConfig, repos: &dyn RepoLookup) -> Result<(), ConfigError> {
        wharf_format::config::content_always_checked(
            config,
            "a manifest must parse as its media type, and every blob and manifest (pushed or proxied) must hash to its digest",
        )?;
        if config.kind != Kind::Group {
            return Ok(());
        }
        config::GroupSettings::parse(config.attributes.get("group"))?.check_references(config, repos)
    }

    fn refuse_write(&self, req: &HttpRequest, _path: &str, message: &str) -> Option<HttpResponse> {
        // Every write of the registry API is a POST, PUT, PATCH or DELETE; reads are GET and HEAD.
        let reads = wharf_format::reads(req.method());
        (!reads).then(|| error::respond(Err(error::DockerError::ReadOnly(message.to_string()))))
    }

    fn unavailable(&self, _req: &HttpRequest, message: &str) -> HttpResponse {
        error::unavailable(message)
    }

    async fn handle_root(&self, ctx: RootCtx, req: HttpRequest) -> Option<HttpResponse> {
        root::handle(ctx, req).await
    }
}
