//! `ctx.path` → endpoint. Image names contain slashes, so the path is read from its end.

#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    Tags {
        name: String,
    },
    Manifest {
        name: String,
        reference: String,
    },
    Blob {
        name: String,
        digest: String,
    },
    StartUpload {
        name: String,
    },
    Upload {
        name: String,
        id: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
}

/// `None` for paths outside the Docker API.
pub fn parse(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |upto: usize| segs[..upto].join("/");
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some(Endpoint::Tags { name: name(n - 2) });
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        return Some(Endpoint::Manifest { name: name(n - 2), reference: segs[n - 1].to_string() });
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        return Some(Endpoint::Referrers { name: name(n - 2), digest: segs[n - 1].to_string() });
    }
    // `.../blobs/uploads/` (trailing slash) and `.../blobs/uploads`
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" && segs[n - 1].is_empty() {
        return Some(Endpoint::StartUpload { name: name(n - 3) });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Endpoint::StartUpload { name: name(n - 2) });
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        return Some(Endpoint::Upload { name: name(n - 3), id: segs[n - 1].to_string() });
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        return Some(Endpoint::Blob { name: name(n - 2), digest: segs[n - 1].to_string() });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(parse("/v2/"), Some(Endpoint::Base));
        assert_eq!(parse("/v2"), Some(Endpoint::Base));
        assert_eq!(parse("/v2/_catalog"), Some(Endpoint::Catalog));
        assert_eq!(parse("/v2/a/b/tags/list"), Some(Endpoint::Tags { name: "a/b".into() }));
        assert_eq!(parse("/v2/a/b/manifests/1.0"), Some(Endpoint::Manifest { name: "a/b".into(), reference: "1.0".into() }));
        assert_eq!(parse("/v2/a/blobs/uploads/"), Some(Endpoint::StartUpload { name: "a".into() }));
        assert_eq!(parse("/v2/a/blobs/uploads"), Some(Endpoint::StartUpload { name: "a".into() }));
        assert_eq!(parse("/v2/a/blobs/uploads/xyz"), Some(Endpoint::Upload { name: "a".into(), id: "xyz".into() }));
        assert_eq!(parse("/v2/a/blobs/sha256:00"), Some(Endpoint::Blob { name: "a".into(), digest: "sha256:00".into() }));
        assert_eq!(parse("/v2/a/referrers/sha256:00"), Some(Endpoint::Referrers { name: "a".into(), digest: "sha256:00".into() }));
        assert_eq!(parse("/v3/a/tags/list"), None);
        assert_eq!(parse("/v2/a"), None);
    }
}
