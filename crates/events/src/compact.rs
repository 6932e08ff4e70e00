//! `events compact`: the landed events into the `approval_events` table, one row per distinct
//! event, partitioned by the UTC date of its time, under the root's lease.
//!
//! Invariants:
//! - Idempotent: a partition holds each event id once, sorted by id; a compaction adds the
//!   events its partition lacks and rewrites it whole (an atomic put), and leaves a partition
//!   that lacks nothing untouched. Rerunning it, or running it after one killed at any point,
//!   gives the same files as one uninterrupted run over the same inbox.
//! - One compactor at a time per root: it holds the root's lease (as a backfill or a sync
//!   does), and stops before writing if the lease was lost. Receivers never take the lease and
//!   are not held up.
//! - An event whose body cannot be read keeps its row (ids, type, receipt, `raw`); the reason
//!   is counted and returned, never guessed over.
//! - The inbox is read, never changed here.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use attendance_core::approval_event::{ApprovalEvent, Unreadable};
use attendance_core::event_table::{
    APPROVAL_EVENTS, EventInput, approval_events_batch, approval_events_schema,
    approval_events_values,
};
use attendance_lake::inbox::{self, LandedEvent};
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::{Store, StoreError};
use attendance_lake::writer::{self, ParquetWriter};
use chrono::{DateTime, NaiveDate, Utc};
use parquet::errors::ParquetError;

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// Events in the inbox.
    pub events: usize,
    /// Rows added to `approval_events` (events no partition held yet).
    pub new_rows: usize,
    /// Partitions rewritten, by date.
    pub partitions: Vec<NaiveDate>,
    /// Events whose body could not be read: id, field, reason (their rows are kept).
    pub unreadable: Vec<(String, Unreadable)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("{path}: not a Parquet file of approval_events; move it away and compact again")]
    Unreadable {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error("the lease on the output root was lost: stopped before writing {path}")]
    LeaseLost { path: String },
}

/// The path of a date's partition file.
pub fn partition_path(date: NaiveDate) -> String {
    format!("{APPROVAL_EVENTS}/date={date}/part-00000.parquet")
}

/// Compacts the inbox of `store` into `approval_events`, as run `run_id`.
pub async fn compact(
    store: Arc<Store>,
    run_id: &str,
    lease_ttl: Duration,
) -> Result<CompactSummary, CompactError> {
    let lease = Arc::new(Lease::acquire(Arc::clone(&store), run_id, lease_ttl).await?);
    let renewal = lease.keep_renewed();
    let result = compact_leased(&store, &lease).await;
    renewal.abort();
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %attendance_core::chain::Chain(&e), "could not release the lease; it expires by itself");
    }
    result
}

async fn compact_leased(store: &Store, lease: &Lease) -> Result<CompactSummary, CompactError> {
    let landed = inbox::read_all(store).await?;
    let mut summary = CompactSummary {
        events: landed.len(),
        ..CompactSummary::default()
    };
    struct Prepared<'a> {
        landed: &'a LandedEvent,
        raw: String,
        received_at: DateTime<Utc>,
        read: Option<ApprovalEvent>,
    }
    let prepared: Vec<Prepared<'_>> = landed
        .iter()
        .map(|event| {
            let read = match ApprovalEvent::read(&event.body) {
                Ok(read) => Some(read),
                Err(why) => {
                    summary.unreadable.push((event.id.clone(), why));
                    None
                }
            };
            Prepared {
                landed: event,
                raw: event.body.to_string(),
                received_at: DateTime::parse_from_rfc3339(&event.received_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(DateTime::UNIX_EPOCH),
                read,
            }
        })
        .collect();
    let inputs: Vec<EventInput<'_>> = prepared
        .iter()
        .map(|p| EventInput {
            event_id: &p.landed.id,
            received_at: p.received_at,
            transport: p.landed.transport.as_str(),
            raw: &p.raw,
            read: p.read.as_ref(),
            event_type: p.landed.event_type.as_deref(),
        })
        .collect();
    let mut by_date: BTreeMap<NaiveDate, Vec<&EventInput<'_>>> = BTreeMap::new();
    for input in &inputs {
        by_date.entry(input.date()).or_default().push(input);
    }
    let writer = ParquetWriter::new(
        APPROVAL_EVENTS,
        approval_events_schema(),
        approval_events_values,
        None,
    );
    for (date, events) in by_date {
        let path = partition_path(date);
        let existing = match store.get(&path).await? {
            Some(bytes) => {
                writer::decode(bytes)
                    .map_err(|source| CompactError::Unreadable {
                        path: store.describe(&path),
                        source,
                    })?
                    .0
            }
            None => Vec::new(),
        };
        let held: HashSet<String> = existing
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| ids.value(i).to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let missing: Vec<EventInput<'_>> = events
            .into_iter()
            .filter(|e| !held.contains(e.event_id))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        let merged = merge(existing, approval_events_batch(&missing));
        let bytes = writer
            .encode(&merged)
            .map_err(|source| CompactError::Unreadable {
                path: store.describe(&path),
                source,
            })?;
        if lease.is_lost() {
            return Err(CompactError::LeaseLost {
                path: store.describe(&path),
            });
        }
        store.put(&path, bytes).await?;
        summary.new_rows += missing.len();
        summary.partitions.push(date);
    }
    Ok(summary)
}

/// The rows of a partition and new rows, together and sorted by `event_id`.
fn merge(existing: Vec<RecordBatch>, new: RecordBatch) -> RecordBatch {
    let schema = approval_events_schema();
    let mut batches: Vec<RecordBatch> = existing
        .into_iter()
        .map(|b| {
            RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec())
                .expect("a partition file has the table's columns")
        })
        .collect();
    batches.push(new);
    let all = arrow_select::concat::concat_batches(&schema, &batches)
        .expect("batches of one schema concatenate");
    let ids = all.column(0).as_string::<i32>();
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by(|a, b| ids.value(*a as usize).cmp(ids.value(*b as usize)));
    let indices = arrow_array::UInt32Array::from(order);
    arrow_select::take::take_record_batch(&all, &indices).expect("indices are in bounds")
}
