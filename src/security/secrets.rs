//! Secrets at rest: the values wharf must be able to read back (the token-signing key, LDAP bind
//! passwords, proxy upstream passwords, webhook secrets) are stored encrypted with a key that is not in the
//! database, so a copy of the database (a file, a dump, a replica) leaks none of them.
//!
//! The key is 32 random bytes: `WHARF_SECRET_KEY` (base64), or the file `security.secret_key_file`
//! (default `<data_dir>/secret.key`, created on the first start, mode 0600). Every node of a
//! cluster needs the same key. The database remembers the key's id (a hash, not the key), so a
//! missing or different key stops the start with an error naming it instead of making a new
//! key, which would leave every stored secret unreadable and every issued session invalid.
//!
//! A stored value is `enc:v2:` + base64(nonce ‖ XChaCha20-Poly1305 ciphertext), with the place it
//! is stored at (a setting's key, a repository's name and the JSON path of the field) as
//! associated data: a ciphertext copied to another place does not open there. `enc:v1:` values
//! (one constant associated data, from the version before) are still read, and the start-up seals
//! them again as v2, as it does values without a prefix (plaintext left by older versions).
//!
//! A value that arrives in a request is always plaintext, whatever it looks like: it is sealed as
//! it is, and opens to the same text, so a sealed value pasted from a database dump is a literal
//! password and is never decrypted for a destination of the sender's choosing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};

/// Marks a sealed value; the version names the cipher, the layout and the associated data.
pub const PREFIX: &str = "enc:v2:";
/// Values sealed before the associated data named their place: read, never written.
const PREFIX_V1: &str = "enc:v1:";
/// The environment variable that holds the key itself (base64), for clusters.
pub const KEY_ENV: &str = "WHARF_SECRET_KEY";
/// The settings row holding the id of the key the database's secrets are sealed with.
pub const KEY_ID_SETTING: &str = "secrets.key_id";

const NONCE_LEN: usize = 24;
const AAD_V1: &[u8] = b"wharf stored secret v1";

/// The associated data of a v2 value: the place it is stored at.
fn aad(location: &str) -> Vec<u8> {
    [b"wharf stored secret v2\0".as_slice(), location.as_bytes()].concat()
}
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("secret key {origin}: expected 32 bytes (raw, or base64 text)")]
    BadKey { origin: String },
    #[error(
        "the database's secrets are encrypted with a key that the secret key file {path} should hold, and it does not exist; \
         restore it (or point security.secret_key_file / {KEY_ENV} at the key every node shares). A new key cannot read them."
    )]
    Missing { path: String },
    #[error("secret key {origin} (id {found}) is not the key this database's secrets are encrypted with (id {expected}); every node needs the same key")]
    WrongKey { origin: String, found: String, expected: String },
    #[error("a stored secret cannot be decrypted with the secret key {origin} (damaged value)")]
    Decrypt { origin: String },
    #[error("the secret key is not loaded")]
    NotLoaded,
}

pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    id: String,
    /// Where the key came from, for error messages (a file path or the variable's name).
    origin: String,
}

impl SecretKey {
    pub fn from_bytes(key: &[u8], origin: &str) -> Result<SecretKey, SecretError> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| SecretError::BadKey { origin: origin.to_string() })?;
        let id = hex::encode(&Sha256::new().chain_update(b"wharf secret key id\0").chain_update(key).finalize()[..8]);
        Ok(SecretKey { cipher, id, origin: origin.to_string() })
    }

    /// 32 raw bytes, or base64 text of 32 bytes (what wharf writes, and what `WHARF_SECRET_KEY` holds).
    fn parse(raw: &[u8], origin: &str) -> Result<SecretKey, SecretError> {
        if raw.len() == 32 {
            return Self::from_bytes(raw, origin);
        }
        let text = std::str::from_utf8(raw).map_err(|_| SecretError::BadKey { origin: origin.to_string() })?;
        let bytes = B64.decode(text.trim()).map_err(|_| SecretError::BadKey { origin: origin.to_string() })?;
        Self::from_bytes(&bytes, origin)
    }

    /// A short, one-way name for the key (stored in the database to recognise it).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `plain` sealed for the place `location` (it opens only there).
    pub fn seal(&self, plain: &str, location: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce);
        let nonce_arr = XNonce::from(nonce);
        // Encryption fails only for messages beyond the cipher's limit (256 GiB).
        let ct =
            self.cipher.encrypt(&nonce_arr, Payload { msg: plain.as_bytes(), aad: &aad(location) }).expect("a secret is far below the cipher's message limit");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// The plaintext of the value stored at `location`; a value without a prefix is plaintext
    /// already.
    pub fn open(&self, stored: &str, location: &str) -> Result<String, SecretError> {
        let (b64, aad) = if let Some(b64) = stored.strip_prefix(PREFIX) {
            (b64, aad(location))
        } else if let Some(b64) = stored.strip_prefix(PREFIX_V1) {
            (b64, AAD_V1.to_vec())
        } else {
            return Ok(stored.to_string());
        };
        let bad = || SecretError::Decrypt { origin: self.origin.clone() };
        let raw = B64.decode(b64).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| bad())?;
        let plain = self.cipher.decrypt(&nonce, Payload { msg: ct, aad: &aad }).map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

/// Is this stored value sealed (in any version)?
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX) || stored.starts_with(PREFIX_V1)
}

/// Is this stored value sealed in the current version (nothing for the start-up to redo)?
pub fn is_current(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Where the key comes from: the environment, or a file (default `<data_dir>/secret.key`).
pub enum KeySource {
    Env(String),
    File(PathBuf),
}

impl KeySource {
    pub fn from_config(data_dir: &Path, key_file: &str) -> KeySource {
        match std::env::var(KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => KeySource::Env(v),
            _ if !key_file.is_empty() => KeySource::File(PathBuf::from(key_file)),
            _ => KeySource::File(data_dir.join("secret.key")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            KeySource::Env(_) => KEY_ENV.to_string(),
            KeySource::File(p) => p.display().to_string(),
        }
    }

    /// Reads the key. A missing file is created with a new key only when `may_create` (the
    /// database holds no secrets sealed with another key yet).
    pub fn load(&self, may_create: bool) -> Result<SecretKey, SecretError> {
        match self {
            KeySource::Env(v) => SecretKey::parse(v.as_bytes(), KEY_ENV),
            KeySource::File(path) => {
                let origin = path.display().to_string();
                match std::fs::read(path) {
                    Ok(raw) => {
                        tighten(path);
                        SecretKey::parse(&raw, &origin)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                        create_key_file(path).map_err(|source| SecretError::KeyFile { path: origin.clone(), source })?;
                        tracing::warn!(file = %origin, "created a new secret key; back it up with the database: without it the stored secrets cannot be read");
                        SecretKey::parse(&std::fs::read(path).map_err(|source| SecretError::KeyFile { path: origin.clone(), source })?, &origin)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::Missing { path: origin }),
                    Err(source) => Err(SecretError::KeyFile { path: origin, source }),
                }
            }
        }
    }
}

/// A key file others can read is made owner-only (a warning when that is not ours to change).
fn tighten(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(file = %path.display(), error = %e, "the secret key file is readable by others and cannot be made owner-only");
            }
        }
    }
}

/// Writes a new key atomically: the complete file appears under its name or not at all, and when
/// two processes on one data dir race, both end up reading the winner's key.
fn create_key_file(path: &Path) -> std::io::Result<()> {
    let mut key = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut key);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        writeln!(f, "{}", B64.encode(key))?;
        f.sync_all()
    };
    let res = write().and_then(|_| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    });
    let _ = std::fs::remove_file(&tmp);
    res
}

/// The process's key, installed once at start (the storage functions of settings, LDAP servers
/// and repositories seal and open through it).
static KEY: OnceLock<SecretKey> = OnceLock::new();

pub fn install(key: SecretKey) {
    if KEY.set(key).is_err() {
        tracing::warn!("the secret key was installed already; keeping the first");
    }
}

pub fn key() -> Result<&'static SecretKey, SecretError> {
    KEY.get().ok_or(SecretError::NotLoaded)
}

/// Where a setting's secret value is stored (its associated data).
pub fn setting_location(key: &str) -> String {
    format!("settings/{key}")
}

/// Where a secret field of a repository's configuration is stored: the repository and the
/// field's JSON pointer.
pub fn repository_location(name: &str) -> String {
    format!("repositories/{name}")
}

pub fn seal(plain: &str, location: &str) -> Result<String, SecretError> {
    Ok(key()?.seal(plain, location))
}

pub fn open(stored: &str, location: &str) -> Result<String, SecretError> {
    if !is_sealed(stored) {
        return Ok(stored.to_string());
    }
    key()?.open(stored, location)
}

/// What to store for the plaintext `plain` (from a request, or read back) at `location`, where
/// `old` is stored now: `old` itself when it is a current value that opens to `plain` there (an
/// unchanged save stores the same bytes), otherwise a new seal. `plain` is never taken for a
/// sealed value, whatever it looks like.
pub fn seal_keeping(plain: &str, old: Option<&str>, location: &str) -> Result<String, SecretError> {
    if let Some(o) = old {
        if is_current(o) && open(o, location).ok().as_deref() == Some(plain) {
            return Ok(o.to_string());
        }
    }
    seal(plain, location)
}

/// A stored value brought to the current version (the start-up's upgrade): plaintext left by
/// older versions and v1 values are sealed again; current values are kept.
pub fn reseal(stored: &str, location: &str) -> Result<String, SecretError> {
    if is_current(stored) {
        return Ok(stored.to_string());
    }
    seal(&open(stored, location)?, location)
}

/// Object keys whose string values are secrets wherever they appear in a stored JSON document
/// (repository configurations: `httpClient.authentication.password`, bearer tokens, ...).
pub const SECRET_FIELDS: &[&str] = &["password", "authPassword", "bearerToken", "token", "secretAccessKey", "secretKey"];

/// Seals every secret field of `new` (plaintext, from a request) for its place: `location`
/// followed by the field's JSON pointer. A field whose value is what `old` (the stored document it
/// replaces) holds at the same place keeps `old`'s ciphertext, so saving an unchanged
/// configuration stores the same bytes.
pub fn seal_json(new: &mut serde_json::Value, old: Option<&serde_json::Value>, location: &str) -> Result<(), SecretError> {
    walk_secrets(new, old, location, &mut |s, old, at| seal_keeping(s, old.and_then(|o| o.as_str()), at))
}

/// Opens the sealed secret fields of `v` stored at `location` (the fields [`seal_json`] seals;
/// other strings are data).
pub fn open_json(v: &mut serde_json::Value, location: &str) -> Result<(), SecretError> {
    walk_secrets(v, None, location, &mut |s, _, at| if is_sealed(s) { open(s, at) } else { Ok(s.to_string()) })
}

/// What becomes of one secret field: its value, the old document's value there, its place.
type FieldFn<'a> = dyn FnMut(&str, Option<&serde_json::Value>, &str) -> Result<String, SecretError> + 'a;

/// Replaces each string secret field of `v` with `f(value, old value at the same place, place)`.
fn walk_secrets(v: &mut serde_json::Value, old: Option<&serde_json::Value>, at: &str, f: &mut FieldFn) -> Result<(), SecretError> {
    use serde_json::Value;
    // A JSON pointer's escapes (RFC 6901), so that no two fields share a place.
    let child = |k: &str| format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let old_v = old.and_then(|o| o.get(k));
                match val {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => *s = f(s, old_v, &child(k))?,
                    _ => walk_secrets(val, old_v, &child(k), f)?,
                }
            }
        }
        Value::Array(a) => {
            for (i, val) in a.iter_mut().enumerate() {
                walk_secrets(val, old.and_then(|o| o.get(i)), &child(&i.to_string()), f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A configuration document (plaintext, from a request) with its secrets sealed for `location`
/// (`old`: the stored text it replaces). Text that is not JSON is returned as it is.
pub fn seal_json_text(new: &str, old: Option<&str>, location: &str) -> Result<String, SecretError> {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(new) else {
        return Ok(new.to_string());
    };
    let old: Option<serde_json::Value> = old.and_then(|o| serde_json::from_str(o).ok());
    let before = v.clone();
    seal_json(&mut v, old.as_ref(), location)?;
    // Unchanged documents keep their exact text (key order, spacing).
    if v == before {
        return Ok(new.to_string());
    }
    Ok(v.to_string())
}

/// A stored document with every secret brought to the current version ([`reseal`]).
pub fn reseal_json_text(stored: &str, location: &str) -> Result<String, SecretError> {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(stored) else {
        return Ok(stored.to_string());
    };
    let before = v.clone();
    walk_secrets(&mut v, None, location, &mut |s, _, at| reseal(s, at))?;
    if v == before {
        return Ok(stored.to_string());
    }
    Ok(v.to_string())
}

/// The stored document at `location` with its secrets opened.
pub fn open_json_text(stored: &str, location: &str) -> Result<String, SecretError> {
    if !stored.contains(PREFIX) && !stored.contains(PREFIX_V1) {
        return Ok(stored.to_string());
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(stored) else {
        return Ok(stored.to_string());
    };
    open_json(&mut v, location)?;
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_then_open_and_a_wrong_key_or_place_fails() {
        let k = SecretKey::from_bytes(&[7u8; 32], "test").unwrap();
        let s = k.seal("bind-password", "settings/a");
        assert!(s.starts_with(PREFIX));
        assert!(!s.contains("bind-password"));
        assert_ne!(s, k.seal("bind-password", "settings/a"), "a fresh nonce each time");
        assert_eq!(k.open(&s, "settings/a").unwrap(), "bind-password");
        assert!(matches!(k.open(&s, "settings/b"), Err(SecretError::Decrypt { .. })), "a value opens only where it was sealed");
        assert_eq!(k.open("plain", "settings/a").unwrap(), "plain");
        let other = SecretKey::from_bytes(&[8u8; 32], "other").unwrap();
        assert!(matches!(other.open(&s, "settings/a"), Err(SecretError::Decrypt { .. })));
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open(&tampered, "settings/a").is_err());
        assert_ne!(k.id(), other.id());
    }

    /// A value as the previous version sealed it: constant associated data.
    fn seal_v1(k: &SecretKey, plain: &str) -> String {
        let nonce = [5u8; NONCE_LEN];
        let ct = k.cipher.encrypt(&XNonce::from(nonce), Payload { msg: plain.as_bytes(), aad: AAD_V1 }).unwrap();
        format!("{PREFIX_V1}{}", B64.encode([nonce.as_slice(), &ct].concat()))
    }

    #[test]
    fn v1_values_open_anywhere_and_are_resealed_for_their_place() {
        let k = SecretKey::from_bytes(&[7u8; 32], "test").unwrap();
        let v1 = seal_v1(&k, "old-secret");
        assert!(is_sealed(&v1) && !is_current(&v1));
        assert_eq!(k.open(&v1, "settings/a").unwrap(), "old-secret");
    }

    #[test]
    fn requests_never_hand_in_sealed_values_and_json_fields_are_bound_to_their_path() {
        install(SecretKey::from_bytes(&[3u8; 32], "test").unwrap());
        let k = key().unwrap();
        let elsewhere = seal("proxy-pw", "repositories/other/httpClient/authentication/password").unwrap();
        let doc = json!({"httpClient": {"authentication": {"password": "up-pw", "username": "u"}}, "note": "enc:v1:AAAA", "token": "enc:v1:notreal", "bearerToken": elsewhere});
        let sealed = seal_json_text(&doc.to_string(), None, "repositories/r").unwrap();
        assert!(!sealed.contains("up-pw") && sealed.contains("\"note\":\"enc:v1:AAAA\""), "{sealed}");
        let v: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        assert_ne!(v["token"], "enc:v1:notreal", "what only looks sealed is sealed");
        assert_ne!(v["bearerToken"], doc["bearerToken"], "a sealed value from a request is a literal, sealed again");
        assert_eq!(
            k.open(v["httpClient"]["authentication"]["password"].as_str().unwrap(), "repositories/r/httpClient/authentication/password").unwrap(),
            "up-pw"
        );
        let opened: serde_json::Value = serde_json::from_str(&open_json_text(&sealed, "repositories/r").unwrap()).unwrap();
        assert_eq!(opened, doc, "every secret opens to exactly what was sent, the pasted ciphertext included");
        assert!(open_json_text(&sealed, "repositories/s").is_err(), "the document opens only under its own name");
        // Saving the same document again keeps the ciphertext.
        assert_eq!(seal_json_text(&open_json_text(&sealed, "repositories/r").unwrap(), Some(&sealed), "repositories/r").unwrap(), sealed);
        // The start-up upgrade: plaintext and v1 become v2 for their place; v2 is kept.
        let legacy = json!({"password": "p", "secretKey": seal_v1(k, "s"), "token": v["token"].clone()}).to_string();
        let upgraded: serde_json::Value = serde_json::from_str(&reseal_json_text(&legacy, "repositories/r").unwrap()).unwrap();
        assert!(upgraded["password"].as_str().is_some_and(is_current) && upgraded["secretKey"].as_str().is_some_and(is_current));
        assert_eq!(upgraded["token"], v["token"]);
        assert_eq!(open(upgraded["secretKey"].as_str().unwrap(), "repositories/r/secretKey").unwrap(), "s");
        assert_eq!(reseal_json_text(&upgraded.to_string(), "repositories/r").unwrap(), upgraded.to_string());
    }

    #[test]
    fn key_parses_raw_and_base64_and_refuses_other_lengths() {
        let b64 = B64.encode([1u8; 32]);
        assert_eq!(SecretKey::parse(b64.as_bytes(), "x").unwrap().id(), SecretKey::parse(&[1u8; 32], "x").unwrap().id());
        assert!(matches!(SecretKey::parse(b"short", "x"), Err(SecretError::BadKey { .. })));
    }
}
