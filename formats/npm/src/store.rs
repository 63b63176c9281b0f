//! Packument documents in the blob store, swapped in the metadata with compare-and-swap.

use bytes::Bytes;
use serde_json::{json, Value};
use wharf_format::{Asset, Check, Digest, FormatEnv, MetaError, NewAsset, Write};

use crate::doc::Doc;
use crate::error::NpmError;
use crate::meta::{self, package_path};

/// A packument may weigh this much (the largest on the public registry are tens of MiB).
pub const MAX_DOC: u64 = 128 << 20;

pub struct Stored {
    pub asset: Asset,
    pub doc: Doc,
    /// The document's `_rev` as loaded (a writer may take `doc` away to change it).
    rev: String,
}

impl Stored {
    pub fn digest(&self) -> &str {
        self.asset.digest.as_deref().unwrap_or_default()
    }

    pub fn rev(&self) -> &str {
        &self.rev
    }

    /// The document, to change: taken rather than copied (what a swap checks stays here).
    pub fn take_doc(&mut self) -> Doc {
        std::mem::replace(&mut self.doc, Doc::from_value(Value::Null))
    }
}

pub async fn load(env: &FormatEnv, repo: i64, name: &str) -> Result<Option<Stored>, NpmError> {
    let Some(asset) = env.meta.get(repo, &package_path(name)).await? else { return Ok(None) };
    let doc = Doc::parse(&bytes_of(env, &asset).await?).map_err(|e| NpmError::Internal(Box::new(e)))?;
    let rev = doc.get("_rev").and_then(Value::as_str).unwrap_or("0-0").to_string();
    Ok(Some(Stored { asset, doc, rev }))
}

/// The document a packument asset names, to be read in parts (what clients are served).
pub async fn packument(env: &FormatEnv, asset: &Asset) -> Result<crate::packument::Packument, NpmError> {
    crate::packument::Packument::stored(bytes_of(env, asset).await?).map_err(|e| NpmError::Internal(Box::new(e)))
}

/// The stored bytes of a packument asset.
async fn bytes_of(env: &FormatEnv, asset: &Asset) -> Result<Bytes, NpmError> {
    let digest: Digest = asset.digest.as_deref().unwrap_or_default().parse().map_err(|e| NpmError::Internal(Box::new(e)))?;
    Ok(env.blobs.read_small(&digest, MAX_DOC).await?)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    Done,
    /// The document changed since it was read: read again and retry.
    Conflict,
    /// The caller's check at this index failed.
    CheckFailed(usize),
}

/// What a document's save takes along: `writes` in the same transaction, made only if every
/// check in `checks` holds; `room`: how far into the disk's reserve its blob may go.
pub struct Along {
    pub checks: Vec<Check>,
    pub writes: Vec<Write>,
    pub room: wharf_format::Room,
}

/// Writes `doc` as the package's new document, with what it takes `along`, if the document is
/// still the one `old` read.
pub async fn save(env: &FormatEnv, repo: i64, name: &str, old: Option<&Stored>, mut doc: Doc, along: Along) -> Result<Saved, NpmError> {
    let Along { checks, writes, room } = along;
    let n: u64 = old.and_then(|o| o.rev().split('-').next()?.parse().ok()).unwrap_or(0) + 1;
    doc["_rev"] = json!(format!("{n}-{}", &Digest::of(&doc.to_bytes()).hex()[..32]));
    let bytes = Bytes::from(doc.to_bytes());
    let size = bytes.len() as i64;
    let digest = env.blobs.put_bytes_in(bytes, room).await?;
    let path = package_path(name);
    let mut all_checks = vec![match old {
        Some(o) => Check::AbsentOrDigest { repo, path: path.clone(), digest: o.digest().to_string() },
        None => Check::Absent { repo, path: path.clone() },
    }];
    all_checks.extend(checks);
    let asset = NewAsset {
        path,
        kind: meta::PACKUMENT.into(),
        component: Some(name.to_string()),
        digest: Some(digest.to_string()),
        size,
        content_type: Some("application/json".into()),
        link: None,
        attributes: json!({ "rev": doc["_rev"], "search": crate::search::fields(name, &doc.search_excerpt()) }),
    };
    let mut all_writes = vec![Write::Upsert { repo, asset }];
    all_writes.extend(writes);
    match env.meta.commit(all_checks, all_writes).await {
        Ok(()) => Ok(Saved::Done),
        Err(MetaError::CheckFailed(0)) => Ok(Saved::Conflict),
        Err(MetaError::CheckFailed(i)) => Ok(Saved::CheckFailed(i - 1)),
        Err(e) => Err(e.into()),
    }
}
