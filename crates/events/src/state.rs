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
//! - The index (`approvals.ndjson`: table, code, date, applicant, zone used, reverted) is what
//!   lets a revert find its approval's partition and a zone change find the rows to rebuild; it
//!   is rewritten after the partitions, and a stale one only costs a rebuild.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use attendance_core::approval_event::{Applicant, ApprovalEvent};
use attendance_core::event_state::{self, EventTable, LandedApproval, Placed, ZoneSource};
use attendance_core::table::Values;
use attendance_core::tz::{self, Zone};
use attendance_lake::lease::Lease;
use attendance_lake::store::Store;
use attendance_lake::writer::{self, ParquetWriter};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::compact::{CompactError, CompactSummary, table_partition_path};

/// Where the compaction keeps its own state, under the root.
pub const COMPACTED_DIR: &str = "_events/compacted";
const INDEX_PATH: &str = "_events/compacted/approvals.ndjson";
const PENDING_PATH: &str = "_events/compacted/pending-reverts.parquet";

/// A partition of a state table.
pub type PartitionKey = (EventTable, NaiveDate);
/// An approval: its table and `instance_code`.
pub type ApprovalKey = (EventTable, String);

fn kept_path((table, date): PartitionKey) -> String {
    format!(
        "{COMPACTED_DIR}/{}/date={date}/events.parquet",
        table.name()
    )
}

/// One readable approval event, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub instance_code: String,
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    /// The event's JSON as landed.
    pub raw: String,
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

fn kept_writer() -> ParquetWriter {
    ParquetWriter::new(
        "compacted_events",
        kept_schema(),
        |column| match column {
            "instance_code" => Values::Repeated,
            _ => Values::Unique,
        },
        None,
    )
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
    let bytes = kept_writer()
        .encode(&batch)
        .map_err(|source| CompactError::Unreadable {
            path: store.describe(path),
            source,
        })?;
    Ok(store.put(path, bytes).await?)
}

pub(crate) fn check_lease(store: &Store, lease: &Lease, path: &str) -> Result<(), CompactError> {
    if lease.is_lost() {
        return Err(CompactError::LeaseLost {
            path: store.describe(path),
        });
    }
    Ok(())
}

/// Where an approval's row is and how it was read, as held in memory: a hundred-odd bytes an
/// approval (the zone a static name, the applicant's ids boxed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    date: NaiveDate,
    user_id: Option<Box<str>>,
    open_id: Option<Box<str>>,
    /// The IANA name the row was read in ("" when the name read back is not one any more,
    /// which makes the next run read it again).
    time_zone: &'static str,
    zone_source: ZoneSource,
    reverted: bool,
}

impl Entry {
    fn line(&self, (table, code): &ApprovalKey) -> Indexed {
        Indexed {
            table: table.name().to_owned(),
            instance_code: code.clone(),
            date: self.date,
            user_id: self.user_id.as_deref().map(str::to_owned),
            open_id: self.open_id.as_deref().map(str::to_owned),
            time_zone: self.time_zone.to_owned(),
            time_zone_source: self.zone_source.as_str().to_owned(),
            reverted: self.reverted,
        }
    }
}

/// One line of the index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Indexed {
    table: String,
    instance_code: String,
    date: NaiveDate,
    user_id: Option<String>,
    open_id: Option<String>,
    time_zone: String,
    /// `user` or `default`.
    time_zone_source: String,
    reverted: bool,
}

/// Everything the compaction knows of the state tables between runs, and what a run changes.
pub struct StateBook {
    index: BTreeMap<ApprovalKey, Entry>,
    index_changed: bool,
    pending: BTreeMap<ApprovalKey, Vec<Kept>>,
    pending_changed: bool,
    /// Partitions to bring up to date: events to add to each.
    work: BTreeMap<PartitionKey, Vec<Kept>>,
    /// Partitions to rebuild even if no event is added (their users' zones changed).
    touched: BTreeSet<PartitionKey>,
    /// Approvals routed to a partition in this run but not yet in the index.
    routed: BTreeMap<ApprovalKey, NaiveDate>,
}

impl StateBook {
    pub async fn load(store: &Store) -> Result<StateBook, CompactError> {
        let mut index = BTreeMap::new();
        if let Some(bytes) = store.get(INDEX_PATH).await? {
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let entry: Indexed =
                    serde_json::from_slice(line).map_err(|e| CompactError::State {
                        path: store.describe(INDEX_PATH),
                        reason: e.to_string(),
                    })?;
                let Some(table) = EventTable::ALL
                    .into_iter()
                    .find(|t| t.name() == entry.table)
                else {
                    continue;
                };
                let value = Entry {
                    date: entry.date,
                    user_id: entry.user_id.map(String::into_boxed_str),
                    open_id: entry.open_id.map(String::into_boxed_str),
                    time_zone: tz::zone(Some(&entry.time_zone)).map_or("", |z| z.name),
                    zone_source: if entry.time_zone_source == "user" {
                        ZoneSource::User
                    } else {
                        ZoneSource::Default
                    },
                    reverted: entry.reverted,
                };
                index.insert((table, entry.instance_code), value);
            }
        }
        let mut pending: BTreeMap<ApprovalKey, Vec<Kept>> = BTreeMap::new();
        for kept in read_kept(store, PENDING_PATH).await? {
            // The table is in the event itself.
            let table = parse(&kept)
                .ok()
                .and_then(|e| event_state::instance_of(&e).map(|(t, _, _)| t));
            if let Some(table) = table {
                pending
                    .entry((table, kept.instance_code.clone()))
                    .or_default()
                    .push(kept);
            }
        }
        Ok(StateBook {
            index,
            index_changed: false,
            pending,
            pending_changed: false,
            work: BTreeMap::new(),
            touched: BTreeSet::new(),
            routed: BTreeMap::new(),
        })
    }

    /// Marks for rebuilding the partitions of approvals whose applicant's zone is not the one
    /// their row was read in.
    pub fn touch_zone_changes(&mut self, zone_now: &dyn Fn(&Applicant) -> (Zone, ZoneSource)) {
        for ((table, _), entry) in &self.index {
            let applicant = Applicant {
                user_id: entry.user_id.as_deref().map(str::to_owned),
                open_id: entry.open_id.as_deref().map(str::to_owned),
            };
            let (zone, source) = zone_now(&applicant);
            if zone.name != entry.time_zone || source != entry.zone_source {
                self.touched.insert((*table, entry.date));
            }
        }
    }

    /// Sends one readable approval event to where its approval is kept.
    pub fn route(&mut self, event: &ApprovalEvent, kept: Kept) {
        let Some((table, code, revert)) = event_state::instance_of(event) else {
            return;
        };
        let key = (table, code.to_owned());
        let date = self
            .index
            .get(&key)
            .map(|e| e.date)
            .or_else(|| self.routed.get(&key).copied());
        let date = match (date, revert) {
            (Some(date), _) => date,
            (None, false) => {
                let landed = [LandedApproval {
                    event_id: &kept.event_id,
                    received_at: kept.received_at,
                    event,
                }];
                let Some(Some(date)) = event_state::placements(&landed).into_values().next() else {
                    return;
                };
                self.routed.insert(key.clone(), date);
                // Its reverts that came first join it.
                if let Some(reverts) = self.pending.remove(&key) {
                    self.pending_changed = true;
                    self.work.entry((table, date)).or_default().extend(reverts);
                }
                date
            }
            (None, true) => {
                let waiting = self.pending.entry(key).or_default();
                if !waiting.iter().any(|k| k.event_id == kept.event_id) {
                    waiting.push(kept);
                    self.pending_changed = true;
                }
                return;
            }
        };
        self.work.entry((table, date)).or_default().push(kept);
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
            let before: BTreeSet<String> = kept.iter().map(|k| k.instance_code.clone()).collect();
            let mut changed = false;
            for k in adds {
                if ids.insert(k.event_id.clone()) {
                    kept.push(k);
                    changed = true;
                }
            }
            if !changed && !touched.contains(&key) {
                continue;
            }
            let events: Vec<ApprovalEvent> = kept
                .iter()
                .map(|k| {
                    parse(k).map_err(|reason| CompactError::State {
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
                        event,
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
            let mut moved: Vec<(Kept, Option<NaiveDate>)> = Vec::new();
            let mut remaining = Vec::with_capacity(kept.len());
            for k in kept {
                match moving.get(k.instance_code.as_str()) {
                    Some(date) => moved.push((k, *date)),
                    None => remaining.push(k),
                }
            }
            for (k, date) in moved {
                match date {
                    Some(date) => {
                        self.work.entry((key.0, date)).or_default().push(k);
                        queue.insert((key.0, date));
                    }
                    None => {
                        self.pending
                            .entry((key.0, k.instance_code.clone()))
                            .or_default()
                            .push(k);
                        self.pending_changed = true;
                    }
                }
            }
            // The public partition, then the kept events, then the index.
            let public = table_partition_path(key.0.name(), key.1);
            match built.partitions.get(&key) {
                Some(batch) => {
                    let bytes = ParquetWriter::new(
                        key.0.name(),
                        key.0.schema(),
                        |column| key.0.values_of(column),
                        None,
                    )
                    .encode(batch)
                    .map_err(|source| CompactError::Unreadable {
                        path: store.describe(&public),
                        source,
                    })?;
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
            for code in before {
                if self.index.remove(&(key.0, code)).is_some() {
                    self.index_changed = true;
                }
            }
            summary.state.dst_adjusted += built.counts.dst_adjusted;
            summary.rebuilt += built.placed.len();
            for placed in built.placed {
                self.routed
                    .remove(&(placed.table, placed.instance_code.clone()));
                self.index
                    .insert((placed.table, placed.instance_code.clone()), entry(placed));
                self.index_changed = true;
            }
        }
        Ok(())
    }

    /// Writes the pending reverts and the index, when they changed.
    pub async fn save(&mut self, store: &Store, lease: &Lease) -> Result<(), CompactError> {
        if self.pending_changed {
            let kept: Vec<Kept> = self.pending.values().flatten().cloned().collect();
            write_kept(store, lease, PENDING_PATH, kept).await?;
            self.pending_changed = false;
        }
        if self.index_changed {
            let mut text = Vec::new();
            for (key, entry) in &self.index {
                serde_json::to_writer(&mut text, &entry.line(key))
                    .expect("an index line serialises");
                text.push(b'\n');
            }
            check_lease(store, lease, INDEX_PATH)?;
            store.put(INDEX_PATH, text).await?;
            self.index_changed = false;
        }
        Ok(())
    }

    /// Rows, reverted rows, rows in the default zone, by the index; pending reverts.
    pub fn totals(&self, summary: &mut CompactSummary) {
        let state = &mut summary.state;
        state.rows.clear();
        for ((table, _), entry) in &self.index {
            *state.rows.entry(*table).or_default() += 1;
            state.reverted += usize::from(entry.reverted);
            state.default_zone += usize::from(entry.zone_source == ZoneSource::Default);
        }
        state.pending_reverts = self.pending.values().map(Vec::len).sum();
    }
}

fn entry(placed: Placed) -> Entry {
    Entry {
        date: placed.date,
        user_id: placed.user_id.map(String::into_boxed_str),
        open_id: placed.open_id.map(String::into_boxed_str),
        time_zone: placed.time_zone,
        zone_source: placed.zone_source,
        reverted: placed.reverted,
    }
}

/// A kept event read again.
fn parse(kept: &Kept) -> Result<ApprovalEvent, String> {
    let body: serde_json::Value = serde_json::from_str(&kept.raw).map_err(|e| e.to_string())?;
    ApprovalEvent::read(&body).map_err(|e| e.to_string())
}
