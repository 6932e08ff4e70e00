//! The external tables' partitions in the output root, replaced by approval code:
//! `<table>/date=YYYY-MM-DD/part-00000.parquet`, written with the pull tables' writer.
//!
//! Invariants:
//! - Replacing a partition for a set of approval codes keeps every row of the other codes and
//!   replaces the rows of those codes with the fresh ones, so that two sources of different
//!   approval codes share a root, and a rerun of one source gives the same rows.
//! - A partition's rows are sorted by the table's key ([`ExternalTable::sort_key`]): the same
//!   rows make the same file. The new file is put atomically before stale parts are deleted; a
//!   partition left without rows loses its files.
//! - Merging and encoding are CPU work, done on a blocking thread.

use std::collections::BTreeSet;
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

/// What replacing one partition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Written { path: String, rows: usize },
    Deleted { path: String },
    Unchanged,
}

/// The dates of `table`'s partitions in the root.
pub async fn partition_dates(
    store: &Store,
    table: ExternalTable,
) -> Result<BTreeSet<NaiveDate>, ExternalError> {
    Ok(store
        .list_files(table.name())
        .await?
        .iter()
        .filter_map(|rel| parse_part(rel).map(|(date, _)| date))
        .collect())
}

/// Replaces the rows of `codes` in `table`'s partition of `date` with `fresh`.
pub async fn replace_partition(
    store: &Store,
    writer: &ParquetWriter,
    table: ExternalTable,
    date: NaiveDate,
    fresh: Option<RecordBatch>,
    codes: Arc<BTreeSet<String>>,
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
        tokio::task::spawn_blocking(move || merge(table, old, describe, fresh, &codes, &writer))
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
    codes: &BTreeSet<String>,
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
            let code = batch
                .column_by_name("approval_code")
                .expect("every external table has approval_code")
                .as_string::<i32>();
            let keep: BooleanArray = code
                .iter()
                .map(|c| Some(c.is_none_or(|c| !codes.contains(c))))
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
