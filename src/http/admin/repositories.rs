//! `/service/rest/v1/repositories...`: list, get, create, update, delete.
//!
//! The server validates what every repository has (name, online, storage, anonymousRead) and
//! passes the remaining sections to the format, which names the field it refuses.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use wharf_format::{ConfigError, Kind, WritePolicy};

use super::{may_read, parse_json, require_admin, require_reader, AdminError};
use crate::db::repos::{self, RepoRow};
use crate::db::usage;
use crate::db::{cleanup, is_unique_violation};
use crate::http::mount::origin;
use crate::state::{stored_config, AppState};

/// Nexus's rule: letters, digits, `.`, `_`, `-`, not starting with `.` or `_`. Lowercase only
/// here, since a repository name is also the first path segment of Docker image names.
fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-')
        && !name.starts_with(['.', '_', '-'])
        && name != "token"
}

fn summary(r: &RepoRow, origin: &str) -> Value {
    json!({
        "name": r.name,
        "format": r.format,
        "type": r.kind,
        "url": format!("{origin}/repository/{}", r.name),
        "attributes": {},
    })
}

/// The full Nexus-shaped view of a repository.
fn detail(r: &RepoRow, origin: &str) -> Value {
    let mut v = summary(r, origin);
    let stored: Map<String, Value> = serde_json::from_str(&r.config).unwrap_or_default();
    let obj = v.as_object_mut().expect("summary is an object");
    obj.remove("attributes");
    for (k, val) in stored {
        obj.insert(k, val);
    }
    redact_passwords(&mut v);
    v
}

/// Secrets never leave the server: every `password` in a configuration reads back as null.
fn redact_passwords(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "password" && !val.is_null() {
                    *val = Value::Null;
                } else {
                    redact_passwords(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_passwords),
        _ => {}
    }
}

/// An update may send back what GET showed: a `password` left null (or left out of an object
/// that had one) keeps the stored one. Returns the paths of the passwords kept.
fn keep_passwords(new: &mut Value, old: &Value, path: &str, kept: &mut Vec<String>) {
    if let (Value::Object(n), Value::Object(o)) = (new, old) {
        if let Some(stored) = o.get("password").filter(|p| !p.is_null()) {
            if n.get("password").is_none_or(Value::is_null) {
                n.insert("password".into(), stored.clone());
                kept.push(format!("{path}password"));
            }
        }
        for (k, val) in n.iter_mut() {
            if let Some(stored) = o.get(k).filter(|_| k != "password") {
                keep_passwords(val, stored, &format!("{path}{k}."), kept);
            }
        }
    }
}

/// Where a proxy's stored credentials may go: the scheme, host and port of its `remoteUrl`.
fn remote_origin(config: &Value) -> Option<url::Origin> {
    config.pointer("/proxy/remoteUrl").and_then(Value::as_str).and_then(|u| url::Url::parse(u).ok()).map(|u| u.origin())
}

/// The repository's state as this node sees it: `online`, and for a proxy its upstream
/// (`available`, `failing`, `auto-blocked` or `blocked`, with the last error while failing).
fn status(state: &AppState, r: &RepoRow) -> Value {
    let online = state.registry.get(&r.name).map(|x| x.config.online);
    let mut v = json!({ "online": online.unwrap_or(false) });
    if r.kind == "proxy" {
        v["upstream"] = state.registry.upstreams.status(r.id).unwrap_or_else(|| json!({"state": "available"}));
    }
    v
}

/// A validated request: the row fields and the JSON to store.
struct Parsed {
    name: String,
    blob_store: String,
    config: Value,
}

fn parse_request(state: &AppState, format: &str, kind: &str, body: &Value) -> Result<Parsed, ConfigError> {
    let fmt = state.format(format).ok_or_else(|| ConfigError::new("format", format!("unknown format {format}")))?;
    let kind: Kind = kind.parse().map_err(|()| ConfigError::new("type", format!("unknown repository type {kind}")))?;
    if !fmt.kinds().contains(&kind) {
        return Err(ConfigError::new("type", format!("{format} {kind} repositories are not supported")));
    }
    let obj = body.as_object().ok_or_else(|| ConfigError::not_object("body"))?;
    let mut rest = obj.clone();
    let name = match rest.remove("name") {
        Some(Value::String(s)) if valid_repo_name(&s) => s,
        Some(Value::String(_)) => {
            return Err(ConfigError::new("name", "must be 1-200 characters of a-z, 0-9, '.', '_', '-', not starting with '.', '_' or '-'"))
        }
        Some(_) => return Err(ConfigError::not_string("name")),
        None => return Err(ConfigError::required("name")),
    };
    let online = match rest.remove("online") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ConfigError::not_boolean("online")),
    };
    let anonymous_read = match rest.remove("anonymousRead") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ConfigError::not_boolean("anonymousRead")),
    };
    // What GET returns may be sent back as is.
    for (key, expected) in [("format", format), ("type", kind.as_str())] {
        match rest.remove(key) {
            None => {}
            Some(Value::String(s)) if s == expected => {}
            Some(_) => return Err(ConfigError::new(key, format!("must be {expected:?} for this endpoint"))),
        }
    }
    // Read-only parts of what GET shows.
    rest.remove("url");
    rest.remove("status");
    let storage = parse_storage(rest.remove("storage"), kind)?;
    let blob_store = storage["blobStoreName"].as_str().unwrap_or_default().to_string();
    if !state.registry.snapshot().blob_stores.contains_key(&blob_store) {
        return Err(ConfigError::new("storage.blobStoreName", format!("blob store {blob_store} does not exist")));
    }
    let sections = fmt.validate(kind, &rest)?;
    let mut config = Map::new();
    config.insert("name".into(), json!(name));
    config.insert("online".into(), json!(online));
    config.insert("storage".into(), storage);
    config.insert("anonymousRead".into(), json!(anonymous_read));
    config.extend(sections);
    let config = Value::Object(config);
    let probe = RepoRow {
        id: 0,
        name: name.clone(),
        format: format.to_string(),
        kind: kind.as_str().to_string(),
        blob_store: blob_store.clone(),
        config: config.to_string(),
        created_at: 0,
        updated_at: 0,
        cache_invalidated_at: None,
    };
    fmt.validate_references(&stored_config(&probe)?, &*state.registry)?;
    Ok(Parsed { name, blob_store, config })
}

fn parse_storage(v: Option<Value>, kind: Kind) -> Result<Value, ConfigError> {
    let Some(Value::Object(s)) = v else {
        return Err(ConfigError::new("storage", "is required (an object with blobStoreName)"));
    };
    let mut blob_store = None;
    let mut strict = true;
    let mut policy = WritePolicy::Allow;
    let mut latest = false;
    let mut hard_quota = Value::Null;
    for (k, v) in s {
        let field = format!("storage.{k}");
        match k.as_str() {
            "blobStoreName" => blob_store = Some(v.as_str().ok_or_else(|| ConfigError::not_string(&field))?.to_string()),
            "strictContentTypeValidation" => strict = v.as_bool().ok_or_else(|| ConfigError::not_boolean(&field))?,
            "writePolicy" => {
                policy = v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| ConfigError::new(&field, "must be one of allow, allow_once, deny"))?
            }
            "latestPolicy" => latest = v.as_bool().ok_or_else(|| ConfigError::not_boolean(&field))?,
            "hardQuota" => hard_quota = parse_hard_quota(v, kind)?,
            _ => return Err(ConfigError::unknown_field(field)),
        }
    }
    let blob_store = blob_store.ok_or_else(|| ConfigError::required("storage.blobStoreName"))?;
    let mut storage = json!({
        "blobStoreName": blob_store,
        "strictContentTypeValidation": strict,
        "writePolicy": policy.as_str(),
        "latestPolicy": latest,
    });
    if !hard_quota.is_null() {
        storage["hardQuota"] = hard_quota;
    }
    Ok(storage)
}

/// wharf's `storage.hardQuota`: `{"limit": <bytes>}` or null. Only hosted repositories take
/// one: a group's writes go to its writable member (whose quota applies), and a proxy's cache
/// fills are reads for its clients.
fn parse_hard_quota(v: Value, kind: Kind) -> Result<Value, ConfigError> {
    let Value::Object(q) = v else {
        return match v {
            Value::Null => Ok(Value::Null),
            _ => Err(ConfigError::new("storage.hardQuota", "must be an object {\"limit\": <bytes>} or null")),
        };
    };
    if kind != Kind::Hosted {
        let why = match kind {
            Kind::Group => "a group has no hard quota: its writable member's applies",
            _ => "only hosted repositories have a hard quota",
        };
        return Err(ConfigError::new("storage.hardQuota", why));
    }
    let mut limit = None;
    for (k, v) in q {
        match k.as_str() {
            "limit" => {
                limit = Some(
                    v.as_u64().filter(|n| *n >= 1).ok_or_else(|| ConfigError::new("storage.hardQuota.limit", "must be a whole number of bytes, at least 1"))?,
                )
            }
            _ => return Err(ConfigError::unknown_field(format!("storage.hardQuota.{k}"))),
        }
    }
    let limit = limit.ok_or_else(|| ConfigError::new("storage.hardQuota.limit", "is required (bytes)"))?;
    Ok(json!({ "limit": limit }))
}

/// Ports and subdomains must be unique, and a port must be free to bind.
async fn check_listener(state: &AppState, format: &str, name: &str, config: &Value, before: Option<&Value>) -> Result<(), ConfigError> {
    let Some(fmt) = state.format(format) else { return Ok(()) };
    let listener_of = |config: &Value| -> Result<wharf_format::Listener, ConfigError> {
        let row = RepoRow {
            id: 0,
            name: name.to_string(),
            format: format.to_string(),
            kind: "hosted".into(),
            blob_store: String::new(),
            config: config.to_string(),
            created_at: 0,
            updated_at: 0,
            cache_invalidated_at: None,
        };
        Ok(fmt.listener(&stored_config(&row)?))
    };
    let wanted = listener_of(config)?;
    let had_https = match before {
        Some(old) => listener_of(old).ok().and_then(|l| l.https_port),
        None => None,
    };
    let snap = state.registry.snapshot();
    // Both ports alike: an unchecked `httpsPort` could take another repository's port (the
    // last loaded won it, with its token endpoint), or the main port.
    if wanted.port.is_some() && wanted.port == wanted.https_port {
        return Err(ConfigError::new(format!("{format}.httpsPort"), "must differ from httpPort"));
    }
    // Refused when set or changed; one saved before (without [tls]) does not block the
    // repository's other updates.
    if wanted.https_port.is_some() && wanted.https_port != had_https && state.cfg.tls.cert_file.is_empty() {
        return Err(ConfigError::new(format!("{format}.httpsPort"), "needs [tls] cert_file and key_file in the configuration"));
    }
    for (port, field) in [(wanted.port, "httpPort"), (wanted.https_port, "httpsPort")] {
        let Some(port) = port else { continue };
        let main_port = state.cfg.listen.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
        if Some(port) == main_port {
            return Err(ConfigError::new(format!("{format}.{field}"), format!("port {port} is wharf's main port")));
        }
        match snap.by_port.get(&port) {
            Some(owner) if owner != name => return Err(ConfigError::new(format!("{format}.{field}"), format!("port {port} is used by repository {owner}"))),
            Some(_) => {}
            None => {
                let host = state.cfg.listen.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1");
                if std::net::TcpListener::bind((host.trim_matches(['[', ']']), port)).is_err() {
                    return Err(ConfigError::new(format!("{format}.{field}"), format!("port {port} is not available on {host}")));
                }
            }
        }
    }
    if let Some(sub) = wanted.subdomain {
        if let Some(owner) = snap.by_subdomain.get(&sub).filter(|o| *o != name) {
            return Err(ConfigError::new(format!("{format}.subdomain"), format!("subdomain {sub} is used by repository {owner}")));
        }
    }
    Ok(())
}

/// Every repository for administrators; for others, those they may read. wharf's additions:
/// `online`, and `blobCount` / `totalSizeInBytes`: the distinct blobs the repository references
/// (see [`usage`]), exact for this node's writes and at most a few seconds behind other nodes'
/// (see `db::usage_cache`).
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let p = super::caller(&state, &req).await?;
    if p.user.is_none() {
        return Err(AdminError::Unauthenticated);
    }
    let rows = state.db.run(repos::list).await?;
    let snap = state.registry.snapshot();
    let rows: Vec<&RepoRow> = rows.iter().filter(|r| may_read(&state, &p.access, &r.name)).collect();
    // Measured only where this node wrote since, or every few seconds (anyone signed in may
    // call this in a loop).
    let used = state.meta.repositories_usage(rows.iter().map(|r| (r.id, r.blob_store.clone())).collect()).await?;
    let origin = origin(&req);
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = summary(r, &origin);
            let u = used.get(&r.id).copied().unwrap_or_default();
            v["online"] = json!(snap.repos.get(&r.name).map(|x| x.config.online).unwrap_or(false));
            v["blobCount"] = json!(u.blob_count);
            v["totalSizeInBytes"] = json!(u.bytes);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

async fn find(state: &AppState, name: String) -> Result<RepoRow, AdminError> {
    let n = name.clone();
    state.db.run(move |c| repos::get(c, &n)).await?.ok_or_else(|| AdminError::missing("repository", &name))
}

pub async fn get_summary(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let name = path.into_inner();
    require_reader(&state, &req, &name).await?;
    let row = find(&state, name).await?;
    let mut v = summary(&row, &origin(&req));
    v["status"] = status(&state, &row);
    Ok(HttpResponse::Ok().json(v))
}

/// wharf's `GET /service/rest/v1/repositories/{name}/usage`: what the repository references,
/// counted once per blob, and its hard quota (`null` without one).
pub async fn usage(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let name = path.into_inner();
    require_reader(&state, &req, &name).await?;
    let row = find(&state, name).await?;
    let config = stored_config(&row)?;
    let (id, store) = (row.id, row.blob_store.clone());
    let u = state.db.run(move |c| usage::repository_usage(c, id, &store)).await?;
    let quota = config.hard_quota.map(|limit| json!({ "limit": limit, "exceeded": u.bytes >= limit, "remainingInBytes": limit.saturating_sub(u.bytes) }));
    Ok(HttpResponse::Ok().json(json!({
        "repository": row.name,
        "blobStoreName": row.blob_store,
        "blobCount": u.blob_count,
        "totalSizeInBytes": u.bytes,
        "quota": quota,
    })))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String, String)>) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let (format, kind, name) = path.into_inner();
    let row = find(&state, name.clone()).await?;
    if row.format != format || row.kind != kind {
        return Err(AdminError::NotFound(format!("repository {name} is not a {format} {kind} repository")));
    }
    let mut v = detail(&row, &origin(&req));
    v["status"] = status(&state, &row);
    Ok(HttpResponse::Ok().json(v))
}

/// Nexus's `GET /service/rest/v1/repositorySettings`: every repository's full configuration,
/// as `GET /repositories/{format}/{type}/{name}` gives each (passwords read back as null).
pub async fn settings(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    require_admin(&state, &req).await?;
    let rows = state.db.run(repos::list).await?;
    let origin = origin(&req);
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = detail(r, &origin);
            v["status"] = status(&state, r);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

pub async fn create(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>, body: web::Bytes) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let (format, kind) = path.into_inner();
    let p = parse_request(&state, &format, &kind, &parse_json(&body)?)?;
    if state.registry.get(&p.name).is_some() {
        return Err(ConfigError::new("name", format!("repository {} already exists", p.name)).into());
    }
    check_listener(&state, &format, &p.name, &p.config, None).await?;
    let (name, blob_store, config, kind2, format2) = (p.name.clone(), p.blob_store.clone(), p.config.to_string(), kind.clone(), format.clone());
    let json = p.config.clone();
    let res = state
        .db
        .write(move |c| {
            if let Err(e) = cleanup::check_names(c, &format2, &json)? {
                return Ok(Err(e));
            }
            if let Err(e) = members_still_fit(c, &format2, &json)? {
                return Ok(Err(e));
            }
            repos::insert(c, &name, &format2, &kind2, &blob_store, &config).map(Ok)
        })
        .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(crate::db::DbError::Query(e)) if is_unique_violation(&e) => {
            return Err(ConfigError::new("name", format!("repository {} already exists", p.name)).into())
        }
        // The blob store was deleted since the request was checked.
        Err(crate::db::DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _))) => {
            return Err(ConfigError::new("storage.blobStoreName", format!("blob store {} does not exist", p.blob_store)).into())
        }
        Err(e) => return Err(e.into()),
    }
    super::record(&state, &req, &actor, "repository.create", &format!("{format}/{kind}"), Some(&p.name));
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::Created().finish())
}

pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let (format, kind, name) = path.into_inner();
    let existing = find(&state, name.clone()).await?;
    if existing.format != format || existing.kind != kind {
        return Err(AdminError::NotFound(format!("repository {name} is not a {format} {kind} repository")));
    }
    let mut body = parse_json(&body)?;
    let stored: Value = serde_json::from_str(&existing.config).unwrap_or_default();
    let mut kept = Vec::new();
    keep_passwords(&mut body, &stored, "", &mut kept);
    // A stored secret never goes to a destination the administrator did not send it for.
    if !kept.is_empty() && remote_origin(&body).is_some() && remote_origin(&body) != remote_origin(&stored) {
        return Err(ConfigError::new(
            kept.remove(0),
            "proxy.remoteUrl now points at another host: send the upstream password again (the stored one is not sent to a new destination)",
        )
        .into());
    }
    let p = parse_request(&state, &format, &kind, &body)?;
    if p.name != name {
        return Err(ConfigError::new("name", "cannot be changed").into());
    }
    // The assets name blobs in their store: moving the repository would leave them dangling.
    if p.blob_store != existing.blob_store {
        return Err(ConfigError::new(
            "storage.blobStoreName",
            format!("cannot be changed (from {} to {}): the repository's content lives in its blob store", existing.blob_store, p.blob_store),
        )
        .into());
    }
    check_listener(&state, &format, &p.name, &p.config, Some(&stored)).await?;
    let (blob_store, config, json, format2) = (p.blob_store, p.config.to_string(), p.config.clone(), format.clone());
    state
        .db
        .write(move |c| {
            if let Err(e) = cleanup::check_names(c, &format2, &json)? {
                return Ok(Err(e));
            }
            if let Err(e) = members_still_fit(c, &format2, &json)? {
                return Ok(Err(e));
            }
            repos::update(c, &name, &blob_store, &config).map(|_| Ok(()))
        })
        .await??;
    super::record(&state, &req, &actor, "repository.update", &format!("{format}/{kind}"), Some(&p.name));
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

/// A group's members, checked again in the transaction that stores it, by the rules of
/// `GroupSettings::check_references`: the request was checked against the loaded
/// configuration, and a member deleted (or re-created as something else) since must not come
/// back by name.
fn members_still_fit(c: &mut crate::db::AnyConnection, format: &str, config: &Value) -> Result<Result<(), ConfigError>, crate::db::DbError> {
    let Ok(group) = wharf_format::proxy::GroupSettings::parse(config.get("group")) else { return Ok(Ok(())) };
    for m in &group.members {
        if let Some(e) = repos::unfit(c, "group.memberNames", m, Some(format))? {
            return Ok(Err(e));
        }
    }
    if let Some(w) = &group.writable {
        if repos::kinds(c, &[w.as_str()])?.get(w).is_some_and(|(_, kind)| kind != "hosted") {
            return Ok(Err(ConfigError::new("group.writableMember", format!("{w} is not a hosted repository"))));
        }
    }
    Ok(Ok(()))
}

pub async fn delete(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let n = name.clone();
    let unnamed = match state.db.write(move |c| repos::delete(c, &n)).await? {
        repos::Deletion::Missing => return Err(AdminError::missing("repository", &name)),
        repos::Deletion::Refused(why) => return Err(AdminError::Conflict(why)),
        repos::Deletion::Done(unnamed) => unnamed,
    };
    super::record(&state, &req, &actor, "repository.delete", &name, Some(&name));
    // What went with it is the admin's change too: each in the audit log as if done by hand,
    // saying why.
    let along =
        |action: &str, object: &str, repository: Option<&str>, detail: Value| super::record_because(&state, &req, &actor, action, object, repository, detail);
    for (g, format) in &unnamed.groups {
        along("repository.update", &format!("{format}/group"), Some(g), json!({ "removedMember": name, "because": "repository.delete" }));
    }
    for t in &unnamed.tasks {
        along("task.delete", t, None, json!({ "repositoryName": name, "because": "repository.delete" }));
    }
    for w in &unnamed.webhooks {
        along("webhook.delete", w, None, json!({ "repository": name, "because": "repository.delete" }));
    }
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /service/rest/v1/repositories/{name}/invalidate-cache` (Nexus's): a proxy asks its
/// upstream again for everything it cached (metadata, tags, and content whose max age applies);
/// a group, every proxy among its members and its own merged metadata. On every node: the time
/// is stored with the repository, and the nodes reopen it.
pub async fn invalidate_cache(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let actor = require_admin(&state, &req).await?;
    let name = path.into_inner();
    let snap = state.registry.snapshot();
    let Some(repo) = snap.repos.get(&name) else { return Err(AdminError::missing("repository", &name)) };
    // Hosted members have no cache; a group keeps its own merged metadata.
    let reached: Vec<_> = snap.with_members(&name).into_iter().filter(|r| r.config.kind != Kind::Hosted).collect();
    let proxies = reached.iter().filter(|r| r.config.kind == Kind::Proxy).count();
    let names: Vec<String> = reached.iter().map(|r| r.config.name.clone()).collect();
    if proxies == 0 {
        let why = if repo.config.kind == Kind::Group { "this group has no proxy repository among its members" } else { "a hosted repository has no cache" };
        return Err(ConfigError::new("name", why).into());
    }
    let at = wharf_format::now_millis();
    state.db.write(move |c| repos::invalidate_cache(c, &names, at)).await?;
    super::record(&state, &req, &actor, "repository.invalidate-cache", &name, Some(&name));
    crate::http::apply_config_change(&state).await;
    Ok(HttpResponse::NoContent().finish())
}
