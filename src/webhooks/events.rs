//! What webhooks hear, and the payloads they get (Nexus's shapes, see `docs/webhooks.md`).
//!
//! Every event is queued in the transaction of the change it reports, so a receiver hears of a
//! change if and only if it committed, whatever happens to the node afterwards:
//! - components and assets from [`before_commit`] and [`after_commit`], around the writes of
//!   every `MetaStore::commit` (the one way formats, the components API and cleanup change
//!   assets), by comparing the assets at the paths a commit touches before and after (and, for a
//!   component that may have gained its first or lost its last asset, looking for its others);
//! - audit and repository events from [`on_audit`], in the transaction that writes the audit
//!   event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use diesel::prelude::*;
use serde_json::{json, Value};
use wharf_format::{rfc3339_millis, Asset, AuditEvent, ComponentKey, Format, NewAsset, Write};

use crate::db::schema::repositories;
use crate::db::webhooks::{self as rows, WebhookRow};
use crate::db::AnyConnection;

pub const COMPONENT: &str = "component";
pub const ASSET: &str = "asset";
pub const AUDIT: &str = "audit";
pub const REPOSITORY: &str = "repository";
/// Every event type, in the order the API lists them.
pub const TYPES: &[&str] = &[AUDIT, REPOSITORY, COMPONENT, ASSET];

/// The `X-Nexus-Webhook-Id` of each event type.
pub fn event_id(event_type: &str) -> &'static str {
    match event_type {
        COMPONENT => "rm:repository:component",
        ASSET => "rm:repository:asset",
        AUDIT => "rm:global:audit",
        REPOSITORY => "rm:global:repository",
        _ => "wharf:ping",
    }
}

/// One repository's part of a commit that webhooks listen to, as it was before the writes.
pub struct Watch {
    repos: Vec<Watched>,
}

struct Watched {
    id: i64,
    name: String,
    format: Arc<dyn Format>,
    kind: &'static str,
    hooks: Vec<WebhookRow>,
    /// Every path the writes may change; only these can differ before and after.
    paths: Vec<String>,
    /// The assets of the component kind at those paths, before the writes.
    before: Vec<Asset>,
}

/// Inside a commit's transaction, before its writes: `None` unless an enabled webhook wants
/// component or asset events of a repository the batch writes to; otherwise the assets of the
/// component kind at the paths the writes touch, as they are now (only those can change: a
/// component's other assets are looked up only when it may have gained its first or lost its
/// last, by the format's [`Format::component_prefix`]).
pub fn before_commit(conn: &mut AnyConnection, formats: &[Arc<dyn Format>], writes: &[Write]) -> QueryResult<Option<Watch>> {
    if formats.is_empty() || writes.is_empty() {
        return Ok(None);
    }
    let hooks = rows::enabled(conn)?;
    if !hooks.iter().any(|h| h.wants(COMPONENT) || h.wants(ASSET)) {
        return Ok(None);
    }
    let mut ids: Vec<i64> = Vec::new();
    for w in writes {
        let (Write::Upsert { repo, .. } | Write::InsertIfAbsent { repo, .. } | Write::Delete { repo, .. } | Write::DeleteByDigest { repo, .. }) = w;
        if !ids.contains(repo) {
            ids.push(*repo);
        }
    }
    let mut watched = Vec::new();
    for id in ids {
        let Some((name, format_name)) =
            repositories::table.find(id).select((repositories::name, repositories::format)).get_result::<(String, String)>(conn).optional()?
        else {
            continue;
        };
        let mine: Vec<WebhookRow> =
            hooks.iter().filter(|h| (h.wants(COMPONENT) || h.wants(ASSET)) && h.repository.as_ref().is_none_or(|r| *r == name)).cloned().collect();
        let Some(format) = formats.iter().find(|f| f.name() == format_name) else { continue };
        let Some(kind) = format.component_kind() else { continue };
        if mine.is_empty() {
            continue;
        }
        let mut paths = BTreeSet::new();
        let mut of_kind = false;
        for w in writes {
            match w {
                Write::Upsert { repo, asset } | Write::InsertIfAbsent { repo, asset } if *repo == id => {
                    of_kind |= asset.kind == kind;
                    paths.insert(asset.path.clone());
                }
                Write::Delete { repo, path } if *repo == id => drop(paths.insert(path.clone())),
                Write::DeleteByDigest { repo, kind: k, component, digest } if *repo == id && k == kind => {
                    of_kind = true;
                    paths.extend(crate::db::meta::paths_by_digest(conn, id, k, component, digest)?);
                }
                _ => {}
            }
        }
        let paths: Vec<String> = paths.into_iter().collect();
        let before = of_kind_at(conn, id, kind, &paths)?;
        // Neither written as nor found to be of the component kind: no event can come of it.
        if !of_kind && before.is_empty() {
            continue;
        }
        watched.push(Watched { id, name, format: format.clone(), kind, hooks: mine, paths, before });
    }
    Ok((!watched.is_empty()).then_some(Watch { repos: watched }))
}

/// The assets of `kind` at `paths` (those that exist).
fn of_kind_at(conn: &mut AnyConnection, repo: i64, kind: &str, paths: &[String]) -> QueryResult<Vec<Asset>> {
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    Ok(crate::db::meta::assets_at(conn, repo, &paths)?.into_iter().filter(|a| a.kind == kind).collect())
}

/// Whether a rewrite of an asset changed what it is (an upsert that only refreshes its time,
/// as a proxy's revalidation does, is no event).
fn changed(before: &Asset, after: &Asset) -> bool {
    NewAsset::from(before.clone()) != NewAsset::from(after.clone())
}

/// After the writes, in the same transaction: compares the watched components' assets with
/// what they were and queues an event per created, updated or deleted asset and component for
/// each webhook that wants it. Returns how many deliveries were queued.
pub fn after_commit(conn: &mut AnyConnection, watch: Watch, initiator: Option<&str>) -> QueryResult<usize> {
    let now = wharf_format::now_millis();
    let mut queued = 0;
    for w in watch.repos {
        let after = of_kind_at(conn, w.id, w.kind, &w.paths)?;
        let before: BTreeMap<&str, &Asset> = w.before.iter().map(|a| (a.path.as_str(), a)).collect();
        let after_by: BTreeMap<&str, &Asset> = after.iter().map(|a| (a.path.as_str(), a)).collect();
        let key = |a: &Asset| {
            w.format.component_of(a).map(|mut k| {
                k.download_path = None;
                k
            })
        };
        let keys_before: BTreeSet<ComponentKey> = w.before.iter().filter_map(key).collect();
        let keys_after: BTreeSet<ComponentKey> = after.iter().filter_map(key).collect();
        // (action, asset) for every asset that changed, in path order.
        let mut asset_events: Vec<(&str, &Asset, ComponentKey)> = Vec::new();
        for p in &w.paths {
            let (action, a) = match (before.get(p.as_str()), after_by.get(p.as_str())) {
                (None, Some(a)) => ("CREATED", *a),
                (Some(b), None) => ("DELETED", *b),
                (Some(b), Some(a)) if changed(b, a) => ("UPDATED", *a),
                _ => continue,
            };
            if let Some(k) = key(a) {
                asset_events.push((action, a, k));
            }
        }
        let mut components: Vec<(&str, &ComponentKey, &Asset)> = Vec::new();
        for (_, a, k) in &asset_events {
            if components.iter().any(|(_, c, _)| *c == k) {
                continue;
            }
            let (was, is) = (keys_before.contains(k), keys_after.contains(k));
            // An asset of the component the writes did not touch is there before and after.
            let others = !(was && is) && {
                let rows = crate::db::meta::component_rows(conn, w.id, w.kind, &k.full_name(), w.format.component_prefix(k))?;
                rows.iter().any(|r| w.paths.binary_search(&r.path).is_err() && key(r).as_ref() == Some(k))
            };
            let action = match (was || others, is || others) {
                (false, true) => "CREATED",
                (true, false) => "DELETED",
                _ => "UPDATED",
            };
            components.push((action, k, a));
        }
        let format = w.format.name();
        for hook in &w.hooks {
            if hook.wants(COMPONENT) {
                for (action, k, a) in &components {
                    let id = crate::http::admin::components::component_id(&w.name, k);
                    let payload = json!({
                        "timestamp": rfc3339_millis(now),
                        "nodeId": super::node(),
                        "initiator": initiator_or_uploader(initiator, a),
                        "repositoryName": w.name,
                        "action": action,
                        "component": { "id": id, "componentId": id, "format": format, "name": k.name, "group": k.group, "version": k.version },
                    });
                    rows::enqueue(conn, hook.id, event_id(COMPONENT), Some(action), &payload.to_string(), now)?;
                    queued += 1;
                }
            }
            if hook.wants(ASSET) {
                for (action, a, _) in &asset_events {
                    let id = crate::http::admin::components::asset_id(&w.name, &a.path);
                    let payload = json!({
                        "timestamp": rfc3339_millis(now),
                        "nodeId": super::node(),
                        "initiator": initiator_or_uploader(initiator, a),
                        "repositoryName": w.name,
                        "action": action,
                        "asset": { "id": id, "assetId": id, "format": format, "name": a.path },
                    });
                    rows::enqueue(conn, hook.id, event_id(ASSET), Some(action), &payload.to_string(), now)?;
                    queued += 1;
                }
            }
        }
    }
    Ok(queued)
}

/// Who made the change: the request's caller (`user/address`) when a request made it;
/// otherwise the uploader the asset records (a proxy's background fill); otherwise `system`
/// (cleanup, tasks).
fn initiator_or_uploader(initiator: Option<&str>, a: &Asset) -> String {
    if let Some(i) = initiator {
        return i.to_string();
    }
    match (a.attributes.get("uploader").and_then(Value::as_str), a.attributes.get("uploader_ip").and_then(Value::as_str)) {
        (Some(u), Some(ip)) => format!("{u}/{ip}"),
        (Some(u), None) => u.to_string(),
        _ => "system".to_string(),
    }
}

/// In the transaction that writes an audit event: queues it for the global webhooks that want
/// `audit` events, and, for a repository created, updated or deleted, a `repository` event for
/// those that want those. Returns how many deliveries were queued.
pub fn on_audit(conn: &mut AnyConnection, e: &AuditEvent, at: i64) -> QueryResult<usize> {
    let hooks: Vec<WebhookRow> = rows::enabled(conn)?.into_iter().filter(|h| h.repository.is_none() && (h.wants(AUDIT) || h.wants(REPOSITORY))).collect();
    if hooks.is_empty() {
        return Ok(0);
    }
    let initiator = format!("{}/{}", e.actor.as_deref().unwrap_or("anonymous"), e.address.as_deref().unwrap_or("unknown"));
    let (domain, kind) = e.action.rsplit_once('.').unwrap_or((e.action.as_str(), ""));
    let mut attributes = serde_json::Map::new();
    if let Some(r) = &e.repository {
        attributes.insert("repository".into(), json!(r));
    }
    if let Some(o) = &e.object {
        attributes.insert("object".into(), json!(o));
    }
    if !e.detail.is_null() {
        attributes.insert("detail".into(), e.detail.clone());
    }
    let audit = json!({
        "timestamp": rfc3339_millis(at),
        "nodeId": super::node(),
        "initiator": initiator,
        "audit": {
            "domain": domain,
            "type": kind,
            // What the event is about, by name: the repository for a repository's own events.
            "context": if domain == "repository" { e.repository.as_deref().or(e.object.as_deref()) } else { e.object.as_deref().or(e.repository.as_deref()) }.unwrap_or(""),
            "attributes": attributes,
        },
    })
    .to_string();
    let repository = repository_event(e).map(|(action, repo)| {
        (action, json!({ "timestamp": rfc3339_millis(at), "nodeId": super::node(), "initiator": initiator, "action": action, "repository": repo }).to_string())
    });
    let mut queued = 0;
    for h in &hooks {
        if h.wants(AUDIT) {
            rows::enqueue(conn, h.id, event_id(AUDIT), Some(&e.action), &audit, at)?;
            queued += 1;
        }
        if let (true, Some((action, payload))) = (h.wants(REPOSITORY), &repository) {
            rows::enqueue(conn, h.id, event_id(REPOSITORY), Some(action), payload, at)?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// A repository created, updated or deleted, as Nexus's `rm:global:repository` says it: the
/// action and `{format, name, type}` (the audit event of a create or update names
/// `format/kind`; that of a delete only the name).
fn repository_event(e: &AuditEvent) -> Option<(&'static str, Value)> {
    let action = match e.action.as_str() {
        "repository.create" => "CREATED",
        "repository.update" => "UPDATED",
        "repository.delete" => "DELETED",
        _ => return None,
    };
    let name = e.repository.clone()?;
    let (format, kind) = match e.object.as_deref().and_then(|o| o.split_once('/')) {
        Some((f, k)) if action != "DELETED" => (Some(f.to_string()), Some(k.to_string())),
        _ => (None, None),
    };
    Some((action, json!({ "format": format, "name": name, "type": kind })))
}
