//! Docker / OCI Distribution format for wharf.

mod access;
mod config;
mod error;
mod hosted;
mod meta;
mod model;
mod root;
mod routes;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use async_trait::async_trait;
use wharf_format::{ConfigError, Format, FormatEnv, Kind, Listener, Repo, RepoConfig, RootCtx};

pub use config::DockerSettings;

pub struct Docker;

#[async_trait(?Send)]
impl Format for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Hosted]
    }

    fn root_path(&self) -> Option<&'static str> {
        Some("/v2")
    }

    fn validate(
        &self,
        kind: Kind,
        attributes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        config::validate(kind, attributes)
    }

    fn listener(&self, config: &RepoConfig) -> Listener {
        let s = DockerSettings::parse(config.attributes.get("docker")).unwrap_or_default();
        Listener { port: s.http_port, subdomain: s.subdomain }
    }

    fn open(&self, config: Arc<RepoConfig>, env: FormatEnv) -> Result<Arc<dyn Repo>, ConfigError> {
        let settings = DockerSettings::parse(config.attributes.get("docker"))?;
        Ok(Arc::new(hosted::Hosted::new(config, settings, env)))
    }

    async fn handle_root(&self, ctx: RootCtx, req: HttpRequest) -> Option<HttpResponse> {
        root::handle(ctx, req).await
    }
}
