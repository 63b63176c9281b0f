//! Turns a request's `Authorization` header into a [`Principal`].
//!
//! Verified Basic credentials are remembered for a minute (keyed by a hash of user and
//! password, never the password itself): argon2 costs tens of milliseconds by design, and a
//! `docker pull` with Basic auth sends the credentials on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine;
use sha2::{Digest as _, Sha256};
use wharf_format::{Access, Principal};

use super::password;
use super::token::TokenKeys;
use crate::db::{users, Db};

const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

pub struct Authenticator {
    db: Db,
    pub tokens: TokenKeys,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl Authenticator {
    pub fn new(db: Db, tokens: TokenKeys) -> Authenticator {
        Authenticator { db, tokens, cache: Mutex::new(HashMap::new()) }
    }

    /// The caller of `req`. Wrong credentials give [`Access::Rejected`]-style anonymous
    /// principals that no check passes, so each protocol answers with its own 401.
    pub async fn principal(&self, req: &HttpRequest) -> Principal {
        let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Principal::anonymous();
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
        let found = self
            .db
            .run(move |conn| {
                let row = users::get(conn, &user)?;
                Ok(row.filter(|r| r.status == "active" && password::verify(&pass, &r.password_hash)))
            })
            .await
            .ok()
            .flatten()?;
        let p = Principal { user: Some(found.username), access: if found.admin { Access::All } else { Access::User } };
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
