//! Builds OCI image layouts on disk for skopeo to push: real tar+gzip layers, a config, one
//! manifest per platform and, for several platforms, an index.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

pub struct Layout {
    /// Digest of what the layout's tag points at (manifest or index).
    pub top_digest: String,
    /// Digests of every blob (layers and configs).
    pub blobs: Vec<String>,
}

fn put(root: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(root.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

fn layer(content: &[u8]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "data.bin", content).unwrap();
    let raw = tar.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Pseudo-random bytes (xorshift), so that each image has its own layers.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes an image layout at `dir` tagged `tag`, with one image per architecture (an index
/// when there are several). `seed` makes the layers unique.
pub fn image(dir: &Path, tag: &str, archs: &[&str], seed: u64, layer_size: usize) -> Layout {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    for (i, arch) in archs.iter().enumerate() {
        let (gz, diff_id) = layer(&noise(seed * 31 + i as u64, layer_size));
        let (ld, ls) = put(dir, &gz);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "config": {}
        });
        let (cd, cs) = put(dir, config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]
        });
        let (md, ms) = put(dir, manifest.to_string().as_bytes());
        blobs.push(ld);
        blobs.push(cd);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "platform": {"architecture": arch, "os": "linux"}
        }));
    }
    let top = if manifests.len() == 1 {
        manifests.pop().unwrap()
    } else {
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests
        });
        let (d, s) = put(dir, index.to_string().as_bytes());
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
    };
    let top_digest = top["digest"].as_str().unwrap().to_string();
    let mut entry = top.clone();
    entry.as_object_mut().unwrap().remove("platform");
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string()).unwrap();
    Layout { top_digest, blobs }
}

/// Writes a single-platform image layout at `dir` tagged `tag` whose layers are made from
/// `layer_seeds` (the same seed and size give the same layer bytes, so images can share
/// layers); `note` makes the config, and so the manifest, the image's own.
pub fn image_of_layers(dir: &Path, tag: &str, layer_seeds: &[u64], layer_size: usize, note: &str) -> Layout {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for seed in layer_seeds {
        let (gz, diff_id) = layer(&noise(*seed, layer_size));
        let (d, s) = put(dir, &gz);
        blobs.push(d.clone());
        diff_ids.push(diff_id);
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"note": note}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let (cd, cs) = put(dir, config.to_string().as_bytes());
    blobs.push(cd.clone());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers
    });
    let (md, ms) = put(dir, manifest.to_string().as_bytes());
    let entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": tag}
    });
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string()).unwrap();
    Layout { top_digest: md, blobs }
}

/// The size of the blob `digest` in a layout written by this module.
pub fn blob_size(dir: &Path, digest: &str) -> u64 {
    std::fs::metadata(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap().len()
}
