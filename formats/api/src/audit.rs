//! The audit log as formats see it: they report what changed (a push, an upload, a publish, a
//! delete); the server adds who, when and from where, and keeps it append-only. Never put a
//! secret in an event.

use crate::ctx::RepoCtx;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// The user, `None` for anonymous callers.
    pub actor: Option<String>,
    /// The client's address (after trusted `X-Forwarded-For` handling).
    pub address: Option<String>,
    /// Dotted and stable: `docker.push`, `pypi.upload`, `npm.publish`, `login.failure`,
    /// `repository.create`...
    pub action: String,
    pub repository: Option<String>,
    /// What inside the repository: an image and tag, a file, a package and version.
    pub object: Option<String>,
    /// More, as JSON.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An event about `object` in the repository `ctx` names, by its caller.
    pub fn of(ctx: &RepoCtx, action: &str, object: impl Into<String>) -> AuditEvent {
        AuditEvent {
            actor: ctx.principal.user.clone(),
            address: Some(ctx.client.clone()),
            action: action.to_string(),
            repository: Some(ctx.repo.name.clone()),
            object: Some(object.into()),
            detail: serde_json::Value::Null,
        }
    }
}

pub trait Audit: Send + Sync {
    /// Records an event; returns at once (the write happens in the background).
    fn record(&self, event: AuditEvent);
}
