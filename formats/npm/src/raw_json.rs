//! Reading a large JSON document in parts, borrowed from its bytes: a packument of 20 MiB
//! parsed whole into `serde_json::Value` takes about 20 times that (every string, number and
//! map node allocated), so the documents are read a level at a time and only the small parts a
//! request needs become values.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// An object's members, borrowed; `None` when `raw` is not an object. A key given twice keeps
/// its last value, as `serde_json::Value` does.
pub fn members(raw: &RawValue) -> Option<BTreeMap<String, &RawValue>> {
    if !raw.get().trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The members of a whole document, which must be an object.
pub fn document(bytes: &[u8]) -> Result<BTreeMap<String, &RawValue>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Member `key` of object `raw` (the last one, if given twice), without reading the others
/// into memory; `None` when `raw` is not an object or has no such member.
pub fn member<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    struct Find<'k>(&'k str);
    impl<'de, 'k> Visitor<'de> for Find<'k> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if k == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    if !raw.get().trim_start().starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Find(key)).ok().flatten()
}

/// A string member of `raw`.
pub fn string(raw: &RawValue, key: &str) -> Option<String> {
    member(raw, key).and_then(|v| serde_json::from_str::<String>(v.get()).ok())
}

/// A member as a value (for the small ones).
pub fn value(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Writes a JSON object member by member: keys escaped, values as given (raw JSON or values).
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> ObjectWriter<'o> {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// Starts member `key`; the caller writes its value into the returned buffer.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        serde_json::to_writer(&mut *self.out, key).expect("a string serializes");
        self.out.push(b':');
        self.out
    }

    pub fn raw(&mut self, key: &str, value: &RawValue) {
        self.key(key).extend_from_slice(value.get().as_bytes());
    }

    pub fn value(&mut self, key: &str, value: &Value) {
        serde_json::to_writer(self.key(key), value).expect("a value serializes");
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn a_member_is_found_without_reading_the_others_and_the_last_one_wins() {
        let doc = raw(r#"{"a": {"deep": [1, 2, {"x": "y"}]}, "b\u0022": "q", "c": 1, "c": 2}"#);
        assert_eq!(member(doc, "c").unwrap().get(), "2");
        assert_eq!(string(doc, "b\"").as_deref(), Some("q"));
        assert_eq!(member(doc, "a").unwrap().get(), r#"{"deep": [1, 2, {"x": "y"}]}"#);
        assert!(member(doc, "z").is_none());
        assert!(member(raw("[1, 2]"), "a").is_none() && members(raw("\"s\"")).is_none());
        assert_eq!(members(doc).unwrap().len(), 3);
    }

    #[test]
    fn an_object_written_in_parts_is_json() {
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        w.raw("r", raw(r#"{"k": [1]}"#));
        w.value("quote\"d", &serde_json::json!("v"));
        w.end();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"r": {"k": [1]}, "quote\"d": "v"}));
    }
}
