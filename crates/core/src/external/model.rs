//! The third-party approval instance as the platform's page models it (`external_instance`):
//! typed, with times as millisecond epochs, serialized back the way the platform wants it.
//!
//! Invariants:
//! - Times deserialize from a decimal string or a JSON number and always serialize as a
//!   decimal string ([`MsTime`]); `0` is "not ended" and only means that in an `end_time`.
//! - Optional fields absent in the source stay absent when serialized (never `null`, never
//!   `""`): the platform treats an empty `generate_type` differently from none.
//! - The trusteeship fields and `resource_region`, which the job neither checks nor lands, are
//!   carried through as they were ([`ExternalInstance::passthrough`]).
//!
//! A value of these types is normally made by [`super::validate::validate`], which checks
//! every rule the page states before it is built.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A millisecond Unix epoch, sent as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MsTime(pub i64);

impl MsTime {
    /// `"0"`: not ended.
    pub const NOT_ENDED: MsTime = MsTime(0);

    /// The instant, or `None` for `0`.
    pub fn instant(self) -> Option<i64> {
        (self.0 != 0).then_some(self.0)
    }

    /// Reads a time the way the source may write it: a decimal string or a JSON integer.
    pub fn read(value: &Value) -> Option<MsTime> {
        match value {
            Value::String(s) => {
                (!s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse().ok().map(MsTime))
                    .flatten()
            }
            Value::Number(n) => n.as_u64().and_then(|n| i64::try_from(n).ok()).map(MsTime),
            _ => None,
        }
    }
}

impl fmt::Display for MsTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for MsTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MsTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MsTime, D::Error> {
        struct Ms;
        impl Visitor<'_> for Ms {
            type Value = MsTime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a millisecond epoch as a decimal string or an integer")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MsTime, E> {
                MsTime::read(&Value::String(s.to_owned()))
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<MsTime, E> {
                i64::try_from(n)
                    .map(MsTime)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<MsTime, E> {
                if n < 0 {
                    return Err(E::invalid_value(de::Unexpected::Signed(n), &self));
                }
                Ok(MsTime(n))
            }
        }
        d.deserialize_any(Ms)
    }
}

/// Where the approval center's lists link to, back in the third-party system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Links {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pc_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_link: Option<String>,
}

/// One form field shown in the lists: name and value, each an i18n key or plain text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FormField {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A quick-approval action of a task (mobile only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ActionConfig {
    /// `APPROVE`, `REJECT`, or any key (then `action_name` is required).
    pub action_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_need_reason: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_reason_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_need_attachment: Option<bool>,
}

/// One approver's task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Task {
    pub task_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub links: Links,
    /// `PENDING|APPROVED|REJECTED|TRANSFERRED|DONE`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
    pub create_time: MsTime,
    pub end_time: MsTime,
    /// Optional on the platform; required by this job (the check compares it).
    pub update_time: MsTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_configs: Option<Vec<ActionConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_statistics: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate_type: Option<String>,
}

/// One carbon copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cc {
    pub cc_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_id: Option<String>,
    pub links: Links,
    /// `READ|UNREAD`.
    pub read_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub create_time: MsTime,
    pub update_time: MsTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_method: Option<String>,
}

/// One key's text in a locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct I18nText {
    pub key: String,
    pub value: String,
}

/// The texts of one locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct I18nResource {
    pub locale: String,
    pub texts: Vec<I18nText>,
    pub is_default: bool,
}

/// A third-party approval instance (`POST approval/v4/external_instances`'s body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExternalInstance {
    pub approval_code: String,
    pub instance_id: String,
    /// `PENDING|APPROVED|REJECTED|CANCELED|DELETED|HIDDEN|TERMINATED`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
    pub links: Links,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<Vec<FormField>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department_name: Option<String>,
    pub start_time: MsTime,
    pub end_time: MsTime,
    pub update_time: MsTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_method: Option<String>,
    /// `REPLACE` (the default) or `UPDATE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_list: Option<Vec<Task>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc_list: Option<Vec<Cc>>,
    pub i18n_resources: Vec<I18nResource>,
    /// The trusteeship fields and `resource_region`, as the source gave them.
    #[serde(flatten)]
    pub passthrough: BTreeMap<String, Value>,
}

/// `update_mode` values.
pub const REPLACE: &str = "REPLACE";
pub const UPDATE: &str = "UPDATE";

impl ExternalInstance {
    /// The update mode, `REPLACE` when absent.
    pub fn update_mode(&self) -> &str {
        self.update_mode.as_deref().unwrap_or(REPLACE)
    }

    pub fn tasks(&self) -> &[Task] {
        self.task_list.as_deref().unwrap_or_default()
    }

    pub fn ccs(&self) -> &[Cc] {
        self.cc_list.as_deref().unwrap_or_default()
    }

    /// The default locale's texts (validation makes sure there is exactly one).
    pub fn default_resource(&self) -> Option<&I18nResource> {
        self.i18n_resources.iter().find(|r| r.is_default)
    }

    /// `text` resolved in the default locale when it is an i18n key found there, else as is.
    pub fn resolve<'a>(&'a self, text: &'a str) -> &'a str {
        if !is_i18n_key(text) {
            return text;
        }
        self.default_resource()
            .and_then(|r| r.texts.iter().find(|t| t.key == text))
            .map_or(text, |t| t.value.as_str())
    }

    /// What the check API is asked about this instance: its update time and its tasks'.
    pub fn check_entry(&self) -> CheckInstance {
        CheckInstance {
            instance_id: self.instance_id.clone(),
            update_time: self.update_time,
            tasks: self
                .tasks()
                .iter()
                .map(|t| CheckTask {
                    task_id: t.task_id.clone(),
                    update_time: t.update_time,
                })
                .collect(),
        }
    }
}

/// Whether `text` is an i18n key (`@i18n@…`) rather than plain text.
pub fn is_i18n_key(text: &str) -> bool {
    text.starts_with(I18N_PREFIX)
}

/// The prefix of every i18n key.
pub const I18N_PREFIX: &str = "@i18n@";

/// One instance of `POST external_instances/check`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInstance {
    pub instance_id: String,
    pub update_time: MsTime,
    pub tasks: Vec<CheckTask>,
}

/// One task of a [`CheckInstance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTask {
    pub task_id: String,
    pub update_time: MsTime,
}

/// One element of the check's `diff_instances`: what the platform holds, for an instance that
/// differs (`update_time` `"0"` and no tasks: the platform does not have it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffInstance {
    pub instance_id: String,
    #[serde(default)]
    pub update_time: Option<MsTime>,
    #[serde(default)]
    pub tasks: Option<Vec<CheckTask>>,
}
