//! Rows of `repositories` and `blob_stores`.
//!
//! A repository's stored configuration has its secrets (upstream passwords, tokens) sealed with
//! the secret key; the rows returned here carry them in plaintext, so nothing above this module
//! sees a sealed value.

use diesel::prelude::*;
use wharf_format::now_millis;

use super::schema::{blob_stores, blobs, repositories, settings};
use super::{AnyConnection, DbError};
use crate::security::secrets;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = repositories)]
pub struct RepoRow {
    pub id: i64,
    pub name: String,
    pub format: String,
    pub kind: String,
    pub blob_store: String,
    pub config: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub cache_invalidated_at: Option<i64>,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = blob_stores)]
pub struct BlobStoreRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub attributes: String,
    pub created_at: i64,
}

/// Bumped on every configuration change so that every node notices and reloads.
pub const GENERATION_KEY: &str = "config.generation";

fn opened(mut row: RepoRow) -> Result<RepoRow, DbError> {
    row.config = secrets::open_json_text(&row.config, &secrets::repository_location(&row.name))?;
    Ok(row)
}

pub fn list(conn: &mut AnyConnection) -> Result<Vec<RepoRow>, DbError> {
    repositories::table.order(repositories::name.asc()).select(RepoRow::as_select()).load(conn)?.into_iter().map(opened).collect()
}

pub fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<RepoRow>, DbError> {
    repositories::table.filter(repositories::name.eq(name)).select(RepoRow::as_select()).get_result(conn).optional()?.map(opened).transpose()
}

pub fn exists(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(repositories::table.filter(repositories::name.eq(name)).select(repositories::id).get_result::<i64>(conn).optional()?.is_some())
}

fn stored_config(conn: &mut AnyConnection, name: &str) -> Result<Option<String>, DbError> {
    Ok(repositories::table.filter(repositories::name.eq(name)).select(repositories::config).get_result(conn).optional()?)
}

/// Seals the secrets that older versions stored in repository configurations (plaintext, or v1
/// values not bound to their place); how many rows it changed. A row changed meanwhile by someone else is left to its writer (who
/// sealed it). The plaintext is the same, so no node needs to reload.
pub fn seal_stored_secrets(conn: &mut AnyConnection) -> Result<usize, DbError> {
    let rows: Vec<(String, String)> = repositories::table.select((repositories::name, repositories::config)).load(conn)?;
    let mut changed = 0;
    for (name, config) in rows {
        let sealed = secrets::reseal_json_text(&config, &secrets::repository_location(&name))?;
        if sealed != config {
            changed += diesel::update(repositories::table.filter(repositories::name.eq(&name)).filter(repositories::config.eq(&config)))
                .set(repositories::config.eq(&sealed))
                .execute(conn)?;
        }
    }
    Ok(changed)
}

/// Takes credentials out of proxies' `proxy.remoteUrl` (`https://user:password@host/`, which
/// older versions accepted and which GET then showed and logs printed) into
/// `httpClient.authentication`, sealed, where the repository has none (sent with the first
/// request, as the URL's were); a repository that has its own keeps it and loses the URL's.
/// Returns the repositories changed, by name; a row changed meanwhile by someone else is left
/// to its writer (who could not store such a URL).
pub fn move_remote_credentials(conn: &mut AnyConnection) -> Result<Vec<String>, DbError> {
    conn.transaction(|conn| {
        let rows: Vec<(String, String)> = repositories::table.select((repositories::name, repositories::config)).load(conn)?;
        let mut moved = Vec::new();
        for (name, stored) in rows {
            let location = secrets::repository_location(&name);
            let Ok(mut config) = serde_json::from_str::<serde_json::Value>(&secrets::open_json_text(&stored, &location)?) else { continue };
            let Some(credentials) = take_remote_credentials(&mut config) else { continue };
            if config.pointer("/httpClient/authentication").is_none_or(serde_json::Value::is_null) {
                let (username, password) = credentials;
                let auth = serde_json::json!({"type": "username", "username": username, "password": password, "preemptive": true});
                match config.get_mut("httpClient") {
                    Some(serde_json::Value::Object(http)) => {
                        http.insert("authentication".into(), auth);
                    }
                    // `config` is an object: it has proxy.remoteUrl.
                    _ => config["httpClient"] = serde_json::json!({ "authentication": auth }),
                }
            }
            let sealed = secrets::seal_json_text(&config.to_string(), Some(&stored), &location)?;
            let n = diesel::update(repositories::table.filter(repositories::name.eq(&name)).filter(repositories::config.eq(&stored)))
                .set((repositories::config.eq(&sealed), repositories::updated_at.eq(now_millis())))
                .execute(conn)?;
            if n > 0 {
                moved.push(name);
            }
        }
        if !moved.is_empty() {
            bump_generation(conn)?;
        }
        Ok(moved)
    })
}

/// Removes the user and password from `proxy.remoteUrl` and returns them (percent-decoded);
/// `None` when it has none.
fn take_remote_credentials(config: &mut serde_json::Value) -> Option<(String, String)> {
    let remote = config.pointer_mut("/proxy/remoteUrl")?;
    let mut url = url::Url::parse(remote.as_str()?).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let credentials = (percent_decoded(url.username()), percent_decoded(url.password().unwrap_or_default()));
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    // Stored as validation leaves it: without a trailing slash.
    *remote = serde_json::Value::String(url.as_str().trim_end_matches('/').to_string());
    Some(credentials)
}

/// A URL's userinfo part as the text it encodes (`%40` → `@`).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

pub fn insert(conn: &mut AnyConnection, name: &str, format: &str, kind: &str, blob_store: &str, config: &str) -> Result<(), DbError> {
    let now = now_millis();
    let config = &secrets::seal_json_text(config, None, &secrets::repository_location(name))?;
    conn.transaction(|conn| {
        diesel::insert_into(repositories::table)
            .values((
                repositories::name.eq(name),
                repositories::format.eq(format),
                repositories::kind.eq(kind),
                repositories::blob_store.eq(blob_store),
                repositories::config.eq(config),
                repositories::created_at.eq(now),
                repositories::updated_at.eq(now),
            ))
            .execute(conn)?;
        bump_generation(conn)
    })
}

pub fn update(conn: &mut AnyConnection, name: &str, blob_store: &str, config: &str) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let old = stored_config(conn, name)?;
        let config = &secrets::seal_json_text(config, old.as_deref(), &secrets::repository_location(name))?;
        let n = diesel::update(repositories::table.filter(repositories::name.eq(name)))
            .set((repositories::blob_store.eq(blob_store), repositories::config.eq(config), repositories::updated_at.eq(now_millis())))
            .execute(conn)?;
        bump_generation(conn)?;
        Ok(n == 1)
    })
}

/// Marks what the repositories `names` cached before `at` as due for the upstream again, and
/// tells every node (the generation reopens them with the new time).
pub fn invalidate_cache(conn: &mut AnyConnection, names: &[String], at: i64) -> Result<(), DbError> {
    diesel::update(repositories::table.filter(repositories::name.eq_any(names))).set(repositories::cache_invalidated_at.eq(at)).execute(conn)?;
    bump_generation(conn)
}

/// How a repository's deletion went ([`delete`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Deletion {
    Missing,
    /// Nothing changed; the message says what stands in the way.
    Refused(String),
    Done(Unnamed),
}

/// What named the deleted repository and went with it: left behind, each would take up a
/// repository created later under the same name (a group would serve it, a cleanup task
/// would delete from it, a webhook would report it).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unnamed {
    /// Groups it was a member of, with their format (Nexus takes a deleted repository out of
    /// every group).
    pub groups: Vec<(String, String)>,
    /// Tasks scoped to it (`repositoryName`), deleted with their run history.
    pub tasks: Vec<String>,
    /// Webhooks scoped to it, deleted with their pending deliveries.
    pub webhooks: Vec<String>,
}

/// Deletes the repository (its assets and upload sessions go by cascade) and, in the same
/// transaction, what names it ([`Unnamed`]). Refused, with nothing changed, while it is the
/// only member of a group (a group needs one) or a task scoped to it runs.
pub fn delete(conn: &mut AnyConnection, name: &str) -> Result<Deletion, DbError> {
    conn.transaction(|conn| {
        if !exists(conn, name)? {
            return Ok(Deletion::Missing);
        }
        let mut unnamed = Unnamed::default();
        let mut groups = Vec::new();
        let stored: Vec<(String, String, String)> = repositories::table
            .filter(repositories::kind.eq("group"))
            .order(repositories::name.asc())
            .select((repositories::name, repositories::format, repositories::config))
            .load(conn)?;
        for (group, format, config) in stored {
            // Member names are never sealed: the stored text is edited as it is.
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&config) else { continue };
            let Some(g) = v.get_mut("group").and_then(serde_json::Value::as_object_mut) else { continue };
            let Some(members) = g.get_mut("memberNames").and_then(serde_json::Value::as_array_mut) else { continue };
            if !members.iter().any(|m| m.as_str() == Some(name)) {
                continue;
            }
            if members.len() == 1 {
                return Ok(Deletion::Refused(format!(
                    "repository {name} is the only member of group {group}: delete the group or give it another member first"
                )));
            }
            members.retain(|m| m.as_str() != Some(name));
            if g.get("writableMember").and_then(serde_json::Value::as_str) == Some(name) {
                g.insert("writableMember".into(), serde_json::Value::Null);
            }
            groups.push((group, format, v.to_string()));
        }
        let now = now_millis();
        let scoped = super::tasks::scoped_to(conn, "repositoryName", name)?;
        // Every refusal before the first change: a refusal commits like any other answer.
        if let Some(t) = scoped.iter().find(|t| t.running(now)) {
            return Ok(Deletion::Refused(format!(
                "task {} is running on repository {name}: stop it first (POST /service/rest/v1/tasks/{}/stop)",
                t.name, t.id
            )));
        }
        for t in scoped {
            super::tasks::delete(conn, &t.id)?;
            unnamed.tasks.push(t.name);
        }
        for (group, format, config) in groups {
            diesel::update(repositories::table.filter(repositories::name.eq(&group)))
                .set((repositories::config.eq(&config), repositories::updated_at.eq(now)))
                .execute(conn)?;
            unnamed.groups.push((group, format));
        }
        for w in super::webhooks::list(conn)?.into_iter().filter(|w| w.repository.as_deref() == Some(name)) {
            super::webhooks::delete(conn, &w.name)?;
            unnamed.webhooks.push(w.name);
        }
        diesel::delete(repositories::table.filter(repositories::name.eq(name))).execute(conn)?;
        bump_generation(conn)?;
        Ok(Deletion::Done(unnamed))
    })
}

/// The format and type of each of `names` that is a repository, by name, read in the caller's
/// transaction: what a request checked against the loaded configuration is checked again where
/// it is stored, so a repository deleted or re-created meanwhile is not named by the new row.
pub fn kinds(conn: &mut AnyConnection, names: &[&str]) -> Result<std::collections::HashMap<String, (String, String)>, DbError> {
    if names.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, String, String)> =
        repositories::table.filter(repositories::name.eq_any(names)).select((repositories::name, repositories::format, repositories::kind)).load(conn)?;
    Ok(rows.into_iter().map(|(n, f, k)| (n, (f, k))).collect())
}

/// Why `field` cannot name repository `name` (one of `format`, when given), read in the caller's
/// transaction ([`kinds`]); `None` when it can.
pub fn unfit(conn: &mut AnyConnection, field: &str, name: &str, format: Option<&str>) -> Result<Option<wharf_format::ConfigError>, DbError> {
    Ok(match (kinds(conn, &[name])?.remove(name), format) {
        (None, _) => Some(wharf_format::ConfigError::new(field, format!("repository {name} does not exist"))),
        (Some((found, _)), Some(want)) if found != want => Some(wharf_format::ConfigError::new(field, format!("{name} is a {found} repository, not {want}"))),
        _ => None,
    })
}

pub fn list_blob_stores(conn: &mut AnyConnection) -> Result<Vec<BlobStoreRow>, DbError> {
    Ok(blob_stores::table.order(blob_stores::name.asc()).select(BlobStoreRow::as_select()).load(conn)?)
}

pub fn insert_blob_store(conn: &mut AnyConnection, name: &str, kind: &str, attributes: &str) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::insert_into(blob_stores::table)
            .values((blob_stores::name.eq(name), blob_stores::kind.eq(kind), blob_stores::attributes.eq(attributes), blob_stores::created_at.eq(now_millis())))
            .execute(conn)?;
        bump_generation(conn)
    })
}

pub fn update_blob_store(conn: &mut AnyConnection, name: &str, attributes: &str) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let n = diesel::update(blob_stores::table.filter(blob_stores::name.eq(name))).set(blob_stores::attributes.eq(attributes)).execute(conn)?;
        bump_generation(conn)?;
        Ok(n == 1)
    })
}

/// Deletes the store's row and its ledger. The files go after the transaction commits; the
/// caller reserves the name and directory in the same transaction until they are gone
/// (`lifecycle::store_removal::reserve`).
pub fn delete_blob_store(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let n = diesel::delete(blob_stores::table.filter(blob_stores::name.eq(name))).execute(conn)?;
        diesel::delete(blobs::table.filter(blobs::blob_store.eq(name))).execute(conn)?;
        bump_generation(conn)?;
        Ok(n == 1)
    })
}

/// The repositories on a blob store, in name order.
pub fn repos_using_blob_store(conn: &mut AnyConnection, name: &str) -> Result<Vec<String>, DbError> {
    Ok(repositories::table.filter(repositories::blob_store.eq(name)).order(repositories::name.asc()).select(repositories::name).load(conn)?)
}

/// One atomic increment: concurrent changes (on one node or several) each get their own number,
/// which is what lets a reload tell a newer view from an older one.
fn bump_generation(conn: &mut AnyConnection) -> Result<(), DbError> {
    let n = diesel::sql_query(format!("UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = '{GENERATION_KEY}'")).execute(conn)?;
    if n == 0 {
        diesel::insert_into(settings::table).values((settings::key.eq(GENERATION_KEY), settings::value.eq("1"))).execute(conn)?;
    }
    Ok(())
}

pub fn generation(conn: &mut AnyConnection) -> Result<i64, DbError> {
    let v: Option<String> = settings::table.find(GENERATION_KEY).select(settings::value).get_result(conn).optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn credentials_come_out_of_the_remote_url_decoded_and_the_rest_of_it_stays() {
        let mut c = json!({"proxy": {"remoteUrl": "https://mirror%40corp:p%3Ass@registry.example:8443/v2", "contentMaxAge": 5}});
        assert_eq!(super::take_remote_credentials(&mut c), Some(("mirror@corp".to_string(), "p:ss".to_string())));
        assert_eq!(c, json!({"proxy": {"remoteUrl": "https://registry.example:8443/v2", "contentMaxAge": 5}}));
        let mut root = json!({"proxy": {"remoteUrl": "http://token@up.example/"}});
        assert_eq!(super::take_remote_credentials(&mut root), Some(("token".to_string(), String::new())));
        assert_eq!(root["proxy"]["remoteUrl"], "http://up.example");
        let mut clean = json!({"proxy": {"remoteUrl": "https://registry.example/@scope"}});
        assert_eq!(super::take_remote_credentials(&mut clean), None);
        assert_eq!(super::take_remote_credentials(&mut json!({"group": {}})), None);
    }
}
