//! The four output tables (schema v1): row types, Arrow schemas and record batches. Pure, no I/O.
//!
//! Invariants:
//! - Column order is fixed and identical in every file: the common head (`user_id`,
//!   `approval_id`, `status`, times, `time_zone`), the table's own columns, `idempotent_id`, the
//!   process-id lists where the table has them, then `_run_id`, `_ingested_at`.
//! - Timestamps are `Timestamp(Microsecond, "UTC")`; no dictionary types; list items are named
//!   `element` (the Parquet spec's name, which Spark, BigQuery and Snowflake expect).
//! - The partition column `date` is not in the files: it is the `date=YYYY-MM-DD` directory.
//! - Rows of a (table, date) are sorted by (user_id, status, approval_id, local start, local end)
//!   before encoding, so the same source data always gives byte-identical row order.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Version of the column layout, written into every file's key-value metadata.
pub const SCHEMA_VERSION: &str = "1";
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
        let meta = RunStamp {
            run_id: String::new(),
            ingested_at_micros: 0,
        };
        let batch = match self {
            Table::Outs => absence_batch(&[], true, &meta),
            Table::Leaves => absence_batch(&[], false, &meta),
            Table::OvertimeWorks => overtime_batch(&[], &meta),
            Table::Trips => trip_batch(&[], &meta),
        };
        batch
            .expect("an empty batch always matches its schema")
            .schema()
    }
}

/// Columns every table starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub user_id: String,
    pub approval_id: Option<String>,
    /// The status that was queried: the answer does not echo it.
    pub status: i32,
    /// Microseconds since the epoch, UTC.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// The wall times exactly as sent.
    pub start_time_local: Option<String>,
    pub end_time_local: Option<String>,
    /// The IANA zone the wall times were read in (`UTC` when the platform sent none).
    pub time_zone: &'static str,
    pub idempotent_id: Option<String>,
}

/// Process-instance ids attached to an approval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessIds {
    pub correct_process_id: Option<Vec<String>>,
    pub cancel_process_id: Option<Vec<String>>,
    pub process_id: Option<Vec<String>>,
}

/// A row of `outs` or `leaves`: both carry a typed absence with an i18n name.
#[derive(Debug, Clone, PartialEq)]
pub struct AbsenceRow {
    pub common: Common,
    pub uniq_id: Option<String>,
    pub unit: Option<i32>,
    pub interval_seconds: Option<i64>,
    pub name: Option<String>,
    pub name_ch: Option<String>,
    pub name_en: Option<String>,
    pub name_ja: Option<String>,
    pub default_locale: Option<String>,
    pub reason: Option<String>,
    pub approve_pass_time: Option<i64>,
    pub approve_apply_time: Option<i64>,
    /// Only written for `outs`; the leave model has no process ids.
    pub process: ProcessIds,
}

/// A row of `overtime_works`.
#[derive(Debug, Clone, PartialEq)]
pub struct OvertimeRow {
    pub common: Common,
    pub duration: Option<f64>,
    pub unit: Option<i32>,
    pub category: Option<i32>,
    pub type_: Option<i32>,
    pub reason: Option<String>,
    pub process: ProcessIds,
}

/// A trip destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub region_level: Option<String>,
    pub region_id: Option<String>,
}

/// A row of `trips`.
#[derive(Debug, Clone, PartialEq)]
pub struct TripRow {
    pub common: Common,
    pub reason: Option<String>,
    pub approve_pass_time: Option<i64>,
    pub approve_apply_time: Option<i64>,
    pub departure_region_level: Option<String>,
    pub departure_region_id: Option<String>,
    pub destinations: Option<Vec<Region>>,
    pub transportation: Option<Vec<i32>>,
    pub trip_type: Option<i32>,
    pub remarks: Option<String>,
    pub process: ProcessIds,
}

/// Gives access to the common head of any row type.
pub trait Row {
    fn common(&self) -> &Common;
}

impl Row for AbsenceRow {
    fn common(&self) -> &Common {
        &self.common
    }
}
impl Row for OvertimeRow {
    fn common(&self) -> &Common {
        &self.common
    }
}
impl Row for TripRow {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// Sorts rows into the canonical order of a file.
pub fn sort_rows<R: Row>(rows: &mut [R]) {
    rows.sort_by(|a, b| {
        let (a, b) = (a.common(), b.common());
        (
            &a.user_id,
            a.status,
            &a.approval_id,
            &a.start_time_local,
            &a.end_time_local,
        )
            .cmp(&(
                &b.user_id,
                b.status,
                &b.approval_id,
                &b.start_time_local,
                &b.end_time_local,
            ))
    });
}

/// Sorts a batch of any table into the order of [`sort_rows`] (nulls first, as `Option` orders).
pub fn sort_batch(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    sort_indices(batch, &mut order)?;
    arrow_select::take::take_record_batch(batch, &arrow_array::UInt32Array::from(order))
}

/// Sorts row indices of `batch` into the order of [`sort_rows`].
pub fn sort_indices(batch: &RecordBatch, order: &mut [u32]) -> Result<(), ArrowError> {
    use arrow_array::Array;
    let text = |name: &str| -> Result<&StringArray, ArrowError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| ArrowError::SchemaError(format!("no utf8 column {name}")))
    };
    fn opt(a: &StringArray, i: usize) -> Option<&str> {
        a.is_valid(i).then(|| a.value(i))
    }
    let (user, approval) = (text("user_id")?, text("approval_id")?);
    let (start, end) = (text("start_time_local")?, text("end_time_local")?);
    let status = batch
        .column_by_name("status")
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        .ok_or_else(|| ArrowError::SchemaError("no int32 column status".into()))?;
    order.sort_by(|&a, &b| {
        let key = |i: u32| {
            let i = i as usize;
            (
                opt(user, i),
                status.value(i),
                opt(approval, i),
                opt(start, i),
                opt(end, i),
            )
        };
        key(a).cmp(&key(b))
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

/// Collects a batch column by column, so each column's field sits next to the values it types.
struct Columns<'a, R> {
    rows: &'a [R],
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl<'a, R: Row> Columns<'a, R> {
    fn new(rows: &'a [R]) -> Self {
        let mut c = Columns {
            rows,
            fields: Vec::new(),
            arrays: Vec::new(),
        };
        c.push(
            Field::new("user_id", DataType::Utf8, false),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.common().user_id.as_str()),
            )),
        );
        c.utf8("approval_id", |r| r.common().approval_id.as_deref());
        c.push(
            Field::new("status", DataType::Int32, false),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.common().status),
            )),
        );
        c.timestamp("start_time", |r| r.common().start_time);
        c.timestamp("end_time", |r| r.common().end_time);
        c.utf8("start_time_local", |r| {
            r.common().start_time_local.as_deref()
        });
        c.utf8("end_time_local", |r| r.common().end_time_local.as_deref());
        c.push(
            Field::new("time_zone", DataType::Utf8, false),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.common().time_zone),
            )),
        );
        c
    }

    fn push(&mut self, field: Field, array: ArrayRef) {
        self.fields.push(field);
        self.arrays.push(array);
    }

    fn utf8(&mut self, name: &str, f: impl Fn(&R) -> Option<&str>) {
        let array = StringArray::from_iter(self.rows.iter().map(f));
        self.push(Field::new(name, DataType::Utf8, true), Arc::new(array));
    }

    fn int32(&mut self, name: &str, f: impl Fn(&R) -> Option<i32>) {
        let array = Int32Array::from_iter(self.rows.iter().map(f));
        self.push(Field::new(name, DataType::Int32, true), Arc::new(array));
    }

    fn int64(&mut self, name: &str, f: impl Fn(&R) -> Option<i64>) {
        let array = Int64Array::from_iter(self.rows.iter().map(f));
        self.push(Field::new(name, DataType::Int64, true), Arc::new(array));
    }

    fn float64(&mut self, name: &str, f: impl Fn(&R) -> Option<f64>) {
        let array = Float64Array::from_iter(self.rows.iter().map(f));
        self.push(Field::new(name, DataType::Float64, true), Arc::new(array));
    }

    fn timestamp(&mut self, name: &str, f: impl Fn(&R) -> Option<i64>) {
        let array =
            TimestampMicrosecondArray::from_iter(self.rows.iter().map(f)).with_timezone("UTC");
        self.push(Field::new(name, utc_timestamp(), true), Arc::new(array));
    }

    fn utf8_list(&mut self, name: &str, f: impl Fn(&R) -> Option<&[String]>) {
        // Exact capacities: a batch per answer is small, and default capacities (1024 items)
        // would cost more than its data.
        let n = self.rows.len();
        let items: usize = self
            .rows
            .iter()
            .map(|r| f(r).map_or(0, <[String]>::len))
            .sum();
        let mut b = ListBuilder::with_capacity(StringBuilder::with_capacity(items, items * 20), n)
            .with_field(Arc::new(Field::new("element", DataType::Utf8, true)));
        for row in self.rows {
            match f(row) {
                Some(items) => {
                    for item in items {
                        b.values().append_value(item);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        self.push(
            Field::new(name, list_of(DataType::Utf8), true),
            Arc::new(b.finish()),
        );
    }

    fn int32_list(&mut self, name: &str, f: impl Fn(&R) -> Option<&[i32]>) {
        let n = self.rows.len();
        let items: usize = self.rows.iter().map(|r| f(r).map_or(0, <[i32]>::len)).sum();
        let mut b = ListBuilder::with_capacity(Int32Builder::with_capacity(items), n)
            .with_field(Arc::new(Field::new("element", DataType::Int32, true)));
        for row in self.rows {
            match f(row) {
                Some(items) => {
                    b.values().append_slice(items);
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        self.push(
            Field::new(name, list_of(DataType::Int32), true),
            Arc::new(b.finish()),
        );
    }

    fn region_list(&mut self, name: &str, f: impl Fn(&R) -> Option<&[Region]>) {
        let item = DataType::Struct(region_fields());
        let n = self.rows.len();
        let items: usize = self
            .rows
            .iter()
            .map(|r| f(r).map_or(0, <[Region]>::len))
            .sum();
        let values = StructBuilder::from_fields(region_fields(), items);
        let mut b = ListBuilder::with_capacity(values, n).with_field(Arc::new(Field::new(
            "element",
            item.clone(),
            true,
        )));
        for row in self.rows {
            match f(row) {
                Some(regions) => {
                    let s = b.values();
                    for region in regions {
                        s.field_builder::<StringBuilder>(0)
                            .expect("region_level is utf8")
                            .append_option(region.region_level.as_deref());
                        s.field_builder::<StringBuilder>(1)
                            .expect("region_id is utf8")
                            .append_option(region.region_id.as_deref());
                        s.append(true);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        self.push(Field::new(name, list_of(item), true), Arc::new(b.finish()));
    }

    fn process_ids(&mut self, f: impl Fn(&R) -> &ProcessIds) {
        self.utf8_list("correct_process_id", |r| f(r).correct_process_id.as_deref());
        self.utf8_list("cancel_process_id", |r| f(r).cancel_process_id.as_deref());
        self.utf8_list("process_id", |r| f(r).process_id.as_deref());
    }

    fn finish(mut self, stamp: &RunStamp) -> Result<RecordBatch, ArrowError> {
        let n = self.rows.len();
        self.push(
            Field::new("_run_id", DataType::Utf8, false),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                stamp.run_id.as_str(),
                n,
            ))),
        );
        self.push(
            Field::new("_ingested_at", utc_timestamp(), false),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                    stamp.ingested_at_micros,
                    n,
                ))
                .with_timezone("UTC"),
            ),
        );
        RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.arrays)
    }
}

/// `outs` (with process ids) or `leaves` (without).
pub fn absence_batch(
    rows: &[AbsenceRow],
    with_process_ids: bool,
    stamp: &RunStamp,
) -> Result<RecordBatch, ArrowError> {
    let mut c = Columns::new(rows);
    c.utf8("uniq_id", |r| r.uniq_id.as_deref());
    c.int32("unit", |r| r.unit);
    c.int64("interval_seconds", |r| r.interval_seconds);
    c.utf8("name", |r| r.name.as_deref());
    c.utf8("name_ch", |r| r.name_ch.as_deref());
    c.utf8("name_en", |r| r.name_en.as_deref());
    c.utf8("name_ja", |r| r.name_ja.as_deref());
    c.utf8("default_locale", |r| r.default_locale.as_deref());
    c.utf8("reason", |r| r.reason.as_deref());
    c.timestamp("approve_pass_time", |r| r.approve_pass_time);
    c.timestamp("approve_apply_time", |r| r.approve_apply_time);
    c.utf8("idempotent_id", |r| r.common.idempotent_id.as_deref());
    if with_process_ids {
        c.process_ids(|r| &r.process);
    }
    c.finish(stamp)
}

/// `overtime_works`.
pub fn overtime_batch(rows: &[OvertimeRow], stamp: &RunStamp) -> Result<RecordBatch, ArrowError> {
    let mut c = Columns::new(rows);
    c.float64("duration", |r| r.duration);
    c.int32("unit", |r| r.unit);
    c.int32("category", |r| r.category);
    c.int32("type", |r| r.type_);
    c.utf8("reason", |r| r.reason.as_deref());
    c.utf8("idempotent_id", |r| r.common.idempotent_id.as_deref());
    c.process_ids(|r| &r.process);
    c.finish(stamp)
}

/// `trips`.
pub fn trip_batch(rows: &[TripRow], stamp: &RunStamp) -> Result<RecordBatch, ArrowError> {
    let mut c = Columns::new(rows);
    c.utf8("reason", |r| r.reason.as_deref());
    c.timestamp("approve_pass_time", |r| r.approve_pass_time);
    c.timestamp("approve_apply_time", |r| r.approve_apply_time);
    c.utf8("departure_region_level", |r| {
        r.departure_region_level.as_deref()
    });
    c.utf8("departure_region_id", |r| r.departure_region_id.as_deref());
    c.region_list("destinations", |r| r.destinations.as_deref());
    c.int32_list("transportation", |r| r.transportation.as_deref());
    c.int32("trip_type", |r| r.trip_type);
    c.utf8("remarks", |r| r.remarks.as_deref());
    c.utf8("idempotent_id", |r| r.common.idempotent_id.as_deref());
    c.process_ids(|r| &r.process);
    c.finish(stamp)
}

/// The published Arrow schema of a table as pretty JSON (`schemas/<table>.arrow.json`).
pub fn schema_json(table: Table) -> String {
    let mut json = serde_json::to_string_pretty(&*table.schema()).expect("schemas serialize");
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: Table) -> Vec<String> {
        t.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The published schemas in `schemas/` are what the writer produces. To update them after a
    /// deliberate change: `UPDATE_SCHEMAS=1 cargo test --lib published_schemas`.
    #[test]
    fn published_schemas_match_the_writer() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for t in Table::ALL {
            let path = dir.join(format!("{}.arrow.json", t.name()));
            let now = schema_json(t);
            if std::env::var_os("UPDATE_SCHEMAS").is_some() {
                std::fs::write(&path, &now).unwrap();
            }
            let published = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                published == now,
                "{} drifted from the writer's schema; if the change is deliberate, bump SCHEMA_VERSION and run UPDATE_SCHEMAS=1 cargo test --lib published_schemas",
                path.display()
            );
        }
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
