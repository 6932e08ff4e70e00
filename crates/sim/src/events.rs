//! The approval events the simulated tenant pushes: the public settings and reports of the
//! webhook and long-connection pushes, and the v1 event bodies (`out_approval`,
//! `leave_approval` + `leave_approvalV2`, `work_approval` and the three reverts) built from the
//! very records the query API serves.
//!
//! Invariants:
//! - An approval event is built from the JSON the query API serves for that approval, so its
//!   user (`user_id` / `employee_id` = the employee_id, `open_id`), wall-clock times, interval
//!   and reason agree with the query answer, and `instance_code` is the `approval_id`.
//! - [`SimTenant::approval_events`] is a pure function of the config, the overlay and the dates:
//!   uuids, `ts`, instance times and the odd wire forms all come from stable hashes of (seed,
//!   approval id, event type). Only [`SimTenant::revoke`] mints a fresh (random) uuid.
//! - Every approval gives its events once; trips give none; a leave gives `leave_approval` and
//!   `leave_approvalV2` (different uuids, same `instance_code`); status 4 adds the revert.
//! - The odd forms the pages show are chosen per event by hash, so a large enough set holds
//!   each: numbers sent as strings, `i18n_resources` as JSON strings or as non-JSON text,
//!   `leave_range` / `leave_detail` as `[start, end]` pairs or as one string.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone};
use chrono_tz::Tz;
use serde_json::{Value, json};

use attendance_feishu::event::{
    LEAVE_APPROVAL, LEAVE_APPROVAL_REVERT, LEAVE_APPROVAL_V2, OUT_APPROVAL, OUT_APPROVAL_REVERT,
    WORK_APPROVAL, WORK_APPROVAL_REVERT,
};
use attendance_feishu::frame::ConnectionConfig;

use crate::data::{Kind, SimUser, format_time, hash_of};
use crate::server::TenantState;
use crate::{SimConfig, SimTenant};

/// How the tenant pushes events (part of [`SimConfig`]).
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// The body's `token` (the app's Verification Token).
    pub verification_token: String,
    /// None = plain JSON bodies without signature headers; Some = `{"encrypt":…}` bodies with
    /// the `X-Lark-Request-Timestamp` / `-Nonce` / `X-Lark-Signature` headers.
    pub encrypt_key: Option<String>,
    /// Waits before each retry of a webhook delivery (the platform's 4 retries by default).
    pub retry_delays: Vec<Duration>,
    /// Every retry delay is divided by this (1.0 = real time; tests use e.g. 1000.0).
    pub time_scale: f64,
    /// A delivery not answered HTTP 200 within this has failed (not scaled).
    pub ack_timeout: Duration,
    /// Share of events (0..=1) delivered a second time as a separate request (fresh nonce,
    /// timestamp and signature, same uuid).
    pub duplicate_share: f64,
    /// Deliver in a shuffled (seeded) order.
    pub reorder: bool,
    /// Webhook requests in flight at once.
    pub concurrency: usize,
    pub long_connection: LongConnectionSettings,
}

impl Default for EventSettings {
    fn default() -> EventSettings {
        EventSettings {
            verification_token: "sim-verification-token".to_owned(),
            encrypt_key: None,
            retry_delays: vec![
                Duration::from_secs(15),
                Duration::from_secs(5 * 60),
                Duration::from_secs(3600),
                Duration::from_secs(6 * 3600),
            ],
            time_scale: 1.0,
            ack_timeout: Duration::from_secs(3),
            duplicate_share: 0.0,
            reorder: false,
            concurrency: 8,
            long_connection: LongConnectionSettings::default(),
        }
    }
}

/// How the long connection's server behaves ([`SimTenant::set_long_connection`] changes it).
#[derive(Clone, Debug)]
pub struct LongConnectionSettings {
    /// Sent in the discovery answer and as every pong's payload.
    pub config: ConnectionConfig,
    /// Payloads longer than this are split into frames with `sum` / `seq` headers (same
    /// `message_id`).
    pub fragment_size: Option<usize>,
    /// An event frame not acked with code 200 within this is pushed again (new message).
    pub repush_after: Duration,
    /// Every WebSocket upgrade is refused with this.
    pub refuse_handshake: Option<HandshakeRefusal>,
    /// The server closes each socket after sending this many event frames on it.
    pub close_after_frames: Option<usize>,
}

impl Default for LongConnectionSettings {
    fn default() -> LongConnectionSettings {
        LongConnectionSettings {
            config: ConnectionConfig::default(),
            fragment_size: None,
            repush_after: Duration::from_secs(3),
            refuse_handshake: None,
            close_after_frames: None,
        }
    }
}

/// A refused WebSocket upgrade: the `Handshake-Status` (e.g. 403, or 514 with
/// `auth_errcode: Some(AUTH_EXCEED_CONN_LIMIT)`) and the `Handshake-Autherrcode`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandshakeRefusal {
    pub status: u16,
    pub auth_errcode: Option<i64>,
}

/// One pushed event.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// The v1 `uuid` (32 lowercase hex digits).
    pub id: String,
    /// `event.type`, one of `APPROVAL_EVENT_TYPES`.
    pub event_type: String,
    /// The approval_id the query API lists the approval under.
    pub instance_code: String,
    /// The whole plaintext v1 body `{ts, uuid, token, type: "event_callback", event}`.
    pub body: Value,
}

/// What a webhook push achieved.
#[derive(Clone, Debug, Default)]
pub struct WebhookReport {
    /// Ids answered HTTP 200 in time at least once (each once, in order of first ack).
    pub acked: Vec<String>,
    /// Ids never answered HTTP 200, after all retries.
    pub gave_up: Vec<String>,
    /// HTTP requests made (duplicates and retries included).
    pub attempts: u64,
    /// HTTP status → count; timeouts and connection errors count under 0.
    pub answers: BTreeMap<u16, u64>,
}

/// What the long connection has done since start.
#[derive(Clone, Debug, Default)]
pub struct LongConnectionStats {
    pub endpoint_calls: u64,
    pub handshakes_refused: u64,
    /// WebSocket connections established.
    pub connections: u64,
    /// Event data frames sent, fragments and re-pushes included.
    pub frames_sent: u64,
    pub repushes: u64,
    pub pings: u64,
    pub acks_ok: u64,
    pub acks_failed: u64,
    /// Event ids acked with code 200.
    pub acked: BTreeSet<String>,
    /// Sockets the server closed after `close_after_frames`.
    pub closed_by_server: u64,
}

// Stream tags (data.rs lists who uses which).
const TAG_UUID: u64 = 0x60;
const TAG_FORM: u64 = 0x61;
const TAG_TIMES: u64 = 0x62;
const TAG_TENANT: u64 = 0x63;
const TAG_APPROVAL_CODE: u64 = 0x64;
const TAG_I18N: u64 = 0x65;
pub(crate) const TAG_DUPLICATE: u64 = 0x66;
pub(crate) const TAG_REORDER: u64 = 0x67;

/// A stable hash of a string (std's hasher is not stable across releases).
pub(crate) fn hash_text(text: &str) -> u64 {
    let bytes = text.as_bytes();
    bytes
        .chunks(8)
        .fold(hash_of(&[bytes.len() as u64]), |acc, chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            hash_of(&[acc, u64::from_le_bytes(word)])
        })
}

/// 32 lowercase hex digits.
pub(crate) fn hex32(high: u64, low: u64) -> String {
    format!("{high:016x}{low:016x}")
}

/// Seconds since the epoch now, with the fraction, as the `ts` of an event.
fn ts_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:07}", now.as_secs(), now.subsec_nanos() / 100)
}

/// What every event of one tenant shares.
pub(crate) struct Issuer<'a> {
    seed: u64,
    app_id: &'a str,
    token: &'a str,
    tenant_key: String,
}

impl Issuer<'_> {
    pub(crate) fn new(config: &SimConfig) -> Issuer<'_> {
        Issuer {
            seed: config.seed,
            app_id: &config.app_id,
            token: &config.events.verification_token,
            tenant_key: format!("{:016x}", hash_of(&[config.seed, TAG_TENANT])),
        }
    }

    /// The approval definition code of a kind: stable per seed, shaped like the platform's.
    fn approval_code(&self, kind: Kind) -> String {
        let high = hash_of(&[self.seed, TAG_APPROVAL_CODE, kind as u64]);
        let low = hash_of(&[self.seed, TAG_APPROVAL_CODE, kind as u64, 1]);
        let hex = format!("{high:016X}{low:016X}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// The deterministic uuid of an approval's event of `event_type`.
    fn uuid(&self, approval_id: &str, event_type: &str) -> String {
        let high = hash_of(&[
            self.seed,
            TAG_UUID,
            hash_text(approval_id),
            hash_text(event_type),
        ]);
        hex32(high, hash_of(&[high, TAG_UUID]))
    }

    /// The bits that choose an event's odd wire forms.
    fn form(&self, uuid: &str) -> u64 {
        hash_of(&[self.seed, TAG_FORM, hash_text(uuid)])
    }

    fn event(
        &self,
        uuid: String,
        ts: String,
        event_type: &str,
        instance_code: &str,
        event: Value,
    ) -> SimEvent {
        let body = json!({
            "ts": ts,
            "uuid": uuid,
            "token": self.token,
            "type": "event_callback",
            "event": event,
        });
        SimEvent {
            id: uuid,
            event_type: event_type.to_owned(),
            instance_code: instance_code.to_owned(),
            body,
        }
    }

    /// The revert event of an approval of `kind`, revoked at `operate_time` (unix seconds).
    pub(crate) fn revert(
        &self,
        kind: Kind,
        approval_id: &str,
        uuid: String,
        ts: String,
        operate_time: i64,
    ) -> Option<SimEvent> {
        let event_type = match kind {
            Kind::Outs => OUT_APPROVAL_REVERT,
            Kind::Leaves => LEAVE_APPROVAL_REVERT,
            Kind::OvertimeWorks => WORK_APPROVAL_REVERT,
            Kind::Trips => return None,
        };
        let form = self.form(&uuid);
        let event = json!({
            "app_id": self.app_id,
            "instance_code": approval_id,
            "approval_code": self.approval_code(kind),
            "operate_time": number(operate_time, form & 3 == 0),
            "tenant_key": self.tenant_key,
            "type": event_type,
        });
        Some(self.event(uuid, ts, event_type, approval_id, event))
    }

    /// A revert minted now (fresh uuid), for [`SimTenant::revoke`].
    pub(crate) fn revert_now(&self, kind: Kind, approval_id: &str) -> Option<SimEvent> {
        let uuid = hex32(rand::random(), rand::random());
        let now = chrono::Utc::now().timestamp();
        self.revert(kind, approval_id, uuid, ts_now(), now)
    }

    /// The events of one approval as the query API serves it (`record`), for `user`: its
    /// approval event(s), then the revert when `revoked`. None for trips.
    pub(crate) fn approval(
        &self,
        kind: Kind,
        user: &SimUser,
        approval_id: &str,
        record: &Value,
        revoked: bool,
    ) -> Vec<SimEvent> {
        let approval = Approval::read(self, kind, user, approval_id, record);
        let mut events = match kind {
            Kind::Outs => vec![self.out_approval(&approval)],
            Kind::Leaves => vec![self.leave_approval(&approval), self.leave_v2(&approval)],
            Kind::OvertimeWorks => vec![self.work_approval(&approval)],
            Kind::Trips => return Vec::new(),
        };
        if revoked {
            let revert_type = match kind {
                Kind::Outs => OUT_APPROVAL_REVERT,
                Kind::Leaves => LEAVE_APPROVAL_REVERT,
                _ => WORK_APPROVAL_REVERT,
            };
            let uuid = self.uuid(approval_id, revert_type);
            let later = hash_of(&[self.seed, TAG_TIMES, hash_text(&uuid)]);
            let operate_time = approval.passed + 3600 + (later % 86_400) as i64;
            let ts = format!("{}.{:07}", operate_time + 1, (later >> 20) % 10_000_000);
            events.extend(self.revert(kind, approval_id, uuid, ts, operate_time));
        }
        events
    }

    fn out_approval(&self, approval: &Approval<'_>) -> SimEvent {
        let (uuid, ts, form) = self.identity(approval, OUT_APPROVAL);
        let (key, locales) = approval.i18n(self);
        let event = json!({
            "app_id": self.app_id,
            "i18n_resources": i18n_json_strings(&key, &locales),
            "instance_code": approval.id,
            "approval_code": self.approval_code(Kind::Outs),
            "out_image": "",
            "out_interval": number(approval.interval, form & 3 == 0),
            "out_name": key,
            "out_reason": approval.reason,
            "out_start_time": approval.start_text,
            "out_end_time": approval.end_text,
            "out_unit": unit_text(approval.unit),
            "start_time": approval.applied,
            "end_time": approval.passed,
            "tenant_key": self.tenant_key,
            "type": OUT_APPROVAL,
            "open_id": approval.user.open_id,
            "user_id": approval.user.employee_id,
        });
        self.event(uuid, ts, OUT_APPROVAL, approval.id, event)
    }

    fn leave_approval(&self, approval: &Approval<'_>) -> SimEvent {
        let (uuid, ts, form) = self.identity(approval, LEAVE_APPROVAL);
        let event = json!({
            "app_id": self.app_id,
            "approval_code": self.approval_code(Kind::Leaves),
            "instance_code": approval.id,
            "employee_id": approval.user.employee_id,
            "open_id": approval.user.open_id,
            "start_time": approval.applied,
            "end_time": approval.passed,
            "leave_type": approval.name_ch,
            "leave_start_time": approval.start_text,
            "leave_end_time": approval.end_text,
            "leave_interval": number(approval.interval, form & 3 == 0),
            "leave_unit": leave_unit_number(approval.unit),
            "leave_reason": approval.reason,
            "tenant_key": self.tenant_key,
            "type": LEAVE_APPROVAL,
        });
        self.event(uuid, ts, LEAVE_APPROVAL, approval.id, event)
    }

    fn leave_v2(&self, approval: &Approval<'_>) -> SimEvent {
        let (uuid, ts, form) = self.identity(approval, LEAVE_APPROVAL_V2);
        let (key, locales) = approval.i18n(self);
        let i18n_resources = if form >> 2 & 1 == 0 {
            Value::String(i18n_text(&key, &locales))
        } else {
            i18n_json_strings(&key, &locales)
        };
        let ranges = day_ranges(approval.start, approval.end, (9, 18));
        let ranges = if form >> 3 & 1 == 0 {
            Value::String(ranges_text(&ranges))
        } else {
            json!(ranges)
        };
        let event = json!({
            "app_id": self.app_id,
            "approval_code": self.approval_code(Kind::Leaves),
            "instance_code": approval.id,
            "start_time": approval.applied,
            "end_time": approval.passed,
            "i18n_resources": i18n_resources,
            "leave_name": key,
            "leave_certification": [],
            "leave_detail": ranges.clone(),
            "leave_difficult_labour": "",
            "leave_family_relation_type": "",
            "leave_start_time": approval.start_text,
            "leave_end_time": approval.end_text,
            "leave_feeding_arrive_late": 0,
            "leave_feeding_leave_early": 0,
            "leave_feeding_rest_daily": 0,
            "leave_infant_num": "",
            "leave_interval": number(approval.interval, form & 3 == 0),
            "leave_pregnancy_age": "",
            "leave_pregnancy_check_up": "",
            "leave_premarital_check_up": "",
            "leave_range": ranges,
            "leave_reason": approval.reason,
            "leave_unit": unit_text(approval.unit),
            "user_id": approval.user.employee_id,
            "open_id": approval.user.open_id,
            "origin_instance_code": "",
            "tenant_key": self.tenant_key,
            "type": LEAVE_APPROVAL_V2,
        });
        self.event(uuid, ts, LEAVE_APPROVAL_V2, approval.id, event)
    }

    fn work_approval(&self, approval: &Approval<'_>) -> SimEvent {
        let (uuid, ts, form) = self.identity(approval, WORK_APPROVAL);
        let rule = approval.record.get("type").and_then(Value::as_i64);
        let work_type = match approval.record.get("category").and_then(Value::as_i64) {
            Some(2) => "休息日加班",
            Some(3) => "节假日加班",
            _ => "工作日加班",
        };
        // Per-day detail: the overtime cut at midnight, days at day precision.
        let detail: Vec<Value> = day_ranges(approval.start, approval.end, (0, 24))
            .iter()
            .filter_map(|[from, to]| {
                let from = parse_time(from)?;
                let to = parse_time(to)?;
                let day = format!("{} 00:00", from.date().format("%Y-%m-%d"));
                Some(json!({
                    "start": day,
                    "end": day,
                    "rule_associated": rule.unwrap_or(0),
                    "interval": (to - from).num_seconds(),
                }))
            })
            .collect();
        let event = json!({
            "allow_multi_time_range": 1,
            "app_id": self.app_id,
            "approval_code": self.approval_code(Kind::OvertimeWorks),
            "instance_code": approval.id,
            "employee_id": approval.user.employee_id,
            "open_id": approval.user.open_id,
            "start_time": approval.applied,
            "end_time": approval.passed,
            "tenant_key": self.tenant_key,
            "time_range": [{
                "work_start_time": approval.start_text,
                "work_end_time": approval.end_text,
            }],
            "type": WORK_APPROVAL,
            "work_detail": detail,
            "work_start_time": approval.start_text,
            "work_end_time": approval.end_text,
            "work_interval": number(approval.interval, form & 3 == 0),
            "work_multi_imitate_users": null,
            "work_reason": approval.reason,
            "work_type": work_type,
        });
        self.event(uuid, ts, WORK_APPROVAL, approval.id, event)
    }

    /// uuid, ts (just after the approval passed) and form bits of an approval's event.
    fn identity(&self, approval: &Approval<'_>, event_type: &str) -> (String, String, u64) {
        let uuid = self.uuid(approval.id, event_type);
        let form = self.form(&uuid);
        let ts = format!(
            "{}.{:07}",
            approval.passed + 1 + (form >> 8) as i64 % 120,
            (form >> 20) % 10_000_000
        );
        (uuid, ts, form)
    }
}

/// One approval as the query API serves it, read leniently (inserted records may lack fields).
struct Approval<'a> {
    id: &'a str,
    user: &'a SimUser,
    record: &'a Value,
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
    start_text: String,
    end_text: String,
    /// Seconds: the record's `interval`, else end - start.
    interval: i64,
    unit: i64,
    reason: String,
    name_ch: String,
    /// Instance times (the event's `start_time` / `end_time`), unix seconds.
    applied: i64,
    passed: i64,
}

impl<'a> Approval<'a> {
    fn read(
        issuer: &Issuer<'_>,
        kind: Kind,
        user: &'a SimUser,
        id: &'a str,
        record: &'a Value,
    ) -> Approval<'a> {
        let text = |key: &str| {
            record
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let start_text = text("start_time");
        let end_text = text("end_time");
        let start = parse_time(&start_text);
        let end = parse_time(&end_text);
        let span = match (start, end) {
            (Some(start), Some(end)) => (end - start).num_seconds(),
            _ => 0,
        };
        let interval = match kind {
            Kind::OvertimeWorks => span,
            _ => record
                .get("interval")
                .and_then(Value::as_i64)
                .unwrap_or(span),
        };
        let tz = user.zone.tz;
        let spread = hash_of(&[issuer.seed, TAG_TIMES, hash_text(id)]);
        let applied_at = parse_time(&text("approve_apply_time"));
        let passed_at = parse_time(&text("approve_pass_time"));
        let (applied, passed) = match (applied_at, passed_at) {
            (Some(applied), Some(passed)) => (unix(tz, applied), unix(tz, passed)),
            _ => {
                // Overtime lists no approval times: applied 1–72 h before it starts.
                let begin = start.unwrap_or_default();
                let applied = begin - TimeDelta::hours(1 + (spread % 72) as i64);
                let applied = unix(tz, applied);
                (applied, applied + 300 + ((spread >> 16) % 3000) as i64)
            }
        };
        Approval {
            id,
            user,
            record,
            start,
            end,
            start_text,
            end_text,
            interval,
            unit: record.get("unit").and_then(Value::as_i64).unwrap_or(2),
            reason: text("reason"),
            name_ch: record
                .pointer("/i18n_names/ch")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            applied,
            passed,
        }
    }

    /// The `@i18n@` key of the approval's type and its texts by locale (default first).
    fn i18n(&self, issuer: &Issuer<'_>) -> (String, Vec<(&'static str, bool, String)>) {
        let type_id = self
            .record
            .get("uniq_id")
            .and_then(Value::as_str)
            .unwrap_or(self.id);
        let number = 7_000_000_000_000_000_000
            + hash_of(&[issuer.seed, TAG_I18N, hash_text(type_id)]) % 1_000_000_000_000_000_000;
        let key = format!("@i18n@{number}");
        let default = match self.record.get("default_locale").and_then(Value::as_str) {
            Some("en") => "en_us",
            Some("ja") => "ja_jp",
            _ => "zh_cn",
        };
        let mut locales = Vec::new();
        for (locale, name) in [("zh_cn", "ch"), ("en_us", "en"), ("ja_jp", "ja")] {
            if let Some(text) = self
                .record
                .pointer(&format!("/i18n_names/{name}"))
                .and_then(Value::as_str)
            {
                locales.push((locale, locale == default, text.to_owned()));
            }
        }
        if locales.is_empty() {
            locales.push(("zh_cn", true, self.name_ch.clone()));
        }
        locales.sort_by_key(|(_, is_default, _)| !is_default);
        (key, locales)
    }
}

/// `value` as a JSON number, or as its decimal string when `as_string`.
fn number(value: i64, as_string: bool) -> Value {
    if as_string {
        Value::String(value.to_string())
    } else {
        Value::from(value)
    }
}

/// The query API's `unit` (1 day, 2 hour, 3 half day, 4 half hour) as the events' text.
fn unit_text(unit: i64) -> &'static str {
    match unit {
        1 => "DAY",
        3 => "HALF_DAY",
        4 => "HALF_HOUR",
        _ => "HOUR",
    }
}

/// The query API's `unit` as `leave_approval`'s `leave_unit` (1 day, 2 half day, 3 hour,
/// 4 half hour).
fn leave_unit_number(unit: i64) -> i64 {
    match unit {
        1 => 1,
        3 => 2,
        4 => 4,
        _ => 3,
    }
}

/// `i18n_resources` as an array of JSON strings (the out_approval page's form).
fn i18n_json_strings(key: &str, locales: &[(&'static str, bool, String)]) -> Value {
    Value::Array(
        locales
            .iter()
            .map(|(locale, is_default, text)| {
                let mut texts = serde_json::Map::new();
                texts.insert(key.to_owned(), Value::String(text.clone()));
                let entry = json!({"is_default": is_default, "locale": locale, "texts": texts});
                Value::String(entry.to_string())
            })
            .collect(),
    )
}

/// `i18n_resources` as the non-JSON text of the leave_approvalV2 page:
/// `[{is_default=true,locale=zh_cn,texts={@i18n@…=事假}}, …]`.
fn i18n_text(key: &str, locales: &[(&'static str, bool, String)]) -> String {
    let entries: Vec<String> = locales
        .iter()
        .map(|(locale, is_default, text)| {
            format!("{{is_default={is_default},locale={locale},texts={{{key}={text}}}}}")
        })
        .collect();
    format!("[{}]", entries.join(", "))
}

/// The leave's (or overtime's) time cut per day: the first day from `start`, the last to
/// `end`, the days between from/to the given working hours (24 = midnight after).
fn day_ranges(
    start: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
    (open, close): (u32, u32),
) -> Vec<[String; 2]> {
    let (Some(start), Some(end)) = (start, end) else {
        return Vec::new();
    };
    let at = |date: NaiveDate, hour: u32| {
        date.and_hms_opt(0, 0, 0).unwrap_or_default() + TimeDelta::hours(i64::from(hour))
    };
    let mut ranges = Vec::new();
    for date in start
        .date()
        .iter_days()
        .take_while(|date| *date <= end.date())
    {
        let from = if date == start.date() {
            start
        } else {
            at(date, open)
        };
        let to = if date == end.date() {
            end
        } else {
            at(date, close)
        };
        if from < to {
            ranges.push([format_time(from), format_time(to)]);
        }
    }
    if ranges.is_empty() {
        ranges.push([format_time(start), format_time(end)]);
    }
    ranges
}

/// Ranges as the one string of the leave_approvalV2 page: `[[a,b],[c,d]]`.
fn ranges_text(ranges: &[[String; 2]]) -> String {
    let pairs: Vec<String> = ranges
        .iter()
        .map(|[from, to]| format!("[{from},{to}]"))
        .collect();
    format!("[{}]", pairs.join(","))
}

fn parse_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()
}

/// A wall-clock time of the user's zone as unix seconds (a zone the sim cannot parse is taken
/// as Asia/Shanghai; a time in a DST gap uses the offset before the gap).
fn unix(tz: Option<Tz>, local: NaiveDateTime) -> i64 {
    let tz = tz.unwrap_or(chrono_tz::Asia::Shanghai);
    match tz.from_local_datetime(&local).earliest() {
        Some(time) => time.timestamp(),
        None => {
            let offset = tz.offset_from_utc_datetime(&local).fix().local_minus_utc();
            local.and_utc().timestamp() - i64::from(offset)
        }
    }
}

impl SimTenant {
    /// Every approval event the tenant's data implies for dates `from..=to` (the dates the
    /// query API lists the approvals under): each approved (status 2) out, leave and overtime
    /// of every user gives its approval event (a leave both `leave_approval` and
    /// `leave_approvalV2`), each revoked one (status 4, `set_status` included) its approval
    /// event and its revert. Trips give none. An approval listed under several dates gives its
    /// events once, under the first. Deterministic for a config and overlay.
    pub fn approval_events(&self, from: NaiveDate, to: NaiveDate) -> Vec<SimEvent> {
        let state = &self.state;
        let issuer = Issuer::new(&state.config);
        let users = state.population.users();
        let mut seen: HashSet<String> = HashSet::new();
        let mut events = Vec::new();
        for date in from.iter_days().take_while(|date| *date <= to) {
            for (index, user) in users.iter().enumerate() {
                for (listing, status) in state.listings_with_status(index, date) {
                    if listing.kind == Kind::Trips
                        || !(status == 2 || status == 4)
                        || listing.approval_id.is_empty()
                        || !seen.insert(listing.approval_id.clone())
                    {
                        continue;
                    }
                    let record: Value = serde_json::from_str(&state.population.render(&listing))
                        .unwrap_or(Value::Null);
                    events.extend(issuer.approval(
                        listing.kind,
                        user,
                        &listing.approval_id,
                        &record,
                        status == 4,
                    ));
                }
            }
        }
        events
    }

    /// Revokes an approval: status 4 in the query API from now on, and its revert event
    /// (`out_approval_revert` / `leave_approval_revert` / `work_approval_revert`) with a fresh
    /// uuid. None for an unknown approval id or a trip (left unchanged).
    pub fn revoke(&self, approval_id: &str) -> Option<SimEvent> {
        revoke(&self.state, approval_id)
    }
}

/// [`SimTenant::revoke`] on the shared state (the admin endpoint calls it too).
pub(crate) fn revoke(state: &TenantState, approval_id: &str) -> Option<SimEvent> {
    let kind = state.approval_kind(approval_id)?;
    if kind == Kind::Trips {
        return None;
    }
    state.set_status(approval_id, 4);
    Issuer::new(&state.config).revert_now(kind, approval_id)
}
