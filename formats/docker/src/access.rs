//! Names, URLs and permission checks as the client sees them, shared by hosted, proxy and group
//! repositories (a group answers with its own names whichever member serves the request).

use wharf_format::{Action, Denied, Mount, RepoCtx};

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

pub fn check_name(ctx: &RepoCtx, name: &str) -> Result<(), DockerError> {
    if !model::valid_name(name) || client_name(ctx, name).len() > model::MAX_NAME_LEN {
        return Err(DockerError::NameInvalid(name.chars().take(300).collect()));
    }
    Ok(())
}

pub fn challenge(force_basic_auth: bool, ctx: &RepoCtx, scope: Option<(&str, Action)>) -> String {
    if force_basic_auth {
        return r#"Basic realm="wharf""#.to_string();
    }
    let mut c = format!(r#"Bearer realm="{}",service="{}""#, ctx.token_realm, ctx.token_service);
    if let Some((name, action)) = scope {
        let actions = match action {
            Action::Read => "pull",
            Action::Write => "pull,push",
            Action::Delete => "delete",
        };
        c.push_str(&format!(r#",scope="repository:{}:{}""#, client_name(ctx, name), actions));
    }
    c
}

pub fn authorize(force_basic_auth: bool, ctx: &RepoCtx, action: Action, name: &str) -> Result<(), DockerError> {
    match ctx.check(action, name) {
        Ok(()) => Ok(()),
        Err(Denied::Unauthenticated) => Err(DockerError::Unauthorized { challenge: challenge(force_basic_auth, ctx, Some((name, action))) }),
        Err(Denied::Forbidden) => Err(DockerError::Denied(format!("{action:?} access to {}", client_name(ctx, name)).to_lowercase())),
    }
}
