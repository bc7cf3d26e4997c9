//! A JSON tree that borrows from the message it was parsed from: what the decoder reads
//! an event through.
//!
//! Why not `serde_json::Value`: it allocates every key and every string, and builds a
//! B-tree per object; at hundreds of thousands of events a second that was most of the
//! decoding time. Here a string without escapes is a slice of the message, and an object
//! is a short vector of its members, searched in order (events have a dozen keys).
//!
//! Same parser (serde_json), same answers: what `Value` refuses this refuses, numbers
//! are `serde_json::Number`, and a key given twice keeps its last value, as in `Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A parsed JSON value, borrowing its strings from the input where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in the order written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The value of `key`; when the key is given twice, the last one (as `Value` does).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'a> Json<'a> {
    /// Parses one JSON text; errors are serde_json's.
    ///
    /// The text is checked to be UTF-8 once, with SIMD, and then parsed as a `str`:
    /// parsing bytes, serde_json checks every string on its own, and that was a fifth
    /// of the parse. Text that is not UTF-8 is parsed as bytes, for serde_json's error.
    pub fn parse(bytes: &'a [u8]) -> Result<Json<'a>, serde_json::Error> {
        match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// "a string", "a number", ... for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The same value as a `serde_json::Value` (owned): for messages, never the hot path.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .0
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// Compact JSON text, as `Value` prints it.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

/// A view of a `Value` (strings borrowed from it): `decode_value` reads through this.
impl<'a> From<&'a Value> for Json<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            Value::Object(members) => Json::Object(Object(
                members
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from(v)))
                    .collect(),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(i.into()))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(u.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Json<'de>, E> {
        // As `Value` does: JSON text has no NaN or infinity, so this is never `Null`.
        Ok(Number::from_f64(f).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        // An event's envelope has 7 keys and its data up to 9: one allocation for most.
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(10).min(64));
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Object(members)))
    }
}

/// An object key, borrowed when it has no escapes (serde's own `Cow<str>` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the text, the tree says what `Value` says: same acceptance, same values.
    #[test]
    fn agrees_with_serde_json_value() {
        let texts = [
            r#"{"a":1,"b":[true,null,"x\u00e9"],"c":{"d":-2.5e3,"e":18446744073709551615}}"#,
            r#"{"k":"first","k":"second"}"#,
            r#"{"esc\"aped":"line\nbreak","n":-9223372036854775808}"#,
            r#"[1, 2.0, 1e400]"#,
            r#""just a string""#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            "{\"a\":\"\u{7}\"}",
            r#"{"a":"\ud800"}"#,
            "not json",
            "",
            r#"{"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ];
        for text in texts {
            agree(text.as_bytes());
        }
        // Not UTF-8: in a string, in a key, outside any string, cut mid-character; and a
        // byte-order mark, which is UTF-8 but not JSON.
        let invalid: [&[u8]; 5] = [
            b"{\"a\":\"\xff\"}",
            b"{\"\xc3\x28\":1}",
            b"{\"a\":1}\xfe",
            b"{\"a\":\"\xe6\x96\"}",
            b"\xef\xbb\xbf{}",
        ];
        for bytes in invalid {
            agree(bytes);
            assert!(Json::parse(bytes).is_err(), "{bytes:?}");
        }
    }

    fn agree(bytes: &[u8]) {
        let value = serde_json::from_slice::<Value>(bytes);
        let json = Json::parse(bytes);
        let text = String::from_utf8_lossy(bytes);
        match (&value, &json) {
            (Ok(v), Ok(j)) => assert_eq!(&j.to_value(), v, "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            _ => panic!("{text}: Value says {value:?}, Json says {json:?}"),
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_the_last_duplicate_key_wins() {
        let text = br#"{"id":"abc","id":"def","t":"a\tb"}"#;
        let Json::Object(obj) = Json::parse(text).unwrap() else {
            panic!("an object")
        };
        assert!(matches!(
            obj.get("id"),
            Some(Json::String(Cow::Borrowed("def")))
        ));
        assert!(matches!(obj.get("t"), Some(Json::String(Cow::Owned(s))) if s == "a\tb"));
        assert_eq!(obj.get("missing"), None);
        assert_eq!(obj.get("t").unwrap().to_string(), r#""a\tb""#);
    }
}
