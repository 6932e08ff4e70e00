//! `events compact`: the landed events into the `approval_events` table, one row per distinct
//! event, partitioned by the UTC date of its time, and into the approvals' latest states
//! (`out_events`, `leave_events`, `overtime_events`, partitioned by the local date of the
//! approval's start), under the root's lease.
//!
//! Invariants:
//! - Idempotent: a partition holds each event id once, sorted by id; a compaction adds the
//!   events its partition lacks and rewrites it whole (an atomic put), and leaves a partition
//!   that lacks nothing untouched. Rerunning it, or running it after one killed at any point,
//!   gives the same files as one uninterrupted run over the same inbox.
//! - One compactor at a time per root: it holds a lease of its own, [`COMPACT_LEASE_PATH`],
//!   and stops before writing if the lease was lost. It does not take the root's lease: a
//!   backfill or sync writes the pull tables, their rejects, the resync cursor and the users'
//!   zones, none of which a compaction writes (it reads the zones, replaced atomically), so
//!   neither waits for the other. Receivers take no lease at all.
//! - The state tables are a function of every landed event and the pull's zone map: each
//!   compaction computes them whole, puts the partitions whose bytes differ and deletes those
//!   no approval starts on any more, so a killed compaction's rerun converges on the same files.
//! - An event whose body cannot be read keeps its row in `approval_events` (ids, type, receipt,
//!   `raw`), makes no state row, and is kept aside in `_rejects/events.ndjson` with its field and
//!   reason, and counted; nothing is guessed over.
//! - The inbox is read, never changed here.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use attendance_core::approval_event::{Applicant, ApprovalEvent, Unreadable};
use attendance_core::event_state::{self, EventTable, LandedApproval, StateCounts};
use attendance_core::event_table::{
    APPROVAL_EVENTS, EventInput, approval_events_batch, approval_events_schema,
    approval_events_values,
};
use attendance_core::tz::{self, Zone};
use attendance_lake::inbox::{self, LandedEvent};
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::{Store, StoreError};
use attendance_lake::writer::{self, ParquetWriter};
use attendance_lake::zones;
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
    /// What the state tables hold.
    pub state: StateCounts,
    /// State partitions written (changed or new) and deleted, as paths under the root.
    pub state_written: Vec<String>,
    pub state_deleted: Vec<String>,
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

/// The path of a date's partition file of `approval_events`.
pub fn partition_path(date: NaiveDate) -> String {
    table_partition_path(APPROVAL_EVENTS, date)
}

/// The path of a date's partition file of any event table.
pub fn table_partition_path(table: &str, date: NaiveDate) -> String {
    format!("{table}/date={date}/part-00000.parquet")
}

/// The compactors' lease, beside the inbox.
pub const COMPACT_LEASE_PATH: &str = "_events/compact-lease.json";

/// Where the events that cannot be read are kept aside, one JSON object a line, by event id.
pub const EVENT_REJECTS_PATH: &str = "_rejects/events.ndjson";

/// Compacts the inbox of `store` into `approval_events`, as run `run_id`.
///
/// Local times are read in each applicant's zone from the pull's map, else in `default_zone`.
pub async fn compact(
    store: Arc<Store>,
    run_id: &str,
    lease_ttl: Duration,
    default_zone: Zone,
) -> Result<CompactSummary, CompactError> {
    let lease = Arc::new(
        Lease::acquire_at(Arc::clone(&store), COMPACT_LEASE_PATH, run_id, lease_ttl).await?,
    );
    let renewal = lease.keep_renewed();
    let result = compact_leased(&store, &lease, default_zone).await;
    renewal.abort();
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %attendance_core::chain::Chain(&e), "could not release the lease; it expires by itself");
    }
    result
}

async fn compact_leased(
    store: &Store,
    lease: &Lease,
    default_zone: Zone,
) -> Result<CompactSummary, CompactError> {
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
    let approvals: Vec<LandedApproval<'_>> = prepared
        .iter()
        .filter_map(|p| {
            Some(LandedApproval {
                event_id: &p.landed.id,
                received_at: p.received_at,
                event: p.read.as_ref()?,
            })
        })
        .collect();
    write_states(store, lease, &approvals, default_zone, &mut summary).await?;
    let rejects: Vec<EventReject<'_>> = prepared
        .iter()
        .filter(|p| p.read.is_none())
        .map(|p| {
            let why = summary
                .unreadable
                .iter()
                .find(|(id, _)| *id == p.landed.id)
                .map(|(_, why)| why)
                .expect("every unread event has its reason");
            EventReject {
                event_id: &p.landed.id,
                event_type: p.landed.event_type.as_deref(),
                received_at: &p.landed.received_at,
                field: &why.field,
                reason: &why.reason,
                raw: &p.landed.body,
            }
        })
        .collect();
    write_rejects(store, lease, rejects).await?;
    Ok(summary)
}

/// One line of `_rejects/events.ndjson`.
#[derive(serde::Serialize)]
struct EventReject<'a> {
    event_id: &'a str,
    event_type: Option<&'a str>,
    received_at: &'a str,
    field: &'a str,
    reason: &'a str,
    raw: &'a serde_json::Value,
}

/// Rewrites the events' rejects file when its lines changed (deleted when none is left).
async fn write_rejects(
    store: &Store,
    lease: &Lease,
    mut rejects: Vec<EventReject<'_>>,
) -> Result<(), CompactError> {
    rejects.sort_by(|a, b| a.event_id.cmp(b.event_id));
    let mut bytes = Vec::new();
    for reject in &rejects {
        serde_json::to_writer(&mut bytes, reject).expect("a reject serialises");
        bytes.push(b'\n');
    }
    let old = store.get(EVENT_REJECTS_PATH).await?;
    if old.as_deref().unwrap_or_default() == bytes.as_slice() {
        return Ok(());
    }
    if lease.is_lost() {
        return Err(CompactError::LeaseLost {
            path: store.describe(EVENT_REJECTS_PATH),
        });
    }
    if bytes.is_empty() {
        store.delete(EVENT_REJECTS_PATH).await?;
    } else {
        store.put(EVENT_REJECTS_PATH, bytes).await?;
    }
    Ok(())
}

/// Computes the three state tables and brings their partitions to it.
async fn write_states(
    store: &Store,
    lease: &Lease,
    approvals: &[LandedApproval<'_>],
    default_zone: Zone,
    summary: &mut CompactSummary,
) -> Result<(), CompactError> {
    let map = zones::load(store).await?;
    let zone_of = |applicant: &Applicant| -> Option<Zone> {
        let name = map.zone_of(applicant.user_id.as_deref(), applicant.open_id.as_deref())?;
        // The map holds names the pull resolved; one that no longer resolves is not guessed at.
        tz::zone(Some(name)).ok()
    };
    let built = event_state::build(approvals, &zone_of, default_zone);
    summary.state = built.counts;
    let mut wanted: BTreeMap<String, RecordBatch> = built
        .partitions
        .into_iter()
        .map(|((table, date), batch)| (table_partition_path(table.name(), date), batch))
        .collect();
    for table in EventTable::ALL {
        let writer = ParquetWriter::new(
            table.name(),
            table.schema(),
            |column| table.values_of(column),
            None,
        );
        let prefix = format!("{}/", table.name());
        let existing: HashSet<String> = store
            .list_files(table.name())
            .await?
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .collect();
        let paths: Vec<String> = wanted
            .keys()
            .filter(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        for path in &paths {
            let batch = wanted.remove(path).expect("listed above");
            let bytes = writer
                .encode(&batch)
                .map_err(|source| CompactError::Unreadable {
                    path: store.describe(path),
                    source,
                })?;
            if existing.contains(path)
                && store.get(path).await?.as_deref() == Some(bytes.as_slice())
            {
                continue;
            }
            if lease.is_lost() {
                return Err(CompactError::LeaseLost {
                    path: store.describe(path),
                });
            }
            store.put(path, bytes).await?;
            summary.state_written.push(path.clone());
        }
        let kept: HashSet<&String> = paths.iter().collect();
        let mut stale: Vec<&String> = existing.iter().filter(|p| !kept.contains(p)).collect();
        stale.sort();
        for path in stale {
            if lease.is_lost() {
                return Err(CompactError::LeaseLost {
                    path: store.describe(path),
                });
            }
            store.delete(path).await?;
            summary.state_deleted.push(path.clone());
        }
    }
    Ok(())
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
