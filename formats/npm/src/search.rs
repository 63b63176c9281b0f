//! `npm search` from the database: each packument's asset carries the searchable fields of the
//! package (its latest version's description and keywords, the publisher, the maintainers), set
//! whenever the document is saved, so a search reads asset rows, never documents. The database
//! narrows the rows by the words of the query; the words are then matched here, exactly, on
//! those fields.
//!
//! Query words match the name, description and keywords (every word must); npm's qualifiers
//! `keywords:`, `scope:`, `author:` / `maintainer:` (the publisher or a maintainer) narrow
//! further. Results are in name order, `from` and `size` (at most 250) page them.

use serde_json::{json, Value};
use wharf_format::Asset;

/// At most this much of a description is kept for searching and showing.
const MAX_DESCRIPTION: usize = 1024;
const MAX_KEYWORDS: usize = 64;
const MAX_MAINTAINERS: usize = 32;
pub const MAX_SIZE: usize = 250;

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The searchable fields of a package's document, for its packument asset's attributes.
pub fn fields(name: &str, doc: &Value) -> Value {
    let latest = doc.pointer("/dist-tags/latest").and_then(Value::as_str).unwrap_or_default();
    let manifest = doc.get("versions").and_then(|v| v.get(latest)).unwrap_or(&Value::Null);
    let field = |k: &str| manifest.get(k).filter(|v| !v.is_null()).or_else(|| doc.get(k).filter(|v| !v.is_null()));
    let description = cut(field("description").and_then(Value::as_str).unwrap_or_default(), MAX_DESCRIPTION);
    let keywords: Vec<String> =
        field("keywords").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).take(MAX_KEYWORDS).map(|k| cut(k, 100)).collect();
    let maintainers: Vec<Value> = doc
        .get("maintainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("name").and_then(Value::as_str).map(|n| (n, m.get("email").and_then(Value::as_str))))
        .take(MAX_MAINTAINERS)
        .map(|(n, e)| match e {
            Some(e) => json!({"username": cut(n, 214), "email": cut(e, 254)}),
            None => json!({"username": cut(n, 214)}),
        })
        .collect();
    let text = format!("{name} {description} {}", keywords.join(" ")).to_lowercase();
    json!({
        "version": latest,
        "description": description,
        "keywords": keywords,
        "date": doc.pointer("/time").and_then(|t| t.get(latest)).cloned().unwrap_or(Value::Null),
        "publisher": manifest.pointer("/_npmUser/name").cloned().unwrap_or(Value::Null),
        "maintainers": maintainers,
        "text": text,
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    words: Vec<String>,
    keywords: Vec<String>,
    scope: Option<String>,
    people: Vec<String>,
}

impl Query {
    pub fn parse(text: &str) -> Query {
        let mut q = Query::default();
        for w in text.to_lowercase().split_whitespace() {
            match w.split_once(':') {
                Some(("keywords", v)) => q.keywords.extend(v.split(',').filter(|k| !k.is_empty()).map(str::to_string)),
                Some(("scope", v)) => q.scope = Some(v.trim_start_matches('@').to_string()),
                Some(("author" | "maintainer", v)) => q.people.push(v.to_string()),
                // npm's ranking knobs: not wharf's.
                Some(("not" | "is" | "boost-exact", _)) => {}
                _ => q.words.push(w.to_string()),
            }
        }
        q
    }

    /// The strings the database may narrow by (see `wharf_format::ListQuery::contains`).
    pub fn narrowing(&self) -> Vec<String> {
        let mut all: Vec<String> = self.words.iter().chain(&self.keywords).chain(&self.people).cloned().collect();
        if let Some(s) = &self.scope {
            all.push(format!("@{s}/"));
        }
        all.retain(|w| !w.chars().any(|c| c == '"' || c == '\\' || c.is_control()));
        all
    }

    /// Does the package of this packument asset match?
    pub fn matches(&self, asset: &Asset) -> bool {
        let Some(name) = asset.component.as_deref() else { return false };
        let f = asset.attributes.get("search");
        // A document saved before search fields were kept: found by its name.
        let text = f.and_then(|f| f.get("text")).and_then(Value::as_str).map_or_else(|| name.to_lowercase(), str::to_string);
        let keywords: Vec<String> =
            f.and_then(|f| f.get("keywords")).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_lowercase).collect();
        let people: Vec<String> = f
            .into_iter()
            .flat_map(|f| {
                let publisher = f.get("publisher").and_then(Value::as_str).map(str::to_string);
                let maintainers = f
                    .get("maintainers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.get("username").and_then(Value::as_str).map(str::to_string));
                publisher.into_iter().chain(maintainers).collect::<Vec<_>>()
            })
            .map(|p| p.to_lowercase())
            .collect();
        self.words.iter().all(|w| text.contains(w.as_str()))
            && self.keywords.iter().all(|k| keywords.contains(k))
            && self.scope.as_ref().is_none_or(|s| name.starts_with(&format!("@{s}/")))
            && self.people.iter().all(|p| people.contains(p))
    }
}

/// One result as npm's search API gives it.
pub fn result(asset: &Asset, base: &str) -> Value {
    let name = asset.component.clone().unwrap_or_default();
    let f = asset.attributes.get("search").cloned().unwrap_or(json!({}));
    let get = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "package": {
            "name": name,
            "version": get("version"),
            "description": get("description"),
            "keywords": f.get("keywords").cloned().unwrap_or(json!([])),
            "date": get("date"),
            "links": {"npm": format!("{base}/{name}")},
            "publisher": f.get("publisher").and_then(Value::as_str).map(|n| json!({"username": n})).unwrap_or(Value::Null),
            "maintainers": f.get("maintainers").cloned().unwrap_or(json!([])),
        },
        "score": {"final": 1.0, "detail": {"quality": 1.0, "popularity": 1.0, "maintenance": 1.0}},
        "searchScore": 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(name: &str, doc: Value) -> Asset {
        Asset {
            path: format!("pkg/{name}/packument"),
            kind: "packument".into(),
            component: Some(name.into()),
            digest: None,
            size: 0,
            content_type: None,
            link: None,
            attributes: json!({"rev": "1-abc", "search": fields(name, &doc)}),
            created_at: 0,
            updated_at: 0,
            last_downloaded: None,
            download_count: 0,
        }
    }

    #[test]
    fn words_and_qualifiers_match_the_latest_version_s_fields() {
        let doc = json!({"name": "@s/left-pad", "dist-tags": {"latest": "2.0.0"}, "maintainers": [{"name": "Ann"}],
            "versions": {"1.0.0": {"description": "old words"}, "2.0.0": {"description": "Pads Strings", "keywords": ["String", "pad"], "_npmUser": {"name": "bob"}}}});
        let a = asset("@s/left-pad", doc);
        assert!(Query::parse("pads").matches(&a));
        assert!(Query::parse("LEFT strings").matches(&a));
        assert!(!Query::parse("old").matches(&a), "only the latest version counts");
        assert!(Query::parse("keywords:string scope:s").matches(&a));
        assert!(!Query::parse("keywords:str").matches(&a), "keywords match whole");
        assert!(Query::parse("maintainer:ann author:bob").matches(&a));
        assert!(!Query::parse("scope:t").matches(&a));
        assert!(!Query::parse("abc").matches(&a), "the stored rev is not searched");
        assert_eq!(Query::parse("a\"b keywords:x").narrowing(), vec!["x".to_string()]);
        let r = result(&a, "http://h/repository/n");
        assert_eq!(r["package"]["version"], "2.0.0");
        assert_eq!(r["package"]["publisher"]["username"], "bob");
    }
}
