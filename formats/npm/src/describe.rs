//! A version's component detail, from the package's document as this repository holds it (a
//! proxy's cached copy; the upstream is never asked): the dist-tags that name the version, its
//! description, license, dependencies and checksums, and the README, cut at [`MAX_README`].

use serde_json::{json, Value};
use wharf_format::{Asset, BlobError, ComponentKey, DescribeError, Digest, FormatEnv};

use crate::meta::package_path;
use crate::store::MAX_DOC;

/// README text shown at most; longer ones are cut and marked so.
pub const MAX_README: usize = 64 << 10;

pub(crate) async fn describe(env: &FormatEnv, repo: i64, component: &ComponentKey, assets: &[Asset]) -> Result<Value, DescribeError> {
    let name = crate::hosted::package_of(component);
    let Some(asset) = env.meta.get(repo, &package_path(&name)).await? else { return Ok(of(None, component, assets)) };
    let Ok(digest) = asset.digest.as_deref().unwrap_or_default().parse::<Digest>() else { return Ok(of(None, component, assets)) };
    // The same bound as serving the document; read in parts, only this version's as values.
    let doc = match env.blobs.read_small(&digest, MAX_DOC).await {
        Ok(bytes) => crate::packument::Packument::stored(bytes)
            .ok()
            .map(|d| d.excerpt(&component.version, &["description", "license", "homepage", "repository", "readme"])),
        Err(BlobError::NotFound | BlobError::TooLarge { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(of(doc.as_ref(), component, assets))
}

/// The description of `component` given the package's document (`None`: not held here, or
/// unreadable).
fn of(doc: Option<&Value>, component: &ComponentKey, assets: &[Asset]) -> Value {
    let version = &component.version;
    let mut out = json!({});
    // What the tarball's row knows, whatever the document says.
    if let Some(a) = assets.iter().find(|a| a.attributes.get("integrity").is_some()) {
        out["integrity"] = a.attributes["integrity"].clone();
    }
    let Some(doc) = doc else {
        out["document"] = json!("missing");
        return out;
    };
    let manifest = doc.pointer("/versions").and_then(|v| v.get(version)).cloned().unwrap_or(Value::Null);
    let tags: Vec<&str> = doc["dist-tags"].as_object().into_iter().flatten().filter(|(_, v)| v.as_str() == Some(version)).map(|(t, _)| t.as_str()).collect();
    out["distTags"] = json!(tags);
    out["latest"] = doc.pointer("/dist-tags/latest").cloned().unwrap_or(Value::Null);
    out["published"] = doc.pointer("/time").and_then(|t| t.get(version)).cloned().unwrap_or(Value::Null);
    let field = |k: &str| manifest.get(k).filter(|v| !v.is_null()).or_else(|| doc.get(k).filter(|v| !v.is_null())).cloned().unwrap_or(Value::Null);
    out["description"] = field("description");
    out["license"] = license(&field("license"));
    out["homepage"] = field("homepage");
    out["repository"] = match field("repository") {
        Value::Object(r) => r.get("url").cloned().unwrap_or(Value::Null),
        other => other,
    };
    out["deprecated"] = manifest.get("deprecated").cloned().unwrap_or(Value::Null);
    let deps = manifest.get("dependencies").and_then(Value::as_object).cloned().unwrap_or_default();
    out["dependencyCount"] = json!(deps.len());
    out["dependencies"] = Value::Object(deps);
    if let Some(i) = manifest.pointer("/dist/integrity") {
        out["integrity"] = i.clone();
    }
    out["shasum"] = manifest.pointer("/dist/shasum").cloned().unwrap_or(Value::Null);
    // npm keeps the README of the version published last at the top of the document; a
    // version's own, when a client sent one, is this version's.
    let own = manifest.get("readme").and_then(Value::as_str).filter(|r| !r.trim().is_empty());
    let (readme, from) = match own {
        Some(r) => (Some(r), "version"),
        None => (doc.get("readme").and_then(Value::as_str).filter(|r| !r.trim().is_empty()), "package"),
    };
    if let Some(text) = readme {
        let (shown, cut) = wharf_format::describe::cut(text, MAX_README);
        out["readme"] = json!({ "text": shown, "from": from, "truncated": cut, "size": text.len() });
    }
    out
}

/// `license` as a string: SPDX text, or the old `{ "type": ... }` form.
fn license(v: &Value) -> Value {
    match v {
        Value::Object(o) => o.get("type").cloned().unwrap_or(Value::Null),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> ComponentKey {
        ComponentKey { group: None, name: "p".into(), version: v.into(), download_path: None }
    }

    #[test]
    fn tags_that_name_the_version_and_a_long_readme_cut() {
        let doc = json!({
            "dist-tags": {"latest": "2.0.0", "beta": "1.0.0", "old": "1.0.0"},
            "readme": "x".repeat(MAX_README + 5),
            "license": {"type": "MIT"},
            "versions": {"1.0.0": {"dependencies": {"a": "^1"}, "dist": {"shasum": "ab", "integrity": "sha512-x"}}},
            "time": {"1.0.0": "2026-01-01T00:00:00.000Z"}
        });
        let d = of(Some(&doc), &key("1.0.0"), &[]);
        assert_eq!(d["distTags"], json!(["beta", "old"]));
        assert_eq!((d["license"].as_str(), d["shasum"].as_str(), d["dependencyCount"].as_u64()), (Some("MIT"), Some("ab"), Some(1)));
        assert_eq!(d["readme"]["text"].as_str().unwrap().len(), MAX_README);
        assert_eq!((d["readme"]["truncated"].as_bool(), d["readme"]["from"].as_str()), (Some(true), Some("package")));
        assert_eq!(of(None, &key("1.0.0"), &[])["document"], json!("missing"));
    }
}
