//! Secrets at rest: the values wharf must be able to read back (the token-signing key, LDAP bind
//! passwords, proxy upstream passwords) are stored encrypted with a key that is not in the
//! database, so a copy of the database (a file, a dump, a replica) leaks none of them.
//!
//! The key is 32 random bytes: `WHARF_SECRET_KEY` (base64), or the file `security.secret_key_file`
//! (default `<data_dir>/secret.key`, created on the first start, mode 0600). Every node of a
//! cluster needs the same key. The database remembers the key's id (a hash, not the key), so a
//! missing or different key stops the start with an error naming it instead of making a new
//! key, which would leave every stored secret unreadable and every issued session invalid.
//!
//! A stored value is `enc:v1:` + base64(nonce ‖ XChaCha20-Poly1305 ciphertext). Values without
//! the prefix are plaintext left by older versions; the start-up seals them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};

/// Marks a sealed value; the version names the cipher and layout.
pub const PREFIX: &str = "enc:v1:";
/// The environment variable that holds the key itself (base64), for clusters.
pub const KEY_ENV: &str = "WHARF_SECRET_KEY";
/// The settings row holding the id of the key the database's secrets are sealed with.
pub const KEY_ID_SETTING: &str = "secrets.key_id";

const NONCE_LEN: usize = 24;
const AAD: &[u8] = b"wharf stored secret v1";
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

    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce);
        let nonce_arr = XNonce::from(nonce);
        // Encryption fails only for messages beyond the cipher's limit (256 GiB).
        let ct = self.cipher.encrypt(&nonce_arr, Payload { msg: plain.as_bytes(), aad: AAD }).expect("a secret is far below the cipher's message limit");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// The plaintext of a stored value; a value without the prefix is plaintext already.
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bad = || SecretError::Decrypt { origin: self.origin.clone() };
        let raw = B64.decode(b64).map_err(|_| bad())?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| bad())?;
        let plain = self.cipher.decrypt(&nonce, Payload { msg: ct, aad: AAD }).map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

pub fn is_sealed(stored: &str) -> bool {
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

pub fn seal(plain: &str) -> Result<String, SecretError> {
    Ok(key()?.seal(plain))
}

pub fn open(stored: &str) -> Result<String, SecretError> {
    if !is_sealed(stored) {
        return Ok(stored.to_string());
    }
    key()?.open(stored)
}

/// Object keys whose string values are secrets wherever they appear in a stored JSON document
/// (repository configurations: `httpClient.authentication.password`, bearer tokens, ...).
pub const SECRET_FIELDS: &[&str] = &["password", "authPassword", "bearerToken", "token", "secretAccessKey", "secretKey"];

/// Seals every plaintext secret field of `new`. A field whose value is what `old` (the stored
/// document it replaces) holds at the same place keeps `old`'s ciphertext, so saving an unchanged
/// configuration stores the same bytes.
pub fn seal_json(new: &mut serde_json::Value, old: Option<&serde_json::Value>) -> Result<(), SecretError> {
    use serde_json::Value;
    match new {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                let old_v = old.and_then(|o| o.get(k));
                if SECRET_FIELDS.contains(&k.as_str()) {
                    if let Value::String(s) = v {
                        // A sealed value is kept only if it opens: a string that merely looks
                        // sealed is sealed like any other, so that reading it back cannot fail.
                        if is_sealed(s) && open(s).is_ok() {
                            continue;
                        }
                        if let Some(Value::String(o)) = old_v {
                            if is_sealed(o) && open(o).ok().as_deref() == Some(s.as_str()) {
                                *s = o.clone();
                                continue;
                            }
                        }
                        *s = seal(s)?;
                        continue;
                    }
                }
                seal_json(v, old_v)?;
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                seal_json(v, old.and_then(|o| o.get(i)))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Opens the sealed secret fields of `v` (the fields [`seal_json`] seals; other strings are data).
pub fn open_json(v: &mut serde_json::Value) -> Result<(), SecretError> {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match val {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) && is_sealed(s) => *s = open(s)?,
                    _ => open_json(val)?,
                }
            }
        }
        Value::Array(a) => a.iter_mut().try_for_each(open_json)?,
        _ => {}
    }
    Ok(())
}

/// A stored JSON document with its secrets sealed (`old`: the stored text it replaces). Text that
/// is not JSON is returned as it is.
pub fn seal_json_text(new: &str, old: Option<&str>) -> Result<String, SecretError> {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(new) else {
        return Ok(new.to_string());
    };
    let old: Option<serde_json::Value> = old.and_then(|o| serde_json::from_str(o).ok());
    let before = v.clone();
    seal_json(&mut v, old.as_ref())?;
    // Unchanged documents keep their exact text (key order, spacing).
    if v == before {
        return Ok(new.to_string());
    }
    Ok(v.to_string())
}

/// The document with its secrets opened.
pub fn open_json_text(stored: &str) -> Result<String, SecretError> {
    if !stored.contains(PREFIX) {
        return Ok(stored.to_string());
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(stored) else {
        return Ok(stored.to_string());
    };
    open_json(&mut v)?;
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_and_a_wrong_key_fails() {
        let k = SecretKey::from_bytes(&[7u8; 32], "test").unwrap();
        let s = k.seal("bind-password");
        assert!(s.starts_with(PREFIX));
        assert!(!s.contains("bind-password"));
        assert_ne!(s, k.seal("bind-password"), "a fresh nonce each time");
        assert_eq!(k.open(&s).unwrap(), "bind-password");
        assert_eq!(k.open("plain").unwrap(), "plain");
        let other = SecretKey::from_bytes(&[8u8; 32], "other").unwrap();
        assert!(matches!(other.open(&s), Err(SecretError::Decrypt { .. })));
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open(&tampered).is_err());
        assert_ne!(k.id(), other.id());
    }

    #[test]
    fn json_documents_seal_their_secret_fields_only() {
        install(SecretKey::from_bytes(&[3u8; 32], "test").unwrap());
        let doc = r#"{"httpClient":{"authentication":{"password":"up-pw","username":"u"}},"note":"enc:v1:AAAA","token":"enc:v1:notreal"}"#;
        let sealed = seal_json_text(doc, None).unwrap();
        assert!(!sealed.contains("up-pw") && sealed.contains("\"note\":\"enc:v1:AAAA\""), "{sealed}");
        let v: serde_json::Value = serde_json::from_str(&sealed).unwrap();
        assert_ne!(v["token"], "enc:v1:notreal", "what only looks sealed is sealed");
        let opened: serde_json::Value = serde_json::from_str(&open_json_text(&sealed).unwrap()).unwrap();
        assert_eq!(opened, serde_json::from_str::<serde_json::Value>(doc).unwrap());
        // Saving the same document again keeps the ciphertext.
        assert_eq!(seal_json_text(&open_json_text(&sealed).unwrap(), Some(&sealed)).unwrap(), sealed);
    }

    #[test]
    fn key_parses_raw_and_base64_and_refuses_other_lengths() {
        let b64 = B64.encode([1u8; 32]);
        assert_eq!(SecretKey::parse(b64.as_bytes(), "x").unwrap().id(), SecretKey::parse(&[1u8; 32], "x").unwrap().id());
        assert!(matches!(SecretKey::parse(b"short", "x"), Err(SecretError::BadKey { .. })));
    }
}
