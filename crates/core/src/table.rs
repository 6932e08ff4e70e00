//! The four output tables (schema v2): row types, Arrow schemas and record batches. Pure, no I/O.
//!
//! Invariants:
//! - Column order is fixed and identical in every file: the common head (`user_id`,
//!   `approval_id`, `status`, times, `time_zone`, `time_zone_iana`, `utc_offset_seconds`), the
//!   table's own columns, `idempotent_id`, the
//!   process-id lists where the table has them, then `_run_id`, `_ingested_at`.
//! - Timestamps are `Timestamp(Microsecond, "UTC")`; no dictionary types; list items are named
//!   `element` (the Parquet spec's name, which Spark, BigQuery and Snowflake expect).
//! - The partition column `date` is not in the files: it is the `date=YYYY-MM-DD` directory.
//! - Rows of a (table, date) are sorted by (user_id, status, approval_id, local start, local end)
//!   before encoding, so the same source data always gives byte-identical row order.

use std::sync::Arc;

use std::sync::OnceLock;

use arrow_array::builder::{
    ArrayBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    StructBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::answer::{RegionPlace, Text};

/// Version of the column layout, written into every file's key-value metadata.
///
/// v2 added `time_zone_iana` and `utc_offset_seconds` after `time_zone`, which became the zone
/// name as sent; v1 files are read as v2 by [`upgrade_v1`].
pub const SCHEMA_VERSION: &str = "2";
/// Key under which [`SCHEMA_VERSION`] is stored.
pub const SCHEMA_VERSION_KEY: &str = "attendance_sync.schema_version";
/// Key under which the table name is stored.
pub const TABLE_KEY: &str = "attendance_sync.table";

/// One of the four output tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Outs,
    Leaves,
    OvertimeWorks,
    Trips,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Outs,
        Table::Leaves,
        Table::OvertimeWorks,
        Table::Trips,
    ];

    /// The table's name, also its directory under the output root and the API's list name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Outs => "outs",
            Table::Leaves => "leaves",
            Table::OvertimeWorks => "overtime_works",
            Table::Trips => "trips",
        }
    }

    /// The Arrow schema of the table's files.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 4]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| Table::ALL.map(|t| Arc::new(Schema::new(t.fields()))));
        Arc::clone(&all[self as usize])
    }

    fn fields(self) -> Vec<Field> {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let int32 = |name: &str| Field::new(name, DataType::Int32, true);
        let time = |name: &str| Field::new(name, utc_timestamp(), true);
        let mut f = vec![
            Field::new("user_id", DataType::Utf8, false),
            text("approval_id"),
            Field::new("status", DataType::Int32, false),
            time("start_time"),
            time("end_time"),
            text("start_time_local"),
            text("end_time_local"),
            Field::new("time_zone", DataType::Utf8, false),
            text("time_zone_iana"),
            Field::new("utc_offset_seconds", DataType::Int32, false),
        ];
        match self {
            Table::Outs | Table::Leaves => f.extend([
                text("uniq_id"),
                int32("unit"),
                Field::new("interval_seconds", DataType::Int64, true),
                text("name"),
                text("name_ch"),
                text("name_en"),
                text("name_ja"),
                text("default_locale"),
                text("reason"),
                time("approve_pass_time"),
                time("approve_apply_time"),
            ]),
            Table::OvertimeWorks => f.extend([
                Field::new("duration", DataType::Float64, true),
                int32("unit"),
                int32("category"),
                int32("type"),
                text("reason"),
            ]),
            Table::Trips => f.extend([
                text("reason"),
                time("approve_pass_time"),
                time("approve_apply_time"),
                text("departure_region_level"),
                text("departure_region_id"),
                Field::new(
                    "destinations",
                    list_of(DataType::Struct(region_fields())),
                    true,
                ),
                Field::new("transportation", list_of(DataType::Int32), true),
                int32("trip_type"),
                text("remarks"),
            ]),
        }
        f.push(text("idempotent_id"));
        if self != Table::Leaves {
            for name in ["correct_process_id", "cancel_process_id", "process_id"] {
                f.push(Field::new(name, list_of(DataType::Utf8), true));
            }
        }
        f.push(Field::new("_run_id", DataType::Utf8, false));
        f.push(Field::new("_ingested_at", utc_timestamp(), false));
        f
    }
}

/// What a column's values look like within one `(table, date)` partition, which decides how the
/// sink stores it. Chosen from each column chunk's size with and without zstd, and each column's
/// distinct values per row, on the 1,000,000-row bench corpus (BENCHMARKS.md): a column is
/// compressed when zstd takes at least a quarter off it. Each compressed column chunk costs a
/// zstd compressor and decompressor of its own (the `parquet` crate makes both per chunk), a
/// fixed cost that outweighs zstd's work on a chunk of a few kilobytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Values that repeat and are short or numeric (codes, names, zones, the run's stamp;
    /// instants, durations, `uniq_id`, region ids): dictionary encoded, not compressed. The
    /// dictionary is the compression that pays: zstd took 4-22% off the longer of these chunks,
    /// and made the low-cardinality ones up to 46% larger (a frame header per page).
    Repeated,
    /// Values that repeat and are long text (the wall times as sent): dictionary encoded, then
    /// zstd, which took 27-44% off these chunks.
    RepeatedText,
    /// About one value per row (a user has one approval of a kind on most dates; approval,
    /// idempotent and process ids; approval times): a dictionary would store every value once
    /// more, so plain values, then zstd.
    Unique,
    /// A JSON document per row (an event as landed): as `Unique`, without statistics. A page's
    /// least and greatest documents prune no query, and computing them compared every document.
    Document,
}

impl Table {
    /// What the values of top-level column `name` look like; see [`Values`]. A column not
    /// named here is `Repeated`: a new column is stored uncompressed until measured otherwise.
    pub fn values_of(self, name: &str) -> Values {
        match name {
            "user_id" | "approval_id" | "approve_pass_time" | "approve_apply_time"
            | "idempotent_id" | "process_id" | "correct_process_id" | "cancel_process_id" => {
                Values::Unique
            }
            "start_time_local" | "end_time_local" => Values::RepeatedText,
            _ => Values::Repeated,
        }
    }
}

/// Columns every row starts with, borrowed from the answer.
#[derive(Debug, Clone, Copy)]
pub struct Head<'r> {
    pub user_id: &'r str,
    pub approval_id: Option<&'r str>,
    /// The status that was queried: the answer does not echo it.
    pub status: i32,
    /// Microseconds since the epoch, UTC.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// The wall times exactly as sent.
    pub start_time_local: Option<&'r str>,
    pub end_time_local: Option<&'r str>,
    /// The zone name as sent (`UTC` when the platform sent none).
    pub time_zone: &'r str,
    /// The IANA zone the wall times were read in; `None` for a fixed offset.
    pub time_zone_iana: Option<&'static str>,
    /// The offset from UTC in force at the start (else the end, else the partition date's
    /// midnight), in seconds.
    pub utc_offset_seconds: i32,
    pub idempotent_id: Option<&'r str>,
}

/// Process-instance ids attached to an approval (none for leaves: their model has none).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessIds<'r> {
    pub correct_process_id: Option<&'r [Text<'r>]>,
    pub cancel_process_id: Option<&'r [Text<'r>]>,
    pub process_id: Option<&'r [Text<'r>]>,
}

/// A row of `outs` or `leaves`: both carry a typed absence with an i18n name.
#[derive(Debug, Clone, Copy)]
pub struct AbsenceRow<'r> {
    pub head: Head<'r>,
    pub uniq_id: Option<&'r str>,
    pub unit: Option<i32>,
    pub interval_seconds: Option<i64>,
    pub name: Option<&'r str>,
    pub name_ch: Option<&'r str>,
    pub name_en: Option<&'r str>,
    pub name_ja: Option<&'r str>,
    pub default_locale: Option<&'r str>,
    pub reason: Option<&'r str>,
    pub approve_pass_time: Option<i64>,
    pub approve_apply_time: Option<i64>,
    pub process: ProcessIds<'r>,
}

/// A row of `overtime_works`.
#[derive(Debug, Clone, Copy)]
pub struct OvertimeRow<'r> {
    pub head: Head<'r>,
    pub duration: Option<f64>,
    pub unit: Option<i32>,
    pub category: Option<i32>,
    pub type_: Option<i32>,
    pub reason: Option<&'r str>,
    pub process: ProcessIds<'r>,
}

/// A row of `trips`.
#[derive(Debug, Clone, Copy)]
pub struct TripRow<'r> {
    pub head: Head<'r>,
    pub reason: Option<&'r str>,
    pub approve_pass_time: Option<i64>,
    pub approve_apply_time: Option<i64>,
    pub departure_region_level: Option<&'r str>,
    pub departure_region_id: Option<&'r str>,
    pub destinations: Option<&'r [RegionPlace<'r>]>,
    pub transportation: Option<&'r [i32]>,
    pub trip_type: Option<i32>,
    pub remarks: Option<&'r str>,
    pub process: ProcessIds<'r>,
}

/// The rows `rows` (batch, row) of `batches`, all of one table, as one batch in the canonical
/// order of a file (nulls first, as `Option` orders). The rows are copied once, from wherever
/// they are: no concatenation first.
pub fn sorted(
    batches: &[&RecordBatch],
    mut rows: Vec<(usize, usize)>,
) -> Result<RecordBatch, ArrowError> {
    sort_rows(batches, &mut rows)?;
    arrow_select::interleave::interleave_record_batch(batches, &rows)
}

/// Column `name` of `batch` as the array type `T`; an error naming it if it is missing or of
/// another type.
pub fn column<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArrowError::SchemaError(format!("no column {name} of the expected type")))
}

/// A batch of `table` written under schema v1 (no `time_zone_iana`, `utc_offset_seconds`), as
/// v2; `None` when `batch` does not have v1's columns. In v1 `time_zone` was the IANA name the
/// times were read in (`UTC` for an empty zone), so it is also the v2 `time_zone_iana`, and the
/// offset is that zone's at the start (else the end, else midnight UTC of `date`, the partition's
/// date): exactly what v2 writes for the same record.
pub fn upgrade_v1(
    table: Table,
    batch: &RecordBatch,
    date: chrono::NaiveDate,
) -> Result<Option<RecordBatch>, ArrowError> {
    use arrow_array::Array;
    let v2 = table.schema();
    let v1: Vec<&Field> = v2
        .fields()
        .iter()
        .map(|f| f.as_ref())
        .filter(|f| !matches!(f.name().as_str(), "time_zone_iana" | "utc_offset_seconds"))
        .collect();
    let fields = batch.schema_ref().fields();
    if fields.len() != v1.len() || fields.iter().zip(&v1).any(|(a, b)| a.as_ref() != *b) {
        return Ok(None);
    }
    let zones: &StringArray = column(batch, "time_zone")?;
    let start: &TimestampMicrosecondArray = column(batch, "start_time")?;
    let end: &TimestampMicrosecondArray = column(batch, "end_time")?;
    let midnight = date.and_time(chrono::NaiveTime::MIN).and_utc();
    let mut iana = StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 13);
    let mut offsets = Int32Builder::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let name = zones.value(row);
        let zone = crate::tz::zone(Some(name)).map_err(|_| {
            ArrowError::InvalidArgumentError(format!(
                "a v1 {} row has time_zone {name:?}, which is not an IANA name",
                table.name()
            ))
        })?;
        let at = [start, end]
            .into_iter()
            .find(|c| c.is_valid(row))
            .and_then(|c| chrono::DateTime::from_timestamp_micros(c.value(row)))
            .unwrap_or(midnight);
        iana.append_option(zone.iana);
        offsets.append_value(zone.offset_at(at));
    }
    let mut columns = batch.columns().to_vec();
    let at = v1
        .iter()
        .position(|f| f.name() == "time_zone")
        .expect("every table has time_zone")
        + 1;
    columns.insert(at, Arc::new(iana.finish()));
    columns.insert(at + 1, Arc::new(offsets.finish()));
    RecordBatch::try_new(v2, columns).map(Some)
}

/// Every (batch, row) of `batches`, in order.
pub fn every_row<'b>(batches: &'b [&RecordBatch]) -> impl Iterator<Item = (usize, usize)> + 'b {
    batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
}

/// Sorts `rows` (batch, row) of `batches` into the canonical order of a file.
fn sort_rows(batches: &[&RecordBatch], rows: &mut [(usize, usize)]) -> Result<(), ArrowError> {
    use arrow_array::Array;
    struct Keys<'b> {
        user: &'b StringArray,
        status: &'b Int32Array,
        approval: &'b StringArray,
        start: &'b StringArray,
        end: &'b StringArray,
    }
    fn opt(a: &StringArray, i: usize) -> Option<&str> {
        a.is_valid(i).then(|| a.value(i))
    }
    let keys = batches
        .iter()
        .map(|batch| {
            Ok(Keys {
                user: column(batch, "user_id")?,
                status: column(batch, "status")?,
                approval: column(batch, "approval_id")?,
                start: column(batch, "start_time_local")?,
                end: column(batch, "end_time_local")?,
            })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    // Each row's key is read out of its arrays once, not at every comparison (a sort makes
    // ~log n of those a row): `sort_by_cached_key` is stable, like the `sort_by` it replaces.
    // The keys take ~80 bytes a row while sorting: 80 MB for a day of 1,000,000 rows, a few
    // hundred KB for a day of 20,000 users.
    rows.sort_by_cached_key(|&(b, i)| {
        let k = &keys[b];
        (
            opt(k.user, i),
            k.status.value(i),
            opt(k.approval, i),
            opt(k.start, i),
            opt(k.end, i),
        )
    });
    Ok(())
}

/// What every row of one run shares.
#[derive(Debug, Clone)]
pub struct RunStamp {
    pub run_id: String,
    pub ingested_at_micros: i64,
}

/// Key under which the kind of id in `user_id` is stored: an output root holds one kind only.
pub const EMPLOYEE_TYPE_KEY: &str = "attendance_sync.employee_type";

fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("element", item, true)))
}

fn region_fields() -> Fields {
    Fields::from(vec![
        Field::new("region_level", DataType::Utf8, true),
        Field::new("region_id", DataType::Utf8, true),
    ])
}

/// Text columns are sized for this many bytes a value before they grow.
const TEXT_BYTES: usize = 16;

fn text(rows: usize) -> StringBuilder {
    StringBuilder::with_capacity(rows, rows * TEXT_BYTES)
}

fn times(rows: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")
}

fn text_list(rows: usize) -> ListBuilder<StringBuilder> {
    ListBuilder::with_capacity(text(rows), rows).with_field(Arc::new(Field::new(
        "element",
        DataType::Utf8,
        true,
    )))
}

fn append_text_list(b: &mut ListBuilder<StringBuilder>, items: Option<&[Text]>) {
    match items {
        Some(items) => {
            for item in items {
                b.values().append_value(item.as_str());
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

/// Builders of the common head.
struct HeadColumns {
    user_id: StringBuilder,
    approval_id: StringBuilder,
    status: Int32Builder,
    start_time: TimestampMicrosecondBuilder,
    end_time: TimestampMicrosecondBuilder,
    start_time_local: StringBuilder,
    end_time_local: StringBuilder,
    time_zone: StringBuilder,
    time_zone_iana: StringBuilder,
    utc_offset_seconds: Int32Builder,
    idempotent_id: StringBuilder,
}

impl HeadColumns {
    fn new(rows: usize) -> Self {
        HeadColumns {
            user_id: text(rows),
            approval_id: text(rows),
            status: Int32Builder::with_capacity(rows),
            start_time: times(rows),
            end_time: times(rows),
            start_time_local: StringBuilder::with_capacity(rows, rows * 19),
            end_time_local: StringBuilder::with_capacity(rows, rows * 19),
            time_zone: text(rows),
            time_zone_iana: text(rows),
            utc_offset_seconds: Int32Builder::with_capacity(rows),
            idempotent_id: text(rows),
        }
    }

    fn append(&mut self, h: &Head) {
        self.user_id.append_value(h.user_id);
        self.approval_id.append_option(h.approval_id);
        self.status.append_value(h.status);
        self.start_time.append_option(h.start_time);
        self.end_time.append_option(h.end_time);
        self.start_time_local.append_option(h.start_time_local);
        self.end_time_local.append_option(h.end_time_local);
        self.time_zone.append_value(h.time_zone);
        self.time_zone_iana.append_option(h.time_zone_iana);
        self.utc_offset_seconds.append_value(h.utc_offset_seconds);
        self.idempotent_id.append_option(h.idempotent_id);
    }

    /// The head's columns in schema order; `idempotent_id` comes later (see [`tail`]).
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.user_id.finish()),
            Arc::new(self.approval_id.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.end_time.finish()),
            Arc::new(self.start_time_local.finish()),
            Arc::new(self.end_time_local.finish()),
            Arc::new(self.time_zone.finish()),
            Arc::new(self.time_zone_iana.finish()),
            Arc::new(self.utc_offset_seconds.finish()),
        ]
    }
}

/// Builders of the process-id lists.
struct ProcessColumns {
    correct: ListBuilder<StringBuilder>,
    cancel: ListBuilder<StringBuilder>,
    process: ListBuilder<StringBuilder>,
}

impl ProcessColumns {
    fn new(rows: usize) -> Self {
        ProcessColumns {
            correct: text_list(rows),
            cancel: text_list(rows),
            process: text_list(rows),
        }
    }

    fn append(&mut self, p: &ProcessIds) {
        append_text_list(&mut self.correct, p.correct_process_id);
        append_text_list(&mut self.cancel, p.cancel_process_id);
        append_text_list(&mut self.process, p.process_id);
    }

    fn finish(&mut self) -> [ArrayRef; 3] {
        [
            Arc::new(self.correct.finish()),
            Arc::new(self.cancel.finish()),
            Arc::new(self.process.finish()),
        ]
    }
}

/// Closes a batch with the columns every table ends with: `idempotent_id`, the process ids
/// where the table has them, then what the run stamps on every row.
fn tail(
    mut columns: Vec<ArrayRef>,
    head: &mut HeadColumns,
    process: Option<&mut ProcessColumns>,
    table: Table,
    stamp: &RunStamp,
) -> Result<RecordBatch, ArrowError> {
    let rows = columns.first().map_or(0, |c| c.len());
    columns.push(Arc::new(head.idempotent_id.finish()));
    if let Some(p) = process {
        columns.extend(p.finish());
    }
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(stamp.run_id.as_str(), rows),
    )));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
            stamp.ingested_at_micros,
            rows,
        ))
        .with_timezone("UTC"),
    ));
    RecordBatch::try_new(table.schema(), columns)
}

/// Column builders of one table, filled row by row and finished into one batch.
pub trait Columns {
    type Row<'r>;
    fn table(&self) -> Table;
    fn append(&mut self, row: &Self::Row<'_>);
    fn finish(self, stamp: &RunStamp) -> Result<RecordBatch, ArrowError>;
}

/// Builds a batch of `outs` or `leaves`, row by row.
pub struct AbsenceColumns {
    table: Table,
    head: HeadColumns,
    uniq_id: StringBuilder,
    unit: Int32Builder,
    interval_seconds: Int64Builder,
    name: StringBuilder,
    name_ch: StringBuilder,
    name_en: StringBuilder,
    name_ja: StringBuilder,
    default_locale: StringBuilder,
    reason: StringBuilder,
    approve_pass_time: TimestampMicrosecondBuilder,
    approve_apply_time: TimestampMicrosecondBuilder,
    /// `outs` only.
    process: Option<ProcessColumns>,
}

impl AbsenceColumns {
    /// `table` is [`Table::Outs`] or [`Table::Leaves`]; `rows` is a capacity hint.
    pub fn new(table: Table, rows: usize) -> Self {
        AbsenceColumns {
            table,
            head: HeadColumns::new(rows),
            uniq_id: text(rows),
            unit: Int32Builder::with_capacity(rows),
            interval_seconds: Int64Builder::with_capacity(rows),
            name: text(rows),
            name_ch: text(rows),
            name_en: text(rows),
            name_ja: text(rows),
            default_locale: text(rows),
            reason: text(rows),
            approve_pass_time: times(rows),
            approve_apply_time: times(rows),
            process: (table == Table::Outs).then(|| ProcessColumns::new(rows)),
        }
    }
}

impl Columns for AbsenceColumns {
    type Row<'r> = AbsenceRow<'r>;

    fn table(&self) -> Table {
        self.table
    }

    fn append(&mut self, r: &AbsenceRow) {
        self.head.append(&r.head);
        self.uniq_id.append_option(r.uniq_id);
        self.unit.append_option(r.unit);
        self.interval_seconds.append_option(r.interval_seconds);
        self.name.append_option(r.name);
        self.name_ch.append_option(r.name_ch);
        self.name_en.append_option(r.name_en);
        self.name_ja.append_option(r.name_ja);
        self.default_locale.append_option(r.default_locale);
        self.reason.append_option(r.reason);
        self.approve_pass_time.append_option(r.approve_pass_time);
        self.approve_apply_time.append_option(r.approve_apply_time);
        if let Some(p) = &mut self.process {
            p.append(&r.process);
        }
    }

    fn finish(mut self, stamp: &RunStamp) -> Result<RecordBatch, ArrowError> {
        let mut c = self.head.finish();
        c.push(Arc::new(self.uniq_id.finish()));
        c.push(Arc::new(self.unit.finish()));
        c.push(Arc::new(self.interval_seconds.finish()));
        c.push(Arc::new(self.name.finish()));
        c.push(Arc::new(self.name_ch.finish()));
        c.push(Arc::new(self.name_en.finish()));
        c.push(Arc::new(self.name_ja.finish()));
        c.push(Arc::new(self.default_locale.finish()));
        c.push(Arc::new(self.reason.finish()));
        c.push(Arc::new(self.approve_pass_time.finish()));
        c.push(Arc::new(self.approve_apply_time.finish()));
        tail(c, &mut self.head, self.process.as_mut(), self.table, stamp)
    }
}

/// Builds a batch of `overtime_works`, row by row.
pub struct OvertimeColumns {
    head: HeadColumns,
    duration: Float64Builder,
    unit: Int32Builder,
    category: Int32Builder,
    type_: Int32Builder,
    reason: StringBuilder,
    process: ProcessColumns,
}

impl OvertimeColumns {
    pub fn new(rows: usize) -> Self {
        OvertimeColumns {
            head: HeadColumns::new(rows),
            duration: Float64Builder::with_capacity(rows),
            unit: Int32Builder::with_capacity(rows),
            category: Int32Builder::with_capacity(rows),
            type_: Int32Builder::with_capacity(rows),
            reason: text(rows),
            process: ProcessColumns::new(rows),
        }
    }
}

impl Columns for OvertimeColumns {
    type Row<'r> = OvertimeRow<'r>;

    fn table(&self) -> Table {
        Table::OvertimeWorks
    }

    fn append(&mut self, r: &OvertimeRow) {
        self.head.append(&r.head);
        self.duration.append_option(r.duration);
        self.unit.append_option(r.unit);
        self.category.append_option(r.category);
        self.type_.append_option(r.type_);
        self.reason.append_option(r.reason);
        self.process.append(&r.process);
    }

    fn finish(mut self, stamp: &RunStamp) -> Result<RecordBatch, ArrowError> {
        let mut c = self.head.finish();
        c.push(Arc::new(self.duration.finish()));
        c.push(Arc::new(self.unit.finish()));
        c.push(Arc::new(self.category.finish()));
        c.push(Arc::new(self.type_.finish()));
        c.push(Arc::new(self.reason.finish()));
        let table = Table::OvertimeWorks;
        tail(c, &mut self.head, Some(&mut self.process), table, stamp)
    }
}

/// Builds a batch of `trips`, row by row.
pub struct TripColumns {
    head: HeadColumns,
    reason: StringBuilder,
    approve_pass_time: TimestampMicrosecondBuilder,
    approve_apply_time: TimestampMicrosecondBuilder,
    departure_region_level: StringBuilder,
    departure_region_id: StringBuilder,
    destinations: ListBuilder<StructBuilder>,
    transportation: ListBuilder<Int32Builder>,
    trip_type: Int32Builder,
    remarks: StringBuilder,
    process: ProcessColumns,
}

impl TripColumns {
    pub fn new(rows: usize) -> Self {
        let regions = StructBuilder::new(
            region_fields(),
            vec![
                Box::new(text(rows)) as Box<dyn ArrayBuilder>,
                Box::new(text(rows)),
            ],
        );
        let region_item = Field::new("element", DataType::Struct(region_fields()), true);
        let int_item = Field::new("element", DataType::Int32, true);
        TripColumns {
            head: HeadColumns::new(rows),
            reason: text(rows),
            approve_pass_time: times(rows),
            approve_apply_time: times(rows),
            departure_region_level: text(rows),
            departure_region_id: text(rows),
            destinations: ListBuilder::with_capacity(regions, rows)
                .with_field(Arc::new(region_item)),
            transportation: ListBuilder::with_capacity(Int32Builder::with_capacity(rows), rows)
                .with_field(Arc::new(int_item)),
            trip_type: Int32Builder::with_capacity(rows),
            remarks: text(rows),
            process: ProcessColumns::new(rows),
        }
    }
}

impl Columns for TripColumns {
    type Row<'r> = TripRow<'r>;

    fn table(&self) -> Table {
        Table::Trips
    }

    fn append(&mut self, r: &TripRow) {
        self.head.append(&r.head);
        self.reason.append_option(r.reason);
        self.approve_pass_time.append_option(r.approve_pass_time);
        self.approve_apply_time.append_option(r.approve_apply_time);
        self.departure_region_level
            .append_option(r.departure_region_level);
        self.departure_region_id
            .append_option(r.departure_region_id);
        match r.destinations {
            Some(regions) => {
                let s = self.destinations.values();
                for region in regions {
                    s.field_builder::<StringBuilder>(0)
                        .expect("region_level is utf8")
                        .append_option(region.region_level.as_ref().map(Text::as_str));
                    s.field_builder::<StringBuilder>(1)
                        .expect("region_id is utf8")
                        .append_option(region.region_id.as_ref().map(Text::as_str));
                    s.append(true);
                }
                self.destinations.append(true);
            }
            None => self.destinations.append(false),
        }
        match r.transportation {
            Some(items) => {
                self.transportation.values().append_slice(items);
                self.transportation.append(true);
            }
            None => self.transportation.append(false),
        }
        self.trip_type.append_option(r.trip_type);
        self.remarks.append_option(r.remarks);
        self.process.append(&r.process);
    }

    fn finish(mut self, stamp: &RunStamp) -> Result<RecordBatch, ArrowError> {
        let mut c = self.head.finish();
        c.push(Arc::new(self.reason.finish()));
        c.push(Arc::new(self.approve_pass_time.finish()));
        c.push(Arc::new(self.approve_apply_time.finish()));
        c.push(Arc::new(self.departure_region_level.finish()));
        c.push(Arc::new(self.departure_region_id.finish()));
        c.push(Arc::new(self.destinations.finish()));
        c.push(Arc::new(self.transportation.finish()));
        c.push(Arc::new(self.trip_type.finish()));
        c.push(Arc::new(self.remarks.finish()));
        tail(
            c,
            &mut self.head,
            Some(&mut self.process),
            Table::Trips,
            stamp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_several_batches_are_sorted_as_one() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("approval_id", DataType::Utf8, true),
            Field::new("status", DataType::Int32, false),
            Field::new("start_time_local", DataType::Utf8, true),
            Field::new("end_time_local", DataType::Utf8, true),
        ]));
        let batch = |users: &[&str], status: i32| {
            let text = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
            let n = users.len();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    text(users.iter().map(|u| Some(*u)).collect()),
                    text(vec![None; n]),
                    Arc::new(Int32Array::from(vec![status; n])),
                    text(vec![Some("2026-09-01 09:00:00"); n]),
                    text(vec![None; n]),
                ],
            )
            .unwrap()
        };
        let old = batch(&["b", "a"], 2);
        let fresh = batch(&["a", "c"], 1);
        let merged = sorted(&[&old, &fresh], every_row(&[&old, &fresh]).collect()).unwrap();
        let users = merged.column(0).as_any().downcast_ref::<StringArray>();
        let users: Vec<&str> = users.unwrap().iter().map(Option::unwrap).collect();
        assert_eq!(users, ["a", "a", "b", "c"]);
        let status = merged.column(2).as_any().downcast_ref::<Int32Array>();
        assert_eq!(status.unwrap().values().to_vec(), [1, 2, 2, 1]);
    }

    fn names(t: Table) -> Vec<String> {
        t.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn column_order_is_fixed() {
        assert_eq!(
            names(Table::Outs),
            [
                "user_id",
                "approval_id",
                "status",
                "start_time",
                "end_time",
                "start_time_local",
                "end_time_local",
                "time_zone",
                "time_zone_iana",
                "utc_offset_seconds",
                "uniq_id",
                "unit",
                "interval_seconds",
                "name",
                "name_ch",
                "name_en",
                "name_ja",
                "default_locale",
                "reason",
                "approve_pass_time",
                "approve_apply_time",
                "idempotent_id",
                "correct_process_id",
                "cancel_process_id",
                "process_id",
                "_run_id",
                "_ingested_at"
            ]
        );
        assert_eq!(names(Table::Leaves).len(), names(Table::Outs).len() - 3);
        assert!(names(Table::Trips).contains(&"destinations".to_string()));
        assert!(names(Table::OvertimeWorks).contains(&"type".to_string()));
    }

    #[test]
    fn lists_name_their_items_element_and_no_column_is_a_dictionary() {
        for t in Table::ALL {
            for f in t.schema().fields() {
                assert!(
                    !matches!(f.data_type(), DataType::Dictionary(..)),
                    "{}",
                    f.name()
                );
                if let DataType::List(item) = f.data_type() {
                    assert_eq!(item.name(), "element", "{}.{}", t.name(), f.name());
                }
            }
        }
    }
}
