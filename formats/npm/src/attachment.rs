//! The publish body read as a stream: npm sends one JSON document whose
//! `_attachments.<file>.data` is the whole tarball in base64 (about 4/3 of its size), beside a
//! few KiB of metadata. [`Scanner`] follows the document's structure as bytes arrive, keeps
//! everything but that string (which it leaves empty), and decodes the string on the fly, so
//! the tarball goes to the blob store chunk by chunk (hashed on its way by the caller, see
//! [`Tarball::new`]), and the metadata is parsed afterwards with serde_json.
//!
//! `npm publish --provenance` adds a second attachment, `<name>-<version>.sigstore`, whose
//! `data` is the sigstore bundle as JSON text (not base64): it is small and stays in the
//! document like any other string (bounded by [`MAX_DOCUMENT`]).

use base64::Engine;
use bytes::Bytes;

/// The document without its tarball: the manifest, readme and the like.
pub const MAX_DOCUMENT: usize = 16 << 20;
/// Object keys are names: a longer one is not a publish.
const MAX_KEY: usize = 4096;
/// Open objects and arrays at once; serde_json refuses deeper documents too, but only after
/// the scanner's stacks have grown by every `[` of a 16 MiB document.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("the publish document without its tarball is larger than {} MiB", MAX_DOCUMENT >> 20)]
    DocumentTooLarge,
    #[error("malformed JSON: {0}")]
    Malformed(&'static str),
    #[error("the attachment is not base64: {0}")]
    Base64(String),
    #[error("a publish carries exactly one tarball in _attachments (and at most a .sigstore provenance bundle beside it)")]
    SeveralAttachments,
    #[error("the document nests objects and arrays deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// The decoded tarball's length and checksums, as npm states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tarball {
    pub length: u64,
    /// `sha512-<base64>`
    pub integrity: String,
    /// hex
    pub shasum: String,
}

impl Tarball {
    /// From the tarball's length and its SHA-512 and SHA-1.
    pub fn new(length: u64, sha512: &[u8], sha1: &[u8]) -> Tarball {
        Tarball { length, integrity: format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha512)), shasum: hex::encode(sha1) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between tokens.
    Between,
    /// Inside a string value (not a key, not the data); `escaped`: after a backslash.
    Str { escaped: bool },
    /// Inside an object key.
    Key { escaped: bool },
    /// Inside the attachment's data string.
    Data { escaped: bool },
}

pub struct Scanner {
    doc: Vec<u8>,
    stack: Vec<Container>,
    /// The key each open object is at (None in arrays, and before an object's first key).
    keys: Vec<Option<String>>,
    /// In an object: the next string is a key.
    expect_key: bool,
    state: State,
    key: Vec<u8>,
    carry: Vec<u8>,
    attachments: u32,
    length: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            doc: Vec::new(),
            stack: Vec::new(),
            keys: Vec::new(),
            expect_key: false,
            state: State::Between,
            key: Vec::new(),
            carry: Vec::new(),
            attachments: 0,
            length: 0,
        }
    }
}

impl Scanner {
    /// Takes the next piece of the body; returns the tarball bytes it completed.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<Bytes, ScanError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let used = match self.state {
                State::Data { escaped } => self.data(input, escaped, &mut out)?,
                State::Str { escaped } => {
                    let (n, state) = string_end(input, escaped);
                    self.doc.extend_from_slice(&input[..n]);
                    self.state = state.map_or(State::Between, |e| State::Str { escaped: e });
                    n
                }
                State::Key { escaped } => {
                    let (n, state) = string_end(input, escaped);
                    self.key.extend_from_slice(&input[..n]);
                    self.doc.extend_from_slice(&input[..n]);
                    if self.key.len() > MAX_KEY {
                        return Err(ScanError::Malformed("an object key is too long"));
                    }
                    match state {
                        Some(e) => self.state = State::Key { escaped: e },
                        None => self.end_key()?,
                    }
                    n
                }
                State::Between => {
                    self.token(input[0])?;
                    1
                }
            };
            input = &input[used..];
            if self.doc.len() > MAX_DOCUMENT {
                return Err(ScanError::DocumentTooLarge);
            }
        }
        self.length += out.len() as u64;
        Ok(Bytes::from(out))
    }

    /// The document (with the data string empty) and the tarball's length, if the body had one.
    pub fn finish(self) -> Result<(Vec<u8>, Option<u64>), ScanError> {
        if self.state != State::Between || !self.stack.is_empty() {
            return Err(ScanError::Malformed("the document ends early"));
        }
        Ok((self.doc, (self.attachments > 0).then_some(self.length)))
    }

    fn token(&mut self, b: u8) -> Result<(), ScanError> {
        self.doc.push(b);
        if (b == b'{' || b == b'[') && self.stack.len() >= MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        match b {
            b'{' => {
                self.stack.push(Container::Object);
                self.keys.push(None);
                self.expect_key = true;
            }
            b'[' => {
                self.stack.push(Container::Array);
                self.keys.push(None);
                self.expect_key = false;
            }
            b'}' | b']' => {
                self.stack.pop().ok_or(ScanError::Malformed("unbalanced brackets"))?;
                self.keys.pop();
                self.expect_key = false;
            }
            b',' => self.expect_key = self.stack.last() == Some(&Container::Object),
            b':' => self.expect_key = false,
            b'"' if self.expect_key => {
                self.key.clear();
                self.key.push(b'"');
                self.state = State::Key { escaped: false };
            }
            b'"' if self.at_data() => {
                self.attachments += 1;
                if self.attachments > 1 {
                    return Err(ScanError::SeveralAttachments);
                }
                self.state = State::Data { escaped: false };
            }
            b'"' => self.state = State::Str { escaped: false },
            // Numbers, literals and whitespace are kept as they are; serde_json judges them.
            _ => {}
        }
        Ok(())
    }

    fn end_key(&mut self) -> Result<(), ScanError> {
        let key: String = serde_json::from_slice(&self.key).map_err(|_| ScanError::Malformed("an object key is not a string"))?;
        if let Some(k) = self.keys.last_mut() {
            *k = Some(key);
        }
        self.state = State::Between;
        Ok(())
    }

    /// The value about to start is `_attachments.<file>.data` of the top-level object, and
    /// `<file>` is not a provenance bundle (kept in the document as text).
    fn at_data(&self) -> bool {
        self.stack == [Container::Object; 3]
            && self.keys[0].as_deref() == Some("_attachments")
            && self.keys[1].as_deref().is_some_and(|f| !is_bundle_name(f))
            && self.keys[2].as_deref() == Some("data")
    }

    /// Base64 text of the data string: decoded in whole quartets, the rest carried over. The
    /// engine checks the alphabet; padding is held back until the string ends, so that data
    /// after it is refused rather than decoded as a second run.
    fn data(&mut self, input: &[u8], mut escaped: bool, out: &mut Vec<u8>) -> Result<usize, ScanError> {
        let mut i = 0;
        while i < input.len() {
            if escaped {
                // JSON may escape the slash; nothing else belongs in base64.
                if input[i] != b'/' {
                    return Err(ScanError::Base64("an escape other than \\/ in the data".into()));
                }
                self.carry.push(b'/');
                escaped = false;
                i += 1;
                continue;
            }
            // memchr scans 16-32 bytes a step: a byte-at-a-time search of the base64 was most of
            // the scanner's share of a publish's CPU.
            let run = memchr::memchr2(b'"', b'\\', &input[i..]).unwrap_or(input.len() - i);
            self.carry.extend_from_slice(&input[i..i + run]);
            i += run;
            match input.get(i) {
                Some(b'"') => {
                    self.decode(out, true)?;
                    self.doc.push(b'"');
                    self.state = State::Between;
                    return Ok(i + 1);
                }
                Some(_) => {
                    escaped = true;
                    i += 1;
                }
                None => {}
            }
        }
        self.decode(out, false)?;
        self.state = State::Data { escaped };
        Ok(input.len())
    }

    fn decode(&mut self, out: &mut Vec<u8>, last: bool) -> Result<(), ScanError> {
        let mut whole = self.carry.len() / 4 * 4;
        if last {
            whole = self.carry.len();
        } else if let Some(pad) = memchr::memchr(b'=', &self.carry) {
            // Only the string's end may follow the padded quartet.
            if self.carry.len() > pad / 4 * 4 + 4 {
                return Err(ScanError::Base64("data after the padding".into()));
            }
            whole = pad / 4 * 4;
        }
        if whole == 0 {
            return Ok(());
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let start = out.len();
        out.resize(start + whole / 4 * 3 + 3, 0);
        let n = engine.decode_slice(&self.carry[..whole], &mut out[start..]).map_err(|e| ScanError::Base64(e.to_string()))?;
        out.truncate(start + n);
        self.carry.drain(..whole);
        Ok(())
    }
}

/// A provenance bundle's attachment name (`<name>-<version>.sigstore`, as npm names it).
pub fn is_bundle_name(file: &str) -> bool {
    file.ends_with(".sigstore")
}

/// Where an unescaped `"` ends the string in `input`: (bytes up to and including it, None),
/// or (all of input, Some(escaped)) when the string goes on.
fn string_end(input: &[u8], mut escaped: bool) -> (usize, Option<bool>) {
    for (i, &b) in input.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return (i + 1, None);
        }
    }
    (input.len(), Some(escaped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn scan(body: &[u8], piece: usize) -> Result<(Value, Vec<u8>, Option<Tarball>), ScanError> {
        let mut s = Scanner::default();
        let mut data = Vec::new();
        for chunk in body.chunks(piece) {
            data.extend_from_slice(&s.feed(chunk)?);
        }
        let (doc, length) = s.finish()?;
        use sha2::Digest as _;
        let tarball = length.map(|n| Tarball::new(n, &sha2::Sha512::digest(&data), &sha1::Sha1::digest(&data)));
        Ok((serde_json::from_slice(&doc).expect("the kept document is JSON"), data, tarball))
    }

    #[test]
    fn the_data_is_decoded_and_everything_else_kept_at_any_chunking() {
        let tgz: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&tgz).replace('/', "\\/");
        let body = format!(
            r#"{{"name":"a","readme":"say \"data\": {{[","versions":{{"1.0.0":{{"data":"not this","x":[1,{{"data":"nor this"}}]}}}},
               "_attachments" : {{ "a-1.0.0.tgz" : {{ "content_type":"application/octet-stream", "data" : "{b64}", "length":5000 }} }} }}"#
        );
        let (sri, sha1) = crate::model::checksums(&tgz);
        for piece in [1, 3, 7, 64, 100_000] {
            let (doc, data, tarball) = scan(body.as_bytes(), piece).unwrap();
            assert_eq!(data, tgz, "piece {piece}");
            assert_eq!(tarball, Some(Tarball { length: 5000, integrity: sri.clone(), shasum: sha1.clone() }));
            assert_eq!(doc["_attachments"]["a-1.0.0.tgz"], json!({"content_type":"application/octet-stream","data":"","length":5000}));
            assert_eq!(doc["versions"]["1.0.0"]["data"], "not this");
            assert_eq!(doc["readme"], "say \"data\": {[");
        }
    }

    #[test]
    fn escaped_keys_are_read_as_keys() {
        let body = br#"{"\u005fattachments":{"f":{"d\u0061ta":"QUJD"}}}"#;
        let (doc, data, _) = scan(body, 2).unwrap();
        assert_eq!(data, b"ABC");
        assert_eq!(doc["_attachments"]["f"]["data"], "");
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert_eq!(scan(br#"{"_attachments":{"f":{"data":"QUJD"},"g":{"data":"QUJD"}}}"#, 5).unwrap_err(), ScanError::SeveralAttachments);
        assert!(matches!(scan(br#"{"_attachments":{"f":{"data":"QU JD"}}}"#, 5), Err(ScanError::Base64(_))));
        assert!(matches!(scan(br#"{"_attachments":{"f":{"data":"QQ==QUJD"}}}"#, 5), Err(ScanError::Base64(_))));
        assert!(matches!(scan(br#"{"_attachments":{"f":{"data":"QUJ"}}}"#, 5), Err(ScanError::Base64(_))));
        assert!(matches!(scan(br#"{"_attachments":{"f":{"data":"QUJD"#, 5), Err(ScanError::Malformed(_))));
        assert!(matches!(scan(b"]", 5), Err(ScanError::Malformed(_))));
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        let mut s = Scanner::default();
        assert!(s.feed(deep.as_bytes()).is_ok() && s.finish().is_ok());
        assert_eq!(scan(format!("[{deep}]").as_bytes(), 7).unwrap_err(), ScanError::TooDeep);
        assert_eq!(scan("{\"a\":".repeat(MAX_DEPTH + 1).as_bytes(), 1 << 20).unwrap_err(), ScanError::TooDeep);
        let big = format!(r#"{{"readme":"{}"}}"#, "x".repeat(MAX_DOCUMENT + 1));
        assert_eq!(scan(big.as_bytes(), 1 << 20).unwrap_err(), ScanError::DocumentTooLarge);
    }

    #[test]
    fn a_provenance_bundle_stays_in_the_document_beside_the_streamed_tarball() {
        let body = br#"{"_attachments":{"a-1.0.0.tgz":{"data":"QUJD"},"a-1.0.0.sigstore":{"content_type":"application/vnd.dev.sigstore.bundle.v0.3+json","data":"{\"mediaType\":\"x\"}"}}}"#;
        for piece in [1, 5, 1000] {
            let (doc, data, tarball) = scan(body, piece).unwrap();
            assert_eq!(data, b"ABC");
            assert_eq!(tarball.unwrap().length, 3);
            assert_eq!(doc["_attachments"]["a-1.0.0.sigstore"]["data"], r#"{"mediaType":"x"}"#);
        }
        // Two tarballs are still refused, whatever else is there.
        let two = br#"{"_attachments":{"a.sigstore":{"data":"{}"},"f":{"data":"QUJD"},"g":{"data":"QUJD"}}}"#;
        assert_eq!(scan(two, 3).unwrap_err(), ScanError::SeveralAttachments);
    }

    #[test]
    fn a_body_without_data_is_a_document_only() {
        let (doc, data, tarball) = scan(br#"{"name":"a","versions":{"1.0.0":{"deprecated":"no"}}}"#, 4).unwrap();
        assert_eq!((doc["name"].as_str(), data.len(), tarball), (Some("a"), 0, None));
    }
}
