//! Protocol types and grammar: image names, tags, references, manifests. Pure, no I/O.

use serde::Deserialize;
use wharf_format::AnyDigest;

use crate::error::DockerError;

pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";

pub const MANIFEST_TYPES: &[&str] = &[MT_DOCKER_MANIFEST, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_OCI_INDEX, MT_OCI_ARTIFACT];

/// The longest image name a client may use, repository segment included (Distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

/// Checks one image name against the OCI grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(x: u8) -> bool {
    x.is_ascii_lowercase() || x.is_ascii_digit()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

/// A manifest reference: a tag or a digest (sha256 or sha512).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(AnyDigest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, DockerError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(DockerError::TagInvalid(s.to_string()))
        }
    }

    /// The reference of a read or a delete. A string that is neither a tag nor a digest names
    /// nothing this registry can hold, so it is unknown (404 `MANIFEST_UNKNOWN`), as registries
    /// answer: Distribution takes any such string for a tag and finds no such tag. A push keeps
    /// [`Reference::parse`]'s 400 (`TAG_INVALID`, `DIGEST_INVALID`): there the client sent
    /// something wrong, and the conformance suite expects 400 for a malformed digest.
    pub fn parse_existing(s: &str) -> Result<Reference, DockerError> {
        Reference::parse(s).map_err(|_| DockerError::ManifestUnknown(s.chars().take(300).collect()))
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: Option<String>,
    pub digest: String,
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What wharf needs to know of a manifest; the bytes themselves are kept exactly as received.
#[derive(Debug)]
pub struct Manifest {
    pub media_type: String,
    /// Blobs it references that must exist in the same image (config, layers, artifact blobs).
    pub blobs: Vec<AnyDigest>,
    /// Manifests an index references.
    pub children: Vec<AnyDigest>,
    pub subject: Option<AnyDigest>,
    /// `artifactType`, or else the config's media type (the referrers API's rule).
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Manifest {
    /// Parses a pushed manifest. `content_type` is the request's Content-Type; when the manifest
    /// carries a `mediaType` the two must agree.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, DockerError> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| DockerError::ManifestInvalid(format!("not a valid manifest: {e}")))?;
        let content_type = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).filter(|c| !c.is_empty());
        let media_type = match (&raw.media_type, content_type) {
            (Some(m), Some(c)) if m != c => return Err(DockerError::ManifestInvalid(format!("mediaType {m} does not match Content-Type {c}"))),
            (Some(m), _) => m.clone(),
            (None, Some(c)) => c.to_string(),
            (None, None) if raw.manifests.is_some() => MT_OCI_INDEX.to_string(),
            (None, None) => MT_OCI_MANIFEST.to_string(),
        };
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(DockerError::ManifestInvalid(format!("unsupported manifest media type {media_type}")));
        }
        if media_type != MT_OCI_ARTIFACT && raw.schema_version != Some(2) {
            return Err(DockerError::ManifestInvalid("schemaVersion must be 2".into()));
        }
        let is_index = media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST;
        let parse = |d: &Descriptor| -> Result<AnyDigest, DockerError> {
            d.digest.parse().map_err(|e| DockerError::ManifestInvalid(format!("descriptor digest {}: {e}", d.digest)))
        };
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        if is_index {
            for d in raw.manifests.as_deref().ok_or_else(|| DockerError::ManifestInvalid("index has no manifests".into()))? {
                children.push(parse(d)?);
            }
        } else if media_type == MT_OCI_ARTIFACT {
            for d in raw.blobs.as_deref().unwrap_or_default() {
                blobs.push(parse(d)?);
            }
        } else {
            let config = raw.config.as_ref().ok_or_else(|| DockerError::ManifestInvalid("manifest has no config".into()))?;
            blobs.push(parse(config)?);
            let layers = raw.layers.as_deref().ok_or_else(|| DockerError::ManifestInvalid("manifest has no layers".into()))?;
            for d in layers {
                // Non-distributable layers live elsewhere (their `urls`): nothing to check here.
                // Any other layer is checked whatever `urls` it names: skipped for having them,
                // a manifest pointed clients at a layer from anywhere, never stored here.
                if d.urls.is_empty() || !d.media_type.as_deref().is_some_and(is_non_distributable) {
                    blobs.push(parse(d)?);
                }
            }
        }
        // Each blob and manifest once, and not without end: a manifest repeating one layer
        // 50,000 times made as many checks and writes in one transaction, holding SQLite's
        // single writer.
        dedup_in_order(&mut blobs);
        dedup_in_order(&mut children);
        if blobs.len() + children.len() > MAX_DESCRIPTORS {
            return Err(DockerError::ManifestInvalid(format!("more than {MAX_DESCRIPTORS} distinct descriptors")));
        }
        let subject = raw.subject.as_ref().map(parse).transpose()?;
        let artifact_type = raw.artifact_type.clone().or_else(|| if is_index { None } else { raw.config.as_ref().and_then(|c| c.media_type.clone()) });
        Ok(Manifest { media_type, blobs, children, subject, artifact_type, annotations: raw.annotations })
    }
}

/// The most distinct blobs and manifests one manifest may name (an image has at most a few
/// hundred layers, an index a few hundred platforms).
pub const MAX_DESCRIPTORS: usize = 10_000;

fn dedup_in_order(v: &mut Vec<AnyDigest>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|d| seen.insert(d.to_string()));
}

/// Layers that live elsewhere by design (Windows base layers), named by their `urls`.
fn is_non_distributable(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.image.rootfs.foreign.diff.") || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

/// Does an `Accept` header admit `media_type`? No header, or a wildcard, admits everything.
pub fn accepts(accept: &[&str], media_type: &str) -> bool {
    if accept.is_empty() {
        return true;
    }
    accept.iter().flat_map(|h| h.split(',')).any(|item| {
        let t = item.split(';').next().unwrap_or("").trim();
        t.is_empty() || t == "*/*" || t == "application/*" || t == media_type
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_oci_grammar() {
        for ok in ["a", "team/app", "a.b", "a_b", "a__b", "a---b", "x/y/z/1.0-rc"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "a//b", "/a", "a/", "..", "a/../b", "a___b", "a.-b", "-a", "a-", "a%2e", "a b", "a:b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&"a".repeat(255)));
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert!(valid_tag("latest") && valid_tag("_x") && valid_tag("1.0.0-rc_1") && valid_tag(&"a".repeat(128)));
        assert!(!valid_tag("") && !valid_tag(".x") && !valid_tag("-x") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn layers_with_urls_are_checked_unless_they_are_non_distributable_and_each_blob_counts_once() {
        let d = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
        let layer = |mt: &str, n: u8, urls: bool| serde_json::json!({"mediaType": mt, "digest": d(n), "size": 1, "urls": if urls { vec!["https://elsewhere.example/x"] } else { vec![] }});
        let manifest = |layers: Vec<serde_json::Value>| {
            serde_json::json!({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(0), "size": 1}, "layers": layers})
            .to_string()
        };
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        let foreign = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
        let m = Manifest::parse(
            manifest(vec![layer(gz, 1, true), layer(foreign, 2, true), layer(gz, 1, false), layer(gz, 0, false)]).as_bytes(),
            Some(MT_OCI_MANIFEST),
        )
        .unwrap();
        assert_eq!(m.blobs.iter().map(|b| b.to_string()).collect::<Vec<_>>(), [d(0), d(1)], "config and the distributable layer, once each");
        let many: Vec<serde_json::Value> = (0..=MAX_DESCRIPTORS).map(|i| serde_json::json!({"digest": format!("sha256:{i:064x}"), "size": 1})).collect();
        assert!(matches!(Manifest::parse(manifest(many).as_bytes(), Some(MT_OCI_MANIFEST)), Err(DockerError::ManifestInvalid(_))));
    }

    #[test]
    fn manifest_media_type_must_match_content_type() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let parsed = Manifest::parse(m, Some(MT_OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.blobs.len(), 1);
        assert_eq!(parsed.artifact_type.as_deref(), Some("application/vnd.oci.image.config.v1+json"));
        assert!(matches!(Manifest::parse(m, Some(MT_DOCKER_MANIFEST)), Err(DockerError::ManifestInvalid(_))));
        assert!(matches!(Manifest::parse(b"{not json", None), Err(DockerError::ManifestInvalid(_))));
    }

    #[test]
    fn a_reference_that_is_neither_tag_nor_digest_is_unknown_to_reads_and_invalid_to_pushes() {
        for bad in [".INVALID_MANIFEST_NAME", "sha256:baddigeststring", "a/b", &"a".repeat(129)] {
            assert!(matches!(Reference::parse_existing(bad), Err(DockerError::ManifestUnknown(_))), "{bad}");
            assert!(matches!(Reference::parse(bad), Err(DockerError::TagInvalid(_) | DockerError::DigestInvalid(_))), "{bad}");
        }
        assert_eq!(Reference::parse_existing("v1").unwrap(), Reference::Tag("v1".into()));
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], MT_OCI_INDEX));
        assert!(accepts(&["application/vnd.oci.image.index.v1+json, application/json"], MT_OCI_INDEX));
        assert!(accepts(&["*/*"], MT_OCI_INDEX));
        assert!(!accepts(&[MT_DOCKER_MANIFEST], MT_OCI_INDEX));
    }
}
