//! Packuments (a package's document) as clients receive them: full (`application/json`) or
//! abbreviated (`application/vnd.npm.install-v1+json`, what `npm install` asks for), with every
//! `dist.tarball` pointing at this repository as the client reached it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Map, Value};

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

/// The document for a client.
pub fn render(doc: &Value, base: &str, abbreviated: bool) -> Value {
    let name = doc.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut versions = Map::new();
    for (v, manifest) in doc.get("versions").and_then(Value::as_object).into_iter().flatten() {
        let mut m = manifest.clone();
        if let Some(dist) = m.get_mut("dist").and_then(Value::as_object_mut) {
            let file = dist.get("tarball").and_then(Value::as_str).map(tarball_file).unwrap_or_default().to_string();
            dist.insert("tarball".into(), Value::String(format!("{base}/{name}/-/{file}")));
            // A hosted registry's own attestations are stored relative to the registry; an
            // upstream's (a proxy's documents) are absolute and stay so.
            if let Some(url) = dist.get_mut("attestations").and_then(|a| a.get_mut("url")) {
                if let Some(rel) = url.as_str().filter(|u| !u.contains("://")) {
                    *url = Value::String(format!("{base}/{rel}"));
                }
            }
        }
        if abbreviated {
            if let Some(obj) = m.as_object_mut() {
                obj.retain(|k, _| ABBREVIATED_FIELDS.contains(&k.as_str()));
            }
        }
        versions.insert(v.clone(), m);
    }
    if abbreviated {
        let modified = doc.pointer("/time/modified").cloned().unwrap_or(Value::Null);
        return serde_json::json!({
            "name": name,
            "modified": modified,
            "dist-tags": doc.get("dist-tags").cloned().unwrap_or_else(|| Value::Object(Map::new())),
            "versions": versions,
        });
    }
    let mut out = doc.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("versions".into(), Value::Object(versions));
        obj.remove("_attachments");
    }
    out
}

/// Rendered packuments by (stored state, base URL, form). A key names immutable content (the
/// document's digest and the set of tarballs present), so a hit is always right, on any node;
/// the cache only saves the blob read, the parse and the rendering.
#[derive(Default)]
pub struct RenderCache {
    entries: Mutex<(HashMap<String, Bytes>, usize)>,
}

/// Rendered bytes this cache may hold before it starts over.
const CACHE_BYTES: usize = 64 << 20;

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
/// revalidates with a 304. `load` produces the document only when the cache cannot answer.
pub async fn respond<F, Fut, E>(req: &HttpRequest, cache: &RenderCache, state: &str, base: &str, load: F) -> Result<HttpResponse, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Value, E>>,
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
    let body = match cache.get(&key) {
        Some(b) => b,
        None => {
            let doc = load().await?;
            let b = Bytes::from(render(&doc, base, abbreviated).to_string());
            cache.put(key, b.clone());
            b
        }
    };
    Ok(res.body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_urls_and_abbreviates() {
        let doc = serde_json::json!({"name": "@s/x", "dist-tags": {"latest": "1.0.0"}, "time": {"modified": "2026-01-01T00:00:00.000Z"}, "readme": "long",
            "versions": {"1.0.0": {"name": "@s/x", "version": "1.0.0", "scripts": {"test": "x"}, "dependencies": {"a": "^1"},
                "dist": {"tarball": "https://registry.npmjs.org/@s/x/-/x-1.0.0.tgz", "integrity": "sha512-z"}}}});
        let full = render(&doc, "http://h/repository/n", false);
        assert_eq!(full["versions"]["1.0.0"]["dist"]["tarball"], "http://h/repository/n/@s/x/-/x-1.0.0.tgz");
        assert_eq!(full["readme"], "long");
        let short = render(&doc, "http://h/repository/n", true);
        assert_eq!(short["modified"], "2026-01-01T00:00:00.000Z");
        assert!(short.get("readme").is_none() && short["versions"]["1.0.0"].get("scripts").is_none());
        assert_eq!(short["versions"]["1.0.0"]["dependencies"]["a"], "^1");
    }
}
