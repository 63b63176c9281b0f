//! `npm access` and `npm owner ls`, answered from wharf's own model: rights are per repository
//! (roles holding `nx-repository-view-npm-<repository>-read/add/edit/delete`), the same for every
//! package in it, and a package is public when the repository is readable without credentials.
//! What npm can change per package (teams, visibility, two-factor) wharf does not model: those
//! requests are refused with an `{"error"}` that says where the setting lives.
//!
//! - `GET /-/org/<scope>/package`: the caller's packages in `@<scope>/`, 404 when there are none
//!   (npm then asks `/-/user/<scope>/package`, as it does of the public registry for a user).
//! - `GET /-/user/<user>/package`: every package the caller may read, for the caller only.
//! - `GET /-/package/<pkg>/collaborators`: the maintainers (`npm owner ls`' list) and the caller.
//! - `GET /-/package/<pkg>/visibility`: `{"public"}`.
//! - `POST /-/package/<pkg>/access`, `/-/team/...`: refused (400), unless the status asked for is
//!   already the package's.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use wharf_format::{same_user, Action, RepoCtx};

use crate::error::NpmError;
use crate::routes::Endpoint;
use crate::source::{authorize, Result, Source};

pub fn is_access(e: &Endpoint) -> bool {
    matches!(
        e,
        Endpoint::OrgPackages(_)
            | Endpoint::UserPackages(_)
            | Endpoint::Team
            | Endpoint::Collaborators(_)
            | Endpoint::Visibility(_)
            | Endpoint::PackageAccess(_)
    )
}

const NO_TEAMS: &str = "wharf has no npm teams: who may read and publish is decided per repository by wharf roles \
     (privileges nx-repository-view-npm-<repository>-read and -add); ask a wharf administrator";

pub async fn handle(src: &dyn Source, ctx: &RepoCtx, req: &HttpRequest, e: Endpoint, body: web::Payload) -> Result<HttpResponse> {
    let m = req.method();
    match e {
        Endpoint::OrgPackages(scope) if wharf_format::reads(m) => {
            caller(ctx)?;
            let prefix = format!("@{scope}/");
            let list = packages(src, ctx, |n| n.starts_with(&prefix)).await?;
            if list.is_empty() {
                return Err(NpmError::NotFound);
            }
            Ok(HttpResponse::Ok().json(list))
        }
        Endpoint::UserPackages(user) if wharf_format::reads(m) => {
            if !same_user(caller(ctx)?, &user) {
                return Err(NpmError::Forbidden(format!(
                    "wharf lists the packages of the signed-in user only ({}): rights come from roles, per repository",
                    caller(ctx)?
                )));
            }
            Ok(HttpResponse::Ok().json(packages(src, ctx, |_| true).await?))
        }
        Endpoint::Collaborators(name) if wharf_format::reads(m) => {
            authorize(ctx, Action::Read, &name)?;
            let (doc, _) = src.doc(&name).await?.ok_or(NpmError::NotFound)?;
            let mut out = Map::new();
            for m in doc.member("maintainers").as_ref().and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = m.get("name").and_then(Value::as_str) {
                    out.insert(n.to_string(), json!("write"));
                }
            }
            // The caller's entry is what wharf lets them do, whatever the list says.
            if let Some(me) = ctx.principal.user.as_deref() {
                out.retain(|k, _| !same_user(k, me));
                out.insert(me.to_string(), json!(right(src, ctx, &name)));
            }
            Ok(HttpResponse::Ok().json(Value::Object(out)))
        }
        Endpoint::Visibility(name) if wharf_format::reads(m) => {
            authorize(ctx, Action::Read, &name)?;
            src.doc(&name).await?.ok_or(NpmError::NotFound)?;
            Ok(HttpResponse::Ok().json(json!({ "public": ctx.repo.anonymous_read })))
        }
        Endpoint::PackageAccess(name) if m == Method::POST => {
            authorize(ctx, Action::Write, &name)?;
            let asked = crate::user::small_json(body, 4096).await?;
            if let Some(access) = asked.get("access").and_then(Value::as_str) {
                let public = ctx.repo.anonymous_read;
                if (access == "public") == public && matches!(access, "public" | "restricted") {
                    return Ok(HttpResponse::Ok().json(json!({"ok": true})));
                }
                return Err(NpmError::BadRequest(format!(
                    "wharf does not set visibility per package: every package in {} is {} (the repository's anonymous access decides; ask a wharf administrator)",
                    ctx.repo.name,
                    if public { "public" } else { "restricted" }
                )));
            }
            if asked.get("publish_requires_tfa").is_some() {
                return Err(NpmError::BadRequest("wharf has no per-package two-factor setting: publishing needs a wharf password or API token".into()));
            }
            Err(NpmError::BadRequest("expected {\"access\": \"public\" | \"restricted\"}".into()))
        }
        Endpoint::Team => {
            caller(ctx)?;
            Err(NpmError::BadRequest(NO_TEAMS.into()))
        }
        _ => Err(NpmError::MethodNotAllowed),
    }
}

fn caller(ctx: &RepoCtx) -> Result<&str> {
    ctx.principal.user.as_deref().ok_or(NpmError::Unauthorized)
}

/// `write` when the caller may publish `name` here, else `read`.
fn right(src: &dyn Source, ctx: &RepoCtx, name: &str) -> &'static str {
    if src.accepts_publishes() && ctx.check(Action::Write, name).is_ok() {
        "write"
    } else {
        "read"
    }
}

/// The packages the caller may read, with their right, in name order.
async fn packages(src: &dyn Source, ctx: &RepoCtx, keep: impl Fn(&str) -> bool) -> Result<Map<String, Value>> {
    let mut names = src.names().await?;
    names.sort();
    let mut out = Map::new();
    for n in names.into_iter().filter(|n| keep(n) && ctx.check(Action::Read, n).is_ok()) {
        let r = right(src, ctx, &n);
        out.insert(n, json!(r));
    }
    Ok(out)
}
