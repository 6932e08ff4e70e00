//! The compaction's index of approvals: for each approval (table and `instance_code`), the date
//! of the partition holding its row and whether it is reverted, so that an event (a revert
//! names only its instance) finds its approval's partition.
//!
//! Invariants:
//! - The index is [`SHARDS`] Parquet files (`_events/compacted/index/<shard>.parquet`, by a
//!   stable hash of the code), each sorted by table (in [`EventTable`]'s order, not by name)
//!   and code, and holding an approval once. A run
//!   loads the shards its events name, and writes back only those it changed.
//! - A loaded shard stays in its columns as read (about 40 bytes an approval), and a run's
//!   changes sit beside them in a map, folded into the columns (unsaved) past `FOLD_AT` or an
//!   eighth of the rows: holding every shard of an index of millions of approvals costs tens of
//!   megabytes, not the hundreds a map of owned entries would.
//! - The layout before this one (4,096 NDJSON files under `_events/compacted/approvals/`,
//!   hashed the same way, so that old file `s` belongs to shard `s mod 256`) is still read: a
//!   shard with no file of its own is read from its sixteen old files, which are removed once
//!   it is saved. A run killed in between finds the new file, ignores the old ones and removes
//!   them. One listing a run tells which shards have old files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{BooleanBuilder, Date32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Date32Type;
use arrow_array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use attendance_core::event_state::EventTable;
use attendance_core::table::Values;
use attendance_lake::lease::Lease;
use attendance_lake::store::Store;
use attendance_lake::writer::{self, ParquetWriter};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::compact::CompactError;
use crate::state::{ApprovalKey, check_lease, encode_for, table_named};

/// Index files: few enough that a from-scratch run writes a few hundred, many enough that a
/// run of a few events reads a small part of a large index.
pub const SHARDS: u16 = 256;

const DIR: &str = "_events/compacted/index";

/// Changes a shard holds in a map before they are folded into its columns (or an eighth of its
/// rows, if more): the map stays small beside the columns, and a row is copied by a fold at
/// most about eight times per change.
const FOLD_AT: usize = 512;

/// The layout before: 4,096 NDJSON files, hashed the same way.
const LEGACY_DIR: &str = "_events/compacted/approvals";
const LEGACY_SHARDS: u16 = 4096;

/// Where an approval's row is, and whether it is reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexed {
    pub date: NaiveDate,
    pub reverted: bool,
}

/// The index, as far as a run has loaded and changed it.
#[derive(Default)]
pub struct Index {
    shards: BTreeMap<u16, Shard>,
    dirty: BTreeSet<u16>,
    /// The shards with files of the layout before, listed once a run (on first use); their
    /// files go once the shard's own file holds their entries.
    old_files: Option<BTreeSet<u16>>,
}

/// One shard: its columns as read (sorted by table, code) and the run's changes beside them.
struct Shard {
    tables: Vec<EventTable>,
    codes: StringArray,
    dates: Date32Array,
    reverted: BooleanArray,
    changes: BTreeMap<ApprovalKey, Indexed>,
    /// Its own file exists (it was read from it, or saved).
    on_file: bool,
}

fn hash(code: &str) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
    code.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn shard_of(code: &str) -> u16 {
    (hash(code) % u64::from(SHARDS)) as u16
}

fn shard_path(shard: u16) -> String {
    format!("{DIR}/{shard:02x}.parquet")
}

fn legacy_paths(shard: u16) -> impl Iterator<Item = String> {
    (0..LEGACY_SHARDS / SHARDS)
        .map(move |i| format!("{LEGACY_DIR}/{:03x}.ndjson", shard + i * SHARDS))
}

fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("instance_code", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            Field::new("reverted", DataType::Boolean, false),
        ]))
    }))
}

fn shard_writer() -> &'static ParquetWriter {
    static WRITER: OnceLock<ParquetWriter> = OnceLock::new();
    WRITER.get_or_init(|| {
        ParquetWriter::new(
            "compacted_index",
            schema(),
            |column| match column {
                "instance_code" => Values::Unique,
                _ => Values::Repeated,
            },
            None,
        )
    })
}

fn date_of(days: i32) -> NaiveDate {
    Date32Type::to_naive_date_opt(days).expect("a shard's dates are checked when it is read")
}

fn days_of(date: NaiveDate) -> i32 {
    Date32Type::from_naive_date(date)
}

impl Shard {
    fn from_batch(batch: &RecordBatch) -> Result<Shard, String> {
        if batch.num_columns() != 4 || batch.columns().iter().any(|c| c.null_count() > 0) {
            return Err("not an index shard (columns or nulls)".into());
        }
        let names = batch.column(0).as_string_opt::<i32>();
        let codes = batch.column(1).as_string_opt::<i32>();
        let dates = batch.column(2).as_primitive_opt::<Date32Type>();
        let reverted = batch.column(3).as_boolean_opt();
        let (Some(names), Some(codes), Some(dates), Some(reverted)) =
            (names, codes, dates, reverted)
        else {
            return Err("not an index shard (column types)".into());
        };
        let tables = (0..names.len())
            .map(|i| {
                table_named(names.value(i))
                    .ok_or_else(|| format!("{:?} is not a table of approvals", names.value(i)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(bad) = dates
            .values()
            .iter()
            .find(|d| Date32Type::to_naive_date_opt(**d).is_none())
        {
            return Err(format!("{bad} is not a date"));
        }
        for i in 1..tables.len() {
            if (tables[i - 1], codes.value(i - 1)) >= (tables[i], codes.value(i)) {
                return Err(format!("rows out of order at {:?}", codes.value(i)));
            }
        }
        Ok(Shard {
            tables,
            codes: codes.clone(),
            dates: dates.clone(),
            reverted: reverted.clone(),
            changes: BTreeMap::new(),
            on_file: false,
        })
    }

    /// Moves the changes into the columns, unsaved: a change held in the map costs about 100
    /// bytes, in the columns about 30, and a backlog changes every approval it names.
    fn fold(&mut self) {
        let on_file = self.on_file;
        *self = Shard::from_batch(&self.batch()).expect("a shard's own rows are in order");
        self.on_file = on_file;
    }

    fn empty() -> Shard {
        Shard {
            tables: Vec::new(),
            codes: StringArray::from(Vec::<&str>::new()),
            dates: Date32Array::from(Vec::<i32>::new()),
            reverted: BooleanArray::from(Vec::<bool>::new()),
            changes: BTreeMap::new(),
            on_file: false,
        }
    }

    /// The row of `key` among the columns as read.
    fn find(&self, (table, code): &ApprovalKey) -> Option<usize> {
        let (mut low, mut high) = (0, self.tables.len());
        while low < high {
            let mid = (low + high) / 2;
            match (self.tables[mid], self.codes.value(mid)).cmp(&(*table, code.as_str())) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn get(&self, key: &ApprovalKey) -> Option<Indexed> {
        if let Some(entry) = self.changes.get(key) {
            return Some(*entry);
        }
        self.find(key).map(|i| Indexed {
            date: date_of(self.dates.value(i)),
            reverted: self.reverted.value(i),
        })
    }

    /// The shard's columns as read and its changes, merged in order.
    fn batch(&self) -> RecordBatch {
        let n = self.tables.len() + self.changes.len();
        let mut tables = StringBuilder::with_capacity(n, n * 14);
        let mut codes = StringBuilder::with_capacity(n, n * 24);
        let mut dates = Date32Builder::with_capacity(n);
        let mut reverted = BooleanBuilder::with_capacity(n);
        let mut push = |table: EventTable, code: &str, entry: Indexed| {
            tables.append_value(table.name());
            codes.append_value(code);
            dates.append_value(days_of(entry.date));
            reverted.append_value(entry.reverted);
        };
        let mut changes = self.changes.iter().peekable();
        for i in 0..self.tables.len() {
            let (table, code) = (self.tables[i], self.codes.value(i));
            while let Some(((t, c), entry)) =
                changes.next_if(|((t, c), _)| (*t, c.as_str()) < (table, code))
            {
                push(*t, c, *entry);
            }
            if changes
                .peek()
                .is_some_and(|((t, c), _)| (*t, c.as_str()) == (table, code))
            {
                continue; // changed: written from the changes
            }
            push(
                table,
                code,
                Indexed {
                    date: date_of(self.dates.value(i)),
                    reverted: self.reverted.value(i),
                },
            );
        }
        for ((t, c), entry) in changes {
            push(*t, c, *entry);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(tables.finish()),
            Arc::new(codes.finish()),
            Arc::new(dates.finish()),
            Arc::new(reverted.finish()),
        ];
        RecordBatch::try_new(schema(), columns).expect("columns in schema order")
    }
}

/// One line of a file of the layout before.
#[derive(Deserialize)]
struct LegacyLine {
    table: String,
    instance_code: String,
    date: NaiveDate,
    reverted: bool,
}

impl Index {
    async fn shard(&mut self, store: &Store, shard: u16) -> Result<&mut Shard, CompactError> {
        if self.shards.contains_key(&shard) {
            return Ok(self.shards.get_mut(&shard).expect("just checked"));
        }
        let old_files = match &self.old_files {
            Some(listed) => listed,
            None => self.old_files.insert(list_legacy(store).await?),
        };
        let legacy = old_files.contains(&shard);
        let loaded = match read_shard(store, shard).await? {
            // Old files beside a shard's own file are left from a run killed after saving it:
            // its file holds their entries.
            Some(loaded) => loaded,
            None if legacy => read_legacy(store, shard).await?,
            None => Shard::empty(),
        };
        Ok(self.shards.entry(shard).or_insert(loaded))
    }

    /// Where `key`'s row is, if the index knows it.
    pub async fn entry(
        &mut self,
        store: &Store,
        key: &ApprovalKey,
    ) -> Result<Option<Indexed>, CompactError> {
        Ok(self.shard(store, shard_of(&key.1)).await?.get(key))
    }

    /// Records where an approval's row is (loading its shard if no event of the run did).
    pub async fn set(
        &mut self,
        store: &Store,
        key: &ApprovalKey,
        entry: Indexed,
    ) -> Result<(), CompactError> {
        let number = shard_of(&key.1);
        let shard = self.shard(store, number).await?;
        if shard.get(key) == Some(entry) {
            return Ok(());
        }
        shard.changes.insert(key.clone(), entry);
        if shard.changes.len() >= FOLD_AT.max(shard.tables.len() / 8) {
            shard.fold();
        }
        self.dirty.insert(number);
        Ok(())
    }

    /// Writes the shards changed since the last save, then removes the files of the layout
    /// before whose entries a shard's own file now holds.
    pub async fn save(&mut self, store: &Store, lease: &Lease) -> Result<(), CompactError> {
        for number in std::mem::take(&mut self.dirty) {
            let path = shard_path(number);
            let shard = self
                .shards
                .get_mut(&number)
                .expect("a changed shard is loaded");
            let batch = shard.batch();
            let bytes = encode_for(store, &path, shard_writer(), &batch)?;
            check_lease(store, lease, &path)?;
            store.put(&path, bytes).await?;
            *shard = Shard::from_batch(&batch).expect("a shard's own rows are in order");
            shard.on_file = true;
        }
        let Some(old_files) = &mut self.old_files else {
            return Ok(()); // no shard loaded, none listed
        };
        for (number, shard) in &self.shards {
            if shard.on_file && old_files.remove(number) {
                for old in legacy_paths(*number) {
                    check_lease(store, lease, &old)?;
                    store.delete(&old).await?;
                }
            }
        }
        Ok(())
    }
}

/// The shards with files of the layout before (one listing; none on a root that never had it).
async fn list_legacy(store: &Store) -> Result<BTreeSet<u16>, CompactError> {
    let mut shards = BTreeSet::new();
    for path in store.list_files(LEGACY_DIR).await? {
        let number = path
            .rsplit('/')
            .next()
            .and_then(|name| name.strip_suffix(".ndjson"))
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            .filter(|old| *old < LEGACY_SHARDS);
        // Anything else there is not the index's: left alone.
        if let Some(old) = number {
            shards.insert(old % SHARDS);
        }
    }
    Ok(shards)
}

async fn read_shard(store: &Store, shard: u16) -> Result<Option<Shard>, CompactError> {
    let path = shard_path(shard);
    let Some(bytes) = store.get(&path).await? else {
        return Ok(None);
    };
    let (batches, _) = writer::decode(bytes).map_err(|source| CompactError::Unreadable {
        path: store.describe(&path),
        source,
    })?;
    let damaged = |reason: String| CompactError::State {
        path: store.describe(&path),
        reason,
    };
    let shard_schema = schema();
    let expected: Vec<&DataType> = shard_schema
        .fields()
        .iter()
        .map(|f| f.data_type())
        .collect();
    for b in &batches {
        let types: Vec<&DataType> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.data_type())
            .collect();
        if types != expected {
            return Err(damaged(format!("not an index shard (columns {types:?})")));
        }
    }
    let batch = arrow_select::concat::concat_batches(&schema(), &batches)
        .map_err(|e| damaged(e.to_string()))?;
    let mut shard = columns_of(store, &path, batch)?;
    shard.on_file = true;
    Ok(Some(shard))
}

/// A shard from its file's rows, checked to be in order and to name tables of approvals.
fn columns_of(store: &Store, path: &str, batch: RecordBatch) -> Result<Shard, CompactError> {
    Shard::from_batch(&batch).map_err(|reason| CompactError::State {
        path: store.describe(path),
        reason,
    })
}

/// A shard read from its files of the layout before (none: an empty shard).
async fn read_legacy(store: &Store, shard: u16) -> Result<Shard, CompactError> {
    let mut loaded = Shard::empty();
    for path in legacy_paths(shard) {
        let Some(bytes) = store.get(&path).await? else {
            continue;
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let damaged = |reason: String| CompactError::State {
                path: store.describe(&path),
                reason,
            };
            let line: LegacyLine =
                serde_json::from_slice(line).map_err(|e| damaged(e.to_string()))?;
            let table = table_named(&line.table)
                .ok_or_else(|| damaged(format!("{:?} is not a table of approvals", line.table)))?;
            loaded.changes.insert(
                (table, line.instance_code),
                Indexed {
                    date: line.date,
                    reverted: line.reverted,
                },
            );
        }
    }
    // Into columns at once: an old shard read and not changed is not held as a map.
    loaded.fold();
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, d).unwrap()
    }

    fn key(table: EventTable, code: &str) -> ApprovalKey {
        (table, code.to_owned())
    }

    /// Codes of one shard, in no particular order.
    fn codes_in(shard: u16, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("code-{i}"))
            .filter(|c| shard_of(c) == shard)
            .take(n)
            .collect()
    }

    #[tokio::test]
    async fn the_layout_before_is_read_rewritten_and_removed_and_changes_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().to_path_buf()));
        let codes = codes_in(7, 6);
        // Three approvals in the old files of shard 7 (old shards 7, 263, 519, ...).
        let line = |table: &str, code: &str, d: u32, reverted: bool| {
            format!(
                "{{\"table\":\"{table}\",\"instance_code\":\"{code}\",\"date\":\"{}\",\"reverted\":{reverted}}}\n",
                day(d)
            )
        };
        let mut by_old: BTreeMap<u64, String> = BTreeMap::new();
        for (i, code) in codes[..3].iter().enumerate() {
            let old = hash(code) % u64::from(LEGACY_SHARDS);
            assert_eq!(old % u64::from(SHARDS), 7);
            by_old.entry(old).or_default().push_str(&line(
                "leave_events",
                code,
                i as u32 + 1,
                i == 1,
            ));
        }
        for (old, text) in &by_old {
            store
                .put(
                    &format!("{LEGACY_DIR}/{old:03x}.ndjson"),
                    text.clone().into_bytes(),
                )
                .await
                .unwrap();
        }
        let leave = EventTable::ALL[1];
        assert_eq!(leave.name(), "leave_events");
        let mut index = Index::default();
        for (i, code) in codes[..3].iter().enumerate() {
            let got = index.entry(&store, &key(leave, code)).await.unwrap();
            assert_eq!(
                got,
                Some(Indexed {
                    date: day(i as u32 + 1),
                    reverted: i == 1
                })
            );
        }
        assert_eq!(
            index
                .entry(&store, &key(EventTable::ALL[0], &codes[0]))
                .await
                .unwrap(),
            None
        );
        // Changes: one moved, three added around the old ones, in two tables.
        let lease = Lease::acquire(Arc::clone(&store), "t", Duration::from_secs(60))
            .await
            .unwrap();
        let moved = Indexed {
            date: day(20),
            reverted: true,
        };
        index
            .set(&store, &key(leave, &codes[0]), moved)
            .await
            .unwrap();
        for (i, code) in codes[3..].iter().enumerate() {
            let entry = Indexed {
                date: day(10 + i as u32),
                reverted: false,
            };
            index
                .set(&store, &key(EventTable::ALL[i % 3], code), entry)
                .await
                .unwrap();
        }
        index.save(&store, &lease).await.unwrap();
        for old in by_old.keys() {
            assert!(
                !dir.path()
                    .join(format!("{LEGACY_DIR}/{old:03x}.ndjson"))
                    .exists()
            );
        }
        // The new file, read by a fresh index: every entry, sorted, the change applied.
        let mut fresh = Index::default();
        let shard = fresh.shard(&store, 7).await.unwrap();
        assert_eq!(shard.tables.len(), 6);
        assert!(shard.changes.is_empty());
        assert_eq!(
            fresh.entry(&store, &key(leave, &codes[0])).await.unwrap(),
            Some(moved)
        );
        assert_eq!(
            fresh.entry(&store, &key(leave, &codes[2])).await.unwrap(),
            Some(Indexed {
                date: day(3),
                reverted: false
            })
        );
        for (i, code) in codes[3..].iter().enumerate() {
            let got = fresh
                .entry(&store, &key(EventTable::ALL[i % 3], code))
                .await
                .unwrap();
            assert_eq!(got.map(|e| e.date), Some(day(10 + i as u32)));
        }
        // Saving changes again merges them among the rows as read; an unchanged set writes
        // nothing.
        let before = std::fs::read(dir.path().join(shard_path(7))).unwrap();
        fresh
            .set(
                &store,
                &key(leave, &codes[2]),
                Indexed {
                    date: day(3),
                    reverted: false,
                },
            )
            .await
            .unwrap();
        assert!(
            fresh.dirty.is_empty(),
            "setting what is there changes nothing"
        );
        fresh
            .set(
                &store,
                &key(leave, &codes[2]),
                Indexed {
                    date: day(4),
                    reverted: false,
                },
            )
            .await
            .unwrap();
        fresh.save(&store, &lease).await.unwrap();
        let after = std::fs::read(dir.path().join(shard_path(7))).unwrap();
        assert_ne!(before, after);
        let mut third = Index::default();
        assert_eq!(third.shard(&store, 7).await.unwrap().tables.len(), 6);
        assert_eq!(
            third
                .entry(&store, &key(leave, &codes[2]))
                .await
                .unwrap()
                .map(|e| e.date),
            Some(day(4))
        );
        lease.release().await.unwrap();
    }

    #[tokio::test]
    async fn changes_past_the_fold_move_into_the_columns_and_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().to_path_buf()));
        let codes = codes_in(200, FOLD_AT + 900);
        let entry = |i: usize| Indexed {
            date: day(1 + (i % 28) as u32),
            reverted: i.is_multiple_of(5),
        };
        let mut index = Index::default();
        for (i, code) in codes.iter().enumerate() {
            index
                .set(&store, &key(EventTable::ALL[i % 3], code), entry(i))
                .await
                .unwrap();
        }
        let shard = &index.shards[&200];
        assert!(shard.tables.len() >= FOLD_AT, "folded");
        assert!(shard.changes.len() < FOLD_AT);
        assert_eq!(shard.tables.len() + shard.changes.len(), codes.len());
        for (i, code) in codes.iter().enumerate() {
            let got = index
                .entry(&store, &key(EventTable::ALL[i % 3], code))
                .await
                .unwrap();
            assert_eq!(got, Some(entry(i)), "{code}");
        }
        let lease = Lease::acquire(Arc::clone(&store), "t", Duration::from_secs(60))
            .await
            .unwrap();
        index.save(&store, &lease).await.unwrap();
        let mut fresh = Index::default();
        for (i, code) in codes.iter().enumerate() {
            let got = fresh
                .entry(&store, &key(EventTable::ALL[i % 3], code))
                .await
                .unwrap();
            assert_eq!(got, Some(entry(i)), "{code}");
        }
        assert_eq!(fresh.shards[&200].tables.len(), FOLD_AT + 900);
        lease.release().await.unwrap();
    }

    #[tokio::test]
    async fn old_files_beside_a_saved_shard_lose_and_go_and_an_unchanged_old_shard_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().to_path_buf()));
        let lease = Lease::acquire(Arc::clone(&store), "t", Duration::from_secs(60))
            .await
            .unwrap();
        let leave = EventTable::ALL[1];
        let (a, b) = (codes_in(9, 1).remove(0), codes_in(10, 1).remove(0));
        let old_line = |code: &str, d: u32| {
            let old = hash(code) % u64::from(LEGACY_SHARDS);
            let text = format!(
                "{{\"table\":\"leave_events\",\"instance_code\":\"{code}\",\"date\":\"{}\",\"reverted\":false}}\n",
                day(d)
            );
            (format!("{LEGACY_DIR}/{old:03x}.ndjson"), text.into_bytes())
        };
        // Shard 9 saved in the new layout (date 5), then its old file put back with another
        // date, as a run killed between the save and the removal leaves it; shard 10 only in
        // the old layout.
        let mut first = Index::default();
        let new_entry = Indexed {
            date: day(5),
            reverted: false,
        };
        first.set(&store, &key(leave, &a), new_entry).await.unwrap();
        first.save(&store, &lease).await.unwrap();
        let (stale_path, stale) = old_line(&a, 1);
        store.put(&stale_path, stale).await.unwrap();
        let (only_old_path, only_old) = old_line(&b, 2);
        store.put(&only_old_path, only_old).await.unwrap();

        let mut index = Index::default();
        assert_eq!(
            index.entry(&store, &key(leave, &a)).await.unwrap(),
            Some(new_entry)
        );
        let b_entry = index.entry(&store, &key(leave, &b)).await.unwrap();
        assert_eq!(b_entry.map(|e| e.date), Some(day(2)));
        assert!(
            index.shards[&10].changes.is_empty(),
            "an old shard is read into columns"
        );
        index.save(&store, &lease).await.unwrap();
        assert!(
            !dir.path().join(&stale_path).exists(),
            "the stale old file went"
        );
        assert!(
            dir.path().join(&only_old_path).exists(),
            "an unchanged old shard stays"
        );
        assert!(!dir.path().join(shard_path(10)).exists());
        lease.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_shard_out_of_order_is_named_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        let mut shard = Shard::empty();
        for code in ["b", "a"] {
            shard.changes.insert(
                key(EventTable::ALL[0], code),
                Indexed {
                    date: day(1),
                    reverted: false,
                },
            );
        }
        let batch = shard.batch();
        let reversed = arrow_select::take::take_record_batch(
            &batch,
            &arrow_array::UInt32Array::from(vec![1, 0]),
        )
        .unwrap();
        let bytes = shard_writer().encode(&reversed).unwrap();
        store.put(&shard_path(3), bytes).await.unwrap();
        let err = Index::default().shard(&store, 3).await.err().unwrap();
        assert!(err.to_string().contains("out of order"), "{err}");
        assert!(err.to_string().contains("index/03.parquet"), "{err}");
        // A Parquet file of other columns there: named, not a panic.
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&other),
            vec![Arc::new(StringArray::from(vec!["a"])) as ArrayRef],
        )
        .unwrap();
        let foreign = ParquetWriter::new("x", other, |_| Values::Unique, None);
        store
            .put(&shard_path(4), foreign.encode(&batch).unwrap())
            .await
            .unwrap();
        let err = Index::default().shard(&store, 4).await.err().unwrap();
        assert!(err.to_string().contains("not an index shard"), "{err}");
        assert!(err.to_string().contains("index/04.parquet"), "{err}");
    }
}
