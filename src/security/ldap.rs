//! The LDAP realm: servers in Nexus's `/service/rest/v1/security/ldap` shape, user lookup and
//! password check by bind, and group membership (static groups by member/memberUid, or a user
//! attribute such as memberOf) mapped onto wharf roles of the same name.
//!
//! User input reaches a filter only through `ldap3::ldap_escape`; an empty password is refused
//! before any bind (LDAP would take it as an unauthenticated bind and say yes).

use std::time::Duration;

use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapServer {
    // (Optional fields are left out when absent so that `wharf config` can print them as TOML.)
    pub name: String,
    /// `ldap` or `ldaps`.
    pub protocol: String,
    #[serde(default)]
    pub use_trust_store: bool,
    pub host: String,
    pub port: u16,
    /// Upgrade an `ldap` connection with StartTLS (wharf's addition).
    #[serde(default)]
    pub start_tls: bool,
    /// A PEM file of CAs to trust for ldaps/StartTLS, besides the system's (wharf's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    pub search_base: String,
    /// `NONE` (anonymous) or `SIMPLE`.
    #[serde(default = "simple")]
    pub auth_scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<String>,
    #[serde(default = "thirty")]
    pub connection_timeout_seconds: u64,
    #[serde(default = "thirty")]
    pub read_timeout_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_retry_delay_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_incidents_count: Option<u64>,
    #[serde(default)]
    pub user_base_dn: String,
    #[serde(default = "yes")]
    pub user_subtree: bool,
    #[serde(default = "inet_org_person")]
    pub user_object_class: String,
    #[serde(default)]
    pub user_ldap_filter: String,
    #[serde(default = "uid")]
    pub user_id_attribute: String,
    #[serde(default = "cn")]
    pub user_real_name_attribute: String,
    #[serde(default = "mail")]
    pub user_email_address_attribute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_password_attribute: Option<String>,
    #[serde(default = "yes")]
    pub ldap_groups_as_roles: bool,
    /// `static` (groups list their members) or `dynamic` (users list their groups).
    #[serde(default = "static_")]
    pub group_type: String,
    #[serde(default)]
    pub group_base_dn: String,
    #[serde(default = "yes")]
    pub group_subtree: bool,
    #[serde(default = "group_of_names")]
    pub group_object_class: String,
    #[serde(default = "cn")]
    pub group_id_attribute: String,
    #[serde(default = "member")]
    pub group_member_attribute: String,
    /// `${dn}` or e.g. `${username}` (for memberUid).
    #[serde(default = "dn_format")]
    pub group_member_format: String,
    #[serde(default = "member_of")]
    pub user_member_of_attribute: String,
    /// Position in the realm order (read-only; see change-order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn simple() -> String {
    "SIMPLE".into()
}
fn thirty() -> u64 {
    30
}
fn yes() -> bool {
    true
}
fn inet_org_person() -> String {
    "inetOrgPerson".into()
}
fn uid() -> String {
    "uid".into()
}
fn cn() -> String {
    "cn".into()
}
fn mail() -> String {
    "mail".into()
}
fn static_() -> String {
    "static".into()
}
fn group_of_names() -> String {
    "groupOfNames".into()
}
fn member() -> String {
    "member".into()
}
fn dn_format() -> String {
    "${dn}".into()
}
fn member_of() -> String {
    "memberOf".into()
}

impl LdapServer {
    /// Checks the fields; returns the name of the bad one and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((f.to_string(), format!("{f}: {m}")));
        if self.name.is_empty() || self.name.len() > 100 || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return bad("name", "letters, digits, - _ . only");
        }
        if self.protocol != "ldap" && self.protocol != "ldaps" {
            return bad("protocol", "ldap or ldaps");
        }
        if self.start_tls && self.protocol == "ldaps" {
            return bad("startTls", "StartTLS upgrades an ldap connection; ldaps is TLS already");
        }
        if self.host.is_empty() || self.host.contains(['/', ' ']) {
            return bad("host", "a host name or address");
        }
        if self.port == 0 {
            return bad("port", "a port between 1 and 65535");
        }
        if !["NONE", "SIMPLE"].contains(&self.auth_scheme.as_str()) {
            return bad("authScheme", "NONE or SIMPLE");
        }
        if self.auth_scheme == "SIMPLE" && self.auth_username.as_deref().unwrap_or("").is_empty() {
            return bad("authUsername", "required with authScheme SIMPLE");
        }
        if !["static", "dynamic"].contains(&self.group_type.as_str()) {
            return bad("groupType", "static or dynamic");
        }
        if self.connection_timeout_seconds == 0 || self.connection_timeout_seconds > 600 {
            return bad("connectionTimeoutSeconds", "between 1 and 600");
        }
        if self.read_timeout_seconds == 0 || self.read_timeout_seconds > 600 {
            return bad("readTimeoutSeconds", "between 1 and 600");
        }
        for (f, v) in [
            ("userIdAttribute", &self.user_id_attribute),
            ("userObjectClass", &self.user_object_class),
            ("groupObjectClass", &self.group_object_class),
            ("groupIdAttribute", &self.group_id_attribute),
            ("groupMemberAttribute", &self.group_member_attribute),
            ("userMemberOfAttribute", &self.user_member_of_attribute),
        ] {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';') {
                return bad(f, "an attribute or class name");
            }
        }
        let f = &self.user_ldap_filter;
        if !f.is_empty() && (!f.starts_with('(') || !f.ends_with(')')) {
            return bad("userLdapFilter", "a filter in parentheses, e.g. (!(employeeType=disabled))");
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.protocol, self.host, self.port)
    }

    fn under(&self, dn: &str) -> String {
        match (dn.is_empty(), self.search_base.is_empty()) {
            (true, _) => self.search_base.clone(),
            (false, true) => dn.to_string(),
            (false, false) => format!("{dn},{}", self.search_base),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("the service account cannot bind: {0}")]
    ServiceBind(String),
    #[error("LDAP: {0}")]
    Protocol(String),
}

/// A user the directory vouched for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LdapUser {
    pub id: String,
    pub dn: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
}

async fn connect(s: &LdapServer) -> Result<ldap3::Ldap, LdapError> {
    let mut settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(s.connection_timeout_seconds)).set_starttls(s.start_tls);
    if let Some(ca) = &s.ca_file {
        settings = settings.set_config(std::sync::Arc::new(tls_config(ca).map_err(|e| LdapError::Unreachable(s.url(), e))?));
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, &s.url()).await.map_err(|e| LdapError::Unreachable(s.url(), e.to_string()))?;
    ldap3::drive!(conn);
    Ok(ldap)
}

fn tls_config(ca_file: &str) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    crate::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{ca_file}: {e}"))? {
        roots.add(c.map_err(|e| format!("{ca_file}: {e}"))?).map_err(|e| format!("{ca_file}: {e}"))?;
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

async fn service_bind(s: &LdapServer, ldap: &mut ldap3::Ldap) -> Result<(), LdapError> {
    if s.auth_scheme == "SIMPLE" {
        let user = s.auth_username.as_deref().unwrap_or("");
        let pass = s.auth_password.as_deref().unwrap_or("");
        let r =
            ldap.with_timeout(Duration::from_secs(s.read_timeout_seconds)).simple_bind(user, pass).await.map_err(|e| LdapError::ServiceBind(e.to_string()))?;
        r.success().map_err(|e| LdapError::ServiceBind(e.to_string()))?;
    }
    Ok(())
}

/// Connects and binds as the service account: the "test connection" button.
pub async fn verify_connection(s: &LdapServer) -> Result<(), LdapError> {
    let mut ldap = connect(s).await?;
    service_bind(s, &mut ldap).await?;
    let _ = ldap.unbind().await;
    Ok(())
}

fn first(e: &SearchEntry, attr: &str) -> String {
    e.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).and_then(|(_, v)| v.first().cloned()).unwrap_or_default()
}

fn all(e: &SearchEntry, attr: &str) -> Vec<String> {
    e.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// A DN's RDNs as (attribute type in lower case, value unescaped), first RDN first (RFC 4514);
/// `None` for what this reading does not take: a multi-valued RDN, a `#`-encoded value, a
/// broken escape.
fn parse_dn(dn: &str) -> Option<Vec<(String, String)>> {
    let mut rdns = Vec::new();
    let mut chars = dn.trim().chars().peekable();
    if chars.peek().is_none() {
        return Some(rdns);
    }
    loop {
        let mut attr = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            attr.push(c);
        }
        let attr = attr.trim().to_ascii_lowercase();
        if attr.is_empty() || chars.peek() == Some(&'#') {
            return None;
        }
        let mut value = Vec::new();
        let mut ended = false;
        while let Some(c) = chars.next() {
            match c {
                ',' => {
                    ended = true;
                    break;
                }
                '+' => return None,
                '\\' => {
                    let a = chars.next()?;
                    if a.is_ascii_hexdigit() {
                        let b = chars.next().filter(char::is_ascii_hexdigit)?;
                        value.push(u8::from_str_radix(&format!("{a}{b}"), 16).ok()?);
                    } else {
                        value.extend(a.to_string().as_bytes());
                    }
                }
                c => value.extend(c.to_string().as_bytes()),
            }
        }
        rdns.push((attr, String::from_utf8(value).ok()?.trim().to_string()));
        if !ended {
            return Some(rdns);
        }
    }
}

/// One entry's DN in two spellings: RDN by RDN, attribute types and values without regard to
/// case, spaces around separators and escapes (`uid=gina, ou=People` is `uid=gina,ou=people`).
pub fn same_dn(a: &str, b: &str) -> bool {
    let fold = |dn: &str| parse_dn(dn).map(|rdns| rdns.into_iter().map(|(t, v)| (t, v.to_lowercase())).collect::<Vec<_>>());
    match (fold(a), fold(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The name of a group a user's `memberOf`-style attribute lists (its first RDN's value), if it
/// lies under the group base (`groupBaseDn` under `searchBase`, at any depth: Nexus reads
/// dynamic groups without `groupSubtree` or `groupIdAttribute`, and configurations made for it
/// would lose every role). A group elsewhere is no role: by the first RDN's value alone, a user
/// who may create a group anywhere in the directory (`cn=nx-admin,ou=sandbox`) became an
/// administrator.
fn member_of_group(s: &LdapServer, dn: &str) -> Option<String> {
    let rdns = parse_dn(dn)?;
    let base = parse_dn(&s.under(&s.group_base_dn))?;
    let ((_, name), parent) = rdns.split_first()?;
    if name.is_empty() || parent.len() < base.len() {
        return None;
    }
    let same = |a: &(String, String), b: &(String, String)| a.0 == b.0 && a.1.to_lowercase() == b.1.to_lowercase();
    parent[parent.len() - base.len()..].iter().zip(&base).all(|(a, b)| same(a, b)).then(|| name.clone())
}

/// Finds `username`, checks `password` by binding as the user, and reads the user's groups.
/// `Ok(None)`: no such user, more than one, or a wrong password. `Err`: the directory failed.
///
/// A refusal costs the same round trips whoever the name is, so that its time does not tell a
/// directory user from an unknown name (or, with `username` `None`, from a local user, whose
/// name is never asked of the directory): one connection with the service bind and one search,
/// then a second connection with one bind. When there is no one to bind as, the search asks
/// for a name no entry has and the bind is as an entry that does not exist, with a random
/// password (never the caller's: a local password must not reach the directory).
pub async fn authenticate(s: &LdapServer, username: Option<&str>, password: &str) -> Result<Option<LdapUser>, LdapError> {
    let timeout = Duration::from_secs(s.read_timeout_seconds);
    let decoy = format!("wharf-nobody-{}", crate::security::password::random_chars(24));
    let asked = username.filter(|u| askable(u));
    let mut ldap = connect(s).await?;
    service_bind(s, &mut ldap).await?;
    let found = search_user(s, &mut ldap, asked.unwrap_or(&decoy), timeout).await?;
    // An empty password would be an unauthenticated bind, which LDAP answers with success.
    let usable = !password.is_empty() && password.len() <= 1024;
    let candidate = found.filter(|_| usable && asked.is_some());
    let bound = match &candidate {
        Some(entry) => bind_as(s, &entry.dn, password, timeout).await?,
        None => {
            let dn = format!("{}={},{}", s.user_id_attribute, decoy, s.under(&s.user_base_dn));
            bind_as(s, &dn, &crate::security::password::random_chars(32), timeout).await?;
            false
        }
    };
    let user = match candidate {
        Some(entry) if bound => Some(describe(s, &mut ldap, entry, asked.unwrap_or_default(), timeout).await?),
        _ => None,
    };
    let _ = ldap.unbind().await;
    Ok(user)
}

/// The user and groups without a password check (for a token the user made earlier).
pub async fn lookup(s: &LdapServer, username: &str) -> Result<Option<LdapUser>, LdapError> {
    if !askable(username) {
        return Ok(None);
    }
    let timeout = Duration::from_secs(s.read_timeout_seconds);
    let mut ldap = connect(s).await?;
    service_bind(s, &mut ldap).await?;
    let user = match search_user(s, &mut ldap, username, timeout).await? {
        Some(entry) => Some(describe(s, &mut ldap, entry, username, timeout).await?),
        None => None,
    };
    let _ = ldap.unbind().await;
    Ok(user)
}

fn askable(username: &str) -> bool {
    !username.is_empty() && username.len() <= 256
}

/// The one entry the user filter finds for `username`; none when it finds none or several.
async fn search_user(s: &LdapServer, ldap: &mut ldap3::Ldap, username: &str, timeout: Duration) -> Result<Option<SearchEntry>, LdapError> {
    let filter = format!("(&(objectClass={})({}={}){})", s.user_object_class, s.user_id_attribute, ldap_escape(username), s.user_ldap_filter);
    let scope = if s.user_subtree { Scope::Subtree } else { Scope::OneLevel };
    let attrs =
        vec![s.user_id_attribute.as_str(), s.user_real_name_attribute.as_str(), s.user_email_address_attribute.as_str(), s.user_member_of_attribute.as_str()];
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(&s.under(&s.user_base_dn), scope, &filter, attrs)
        .await
        .map_err(|e| LdapError::Protocol(e.to_string()))?
        .success()
        .map_err(|e| LdapError::Protocol(e.to_string()))?;
    if entries.len() != 1 {
        return Ok(None);
    }
    Ok(entries.into_iter().next().map(SearchEntry::construct))
}

/// The password check: a bind as `dn`, on a connection of its own.
async fn bind_as(s: &LdapServer, dn: &str, password: &str, timeout: Duration) -> Result<bool, LdapError> {
    let mut user_conn = connect(s).await?;
    let bound = user_conn.with_timeout(timeout).simple_bind(dn, password).await.map_err(|e| LdapError::Protocol(e.to_string()))?;
    let _ = user_conn.unbind().await;
    Ok(bound.success().is_ok())
}

/// A found entry as a user, with their groups (read on the service connection).
async fn describe(s: &LdapServer, ldap: &mut ldap3::Ldap, entry: SearchEntry, username: &str, timeout: Duration) -> Result<LdapUser, LdapError> {
    let id = first(&entry, &s.user_id_attribute);
    let mut groups = Vec::new();
    if s.ldap_groups_as_roles {
        if s.group_type == "dynamic" {
            groups = all(&entry, &s.user_member_of_attribute).iter().filter_map(|dn| member_of_group(s, dn)).collect();
        } else {
            let member = s.group_member_format.replace("${dn}", &entry.dn).replace("${username}", &id);
            let gfilter = format!("(&(objectClass={})({}={}))", s.group_object_class, s.group_member_attribute, ldap_escape(&member));
            let gscope = if s.group_subtree { Scope::Subtree } else { Scope::OneLevel };
            let (gentries, _) = ldap
                .with_timeout(timeout)
                .search(&s.under(&s.group_base_dn), gscope, &gfilter, vec![s.group_id_attribute.as_str()])
                .await
                .map_err(|e| LdapError::Protocol(e.to_string()))?
                .success()
                .map_err(|e| LdapError::Protocol(e.to_string()))?;
            groups = gentries.into_iter().map(SearchEntry::construct).map(|g| first(&g, &s.group_id_attribute)).filter(|g| !g.is_empty()).collect();
        }
    }
    groups.sort();
    groups.dedup();
    Ok(LdapUser {
        name: first(&entry, &s.user_real_name_attribute),
        email: first(&entry, &s.user_email_address_attribute),
        id: if id.is_empty() { username.to_string() } else { id },
        dn: entry.dn,
        groups,
    })
}

/// What a request may send as `authPassword` to keep the stored one (as `wharf config` shows it).
pub const PASSWORD_MASK: &str = "********";

/// The configured servers, in realm order (settings key `ldap.servers`). Bind passwords are
/// stored sealed with the secret key and returned in plaintext.
pub const SETTINGS_KEY: &str = "ldap.servers";

fn parse_stored(raw: &str) -> Result<Vec<LdapServer>, crate::db::DbError> {
    // A list that does not parse is an error, not "no servers": an update would store an empty
    // list over it and lose every server.
    let mut servers: Vec<LdapServer> =
        serde_json::from_str(raw).map_err(|e| crate::db::DbError::Unreadable(format!("the stored LDAP servers ({SETTINGS_KEY}): {e}")))?;
    for s in &mut servers {
        if let Some(p) = &s.auth_password {
            s.auth_password = Some(crate::security::secrets::open(p, &password_location(&s.name))?);
        }
    }
    Ok(servers)
}

pub fn load(conn: &mut crate::db::AnyConnection) -> Result<Vec<LdapServer>, crate::db::DbError> {
    match crate::db::settings::get(conn, SETTINGS_KEY)? {
        Some(raw) => parse_stored(&raw),
        None => Ok(Vec::new()),
    }
}

/// Where a server's bind password is stored (its associated data): a ciphertext opens only as
/// the password of the server it was sealed for.
fn password_location(server: &str) -> String {
    format!("{}/{server}/authPassword", crate::security::secrets::setting_location(SETTINGS_KEY))
}

/// The list as stored: each bind password (plaintext, whatever it looks like) sealed; a password
/// that the stored list holds for the same server keeps its ciphertext, so an unchanged server
/// is stored unchanged.
fn sealed(servers: &[LdapServer], old: &[(String, Option<String>)]) -> Result<String, crate::db::DbError> {
    let mut out = servers.to_vec();
    for s in &mut out {
        let Some(p) = &s.auth_password else { continue };
        let previous = old.iter().find(|(n, _)| n == &s.name).and_then(|(_, c)| c.as_deref());
        s.auth_password = Some(crate::security::secrets::seal_keeping(p, previous, &password_location(&s.name))?);
    }
    Ok(serde_json::to_string(&out).unwrap_or_else(|_| "[]".into()))
}

fn stored_passwords(raw: Option<&str>) -> Vec<(String, Option<String>)> {
    raw.and_then(|r| serde_json::from_str::<Vec<LdapServer>>(r).ok()).unwrap_or_default().into_iter().map(|s| (s.name, s.auth_password)).collect()
}

pub fn store(conn: &mut crate::db::AnyConnection, servers: &[LdapServer]) -> Result<(), crate::db::DbError> {
    let old = crate::db::settings::get(conn, SETTINGS_KEY)?;
    let value = sealed(servers, &stored_passwords(old.as_deref()))?;
    crate::db::settings::set(conn, SETTINGS_KEY, &value)
}

/// Seals bind passwords that an older version stored in plaintext or as v1; whether it changed
/// the row.
pub fn seal_stored_secrets(conn: &mut crate::db::AnyConnection) -> Result<bool, crate::db::DbError> {
    let Some(raw) = crate::db::settings::get(conn, SETTINGS_KEY)? else {
        return Ok(false);
    };
    let Ok(mut servers) = serde_json::from_str::<Vec<LdapServer>>(&raw) else {
        return Ok(false);
    };
    if servers.iter().all(|s| s.auth_password.as_deref().is_none_or(crate::security::secrets::is_current)) {
        return Ok(false);
    }
    for s in &mut servers {
        if let Some(p) = &s.auth_password {
            s.auth_password = Some(crate::security::secrets::reseal(p, &password_location(&s.name))?);
        }
    }
    let value = serde_json::to_string(&servers).unwrap_or_else(|_| "[]".into());
    crate::db::settings::replace_if(conn, SETTINGS_KEY, &raw, &value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_metacharacters_are_escaped() {
        assert_eq!(ldap3::ldap_escape("*)(uid=*))(|(uid=*"), "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a");
    }

    #[test]
    fn distinguished_names_are_read_by_their_escapes() {
        let dn = super::parse_dn(r"CN=Smith\, John,OU=Sales\2b\c3\a9, DC=x").unwrap();
        assert_eq!(dn, vec![("cn".into(), "Smith, John".into()), ("ou".into(), "Sales+\u{e9}".into()), ("dc".into(), "x".into())]);
        assert_eq!(super::parse_dn(""), Some(vec![]));
        assert!(super::same_dn("uid=gina, ou=People,dc=x", "UID=gina,ou=people , dc=X") && super::same_dn(r"cn=a\,b,dc=x", r"cn=a\2cb,dc=x"));
        assert!(!super::same_dn("uid=gina,ou=people,dc=x", "uid=gina,ou=contractors,ou=people,dc=x"));
        for refused in ["cn=a+uid=b,dc=x", "cn=#04024869,dc=x", r"cn=a\,dc=x\", "=a,dc=x", r"cn=a\4"] {
            assert_eq!(super::parse_dn(refused), None, "{refused}");
        }
    }
}
