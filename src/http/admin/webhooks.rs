//! `/service/rest/v1/webhooks`: wharf's webhooks (Nexus configures its "Webhook: Global" and
//! "Webhook: Repository" as capabilities; here they are one resource, global when `repository`
//! is null): list, create, get, update, delete, the delivery log, and a test delivery.
//! Administrators only. The secret is write-only: answers say `hasSecret`, never the secret.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use wharf_format::{rfc3339_millis, ConfigError};

use super::{parse_json, record, require_admin, AdminError};
use crate::db::webhooks::{self as rows, DeliveryRow, WebhookFields, WebhookRow};
use crate::security::secrets;
use crate::state::AppState;
use crate::webhooks::events::{self, ASSET, COMPONENT, TYPES};

const FIELDS: &[&str] = &["name", "url", "secret", "eventTypes", "repository", "enabled"];
const MAX_URL: usize = 2048;
const MAX_SECRET: usize = 1024;
/// Deliveries per page of the log.
const PAGE: i64 = 50;

fn render(w: &WebhookRow) -> Value {
    json!({
        "name": w.name,
        "url": w.url,
        "eventTypes": w.types().collect::<Vec<_>>(),
        "repository": w.repository,
        "enabled": w.enabled,
        "hasSecret": w.secret.is_some(),
    })
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(rfc3339_millis(m)))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::not_string(field)),
    }
}

/// The secret a body asks for: keep the stored one, none, or this one.
enum Secret {
    Keep,
    Clear,
    Set(String),
}

/// A create's or an update's body, checked; unknown fields are named.
struct Parsed {
    name: String,
    url: String,
    secret: Secret,
    event_types: Vec<String>,
    repository: Option<String>,
    enabled: bool,
}

fn parse(state: &AppState, body: &[u8], name: Option<&str>) -> Result<Parsed, AdminError> {
    let v = parse_json(body)?;
    let obj = v.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ConfigError::unknown_field(k.clone()).into());
    }
    let name = match (name, string(obj, "name")?) {
        (Some(url), Some(b)) if url != b => return Err(ConfigError::new("name", format!("cannot be changed (the webhook is {url})")).into()),
        (Some(url), _) => url.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => return Err(ConfigError::required("name").into()),
    };
    if !valid_name(&name) {
        return Err(ConfigError::new("name", "must be 1-255 characters of letters, digits, '.', '_', '-', starting with a letter or digit").into());
    }
    let url = string(obj, "url")?.ok_or_else(|| ConfigError::required("url"))?.trim().to_string();
    check_url(&url)?;
    let secret = match obj.get("secret") {
        None => Secret::Keep,
        Some(Value::Null) => Secret::Clear,
        Some(Value::String(s)) if s.is_empty() => Secret::Clear,
        Some(Value::String(s)) if s.len() > MAX_SECRET => return Err(ConfigError::new("secret", format!("must be at most {MAX_SECRET} bytes")).into()),
        Some(Value::String(s)) => Secret::Set(s.clone()),
        Some(_) => return Err(ConfigError::not_string("secret").into()),
    };
    let event_types: Vec<String> = match obj.get("eventTypes") {
        None | Some(Value::Null) => return Err(ConfigError::required("eventTypes").into()),
        Some(Value::Array(a)) => {
            let mut out: Vec<String> = Vec::new();
            for t in a {
                let t = t.as_str().ok_or_else(|| ConfigError::not_strings("eventTypes"))?;
                if !TYPES.contains(&t) {
                    return Err(ConfigError::new("eventTypes", format!("unknown event type {t} (expected {})", TYPES.join(", "))).into());
                }
                if !out.iter().any(|x| x == t) {
                    out.push(t.to_string());
                }
            }
            out
        }
        Some(_) => return Err(ConfigError::not_strings("eventTypes").into()),
    };
    if event_types.is_empty() {
        return Err(ConfigError::new("eventTypes", "must name at least one event type").into());
    }
    let repository = string(obj, "repository")?.filter(|r| !r.is_empty()).map(str::to_string);
    if let Some(r) = &repository {
        if state.registry.get(r).is_none() {
            return Err(ConfigError::new("repository", format!("repository {r} does not exist")).into());
        }
        // Nexus's "Webhook: Repository" hears only of its repository's content.
        if let Some(t) = event_types.iter().find(|t| *t != COMPONENT && *t != ASSET) {
            return Err(ConfigError::new("eventTypes", format!("{t} events are global: a repository's webhook takes component and asset events")).into());
        }
    }
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ConfigError::not_boolean("enabled").into()),
    };
    Ok(Parsed { name, url, secret, event_types, repository, enabled })
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    if url.len() > MAX_URL {
        return Err(ConfigError::new("url", format!("must be at most {MAX_URL} characters")));
    }
    let u = url::Url::parse(url).map_err(|e| ConfigError::new("url", format!("not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ConfigError::new("url", "must be an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new("url", "must name a host"));
    }
    // The URL is shown to every administrator; a credential belongs in `secret`.
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ConfigError::new("url", "must not carry a user name or password (use secret to sign deliveries)"));
    }
    Ok(())
}

async fn load(state: &AppState, name: &str) -> Result<WebhookRow, AdminError> {
    let n = name.to_string();
    state.db.run(move |c| rows::get(c, &n)).await?.ok_or_else(|| AdminError::missing("webhook", name))
}

fn fields(p: &Parsed, stored_secret: Option<&str>) -> Result<WebhookFields, AdminError> {
    let secret = match &p.secret {
        Secret::Keep => stored_secret.map(str::to_string),
        Secret::Clear => None,
        Secret::Set(s) => Some(secrets::seal(s, &crate::webhooks::secret_location(&p.name)).map_err(|e| AdminError::Internal(Box::new(e)))?),
    };
    Ok(WebhookFields { url: p.url.clone(), secret, event_types: p.event_types.join(","), repository: p.repository.clone(), enabled: p.enabled })
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let all = state.db.run(rows::list).await?;
    Ok(HttpResponse::Ok().json(all.iter().map(render).collect::<Vec<_>>()))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(render(&load(&state, &name).await?)))
}

pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let p = parse(&state, &body, None)?;
    let f = fields(&p, None)?;
    let name = p.name.clone();
    let created = state
        .db
        .write(move |c| {
            if let Err(gone) = repository_exists(c, f.repository.as_deref())? {
                return Ok(Err(gone));
            }
            if rows::get(c, &name)?.is_some() {
                return Ok(Ok(None));
            }
            rows::insert(c, &name, &f)?;
            rows::get(c, &name).map(Ok)
        })
        .await??;
    let Some(row) = created else {
        return Err(ConfigError::new("name", format!("webhook {} already exists", p.name)).into());
    };
    record(&state, &req, &actor, "webhook.create", &p.name, p.repository.as_deref());
    Ok(HttpResponse::Created().json(render(&row)))
}

pub async fn update(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let p = parse(&state, &body, Some(&name))?;
    let n = p.name.clone();
    let keep = matches!(p.secret, Secret::Keep);
    let new = fields(&p, None)?;
    // A secret left out is kept: read and written back in one transaction.
    let updated = state
        .db
        .write(move |c| {
            if let Err(gone) = repository_exists(c, new.repository.as_deref())? {
                return Ok(Err(gone));
            }
            let Some(old) = rows::get(c, &n)? else { return Ok(Ok(None)) };
            let f = WebhookFields {
                url: new.url.clone(),
                secret: if keep { old.secret.clone() } else { new.secret.clone() },
                event_types: new.event_types.clone(),
                repository: new.repository.clone(),
                enabled: new.enabled,
            };
            rows::update(c, &n, &f)?;
            rows::get(c, &n).map(Ok)
        })
        .await??;
    let row = updated.ok_or_else(|| AdminError::missing("webhook", &name))?;
    record(&state, &req, &actor, "webhook.update", &p.name, p.repository.as_deref());
    Ok(HttpResponse::Ok().json(render(&row)))
}

/// The webhook's repository, checked again in the transaction that stores it: one deleted
/// after the request was checked takes its webhooks with it, and must not get one back.
fn repository_exists(c: &mut crate::db::AnyConnection, repository: Option<&str>) -> Result<Result<(), ConfigError>, crate::db::DbError> {
    match repository.map(|r| crate::db::repos::unfit(c, "repository", r, None)).transpose()?.flatten() {
        Some(e) => Ok(Err(e)),
        None => Ok(Ok(())),
    }
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let n = name.to_string();
    if state.db.write(move |c| rows::delete(c, &n)).await? == 0 {
        return Err(AdminError::missing("webhook", &name));
    }
    record(&state, &req, &actor, "webhook.delete", &name, None);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize)]
pub struct LogParams {
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

fn render_delivery(d: &DeliveryRow, attempts: &[rows::AttemptRow]) -> Value {
    json!({
        "id": d.delivery_id,
        "eventId": d.event_id,
        "action": d.action,
        "status": d.status,
        "attempts": d.attempts,
        "createdAt": rfc3339_millis(d.created_at),
        "finishedAt": time(d.finished_at),
        "nextAttemptAt": if d.status == rows::PENDING { time(Some(d.next_attempt_at)) } else { Value::Null },
        "payload": serde_json::from_str::<Value>(&d.payload).unwrap_or(Value::Null),
        "attemptLog": attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "at": rfc3339_millis(a.at),
            "node": a.node,
            "durationMs": a.duration_ms,
            "statusCode": a.status_code,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

/// The webhook's deliveries, newest first, a page at a time, each with its attempts.
pub async fn deliveries(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>, q: web::Query<LogParams>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let hook = load(&state, &name).await?;
    let before = match q.continuation_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| ConfigError::new("continuationToken", "not a token this list gave"))?),
    };
    let page = state.db.run(move |c| rows::deliveries(c, hook.id, before, PAGE)).await?;
    let next = (page.len() as i64 == PAGE).then(|| page.last().map(|(d, _)| d.id.to_string())).flatten();
    let items: Vec<Value> = page.iter().map(|(d, a)| render_delivery(d, a)).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": next })))
}

/// Queues a ping (`X-Nexus-Webhook-Id: wharf:ping`) to the webhook: delivered, retried and
/// logged as any event. Answers 202 with its delivery id.
pub async fn test(state: web::Data<AppState>, req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let hook = load(&state, &name).await?;
    if !hook.enabled {
        return Err(AdminError::Conflict(format!("webhook {} is disabled", hook.name)));
    }
    let now = wharf_format::now_millis();
    let payload = json!({
        "timestamp": rfc3339_millis(now),
        "nodeId": crate::webhooks::node(),
        "initiator": crate::webhooks::initiator_of(Some(&actor), &crate::http::mount::client(&req)),
        "ping": { "webhook": hook.name, "eventTypes": hook.types().collect::<Vec<_>>(), "repository": hook.repository },
    })
    .to_string();
    let id = hook.id;
    let delivery = state.db.write(move |c| Ok(rows::enqueue(c, id, events::event_id("ping"), None, &payload, now)?)).await?;
    crate::webhooks::wake();
    Ok(HttpResponse::Accepted().json(json!({ "deliveryId": delivery })))
}
