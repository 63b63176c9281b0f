//! A group npm registry: one address over hosted and proxy registries.
//!
//! A package is served whole from the first member, in order, that has it: packuments are not
//! merged version by version. With the hosted registry listed before a proxy of the public one,
//! a private package shadows any public package of the same name, so a stranger who publishes
//! `our-internal-lib@99.0.0` publicly cannot get it installed (dependency confusion). Publishing
//! and the other writes go to the writable member; `npm audit` goes to the first proxy member.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use wharf_format::{first_answer, Action, FormatEnv, GroupSettings, Kind, Repo, RepoConfig, RepoCtx, RepoRef, Want};

use crate::error::NpmError;
use crate::packument::{self, Packument};
use crate::routes::{self, Endpoint};
use crate::source::{self, authorize, base_url, source_of, Result, Source};

pub struct Group {
    cfg: Arc<RepoConfig>,
    env: FormatEnv,
    group: GroupSettings,
    cache: packument::RenderCache,
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
        Group { cfg, env, group, cache: Default::default() }
    }

    fn member(&self, name: &str) -> Option<RepoRef> {
        self.env.repos.repo(name).filter(|r| r.config.online && r.config.format == self.cfg.format)
    }

    fn members(&self) -> Vec<RepoRef> {
        self.group.members.iter().filter_map(|m| self.member(m)).collect()
    }

    /// Hands the request to `member`, the caller holding there the rights it holds on the group
    /// for `name` (the member's own checks decide what the request is: an update that drops
    /// versions is an unpublish).
    async fn forward(&self, member: &RepoRef, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload, name: &str) -> HttpResponse {
        let member_ctx = RepoCtx { repo: member.config.clone(), principal: ctx.principal.in_member(&self.cfg, &member.config, name), ..ctx.clone() };
        member.repo.handle(member_ctx, req.clone(), body).await
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(NpmError::NotFound)?;
        let m = req.method().clone();
        let read = wharf_format::reads(&m);
        if source::is_common(&endpoint) {
            return source::common(&self.env, ctx, req, endpoint, body).await;
        }
        if crate::access::is_access(&endpoint) {
            return crate::access::handle(self, ctx, req, endpoint, body).await;
        }
        match endpoint {
            Endpoint::Package(name) if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, state) = self.doc(&name).await?.ok_or(NpmError::NotFound)?;
                let state = wharf_format::Digest::of(state.as_bytes()).hex().to_string();
                packument::respond(req, &self.cache, &state, &base_url(ctx), doc.len() as u64, || async { Ok(doc) }).await
            }
            Endpoint::Version { name, version } if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, _) = self.doc(&name).await?.ok_or(NpmError::NotFound)?;
                source::version_response(&doc, &version, &base_url(ctx))
            }
            Endpoint::DistTags(name) if read => {
                authorize(ctx, Action::Read, &name)?;
                let (doc, _) = self.doc(&name).await?.ok_or(NpmError::NotFound)?;
                Ok(source::dist_tags_response(&doc))
            }
            Endpoint::Tarball { name, file } if read => {
                authorize(ctx, Action::Read, &name)?;
                self.serve_tarball(&name, &file, &Want::of(req)).await
            }
            Endpoint::Attestations { name, version } if read => {
                authorize(ctx, Action::Read, &name)?;
                let (owner, _, _) = self.owner(&name).await?.ok_or(NpmError::NotFound)?;
                source_of(&owner).ok_or(NpmError::NotFound)?.serve_attestations(&name, &version).await
            }
            Endpoint::Search if read => {
                authorize(ctx, Action::Read, "*")?;
                source::search_response(self, ctx).await
            }
            Endpoint::Audit(_) if m == Method::POST => {
                authorize(ctx, Action::Read, "*")?;
                // The first proxy member (online: members() leaves out the others) asks its upstream.
                match self.members().into_iter().find(|r| r.config.kind == Kind::Proxy) {
                    Some(p) => Ok(self.forward(&p, ctx, req, body, "*").await),
                    None => Err(source::no_audit_source(ctx)),
                }
            }
            Endpoint::Package(name) | Endpoint::PackageRev { name, .. } | Endpoint::TarballRev { name, .. } | Endpoint::DistTag { name, .. } => {
                // Unpublishing deletes; publishing, deprecating and tagging write.
                let unpublish = m == Method::DELETE && !ctx.path.contains("/dist-tags/");
                authorize(ctx, if unpublish { Action::Delete } else { Action::Write }, &name)?;
                let w = self.group.writable.as_deref().ok_or_else(|| NpmError::Forbidden(format!("group {} has no writable member", self.cfg.name)))?;
                let member = self.member(w).ok_or_else(|| NpmError::Upstream(format!("the writable member {w} is unavailable")))?;
                Ok(self.forward(&member, ctx, req, body, &name).await)
            }
            _ => Err(NpmError::MethodNotAllowed),
        }
    }

    /// The first member that has the package (the one whose document the group shows), and
    /// whether that document lists tarball `file`.
    async fn tarball_owner(&self, name: &str, file: &str) -> Result<Option<(RepoRef, bool)>> {
        first_answer(&self.cfg.name, self.members(), upstream_failed, |r| async move {
            match source_of(&r) {
                Some(src) => src.has_tarball(name, file).await,
                None => Ok(None),
            }
        })
        .await
    }

    /// The first member that has the package, with its document.
    async fn owner(&self, name: &str) -> Result<Option<(RepoRef, Packument, String)>> {
        let found = first_answer(&self.cfg.name, self.members(), upstream_failed, |r| async move {
            match source_of(&r) {
                Some(src) => src.doc(name).await,
                None => Ok(None),
            }
        })
        .await?;
        Ok(found.map(|(r, (doc, etag))| (r, doc, etag)))
    }
}

fn upstream_failed(e: &NpmError) -> bool {
    matches!(e, NpmError::Upstream(_))
}

#[async_trait(?Send)]
impl Source for Group {
    async fn doc(&self, name: &str) -> Result<Option<(Packument, String)>> {
        Ok(self.owner(name).await?.map(|(r, doc, etag)| (doc, format!("{}{etag}", r.config.id))))
    }

    async fn names(&self) -> Result<Vec<String>> {
        let mut all = BTreeSet::new();
        for r in self.members() {
            if let Some(src) = source_of(&r) {
                all.extend(src.names().await?);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// The members' packument rows, the first member's for a name several members have (the
    /// one the group serves).
    async fn packuments(&self, contains: Vec<String>) -> Result<Vec<wharf_format::Asset>> {
        let mut all = std::collections::BTreeMap::new();
        for r in self.members() {
            if let Some(src) = source_of(&r) {
                for a in src.packuments(contains.clone()).await? {
                    if let Some(name) = a.component.clone() {
                        all.entry(name).or_insert(a);
                    }
                }
            }
        }
        Ok(all.into_values().collect())
    }

    fn accepts_publishes(&self) -> bool {
        self.group.writable.is_some()
    }

    async fn serve_tarball(&self, name: &str, file: &str, want: &Want) -> Result<HttpResponse> {
        // Only tarballs of the document the group shows: a shadowed member's stay out.
        match self.tarball_owner(name, file).await? {
            Some((owner, true)) => source_of(&owner).ok_or(NpmError::NotFound)?.serve_tarball(name, file, want).await,
            _ => Err(NpmError::NotFound),
        }
    }

    async fn has_tarball(&self, name: &str, file: &str) -> Result<Option<bool>> {
        Ok(self.tarball_owner(name, file).await?.map(|(_, listed)| listed))
    }
}
