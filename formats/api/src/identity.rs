//! Identity services a format may offer its clients: checking a password (npm's CouchDB-style
//! login) and the caller's API tokens (`npm token list/revoke`). The server implements them over
//! its users, roles and token table; a format never sees either.

use async_trait::async_trait;

use crate::ctx::Principal;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    /// Reads only, whatever the user's roles allow.
    pub readonly: bool,
    /// Valid for this repository only.
    pub repository: Option<String>,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to recognise it by.
    pub prefix: String,
    /// sha256 of the secret (hex): npm's token `key`.
    pub key: String,
    pub readonly: bool,
    pub repository: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct NewToken {
    pub info: TokenInfo,
    /// Shown once; only its hash is kept.
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

#[async_trait(?Send)]
pub trait Identity: Send + Sync {
    /// The principal for a user name and password (or API token), if they are valid.
    async fn login(&self, user: &str, password: &str) -> Option<Principal>;
    async fn create_token(&self, user: &str, spec: TokenSpec) -> Result<NewToken, IdentityError>;
    async fn tokens(&self, user: &str) -> Result<Vec<TokenInfo>, IdentityError>;
    /// Revokes one of `user`'s tokens by id or key; `false` if there is none.
    async fn revoke_token(&self, user: &str, id_or_key: &str) -> Result<bool, IdentityError>;
}
