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

/// A web login begun (npm's `/-/v1/login`): the user approves `id` in a browser, the client
/// polls with `done` (a secret only it holds) until the approval gives it a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebLogin {
    pub id: String,
    pub done: String,
    pub expires_at: i64,
}

/// A web login as the approval page sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebLoginInfo {
    /// The address of the client that began it, and when (ms since the epoch).
    pub client: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Who approved it, once approved.
    pub approved_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebLoginPoll {
    /// Not approved yet.
    Pending,
    /// Approved: the new token's secret (handed out once).
    Done(String),
    /// No such login, expired, or already collected.
    Unknown,
}

/// How long a web login waits for its approval.
pub const WEB_LOGIN_TTL_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The caller's credential may not do this (e.g. a token asking for another token).
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("{0}")]
    Internal(String),
    /// The credentials could not be checked now (the database or the LDAP directory did not
    /// answer): neither valid nor refused; the caller is told to try again (503).
    #[error("{0}")]
    Unavailable(String),
}

#[async_trait(?Send)]
pub trait Identity: Send + Sync {
    /// The principal for a user name and password, if they are valid. An API token is not a
    /// password here: whatever this principal goes on to create needs the real one. `client`
    /// is the caller's address (failed-login pauses are per user and address).
    /// [`IdentityError::Unavailable`] when they could not be checked now.
    async fn login(&self, user: &str, password: &str, client: &str) -> Result<Option<Principal>, IdentityError>;
    /// A new API token for `owner`, who must have proved a password (or hold a session).
    /// Creations and revocations are audited here, whichever protocol asked (`client`: the
    /// caller's address, for the audit log).
    async fn create_token(&self, owner: &Principal, spec: TokenSpec, client: &str) -> Result<NewToken, IdentityError>;
    async fn tokens(&self, owner: &Principal) -> Result<Vec<TokenInfo>, IdentityError>;
    /// Revokes one of `owner`'s tokens by id or key; `false` if there is none.
    /// Narrowed credentials may not.
    async fn revoke_token(&self, owner: &Principal, id_or_key: &str, client: &str) -> Result<bool, IdentityError>;
    /// Revokes the token whose secret this is (holding it is proof enough); `false` if none.
    async fn revoke_secret(&self, secret: &str, client: &str) -> Result<bool, IdentityError>;
    /// The e-mail address of `owner`, when wharf knows one (npm shows maintainers with theirs).
    async fn email_of(&self, _owner: &Principal) -> Option<String> {
        None
    }
    /// Begins a web login in `repository` for the client at `client`; it expires after
    /// [`WEB_LOGIN_TTL_MS`].
    async fn web_login_start(&self, repository: &str, client: &str) -> Result<WebLogin, IdentityError>;
    /// The login `id`, unless it is unknown or expired.
    async fn web_login_info(&self, id: &str) -> Result<Option<WebLoginInfo>, IdentityError>;
    /// `owner` (who proved a password) approves the login `id`: a new API token of theirs
    /// (`spec`) waits for the client. `false` if the login is unknown, expired or approved already.
    async fn web_login_approve(&self, id: &str, owner: &Principal, spec: TokenSpec, client: &str) -> Result<bool, IdentityError>;
    /// What the client polling with `done` gets.
    async fn web_login_poll(&self, done: &str) -> Result<WebLoginPoll, IdentityError>;
}
