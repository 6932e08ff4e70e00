//! Approval events' bodies (the `event` object of `out_approval`, `leave_approval`,
//! `leave_approvalV2`, `work_approval` and their reverts) read into typed records, accepting
//! every form the platform's pages show, and the (user, dates) an approval event names.
//!
//! Invariants:
//! - Reading is pure and total: a body gives an [`ApprovalEvent`] or an [`Unreadable`] naming
//!   the field and the reason; nothing is guessed. A field that is absent or `null` is `None`
//!   (or empty for lists); a field that is present in a form no page shows is unreadable.
//! - The forms accepted: numbers as numbers or as decimal strings; `i18n_resources` as an array
//!   of JSON strings, an array of objects, or the `[{is_default=true,locale=zh_cn,texts={k=v}}]`
//!   text; `leave_range` / `leave_detail` as arrays of `[start, end]` pairs or as one string
//!   `"[[start,end],[start,end]]"`; local times as `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD HH:MM`.
//! - Local times stay local here: events carry no time zone, and which zone to read them in is
//!   the caller's decision ([`crate::tz`]).
//! - Event types other than the seven known ones read as [`EventBody::Other`], never as an error.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use crate::json::Json;

/// The approval an event is about, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApprovalKind {
    Out,
    Leave,
    Overtime,
}

impl ApprovalKind {
    /// The kind and whether it is a revert, for a known event type.
    pub fn of_event_type(event_type: &str) -> Option<(ApprovalKind, bool)> {
        Some(match event_type {
            "out_approval" => (ApprovalKind::Out, false),
            "out_approval_revert" => (ApprovalKind::Out, true),
            "leave_approval" | "leave_approvalV2" => (ApprovalKind::Leave, false),
            "leave_approval_revert" => (ApprovalKind::Leave, true),
            "work_approval" => (ApprovalKind::Overtime, false),
            "work_approval_revert" => (ApprovalKind::Overtime, true),
            _ => return None,
        })
    }
}

/// Why an event could not be read: the field (a dotted path under the body) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Unreadable {
    pub field: String,
    pub reason: String,
}

fn unreadable(field: &str, reason: impl Into<String>) -> Unreadable {
    Unreadable {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// What every approval event carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub event_type: String,
    /// When the platform sent it: v1 `ts` (seconds with a fraction, as a string) or v2
    /// `header.create_time` (milliseconds).
    pub event_time: Option<DateTime<Utc>>,
    pub instance_code: Option<String>,
    pub approval_code: Option<String>,
    pub tenant_key: Option<String>,
    pub app_id: Option<String>,
}

/// Who applied: `user_id` (or `employee_id`, the same id under another name) and `open_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applicant {
    pub user_id: Option<String>,
    pub open_id: Option<String>,
}

/// One locale's texts of `i18n_resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct I18nEntry {
    pub locale: String,
    pub is_default: bool,
    pub texts: BTreeMap<String, String>,
}

/// `i18n_resources`, whatever its form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct I18n(pub Vec<I18nEntry>);

impl I18n {
    /// The text of `key`: in the default locale, else `zh_cn`, else the first locale that has it.
    pub fn resolve(&self, key: &str) -> Option<&str> {
        let defaults = self.0.iter().filter(|e| e.is_default);
        let chinese = self.0.iter().filter(|e| e.locale == "zh_cn");
        defaults
            .chain(chinese)
            .chain(self.0.iter())
            .find_map(|e| e.texts.get(key))
            .map(String::as_str)
    }

    /// The text of `key` in `locale`.
    pub fn text(&self, key: &str, locale: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|e| e.locale == locale)
            .find_map(|e| e.texts.get(key).map(String::as_str))
    }
}

/// A `[start, end]` pair of local times, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRange {
    pub start: String,
    pub end: String,
}

/// What out, leave and overtime approval events all say: who, when the approval process ran,
/// and the local start and end as sent, with the duration in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub applicant: Applicant,
    /// The approval process's start and end (`start_time` / `end_time`, epoch seconds).
    pub process_start: Option<i64>,
    pub process_end: Option<i64>,
    pub start_local: String,
    pub end_local: String,
    pub interval_seconds: Option<i64>,
}

/// `out_approval`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutEvent {
    pub approval: Approval,
    /// As sent: `HOUR`, `DAY`, `HALF_DAY` (or the page's `HALR_DAY`), `HALF_HOUR`.
    pub unit: Option<String>,
    /// The `@i18n@…` key of the out type, and its texts.
    pub name_key: Option<String>,
    pub i18n: I18n,
    pub reason: Option<String>,
    pub image: Option<String>,
}

/// `leave_approval` (V1) or `leave_approvalV2`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveEvent {
    pub v2: bool,
    pub approval: Approval,
    /// V1: the leave type's name as text (`leave_type`).
    pub leave_type: Option<String>,
    /// V1: `leave_unit` as a number.
    pub unit_code: Option<i64>,
    /// V2: `leave_unit` as text (`DAY`, `HALF_DAY`, `HOUR`, `HALF_HOUR`, `MINUTE`).
    pub unit_name: Option<String>,
    /// V2: the `@i18n@…` key of the leave type (`leave_name`), and its texts.
    pub name_key: Option<String>,
    pub i18n: I18n,
    pub reason: Option<String>,
    pub range: Vec<LocalRange>,
    pub detail: Vec<LocalRange>,
    pub certification: Vec<String>,
    pub origin_instance_code: Option<String>,
    /// The family, feeding and pregnancy fields, as text ("" and absent are None).
    pub extra: BTreeMap<&'static str, String>,
}

/// One day of `work_detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDay {
    pub start: String,
    pub end: String,
    pub rule_associated: Option<i64>,
    pub interval_seconds: Option<i64>,
}

/// `work_approval`.
#[derive(Debug, Clone, PartialEq)]
pub struct OvertimeEvent {
    pub approval: Approval,
    pub time_range: Vec<LocalRange>,
    pub detail: Vec<WorkDay>,
    pub multi_imitate_users: Vec<String>,
    pub work_type: Option<String>,
    pub reason: Option<String>,
}

/// `*_revert`: only the approval's code and when it was revoked.
#[derive(Debug, Clone, PartialEq)]
pub struct RevertEvent {
    pub kind: ApprovalKind,
    pub operate_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    Out(OutEvent),
    Leave(LeaveEvent),
    Overtime(OvertimeEvent),
    Revert(RevertEvent),
    /// An event type this project does not read (landed and kept whole all the same).
    Other,
}

/// One event, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalEvent {
    pub common: Common,
    pub body: EventBody,
}

/// The user and the local dates an approval names: what the pull must re-read for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub applicant: Applicant,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl ApprovalEvent {
    /// Reads a whole event body from its JSON text (see [`ApprovalEvent::read`]).
    pub fn read_text(text: &str) -> Result<ApprovalEvent, Unreadable> {
        let body = Json::parse(text).map_err(|e| unreadable("body", format!("not JSON: {e}")))?;
        ApprovalEvent::read_json(&body)
    }

    /// Reads a whole event body (v1 `{ts, uuid, type, event}` or v2 `{schema, header, event}`).
    pub fn read(body: &Value) -> Result<ApprovalEvent, Unreadable> {
        ApprovalEvent::read_json(&Json::from_value(body))
    }

    /// [`ApprovalEvent::read`], of a body read as a [`Json`] tree.
    pub fn read_json(body: &Json<'_>) -> Result<ApprovalEvent, Unreadable> {
        let header = body.get("header").filter(|h| h.is_object());
        let event = body.get("event").filter(|e| !e.is_null());
        let event_type = header
            .and_then(|h| h.get("event_type"))
            .or_else(|| event.and_then(|e| e.get("type")))
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned();
        let event_time = match header {
            Some(h) => opt_int(h, "header.create_time", "create_time")?
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            None => read_ts(body)?,
        };
        let empty = Json::Object(Vec::new());
        let e = event.unwrap_or(&empty);
        if !e.is_object() {
            return Err(unreadable("event", "not an object"));
        }
        let common = Common {
            event_type: event_type.clone(),
            event_time,
            instance_code: opt_text(e, "instance_code")?,
            approval_code: opt_text(e, "approval_code")?,
            tenant_key: opt_text(e, "tenant_key")?,
            app_id: opt_text(e, "app_id")?,
        };
        let Some((kind, revert)) = ApprovalKind::of_event_type(&event_type) else {
            return Ok(ApprovalEvent {
                common,
                body: EventBody::Other,
            });
        };
        if common.instance_code.is_none() {
            return Err(unreadable("event.instance_code", "missing"));
        }
        let body = if revert {
            EventBody::Revert(RevertEvent {
                kind,
                operate_time: opt_int(e, "event.operate_time", "operate_time")?,
            })
        } else {
            match (kind, event_type.as_str()) {
                (ApprovalKind::Out, _) => EventBody::Out(read_out(e)?),
                (ApprovalKind::Leave, t) => {
                    EventBody::Leave(read_leave(e, t == "leave_approvalV2")?)
                }
                (ApprovalKind::Overtime, _) => EventBody::Overtime(read_overtime(e)?),
            }
        };
        Ok(ApprovalEvent { common, body })
    }

    /// The user and local dates of an approval event (None for reverts and other types).
    pub fn span(&self) -> Option<Span> {
        let (approval, ranges): (&Approval, Vec<&LocalRange>) = match &self.body {
            EventBody::Out(o) => (&o.approval, vec![]),
            EventBody::Leave(l) => (&l.approval, l.range.iter().chain(&l.detail).collect()),
            EventBody::Overtime(w) => (&w.approval, w.time_range.iter().collect()),
            EventBody::Revert(_) | EventBody::Other => return None,
        };
        let dates: Vec<NaiveDate> = [approval.start_local.as_str(), &approval.end_local]
            .into_iter()
            .chain(ranges.iter().flat_map(|r| [r.start.as_str(), &r.end]))
            .filter_map(|t| local_time(t).map(|t| t.date()))
            .collect();
        Some(Span {
            applicant: approval.applicant.clone(),
            first: *dates.iter().min()?,
            last: *dates.iter().max()?,
        })
    }
}

fn read_ts(body: &Json<'_>) -> Result<Option<DateTime<Utc>>, Unreadable> {
    let Some(ts) = body.get("ts").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let text: std::borrow::Cow<'_, str> = match ts {
        Json::String(s) => s.trim().into(),
        Json::Number(n) => n.to_string().into(),
        _ => return Err(unreadable("ts", "neither a number nor a string")),
    };
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || unreadable("ts", format!("{text:?} is not seconds since the epoch"));
    let (secs, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Nanoseconds: the first nine digits of the fraction, padded with zeros.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .map(Some)
        .ok_or_else(bad)
}

fn read_applicant(e: &Json<'_>) -> Result<Applicant, Unreadable> {
    Ok(Applicant {
        user_id: match opt_text(e, "user_id")? {
            Some(id) => Some(id),
            None => opt_text(e, "employee_id")?,
        },
        open_id: opt_text(e, "open_id")?,
    })
}

fn required_local(e: &Json<'_>, key: &str) -> Result<String, Unreadable> {
    let field = format!("event.{key}");
    let text = opt_text(e, key)?.ok_or_else(|| unreadable(&field, "missing"))?;
    if local_time(&text).is_none() {
        return Err(unreadable(
            &field,
            format!("{text:?} is not a local time written YYYY-MM-DD HH:MM:SS"),
        ));
    }
    Ok(text)
}

/// The shared fields; `prefix` names the kind's own (`out_start_time`, `leave_interval`, …).
fn read_approval(e: &Json<'_>, prefix: &str) -> Result<Approval, Unreadable> {
    let interval = format!("{prefix}_interval");
    Ok(Approval {
        applicant: read_applicant(e)?,
        process_start: opt_int(e, "event.start_time", "start_time")?,
        process_end: opt_int(e, "event.end_time", "end_time")?,
        start_local: required_local(e, &format!("{prefix}_start_time"))?,
        end_local: required_local(e, &format!("{prefix}_end_time"))?,
        interval_seconds: opt_int(e, &format!("event.{interval}"), &interval)?,
    })
}

fn read_out(e: &Json<'_>) -> Result<OutEvent, Unreadable> {
    Ok(OutEvent {
        approval: read_approval(e, "out")?,
        unit: opt_text(e, "out_unit")?,
        name_key: opt_text(e, "out_name")?,
        i18n: read_i18n(e.get("i18n_resources"))?,
        reason: opt_text(e, "out_reason")?,
        image: opt_text(e, "out_image")?,
    })
}

/// The family, feeding and pregnancy fields of a leave, kept as text (and as text columns of the
/// same names in `leave_events`).
pub const LEAVE_EXTRA: [&str; 9] = [
    "leave_difficult_labour",
    "leave_family_relation_type",
    "leave_feeding_arrive_late",
    "leave_feeding_leave_early",
    "leave_feeding_rest_daily",
    "leave_infant_num",
    "leave_pregnancy_age",
    "leave_pregnancy_check_up",
    "leave_premarital_check_up",
];

fn read_leave(e: &Json<'_>, v2: bool) -> Result<LeaveEvent, Unreadable> {
    let unit = e.get("leave_unit").filter(|v| !v.is_null());
    let (unit_code, unit_name) = match unit {
        None => (None, None),
        Some(Json::Number(_)) => (opt_int(e, "event.leave_unit", "leave_unit")?, None),
        Some(Json::String(s)) if s.trim().parse::<i64>().is_ok() => {
            (opt_int(e, "event.leave_unit", "leave_unit")?, None)
        }
        Some(Json::String(s)) => (None, Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(_) => return Err(unreadable("event.leave_unit", "neither a number nor text")),
    };
    let mut extra = BTreeMap::new();
    for key in LEAVE_EXTRA {
        if let Some(value) = scalar_text(e, key)? {
            extra.insert(key, value);
        }
    }
    Ok(LeaveEvent {
        v2,
        approval: read_approval(e, "leave")?,
        leave_type: opt_text(e, "leave_type")?,
        unit_code,
        unit_name,
        name_key: opt_text(e, "leave_name")?,
        i18n: read_i18n(e.get("i18n_resources"))?,
        reason: opt_text(e, "leave_reason")?,
        range: read_ranges(e.get("leave_range"), "event.leave_range")?,
        detail: read_ranges(e.get("leave_detail"), "event.leave_detail")?,
        certification: read_text_list(e.get("leave_certification"), "event.leave_certification")?,
        origin_instance_code: opt_text(e, "origin_instance_code")?,
        extra,
    })
}

fn read_overtime(e: &Json<'_>) -> Result<OvertimeEvent, Unreadable> {
    let time_range = match e.get("time_range").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let field = format!("event.time_range[{i}]");
                let get = |key: &str| {
                    item.get(key)
                        .and_then(Json::as_str)
                        .filter(|t| local_time(t).is_some())
                        .map(str::to_owned)
                        .ok_or_else(|| unreadable(&field, format!("{key} is not a local time")))
                };
                Ok(LocalRange {
                    start: get("work_start_time")?,
                    end: get("work_end_time")?,
                })
            })
            .collect::<Result<_, Unreadable>>()?,
        Some(_) => return Err(unreadable("event.time_range", "not a list")),
    };
    let detail = match e.get("work_detail").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let field = format!("event.work_detail[{i}]");
                if !item.is_object() {
                    return Err(unreadable(&field, "not an object"));
                }
                let day = |key: &str| {
                    opt_text(item, key)?.ok_or_else(|| unreadable(&field, format!("{key} missing")))
                };
                Ok(WorkDay {
                    start: day("start")?,
                    end: day("end")?,
                    rule_associated: opt_int(
                        item,
                        &format!("{field}.rule_associated"),
                        "rule_associated",
                    )?,
                    interval_seconds: opt_int(item, &format!("{field}.interval"), "interval")?,
                })
            })
            .collect::<Result<_, Unreadable>>()?,
        Some(_) => return Err(unreadable("event.work_detail", "not a list")),
    };
    Ok(OvertimeEvent {
        approval: read_approval(e, "work")?,
        time_range,
        detail,
        multi_imitate_users: read_text_list(
            e.get("work_multi_imitate_users"),
            "event.work_multi_imitate_users",
        )?,
        work_type: scalar_text(e, "work_type")?,
        reason: opt_text(e, "work_reason")?,
    })
}

/// A local wall time as the pages write them.
pub fn local_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    // The usual form, without a format string to interpret on every call.
    if let Some(time) = crate::tz::parse_wall_time(text) {
        return Some(time);
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .ok()
}

/// A text field: a string ("" is None); anything else but null is unreadable.
fn opt_text(e: &Json<'_>, key: &str) -> Result<Option<String>, Unreadable> {
    match e.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.to_string())),
        Some(_) => Err(unreadable(&format!("event.{key}"), "not a string")),
    }
}

/// A field kept as text whatever its scalar form (numbers written as they came).
fn scalar_text(e: &Json<'_>, key: &str) -> Result<Option<String>, Unreadable> {
    match e.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.to_string())),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(Json::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(unreadable(&format!("event.{key}"), "not a scalar")),
    }
}

/// An integer given as a number or a decimal string ("" and null are None).
fn opt_int(e: &Json<'_>, field: &str, key: &str) -> Result<Option<i64>, Unreadable> {
    match e.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| unreadable(field, format!("{n} is not a whole number"))),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Json::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| unreadable(field, format!("{s:?} is not a whole number"))),
        Some(_) => Err(unreadable(field, "neither a number nor a string")),
    }
}

fn read_text_list(value: Option<&Json<'_>>, field: &str) -> Result<Vec<String>, Unreadable> {
    match value {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|item| match item {
                Json::String(s) => Ok(s.to_string()),
                Json::Number(n) => Ok(n.to_string()),
                other => Ok(other.to_string()),
            })
            .collect(),
        Some(Json::String(s)) if s.trim().is_empty() || s.trim() == "[]" => Ok(Vec::new()),
        Some(_) => Err(unreadable(field, "not a list")),
    }
}

/// `leave_range` / `leave_detail`: `[[start, end], …]` as JSON or as one string.
fn read_ranges(value: Option<&Json<'_>>, field: &str) -> Result<Vec<LocalRange>, Unreadable> {
    let pair = |start: &str, end: &str| -> Result<LocalRange, Unreadable> {
        for t in [start, end] {
            if local_time(t).is_none() {
                return Err(unreadable(field, format!("{t:?} is not a local time")));
            }
        }
        Ok(LocalRange {
            start: start.trim().to_owned(),
            end: end.trim().to_owned(),
        })
    };
    match value {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|item| match item.as_array() {
                Some([Json::String(a), Json::String(b)]) => pair(a, b),
                _ => Err(unreadable(
                    field,
                    "an element is not a [start, end] pair of strings",
                )),
            })
            .collect(),
        Some(Json::String(text)) => {
            let inner = text.trim();
            if inner.is_empty() || inner == "[]" {
                return Ok(Vec::new());
            }
            let inner = inner
                .strip_prefix("[[")
                .and_then(|t| t.strip_suffix("]]"))
                .ok_or_else(|| unreadable(field, "text that is not [[start,end],…]"))?;
            inner
                .split("],[")
                .map(|p| {
                    let p = p.trim().trim_start_matches('[').trim_end_matches(']');
                    let (a, b) = p
                        .split_once(',')
                        .ok_or_else(|| unreadable(field, format!("{p:?} is not start,end")))?;
                    pair(a, b)
                })
                .collect()
        }
        Some(_) => Err(unreadable(field, "neither a list nor text")),
    }
}

/// `i18n_resources` in any of its three forms.
fn read_i18n(value: Option<&Json<'_>>) -> Result<I18n, Unreadable> {
    const FIELD: &str = "event.i18n_resources";
    let entry_of = |v: &Json<'_>| -> Result<I18nEntry, Unreadable> {
        let texts = v
            .get("texts")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(I18nEntry {
            locale: v
                .get("locale")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned(),
            is_default: v.get("is_default").and_then(Json::as_bool).unwrap_or(false),
            texts,
        })
    };
    match value {
        None | Some(Json::Null) => Ok(I18n::default()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|item| match item {
                Json::Object(_) => entry_of(item),
                Json::String(s) => {
                    let parsed = Json::parse(s).map_err(|_| {
                        unreadable(FIELD, "an element is a string that is not a JSON object")
                    })?;
                    if !parsed.is_object() {
                        return Err(unreadable(
                            FIELD,
                            "an element is a string that is not a JSON object",
                        ));
                    }
                    entry_of(&parsed)
                }
                _ => Err(unreadable(
                    FIELD,
                    "an element is neither an object nor a string",
                )),
            })
            .collect::<Result<_, _>>()
            .map(I18n),
        Some(Json::String(text)) => {
            if let Ok(parsed @ Json::Array(_)) = Json::parse(text) {
                return read_i18n(Some(&parsed));
            }
            braces::entries(text).map(I18n).ok_or_else(|| {
                unreadable(
                    FIELD,
                    "text that is not [{is_default=…,locale=…,texts={key=text}}]",
                )
            })
        }
        Some(_) => Err(unreadable(FIELD, "neither a list nor text")),
    }
}

/// The `[{is_default=true,locale=zh_cn,texts={@i18n@…=事假}}, …]` text form (a Java map's
/// `toString`): keys and values unquoted, `=` between them, `,` between pairs, `{}` for maps.
mod braces {
    use std::collections::BTreeMap;

    use super::I18nEntry;

    enum Node {
        Text(String),
        Map(Vec<(String, Node)>),
    }

    struct Parser<'a> {
        rest: &'a str,
    }

    impl Parser<'_> {
        fn skip_space(&mut self) {
            self.rest = self.rest.trim_start();
        }

        fn eat(&mut self, c: char) -> bool {
            self.skip_space();
            if let Some(rest) = self.rest.strip_prefix(c) {
                self.rest = rest;
                true
            } else {
                false
            }
        }

        /// Text up to (not including) the first of `stops` at this level.
        fn text(&mut self, stops: &[char]) -> String {
            let end = self
                .rest
                .find(|c| stops.contains(&c))
                .unwrap_or(self.rest.len());
            let (text, rest) = self.rest.split_at(end);
            self.rest = rest;
            text.trim().to_owned()
        }

        fn map(&mut self) -> Option<Vec<(String, Node)>> {
            if !self.eat('{') {
                return None;
            }
            let mut pairs = Vec::new();
            if self.eat('}') {
                return Some(pairs);
            }
            loop {
                let key = self.text(&['=', ',', '}']);
                if !self.eat('=') || key.is_empty() {
                    return None;
                }
                self.skip_space();
                let value = if self.rest.starts_with('{') {
                    Node::Map(self.map()?)
                } else {
                    Node::Text(self.text(&[',', '}']))
                };
                pairs.push((key, value));
                if self.eat(',') {
                    continue;
                }
                return self.eat('}').then_some(pairs);
            }
        }
    }

    pub(super) fn entries(text: &str) -> Option<Vec<I18nEntry>> {
        let mut parser = Parser { rest: text.trim() };
        if !parser.eat('[') {
            return None;
        }
        let mut entries = Vec::new();
        if parser.eat(']') {
            return Some(entries);
        }
        loop {
            let mut entry = I18nEntry::default();
            for (key, value) in parser.map()? {
                match (key.as_str(), value) {
                    ("locale", Node::Text(t)) => entry.locale = t,
                    ("is_default", Node::Text(t)) => entry.is_default = t == "true",
                    ("texts", Node::Map(texts)) => {
                        entry.texts = texts
                            .into_iter()
                            .filter_map(|(k, v)| match v {
                                Node::Text(t) => Some((k, t)),
                                Node::Map(_) => None,
                            })
                            .collect::<BTreeMap<_, _>>();
                    }
                    _ => {}
                }
            }
            entries.push(entry);
            if parser.eat(',') {
                continue;
            }
            return (parser.eat(']') && parser.rest.trim().is_empty()).then_some(entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn v1(event: Value) -> Value {
        json!({"ts": "1502199207.7171419", "uuid": "u", "type": "event_callback", "event": event})
    }

    #[test]
    fn reads_the_out_page_example() {
        let body = v1(json!({
            "app_id": "cli_9e28cb7ba56a100e",
            "i18n_resources": ["{\"is_default\":true,\"locale\":\"zh_cn\",\"texts\":{\"@i18n@someKey\":\"中文文案\"}}"],
            "instance_code": "59558CEE", "approval_code": "48558CEF", "out_image": "",
            "out_interval": 10800, "out_name": "@i18n@someKey", "out_reason": "外出事由",
            "out_start_time": "2020-05-15 15:00:00", "out_end_time": "2020-05-15 18:00:00",
            "out_unit": "HOUR", "start_time": 1589527346, "end_time": 1589527354,
            "tenant_key": "2d520d3b434f175e", "type": "out_approval", "open_id": "ou_xxx",
            "user_id": "g6964gd3"
        }));
        let event = ApprovalEvent::read(&body).unwrap();
        assert_eq!(event.common.instance_code.as_deref(), Some("59558CEE"));
        assert_eq!(
            event.common.event_time.unwrap().timestamp_nanos_opt(),
            Some(1_502_199_207_717_141_900)
        );
        let EventBody::Out(out) = &event.body else {
            panic!("{event:?}")
        };
        assert_eq!(out.approval.interval_seconds, Some(10800));
        assert_eq!(out.i18n.resolve("@i18n@someKey"), Some("中文文案"));
        assert_eq!(out.image, None);
        assert_eq!(out.approval.applicant.user_id.as_deref(), Some("g6964gd3"));
        let span = event.span().unwrap();
        assert_eq!(
            (span.first, span.last),
            (date(2020, 5, 15), date(2020, 5, 15))
        );
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn reads_the_leave_v2_page_example_with_its_text_forms() {
        let body = v1(json!({
            "app_id": "cli", "approval_code": "A", "instance_code": "CEF48CEE",
            "start_time": 1589527346, "end_time": 1589527354,
            "i18n_resources": "[{is_default=true,locale=zh_cn,texts={@i18n@7276381556766212099=事假}}, {is_default=false,locale=en_us,texts={@i18n@7276381556766212099=Personal leave}}]",
            "leave_name": "@i18n@7276381556766212099", "leave_certification": [],
            "leave_detail": "[[2024-09-05 13:30:00,2024-09-05 18:00:00],[2024-09-06 09:00:00,2024-09-06 18:00:00]]",
            "leave_difficult_labour": "", "leave_family_relation_type": "",
            "leave_start_time": "2024-09-05 00:00:00", "leave_end_time": "2024-09-07 00:00:00",
            "leave_feeding_arrive_late": 0, "leave_interval": "129600",
            "leave_range": [["2024-09-05 13:30:00", "2024-09-05 18:00:00"]],
            "leave_reason": "请假审批", "leave_unit": "HALF_DAY", "user_id": "g6964xxx",
            "open_id": "ou_xxx", "origin_instance_code": "", "tenant_key": "t",
            "type": "leave_approvalV2"
        }));
        let event = ApprovalEvent::read(&body).unwrap();
        let EventBody::Leave(leave) = &event.body else {
            panic!("{event:?}")
        };
        assert!(leave.v2);
        assert_eq!(
            leave.i18n.resolve("@i18n@7276381556766212099"),
            Some("事假")
        );
        assert_eq!(
            leave.i18n.text("@i18n@7276381556766212099", "en_us"),
            Some("Personal leave")
        );
        assert_eq!(leave.approval.interval_seconds, Some(129_600));
        assert_eq!(leave.unit_name.as_deref(), Some("HALF_DAY"));
        assert_eq!(leave.detail.len(), 2);
        assert_eq!(leave.detail[1].end, "2024-09-06 18:00:00");
        assert_eq!(leave.range.len(), 1);
        assert_eq!(leave.origin_instance_code, None);
        assert_eq!(
            leave
                .extra
                .get("leave_feeding_arrive_late")
                .map(String::as_str),
            Some("0")
        );
        let span = event.span().unwrap();
        assert_eq!(
            (span.first, span.last),
            (date(2024, 9, 5), date(2024, 9, 7))
        );
    }

    #[test]
    fn reads_v1_leaves_overtime_and_reverts() {
        let leave = v1(
            json!({"instance_code": "I", "employee_id": "e1", "leave_type": "事假",
            "leave_start_time": "2024-09-05 12:00:00", "leave_end_time": "2024-09-07 00:00:00",
            "leave_interval": 129600, "leave_unit": 2, "type": "leave_approval"}),
        );
        let EventBody::Leave(l) = ApprovalEvent::read(&leave).unwrap().body else {
            panic!()
        };
        assert_eq!(
            (l.unit_code, l.approval.applicant.user_id.as_deref()),
            (Some(2), Some("e1"))
        );
        let work = v1(
            json!({"instance_code": "W", "employee_id": "e2", "type": "work_approval",
            "time_range": [{"work_start_time": "2018-12-01 12:00:00", "work_end_time": "2018-12-02 12:00:00"}],
            "work_detail": [{"start": "2018-12-01 00:00", "end": "2018-12-01 00:00", "rule_associated": 2, "interval": 43200}],
            "work_start_time": "2018-12-01 12:00:00", "work_end_time": "2018-12-02 12:00:00",
            "work_interval": "7200", "work_multi_imitate_users": null, "work_type": "xxx"}),
        );
        let event = ApprovalEvent::read(&work).unwrap();
        let EventBody::Overtime(w) = &event.body else {
            panic!()
        };
        assert_eq!(w.detail[0].interval_seconds, Some(43200));
        assert!(w.multi_imitate_users.is_empty());
        let span = event.span().unwrap();
        assert_eq!(
            (span.first, span.last),
            (date(2018, 12, 1), date(2018, 12, 2))
        );
        let revert = v1(
            json!({"instance_code": "I", "operate_time": "1564590532", "type": "leave_approval_revert"}),
        );
        let event = ApprovalEvent::read(&revert).unwrap();
        assert_eq!(
            event.body,
            EventBody::Revert(RevertEvent {
                kind: ApprovalKind::Leave,
                operate_time: Some(1_564_590_532)
            })
        );
        assert_eq!(event.span(), None);
        let other = json!({"schema": "2.0", "header": {"event_type": "im.message.receive_v1", "create_time": "1700000000000"}, "event": {"x": 1}});
        let event = ApprovalEvent::read(&other).unwrap();
        assert_eq!(event.body, EventBody::Other);
        assert_eq!(event.common.event_time.unwrap().timestamp(), 1_700_000_000);
    }

    #[test]
    fn what_cannot_be_read_names_its_field() {
        let cases = [
            (
                json!({"type": "out_approval", "out_start_time": "x"}),
                "event.instance_code",
            ),
            (
                json!({"type": "out_approval", "instance_code": "I", "out_start_time": "15:00", "out_end_time": "2020-05-15 18:00:00"}),
                "event.out_start_time",
            ),
            (
                json!({"type": "leave_approvalV2", "instance_code": "I", "leave_start_time": "2024-09-05 00:00:00",
                       "leave_end_time": "2024-09-07 00:00:00", "leave_interval": "a day"}),
                "event.leave_interval",
            ),
            (
                json!({"type": "leave_approvalV2", "instance_code": "I", "leave_start_time": "2024-09-05 00:00:00",
                       "leave_end_time": "2024-09-07 00:00:00", "leave_range": "2024-09-05"}),
                "event.leave_range",
            ),
            (
                json!({"type": "leave_approvalV2", "instance_code": "I", "leave_start_time": "2024-09-05 00:00:00",
                       "leave_end_time": "2024-09-07 00:00:00", "i18n_resources": "{locale=zh_cn"}),
                "event.i18n_resources",
            ),
            (
                json!({"type": "work_approval", "instance_code": "I", "work_start_time": "2018-12-01 12:00:00",
                       "work_end_time": "2018-12-02 12:00:00", "work_detail": [{"start": "2018-12-01 00:00"}]}),
                "event.work_detail[0]",
            ),
            (
                json!({"type": "out_approval_revert", "instance_code": "I", "operate_time": [1]}),
                "event.operate_time",
            ),
        ];
        for (event, field) in cases {
            let err = ApprovalEvent::read(&v1(event.clone())).unwrap_err();
            assert_eq!(err.field, field, "{event}: {err}");
        }
        let bad_ts = json!({"ts": "yesterday", "event": {"type": "x"}});
        assert_eq!(ApprovalEvent::read(&bad_ts).unwrap_err().field, "ts");
    }

    #[test]
    fn the_text_form_of_i18n_resources_reads_nested_and_empty_maps() {
        assert_eq!(braces::entries("[]"), Some(vec![]));
        let entries = braces::entries("[{is_default=true, locale=zh_cn, texts={}}]").unwrap();
        assert!(entries[0].is_default && entries[0].texts.is_empty());
        assert_eq!(braces::entries("[{locale=zh_cn}"), None);
        assert_eq!(braces::entries("[{locale=zh_cn}] trailing"), None);
    }
}
