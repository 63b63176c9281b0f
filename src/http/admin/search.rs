//! Search and browse over every repository the caller may read, in Nexus's shapes:
//! `/service/rest/v1/search` (components), `/search/assets`, `/search/assets/download` (a 302 to
//! the one matching asset, or with `sort` to the first: how scripts fetch "the latest"), the
//! components list of one repository, and wharf's `/search/names` (the browse page's first
//! level: one row per component name with its version count).
//!
//! Paging is server-side. Without `sort`, a page walks the repositories in name order and each
//! one a few component names at a time over the `assets_by_component` index (see
//! `SqlMeta::component_names`), so a page costs about its own rows however large the repository;
//! the continuation token is where the walk stopped. With `sort`, every match is gathered (at
//! most [`SORT_MAX`]), sorted, and paged by offset.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wharf_format::{Access, Action, Asset, ComponentKey, ConfigError, Format, Kind, RepoRef};

use super::components::render;
use super::AdminError;
use crate::http::mount::origin;
use crate::state::AppState;

/// Components per page of search (Nexus's page size).
const PAGE: usize = 50;
/// Component names read from the database at a time while walking a repository.
const NAMES_CHUNK: i64 = 64;
/// The most matches a sorted search gathers; beyond it the caller narrows the search.
pub const SORT_MAX: usize = 20_000;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The query parameters search understands; any other is refused by name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Params {
    q: Option<String>,
    repository: Option<String>,
    format: Option<String>,
    group: Option<String>,
    name: Option<String>,
    version: Option<String>,
    prerelease: Option<bool>,
    sha256: Option<String>,
    sort: Option<String>,
    direction: Option<String>,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
    #[serde(rename = "docker.imageName")]
    docker_image_name: Option<String>,
    #[serde(rename = "docker.imageTag")]
    docker_image_tag: Option<String>,
    #[serde(rename = "npm.scope")]
    npm_scope: Option<String>,
}

impl Params {
    /// The request's query, any parameter search does not know refused by name.
    fn of(req: &HttpRequest) -> Result<Params, AdminError> {
        serde_urlencoded::from_str(req.query_string()).map_err(|e| invalid("query", e.to_string()))
    }

    pub fn of_repository(repository: String, continuation_token: Option<String>) -> Params {
        Params { repository: Some(repository), continuation_token, ..Params::default() }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum SortBy {
    Name,
    Group,
    Version,
    Repository,
}

/// What a search asks for, checked.
#[derive(Clone)]
struct Query {
    terms: Vec<String>,
    repository: Option<String>,
    format: Option<String>,
    group: Option<Glob>,
    name: Option<Glob>,
    version: Option<Glob>,
    prerelease: Option<bool>,
    sha256: Option<String>,
    sort: Option<(SortBy, bool)>,
    cursor: Cursor,
}

fn invalid(field: &str, why: impl Into<String>) -> AdminError {
    AdminError::Invalid(ConfigError::new(field, why))
}

impl Query {
    fn parse(p: Params) -> Result<Query, AdminError> {
        let either = |a: Option<String>, b: Option<String>, field: &str| match (a, b) {
            (Some(_), Some(_)) => Err(invalid(field, "is given twice (with its format-specific name)")),
            (a, b) => Ok(a.or(b).filter(|s| !s.is_empty())),
        };
        let name = either(p.name, p.docker_image_name, "name")?;
        let version = either(p.version, p.docker_image_tag, "version")?;
        let scope = p.npm_scope.filter(|s| !s.is_empty()).map(|s| if s.starts_with('@') { s } else { format!("@{s}") });
        let group = either(p.group, scope, "group")?;
        let sort = match p.sort.as_deref() {
            None | Some("") => None,
            Some(s) => {
                let by = match s {
                    "name" => SortBy::Name,
                    "group" => SortBy::Group,
                    "version" => SortBy::Version,
                    "repository" => SortBy::Repository,
                    other => return Err(invalid("sort", format!("{other:?} is not one of name, group, version, repository"))),
                };
                // Nexus's default: ascending, but newest first for versions.
                let descending = match p.direction.as_deref() {
                    None | Some("") => by == SortBy::Version,
                    Some("asc") => false,
                    Some("desc") => true,
                    Some(other) => return Err(invalid("direction", format!("{other:?} is not asc or desc"))),
                };
                Some((by, descending))
            }
        };
        if sort.is_none() && p.direction.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(invalid("direction", "needs sort"));
        }
        let sha256 = p.sha256.filter(|s| !s.is_empty()).map(|s| s.trim_start_matches("sha256:").to_ascii_lowercase());
        if sha256.as_deref().is_some_and(|s| s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(invalid("sha256", "is not a sha256 digest (64 hex digits)"));
        }
        let cursor = match p.continuation_token.as_deref().filter(|t| !t.is_empty()) {
            None => Cursor::default(),
            Some(t) => Cursor::decode(t).ok_or_else(|| invalid("continuationToken", "is not one this server gave"))?,
        };
        Ok(Query {
            terms: p.q.unwrap_or_default().split_whitespace().map(str::to_lowercase).collect(),
            repository: p.repository.filter(|s| !s.is_empty()),
            format: p.format.filter(|s| !s.is_empty()),
            group: group.map(|g| Glob::new(&g)),
            name: name.map(|n| Glob::new(&n)),
            version: version.map(|v| Glob::new(&v)),
            prerelease: p.prerelease,
            sha256,
            sort,
            cursor,
        })
    }

    fn matches(&self, key: &ComponentKey, assets: &[Asset], format: &dyn Format) -> bool {
        let full = key.full_name();
        let (full_l, version_l) = (full.to_lowercase(), key.version.to_lowercase());
        self.name.as_ref().is_none_or(|g| g.matches(&key.name) || g.matches(&full))
            && self.group.as_ref().is_none_or(|g| key.group.as_deref().is_some_and(|k| g.matches(k)))
            && self.version.as_ref().is_none_or(|g| g.matches(&key.version))
            // A keyword is part of the name, or the start of the version ("2.0" is not 1.2.0).
            && self.terms.iter().all(|t| full_l.contains(t.as_str()) || version_l.starts_with(t.as_str()))
            && self.prerelease.is_none_or(|want| format.versions().and_then(|v| v.is_prerelease(&key.version)) == Some(want))
            && self.sha256.as_ref().is_none_or(|d| assets.iter().any(|a| asset_sha256(a) == Some(d.as_str())))
    }

    /// A lowercase LIKE pattern every matching component name satisfies (a superset: the
    /// exact test is `matches`), so the database skips the others.
    fn like(&self) -> Option<String> {
        let g = self.name.as_ref()?;
        Some(format!("%{}", g.like()))
    }
}

fn asset_sha256(a: &Asset) -> Option<&str> {
    a.digest.as_deref().and_then(|d| d.strip_prefix("sha256:"))
}

/// A pattern where `*` stands for any run of characters; case-insensitive.
#[derive(Clone)]
struct Glob(Vec<String>);

impl Glob {
    fn new(pattern: &str) -> Glob {
        Glob(pattern.to_lowercase().split('*').map(str::to_string).collect())
    }

    fn matches(&self, s: &str) -> bool {
        let s = s.to_lowercase();
        let parts = &self.0;
        if parts.len() == 1 {
            return s == parts[0];
        }
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if !s.starts_with(first.as_str()) || !s[first.len()..].ends_with(last.as_str()) {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid.as_str()) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }

    fn like(&self) -> String {
        let escape = |p: &str| p.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        self.0.iter().map(|p| escape(p)).collect::<Vec<_>>().join("%")
    }
}

/// Where a page stopped: in repository `r`, at component name `n`, after `s` of its matching
/// components (unsorted walk); or after `o` matches (sorted).
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default)]
    s: usize,
    #[serde(default)]
    o: usize,
}

impl Cursor {
    fn encode(&self) -> String {
        B64.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Option<Cursor> {
        serde_json::from_slice(&B64.decode(token).ok()?).ok()
    }
}

/// One matching component.
pub struct Found {
    pub repo: RepoRef,
    pub key: ComponentKey,
    pub assets: Vec<Asset>,
}

/// The repositories a search covers, in name order: those the caller may read, narrowed by
/// `repository` (a group stands for its members) and `format`.
fn repositories(state: &AppState, access: &Access, q: &Query) -> Result<Vec<RepoRef>, AdminError> {
    let snap = state.registry.snapshot();
    let readable = |r: &RepoRef| access.allows(&r.config, Action::Read, "*");
    let mut names: Vec<String> = match &q.repository {
        None => snap.repos.keys().cloned().collect(),
        Some(name) => {
            let Some(r) = snap.repos.get(name).filter(|r| readable(r)) else {
                return Err(AdminError::missing("repository", name));
            };
            let name = r.config.name.clone();
            snap.with_members(&name).into_iter().map(|m| m.config.name.clone()).collect()
        }
    };
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .filter_map(|n| snap.repos.get(&n).cloned())
        .filter(|r| r.config.kind != Kind::Group && readable(r))
        .filter(|r| q.format.as_ref().is_none_or(|f| &r.config.format == f))
        .collect())
}

/// What a walk gathers per component name: `Each` component, or one `Names` row per name.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Each,
    Names,
}

/// Walks `repos` from `q.cursor` and returns up to `want` matches and where the next page
/// starts (only if there is one). In `Names` mode each name's matches come as one `Found`
/// per name whose key is the name's first component and whose assets are empty, and the
/// count of its matching components is `counts[i]`.
async fn walk(state: &AppState, repos: &[RepoRef], q: &Query, want: usize, unit: Unit) -> Result<(Vec<(Found, usize)>, Option<Cursor>), AdminError> {
    let mut out = Vec::new();
    let start = repos.iter().position(|r| q.cursor.r.as_ref().is_none_or(|c| &r.config.name >= c)).unwrap_or(repos.len());
    for r in &repos[start..] {
        let Some(format) = state.format(&r.config.format) else { continue };
        let Some(kind) = format.component_kind() else { continue };
        let resuming = q.cursor.r.as_ref() == Some(&r.config.name);
        let mut from = if resuming { q.cursor.n.clone().map(|n| (n, true)) } else { None };
        loop {
            let names = state.meta.component_names(r.config.id, kind, from.clone(), q.like(), NAMES_CHUNK).await.map_err(internal)?;
            let Some(last) = names.last().cloned() else { break };
            let assets = state.meta.component_assets(r.config.id, kind, names.clone()).await.map_err(internal)?;
            let mut by_name: BTreeMap<String, BTreeMap<ComponentKey, Vec<Asset>>> = BTreeMap::new();
            for a in assets {
                let Some(column) = a.component.clone() else { continue };
                if let Some(mut key) = format.component_of(&a) {
                    key.download_path = None;
                    by_name.entry(column).or_default().entry(key).or_default().push(a);
                }
            }
            for (column, comps) in by_name {
                let mut comps: Vec<(ComponentKey, Vec<Asset>)> = comps.into_iter().filter(|(k, a)| q.matches(k, a, format.as_ref())).collect();
                comps.sort_by(|a, b| version_order(format.as_ref(), &a.0.version, &b.0.version));
                let skip = if resuming && q.cursor.n.as_ref() == Some(&column) { q.cursor.s } else { 0 };
                if unit == Unit::Names {
                    if skip > 0 || comps.is_empty() {
                        continue;
                    }
                    if out.len() == want {
                        return Ok((out, Some(Cursor { r: Some(r.config.name.clone()), n: Some(column), s: 0, o: 0 })));
                    }
                    let count = comps.len();
                    let (key, _) = comps.swap_remove(0);
                    out.push((Found { repo: r.clone(), key, assets: Vec::new() }, count));
                    continue;
                }
                for (i, (key, assets)) in comps.into_iter().enumerate().skip(skip) {
                    if out.len() == want {
                        return Ok((out, Some(Cursor { r: Some(r.config.name.clone()), n: Some(column), s: i, o: 0 })));
                    }
                    out.push((Found { repo: r.clone(), key, assets }, 1));
                }
            }
            from = Some((last, false));
        }
    }
    Ok((out, None))
}

/// Versions in the format's order where it has one and both parse, else as text.
fn version_order(format: &dyn Format, a: &str, b: &str) -> Ordering {
    format.versions().and_then(|v| v.compare(a, b)).unwrap_or_else(|| a.cmp(b))
}

fn internal(e: wharf_format::MetaError) -> AdminError {
    AdminError::Internal(Box::new(e))
}

/// The caller's access. Anonymous callers search what the anonymous role may read (scripts
/// fetching "the latest" where an admin granted that); with nothing to read they are asked to
/// sign in.
async fn searcher(state: &AppState, req: &HttpRequest) -> Result<Access, AdminError> {
    let p = super::caller(state, req).await?;
    if p.user.is_none() && !state.registry.snapshot().repos.values().any(|r| p.access.allows(&r.config, Action::Read, "*")) {
        return Err(AdminError::Unauthenticated);
    }
    Ok(p.access)
}

/// One page of matching components and the token of the next.
pub async fn page(state: &AppState, access: &Access, p: Params, size: usize) -> Result<(Vec<Found>, Option<String>), AdminError> {
    let q = Query::parse(p)?;
    let repos = repositories(state, access, &q)?;
    let Some((by, descending)) = q.sort else {
        let (found, next) = walk(state, &repos, &q, size, Unit::Each).await?;
        return Ok((found.into_iter().map(|(f, _)| f).collect(), next.map(|c| c.encode())));
    };
    let all = sorted(state, &repos, &q, by, descending).await?;
    let start = q.cursor.o.min(all.len());
    let next = (start + size < all.len()).then(|| Cursor { o: start + size, ..Default::default() }.encode());
    Ok((all.into_iter().skip(start).take(size).collect(), next))
}

/// Every match, sorted; refused beyond [`SORT_MAX`].
async fn sorted(state: &AppState, repos: &[RepoRef], q: &Query, by: SortBy, descending: bool) -> Result<Vec<Found>, AdminError> {
    let from_start = Query { cursor: Cursor::default(), ..q.clone() };
    let (found, more) = walk(state, repos, &from_start, SORT_MAX, Unit::Each).await?;
    if more.is_some() {
        return Err(invalid("sort", format!("more than {SORT_MAX} components match; narrow the search (repository, name, version) to sort them")));
    }
    let mut all: Vec<Found> = found.into_iter().map(|(f, _)| f).collect();
    let formats: BTreeMap<String, std::sync::Arc<dyn Format>> =
        repos.iter().filter_map(|r| Some((r.config.format.clone(), state.format(&r.config.format)?))).collect();
    all.sort_by(|a, b| {
        let by_version = || {
            if a.repo.config.format == b.repo.config.format {
                version_order(formats[&a.repo.config.format].as_ref(), &a.key.version, &b.key.version)
            } else {
                a.key.version.cmp(&b.key.version)
            }
        };
        let order = match by {
            SortBy::Name => a.key.full_name().cmp(&b.key.full_name()).then_with(by_version),
            SortBy::Group => a.key.group.cmp(&b.key.group).then_with(|| a.key.name.cmp(&b.key.name)).then_with(by_version),
            SortBy::Version => by_version().then_with(|| a.key.full_name().cmp(&b.key.full_name())),
            SortBy::Repository => a.repo.config.name.cmp(&b.repo.config.name).then_with(|| a.key.full_name().cmp(&b.key.full_name())).then_with(by_version),
        };
        let order = order.then_with(|| a.repo.config.name.cmp(&b.repo.config.name));
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    Ok(all)
}

fn render_found(state: &AppState, f: &Found, origin: &str) -> Value {
    let format = state.format(&f.repo.config.format).expect("a searched repository's format is in this build");
    render(&f.repo, &f.key, &f.assets, format.as_ref(), origin)
}

/// `GET /service/rest/v1/search`: matching components, a page at a time.
pub async fn components(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let access = searcher(&state, &req).await?;
    let (found, next) = page(&state, &access, Params::of(&req)?, PAGE).await?;
    let origin = origin(&req);
    let items: Vec<Value> = found.iter().map(|f| render_found(&state, f, &origin)).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": next })))
}

/// The assets of matching components; with `sha256`, only the assets that have it.
fn assets_of(state: &AppState, found: &[Found], sha256: Option<&str>, origin: &str) -> Vec<Value> {
    found
        .iter()
        .flat_map(|f| {
            let keep: Vec<&Asset> = f.assets.iter().filter(|a| sha256.is_none_or(|d| asset_sha256(a) == Some(d))).collect();
            let mut c = render_found(state, f, origin);
            let rendered = c["assets"].as_array_mut().map(std::mem::take).unwrap_or_default();
            rendered.into_iter().zip(f.assets.iter()).filter(|(_, a)| keep.iter().any(|k| k.path == a.path)).map(|(v, _)| v).collect::<Vec<_>>()
        })
        .collect()
}

fn sha256_param(p: &Params) -> Option<String> {
    p.sha256.as_deref().map(|s| s.trim_start_matches("sha256:").to_ascii_lowercase())
}

/// `GET /service/rest/v1/search/assets`: the assets of matching components.
pub async fn assets(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let access = searcher(&state, &req).await?;
    let p = Params::of(&req)?;
    let sha = sha256_param(&p);
    let (found, next) = page(&state, &access, p, PAGE).await?;
    let items = assets_of(&state, &found, sha.as_deref(), &origin(&req));
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": next })))
}

/// `GET /service/rest/v1/search/assets/download`: a 302 to the one matching asset; with
/// `sort`, to the first in that order (`sort=version` gives the newest).
pub async fn download(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let access = searcher(&state, &req).await?;
    let p = Params::of(&req)?;
    let sha = sha256_param(&p);
    let sorted = p.sort.as_deref().is_some_and(|s| !s.is_empty());
    let (found, _) = page(&state, &access, p, if sorted { 1 } else { 2 }).await?;
    let items = assets_of(&state, &found, sha.as_deref(), &origin(&req));
    let url = match items.as_slice() {
        [] => return Err(AdminError::NotFound("no asset matches the search".into())),
        [one] => one,
        [first, ..] if sorted => first,
        many => {
            return Err(invalid(
                "sort",
                format!(
                    "the search matches {}{} assets; narrow it or give sort (sort=version picks the newest)",
                    many.len(),
                    if many.len() >= 2 { " or more" } else { "" }
                ),
            ))
        }
    };
    match url["downloadUrl"].as_str() {
        Some(u) => Ok(HttpResponse::Found().insert_header((actix_web::http::header::LOCATION, u.to_string())).finish()),
        None => Err(AdminError::NotFound(format!("asset {} has no download URL (pull it with its client)", url["path"].as_str().unwrap_or("")))),
    }
}

/// `GET /service/rest/v1/search/names`: one row per matching component name, with how many
/// of its components match (browse's first level).
pub async fn names(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    let access = searcher(&state, &req).await?;
    let q = Query::parse(Params::of(&req)?)?;
    if q.sort.is_some() {
        return Err(invalid("sort", "names come in name order"));
    }
    let repos = repositories(&state, &access, &q)?;
    let (found, next) = walk(&state, &repos, &q, PAGE, Unit::Names).await?;
    let items: Vec<Value> = found
        .iter()
        .map(|(f, count)| json!({ "repository": f.repo.config.name, "format": f.repo.config.format, "group": f.key.group, "name": f.key.name, "components": count }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "continuationToken": next.map(|c| c.encode()) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names_with_stars_anywhere() {
        let g = |p: &str, s: &str| Glob::new(p).matches(s);
        assert!(g("flask", "Flask"));
        assert!(!g("flask", "flask-login"));
        assert!(g("flask*", "flask-login"));
        assert!(g("*login", "flask-login"));
        assert!(g("f*k*n", "flask-login"));
        assert!(!g("f*z*n", "flask-login"));
        assert!(g("*", ""));
        assert!(!g("ab*ba", "aba"));
        assert_eq!(Glob::new("a_b%*c").like(), "a\\_b\\%%c");
    }

    #[test]
    fn tokens_round_trip_and_strangers_are_refused() {
        let c = Cursor { r: Some("r".into()), n: Some("n/x".into()), s: 3, o: 0 };
        let back = Cursor::decode(&c.encode()).unwrap();
        assert_eq!((back.r.as_deref(), back.n.as_deref(), back.s), (Some("r"), Some("n/x"), 3));
        assert!(Cursor::decode("12").is_none());
    }
}
