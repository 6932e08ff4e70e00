//! The compaction's side of `out_events`, `leave_events` and `overtime_events`: the events kept
//! beside each partition, the index of where each approval's row is, the reverts waiting for
//! their approval, and the rebuild of a partition from its kept events.
//!
//! Invariants:
//! - Every readable approval event lives in exactly one place under `_events/compacted/`: the
//!   kept-events file of its approval's partition (`<table>/date=D/events.parquet`, the same
//!   table and date as the row), or, for a revert whose approval has not landed,
//!   `pending-reverts.parquet`. Files hold each event id once, sorted by (instance, id).
//! - A public partition is always rebuilt whole from its kept events ([`event_state::build`]),
//!   so its bytes are a function of that event set and the zones; a partition whose event set
//!   did not change and whose users' zones did not change is not touched.
//! - Adding an event already kept changes nothing, so routing the same events again (a rerun
//!   after a crash, the relisting margin) converges on the same files.
//! - The index of approvals ([`crate::index`]) lets an event find its approval's partition.
//!   `users.ndjson` holds the zone each applicant's rows were read in (a change rebuilds the
//!   partitions holding their rows), `partitions.ndjson` each partition's counts. They are
//!   saved after the partitions, the index last: an event kept but not reflected in the index
//!   (a run killed in between) rebuilds its partition when it is routed again, so the index,
//!   the zones and the counts catch up.
//! - Each event is parsed once a run: a landed event carries its reading into the kept events
//!   ([`Kept::event`]); only events read back from a kept file are parsed again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use attendance_core::approval_event::{Applicant, ApprovalEvent};
use attendance_core::event_state::{self, EventTable, LandedApproval, ZoneSource};
use attendance_core::table::Values;
use attendance_core::tz::Zone;
use attendance_lake::lease::Lease;
use attendance_lake::store::Store;
use attendance_lake::writer::{self, ParquetWriter};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::compact::{CompactError, CompactSummary, table_partition_path};
use crate::index::{Index, Indexed};

/// Where the compaction keeps its own state, under the root.
pub const COMPACTED_DIR: &str = "_events/compacted";
const USERS_PATH: &str = "_events/compacted/users.ndjson";
const PARTITIONS_PATH: &str = "_events/compacted/partitions.ndjson";
const PENDING_PATH: &str = "_events/compacted/pending-reverts.parquet";

/// A partition of a state table.
pub type PartitionKey = (EventTable, NaiveDate);
/// An approval: its table and `instance_code`.
pub type ApprovalKey = (EventTable, String);

fn kept_path((table, date): PartitionKey) -> String {
    let dir = attendance_lake::partition::partition_dir(table.name(), date);
    format!("{COMPACTED_DIR}/{dir}/events.parquet")
}

/// One readable approval event, as kept.
#[derive(Debug, Clone)]
pub struct Kept {
    pub instance_code: String,
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    /// The event's JSON as landed.
    pub raw: String,
    /// The event as read from `raw`, when this run read it already (a landed event, not one
    /// read back from a kept file): each event is parsed once a run.
    pub event: Option<Arc<ApprovalEvent>>,
}

impl Kept {
    /// The event, read from `raw` unless this run read it already.
    fn read(&self) -> Result<Arc<ApprovalEvent>, String> {
        match &self.event {
            Some(event) => Ok(Arc::clone(event)),
            None => ApprovalEvent::read_text(&self.raw)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        }
    }
}

fn kept_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("instance_code", DataType::Utf8, false),
            Field::new("event_id", DataType::Utf8, false),
            Field::new(
                "received_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("raw", DataType::Utf8, false),
        ]))
    }))
}

/// The writer of the kept events, its properties built once.
fn kept_writer() -> &'static ParquetWriter {
    static WRITER: OnceLock<ParquetWriter> = OnceLock::new();
    WRITER.get_or_init(|| {
        ParquetWriter::new(
            "compacted_events",
            kept_schema(),
            |column| match column {
                "instance_code" => Values::Repeated,
                "raw" => Values::Document,
                _ => Values::Unique,
            },
            None,
        )
    })
}

/// The writer of an approval table, its properties built once.
fn table_writer(table: EventTable) -> &'static ParquetWriter {
    static WRITERS: OnceLock<[ParquetWriter; 3]> = OnceLock::new();
    &WRITERS.get_or_init(|| {
        EventTable::ALL
            .map(|t| ParquetWriter::new(t.name(), t.schema(), |column| t.values_of(column), None))
    })[table as usize]
}

async fn read_kept(store: &Store, path: &str) -> Result<Vec<Kept>, CompactError> {
    let Some(bytes) = store.get(path).await? else {
        return Ok(Vec::new());
    };
    let unreadable = |source| CompactError::Unreadable {
        path: store.describe(path),
        source,
    };
    let (batches, _) = writer::decode(bytes).map_err(unreadable)?;
    let mut kept = Vec::new();
    for b in batches {
        let codes = b.column(0).as_string::<i32>();
        let ids = b.column(1).as_string::<i32>();
        let received = b.column(2).as_primitive::<TimestampMicrosecondType>();
        let raw = b.column(3).as_string::<i32>();
        for i in 0..b.num_rows() {
            kept.push(Kept {
                instance_code: codes.value(i).to_owned(),
                event_id: ids.value(i).to_owned(),
                received_at: DateTime::from_timestamp_micros(received.value(i))
                    .unwrap_or(DateTime::UNIX_EPOCH),
                raw: raw.value(i).to_owned(),
                event: None,
            });
        }
    }
    Ok(kept)
}

/// Writes `kept` sorted to `path`, or deletes the file when there is nothing to keep.
async fn write_kept(
    store: &Store,
    lease: &Lease,
    path: &str,
    mut kept: Vec<Kept>,
) -> Result<(), CompactError> {
    check_lease(store, lease, path)?;
    if kept.is_empty() {
        return Ok(store.delete(path).await?);
    }
    kept.sort_by(|a, b| (&a.instance_code, &a.event_id).cmp(&(&b.instance_code, &b.event_id)));
    let n = kept.len();
    let mut codes = StringBuilder::with_capacity(n, n * 20);
    let mut ids = StringBuilder::with_capacity(n, n * 36);
    let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut raw = StringBuilder::with_capacity(n, kept.iter().map(|k| k.raw.len()).sum());
    for k in &kept {
        codes.append_value(&k.instance_code);
        ids.append_value(&k.event_id);
        received.append_value(k.received_at.timestamp_micros());
        raw.append_value(&k.raw);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(codes.finish()),
        Arc::new(ids.finish()),
        Arc::new(received.finish()),
        Arc::new(raw.finish()),
    ];
    let batch = RecordBatch::try_new(kept_schema(), columns).expect("columns in schema order");
    let bytes = encode_for(store, path, kept_writer(), &batch)?;
    Ok(store.put(path, bytes).await?)
}

/// `batch` encoded by `writer` for `path` (named if the encoding fails).
pub(crate) fn encode_for(
    store: &Store,
    path: &str,
    writer: &ParquetWriter,
    batch: &RecordBatch,
) -> Result<Vec<u8>, CompactError> {
    writer
        .encode(batch)
        .map_err(|source| CompactError::Unreadable {
            path: store.describe(path),
            source,
        })
}

pub(crate) fn check_lease(store: &Store, lease: &Lease, path: &str) -> Result<(), CompactError> {
    if lease.is_lost() {
        return Err(CompactError::LeaseLost {
            path: store.describe(path),
        });
    }
    Ok(())
}

pub(crate) fn table_named(name: &str) -> Option<EventTable> {
    EventTable::ALL.into_iter().find(|t| t.name() == name)
}

/// An applicant as the rows name them.
type ApplicantKey = (Option<String>, Option<String>);

/// The zone an applicant's rows were read in: all of them, since a change rebuilds them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UserLine {
    user_id: Option<String>,
    open_id: Option<String>,
    time_zone: String,
    /// `user` or `default`.
    time_zone_source: String,
}

/// What one partition of an approval table holds, for the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionLine {
    table: &'static str,
    date: NaiveDate,
    rows: usize,
    reverted: usize,
    default_zone: usize,
}

#[derive(Deserialize)]
struct PartitionLineIn {
    table: String,
    date: NaiveDate,
    rows: usize,
    reverted: usize,
    default_zone: usize,
}

async fn read_lines<T: serde::de::DeserializeOwned>(
    store: &Store,
    path: &str,
) -> Result<Vec<T>, CompactError> {
    let Some(bytes) = store.get(path).await? else {
        return Ok(Vec::new());
    };
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| CompactError::State {
                path: store.describe(path),
                reason: e.to_string(),
            })
        })
        .collect()
}

async fn write_lines<T: Serialize>(
    store: &Store,
    lease: &Lease,
    path: &str,
    lines: impl Iterator<Item = T>,
) -> Result<(), CompactError> {
    let mut text = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut text, &line).expect("a line serialises");
        text.push(b'\n');
    }
    check_lease(store, lease, path)?;
    Ok(store.put(path, text).await?)
}

/// Everything the compaction knows of the approval tables between runs, and what a run changes.
pub struct StateBook {
    index: Index,
    /// Each applicant with rows: the zone and source their rows were read in.
    users: BTreeMap<ApplicantKey, (String, ZoneSource)>,
    users_changed: bool,
    /// Each partition's counts.
    partitions: BTreeMap<PartitionKey, PartitionLine>,
    partitions_changed: bool,
    pending: BTreeMap<ApprovalKey, Vec<Kept>>,
    pending_changed: bool,
    /// Partitions to bring up to date: events to add to each.
    work: BTreeMap<PartitionKey, Vec<Kept>>,
    /// Partitions to rebuild even if no event is added (their users' zones changed).
    touched: BTreeSet<PartitionKey>,
    /// Approvals routed to a partition in this run but not yet in the index.
    routed: BTreeMap<ApprovalKey, NaiveDate>,
    /// Partitions an event was routed to whose index entry does not reflect it yet (a run
    /// killed after keeping the event but before saving the index): rebuilt even if the event
    /// was kept already, so that the index, counts and zones catch up.
    stale: BTreeSet<PartitionKey>,
}

impl StateBook {
    pub async fn load(store: &Store) -> Result<StateBook, CompactError> {
        let users = read_lines::<UserLine>(store, USERS_PATH)
            .await?
            .into_iter()
            .map(|u| {
                let source = if u.time_zone_source == "user" {
                    ZoneSource::User
                } else {
                    ZoneSource::Default
                };
                ((u.user_id, u.open_id), (u.time_zone, source))
            })
            .collect();
        let partitions = read_lines::<PartitionLineIn>(store, PARTITIONS_PATH)
            .await?
            .into_iter()
            .filter_map(|p| {
                let table = table_named(&p.table)?;
                Some((
                    (table, p.date),
                    PartitionLine {
                        table: table.name(),
                        date: p.date,
                        rows: p.rows,
                        reverted: p.reverted,
                        default_zone: p.default_zone,
                    },
                ))
            })
            .collect();
        let mut pending: BTreeMap<ApprovalKey, Vec<Kept>> = BTreeMap::new();
        for mut kept in read_kept(store, PENDING_PATH).await? {
            // The table is in the event itself.
            let damaged = |reason: String| CompactError::State {
                path: store.describe(PENDING_PATH),
                reason: format!("event {}: {reason}", kept.event_id),
            };
            let event = kept.read().map_err(damaged)?;
            let (table, _, _) = event_state::instance_of(&event)
                .ok_or_else(|| damaged("not an approval event".into()))?;
            kept.event = Some(Arc::clone(&event));
            pending
                .entry((table, kept.instance_code.clone()))
                .or_default()
                .push(kept);
        }
        Ok(StateBook {
            index: Index::default(),
            users,
            users_changed: false,
            partitions,
            partitions_changed: false,
            pending,
            pending_changed: false,
            work: BTreeMap::new(),
            touched: BTreeSet::new(),
            routed: BTreeMap::new(),
            stale: BTreeSet::new(),
        })
    }

    /// Marks for rebuilding the partitions holding rows of applicants whose zone is not the one
    /// their rows were read in (the pull learnt it, or it changed). Rare: only then are the
    /// tables' partitions read, for their applicant columns.
    pub async fn touch_zone_changes(
        &mut self,
        store: &Store,
        zone_now: &(dyn Fn(&Applicant) -> (Zone, ZoneSource) + Sync),
    ) -> Result<(), CompactError> {
        let changed: HashSet<&ApplicantKey> = self
            .users
            .iter()
            .filter(|((user_id, open_id), (zone, source))| {
                let (now, now_source) = zone_now(&Applicant {
                    user_id: user_id.clone(),
                    open_id: open_id.clone(),
                });
                now.name != zone || now_source != *source
            })
            .map(|(key, _)| key)
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        for key in self.partitions.keys() {
            let path = table_partition_path(key.0.name(), key.1);
            let Some(bytes) = store.get(&path).await? else {
                continue;
            };
            let (batches, _) =
                writer::decode(bytes).map_err(|source| CompactError::Unreadable {
                    path: store.describe(&path),
                    source,
                })?;
            let holds = batches.iter().any(|b| {
                let user = b.column(4).as_string::<i32>();
                let open = b.column(5).as_string::<i32>();
                let text = |a: &arrow_array::StringArray, i: usize| {
                    arrow_array::Array::is_valid(a, i).then(|| a.value(i).to_owned())
                };
                (0..b.num_rows()).any(|i| changed.contains(&(text(user, i), text(open, i))))
            });
            if holds {
                self.touched.insert(*key);
            }
        }
        Ok(())
    }

    /// Sends one readable approval event to where its approval is kept.
    pub async fn route(
        &mut self,
        store: &Store,
        event: &ApprovalEvent,
        kept: Kept,
    ) -> Result<(), CompactError> {
        let Some((table, code, revert)) = event_state::instance_of(event) else {
            return Ok(());
        };
        let key = (table, code.to_owned());
        let indexed = self.index.entry(store, &key).await?;
        let date = match &indexed {
            Some(entry) => Some(entry.date),
            None => self.routed.get(&key).copied(),
        };
        let date = match (date, revert) {
            (Some(date), _) => date,
            (None, false) => {
                let landed = [LandedApproval {
                    event_id: &kept.event_id,
                    received_at: kept.received_at,
                    event,
                }];
                let Some(Some(date)) = event_state::placements(&landed).into_values().next() else {
                    return Ok(());
                };
                self.routed.insert(key.clone(), date);
                date
            }
            (None, true) => {
                let waiting = self.pending.entry(key).or_default();
                if !waiting.iter().any(|k| k.event_id == kept.event_id) {
                    waiting.push(kept);
                    self.pending_changed = true;
                }
                return Ok(());
            }
        };
        // Its reverts that came first join it (again, after a run killed before saving them).
        if let Some(reverts) = self.pending.remove(&key) {
            self.pending_changed = true;
            self.work.entry((table, date)).or_default().extend(reverts);
            self.stale.insert((table, date));
        }
        let reflected = indexed.is_some_and(|entry| !revert || entry.reverted);
        if !reflected {
            self.stale.insert((table, date));
        }
        self.work.entry((table, date)).or_default().push(kept);
        Ok(())
    }
    /// Brings every partition with work up to date: kept events, then the public partition.
    pub async fn flush(
        &mut self,
        store: &Store,
        lease: &Lease,
        zone_of: &(dyn Fn(&Applicant) -> Option<Zone> + Sync),
        default_zone: Zone,
        summary: &mut CompactSummary,
    ) -> Result<(), CompactError> {
        let touched = std::mem::take(&mut self.touched);
        let mut queue: BTreeSet<PartitionKey> = self.work.keys().copied().collect();
        queue.extend(touched.iter().copied());
        while let Some(key) = queue.pop_first() {
            let adds = self.work.remove(&key).unwrap_or_default();
            let path = kept_path(key);
            let mut kept = read_kept(store, &path).await?;
            let mut ids: HashSet<String> = kept.iter().map(|k| k.event_id.clone()).collect();
            let mut changed = false;
            for k in adds {
                if ids.insert(k.event_id.clone()) {
                    kept.push(k);
                    changed = true;
                }
            }
            let stale = self.stale.remove(&key);
            if !changed && !touched.contains(&key) && !stale {
                continue;
            }
            let events: Vec<Arc<ApprovalEvent>> = kept
                .iter()
                .map(|k| {
                    k.read().map_err(|reason| CompactError::State {
                        path: store.describe(&path),
                        reason: format!("event {}: {reason}", k.event_id),
                    })
                })
                .collect::<Result<_, _>>()?;
            let (moving, built) = {
                let landed: Vec<LandedApproval<'_>> = kept
                    .iter()
                    .zip(&events)
                    .map(|(k, event)| LandedApproval {
                        event_id: &k.event_id,
                        received_at: k.received_at,
                        event: event.as_ref(),
                    })
                    .collect();
                // An approval whose newest event starts on another date moves there; one with
                // only reverts left (never expected) waits with the pending ones.
                let mut moving: BTreeMap<String, Option<NaiveDate>> = BTreeMap::new();
                for ((table, code), date) in event_state::placements(&landed) {
                    if table == key.0 && date != Some(key.1) {
                        moving.insert(code.to_owned(), date);
                    }
                }
                let staying: Vec<LandedApproval<'_>> = landed
                    .iter()
                    .filter(|l| {
                        event_state::instance_of(l.event)
                            .is_some_and(|(_, code, _)| !moving.contains_key(code))
                    })
                    .copied()
                    .collect();
                let built = event_state::build(&staying, zone_of, default_zone);
                (moving, built)
            };
            // Moved events are kept at their destination before they leave this partition's
            // file (a run killed in between finds them in both, and moves them again), and the
            // destination is rebuilt. An approval left with reverts only (never expected) keeps
            // them here, making no row.
            let mut moved: BTreeMap<NaiveDate, Vec<Kept>> = BTreeMap::new();
            let mut remaining = Vec::with_capacity(kept.len());
            for k in kept {
                match moving.get(k.instance_code.as_str()) {
                    Some(Some(date)) => moved.entry(*date).or_default().push(k),
                    _ => remaining.push(k),
                }
            }
            for (date, events) in moved {
                let destination = (key.0, date);
                let destination_path = kept_path(destination);
                let mut there = read_kept(store, &destination_path).await?;
                let mut there_ids: HashSet<String> =
                    there.iter().map(|k| k.event_id.clone()).collect();
                there.extend(
                    events
                        .into_iter()
                        .filter(|k| there_ids.insert(k.event_id.clone())),
                );
                write_kept(store, lease, &destination_path, there).await?;
                self.stale.insert(destination);
                queue.insert(destination);
            }
            // The public partition, then the kept events, then the index.
            let public = table_partition_path(key.0.name(), key.1);
            match built.partitions.get(&key) {
                Some(batch) => {
                    let bytes = encode_for(store, &public, table_writer(key.0), batch)?;
                    if store.get(&public).await?.as_deref() != Some(bytes.as_slice()) {
                        check_lease(store, lease, &public)?;
                        store.put(&public, bytes).await?;
                        summary.state_written.push(public);
                    }
                }
                None => {
                    if store.get(&public).await?.is_some() {
                        check_lease(store, lease, &public)?;
                        store.delete(&public).await?;
                        summary.state_deleted.push(public);
                    }
                }
            }
            write_kept(store, lease, &path, remaining).await?;
            summary.state.dst_adjusted += built.counts.dst_adjusted;
            summary.rebuilt += built.placed.len();
            let counts = PartitionLine {
                table: key.0.name(),
                date: key.1,
                rows: built.placed.len(),
                reverted: built.placed.iter().filter(|p| p.reverted).count(),
                default_zone: built
                    .placed
                    .iter()
                    .filter(|p| p.zone_source == ZoneSource::Default)
                    .count(),
            };
            let before = if counts.rows == 0 {
                self.partitions.remove(&key)
            } else {
                self.partitions.insert(key, counts)
            };
            self.partitions_changed |= before.as_ref() != (counts.rows > 0).then_some(&counts);
            for placed in built.placed {
                self.routed
                    .remove(&(placed.table, placed.instance_code.clone()));
                let entry = Indexed {
                    date: placed.date,
                    reverted: placed.reverted,
                };
                self.index
                    .set(store, &(placed.table, placed.instance_code.clone()), entry)
                    .await?;
                let zone = (placed.time_zone.to_owned(), placed.zone_source);
                let applicant = (placed.user_id, placed.open_id);
                if self.users.get(&applicant) != Some(&zone) {
                    self.users.insert(applicant, zone);
                    self.users_changed = true;
                }
            }
        }
        Ok(())
    }

    /// Writes the pending reverts, the index shards, the applicants' zones and the partitions'
    /// counts that changed.
    pub async fn save(&mut self, store: &Store, lease: &Lease) -> Result<(), CompactError> {
        if self.pending_changed {
            let kept: Vec<Kept> = self.pending.values().flatten().cloned().collect();
            write_kept(store, lease, PENDING_PATH, kept).await?;
            self.pending_changed = false;
        }
        if self.users_changed {
            let lines = self
                .users
                .iter()
                .map(|((user_id, open_id), (zone, source))| UserLine {
                    user_id: user_id.clone(),
                    open_id: open_id.clone(),
                    time_zone: zone.clone(),
                    time_zone_source: source.as_str().to_owned(),
                });
            write_lines(store, lease, USERS_PATH, lines).await?;
            self.users_changed = false;
        }
        if self.partitions_changed {
            write_lines(
                store,
                lease,
                PARTITIONS_PATH,
                self.partitions.values().copied(),
            )
            .await?;
            self.partitions_changed = false;
        }
        // The index last: an index entry that reflects an event vouches for everything above.
        self.index.save(store, lease).await?;
        Ok(())
    }

    /// Rows, reverted rows and rows read in the default zone of every partition; pending
    /// reverts.
    pub fn totals(&self, summary: &mut CompactSummary) {
        let state = &mut summary.state;
        state.rows.clear();
        for ((table, _), counts) in &self.partitions {
            *state.rows.entry(*table).or_default() += counts.rows;
            state.reverted += counts.reverted;
            state.default_zone += counts.default_zone;
        }
        state.pending_reverts = self.pending.values().map(Vec::len).sum();
    }
}
