//! The external tables' partitions in the output root, replaced by approval code:
//! `<table>/date=YYYY-MM-DD/part-00000.parquet`, written with the pull tables' writer.
//!
//! Invariants:
//! - Replacing a partition drops the old rows a [`Replaced`] rule covers (the rows of some
//!   instances, or of some approval codes), keeps every other row, and adds the fresh ones: two
//!   sources of different approval codes share a root, and a rerun of one gives the same rows.
//! - A partition's rows are sorted by the table's key ([`ExternalTable::sort_key`]): the same
//!   rows make the same file. The new file is put atomically before stale parts are deleted; a
//!   partition left without rows loses its files.
//! - Merging and encoding are CPU work, done on a blocking thread.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_select::concat::concat_batches;
use arrow_select::filter::filter_record_batch;
use arrow_select::take::take_record_batch;
use attendance_core::external::table::ExternalTable;
use attendance_lake::partition::{parse_part, part_path, partition_dir};
use attendance_lake::store::Store;
use attendance_lake::writer::{self, ParquetWriter};
use chrono::NaiveDate;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::ExternalError;

/// The writer of one external table (its properties built once).
pub fn writer_of(table: ExternalTable) -> ParquetWriter {
    ParquetWriter::new(
        table.name(),
        table.schema(),
        |column| table.values_of(column),
        None,
    )
}

/// Which old rows a write replaces.
#[derive(Debug, Clone)]
pub enum Replaced {
    /// Every row of these approval codes (the snapshots).
    Codes(BTreeSet<String>),
    /// Every row of these instances, and, with `all_of_codes`, every row of those approval
    /// codes too (a source that is the whole truth for its codes).
    Instances {
        ids: HashSet<String>,
        all_of_codes: Option<BTreeSet<String>>,
    },
}

impl Replaced {
    /// Whether an old row of `instance_id` and `approval_code` is replaced.
    pub fn covers(&self, instance_id: Option<&str>, approval_code: Option<&str>) -> bool {
        let of_codes = |codes: &BTreeSet<String>| approval_code.is_some_and(|c| codes.contains(c));
        match self {
            Replaced::Codes(codes) => of_codes(codes),
            Replaced::Instances { ids, all_of_codes } => {
                instance_id.is_some_and(|id| ids.contains(id))
                    || all_of_codes.as_ref().is_some_and(of_codes)
            }
        }
    }
}

/// The dates of `table`'s partitions holding a row that `replaced` covers: only the two key
/// columns of each file are read.
pub async fn dates_covered(
    store: &Store,
    table: ExternalTable,
    replaced: &Replaced,
) -> Result<BTreeSet<NaiveDate>, ExternalError> {
    let mut dates = BTreeSet::new();
    for rel in store.list_files(table.name()).await? {
        let Some((date, _)) = parse_part(&rel) else {
            continue;
        };
        if dates.contains(&date) {
            continue;
        }
        let bytes = store.get(&rel).await?.unwrap_or_default();
        let unreadable = |source| ExternalError::Unreadable {
            path: store.describe(&rel),
            source,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .map_err(unreadable)?;
        let names = ["instance_id", "approval_code"];
        let roots: Vec<usize> = names
            .iter()
            .filter_map(|n| builder.schema().index_of(n).ok())
            .collect();
        if roots.len() != names.len() {
            return Err(ExternalError::SchemaMismatch {
                path: store.describe(&rel),
                table: table.name(),
            });
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder.with_projection(mask).build().map_err(unreadable)?;
        'file: for batch in reader {
            let batch = batch.map_err(|e| ExternalError::Arrow {
                table: table.name(),
                source: e,
            })?;
            let ids = batch.column(0).as_string::<i32>();
            let codes = batch.column(1).as_string::<i32>();
            for row in 0..batch.num_rows() {
                let id = ids.is_valid(row).then(|| ids.value(row));
                let code = codes.is_valid(row).then(|| codes.value(row));
                if replaced.covers(id, code) {
                    dates.insert(date);
                    break 'file;
                }
            }
        }
    }
    Ok(dates)
}

/// What replacing one partition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Written { path: String, rows: usize },
    Deleted { path: String },
    Unchanged,
}

/// Replaces the rows `replaced` covers in `table`'s partition of `date` with `fresh`.
pub async fn replace_partition(
    store: &Store,
    writer: &ParquetWriter,
    table: ExternalTable,
    date: NaiveDate,
    fresh: Option<RecordBatch>,
    replaced: Arc<Replaced>,
    still_ours: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Change, ExternalError> {
    let dir = partition_dir(table.name(), date);
    let parts: Vec<String> = store
        .list_files(&dir)
        .await?
        .into_iter()
        .filter(|rel| parse_part(rel).is_some())
        .collect();
    let mut old = Vec::new();
    for rel in &parts {
        let bytes = store.get(rel).await?.unwrap_or_default();
        old.push((rel.clone(), bytes));
    }
    if old.is_empty() && fresh.as_ref().is_none_or(|b| b.num_rows() == 0) {
        return Ok(Change::Unchanged);
    }
    let target = part_path(table.name(), date, 0);
    let describe: Vec<String> = parts.iter().map(|p| store.describe(p)).collect();
    let writer = writer.clone();
    let merged =
        tokio::task::spawn_blocking(move || merge(table, old, describe, fresh, &replaced, &writer))
            .await
            .expect("merging never panics")?;
    if !still_ours() {
        return Err(ExternalError::LeaseLost { path: target });
    }
    let change = match merged {
        Some((bytes, rows)) => {
            store.put(&target, bytes).await?;
            Change::Written {
                path: target.clone(),
                rows,
            }
        }
        None => Change::Deleted {
            path: target.clone(),
        },
    };
    for rel in parts {
        if rel != target || matches!(change, Change::Deleted { .. }) {
            if !still_ours() {
                return Err(ExternalError::LeaseLost { path: rel });
            }
            store.delete(&rel).await?;
        }
    }
    Ok(change)
}

/// The partition's new file and rows, or `None` when no row is left.
fn merge(
    table: ExternalTable,
    old: Vec<(String, Vec<u8>)>,
    describe: Vec<String>,
    fresh: Option<RecordBatch>,
    replaced: &Replaced,
    writer: &ParquetWriter,
) -> Result<Option<(Vec<u8>, usize)>, ExternalError> {
    let schema = table.schema();
    let mut batches = Vec::new();
    for ((_, bytes), path) in old.into_iter().zip(describe) {
        let (decoded, _) = writer::decode(bytes).map_err(|source| ExternalError::Unreadable {
            path: path.clone(),
            source,
        })?;
        for batch in decoded {
            if batch.schema().fields() != schema.fields() {
                return Err(ExternalError::SchemaMismatch {
                    path,
                    table: table.name(),
                });
            }
            let column = |name| {
                batch
                    .column_by_name(name)
                    .expect("every external table has instance_id and approval_code")
                    .as_string::<i32>()
            };
            let (ids, codes) = (column("instance_id"), column("approval_code"));
            let keep: BooleanArray = ids
                .iter()
                .zip(codes.iter())
                .map(|(id, code)| Some(!replaced.covers(id, code)))
                .collect();
            let kept = filter_record_batch(&batch, &keep).map_err(ExternalError::arrow(table))?;
            let kept = RecordBatch::try_new(schema.clone(), kept.columns().to_vec())
                .map_err(ExternalError::arrow(table))?;
            batches.push(kept);
        }
    }
    batches.extend(fresh);
    let all = concat_batches(&schema, &batches).map_err(ExternalError::arrow(table))?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let sorted = sort(table, &all)?;
    let bytes = writer
        .encode(&sorted)
        .map_err(|source| ExternalError::Encode {
            table: table.name(),
            source,
        })?;
    Ok(Some((bytes, sorted.num_rows())))
}

/// `batch`'s rows in the order of the table's key.
fn sort(table: ExternalTable, batch: &RecordBatch) -> Result<RecordBatch, ExternalError> {
    let keys: Vec<&StringArray> = table
        .sort_key()
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .expect("sort keys are columns")
                .as_string::<i32>()
        })
        .collect();
    fn value(column: &StringArray, row: usize) -> Option<&str> {
        column.is_valid(row).then(|| column.value(row))
    }
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|&a, &b| {
        keys.iter()
            .map(|k| value(k, a as usize).cmp(&value(k, b as usize)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    take_record_batch(batch, &arrow_array::UInt32Array::from(order))
        .map_err(ExternalError::arrow(table))
}
