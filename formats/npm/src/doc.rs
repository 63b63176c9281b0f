//! A package's document as a writer changes it (publish, unpublish, deprecate, dist-tags,
//! owners, stars). Its versions' manifests, which are nearly all of it, stay the JSON they were
//! stored as unless the change touches one; the other members are values. Parsed whole into
//! values a document took about 20 times its size, and a writer held it twice (the stored one
//! and its copy): a publish to a package of 10,000 versions held hundreds of MiB.

use std::collections::BTreeMap;
use std::ops::{Index, IndexMut};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::raw_json::{self, ObjectWriter};

#[derive(Clone)]
pub struct Doc {
    /// Every member but `versions`: an object.
    rest: Value,
    versions: BTreeMap<String, Manifest>,
    /// Whether the document had a `versions` object (one sent back without it changes none).
    has_versions: bool,
}

#[derive(Clone)]
enum Manifest {
    Stored(Box<RawValue>),
    Changed(Value),
}

impl Manifest {
    fn parsed(&self) -> Value {
        match self {
            Manifest::Stored(raw) => raw_json::value(Some(raw)).unwrap_or(Value::Null),
            Manifest::Changed(v) => v.clone(),
        }
    }
}

impl Doc {
    /// The document stored as `bytes` (a JSON object; a `versions` that is not an object holds
    /// no version).
    pub fn parse(bytes: &[u8]) -> Result<Doc, serde_json::Error> {
        let mut rest = Map::new();
        let mut versions = BTreeMap::new();
        let mut has_versions = false;
        for (k, v) in raw_json::document(bytes)? {
            if k == "versions" {
                let all = raw_json::members(v);
                has_versions = all.is_some();
                versions = all.unwrap_or_default().into_iter().map(|(v, m)| (v, Manifest::Stored(m.to_owned()))).collect();
            } else {
                rest.insert(k, serde_json::from_str(v.get())?);
            }
        }
        Ok(Doc { rest: Value::Object(rest), versions, has_versions })
    }

    /// A document made of values (a new package's).
    pub fn from_value(mut doc: Value) -> Doc {
        let (versions, has_versions) = match doc.as_object_mut().and_then(|o| o.remove("versions")) {
            Some(Value::Object(all)) => (all.into_iter().map(|(v, m)| (v, Manifest::Changed(m))).collect(), true),
            _ => (BTreeMap::new(), false),
        };
        if !doc.is_object() {
            doc = Value::Object(Map::new());
        }
        Doc { rest: doc, versions, has_versions }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.rest.get(key)
    }

    /// Whether the document has a `versions` object (empty or not).
    pub fn has_versions(&self) -> bool {
        self.has_versions
    }

    pub fn has_version(&self, version: &str) -> bool {
        self.versions.contains_key(version)
    }

    /// The versions, in version-string order.
    pub fn versions(&self) -> impl Iterator<Item = &String> {
        self.versions.keys()
    }

    pub fn version_count(&self) -> usize {
        self.versions.len()
    }

    /// A version's manifest, as a value of its own.
    pub fn manifest(&self, version: &str) -> Option<Value> {
        self.versions.get(version).map(Manifest::parsed)
    }

    /// A version's manifest to change; `None` for one whose stored JSON does not read as a
    /// value (it is left as it is).
    pub fn manifest_mut(&mut self, version: &str) -> Option<&mut Value> {
        let m = self.versions.get_mut(version)?;
        if let Manifest::Stored(raw) = m {
            *m = Manifest::Changed(serde_json::from_str(raw.get()).ok()?);
        }
        match m {
            Manifest::Changed(v) => Some(v),
            Manifest::Stored(_) => None,
        }
    }

    pub fn insert_version(&mut self, version: &str, manifest: Value) {
        self.versions.insert(version.to_string(), Manifest::Changed(manifest));
    }

    pub fn remove_version(&mut self, version: &str) {
        self.versions.remove(version);
    }

    /// The document as JSON, members in key order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.versions.values().map(|m| if let Manifest::Stored(r) = m { r.get().len() + 16 } else { 1024 }).sum::<usize>() + 4096);
        let mut w = ObjectWriter::new(&mut out);
        let write_versions = |out: &mut Vec<u8>| {
            let mut vw = ObjectWriter::new(out);
            for (v, m) in &self.versions {
                match m {
                    Manifest::Stored(raw) => vw.raw(v, raw),
                    Manifest::Changed(value) => vw.value(v, value),
                }
            }
            vw.end();
        };
        let mut versions_written = false;
        for (k, v) in self.rest.as_object().into_iter().flatten() {
            if !versions_written && k.as_str() > "versions" {
                write_versions(w.key("versions"));
                versions_written = true;
            }
            w.value(k, v);
        }
        if !versions_written {
            write_versions(w.key("versions"));
        }
        w.end();
        out
    }

    /// The parts of the document [`crate::search::fields`] reads, as one small value.
    pub fn search_excerpt(&self) -> Value {
        let mut small = Map::new();
        for key in ["description", "keywords", "maintainers", "dist-tags"] {
            if let Some(v) = self.rest.get(key) {
                small.insert(key.into(), v.clone());
            }
        }
        let latest = self.rest.pointer("/dist-tags/latest").and_then(Value::as_str).unwrap_or_default().to_string();
        small.insert("versions".into(), serde_json::json!({ &latest: self.manifest(&latest) }));
        small.insert("time".into(), serde_json::json!({ &latest: self.rest.pointer("/time").and_then(|t| t.get(&latest)) }));
        Value::Object(small)
    }
}

impl Index<&str> for Doc {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.rest[key]
    }
}

impl IndexMut<&str> for Doc {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        &mut self.rest[key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a writer does to a document, and its JSON: the same as changing it whole as values.
    #[test]
    fn a_document_changed_in_parts_reads_as_one_changed_whole() {
        let whole = json!({"name": "x", "_rev": "1-a", "dist-tags": {"latest": "1.0.0"}, "time": {"1.0.0": "t1"}, "zeta": [1, {"b": 2}],
            "versions": {"1.0.0": {"version": "1.0.0", "dist": {"tarball": "x-1.0.0.tgz"}}, "0.9.0": {"version": "0.9.0", "deprecated": "old"}}});
        let mut doc = Doc::parse(whole.to_string().as_bytes()).unwrap();
        assert!(doc.has_version("0.9.0") && doc.version_count() == 2 && doc.versions().cloned().collect::<Vec<_>>() == ["0.9.0", "1.0.0"]);
        assert_eq!(doc.manifest("1.0.0").unwrap(), whole["versions"]["1.0.0"]);
        doc.insert_version("2.0.0", json!({"version": "2.0.0"}));
        doc.manifest_mut("0.9.0").unwrap().as_object_mut().unwrap().remove("deprecated");
        doc.remove_version("1.0.0");
        doc["dist-tags"]["latest"] = json!("2.0.0");
        doc["new"] = json!(true);
        let mut expected = whole.clone();
        expected["versions"] = json!({"0.9.0": {"version": "0.9.0"}, "2.0.0": {"version": "2.0.0"}});
        expected["dist-tags"]["latest"] = json!("2.0.0");
        expected["new"] = json!(true);
        let bytes = doc.to_bytes();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), expected);
        assert_eq!(bytes, serde_json::to_vec(&expected).unwrap(), "members in key order, as values would be written");
        assert_eq!(Doc::from_value(expected.clone()).to_bytes(), bytes);
        assert_eq!(doc.search_excerpt()["versions"]["2.0.0"]["version"], "2.0.0");
    }
}
