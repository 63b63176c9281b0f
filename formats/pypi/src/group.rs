//! A group PyPI repository: one index over several hosted and proxy repositories.
//!
//! A project is served whole from the first member, in order, that knows it: pages are not
//! merged file by file. With a hosted repository listed before a proxy of the public index, a
//! private project shadows any public project of the same name, so a stranger who uploads
//! `our-internal-lib 99.0` to the public index cannot get it installed (dependency confusion).
//! Uploads sent to the group go to its writable member.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use wharf_format::{first_answer, Action, FormatEnv, GroupSettings, Repo, RepoConfig, RepoCtx, RepoRef, Want};

use crate::error::PypiError;
use crate::hosted::base_url;
use crate::index::{self, FileEntry};
use crate::model::normalize;
use crate::routes::{self, Endpoint};
use crate::source::{self, source_of, Result};

pub struct Group {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
    group: GroupSettings,
}

#[async_trait(?Send)]
impl Repo for Group {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        match self.route(&ctx, &req, body).await {
            Ok(res) => res,
            Err(e) => e.to_response(),
        }
    }
}

impl Group {
    pub fn new(cfg: Arc<RepoConfig>, group: GroupSettings, env: FormatEnv) -> Group {
        Group { cfg, env, group }
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(PypiError::NotFound)?;
        let m = req.method();
        let read = wharf_format::reads(m);
        match endpoint {
            Endpoint::Upload if m == Method::POST => {
                source::authorize(ctx, Action::Write, "*")?;
                let w = self.group.writable.as_deref().ok_or_else(|| PypiError::ReadOnly(format!("group {} has no writable member", self.cfg.name)))?;
                let r = self.member(w).ok_or_else(|| PypiError::Upstream(format!("the writable member {w} is unavailable")))?;
                let member_ctx = RepoCtx { repo: r.config.clone(), principal: ctx.principal.in_member(&self.cfg, &r.config, "*"), ..ctx.clone() };
                Ok(r.repo.handle(member_ctx, req.clone(), body).await)
            }
            Endpoint::Index if read => {
                source::authorize(ctx, Action::Read, "*")?;
                let mut merged = BTreeMap::new();
                for r in self.members() {
                    if let Some(src) = source_of(&r) {
                        for (norm, display) in src.projects().await? {
                            merged.entry(norm).or_insert(display);
                        }
                    }
                }
                let projects: Vec<(String, String)> = merged.into_iter().collect();
                Ok(index::index_page(req, &base_url(ctx, &self.cfg.name), &projects))
            }
            Endpoint::Project(p) if read => {
                let normalized = normalize(&p);
                source::authorize(ctx, Action::Read, &normalized)?;
                let (_, files) = self.owner(&normalized).await?.ok_or(PypiError::NotFound)?;
                Ok(index::project_page(req, &base_url(ctx, &self.cfg.name), &normalized, &files))
            }
            Endpoint::File { project, filename } if read => {
                let normalized = normalize(&project);
                source::authorize(ctx, Action::Read, &normalized)?;
                // Only files of the page the group showed: a shadowed member's files stay out.
                let dist = filename.strip_suffix(".metadata").unwrap_or(&filename);
                let Some((owner, true)) = self.file_owner(&normalized, dist).await? else { return Err(PypiError::NotFound) };
                let src = source_of(&owner).ok_or(PypiError::NotFound)?;
                src.serve(&normalized, &filename, &Want::of(req)).await
            }
            // The member whose page the group showed answers for its files' provenance.
            Endpoint::Provenance { project, version, filename } if read => {
                let normalized = normalize(&project);
                source::authorize(ctx, Action::Read, &normalized)?;
                let Some((owner, true)) = self.file_owner(&normalized, &filename).await? else { return Err(PypiError::NotFound) };
                let src = source_of(&owner).ok_or(PypiError::NotFound)?;
                src.provenance(&normalized, &version, &filename).await
            }
            // The member that owns the project answers, under the group's URLs.
            Endpoint::Json { project, version } if read => {
                let normalized = normalize(&project);
                source::authorize(ctx, Action::Read, &normalized)?;
                let (owner, _) = self.owner(&normalized).await?.ok_or(PypiError::NotFound)?;
                let src = source_of(&owner).ok_or(PypiError::NotFound)?;
                crate::json_api::answer(src, &base_url(ctx, &self.cfg.name), &normalized, version.as_deref()).await
            }
            Endpoint::Upload => Err(PypiError::MethodNotAllowed),
            _ => Err(PypiError::MethodNotAllowed),
        }
    }

    fn member(&self, name: &str) -> Option<RepoRef> {
        self.env.repos.repo(name).filter(|r| r.config.online && r.config.format == self.cfg.format)
    }

    fn members(&self) -> Vec<RepoRef> {
        self.group.members.iter().filter_map(|m| self.member(m)).collect()
    }

    /// The first member that knows the project (the one whose page the group shows), and
    /// whether `filename` is one of its files.
    async fn file_owner(&self, normalized: &str, filename: &str) -> Result<Option<(RepoRef, bool)>> {
        first_answer(&self.cfg.name, self.members(), upstream_failed, |r| async move {
            match source_of(&r) {
                Some(src) => src.has_file(normalized, filename).await,
                None => Ok(None),
            }
        })
        .await
    }

    /// The first member that knows the project, with its files.
    async fn owner(&self, normalized: &str) -> Result<Option<(RepoRef, Vec<FileEntry>)>> {
        first_answer(&self.cfg.name, self.members(), upstream_failed, |r| async move {
            match source_of(&r) {
                Some(src) => src.files(normalized).await,
                None => Ok(None),
            }
        })
        .await
    }
}

fn upstream_failed(e: &PypiError) -> bool {
    matches!(e, PypiError::Upstream(_))
}
