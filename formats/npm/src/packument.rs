//! Packuments (a package's document) as clients receive them: full (`application/json`) or
//! abbreviated (`application/vnd.npm.install-v1+json`, what `npm install` asks for), with every
//! `dist.tarball` pointing at this repository as the client reached it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use wharf_format::proxy::Join;
use wharf_format::{Outcome, SingleFlight};

use crate::error::NpmError;
use crate::raw_json::{self, ObjectWriter};

pub const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// The fields of a version that the abbreviated form keeps (npm's registry documentation).
const ABBREVIATED_FIELDS: &[&str] = &[
    "name",
    "version",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bin",
    "directories",
    "engines",
    "dist",
    "deprecated",
    "_hasShrinkwrap",
    "hasInstallScript",
    "os",
    "cpu",
    "funding",
    "license",
    "acceptDependencies",
    "libc",
];

pub fn wants_abbreviated(req: &HttpRequest) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(ABBREVIATED))
}

/// The file name at the end of a stored `dist.tarball` (a file name, or an upstream URL).
pub fn tarball_file(stored: &str) -> &str {
    stored.rsplit('/').next().unwrap_or(stored)
}

/// A package's document as stored, read in parts ([`crate::raw_json`]): never built whole as
/// values, which took about 20 times its size per request (a 20 MiB packument from the public
/// registry, one client: a peak of 445 MB). For a hosted registry it knows which tarballs are
/// present: a version whose tarball is gone (deleted through the components API) is left out,
/// and so are the tags that name it.
#[derive(Clone)]
pub struct Packument {
    bytes: Bytes,
    present: Option<Arc<HashSet<String>>>,
}

/// What a part of the document becomes in a rendering.
enum Part<'a> {
    Raw(&'a RawValue),
    Versions,
    Tags,
}

impl Packument {
    /// The document stored as `bytes`, which must be a JSON object.
    pub fn stored(bytes: Bytes) -> Result<Packument, serde_json::Error> {
        raw_json::document(&bytes)?;
        Ok(Packument { bytes, present: None })
    }

    /// The document as a hosted registry shows it, with only the versions whose tarball file is
    /// in `files`; `None` when that leaves no version.
    pub fn with_files_present(self, files: HashSet<String>) -> Option<Packument> {
        let doc = Packument { present: Some(Arc::new(files)), ..self };
        let top = doc.top();
        let empty = matches!(doc.versions(&top), Some(v) if v.is_empty());
        drop(top);
        (!empty).then_some(doc)
    }

    /// Whether `versions` is absent or an object (what a document from an upstream must have).
    pub fn versions_is_object(&self) -> bool {
        self.top().get("versions").is_none_or(|v| raw_json::members(v).is_some())
    }

    /// The stored document's size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The document as stored.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    fn top(&self) -> BTreeMap<String, &RawValue> {
        // Checked when it was made.
        raw_json::document(&self.bytes).unwrap_or_default()
    }

    /// The versions shown, in version-string order; `None` when the document has no versions
    /// object.
    fn versions<'a>(&self, top: &BTreeMap<String, &'a RawValue>) -> Option<BTreeMap<String, &'a RawValue>> {
        let mut versions = raw_json::members(top.get("versions")?)?;
        if let Some(present) = &self.present {
            versions.retain(|_, m| tarball_of(m).is_some_and(|t| present.contains(tarball_file(&t))));
        }
        Some(versions)
    }

    /// The dist-tags shown: as stored; for a hosted registry without those that name a version
    /// left out, and `latest` the newest version shown when its own is gone.
    fn tags(&self, top: &BTreeMap<String, &RawValue>, versions: Option<&BTreeMap<String, &RawValue>>) -> Value {
        let stored = raw_json::value(top.get("dist-tags").copied());
        if self.present.is_none() {
            return stored.unwrap_or_else(|| Value::Object(Map::new()));
        }
        let tags = match stored {
            Some(Value::Object(t)) => t,
            _ => Map::new(),
        };
        let shown: BTreeSet<String> = versions.map(|vs| vs.keys().cloned().collect()).unwrap_or_default();
        let times = top.get("time").and_then(|t| raw_json::members(t)).unwrap_or_default();
        let time = |v: &str| times.get(v).and_then(|t| serde_json::from_str::<String>(t.get()).ok()).unwrap_or_default();
        Value::Object(retained_tags(tags, &shown, time))
    }

    /// The dist-tags a client sees.
    pub fn dist_tags(&self) -> Value {
        let top = self.top();
        self.tags(&top, self.versions(&top).as_ref())
    }

    /// A top-level member as a value (for the small ones: maintainers, a name).
    pub fn member(&self, key: &str) -> Option<Value> {
        raw_json::value(self.top().get(key).copied())
    }

    /// Whether a version shown has tarball `file`.
    pub fn lists_tarball(&self, file: &str) -> bool {
        self.manifest_raw(file, |_| ()).is_some()
    }

    /// The stored manifest of the version shown whose tarball is `file`.
    pub fn manifest_of(&self, file: &str) -> Option<Value> {
        self.manifest_raw(file, |m| raw_json::value(Some(m))).flatten()
    }

    fn manifest_raw<T>(&self, file: &str, then: impl FnOnce(&RawValue) -> T) -> Option<T> {
        let top = self.top();
        let versions = self.versions(&top)?;
        let found = versions.values().find(|m| tarball_of(m).is_some_and(|t| tarball_file(&t) == file))?;
        Some(then(found))
    }

    /// The searchable fields ([`crate::search::fields`]), from the parts they are made of.
    pub fn search_fields(&self, name: &str) -> Value {
        let latest = self.dist_tags().get("latest").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut small = self.excerpt(&latest, &["description", "keywords", "maintainers"]);
        // The latest shown (a hosted registry's may not be the stored one).
        small["dist-tags"] = serde_json::json!({ "latest": latest });
        crate::search::fields(name, &small)
    }

    /// A small document with the parts that concern `version`, as values: the dist-tags, that
    /// version's manifest and time, and the top-level members `keys` (as stored: a hosted
    /// registry's filter does not apply).
    pub fn excerpt(&self, version: &str, keys: &[&str]) -> Value {
        let top = self.top();
        let mut small = Map::new();
        for key in keys {
            if let Some(v) = raw_json::value(top.get(*key).copied()) {
                small.insert(key.to_string(), v);
            }
        }
        let manifest = top.get("versions").and_then(|vs| raw_json::member(vs, version));
        let time = top.get("time").and_then(|t| raw_json::member(t, version));
        small.insert("dist-tags".into(), raw_json::value(top.get("dist-tags").copied()).unwrap_or(Value::Null));
        small.insert("versions".into(), serde_json::json!({ version: raw_json::value(manifest) }));
        small.insert("time".into(), serde_json::json!({ version: raw_json::value(time) }));
        Value::Object(small)
    }

    /// One version's manifest for a client (`wanted`: a version or a tag); `None` when not shown.
    pub fn version(&self, wanted: &str, base: &str) -> Option<Vec<u8>> {
        let top = self.top();
        let versions = self.versions(&top)?;
        let tags = self.tags(&top, Some(&versions));
        let version = tags.get(wanted).and_then(Value::as_str).unwrap_or(wanted);
        let manifest = versions.get(version)?;
        let mut out = Vec::with_capacity(manifest.get().len() + 256);
        write_manifest(&mut out, manifest, &name_of(&top), base, false);
        Some(out)
    }

    /// The document for a client, full or abbreviated, with every `dist.tarball` pointing at
    /// `base`. Written as it is read: it holds the stored bytes and the rendering, not a tree
    /// of values.
    pub fn render(&self, base: &str, abbreviated: bool) -> Vec<u8> {
        let top = self.top();
        let name = name_of(&top);
        let versions = self.versions(&top).unwrap_or_default();
        let mut out = Vec::with_capacity(if abbreviated { self.bytes.len() / 2 } else { self.bytes.len() + self.bytes.len() / 8 });
        let write_versions = |out: &mut Vec<u8>| {
            let mut w = ObjectWriter::new(out);
            for (v, manifest) in &versions {
                write_manifest(w.key(v), manifest, &name, base, abbreviated);
            }
            w.end();
        };
        let mut w = ObjectWriter::new(&mut out);
        if abbreviated {
            let modified = top.get("time").and_then(|t| raw_json::member(t, "modified"));
            w.value("dist-tags", &self.tags(&top, Some(&versions)));
            w.value("modified", &raw_json::value(modified).unwrap_or(Value::Null));
            w.value("name", &Value::String(name.clone()));
            write_versions(w.key("versions"));
        } else {
            // In key order, as the stored document's members (a hosted registry's tags are
            // its own, see `tags`).
            let mut parts: BTreeMap<&str, Part> = top.iter().map(|(k, v)| (k.as_str(), Part::Raw(v))).collect();
            parts.remove("_attachments");
            parts.insert("versions", Part::Versions);
            if self.present.is_some() {
                parts.insert("dist-tags", Part::Tags);
            }
            for (k, part) in parts {
                match part {
                    Part::Raw(v) => w.raw(k, v),
                    Part::Versions => write_versions(w.key(k)),
                    Part::Tags => w.value(k, &self.tags(&top, Some(&versions))),
                }
            }
        }
        w.end();
        out
    }
}

/// `tags` (dist-tags) without those that name a version not `shown`; `latest`, when its own is
/// gone, the newest of `shown` by `time` (the last in version-string order among equals).
pub fn retained_tags(mut tags: Map<String, Value>, shown: &BTreeSet<String>, time: impl Fn(&str) -> String) -> Map<String, Value> {
    tags.retain(|_, v| v.as_str().is_some_and(|v| shown.contains(v)));
    if !tags.contains_key("latest") {
        if let Some(newest) = shown.iter().max_by_key(|v| time(v)) {
            tags.insert("latest".into(), Value::String(newest.clone()));
        }
    }
    tags
}

fn name_of(top: &BTreeMap<String, &RawValue>) -> String {
    top.get("name").and_then(|n| serde_json::from_str::<String>(n.get()).ok()).unwrap_or_default()
}

/// A manifest's `dist.tarball` as stored.
fn tarball_of(manifest: &RawValue) -> Option<String> {
    raw_json::string(raw_json::member(manifest, "dist")?, "tarball")
}

/// A version's manifest for a client: its tarball (and a hosted registry's attestations) at
/// `base`; only the fields npm install reads when `abbreviated`. One that is not an object is
/// passed on as stored.
fn write_manifest(out: &mut Vec<u8>, manifest: &RawValue, name: &str, base: &str, abbreviated: bool) {
    let Some(fields) = raw_json::members(manifest) else {
        out.extend_from_slice(manifest.get().as_bytes());
        return;
    };
    let mut w = ObjectWriter::new(out);
    for (k, v) in &fields {
        if abbreviated && !ABBREVIATED_FIELDS.contains(&k.as_str()) {
            continue;
        }
        // Only `dist` becomes a value: the other members are passed on as they are.
        let dist = if k == "dist" { raw_json::value(Some(v)) } else { None };
        match dist {
            Some(Value::Object(mut dist)) => {
                let file = dist.get("tarball").and_then(Value::as_str).map(tarball_file).unwrap_or_default().to_string();
                dist.insert("tarball".into(), Value::String(format!("{base}/{name}/-/{file}")));
                // A hosted registry's own attestations are stored relative to the registry; an
                // upstream's (a proxy's documents) are absolute and stay so.
                if let Some(url) = dist.get_mut("attestations").and_then(|a| a.get_mut("url")) {
                    if let Some(rel) = url.as_str().filter(|u| !u.contains("://")) {
                        *url = Value::String(format!("{base}/{rel}"));
                    }
                }
                w.value(k, &Value::Object(dist));
            }
            _ => w.raw(k, v),
        }
    }
    w.end();
}

/// Rendered packuments by (stored state, base URL, form). A key names immutable content (the
/// document's digest and the set of tarballs present), so a hit is always right, on any node;
/// the cache only saves the blob read and the rendering.
#[derive(Default)]
pub struct RenderCache {
    entries: Mutex<(HashMap<String, Bytes>, usize)>,
    /// Clients asking for the same rendering at once wait for one of them to make it.
    flights: SingleFlight,
}

/// Rendered bytes this cache may hold before it starts over.
const CACHE_BYTES: usize = 64 << 20;

/// Stored documents being rendered at once, in KiB, across the process: a rendering holds
/// about twice its document, and many clients asking for large packuments (each base URL and
/// form is a rendering of its own) wait here rather than hold hundreds of MiB.
const RENDERING_KIB: u32 = 32 << 10;

fn rendering() -> Arc<Semaphore> {
    static RENDERING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(RENDERING_KIB as usize)));
    RENDERING.clone()
}

impl RenderCache {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).0.get(key).cloned()
    }

    fn put(&self, key: String, value: Bytes) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.1 + value.len() > CACHE_BYTES {
            e.0.clear();
            e.1 = 0;
        }
        e.1 += value.len();
        e.0.insert(key, value);
    }
}

/// A packument for a client, with an ETag from the stored state so that npm's cache
/// revalidates with a 304. `load` produces the document (of about `size` bytes) only when the
/// cache cannot answer.
pub async fn respond<F, Fut>(req: &HttpRequest, cache: &RenderCache, state: &str, base: &str, size: u64, load: F) -> Result<HttpResponse, NpmError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Packument, NpmError>>,
{
    let abbreviated = wants_abbreviated(req);
    let state = state.trim_start_matches("sha256:");
    let etag = format!("\"{}{}\"", &state[..24.min(state.len())], if abbreviated { "-a" } else { "" });
    if wharf_format::download::not_modified(req, &etag) {
        return Ok(HttpResponse::NotModified().insert_header((header::ETAG, etag)).insert_header((header::VARY, "Accept, Authorization")).finish());
    }
    let ct = if abbreviated { ABBREVIATED } else { "application/json" };
    let mut res = HttpResponse::Ok();
    res.content_type(ct).insert_header((header::ETAG, etag)).insert_header((header::VARY, "Accept, Authorization"));
    // A HEAD is answered from the same body, for its length (actix-http sends the head alone).
    let key = format!("{state}|{base}|{abbreviated}");
    let mut load = Some(load);
    let body = loop {
        if let Some(b) = cache.get(&key) {
            break b;
        }
        match cache.flights.join(&key) {
            // Then from the cache; or, if the leader failed or the cache let it go, made here.
            Join::Follower(rx) => drop(SingleFlight::wait(rx).await),
            Join::Leader(flight) => {
                let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, RENDERING_KIB);
                // The semaphore is never closed.
                let turn = rendering().acquire_many_owned(kib).await.ok();
                let doc = load.take().expect("a caller leads at most once")().await?;
                let base = base.to_string();
                // The turn goes with the rendering: a client that leaves drops this request,
                // not the rendering under way on the blocking pool, which still holds its memory.
                let rendered = web::block(move || {
                    let _turn = turn;
                    doc.render(&base, abbreviated)
                })
                .await
                .map_err(|e| NpmError::Internal(Box::new(e)))?;
                let b = Bytes::from(rendered);
                cache.put(key, b.clone());
                flight.finish(Outcome::Done);
                break b;
            }
        }
    };
    Ok(res.body(wharf_format::body_in_parts(body)))
}
#[cfg(test)]
mod tests {
    use super::*;

    fn stored(doc: &Value) -> Packument {
        Packument::stored(Bytes::from(doc.to_string())).unwrap()
    }

    fn rendered(doc: &Packument, abbreviated: bool) -> Value {
        serde_json::from_slice(&doc.render("http://h/repository/n", abbreviated)).unwrap()
    }

    #[test]
    fn renders_urls_and_abbreviates() {
        let doc = serde_json::json!({"name": "@s/x", "dist-tags": {"latest": "1.0.0"}, "time": {"modified": "2026-01-01T00:00:00.000Z"}, "readme": "long",
            "_attachments": {"x": {"data": "AAAA"}},
            "versions": {"1.0.0": {"name": "@s/x", "version": "1.0.0", "scripts": {"test": "x"}, "dependencies": {"a": "^1"},
                "dist": {"tarball": "https://registry.npmjs.org/@s/x/-/x-1.0.0.tgz", "integrity": "sha512-z", "attestations": {"url": "-/npm/v1/attestations/@s/x@1.0.0"}}}}});
        let full = rendered(&stored(&doc), false);
        assert_eq!(full["versions"]["1.0.0"]["dist"]["tarball"], "http://h/repository/n/@s/x/-/x-1.0.0.tgz");
        assert_eq!(full["versions"]["1.0.0"]["dist"]["attestations"]["url"], "http://h/repository/n/-/npm/v1/attestations/@s/x@1.0.0");
        assert_eq!(full["readme"], "long");
        assert!(full.get("_attachments").is_none());
        let short = rendered(&stored(&doc), true);
        assert_eq!(short["modified"], "2026-01-01T00:00:00.000Z");
        assert_eq!(short["dist-tags"]["latest"], "1.0.0");
        assert!(short.get("readme").is_none() && short["versions"]["1.0.0"].get("scripts").is_none());
        assert_eq!(short["versions"]["1.0.0"]["dependencies"]["a"], "^1");
        let one: Value = serde_json::from_slice(&stored(&doc).version("latest", "http://h/repository/n").unwrap()).unwrap();
        assert_eq!(one, full["versions"]["1.0.0"]);
    }

    /// A hosted registry shows the versions whose tarballs are present, and only tags that name
    /// one of them; `latest` falls back to the newest shown.
    #[test]
    fn versions_without_their_tarball_are_left_out_with_their_tags() {
        let v = |n: &str| serde_json::json!({"version": n, "dist": {"tarball": format!("x-{n}.tgz")}});
        let doc = serde_json::json!({"name": "x", "dist-tags": {"latest": "3.0.0", "beta": "2.0.0", "old": "1.0.0"},
            "time": {"1.0.0": "2020-01-01", "2.0.0": "2021-01-01", "3.0.0": "2022-01-01"},
            "versions": {"1.0.0": v("1.0.0"), "2.0.0": v("2.0.0"), "3.0.0": v("3.0.0")}});
        let files = |fs: &[&str]| fs.iter().map(|f| f.to_string()).collect::<HashSet<String>>();
        let shown = stored(&doc).with_files_present(files(&["x-1.0.0.tgz", "x-2.0.0.tgz"])).unwrap();
        let full = rendered(&shown, false);
        assert_eq!(full["versions"].as_object().unwrap().keys().collect::<Vec<_>>(), ["1.0.0", "2.0.0"]);
        assert_eq!(full["dist-tags"], serde_json::json!({"latest": "2.0.0", "beta": "2.0.0", "old": "1.0.0"}));
        assert_eq!(rendered(&shown, true)["dist-tags"], full["dist-tags"]);
        assert!(shown.lists_tarball("x-1.0.0.tgz") && !shown.lists_tarball("x-3.0.0.tgz"));
        assert!(shown.version("3.0.0", "b").is_none() && shown.manifest_of("x-3.0.0.tgz").is_none());
        assert_eq!(shown.manifest_of("x-2.0.0.tgz").unwrap()["version"], "2.0.0");
        assert!(stored(&doc).with_files_present(files(&["y.tgz"])).is_none());
        // Not hosted: as stored.
        assert_eq!(stored(&doc).dist_tags(), doc["dist-tags"]);
        assert!(Packument::stored(Bytes::from_static(b"[1]")).is_err());
    }
}
