//! A tag's component detail: the manifest it names, read from the blob store, as platforms
//! (an index) or config and layers (an image), with the total size of what a pull fetches.
//!
//! Sizes are the descriptors' own (what the manifest declares, as a client sees them), summed
//! once per digest: the total is the manifest itself (and for an index each platform's
//! manifest held here) plus every config and layer, shared layers counted once. Only manifests
//! are read, each at most [`MAX_MANIFEST_BYTES`]; a platform whose manifest this repository
//! does not hold (a proxy that fetched one platform only) is listed without its layers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wharf_format::{Asset, BlobError, BlobStore, ComponentKey, DescribeError, Digest, MetaStore};

use crate::hosted::MAX_MANIFEST_BYTES;
use crate::meta::{self, manifest_path};
use crate::model::{MT_DOCKER_LIST, MT_OCI_INDEX};

/// Platforms of an index described at most (each one is a manifest read).
const MAX_PLATFORMS: usize = 64;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: i64,
    platform: Option<Platform>,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct Platform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

/// The parts of a manifest a description shows (any of the media types wharf accepts).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct View {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
}

/// Why a manifest's content could not be described (codes the console translates).
enum Unreadable {
    Missing,
    TooLarge,
    Invalid,
}

impl Unreadable {
    fn code(&self) -> &'static str {
        match self {
            Unreadable::Missing => "missing",
            Unreadable::TooLarge => "tooLarge",
            Unreadable::Invalid => "invalid",
        }
    }
}

pub(crate) async fn describe(meta: &dyn MetaStore, blobs: &BlobStore, repo: i64, component: &ComponentKey, assets: &[Asset]) -> Result<Value, DescribeError> {
    let Some(tag) = assets.iter().find(|a| a.kind == meta::TAG) else { return Ok(json!({})) };
    let digest = tag.digest.clone().unwrap_or_default();
    let mut out = json!({ "manifest": { "digest": digest, "mediaType": tag.content_type, "size": tag.size } });
    let view = match read(blobs, &digest).await? {
        Ok(v) => v,
        Err(why) => {
            out["unreadable"] = json!(why.code());
            return Ok(out);
        }
    };
    let media_type = tag.content_type.as_deref().or(view.media_type.as_deref()).unwrap_or_default();
    // Each digest once: layers shared between platforms are fetched (and stored) once.
    let mut sizes: BTreeMap<String, i64> = BTreeMap::from([(digest.clone(), tag.size)]);
    if media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST || (view.manifests.is_some() && view.layers.is_none()) {
        let children = view.manifests.unwrap_or_default();
        let mut platforms = Vec::new();
        for d in children.iter().take(MAX_PLATFORMS) {
            let p = d.platform.as_ref();
            let mut entry = json!({
                "os": p.and_then(|p| p.os.clone()),
                "architecture": p.and_then(|p| p.architecture.clone()),
                "variant": p.and_then(|p| p.variant.clone()),
                "digest": d.digest,
                "mediaType": d.media_type,
                "size": d.size,
            });
            // The child's row says where its bytes are (their sha256, whatever digest the
            // index names it by).
            let row = meta.get(repo, &manifest_path(&component.name, &d.digest)).await?;
            if let Some(row) = row {
                match read(blobs, row.digest.as_deref().unwrap_or_default()).await? {
                    Ok(child) => {
                        let mut own = BTreeMap::from([(d.digest.clone(), d.size)]);
                        let image = image(&child, &mut own);
                        entry["totalSize"] = json!(own.values().sum::<i64>());
                        entry["present"] = json!(true);
                        merge(&mut entry, image);
                        sizes.extend(own);
                    }
                    Err(why) => {
                        entry["present"] = json!(true);
                        entry["unreadable"] = json!(why.code());
                    }
                }
            } else {
                entry["present"] = json!(false);
            }
            platforms.push(entry);
        }
        out["platforms"] = Value::Array(platforms);
        if children.len() > MAX_PLATFORMS {
            out["platformsOmitted"] = json!(children.len() - MAX_PLATFORMS);
        }
    } else {
        let image = image(&view, &mut sizes);
        merge(&mut out, image);
    }
    out["totalSize"] = json!(sizes.values().sum::<i64>());
    Ok(out)
}

/// An image manifest's config and layers (an artifact's blobs as layers), adding their sizes
/// to `sizes`.
fn image(view: &View, sizes: &mut BTreeMap<String, i64>) -> Map<String, Value> {
    let mut out = Map::new();
    let describe = |d: &Descriptor| {
        let mut v = json!({ "digest": d.digest, "mediaType": d.media_type, "size": d.size });
        // Non-distributable: fetched from elsewhere, but still part of what a pull needs.
        if !d.urls.is_empty() {
            v["urls"] = json!(d.urls);
        }
        v
    };
    if let Some(c) = &view.config {
        out.insert("config".into(), describe(c));
        sizes.insert(c.digest.clone(), c.size);
    }
    let layers = view.layers.as_ref().or(view.blobs.as_ref()).map(Vec::as_slice).unwrap_or_default();
    out.insert("layers".into(), Value::Array(layers.iter().map(describe).collect()));
    out.insert("layersSize".into(), json!(layers.iter().map(|l| l.size).sum::<i64>()));
    for l in layers {
        sizes.insert(l.digest.clone(), l.size);
    }
    if let Some(t) = &view.artifact_type {
        out.insert("artifactType".into(), json!(t));
    }
    out
}

fn merge(into: &mut Value, from: Map<String, Value>) {
    if let Some(o) = into.as_object_mut() {
        o.extend(from);
    }
}

/// A manifest's content, bounded; why not when it is missing, too large or not a manifest.
async fn read(blobs: &BlobStore, digest: &str) -> Result<Result<View, Unreadable>, DescribeError> {
    let Ok(d) = digest.parse::<Digest>() else { return Ok(Err(Unreadable::Invalid)) };
    match blobs.read_small(&d, MAX_MANIFEST_BYTES).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).map_err(|_| Unreadable::Invalid)),
        Err(BlobError::NotFound) => Ok(Err(Unreadable::Missing)),
        Err(BlobError::TooLarge { .. }) => Ok(Err(Unreadable::TooLarge)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_counts_its_config_and_layers_once() {
        let view: View = serde_json::from_value(json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "c", "digest": "sha256:c", "size": 10},
            "layers": [{"digest": "sha256:a", "size": 100}, {"digest": "sha256:b", "size": 1000}, {"digest": "sha256:a", "size": 100}]
        }))
        .unwrap();
        let mut sizes = BTreeMap::from([("sha256:m".to_string(), 5)]);
        let out = image(&view, &mut sizes);
        assert_eq!(out["layers"].as_array().unwrap().len(), 3, "every layer listed as the manifest has it");
        assert_eq!(out["layersSize"], json!(1200));
        assert_eq!(sizes.values().sum::<i64>(), 5 + 10 + 100 + 1000, "a repeated layer is fetched once");
    }
}
