//! Docker bearer tokens: short-lived HS256 JWTs naming what they allow.
//!
//! The signing key lives in the database, so every node signs and verifies with the same key.
//! A token carries both the client's view (`access`, as in Distribution's token spec) and the
//! resolved grants (`grants`: wharf repository + image), so a token issued for
//! `host:8081/docker-hosted/app` is checked against the repository it was issued for whatever
//! port it is replayed on.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use wharf_format::{Action, Grant, Realm};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Username; empty for anonymous tokens.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<AccessEntry>,
    pub grants: Vec<GrantClaim>,
    /// The realm of `sub` (`local`, `ldap`); empty for anonymous tokens. A token whose user has
    /// since been deleted or disabled, or whose directory name now belongs to a local user, is
    /// refused before it expires.
    #[serde(default)]
    pub realm: String,
    /// What the holder proved at the token endpoint; checked again on every use.
    #[serde(flatten)]
    pub source: BearerSource,
}

/// How a bearer token's holder proved who they are, carried in the token so that every node can
/// tell, from the database, whether that proof still stands. Tokens of earlier versions carry
/// none of it (they still end with their user, and never exceed the user's current rights).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BearerSource {
    /// The local user's row id: a user deleted and created again under the same name is
    /// another user (ids are never reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    /// A fingerprint of the local user's password hash, when the token was got with the
    /// password: a password change (a new salted hash) ends the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
    /// The API token it was got with: revoking or expiring that token ends this one, and its
    /// narrowing (read-only, one repository) bounds this one's grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantClaim {
    pub repository: String,
    pub object: String,
    pub actions: Vec<String>,
}

impl GrantClaim {
    pub fn to_grant(&self) -> Grant {
        Grant {
            repository: self.repository.clone(),
            object: self.object.clone(),
            actions: self
                .actions
                .iter()
                .filter_map(|a| match a.as_str() {
                    "read" => Some(Action::Read),
                    "write" => Some(Action::Write),
                    "delete" => Some(Action::Delete),
                    _ => None,
                })
                .collect(),
        }
    }
}

pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Read => "read",
        Action::Write => "write",
        Action::Delete => "delete",
    }
}

pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    service: String,
}

const ISSUER: &str = "wharf";
/// The audience of console session cookies: a Docker token is never a session, nor the reverse.
const SESSION_AUDIENCE: &str = "wharf-console";

/// A console session, carried in an HttpOnly cookie.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    /// The realm of `sub`.
    pub realm: String,
    /// The session's row in the `sessions` table: the session lives while the row does.
    pub sid: String,
    pub exp: u64,
    pub iat: u64,
    /// Must come back in `X-CSRF-Token` with every state-changing request made with the cookie.
    pub csrf: String,
}

impl TokenKeys {
    pub fn new(secret: &[u8], service: &str) -> TokenKeys {
        TokenKeys { enc: EncodingKey::from_secret(secret), dec: DecodingKey::from_secret(secret), service: service.to_string() }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.enc).expect("HS256 signing of serializable claims")
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[&self.service]);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.dec, &v).ok().map(|d| d.claims)
    }

    pub fn sign_session(&self, user: &str, realm: Realm, sid: &str, ttl: u64) -> (String, SessionClaims) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = SessionClaims {
            iss: ISSUER.into(),
            aud: SESSION_AUDIENCE.into(),
            sub: user.into(),
            realm: realm.as_str().into(),
            sid: sid.into(),
            exp: now + ttl,
            iat: now,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc).expect("HS256 signing of serializable claims");
        (jwt, claims)
    }

    pub fn verify_session(&self, jwt: &str) -> Option<SessionClaims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[SESSION_AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        v.leeway = 5;
        jsonwebtoken::decode::<SessionClaims>(jwt, &self.dec, &v).ok().map(|d| d.claims)
    }

    pub fn claims(&self, user: Option<(&str, Realm)>, source: BearerSource, ttl: u64, access: Vec<AccessEntry>, grants: Vec<GrantClaim>) -> Claims {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Claims {
            iss: ISSUER.into(),
            sub: user.map(|(u, _)| u).unwrap_or_default().into(),
            realm: user.map(|(_, r)| r.as_str()).unwrap_or_default().into(),
            aud: self.service.clone(),
            exp: now + ttl,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
            grants,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_same_key_and_service() {
        let k = TokenKeys::new(b"0123456789abcdef0123456789abcdef", "wharf");
        let t = k.sign(&k.claims(Some(("admin", Realm::Local)), BearerSource::default(), 60, vec![], vec![]));
        assert_eq!(k.verify(&t).unwrap().sub, "admin");
        assert!(TokenKeys::new(b"another key another key another!", "wharf").verify(&t).is_none());
        assert!(TokenKeys::new(b"0123456789abcdef0123456789abcdef", "other").verify(&t).is_none());
        assert!(k.verify("garbage").is_none());
    }
}
