//! PEP 740 attestations: the shape an upload's `attestations` field must have, and the
//! provenance object the Integrity API serves. Pure, no I/O.
//!
//! wharf runs offline and knows no Trusted Publisher, so it cannot verify an attestation's
//! Sigstore signature, certificate chain or transparency log entries: those are checked for
//! shape only. What it does check is what binds an attestation to the upload: the in-toto
//! statement's one subject names this very file, with this file's sha256. The rest is for
//! the client to verify against an identity it trusts (docs/api.md, "PEP 740 attestations").

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The `attestations` form field, whole. A Sigstore-signed attestation is about 10 KiB
/// (certificate, signature, and a transparency entry with its inclusion proof).
pub const MAX_FIELD: usize = 128 << 10;
/// Warehouse's two attestation types; one attestation of each at most (as Warehouse).
pub const PREDICATE_TYPES: &[&str] = &["https://docs.pypi.org/attestations/publish/v1", "https://slsa.dev/provenance/v1"];
/// The in-toto statement format PEP 740 requires.
const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The Integrity API's media type (PEP 740).
pub const INTEGRITY_TYPE: &str = "application/vnd.pypi.integrity.v1+json";
/// A provenance object as stored: the checked field plus a few bytes of wrapping.
pub const MAX_PROVENANCE: u64 = (MAX_FIELD as u64) + 4096;
/// The publisher named in the bundles wharf builds. PEP 740 makes a publisher a Trusted
/// Publisher identity (`kind`, `claims`, open to more keys); wharf had none to check, and says
/// so rather than borrowing a kind (GitHub, GitLab) whose claims it cannot vouch for.
pub const PUBLISHER_KIND: &str = "wharf-unverified";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestationError {
    #[error("the attestations field is larger than {} KiB", MAX_FIELD >> 10)]
    TooLarge,
    #[error("malformed attestations: {0}")]
    Malformed(String),
    #[error("an empty attestation set is not permitted (omit the field to upload without attestations)")]
    Empty,
    #[error("at most {} attestations per file are supported", PREDICATE_TYPES.len())]
    TooMany,
    #[error("attestation {index}: unsupported predicate type {predicate_type:?}")]
    UnsupportedPredicate { index: usize, predicate_type: String },
    #[error("multiple attestations with the same predicate type ({0}) are not supported")]
    DuplicatePredicate(String),
    #[error("attestation {index}: the statement's subject is {subject:?}, not the uploaded file {filename:?}")]
    WrongSubject { index: usize, subject: String, filename: String },
    #[error("attestation {index}: the statement's subject has sha256 {attested}, the uploaded file {actual}")]
    WrongDigest { index: usize, attested: String, actual: String },
}

/// Checks an upload's `attestations` field against the file uploaded with it; returns the
/// attestation objects as sent (unknown keys kept: PEP 740 allows them).
pub fn check(raw: &[u8], filename: &str, sha256_hex: &str) -> Result<Vec<Value>, AttestationError> {
    if raw.len() > MAX_FIELD {
        return Err(AttestationError::TooLarge);
    }
    let v: Value = serde_json::from_slice(raw).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Value::Array(items) = v else { return Err(malformed("expected a JSON array of attestation objects")) };
    if items.is_empty() {
        return Err(AttestationError::Empty);
    }
    if items.len() > PREDICATE_TYPES.len() {
        return Err(AttestationError::TooMany);
    }
    let mut seen: Vec<String> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let statement = check_shape(item).map_err(|m| malformed(format!("attestation {index}: {m}")))?;
        let predicate_type = statement_field(&statement, "predicateType").map_err(|m| malformed(format!("attestation {index}: {m}")))?;
        if !PREDICATE_TYPES.contains(&predicate_type.as_str()) {
            return Err(AttestationError::UnsupportedPredicate { index, predicate_type });
        }
        if seen.contains(&predicate_type) {
            return Err(AttestationError::DuplicatePredicate(predicate_type));
        }
        check_subject(index, &statement, filename, sha256_hex)?;
        seen.push(predicate_type);
    }
    Ok(items)
}

/// The provenance object (PEP 740) for attestations [`check`] accepted: one bundle.
pub fn provenance(attestations: Vec<Value>) -> Value {
    json!({
        "version": 1,
        "attestation_bundles": [{
            "publisher": {"kind": PUBLISHER_KIND, "claims": null},
            "attestations": attestations,
        }],
    })
}

fn malformed(m: impl Into<String>) -> AttestationError {
    AttestationError::Malformed(m.into())
}

/// The attestation object's required keys and types; returns the decoded in-toto statement.
fn check_shape(item: &Value) -> Result<Map<String, Value>, String> {
    let obj = item.as_object().ok_or("not a JSON object")?;
    if obj.get("version") != Some(&json!(1)) {
        return Err("version must be 1".into());
    }
    let material = obj.get("verification_material").and_then(Value::as_object).ok_or("verification_material must be an object")?;
    base64_field(material, "verification_material.certificate")?;
    let entries = material.get("transparency_entries").and_then(Value::as_array).ok_or("verification_material.transparency_entries must be an array")?;
    if entries.is_empty() || !entries.iter().all(Value::is_object) {
        return Err("verification_material.transparency_entries must hold one or more objects".into());
    }
    let envelope = obj.get("envelope").and_then(Value::as_object).ok_or("envelope must be an object")?;
    base64_field(envelope, "envelope.signature")?;
    let statement = base64_field(envelope, "envelope.statement")?;
    match serde_json::from_slice(&statement) {
        Ok(Value::Object(s)) => Ok(s),
        _ => Err("envelope.statement is not a JSON object (an in-toto statement)".into()),
    }
}

/// A non-empty base64 string at `path`'s last key of `obj`, decoded.
fn base64_field(obj: &Map<String, Value>, path: &str) -> Result<Vec<u8>, String> {
    let key = path.rsplit('.').next().unwrap_or(path);
    let s = obj.get(key).and_then(Value::as_str).ok_or_else(|| format!("{path} must be a string"))?;
    match STANDARD.decode(s) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(format!("{path} is empty")),
        Err(e) => Err(format!("{path} is not base64: {e}")),
    }
}

fn statement_field(statement: &Map<String, Value>, key: &str) -> Result<String, String> {
    if statement.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
        return Err(format!("the statement's _type must be {STATEMENT_TYPE}"));
    }
    statement.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| format!("the statement has no {key}"))
}

/// The statement's one subject must be this file: an attestation for another file (or for
/// several) must not be served as this one's.
fn check_subject(index: usize, statement: &Map<String, Value>, filename: &str, sha256_hex: &str) -> Result<(), AttestationError> {
    let subjects = statement.get("subject").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let [subject] = subjects else {
        return Err(malformed(format!("attestation {index}: the statement must have exactly one subject, it has {}", subjects.len())));
    };
    let name = subject.get("name").and_then(Value::as_str).unwrap_or_default();
    if name != filename {
        return Err(AttestationError::WrongSubject { index, subject: name.to_string(), filename: filename.to_string() });
    }
    let attested = subject.pointer("/digest/sha256").and_then(Value::as_str).unwrap_or_default();
    if !attested.eq_ignore_ascii_case(sha256_hex) {
        return Err(AttestationError::WrongDigest { index, attested: attested.to_string(), actual: sha256_hex.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "demo-1.0-py3-none-any.whl";
    const SHA: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

    fn statement(name: &str, sha: &str, predicate: &str) -> String {
        let s = json!({"_type": STATEMENT_TYPE, "subject": [{"name": name, "digest": {"sha256": sha}}], "predicateType": predicate, "predicate": {}});
        STANDARD.encode(s.to_string())
    }

    fn attestation(statement: String) -> Value {
        json!({
            "version": 1,
            "verification_material": {"certificate": STANDARD.encode(b"DER"), "transparency_entries": [{"logIndex": "1"}]},
            "envelope": {"statement": statement, "signature": STANDARD.encode(b"sig")},
        })
    }

    fn raw(items: &[Value]) -> Vec<u8> {
        serde_json::to_vec(items).unwrap()
    }

    #[test]
    fn a_well_formed_attestation_of_this_file_is_kept_as_sent() {
        let mut a = attestation(statement(FILE, SHA, PREDICATE_TYPES[0]));
        a["extra"] = json!("kept");
        let b = attestation(statement(FILE, &SHA.to_uppercase(), PREDICATE_TYPES[1]));
        assert_eq!(check(&raw(&[a.clone(), b.clone()]), FILE, SHA), Ok(vec![a.clone(), b]));
        let p = provenance(vec![a.clone()]);
        assert_eq!(p["version"], 1);
        assert_eq!(p["attestation_bundles"][0]["attestations"][0], a);
        assert_eq!(p["attestation_bundles"][0]["publisher"]["kind"], PUBLISHER_KIND);
    }

    #[test]
    fn an_attestation_of_another_file_is_refused() {
        let other = "bb00000000000000000000000000000000000000000000000000000000000000";
        let a = attestation(statement(FILE, other, PREDICATE_TYPES[0]));
        assert!(matches!(check(&raw(&[a]), FILE, SHA), Err(AttestationError::WrongDigest { .. })));
        let a = attestation(statement("demo-1.0.tar.gz", SHA, PREDICATE_TYPES[0]));
        assert!(matches!(check(&raw(&[a]), FILE, SHA), Err(AttestationError::WrongSubject { .. })));
    }

    #[test]
    fn malformed_sets_are_refused_with_the_reason() {
        let good = attestation(statement(FILE, SHA, PREDICATE_TYPES[0]));
        assert!(matches!(check(b"{", FILE, SHA), Err(AttestationError::Malformed(m)) if m.starts_with("not JSON")));
        assert!(matches!(check(b"{}", FILE, SHA), Err(AttestationError::Malformed(_))));
        assert_eq!(check(b"[]", FILE, SHA), Err(AttestationError::Empty));
        assert_eq!(check(&raw(&[good.clone(), good.clone(), good.clone()]), FILE, SHA), Err(AttestationError::TooMany));
        assert!(matches!(check(&raw(&[good.clone(), good.clone()]), FILE, SHA), Err(AttestationError::DuplicatePredicate(_))));
        let unsupported = attestation(statement(FILE, SHA, "https://example.com/x"));
        assert!(matches!(check(&raw(&[unsupported]), FILE, SHA), Err(AttestationError::UnsupportedPredicate { .. })));
        let mut v2 = good.clone();
        v2["version"] = json!(2);
        let mut not_b64 = good.clone();
        not_b64["envelope"]["signature"] = json!("***");
        let mut no_entries = good.clone();
        no_entries["verification_material"]["transparency_entries"] = json!([]);
        let not_json = attestation(STANDARD.encode(b"not json"));
        for (bad, says) in [(v2, "version"), (not_b64, "envelope.signature"), (no_entries, "transparency_entries"), (not_json, "envelope.statement")] {
            match check(&raw(&[bad]), FILE, SHA) {
                Err(AttestationError::Malformed(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{says}: {other:?}"),
            }
        }
        assert_eq!(check(&vec![b' '; MAX_FIELD + 1], FILE, SHA), Err(AttestationError::TooLarge));
    }
}
