//! The two traits a format implements: [`Format`] (the recipe, one per format) and [`Repo`]
//! (one configured repository at run time). Hosted, proxy and group are three `Repo`
//! implementations inside one format crate; the server never needs to know which it holds.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;

use crate::blob::BlobStore;
use crate::config::{ConfigError, Kind, RepoConfig};
use crate::ctx::{Principal, RepoCtx};
use crate::meta::{Asset, MetaStore, NewAsset};

/// A component as Nexus's components API shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ComponentKey {
    pub group: Option<String>,
    pub name: String,
    pub version: String,
    /// The asset's path under `/repository/<name>/`, when it can be downloaded there.
    pub download_path: Option<String>,
}

impl ComponentKey {
    /// The name with its group (`@scope/name` for a scoped npm package): the `component`
    /// column of the component's assets.
    pub fn full_name(&self) -> String {
        match &self.group {
            Some(g) => format!("{g}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Where a repository wants a URL space of its own, besides `/repository/<name>/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listener {
    /// A port of its own (Nexus's `docker.httpPort`).
    pub port: Option<u16>,
    /// A port of its own served over HTTPS with the server's certificate (`docker.httpsPort`).
    pub https_port: Option<u16>,
    /// Requests whose Host header's first label is this (wharf's `docker.subdomain`).
    pub subdomain: Option<String>,
}

/// What a format needs from the server to open a repository.
#[derive(Clone)]
pub struct FormatEnv {
    /// The repository's blob store.
    pub blobs: Arc<BlobStore>,
    pub meta: Arc<dyn MetaStore>,
    /// Other repositories, by name (group members, cross-repository mounts).
    pub repos: Arc<dyn RepoLookup>,
    /// Password checks and API tokens, for protocols that log in or manage tokens themselves.
    pub identity: Arc<dyn crate::identity::Identity>,
    /// Where the format reports pushes, uploads, publishes and deletes.
    pub audit: Arc<dyn crate::audit::Audit>,
    /// Proxies' upstream health, kept across reloads and shown by the admin API.
    pub upstreams: Arc<crate::upstream::Healths>,
    /// Measures what a repository references, for its hard quota: formats call
    /// `usage.check_write(&config)` before a write is linked (see [`crate::quota`]).
    pub usage: Arc<dyn crate::quota::UsageMeter>,
    /// Where the format reports downloads (for cleanup policies' "last downloaded").
    pub downloads: Arc<dyn crate::lifecycle::Downloads>,
}

/// A running repository as other repositories see it.
#[derive(Clone)]
pub struct RepoRef {
    pub config: Arc<RepoConfig>,
    pub repo: Arc<dyn Repo>,
    pub blobs: Arc<BlobStore>,
}

pub trait RepoLookup: Send + Sync {
    fn repo(&self, name: &str) -> Option<RepoRef>;
}

/// Requests under a format's root path that name no repository (Docker's `/v2/`, `/v2/_catalog`).
pub struct RootCtx {
    pub principal: Principal,
    /// The repositories of this format, in name order.
    pub repos: Vec<RepoRef>,
    pub meta: Arc<dyn MetaStore>,
    pub origin: String,
    pub token_realm: String,
    pub token_service: String,
}

#[async_trait(?Send)]
pub trait Format: Send + Sync + 'static {
    /// `docker`, `pypi`, `npm`: the segment in `/service/rest/v1/repositories/{format}/{kind}`.
    fn name(&self) -> &'static str;

    fn kinds(&self) -> &'static [Kind];

    /// A path on the main port under which the first segment names the repository
    /// (Docker: `/v2`, so `/v2/<repo>/<image>/...`).
    fn root_path(&self) -> Option<&'static str> {
        None
    }

    /// Checks the format's sections of a repository's JSON (everything but name, online and
    /// storage) and returns them with defaults filled in. Unknown fields are errors that name
    /// the field.
    fn validate(&self, kind: Kind, attributes: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError>;

    /// Checks the whole configuration as it will be stored: what it says about other
    /// repositories (a group's members) and settings that depend on the kind (storage
    /// included). Called when an administrator creates or changes a repository, not when
    /// configurations reload.
    fn validate_references(&self, _config: &RepoConfig, _repos: &dyn RepoLookup) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Nexus's components: which component (name, version) an asset belongs to, for the
    /// components API. Assets of no component (markers, content by digest) answer `None`.
    fn component_of(&self, _asset: &Asset) -> Option<ComponentKey> {
        None
    }

    /// The one asset kind [`Format::component_of`] makes components of (it answers `None` for
    /// every other kind); the `component` column of those assets names the component's group
    /// and name. Cleanup reads only these assets, in `component` order, a few names at a time
    /// (retention ranks all versions of a name together), instead of the whole repository.
    /// `None`: the format has no components (cleanup finds nothing to delete).
    fn component_kind(&self) -> Option<&'static str> {
        None
    }

    /// A path prefix under which every asset of component `key` lies (a superset will do: what
    /// it holds is filtered by [`Format::component_of`]), so that webhooks tell a component's
    /// first and last asset without reading every asset of its name. `None`: anywhere under its
    /// name (the `component` column).
    fn component_prefix(&self, _key: &ComponentKey) -> Option<String> {
        None
    }

    /// How the format orders versions and tells pre-releases (cleanup policies' `sortBy:
    /// version` and `criteriaReleaseType`); `None` when its versions have no order (Docker tags).
    fn versions(&self) -> Option<&dyn crate::lifecycle::Versions> {
        None
    }

    /// Marks an asset yanked (`Some(reason)`) or not (`None`); `false` if the format has no
    /// such notion (then the API refuses).
    fn yank(&self, _asset: &mut NewAsset, _reason: Option<&str>) -> bool {
        false
    }

    /// Extra URL spaces this repository wants (own port, Host subdomain).
    fn listener(&self, _config: &RepoConfig) -> Listener {
        Listener::default()
    }

    /// Builds the run-time object for one configured repository (Nexus's `Recipe.apply`).
    fn open(&self, config: Arc<RepoConfig>, env: FormatEnv) -> Result<Arc<dyn Repo>, ConfigError>;

    /// Task types this format offers (its housekeeping), run on each repository through
    /// [`Repo::run_task`].
    fn tasks(&self) -> &'static [crate::task::FormatTask] {
        &[]
    }

    /// The server is in read-only mode (`message` says since when and why): answers a request
    /// to one of this format's repositories that would write (`path` as in [`RepoCtx::path`])
    /// with the protocol's refusal, or `None` to let it through because it only reads. This
    /// tells a client before it sends its bytes; a write that gets through anyway is refused
    /// when it commits ([`crate::MetaError::ReadOnly`]).
    fn refuse_write(&self, _req: &HttpRequest, _path: &str, _message: &str) -> Option<HttpResponse> {
        None
    }

    /// The caller could not be identified because the server's database did not answer: the
    /// protocol's "try again later" (503), never its "wrong credentials". Plain text unless
    /// the format says otherwise.
    fn unavailable(&self, _req: &HttpRequest, message: &str) -> HttpResponse {
        crate::unavailable_text(message)
    }

    /// Serves a request under [`Format::root_path`] that names no repository.
    async fn handle_root(&self, _ctx: RootCtx, _req: HttpRequest) -> Option<HttpResponse> {
        None
    }
}

#[async_trait(?Send)]
pub trait Repo: Send + Sync {
    /// Serves one request. The server has checked that the repository exists and is online and
    /// has identified the caller; the format checks what the caller may do (`ctx.check`) and
    /// answers in its own protocol's terms, errors included.
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse;

    /// Runs one of the format's [`Format::tasks`] on this repository; `None` if this kind of
    /// repository has nothing to do for it (a group).
    async fn run_task(&self, _type_id: &str, _run: crate::task::TaskRun<'_>) -> Option<Result<crate::task::TaskReport, String>> {
        None
    }

    /// The repository as its own type, for a format whose groups ask their members through the
    /// format's own API rather than over HTTP (PyPI merges members' project pages).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Deletes one component (as [`Format::component_of`] groups `assets`) the way the format
    /// keeps its content consistent: npm takes the version out of the packument, PyPI removes
    /// the file's metadata and, with the last file, the project; Docker removes the tag.
    /// Returns the assets removed. Used by the components API and by cleanup runs.
    async fn delete_component(&self, _component: &ComponentKey, _assets: &[Asset]) -> Result<Vec<Asset>, crate::lifecycle::DeleteError> {
        Err(crate::lifecycle::DeleteError::Unsupported("this repository has no components of its own to delete".into()))
    }

    /// What the format says of one component (as [`Format::component_of`] groups `assets`)
    /// beyond its assets' rows, as JSON for the components API's `details`: Docker its
    /// platforms and layers, npm its dist-tags and README, PyPI its summary and files. See
    /// [`crate::describe`] for what a description may read. Repositories without components of
    /// their own (groups) describe nothing.
    async fn describe_component(&self, _component: &ComponentKey, _assets: &[Asset]) -> Result<serde_json::Value, crate::describe::DescribeError> {
        Ok(serde_json::Value::Object(serde_json::Map::new()))
    }

    /// Versions of `component`'s name (its group and name; its version is not looked at) that
    /// clients get without naming a version, so that cleanup never deletes them (npm: what a
    /// dist-tag names; `latest` above all, which an unpublish would otherwise move to whatever
    /// is left, a pre-release included). An error leaves every version of the name alone.
    async fn pinned_versions(&self, _component: &ComponentKey) -> Result<Vec<String>, crate::lifecycle::DeleteError> {
        Ok(Vec::new())
    }

    /// Takes one component uploaded through Nexus's components API (`POST
    /// /service/rest/v1/components?repository=...`, see [`crate::upload`]) the way the format's
    /// own clients publish it: the same rights, checks, duplicate rule, quota and events.
    /// Returns the component stored. Repositories that take none keep this default.
    async fn upload_component(&self, ctx: RepoCtx, _upload: crate::upload::ComponentUpload) -> Result<ComponentKey, crate::upload::UploadError> {
        Err(crate::upload::unsupported(&ctx.repo))
    }

    /// [`Repo::delete_component`] for a cleanup run: the same, except that a version pinned
    /// ([`Repo::pinned_versions`]) by the time of the delete is left alone
    /// ([`crate::lifecycle::DeleteError::Pinned`]), however recently it became so.
    async fn clean_component(&self, component: &ComponentKey, assets: &[Asset]) -> Result<Vec<Asset>, crate::lifecycle::DeleteError> {
        self.delete_component(component, assets).await
    }
}
