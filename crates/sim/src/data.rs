//! The simulated tenant's population: users (three ids each, a home zone) and the approvals
//! listed under every (user, date), generated on demand instead of stored.
//!
//! Invariants:
//! - What a generated user-date lists is a pure function of (seed, user index, date): asking
//!   twice, in any order, gives byte-identical records. Nothing is pre-generated, so a
//!   20,000-user year costs only the user-dates actually queried.
//! - Each (user, date, kind) draws from its own hash-seeded stream, and a record's body from a
//!   stream of its *start* date, so a multi-day leave is listed under every date it covers
//!   with the same approval id and the same body.
//! - Generated approval ids are 19-digit decimals encoding (user, start date, kind, slot)
//!   under a seed-keyed permutation, so `approval_exists` needs no record of what was served.
//!   Admin-made approvals ([`Population::admin_record`]) take 19-digit ids from a range above
//!   every generated id, so the two can never be confused.
//! - Ids are unique within each id type. Fixture users come after the generated ones, use
//!   their name as all three ids (the `fx_` prefix cannot collide with generated ids) and
//!   list only their fixed records.
//! - Times are wall-clock strings in the user-date's zone; the sim never converts them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone};
use chrono_tz::Tz;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Most generated users the id scheme supports: employee numbers are `E` + 6 digits.
pub(crate) const MAX_GENERATED_USERS: usize = 1_000_000;

/// One of the four approval lists of a `user_approval` object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Outs,
    Leaves,
    OvertimeWorks,
    Trips,
}

impl Kind {
    /// Response order of the lists, as in the doc's example.
    pub(crate) const ALL: [Kind; 4] = [Kind::Outs, Kind::Leaves, Kind::OvertimeWorks, Kind::Trips];

    /// The JSON key of this list (also the table name used in stats).
    pub(crate) fn table(self) -> &'static str {
        match self {
            Kind::Outs => "outs",
            Kind::Leaves => "leaves",
            Kind::OvertimeWorks => "overtime_works",
            Kind::Trips => "trips",
        }
    }

    pub(crate) fn from_table(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.table() == name)
    }

    /// Per the doc, leaves and overtime can only be queried as approved (2) or withdrawn (3);
    /// outs and trips for every status.
    pub(crate) fn listed_for_status(self, status: i32) -> bool {
        match self {
            Kind::Outs | Kind::Trips => true,
            Kind::Leaves | Kind::OvertimeWorks => status == 2 || status == 3,
        }
    }

    fn code(self) -> u64 {
        match self {
            Kind::Outs => 0,
            Kind::Leaves => 1,
            Kind::OvertimeWorks => 2,
            Kind::Trips => 3,
        }
    }

    fn from_code(code: u64) -> Kind {
        Kind::ALL[(code & 3) as usize]
    }
}

/// Which generated approval of a (user, start date, kind) this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The ordinary random approval.
    Regular,
    /// The extra out whose start lies in a DST gap or overlap of the user's zone.
    Dst,
}

/// The three id types of `employee_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdType {
    EmployeeId,
    EmployeeNo,
    OpenId,
}

impl IdType {
    pub(crate) fn parse(name: &str) -> Option<IdType> {
        match name {
            "employee_id" => Some(IdType::EmployeeId),
            "employee_no" => Some(IdType::EmployeeNo),
            "open_id" => Some(IdType::OpenId),
            _ => None,
        }
    }
}

/// A user's time zone as the platform reports it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Zone {
    /// The `time_zone` string: an IANA name, "" (= UTC per the doc) or an unknown name.
    pub(crate) name: &'static str,
    /// The parsed zone, when `name` is a real IANA zone; drives DST detection.
    pub(crate) tz: Option<Tz>,
}

impl Zone {
    pub(crate) const fn new(name: &'static str, tz: Option<Tz>) -> Zone {
        Zone { name, tz }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SimUser {
    pub(crate) employee_id: String,
    pub(crate) employee_no: String,
    pub(crate) open_id: String,
    pub(crate) zone: Zone,
}

impl SimUser {
    pub(crate) fn id(&self, id_type: IdType) -> &str {
        match id_type {
            IdType::EmployeeId => &self.employee_id,
            IdType::EmployeeNo => &self.employee_no,
            IdType::OpenId => &self.open_id,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records, serialized with the doc's field order and JSON types.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize)]
pub(crate) struct I18nNames {
    pub(crate) ch: String,
    pub(crate) en: String,
    /// Some types have no Japanese name: the key is then absent, as on the platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ja: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct OutRecord {
    pub(crate) approval_id: String,
    pub(crate) uniq_id: String,
    pub(crate) unit: i32,
    pub(crate) interval: i64,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) i18n_names: I18nNames,
    pub(crate) default_locale: String,
    pub(crate) reason: String,
    pub(crate) approve_pass_time: String,
    pub(crate) approve_apply_time: String,
    pub(crate) idempotent_id: String,
    pub(crate) correct_process_id: Vec<String>,
    pub(crate) cancel_process_id: Vec<String>,
    pub(crate) process_id: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct LeaveRecord {
    pub(crate) approval_id: String,
    pub(crate) uniq_id: String,
    pub(crate) unit: i32,
    pub(crate) interval: i64,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) i18n_names: I18nNames,
    pub(crate) default_locale: String,
    pub(crate) reason: String,
    pub(crate) approve_pass_time: String,
    pub(crate) approve_apply_time: String,
    pub(crate) idempotent_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct OvertimeRecord {
    pub(crate) approval_id: String,
    pub(crate) duration: f64,
    pub(crate) unit: i32,
    pub(crate) category: i32,
    #[serde(rename = "type")]
    pub(crate) overtime_type: i32,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) reason: String,
    pub(crate) idempotent_id: String,
    pub(crate) correct_process_id: Vec<String>,
    pub(crate) cancel_process_id: Vec<String>,
    pub(crate) process_id: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct RegionPlace {
    pub(crate) region_level: String,
    pub(crate) region_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct TripRecord {
    pub(crate) approval_id: String,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) reason: String,
    pub(crate) approve_pass_time: String,
    pub(crate) approve_apply_time: String,
    pub(crate) idempotent_id: String,
    pub(crate) correct_process_id: Vec<String>,
    pub(crate) cancel_process_id: Vec<String>,
    pub(crate) process_id: Vec<String>,
    pub(crate) departure: RegionPlace,
    pub(crate) destinations: Vec<RegionPlace>,
    pub(crate) transportation: Vec<i32>,
    pub(crate) trip_type: i32,
    pub(crate) remarks: String,
}

/// A fixed record and the dates it is listed under.
pub(crate) struct FixtureRecord {
    pub(crate) user: &'static str,
    pub(crate) kind: Kind,
    pub(crate) approval_id: &'static str,
    pub(crate) listed_on: Vec<NaiveDate>,
    pub(crate) record: Record,
}

/// The body of one list element.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    Out(OutRecord),
    Leave(LeaveRecord),
    Overtime(OvertimeRecord),
    Trip(TripRecord),
    /// A record inserted by a test, sent exactly as given.
    Raw(serde_json::Value),
}

impl Record {
    /// The JSON text of this list element.
    pub(crate) fn to_json(&self) -> String {
        let text = match self {
            Record::Out(record) => serde_json::to_string(record),
            Record::Leave(record) => serde_json::to_string(record),
            Record::Overtime(record) => serde_json::to_string(record),
            Record::Trip(record) => serde_json::to_string(record),
            Record::Raw(value) => serde_json::to_string(value),
        };
        // Plain structs of strings and numbers (f64 values are always finite here) and JSON
        // values cannot fail to serialize.
        text.expect("sim records always serialize")
    }
}

/// One approval listed under a user-date, before its body is rendered: rendering is deferred
/// so that records filtered out by status cost only a hash.
#[derive(Clone, Debug)]
pub(crate) struct Listing {
    pub(crate) kind: Kind,
    pub(crate) approval_id: String,
    /// The status the platform holds for it, before any `set_status` override.
    pub(crate) status: i32,
    pub(crate) body: ListingBody,
}

#[derive(Clone, Debug)]
pub(crate) enum ListingBody {
    Generated(GeneratedKey),
    Fixed(Arc<Record>),
}

/// Everything needed to regenerate a generated record's body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GeneratedKey {
    user: usize,
    start: NaiveDate,
    kind: Kind,
    slot: Slot,
    status: i32,
    /// Days covered (leaves only; 1 otherwise).
    span: u32,
}

/// What one user-date lists (before the test overlay).
#[derive(Debug)]
pub(crate) struct UserDay {
    pub(crate) time_zone: Cow<'static, str>,
    pub(crate) listings: Vec<Listing>,
}

// ---------------------------------------------------------------------------------------------
// Hashing: a stable, explicit mix (std's hasher is not guaranteed stable across releases).
// ---------------------------------------------------------------------------------------------

fn mix64(mut z: u64) -> u64 {
    // splitmix64's finalizer: a bijection with full avalanche.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn hash_of(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |acc, &part| mix64(acc ^ part))
}

// Stream tags: each independent draw gets its own, so adding one never shifts another
// (directory.rs uses 0x40..0x47, lists.rs 0x48, faults.rs 0x50, events.rs 0x60..0x6f).
const TAG_EMPLOYEE_ID: u64 = 0x01;
const TAG_EMPLOYEE_NO: u64 = 0x02;
const TAG_OPEN_ID: u64 = 0x03;
const TAG_ZONE: u64 = 0x04;
const TAG_ODD_ZONE: u64 = 0x05;
const TAG_HEAD: u64 = 0x10; // + kind code
const TAG_BODY: u64 = 0x20; // + kind code * 2 + slot
const TAG_ID_CHECK: u64 = 0x30;
const TAG_ID_ROUND: u64 = 0x31;
const TAG_ADMIN: u64 = 0x32;

// ---------------------------------------------------------------------------------------------
// Dates as small integers (for hashing and for the approval id codec).
// ---------------------------------------------------------------------------------------------

const DAY_BITS: u32 = 18;

fn day_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("1900-01-01 is a date")
}

/// Days since 1900-01-01, when within the range generated data covers (1900 to ~2617).
fn day_number(date: NaiveDate) -> Option<u32> {
    let days = (date - day_epoch()).num_days();
    (0..(1 << DAY_BITS)).contains(&days).then_some(days as u32)
}

fn date_of_day(day: u32) -> NaiveDate {
    day_epoch() + Days::new(u64::from(day))
}

// ---------------------------------------------------------------------------------------------
// Approval ids: 19 decimal digits = 7e18 + a 60-bit permuted payload.
// Payload (low to high): slot 1 bit, kind 2 bits, day 18 bits, user 24 bits, check 15 bits.
// ---------------------------------------------------------------------------------------------

const ID_BASE: u64 = 7_000_000_000_000_000_000;
const USER_BITS: u32 = 24;
const CHECK_BITS: u32 = 15;
const HALF_BITS: u32 = 30;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
const FEISTEL_ROUNDS: u64 = 4;
/// Admin-made approval ids: 19 digits from here on, above `ID_BASE + 2^60` (the largest
/// generated id), so `decode_approval_id` rejects every one of them.
const ADMIN_ID_BASE: u64 = 8_200_000_000_000_000_000;
const ADMIN_ID_SPAN: u64 = 1_000_000_000_000_000_000;
const _: () =
    assert!(ADMIN_ID_BASE > ID_BASE + (1 << 60) && ADMIN_ID_BASE + ADMIN_ID_SPAN < 10u64.pow(19));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ApprovalKey {
    user: usize,
    day: u32,
    kind: Kind,
    slot: Slot,
}

fn id_check(seed: u64, fields: u64) -> u64 {
    hash_of(&[seed, TAG_ID_CHECK, fields]) & ((1 << CHECK_BITS) - 1)
}

fn feistel_round(seed: u64, round: u64, half: u64) -> u64 {
    hash_of(&[seed, TAG_ID_ROUND, round, half]) & HALF_MASK
}

fn encode_approval_id(seed: u64, key: ApprovalKey) -> u64 {
    let slot = u64::from(key.slot == Slot::Dst);
    let fields = slot | key.kind.code() << 1 | u64::from(key.day) << 3 | (key.user as u64) << 21;
    let payload = fields | id_check(seed, fields) << (3 + DAY_BITS + USER_BITS);
    let (mut left, mut right) = (payload >> HALF_BITS, payload & HALF_MASK);
    for round in 0..FEISTEL_ROUNDS {
        (left, right) = (right, left ^ feistel_round(seed, round, right));
    }
    ID_BASE + (left << HALF_BITS | right)
}

/// An admin-made approval id from a random or hashed 64-bit draw.
fn admin_approval_id(draw: u64) -> String {
    (ADMIN_ID_BASE + draw % ADMIN_ID_SPAN).to_string()
}

fn decode_approval_id(seed: u64, approval_id: &str) -> Option<ApprovalKey> {
    let number: u64 = approval_id.parse().ok()?;
    if number.to_string() != approval_id || number < ID_BASE || number - ID_BASE >= 1 << 60 {
        return None;
    }
    let permuted = number - ID_BASE;
    let (mut left, mut right) = (permuted >> HALF_BITS, permuted & HALF_MASK);
    for round in (0..FEISTEL_ROUNDS).rev() {
        (left, right) = (right ^ feistel_round(seed, round, left), left);
    }
    let payload = left << HALF_BITS | right;
    let fields = payload & ((1 << (3 + DAY_BITS + USER_BITS)) - 1);
    if payload >> (3 + DAY_BITS + USER_BITS) != id_check(seed, fields) {
        return None;
    }
    Some(ApprovalKey {
        user: (fields >> 21) as usize,
        day: ((fields >> 3) & ((1 << DAY_BITS) - 1)) as u32,
        kind: Kind::from_code(fields >> 1),
        slot: if fields & 1 == 1 {
            Slot::Dst
        } else {
            Slot::Regular
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Reference tables for plausible content.
// ---------------------------------------------------------------------------------------------

/// An out or leave type: (uniq_id < 14 chars, ch, en, ja, default_locale).
type ApprovalType = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

const OUT_TYPES: &[ApprovalType] = &[
    ("7038291046551", "外出", "Out of office", Some("外出"), "ch"),
    (
        "7038291046552",
        "客户拜访",
        "Client visit",
        Some("顧客訪問"),
        "en",
    ),
    ("7038291046553", "外勤", "Field work", None, "ch"),
    (
        "out_bank",
        "银行办事",
        "Bank errand",
        Some("銀行手続き"),
        "ja",
    ),
];

const LEAVE_TYPES: &[ApprovalType] = &[
    (
        "6852582717813",
        "年假",
        "Annual leave",
        Some("年次有給休暇"),
        "ch",
    ),
    (
        "6852582717814",
        "事假",
        "Personal leave",
        Some("私用休暇"),
        "ch",
    ),
    (
        "6852582717815",
        "病假",
        "Sick leave",
        Some("病気休暇"),
        "en",
    ),
    (
        "6852582717816",
        "调休假",
        "Compensatory leave",
        Some("代休"),
        "ja",
    ),
    ("6852582717817", "婚假", "Marriage leave", None, "en"),
    ("lv_parental", "育儿假", "Parental leave", None, "ch"),
];

const OUT_REASONS: &[&str] = &[
    "外出办事",
    "拜访客户 🤝",
    "去银行办理业务",
    "参加行业会议",
    "送材料到合作方",
    "外出培训📚",
];
const LEAVE_REASONS: &[&str] = &[
    "家里有事 🏠",
    "身体不适",
    "看病",
    "年假休息",
    "孩子生病 🤒",
    "回老家办事",
    "搬家",
];
const OVERTIME_REASONS: &[&str] = &[
    "推进项目进度",
    "版本上线 🚀",
    "处理线上故障",
    "月底结账",
    "客户紧急需求",
];
const TRIP_REASONS: &[&str] = &[
    "出差🚄 上海",
    "客户现场支持",
    "参加展会",
    "培训",
    "拜访供应商 ✈️",
    "项目验收",
];
const TRIP_REMARKS: &[&str] = &["出差备注", "", "已订酒店 🏨", "需报销高铁票", "与同事同行"];

/// (region_level, region_id) pairs, as the platform's region picker returns them.
const REGIONS: &[(&str, &str)] = &[
    ("l1：国家级", "6863333418483058189"),
    ("l2：省级", "6863333516579440141"),
    ("l3：市级", "6863334113810663431"),
    ("l3：市级", "6863334140087469575"),
    ("l3：市级", "6863334186539372551"),
    ("l3：市级", "6863334276066771463"),
    ("l4：区级", "6863335090487001095"),
    ("l4：区级", "6863335152113911815"),
];

/// A name for a user's zone that is not its IANA name, as the platform sends now and then: a
/// fixed offset (the zone's on that date) in one of its spellings, the Windows zone ID as CLDR
/// spells it or in lower case, or a name in no table (`Asia/Beijing` for a Shanghai user, the
/// name the demo's operators know; `Etc/Unknown` for the others).
fn odd_zone_name(zone: &Zone, date: NaiveDate, variant: u64) -> Cow<'static, str> {
    use chrono::{Offset, TimeZone};
    let tz = zone.tz.unwrap_or(Tz::UTC);
    let iana = if zone.name.is_empty() {
        "UTC"
    } else {
        zone.name
    };
    let offset_on = |day: NaiveDate| {
        let noon = day.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon is a time"));
        tz.offset_from_utc_datetime(&noon).fix().local_minus_utc()
    };
    // A fixed offset only where it is the zone's for every record listed that day: a leave
    // listed today started up to two days ago, and a time may run past midnight.
    let offset = offset_on(date);
    let steady = (1..=3).all(|back| offset_on(date - chrono::Days::new(back)) == offset)
        && offset_on(date + chrono::Days::new(1)) == offset;
    match variant % 10 {
        0..4 if steady => Cow::Owned(fixed_offset_spelling(offset, variant / 10)),
        0..7 => {
            // CLDR's Windows ID for UTC maps to Etc/UTC.
            let windows = if iana == "UTC" {
                "UTC"
            } else {
                attendance_core::windows_zones::WINDOWS_ZONES
                    .iter()
                    .find(|(_, zone)| *zone == iana)
                    .map(|(windows, _)| *windows)
                    .expect("every zone of the simulated tenant has a Windows ID")
            };
            if variant % 10 == 4 {
                Cow::Owned(windows.to_ascii_lowercase())
            } else {
                Cow::Borrowed(windows)
            }
        }
        _ if iana == "Asia/Shanghai" => Cow::Borrowed("Asia/Beijing"),
        _ => Cow::Borrowed("Etc/Unknown"),
    }
}

/// `offset` (seconds east of UTC) in one of the spellings tenants use.
fn fixed_offset_spelling(offset: i32, variant: u64) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let (h, m) = (offset.abs() / 3600, offset.abs() % 3600 / 60);
    match variant % 4 {
        0 => format!("UTC{sign}{h:02}:{m:02}"),
        1 if m == 0 => format!("GMT{sign}{h}"),
        1 => format!("GMT{sign}{h:02}:{m:02}"),
        2 => format!("{sign}{h:02}{m:02}"),
        // The typographic minus sign.
        _ => format!(
            "UTC{}{h:02}:{m:02}",
            if offset < 0 { '\u{2212}' } else { '+' }
        ),
    }
}

fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// `time` as "yyyy-MM-dd HH:mm:ss" (written directly: chrono's `format` re-parses its pattern
/// on every call, which dominated rendering a year of records).
pub(crate) fn format_time(time: NaiveDateTime) -> String {
    use chrono::Timelike;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

fn at(date: NaiveDate, hour: u32, minute: u32) -> NaiveDateTime {
    date.and_time(NaiveTime::from_hms_opt(hour, minute, 0).expect("hour < 24 and minute < 60"))
}

pub(crate) fn i18n_names(approval_type: &ApprovalType) -> I18nNames {
    let (_, ch, en, ja, _) = *approval_type;
    I18nNames {
        ch: ch.to_owned(),
        en: en.to_owned(),
        ja: ja.map(str::to_owned),
    }
}

pub(crate) fn out_type(index: usize) -> &'static ApprovalType {
    &OUT_TYPES[index % OUT_TYPES.len()]
}

pub(crate) fn leave_type(index: usize) -> &'static ApprovalType {
    &LEAVE_TYPES[index % LEAVE_TYPES.len()]
}

pub(crate) fn region(index: usize) -> RegionPlace {
    let (level, id) = REGIONS[index % REGIONS.len()];
    RegionPlace {
        region_level: level.to_owned(),
        region_id: id.to_owned(),
    }
}

/// Status mix of generated approvals: 2 ≈75%, 3 ≈8%, 4 ≈7%, 0 ≈5%, 1 ≈5%.
fn status_from_percentile(percentile: u64) -> i32 {
    match percentile {
        0..75 => 2,
        75..83 => 3,
        83..90 => 4,
        90..95 => 0,
        _ => 1,
    }
}

/// Per-mille chance that a user-date starts an approval of each kind.
fn per_mille(kind: Kind) -> u64 {
    match kind {
        Kind::Outs => 100,
        Kind::Leaves => 40,
        Kind::OvertimeWorks => 80,
        Kind::Trips => 30,
    }
}

/// A DST transition on a local date: the kind, and the 5-minute-aligned local times inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DstShift {
    /// Local times that do not exist (clocks jump forward).
    Gap(Vec<NaiveDateTime>),
    /// Local times that exist twice (clocks fall back).
    Overlap(Vec<NaiveDateTime>),
}

impl DstShift {
    fn times(&self) -> &[NaiveDateTime] {
        match self {
            DstShift::Gap(times) | DstShift::Overlap(times) => times,
        }
    }
}

/// The DST gap or overlap of `tz` on local date `date`, if any.
pub(crate) fn dst_shift(tz: Tz, date: NaiveDate) -> Option<DstShift> {
    // Cheap screen first (this runs for every generated user-date): the local date lies within
    // [date-1 09:00 UTC, date+1 13:00 UTC] for any offset in -12h..=+14h, and zones change
    // offset at most once in that span, so equal offsets at both ends mean no transition.
    let before = at(date.pred_opt()?, 9, 0);
    let after = at(date.succ_opt()?, 13, 0);
    if tz.offset_from_utc_datetime(&before).fix() == tz.offset_from_utc_datetime(&after).fix() {
        return None;
    }
    let mut gap = Vec::new();
    let mut overlap = Vec::new();
    for step in 0..(24 * 12) {
        let local = at(date, step / 12, (step % 12) * 5);
        match tz.from_local_datetime(&local) {
            chrono::LocalResult::None => gap.push(local),
            chrono::LocalResult::Ambiguous(_, _) => overlap.push(local),
            chrono::LocalResult::Single(_) => {}
        }
    }
    if !gap.is_empty() {
        Some(DstShift::Gap(gap))
    } else if !overlap.is_empty() {
        Some(DstShift::Overlap(overlap))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The population.
// ---------------------------------------------------------------------------------------------

pub(crate) struct Population {
    seed: u64,
    generated_users: usize,
    /// Generated users (0..generated_users), then the fixture users.
    users: Vec<SimUser>,
    by_employee_id: HashMap<String, usize>,
    by_employee_no: HashMap<String, usize>,
    by_open_id: HashMap<String, usize>,
    fixture_days: HashMap<(usize, NaiveDate), Vec<Listing>>,
    fixture_approval_ids: HashSet<String>,
}

/// The head of a generated approval: whether it exists and its headline facts, from one hash.
#[derive(Clone, Copy, Debug)]
struct Head {
    status: i32,
    span: u32,
}

impl Population {
    /// The users `0..generated_users` of `seed`, then the fixture users with their records.
    pub(crate) fn build(
        seed: u64,
        generated_users: usize,
        fixture_users: Vec<(&'static str, Zone)>,
        fixture_records: Vec<FixtureRecord>,
    ) -> io::Result<Population> {
        if generated_users > MAX_GENERATED_USERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the sim supports at most {MAX_GENERATED_USERS} generated users"),
            ));
        }
        let total = generated_users + fixture_users.len();
        let mut population = Population {
            seed,
            generated_users,
            users: Vec::with_capacity(total),
            by_employee_id: HashMap::with_capacity(total),
            by_employee_no: HashMap::with_capacity(total),
            by_open_id: HashMap::with_capacity(total),
            fixture_days: HashMap::new(),
            fixture_approval_ids: HashSet::new(),
        };
        for index in 0..generated_users {
            let user = population.generated_user(index);
            population.add_user(user);
        }
        for (name, zone) in fixture_users {
            population.add_user(SimUser {
                employee_id: name.to_owned(),
                employee_no: name.to_owned(),
                open_id: name.to_owned(),
                zone,
            });
        }
        for fixture in fixture_records {
            let user = population.by_employee_id[fixture.user];
            population
                .fixture_approval_ids
                .insert(fixture.approval_id.to_owned());
            let record = Arc::new(fixture.record);
            for date in fixture.listed_on {
                population
                    .fixture_days
                    .entry((user, date))
                    .or_default()
                    .push(Listing {
                        kind: fixture.kind,
                        approval_id: fixture.approval_id.to_owned(),
                        status: 2,
                        body: ListingBody::Fixed(Arc::clone(&record)),
                    });
            }
        }
        Ok(population)
    }

    /// Draws a generated user's ids, probing past collisions so ids stay unique (ids of user
    /// `i` depend only on the seed and users `0..=i`).
    fn generated_user(&self, index: usize) -> SimUser {
        let seed = self.seed;
        let index_key = index as u64;
        let mut id_candidate = hash_of(&[seed, TAG_EMPLOYEE_ID, index_key]) as u32;
        let employee_id = loop {
            let id = format!("{id_candidate:08x}");
            if !self.by_employee_id.contains_key(&id) {
                break id;
            }
            id_candidate = id_candidate.wrapping_add(1);
        };
        let mut no_candidate = hash_of(&[seed, TAG_EMPLOYEE_NO, index_key]) % 1_000_000;
        let employee_no = loop {
            let no = format!("E{no_candidate:06}");
            if !self.by_employee_no.contains_key(&no) {
                break no;
            }
            no_candidate = (no_candidate + 1) % 1_000_000;
        };
        let open_id = (0..)
            .map(|attempt| {
                let high = hash_of(&[seed, TAG_OPEN_ID, index_key, attempt]);
                let low = hash_of(&[seed, TAG_OPEN_ID, index_key, attempt, 1]);
                format!("ou_{high:016x}{low:016x}")
            })
            .find(|id| !self.by_open_id.contains_key(id))
            .expect("an unbounded range always finds a free id");
        let zone = match hash_of(&[seed, TAG_ZONE, index_key]) % 100 {
            0..40 => Zone::new("Asia/Shanghai", Some(chrono_tz::Asia::Shanghai)),
            40..55 => Zone::new("America/New_York", Some(chrono_tz::America::New_York)),
            55..70 => Zone::new("Europe/London", Some(chrono_tz::Europe::London)),
            70..80 => Zone::new("Asia/Kolkata", Some(chrono_tz::Asia::Kolkata)),
            80..90 => Zone::new("Australia/Lord_Howe", Some(chrono_tz::Australia::Lord_Howe)),
            // The doc: an empty time_zone means UTC.
            _ => Zone::new("", Some(chrono_tz::UTC)),
        };
        SimUser {
            employee_id,
            employee_no,
            open_id,
            zone,
        }
    }

    fn add_user(&mut self, user: SimUser) {
        let index = self.users.len();
        self.by_employee_id.insert(user.employee_id.clone(), index);
        self.by_employee_no.insert(user.employee_no.clone(), index);
        self.by_open_id.insert(user.open_id.clone(), index);
        self.users.push(user);
    }

    pub(crate) fn users(&self) -> &[SimUser] {
        &self.users
    }

    pub(crate) fn lookup(&self, id_type: IdType, id: &str) -> Option<usize> {
        let map = match id_type {
            IdType::EmployeeId => &self.by_employee_id,
            IdType::EmployeeNo => &self.by_employee_no,
            IdType::OpenId => &self.by_open_id,
        };
        map.get(id).copied()
    }

    /// What user `user` has listed under `date`, before test overrides and inserts.
    pub(crate) fn user_day(&self, user: usize, date: NaiveDate) -> UserDay {
        let zone = self.users[user].zone;
        if user >= self.generated_users {
            let listings = self
                .fixture_days
                .get(&(user, date))
                .cloned()
                .unwrap_or_default();
            return UserDay {
                time_zone: Cow::Borrowed(zone.name),
                listings,
            };
        }
        let Some(day) = day_number(date) else {
            return UserDay {
                time_zone: Cow::Borrowed(zone.name),
                listings: Vec::new(),
            };
        };
        let mut listings = Vec::new();
        if let Some(head) = self.head(user, day, Kind::Outs) {
            listings.push(self.generated_listing(user, date, day, Kind::Outs, Slot::Regular, head));
        }
        if self.has_dst_out(user, date) {
            let head = Head { status: 2, span: 1 };
            listings.push(self.generated_listing(user, date, day, Kind::Outs, Slot::Dst, head));
        }
        // A leave listed today may have started up to two days ago; list oldest first.
        for days_back in (0..3u32).rev() {
            let Some(start_day) = day.checked_sub(days_back) else {
                continue;
            };
            if let Some(head) = self.head(user, start_day, Kind::Leaves)
                && head.span > days_back
            {
                let start = date_of_day(start_day);
                listings.push(self.generated_listing(
                    user,
                    start,
                    start_day,
                    Kind::Leaves,
                    Slot::Regular,
                    head,
                ));
            }
        }
        for kind in [Kind::OvertimeWorks, Kind::Trips] {
            if let Some(head) = self.head(user, day, kind) {
                listings.push(self.generated_listing(user, date, day, kind, Slot::Regular, head));
            }
        }
        // Now and then the platform reports a zone name that is not an IANA name.
        let odd_zone = hash_of(&[self.seed, TAG_ODD_ZONE, user as u64, u64::from(day)]);
        let time_zone = if odd_zone % 1000 < 5 {
            odd_zone_name(&zone, date, odd_zone >> 20)
        } else {
            Cow::Borrowed(zone.name)
        };
        UserDay {
            time_zone,
            listings,
        }
    }

    fn head(&self, user: usize, day: u32, kind: Kind) -> Option<Head> {
        let hash = hash_of(&[
            self.seed,
            TAG_HEAD + kind.code(),
            user as u64,
            u64::from(day),
        ]);
        if hash % 1000 >= per_mille(kind) {
            return None;
        }
        let status = status_from_percentile((hash >> 16) % 100);
        let span = match kind {
            Kind::Leaves => match (hash >> 32) % 100 {
                0..60 => 1,
                60..85 => 2,
                _ => 3,
            },
            _ => 1,
        };
        Some(Head { status, span })
    }

    fn has_dst_out(&self, user: usize, date: NaiveDate) -> bool {
        self.users[user]
            .zone
            .tz
            .is_some_and(|tz| dst_shift(tz, date).is_some())
    }

    fn generated_listing(
        &self,
        user: usize,
        start: NaiveDate,
        start_day: u32,
        kind: Kind,
        slot: Slot,
        head: Head,
    ) -> Listing {
        let id_key = ApprovalKey {
            user,
            day: start_day,
            kind,
            slot,
        };
        Listing {
            kind,
            approval_id: encode_approval_id(self.seed, id_key).to_string(),
            status: head.status,
            body: ListingBody::Generated(GeneratedKey {
                user,
                start,
                kind,
                slot,
                status: head.status,
                span: head.span,
            }),
        }
    }

    /// Whether the platform knows this approval id (generated or fixture; inserts are tracked
    /// by the overlay).
    pub(crate) fn approval_exists(&self, approval_id: &str) -> bool {
        if self.fixture_approval_ids.contains(approval_id) {
            return true;
        }
        let Some(key) = decode_approval_id(self.seed, approval_id) else {
            return false;
        };
        if key.user >= self.generated_users {
            return false;
        }
        match (key.kind, key.slot) {
            (Kind::Outs, Slot::Dst) => self.has_dst_out(key.user, date_of_day(key.day)),
            (_, Slot::Dst) => false,
            (kind, Slot::Regular) => self.head(key.user, key.day, kind).is_some(),
        }
    }

    /// The kind of a known approval (generated or fixture; inserts are tracked by the
    /// overlay), None for an unknown id.
    pub(crate) fn approval_kind(&self, approval_id: &str) -> Option<Kind> {
        if self.fixture_approval_ids.contains(approval_id) {
            return self
                .fixture_days
                .values()
                .flatten()
                .find(|listing| listing.approval_id == approval_id)
                .map(|listing| listing.kind);
        }
        if !self.approval_exists(approval_id) {
            return None;
        }
        decode_approval_id(self.seed, approval_id).map(|key| key.kind)
    }

    /// The JSON text of a listing's record.
    pub(crate) fn render(&self, listing: &Listing) -> String {
        match &listing.body {
            ListingBody::Fixed(record) => record.to_json(),
            ListingBody::Generated(key) => self.generate(key, &listing.approval_id).to_json(),
        }
    }

    fn generate(&self, key: &GeneratedKey, approval_id: &str) -> Record {
        let stream = TAG_BODY + key.kind.code() * 2 + u64::from(key.slot == Slot::Dst);
        let day = day_number(key.start).unwrap_or_default();
        let mut rng = SmallRng::seed_from_u64(hash_of(&[
            self.seed,
            stream,
            key.user as u64,
            u64::from(day),
        ]));
        self.generate_with(key, approval_id.to_owned(), &mut rng)
    }

    fn generate_with(&self, key: &GeneratedKey, approval_id: String, rng: &mut SmallRng) -> Record {
        match key.kind {
            Kind::Outs => Record::Out(self.generate_out(key, approval_id, rng)),
            Kind::Leaves => Record::Leave(generate_leave(key, approval_id, rng)),
            Kind::OvertimeWorks => Record::Overtime(generate_overtime(key, approval_id, rng)),
            Kind::Trips => Record::Trip(generate_trip(key, approval_id, rng)),
        }
    }

    /// A new approved (status 2) approval of `kind` for `user`, listed under `date` only: its
    /// approval id and a record drawn the way generated records of that kind are (a one-day
    /// leave; overtime may run past midnight), both a pure function of (seed, `draw`). The id
    /// is 19 digits and never a generated one; the caller checks it against the overlay and
    /// draws again on the (unlikely) clash.
    pub(crate) fn admin_record(
        &self,
        user: usize,
        date: NaiveDate,
        kind: Kind,
        draw: u64,
    ) -> (String, Record) {
        let approval_id = admin_approval_id(hash_of(&[self.seed, TAG_ADMIN, draw]));
        let key = GeneratedKey {
            user,
            start: date,
            kind,
            slot: Slot::Regular,
            status: 2,
            span: 1,
        };
        let mut rng = SmallRng::seed_from_u64(hash_of(&[self.seed, TAG_ADMIN, draw, 1]));
        let record = self.generate_with(&key, approval_id.clone(), &mut rng);
        (approval_id, record)
    }

    fn generate_out(
        &self,
        key: &GeneratedKey,
        approval_id: String,
        rng: &mut SmallRng,
    ) -> OutRecord {
        let dst_times = match key.slot {
            Slot::Dst => self.users[key.user]
                .zone
                .tz
                .and_then(|tz| dst_shift(tz, key.start))
                .map(|shift| shift.times().to_vec()),
            Slot::Regular => None,
        };
        let (start, minutes) = match dst_times {
            Some(times) if !times.is_empty() => (*pick(rng, &times), rng.random_range(2..=6) * 30),
            _ => (
                at(
                    key.start,
                    rng.random_range(9..=16),
                    30 * rng.random_range(0..=1),
                ),
                rng.random_range(2..=8) * 30,
            ),
        };
        let end = start + TimeDelta::minutes(minutes);
        let approval_type = pick(rng, OUT_TYPES);
        let (apply, pass) = approval_times(rng, start, key.status == 0);
        OutRecord {
            approval_id,
            uniq_id: approval_type.0.to_owned(),
            unit: rng.random_range(1..=4),
            interval: minutes * 60,
            start_time: format_time(start),
            end_time: format_time(end),
            i18n_names: i18n_names(approval_type),
            default_locale: approval_type.4.to_owned(),
            reason: pick(rng, OUT_REASONS).to_string(),
            approve_pass_time: pass,
            approve_apply_time: apply,
            idempotent_id: idempotent_id(rng),
            correct_process_id: process_ids(rng, &[70, 20, 10]),
            cancel_process_id: process_ids(rng, &[70, 20, 10]),
            process_id: process_ids(rng, &[10, 75, 15]),
        }
    }
}

fn generate_leave(key: &GeneratedKey, approval_id: String, rng: &mut SmallRng) -> LeaveRecord {
    let last_day = key.start + Days::new(u64::from(key.span.max(1) - 1));
    let (start, end, unit, interval_hours) = if key.span > 1 {
        let unit = if rng.random_bool(0.8) { 1 } else { 3 };
        (
            at(key.start, 9, 0),
            at(last_day, 18, 0),
            unit,
            8 * i64::from(key.span),
        )
    } else {
        match rng.random_range(0..4) {
            0 | 1 => (at(key.start, 9, 0), at(key.start, 18, 0), 1, 8),
            2 if rng.random_bool(0.5) => (at(key.start, 9, 0), at(key.start, 13, 0), 3, 4),
            2 => (at(key.start, 14, 0), at(key.start, 18, 0), 3, 4),
            _ => {
                let hour = rng.random_range(10..=15);
                let hours = rng.random_range(1..=3);
                let unit = if rng.random_bool(0.7) { 2 } else { 4 };
                (
                    at(key.start, hour, 0),
                    at(key.start, hour + hours, 0),
                    unit,
                    i64::from(hours),
                )
            }
        }
    };
    let approval_type = pick(rng, LEAVE_TYPES);
    let (apply, pass) = approval_times(rng, start, key.status == 0);
    LeaveRecord {
        approval_id,
        uniq_id: approval_type.0.to_owned(),
        unit,
        interval: interval_hours * 3600,
        start_time: format_time(start),
        end_time: format_time(end),
        i18n_names: i18n_names(approval_type),
        default_locale: approval_type.4.to_owned(),
        reason: pick(rng, LEAVE_REASONS).to_string(),
        approve_pass_time: pass,
        approve_apply_time: apply,
        idempotent_id: idempotent_id(rng),
    }
}

fn generate_overtime(
    key: &GeneratedKey,
    approval_id: String,
    rng: &mut SmallRng,
) -> OvertimeRecord {
    // A third of overtime runs past midnight; it is still listed under its start date.
    let (start, end) = if rng.random_range(0..3) == 0 {
        let start = at(
            key.start,
            rng.random_range(20..=22),
            30 * rng.random_range(0..=1),
        );
        let next_day = key.start + Days::new(1);
        let end = at(
            next_day,
            rng.random_range(0..=2),
            30 * rng.random_range(0..=1),
        );
        (start, end.max(at(next_day, 0, 30)))
    } else {
        let start = at(
            key.start,
            rng.random_range(18..=19),
            30 * rng.random_range(0..=1),
        );
        (
            start,
            start + TimeDelta::minutes(rng.random_range(3..=7) * 30),
        )
    };
    let hours = (end - start).num_minutes() as f64 / 60.0;
    let unit = if rng.random_bool(0.7) {
        2
    } else {
        *pick(rng, &[1, 3, 4])
    };
    let duration = match unit {
        1 => (hours / 8.0 * 100.0).round() / 100.0,
        3 => (hours / 4.0 * 100.0).round() / 100.0,
        4 => hours * 2.0,
        _ => hours,
    };
    let weekend = matches!(
        key.start.weekday(),
        chrono::Weekday::Sat | chrono::Weekday::Sun
    );
    let category = if weekend {
        2
    } else if rng.random_bool(0.1) {
        3
    } else {
        1
    };
    OvertimeRecord {
        approval_id,
        duration,
        unit,
        category,
        overtime_type: rng.random_range(0..=3),
        start_time: format_time(start),
        end_time: format_time(end),
        reason: pick(rng, OVERTIME_REASONS).to_string(),
        idempotent_id: idempotent_id(rng),
        correct_process_id: process_ids(rng, &[70, 20, 10]),
        cancel_process_id: process_ids(rng, &[70, 20, 10]),
        process_id: process_ids(rng, &[10, 75, 15]),
    }
}

fn generate_trip(key: &GeneratedKey, approval_id: String, rng: &mut SmallRng) -> TripRecord {
    let start = at(
        key.start,
        rng.random_range(7..=10),
        30 * rng.random_range(0..=1),
    );
    let end = at(
        key.start,
        rng.random_range(17..=21),
        30 * rng.random_range(0..=1),
    );
    let (apply, pass) = approval_times(rng, start, key.status == 0);
    let departure = rng.random_range(0..REGIONS.len());
    let destinations = (0..rng.random_range(1..=4))
        .map(|_| region(rng.random_range(0..REGIONS.len())))
        .collect();
    let mut transportation: Vec<i32> = Vec::new();
    let wanted = rng.random_range(1..=3);
    while transportation.len() < wanted {
        let vehicle = rng.random_range(1..=6);
        if !transportation.contains(&vehicle) {
            transportation.push(vehicle);
        }
    }
    TripRecord {
        approval_id,
        start_time: format_time(start),
        end_time: format_time(end),
        reason: pick(rng, TRIP_REASONS).to_string(),
        approve_pass_time: pass,
        approve_apply_time: apply,
        idempotent_id: idempotent_id(rng),
        correct_process_id: process_ids(rng, &[70, 20, 10]),
        cancel_process_id: process_ids(rng, &[70, 20, 10]),
        process_id: process_ids(rng, &[10, 75, 15]),
        departure: region(departure),
        destinations,
        transportation,
        trip_type: rng.random_range(1..=2),
        remarks: pick(rng, TRIP_REMARKS).to_string(),
    }
}

/// Apply and pass times: apply 0–7 days before the start, pass strictly after apply and no
/// later than the start date; pending approvals (status 0) have no pass time ("").
fn approval_times(rng: &mut SmallRng, start: NaiveDateTime, pending: bool) -> (String, String) {
    let days_before = rng.random_range(0..=7u32);
    let apply_date = start.date() - Days::new(u64::from(days_before));
    let apply = apply_date.and_time(
        NaiveTime::from_hms_opt(
            rng.random_range(8..=11),
            rng.random_range(0..=59),
            rng.random_range(0..=59),
        )
        .expect("valid time of day"),
    );
    // Apply is before noon, so these bounds keep pass on or before the start date.
    let max_minutes = if days_before == 0 {
        360
    } else {
        i64::from(days_before) * 1440
    };
    let pass = apply + TimeDelta::minutes(rng.random_range(5..=max_minutes));
    let pass = if pending {
        String::new()
    } else {
        format_time(pass)
    };
    (format_time(apply), pass)
}

fn idempotent_id(rng: &mut SmallRng) -> String {
    rng.random_range(1_000_000_000u64..10_000_000_000)
        .to_string()
}

/// A list of 19-digit process instance ids whose length is drawn with `weights` (0, 1, 2 ids).
fn process_ids(rng: &mut SmallRng, weights: &[u32; 3]) -> Vec<String> {
    let roll = rng.random_range(0..weights.iter().sum::<u32>());
    let count = if roll < weights[0] {
        0
    } else if roll < weights[0] + weights[1] {
        1
    } else {
        2
    };
    (0..count)
        .map(|_| {
            (7_300_000_000_000_000_000u64 + rng.random_range(0..100_000_000_000_000_000))
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Wall-clock format of every time field ("yyyy-MM-dd HH:mm:ss").
    const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn approval_ids_round_trip_and_reject_noise() {
        let key = ApprovalKey {
            user: 12_345,
            day: day_number(date(2026, 9, 15)).unwrap(),
            kind: Kind::OvertimeWorks,
            slot: Slot::Regular,
        };
        let id = encode_approval_id(42, key).to_string();
        assert_eq!(id.len(), 19);
        assert_eq!(decode_approval_id(42, &id), Some(key));
        assert_eq!(
            decode_approval_id(43, &id),
            None,
            "ids are keyed by the seed"
        );
        assert_eq!(decode_approval_id(42, "7000000000000000001"), None);
        assert_eq!(decode_approval_id(42, "fx-sh-multiday"), None);
    }

    #[test]
    fn admin_ids_are_19_digits_and_never_generated_ones() {
        for draw in [0, 1, u64::MAX, ADMIN_ID_SPAN - 1, 0x1234_5678_9abc_def0] {
            let id = admin_approval_id(draw);
            assert_eq!(id.len(), 19, "{id}");
            for seed in [0, 42, 7] {
                assert_eq!(decode_approval_id(seed, &id), None, "{id}");
            }
        }
        let population = Population::build(42, 10, fixtures::users(), fixtures::records()).unwrap();
        let day = date(2026, 9, 15);
        for kind in [Kind::Outs, Kind::Leaves, Kind::OvertimeWorks] {
            let (id, record) = population.admin_record(3, day, kind, 99);
            assert!(!population.approval_exists(&id));
            let again = population.admin_record(3, day, kind, 99);
            assert_eq!((id.clone(), record.to_json()), (again.0, again.1.to_json()));
            let value: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
            assert_eq!(value["approval_id"], id.as_str());
            let start = value["start_time"].as_str().unwrap();
            assert!(start.starts_with("2026-09-15 "), "{start}");
        }
    }

    #[test]
    fn odd_zone_names_mean_the_users_zone_or_are_in_no_table() {
        use attendance_core::tz::{self as core_tz, ReadAs};
        let zones = [
            Zone::new("Asia/Shanghai", Some(chrono_tz::Asia::Shanghai)),
            Zone::new("America/New_York", Some(chrono_tz::America::New_York)),
            Zone::new("Europe/London", Some(chrono_tz::Europe::London)),
            Zone::new("Asia/Kolkata", Some(chrono_tz::Asia::Kolkata)),
            Zone::new("Australia/Lord_Howe", Some(chrono_tz::Australia::Lord_Howe)),
            Zone::new("", Some(chrono_tz::UTC)),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for zone in &zones {
            for day in [date(2026, 1, 15), date(2026, 7, 15)] {
                let wall = core_tz::parse_wall_time(&format!("{day} 09:00:00")).unwrap();
                let truth = core_tz::to_utc(wall, core_tz::zone(Some(zone.name)).unwrap()).0;
                for variant in 0..40 {
                    let name = odd_zone_name(zone, day, variant);
                    match core_tz::zone(Some(&name)) {
                        Ok(read) => {
                            seen.insert(read.read_as);
                            assert_eq!(core_tz::to_utc(wall, read).0, truth, "{name} on {day}");
                        }
                        Err(_) => assert!(
                            ["Asia/Beijing", "Etc/Unknown"].contains(&name.as_ref()),
                            "{name}"
                        ),
                    }
                }
            }
        }
        assert!(seen.contains(&ReadAs::FixedOffset) && seen.contains(&ReadAs::WindowsId));
        assert_eq!(fixed_offset_spelling(-19_800, 3), "UTC\u{2212}05:30");
        assert_eq!(fixed_offset_spelling(28_800, 1), "GMT+8");
        assert_eq!(fixed_offset_spelling(37_800, 2), "+1030");
    }

    #[test]
    fn dst_shifts_are_found_on_the_fixture_dates() {
        use chrono_tz::{America::New_York, Australia::Lord_Howe, Europe::London};
        let cases = [
            (New_York, date(2026, 3, 8), true),
            (New_York, date(2026, 11, 1), false),
            (London, date(2026, 3, 29), true),
            (London, date(2026, 10, 25), false),
            (Lord_Howe, date(2026, 10, 4), true),
            (Lord_Howe, date(2026, 4, 5), false),
        ];
        for (tz, day, is_gap) in cases {
            let shift = dst_shift(tz, day).unwrap_or_else(|| panic!("{tz} {day}"));
            assert_eq!(matches!(shift, DstShift::Gap(_)), is_gap, "{tz} {day}");
        }
        assert_eq!(dst_shift(New_York, date(2026, 3, 7)), None);
        assert_eq!(dst_shift(chrono_tz::Asia::Shanghai, date(2026, 3, 8)), None);
    }

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let population =
            Population::build(7, 5_000, fixtures::users(), fixtures::records()).unwrap();
        let users = population.users();
        assert_eq!(users.len(), 5_000 + fixtures::users().len());
        for id_type in [IdType::EmployeeId, IdType::EmployeeNo, IdType::OpenId] {
            let ids: HashSet<&str> = users.iter().map(|user| user.id(id_type)).collect();
            assert_eq!(ids.len(), users.len());
        }
        let first = &users[0];
        assert!(
            first.employee_id.len() == 8
                && first
                    .employee_id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(first.employee_no.starts_with('E') && first.employee_no.len() == 7);
        assert!(first.open_id.starts_with("ou_") && first.open_id.len() == 35);
    }

    #[test]
    fn generated_records_keep_their_invariants() {
        let population =
            Population::build(42, 200, fixtures::users(), fixtures::records()).unwrap();
        let from = date(2026, 1, 1);
        let mut leave_bodies: HashMap<String, String> = HashMap::new();
        let mut dst_outs = 0;
        let mut counts: HashMap<Kind, usize> = HashMap::new();
        for user in 0..200 {
            for offset in 0..365 {
                let day = from + Days::new(offset);
                let listed = population.user_day(user, day);
                for listing in &listed.listings {
                    *counts.entry(listing.kind).or_default() += 1;
                    assert!(population.approval_exists(&listing.approval_id));
                    let text = population.render(listing);
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(value["approval_id"], listing.approval_id.as_str());
                    let start = NaiveDateTime::parse_from_str(
                        value["start_time"].as_str().unwrap(),
                        TIME_FORMAT,
                    )
                    .unwrap();
                    let end = NaiveDateTime::parse_from_str(
                        value["end_time"].as_str().unwrap(),
                        TIME_FORMAT,
                    )
                    .unwrap();
                    assert!(start < end, "{text}");
                    if let Some(apply) = value.get("approve_apply_time") {
                        let apply =
                            NaiveDateTime::parse_from_str(apply.as_str().unwrap(), TIME_FORMAT)
                                .unwrap();
                        let pass = value["approve_pass_time"].as_str().unwrap();
                        if listing.status == 0 {
                            assert_eq!(pass, "");
                        } else {
                            let pass = NaiveDateTime::parse_from_str(pass, TIME_FORMAT).unwrap();
                            assert!(apply < pass && pass.date() <= start.date(), "{text}");
                        }
                    }
                    if let ListingBody::Generated(key) = &listing.body
                        && key.slot == Slot::Dst
                    {
                        dst_outs += 1;
                        let tz = population.users()[user].zone.tz.unwrap();
                        assert!(
                            !matches!(
                                tz.from_local_datetime(&start),
                                chrono::LocalResult::Single(_)
                            ),
                            "{text}"
                        );
                    }
                    if listing.kind == Kind::Leaves {
                        let previous =
                            leave_bodies.insert(listing.approval_id.clone(), text.clone());
                        assert!(previous.is_none_or(|previous| previous == text));
                        assert!(start.date() <= day && day <= end.date());
                    }
                }
            }
        }
        assert!(dst_outs > 0);
        let user_days = 200.0 * 365.0;
        let outs = counts[&Kind::Outs] as f64 / user_days;
        assert!((0.09..0.12).contains(&outs), "outs rate {outs}");
        let trips = counts[&Kind::Trips] as f64 / user_days;
        assert!((0.02..0.04).contains(&trips), "trips rate {trips}");
        assert!(!population.approval_exists("7000000000000000000"));
    }
}
