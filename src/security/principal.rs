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
use wharf_format::{now_millis, Access, Action, Audit, AuditEvent, Identity, IdentityError, NewToken, Principal, RepoPrivilege, TokenInfo, TokenSpec};

use super::token::TokenKeys;
use super::{ldap, password, roles};
use crate::db::tokens::{self, TokenRow};
use crate::db::{users, Db};

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "wharf_session";

/// API tokens start with this, so that a token is told from a password or a JWT at a glance
/// (and by secret scanners).
pub const TOKEN_PREFIX: &str = "wharf_";

pub const CACHE_TTL: Duration = Duration::from_secs(60);
pub const ANONYMOUS_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

pub struct Authenticator {
    db: Db,
    audit: Arc<dyn Audit>,
    pub tokens: TokenKeys,
    formats: Vec<&'static str>,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    anonymous: Mutex<Option<(Principal, Instant)>>,
    lockout: Lockout,
    failures: Mutex<HashMap<String, Failures>>,
    /// `local`, `ldap`, in the order they are asked.
    realms: Vec<String>,
    cache_ttl: Duration,
    /// LDAP servers from the configuration file, asked before the API's.
    config_ldap: Vec<ldap::LdapServer>,
}

/// When password checks for a user name pause after wrong passwords.
#[derive(Clone, Copy, Debug)]
pub struct Lockout {
    pub after: u32,
    pub first: Duration,
    pub max: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    paused_until: Option<Instant>,
}

impl Authenticator {
    pub fn new(db: Db, audit: Arc<dyn Audit>, tokens: TokenKeys, formats: Vec<&'static str>, lockout: Lockout) -> Authenticator {
        Authenticator {
            db,
            audit,
            tokens,
            formats,
            cache: Mutex::new(HashMap::new()),
            anonymous: Mutex::new(None),
            lockout,
            failures: Mutex::new(HashMap::new()),
            realms: vec!["local".into(), "ldap".into()],
            cache_ttl: CACHE_TTL,
            config_ldap: Vec::new(),
        }
    }

    /// The realm order and how long verified logins are remembered (the configuration's
    /// `security.realms` and `security.login_cache_secs`).
    pub fn with_realms(mut self, realms: Vec<String>, cache_ttl: Duration, config_ldap: Vec<ldap::LdapServer>) -> Authenticator {
        self.realms = realms;
        self.cache_ttl = cache_ttl;
        self.config_ldap = config_ldap;
        self
    }

    /// The LDAP servers from the configuration file.
    pub fn config_ldap(&self) -> &[ldap::LdapServer] {
        &self.config_ldap
    }

    /// Whether `user`'s password checks are paused now.
    fn paused(&self, user: &str) -> bool {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(user).and_then(|f| f.paused_until).is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, user: &str) {
        let mut all = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() > CACHE_MAX {
            let max = self.lockout.max;
            all.retain(|_, f| f.last.elapsed() < max);
        }
        let now = Instant::now();
        let f = all.entry(user.to_string()).or_insert(Failures { count: 0, last: now, paused_until: None });
        f.count += 1;
        f.last = now;
        if self.lockout.after > 0 && f.count >= self.lockout.after {
            let doublings = (f.count - self.lockout.after).min(20);
            let pause = self.lockout.first.saturating_mul(1 << doublings).min(self.lockout.max);
            f.paused_until = Some(now + pause);
            tracing::warn!(user, failures = f.count, pause_secs = pause.as_secs(), "repeated wrong passwords; password checks for this user pause");
        }
    }

    fn succeeded(&self, user: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
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
        let resolved =
            self.db.run(move |conn| Ok(roles::resolve(&[roles::ANONYMOUS_ROLE.to_string()], &users::roles(conn)?, &formats))).await.unwrap_or_default();
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
            if let Some(cookie) = req.cookie(SESSION_COOKIE) {
                return self.session_login(req, cookie.value()).await.unwrap_or_else(rejected);
            }
            return self.anonymous().await;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, pass)) = decode_basic(rest.trim()) else { return rejected() };
            return self.login_from(&user, &pass, Some(crate::http::mount::client(req))).await.unwrap_or_else(rejected);
        }
        if scheme.eq_ignore_ascii_case("bearer") && rest.trim().starts_with(TOKEN_PREFIX) {
            return self.token_login(rest.trim()).await.unwrap_or_else(rejected);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return match self.tokens.verify(rest.trim()) {
                Some(c) => Principal { user: (!c.sub.is_empty()).then_some(c.sub), access: Access::Scoped(c.grants.iter().map(|g| g.to_grant()).collect()) },
                None => rejected(),
            };
        }
        rejected()
    }

    /// Checks a username and password (or one of the user's API tokens); `None` if they do not
    /// match an active user.
    pub async fn password_login(&self, user: &str, pass: &str) -> Option<Principal> {
        self.login_from(user, pass, None).await
    }

    /// [`Authenticator::password_login`] from a known client address (for the audit log).
    pub async fn login_from(&self, user: &str, pass: &str, address: Option<String>) -> Option<Principal> {
        if pass.starts_with(TOKEN_PREFIX) {
            return self.token_login(pass).await.filter(|p| p.user.as_deref() == Some(user));
        }
        let key: [u8; 32] = Sha256::new().chain_update(user.as_bytes()).chain_update([0]).chain_update(pass.as_bytes()).finalize().into();
        if let Some(p) = self.cached(&key) {
            return Some(p);
        }
        if self.paused(user) {
            self.audit.record(AuditEvent {
                actor: Some(user.to_string()),
                address,
                action: "login.failure".into(),
                detail: serde_json::json!({"paused": true}),
                ..Default::default()
            });
            return None;
        }
        let name = user.to_string();
        let pass_for_ldap = pass.to_string();
        let (user, pass) = (user.to_string(), pass.to_string());
        let (local, servers, all_roles) = match self
            .db
            .run(move |conn| {
                let row = users::get(conn, &user)?;
                let exists = row.is_some();
                let verified = row.filter(|r| r.status == "active" && password::verify(&pass, &r.password_hash));
                Ok((exists, verified, ldap::load(conn)?, users::roles(conn)?))
            })
            .await
        {
            Ok((exists, verified, servers, roles)) => ((exists, verified), servers, roles),
            Err(e) => {
                tracing::error!(error = %e, "password check: database");
                return None;
            }
        };
        // Realms in their configured order. With local first (the default) a name that exists
        // locally is decided locally and never looked up in LDAP, so an LDAP outage cannot lock
        // out local administrators and a directory entry cannot shadow them.
        let mut checked = None;
        for realm in &self.realms {
            match (realm.as_str(), &local) {
                ("local", (_, Some(row))) => {
                    checked = Some((row.username.clone(), roles::resolve(&row.role_ids(), &all_roles, &self.formats)));
                    break;
                }
                ("local", (true, None)) => break,
                ("ldap", _) => {
                    checked = self.ldap_login(&servers, &name, &pass_for_ldap, &all_roles).await;
                    if checked.is_some() {
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some((found_name, resolved)) = checked else {
            self.failed(&name);
            self.audit.record(AuditEvent { actor: Some(name), address, action: "login.failure".into(), ..Default::default() });
            return None;
        };
        self.succeeded(&name);
        self.audit.record(AuditEvent { actor: Some(name), address, action: "login.success".into(), ..Default::default() });
        let access = if resolved.all { Access::All } else { Access::Privileges(Arc::from(resolved.repo)) };
        let p = Principal { user: Some(found_name), access };
        self.remember(key, &p);
        Some(p)
    }
}

impl Authenticator {
    /// Tries the LDAP servers in order; a server that fails is passed over (and logged).
    async fn ldap_login(
        &self,
        servers: &[ldap::LdapServer],
        user: &str,
        pass: &str,
        all_roles: &[crate::db::users::RoleRow],
    ) -> Option<(String, roles::Resolved)> {
        for s in self.config_ldap.iter().chain(servers) {
            match ldap::authenticate(s, user, pass).await {
                Ok(Some(u)) => return Some((u.id.clone(), self.ldap_roles(&u, all_roles))),
                Ok(None) => {}
                Err(e) => tracing::warn!(server = %s.name, error = %e, "LDAP server unavailable"),
            }
        }
        None
    }

    /// A directory user by name, without a password (a token or session they made earlier):
    /// the first server, in order, that knows them.
    async fn ldap_user(&self, servers: &[ldap::LdapServer], user: &str, all_roles: &[crate::db::users::RoleRow]) -> Option<(String, roles::Resolved)> {
        for s in self.config_ldap.iter().chain(servers) {
            match ldap::lookup(s, user).await {
                Ok(Some(u)) => return Some((u.id.clone(), self.ldap_roles(&u, all_roles))),
                Ok(None) => {}
                Err(e) => tracing::warn!(server = %s.name, error = %e, "LDAP server unavailable"),
            }
        }
        None
    }

    /// An LDAP user's groups are the wharf roles of the same names (Nexus's ldapGroupsAsRoles).
    fn ldap_roles(&self, u: &ldap::LdapUser, all_roles: &[crate::db::users::RoleRow]) -> roles::Resolved {
        let held: Vec<String> = u.groups.iter().filter(|g| all_roles.iter().any(|r| &r.id == *g)).cloned().collect();
        roles::resolve(&held, all_roles, &self.formats)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Principal> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).filter(|(_, at)| at.elapsed() < self.cache_ttl).map(|(p, _)| p.clone())
    }

    fn remember(&self, key: [u8; 32], p: &Principal) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            let ttl = self.cache_ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (p.clone(), Instant::now()));
    }

    /// The principal of an API token: its user's privileges, narrowed to reads and to one
    /// repository when the token says so.
    pub async fn token_login(&self, secret: &str) -> Option<Principal> {
        let key: [u8; 32] = Sha256::new().chain_update(b"token\0").chain_update(secret.as_bytes()).finalize().into();
        if let Some(p) = self.cached(&key) {
            return Some(p);
        }
        let hash = token_hash(secret);
        let (row, local, servers, all_roles) = self
            .db
            .run(move |conn| {
                let Some(row) = tokens::by_hash(conn, &hash)? else { return Ok(None) };
                let now = now_millis();
                if row.expires_at.is_some_and(|e| e <= now) {
                    return Ok(None);
                }
                if row.last_used_at.is_none_or(|t| now - t > 60_000) {
                    tokens::touch(conn, &row.id, now)?;
                }
                let local = users::get(conn, &row.username)?;
                Ok(Some((row, local, ldap::load(conn)?, users::roles(conn)?)))
            })
            .await
            .ok()
            .flatten()?;
        let (username, resolved) = match local {
            Some(u) if u.status == "active" => (u.username.clone(), roles::resolve(&u.role_ids(), &all_roles, &self.formats)),
            Some(_) => return None,
            // A directory user's token: the user must still be in the directory, with today's groups.
            None => self.ldap_user(&servers, &row.username, &all_roles).await?,
        };
        let access = narrow(resolved, row.readonly, row.repository.as_deref());
        let p = Principal { user: Some(username), access };
        // An expiring token is cached no longer than it lives.
        if row.expires_at.is_none_or(|e| e - now_millis() > self.cache_ttl.as_millis() as i64) {
            self.remember(key, &p);
        }
        Some(p)
    }
}

impl Authenticator {
    /// The principal of a console session cookie. State-changing requests must echo the
    /// session's CSRF token in `X-CSRF-Token` (the cookie alone, which a browser sends to any
    /// page's request, is not enough).
    async fn session_login(&self, req: &HttpRequest, jwt: &str) -> Option<Principal> {
        let claims = self.tokens.verify_session(jwt)?;
        let safe = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD | actix_web::http::Method::OPTIONS);
        if !safe && req.headers().get("X-CSRF-Token").and_then(|v| v.to_str().ok()) != Some(claims.csrf.as_str()) {
            return None;
        }
        let key: [u8; 32] = Sha256::new().chain_update(b"session\0").chain_update(jwt.as_bytes()).finalize().into();
        if let Some(p) = self.cached(&key) {
            return Some(p);
        }
        let user = claims.sub.clone();
        let (local, servers, all_roles) = self.db.run(move |conn| Ok((users::get(conn, &user)?, ldap::load(conn)?, users::roles(conn)?))).await.ok()?;
        let (name, resolved) = match local {
            Some(u) if u.status == "active" => (u.username.clone(), roles::resolve(&u.role_ids(), &all_roles, &self.formats)),
            Some(_) => return None,
            None => self.ldap_user(&servers, &claims.sub, &all_roles).await?,
        };
        let access = if resolved.all { Access::All } else { Access::Privileges(Arc::from(resolved.repo)) };
        let p = Principal { user: Some(name), access };
        self.remember(key, &p);
        Some(p)
    }
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
    async fn login(&self, user: &str, password: &str) -> Option<Principal> {
        self.password_login(user, password).await
    }

    async fn create_token(&self, user: &str, spec: TokenSpec) -> Result<NewToken, IdentityError> {
        let secret = format!("{TOKEN_PREFIX}{}", password::random_chars(36));
        let row = TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            username: user.to_string(),
            name: spec.name,
            token_hash: token_hash(&secret),
            prefix: secret[..TOKEN_PREFIX.len() + 4].to_string(),
            readonly: spec.readonly,
            repository: spec.repository,
            created_at: now_millis(),
            expires_at: spec.expires_at,
            last_used_at: None,
        };
        let r = row.clone();
        self.db.write(move |c| tokens::insert(c, &r)).await.map_err(|e| IdentityError(e.to_string()))?;
        tracing::info!(user, token = %row.prefix, "API token created");
        Ok(NewToken { info: info(&row), secret })
    }

    async fn tokens(&self, user: &str) -> Result<Vec<TokenInfo>, IdentityError> {
        let user = user.to_string();
        let rows = self.db.run(move |c| tokens::of_user(c, &user)).await.map_err(|e| IdentityError(e.to_string()))?;
        Ok(rows.iter().map(info).collect())
    }

    async fn revoke_token(&self, user: &str, id_or_key: &str) -> Result<bool, IdentityError> {
        let (u, k) = (user.to_string(), id_or_key.to_string());
        let gone = self.db.write(move |c| tokens::delete(c, &u, &k)).await.map_err(|e| IdentityError(e.to_string()))?;
        if gone {
            self.invalidate();
            tracing::info!(user, "API token revoked");
        }
        Ok(gone)
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
