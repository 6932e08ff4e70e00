//! A JSON value read from its text without copying what it can borrow: strings and keys that
//! need no unescaping are slices of the text, and an object is its pairs in order, not a map.
//! For readers that look at a few fields of many small documents (the approval events), where
//! building a `serde_json::Value` allocated a string for every key and value.
//!
//! Invariants:
//! - [`Json::parse`] accepts exactly the texts `serde_json::from_str::<serde_json::Value>`
//!   accepts (the same parser reads both), and numbers are the same `serde_json::Number`s, with
//!   one exception: an object whose first key is serde_json's private raw-value token
//!   (`$serde_json::private::RawValue`), which a `Value` reads as the JSON its string holds (or
//!   refuses), is read here as the object it is.
//! - [`Json::from_value`] borrows a `Value`'s strings and keys and copies its numbers: reading a
//!   `Value` this way gives the numbers it holds, where writing it out and parsing the text
//!   again could round a float differently.
//! - A key given twice reads as its last value ([`Json::get`]), as `serde_json::Value` reads it.
//! - [`Json::to_value`] gives the `serde_json::Value` the same text parses to, so any text made
//!   from a [`Json`] is the text a `Value` would have made.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::answer::Text;

/// A JSON value borrowing from the text it was read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// The pairs in the order of the text, a repeated key included.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Reads a whole JSON text.
    pub fn parse(text: &'a str) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The same value, borrowed from a `serde_json::Value`.
    pub fn from_value(value: &'a Value) -> Json<'a> {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value of `key` in an object (the last one, if the key is repeated); `None` for a
    /// missing key or a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// An object's pairs in the order of the text.
    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Json<'a>)]> {
        match self {
            Json::Object(pairs) => Some(pairs),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The same value as a `serde_json::Value` (a repeated key keeps its last value).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// The value's compact JSON text, as `serde_json::Value` writes it.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::String(s) => write!(f, "{}", Value::String(s.to_string())),
            Json::Number(n) => write!(f, "{n}"),
            other => write!(f, "{}", other.to_value()),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        // As `serde_json::Value` reads it: a float JSON cannot write is null.
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
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
        // The parser gives no size: room for a small object at once, not several reallocations.
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
        // Keys as the answers' texts are read: borrowed unless escaped.
        while let Some(Text(key)) = map.next_key()? {
            pairs.push((key, map.next_value()?));
        }
        Ok(Json::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads_and_borrows_plain_strings() {
        let text = r#"{"a":"plain","b":"esc\"aped","a":[1,-2,3.5,18446744073709551615,1e400,true,null,{}],"ключ":{"x":"y"}}"#;
        // 1e400 does not fit an f64: both readers refuse the text alike.
        assert_eq!(
            Json::parse(text).is_err(),
            serde_json::from_str::<Value>(text).is_err()
        );
        let text = text.replace(",1e400", "");
        let json = Json::parse(&text).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json.to_value(), value);
        assert_eq!(json.to_string(), value.to_string());
        // The repeated key reads as its last value, as in a `Value`.
        assert_eq!(json.get("a").unwrap().to_value(), value["a"]);
        assert!(matches!(json.get("b"), Some(Json::String(Cow::Owned(s))) if s == "esc\"aped"));
        let Json::Object(pairs) = &json else {
            panic!("an object")
        };
        assert!(matches!(
            &pairs[0],
            (Cow::Borrowed("a"), Json::String(Cow::Borrowed("plain")))
        ));
        assert_eq!(
            json.get("ключ")
                .and_then(|o| o.get("x"))
                .and_then(Json::as_str),
            Some("y")
        );
        assert_eq!(json.get("missing"), None);
        assert_eq!(Json::String("x".into()).get("a"), None);
        assert_eq!(Json::from_value(&value).to_value(), value);
        // A float whose text reads back rounded differently keeps its number.
        let float = serde_json::json!({"ts": 1721549813.1637122_f64});
        assert_eq!(
            Json::from_value(&float).get("ts").unwrap(),
            &Json::Number(float["ts"].as_number().unwrap().clone())
        );
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "nul", "\"\\x\""] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}");
        }
    }
}
