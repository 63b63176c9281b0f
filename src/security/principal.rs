//! Turns a request's `Authorization` header into a [`Principal`], with the privileges of the
//! caller's roles (or of the anonymous role).
//!
//! Verified Basic credentials are remembered for a minute (keyed by a hash of user and
//! password, never the password itself): argon2 costs tens of milliseconds by design, and a
//! `docker pull` with Basic auth sends the credentials on every request. A change to users or
//! roles clears this node's caches at once; other nodes see it within [`CACHE_TTL`] (the
//! anonymous role within [`ANONYMOUS_TTL`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine;
use sha2::{Digest as _, Sha256};
use wharf_format::{Access, Principal};

use super::{password, roles};
use super::token::TokenKeys;
use crate::db::{users, Db};

pub const CACHE_TTL: Duration = Duration::from_secs(60);
pub const ANONYMOUS_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

pub struct Authenticator {
    db: Db,
    pub tokens: TokenKeys,
    formats: Vec<&'static str>,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    anonymous: Mutex<Option<(Principal, Instant)>>,
}

impl Authenticator {
    pub fn new(db: Db, tokens: TokenKeys, formats: Vec<&'static str>) -> Authenticator {
        Authenticator { db, tokens, formats, cache: Mutex::new(HashMap::new()), anonymous: Mutex::new(None) }
    }

    pub fn formats(&self) -> &[&'static str] {
        &self.formats
    }

    /// Forgets cached logins and the anonymous role: users or roles changed.
    pub fn invalidate(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.anonymous.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A caller without credentials, holding the anonymous role's privileges.
    pub async fn anonymous(&self) -> Principal {
        if let Some((p, at)) = self.anonymous.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if at.elapsed() < ANONYMOUS_TTL {
                return p.clone();
            }
        }
        let formats = self.formats.clone();
        let resolved = self
            .db
            .run(move |conn| Ok(roles::resolve(&[roles::ANONYMOUS_ROLE.to_string()], &users::roles(conn)?, &formats)))
            .await
            .unwrap_or_default();
        // `nx-all` on the anonymous role is refused when it is set; ignore it if it got there.
        let p = Principal { user: None, access: Access::Anonymous(Arc::from(resolved.repo)) };
        *self.anonymous.lock().unwrap_or_else(|e| e.into_inner()) = Some((p.clone(), Instant::now()));
        p
    }

    /// The caller of `req`. Wrong credentials give a principal that no check passes (not
    /// anonymous, which may read what the anonymous role grants), so each protocol answers
    /// with its own 401.
    pub async fn principal(&self, req: &HttpRequest) -> Principal {
        let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return self.anonymous().await;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, pass)) = decode_basic(rest.trim()) else { return rejected() };
            return self.password_login(&user, &pass).await.unwrap_or_else(rejected);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return match self.tokens.verify(rest.trim()) {
                Some(c) => Principal {
                    user: (!c.sub.is_empty()).then_some(c.sub),
                    access: Access::Scoped(c.grants.iter().map(|g| g.to_grant()).collect()),
                },
                None => rejected(),
            };
        }
        rejected()
    }

    /// Checks a username and password; `None` if they do not match an active user.
    pub async fn password_login(&self, user: &str, pass: &str) -> Option<Principal> {
        let key: [u8; 32] = Sha256::new().chain_update(user.as_bytes()).chain_update([0]).chain_update(pass.as_bytes()).finalize().into();
        if let Some((p, at)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < CACHE_TTL {
                return Some(p.clone());
            }
        }
        let (user, pass) = (user.to_string(), pass.to_string());
        let formats = self.formats.clone();
        let (found, resolved) = self
            .db
            .run(move |conn| {
                let Some(row) = users::get(conn, &user)?.filter(|r| r.status == "active" && password::verify(&pass, &r.password_hash)) else {
                    return Ok(None);
                };
                let resolved = roles::resolve(&row.role_ids(), &users::roles(conn)?, &formats);
                Ok(Some((row, resolved)))
            })
            .await
            .ok()
            .flatten()?;
        let access = if resolved.all { Access::All } else { Access::Privileges(Arc::from(resolved.repo)) };
        let p = Principal { user: Some(found.username), access };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (p.clone(), Instant::now()));
        Some(p)
    }
}

/// Credentials were presented and are wrong: not anonymous (which may read public
/// repositories) but refused everywhere.
fn rejected() -> Principal {
    Principal { user: None, access: Access::Scoped(vec![]) }
}

pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}
