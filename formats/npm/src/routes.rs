//! `ctx.path` → endpoint. Package names come scoped (`@scope/name`, which clients also send as
//! `@scope%2fname`) or unscoped; the registry's own endpoints live under `/-/`.

#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    Ping,
    Whoami,
    /// `PUT /-/user/org.couchdb.user:<name>` (login), `GET` the same.
    User(String),
    /// `DELETE /-/user/token/<token>` (logout).
    Logout(String),
    Search,
    /// `POST /-/v1/login`: begins a web login.
    WebLogin,
    /// `/-/v1/login/<id>`: the page a browser opens to approve it (GET), and the approval (POST).
    WebLoginPage(String),
    /// `GET /-/v1/done/<secret>`: the client's poll.
    WebLoginDone(String),
    Tokens,
    Token(String),
    Audit(String),
    /// `GET /-/npm/v1/attestations/<name>@<version>`
    Attestations {
        name: String,
        version: String,
    },
    DistTags(String),
    /// `GET /-/org/<scope>/package` (`npm access list packages @scope`).
    OrgPackages(String),
    /// `GET /-/user/<user>/package` (`npm access list packages [user]`).
    UserPackages(String),
    /// `/-/team/<scope>/<team>/package`: npm's teams (`npm access grant/revoke`).
    Team,
    /// `GET /-/package/<name>/collaborators`
    Collaborators(String),
    /// `GET /-/package/<name>/visibility` (`npm access get status`)
    Visibility(String),
    /// `POST /-/package/<name>/access` (`npm access set status|mfa`)
    PackageAccess(String),
    DistTag {
        name: String,
        tag: String,
    },
    /// `/<name>`: the packument; `PUT` publishes.
    Package(String),
    /// `/<name>/-rev/<rev>`: update (deprecate, unpublish a version) or delete.
    PackageRev {
        name: String,
        rev: String,
    },
    /// `/<name>/-/<file>.tgz`
    Tarball {
        name: String,
        file: String,
    },
    /// `/<name>/-/<file>/-rev/<rev>`
    TarballRev {
        name: String,
        file: String,
    },
    /// `/<name>/<version or tag>`
    Version {
        name: String,
        version: String,
    },
}

fn decode(seg: &str) -> String {
    seg.replace("%2f", "/").replace("%2F", "/").replace("%40", "@")
}

pub fn parse(path: &str) -> Option<Endpoint> {
    let path = decode(path.trim_start_matches('/'));
    if let Some(rest) = path.strip_prefix("-/") {
        let segs: Vec<&str> = rest.split('/').collect();
        return match segs.as_slice() {
            ["ping"] => Some(Endpoint::Ping),
            ["whoami"] => Some(Endpoint::Whoami),
            ["user", u] if u.starts_with("org.couchdb.user:") => Some(Endpoint::User(u["org.couchdb.user:".len()..].to_string())),
            ["user", "token", t] => Some(Endpoint::Logout(t.to_string())),
            ["user", u, "package"] if !u.is_empty() => Some(Endpoint::UserPackages(u.to_string())),
            ["org", scope, "package"] if !scope.is_empty() => Some(Endpoint::OrgPackages(scope.trim_start_matches('@').to_string())),
            ["team", _, _, "package"] => Some(Endpoint::Team),
            ["v1", "search"] => Some(Endpoint::Search),
            ["v1", "login"] => Some(Endpoint::WebLogin),
            ["v1", "login", id] if !id.is_empty() => Some(Endpoint::WebLoginPage(id.to_string())),
            ["v1", "done", done] if !done.is_empty() => Some(Endpoint::WebLoginDone(done.to_string())),
            ["npm", "v1", "tokens"] => Some(Endpoint::Tokens),
            ["npm", "v1", "tokens", "token", k] => Some(Endpoint::Token(k.to_string())),
            ["npm", "v1", "attestations", rest @ ..] => {
                let spec = rest.join("/");
                let (name, version) = spec.rsplit_once('@').filter(|(n, v)| !n.is_empty() && !v.is_empty())?;
                Some(Endpoint::Attestations { name: name.to_string(), version: version.to_string() })
            }
            // Only the audit endpoints npm calls: the path is passed to the upstream, with the
            // proxy's credentials, so any other (`..` segments above all) would reach whatever
            // the upstream's host serves.
            ["npm", "v1", "security", rest @ ..] => match rest {
                ["audits"] | ["audits", "quick"] | ["advisories", "bulk"] => Some(Endpoint::Audit(format!("/-/npm/v1/security/{}", rest.join("/")))),
                _ => None,
            },
            ["package", rest @ ..] => {
                let (name, tail) = split_name(&rest.join("/"))?;
                match tail.split('/').collect::<Vec<_>>().as_slice() {
                    ["dist-tags"] => Some(Endpoint::DistTags(name)),
                    ["dist-tags", tag] if !tag.is_empty() => Some(Endpoint::DistTag { name, tag: tag.to_string() }),
                    ["collaborators"] => Some(Endpoint::Collaborators(name)),
                    ["visibility"] => Some(Endpoint::Visibility(name)),
                    ["access"] => Some(Endpoint::PackageAccess(name)),
                    _ => None,
                }
            }
            _ => None,
        };
    }
    let (name, tail) = split_name(&path)?;
    let segs: Vec<&str> = if tail.is_empty() { vec![] } else { tail.split('/').collect() };
    match segs.as_slice() {
        [] => Some(Endpoint::Package(name)),
        ["-rev", rev] => Some(Endpoint::PackageRev { name, rev: rev.to_string() }),
        ["-", file] if file.ends_with(".tgz") => Some(Endpoint::Tarball { name, file: file.to_string() }),
        ["-", file, "-rev", _] => Some(Endpoint::TarballRev { name, file: file.to_string() }),
        [version] if !version.is_empty() => Some(Endpoint::Version { name, version: version.to_string() }),
        _ => None,
    }
}

/// Splits `@scope/name/rest` or `name/rest` into the package name and the rest.
fn split_name(path: &str) -> Option<(String, String)> {
    let mut it = path.splitn(if path.starts_with('@') { 3 } else { 2 }, '/');
    let name = if path.starts_with('@') { format!("{}/{}", it.next()?, it.next()?) } else { it.next()?.to_string() };
    let rest = it.next().unwrap_or("").trim_end_matches('/').to_string();
    if name.is_empty() || name.ends_with('/') {
        return None;
    }
    Some((name, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse("/lodash"), Some(Endpoint::Package("lodash".into())));
        assert_eq!(parse("/@babel%2fcore"), Some(Endpoint::Package("@babel/core".into())));
        assert_eq!(parse("/@babel/core"), Some(Endpoint::Package("@babel/core".into())));
        assert_eq!(parse("/@babel/core/-/core-7.0.0.tgz"), Some(Endpoint::Tarball { name: "@babel/core".into(), file: "core-7.0.0.tgz".into() }));
        assert_eq!(parse("/x/-/x-1.0.0.tgz/-rev/3-abc"), Some(Endpoint::TarballRev { name: "x".into(), file: "x-1.0.0.tgz".into() }));
        assert_eq!(parse("/x/-rev/3-abc"), Some(Endpoint::PackageRev { name: "x".into(), rev: "3-abc".into() }));
        assert_eq!(parse("/x/1.0.0"), Some(Endpoint::Version { name: "x".into(), version: "1.0.0".into() }));
        assert_eq!(parse("/-/user/org.couchdb.user:bob"), Some(Endpoint::User("bob".into())));
        assert_eq!(parse("/-/package/@s%2fx/dist-tags/beta"), Some(Endpoint::DistTag { name: "@s/x".into(), tag: "beta".into() }));
        assert_eq!(parse("/-/npm/v1/security/advisories/bulk"), Some(Endpoint::Audit("/-/npm/v1/security/advisories/bulk".into())));
        assert_eq!(parse("/-/npm/v1/security/audits/quick"), Some(Endpoint::Audit("/-/npm/v1/security/audits/quick".into())));
        for elsewhere in [
            "/-/npm/v1/security/..%2F..%2F..%2F..%2Fapi%2Fsecurity%2Fusers",
            "/-/npm/v1/security/../../x",
            "/-/npm/v1/security/advisories/bulk/..",
            "/-/npm/v1/security/",
        ] {
            assert_eq!(parse(elsewhere), None, "{elsewhere}");
        }
        assert_eq!(parse("/-/npm/v1/tokens/token/abc"), Some(Endpoint::Token("abc".into())));
        assert_eq!(parse("/-/npm/v1/attestations/@s%2fx@1.0.0"), Some(Endpoint::Attestations { name: "@s/x".into(), version: "1.0.0".into() }));
        assert_eq!(parse("/-/npm/v1/attestations/@s"), None);
        assert_eq!(parse("/-/org/wharf/package"), Some(Endpoint::OrgPackages("wharf".into())));
        assert_eq!(parse("/-/user/bob/package"), Some(Endpoint::UserPackages("bob".into())));
        assert_eq!(parse("/-/user/token/abc"), Some(Endpoint::Logout("abc".into())));
        assert_eq!(parse("/-/team/s/devs/package"), Some(Endpoint::Team));
        assert_eq!(parse("/-/package/@s%2fx/visibility"), Some(Endpoint::Visibility("@s/x".into())));
        assert_eq!(parse("/-/package/x/collaborators"), Some(Endpoint::Collaborators("x".into())));
        assert_eq!(parse("/-/package/x/access"), Some(Endpoint::PackageAccess("x".into())));
        assert_eq!(parse("/-/nonsense"), None);
    }
}
