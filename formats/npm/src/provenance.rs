//! Provenance bundles (`npm publish --provenance`): a sigstore bundle whose DSSE envelope
//! carries an in-toto statement about the tarball. wharf checks that the bundle is what npm
//! sends and that it speaks of this tarball; it does not verify the signature (that needs
//! Sigstore's trust root, which clients fetch themselves: `npm audit signatures`). Pure, no I/O.

use base64::Engine;
use serde_json::Value;

/// A bundle weighs a few KiB (a certificate chain, a transparency-log entry, the statement).
pub const MAX_BUNDLE: usize = 1 << 20;
pub const MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// What a publish's bundle says, once checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The bundle as sent (JSON text).
    pub bundle: String,
    pub media_type: String,
    /// The statement's predicate (`https://slsa.dev/provenance/v1`).
    pub predicate_type: String,
}

/// The attachment name npm gives the bundle of `name@version`.
pub fn attachment_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.sigstore")
}

/// The package URL npm puts in the statement's subject (`pkg:npm/%40scope/name@1.0.0`).
fn purl(name: &str, version: &str) -> String {
    format!("pkg:npm/{}@{version}", name.replacen('@', "%40", 1))
}

/// Checks the `.sigstore` attachment of a publish of `name@version` whose tarball has this
/// sha512 (hex).
pub fn check(attachment: &Value, name: &str, version: &str, sha512_hex: &str) -> Result<Provenance, String> {
    if let Some(ct) = attachment.get("content_type").and_then(Value::as_str) {
        if !ct.starts_with(MEDIA_TYPE_PREFIX) {
            return Err(format!("the provenance attachment's content type {ct:?} is not a sigstore bundle"));
        }
    }
    let text = attachment.get("data").and_then(Value::as_str).ok_or("the provenance attachment has no data")?;
    if text.len() > MAX_BUNDLE {
        return Err(format!("the provenance bundle is larger than {} KiB", MAX_BUNDLE >> 10));
    }
    let bundle: Value = serde_json::from_str(text).map_err(|e| format!("the provenance bundle is not JSON: {e}"))?;
    let media_type = bundle.get("mediaType").and_then(Value::as_str).filter(|m| m.starts_with(MEDIA_TYPE_PREFIX));
    let media_type = media_type.ok_or("the provenance bundle has no sigstore mediaType")?.to_string();
    if !bundle.get("verificationMaterial").is_some_and(Value::is_object) {
        return Err("the provenance bundle has no verificationMaterial".into());
    }
    let envelope = bundle.get("dsseEnvelope").ok_or("the provenance bundle has no dsseEnvelope")?;
    if envelope.get("payloadType").and_then(Value::as_str) != Some(INTOTO_PAYLOAD_TYPE) {
        return Err(format!("the provenance bundle's payloadType is not {INTOTO_PAYLOAD_TYPE}"));
    }
    if envelope.get("signatures").and_then(Value::as_array).is_none_or(|s| s.is_empty()) {
        return Err("the provenance bundle's envelope has no signature".into());
    }
    let payload = envelope.get("payload").and_then(Value::as_str).ok_or("the provenance bundle's envelope has no payload")?;
    let payload = base64::engine::general_purpose::STANDARD.decode(payload).map_err(|e| format!("the provenance payload is not base64: {e}"))?;
    let statement: Value = serde_json::from_slice(&payload).map_err(|e| format!("the provenance statement is not JSON: {e}"))?;
    if !statement.get("_type").and_then(Value::as_str).is_some_and(|t| t.starts_with("https://in-toto.io/Statement/")) {
        return Err("the provenance payload is not an in-toto statement".into());
    }
    let predicate_type = statement.get("predicateType").and_then(Value::as_str).filter(|p| !p.is_empty() && p.len() <= 1024);
    let predicate_type = predicate_type.ok_or("the provenance statement has no predicateType")?.to_string();
    let subjects = statement.get("subject").and_then(Value::as_array).filter(|s| s.len() == 1);
    let subject = &subjects.ok_or("the provenance statement names exactly one subject")?[0];
    // Both are required: a subject without them (`{}`, or a sha256 only) vouched for nothing,
    // and the version then advertised provenance.
    let n = subject.get("name").and_then(Value::as_str).ok_or_else(|| format!("the provenance subject names no package (want {})", purl(name, version)))?;
    if n != purl(name, version) && n != format!("pkg:npm/{name}@{version}") {
        return Err(format!("the provenance subject {} is not {}", n.chars().take(300).collect::<String>(), purl(name, version)));
    }
    let d = subject.pointer("/digest/sha512").and_then(Value::as_str).ok_or("the provenance subject has no sha512 digest")?;
    if !d.eq_ignore_ascii_case(sha512_hex) {
        return Err("the provenance subject's sha512 digest does not match the tarball".into());
    }
    Ok(Provenance { bundle: text.to_string(), media_type, predicate_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle(subject: Value) -> Value {
        let statement =
            json!({"_type": "https://in-toto.io/Statement/v1", "subject": [subject], "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}});
        let payload = base64::engine::general_purpose::STANDARD.encode(statement.to_string());
        let b = json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {"certificate": {"rawBytes": "AA=="}},
            "dsseEnvelope": {"payload": payload, "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}]}});
        json!({"content_type": "application/vnd.dev.sigstore.bundle.v0.3+json", "data": b.to_string()})
    }

    #[test]
    fn a_bundle_about_this_tarball_is_taken() {
        let p = check(&bundle(json!({"name": "pkg:npm/%40s/x@1.0.0", "digest": {"sha512": "AB12"}})), "@s/x", "1.0.0", "ab12").unwrap();
        assert_eq!(p.predicate_type, "https://slsa.dev/provenance/v1");
        assert!(p.media_type.starts_with(MEDIA_TYPE_PREFIX));
        assert_eq!(attachment_name("@s/x", "1.0.0"), "@s/x-1.0.0.sigstore");
    }

    #[test]
    fn bundles_about_something_else_or_malformed_are_refused() {
        assert!(check(&bundle(json!({"name": "pkg:npm/x@1.0.0", "digest": {"sha512": "ff"}})), "x", "1.0.0", "ab").unwrap_err().contains("digest"));
        assert!(check(&bundle(json!({"name": "pkg:npm/y@1.0.0", "digest": {"sha512": "ab"}})), "x", "1.0.0", "ab").unwrap_err().contains("subject"));
        assert!(check(&bundle(json!({})), "x", "1.0.0", "ab").unwrap_err().contains("names no package"));
        assert!(check(&bundle(json!({"name": "pkg:npm/x@1.0.0", "digest": {"sha256": "00"}})), "x", "1.0.0", "ab").unwrap_err().contains("no sha512"));
        assert!(check(&json!({"data": "not json"}), "x", "1.0.0", "ab").is_err());
        assert!(check(&json!({"data": "{}"}), "x", "1.0.0", "ab").is_err());
        assert!(check(&json!({"content_type": "text/plain", "data": "{}"}), "x", "1.0.0", "ab").unwrap_err().contains("content type"));
        let huge = json!({"data": " ".repeat(MAX_BUNDLE + 1)});
        assert!(check(&huge, "x", "1.0.0", "ab").unwrap_err().contains("larger"));
    }
}
