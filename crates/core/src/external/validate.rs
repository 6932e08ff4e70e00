//! The rules a third-party instance must meet before it is sent: every rule of the page and of
//! `external-approvals.md`, checked on the JSON as written, every problem named by its field
//! path.
//!
//! Invariants:
//! - [`validate`] returns the typed instance only when it found no problem, and then every
//!   problem the platform would answer 1390001 for is ruled out: required fields, enums, times,
//!   i18n keys, list lengths, unique ids, an applicant / approver / cc user on every item.
//! - It reports every problem it finds, not the first one: the fields in document order, then
//!   the i18n keys the default locale lacks.
//! - Times may be decimal strings or integers; the typed instance holds integers, and sends
//!   strings.
//! - Unknown fields are problems (a misspelt `task_list` would otherwise vanish silently); the
//!   trusteeship fields and `resource_region` are known and passed through unchecked.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::{ExternalInstance, I18N_PREFIX, MsTime};

/// Instance statuses.
pub const INSTANCE_STATUSES: [&str; 7] = [
    "PENDING",
    "APPROVED",
    "REJECTED",
    "CANCELED",
    "DELETED",
    "HIDDEN",
    "TERMINATED",
];
/// Task statuses.
pub const TASK_STATUSES: [&str; 5] = ["PENDING", "APPROVED", "REJECTED", "TRANSFERRED", "DONE"];
/// A cc's read statuses.
pub const READ_STATUSES: [&str; 2] = ["READ", "UNREAD"];
/// How an instance opens from the lists.
pub const INSTANCE_DISPLAY_METHODS: [&str; 4] = ["BROWSER", "SIDEBAR", "NORMAL", "TRUSTEESHIP"];
/// How a task or a cc opens from the lists.
pub const ITEM_DISPLAY_METHODS: [&str; 3] = ["BROWSER", "SIDEBAR", "NORMAL"];
/// `update_mode` values.
pub const UPDATE_MODES: [&str; 2] = ["REPLACE", "UPDATE"];
/// `generate_type` values (never an empty string).
pub const GENERATE_TYPES: [&str; 2] = ["EXTERNAL_CONSIGN", "DEFAULT"];
/// The locales the approval center has texts for.
pub const LOCALES: [&str; 16] = [
    "zh-CN", "zh-HK", "zh-TW", "en-US", "ja-JP", "ko-KR", "id-ID", "vi-VN", "th-TH", "pt-BR",
    "es-ES", "fr-FR", "de-DE", "it-IT", "ru-RU", "ms-MY",
];
/// The latest time taken, 2200-01-01T00:00:00Z: later ones are microseconds or nanoseconds
/// given for milliseconds (and would not fit a microsecond timestamp column much further on).
pub const LATEST_MS: i64 = 7_258_118_400_000;
/// Most tasks an instance may carry.
pub const MAX_TASKS: usize = 300;
/// Most ccs an instance may carry.
pub const MAX_CCS: usize = 200;
/// Most quick-approval actions a task may carry.
pub const MAX_ACTIONS: usize = 2;

/// Action types that need no `action_name`.
const BUILT_IN_ACTIONS: [&str; 2] = ["APPROVE", "REJECT"];

/// Top-level fields passed through unchecked.
const PASSTHROUGH: [&str; 7] = [
    "trusteeship_url_token",
    "trusteeship_user_id_type",
    "trusteeship_urls",
    "trusteeship_cache_config",
    "resource_region",
    // Sent by some SDK examples, ignored by the platform.
    "instance_code",
    "approval_name",
];

/// One rule an instance breaks: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The field's path in the document, e.g. `task_list[2].links`.
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Checks one instance document; the typed instance, or every problem found.
pub fn validate(document: &Value) -> Result<ExternalInstance, Vec<Problem>> {
    let mut check = Check::default();
    let Some(object) = document.as_object() else {
        check.problem("", "an instance is a JSON object");
        return Err(check.problems);
    };
    check.instance(object);
    if !check.problems.is_empty() {
        return Err(check.problems);
    }
    ExternalInstance::deserialize(document).map_err(|e| {
        vec![Problem {
            field: String::new(),
            reason: format!("does not read as an instance: {e}"),
        }]
    })
}

/// A field's path, written out only when needed.
#[derive(Clone, Copy)]
struct FieldPath<'a> {
    parent: &'a str,
    name: &'a str,
}

impl std::fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parent.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{}.{}", self.parent, self.name)
        }
    }
}

#[derive(Default)]
struct Check {
    problems: Vec<Problem>,
    /// i18n keys used by the document, with the first field that used each.
    keys_used: BTreeMap<String, String>,
}

/// What a field must hold.
#[derive(Clone, Copy)]
enum Rule {
    /// Any string, maybe empty.
    Text,
    /// A string that is not empty.
    Id,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A string that is an i18n key or plain text; keys are collected.
    I18n,
    /// A string holding JSON (or empty).
    JsonText,
    /// A millisecond epoch (string or integer), greater than zero.
    Time,
    /// A millisecond epoch, or 0 for "not ended".
    EndTime,
    Bool,
    /// Handled by the caller.
    Nested,
}

impl Check {
    fn problem(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Checks the fields of `object` at `path` against `fields` (name, required, rule), and
    /// refuses the fields it does not know.
    fn fields(
        &mut self,
        path: &str,
        object: &Map<String, Value>,
        fields: &[(&str, bool, Rule)],
        passthrough: &[&str],
    ) {
        // Paths are written out only for a problem or an i18n key: most fields have neither.
        for (name, required, rule) in fields {
            let field = FieldPath { parent: path, name };
            match object.get(*name) {
                None | Some(Value::Null) => {
                    if *required {
                        self.problem(field.to_string(), "is required");
                    }
                }
                Some(value) => self.value(field, value, *rule),
            }
        }
        for name in object.keys() {
            if !fields.iter().any(|(known, _, _)| known == name) && !passthrough.contains(&&**name)
            {
                let field = FieldPath { parent: path, name };
                self.problem(
                    field.to_string(),
                    "is not a field of this object (misspelt?)",
                );
            }
        }
    }

    fn value(&mut self, field: FieldPath<'_>, value: &Value, rule: Rule) {
        let text = value.as_str();
        match rule {
            Rule::Nested => {}
            Rule::Bool => {
                if !value.is_boolean() {
                    self.problem(field.to_string(), "must be true or false");
                }
            }
            Rule::Time | Rule::EndTime => match MsTime::read(value) {
                None => self.problem(
                    field.to_string(),
                    format!("must be a millisecond epoch as a decimal string, got {value}"),
                ),
                Some(MsTime(0)) if matches!(rule, Rule::Time) => self.problem(
                    field.to_string(),
                    "must be a millisecond epoch after 1970, not 0",
                ),
                Some(MsTime(ms)) if ms > 0 && ms < 100_000_000_000 => self.problem(
                    field.to_string(),
                    format!(
                        "{ms} is before 1973 as milliseconds: seconds were given, not milliseconds"
                    ),
                ),
                Some(MsTime(ms)) if ms > LATEST_MS => self.problem(
                    field.to_string(),
                    format!(
                        "{ms} is after 2200 as milliseconds: microseconds or nanoseconds were given, not milliseconds"
                    ),
                ),
                Some(_) => {}
            },
            _ => {
                let Some(text) = text else {
                    self.problem(field.to_string(), format!("must be a string, got {value}"));
                    return;
                };
                match rule {
                    Rule::Id if text.trim().is_empty() => {
                        self.problem(field.to_string(), "must not be empty")
                    }
                    Rule::OneOf(allowed) if !allowed.contains(&text) => self.problem(
                        field.to_string(),
                        format!("{text:?} is not one of {}", allowed.join(", ")),
                    ),
                    Rule::I18n
                        if text.starts_with(I18N_PREFIX) && !self.keys_used.contains_key(text) =>
                    {
                        self.keys_used.insert(text.to_owned(), field.to_string());
                    }
                    Rule::JsonText
                        if !text.is_empty() && serde_json::from_str::<Value>(text).is_err() =>
                    {
                        self.problem(
                            field.to_string(),
                            "must be JSON text (a JSON object written as a string)",
                        )
                    }
                    _ => {}
                }
            }
        }
    }

    /// The links object at `path`: at least one of its two links.
    fn links(&mut self, path: &str, object: &Map<String, Value>) {
        let field = format!("{path}links");
        match object.get("links") {
            None | Some(Value::Null) => {}
            Some(Value::Object(links)) => {
                self.fields(
                    &field,
                    links,
                    &[
                        ("pc_link", false, Rule::Text),
                        ("mobile_link", false, Rule::Text),
                    ],
                    &[],
                );
                let present = |name: &str| {
                    links
                        .get(name)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                };
                if !present("pc_link") && !present("mobile_link") {
                    self.problem(field, "needs pc_link or mobile_link");
                }
            }
            Some(other) => self.problem(field, format!("must be an object, got {other}")),
        }
    }

    /// `user_id` or `open_id` on the object at `path`.
    fn someone(&mut self, path: &str, object: &Map<String, Value>, who: &str) {
        let present = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        };
        if !present("user_id") && !present("open_id") {
            self.problem(
                format!("{path}user_id"),
                format!("the {who} needs a user_id or an open_id"),
            );
        }
    }

    /// The list at `field`: its elements as objects (problems for the others), at most `max`.
    fn list<'v>(
        &mut self,
        field: &str,
        value: Option<&'v Value>,
        max: usize,
    ) -> Vec<&'v Map<String, Value>> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > max {
                    self.problem(
                        field,
                        format!(
                            "has {} elements; the platform takes at most {max}",
                            items.len()
                        ),
                    );
                }
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| match item {
                        Value::Object(o) => Some(o),
                        other => {
                            self.problem(
                                format!("{field}[{i}]"),
                                format!("must be an object, got {other}"),
                            );
                            None
                        }
                    })
                    .collect()
            }
            Some(other) => {
                self.problem(field, format!("must be a list, got {other}"));
                Vec::new()
            }
        }
    }

    fn instance(&mut self, object: &Map<String, Value>) {
        use Rule::*;
        self.fields(
            "",
            object,
            &[
                ("approval_code", true, Id),
                ("instance_id", true, Id),
                ("status", true, OneOf(&INSTANCE_STATUSES)),
                ("extra", false, JsonText),
                ("links", true, Nested),
                ("title", false, I18n),
                ("form", false, Nested),
                ("user_id", false, Text),
                ("user_name", false, I18n),
                ("open_id", false, Text),
                ("department_id", false, Text),
                ("department_name", false, I18n),
                ("start_time", true, Time),
                ("end_time", true, EndTime),
                ("update_time", true, Time),
                ("display_method", false, OneOf(&INSTANCE_DISPLAY_METHODS)),
                ("update_mode", false, OneOf(&UPDATE_MODES)),
                ("task_list", false, Nested),
                ("cc_list", false, Nested),
                ("i18n_resources", true, Nested),
            ],
            &PASSTHROUGH,
        );
        self.links("", object);
        self.someone("", object, "applicant");
        for (i, field) in self
            .list("form", object.get("form"), usize::MAX)
            .into_iter()
            .enumerate()
        {
            self.fields(
                &format!("form[{i}]"),
                field,
                &[("name", false, I18n), ("value", false, I18n)],
                &[],
            );
        }
        let mut ids: HashSet<String> = HashSet::new();
        if let Some(id) = object.get("instance_id").and_then(Value::as_str) {
            ids.insert(id.to_owned());
        }
        let mut unique = |check: &mut Check, field: String, id: Option<&Value>| {
            if let Some(id) = id.and_then(Value::as_str)
                && !ids.insert(id.to_owned())
            {
                check.problem(
                    field,
                    format!("{id:?} is used twice in this instance (ids are unique across the instance, its tasks and its ccs)"),
                );
            }
        };
        let tasks = self.list("task_list", object.get("task_list"), MAX_TASKS);
        for (i, task) in tasks.into_iter().enumerate() {
            let path = format!("task_list[{i}]");
            self.fields(
                &path,
                task,
                &[
                    ("task_id", true, Id),
                    ("user_id", false, Text),
                    ("open_id", false, Text),
                    ("title", false, I18n),
                    ("links", true, Nested),
                    ("status", true, OneOf(&TASK_STATUSES)),
                    ("extra", false, JsonText),
                    ("create_time", true, Time),
                    ("end_time", true, EndTime),
                    ("update_time", true, Time),
                    ("action_context", false, Text),
                    ("action_configs", false, Nested),
                    ("display_method", false, OneOf(&ITEM_DISPLAY_METHODS)),
                    ("exclude_statistics", false, Bool),
                    ("node_id", false, Text),
                    ("node_name", false, Text),
                    ("generate_type", false, OneOf(&GENERATE_TYPES)),
                ],
                &[],
            );
            self.links(&format!("{path}."), task);
            self.someone(&format!("{path}."), task, "approver");
            unique(self, format!("{path}.task_id"), task.get("task_id"));
            let actions = self.list(
                &format!("{path}.action_configs"),
                task.get("action_configs"),
                MAX_ACTIONS,
            );
            for (j, action) in actions.into_iter().enumerate() {
                let at = format!("{path}.action_configs[{j}]");
                self.fields(
                    &at,
                    action,
                    &[
                        ("action_type", true, Id),
                        ("action_name", false, I18n),
                        ("is_need_reason", false, Bool),
                        ("is_reason_required", false, Bool),
                        ("is_need_attachment", false, Bool),
                    ],
                    &[],
                );
                let custom = action
                    .get("action_type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !BUILT_IN_ACTIONS.contains(&t));
                let named = action
                    .get("action_name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                if custom && !named {
                    self.problem(
                        format!("{at}.action_name"),
                        "is required when action_type is neither APPROVE nor REJECT",
                    );
                }
            }
        }
        let ccs = self.list("cc_list", object.get("cc_list"), MAX_CCS);
        for (i, cc) in ccs.into_iter().enumerate() {
            let path = format!("cc_list[{i}]");
            self.fields(
                &path,
                cc,
                &[
                    ("cc_id", true, Id),
                    ("user_id", false, Text),
                    ("open_id", false, Text),
                    ("links", true, Nested),
                    ("read_status", true, OneOf(&READ_STATUSES)),
                    ("extra", false, JsonText),
                    ("title", false, I18n),
                    ("create_time", true, Time),
                    ("update_time", true, Time),
                    ("display_method", false, OneOf(&ITEM_DISPLAY_METHODS)),
                ],
                &[],
            );
            self.links(&format!("{path}."), cc);
            self.someone(&format!("{path}."), cc, "cc");
            unique(self, format!("{path}.cc_id"), cc.get("cc_id"));
        }
        self.i18n(object.get("i18n_resources"));
    }

    /// The locales: known, each once, exactly one default, and the default holding every key
    /// the document uses.
    fn i18n(&mut self, value: Option<&Value>) {
        let resources = self.list("i18n_resources", value, usize::MAX);
        if value.is_some_and(Value::is_array) && resources.is_empty() {
            self.problem("i18n_resources", "needs at least the default locale");
        }
        let mut locales = HashSet::new();
        let mut defaults = Vec::new();
        for (i, resource) in resources.into_iter().enumerate() {
            let path = format!("i18n_resources[{i}]");
            self.fields(
                &path,
                resource,
                &[
                    ("locale", true, Rule::OneOf(&LOCALES)),
                    ("texts", true, Rule::Nested),
                    ("is_default", true, Rule::Bool),
                ],
                &[],
            );
            if let Some(locale) = resource.get("locale").and_then(Value::as_str)
                && !locales.insert(locale.to_owned())
            {
                self.problem(
                    format!("{path}.locale"),
                    format!("{locale:?} is given twice"),
                );
            }
            let texts = self.list(&format!("{path}.texts"), resource.get("texts"), usize::MAX);
            let mut keys = HashSet::new();
            for (j, text) in texts.into_iter().enumerate() {
                let at = format!("{path}.texts[{j}]");
                self.fields(
                    &at,
                    text,
                    &[("key", true, Rule::Id), ("value", true, Rule::Text)],
                    &[],
                );
                if let Some(key) = text.get("key").and_then(Value::as_str) {
                    if !key.starts_with(I18N_PREFIX) {
                        self.problem(
                            format!("{at}.key"),
                            format!("{key:?} does not start with {I18N_PREFIX}"),
                        );
                    }
                    if !keys.insert(key.to_owned()) {
                        self.problem(
                            format!("{at}.key"),
                            format!("{key:?} is given twice in this locale"),
                        );
                    }
                }
            }
            if resource.get("is_default") == Some(&Value::Bool(true)) {
                defaults.push((path, keys));
            }
        }
        match defaults.len() {
            0 => {
                if value.is_some_and(Value::is_array) {
                    self.problem(
                        "i18n_resources",
                        "no locale has is_default: true; exactly one must",
                    )
                }
            }
            1 => {
                let (path, keys) = &defaults[0];
                let missing: Vec<(String, String)> = self
                    .keys_used
                    .iter()
                    .filter(|(key, _)| !keys.contains(*key))
                    .map(|(k, f)| (k.clone(), f.clone()))
                    .collect();
                for (key, field) in missing {
                    self.problem(
                        field,
                        format!("uses {key:?}, which the default locale ({path}) has no text for"),
                    );
                }
            }
            n => self.problem(
                "i18n_resources",
                format!("{n} locales have is_default: true; exactly one must"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn good() -> Value {
        json!({
            "approval_code": "AC-1", "instance_id": "i1", "status": "PENDING",
            "links": {"pc_link": "https://hr.example/i1"},
            "title": "@i18n@title", "form": [{"name": "@i18n@f1", "value": "3 days"}],
            "user_id": "u1", "user_name": "Zhang San", "department_name": "@i18n@dept",
            "start_time": "1767225600000", "end_time": 0, "update_time": 1767225600000u64,
            "task_list": [{"task_id": "t1", "user_id": "u2", "title": "@i18n@node",
                "links": {"mobile_link": "https://hr.example/t1"}, "status": "PENDING",
                "create_time": "1767225600000", "end_time": "0", "update_time": "1767225600000",
                "action_configs": [{"action_type": "APPROVE"}, {"action_type": "ASK", "action_name": "@i18n@ask"}]}],
            "cc_list": [{"cc_id": "c1", "open_id": "ou_3", "links": {"pc_link": "x"},
                "read_status": "UNREAD", "create_time": "1767225600000", "update_time": "1767225600000"}],
            "i18n_resources": [
                {"locale": "zh-CN", "is_default": true, "texts": [
                    {"key": "@i18n@title", "value": "请假"}, {"key": "@i18n@f1", "value": "天数"},
                    {"key": "@i18n@dept", "value": "人事"}, {"key": "@i18n@node", "value": "主管"},
                    {"key": "@i18n@ask", "value": "询问"}]},
                {"locale": "en-US", "is_default": false, "texts": [{"key": "@i18n@title", "value": "Leave"}]}
            ]
        })
    }

    fn problems(doc: &Value) -> Vec<String> {
        validate(doc)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_instance_reads_with_numbers_normalised_and_sends_strings() {
        let instance = validate(&good()).unwrap();
        assert_eq!(instance.update_time, MsTime(1767225600000));
        assert_eq!(instance.end_time, MsTime::NOT_ENDED);
        assert_eq!(instance.resolve("@i18n@title"), "请假");
        assert_eq!(instance.resolve("3 days"), "3 days");
        let sent = serde_json::to_value(&instance).unwrap();
        assert_eq!(sent["end_time"], json!("0"));
        assert_eq!(sent["update_time"], json!("1767225600000"));
        assert!(sent.get("update_mode").is_none(), "{sent}");
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let mut doc = good();
        doc["status"] = json!("OPEN");
        doc["links"] = json!({});
        doc["user_id"] = json!("");
        doc["start_time"] = json!("2026-01-01");
        doc["task_list"][0]["task_id"] = json!("c1");
        doc["task_list"][0]["action_configs"][1] = json!({"action_type": "ASK"});
        doc["cc_list"][0]["read_status"] = json!("SEEN");
        doc["i18n_resources"][0]["texts"] = json!([{"key": "@i18n@title", "value": "请假"}]);
        doc["tasks"] = json!([]);
        let found = problems(&doc);
        for expected in [
            "status: \"OPEN\" is not one of",
            "links: needs pc_link or mobile_link",
            "user_id: the applicant needs a user_id or an open_id",
            "start_time: must be a millisecond epoch",
            "tasks: is not a field",
            "task_list[0].action_configs[1].action_name: is required",
            "cc_list[0].read_status: \"SEEN\" is not one of",
            "cc_list[0].cc_id: \"c1\" is used twice",
            "form[0].name: uses \"@i18n@f1\", which the default locale",
            "department_name: uses \"@i18n@dept\"",
            "task_list[0].title: uses \"@i18n@node\"",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn locales_need_exactly_one_default_and_lists_have_limits() {
        let mut doc = good();
        doc["i18n_resources"][1]["is_default"] = json!(true);
        assert!(
            problems(&doc)
                .iter()
                .any(|p| p.contains("2 locales have is_default"))
        );
        doc["i18n_resources"] = json!([]);
        assert!(
            problems(&doc)
                .iter()
                .any(|p| p.contains("needs at least the default"))
        );
        let mut doc = good();
        let task = doc["task_list"][0].clone();
        doc["task_list"] = Value::Array(
            (0..301)
                .map(|i| {
                    let mut t = task.clone();
                    t["task_id"] = json!(format!("t{i}"));
                    t
                })
                .collect(),
        );
        assert_eq!(
            problems(&doc),
            vec!["task_list: has 301 elements; the platform takes at most 300"]
        );
        let mut doc = good();
        doc["cc_list"] = Value::Array(
            (0..201)
                .map(|i| {
                    let mut c = good()["cc_list"][0].clone();
                    c["cc_id"] = json!(format!("c{i}"));
                    c
                })
                .collect(),
        );
        assert_eq!(
            problems(&doc),
            vec!["cc_list: has 201 elements; the platform takes at most 200"]
        );
    }

    #[test]
    fn times_in_seconds_and_zero_starts_are_refused() {
        let mut doc = good();
        doc["start_time"] = json!("1767225600");
        doc["update_time"] = json!("0");
        doc["end_time"] = json!(-1);
        doc["task_list"][0]["create_time"] = json!("1767225600000000");
        doc["task_list"][0]["update_time"] = json!(9_300_000_000_000_000u64);
        let found = problems(&doc);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].contains("seconds were given"));
        assert!(found[3].starts_with("task_list[0].create_time: 1767225600000000 is after 2200"));
        assert!(found[4].contains("microseconds or nanoseconds"));
    }
}
