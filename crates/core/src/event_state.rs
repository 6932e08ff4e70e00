//! The `out_events`, `leave_events` and `overtime_events` tables: each approval's latest state
//! as its events tell it, one row per `instance_code`, with true UTC instants.
//!
//! Invariants:
//! - A row is a pure function of the set of events of its approval, never of their order of
//!   arrival: the latest approval event (by `event_time`, then receipt, then id) gives the
//!   fields, the earliest revert gives `reverted_at`, whichever came first. A revert whose
//!   approval event has not arrived makes no row (it is counted as pending).
//! - A leave's `leave_approval` (V1) and `leave_approvalV2` events are one row: V2's fields where
//!   V2 has them (it is the richer), V1's `leave_type` and numeric `leave_unit` beside them.
//! - Events carry no zone. Local times are read in the applicant's zone as the pull last saw it
//!   (`time_zone_source = user`), else in the default zone (`default`), under the pull tables'
//!   DST rule ([`crate::tz::to_utc`]); the local strings are kept as sent beside the instants.
//! - Rows are partitioned by the local date of the approval's start and sorted by
//!   `instance_code`, so the same events always make the same files.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    ArrayBuilder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};

use crate::approval_event::{
    Applicant, Approval, ApprovalEvent, ApprovalKind, EventBody, LEAVE_EXTRA, LeaveEvent,
    LocalRange, OutEvent, OvertimeEvent, WorkDay, local_time,
};
use crate::table::Values;
use crate::tz::{self, Resolution, Zone};

/// The three tables of approvals' latest states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventTable {
    Out,
    Leave,
    Overtime,
}

impl EventTable {
    pub const ALL: [EventTable; 3] = [EventTable::Out, EventTable::Leave, EventTable::Overtime];

    /// The table's name, also its directory under the output root.
    pub fn name(self) -> &'static str {
        match self {
            EventTable::Out => "out_events",
            EventTable::Leave => "leave_events",
            EventTable::Overtime => "overtime_events",
        }
    }

    fn of(kind: ApprovalKind) -> EventTable {
        match kind {
            ApprovalKind::Out => EventTable::Out,
            ApprovalKind::Leave => EventTable::Leave,
            ApprovalKind::Overtime => EventTable::Overtime,
        }
    }

    /// The Arrow schema of the table's files.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 3]> = OnceLock::new();
        let all =
            SCHEMAS.get_or_init(|| EventTable::ALL.map(|t| Arc::new(Schema::new(t.fields()))));
        Arc::clone(&all[self as usize])
    }

    fn fields(self) -> Vec<Field> {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let int64 = |name: &str| Field::new(name, DataType::Int64, true);
        let time = |name: &str| Field::new(name, utc(), true);
        let mut f = vec![
            Field::new("instance_code", DataType::Utf8, false),
            text("approval_code"),
            text("tenant_key"),
            text("app_id"),
            text("user_id"),
            text("open_id"),
            time("start_time"),
            time("end_time"),
            text("start_time_local"),
            text("end_time_local"),
            Field::new("time_zone", DataType::Utf8, false),
            Field::new("time_zone_source", DataType::Utf8, false),
            int64("interval_seconds"),
        ];
        match self {
            EventTable::Out => f.extend([
                text("unit"),
                text("out_name"),
                text("out_name_key"),
                text("reason"),
                text("image"),
            ]),
            EventTable::Leave => {
                f.extend([
                    text("leave_type"),
                    int64("leave_unit_code"),
                    text("leave_unit"),
                    text("leave_name"),
                    text("leave_name_key"),
                    text("reason"),
                    Field::new(
                        "leave_range",
                        list_of(DataType::Struct(range_fields())),
                        true,
                    ),
                    Field::new(
                        "leave_detail",
                        list_of(DataType::Struct(range_fields())),
                        true,
                    ),
                    Field::new("leave_certification", list_of(DataType::Utf8), true),
                ]);
                f.extend(LEAVE_EXTRA.map(text));
                f.extend([
                    text("origin_instance_code"),
                    text("v1_event_id"),
                    text("v2_event_id"),
                ]);
            }
            EventTable::Overtime => f.extend([
                text("work_type"),
                text("reason"),
                Field::new(
                    "time_range",
                    list_of(DataType::Struct(range_fields())),
                    true,
                ),
                Field::new(
                    "work_detail",
                    list_of(DataType::Struct(work_day_fields())),
                    true,
                ),
                Field::new("work_multi_imitate_users", list_of(DataType::Utf8), true),
            ]),
        }
        f.extend([
            time("approval_start_time"),
            time("approval_end_time"),
            time("reverted_at"),
            time("event_time"),
            Field::new("received_at", utc(), false),
            Field::new("event_ids", list_of(DataType::Utf8), false),
        ]);
        f
    }

    /// How the columns are stored (see [`Values`]).
    pub fn values_of(self, column: &str) -> Values {
        match column {
            "instance_code"
            | "event_ids"
            | "v1_event_id"
            | "v2_event_id"
            | "received_at"
            | "event_time"
            | "approval_start_time"
            | "approval_end_time"
            | "reverted_at"
            | "leave_range"
            | "leave_detail"
            | "time_range"
            | "work_detail"
            | "reason" => Values::Unique,
            "start_time_local" | "end_time_local" => Values::RepeatedText,
            _ => Values::Repeated,
        }
    }
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("element", item, true)))
}

fn range_fields() -> Fields {
    Fields::from(vec![
        Field::new("start_time", utc(), true),
        Field::new("end_time", utc(), true),
        Field::new("start_time_local", DataType::Utf8, true),
        Field::new("end_time_local", DataType::Utf8, true),
    ])
}

fn work_day_fields() -> Fields {
    Fields::from(vec![
        Field::new("start_date", DataType::Utf8, true),
        Field::new("end_date", DataType::Utf8, true),
        Field::new("rule_associated", DataType::Int64, true),
        Field::new("interval_seconds", DataType::Int64, true),
    ])
}

/// One landed event, read.
#[derive(Debug, Clone, Copy)]
pub struct LandedApproval<'a> {
    pub event_id: &'a str,
    pub received_at: DateTime<Utc>,
    pub event: &'a ApprovalEvent,
}

/// Which zone an approval's local times were read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    /// The applicant's zone in the pull's answers.
    User,
    /// The default zone (`--time-zone`): the pull has not seen this applicant.
    Default,
}

impl ZoneSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneSource::User => "user",
            ZoneSource::Default => "default",
        }
    }
}

/// What the state tables were built from and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Rows of each table.
    pub rows: BTreeMap<EventTable, usize>,
    /// Rows with a `reverted_at`.
    pub reverted: usize,
    /// Reverts whose approval event has not arrived: no row yet.
    pub pending_reverts: usize,
    /// Rows read in the default zone.
    pub default_zone: usize,
    /// Rows with a time that needed the DST rule (moved past a gap, or the earlier of a fold).
    pub dst_adjusted: usize,
}

/// The state tables' partitions: (table, local start date) → rows sorted by `instance_code`.
#[derive(Debug, Default)]
pub struct StateTables {
    pub partitions: BTreeMap<(EventTable, NaiveDate), RecordBatch>,
    pub counts: StateCounts,
    /// Where each row went and how it was read, in row order of the partitions' keys.
    pub placed: Vec<Placed>,
}

/// One row's approval, where it was placed and how it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub table: EventTable,
    pub instance_code: String,
    pub date: NaiveDate,
    pub user_id: Option<String>,
    pub open_id: Option<String>,
    pub time_zone: &'static str,
    pub zone_source: ZoneSource,
    pub reverted: bool,
}

/// The events of one approval.
#[derive(Default)]
struct Instance<'a> {
    approvals: Vec<LandedApproval<'a>>,
    reverts: Vec<LandedApproval<'a>>,
}

/// Newest first: by event time, then receipt, then id (a total order, so the choice never
/// depends on the order the events were read in).
fn newest_first(a: &LandedApproval<'_>, b: &LandedApproval<'_>) -> std::cmp::Ordering {
    (b.event.common.event_time, b.received_at, b.event_id).cmp(&(
        a.event.common.event_time,
        a.received_at,
        a.event_id,
    ))
}

/// Builds the three tables from every landed approval event. `zone_of` gives an applicant's
/// zone as the pull last saw it; `default` is used when it gives none.
pub fn build(
    events: &[LandedApproval<'_>],
    zone_of: &dyn Fn(&Applicant) -> Option<Zone>,
    default: Zone,
) -> StateTables {
    let mut rows: BTreeMap<(EventTable, NaiveDate), Rows> = BTreeMap::new();
    let mut counts = StateCounts::default();
    let mut placed = Vec::new();
    for ((table, code), instance) in instances(events) {
        if instance.approvals.is_empty() {
            counts.pending_reverts += instance.reverts.len();
            continue;
        }
        let state = State::of(code, &instance, zone_of, default);
        *counts.rows.entry(table).or_default() += 1;
        counts.reverted += usize::from(state.reverted_at.is_some());
        counts.default_zone += usize::from(state.zone_source == ZoneSource::Default);
        counts.dst_adjusted += usize::from(state.dst_adjusted);
        placed.push(Placed {
            table,
            instance_code: code.to_owned(),
            date: state.date,
            user_id: state.approval.applicant.user_id.clone(),
            open_id: state.approval.applicant.open_id.clone(),
            time_zone: state.zone.name,
            zone_source: state.zone_source,
            reverted: state.reverted_at.is_some(),
        });
        rows.entry((table, state.date))
            .or_insert_with(|| Rows::new(table))
            .push(state);
    }
    StateTables {
        partitions: rows
            .into_iter()
            .map(|(key, rows)| (key, rows.finish()))
            .collect(),
        counts,
        placed,
    }
}

/// The approval an event is about: its table, its `instance_code` and whether the event is a
/// revert. None for events of other types and for an approval event without a code.
pub fn instance_of(event: &ApprovalEvent) -> Option<(EventTable, &str, bool)> {
    let code = event.common.instance_code.as_deref()?;
    let (kind, revert) = match &event.body {
        EventBody::Out(_) => (ApprovalKind::Out, false),
        EventBody::Leave(_) => (ApprovalKind::Leave, false),
        EventBody::Overtime(_) => (ApprovalKind::Overtime, false),
        EventBody::Revert(r) => (r.kind, true),
        EventBody::Other => return None,
    };
    Some((EventTable::of(kind), code, revert))
}

/// Each approval's partition date — the local date its head event starts on (a date as sent:
/// it does not depend on the zone) — or None while only reverts of it have landed.
pub fn placements<'a>(
    events: &[LandedApproval<'a>],
) -> BTreeMap<(EventTable, &'a str), Option<NaiveDate>> {
    instances(events)
        .into_iter()
        .map(|(key, instance)| {
            let date = (!instance.approvals.is_empty()).then(|| {
                local_time(&approval_of(head_of(&instance)).start_local)
                    .expect("the reader accepts only local times")
                    .date()
            });
            (key, date)
        })
        .collect()
}

/// The events grouped by approval, each approval's events newest first.
fn instances<'a>(events: &[LandedApproval<'a>]) -> BTreeMap<(EventTable, &'a str), Instance<'a>> {
    let mut instances: BTreeMap<(EventTable, &str), Instance<'_>> = BTreeMap::new();
    for landed in events {
        let Some((table, code, revert)) = instance_of(landed.event) else {
            continue;
        };
        let instance = instances.entry((table, code)).or_default();
        if revert {
            instance.reverts.push(*landed);
        } else {
            instance.approvals.push(*landed);
        }
    }
    for instance in instances.values_mut() {
        instance.approvals.sort_by(newest_first);
    }
    instances
}

/// The event that gives an approval's fields: its newest V2 for a leave that has one (V2 is the
/// richer), else its newest approval event.
fn head_of<'a>(instance: &Instance<'a>) -> &'a ApprovalEvent {
    instance
        .approvals
        .iter()
        .find(|e| matches!(&e.event.body, EventBody::Leave(l) if l.v2))
        .unwrap_or(&instance.approvals[0])
        .event
}

/// A local range read in the approval's zone.
struct Range<'a> {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    local: &'a LocalRange,
}

/// One approval's row, before it is columns.
struct State<'a> {
    code: &'a str,
    /// The newest approval event: the row's fields (for a leave, the newest V2 when there is one).
    head: &'a ApprovalEvent,
    approval: &'a Approval,
    date: NaiveDate,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    zone: Zone,
    zone_source: ZoneSource,
    dst_adjusted: bool,
    reverted_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    event_ids: Vec<&'a str>,
    body: Body<'a>,
}

enum Body<'a> {
    Out(&'a OutEvent),
    Leave {
        v1: Option<(&'a str, &'a LeaveEvent)>,
        v2: Option<(&'a str, &'a LeaveEvent)>,
        range: Vec<Range<'a>>,
        detail: Vec<Range<'a>>,
    },
    Overtime {
        event: &'a OvertimeEvent,
        time_range: Vec<Range<'a>>,
    },
}

fn approval_of(event: &ApprovalEvent) -> &Approval {
    match &event.body {
        EventBody::Out(o) => &o.approval,
        EventBody::Leave(l) => &l.approval,
        EventBody::Overtime(w) => &w.approval,
        EventBody::Revert(_) | EventBody::Other => {
            unreachable!("instances hold approval events apart from reverts")
        }
    }
}

impl<'a> State<'a> {
    fn of(
        code: &'a str,
        instance: &Instance<'a>,
        zone_of: &dyn Fn(&Applicant) -> Option<Zone>,
        default: Zone,
    ) -> State<'a> {
        let leave = |v2: bool| {
            instance.approvals.iter().find_map(|e| match &e.event.body {
                EventBody::Leave(l) if l.v2 == v2 => Some((e.event_id, l)),
                _ => None,
            })
        };
        let (v1, v2) = (leave(false), leave(true));
        let head = head_of(instance);
        let approval = approval_of(head);
        let (zone, zone_source) = match zone_of(&approval.applicant) {
            Some(zone) => (zone, ZoneSource::User),
            None => (default, ZoneSource::Default),
        };
        let mut dst_adjusted = false;
        let mut read = |text: &str| -> Option<DateTime<Utc>> {
            let (instant, resolution) = tz::to_utc(local_time(text)?, zone);
            dst_adjusted |= resolution != Resolution::Exact;
            Some(instant)
        };
        let start_local =
            local_time(&approval.start_local).expect("the reader accepts only local times");
        let start = read(&approval.start_local).expect("checked above");
        let end = read(&approval.end_local).expect("the reader accepts only local times");
        let mut ranges = |list: &'a [LocalRange]| -> Vec<Range<'a>> {
            list.iter()
                .map(|local| Range {
                    start: read(&local.start),
                    end: read(&local.end),
                    local,
                })
                .collect()
        };
        let body = match &head.body {
            EventBody::Out(o) => Body::Out(o),
            EventBody::Leave(l) => Body::Leave {
                v1,
                v2,
                range: ranges(&l.range),
                detail: ranges(&l.detail),
            },
            EventBody::Overtime(w) => Body::Overtime {
                event: w,
                time_range: ranges(&w.time_range),
            },
            EventBody::Revert(_) | EventBody::Other => unreachable!("an approval event"),
        };
        let reverted_at = instance
            .reverts
            .iter()
            .filter_map(|r| {
                let operate = match &r.event.body {
                    EventBody::Revert(revert) => revert
                        .operate_time
                        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)),
                    _ => None,
                };
                operate
                    .or(r.event.common.event_time)
                    .or(Some(r.received_at))
            })
            .min();
        let mut event_ids: Vec<&str> = instance
            .approvals
            .iter()
            .chain(&instance.reverts)
            .map(|e| e.event_id)
            .collect();
        event_ids.sort_unstable();
        let received_at = instance
            .approvals
            .iter()
            .chain(&instance.reverts)
            .map(|e| e.received_at)
            .max()
            .expect("an instance has an approval event");
        State {
            code,
            head,
            approval,
            date: start_local.date(),
            start,
            end,
            zone,
            zone_source,
            dst_adjusted,
            reverted_at,
            received_at,
            event_ids,
            body,
        }
    }
}

/// Column builders of one partition.
struct Rows<'a> {
    table: EventTable,
    states: Vec<State<'a>>,
}

impl<'a> Rows<'a> {
    fn new(table: EventTable) -> Self {
        Rows {
            table,
            states: Vec::new(),
        }
    }

    fn push(&mut self, state: State<'a>) {
        self.states.push(state);
    }

    fn finish(mut self) -> RecordBatch {
        // Instances come sorted by code from the map; kept explicit so the order is the rule.
        self.states.sort_by(|a, b| a.code.cmp(b.code));
        let s = &self.states;
        let text = |f: &dyn Fn(&State<'a>) -> Option<String>| -> ArrayRef {
            let mut b = StringBuilder::with_capacity(s.len(), s.len() * 16);
            for state in s {
                b.append_option(f(state));
            }
            Arc::new(b.finish())
        };
        let int = |f: &dyn Fn(&State<'a>) -> Option<i64>| -> ArrayRef {
            let mut b = Int64Builder::with_capacity(s.len());
            for state in s {
                b.append_option(f(state));
            }
            Arc::new(b.finish())
        };
        let time = |f: &dyn Fn(&State<'a>) -> Option<DateTime<Utc>>| -> ArrayRef {
            let mut b = TimestampMicrosecondBuilder::with_capacity(s.len()).with_timezone("UTC");
            for state in s {
                b.append_option(f(state).map(|t| t.timestamp_micros()));
            }
            Arc::new(b.finish())
        };
        let texts =
            |f: &dyn Fn(&State<'a>) -> Option<Vec<String>>| -> ArrayRef {
                let mut b = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(Field::new("element", DataType::Utf8, true)));
                for state in s {
                    match f(state) {
                        Some(items) => {
                            for item in items {
                                b.values().append_value(item);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            };
        let ranges = |f: &dyn for<'s> Fn(&'s State<'a>) -> Option<&'s [Range<'a>]>| -> ArrayRef {
            let mut b = struct_list(range_fields());
            for state in s {
                let Some(list) = f(state) else {
                    b.append(false);
                    continue;
                };
                for r in list {
                    let item = b.values();
                    field::<TimestampMicrosecondBuilder>(item, 0)
                        .append_option(r.start.map(|t| t.timestamp_micros()));
                    field::<TimestampMicrosecondBuilder>(item, 1)
                        .append_option(r.end.map(|t| t.timestamp_micros()));
                    field::<StringBuilder>(item, 2).append_value(&r.local.start);
                    field::<StringBuilder>(item, 3).append_value(&r.local.end);
                    item.append(true);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        };
        let seconds = |s: Option<i64>| s.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
        let common = |f: &dyn Fn(&crate::approval_event::Common) -> Option<String>| {
            text(&|st| f(&st.head.common))
        };
        let mut columns: Vec<ArrayRef> = vec![
            text(&|st| Some(st.code.to_owned())),
            common(&|c| c.approval_code.clone()),
            common(&|c| c.tenant_key.clone()),
            common(&|c| c.app_id.clone()),
            text(&|st| st.approval.applicant.user_id.clone()),
            text(&|st| st.approval.applicant.open_id.clone()),
            time(&|st| Some(st.start)),
            time(&|st| Some(st.end)),
            text(&|st| Some(st.approval.start_local.clone())),
            text(&|st| Some(st.approval.end_local.clone())),
            text(&|st| Some(st.zone.name.to_owned())),
            text(&|st| Some(st.zone_source.as_str().to_owned())),
            int(&|st| st.approval.interval_seconds),
        ];
        match self.table {
            EventTable::Out => {
                fn out<'a>(st: &State<'a>) -> &'a OutEvent {
                    match st.body {
                        Body::Out(o) => o,
                        _ => unreachable!("an out_events row"),
                    }
                }
                columns.extend([
                    text(&|st| out(st).unit.clone()),
                    text(&|st| {
                        let o = out(st);
                        o.name_key
                            .as_deref()
                            .and_then(|k| o.i18n.resolve(k))
                            .map(str::to_owned)
                    }),
                    text(&|st| out(st).name_key.clone()),
                    text(&|st| out(st).reason.clone()),
                    text(&|st| out(st).image.clone()),
                ]);
            }
            EventTable::Leave => {
                type Leave<'s, 'a> = (
                    Option<(&'a str, &'a LeaveEvent)>,
                    Option<(&'a str, &'a LeaveEvent)>,
                    &'s [Range<'a>],
                    &'s [Range<'a>],
                );
                fn leave<'s, 'a>(st: &'s State<'a>) -> Leave<'s, 'a> {
                    match &st.body {
                        Body::Leave {
                            v1,
                            v2,
                            range,
                            detail,
                        } => (*v1, *v2, range, detail),
                        _ => unreachable!("a leave_events row"),
                    }
                }
                fn v1<'a>(st: &State<'a>) -> Option<&'a LeaveEvent> {
                    leave(st).0.map(|(_, l)| l)
                }
                fn v2<'a>(st: &State<'a>) -> Option<&'a LeaveEvent> {
                    leave(st).1.map(|(_, l)| l)
                }
                fn either<'a>(st: &State<'a>) -> &'a LeaveEvent {
                    v2(st).or(v1(st)).expect("a leave has an event")
                }
                columns.extend([
                    text(&|st| v1(st).and_then(|l| l.leave_type.clone())),
                    int(&|st| v1(st).and_then(|l| l.unit_code)),
                    text(&|st| v2(st).and_then(|l| l.unit_name.clone())),
                    text(&|st| {
                        v2(st).and_then(|l| {
                            l.name_key
                                .as_deref()
                                .and_then(|k| l.i18n.resolve(k))
                                .map(str::to_owned)
                        })
                    }),
                    text(&|st| v2(st).and_then(|l| l.name_key.clone())),
                    text(&|st| either(st).reason.clone()),
                    ranges(&|st| v2(st).map(|_| leave(st).2)),
                    ranges(&|st| v2(st).map(|_| leave(st).3)),
                    texts(&|st| v2(st).map(|l| l.certification.clone())),
                ]);
                for key in LEAVE_EXTRA {
                    columns.push(text(&|st| either(st).extra.get(key).cloned()));
                }
                columns.extend([
                    text(&|st| either(st).origin_instance_code.clone()),
                    text(&|st| leave(st).0.map(|(id, _)| id.to_owned())),
                    text(&|st| leave(st).1.map(|(id, _)| id.to_owned())),
                ]);
            }
            EventTable::Overtime => {
                fn overtime<'s, 'a>(st: &'s State<'a>) -> (&'a OvertimeEvent, &'s [Range<'a>]) {
                    match &st.body {
                        Body::Overtime { event, time_range } => (event, time_range),
                        _ => unreachable!("an overtime_events row"),
                    }
                }
                let mut days = struct_list(work_day_fields());
                for st in s {
                    for day in &overtime(st).0.detail {
                        append_work_day(days.values(), day);
                    }
                    days.append(true);
                }
                columns.extend([
                    text(&|st| overtime(st).0.work_type.clone()),
                    text(&|st| overtime(st).0.reason.clone()),
                    ranges(&|st| Some(overtime(st).1)),
                    Arc::new(days.finish()),
                    texts(&|st| Some(overtime(st).0.multi_imitate_users.clone())),
                ]);
            }
        }
        columns.extend([
            time(&|st| seconds(st.approval.process_start)),
            time(&|st| seconds(st.approval.process_end)),
            time(&|st| st.reverted_at),
            time(&|st| st.head.common.event_time),
            time(&|st| Some(st.received_at)),
            texts(&|st| Some(st.event_ids.iter().map(|id| (*id).to_owned()).collect())),
        ]);
        RecordBatch::try_new(self.table.schema(), columns)
            .expect("the columns are built in the schema's order and types")
    }
}

fn struct_list(fields: Fields) -> ListBuilder<StructBuilder> {
    let builders: Vec<Box<dyn ArrayBuilder>> = fields
        .iter()
        .map(|f| -> Box<dyn ArrayBuilder> {
            match f.data_type() {
                DataType::Utf8 => Box::new(StringBuilder::new()),
                DataType::Int64 => Box::new(Int64Builder::new()),
                DataType::Timestamp(..) => {
                    Box::new(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
                other => unreachable!("no struct field of type {other} here"),
            }
        })
        .collect();
    let item = DataType::Struct(fields.clone());
    ListBuilder::new(StructBuilder::new(fields, builders))
        .with_field(Arc::new(Field::new("element", item, true)))
}

fn field<T: ArrayBuilder>(item: &mut StructBuilder, i: usize) -> &mut T {
    item.field_builder::<T>(i)
        .expect("struct fields are built with their types")
}

fn append_work_day(item: &mut StructBuilder, day: &WorkDay) {
    field::<StringBuilder>(item, 0).append_value(&day.start);
    field::<StringBuilder>(item, 1).append_value(&day.end);
    field::<Int64Builder>(item, 2).append_option(day.rule_associated);
    field::<Int64Builder>(item, 3).append_option(day.interval_seconds);
    item.append(true);
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::{Array, ListArray};
    use serde_json::{Value, json};

    use super::*;

    fn read(event: Value, ts: &str) -> ApprovalEvent {
        ApprovalEvent::read(
            &json!({"ts": ts, "uuid": "u", "type": "event_callback", "event": event}),
        )
        .unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn micros(text: &str) -> i64 {
        at(text).timestamp_micros()
    }

    fn shanghai() -> Zone {
        tz::zone(Some("Asia/Shanghai")).unwrap()
    }

    fn leave_v2() -> ApprovalEvent {
        read(
            json!({"type": "leave_approvalV2", "instance_code": "L1", "approval_code": "A",
              "user_id": "u1", "open_id": "ou_1", "start_time": 1725500000, "end_time": 1725500100,
              "leave_start_time": "2024-09-05 13:30:00", "leave_end_time": "2024-09-06 18:00:00",
              "leave_interval": "45000", "leave_unit": "HOUR", "leave_name": "@i18n@k",
              "i18n_resources": "[{is_default=true,locale=zh_cn,texts={@i18n@k=事假}}]",
              "leave_range": "[[2024-09-05 13:30:00,2024-09-06 18:00:00]]",
              "leave_detail": [["2024-09-05 13:30:00", "2024-09-05 18:00:00"], ["2024-09-06 09:00:00", "2024-09-06 18:00:00"]],
              "leave_reason": "sick", "leave_certification": null, "leave_infant_num": 2}),
            "1725500200.5",
        )
    }

    fn leave_v1() -> ApprovalEvent {
        read(
            json!({"type": "leave_approval", "instance_code": "L1", "employee_id": "u1",
              "leave_type": "事假", "leave_unit": 1, "leave_start_time": "2024-09-05 13:30:00",
              "leave_end_time": "2024-09-06 18:00:00", "leave_interval": 45000, "leave_reason": "sick"}),
            "1725500201",
        )
    }

    fn revert(kind: &str, code: &str, operate: i64) -> ApprovalEvent {
        read(
            json!({"type": kind, "instance_code": code, "operate_time": operate.to_string()}),
            "1725600000",
        )
    }

    fn landed<'a>(id: &'a str, event: &'a ApprovalEvent) -> LandedApproval<'a> {
        LandedApproval {
            event_id: id,
            received_at: at("2024-09-10T00:00:00Z"),
            event,
        }
    }

    #[test]
    fn a_leaves_two_events_and_its_revert_are_one_row_in_any_order() {
        let (v1, v2) = (leave_v1(), leave_v2());
        let undo = revert("leave_approval_revert", "L1", 1_725_600_000);
        let tokyo = tz::zone(Some("Asia/Tokyo")).unwrap();
        let zone_of = |a: &Applicant| (a.user_id.as_deref() == Some("u1")).then_some(tokyo);
        let orders = [
            vec![landed("e1", &v1), landed("e2", &v2), landed("e3", &undo)],
            vec![landed("e3", &undo), landed("e2", &v2), landed("e1", &v1)],
        ];
        let mut seen = Vec::new();
        for events in orders {
            let built = build(&events, &zone_of, shanghai());
            assert_eq!(built.counts.rows.get(&EventTable::Leave), Some(&1));
            assert_eq!(built.counts.reverted, 1);
            let date = NaiveDate::from_ymd_opt(2024, 9, 5).unwrap();
            let batch = &built.partitions[&(EventTable::Leave, date)];
            assert_eq!(batch.num_rows(), 1);
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let ts = |name: &str| {
                col(name)
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(0)
            };
            let txt = |name: &str| col(name).as_string::<i32>().value(0).to_owned();
            // Tokyo is UTC+9.
            assert_eq!(ts("start_time"), micros("2024-09-05T04:30:00Z"));
            assert_eq!(ts("end_time"), micros("2024-09-06T09:00:00Z"));
            assert_eq!(txt("time_zone"), "Asia/Tokyo");
            assert_eq!(txt("time_zone_source"), "user");
            assert_eq!(txt("leave_type"), "事假");
            assert_eq!(
                col("leave_unit_code").as_primitive::<Int64Type>().value(0),
                1
            );
            assert_eq!(txt("leave_unit"), "HOUR");
            assert_eq!(txt("leave_name"), "事假");
            assert_eq!(txt("v1_event_id"), "e1");
            assert_eq!(txt("v2_event_id"), "e2");
            assert_eq!(txt("leave_infant_num"), "2");
            assert_eq!(ts("reverted_at"), micros("2024-09-06T05:20:00Z"));
            let detail = col("leave_detail");
            let detail = detail.as_any().downcast_ref::<ListArray>().unwrap();
            let days = detail.value(0);
            let days = days.as_struct();
            assert_eq!(days.len(), 2);
            let starts = days.column(0).as_primitive::<TimestampMicrosecondType>();
            assert_eq!(starts.value(1), micros("2024-09-06T00:00:00Z"));
            assert_eq!(
                days.column(3).as_string::<i32>().value(1),
                "2024-09-06 18:00:00"
            );
            // `leave_certification: null` is an empty list, not a missing one: V2 sent the field.
            let cert = col("leave_certification");
            assert!(!cert.is_null(0));
            let ids = col("event_ids");
            let ids = ids.as_any().downcast_ref::<ListArray>().unwrap().value(0);
            assert_eq!(ids.as_string::<i32>().len(), 3);
            seen.push(batch.clone());
        }
        assert_eq!(seen[0], seen[1]);
    }

    #[test]
    fn a_revert_alone_is_pending_and_the_default_zone_is_named() {
        let undo = revert("out_approval_revert", "O9", 1_725_600_000);
        let out = read(
            json!({"type": "out_approval", "instance_code": "O1", "user_id": "u2",
              "out_start_time": "2024-03-10 02:30:00", "out_end_time": "2024-03-10 04:00:00",
              "out_unit": "HALR_DAY", "out_name": "@i18n@o",
              "i18n_resources": ["{\"is_default\":true,\"locale\":\"en_us\",\"texts\":{\"@i18n@o\":\"Visit\"}}"]}),
            "1710000000",
        );
        let events = [landed("a", &undo), landed("b", &out)];
        let new_york = tz::zone(Some("America/New_York")).unwrap();
        let built = build(&events, &|_| None, new_york);
        assert_eq!(built.counts.pending_reverts, 1);
        assert_eq!(built.counts.default_zone, 1);
        // 02:30 on 2024-03-10 does not exist in New York: moved past the gap, as in the pull.
        assert_eq!(built.counts.dst_adjusted, 1);
        let batch = built.partitions.values().next().unwrap();
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        assert_eq!(
            col("start_time")
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            micros("2024-03-10T07:30:00Z")
        );
        assert_eq!(
            col("time_zone_source").as_string::<i32>().value(0),
            "default"
        );
        assert_eq!(col("unit").as_string::<i32>().value(0), "HALR_DAY");
        assert_eq!(col("out_name").as_string::<i32>().value(0), "Visit");
        assert!(col("reverted_at").is_null(0));
    }

    #[test]
    fn overtime_keeps_its_days_and_ranges() {
        let work = read(
            json!({"instance_code": "W", "employee_id": "e2", "type": "work_approval",
            "time_range": [{"work_start_time": "2018-12-01 12:00:00", "work_end_time": "2018-12-02 12:00:00"}],
            "work_detail": [{"start": "2018-12-01 00:00", "end": "2018-12-01 00:00", "rule_associated": 2, "interval": "43200"}],
            "work_start_time": "2018-12-01 12:00:00", "work_end_time": "2018-12-02 12:00:00",
            "work_interval": "7200", "work_multi_imitate_users": ["x"], "work_type": 3}),
            "1543600000",
        );
        let built = build(&[landed("w", &work)], &|_| None, shanghai());
        let batch = built.partitions.values().next().unwrap();
        assert_eq!(batch.schema(), EventTable::Overtime.schema());
        let detail = batch.column_by_name("work_detail").unwrap();
        let detail = detail
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap()
            .value(0);
        let detail = detail.as_struct();
        assert_eq!(
            detail.column(0).as_string::<i32>().value(0),
            "2018-12-01 00:00"
        );
        assert_eq!(detail.column(3).as_primitive::<Int64Type>().value(0), 43200);
        let range = batch.column_by_name("time_range").unwrap();
        let range = range.as_any().downcast_ref::<ListArray>().unwrap().value(0);
        assert_eq!(
            range
                .as_struct()
                .column(1)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            micros("2018-12-02T04:00:00Z")
        );
        assert_eq!(
            batch
                .column_by_name("work_type")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "3"
        );
    }
}
