//! A group repository: one address over several Docker repositories. Pulls ask the members in
//! order and serve the first hit; tag lists and the catalog are merged; pushes go to the
//! writable member (Nexus keeps that for its paid edition).
//!
//! The group checks the caller's rights on itself, then asks each member as a trusted caller,
//! keeping its own mount so that names and URLs in the answers are the group's.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use async_trait::async_trait;
use serde_json::{json, Value};
use wharf_format::{Action, FormatEnv, Repo, RepoConfig, RepoCtx};

use crate::access;
use crate::config::{DockerSettings, GroupSettings};
use crate::error::DockerError;
use crate::routes::{self, Endpoint};

type Result<T, E = DockerError> = std::result::Result<T, E>;

/// The most tags or names a merged list holds.
const MAX_MERGED: usize = 10_000;

pub struct Group {
    cfg: Arc<RepoConfig>,
    settings: DockerSettings,
    group: GroupSettings,
    env: FormatEnv,
}

#[async_trait(?Send)]
impl Repo for Group {
    async fn handle(&self, ctx: RepoCtx, req: HttpRequest, body: web::Payload) -> HttpResponse {
        crate::error::respond(self.route(&ctx, &req, body).await)
    }
}

async fn no_body(req: &HttpRequest) -> web::Payload {
    web::Payload::from_request(req, &mut actix_web::dev::Payload::None).await.expect("an empty payload is always available")
}

impl Group {
    pub fn new(cfg: Arc<RepoConfig>, settings: DockerSettings, group: GroupSettings, env: FormatEnv) -> Group {
        Group { cfg, settings, group, env }
    }

    async fn route(&self, ctx: &RepoCtx, req: &HttpRequest, body: web::Payload) -> Result<HttpResponse> {
        let endpoint = routes::parse(&ctx.path).ok_or(DockerError::NameUnknown)?;
        let m = req.method().clone();
        let read = wharf_format::reads(&m);
        match endpoint {
            Endpoint::Base => {
                if ctx.principal.is_anonymous() && ctx.check(Action::Read, "*").is_err() {
                    return Err(DockerError::Unauthorized { challenge: access::challenge(self.settings.force_basic_auth, ctx, None) });
                }
                Ok(HttpResponse::Ok().content_type("application/json").body("{}"))
            }
            Endpoint::Catalog if read => self.catalog(ctx, req).await,
            Endpoint::Tags { name } if read => {
                access::check_name(ctx, &name)?;
                access::authorize(self.settings.force_basic_auth, ctx, Action::Read, &name)?;
                self.tags(ctx, req, &name).await
            }
            Endpoint::Referrers { name, .. } if read => {
                access::check_name(ctx, &name)?;
                access::authorize(self.settings.force_basic_auth, ctx, Action::Read, &name)?;
                self.referrers(ctx, req).await
            }
            Endpoint::Manifest { name, .. } | Endpoint::Blob { name, .. } if read => {
                access::check_name(ctx, &name)?;
                access::authorize(self.settings.force_basic_auth, ctx, Action::Read, &name)?;
                self.first_hit(ctx, req).await
            }
            Endpoint::Manifest { name, .. } | Endpoint::Blob { name, .. } | Endpoint::StartUpload { name } | Endpoint::Upload { name, .. } => {
                access::check_name(ctx, &name)?;
                let action = if m == Method::DELETE { Action::Delete } else { Action::Write };
                // Upload status (GET) is part of pushing.
                access::authorize(self.settings.force_basic_auth, ctx, action, &name)?;
                let Some(w) = &self.group.writable else {
                    return Err(DockerError::Unsupported(format!("group {} has no writable member", self.cfg.name)));
                };
                // Members trust the group's caller completely, so a cross-repository mount (which
                // reads another repository) is not passed on: the spec's fallback is an upload.
                let query: Vec<(String, String)> = web::Query::<Vec<(String, String)>>::from_query(&ctx.query)
                    .map(|q| q.into_inner())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k != "mount" && k != "from")
                    .collect();
                let query = query.iter().map(|(k, v)| format!("{k}={}", url_encode(v))).collect::<Vec<_>>().join("&");
                self.ask(w, ctx, &query, req, body).await.ok_or_else(|| DockerError::Unsupported(format!("the writable member {w} is unavailable")))
            }
            _ => Err(DockerError::Unsupported(format!("method {m} is not supported here"))),
        }
    }

    /// One member's answer, as a trusted caller, or `None` if the member is gone or offline.
    async fn ask(&self, member: &str, ctx: &RepoCtx, query: &str, req: &HttpRequest, body: web::Payload) -> Option<HttpResponse> {
        let r = self.env.repos.repo(member)?;
        if !r.config.online || r.config.format != self.cfg.format {
            return None;
        }
        // A loop saved before loops were refused: asked, the member would ask this group again,
        // without end.
        if r.config.kind == wharf_format::Kind::Group
            && GroupSettings::parse(r.config.attributes.get("group")).is_ok_and(|g| g.reaches(&self.cfg.name, &*self.env.repos).is_some())
        {
            tracing::warn!(group = %self.cfg.name, member, "member skipped: it contains this group again");
            return None;
        }
        let member_ctx = RepoCtx { repo: r.config.clone(), query: query.to_string(), principal: ctx.principal.trusted(), ..ctx.clone() };
        Some(r.repo.handle(member_ctx, req.clone(), body).await)
    }

    /// The first member that has it; else the first member's answer that says more than "not
    /// here" (a 429 of a rate-limited proxy, a 502 of an unreachable upstream), else a 404. A
    /// member's failure no longer hides what a later member holds.
    async fn first_hit(&self, ctx: &RepoCtx, req: &HttpRequest) -> Result<HttpResponse> {
        let mut failed = None;
        let mut missing = None;
        for m in &self.group.members {
            let Some(res) = self.ask(m, ctx, &ctx.query, req, no_body(req).await).await else { continue };
            if res.status().is_success() || res.status().is_redirection() {
                return Ok(res);
            }
            if res.status() == StatusCode::NOT_FOUND {
                missing.get_or_insert(res);
            } else {
                failed.get_or_insert(res);
            }
        }
        failed.or(missing).ok_or(DockerError::NameUnknown)
    }

    /// The referrers every member knows, in one index: a signature pushed to the second member
    /// of a group is found through it (the first member's empty index answered alone before).
    async fn referrers(&self, ctx: &RepoCtx, req: &HttpRequest) -> Result<HttpResponse> {
        let mut manifests: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut filtered = true;
        let mut answered = false;
        let mut failed = None;
        for m in &self.group.members {
            let Some(res) = self.ask(m, ctx, &ctx.query, req, no_body(req).await).await else { continue };
            if res.status() != StatusCode::OK {
                if res.status() != StatusCode::NOT_FOUND {
                    failed.get_or_insert(res);
                }
                continue;
            }
            filtered &= res.headers().contains_key("OCI-Filters-Applied");
            let Some(index) = Self::json_of(res).await else { continue };
            answered = true;
            for d in index["manifests"].as_array().into_iter().flatten() {
                if d["digest"].as_str().is_none_or(|digest| seen.insert(digest.to_string())) {
                    manifests.push(d.clone());
                }
            }
        }
        if !answered {
            return failed.ok_or(DockerError::NameUnknown);
        }
        let mut res = HttpResponse::Ok();
        res.content_type("application/vnd.oci.image.index.v1+json");
        if filtered && ctx.query.contains("artifactType=") {
            res.insert_header(("OCI-Filters-Applied", "artifactType"));
        }
        Ok(res.json(json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests })))
    }

    async fn json_of(res: HttpResponse) -> Option<Value> {
        if res.status() != StatusCode::OK {
            return None;
        }
        let bytes = actix_web::body::to_bytes(res.into_body()).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    async fn tags(&self, ctx: &RepoCtx, req: &HttpRequest, name: &str) -> Result<HttpResponse> {
        let mut tags = BTreeSet::new();
        let mut found = false;
        for m in &self.group.members {
            let Some(res) = self.ask(m, ctx, "", req, no_body(req).await).await else { continue };
            if let Some(v) = Self::json_of(res).await {
                found = true;
                tags.extend(v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)));
            }
        }
        if !found {
            return Err(DockerError::NameUnknown);
        }
        let (page, more) = paginate(tags, &ctx.query)?;
        let mut res = HttpResponse::Ok();
        if let (true, Some(last)) = (more, page.last()) {
            let own = access::url(ctx, name, "tags/list");
            let own = own.strip_prefix(&ctx.origin).unwrap_or(&own).to_string();
            res.insert_header(("Link", format!(r#"<{own}?n={}&last={last}>; rel="next""#, page.len())));
        }
        Ok(res.json(json!({ "name": access::client_name(ctx, name), "tags": page })))
    }

    async fn catalog(&self, ctx: &RepoCtx, req: &HttpRequest) -> Result<HttpResponse> {
        if ctx.principal.is_anonymous() && ctx.check(Action::Read, "*").is_err() {
            return Err(DockerError::Unauthorized { challenge: access::challenge(self.settings.force_basic_auth, ctx, None) });
        }
        let mut names = BTreeSet::new();
        for m in &self.group.members {
            let Some(res) = self.ask(m, ctx, "", req, no_body(req).await).await else { continue };
            if let Some(v) = Self::json_of(res).await {
                names.extend(v["repositories"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)));
            }
        }
        let listable = ctx.principal.access.listable(&ctx.repo);
        names.retain(|n| listable.includes(n));
        let (page, more) = paginate(names, &ctx.query)?;
        let mut res = HttpResponse::Ok();
        if let (true, Some(last)) = (more, page.last()) {
            res.insert_header(("Link", format!(r#"<{}?n={}&last={last}>; rel="next""#, access::catalog_path(ctx), page.len())));
        }
        Ok(res.json(json!({ "repositories": page })))
    }
}

fn url_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Applies `n` and `last` to a sorted set; also says whether more remain.
fn paginate(items: BTreeSet<String>, query: &str) -> Result<(Vec<String>, bool)> {
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(query).map(|q| q.into_inner()).unwrap_or_default();
    let n = crate::hosted::requested_page_size(&q)?.map_or(MAX_MERGED, |n| n.min(MAX_MERGED));
    let after: Vec<String> = match q.get("last") {
        Some(l) => items.into_iter().filter(|t| t > l).collect(),
        None => items.into_iter().collect(),
    };
    let more = after.len() > n;
    Ok((after.into_iter().take(n).collect(), more))
}
