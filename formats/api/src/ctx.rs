//! What the server tells a format about one request: which repository, reached how, by whom.

use std::sync::Arc;

use crate::config::RepoConfig;

/// How the request reached the repository; formats need it to build URLs the client can follow
/// (`Location`, `Link`, tarball URLs) and to name things the way the client named them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// `/repository/<name>/...` on the main port. `prefix` is `/repository/<name>`.
    Prefix { prefix: String },
    /// The format's root path with the repository as first segment, e.g. Docker's
    /// `/v2/<repo>/<image>/...` on the main port. `segment` is `<repo>`.
    Segment { segment: String },
    /// The repository's own port, or a Host header naming it: the whole URL space is the repository's.
    Own,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Write,
    Delete,
}

/// One repository-scoped permission carried by a token (Docker bearer tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub repository: String,
    /// The object inside the repository (Docker: the image name), `*` for any.
    pub object: String,
    pub actions: Vec<Action>,
}

/// A repository privilege held through roles (Nexus's
/// `nx-repository-view-<format>-<repository>-<action>`; `*` matches any format or repository).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoPrivilege {
    pub format: String,
    pub repository: String,
    pub actions: Vec<Action>,
}

impl RepoPrivilege {
    pub fn allows(&self, repo: &RepoConfig, action: Action) -> bool {
        (self.format == "*" || self.format == repo.format) && (self.repository == "*" || self.repository == repo.name) && self.actions.contains(&action)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Administrators (`nx-all`).
    All,
    /// A signed-in user: the repository privileges their roles hold.
    Privileges(Arc<[RepoPrivilege]>),
    /// A token limited to the listed grants.
    Scoped(Vec<Grant>),
    /// A Docker bearer token: the grants it was signed with, and never more than its holder
    /// may do now (`holder` is their access as read again for this request).
    Bearer { grants: Vec<Grant>, holder: Arc<Access> },
    /// No credentials: the anonymous role's privileges, and reads where `anonymousRead` is on.
    Anonymous(Arc<[RepoPrivilege]>),
}

/// A Docker bearer token's grant of the registry's catalog (`registry:catalog:*`): the grant's
/// object, under no repository.
pub const CATALOG_GRANT: &str = "catalog";

impl Access {
    /// What a listing of `repo`'s objects (a registry catalog) may show: for a Docker bearer
    /// token that was granted the catalog, what its holder may read; else [`Access::objects`].
    pub fn listable(&self, repo: &RepoConfig) -> Objects {
        match self {
            Access::Bearer { grants, holder } if grants.iter().any(|g| g.repository.is_empty() && g.object == CATALOG_GRANT) => {
                holder.objects(repo, Action::Read)
            }
            _ => self.objects(repo, Action::Read),
        }
    }

    /// May this access do `action` on `object` (Docker: an image name) in `repo`?
    pub fn allows(&self, repo: &RepoConfig, action: Action, object: &str) -> bool {
        let granted =
            |grants: &[Grant]| grants.iter().any(|g| g.repository == repo.name && (g.object == "*" || g.object == object) && g.actions.contains(&action));
        match self {
            Access::All => true,
            Access::Privileges(p) => p.iter().any(|p| p.allows(repo, action)),
            Access::Scoped(grants) => granted(grants),
            Access::Bearer { grants, holder } => granted(grants) && holder.allows(repo, action, object),
            Access::Anonymous(p) => (action == Action::Read && repo.anonymous_read) || p.iter().any(|p| p.allows(repo, action)),
        }
    }
}

/// The objects of a repository an access may act on (see [`Access::objects`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Objects {
    /// Any object.
    Any,
    /// Only these (none if empty), by name.
    Named(Vec<String>),
}

impl Objects {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Objects::Any => true,
            Objects::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

impl Access {
    /// What [`Access::allows`] lets this access do `action` on in `repo`, as a whole: so that
    /// a listing asks only for what the caller may see, instead of reading everything and
    /// checking each name.
    pub fn objects(&self, repo: &RepoConfig, action: Action) -> Objects {
        let granted = |grants: &[Grant]| {
            let mine = grants.iter().filter(|g| g.repository == repo.name && g.actions.contains(&action));
            let mut named = Vec::new();
            for g in mine {
                if g.object == "*" {
                    return Objects::Any;
                }
                named.push(g.object.clone());
            }
            named.sort();
            named.dedup();
            Objects::Named(named)
        };
        let whole = |yes: bool| if yes { Objects::Any } else { Objects::Named(Vec::new()) };
        match self {
            Access::All => Objects::Any,
            Access::Privileges(p) => whole(p.iter().any(|p| p.allows(repo, action))),
            Access::Anonymous(p) => whole((action == Action::Read && repo.anonymous_read) || p.iter().any(|p| p.allows(repo, action))),
            Access::Scoped(grants) => granted(grants),
            Access::Bearer { grants, holder } => match (granted(grants), holder.objects(repo, action)) {
                (Objects::Any, theirs) => theirs,
                (mine, Objects::Any) => mine,
                (Objects::Named(mine), Objects::Named(theirs)) => Objects::Named(mine.into_iter().filter(|o| theirs.contains(o)).collect()),
            },
        }
    }
}

/// Where a user is defined. User names are compared without regard to ASCII case, and a name
/// that exists as a local user (in any spelling) belongs to the local realm only: a directory
/// entry of the same name is never that user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Realm {
    Local,
    Ldap,
}

impl Realm {
    pub fn as_str(self) -> &'static str {
        match self {
            Realm::Local => "local",
            Realm::Ldap => "ldap",
        }
    }

    pub fn parse(s: &str) -> Option<Realm> {
        match s {
            "local" => Some(Realm::Local),
            "ldap" => Some(Realm::Ldap),
            _ => None,
        }
    }
}

/// How the caller proved who they are. What a request may do depends on this as well as on
/// its access: only a password (or a console session opened with one) creates credentials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Credential {
    /// No credentials, or credentials that did not verify.
    #[default]
    Anonymous,
    /// The user's password (Basic, or a login body).
    Password,
    /// A console session cookie (opened with a password).
    Session,
    /// An API token with the user's full rights.
    Token,
    /// An API token narrowed to reads or to one repository.
    NarrowedToken,
    /// A Docker bearer token: the grants it names, nothing else.
    DockerBearer,
}

impl Credential {
    /// May this credential create new credentials (API tokens, sessions)? Only a password, or
    /// a session opened with one: a token, however wide, never begets another.
    pub fn may_create_credentials(self) -> bool {
        matches!(self, Credential::Password | Credential::Session)
    }

    /// Narrowed to less than the user's rights.
    pub fn is_narrowed(self) -> bool {
        matches!(self, Credential::NarrowedToken | Credential::DockerBearer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `None` for anonymous callers; otherwise the user's name as its realm spells it.
    pub user: Option<String>,
    /// `None` for anonymous callers.
    pub realm: Option<Realm>,
    pub credential: Credential,
    pub access: Access,
    /// The local user's row as the password or session found it (`None` for anyone else).
    pub holder: Option<Holder>,
}

/// A local user as a password or a console session found them: the row's id and, for a
/// password, a fingerprint of the hash it was checked against. The identity service writes a
/// new credential (a token, a session) for the user only while the row still stands so: a user
/// deleted and created again under the name, disabled, or whose password changed since gets
/// none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub id: i64,
    pub password: Option<String>,
}

impl Principal {
    /// An anonymous caller whose anonymous role holds nothing.
    pub fn anonymous() -> Principal {
        Principal { user: None, realm: None, credential: Credential::Anonymous, access: Access::Anonymous(Arc::from(Vec::new())), holder: None }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    /// The same caller acting with every right: a group asking its members on the caller's
    /// behalf, after checking the caller's rights on the group.
    pub fn trusted(&self) -> Principal {
        Principal { access: Access::All, ..self.clone() }
    }

    /// The same caller in `member` of `group`, with exactly the rights it holds on the group
    /// for `object`, now on the member: what the member decides by its own checks (an npm
    /// `PUT .../-rev/...` that drops versions is a delete) it decides on the caller's rights.
    /// With [`Principal::trusted`] a user who might only publish through a group unpublished.
    pub fn in_member(&self, group: &RepoConfig, member: &RepoConfig, object: &str) -> Principal {
        if matches!(self.access, Access::All) {
            return self.clone();
        }
        let actions: Vec<Action> = [Action::Read, Action::Write, Action::Delete].into_iter().filter(|a| self.access.allows(group, *a, object)).collect();
        let privilege = || Arc::from(vec![RepoPrivilege { format: member.format.clone(), repository: member.name.clone(), actions: actions.clone() }]);
        // The same kind of access, so that a refusal in the member is what it would be in the
        // group: 401 (log in) for an anonymous caller or a token, 403 for a signed-in user.
        let access = match &self.access {
            Access::Anonymous(_) => Access::Anonymous(privilege()),
            Access::Scoped(_) | Access::Bearer { .. } => Access::Scoped(vec![Grant { repository: member.name.clone(), object: "*".into(), actions }]),
            Access::All | Access::Privileges(_) => Access::Privileges(privilege()),
        };
        Principal { access, ..self.clone() }
    }

    /// Is this the local user `name` (in any spelling)?
    pub fn is_local_user(&self, name: &str) -> bool {
        self.realm == Some(Realm::Local) && self.user.as_deref().is_some_and(|u| same_user(u, name))
    }
}

/// User names are one name whatever their ASCII case.
pub fn same_user(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The form of a user name that keys caches, pauses and lookups.
pub fn canonical_user(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Why a request was refused: the format turns it into its protocol's 401 or 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Credentials are missing or do not cover this action: ask for (other) credentials.
    Unauthenticated,
    /// The caller is known and may not do this.
    Forbidden,
}

#[derive(Clone)]
pub struct RepoCtx {
    pub repo: Arc<RepoConfig>,
    /// The path inside the repository's URL space, always starting with `/`:
    /// `/v2/team/app/manifests/1`, `/simple/foo/`.
    pub path: String,
    /// The query string the format should act on (a group asks its members with its own).
    pub query: String,
    pub mount: Mount,
    pub principal: Principal,
    /// `scheme://host[:port]` as the client addressed us (after `X-Forwarded-*`).
    pub origin: String,
    /// The client's address, for the audit log.
    pub client: String,
    /// The Docker token endpoint for this listener (absolute URL).
    pub token_realm: String,
    /// The `service` name the token endpoint issues tokens for.
    pub token_service: String,
}

impl RepoCtx {
    /// May the caller do `action` on `object` (Docker: an image name) in this repository?
    pub fn check(&self, action: Action, object: &str) -> Result<(), Denied> {
        if self.principal.access.allows(&self.repo, action, object) {
            return Ok(());
        }
        match &self.principal.access {
            Access::Anonymous(_) | Access::Scoped(_) | Access::Bearer { .. } => Err(Denied::Unauthenticated),
            _ => Err(Denied::Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(repository: &str, object: &str) -> Grant {
        Grant { repository: repository.into(), object: object.into(), actions: vec![Action::Read] }
    }

    /// What `objects` answers is what `allows` says of every object: any, the named ones, or none.
    #[test]
    fn objects_are_what_allows_allows() {
        let repo = RepoConfig::hosted(1, "r", "docker");
        let open = RepoConfig { anonymous_read: true, ..RepoConfig::hosted(2, "open", "docker") };
        let reader =
            Arc::new(Access::Privileges(Arc::from(vec![RepoPrivilege { format: "docker".into(), repository: "r".into(), actions: vec![Action::Read] }])));
        let nobody = Arc::new(Access::Privileges(Arc::from(Vec::new())));
        let named = |v: &[&str]| Objects::Named(v.iter().map(|s| s.to_string()).collect());
        let cases: Vec<(Access, &RepoConfig, Objects)> = vec![
            (Access::All, &repo, Objects::Any),
            ((*reader).clone(), &repo, Objects::Any),
            ((*reader).clone(), &open, named(&[])),
            (Access::Anonymous(Arc::from(Vec::new())), &repo, named(&[])),
            (Access::Anonymous(Arc::from(Vec::new())), &open, Objects::Any),
            (Access::Scoped(vec![grant("r", "b"), grant("r", "a"), grant("other", "c"), grant("r", "a")]), &repo, named(&["a", "b"])),
            (Access::Scoped(vec![grant("r", "a"), grant("r", "*")]), &repo, Objects::Any),
            (Access::Bearer { grants: vec![grant("r", "a")], holder: reader.clone() }, &repo, named(&["a"])),
            (Access::Bearer { grants: vec![grant("r", "*")], holder: reader.clone() }, &repo, Objects::Any),
            (Access::Bearer { grants: vec![grant("r", "a")], holder: nobody.clone() }, &repo, named(&[])),
            (Access::Bearer { grants: vec![grant("r", "a"), grant("r", "b")], holder: Arc::new(Access::Scoped(vec![grant("r", "b")])) }, &repo, named(&["b"])),
        ];
        for (access, repo, want) in cases {
            let got = access.objects(repo, Action::Read);
            assert_eq!(got, want, "{access:?} on {}", repo.name);
            for o in ["a", "b", "c", "zzz"] {
                let listed = match &got {
                    Objects::Any => true,
                    Objects::Named(n) => n.iter().any(|x| x == o),
                };
                assert_eq!(listed, access.allows(repo, Action::Read, o), "{access:?} on {}, object {o}", repo.name);
            }
        }
    }
}
