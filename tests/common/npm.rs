//! npm publishes as the npm client sends them, without the client: a tarball with its
//! `package/package.json` and the packument body of `PUT /<package>`.
#![allow(dead_code)]

use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

/// A package tarball holding only `package/package.json`.
pub fn tarball(name: &str, version: &str) -> Vec<u8> {
    tarball_with(&json!({"name": name, "version": version}))
}

/// A package tarball holding only `package/package.json`, as given.
pub fn tarball_with(package_json: &Value) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let pkg = package_json.to_string();
    let mut h = tar::Header::new_gnu();
    h.set_size(pkg.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "package/package.json", pkg.as_bytes()).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// The body `npm publish` sends for `name@version` (dist-tag `beta` for a prerelease, else
/// `latest`).
pub fn publish_body(name: &str, version: &str) -> Value {
    publish_body_of(name, version, &tarball(name, version))
}

/// The body `npm publish` sends for `name@version` with the tarball `data`.
pub fn publish_body_of(name: &str, version: &str, data: &[u8]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sri = format!("sha512-{}", b64.encode(sha2::Sha512::digest(data)));
    let sha1 = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(data));
    let tag = if version.contains('-') { "beta" } else { "latest" };
    let short = name.rsplit('/').next().unwrap();
    json!({
        "_id": name, "name": name, "dist-tags": {tag: version},
        "versions": {version: {"name": name, "version": version, "dist": {"integrity": sri, "shasum": sha1}}},
        "_attachments": {format!("{short}-{version}.tgz"): {"content_type": "application/octet-stream", "data": b64.encode(data), "length": data.len()}},
    })
}

/// The path of `PUT` for `name` in repository `repo`.
pub fn publish_path(repo: &str, name: &str) -> String {
    format!("/repository/{repo}/{}", name.replace('/', "%2f"))
}
