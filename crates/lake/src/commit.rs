//! Commit: the replacement of a window's `(table, date)` partitions and rejects files in the
//! output root, by [`Sink::commit_window`].
//!
//! Invariants:
//! - Every file is put atomically ([`Store::put`]): a reader sees the old file or the new one,
//!   never half of one, on a local disk and on S3, GCS and Azure alike.
//! - Committing a window replaces, in every `(table, date)` of it and in its rejects, the rows of
//!   the run's [`Scope`] (the users whose data it fetched, for the statuses it asked), and keeps
//!   every other row (a run over fewer users or statuses, or a user the platform refused this
//!   time, loses nothing). An output root holds one kind of user id; another kind is refused.
//!   Parts left over from a larger earlier day are removed after the new ones are in place, and a
//!   date left without rows loses its files. So rerunning a window never duplicates rows, and
//!   approvals gone at the source disappear.
//! - [`Sink::add_rows`] (`rejects replay`) adds rows to one partition instead: every old row is
//!   kept but one equal to a row added in every column but `_run_id` and `_ingested_at`, and a
//!   row added twice is added once, so adding the same records again changes nothing.
//! - Reading old files, merging and encoding is CPU work done on a blocking thread, which hands
//!   each partition to the store as soon as it is encoded (a few in flight), so a commit holds a
//!   date's rows and a few files, never its window's output. A partition's stale parts are
//!   deleted only after all its new files are in place, so a commit that fails halfway leaves
//!   each partition replaced whole or untouched; nothing is put or deleted once the lease is in
//!   doubt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::ArrowError;
use attendance_core::flatten::Reject;
use attendance_core::plan::{EmployeeType, Window};
use attendance_core::table::{self, RunStamp, SCHEMA_VERSION, Table};
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use parquet::errors::ParquetError;

use crate::partition::{self, parse_part, part_path};
use crate::rejects::{self, REJECTS_DIR, REJECTS_FILE, RejectsChange, RejectsError};
use crate::scope::Scope;
use crate::spill::{FreshRows, SpillError};
use crate::store::{Store, StoreError};
use crate::writer::{self, MAX_ROWS_PER_FILE, TableWriter};

/// Store requests in flight at once during a commit.
const STORE_CONCURRENCY: usize = 8;

/// Why the tables of the output root could not be read or replaced.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error(transparent)]
    Rejects(#[from] RejectsError),
    #[error(
        "{path} has the columns of neither {table} schema v1 nor v{}: move it away or write to a new output root",
        SCHEMA_VERSION
    )]
    SchemaMismatch { path: String, table: &'static str },
    #[error(
        "{path} holds user ids of kind {found}, this run writes {expected}: one output root holds one --employee-type"
    )]
    EmployeeTypeMismatch {
        path: String,
        found: String,
        expected: EmployeeType,
    },
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error("stopped before writing: the lease on the output root may no longer be ours")]
    Fenced,
    #[error("cannot merge the {table} rows of {date}")]
    Merge {
        table: &'static str,
        date: NaiveDate,
        #[source]
        source: ArrowError,
    },
    #[error("cannot encode {table} for {date}")]
    Encode {
        table: &'static str,
        date: NaiveDate,
        #[source]
        source: ParquetError,
    },
}

/// A file put in place by a commit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrittenFile {
    /// Relative to the output root.
    pub path: String,
    pub table: Table,
    pub date: NaiveDate,
    pub rows: usize,
    pub bytes: u64,
}

/// What [`Sink::upgrade`] did.
#[derive(Debug, Default, serde::Serialize)]
pub struct UpgradeReport {
    /// The files of the partitions rewritten.
    pub files: Vec<WrittenFile>,
    /// Parts left over by a partition rewritten into fewer.
    pub removed: Vec<String>,
    /// Partitions already in the current schema, not touched.
    #[serde(rename = "current")]
    pub partitions_already_current: usize,
}

/// What committing one window did.
#[derive(Debug, Default)]
pub struct CommitReport {
    pub files: Vec<WrittenFile>,
    /// Files deleted because their date has fewer parts, or no rows, now (relative paths).
    pub removed: Vec<String>,
    /// Rejects written.
    pub rejects: u64,
    /// Fresh rows written, by table (rows kept from earlier runs not counted).
    pub fresh_rows: BTreeMap<Table, u64>,
}

/// The output root's tables, written with one employee type.
pub struct Sink {
    store: Arc<Store>,
    employee_type: EmployeeType,
    /// One writer a table, in [`Table::ALL`] order: their properties are built once.
    writers: Arc<[TableWriter; 4]>,
}

/// What a partition holds now: its part files and their bytes.
#[derive(Default)]
struct Existing {
    /// (part index, relative path, bytes)
    parts: Vec<(usize, String, Vec<u8>)>,
}

/// What a commit decided and did. Partitions are handed to the store task one by one as they
/// are encoded, so a commit holds a few files at a time, not its window's worth, and a commit
/// that fails halfway leaves every partition either replaced whole or untouched.
#[derive(Default)]
struct Planned {
    files: Vec<WrittenFile>,
    /// Stale table parts deleted (rejects files are not counted).
    deletes: Vec<String>,
    rejects: u64,
    fresh_rows: BTreeMap<Table, u64>,
    /// The partition being planned.
    pending: Replacement,
    /// Where finished partitions go: the commit's store task. Taken when planning ends, which
    /// ends the store task's stream.
    outbox: Option<tokio::sync::mpsc::Sender<Replacement>>,
}

/// One partition's new content: its files to put, then the files they make stale.
#[derive(Default)]
struct Replacement {
    puts: Vec<(String, Vec<u8>)>,
    deletes: Vec<String>,
}

impl Planned {
    fn put(&mut self, rel: String, bytes: Vec<u8>) {
        self.pending.puts.push((rel, bytes));
    }

    fn delete(&mut self, rel: String) {
        self.pending.deletes.push(rel);
    }

    /// Hands the partition planned so far to the store task.
    fn send(&mut self) -> Result<(), SinkError> {
        let done = std::mem::take(&mut self.pending);
        if done.puts.is_empty() && done.deletes.is_empty() {
            return Ok(());
        }
        // Closed only when a store call failed: that error is the one reported.
        self.outbox
            .as_ref()
            .expect("the outbox is open while a commit is planned")
            .blocking_send(done)
            .map_err(|_| SinkError::Fenced)
    }
}

/// Replaces one partition in the store: every new file first, then the stale ones, and
/// nothing once the lease is in doubt.
async fn replace(
    store: &Store,
    r: Replacement,
    still_ours: &(dyn Fn() -> bool + Send + Sync),
) -> Result<(), SinkError> {
    futures::stream::iter(r.puts)
        .map(|(rel, bytes)| async move {
            if !still_ours() {
                return Err(SinkError::Fenced);
            }
            store.put(&rel, bytes).await.map_err(SinkError::from)
        })
        .buffer_unordered(STORE_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await?;
    for rel in &r.deletes {
        if !still_ours() {
            return Err(SinkError::Fenced);
        }
        store.delete(rel).await?;
    }
    Ok(())
}

impl Sink {
    pub fn new(store: Arc<Store>, employee_type: EmployeeType) -> Sink {
        Sink {
            store,
            employee_type,
            writers: Arc::new(Table::ALL.map(|t| TableWriter::new(t, employee_type))),
        }
    }

    /// Refuses a root whose tables hold another kind of user id, before anything is fetched.
    /// One file tells: every file of a root is written with the root's one kind.
    pub async fn check_employee_type(&self) -> Result<(), SinkError> {
        for table in Table::ALL {
            let Some(rel) = self
                .store
                .list_files(table.name())
                .await?
                .into_iter()
                .find(|rel| parse_part(rel).is_some())
            else {
                continue;
            };
            let bytes = self.store.get(&rel).await?.unwrap_or_default();
            let found = writer::employee_type_in(bytes).map_err(|source| SinkError::Read {
                path: self.store.describe(&rel),
                source,
            })?;
            if let Some(found) = found {
                check_employee_type(&self.store, &rel, found, self.employee_type)?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Replaces, for every `(table, date)` of `window` and its rejects, the rows within `scope`
    /// with the rows in `tables` and `rejects`; rows outside the scope are kept as they are.
    pub async fn commit_window(
        &self,
        window: Window,
        fresh: FreshRows,
        rejects: Vec<Reject>,
        scope: Scope,
        stamp: Arc<RunStamp>,
        still_ours: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<CommitReport, SinkError> {
        // 1. What is there now, for the window's dates.
        let mut existing: BTreeMap<(Table, NaiveDate), Existing> = BTreeMap::new();
        let mut to_fetch = Vec::new();
        for table in Table::ALL {
            for rel in self.store.list_files(table.name()).await? {
                if let Some((date, index)) = parse_part(&rel)
                    && window.contains(date)
                {
                    to_fetch.push((table, date, index, rel));
                }
            }
        }
        let fetched: Vec<_> = futures::stream::iter(to_fetch)
            .map(|(table, date, index, rel)| {
                let store = Arc::clone(&self.store);
                async move {
                    let bytes = store.get(&rel).await?.unwrap_or_default();
                    Ok::<_, SinkError>((table, date, index, rel, bytes))
                }
            })
            .buffer_unordered(STORE_CONCURRENCY)
            .try_collect()
            .await?;
        for (table, date, index, rel, bytes) in fetched {
            existing
                .entry((table, date))
                .or_default()
                .parts
                .push((index, rel, bytes));
        }
        let mut old_rejects = BTreeMap::new();
        for rel in self.store.list_files(REJECTS_DIR).await? {
            if let Some(date) = partition::date_of(&rel)
                && window.contains(date)
                && rel.ends_with(REJECTS_FILE)
            {
                let text = self.store.get(&rel).await?.unwrap_or_default();
                old_rejects.insert(date, String::from_utf8_lossy(&text).into_owned());
            }
        }

        // 2. Merge and encode off the async workers, replacing each partition as it is done, only
        //    while the root is ours.
        let merger = Merger {
            store: Arc::clone(&self.store),
            writers: Arc::clone(&self.writers),
            employee_type: self.employee_type,
            window,
            scope,
            stamp,
            keep: Keep::OutsideScope,
        };
        self.run_plan(still_ours, move |outbox| {
            merger.plan(fresh, rejects, existing, old_rejects, outbox)
        })
        .await
    }

    /// Adds `rows` (batches of `table`, all dated `date`) to their partition, in place of any old
    /// row equal to one of them ([`Added`]); every other row is kept.
    pub async fn add_rows(
        &self,
        table: Table,
        date: NaiveDate,
        rows: Vec<RecordBatch>,
        stamp: Arc<RunStamp>,
        still_ours: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<CommitReport, SinkError> {
        let mut existing = Existing::default();
        for rel in self
            .store
            .list_files(&partition::partition_dir(table.name(), date))
            .await?
        {
            if let Some((d, index)) = parse_part(&rel)
                && d == date
            {
                let bytes = self.store.get(&rel).await?.unwrap_or_default();
                existing.parts.push((index, rel, bytes));
            }
        }
        let merge_err = |source| SinkError::Merge {
            table: table.name(),
            date,
            source,
        };
        let refs: Vec<&RecordBatch> = rows.iter().collect();
        let rows = table::sorted(&refs, table::every_row(&refs).collect()).map_err(merge_err)?;
        let added = Added::of(rows).map_err(merge_err)?;
        let rows = added.rows.clone();
        let keep = Keep::NotAmong(added);
        self.rewrite_partition((table, date), Some(rows), existing, keep, stamp, still_ours)
            .await
    }

    /// Replaces one partition (table, date) with the old rows `keep` keeps and the `fresh` ones.
    async fn rewrite_partition(
        &self,
        (table, date): (Table, NaiveDate),
        fresh: Option<RecordBatch>,
        existing: Existing,
        keep: Keep,
        stamp: Arc<RunStamp>,
        still_ours: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<CommitReport, SinkError> {
        let merger = Merger {
            store: Arc::clone(&self.store),
            writers: Arc::clone(&self.writers),
            employee_type: self.employee_type,
            window: Window {
                from: date,
                to: date,
            },
            scope: Scope {
                users: Default::default(),
                statuses: Default::default(),
            },
            stamp,
            keep,
        };
        self.run_plan(still_ours, move |outbox| {
            let mut planned = Planned {
                outbox: Some(outbox),
                ..Planned::default()
            };
            if let Some(fresh) = &fresh {
                *planned.fresh_rows.entry(table).or_default() += fresh.num_rows() as u64;
            }
            let writer = &merger.writers[table as usize];
            merger.merge_partition(writer, date, fresh, existing, &mut planned)?;
            planned.send()?;
            planned.outbox = None;
            Ok(planned)
        })
        .await
    }

    /// Rewrites in the current schema every partition of the four tables that holds a file of
    /// an older one (v1, read up by [`table::upgrade_v1`]), with the same rows; partitions
    /// already current are not touched. One partition at a time, each replaced whole.
    pub async fn upgrade(
        &self,
        stamp: Arc<RunStamp>,
        still_ours: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<UpgradeReport, SinkError> {
        let mut report = UpgradeReport::default();
        for table in Table::ALL {
            let mut by_date: BTreeMap<NaiveDate, Vec<(usize, String)>> = BTreeMap::new();
            for rel in self.store.list_files(table.name()).await? {
                if let Some((date, index)) = parse_part(&rel) {
                    by_date.entry(date).or_default().push((index, rel));
                }
            }
            for (date, parts) in by_date {
                let mut existing = Existing::default();
                let mut older = false;
                for (index, rel) in parts {
                    let bytes = self.store.get(&rel).await?.unwrap_or_default();
                    let schema =
                        writer::schema_in(bytes.clone()).map_err(|source| SinkError::Read {
                            path: self.store.describe(&rel),
                            source,
                        })?;
                    older |= schema.fields() != table.schema().fields();
                    existing.parts.push((index, rel, bytes));
                }
                if !older {
                    report.partitions_already_current += 1;
                    continue;
                }
                let stamp = Arc::clone(&stamp);
                let done = self
                    .rewrite_partition((table, date), None, existing, Keep::All, stamp, still_ours)
                    .await?;
                report.files.extend(done.files);
                report.removed.extend(done.removed);
            }
        }
        Ok(report)
    }

    /// Runs `plan` on a blocking thread while the partitions it hands over are put in place.
    async fn run_plan(
        &self,
        still_ours: &(dyn Fn() -> bool + Send + Sync),
        plan: impl FnOnce(tokio::sync::mpsc::Sender<Replacement>) -> Result<Planned, SinkError>
        + Send
        + 'static,
    ) -> Result<CommitReport, SinkError> {
        let (outbox, inbox) = tokio::sync::mpsc::channel(STORE_CONCURRENCY);
        let planner = tokio::task::spawn_blocking(move || plan(outbox));
        let store = &self.store;
        let replaced = futures::stream::unfold(inbox, |mut inbox| async move {
            inbox.recv().await.map(|r| (r, inbox))
        })
        .map(|r| replace(store, r, still_ours))
        .buffer_unordered(STORE_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) });
        let (planned, replaced) = tokio::join!(planner, replaced);
        replaced?;
        let Planned {
            files,
            deletes,
            rejects,
            fresh_rows,
            ..
        } = planned.expect("merging never panics")?;
        Ok(CommitReport {
            files,
            removed: deletes,
            rejects,
            fresh_rows,
        })
    }
}

/// What merging a window's partitions needs, moved to the blocking thread that does it.
struct Merger {
    store: Arc<Store>,
    writers: Arc<[TableWriter; 4]>,
    employee_type: EmployeeType,
    window: Window,
    scope: Scope,
    stamp: Arc<RunStamp>,
    keep: Keep,
}

/// Which old rows of a partition a merge keeps.
enum Keep {
    /// Every one ([`Sink::upgrade`]).
    All,
    /// Those outside the run's scope (a backfill's commit).
    OutsideScope,
    /// Those equal to none of the rows added ([`Sink::add_rows`]).
    NotAmong(Added),
}

impl Merger {
    /// Decides every write of a commit: pure but for decoding the bytes it is given.
    fn plan(
        &self,
        mut fresh: FreshRows,
        rejects: Vec<Reject>,
        mut existing: BTreeMap<(Table, NaiveDate), Existing>,
        mut old_rejects: BTreeMap<NaiveDate, String>,
        outbox: tokio::sync::mpsc::Sender<Replacement>,
    ) -> Result<Planned, SinkError> {
        let mut planned = Planned {
            outbox: Some(outbox),
            ..Planned::default()
        };
        let mut rejects_by_date: BTreeMap<NaiveDate, Vec<Reject>> = BTreeMap::new();
        for r in rejects {
            rejects_by_date
                .entry(rejects::date_for(&r, self.window))
                .or_default()
                .push(r);
        }
        for writer in self.writers.iter() {
            let table = writer.table();
            let mut rows = fresh.take_table(table);
            for date in self.window.dates() {
                let new = rows.date(date)?;
                if let Some(new) = &new {
                    *planned.fresh_rows.entry(table).or_default() += new.num_rows() as u64;
                }
                let old = existing.remove(&(table, date)).unwrap_or_default();
                self.merge_partition(writer, date, new, old, &mut planned)?;
            }
        }
        for date in self.window.dates() {
            let fresh = rejects_by_date.remove(&date).unwrap_or_default();
            let old = old_rejects.remove(&date);
            let change = rejects::merge(
                date,
                &fresh,
                old.as_deref(),
                &self.scope,
                &self.stamp.run_id,
            )?;
            planned.rejects += fresh.len() as u64;
            match change {
                RejectsChange::Nothing => {}
                RejectsChange::Put { path, bytes } => planned.put(path, bytes),
                RejectsChange::Delete { path } => planned.delete(path),
            }
            planned.send()?;
        }
        // Closing the outbox ends the store task's stream of puts.
        planned.outbox = None;
        Ok(planned)
    }

    /// The new content of one partition: the old rows `self.keep` keeps plus the fresh rows.
    fn merge_partition(
        &self,
        writer: &TableWriter,
        date: NaiveDate,
        fresh: Option<RecordBatch>,
        old: Existing,
        planned: &mut Planned,
    ) -> Result<(), SinkError> {
        let table = writer.table();
        let merge_err = |source| SinkError::Merge {
            table: table.name(),
            date,
            source,
        };
        if fresh.is_none() && old.parts.is_empty() {
            return Ok(());
        }
        let expected = table.schema();
        // The old rows kept, as (batch, row) of `batches`: copied once, with the
        // fresh ones, into the sorted partition.
        let mut batches = Vec::new();
        let mut kept = Vec::new();
        for (_, rel, bytes) in &old.parts {
            let (decoded, employee_type) =
                writer::decode(bytes.clone()).map_err(|source| SinkError::Read {
                    path: self.store.describe(rel),
                    source,
                })?;
            if let Some(found) = employee_type {
                check_employee_type(&self.store, rel, found, self.employee_type)?;
            }
            for batch in decoded {
                let batch = current_schema(table, batch, date, || self.store.describe(rel))?;
                let rows = match &self.keep {
                    Keep::All => Ok((0..batch.num_rows()).collect()),
                    Keep::OutsideScope => outside_scope(&batch, &self.scope),
                    Keep::NotAmong(added) => (0..batch.num_rows())
                        .filter_map(|row| match added.contains(&batch, row) {
                            Ok(found) => (!found).then_some(Ok(row)),
                            Err(e) => Some(Err(e)),
                        })
                        .collect(),
                }
                .map_err(merge_err)?;
                if !rows.is_empty() {
                    kept.extend(rows.into_iter().map(|r| (batches.len(), r)));
                    batches.push(batch);
                }
            }
        }
        let merged = match (kept.is_empty(), fresh) {
            (true, None) => RecordBatch::new_empty(expected),
            // The fresh rows alone are sorted already (see `TableRows::date`).
            (true, Some(fresh)) => fresh,
            (false, fresh) => {
                if let Some(fresh) = fresh {
                    kept.extend((0..fresh.num_rows()).map(|r| (batches.len(), r)));
                    batches.push(fresh);
                }
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                table::sorted(&refs, kept).map_err(merge_err)?
            }
        };

        let mut written = 0;
        let mut offset = 0;
        while offset < merged.num_rows() {
            let len = MAX_ROWS_PER_FILE.min(merged.num_rows() - offset);
            let bytes = writer
                .encode(&merged.slice(offset, len))
                .map_err(|source| SinkError::Encode {
                    table: table.name(),
                    date,
                    source,
                })?;
            let file = WrittenFile {
                path: part_path(table.name(), date, written),
                table,
                date,
                rows: len,
                bytes: bytes.len() as u64,
            };
            planned.put(file.path.clone(), bytes);
            planned.files.push(file);
            written += 1;
            offset += len;
        }
        for (index, rel, _) in old.parts {
            if index >= written {
                planned.delete(rel.clone());
                planned.deletes.push(rel);
            }
        }
        planned.send()
    }
}

/// Refuses a file written with another employee type than the root's.
fn check_employee_type(
    store: &Store,
    rel: &str,
    found: String,
    expected: EmployeeType,
) -> Result<(), SinkError> {
    if found == expected.as_str() {
        return Ok(());
    }
    Err(SinkError::EmployeeTypeMismatch {
        path: store.describe(rel),
        found,
        expected,
    })
}

/// The rows [`Sink::add_rows`] adds, without repeats, and which old rows they stand for: those
/// equal to one of them in every column but the run's own (`_run_id`, `_ingested_at`).
struct Added {
    rows: RecordBatch,
    /// Row indices of `rows` by user.
    by_user: HashMap<String, Vec<usize>>,
}

impl Added {
    /// `rows` (sorted) less the rows that repeat an earlier one.
    fn of(rows: RecordBatch) -> Result<Added, ArrowError> {
        let mut added = Added {
            by_user: HashMap::new(),
            rows: rows.clone(),
        };
        let mut unique = Vec::new();
        for row in 0..rows.num_rows() {
            if !added.contains(&rows, row)? {
                let user = table::column::<StringArray>(&rows, "user_id")?.value(row);
                added.by_user.entry(user.to_string()).or_default().push(row);
                unique.push(row);
            }
        }
        if unique.len() < rows.num_rows() {
            let indices =
                arrow_array::UInt32Array::from_iter_values(unique.iter().map(|&r| r as u32));
            added.rows = arrow_select::take::take_record_batch(&rows, &indices)?;
            added.by_user.clear();
            for row in 0..added.rows.num_rows() {
                let user = table::column::<StringArray>(&added.rows, "user_id")?.value(row);
                added.by_user.entry(user.to_string()).or_default().push(row);
            }
        }
        Ok(added)
    }

    /// Whether row `row` of `batch` (of the same table) equals one of the rows added.
    fn contains(&self, batch: &RecordBatch, row: usize) -> Result<bool, ArrowError> {
        let user = table::column::<StringArray>(batch, "user_id")?.value(row);
        let Some(candidates) = self.by_user.get(user) else {
            return Ok(false);
        };
        let schema = batch.schema();
        let compared: Vec<usize> = (0..batch.num_columns())
            .filter(|&c| !schema.field(c).name().starts_with('_'))
            .collect();
        Ok(candidates.iter().any(|&other| {
            compared.iter().all(|&c| {
                let ours = batch.column(c).slice(row, 1);
                let theirs = self.rows.column(c).slice(other, 1);
                ours.as_ref() == theirs.as_ref()
            })
        }))
    }
}

/// The rows of `batch` the run does not replace.
fn outside_scope(batch: &RecordBatch, scope: &Scope) -> Result<Vec<usize>, ArrowError> {
    let users = table::column::<StringArray>(batch, "user_id")?;
    let statuses = table::column::<Int32Array>(batch, "status")?;
    Ok((0..batch.num_rows())
        .filter(|&i| {
            let user = users.is_valid(i).then(|| users.value(i));
            !scope.covers(user, statuses.value(i))
        })
        .collect())
}

/// Every row of a table in the output root (all dates, in date order), for tests and tools.
pub async fn read_table(
    store: &Store,
    table: Table,
) -> Result<Vec<(NaiveDate, RecordBatch)>, SinkError> {
    let mut parts: Vec<(NaiveDate, usize, String)> = store
        .list_files(table.name())
        .await?
        .into_iter()
        .filter_map(|rel| parse_part(&rel).map(|(d, i)| (d, i, rel)))
        .collect();
    parts.sort();
    let mut out = Vec::new();
    for (date, _, rel) in parts {
        let bytes = store.get(&rel).await?.unwrap_or_default();
        let (batches, _) = writer::decode(bytes).map_err(|source| SinkError::Read {
            path: store.describe(&rel),
            source,
        })?;
        for batch in batches {
            out.push((
                date,
                current_schema(table, batch, date, || store.describe(&rel))?,
            ));
        }
    }
    Ok(out)
}

/// A batch of `table` decoded from one of its files, in the current schema: as it is, or read
/// up from schema v1 ([`table::upgrade_v1`]), so an output root written by an older version is
/// carried forward partition by partition as runs rewrite them.
fn current_schema(
    table: Table,
    batch: RecordBatch,
    date: NaiveDate,
    path: impl Fn() -> String,
) -> Result<RecordBatch, SinkError> {
    if batch.schema().fields() == table.schema().fields() {
        return Ok(batch);
    }
    match table::upgrade_v1(table, &batch, date) {
        Ok(Some(upgraded)) => Ok(upgraded),
        Ok(None) => Err(SinkError::SchemaMismatch {
            path: path(),
            table: table.name(),
        }),
        Err(source) => Err(SinkError::Merge {
            table: table.name(),
            date,
            source,
        }),
    }
}

/// [`read_table`] of a local root, without an async runtime.
pub fn read_local_table(
    root: &std::path::Path,
    table: Table,
) -> Result<Vec<(NaiveDate, RecordBatch)>, SinkError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    rt.block_on(read_table(&Store::Local(root.to_path_buf()), table))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use arrow_array::cast::AsArray;
    use attendance_core::answer::QueryData;
    use attendance_core::flatten;
    use attendance_core::plan::Status;

    use super::*;
    use crate::spill::SpillConfig;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    const WINDOW: Window = Window {
        from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 9, 2).unwrap(),
    };

    /// A window's fresh rows and rejects: an out a user and date of the window, with `status`,
    /// and one record of `u9` outside the batch (kept aside).
    fn fresh(
        users: &[&str],
        status: Status,
        tag: &str,
        dir: &std::path::Path,
    ) -> (FreshRows, Vec<Reject>) {
        let mut elements = Vec::new();
        for user in users.iter().chain(["u9"].iter()) {
            // u9's records are the same in every answer: the platform sends them again.
            let tag = if *user == "u9" { "x" } else { tag };
            for day in ["01", "02"] {
                elements.push(format!(
                    r#"{{"user_id":"{user}","date":"202609{day}","time_zone":"UTC","outs":[{{"approval_id":"{tag}-{user}-{day}"}}]}}"#
                ));
            }
        }
        let data =
            QueryData::recorded(&format!(r#"{{"user_approvals":[{}]}}"#, elements.join(",")));
        let batch: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let stamp = RunStamp {
            run_id: tag.into(),
            ingested_at_micros: 0,
        };
        let flat =
            flatten::flatten(&data, status, WINDOW, &batch, &stamp, &Default::default()).unwrap();
        let mut rows = FreshRows::new(SpillConfig {
            dir: dir.to_path_buf(),
            budget: usize::MAX,
        });
        for part in flat.rows {
            rows.add(part).unwrap();
        }
        (rows, flat.rejects)
    }

    /// Writes u1's outs of 2026-09-01 as schema v1 wrote them, the v2 rows less time_zone_iana
    /// and utc_offset_seconds (v1's time_zone was the IANA name read); returns the v2 rows.
    async fn put_v1_outs(store: &Store) -> RecordBatch {
        let answer = r#"{"user_approvals":[{"user_id":"u1","date":"20260901","time_zone":"America/New_York",
            "outs":[{"approval_id":"v1-a","start_time":"2026-09-01 09:00:00"},{"approval_id":"v1-b"}]}]}"#;
        let v2 = u1_outs(answer, "v1");
        let keep: Vec<usize> = (0..v2.num_columns())
            .filter(|&i| {
                let name = v2.schema().field(i).name().clone();
                name != "time_zone_iana" && name != "utc_offset_seconds"
            })
            .collect();
        let v1 = v2.project(&keep).unwrap();
        let v1_writer = writer::ParquetWriter::new(
            "outs",
            v1.schema(),
            |c| Table::Outs.values_of(c),
            Some(EmployeeType::EmployeeId),
        );
        let path = part_path("outs", d("2026-09-01"), 0);
        store
            .put(&path, v1_writer.encode(&v1).unwrap())
            .await
            .unwrap();
        v2
    }

    #[tokio::test]
    async fn upgrade_rewrites_the_v1_partitions_only_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().join("root")));
        let sink = Sink::new(Arc::clone(&store), EmployeeType::EmployeeId);
        // u2's rows of 2026-09-02 in v2; then u1's of 2026-09-01 put over as v1.
        commit(&sink, &["u2"], Status::APPROVED, "a", dir.path()).await;
        let v2 = put_v1_outs(&store).await;
        let current = part_path("outs", d("2026-09-02"), 0);
        let before = store.get(&current).await.unwrap().unwrap();
        let stamp = Arc::new(RunStamp {
            run_id: "upgrade".into(),
            ingested_at_micros: 2,
        });
        let report = sink.upgrade(Arc::clone(&stamp), &|| true).await.unwrap();
        let written: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(written, ["outs/date=2026-09-01/part-00000.parquet"]);
        assert_eq!(report.partitions_already_current, 1);
        let v1_path = part_path("outs", d("2026-09-01"), 0);
        let schema = writer::schema_in(store.get(&v1_path).await.unwrap().unwrap()).unwrap();
        assert_eq!(schema.fields(), Table::Outs.schema().fields());
        let rows = read_table(&store, Table::Outs).await.unwrap();
        assert_eq!(rows[0].1, v2, "the same rows, now v2 on disk");
        assert_eq!(
            store.get(&current).await.unwrap().unwrap(),
            before,
            "untouched"
        );
        // Nothing older is left: a second upgrade writes nothing.
        let again = sink.upgrade(stamp, &|| true).await.unwrap();
        assert!(again.files.is_empty() && again.partitions_already_current == 2);
    }

    /// The outs of `answer`, an answer to a query of u1 written by run `run_id`.
    fn u1_outs(answer: &str, run_id: &str) -> RecordBatch {
        let stamp = RunStamp {
            run_id: run_id.into(),
            ingested_at_micros: 1,
        };
        let users = ["u1".to_string()];
        let data = QueryData::recorded(answer);
        let flat = flatten::flatten(
            &data,
            Status::APPROVED,
            WINDOW,
            &users,
            &stamp,
            &Default::default(),
        );
        flat.unwrap().rows.remove(0).batch
    }

    async fn commit_unless_fenced(
        sink: &Sink,
        users: &[&str],
        status: Status,
        tag: &str,
        dir: &std::path::Path,
        still_ours: bool,
    ) -> Result<CommitReport, SinkError> {
        let (rows, rejects) = fresh(users, status, tag, dir);
        let scope = Scope {
            users: users.iter().map(|u| u.to_string()).collect(),
            statuses: [status].into(),
        };
        let stamp = Arc::new(RunStamp {
            run_id: tag.into(),
            ingested_at_micros: 0,
        });
        sink.commit_window(WINDOW, rows, rejects, scope, stamp, &move || still_ours)
            .await
    }

    async fn commit(
        sink: &Sink,
        users: &[&str],
        status: Status,
        tag: &str,
        dir: &std::path::Path,
    ) -> CommitReport {
        commit_unless_fenced(sink, users, status, tag, dir, true)
            .await
            .unwrap()
    }

    async fn approvals(store: &Store) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for (_, batch) in read_table(store, Table::Outs).await.unwrap() {
            let col = batch
                .column_by_name("approval_id")
                .unwrap()
                .as_string::<i32>();
            ids.extend(col.iter().flatten().map(str::to_string));
        }
        ids
    }

    #[tokio::test]
    async fn a_commit_replaces_the_rows_of_its_scope_and_keeps_every_other_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().join("root")));
        let sink = Sink::new(Arc::clone(&store), EmployeeType::EmployeeId);
        let first = commit(&sink, &["u1", "u2"], Status::APPROVED, "a", dir.path()).await;
        assert_eq!(first.fresh_rows.get(&Table::Outs), Some(&4));
        assert_eq!(first.rejects, 2, "u9 is outside the batch on both dates");
        assert_eq!(first.files.len(), 2);

        // u2 again with other approvals; u1's rows, and rows of another status, stay.
        commit(&sink, &["u2"], Status::APPROVED, "b", dir.path()).await;
        commit(&sink, &["u2"], Status::WITHDRAWN, "c", dir.path()).await;
        let ids = approvals(&store).await;
        let expected: BTreeSet<String> = [
            "a-u1-01", "a-u1-02", "b-u2-01", "b-u2-02", "c-u2-01", "c-u2-02",
        ]
        .map(String::from)
        .into();
        assert_eq!(ids, expected);
        // The same reject seen again is one line a date and status.
        let rejects = store
            .get(&rejects::rejects_path(d("2026-09-01")))
            .await
            .unwrap()
            .unwrap();
        let lines: Vec<String> = String::from_utf8(rejects)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(r#""run_id":"a""#) && lines[0].contains(r#""status":2"#));
        assert!(lines[1].contains(r#""run_id":"c""#) && lines[1].contains(r#""status":3"#));
    }

    #[tokio::test]
    async fn a_root_of_another_employee_type_is_refused_before_and_during_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().join("root")));
        let sink = Sink::new(Arc::clone(&store), EmployeeType::EmployeeId);
        commit(&sink, &["u1"], Status::APPROVED, "a", dir.path()).await;
        let other = Sink::new(Arc::clone(&store), EmployeeType::OpenId);
        let err = other.check_employee_type().await.unwrap_err();
        assert!(
            matches!(err, SinkError::EmployeeTypeMismatch { .. }),
            "{err}"
        );
        let err = commit_unless_fenced(&other, &["u1"], Status::APPROVED, "b", dir.path(), true)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("one output root holds one --employee-type"),
            "{err}"
        );
        assert_eq!(approvals(&store).await.len(), 2, "nothing was replaced");
    }

    #[tokio::test]
    async fn nothing_is_written_once_the_lease_is_in_doubt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().join("root")));
        let sink = Sink::new(Arc::clone(&store), EmployeeType::EmployeeId);
        let err = commit_unless_fenced(&sink, &["u1"], Status::APPROVED, "a", dir.path(), false)
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Fenced), "{err}");
        assert!(store.list_files("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_v1_partition_is_carried_forward_to_v2_when_a_commit_rewrites_it() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int32Type;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().join("root")));
        let v2 = put_v1_outs(&store).await;

        // Read as v2 without a rewrite, and the same after one that keeps u1's rows.
        let read = read_table(&store, Table::Outs).await.unwrap();
        assert_eq!(read[0].1, v2);
        let sink = Sink::new(Arc::clone(&store), EmployeeType::EmployeeId);
        commit(&sink, &["u2"], Status::APPROVED, "a", dir.path()).await;
        let (_, rewritten) = &read_table(&store, Table::Outs).await.unwrap()[0];
        assert_eq!(rewritten.schema(), Table::Outs.schema());
        let ids = rewritten
            .column_by_name("approval_id")
            .unwrap()
            .as_string::<i32>();
        let offsets = rewritten
            .column_by_name("utc_offset_seconds")
            .unwrap()
            .as_primitive::<Int32Type>();
        let iana = rewritten
            .column_by_name("time_zone_iana")
            .unwrap()
            .as_string::<i32>();
        let u1: Vec<(&str, i32, &str)> = (0..rewritten.num_rows())
            .filter(|&r| ids.value(r).starts_with("v1-"))
            .map(|r| (ids.value(r), offsets.value(r), iana.value(r)))
            .collect();
        // Daylight time on 2026-09-01 in New York, at the start or, with none, at midnight.
        assert_eq!(
            u1,
            [
                ("v1-a", -14_400, "America/New_York"),
                ("v1-b", -14_400, "America/New_York")
            ]
        );
        assert_eq!(rewritten.num_rows(), 3, "u1's two rows and u2's");
    }

    #[tokio::test]
    async fn added_rows_stand_for_their_equals_only_and_are_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::Local(dir.path().join("root")));
        let sink = Sink::new(Arc::clone(&store), EmployeeType::EmployeeId);
        commit(&sink, &["u1"], Status::APPROVED, "a", dir.path()).await;
        // Two rows without an approval id or times that differ in their reason, a row twice,
        // and a row equal to the one there but for the run that wrote it.
        let answer = r#"{"user_approvals":[{"user_id":"u1","date":"20260901","time_zone":"UTC",
            "outs":[{"approval_id":"a-u1-01"},{"approval_id":"new"},{"approval_id":"new"},
                    {"reason":"one"},{"reason":"two"}]}]}"#;
        let stamp = Arc::new(RunStamp {
            run_id: "replay".into(),
            ingested_at_micros: 1,
        });
        let rows = vec![u1_outs(answer, "replay")];
        let ids = |batches: Vec<(NaiveDate, RecordBatch)>| -> Vec<(Option<String>, String)> {
            let mut found = Vec::new();
            for (_, b) in batches {
                let id = b.column_by_name("approval_id").unwrap().as_string::<i32>();
                let run = b.column_by_name("_run_id").unwrap().as_string::<i32>();
                for i in 0..b.num_rows() {
                    found.push((
                        id.is_valid(i).then(|| id.value(i).to_string()),
                        run.value(i).to_string(),
                    ));
                }
            }
            found
        };
        // The rows of 2026-09-01: the one there is replaced by its equal, the others added once.
        let expected = vec![
            (None, "replay".to_string()),
            (None, "replay".to_string()),
            (Some("a-u1-01".to_string()), "replay".to_string()),
            (Some("new".to_string()), "replay".to_string()),
        ];
        for _ in 0..2 {
            sink.add_rows(
                Table::Outs,
                d("2026-09-01"),
                rows.clone(),
                Arc::clone(&stamp),
                &|| true,
            )
            .await
            .unwrap();
            let on_the_first: Vec<_> = read_table(&store, Table::Outs)
                .await
                .unwrap()
                .into_iter()
                .filter(|(date, _)| *date == d("2026-09-01"))
                .collect();
            assert_eq!(ids(on_the_first), expected);
        }
        // The other date is untouched.
        assert!(approvals(&store).await.contains("a-u1-02"));
    }
}
