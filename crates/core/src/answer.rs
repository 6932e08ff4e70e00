//! The query answer's `data` (`user_approvals/query`): its records, field for field, read where
//! they lie in the answer's text.
//!
//! Invariants:
//! - Every documented field is present and every field is optional: the platform omits fields
//!   freely, and a missing field must never fail a whole response.
//! - Unknown fields are ignored (no `deny_unknown_fields`), so platform additions never break a run.
//! - A query answer's `data` stays raw JSON ([`QueryData`]) until the flatten stage parses it,
//!   once, into the borrowed record types here ([`Text`] borrows every string without escapes).
//!   A record with a field of the wrong type is then rejected alone, with its bytes exactly as
//!   sent ([`RawRecord`]), instead of failing the 49 other users of its batch.
//! - Nothing here knows HTTP: the envelope, the request and the list endpoints' models belong to
//!   the client (`attendance-feishu`), which hands `data` on unread.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use serde_json::value::RawValue;

/// One list element exactly as the platform sent it.
pub type RawRecord = Box<RawValue>;

/// A JSON string of an answer: borrowed from the answer's text when it holds no escapes, copied
/// only when it does. (`Option<Cow<str>>` would always copy: serde borrows only a bare `Cow`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// `data` of a query answer as JSON text, exactly as sent: the flatten stage parses it, once.
///
/// Invariant: text read from the platform is JSON (the client reads the envelope through). Text
/// read back from a recording is taken as the recorder wrote it, unchecked here: every byte of
/// it goes through the flatten stage's parse, which fails the answer if it is not JSON.
#[derive(Debug, Deserialize)]
#[serde(from = "Box<RawValue>")]
pub struct QueryData(Box<str>);

impl From<Box<RawValue>> for QueryData {
    fn from(raw: Box<RawValue>) -> QueryData {
        QueryData(raw.into())
    }
}

impl QueryData {
    /// The JSON text of `data`.
    pub fn json(&self) -> &str {
        &self.0
    }

    /// `data` as a recording holds it, not read through (see the type's invariant).
    pub fn recorded(text: &str) -> QueryData {
        QueryData(text.into())
    }

    /// An answer holding these `user_approvals` elements, each byte for byte as given (going
    /// through `serde_json::Value` would reorder keys, rewrite numbers and merge duplicate keys).
    pub fn from_user_approvals(elements: &[&RawValue]) -> QueryData {
        let mut json = String::from(r#"{"user_approvals":["#);
        for (i, element) in elements.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(element.get());
        }
        json.push_str("]}");
        QueryData(json.into())
    }

    /// The first `count` `user_approvals` elements, each as sent, reading the answer only as far
    /// as the last of them: the records a typed read kept aside need their bytes, and one of them
    /// early in a 300-record answer should not cost a second read of all of it. An error if
    /// `data` does not have that shape, or has fewer elements.
    pub fn first_user_approvals(&self, count: usize) -> Result<Vec<&RawValue>, serde_json::Error> {
        use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, SeqAccess};
        /// Set when the last wanted element is read; the read then stops with an error.
        const ENOUGH: &str = "(the wanted elements are read)";
        struct Data<'v, 'a> {
            count: usize,
            out: &'v mut Vec<&'a RawValue>,
        }
        impl<'de, 'v> DeserializeSeed<'de> for Data<'v, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de, 'v> Visitor<'de> for Data<'v, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with a user_approvals list")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
                while let Some(key) = map.next_key::<Text>()? {
                    if key.as_str() == "user_approvals" {
                        return map.next_value_seed(Elements(self));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(())
            }
        }
        struct Elements<'v, 'a>(Data<'v, 'a>);
        impl<'de, 'v> DeserializeSeed<'de> for Elements<'v, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de, 'v> Visitor<'de> for Elements<'v, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user_approvals list")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
                let Data { count, out } = self.0;
                while out.len() < count {
                    match seq.next_element::<&RawValue>()? {
                        Some(element) => out.push(element),
                        None => return Ok(()),
                    }
                }
                Err(S::Error::custom(ENOUGH))
            }
        }
        let mut out = Vec::with_capacity(count);
        let mut de = serde_json::Deserializer::from_str(self.json());
        let read = Data {
            count,
            out: &mut out,
        }
        .deserialize(&mut de);
        match read {
            Err(_) if out.len() == count => Ok(out),
            Err(e) => Err(e),
            Ok(()) => Err(serde_json::Error::custom(format!(
                "user_approvals has {} elements, not the {count} the answer was read with",
                out.len()
            ))),
        }
    }

    /// The `user_approvals` elements, each as sent; an error if `data` does not have that shape.
    pub fn user_approvals(&self) -> Result<Vec<&RawValue>, serde_json::Error> {
        #[derive(Deserialize)]
        struct Shape<'a> {
            #[serde(borrow, default)]
            user_approvals: Option<Vec<&'a RawValue>>,
        }
        let shape: Option<Shape> = serde_json::from_str(self.json())?;
        Ok(shape.and_then(|s| s.user_approvals).unwrap_or_default())
    }
}

/// One user on one date, its four record lists raw: the element-by-element path of flatten,
/// which can keep any record aside with its bytes.
#[derive(Debug, Default, Deserialize)]
pub struct UserApproval<'a> {
    #[serde(borrow)]
    pub user_id: Option<Text<'a>>,
    /// `yyyyMMdd`.
    #[serde(borrow)]
    pub date: Option<Text<'a>>,
    #[serde(borrow)]
    pub outs: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    pub leaves: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    pub overtime_works: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    pub trips: Option<Vec<&'a RawValue>>,
    /// IANA zone the local times are in; empty or absent means UTC (per the doc).
    #[serde(borrow)]
    pub time_zone: Option<Text<'a>>,
}

/// `data` read in one pass with every record typed: the fast path of flatten.
#[derive(Debug, Default, Deserialize)]
pub struct TypedQueryData<'a> {
    #[serde(borrow, default)]
    pub user_approvals: Option<Vec<TypedUserApproval<'a>>>,
}

/// A [`UserApproval`] with its records parsed.
#[derive(Debug, Default, Deserialize)]
pub struct TypedUserApproval<'a> {
    #[serde(borrow)]
    pub user_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub date: Option<Text<'a>>,
    #[serde(borrow)]
    pub outs: Option<Vec<UserOut<'a>>>,
    #[serde(borrow)]
    pub leaves: Option<Vec<UserLeave<'a>>>,
    #[serde(borrow)]
    pub overtime_works: Option<Vec<UserOvertimeWork<'a>>>,
    #[serde(borrow)]
    pub trips: Option<Vec<UserTrip<'a>>>,
    #[serde(borrow)]
    pub time_zone: Option<Text<'a>>,
}

impl TypedUserApproval<'_> {
    /// How many records each list holds, in the order outs, leaves, overtime_works, trips.
    pub fn lengths(&self) -> [usize; 4] {
        [
            self.outs.as_ref().map_or(0, Vec::len),
            self.leaves.as_ref().map_or(0, Vec::len),
            self.overtime_works.as_ref().map_or(0, Vec::len),
            self.trips.as_ref().map_or(0, Vec::len),
        ]
    }
}

/// `i18n_names` of an out or leave type.
#[derive(Debug, Default, Deserialize)]
pub struct I18nNames<'a> {
    #[serde(borrow)]
    pub ch: Option<Text<'a>>,
    #[serde(borrow)]
    pub en: Option<Text<'a>>,
    #[serde(borrow)]
    pub ja: Option<Text<'a>>,
}

/// `user_out`: an out (外出) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserOut<'a> {
    #[serde(borrow)]
    pub approval_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub uniq_id: Option<Text<'a>>,
    pub unit: Option<i32>,
    pub interval: Option<i64>,
    #[serde(borrow)]
    pub start_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub end_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub i18n_names: Option<I18nNames<'a>>,
    #[serde(borrow)]
    pub default_locale: Option<Text<'a>>,
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow)]
    pub approve_pass_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub approve_apply_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub idempotent_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub correct_process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub cancel_process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub process_id: Option<Vec<Text<'a>>>,
}

/// `user_leave`: a leave (请假) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserLeave<'a> {
    #[serde(borrow)]
    pub approval_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub uniq_id: Option<Text<'a>>,
    pub unit: Option<i32>,
    pub interval: Option<i64>,
    #[serde(borrow)]
    pub start_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub end_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub i18n_names: Option<I18nNames<'a>>,
    #[serde(borrow)]
    pub default_locale: Option<Text<'a>>,
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow)]
    pub approve_pass_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub approve_apply_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub idempotent_id: Option<Text<'a>>,
}

/// `user_overtime_work`: an overtime (加班) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserOvertimeWork<'a> {
    #[serde(borrow)]
    pub approval_id: Option<Text<'a>>,
    pub duration: Option<f64>,
    pub unit: Option<i32>,
    pub category: Option<i32>,
    #[serde(rename = "type")]
    pub type_: Option<i32>,
    #[serde(borrow)]
    pub start_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub end_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow)]
    pub idempotent_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub correct_process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub cancel_process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub process_id: Option<Vec<Text<'a>>>,
}

/// `region_place`: a trip's departure or destination.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RegionPlace<'a> {
    #[serde(borrow)]
    pub region_level: Option<Text<'a>>,
    #[serde(borrow)]
    pub region_id: Option<Text<'a>>,
}

/// `user_trip`: a business trip (出差) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserTrip<'a> {
    #[serde(borrow)]
    pub approval_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub start_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub end_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow)]
    pub approve_pass_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub approve_apply_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub idempotent_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub correct_process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub cancel_process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub process_id: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub departure: Option<RegionPlace<'a>>,
    #[serde(borrow)]
    pub destinations: Option<Vec<RegionPlace<'a>>>,
    pub transportation: Option<Vec<i32>>,
    pub trip_type: Option<i32>,
    #[serde(borrow)]
    pub remarks: Option<Text<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_elements_are_read_as_sent_and_nothing_after_them() {
        // Everything after the second element is not JSON: reading stops before it.
        let data = QueryData::recorded(
            r#"{"other":{"a":[1,"]"]},"user_approvals":[ {"user_id":"u\"1"} ,{"b":2},this is not read"#,
        );
        let two = data.first_user_approvals(2).unwrap();
        let texts: Vec<&str> = two.iter().map(|e| e.get()).collect();
        assert_eq!(texts, [r#"{"user_id":"u\"1"}"#, r#"{"b":2}"#]);
        assert!(
            data.user_approvals().is_err(),
            "a full read does see the garbage"
        );
    }

    #[test]
    fn too_few_elements_or_the_wrong_shape_is_an_error() {
        let data = QueryData::recorded(r#"{"user_approvals":[{"a":1}]}"#);
        assert_eq!(data.first_user_approvals(1).unwrap().len(), 1);
        let err = data.first_user_approvals(2).unwrap_err().to_string();
        assert!(err.contains("has 1 elements, not the 2"), "{err}");
        for text in [r#"{"user_approvals":{"a":1}}"#, "[]", "{"] {
            let data = QueryData::recorded(text);
            assert!(data.first_user_approvals(1).is_err(), "{text}");
        }
    }
}
