//! `ctx.path` → endpoint (Nexus's URLs: `/simple/`, `/simple/<project>/`, files under
//! `/packages/`, and uploads to the repository's root), Warehouse's JSON API and PEP 740's
//! Integrity API.

#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /` (twine)
    Upload,
    /// `/simple/`
    Index,
    /// `/simple/<project>/`
    Project(String),
    /// `/packages/<project>/<file>`
    File { project: String, filename: String },
    /// `/pypi/<project>/json` and `/pypi/<project>/<version>/json` (Warehouse's JSON API)
    Json { project: String, version: Option<String> },
    /// `/integrity/<project>/<version>/<file>/provenance` (PEP 740's Integrity API)
    Provenance { project: String, version: String, filename: String },
}

/// A project segment that is not a name (PEP 508) is no endpoint: it never reaches the store's
/// keys or a proxy's upstream URL (`\\host\path`, `%2e%2e` made the upstream request leave the
/// index).
pub fn parse(path: &str) -> Option<Endpoint> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let project = segs.get(1).copied().unwrap_or("");
    if matches!(segs.first(), Some(&("simple" | "packages" | "pypi" | "integrity"))) && !project.is_empty() && !crate::model::valid_project_name(project) {
        return None;
    }
    match segs.as_slice() {
        [""] => Some(Endpoint::Upload),
        ["simple"] | ["simple", ""] => Some(Endpoint::Index),
        ["simple", p] | ["simple", p, ""] if !p.is_empty() => Some(Endpoint::Project(p.to_string())),
        ["packages", p, f] if !p.is_empty() && !f.is_empty() => Some(Endpoint::File { project: p.to_string(), filename: f.to_string() }),
        ["pypi", p, "json"] | ["pypi", p, "json", ""] if !p.is_empty() => Some(Endpoint::Json { project: p.to_string(), version: None }),
        ["pypi", p, v, "json"] | ["pypi", p, v, "json", ""] if !p.is_empty() && !v.is_empty() && *v != ".." => {
            Some(Endpoint::Json { project: p.to_string(), version: Some(v.to_string()) })
        }
        ["integrity", p, v, f, "provenance"] if [p, v, f].iter().all(|s| !s.is_empty() && **s != "..") => {
            Some(Endpoint::Provenance { project: p.to_string(), version: v.to_string(), filename: f.to_string() })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse("/"), Some(Endpoint::Upload));
        assert_eq!(parse("/simple/"), Some(Endpoint::Index));
        assert_eq!(parse("/simple/My_Pkg/"), Some(Endpoint::Project("My_Pkg".into())));
        assert_eq!(parse("/simple/x"), Some(Endpoint::Project("x".into())));
        assert_eq!(parse("/packages/x/x-1.0.tar.gz"), Some(Endpoint::File { project: "x".into(), filename: "x-1.0.tar.gz".into() }));
        assert_eq!(parse("/packages/x/../y"), None);
        assert_eq!(parse("/other"), None);
        assert_eq!(parse("/pypi/My_Pkg/json"), Some(Endpoint::Json { project: "My_Pkg".into(), version: None }));
        assert_eq!(parse("/pypi/x/1.0/json/"), Some(Endpoint::Json { project: "x".into(), version: Some("1.0".into()) }));
        assert_eq!(parse("/pypi/x/1.0"), None);
        assert_eq!(
            parse("/integrity/x/1.0/x-1.0.tar.gz/provenance"),
            Some(Endpoint::Provenance { project: "x".into(), version: "1.0".into(), filename: "x-1.0.tar.gz".into() })
        );
        assert_eq!(parse("/integrity/x/../x-1.0.tar.gz/provenance"), None);
        assert_eq!(parse("/integrity/x/1.0/x-1.0.tar.gz"), None);
        for hostile in
            [r"/simple/\\10%2e0%2e0%2e5:8080\jenkins\job/", r"/simple/\admin\secret/", "/simple/%2e%2e/", "/pypi/a%2fb/json", "/packages/-x/x-1.0.tar.gz"]
        {
            assert_eq!(parse(hostile), None, "{hostile}");
        }
    }
}
