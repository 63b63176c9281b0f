//! A release's component detail: its files with every checksum held, yanked state and
//! uploader, and the project's summary, requires-python, author and license. What the files'
//! rows store comes first; the rest is read from one file's core metadata (PEP 658), which
//! wharf keeps as a blob of at most [`archive::MAX_METADATA`] bytes: a hosted file names it in
//! its `core_metadata` attribute, a proxy holds it as the file's `.metadata` asset once a
//! client asked for it.

use serde_json::{json, Value};
use wharf_format::{Asset, BlobError, BlobStore, ComponentKey, DescribeError, Digest, MetaStore};

use crate::archive;
use crate::index::{small_wheel, SMALL_WHEEL_BYTES};
use crate::meta;

pub(crate) async fn describe(meta: &dyn MetaStore, blobs: &BlobStore, repo: i64, _component: &ComponentKey, assets: &[Asset]) -> Result<Value, DescribeError> {
    let mut files: Vec<&Asset> = assets.iter().filter(|a| a.kind == meta::FILE).collect();
    // Wheels first: their metadata is always there and always trustworthy.
    files.sort_by_key(|a| (!a.path.ends_with(".whl"), a.path.clone()));
    let attr = |k: &str| files.iter().find_map(|a| a.attributes.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string));
    let mut out = json!({
        "summary": attr("summary"),
        "requiresPython": attr("requires_python"),
        "files": files.iter().map(|a| file(a)).collect::<Vec<_>>(),
    });
    let mut metadata = None;
    for f in &files {
        if let Some(text) = core_metadata(meta, blobs, repo, f).await? {
            metadata = Some(text);
            break;
        }
    }
    if let Some(text) = metadata {
        let one = |k: &str| archive::fields(&text, k).into_iter().next().map(str::to_string);
        if out["summary"].is_null() {
            out["summary"] = json!(one("Summary"));
        }
        if out["requiresPython"].is_null() {
            out["requiresPython"] = json!(one("Requires-Python"));
        }
        out["author"] = json!(one("Author").or_else(|| one("Author-email")));
        out["license"] = json!(one("License-Expression").or_else(|| one("License")));
        out["homePage"] = json!(one("Home-page"));
        out["requiresDist"] = json!(archive::fields(&text, "Requires-Dist"));
        out["projectUrls"] = json!(archive::fields(&text, "Project-URL"));
        out["metadataVersion"] = json!(one("Metadata-Version"));
    }
    Ok(out)
}

fn file(a: &Asset) -> Value {
    let mut checksum = json!({ "sha256": a.digest.as_deref().map(|d| d.trim_start_matches("sha256:")) });
    if let Some(more) = a.attributes.get("checksum").and_then(Value::as_object) {
        for (k, v) in more {
            checksum[k] = v.clone();
        }
    }
    json!({
        "filename": a.path.rsplit('/').next(),
        "size": a.size,
        "checksum": checksum,
        "filetype": a.attributes.get("filetype"),
        "requiresPython": a.attributes.get("requires_python"),
        // PEP 592: a reason (maybe empty) when yanked, null when not.
        "yanked": match a.attributes.get("yanked") {
            Some(Value::String(r)) => json!(r),
            Some(Value::Bool(true)) => json!(""),
            _ => Value::Null,
        },
        "uploadTime": a.attributes.get("upload_time").and_then(Value::as_i64).unwrap_or(a.created_at),
        "uploader": a.attributes.get("uploader"),
    })
}

/// The file's core metadata as text, if this repository holds it: kept beside the file, or read
/// from a wheel small enough to be listed without it (which clients then never ask a proxy for).
async fn core_metadata(meta: &dyn MetaStore, blobs: &BlobStore, repo: i64, file: &Asset) -> Result<Option<String>, DescribeError> {
    let kept = match file.attributes.get("core_metadata").and_then(Value::as_str) {
        Some(hex) => Some(format!("sha256:{hex}")),
        None => meta.get(repo, &format!("{}.metadata", file.path)).await?.and_then(|m| m.digest),
    };
    let small_wheel = small_wheel(&file.path, Some(file.size));
    let (digest, limit, in_wheel) = match (kept, small_wheel) {
        (Some(d), _) => (d, archive::MAX_METADATA, false),
        (None, true) => (file.digest.clone().unwrap_or_default(), SMALL_WHEEL_BYTES as u64, true),
        (None, false) => return Ok(None),
    };
    let Ok(digest) = digest.parse::<Digest>() else { return Ok(None) };
    let bytes = match blobs.read_small(&digest, limit).await {
        Ok(bytes) => bytes,
        Err(BlobError::NotFound | BlobError::TooLarge { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = if in_wheel { archive::wheel_metadata_in(&bytes).ok().flatten() } else { Some(bytes.to_vec()) };
    Ok(text.map(|t| String::from_utf8_lossy(&t).into_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_headers_are_all_read_and_the_body_is_not() {
        let m = "Metadata-Version: 2.1\nName: p\nRequires-Dist: a\nRequires-Dist: b>=1\nSummary: s\n\nRequires-Dist: in the README\n";
        assert_eq!(super::archive::fields(m, "requires-dist"), vec!["a", "b>=1"]);
        assert_eq!(super::archive::fields(m, "Summary"), vec!["s"]);
        assert!(super::archive::fields(m, "License").is_empty());
    }
}
