//! A client for an upstream simple index (the Python Package Index, devpi, pypiserver, another
//! wharf): project pages in JSON (PEP 691) when offered, else HTML (PEP 503), and file downloads.
//! Credentials go only to the index's own origin, never to a file host it links to.

use std::collections::HashMap;

use bytes::Bytes;
use reqwest::header::{ACCEPT, ETAG, IF_NONE_MATCH};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use url::Url;
use wharf_format::cache_probe::CacheKind;
pub use wharf_format::upstream::UpstreamError;
use wharf_format::upstream::{read_limited, Health, Healths, HttpUpstream};
use wharf_format::ProxySettings;

use crate::index::FileEntry;
use crate::model::{self, safe_filename};

/// The most a project page may weigh (PyPI's largest are a few MiB).
const MAX_PAGE: usize = 64 << 20;

const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";

pub enum Page {
    NotModified,
    Fresh { files: Vec<FileEntry>, etag: Option<String> },
}

pub struct Upstream {
    /// The simple index (ending in `/`) is the base.
    http: HttpUpstream,
}

impl Upstream {
    pub fn new(settings: &ProxySettings, healths: &Healths, repo: i64) -> Result<Upstream, String> {
        Ok(Upstream { http: HttpUpstream::new(index_url(&settings.remote_url)?, settings, healths, repo)? })
    }

    pub fn health(&self) -> &Health {
        self.http.health()
    }

    /// See [`wharf_format::upstream::Transport::through_cache`].
    pub async fn through_cache<T, E>(&self, kind: CacheKind, request: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
        self.http.through_cache(kind, request).await
    }

    /// A project's page, revalidated with `etag` when the cache holds one.
    pub async fn project(&self, normalized: &str, etag: Option<&str>) -> Result<Page, UpstreamError> {
        let url = self.http.below(&[normalized, ""])?;
        let mut r = self.http.request(reqwest::Method::GET, &url).header(ACCEPT, PAGE_ACCEPT);
        if let Some(e) = etag {
            r = r.header(IF_NONE_MATCH, e);
        }
        let res = self.http.send(r).await?;
        if res.status() == StatusCode::NOT_MODIFIED {
            return Ok(Page::NotModified);
        }
        let final_url = res.url().clone();
        let etag = res.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        let json = res.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("json"));
        let body = read_limited(res, MAX_PAGE).await?;
        let files = if json { parse_json(&body, &final_url)? } else { parse_html(&String::from_utf8_lossy(&body), &final_url) };
        Ok(Page::Fresh { files, etag })
    }

    pub async fn get(&self, url: &str) -> Result<Response, UpstreamError> {
        self.http.get(url).await
    }

    pub async fn get_small(&self, url: &str, limit: usize) -> Result<Bytes, UpstreamError> {
        read_limited(self.get(url).await?, limit).await
    }
}

/// `https://pypi.org` → `https://pypi.org/simple/`; a URL that already names an index
/// (`.../simple`, devpi's `.../+simple`) is kept.
fn index_url(remote: &str) -> Result<Url, String> {
    let trimmed = remote.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or("");
    let index = if last == "simple" || last == "+simple" { format!("{trimmed}/") } else { format!("{trimmed}/simple/") };
    Url::parse(&index).map_err(|e| e.to_string())
}

/// The sha256 in a link's fragment (`#sha256=<hex>`), and the link without its fragment.
fn split_hash(mut url: Url) -> (Url, Option<String>) {
    let hash = url.fragment().and_then(|f| f.strip_prefix("sha256=")).filter(|h| is_hex64(h)).map(str::to_ascii_lowercase);
    url.set_fragment(None);
    (url, hash)
}

fn is_hex64(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An entry for a link, if its file name is one wharf can serve under its own URL.
fn entry(url: Url, filename: Option<&str>) -> Option<FileEntry> {
    let (url, sha256) = split_hash(url);
    let filename = filename.map(str::to_string).or_else(|| url.path_segments()?.next_back().map(str::to_string))?;
    if !safe_filename(&filename) || !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(FileEntry { version: model::version_of(&filename), filename, sha256, upstream_url: Some(url.to_string()), ..Default::default() })
}

fn parse_json(body: &[u8], page: &Url) -> Result<Vec<FileEntry>, UpstreamError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| UpstreamError::Invalid(format!("project page: {e}")))?;
    let files = v.get("files").and_then(Value::as_array).ok_or_else(|| UpstreamError::Invalid("project page has no files list".into()))?;
    let mut out = Vec::new();
    for f in files {
        let (Some(href), Some(filename)) = (f.get("url").and_then(Value::as_str), f.get("filename").and_then(Value::as_str)) else { continue };
        let Ok(url) = page.join(href) else { continue };
        let Some(mut e) = entry(url, Some(filename)) else { continue };
        if let Some(h) = f.pointer("/hashes/sha256").and_then(Value::as_str).filter(|h| is_hex64(h)) {
            e.sha256 = Some(h.to_ascii_lowercase());
        }
        e.requires_python = f.get("requires-python").and_then(Value::as_str).map(str::to_string);
        e.yanked = match f.get("yanked") {
            Some(Value::String(r)) => Some(r.clone()),
            Some(Value::Bool(true)) => Some(String::new()),
            _ => None,
        };
        e.size = f.get("size").and_then(Value::as_i64);
        e.upload_time = f.get("upload-time").and_then(Value::as_str).map(str::to_string);
        e.core_metadata = match f.get("core-metadata").or_else(|| f.get("dist-info-metadata")) {
            Some(Value::Bool(true)) => Some(String::new()),
            Some(Value::Object(h)) => Some(h.get("sha256").and_then(Value::as_str).filter(|h| is_hex64(h)).map(str::to_ascii_lowercase).unwrap_or_default()),
            _ => None,
        };
        e.provenance = f.get("provenance").and_then(Value::as_str).and_then(|u| provenance_url(page, u));
        out.push(e);
    }
    Ok(out)
}

fn parse_html(html: &str, page: &Url) -> Vec<FileEntry> {
    let mut out = Vec::new();
    for (attrs, text) in anchors(html) {
        let Some(href) = attrs.get("href") else { continue };
        let Ok(url) = page.join(href) else { continue };
        let Some(mut e) = entry(url, Some(text.trim()).filter(|t| !t.is_empty())) else { continue };
        e.requires_python = attrs.get("data-requires-python").cloned();
        e.yanked = attrs.get("data-yanked").cloned();
        e.core_metadata = attrs.get("data-core-metadata").or_else(|| attrs.get("data-dist-info-metadata")).and_then(|v| match v.as_str() {
            "true" => Some(String::new()),
            v => v.strip_prefix("sha256=").filter(|h| is_hex64(h)).map(str::to_ascii_lowercase).or(Some(String::new())),
        });
        e.provenance = attrs.get("data-provenance").and_then(|u| provenance_url(page, u));
        out.push(e);
    }
    out
}

/// PEP 740: a file's provenance URL as an upstream page gives it (relative to the page).
fn provenance_url(page: &Url, href: &str) -> Option<String> {
    page.join(href).ok().filter(|u| matches!(u.scheme(), "http" | "https")).map(|u| u.to_string())
}

/// The `<a ...>text</a>` elements of a page: attributes (names lowercased, values unescaped)
/// and text. A simple index page is nothing but these; anything else is skipped.
fn anchors(html: &str) -> Vec<(HashMap<String, String>, String)> {
    let lower = html.to_ascii_lowercase();
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = lower[i..].find("<a") {
        let start = i + off + 2;
        i = start;
        if !b.get(start).is_some_and(|c| c.is_ascii_whitespace() || *c == b'>') {
            continue;
        }
        let mut attrs = HashMap::new();
        let mut j = start;
        loop {
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= b.len() {
                return out;
            }
            if b[j] == b'>' {
                j += 1;
                break;
            }
            if b[j] == b'/' {
                j += 1;
                continue;
            }
            let name_start = j;
            while j < b.len() && !b[j].is_ascii_whitespace() && !matches!(b[j], b'=' | b'>' | b'/') {
                j += 1;
            }
            let name = lower[name_start..j].to_string();
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let mut value = String::new();
            if j < b.len() && b[j] == b'=' {
                j += 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                    let q = b[j];
                    let vs = j + 1;
                    let Some(end) = b[vs..].iter().position(|c| *c == q) else { return out };
                    value = unescape(&html[vs..vs + end]);
                    j = vs + end + 1;
                } else {
                    let vs = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    value = unescape(&html[vs..j]);
                }
            }
            if !name.is_empty() {
                attrs.insert(name, value);
            }
        }
        let text_end = lower[j..].find("</a").map_or(html.len(), |e| j + e);
        out.push((attrs, unescape(&html[j..text_end])));
        i = text_end;
    }
    out
}

/// HTML character references: the named ones an index uses, and numeric ones.
fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if name.starts_with("#x") || name.starts_with("#X") => u32::from_str_radix(&name[2..], 16).ok().and_then(char::from_u32),
            _ if name.starts_with('#') => name[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls() {
        assert_eq!(index_url("https://pypi.org").unwrap().as_str(), "https://pypi.org/simple/");
        assert_eq!(index_url("http://h/repository/pypi-proxy/").unwrap().as_str(), "http://h/repository/pypi-proxy/simple/");
        assert_eq!(index_url("http://h:3141/root/pypi/+simple").unwrap().as_str(), "http://h:3141/root/pypi/+simple/");
        assert_eq!(index_url("http://h/simple/").unwrap().as_str(), "http://h/simple/");
    }

    #[test]
    fn html_pages_are_read() {
        let h = "a".repeat(64);
        let page = format!(
            r#"<!DOCTYPE html><html><body><h1>Links</h1>
<a href="../../packages/demo-1.0.tar.gz#sha256={h}" data-requires-python="&gt;=3.8">demo-1.0.tar.gz</a><br/>
<A HREF='https://files.example/demo-1.1-py3-none-any.whl' data-yanked="broken &amp; bad" data-dist-info-metadata="sha256={h}" data-provenance="/integrity/demo/1.1/demo-1.1-py3-none-any.whl/provenance">demo-1.1-py3-none-any.whl</A>
<a href="/x/../../etc/passwd">../etc/passwd</a>
<a href="demo-0.9.zip" data-core-metadata>demo-0.9.zip</a>
<abbr>not a link</abbr></body></html>"#
        );
        let files = parse_html(&page, &Url::parse("http://up/simple/demo/").unwrap());
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files[0].upstream_url.as_deref(), Some("http://up/packages/demo-1.0.tar.gz"));
        assert_eq!(files[0].sha256.as_deref(), Some(h.as_str()));
        assert_eq!(files[0].requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(files[0].version.as_deref(), Some("1.0"));
        assert_eq!(files[1].yanked.as_deref(), Some("broken & bad"));
        assert_eq!(files[1].core_metadata.as_deref(), Some(h.as_str()));
        assert_eq!(files[1].provenance.as_deref(), Some("http://up/integrity/demo/1.1/demo-1.1-py3-none-any.whl/provenance"));
        assert_eq!(files[0].provenance, None);
        assert_eq!(files[2].filename, "demo-0.9.zip");
        assert_eq!(files[2].core_metadata.as_deref(), Some(""));
        assert_eq!(files[2].upstream_url.as_deref(), Some("http://up/simple/demo/demo-0.9.zip"));
    }

    #[test]
    fn json_pages_are_read() {
        let h = "b".repeat(64);
        let page = serde_json::json!({"meta": {"api-version": "1.1"}, "name": "demo", "files": [
            {"filename": "demo-1.0.tar.gz", "url": "/files/demo-1.0.tar.gz", "hashes": {"sha256": h}, "size": 12, "yanked": false, "core-metadata": {"sha256": h},
             "provenance": "https://up/integrity/demo/1.0/demo-1.0.tar.gz/provenance"},
            {"filename": "../evil", "url": "/files/evil", "hashes": {}},
        ]});
        let files = parse_json(page.to_string().as_bytes(), &Url::parse("https://up/simple/demo/").unwrap()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].upstream_url.as_deref(), Some("https://up/files/demo-1.0.tar.gz"));
        assert_eq!((files[0].size, files[0].yanked.clone()), (Some(12), None));
        assert_eq!(files[0].core_metadata.as_deref(), Some(h.as_str()));
        assert_eq!(files[0].provenance.as_deref(), Some("https://up/integrity/demo/1.0/demo-1.0.tar.gz/provenance"));
    }

    #[test]
    fn references_unescape() {
        assert_eq!(unescape("a &lt;b&gt; &amp;&#39;&#x41;&bogus; &"), "a <b> &'A&bogus; &");
    }
}
