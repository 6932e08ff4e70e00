//! Flatten: one query answer into Arrow batches of the four tables, plus the records kept aside.
//! Pure, no I/O.
//!
//! Invariants:
//! - Every list element of the answer ends up in exactly one place: a row of its table under the
//!   (user, date) it came under, or a [`Reject`] carrying its bytes as sent and the reason.
//! - A record is never read as UTC unless the platform said so (an empty zone); a zone that is no
//!   alias, IANA name, fixed offset or Windows ID ([`crate::tz`]), or a malformed time, rejects the
//!   record, it is not guessed. `time_zone` keeps the name as sent; `time_zone_iana` and
//!   `utc_offset_seconds` say what it was read as.
//! - Rows land only under dates of the queried window and users of the queried batch: anything
//!   else would be written into a partition this query does not own (rejected instead).
//! - Empty time strings mean "not set" (a pending approval has no pass time) and become nulls.
//! - One parse in the usual case: the answer is read once into borrowed, typed records and each
//!   row goes straight into the column builders. Only when that typed read fails (a field of the
//!   wrong type somewhere) is the answer read element by element and record by record, which
//!   names the field at fault; and only records kept aside are looked up again for their bytes.
//!   Both ways give the same rows and rejects (a test holds them to it).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow_array::RecordBatch;
use chrono::NaiveDate;
use serde::Serialize;
use serde::de::Deserialize;
use serde_json::value::RawValue;

use crate::answer::{
    I18nNames, QueryData, TypedQueryData, UserApproval, UserLeave, UserOut, UserOvertimeWork,
    UserTrip,
};
use crate::plan::{Status, Window};
use crate::table::{
    AbsenceColumns, AbsenceRow, Columns, Head, OvertimeColumns, OvertimeRow, ProcessIds, RunStamp,
    Table, TripColumns, TripRow,
};
use crate::tz::{self, ReadAs, Resolution, Zone, ZoneAliases};

/// One answer's rows of one table: a batch in the answer's order and each row's partition date.
#[derive(Debug)]
pub struct AnswerRows {
    pub table: Table,
    pub batch: RecordBatch,
    pub dates: Vec<NaiveDate>,
}

/// What one answer flattened into.
#[derive(Debug, Default)]
pub struct Flattened {
    /// One entry per table that got rows, in [`Table::ALL`] order.
    pub rows: Vec<AnswerRows>,
    pub rejects: Vec<Reject>,
    pub counts: DstCounts,
    /// Each user's zone as of their latest placed user_approval: `user_id` → (its date, the
    /// zone's canonical name, [`Zone::name`]: "UTC" for an empty one). See [`note_zone`].
    pub zones: BTreeMap<String, (NaiveDate, &'static str)>,
}

/// Records that `user` was in `zone` on `date`, unless a later date is known already or a named
/// zone known explains this fixed offset ([`tz::compare_sightings`]). Of two zones seen on the
/// same date the greater name is kept, so the result does not depend on the order answers or
/// elements come in.
pub fn note_zone(
    zones: &mut BTreeMap<String, (NaiveDate, &'static str)>,
    user: &str,
    date: NaiveDate,
    zone: &'static str,
) {
    match zones.get_mut(user) {
        Some(seen) => *seen = later_zone(*seen, (date, zone)),
        None => {
            zones.insert(user.to_owned(), (date, zone));
        }
    }
}

/// Of two sightings of a user's zone, the one to keep (see [`note_zone`]).
fn later_zone(
    a: (NaiveDate, &'static str),
    b: (NaiveDate, &'static str),
) -> (NaiveDate, &'static str) {
    match tz::compare_sightings(a, b) {
        std::cmp::Ordering::Greater => b,
        std::cmp::Ordering::Equal => a.max(b),
        std::cmp::Ordering::Less => a,
    }
}

/// Every zone of `from` into `into`, by the rule of [`note_zone`].
pub fn merge_zones(
    into: &mut BTreeMap<String, (NaiveDate, &'static str)>,
    from: BTreeMap<String, (NaiveDate, &'static str)>,
) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (user, (date, zone)) in from {
        match into.get_mut(&user) {
            Some(seen) => *seen = later_zone(*seen, (date, zone)),
            None => {
                into.insert(user, (date, zone));
            }
        }
    }
}

impl Flattened {
    pub fn rows(&self, table: Table) -> usize {
        self.rows
            .iter()
            .filter(|r| r.table == table)
            .map(|r| r.batch.num_rows())
            .sum()
    }

    pub fn total_rows(&self) -> usize {
        self.rows.iter().map(|r| r.batch.num_rows()).sum()
    }
}

/// Why an answer cannot be flattened at all.
#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    #[error("the answer's data is not an object with a user_approvals list: {0}")]
    Shape(serde_json::Error),
    #[error(
        "cannot build the {table} batch (a bug of attendance-sync: please report it with this message)"
    )]
    Build {
        table: &'static str,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// A record that could not be normalized, kept with everything needed to find and fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    /// `None` when the whole user_approval element was unreadable.
    pub table: Option<Table>,
    pub user_id: Option<String>,
    /// The `date` as sent (`yyyyMMdd`), which may itself be what is wrong.
    pub date: Option<String>,
    pub approval_id: Option<String>,
    /// The user-date's `time_zone` as sent (`None` when it sent none), which `rejects replay`
    /// needs to read the record again.
    pub time_zone: Option<String>,
    pub status: Status,
    pub field: String,
    pub value: Option<String>,
    pub reason: String,
    pub raw: Box<RawValue>,
}

/// Rows written with a time that needed the DST rule: counted once per row, whichever and
/// however many of its times needed it (a record rejected for another reason is not counted);
/// and rows whose zone was not read as an IANA name. Serialized, only the DST counts: the zone
/// counts go with the aliases that explain them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FlattenCounts {
    pub dst_gap_shifted: u64,
    pub dst_ambiguous_earlier: u64,
    #[serde(skip)]
    pub zones: ZoneCounts,
}

/// Rows whose zone name was read other than as an IANA name.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneCounts {
    #[serde(rename = "rows_at_fixed_offset")]
    pub fixed_offset: u64,
    #[serde(rename = "rows_by_windows_id")]
    pub windows_id: u64,
    /// By the canonical name the alias reads as.
    #[serde(rename = "rows_by_alias")]
    pub by_alias: BTreeMap<&'static str, u64>,
}

impl ZoneCounts {
    pub fn is_empty(&self) -> bool {
        self.fixed_offset == 0 && self.windows_id == 0 && self.by_alias.is_empty()
    }
}

impl std::ops::AddAssign for ZoneCounts {
    fn add_assign(&mut self, other: ZoneCounts) {
        self.fixed_offset += other.fixed_offset;
        self.windows_id += other.windows_id;
        for (name, n) in other.by_alias {
            *self.by_alias.entry(name).or_default() += n;
        }
    }
}

impl std::ops::AddAssign for FlattenCounts {
    fn add_assign(&mut self, other: FlattenCounts) {
        self.dst_gap_shifted += other.dst_gap_shifted;
        self.dst_ambiguous_earlier += other.dst_ambiguous_earlier;
        self.zones += other.zones;
    }
}

/// [`FlattenCounts`] by user: a user refused later in the window is taken out of the totals,
/// as their rows are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DstCounts(BTreeMap<String, FlattenCounts>);

impl DstCounts {
    pub fn merge(&mut self, other: DstCounts) {
        for (user, counts) in other.0 {
            *self.0.entry(user).or_default() += counts;
        }
    }

    /// The counts of every user but these.
    pub fn total_without(&self, excluded: &BTreeSet<String>) -> FlattenCounts {
        let mut total = FlattenCounts::default();
        for (_, counts) in self.0.iter().filter(|(u, _)| !excluded.contains(*u)) {
            total += counts.clone();
        }
        total
    }
}

/// Why a record cannot be written.
#[derive(Debug, Clone)]
struct Problem {
    field: String,
    value: Option<String>,
    reason: String,
}

/// Flattens one answer of the query for `status` over `window` and `batch`, its zone names read
/// through `aliases` first.
pub fn flatten(
    data: &QueryData,
    status: Status,
    window: Window,
    batch: &[String],
    stamp: &RunStamp,
    aliases: &ZoneAliases,
) -> Result<Flattened, FlattenError> {
    let batch: HashSet<&str> = batch.iter().map(String::as_str).collect();
    let scope = Scope {
        status,
        window,
        batch: &batch,
        aliases,
    };
    match serde_json::from_str::<Option<TypedQueryData>>(data.json()) {
        Ok(typed) => flatten_typed(data, typed.unwrap_or_default(), &scope, stamp),
        Err(_) => flatten_raw(data, &scope, stamp),
    }
}

/// What every answer of one query shares.
struct Scope<'s> {
    status: Status,
    window: Window,
    batch: &'s HashSet<&'s str>,
    aliases: &'s ZoneAliases,
}

/// One table's column builders for an answer, and the date of each row.
struct Part<C> {
    columns: C,
    dates: Vec<NaiveDate>,
}

impl<C: Columns> Part<C> {
    fn new(columns: C, rows: usize) -> Self {
        Part {
            columns,
            dates: Vec::with_capacity(rows),
        }
    }

    /// Appends the row under `date`, or hands its problem on.
    fn add(&mut self, row: Result<C::Row<'_>, Problem>, date: NaiveDate) -> Result<(), Problem> {
        self.columns.append(&row?);
        self.dates.push(date);
        Ok(())
    }

    fn finish(self, stamp: &RunStamp, rows: &mut Vec<AnswerRows>) -> Result<(), FlattenError> {
        if self.dates.is_empty() {
            return Ok(());
        }
        let table = self.columns.table();
        let batch = self
            .columns
            .finish(stamp)
            .map_err(|source| FlattenError::Build {
                table: table.name(),
                source,
            })?;
        rows.push(AnswerRows {
            table,
            batch,
            dates: self.dates,
        });
        Ok(())
    }
}

/// The column builders of one answer.
struct Builders {
    outs: Part<AbsenceColumns>,
    leaves: Part<AbsenceColumns>,
    overtime_works: Part<OvertimeColumns>,
    trips: Part<TripColumns>,
}

impl Builders {
    /// `rows`: how many records of each table the answer holds, in [`Table::ALL`] order.
    fn new([outs, leaves, overtime_works, trips]: [usize; 4]) -> Self {
        Builders {
            outs: Part::new(AbsenceColumns::new(Table::Outs, outs), outs),
            leaves: Part::new(AbsenceColumns::new(Table::Leaves, leaves), leaves),
            overtime_works: Part::new(OvertimeColumns::new(overtime_works), overtime_works),
            trips: Part::new(TripColumns::new(trips), trips),
        }
    }

    fn finish(
        self,
        stamp: &RunStamp,
        rejects: Vec<Reject>,
        counts: DstCounts,
        zones: BTreeMap<String, (NaiveDate, &'static str)>,
    ) -> Result<Flattened, FlattenError> {
        let mut rows = Vec::new();
        self.outs.finish(stamp, &mut rows)?;
        self.leaves.finish(stamp, &mut rows)?;
        self.overtime_works.finish(stamp, &mut rows)?;
        self.trips.finish(stamp, &mut rows)?;
        Ok(Flattened {
            rows,
            rejects,
            counts,
            zones,
        })
    }
}

/// A record the typed pass could not write, found again by position for its bytes.
struct Aside {
    element: usize,
    table: Table,
    index: usize,
    problem: Problem,
}

/// The usual way: the answer was read once, typed.
fn flatten_typed(
    data: &QueryData,
    typed: TypedQueryData,
    scope: &Scope,
    stamp: &RunStamp,
) -> Result<Flattened, FlattenError> {
    let elements = typed.user_approvals.unwrap_or_default();
    let mut sizes = [0usize; 4];
    for ua in &elements {
        for (size, len) in sizes.iter_mut().zip(ua.lengths()) {
            *size += len;
        }
    }
    let mut out = Builders::new(sizes);
    let mut counts = DstCounts::default();
    let mut zones = BTreeMap::new();
    let mut aside: Vec<Aside> = Vec::new();
    for (element, ua) in elements.iter().enumerate() {
        let user_id = ua.user_id.as_ref().map(|t| t.as_str());
        let date = ua.date.as_ref().map(|t| t.as_str());
        let zone_name = ua.time_zone.as_ref().map(|t| t.as_str());
        let place = placement(user_id, date, zone_name, scope);
        let (date, zone) = match place {
            Ok(place) => place,
            Err(problem) => {
                for (table, len) in Table::ALL.into_iter().zip(ua.lengths()) {
                    for index in 0..len {
                        aside.push(Aside {
                            element,
                            table,
                            index,
                            problem: problem.clone(),
                        });
                    }
                }
                continue;
            }
        };
        let user_id = user_id.unwrap_or_default();
        note_zone(&mut zones, user_id, date, zone.name);
        let mut ctx = Ctx::new(user_id, scope.status, (date, zone, zone_name));
        let mut keep =
            |table: Table, index: usize, result: Result<(), Problem>, ctx: &mut Ctx| match result {
                Ok(()) => ctx.count(&mut counts),
                Err(problem) => aside.push(Aside {
                    element,
                    table,
                    index,
                    problem,
                }),
            };
        for (i, r) in ua.outs.iter().flatten().enumerate() {
            let written = out.outs.add(ctx.out_row(r), date);
            keep(Table::Outs, i, written, &mut ctx);
        }
        for (i, r) in ua.leaves.iter().flatten().enumerate() {
            let written = out.leaves.add(ctx.leave_row(r), date);
            keep(Table::Leaves, i, written, &mut ctx);
        }
        for (i, r) in ua.overtime_works.iter().flatten().enumerate() {
            let written = out.overtime_works.add(ctx.overtime_row(r), date);
            keep(Table::OvertimeWorks, i, written, &mut ctx);
        }
        for (i, r) in ua.trips.iter().flatten().enumerate() {
            let written = out.trips.add(ctx.trip_row(r), date);
            keep(Table::Trips, i, written, &mut ctx);
        }
    }
    // Records kept aside need their bytes as sent: read the answer again, raw, for those only.
    let mut rejects = Vec::with_capacity(aside.len());
    if let Some(last) = aside.iter().map(|a| a.element).max() {
        let raw = data
            .first_user_approvals(last + 1)
            .map_err(FlattenError::Shape)?;
        let mut current: Option<(usize, UserApproval)> = None;
        for a in aside {
            if current.as_ref().is_none_or(|(e, _)| *e != a.element) {
                let ua = UserApproval::deserialize(&mut serde_json::Deserializer::from_str(
                    raw[a.element].get(),
                ))
                .map_err(FlattenError::Shape)?;
                current = Some((a.element, ua));
            }
            let (_, ua) = current.as_ref().expect("set above");
            let record = list_of(ua, a.table)[a.index];
            rejects.push(reject(ua, a.table, record, scope.status, &a.problem));
        }
    }
    out.finish(stamp, rejects, counts, zones)
}

/// The raw records of one list of a user_approval.
fn list_of<'u, 'a>(ua: &'u UserApproval<'a>, table: Table) -> &'u [&'a RawValue] {
    let list = match table {
        Table::Outs => &ua.outs,
        Table::Leaves => &ua.leaves,
        Table::OvertimeWorks => &ua.overtime_works,
        Table::Trips => &ua.trips,
    };
    list.as_deref().unwrap_or_default()
}

/// The way for an answer the typed pass could not read: element by element, record by record,
/// each failure named by its path.
fn flatten_raw(
    data: &QueryData,
    scope: &Scope,
    stamp: &RunStamp,
) -> Result<Flattened, FlattenError> {
    let elements = data.user_approvals().map_err(FlattenError::Shape)?;
    let mut out = Builders::new([0; 4]);
    let mut counts = DstCounts::default();
    let mut zones = BTreeMap::new();
    let mut rejects = Vec::new();
    for raw in elements {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let ua: UserApproval = match serde_path_to_error::deserialize(&mut de) {
            Ok(ua) => ua,
            // The user-date itself is unreadable: keep the whole element aside, under its user and
            // date when those at least can be read (so reruns over other users keep it).
            Err(e) => {
                rejects.push(Reject {
                    table: None,
                    user_id: loose_field(raw.get(), "user_id"),
                    date: loose_field(raw.get(), "date"),
                    approval_id: None,
                    time_zone: loose_field(raw.get(), "time_zone"),
                    status: scope.status,
                    field: e.path().to_string(),
                    value: None,
                    reason: format!("user_approval has a field of the wrong type: {}", e.inner()),
                    raw: raw.to_owned(),
                });
                continue;
            }
        };
        let user_id = ua.user_id.as_ref().map(|t| t.as_str());
        let date = ua.date.as_ref().map(|t| t.as_str());
        let zone_name = ua.time_zone.as_ref().map(|t| t.as_str());
        let (date, zone) = match placement(user_id, date, zone_name, scope) {
            Ok(place) => place,
            Err(problem) => {
                for table in Table::ALL {
                    for record in list_of(&ua, table) {
                        rejects.push(reject(&ua, table, record, scope.status, &problem));
                    }
                }
                continue;
            }
        };
        let user_id = user_id.unwrap_or_default();
        note_zone(&mut zones, user_id, date, zone.name);
        let mut ctx = Ctx::new(user_id, scope.status, (date, zone, zone_name));
        for table in Table::ALL {
            for record in list_of(&ua, table) {
                let result = match table {
                    Table::Outs => {
                        typed(record).and_then(|r: UserOut| out.outs.add(ctx.out_row(&r), date))
                    }
                    Table::Leaves => typed(record)
                        .and_then(|r: UserLeave| out.leaves.add(ctx.leave_row(&r), date)),
                    Table::OvertimeWorks => typed(record).and_then(|r: UserOvertimeWork| {
                        out.overtime_works.add(ctx.overtime_row(&r), date)
                    }),
                    Table::Trips => {
                        typed(record).and_then(|r: UserTrip| out.trips.add(ctx.trip_row(&r), date))
                    }
                };
                match result {
                    Ok(()) => ctx.count(&mut counts),
                    Err(p) => rejects.push(reject(&ua, table, record, scope.status, &p)),
                }
            }
        }
    }
    out.finish(stamp, rejects, counts, zones)
}

/// One raw record parsed into its type; a field of the wrong type is named by its path.
fn typed<'a, T: Deserialize<'a>>(record: &'a RawValue) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_str(record.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| Problem {
        field: e.path().to_string(),
        value: None,
        reason: format!("field has the wrong type: {}", e.inner()),
    })
}

/// Where the records of a user-date go: their partition date and the zone of their wall times,
/// or the problem of the user-date itself, which rejects every record under it.
fn placement(
    user_id: Option<&str>,
    date: Option<&str>,
    time_zone: Option<&str>,
    scope: &Scope,
) -> Result<(NaiveDate, Zone), Problem> {
    let parsed_date = date.and_then(tz::parse_yyyymmdd);
    let date_value = || date.map(str::to_string);
    let date = match (user_id, parsed_date) {
        (None, _) => return Err(problem("user_id", None, "the user_approval has no user_id")),
        (Some(u), _) if !scope.batch.contains(u) => {
            return Err(problem(
                "user_id",
                Some(u.to_string()),
                "the platform answered for a user that was not in the queried batch",
            ));
        }
        (_, None) => {
            return Err(problem(
                "date",
                date_value(),
                "the date is missing or not a yyyyMMdd calendar date",
            ));
        }
        (_, Some(d)) if !scope.window.contains(d) => {
            return Err(problem(
                "date",
                date_value(),
                &format!("the date is outside the queried window {}", scope.window),
            ));
        }
        (_, Some(d)) => d,
    };
    let zone = scope.aliases.resolve(time_zone).map_err(|_| {
        problem(
            "time_zone",
            time_zone.map(str::to_string),
            "unknown time zone: not an IANA name, a fixed offset, a Windows zone ID or a configured \
             alias, so the local times cannot be placed in UTC (add --zone-alias NAME=ZONE if you \
             know what it means, then run `rejects replay`)",
        )
    })?;
    Ok((date, zone))
}

/// A record kept aside, with its approval id read loosely (it may be what is malformed).
fn reject(
    ua: &UserApproval,
    table: Table,
    record: &RawValue,
    status: Status,
    p: &Problem,
) -> Reject {
    #[derive(serde::Deserialize)]
    struct Id {
        approval_id: Option<serde_json::Value>,
    }
    let approval_id = serde_json::from_str::<Id>(record.get())
        .ok()
        .and_then(|id| id.approval_id)
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    Reject {
        table: Some(table),
        user_id: ua.user_id.as_ref().map(|t| t.as_str().to_string()),
        date: ua.date.as_ref().map(|t| t.as_str().to_string()),
        approval_id,
        time_zone: ua.time_zone.as_ref().map(|t| t.as_str().to_string()),
        status,
        field: p.field.clone(),
        value: p.value.clone(),
        reason: p.reason.clone(),
        raw: record.to_owned(),
    }
}

/// A field of a JSON object as text, whatever its JSON type.
fn loose_field(json: &str, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    match value.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn problem(field: &str, value: Option<String>, reason: &str) -> Problem {
    Problem {
        field: field.to_string(),
        value,
        reason: reason.to_string(),
    }
}

fn text<'r>(t: &'r Option<crate::answer::Text<'_>>) -> Option<&'r str> {
    t.as_ref().map(|t| t.as_str())
}

/// The row of an out or a leave: the two records share every field but the process ids (a leave
/// has none), under two types.
macro_rules! absence_row {
    ($ctx:expr, $r:expr, $process:expr) => {{
        let r = $r;
        let head = $ctx.head(
            text(&r.approval_id),
            text(&r.start_time),
            text(&r.end_time),
            text(&r.idempotent_id),
        )?;
        $ctx.absence(
            head,
            Absence {
                uniq_id: text(&r.uniq_id),
                unit: r.unit,
                interval: r.interval,
                names: r.i18n_names.as_ref(),
                default_locale: text(&r.default_locale),
                reason: text(&r.reason),
                pass: text(&r.approve_pass_time),
                apply: text(&r.approve_apply_time),
            },
            $process,
        )
    }};
}

/// What the records of one user-date share while they are turned into rows.
struct Ctx<'a> {
    user_id: &'a str,
    status: Status,
    zone: Zone,
    /// The zone name as sent; `UTC` for none.
    zone_sent: &'a str,
    /// Midnight UTC of the partition date: where the offset is taken for a record with no time.
    midnight: chrono::DateTime<chrono::Utc>,
    /// Whether the record being flattened had a time in a gap / an overlap.
    gap: bool,
    ambiguous: bool,
}

impl<'a> Ctx<'a> {
    /// The context of a placed user-date: its date, zone, and zone name as sent.
    fn new(
        user_id: &'a str,
        status: Status,
        (date, zone, sent): (NaiveDate, Zone, Option<&'a str>),
    ) -> Self {
        Ctx {
            user_id,
            status,
            zone,
            zone_sent: sent.filter(|n| !n.trim().is_empty()).unwrap_or("UTC"),
            midnight: date.and_time(chrono::NaiveTime::MIN).and_utc(),
            gap: false,
            ambiguous: false,
        }
    }

    /// Counts the row just written by the DST rule it needed, and starts the next record afresh.
    fn count(&mut self, counts: &mut DstCounts) {
        let read_as = self.zone.read_as;
        if self.gap || self.ambiguous || read_as != ReadAs::Iana {
            let mut zones = ZoneCounts {
                fixed_offset: u64::from(read_as == ReadAs::FixedOffset),
                windows_id: u64::from(read_as == ReadAs::WindowsId),
                by_alias: BTreeMap::new(),
            };
            if read_as == ReadAs::Alias {
                zones.by_alias.insert(self.zone.name, 1);
            }
            *counts.0.entry(self.user_id.to_owned()).or_default() += FlattenCounts {
                dst_gap_shifted: u64::from(self.gap),
                dst_ambiguous_earlier: u64::from(self.ambiguous),
                zones,
            };
        }
        self.gap = false;
        self.ambiguous = false;
    }

    /// A wall time of this record as UTC microseconds; `None` when absent or empty.
    fn instant(&mut self, field: &str, value: Option<&str>) -> Result<Option<i64>, Problem> {
        let Some(s) = value.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let local = tz::parse_wall_time(s).ok_or_else(|| {
            self.gap = false;
            self.ambiguous = false;
            problem(
                field,
                Some(s.to_string()),
                "malformed time: expected a real date and time as yyyy-MM-dd HH:mm:ss",
            )
        })?;
        let (utc, resolution) = tz::to_utc(local, self.zone);
        match resolution {
            Resolution::Exact => {}
            Resolution::GapShifted => self.gap = true,
            Resolution::AmbiguousEarlier => self.ambiguous = true,
        }
        Ok(Some(utc.timestamp_micros()))
    }

    fn head<'r>(
        &mut self,
        approval_id: Option<&'r str>,
        start: Option<&'r str>,
        end: Option<&'r str>,
        idempotent_id: Option<&'r str>,
    ) -> Result<Head<'r>, Problem>
    where
        'a: 'r,
    {
        let start_time = self.instant("start_time", start)?;
        let end_time = self.instant("end_time", end)?;
        let offset_at = start_time
            .or(end_time)
            .and_then(chrono::DateTime::from_timestamp_micros)
            .unwrap_or(self.midnight);
        Ok(Head {
            user_id: self.user_id,
            approval_id,
            status: self.status.code(),
            start_time,
            end_time,
            start_time_local: start,
            end_time_local: end,
            time_zone: self.zone_sent,
            time_zone_iana: self.zone.iana,
            utc_offset_seconds: self.zone.offset_at(offset_at),
            idempotent_id,
        })
    }

    fn out_row<'r>(&mut self, r: &'r UserOut) -> Result<AbsenceRow<'r>, Problem>
    where
        'a: 'r,
    {
        let process = ProcessIds {
            correct_process_id: r.correct_process_id.as_deref(),
            cancel_process_id: r.cancel_process_id.as_deref(),
            process_id: r.process_id.as_deref(),
        };
        absence_row!(self, r, process)
    }

    fn leave_row<'r>(&mut self, r: &'r UserLeave) -> Result<AbsenceRow<'r>, Problem>
    where
        'a: 'r,
    {
        absence_row!(self, r, ProcessIds::default())
    }

    fn absence<'r>(
        &mut self,
        head: Head<'r>,
        a: Absence<'r>,
        process: ProcessIds<'r>,
    ) -> Result<AbsenceRow<'r>, Problem> {
        let names = a.names;
        let name_of = |pick: fn(&'r I18nNames<'r>) -> &'r Option<crate::answer::Text<'r>>| {
            names.and_then(|n| text(pick(n)))
        };
        Ok(AbsenceRow {
            head,
            uniq_id: a.uniq_id,
            unit: a.unit,
            interval_seconds: a.interval,
            name: localized_name(names, a.default_locale),
            name_ch: name_of(|n| &n.ch),
            name_en: name_of(|n| &n.en),
            name_ja: name_of(|n| &n.ja),
            default_locale: a.default_locale,
            reason: a.reason,
            approve_pass_time: self.instant("approve_pass_time", a.pass)?,
            approve_apply_time: self.instant("approve_apply_time", a.apply)?,
            process,
        })
    }

    fn overtime_row<'r>(&mut self, r: &'r UserOvertimeWork) -> Result<OvertimeRow<'r>, Problem>
    where
        'a: 'r,
    {
        Ok(OvertimeRow {
            head: self.head(
                text(&r.approval_id),
                text(&r.start_time),
                text(&r.end_time),
                text(&r.idempotent_id),
            )?,
            duration: r.duration,
            unit: r.unit,
            category: r.category,
            type_: r.type_,
            reason: text(&r.reason),
            process: ProcessIds {
                correct_process_id: r.correct_process_id.as_deref(),
                cancel_process_id: r.cancel_process_id.as_deref(),
                process_id: r.process_id.as_deref(),
            },
        })
    }

    fn trip_row<'r>(&mut self, r: &'r UserTrip) -> Result<TripRow<'r>, Problem>
    where
        'a: 'r,
    {
        let departure = r.departure.as_ref();
        Ok(TripRow {
            head: self.head(
                text(&r.approval_id),
                text(&r.start_time),
                text(&r.end_time),
                text(&r.idempotent_id),
            )?,
            reason: text(&r.reason),
            approve_pass_time: self.instant("approve_pass_time", text(&r.approve_pass_time))?,
            approve_apply_time: self.instant("approve_apply_time", text(&r.approve_apply_time))?,
            departure_region_level: departure.and_then(|d| text(&d.region_level)),
            departure_region_id: departure.and_then(|d| text(&d.region_id)),
            destinations: r.destinations.as_deref(),
            transportation: r.transportation.as_deref(),
            trip_type: r.trip_type,
            remarks: text(&r.remarks),
            process: ProcessIds {
                correct_process_id: r.correct_process_id.as_deref(),
                cancel_process_id: r.cancel_process_id.as_deref(),
                process_id: r.process_id.as_deref(),
            },
        })
    }
}

/// The fields `outs` and `leaves` share beyond the head.
struct Absence<'r> {
    uniq_id: Option<&'r str>,
    unit: Option<i32>,
    interval: Option<i64>,
    names: Option<&'r I18nNames<'r>>,
    default_locale: Option<&'r str>,
    reason: Option<&'r str>,
    pass: Option<&'r str>,
    apply: Option<&'r str>,
}

/// The name in `default_locale`, falling back to ch, en, ja; empty names count as missing.
fn localized_name<'r>(
    names: Option<&'r I18nNames<'r>>,
    default_locale: Option<&str>,
) -> Option<&'r str> {
    let names = names?;
    let pick = |locale: &str| match locale {
        "ch" => text(&names.ch),
        "en" => text(&names.en),
        "ja" => text(&names.ja),
        _ => None,
    };
    default_locale
        .into_iter()
        .chain(["ch", "en", "ja"])
        .filter_map(pick)
        .find(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, ListArray, StringArray, TimestampMicrosecondArray};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn stamp() -> RunStamp {
        RunStamp {
            run_id: "r".into(),
            ingested_at_micros: 0,
        }
    }

    /// The `data` of a whole answer body (`{"code", "msg", "data"}`).
    fn data(body: &str) -> QueryData {
        #[derive(serde::Deserialize)]
        struct Envelope {
            data: QueryData,
        }
        serde_json::from_str::<Envelope>(body).unwrap().data
    }

    fn run(body: &str, users: &[&str], window: Window) -> Flattened {
        run_with(body, users, window, &ZoneAliases::default())
    }

    fn run_with(body: &str, users: &[&str], window: Window, aliases: &ZoneAliases) -> Flattened {
        let batch: Vec<String> = users.iter().map(|s| s.to_string()).collect();
        flatten(
            &data(body),
            Status::APPROVED,
            window,
            &batch,
            &stamp(),
            aliases,
        )
        .unwrap()
    }

    /// The same answer through the record-by-record way, as when the typed read fails.
    fn run_raw(body: &str, users: &[&str], window: Window) -> Flattened {
        let batch: HashSet<&str> = users.iter().copied().collect();
        let scope = Scope {
            status: Status::APPROVED,
            window,
            batch: &batch,
            aliases: &ZoneAliases::default(),
        };
        flatten_raw(&data(body), &scope, &stamp()).unwrap()
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: d(from),
            to: d(to),
        }
    }

    fn body(user_approvals: &str) -> String {
        format!(r#"{{"code":0,"msg":"ok","data":{{"user_approvals":[{user_approvals}]}}}}"#)
    }

    fn part(f: &Flattened, table: Table) -> &AnswerRows {
        f.rows.iter().find(|r| r.table == table).unwrap()
    }

    fn text<'f>(f: &'f Flattened, table: Table, column: &str) -> Vec<Option<&'f str>> {
        let a = part(f, table).batch.column_by_name(column).unwrap();
        a.as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .collect()
    }

    fn micros(f: &Flattened, table: Table, column: &str) -> Vec<Option<i64>> {
        let a = part(f, table).batch.column_by_name(column).unwrap();
        let a = a
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        a.iter().collect()
    }

    #[test]
    fn the_doc_example_flattens_into_one_row_per_table() {
        let doc = include_str!("../../../data-samples/spec-example-response.json");
        let f = run(doc, &["abd754f7"], window("2021-01-01", "2021-01-31"));
        assert!(f.rejects.is_empty());
        for table in Table::ALL {
            assert_eq!(f.rows(table), 1, "{}", table.name());
            assert_eq!(part(&f, table).dates, [d("2021-01-04")]);
        }
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(
            micros(&f, Table::Outs, "start_time"),
            [Some(1_609_722_000_000_000)]
        );
        assert_eq!(text(&f, Table::Outs, "time_zone"), [Some("Asia/Shanghai")]);
        assert_eq!(text(&f, Table::Outs, "name"), [Some("中文描述")]);
        let interval = part(&f, Table::Outs)
            .batch
            .column_by_name("interval_seconds")
            .unwrap();
        let interval = interval.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(interval.value(0), 8);
        let trips = &part(&f, Table::Trips).batch;
        let destinations = trips.column_by_name("destinations").unwrap();
        let destinations = destinations.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(destinations.value(0).len(), 1);
        let transportation = trips.column_by_name("transportation").unwrap();
        let transportation = transportation.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(transportation.value(0).len(), 1);
    }

    #[test]
    fn unknown_zone_rejects_every_record_of_the_user_date() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"Asia/Beijing",
                "outs":[{"approval_id":"a1","start_time":"2026-09-15 09:00:00"}],
                "leaves":[{"approval_id":"a2"}]}"#,
        );
        let f = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(f.total_rows(), 0);
        assert_eq!(f.rejects.len(), 2);
        assert_eq!(f.rejects[0].field, "time_zone");
        assert_eq!(f.rejects[0].value.as_deref(), Some("Asia/Beijing"));
        assert_eq!(f.rejects[0].approval_id.as_deref(), Some("a1"));
        assert!(f.rejects[0].raw.get().contains("2026-09-15 09:00:00"));
        assert_eq!(f.rejects[1].table, Some(Table::Leaves));
    }

    #[test]
    fn malformed_time_or_type_rejects_only_that_record() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"",
                "outs":[{"approval_id":"ok","start_time":"2026-09-15 09:00:00","approve_pass_time":""},
                        {"approval_id":"bad-time","start_time":"2026-09-15 9:00"},
                        {"approval_id":"bad-type","unit":"day"}]}"#,
        );
        let f = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(f.rows(Table::Outs), 1);
        assert_eq!(text(&f, Table::Outs, "time_zone"), [Some("UTC")]);
        assert_eq!(
            micros(&f, Table::Outs, "start_time"),
            [Some(1_789_462_800_000_000)]
        );
        assert_eq!(micros(&f, Table::Outs, "approve_pass_time"), [None]);
        assert_eq!(f.rejects.len(), 2);
        assert_eq!(f.rejects[0].field, "start_time");
        assert_eq!(f.rejects[0].value.as_deref(), Some("2026-09-15 9:00"));
        assert_eq!(f.rejects[1].field, "unit");
        assert_eq!(f.rejects[1].approval_id.as_deref(), Some("bad-type"));
    }

    #[test]
    fn dates_outside_the_window_and_users_outside_the_batch_are_rejected() {
        let b = body(
            r#"{"user_id":"u1","date":"20261001","outs":[{"approval_id":"late"}]},
               {"user_id":"u9","date":"20260915","outs":[{"approval_id":"stranger"}]},
               {"user_id":"u1","date":"2026-09-15","outs":[{"approval_id":"dashed"}]}"#,
        );
        let f = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(f.total_rows(), 0);
        let fields: Vec<&str> = f.rejects.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["date", "user_id", "date"]);
    }

    #[test]
    fn an_unreadable_user_approval_is_kept_aside_whole() {
        let b = body(
            r#"{"user_id":"u1","date":20260915,"outs":[{"approval_id":"x"}]},
               {"user_id":"u1","date":"20260915","outs":[{"approval_id":"y"}]}"#,
        );
        let f = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(f.rows(Table::Outs), 1);
        assert_eq!(f.rejects.len(), 1);
        assert_eq!(f.rejects[0].table, None);
        assert_eq!(f.rejects[0].field, "date");
        assert!(f.rejects[0].raw.get().contains(r#""approval_id":"x""#));
    }

    #[test]
    fn data_that_is_not_a_user_approvals_object_is_an_error() {
        let b = r#"{"code":0,"msg":"ok","data":{"user_approvals":5}}"#;
        let err = flatten(
            &data(b),
            Status::APPROVED,
            window("2026-09-01", "2026-09-30"),
            &[],
            &stamp(),
            &ZoneAliases::default(),
        );
        assert!(matches!(err, Err(FlattenError::Shape(_))), "{err:?}");
    }

    #[test]
    fn dst_resolutions_are_counted_by_user() {
        let b = body(
            r#"{"user_id":"u1","date":"20261101","time_zone":"America/New_York",
                "outs":[{"approval_id":"o","start_time":"2026-11-01 01:30:00","end_time":"2026-11-01 03:00:00"}]},
               {"user_id":"u1","date":"20260308","time_zone":"America/New_York",
                "outs":[{"approval_id":"g","start_time":"2026-03-08 02:30:00"}]},
               {"user_id":"u2","date":"20260308","time_zone":"America/New_York",
                "leaves":[{"approval_id":"h","start_time":"2026-03-08 02:10:00"}]}"#,
        );
        let f = run(&b, &["u1", "u2"], window("2026-03-01", "2026-11-30"));
        assert!(f.rejects.is_empty());
        assert_eq!(f.rows(Table::Outs), 2);
        let counts = |gap, ambiguous| FlattenCounts {
            dst_gap_shifted: gap,
            dst_ambiguous_earlier: ambiguous,
            zones: ZoneCounts::default(),
        };
        let without = |users: &[&str]| {
            let users = users.iter().map(|u| u.to_string()).collect();
            f.counts.total_without(&users)
        };
        assert_eq!(without(&[]), counts(2, 1));
        // A user refused later in the window takes their rows' counts along.
        assert_eq!(without(&["u1"]), counts(1, 0));
        assert_eq!(without(&["u2"]), counts(1, 1));
        let mut merged = f.counts.clone();
        merged.merge(f.counts.clone());
        assert_eq!(merged.total_without(&BTreeSet::new()), counts(4, 2));
    }

    /// The typed way and the record-by-record way agree row for row and reject for reject, on
    /// an answer with every kind of problem but a wrong type (which sends all of it the raw way).
    #[test]
    fn both_ways_give_the_same_rows_and_rejects() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"Europe/London",
                "outs":[{"approval_id":"o1","start_time":"2026-09-15 09:00:00","reason":"a \"quoted\" \u4e2d reason",
                         "i18n_names":{"ch":"","en":"Out"},"default_locale":"ch","process_id":["p1","p2"]},
                        {"approval_id":"o2","start_time":"2026-09-15 9:00"}],
                "leaves":[{"approval_id":"l1","end_time":"2026-09-16 18:00:00","approve_apply_time":"bad"}],
                "overtime_works":[{"approval_id":"w1","duration":1.5,"type":1,"start_time":"2026-09-15 19:00:00"}],
                "trips":[{"approval_id":"t1","departure":{"region_id":"x"},"destinations":[{"region_level":"city","region_id":"y"}],"transportation":[1,3]}]},
               {"user_id":"u1","date":"20260916","time_zone":"Mars/Olympus","outs":[{"approval_id":"o3"}]},
               {"user_id":"u2","date":"20260916","outs":[{"approval_id":"o4"}]},
               {"user_id":"u1","date":"20261101","outs":[{"approval_id":"o5"}]},
               {"user_id":"u1","date":"20260917","time_zone":"America/New_York",
                "trips":[{"approval_id":"t2","start_time":"2026-03-08 02:30:00"}]}"#,
        );
        let w = window("2026-09-01", "2026-09-30");
        let typed = run(&b, &["u1"], w);
        let raw = run_raw(&b, &["u1"], w);
        assert_eq!(typed.total_rows(), 4);
        assert_eq!(typed.rejects.len(), 5);
        assert_eq!(
            typed.counts.total_without(&BTreeSet::new()).dst_gap_shifted,
            1
        );
        assert_eq!(
            text(&typed, Table::Outs, "reason"),
            [Some("a \"quoted\" 中 reason")]
        );
        assert_eq!(text(&typed, Table::Outs, "name"), [Some("Out")]);
        let find = |f: &Flattened, table: Table| {
            let rows = f.rows.iter().find(|r| r.table == table)?;
            Some((rows.batch.clone(), rows.dates.clone()))
        };
        for table in Table::ALL {
            assert_eq!(find(&typed, table), find(&raw, table), "{}", table.name());
        }
        assert_eq!(find(&typed, Table::Leaves), None);
        let json = |f: &Flattened| serde_json::to_string(&f.rejects).unwrap();
        assert_eq!(json(&typed), json(&raw));
        assert_eq!(typed.counts, raw.counts);
        assert_eq!(typed.zones, raw.zones);
    }

    #[test]
    fn zones_keep_each_users_latest_placed_date() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"Asia/Shanghai"},
               {"user_id":"u1","date":"20260917","time_zone":"America/New_York",
                "outs":[{"approval_id":"o1","start_time":"2026-09-17 09:00:00"}]},
               {"user_id":"u1","date":"20260916","time_zone":"Europe/London"},
               {"user_id":"u2","date":"20260910","time_zone":""},
               {"user_id":"u2","date":"20260920","time_zone":"Asia/Beijing",
                "outs":[{"approval_id":"o2"}]},
               {"user_id":"u3","date":"20260912","time_zone":"Mars/Olympus"},
               {"user_id":"u4","date":"20260913","time_zone":"GMT+8"},
               {"user_id":"u5","date":"20260913","time_zone":"Tokyo Standard Time"},
               {"user_id":"u9","date":"20260925","time_zone":"Europe/Paris"},
               {"user_id":"u1","date":"20261001","time_zone":"Asia/Tokyo"}"#,
        );
        let w = window("2026-09-01", "2026-09-30");
        let expected = BTreeMap::from([
            // The latest date wins, whatever the order of the elements.
            ("u1".to_string(), (d("2026-09-17"), "America/New_York")),
            // An empty zone is what the platform said: UTC. The later element's unknown zone
            // rejected it, so it is not the user's zone.
            ("u2".to_string(), (d("2026-09-10"), "UTC")),
            // The canonical name, which reads back without aliases.
            ("u4".to_string(), (d("2026-09-13"), "UTC+08:00")),
            ("u5".to_string(), (d("2026-09-13"), "Asia/Tokyo")),
        ]);
        // u3 (only an unknown zone), u9 (not in the batch) and u1 on 2026-10-01 (outside the
        // window) were not placed.
        let users = ["u1", "u2", "u3", "u4", "u5"];
        let typed = run(&b, &users, w);
        assert_eq!(typed.zones, expected);
        assert_eq!(run_raw(&b, &users, w).zones, expected);
        assert_eq!(typed.rejects.len(), 1);

        // Across answers, by the same rule: a tie of dates keeps the greater name.
        let mut zones = typed.zones;
        merge_zones(
            &mut zones,
            BTreeMap::from([
                ("u1".to_string(), (d("2026-09-16"), "Europe/London")),
                ("u2".to_string(), (d("2026-09-10"), "Asia/Tokyo")),
                ("u6".to_string(), (d("2026-09-01"), "Asia/Kolkata")),
            ]),
        );
        assert_eq!(zones["u1"], (d("2026-09-17"), "America/New_York"));
        assert_eq!(zones["u2"], (d("2026-09-10"), "UTC"));
        assert_eq!(zones["u6"], (d("2026-09-01"), "Asia/Kolkata"));
        // A named zone stands for a later fixed offset it explains (New York is UTC-05:00 on
        // 2026-12-01, and Shanghai UTC+08:00 on 2026-09-13), not for one it does not (u2's UTC).
        merge_zones(
            &mut zones,
            BTreeMap::from([
                ("u1".to_string(), (d("2026-12-01"), "UTC-05:00")),
                ("u2".to_string(), (d("2026-12-01"), "UTC+08:00")),
                ("u4".to_string(), (d("2026-09-01"), "Asia/Shanghai")),
            ]),
        );
        assert_eq!(zones["u1"], (d("2026-09-17"), "America/New_York"));
        assert_eq!(zones["u2"], (d("2026-12-01"), "UTC+08:00"));
        assert_eq!(zones["u4"], (d("2026-09-01"), "Asia/Shanghai"));
    }

    #[test]
    fn name_follows_default_locale_then_ch_en_ja() {
        use crate::answer::Text;
        let t = |s: &'static str| Some(Text(s.into()));
        let n = I18nNames {
            ch: t(""),
            en: t("Sick"),
            ja: t("病気"),
        };
        assert_eq!(localized_name(Some(&n), Some("ja")), Some("病気"));
        assert_eq!(localized_name(Some(&n), Some("ch")), Some("Sick"));
        assert_eq!(localized_name(Some(&n), None), Some("Sick"));
        assert_eq!(
            localized_name(Some(&I18nNames::default()), Some("en")),
            None
        );
        assert_eq!(localized_name(None, Some("en")), None);
    }

    fn ints(f: &Flattened, table: Table, column: &str) -> Vec<Option<i32>> {
        use arrow_array::Array;
        f.rows
            .iter()
            .filter(|r| r.table == table)
            .flat_map(|r| {
                let c = r.batch.column_by_name(column).unwrap();
                let c = c
                    .as_any()
                    .downcast_ref::<arrow_array::Int32Array>()
                    .unwrap();
                (0..c.len())
                    .map(|i| c.is_valid(i).then(|| c.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn fixed_offsets_windows_ids_and_iana_names_give_instants_and_offsets() {
        let cases = [
            // (zone as sent, UTC instant of 2026-07-01 09:00 local, offset, time_zone_iana)
            ("UTC+08:00", "2026-07-01T01:00:00Z", 28_800, None),
            ("UTC+8", "2026-07-01T01:00:00Z", 28_800, None),
            ("GMT+08:00", "2026-07-01T01:00:00Z", 28_800, None),
            ("GMT+8", "2026-07-01T01:00:00Z", 28_800, None),
            ("+08:00", "2026-07-01T01:00:00Z", 28_800, None),
            ("+0800", "2026-07-01T01:00:00Z", 28_800, None),
            ("UTC-05:30", "2026-07-01T14:30:00Z", -19_800, None),
            ("UTC\u{2212}05:30", "2026-07-01T14:30:00Z", -19_800, None),
            (
                "China Standard Time",
                "2026-07-01T01:00:00Z",
                28_800,
                Some("Asia/Shanghai"),
            ),
            (
                "china standard time",
                "2026-07-01T01:00:00Z",
                28_800,
                Some("Asia/Shanghai"),
            ),
            (
                "Eastern Standard Time",
                "2026-07-01T13:00:00Z",
                -14_400,
                Some("America/New_York"),
            ),
            (
                "America/New_York",
                "2026-07-01T13:00:00Z",
                -14_400,
                Some("America/New_York"),
            ),
            ("", "2026-07-01T09:00:00Z", 0, Some("UTC")),
        ];
        for (zone, instant, offset, iana) in cases {
            let b = body(&format!(
                r#"{{"user_id":"u1","date":"20260701","time_zone":"{zone}",
                    "outs":[{{"approval_id":"o","start_time":"2026-07-01 09:00:00"}}]}}"#
            ));
            let f = run(&b, &["u1"], window("2026-07-01", "2026-07-31"));
            assert!(f.rejects.is_empty(), "{zone}: {:?}", f.rejects);
            let expected = instant.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
            assert_eq!(
                micros(&f, Table::Outs, "start_time"),
                [Some(expected.timestamp_micros())],
                "{zone}"
            );
            assert_eq!(
                ints(&f, Table::Outs, "utc_offset_seconds"),
                [Some(offset)],
                "{zone}"
            );
            assert_eq!(text(&f, Table::Outs, "time_zone_iana"), [iana], "{zone}");
            let sent = if zone.is_empty() { "UTC" } else { zone };
            assert_eq!(text(&f, Table::Outs, "time_zone"), [Some(sent)], "{zone}");
        }
        // Eastern Standard Time in winter is -5 h, and its DST gap is New York's.
        let b = body(
            r#"{"user_id":"u1","date":"20260308","time_zone":"Eastern Standard Time",
                "outs":[{"approval_id":"g","start_time":"2026-03-08 02:30:00"},
                        {"approval_id":"w","start_time":"2026-01-15 12:00:00"}]}"#,
        );
        let f = run(&b, &["u1"], window("2026-03-01", "2026-03-31"));
        assert_eq!(
            micros(&f, Table::Outs, "start_time"),
            [Some(1_772_955_000_000_000), Some(1_768_496_400_000_000)]
        );
        assert_eq!(
            ints(&f, Table::Outs, "utc_offset_seconds"),
            [Some(-14_400), Some(-18_000)]
        );
        let total = f.counts.total_without(&BTreeSet::new());
        assert_eq!((total.dst_gap_shifted, total.zones.windows_id), (1, 2));
    }

    #[test]
    fn a_record_without_times_takes_the_offset_of_its_dates_midnight() {
        let b = body(
            r#"{"user_id":"u1","date":"20260115","time_zone":"America/New_York",
                "outs":[{"approval_id":"o"}]},
               {"user_id":"u1","date":"20260701","time_zone":"America/New_York",
                "outs":[{"approval_id":"p","end_time":"2026-07-01 10:00:00"}]}"#,
        );
        let f = run(&b, &["u1"], window("2026-01-01", "2026-07-31"));
        assert_eq!(
            ints(&f, Table::Outs, "utc_offset_seconds"),
            [Some(-18_000), Some(-14_400)]
        );
    }

    #[test]
    fn an_alias_turns_a_rejected_user_date_into_rows_and_is_counted() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"Asia/Beijing",
                "outs":[{"approval_id":"o1","start_time":"2026-09-15 09:00:00"}],
                "leaves":[{"approval_id":"l1","start_time":"2026-09-15 13:00:00"}]},
               {"user_id":"u2","date":"20260915","time_zone":"Mars/Olympus",
                "outs":[{"approval_id":"o2","start_time":"2026-09-15 09:00:00"}]}"#,
        );
        let w = window("2026-09-01", "2026-09-30");
        let before = run(&b, &["u1", "u2"], w);
        assert_eq!((before.total_rows(), before.rejects.len()), (0, 3));
        assert!(before.rejects[0].reason.contains("--zone-alias"));
        assert_eq!(before.rejects[0].time_zone.as_deref(), Some("Asia/Beijing"));
        let mut aliases = ZoneAliases::default();
        aliases.insert("Asia/Beijing", "Asia/Shanghai").unwrap();
        let after = run_with(&b, &["u1", "u2"], w, &aliases);
        assert_eq!((after.total_rows(), after.rejects.len()), (2, 1));
        assert_eq!(after.rejects[0].value.as_deref(), Some("Mars/Olympus"));
        assert_eq!(
            micros(&after, Table::Outs, "start_time"),
            [Some(1_789_434_000_000_000)]
        );
        assert_eq!(
            text(&after, Table::Outs, "time_zone"),
            [Some("Asia/Beijing")]
        );
        assert_eq!(
            text(&after, Table::Outs, "time_zone_iana"),
            [Some("Asia/Shanghai")]
        );
        let total = after.counts.total_without(&BTreeSet::new());
        assert_eq!(total.zones.by_alias, BTreeMap::from([("Asia/Shanghai", 2)]));
        assert_eq!(after.zones["u1"].1, "Asia/Shanghai");
    }
}
