//! `events compact`: the landed events into the `approval_events` table, one row per distinct
//! event, partitioned by the UTC date of its time, and into the approvals' latest states
//! (`out_events`, `leave_events`, `overtime_events`, partitioned by the local date of the
//! approval's start), under the root's lease.
//!
//! Invariants:
//! - Incremental: a run reads the journals and inbox objects modified since the last run's
//!   cursor (less [`RELIST_MARGIN`], for objects that became visible late), oldest first, about
//!   [`DEFAULT_CHUNK`] events at a time, so its memory is bounded by the chunk and its
//!   partitions (and 16 bytes for each event read from a journal), not by the history. The
//!   cursor moves only when every chunk is written, and never past the time the journals were
//!   listed: a journal written after that is listed by the next run.
//! - Every landed event is read: the journals' events, then the inbox objects, listed after
//!   them, whose event no journal read in the run holds (landed by a receiver that kept no
//!   journal or was killed between its two writes, journaled before the relisting margin, or
//!   landed since the journals were listed); an inbox object whose event a journal held is not
//!   read. Of several copies of one event (a delivery repeated, or an object and its journal
//!   line), the first read makes its row and joins its approval (journals oldest first, so
//!   normally the first delivery's); the rest change nothing. An event dated by its receipt
//!   (no time of its own, or unreadable) is the exception, since a redelivery on another day
//!   would make a second row: it is taken from its inbox object (the first delivery's), else,
//!   if the inbox lacks it, from its earliest journal line.
//! - Idempotent: an `approval_events` partition holds each event id once, sorted by id; a
//!   compaction adds the events its partition lacks and rewrites it whole (an atomic put), and
//!   leaves a partition that lacks nothing untouched. The approvals' tables are rebuilt per
//!   partition from the events kept beside them (see [`crate::state`]). Rerunning it, or
//!   running it after one killed at any point, gives the same files as one uninterrupted run
//!   over the same inbox.
//! - One compactor at a time per root: it holds a lease of its own, [`COMPACT_LEASE_PATH`],
//!   and stops before writing if the lease was lost. It does not take the root's lease: a
//!   backfill or sync writes the pull tables, their rejects, the resync cursor and the users'
//!   zones, none of which a compaction writes (it reads the zones, replaced atomically), so
//!   neither waits for the other. Receivers take no lease at all.
//! - The approvals' tables are a function of every landed event and the pull's zone map: a
//!   partition is rebuilt when an event joins it or when one of its users' zones changed.
//! - An event whose body cannot be read keeps its row in `approval_events` (ids, type, receipt,
//!   `raw`), makes no state row, and is kept aside in `_rejects/events.ndjson` with its field and
//!   reason, and counted; nothing is guessed over.
//! - The inbox and the journals are read, never changed here.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use attendance_core::approval_event::{Applicant, ApprovalEvent, Unreadable};
use attendance_core::event_state::{StateCounts, ZoneSource};
use attendance_core::event_table::{
    APPROVAL_EVENTS, EventInput, approval_events_batch, approval_events_schema,
    approval_events_values,
};
use attendance_core::tz::{self, Zone};
use attendance_lake::inbox::{self, Journaled, LandedText, Listing, Transport};
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::{Store, StoreError};
use attendance_lake::writer::{self, ParquetWriter};
use attendance_lake::zones;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::errors::ParquetError;
use serde::{Deserialize, Serialize};

use crate::state::{COMPACTED_DIR, Kept, StateBook, check_lease, encode_for};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// Deliveries compacted: the journals' lines and the inbox objects read (those modified
    /// since the last run, less the relisting margin); an event delivered twice counts twice,
    /// except one dated by its receipt, which counts once.
    pub events: usize,
    /// Journals read.
    pub journals: usize,
    /// Inbox objects read: those whose event no journal read in the run held.
    pub inbox_objects: usize,
    /// Rows added to `approval_events` (events no partition held yet).
    pub new_rows: usize,
    /// `approval_events` partitions rewritten, by date, each once.
    pub partitions: Vec<NaiveDate>,
    /// Events read in this run whose body could not be read: id, field, reason (their rows
    /// are kept in `approval_events`, and they are kept aside in the rejects).
    pub unreadable: Vec<(String, Unreadable)>,
    /// What the approvals' tables hold after the run (rows, reverted, default zone, pending
    /// reverts), and of the rows rebuilt in it, those that needed the DST rule.
    pub state: StateCounts,
    /// Approvals whose row was rebuilt in this run.
    pub rebuilt: usize,
    /// Partitions of the approvals' tables written (changed or new) and deleted, each once.
    pub state_written: Vec<String>,
    pub state_deleted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("{path}: not a Parquet file this compaction wrote; move it away and compact again")]
    Unreadable {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error(
        "{path}: {reason}; the compaction's own state is damaged: remove {COMPACTED_DIR} and the three approval tables to rebuild them from the inbox"
    )]
    State { path: String, reason: String },
    #[error("the compaction lease was lost: stopped before writing {path}")]
    LeaseLost { path: String },
}

/// The path of a date's partition file of `approval_events`.
pub fn partition_path(date: NaiveDate) -> String {
    table_partition_path(APPROVAL_EVENTS, date)
}

/// The path of a date's partition file of any event table.
pub fn table_partition_path(table: &str, date: NaiveDate) -> String {
    attendance_lake::partition::part_path(table, date, 0)
}

/// The compactors' lease, beside the inbox.
pub const COMPACT_LEASE_PATH: &str = "_events/compact-lease.json";

/// Where the events that cannot be read are kept aside, one JSON object a line, by event id.
pub const EVENT_REJECTS_PATH: &str = "_rejects/events.ndjson";

/// How far the compaction cursor is: the newest journal or inbox object listed, never past the
/// time the journals were listed.
pub const COMPACT_CURSOR_PATH: &str = "_events/compacted/cursor.json";

/// Objects modified this long before the cursor are read again (see [`inbox::RELIST_MARGIN`]).
pub const RELIST_MARGIN: Duration = inbox::RELIST_MARGIN;

/// Inbox objects read and compacted at a time.
pub const DEFAULT_CHUNK: usize = 50_000;

/// Inbox objects read before their JSON is reduced to what a chunk keeps.
const READ_BATCH: usize = 1_000;

/// Journals read at once (each up to [`crate::landing::JOURNAL_MAX_EVENTS`] events).
const JOURNALS_AT_ONCE: usize = inbox::READ_CONCURRENCY;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// The newest modification time among the objects compacted.
    through: DateTime<Utc>,
    run_id: String,
}

/// Compacts what landed in the inbox of `store` since the last run, as run `run_id`.
///
/// Local times are read in each applicant's zone from the pull's map, else in `default_zone`.
pub async fn compact(
    store: Arc<Store>,
    run_id: &str,
    lease_ttl: Duration,
    default_zone: Zone,
) -> Result<CompactSummary, CompactError> {
    compact_in_chunks(store, run_id, lease_ttl, default_zone, DEFAULT_CHUNK).await
}

/// [`compact`], reading `chunk` inbox objects at a time.
pub async fn compact_in_chunks(
    store: Arc<Store>,
    run_id: &str,
    lease_ttl: Duration,
    default_zone: Zone,
    chunk: usize,
) -> Result<CompactSummary, CompactError> {
    Lease::run_under(
        &store,
        COMPACT_LEASE_PATH,
        run_id,
        lease_ttl,
        async |lease| compact_leased(&store, lease, run_id, default_zone, chunk.max(1)).await,
    )
    .await?
}

async fn compact_leased(
    store: &Store,
    lease: &Lease,
    run_id: &str,
    default_zone: Zone,
    chunk: usize,
) -> Result<CompactSummary, CompactError> {
    let mut summary = CompactSummary::default();
    let map = zones::load(store).await?;
    let zone_of = |applicant: &Applicant| -> Option<Zone> {
        let name = map.zone_of(applicant.user_id.as_deref(), applicant.open_id.as_deref())?;
        // The map holds names the pull resolved; one that no longer resolves is not guessed at.
        tz::zone(Some(name)).ok()
    };
    let zone_now = |applicant: &Applicant| match zone_of(applicant) {
        Some(zone) => (zone, ZoneSource::User),
        None => (default_zone, ZoneSource::Default),
    };
    let cursor: Option<Cursor> = match store.get(COMPACT_CURSOR_PATH).await? {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes).map_err(|e| CompactError::State {
                path: store.describe(COMPACT_CURSOR_PATH),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    let since = cursor
        .as_ref()
        .map(|c| c.through - chrono::Duration::from_std(RELIST_MARGIN).expect("ten minutes"));
    // Anything modified after the journals are listed can be in a journal this run does not
    // read: the cursor goes no further than this, so that the next run lists that journal.
    let listed_at = Utc::now();
    let journals = Listing::journals_since(store, since).await?;
    // The events the journals hold, to leave their inbox objects unread (the listing of the
    // inbox then holds only what no journal held).
    let mut journaled = Journaled::default();

    let mut book = StateBook::load(store).await?;
    book.touch_zone_changes(store, &zone_now).await?;
    let mut rejects = Rejects::load(store).await?;
    let writer = ParquetWriter::new(
        APPROVAL_EVENTS,
        approval_events_schema(),
        approval_events_values,
        None,
    );
    let chunk_state = Chunk {
        store,
        lease,
        writer: &writer,
        zone_of: &zone_of,
        default_zone,
    };
    // The journals, oldest first, their events taken a chunk at a time.
    let mut prepared: Vec<Prepared> = Vec::new();
    // Copies dated by their receipt, which differs between deliveries of one event.
    let mut by_receipt: Vec<Prepared> = Vec::new();
    for paths in journals.chunks(JOURNALS_AT_ONCE) {
        let landed = inbox::read_journals::<LandedText>(store, &paths).await?;
        summary.journals += paths.len();
        for event in landed {
            let p = Prepared::of(event);
            journaled.add(&p.id);
            if p.dated_by_receipt() {
                by_receipt.push(p);
                continue;
            }
            prepared.push(p);
            if prepared.len() >= chunk {
                let full = std::mem::take(&mut prepared);
                chunk_state
                    .compact(full, &mut book, &mut rejects, &mut summary)
                    .await?;
            }
        }
    }
    // An event dated by its receipt takes the first delivery's, which its inbox object holds (a
    // redelivery's journal line on another day would make a second row); an event the inbox
    // lacks (its receiver killed between its two writes) takes its earliest journal line's.
    by_receipt.sort_by(|a, b| (&a.id, a.received_at).cmp(&(&b.id, b.received_at)));
    by_receipt.dedup_by(|later, first| later.id == first.id);
    while !by_receipt.is_empty() {
        let part: Vec<Prepared> = by_receipt
            .drain(..by_receipt.len().min(READ_BATCH))
            .collect();
        let paths: Vec<String> = part.iter().map(|p| inbox::path_of(&p.id)).collect();
        let mut objects: BTreeMap<String, LandedText> =
            inbox::read_paths::<LandedText>(store, &paths)
                .await?
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect();
        summary.inbox_objects += objects.len();
        for copy in part {
            prepared.push(match objects.remove(&copy.id) {
                Some(object) => Prepared::of(object),
                None => copy,
            });
        }
    }
    if !prepared.is_empty() {
        chunk_state
            .compact(prepared, &mut book, &mut rejects, &mut summary)
            .await?;
    }
    // Then what of the inbox no journal held (written by a receiver that kept no journal or was
    // killed before its journal was, journaled before the relisting margin, or landed since the
    // journals were listed), one object an event.
    let listing = journaled.unjournaled_since(store, since).await?;
    let through = [listing.newest(), journals.newest()]
        .into_iter()
        .flatten()
        .map(|newest| newest.min(listed_at))
        .chain(cursor.as_ref().map(|c| c.through))
        .max();
    for part in listing.chunks(chunk) {
        // Read in small batches, each object's JSON dropped once read: a chunk holds each
        // event's text and its reading, not its parsed JSON tree.
        let mut prepared: Vec<Prepared> = Vec::with_capacity(part.len());
        for paths in part.chunks(READ_BATCH) {
            let landed = inbox::read_paths::<LandedText>(store, paths).await?;
            summary.inbox_objects += landed.len();
            prepared.extend(landed.into_iter().map(Prepared::of));
        }
        chunk_state
            .compact(prepared, &mut book, &mut rejects, &mut summary)
            .await?;
    }
    // Zone changes alone, when nothing new landed.
    book.flush(store, lease, &zone_of, default_zone, &mut summary)
        .await?;
    book.save(store, lease).await?;
    rejects.save(store, lease).await?;
    book.totals(&mut summary);
    // Chunks can write a partition more than once: each is named once.
    summary.partitions.sort_unstable();
    summary.partitions.dedup();
    for written in [&mut summary.state_written, &mut summary.state_deleted] {
        written.sort_unstable();
        written.dedup();
    }
    if let Some(through) = through
        && cursor.as_ref().is_none_or(|c| c.through != through)
    {
        let bytes = serde_json::to_vec_pretty(&Cursor {
            through,
            run_id: run_id.to_owned(),
        })
        .expect("a cursor serialises");
        check_lease(store, lease, COMPACT_CURSOR_PATH)?;
        store.put(COMPACT_CURSOR_PATH, bytes).await?;
    }
    Ok(summary)
}

/// What compacting a chunk of events needs besides the chunk.
struct Chunk<'a> {
    store: &'a Store,
    lease: &'a Lease,
    writer: &'a ParquetWriter,
    zone_of: &'a (dyn Fn(&Applicant) -> Option<Zone> + Sync),
    default_zone: Zone,
}

impl Chunk<'_> {
    /// Adds a chunk's events to `approval_events`, routes them to their approvals' partitions
    /// (or the rejects) and brings those partitions up to date.
    async fn compact(
        &self,
        prepared: Vec<Prepared>,
        book: &mut StateBook,
        rejects: &mut Rejects,
        summary: &mut CompactSummary,
    ) -> Result<(), CompactError> {
        let store = self.store;
        summary.events += prepared.len();
        merge_approval_events(store, self.lease, self.writer, &prepared, summary).await?;
        for p in prepared {
            match p.read {
                Ok(event) => {
                    let kept = Kept {
                        instance_code: event.common.instance_code.clone().unwrap_or_default(),
                        event_id: p.id,
                        received_at: p.received_at,
                        raw: p.raw,
                        event: Some(Arc::clone(&event)),
                    };
                    book.route(store, &event, kept).await?;
                }
                Err(why) => {
                    rejects.add(
                        &p.id,
                        p.event_type.as_deref(),
                        &p.received_at_text,
                        &p.raw,
                        &why,
                    );
                    summary.unreadable.push((p.id, why));
                }
            }
        }
        book.flush(store, self.lease, self.zone_of, self.default_zone, summary)
            .await
    }
}

/// One landed event read: what its rows and its routing need, its JSON tree dropped.
struct Prepared {
    id: String,
    event_type: Option<String>,
    transport: Transport,
    /// The receipt time as landed, for the rejects.
    received_at_text: String,
    received_at: DateTime<Utc>,
    /// The event's JSON as landed (compact).
    raw: String,
    /// Shared with the kept events, and moved about as a pointer, not as the whole reading.
    read: Result<Arc<ApprovalEvent>, Unreadable>,
}

impl Prepared {
    /// Whether its `approval_events` partition is the date of its receipt (it has no time of
    /// its own, or could not be read).
    fn dated_by_receipt(&self) -> bool {
        self.read
            .as_ref()
            .ok()
            .and_then(|e| e.common.event_time)
            .is_none()
    }

    fn of(landed: LandedText) -> Prepared {
        let received_at = DateTime::parse_from_rfc3339(&landed.received_at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Unreadable {
                field: "received_at".into(),
                reason: format!("{:?} is not an RFC 3339 time: {e}", landed.received_at),
            });
        let raw = String::from(Box::<str>::from(landed.body));
        let read = received_at
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|_| ApprovalEvent::read_text(&raw))
            .map(Arc::new);
        Prepared {
            raw,
            // A receipt time that cannot be read (never written so by a receiver) keeps the
            // event's row at the epoch and sends it to the rejects, never to the approvals.
            received_at: *received_at.as_ref().unwrap_or(&DateTime::UNIX_EPOCH),
            read,
            id: landed.id,
            event_type: landed.event_type,
            transport: landed.transport,
            received_at_text: landed.received_at,
        }
    }
}

/// Adds to each `approval_events` partition the events it lacks.
async fn merge_approval_events(
    store: &Store,
    lease: &Lease,
    writer: &ParquetWriter,
    prepared: &[Prepared],
    summary: &mut CompactSummary,
) -> Result<(), CompactError> {
    let inputs: Vec<EventInput<'_>> = prepared
        .iter()
        .map(|p| EventInput {
            event_id: &p.id,
            received_at: p.received_at,
            transport: p.transport.as_str(),
            raw: &p.raw,
            read: p.read.as_deref().ok(),
            event_type: p.event_type.as_deref(),
        })
        .collect();
    let mut by_date: BTreeMap<NaiveDate, Vec<&EventInput<'_>>> = BTreeMap::new();
    for input in &inputs {
        by_date.entry(input.date()).or_default().push(input);
    }
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
        let mut held: HashSet<String> = existing
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| ids.value(i).to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        // The relisting margin can bring the same event twice into one chunk's view: once.
        let missing: Vec<EventInput<'_>> = events
            .into_iter()
            .filter(|e| held.insert(e.event_id.to_owned()))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        let merged = merge(existing, approval_events_batch(&missing));
        let bytes = encode_for(store, &path, writer, &merged)?;
        check_lease(store, lease, &path)?;
        store.put(&path, bytes).await?;
        summary.new_rows += missing.len();
        summary.partitions.push(date);
    }
    Ok(())
}

/// One line of `_rejects/events.ndjson`.
#[derive(Serialize)]
struct EventReject<'a> {
    event_id: &'a str,
    event_type: Option<&'a str>,
    received_at: &'a str,
    field: &'a str,
    reason: &'a str,
    raw: &'a serde_json::value::RawValue,
}

/// The rejects file, by event id, as read and as added to.
struct Rejects {
    lines: BTreeMap<String, String>,
    changed: bool,
}

impl Rejects {
    async fn load(store: &Store) -> Result<Rejects, CompactError> {
        let mut lines = BTreeMap::new();
        if let Some(bytes) = store.get(EVENT_REJECTS_PATH).await? {
            #[derive(Deserialize)]
            struct Id {
                event_id: String,
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                let id: Id = serde_json::from_str(line).map_err(|e| CompactError::State {
                    path: store.describe(EVENT_REJECTS_PATH),
                    reason: e.to_string(),
                })?;
                lines.insert(id.event_id, line.to_owned());
            }
        }
        Ok(Rejects {
            lines,
            changed: false,
        })
    }

    fn add(
        &mut self,
        event_id: &str,
        event_type: Option<&str>,
        received_at: &str,
        raw: &str,
        why: &Unreadable,
    ) {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(raw).expect("an event's compact JSON is JSON");
        let line = serde_json::to_string(&EventReject {
            event_id,
            event_type,
            received_at,
            field: &why.field,
            reason: &why.reason,
            raw,
        })
        .expect("a reject serialises");
        if self.lines.get(event_id) != Some(&line) {
            self.lines.insert(event_id.to_owned(), line);
            self.changed = true;
        }
    }

    async fn save(&self, store: &Store, lease: &Lease) -> Result<(), CompactError> {
        if !self.changed {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for line in self.lines.values() {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        check_lease(store, lease, EVENT_REJECTS_PATH)?;
        Ok(store.put(EVENT_REJECTS_PATH, bytes).await?)
    }
}

/// The rows of a partition and new rows, together and sorted by `event_id`. `new` is sorted
/// already, as [`approval_events_batch`] builds it.
fn merge(existing: Vec<RecordBatch>, new: RecordBatch) -> RecordBatch {
    debug_assert!({
        let ids = new.column(0).as_string::<i32>();
        (1..new.num_rows()).all(|i| ids.value(i - 1) <= ids.value(i))
    });
    let schema = approval_events_schema();
    let mut batches: Vec<RecordBatch> = existing
        .into_iter()
        .map(|b| {
            RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec())
                .expect("a partition file has the table's columns")
        })
        .collect();
    if batches.is_empty() {
        // Sorted already.
        return new;
    }
    batches.push(new);
    let all = arrow_select::concat::concat_batches(&schema, &batches)
        .expect("batches of one schema concatenate");
    let ids = all.column(0).as_string::<i32>();
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by(|a, b| ids.value(*a as usize).cmp(ids.value(*b as usize)));
    let indices = arrow_array::UInt32Array::from(order);
    arrow_select::take::take_record_batch(&all, &indices).expect("indices are in bounds")
}
