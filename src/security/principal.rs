//! Turns a request's credentials into a [`Principal`]: who (user and realm), how they proved it
//! ([`Credential`]), and what they may do (their roles' privileges, narrowed by the credential).
//!
//! One rule for user names across realms: names are compared without regard to ASCII case, and
//! a name that exists as a local user, in any spelling, is decided by the local realm alone; a
//! directory entry of the same name (in any spelling) is refused, at login and whenever its
//! token, session or bearer token is used. Pauses after wrong passwords, cached logins, token
//! owners and session subjects are all keyed on that canonical name.
//!
//! A password check costs the same whatever the name, so that its time tells no names apart:
//! argon2 (against a hash nothing matches for unknown and disabled users) and, alongside it,
//! the same questions to each LDAP server (decoys for a local name, which the directory is never
//! asked about; see `ldap::authenticate`).
//!
//! What may be cached, and what must be asked every time:
//! - a verified password is remembered for the login cache time (argon2 costs tens of
//!   milliseconds by design, and `docker pull` with Basic credentials sends them on every
//!   request), under a hash of name and password, never the password; each use re-reads the
//!   user's row, so a password change, a role change, disabling or deleting the user ends it at
//!   once on every node (on a repository read, the re-read rides on the request's first query:
//!   see `db::deferred_check`);
//! - a local user's API token is remembered the same way, under a hash of the token: each use
//!   re-reads the token's row and its owner's, so revocation, expiry and changes to the owner
//!   act at once on every node; so is a local user's Docker bearer token (its signature and
//!   expiry checked on every use), under a hash of the whole token: each use re-reads what its
//!   proof names (the user's row; the API token it was got with). A directory user's tokens
//!   are not remembered: their access comes from the directory's remembered answer;
//! - console sessions read their user's row and the session row on every request: logout and
//!   user changes act at once;
//! - what a directory says about a user (for their tokens and sessions) is remembered for the
//!   login cache time, since wharf cannot see the directory change;
//! - what roles and privileges grant is remembered with a password, API token or bearer token,
//!   with the version of roles and privileges it was read at (`privileges::grants_version`);
//!   each use compares that version too, so a role narrowed acts at once on every node;
//! - every cache here is forgotten when users, roles or the LDAP servers change: on this node at
//!   once, on the others when PostgreSQL tells them (`db::notify`, well within 2 s);
//! - wrong-password counts are in the database, one count for every node; the pause a node
//!   knows of (its own, read before an uncached check, or told by another node) guards the
//!   cached path without a query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine;
use sha2::{Digest as _, Sha256};
use wharf_format::{
    canonical_user, now_millis, proxy::Fill, same_user, Access, Action, Audit, AuditEvent, Credential, Holder, Identity, IdentityError, NewToken, Principal,
    Realm, RepoPrivilege, SingleFlight, TokenInfo, TokenSpec, WebLogin, WebLoginInfo, WebLoginPoll, WEB_LOGIN_TTL_MS,
};

use super::token::{BearerSource, SessionClaims, TokenKeys};
use super::{ldap, password, roles, secrets};
use crate::db::deferred_check::DeferredCheck;
use crate::db::sessions::{self, SessionRow};
use crate::db::tokens::{self, TokenRow};
use crate::db::users::{self, RoleRow, UserRow};
use crate::db::web_logins;
use crate::db::{AnyConnection, Db, DbError};

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "wharf_session";

/// API tokens start with this, so that a token is told from a password or a JWT at a glance
/// (and by secret scanners).
pub const TOKEN_PREFIX: &str = "wharf_";

pub const CACHE_TTL: Duration = Duration::from_secs(60);
pub const ANONYMOUS_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;
/// The longest user name any realm has (`security::ldap` allows 256 bytes).
const MAX_USER_NAME: usize = 256;

pub struct Authenticator {
    db: Db,
    audit: Arc<dyn Audit>,
    pub tokens: TokenKeys,
    formats: Vec<&'static str>,
    logins: Mutex<HashMap<[u8; 32], CachedLogin>>,
    /// Password checks in progress, by login key: concurrent checks of one name and password
    /// make one.
    login_flights: SingleFlight<Checked>,
    /// Password checks take turns per name and place (see `checked_login`).
    login_turns: wharf_format::meta::KeyedLocks,
    /// When a password check last found no directory answering (ms; 0: the last one answered).
    directory_silent_at: std::sync::atomic::AtomicI64,
    /// Directory users looked up without a password, by canonical name.
    directory: Mutex<HashMap<String, (DirectoryUser, Instant)>>,
    anonymous: Mutex<Option<(Principal, Instant)>>,
    lockout: Lockout,
    /// Pauses this node knows of, by (canonical user name, client address): when they end, in
    /// milliseconds since the epoch. The counts live in the database (`login_failures`), shared
    /// by every node; this is what lets a cached login be refused during a pause without asking
    /// the database. Fed by this node's wrong passwords, by the database read before every
    /// uncached password check, and by other nodes' notifications (see `db::notify`).
    pauses: Mutex<HashMap<(String, String), i64>>,
    /// Bumped by every [`Authenticator::invalidate`]. What was read from the database before a
    /// bump is not remembered after it: a login checked against the old roles while they
    /// changed must not outlive the change in the cache.
    epoch: AtomicU64,
    /// `local`, `ldap`: the realms that are on (the configuration's, or the API's once set
    /// there: see `security::realms`).
    realms: std::sync::RwLock<Vec<String>>,
    cache_ttl: Duration,
    /// `security.token_idle_days` in milliseconds; `None`: unused tokens are kept.
    token_idle_ms: Option<i64>,
    /// LDAP servers from the configuration file, asked before the API's.
    config_ldap: Vec<ldap::LdapServer>,
    /// Password checks are counted where they are audited.
    metrics: Arc<crate::metrics::Metrics>,
}

/// How a shared password check ended, for the requests that waited on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Right, and in the login cache: read it there.
    Remembered,
    /// Refused: each follower checks on its own (counted and audited).
    Refused,
    /// The database or the directory did not answer: every follower answers alike.
    Silent,
    /// The check's caller went away before it ended.
    Left,
}

impl wharf_format::proxy::FlightOutcome for Checked {
    const DONE: Self = Checked::Remembered;
    const ABANDONED: Self = Checked::Left;
    fn is_abandoned(&self) -> bool {
        *self == Checked::Left
    }
}

/// A verified password or API token, and what must still hold for it to stand without asking
/// argon2 (or reading the token, its user and every role) again.
#[derive(Clone)]
struct CachedLogin {
    principal: Principal,
    proof: Proof,
    /// The version of roles and privileges its access was resolved from
    /// (`privileges::grants_version`).
    grants: i64,
    at: Instant,
}

impl CachedLogin {
    /// What a use reads again: whether the proof holds and the grants are as they were.
    fn recheck(&self) -> Option<impl Fn(&mut AnyConnection) -> Result<bool, DbError> + Send + Sync + 'static> {
        let (proof, name, grants) = (self.proof.clone(), self.principal.user.clone()?, self.grants);
        Some(move |conn: &mut AnyConnection| proof.recheck(conn, &name, grants))
    }
}

#[derive(Clone)]
enum Proof {
    /// The local user row as it was verified: same row, same password hash, same roles, active.
    Local { id: i64, password_hash: String, roles: String },
    /// A directory user: no local user has taken the name since.
    Ldap,
    /// A local user's API token: its row as it was read (same token, unexpired, same
    /// narrowing), and its owner as they stood. A password change leaves tokens alone, as it
    /// always did. Directory users' tokens are never remembered (see `token_login`).
    Token { row: Box<TokenRow>, owner: Owner },
    /// A local user's Docker bearer token (the cache key is the whole signed token, so its
    /// grants and its proof are the ones it carries): what its proof names still stands (see
    /// [`BearerSource`]), the API token it was got with is as it was, and its holder stands as
    /// they did (as for [`Proof::Token`]).
    Bearer { source: BearerSource, token: Option<Box<TokenRow>>, owner: Owner },
}

/// A local user as they stood: their row's id and roles.
#[derive(Clone)]
struct Owner {
    id: i64,
    roles: String,
}

impl Owner {
    fn of(row: &UserRow) -> Owner {
        Owner { id: row.id, roles: row.roles.clone() }
    }

    /// The same row, the same roles, still active.
    fn stands(&self, now: Option<&UserRow>) -> bool {
        now.is_some_and(|u| u.id == self.id && u.roles == self.roles && u.status == "active")
    }
}

impl Proof {
    /// Whether the user's row as it is now (`None`: no local user of that name) still bears
    /// out this password proof.
    fn holds(&self, row: Option<&UserRow>) -> bool {
        match (self, row) {
            (Proof::Local { id, password_hash, roles }, Some(r)) => {
                r.id == *id && r.password_hash == *password_hash && r.roles == *roles && r.status == "active"
            }
            (Proof::Ldap, None) => true,
            _ => false,
        }
    }

    /// Reads again what this proof rests on, and the version of roles and privileges
    /// (`grants`: the one its access was resolved at; the user's row and the version come in
    /// one query): `Ok(false)` when it no longer holds.
    fn recheck(&self, conn: &mut AnyConnection, user: &str, grants: i64) -> Result<bool, DbError> {
        let user_now = |conn: &mut AnyConnection, name: &str| -> Result<Option<Option<UserRow>>, DbError> {
            let (row, version) = users::get_with_grants_version(conn, name)?;
            Ok((version == grants).then_some(row))
        };
        match self {
            Proof::Local { .. } | Proof::Ldap => Ok(user_now(conn, user)?.is_some_and(|row| self.holds(row.as_ref()))),
            Proof::Token { row, owner } => {
                let Some(now) = tokens::by_hash(conn, &row.token_hash)? else { return Ok(false) };
                if !same_token(&now, row) {
                    return Ok(false);
                }
                Ok(user_now(conn, &now.username)?.is_some_and(|local| owner.stands(local.as_ref())))
            }
            Proof::Bearer { source, token, owner } => {
                let Some(local) = user_now(conn, user)? else { return Ok(false) };
                if source.uid.is_some() && local.as_ref().map(|u| u.id) != source.uid {
                    return Ok(false);
                }
                if source.pwd.is_some() && local.as_ref().map(|u| password_fingerprint(&u.password_hash)) != source.pwd {
                    return Ok(false);
                }
                if let (Some(id), Some(row)) = (&source.tid, token) {
                    match tokens::by_id(conn, id)? {
                        Some(now) if same_token(&now, row) => {}
                        _ => return Ok(false),
                    }
                }
                Ok(owner.stands(local.as_ref()))
            }
        }
    }
}

/// The same API token as `was`, and unexpired.
fn same_token(now: &TokenRow, was: &TokenRow) -> bool {
    now.id == was.id
        && now.username == was.username
        && now.realm == was.realm
        && now.readonly == was.readonly
        && now.repository == was.repository
        && now.expires_at.is_none_or(|e| e > now_millis())
}

/// A remembered password login used before its re-read (see `db::deferred_check`): the request
/// runs with [`DeferredLogin::check`] around it and asks [`Authenticator::confirm`] before
/// answering.
pub struct DeferredLogin {
    key: [u8; 32],
    pub check: Arc<DeferredCheck>,
}

/// A directory user's name as the directory spells it, and what their groups grant.
/// A directory user as found now: the name, their roles, and their entry's DN.
type DirectoryUser = (String, roles::Resolved, String);

/// When password checks for a user name pause after wrong passwords.
#[derive(Clone, Copy, Debug)]
pub struct Lockout {
    pub after: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Authenticator {
    pub fn new(db: Db, audit: Arc<dyn Audit>, tokens: TokenKeys, formats: Vec<&'static str>, lockout: Lockout) -> Authenticator {
        Authenticator {
            db,
            audit,
            tokens,
            formats,
            logins: Mutex::new(HashMap::new()),
            login_flights: SingleFlight::default(),
            login_turns: Default::default(),
            directory_silent_at: Default::default(),
            directory: Mutex::new(HashMap::new()),
            anonymous: Mutex::new(None),
            lockout,
            pauses: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            realms: std::sync::RwLock::new(vec!["local".into(), "ldap".into()]),
            cache_ttl: CACHE_TTL,
            token_idle_ms: None,
            config_ldap: Vec::new(),
            metrics: Arc::default(),
        }
    }

    /// Counts password checks into the server's metrics (else into a registry of their own).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Authenticator {
        self.metrics = metrics;
        self
    }

    /// The realms that are on and how long verified logins are remembered (the configuration's
    /// `security.realms` and `security.login_cache_secs`).
    pub fn with_realms(mut self, realms: Vec<String>, cache_ttl: Duration, config_ldap: Vec<ldap::LdapServer>) -> Authenticator {
        self.realms = std::sync::RwLock::new(realms);
        self.cache_ttl = cache_ttl;
        self.config_ldap = config_ldap;
        self
    }

    /// API tokens neither used nor created for `days` stop working and are deleted by the next
    /// token's insert (`security.token_idle_days`; 0: kept).
    pub fn with_token_idle_days(mut self, days: u64) -> Authenticator {
        self.token_idle_ms = (days > 0).then(|| (days.min(i64::MAX as u64 / 86_400_000) as i64) * 86_400_000);
        self
    }

    /// Tokens neither used nor created since this time are unused (see `token_idle_ms`); `None`
    /// when unused tokens are kept.
    pub fn idle_before(&self, now: i64) -> Option<i64> {
        self.token_idle_ms.map(|ms| now.saturating_sub(ms))
    }

    /// The LDAP servers from the configuration file.
    pub fn config_ldap(&self) -> &[ldap::LdapServer] {
        &self.config_ldap
    }

    fn realm_on(&self, realm: Realm) -> bool {
        self.realms.read().unwrap_or_else(|e| e.into_inner()).iter().any(|r| r == realm.as_str())
    }

    pub fn realms(&self) -> Vec<String> {
        self.realms.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Turns realms on or off from now (remembered logins of a realm turned off are forgotten).
    pub fn set_realms(&self, realms: Vec<String>) {
        let changed = {
            let mut r = self.realms.write().unwrap_or_else(|e| e.into_inner());
            let changed = *r != realms;
            *r = realms;
            changed
        };
        if changed {
            self.invalidate();
        }
    }

    /// Whether password checks for `user` from `client` are paused now, as far as this node
    /// knows without asking the database (the hot path of cached logins). Pauses are per
    /// address: wrong guesses from one place do not keep the user out from another.
    fn paused(&self, user: &str, client: &str) -> bool {
        let p = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        p.get(&(user.to_string(), client.to_string())).is_some_and(|until| now_millis() < *until)
    }

    /// A pause learnt of (here, from the database, or from another node).
    pub fn note_pause(&self, user: &str, client: &str, until: i64) {
        let mut all = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_millis();
        if all.len() >= CACHE_MAX {
            all.retain(|_, u| *u > now);
        }
        if until > now {
            let e = all.entry((user.to_string(), client.to_string())).or_insert(until);
            *e = (*e).max(until);
        }
    }

    /// How long a pause after `count` wrong passwords lasts, if it is one.
    fn pause_for(lockout: Lockout, count: u32) -> Option<i64> {
        if lockout.after == 0 || count < lockout.after {
            return None;
        }
        let doublings = (count - lockout.after).min(20);
        let pause = lockout.first.saturating_mul(1 << doublings).min(lockout.max);
        Some(pause.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Counts a wrong password in the database (every node's count is one count).
    async fn failed(&self, user: &str, client: &str) {
        let lockout = self.lockout;
        if lockout.after == 0 {
            return;
        }
        let (u, c) = (user.to_string(), client.to_string());
        // Counts older than the longest pause start again (as the in-memory count did once its
        // map filled up).
        let forget = lockout.max.max(lockout.first).as_millis().min(i64::MAX as u128) as i64;
        let recorded = crate::db::failures::unnoted(
            self.db.write(move |conn| crate::db::login_failures::record(conn, &u, &c, now_millis(), forget, |n| Self::pause_for(lockout, n))),
        )
        .await;
        match recorded {
            Ok((count, Some(until))) => {
                self.note_pause(user, client, until);
                tracing::warn!(
                    user,
                    client,
                    failures = count,
                    pause_secs = (until - now_millis()).max(0) / 1000,
                    "repeated wrong passwords; password checks for this user from this address pause"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "counting a wrong password: database"),
        }
    }

    /// A right password after wrong ones: the count starts again, on every node.
    async fn succeeded(&self, user: &str, client: &str) {
        self.pauses.lock().unwrap_or_else(|e| e.into_inner()).remove(&(user.to_string(), client.to_string()));
        let (u, c) = (user.to_string(), client.to_string());
        if let Err(e) = crate::db::failures::unnoted(self.db.write(move |conn| crate::db::login_failures::clear(conn, &u, &c))).await {
            tracing::warn!(error = %e, "clearing wrong-password count: database");
        }
    }

    pub fn formats(&self) -> &[&'static str] {
        &self.formats
    }

    /// Forgets this node's cached logins, directory answers and the anonymous role: users,
    /// roles or directories changed.
    pub fn invalidate(&self) {
        {
            let mut logins = self.logins.lock().unwrap_or_else(|e| e.into_inner());
            self.epoch.fetch_add(1, Ordering::SeqCst);
            logins.clear();
        }
        self.directory.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.anonymous.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// A caller without credentials, holding the anonymous role's privileges.
    pub async fn anonymous(&self) -> Principal {
        if let Some((p, at)) = self.anonymous.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if at.elapsed() < ANONYMOUS_TTL {
                return p.clone();
            }
        }
        let formats = self.formats.clone();
        let epoch = self.epoch();
        let read = self
            .db
            .run(move |conn| {
                let on = super::realms::anonymous_enabled(conn)?;
                Ok((on, roles::resolve(&[roles::ANONYMOUS_ROLE.to_string()], &crate::db::privileges::roles_with_grants(conn)?, &formats)))
            })
            .await;
        let p = match read {
            // Anonymous access turned off: nothing is granted, so every protocol asks to sign in.
            Ok((false, _)) => rejected(),
            // `nx-all` on the anonymous role is refused when it is set; ignore it if it got there.
            Ok((true, resolved)) => Principal { access: Access::Anonymous(Arc::from(resolved.repo)), ..Principal::anonymous() },
            // Not remembered: the next caller asks again (and, while the database does not
            // answer, is told so rather than refused for 5 s).
            Err(_) => return Principal { access: Access::Anonymous(Arc::from(Vec::new())), ..Principal::anonymous() },
        };
        let mut cached = self.anonymous.lock().unwrap_or_else(|e| e.into_inner());
        if self.epoch() == epoch {
            *cached = Some((p.clone(), Instant::now()));
        }
        p
    }

    /// The caller of `req`. Wrong credentials give a principal that no check passes (not
    /// anonymous, which may read what the anonymous role grants), so each protocol answers
    /// with its own 401.
    pub async fn principal(&self, req: &HttpRequest) -> Principal {
        let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            if let Some(cookie) = req.cookie(SESSION_COOKIE) {
                return self.session_login(req, cookie.value()).await.unwrap_or_else(rejected);
            }
            return self.anonymous().await;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, pass)) = decode_basic(rest) else { return rejected() };
            return self.basic(&user, &pass, &crate::http::mount::client(req)).await.unwrap_or_else(rejected);
        }
        if scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(TOKEN_PREFIX) {
            return self.token_login(rest).await.unwrap_or_else(rejected);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.bearer_login(rest).await.unwrap_or_else(rejected);
        }
        rejected()
    }

    /// [`Authenticator::principal`], or `None` when the database was silent and left the caller
    /// unidentified (see `db::failures`): such a caller is told 503, not refused.
    pub async fn principal_unless_silent(&self, req: &HttpRequest) -> Option<Principal> {
        match crate::db::failures::noting(self.principal(req)).await {
            (p, true) if p.user.is_none() => None,
            (p, _) => Some(p),
        }
    }

    /// The caller of a request that only reads: as [`Authenticator::principal`], except that
    /// a remembered password login is used before its row is read again; the re-read then rides
    /// on the request's first query (see `db::deferred_check`), and the caller must ask
    /// [`Authenticator::confirm`] before the answer leaves.
    pub async fn principal_deferred(&self, req: &HttpRequest) -> (Principal, Option<DeferredLogin>) {
        if let Some(hit) = self.remembered(req) {
            return hit;
        }
        (self.principal(req).await, None)
    }

    /// A remembered login for the request's credentials: a password (outside any pause) or
    /// an API token, in Basic credentials or as a bearer token.
    fn remembered(&self, req: &HttpRequest) -> Option<(Principal, Option<DeferredLogin>)> {
        let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim();
        let (key, user) = if scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(TOKEN_PREFIX) {
            (token_key(rest), None)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            // Its signature and expiry are checked on every use; anonymous ones need no database.
            if self.tokens.verify(rest)?.sub.is_empty() {
                return None;
            }
            (bearer_key(rest), None)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = decode_basic(rest)?;
            if pass.starts_with(TOKEN_PREFIX) {
                (token_key(&pass), Some(user))
            } else {
                if user.len() > MAX_USER_NAME {
                    return None;
                }
                let canonical = canonical_user(&user);
                // A pause is answered (and audited) by the ordinary path.
                if self.paused(&counted_name(&canonical), &pause_scope(&crate::http::mount::client(req))) {
                    return None;
                }
                (login_key(&canonical, &pass), None)
            }
        } else {
            return None;
        };
        let hit = self.hit(&key)?;
        // A token in Basic credentials stands only under its owner's name.
        if user.is_some_and(|u| !hit.principal.user.as_deref().is_some_and(|name| same_user(&u, name))) {
            return None;
        }
        let check = DeferredCheck::new(hit.recheck()?);
        Some((hit.principal, Some(DeferredLogin { key, check })))
    }

    /// Whether a deferred login held (see [`Authenticator::principal_deferred`]). When it did
    /// not, it is forgotten: asking [`Authenticator::principal`] again checks the password anew.
    pub async fn confirm(&self, login: &DeferredLogin) -> bool {
        if login.check.settled(&self.db).await {
            return true;
        }
        self.logins.lock().unwrap_or_else(|e| e.into_inner()).remove(&login.key);
        false
    }

    /// Basic credentials: a user's password, or one of the user's API tokens in its place
    /// (then the principal is the token's, narrowed as the token is).
    pub async fn basic(&self, user: &str, pass: &str, client: &str) -> Option<Principal> {
        if pass.starts_with(TOKEN_PREFIX) {
            return self.token_login(pass).await.filter(|p| p.user.as_deref().is_some_and(|u| same_user(u, user)));
        }
        self.password_login(user, pass, client).await
    }

    /// Checks a user name and password (never a token); `None` unless they match an active
    /// user. `client` is the caller's address: pauses after wrong passwords are per address.
    pub async fn password_login(&self, user: &str, pass: &str, client: &str) -> Option<Principal> {
        self.password_login_proved(user, pass, client).await.map(|(p, _)| p)
    }

    /// Basic credentials at the Docker token endpoint: the principal, and what the bearer token
    /// must carry so that each use can check the proof still stands (see [`BearerSource`]).
    pub async fn basic_for_bearer(&self, user: &str, pass: &str, client: &str) -> Option<(Principal, BearerSource)> {
        if pass.starts_with(TOKEN_PREFIX) {
            let (p, row, owner, _) = self.token_login_row(pass).await?;
            let uid = owner.map(|o| o.id);
            if !p.user.as_deref().is_some_and(|u| same_user(u, user)) {
                return None;
            }
            return Some((p, BearerSource { uid, pwd: None, tid: Some(row.id) }));
        }
        let (p, proof) = self.password_login_proved(user, pass, client).await?;
        let source = match proof {
            Proof::Local { id, password_hash, .. } => BearerSource { uid: Some(id), pwd: Some(password_fingerprint(&password_hash)), tid: None },
            Proof::Ldap | Proof::Token { .. } | Proof::Bearer { .. } => BearerSource::default(),
        };
        Some((p, source))
    }

    async fn password_login_proved(&self, user: &str, pass: &str, client: &str) -> Option<(Principal, Proof)> {
        // No user has a longer name (local ids are at most 100 bytes, directory names 256):
        // nothing to check, count or tell the other nodes (a pause's notification must fit
        // PostgreSQL's 8,000-byte payload).
        if user.len() > MAX_USER_NAME {
            return None;
        }
        // No one's name: a directory's matching ignores such spaces (RFC 4518), so " bob" and
        // "bob " found bob, each spelling with a count of wrong passwords of its own.
        if user.trim() != user || user.chars().any(char::is_control) {
            return None;
        }
        let canonical = canonical_user(user);
        let key = login_key(&canonical, pass);
        // The pause comes first: a remembered password answering during a pause would tell a
        // guesser which guess is right.
        let scope = pause_scope(client);
        if self.paused(&counted_name(&canonical), &scope) {
            self.refused_in_pause(user, client);
            return None;
        }
        if let Some(hit) = self.cached_login(&key).await {
            return Some(hit);
        }
        // The database did not answer the cache's re-read: nothing further can decide now, and
        // each further step would wait for it again.
        if crate::db::failures::silent_so_far() {
            return None;
        }
        // A client's first requests often come at once with the same credentials (uv's and
        // npm's parallel fetches, a CI job's parallel pulls): one check, and the others read
        // what it remembered. A check that failed, or whose caller left, settles nothing for
        // the others: each makes its own, counted and audited as before; one that met silence
        // (the database's, the directory's) answers them all alike. One that succeeded but
        // could not be remembered (users or roles changed meanwhile) is made once more for all
        // of them, then by each.
        let flight = hex::encode(key);
        let mut rejoined = false;
        loop {
            match self.login_flights.join_checked(&flight, || async { Ok::<_, std::convert::Infallible>(self.cached_login(&key).await) }).await {
                Ok(Fill::Cached(hit)) => return Some(hit),
                Ok(Fill::Lead(flight)) => {
                    let checked = self.checked_login(user, pass, client, &scope, &canonical, key).await;
                    flight.finish(match &checked {
                        Some(_) => Checked::Remembered,
                        None if crate::db::failures::silent_so_far() => Checked::Silent,
                        None => Checked::Refused,
                    });
                    return checked;
                }
                Ok(Fill::Follow(rx)) => match SingleFlight::wait(rx).await {
                    Checked::Remembered => {
                        if let Some(hit) = self.cached_login(&key).await {
                            return Some(hit);
                        }
                        if rejoined {
                            return self.checked_login(user, pass, client, &scope, &canonical, key).await;
                        }
                        rejoined = true;
                    }
                    Checked::Silent => {
                        crate::db::failures::note_silence();
                        return None;
                    }
                    Checked::Refused | Checked::Left => return self.checked_login(user, pass, client, &scope, &canonical, key).await,
                },
                Err(never) => match never {},
            }
        }
    }

    /// Whether the last password check that asked the directory found it silent: until one
    /// finds it answering (with a time limit, a paused name asked after a quiet minute of the
    /// outage was told apart again).
    fn directory_silent_now(&self) -> bool {
        self.directory_silent_at.load(std::sync::atomic::Ordering::Relaxed) > 0 && self.realm_on(Realm::Ldap)
    }

    /// Counts and audits a login refused because its name is paused for that client.
    fn refused_in_pause(&self, user: &str, client: &str) {
        // While no directory answers, every refusal is a 503 (see `checked_login`): a paused
        // name's 401 then told the local names (whose wrong passwords count meanwhile) from
        // the others.
        if self.directory_silent_now() {
            crate::db::failures::note_silence();
        }
        // Which realm would have answered is not asked during a pause.
        self.metrics.login("unknown", false);
        self.audit.record(AuditEvent {
            actor: Some(user.to_string()),
            address: Some(client.to_string()),
            action: "login.failure".into(),
            detail: serde_json::json!({"paused": true}),
            ..Default::default()
        })
    }

    /// A password check the login cache could not answer: the shared count of wrong passwords,
    /// argon2 and the directory, then the outcome counted, audited and (if right) remembered.
    async fn checked_login(&self, user: &str, pass: &str, client: &str, scope: &str, canonical: &str, key: [u8; 32]) -> Option<(Principal, Proof)> {
        // One check at a time per name and place, each after the count the one before left:
        // side by side, every guess of a burst was checked before the first of them was
        // counted, and a pause started by the fifth stopped none of the thousands beside it.
        let counted = counted_name(canonical);
        let _turn = self.login_turns.lock(&format!("{counted}\n{scope}")).await;
        // The same password may have been proved while this waited (a flight's followers
        // after its leader left): no second argon2 for it.
        if let Some(hit) = self.cached_login(&key).await {
            return Some(hit);
        }
        let canonical = canonical.to_string();
        let epoch = self.epoch();
        let local_on = self.realm_on(Realm::Local);
        let (name, counted_as, secret, from) = (canonical.clone(), counted.clone(), pass.to_string(), scope.to_string());
        // The shared count of wrong passwords is read here, before every password check that
        // is not answered from the cache (never on the cached path, which the pause this node
        // knows of guards).
        let looked = self
            .db
            .run(move |conn| {
                let failures = crate::db::login_failures::state(conn, &counted_as, &from)?;
                Ok((users::get(conn, &name)?, crate::db::privileges::versioned_roles_with_grants(conn)?, ldap::load(conn)?, failures))
            })
            .await;
        let (row, (all_roles, grants), servers, failures) = match looked {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "password check: database");
                return None;
            }
        };
        if let Some(Some(until)) = failures {
            if until > now_millis() {
                self.note_pause(&counted, scope, until);
                self.refused_in_pause(user, client);
                return None;
            }
        }
        // argon2 runs after the connection went back to the pool: tens of milliseconds of
        // hashing must not hold one (a burst of logins would starve every other query).
        let hash = row.as_ref().filter(|r| local_on && r.status == "active").map(|r| r.password_hash.clone());
        // Without a hash, as slow as a real check: the time must not tell which names exist.
        let argon2 = password::check_in_turn(secret, hash);
        // Every name costs argon2 and the same directory questions, side by side: a local name,
        // in any spelling, is decided locally and never asked of the directory, so its
        // directory questions are decoys (see `ldap::authenticate`).
        let directory_name = if row.is_some() { None } else { Some(user) };
        let directory = async {
            if self.realm_on(Realm::Ldap) {
                self.directory_login(&servers, directory_name, pass, &all_roles).await
            } else {
                Ok(None)
            }
        };
        let (verified, from_directory) = tokio::join!(argon2, directory);
        // No LDAP server answered (each one asked failed): for a name only the directory could
        // know, that is not a wrong password.
        let directory_silent = matches!(from_directory, Err(Silent));
        if self.realm_on(Realm::Ldap) {
            self.directory_silent_at.store(if directory_silent { now_millis() } else { 0 }, std::sync::atomic::Ordering::Relaxed);
        }
        let outcome = match (&row, verified) {
            (Some(r), true) => Some((
                self.local_principal(r, &all_roles, Credential::Password),
                Proof::Local { id: r.id, password_hash: r.password_hash.clone(), roles: r.roles.clone() },
            )),
            (Some(_), false) => None,
            (None, _) => from_directory.ok().flatten().map(|p| (p, Proof::Ldap)),
        };
        let Some((p, proof)) = outcome else {
            // A local name is decided by the local realm alone; any other by the directory
            // when one is configured.
            let by_directory = self.realm_on(Realm::Ldap) && !(servers.is_empty() && self.config_ldap.is_empty());
            let realm = if row.is_none() && by_directory { Realm::Ldap } else { Realm::Local };
            self.metrics.login(realm.as_str(), false);
            let actor = row.as_ref().map(|r| r.username.clone()).unwrap_or_else(|| user.to_string());
            // While the directory does not answer, every refusal is a 503 (see `db::failures`):
            // a 401 for local names only would tell them apart. A local name's wrong password
            // still counts towards its pause; a directory name's attempt does not (the pause
            // would outlast the outage), and is audited as such.
            if directory_silent {
                crate::db::failures::note_silence();
            }
            if directory_silent && row.is_none() {
                let detail = serde_json::json!({"directory": "did not answer"});
                self.audit.record(AuditEvent {
                    actor: Some(actor),
                    address: Some(client.to_string()),
                    action: "login.failure".into(),
                    detail,
                    ..Default::default()
                });
                return None;
            }
            self.failed(&counted, scope).await;
            self.audit.record(AuditEvent { actor: Some(actor), address: Some(client.to_string()), action: "login.failure".into(), ..Default::default() });
            return None;
        };
        if failures.is_some() {
            self.succeeded(&counted, scope).await;
        }
        self.metrics.login(p.realm.map_or("unknown", Realm::as_str), true);
        self.audit.record(AuditEvent { actor: p.user.clone(), address: Some(client.to_string()), action: "login.success".into(), ..Default::default() });
        self.remember(key, &p, proof.clone(), grants, epoch);
        Some((p, proof))
    }

    fn local_principal(&self, row: &UserRow, all_roles: &[RoleRow], credential: Credential) -> Principal {
        let resolved = roles::resolve(&row.role_ids(), all_roles, &self.formats);
        let password = (credential == Credential::Password).then(|| password_fingerprint(&row.password_hash));
        Principal {
            user: Some(row.username.clone()),
            realm: Some(Realm::Local),
            credential,
            access: full(resolved),
            holder: Some(Holder { id: row.id, password }),
        }
    }
}

impl Authenticator {
    /// Asks every LDAP server with the password, all at once, and takes the first in list order
    /// that knows it; a server that fails is passed over (and logged). All at once: a hung
    /// server delays a check by its own timeouts, not by the sum of every server's; and every
    /// server, asked whatever the others answer, so a name costs the same questions whoever
    /// holds it. The directory's name for the user must not be a local user's. `user` `None`
    /// (a local name) asks every server the same decoy questions, as a name that no server
    /// knows does.
    ///
    /// `Err(Silent)`: every server asked failed; the caller is neither let in nor refused.
    async fn directory_login(&self, servers: &[ldap::LdapServer], user: Option<&str>, pass: &str, all_roles: &[RoleRow]) -> Result<Option<Principal>, Silent> {
        let asked = self.config_ldap.iter().chain(servers).map(|s| async move { (s, ldap::authenticate(s, user, pass).await) });
        let mut found = None;
        let (mut asked_any, mut answered) = (false, false);
        for (s, answer) in futures::future::join_all(asked).await {
            asked_any = true;
            match answer {
                Ok(Some(u)) if found.is_none() => {
                    answered = true;
                    found = Some((u.id.clone(), self.ldap_roles(&u, all_roles)));
                }
                Ok(_) => answered = true,
                Err(e) => tracing::warn!(server = %s.name, error = %e, "LDAP server unavailable"),
            }
        }
        // A server that answers cannot tell a wrong password from a name it does not hold, so
        // while one answers, a refusal counts as one (as before any server failed): otherwise a
        // dead server left in the list would let guesses at every directory user go uncounted.
        let Some((id, resolved)) = found else {
            return if asked_any && !answered { Err(Silent) } else { Ok(None) };
        };
        if !self.free_for_directory(&id).await {
            return Ok(None);
        }
        Ok(Some(Principal { user: Some(id), realm: Some(Realm::Ldap), credential: Credential::Password, access: full(resolved), holder: None }))
    }

    /// Whether `name` may be a directory user's: no local user has it in any spelling.
    async fn free_for_directory(&self, name: &str) -> bool {
        let n = name.to_string();
        match self.db.run(move |conn| users::get(conn, &n)).await {
            Ok(None) => true,
            Ok(Some(_)) => {
                tracing::warn!(user = name, "a directory user has a local user's name; refused");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "user lookup: database");
                false
            }
        }
    }

    /// A directory user by name, without a password (a token, session or bearer token they got
    /// earlier): the first server, in order, that knows them. Remembered for the login cache
    /// time; a directory that cannot be reached is asked again next time (and the caller is
    /// told 503).
    async fn directory_user(&self, user: &str) -> Option<DirectoryUser> {
        if !self.realm_on(Realm::Ldap) {
            return None;
        }
        let key = canonical_user(user);
        if let Some((u, at)) = self.directory.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < self.cache_ttl {
                return Some(u.clone());
            }
        }
        let epoch = self.epoch();
        let (servers, all_roles) = self.db.run(|conn| Ok((ldap::load(conn)?, crate::db::privileges::roles_with_grants(conn)?))).await.ok()?;
        let (mut asked_any, mut answered) = (false, false);
        for s in self.config_ldap.iter().chain(&servers) {
            asked_any = true;
            match ldap::lookup(s, user).await {
                Ok(Some(u)) => {
                    let found = (u.id.clone(), self.ldap_roles(&u, &all_roles), u.dn.clone());
                    let mut cache = self.directory.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    if self.epoch() == epoch {
                        cache.insert(key, (found.clone(), Instant::now()));
                    }
                    return Some(found);
                }
                Ok(None) => answered = true,
                Err(e) => tracing::warn!(server = %s.name, error = %e, "LDAP server unavailable"),
            }
        }
        // No server answered: their token or session is not refused (401) but answered 503.
        if asked_any && !answered {
            crate::db::failures::note_silence();
        }
        None
    }

    /// An LDAP user's groups are the wharf roles of the same names (Nexus's ldapGroupsAsRoles).
    fn ldap_roles(&self, u: &ldap::LdapUser, all_roles: &[RoleRow]) -> roles::Resolved {
        let held: Vec<String> = u.groups.iter().filter(|g| all_roles.iter().any(|r| &r.id == *g)).cloned().collect();
        roles::resolve(&held, all_roles, &self.formats)
    }

    /// A remembered login, if what it was verified against still holds in the database.
    async fn cached_login(&self, key: &[u8; 32]) -> Option<(Principal, Proof)> {
        let hit = self.hit(key)?;
        let recheck = hit.recheck()?;
        let holds = match self.db.run(move |conn| recheck(conn)).await {
            Ok(holds) => holds,
            Err(e) => {
                tracing::error!(error = %e, "cached login: database");
                return None;
            }
        };
        if !holds {
            self.logins.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            return None;
        }
        Some((hit.principal, hit.proof))
    }

    /// A remembered login still in its time. An API token's "last used" time is kept as the
    /// uncached path keeps it (written when it is more than a minute old), off the request's path.
    fn hit(&self, key: &[u8; 32]) -> Option<CachedLogin> {
        let mut cache = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get_mut(key).filter(|c| c.at.elapsed() < self.cache_ttl)?;
        if let Proof::Token { row, .. } = &mut hit.proof {
            let now = now_millis();
            if row.last_used_at.is_none_or(|t| now - t > 60_000) {
                row.last_used_at = Some(now);
                self.touch_token(row.id.clone(), now);
            }
        }
        Some(hit.clone())
    }

    /// Records an API token's use, best effort: a busy database delays the "last used" time,
    /// it never refuses a valid token.
    fn touch_token(&self, id: String, now: i64) {
        let db = self.db.clone();
        actix_rt::spawn(async move {
            if let Err(e) = db.write(move |conn| tokens::touch(conn, &id, now)).await {
                tracing::warn!(error = %e, "could not record an API token's last use");
            }
        });
    }

    fn remember(&self, key: [u8; 32], p: &Principal, proof: Proof, grants: i64, epoch: u64) {
        let mut cache = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        if self.epoch() != epoch {
            return;
        }
        if cache.len() >= CACHE_MAX {
            let ttl = self.cache_ttl;
            cache.retain(|_, c| c.at.elapsed() < ttl);
            // Tokens cost one read to verify again, a password costs argon2; and anyone signed
            // in can mint bearer tokens by the thousand: they go first, so that a flood of them
            // never makes every password be checked again.
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, c| matches!(c.proof, Proof::Local { .. } | Proof::Ldap));
            }
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, CachedLogin { principal: p.clone(), proof, grants, at: Instant::now() });
    }

    /// The user `name` of `realm` as they stand now: a local user must exist and be active; a
    /// directory user must still be in the directory, and their name must not be a local
    /// user's. `local` is the local row of that name, read by the caller.
    async fn standing(&self, name: &str, realm: Realm, local: Option<UserRow>, all_roles: &[RoleRow]) -> Option<(String, roles::Resolved)> {
        match (realm, local) {
            (Realm::Local, Some(u)) if u.status == "active" => Some((u.username.clone(), roles::resolve(&u.role_ids(), all_roles, &self.formats))),
            (Realm::Local, _) => None,
            (Realm::Ldap, None) => self.directory_user(name).await.map(|(name, roles, _)| (name, roles)),
            (Realm::Ldap, Some(_)) => None,
        }
    }

    /// Whether `p` may read the metrics: administrators, and users whose roles hold
    /// `nx-metrics-all`, signed in with a password, a session or a full API token (a narrowed
    /// token or a Docker bearer token carries repository rights only). Their roles are read as
    /// they stand now, as for any other request.
    pub async fn may_read_metrics(&self, p: &Principal) -> bool {
        let (Some(user), Some(realm)) = (p.user.clone(), p.realm) else { return false };
        if !matches!(p.credential, Credential::Password | Credential::Session | Credential::Token) {
            return false;
        }
        if matches!(p.access, Access::All) {
            return true;
        }
        let name = user.clone();
        let Ok((local, all_roles)) = self.db.run(move |conn| Ok((users::get(conn, &name)?, crate::db::privileges::roles_with_grants(conn)?))).await else {
            return false;
        };
        self.standing(&user, realm, local, &all_roles).await.is_some_and(|(_, r)| r.metrics)
    }

    /// The principal of an API token: its user's privileges, narrowed to reads and to one
    /// repository when the token says so. Read from the database on every use, so that a
    /// revoked token, or a disabled or deleted user, stops at once on every node.
    pub async fn token_login(&self, secret: &str) -> Option<Principal> {
        let key = token_key(secret);
        if let Some((p, _)) = self.cached_login(&key).await {
            return Some(p);
        }
        let epoch = self.epoch();
        let (p, row, owner, grants) = self.token_login_row(secret).await?;
        // A directory user's access comes from the directory's remembered answer, not from
        // what was read beside `grants`: remembering it here would stretch that answer's time
        // and hide a role narrowed meanwhile; it is asked for again on each use.
        if let Some(owner) = owner {
            // `token_login_row` just recorded the use if it was due.
            let (mut row, now) = (row, now_millis());
            row.last_used_at = match row.last_used_at {
                Some(t) if now - t <= 60_000 => Some(t),
                _ => Some(now),
            };
            self.remember(key, &p, Proof::Token { row: Box::new(row), owner }, grants, epoch);
        }
        Some(p)
    }

    /// [`Authenticator::token_login`], with the token's row and its local user's id.
    /// The principal of an API token, its row, and its local owner's id and roles as read.
    async fn token_login_row(&self, secret: &str) -> Option<(Principal, TokenRow, Option<Owner>, i64)> {
        let hash = token_hash(secret);
        let idle_before = self.idle_before(now_millis());
        let (row, local, (all_roles, grants)) = self
            .db
            .run(move |conn| {
                let Some(row) = tokens::by_hash(conn, &hash)? else { return Ok(None) };
                if row.expires_at.is_some_and(|e| e <= now_millis()) {
                    return Ok(None);
                }
                // Unused past the limit: it ends now, not at the insert that deletes it.
                if idle_before.is_some_and(|at| tokens::unused_since(&row, at)) {
                    return Ok(None);
                }
                let local = users::get(conn, &row.username)?;
                Ok(Some((row, local, crate::db::privileges::versioned_roles_with_grants(conn)?)))
            })
            .await
            .ok()
            .flatten()?;
        let realm = Realm::parse(&row.realm)?;
        let owner = local.as_ref().filter(|_| realm == Realm::Local).map(Owner::of);
        let (username, resolved) = match (realm, &row.directory_dn) {
            // The entry the token was made for, not whichever the name finds now (a name given
            // to someone else later, or another server's entry of that name).
            (Realm::Ldap, Some(dn)) if local.is_none() => {
                let (name, roles, now) = self.directory_user(&row.username).await?;
                if !ldap::same_dn(&now, dn) {
                    tracing::warn!(user = %row.username, token = %row.prefix, "API token refused: the name now finds another directory entry");
                    return None;
                }
                (name, roles)
            }
            _ => self.standing(&row.username, realm, local, &all_roles).await?,
        };
        // A use is recorded only once the token stands: refused uses of a gone owner's token
        // kept it "used", and out of the idle purge, for ever.
        let now = now_millis();
        if row.last_used_at.is_none_or(|t| now - t > 60_000) {
            self.touch_token(row.id.clone(), now);
        }
        let narrowed = row.readonly || row.repository.is_some();
        let access = narrow(resolved, row.readonly, row.repository.as_deref());
        let credential = if narrowed { Credential::NarrowedToken } else { Credential::Token };
        Some((Principal { user: Some(username), realm: Some(realm), credential, access, holder: None }, row, owner, grants))
    }

    /// A Docker bearer token: the grants it was signed with, while the proof it was got with
    /// stands, and never more than its holder may do now. Read from the database on every use,
    /// so that each of these ends or narrows it at once on every node: the user deleted (even if
    /// created again under the name), disabled or given a new password; the API token it was
    /// got with revoked or expired; roles (or the anonymous role) reduced.
    async fn bearer_login(&self, jwt: &str) -> Option<Principal> {
        let c = self.tokens.verify(jwt)?;
        let grants = c.grants.iter().map(|g| g.to_grant()).collect();
        let bearer = |holder: Access| Access::Bearer { grants, holder: Arc::new(holder) };
        if c.sub.is_empty() {
            let holder = self.anonymous().await.access;
            return Some(Principal { credential: Credential::DockerBearer, access: bearer(holder), ..Principal::anonymous() });
        }
        let key = bearer_key(jwt);
        if let Some((p, _)) = self.cached_login(&key).await {
            return Some(p);
        }
        let epoch = self.epoch();
        let realm = Realm::parse(&c.realm)?;
        let (user, tid) = (c.sub.clone(), c.source.tid.clone());
        let (local, (all_roles, grants), token) = self
            .db
            .run(move |conn| {
                let token = match &tid {
                    Some(id) => tokens::by_id(conn, id)?,
                    None => None,
                };
                Ok((users::get(conn, &user)?, crate::db::privileges::versioned_roles_with_grants(conn)?, token))
            })
            .await
            .ok()?;
        if c.source.uid.is_some() && local.as_ref().map(|u| u.id) != c.source.uid {
            return None;
        }
        if c.source.pwd.is_some() && local.as_ref().map(|u| password_fingerprint(&u.password_hash)) != c.source.pwd {
            return None;
        }
        let token = match c.source.tid {
            Some(_) => Some(token.filter(|t| same_user(&t.username, &c.sub) && t.realm == c.realm && t.expires_at.is_none_or(|e| e > now_millis()))?),
            None => None,
        };
        let owner = local.as_ref().filter(|_| realm == Realm::Local).map(Owner::of);
        let (name, resolved) = self.standing(&c.sub, realm, local, &all_roles).await?;
        let holder = match &token {
            Some(t) => narrow(resolved, t.readonly, t.repository.as_deref()),
            None => full(resolved),
        };
        let p = Principal { user: Some(name), realm: Some(realm), credential: Credential::DockerBearer, access: bearer(holder), holder: None };
        // As for API tokens: a directory user's bearer token is not remembered.
        if let Some(owner) = owner {
            let proof = Proof::Bearer { source: c.source, token: token.map(Box::new), owner };
            self.remember(key, &p, proof, grants, epoch);
        }
        Some(p)
    }

    /// Writes a credential row of `user` with `insert`, in the transaction that checks they still
    /// exist ([`still_a_user`]).
    async fn store_credential<T: Send + 'static>(
        &self,
        realm: Realm,
        holder: Option<Holder>,
        insert: impl Fn(&mut AnyConnection) -> Result<T, DbError> + Send + Sync + 'static,
    ) -> Result<T, IdentityError> {
        let stored = self
            .db
            .write(move |c| {
                if !still_stands(c, realm, holder.as_ref())? {
                    return Ok(None);
                }
                Ok(Some(insert(c)?))
            })
            .await
            .map_err(internal)?;
        stored.ok_or(IdentityError::NotAllowed("this user no longer exists"))
    }

    pub async fn open_session(&self, p: &Principal, ttl: u64) -> Result<(String, SessionClaims), IdentityError> {
        if !p.credential.may_create_credentials() {
            return Err(IdentityError::NotAllowed("a console session is opened with the password"));
        }
        let (Some(user), Some(realm)) = (p.user.clone(), p.realm) else { return Err(IdentityError::NotAllowed("sign in first")) };
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let now = now_millis();
        let row = SessionRow { id: sid.clone(), username: user.clone(), realm: realm.as_str().into(), created_at: now, expires_at: now + ttl as i64 * 1000 };
        self.store_credential(realm, p.holder.clone(), move |c| sessions::insert(c, &row)).await?;
        Ok(self.tokens.sign_session(&user, realm, &sid, ttl))
    }

    /// Logout: the session named by this cookie value ends, on every node.
    pub async fn close_session(&self, jwt: &str) -> Result<(), IdentityError> {
        let Some(claims) = self.tokens.verify_session(jwt) else { return Ok(()) };
        self.db.write(move |c| sessions::delete(c, &claims.sid)).await.map_err(internal)?;
        Ok(())
    }

    /// The principal of a console session cookie. State-changing requests must echo the
    /// session's CSRF token in `X-CSRF-Token` (the cookie alone, which a browser sends to any
    /// page's request, is not enough) and, when the browser names the page in `Origin`, come
    /// from wharf's own.
    async fn session_login(&self, req: &HttpRequest, jwt: &str) -> Option<Principal> {
        let claims = self.tokens.verify_session(jwt)?;
        let safe = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD | actix_web::http::Method::OPTIONS);
        if !safe && (req.headers().get("X-CSRF-Token").and_then(|v| v.to_str().ok()) != Some(claims.csrf.as_str()) || !same_origin(req)) {
            return None;
        }
        let realm = Realm::parse(&claims.realm)?;
        let (sid, user) = (claims.sid.clone(), claims.sub.clone());
        let (session, local, all_roles) = self
            .db
            .run(move |conn| Ok((sessions::get(conn, &sid, now_millis())?, users::get(conn, &user)?, crate::db::privileges::roles_with_grants(conn)?)))
            .await
            .ok()?;
        session.filter(|s| same_user(&s.username, &claims.sub) && s.realm == claims.realm)?;
        let holder = local.as_ref().filter(|_| realm == Realm::Local).map(|r| Holder { id: r.id, password: None });
        let (name, resolved) = self.standing(&claims.sub, realm, local, &all_roles).await?;
        Some(Principal { user: Some(name), realm: Some(realm), credential: Credential::Session, access: full(resolved), holder })
    }
}

/// Whether a browser request comes from one of wharf's own pages: `Origin`, when the browser
/// sends it, must be the origin the request was addressed to.
pub fn same_origin(req: &HttpRequest) -> bool {
    match req.headers().get(header::ORIGIN) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&crate::http::mount::origin(req))),
    }
}

fn internal(e: DbError) -> IdentityError {
    IdentityError::Internal(e.to_string())
}

/// A user's whole access: everything for administrators, else their privileges.
fn full(resolved: roles::Resolved) -> Access {
    if resolved.all {
        Access::All
    } else {
        Access::Privileges(Arc::from(resolved.repo))
    }
}

/// Every LDAP server asked about a login failed: no verdict.
struct Silent;

/// What a verified password is remembered under: a hash of the name and the password, never
/// the password.
/// Where wrong passwords are counted from: the client's address, an IPv6 one by its /64 (one
/// host's share: anyone holding a /64 has 2^64 addresses, each with a count of its own).
fn pause_scope(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{}/64", std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        _ => client.to_string(),
    }
}

/// The name wrong passwords are counted under: every spelling a directory's case-ignoring
/// match takes for one name is one name here (Unicode case, runs of spaces), so that no
/// spelling brings a count of its own.
fn counted_name(canonical: &str) -> String {
    canonical.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn login_key(canonical: &str, pass: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"password\0").chain_update(canonical.as_bytes()).chain_update([0]).chain_update(pass.as_bytes()).finalize().into()
}

/// What a verified Docker bearer token is remembered under.
fn bearer_key(jwt: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"bearer\0").chain_update(jwt.as_bytes()).finalize().into()
}

/// What a verified API token is remembered under.
fn token_key(secret: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"token\0").chain_update(secret.as_bytes()).finalize().into()
}

/// What a bearer token carries of a local user's password hash: enough to see that the
/// password changed (each hash has its own salt), nothing that helps guess the password.
fn password_fingerprint(password_hash: &str) -> String {
    hex::encode(&Sha256::new().chain_update(b"wharf bearer password\0").chain_update(password_hash.as_bytes()).finalize()[..16])
}

/// Whether a local user stands as their password or session found them ([`Holder`]: the same
/// row, active, the same password), read in the transaction that writes a credential (a token,
/// a session) for them. A deletion, a disabling and a password change remove the user's
/// sessions (and a deletion their tokens) in their own transaction; this is the other side: a
/// request that signed in before one of them commits writes nothing after it. A directory user
/// is the directory's to delete.
fn still_stands(c: &mut AnyConnection, realm: Realm, holder: Option<&Holder>) -> Result<bool, DbError> {
    if realm != Realm::Local {
        return Ok(true);
    }
    let Some(h) = holder else { return Ok(false) };
    let row = users::by_id(c, h.id)?;
    Ok(row.is_some_and(|r| r.status == "active" && h.password.as_ref().is_none_or(|p| *p == password_fingerprint(&r.password_hash))))
}

fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A token's access: the user's, then only reads (`readonly`), then only `repository`.
fn narrow(resolved: roles::Resolved, readonly: bool, repository: Option<&str>) -> Access {
    if resolved.all && !readonly && repository.is_none() {
        return Access::All;
    }
    let mut privileges = if resolved.all {
        vec![RepoPrivilege { format: "*".into(), repository: "*".into(), actions: vec![Action::Read, Action::Write, Action::Delete] }]
    } else {
        resolved.repo
    };
    if readonly {
        for p in &mut privileges {
            p.actions.retain(|a| *a == Action::Read);
        }
    }
    if let Some(r) = repository {
        privileges.retain(|p| p.repository == "*" || p.repository == r);
        for p in &mut privileges {
            p.repository = r.to_string();
        }
    }
    privileges.retain(|p| !p.actions.is_empty());
    Access::Privileges(Arc::from(privileges))
}

fn info(row: &TokenRow) -> TokenInfo {
    TokenInfo {
        id: row.id.clone(),
        name: row.name.clone(),
        prefix: row.prefix.clone(),
        key: row.token_hash.clone(),
        readonly: row.readonly,
        repository: row.repository.clone(),
        created_at: row.created_at,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
    }
}

#[async_trait::async_trait(?Send)]
impl Identity for Authenticator {
    async fn login(&self, user: &str, password: &str, client: &str) -> Result<Option<Principal>, IdentityError> {
        match crate::db::failures::noting(self.password_login(user, password, client)).await {
            (None, true) => Err(IdentityError::Unavailable(crate::http::mount::NO_ANSWER.into())),
            (p, _) => Ok(p),
        }
    }

    async fn create_token(&self, owner: &Principal, spec: TokenSpec, client: &str) -> Result<NewToken, IdentityError> {
        if !owner.credential.may_create_credentials() {
            return Err(IdentityError::NotAllowed("an API token is created with the password (or a console session), not with a token"));
        }
        let (Some(user), Some(realm)) = (owner.user.clone(), owner.realm) else { return Err(IdentityError::NotAllowed("sign in first")) };
        let secret = format!("{TOKEN_PREFIX}{}", password::random_chars(36));
        let row = TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            username: user.clone(),
            name: spec.name,
            token_hash: token_hash(&secret),
            prefix: secret[..TOKEN_PREFIX.len() + 4].to_string(),
            readonly: spec.readonly,
            repository: spec.repository,
            created_at: now_millis(),
            expires_at: spec.expires_at,
            last_used_at: None,
            realm: realm.as_str().into(),
            directory_dn: None,
        };
        let row = match realm {
            Realm::Ldap => {
                let Some((_, _, dn)) = self.directory_user(&user).await else {
                    return Err(IdentityError::Unavailable("the directory does not find you now: try again".into()));
                };
                TokenRow { directory_dn: Some(dn), ..row }
            }
            Realm::Local => row,
        };
        let (r, idle_before) = (row.clone(), self.idle_before(row.created_at));
        let purged = self.store_credential(realm, owner.holder.clone(), move |c| tokens::insert(c, &r, idle_before)).await?;
        for p in purged {
            tracing::info!(user = %p.username, token = %p.id, reason = p.reason, "API token deleted");
            self.audit.record(AuditEvent {
                actor: None,
                address: None,
                action: "token.purge".into(),
                repository: None,
                object: Some(p.id),
                detail: serde_json::json!({ "user": p.username, "realm": p.realm, "name": p.name, "reason": p.reason }),
            });
        }
        tracing::info!(user, token = %row.prefix, "API token created");
        self.audit.record(AuditEvent {
            actor: Some(user),
            address: Some(client.to_string()),
            action: "token.create".into(),
            repository: row.repository.clone(),
            object: Some(row.id.clone()),
            detail: serde_json::json!({ "name": row.name, "readOnly": row.readonly }),
        });
        Ok(NewToken { info: info(&row), secret })
    }

    async fn tokens(&self, owner: &Principal) -> Result<Vec<TokenInfo>, IdentityError> {
        let (Some(user), Some(realm)) = (owner.user.clone(), owner.realm) else { return Ok(Vec::new()) };
        let rows = self.db.run(move |c| tokens::of_user(c, &user, realm.as_str())).await.map_err(internal)?;
        Ok(rows.iter().map(info).collect())
    }

    async fn revoke_token(&self, owner: &Principal, id_or_key: &str, client: &str) -> Result<bool, IdentityError> {
        if owner.credential.is_narrowed() {
            return Err(IdentityError::NotAllowed("a narrowed token cannot revoke tokens"));
        }
        let (Some(user), Some(realm)) = (owner.user.clone(), owner.realm) else { return Ok(false) };
        let (u, k) = (user.clone(), id_or_key.to_string());
        let gone = self.db.write(move |c| tokens::delete(c, &u, realm.as_str(), &k)).await.map_err(internal)?;
        if gone {
            tracing::info!(user, "API token revoked");
            self.audit.record(AuditEvent {
                actor: Some(user),
                address: Some(client.to_string()),
                action: "token.revoke".into(),
                object: Some(id_or_key.to_string()),
                ..Default::default()
            });
        }
        Ok(gone)
    }

    async fn email_of(&self, owner: &Principal) -> Option<String> {
        let user = owner.user.clone().filter(|_| owner.realm == Some(Realm::Local))?;
        let row = self.db.run(move |c| users::get(c, &user)).await.ok()??;
        Some(row.email).filter(|e| !e.is_empty())
    }

    async fn web_login_start(&self, repository: &str, client: &str) -> Result<WebLogin, IdentityError> {
        let now = now_millis();
        let login = WebLogin { id: password::random_chars(32), done: password::random_chars(40), expires_at: now + WEB_LOGIN_TTL_MS };
        let row = web_logins::WebLoginRow {
            id: login.id.clone(),
            done_hash: token_hash(&login.done),
            repository: repository.to_string(),
            client: client.to_string(),
            created_at: now,
            expires_at: login.expires_at,
            username: None,
            token: None,
        };
        self.db.write(move |c| web_logins::insert(c, &row)).await.map_err(internal)?;
        // Logins approved but never collected left a token nobody holds: revoked here.
        let expired = self.db.write(move |c| web_logins::take_expired(c, now)).await.map_err(internal)?;
        for r in expired {
            if let Some(secret) = r.token.and_then(|sealed| secrets::open(&sealed, &web_login_location(&r.id)).ok()) {
                self.revoke_secret(&secret, &r.client).await?;
            }
        }
        Ok(login)
    }

    async fn web_login_info(&self, id: &str) -> Result<Option<WebLoginInfo>, IdentityError> {
        let id = id.to_string();
        let row = self.db.run(move |c| web_logins::by_id(c, &id, now_millis())).await.map_err(internal)?;
        Ok(row.map(|r| WebLoginInfo { client: r.client, created_at: r.created_at, expires_at: r.expires_at, approved_by: r.username }))
    }

    async fn web_login_approve(&self, id: &str, owner: &Principal, spec: TokenSpec, client: &str) -> Result<bool, IdentityError> {
        if self.web_login_info(id).await?.is_none_or(|i| i.approved_by.is_some()) {
            return Ok(false);
        }
        let user = owner.user.clone().unwrap_or_default();
        let token = self.create_token(owner, spec, client).await?;
        let sealed = secrets::seal(&token.secret, &web_login_location(id)).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let id_ = id.to_string();
        let approved = self.db.write(move |c| web_logins::approve(c, &id_, &user, &sealed, now_millis())).await.map_err(internal)?;
        if !approved {
            // Approved meanwhile, or expired: the token made for it is of no use.
            self.revoke_secret(&token.secret, client).await?;
        }
        Ok(approved)
    }

    async fn web_login_poll(&self, done: &str) -> Result<WebLoginPoll, IdentityError> {
        let hash = token_hash(done);
        let row = self.db.write(move |c| web_logins::poll(c, &hash, now_millis())).await.map_err(internal)?;
        Ok(match row {
            None => WebLoginPoll::Unknown,
            Some(r) => match r.token {
                None => WebLoginPoll::Pending,
                Some(sealed) => WebLoginPoll::Done(secrets::open(&sealed, &web_login_location(&r.id)).map_err(|e| IdentityError::Internal(e.to_string()))?),
            },
        })
    }

    async fn revoke_secret(&self, secret: &str, client: &str) -> Result<bool, IdentityError> {
        let hash = token_hash(secret);
        let gone = self.db.write(move |c| tokens::delete_by_hash(c, &hash)).await.map_err(internal)?;
        if let Some(row) = gone.as_ref() {
            tracing::info!(user = %row.0, "API token revoked with its secret");
            self.audit.record(AuditEvent {
                actor: Some(row.0.clone()),
                address: Some(client.to_string()),
                action: "token.revoke".into(),
                object: Some(row.1.clone()),
                ..Default::default()
            });
        }
        Ok(gone.is_some())
    }
}

/// Where a web login's sealed token is stored (its associated data: it opens nowhere else).
fn web_login_location(id: &str) -> String {
    format!("web_logins:{id}:token")
}

/// Credentials were presented and are wrong: not anonymous (which may read public
/// repositories) but refused everywhere.
fn rejected() -> Principal {
    Principal { access: Access::Scoped(vec![]), ..Principal::anonymous() }
}

pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_others_by_their_address() {
        assert_eq!(super::pause_scope("2001:db8:1:2::5"), "2001:db8:1:2::/64");
        assert_eq!(super::pause_scope("2001:db8:1:2:ffff:1:2:9"), "2001:db8:1:2::/64");
        assert_ne!(super::pause_scope("2001:db8:1:3::5"), super::pause_scope("2001:db8:1:2::5"));
        assert_eq!(super::pause_scope("192.0.2.7"), "192.0.2.7");
        assert_eq!(super::pause_scope("not an address"), "not an address");
    }

    #[test]
    fn every_spelling_a_directory_matches_as_one_name_is_counted_as_one() {
        assert_eq!(super::counted_name("\u{212a}ate"), "kate", "the Kelvin sign's lower case is k");
        assert_eq!(super::counted_name("bob  smith"), super::counted_name("bob smith"));
        assert_eq!(super::counted_name("\u{c9}mile"), "\u{e9}mile");
    }

    use wharf_format::{Credential, Identity, IdentityError, Principal, TokenSpec};

    use super::{Authenticator, Lockout};
    use crate::db::{users, Db};

    /// A user whose row no longer stands as their password found it gets no token and no
    /// session written: deleted, deleted and created again under the name, disabled, or with
    /// another password since the request signed in. Each of those ends the user's sessions
    /// (and a deletion their tokens) in its own transaction; this is the other side, checked
    /// where the row is written.
    #[actix_web::test]
    async fn no_credential_is_written_for_a_user_changed_since_they_signed_in() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let audit = Arc::new(crate::audit::AuditLog::new(db.clone()));
        let keys = super::TokenKeys::new(b"0123456789abcdef0123456789abcdef", "wharf");
        let lockout = Lockout { after: 5, first: Duration::from_secs(1), max: Duration::from_secs(60) };
        let auth = Authenticator::new(db.clone(), audit, keys, vec![], lockout);
        let names = ["stands", "deleted", "recreated", "disabled", "new-password"];
        // Each signed in with its password now: the principal as a password login makes it.
        let signed_in: Vec<Principal> = names
            .iter()
            .map(|n| {
                let n = n.to_string();
                let row = db.run_sync(move |c| {
                    users::insert(c, &n, "hash-1", false)?;
                    Ok(users::get(c, &n)?.unwrap())
                });
                auth.local_principal(&row.unwrap(), &[], Credential::Password)
            })
            .collect();
        db.run_sync(|c| {
            users::delete(c, "deleted")?;
            users::delete(c, "recreated")?;
            users::insert(c, "recreated", "hash-1", false)?;
            let off = users::UserFields { first_name: String::new(), last_name: String::new(), email: String::new(), status: "disabled".into(), roles: vec![] };
            users::update(c, "disabled", &off)?;
            users::set_password(c, "new-password", "hash-2")?;
            Ok(())
        })
        .unwrap();

        for (name, p) in names.iter().zip(&signed_in) {
            let token = auth.create_token(p, TokenSpec { name: "t".into(), readonly: false, repository: None, expires_at: None }, "127.0.0.1").await;
            let session = auth.open_session(p, 60).await;
            if *name == "stands" {
                assert!(token.is_ok() && session.is_ok(), "{name}");
            } else {
                assert!(matches!(token, Err(IdentityError::NotAllowed(_))), "{name}: a token");
                assert!(matches!(session, Err(IdentityError::NotAllowed(_))), "{name}: a session");
            }
        }
        let stored = db
            .run_sync(|c| {
                use diesel::prelude::*;
                let sessions: Vec<String> = crate::db::schema::sessions::table.select(crate::db::schema::sessions::username).load(c)?;
                let tokens: Vec<String> = crate::db::schema::api_tokens::table.select(crate::db::schema::api_tokens::username).load(c)?;
                Ok((tokens, sessions))
            })
            .unwrap();
        assert_eq!(stored, (vec!["stands".to_string()], vec!["stands".to_string()]));
    }

    /// The audit events an authenticator records, kept for the test to read.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<wharf_format::AuditEvent>>);

    impl wharf_format::Audit for Recorder {
        fn record(&self, e: wharf_format::AuditEvent) {
            self.0.lock().unwrap().push(e);
        }
    }

    /// An authenticator on a fresh database with one local user, recording its audit events.
    fn with_user(name: &str, password: &str) -> (tempfile::TempDir, Arc<Recorder>, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 4).unwrap();
        let audit = Arc::new(Recorder::default());
        let keys = super::TokenKeys::new(b"0123456789abcdef0123456789abcdef", "wharf");
        let lockout = Lockout { after: 100, first: Duration::from_secs(1), max: Duration::from_secs(60) };
        let auth = Authenticator::new(db.clone(), audit.clone(), keys, vec![], lockout);
        let (name, hash) = (name.to_string(), super::password::hash(password));
        db.run_sync(move |c| users::insert(c, &name, &hash, false)).unwrap();
        (dir, audit, auth)
    }

    /// Requests that come at once with one name and password make one password check (one
    /// argon2, one audited login), and each gets the user; a wrong password, at once too, is
    /// checked and counted for each.
    #[actix_web::test]
    async fn parallel_first_logins_with_one_password_make_one_check() {
        let (_dir, audit, auth) = with_user("burst", "burst-secret-pw");
        let logins = |pass: &'static str| futures::future::join_all((0..8).map(|_| auth.password_login_proved("burst", pass, "127.0.0.1")));
        let right = logins("burst-secret-pw").await;
        assert!(right.iter().all(|r| r.as_ref().is_some_and(|(p, _)| p.user.as_deref() == Some("burst"))));
        let wrong = logins("not-the-password").await;
        assert!(wrong.iter().all(Option::is_none));
        let events = audit.0.lock().unwrap();
        let count = |action: &str| events.iter().filter(|e| e.action == action && e.actor.as_deref() == Some("burst")).count();
        assert_eq!(count("login.success"), 1, "one check for eight requests at once");
        assert_eq!(count("login.failure"), 8, "a wrong password settles nothing for the others");
    }

    /// A check whose success could not be remembered (users or roles changed while it ran) is
    /// made once more for all who waited on it, not once by each.
    #[actix_web::test]
    async fn a_success_not_remembered_is_checked_once_more_for_all() {
        let (_dir, audit, auth) = with_user("changing", "changing-pw");
        // The first login reads the epoch before its first wait; the change comes after every
        // login has joined, while the first one's check runs.
        let logins = futures::future::join_all((0..8).map(|_| auth.password_login_proved("changing", "changing-pw", "127.0.0.1")));
        let change = async {
            tokio::task::yield_now().await;
            auth.invalidate();
        };
        let (answers, ()) = futures::join!(logins, change);
        assert!(answers.iter().all(|r| r.as_ref().is_some_and(|(p, _)| p.user.as_deref() == Some("changing"))));
        let checks = audit.0.lock().unwrap().iter().filter(|e| e.action == "login.success").count();
        assert_eq!(checks, 2, "the first check, unremembered, and one more for the seven who waited");
    }

    /// `security.token_idle_days`: a token neither used nor created within it stops working at
    /// once, and the next token's insert deletes it, audited as `token.purge`; one used lately
    /// works and stays, however old.
    #[actix_web::test]
    async fn a_token_unused_past_the_idle_limit_stops_working_and_goes_with_the_next_insert() {
        use crate::db::schema::api_tokens;
        use diesel::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        let audit = Arc::new(Recorder::default());
        let keys = super::TokenKeys::new(b"0123456789abcdef0123456789abcdef", "wharf");
        let lockout = Lockout { after: 5, first: Duration::from_secs(1), max: Duration::from_secs(60) };
        let auth = Authenticator::new(db.clone(), audit.clone(), keys, vec![], lockout).with_token_idle_days(365);
        let row = db.run_sync(|c| {
            users::insert(c, "ci", "hash-1", false)?;
            Ok(users::get(c, "ci")?.unwrap())
        });
        let p = auth.local_principal(&row.unwrap(), &[], Credential::Password);
        let spec = |name: &str| TokenSpec { name: name.into(), readonly: false, repository: None, expires_at: None };
        let idle = auth.create_token(&p, spec("idle"), "127.0.0.1").await.unwrap();
        let busy = auth.create_token(&p, spec("busy"), "127.0.0.1").await.unwrap();
        let day = 86_400_000;
        let now = wharf_format::now_millis();
        let until = TokenSpec { expires_at: Some(now + 30 * day), ..spec("expires") };
        let expires = auth.create_token(&p, until, "127.0.0.1").await.unwrap();
        let (idle_id, busy_id, expires_id) = (idle.info.id.clone(), busy.info.id.clone(), expires.info.id.clone());
        db.run_sync(move |c| {
            diesel::update(api_tokens::table.filter(api_tokens::id.eq(&expires_id))).set(api_tokens::created_at.eq(now - 400 * day)).execute(c)?;
            diesel::update(api_tokens::table.filter(api_tokens::id.eq(&idle_id)))
                .set((api_tokens::created_at.eq(now - 400 * day), api_tokens::last_used_at.eq(Some(now - 366 * day))))
                .execute(c)?;
            diesel::update(api_tokens::table.filter(api_tokens::id.eq(&busy_id)))
                .set((api_tokens::created_at.eq(now - 400 * day), api_tokens::last_used_at.eq(Some(now - 10 * day))))
                .execute(c)?;
            Ok(())
        })
        .unwrap();
        assert!(auth.token_login(&idle.secret).await.is_none(), "unused for over a year: refused");
        assert!(auth.token_login(&busy.secret).await.is_some(), "used ten days ago: works");
        assert!(auth.token_login(&expires.secret).await.is_some(), "given an expiry: works until then, used or not");
        assert!(audit.0.lock().unwrap().iter().all(|e| e.action != "token.purge"));

        auth.create_token(&p, spec("next"), "127.0.0.1").await.unwrap();
        let mut left: Vec<String> = db.run_sync(|c| Ok(api_tokens::table.select(api_tokens::name).load(c)?)).unwrap();
        left.sort();
        assert_eq!(left, ["busy", "expires", "next"]);
        let events = audit.0.lock().unwrap();
        let purged: Vec<_> = events.iter().filter(|e| e.action == "token.purge").collect();
        assert_eq!(purged.len(), 1, "{purged:?}");
        assert_eq!(purged[0].object.as_deref(), Some(idle.info.id.as_str()));
        assert_eq!(purged[0].detail["user"], "ci");
        assert_eq!(purged[0].detail["reason"], "unused");
        assert_eq!(purged[0].detail["name"], "idle");
    }
}
