//! The admin REST API under `/service/rest/v1`, in Nexus's shapes so that scripts written
//! for Nexus port over.

pub mod assets;
pub mod audit;
pub mod blobstores;
pub mod blobstores_s3;
pub mod cleanup;
pub mod components;
pub mod health_check;
pub mod ldap;
pub mod privileges;
pub mod read_only;
pub mod realms;
pub mod repositories;
pub mod search;
pub mod security;
pub mod session;
pub mod status;
pub mod tasks;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use wharf_format::{Access, ConfigError};

use crate::db::DbError;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("administrator rights required")]
    Forbidden,
    /// The caller is known, but their credential may not do this.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// The caller may not do this here, or the target refuses it; the message says which.
    #[error("{0}")]
    Refused(String),
    /// A required query parameter is missing (Nexus answers 422 for these).
    #[error("parameter '{0}' is required")]
    ParameterRequired(&'static str),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NoSpace(String),
    #[error("{0}")]
    NotFound(String),
    /// A named thing that is not there (`kind` as in `repository`, `blob store`): clients
    /// word it with the kind and name.
    #[error("{kind} {name} not found")]
    Missing { kind: &'static str, name: String },
    /// The request is valid but the target's state does not allow it now (a task already running).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The server is in read-only mode (the message says since when and why).
    #[error("{0}")]
    ReadOnly(String),
    /// The caller could not be identified: the database did not answer (see `db::failures`).
    #[error("{}", crate::http::mount::NO_ANSWER)]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error>),
}

impl From<wharf_format::IdentityError> for AdminError {
    fn from(e: wharf_format::IdentityError) -> Self {
        match e {
            wharf_format::IdentityError::NotAllowed(why) => AdminError::NotAllowed(why),
            wharf_format::IdentityError::Unavailable(_) => AdminError::Unavailable,
            other => AdminError::Internal(Box::new(other)),
        }
    }
}

/// A metadata write refused because a freeze came between the admin gate and the commit is
/// read-only mode's answer, not an internal error.
impl From<wharf_format::MetaError> for AdminError {
    fn from(e: wharf_format::MetaError) -> Self {
        match e {
            wharf_format::MetaError::ReadOnly(m) => AdminError::ReadOnly(m),
            e @ wharf_format::MetaError::NoSpace => AdminError::NoSpace(e.to_string()),
            other => AdminError::Internal(Box::new(other)),
        }
    }
}

impl From<DbError> for AdminError {
    fn from(e: DbError) -> Self {
        if e.is_disk_full() {
            return AdminError::NoSpace("the metadata database is out of space".into());
        }
        AdminError::Internal(Box::new(e))
    }
}

impl AdminError {
    pub fn missing(kind: &'static str, name: &str) -> AdminError {
        AdminError::Missing { kind, name: name.to_string() }
    }

    /// The kind of error, for clients that word it in their own language (the console).
    fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthenticated => "unauthenticated",
            AdminError::Forbidden | AdminError::NotAllowed(_) | AdminError::Refused(_) => "forbidden",
            AdminError::ParameterRequired(_) => "required",
            AdminError::TooLarge(_) => "too_large",
            AdminError::NoSpace(_) => "no_space",
            AdminError::NotFound(_) | AdminError::Missing { .. } => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::Invalid(e) => e.code,
            AdminError::ReadOnly(_) => "read_only",
            AdminError::Unavailable => "unavailable",
            AdminError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden | AdminError::NotAllowed(_) | AdminError::Refused(_) => StatusCode::FORBIDDEN,
            AdminError::ParameterRequired(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            AdminError::NotFound(_) | AdminError::Missing { .. } => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            // Nexus's answer to a write while frozen.
            AdminError::ReadOnly(_) | AdminError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            AdminError::Unauthenticated => {
                res.insert_header(("WWW-Authenticate", r#"Basic realm="wharf""#));
                res.json(json!({"message": self.to_string(), "code": self.code()}))
            }
            // Nexus's validation error shape: a list of {id, message}; wharf adds the code.
            AdminError::Invalid(e) => res.json(json!([{ "id": format!("PARAMETER {}", e.field), "message": e.to_string(), "code": e.code }])),
            AdminError::Internal(source) => {
                tracing::error!(error = %source, "admin request failed");
                res.json(json!({"message": "internal error", "code": self.code()}))
            }
            AdminError::Missing { kind, name } => res.json(json!({"message": self.to_string(), "code": self.code(), "kind": kind, "name": name})),
            AdminError::Unavailable => {
                res.insert_header(wharf_format::retry_after());
                res.json(json!({"message": self.to_string(), "code": self.code()}))
            }
            _ => res.json(json!({"message": self.to_string(), "code": self.code()})),
        }
    }
}

/// Whether `access` lets its holder read (and browse) the repository `name`.
pub fn may_read(state: &AppState, access: &Access, name: &str) -> bool {
    match access {
        Access::All => true,
        Access::Privileges(privs) => state.registry.get(name).is_some_and(|r| privs.iter().any(|x| x.allows(&r.config, wharf_format::Action::Read))),
        _ => false,
    }
}

/// The signed-in user, when they may read the repository `name`. One they may not read is
/// "not found" to them, as it is absent from their list of repositories.
pub async fn require_reader(state: &AppState, req: &HttpRequest, name: &str) -> Result<String, AdminError> {
    reader(state, req, name).await?.user.ok_or(AdminError::Unauthenticated)
}

/// The caller, a signed-in user who may read repository `name`; a repository the caller may
/// not read is "not found", as one that does not exist.
pub async fn reader(state: &AppState, req: &HttpRequest, name: &str) -> Result<wharf_format::Principal, AdminError> {
    let p = caller(state, req).await?;
    if p.user.is_none() {
        return Err(AdminError::Unauthenticated);
    }
    if may_read(state, &p.access, name) {
        Ok(p)
    } else {
        Err(AdminError::missing("repository", name))
    }
}

/// The caller of `req` (anonymous, or rejected, if so), unless the database could not say who
/// it is.
pub async fn caller(state: &AppState, req: &HttpRequest) -> Result<wharf_format::Principal, AdminError> {
    state.auth.principal_unless_silent(req).await.ok_or(AdminError::Unavailable)
}

/// A password check's principal, unless the database did not answer it (`None` then would
/// say "wrong password"): what [`crate::db::failures::noting`] gave.
pub fn unless_silent(checked: (Option<wharf_format::Principal>, bool)) -> Result<Option<wharf_format::Principal>, AdminError> {
    match checked {
        (None, true) => Err(AdminError::Unavailable),
        (p, _) => Ok(p),
    }
}

pub async fn require_admin(state: &AppState, req: &HttpRequest) -> Result<String, AdminError> {
    let p = caller(state, req).await?;
    match (&p.access, p.user) {
        (Access::All, Some(user)) => Ok(user),
        (_, None) => Err(AdminError::Unauthenticated),
        _ => Err(AdminError::Forbidden),
    }
}

/// Records an administrator's change in the audit log (names and ids only: never a secret).
pub fn record(state: &AppState, req: &HttpRequest, actor: &str, action: &str, object: &str, repository: Option<&str>) {
    record_because(state, req, actor, action, object, repository, serde_json::Value::Null);
}

/// [`record`] with a detail: for a change that another one carried along, what and why.
pub fn record_because(state: &AppState, req: &HttpRequest, actor: &str, action: &str, object: &str, repository: Option<&str>, detail: serde_json::Value) {
    use wharf_format::Audit;
    state.audit.record(wharf_format::AuditEvent {
        actor: Some(actor.to_string()),
        address: Some(crate::http::mount::client(req)),
        action: action.to_string(),
        repository: repository.map(str::to_string),
        object: Some(object.to_string()),
        detail,
    });
}

async fn no_challenge_for_console(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let console = req.headers().get("X-Requested-With").is_some_and(|v| v == "XMLHttpRequest");
    let mut res = next.call(req).await?;
    if console {
        res.headers_mut().remove(actix_web::http::header::WWW_AUTHENTICATE);
    }
    Ok(res)
}

/// Parses a JSON body ourselves so that a malformed one gets the same 400 shape as a bad field.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::Invalid(ConfigError::new("body", format!("not valid JSON: {e}"))))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/service/rest")
            // The console's requests say so; a 401 to them carries no Basic challenge, which
            // would make the browser pop up its own login dialog.
            .wrap(actix_web::middleware::from_fn(read_only::gate))
            .wrap(actix_web::middleware::from_fn(no_challenge_for_console))
            .route("/swagger.json", crate::http::read().to(status::openapi))
            .route("/v1/status", crate::http::read().to(status::status))
            .route("/v1/status/writable", crate::http::read().to(status::writable))
            .route("/v1/status/check", crate::http::read().to(status::check))
            .route("/v1/status/live", crate::http::read().to(status::live))
            .route("/v1/status/ready", crate::http::read().to(status::ready))
            .route("/v1/read-only", crate::http::read().to(read_only::get))
            .route("/v1/read-only/freeze", web::post().to(read_only::freeze))
            .route("/v1/read-only/release", web::post().to(read_only::release))
            .route("/v1/read-only/force-release", web::post().to(read_only::release))
            .route("/v1/system", crate::http::read().to(status::system))
            .route("/v1/repositories", crate::http::read().to(repositories::list))
            .route("/v1/repositorySettings", crate::http::read().to(repositories::settings))
            .route("/v1/repositories/{name}", crate::http::read().to(repositories::get_summary))
            .route("/v1/repositories/{name}", web::delete().to(repositories::delete))
            .route("/v1/repositories/{name}/usage", crate::http::read().to(repositories::usage))
            .route("/v1/repositories/{name}/invalidate-cache", web::post().to(repositories::invalidate_cache))
            // Before `{format}/{kind}`, which a POST to it would match too.
            .route("/v1/repositories/{name}/health-check", crate::http::read().to(health_check::get))
            .route("/v1/repositories/{name}/health-check", web::post().to(health_check::enable))
            .route("/v1/repositories/{name}/health-check", web::delete().to(health_check::disable))
            .route("/v1/repositories/{format}/{kind}", web::post().to(repositories::create))
            .route("/v1/repositories/{format}/{kind}/{name}", crate::http::read().to(repositories::get))
            .route("/v1/repositories/{format}/{kind}/{name}", web::put().to(repositories::update))
            .route("/v1/components", crate::http::read().to(components::list))
            .route("/v1/components", web::post().to(components::upload))
            .route("/v1/search", crate::http::read().to(search::components))
            .route("/v1/search/assets", crate::http::read().to(search::assets))
            .route("/v1/search/assets/download", crate::http::read().to(search::download))
            .route("/v1/search/names", crate::http::read().to(search::names))
            .route("/v1/assets", crate::http::read().to(assets::list))
            .route("/v1/assets/{id}", crate::http::read().to(assets::get))
            .route("/v1/assets/{id}", web::delete().to(assets::delete))
            .route("/v1/components/{id}", crate::http::read().to(components::get))
            .route("/v1/components/{id}", web::delete().to(components::delete))
            .route("/v1/components/{id}/yank", web::post().to(components::yank))
            .route("/v1/components/{id}/yank", web::delete().to(components::yank))
            .route("/v1/cleanup-policies", crate::http::read().to(cleanup::list))
            .route("/v1/cleanup-policies", web::post().to(cleanup::create))
            .route("/v1/cleanup-policies/preview", web::post().to(cleanup::preview_unsaved))
            .route("/v1/cleanup-policies/run", web::post().to(cleanup::run))
            .route("/v1/cleanup-policies/{name}", crate::http::read().to(cleanup::get))
            .route("/v1/cleanup-policies/{name}", web::put().to(cleanup::update))
            .route("/v1/cleanup-policies/{name}", web::delete().to(cleanup::delete))
            .route("/v1/cleanup-policies/{name}/preview", crate::http::read().to(cleanup::preview))
            .route("/v1/blobstores", crate::http::read().to(blobstores::list))
            .route("/v1/blobstores/file", web::post().to(blobstores::create_file))
            .route("/v1/blobstores/file/{name}", crate::http::read().to(blobstores::get_file))
            .route("/v1/blobstores/file/{name}", web::put().to(blobstores::update_file))
            .route("/v1/blobstores/s3", web::post().to(blobstores_s3::create))
            .route("/v1/blobstores/s3/{name}", crate::http::read().to(blobstores_s3::get))
            .route("/v1/blobstores/s3/{name}", web::put().to(blobstores_s3::update))
            .route("/v1/blobstores/{name}/quota-status", crate::http::read().to(blobstores::quota_status))
            .route("/v1/blobstores/{name}", web::delete().to(blobstores::delete))
            .route("/v1/blobstores/{name}/compact", web::post().to(blobstores::compact))
            .route("/v1/tasks", crate::http::read().to(tasks::list))
            .route("/v1/tasks", web::post().to(tasks::create))
            .route("/v1/tasks/types", crate::http::read().to(tasks::types))
            .route("/v1/tasks/{id}", crate::http::read().to(tasks::get))
            .route("/v1/tasks/{id}", web::put().to(tasks::update))
            .route("/v1/tasks/{id}", web::delete().to(tasks::delete))
            .route("/v1/tasks/{id}/run", web::post().to(tasks::run))
            .route("/v1/tasks/{id}/stop", web::post().to(tasks::stop))
            .route("/v1/tasks/{id}/runs", crate::http::read().to(tasks::runs))
            .route("/v1/security/users", crate::http::read().to(security::list_users))
            .route("/v1/security/users", web::post().to(security::create_user))
            .route("/v1/security/users/{userId}", web::put().to(security::update_user))
            .route("/v1/security/users/{userId}", web::delete().to(security::delete_user))
            .route("/v1/security/users/{userId}/change-password", web::put().to(security::change_password))
            .route("/v1/security/roles", crate::http::read().to(security::list_roles))
            .route("/v1/security/roles", web::post().to(security::create_role))
            .route("/v1/security/roles/{id}", crate::http::read().to(security::get_role))
            .route("/v1/security/roles/{id}", web::put().to(security::update_role))
            .route("/v1/security/roles/{id}", web::delete().to(security::delete_role))
            .route("/v1/security/privileges", crate::http::read().to(security::list_privileges))
            .route("/v1/security/privileges/{name}", crate::http::read().to(privileges::get))
            .route("/v1/security/privileges/{name}", web::delete().to(privileges::delete))
            .route("/v1/security/privileges/{type}", web::post().to(privileges::create))
            .route("/v1/security/privileges/{type}/{name}", web::put().to(privileges::update))
            .route("/v1/security/anonymous", crate::http::read().to(realms::get_anonymous))
            .route("/v1/security/anonymous", web::put().to(realms::put_anonymous))
            .route("/v1/security/realms/available", crate::http::read().to(realms::available))
            .route("/v1/security/realms/active", crate::http::read().to(realms::active))
            .route("/v1/security/realms/active", web::put().to(realms::set_active))
            .route("/v1/security/tokens", crate::http::read().to(security::list_tokens))
            .route("/v1/security/tokens", web::post().to(security::create_token))
            .route("/v1/security/tokens/{id}", web::delete().to(security::revoke_token))
            .route("/v1/audit", crate::http::read().to(audit::list))
            .route("/v1/webhooks", crate::http::read().to(webhooks::list))
            .route("/v1/webhooks", web::post().to(webhooks::create))
            .route("/v1/webhooks/{name}", crate::http::read().to(webhooks::get))
            .route("/v1/webhooks/{name}", web::put().to(webhooks::update))
            .route("/v1/webhooks/{name}", web::delete().to(webhooks::delete))
            .route("/v1/webhooks/{name}/deliveries", crate::http::read().to(webhooks::deliveries))
            .route("/v1/webhooks/{name}/test", web::post().to(webhooks::test))
            .route("/v1/session", web::post().to(session::create))
            .route("/v1/session", crate::http::read().to(session::current))
            .route("/v1/session", web::delete().to(session::delete))
            .route("/v1/security/ldap", crate::http::read().to(ldap::list))
            .route("/v1/security/ldap", web::post().to(ldap::create))
            .route("/v1/security/ldap/change-order", web::post().to(ldap::change_order))
            .route("/v1/security/ldap/verify-connection", web::post().to(ldap::verify_connection))
            .route("/v1/security/ldap/verify-login", web::post().to(ldap::verify_login))
            .route("/v1/security/ldap/{name}", crate::http::read().to(ldap::get))
            .route("/v1/security/ldap/{name}", web::put().to(ldap::update))
            .route("/v1/security/ldap/{name}", web::delete().to(ldap::delete)),
    );
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

    /// A database whose disk is full is 507 `no_space` to the admin API (the deletion, task run
    /// or compaction that would free space was 500 `internal`), however the error came.
    #[test]
    fn a_full_database_is_507_no_space() {
        let full = |m: &str| DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, Box::new(m.to_string())));
        for e in [
            AdminError::from(full("database or disk is full")),
            AdminError::from(full("could not extend file \"base/16384/2619\": No space left on device")),
            AdminError::from(wharf_format::MetaError::NoSpace),
        ] {
            assert_eq!((e.status_code(), e.code()), (StatusCode::INSUFFICIENT_STORAGE, "no_space"), "{e}");
        }
        let other = AdminError::from(full("UNIQUE constraint failed: users.username"));
        assert_eq!(other.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
