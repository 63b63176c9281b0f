//! Names, URLs and permission checks as the client sees them, shared by hosted, proxy and group
//! repositories (a group answers with its own names whichever member serves the request).

use wharf_format::{Access, Action, Denied, Mount, RepoCtx};

use crate::error::DockerError;
use crate::model;

/// The image name as the client wrote it (what token scopes and tag lists use).
pub fn client_name(ctx: &RepoCtx, name: &str) -> String {
    match &ctx.mount {
        Mount::Own => name.to_string(),
        Mount::Segment { segment } => format!("{segment}/{name}"),
        Mount::Prefix { prefix } => format!("{}/{name}", prefix.rsplit('/').next().unwrap_or_default()),
    }
}

/// An absolute URL for `suffix` of image `name`, the way this request reached us.
pub fn url(ctx: &RepoCtx, name: &str, suffix: &str) -> String {
    let path = match &ctx.mount {
        Mount::Own => format!("/v2/{name}/{suffix}"),
        Mount::Segment { segment } => format!("/v2/{segment}/{name}/{suffix}"),
        Mount::Prefix { prefix } => format!("{prefix}/v2/{name}/{suffix}"),
    };
    format!("{}{}", ctx.origin, path)
}

/// Where a repository's catalog pages link to: its own catalog as it was asked for.
pub fn catalog_path(ctx: &RepoCtx) -> String {
    match &ctx.mount {
        Mount::Prefix { prefix } => format!("{prefix}/v2/_catalog"),
        Mount::Segment { segment } => format!("/v2/{segment}/_catalog"),
        Mount::Own => "/v2/_catalog".to_string(),
    }
}

pub fn check_name(ctx: &RepoCtx, name: &str) -> Result<(), DockerError> {
    if !model::valid_name(name) || client_name(ctx, name).len() > model::MAX_NAME_LEN {
        return Err(DockerError::NameInvalid(name.chars().take(300).collect()));
    }
    Ok(())
}

pub fn challenge(force_basic_auth: bool, ctx: &RepoCtx, scope: Option<(&str, Action)>) -> String {
    let scopes: Vec<String> = scope.map(|(name, action)| repository_scope(&client_name(ctx, name), action)).into_iter().collect();
    challenge_for(force_basic_auth, ctx, &scopes)
}

/// The challenge for a cross-repository mount (`POST .../blobs/uploads/?mount=..&from=..`): push
/// on the target and pull on the source, in one `scope` parameter separated by a space as
/// Distribution sends it, so that a token client fetches one token it can mount with instead
/// of uploading the blob again. `from` is the source as the client named it.
pub fn mount_challenge(force_basic_auth: bool, ctx: &RepoCtx, name: &str, from: &str) -> String {
    let scopes = [repository_scope(&client_name(ctx, name), Action::Write), repository_scope(from, Action::Read)];
    challenge_for(force_basic_auth, ctx, &scopes)
}

fn repository_scope(client_name: &str, action: Action) -> String {
    let actions = match action {
        Action::Read => "pull",
        Action::Write => "pull,push",
        Action::Delete => "delete",
    };
    format!("repository:{client_name}:{actions}")
}

fn challenge_for(force_basic_auth: bool, ctx: &RepoCtx, scopes: &[String]) -> String {
    if force_basic_auth {
        return r#"Basic realm="wharf""#.to_string();
    }
    let mut c = format!(r#"Bearer realm="{}",service="{}""#, ctx.token_realm, ctx.token_service);
    if !scopes.is_empty() {
        c.push_str(&format!(r#",scope="{}""#, scopes.join(" ")));
    }
    c
}

/// Would a fresh token let the caller do `action` on `name` in `ctx`'s repository, when the
/// bearer token it holds does not? Only a bearer token can be too narrow for what its holder
/// may do; the token endpoint grants what the holder may, so asking for a new token helps
/// exactly then (and a challenge otherwise would send the client round in circles).
pub fn token_would_allow(ctx: &RepoCtx, action: Action, name: &str) -> bool {
    match &ctx.principal.access {
        Access::Bearer { holder, .. } => holder.allows(&ctx.repo, action, name),
        _ => false,
    }
}

pub fn authorize(force_basic_auth: bool, ctx: &RepoCtx, action: Action, name: &str) -> Result<(), DockerError> {
    match ctx.check(action, name) {
        Ok(()) => Ok(()),
        Err(Denied::Unauthenticated) => Err(DockerError::Unauthorized { challenge: challenge(force_basic_auth, ctx, Some((name, action))) }),
        Err(Denied::Forbidden) => Err(DockerError::Denied(format!("{action:?} access to {}", client_name(ctx, name)).to_lowercase())),
    }
}
