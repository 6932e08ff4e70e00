//! Sink: Parquet encoding and the replacement of `(table, date)` partitions in the output root.
//!
//! Layout: `<root>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, plus
//! `<root>/_rejects/date=YYYY-MM-DD/rejects.ndjson` for records kept aside. Names starting with `_`
//! or `.` are the job's own; warehouses skip them.
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
//! - Files: zstd on the columns where it pays ([`Values`]), page statistics, one row group per
//!   128 Ki rows, at most [`MAX_ROWS_PER_FILE`] rows, the schema version, table and employee type
//!   in the key-value metadata.
//! - Reading old files, merging and encoding is CPU work done on a blocking thread, which hands
//!   each partition to the store as soon as it is encoded (a few in flight), so a commit holds a
//!   date's rows and a few files, never its window's output. A partition's stale parts are
//!   deleted only after all its new files are in place, so a commit that fails halfway leaves
//!   each partition replaced whole or untouched; nothing is put or deleted once the lease is in
//!   doubt.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::ArrowError;
use bytes::Bytes;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::flatten::Reject;
use crate::fresh::FreshRows;
use crate::plan::Window;
use crate::store::{Store, StoreError};
use crate::table::{
    self, EMPLOYEE_TYPE_KEY, RunStamp, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY, Table, Values,
};

/// A day with more rows than this is split into several part files.
pub const MAX_ROWS_PER_FILE: usize = 1_000_000;
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Directory of the records kept aside, partitioned by date like the tables.
pub const REJECTS_DIR: &str = "_rejects";
const REJECTS_FILE: &str = "rejects.ndjson";
/// Store requests in flight at once during a commit.
const STORE_CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error(
        "{path} does not have the columns of {table} schema v{}: move it away or write to a new output root",
        SCHEMA_VERSION
    )]
    SchemaMismatch { path: String, table: &'static str },
    #[error(
        "{path} holds user ids of kind {found}, this run writes {expected}: one output root holds one --employee-type"
    )]
    EmployeeTypeMismatch {
        path: String,
        found: String,
        expected: &'static str,
    },
    #[error(
        "cannot spill fresh rows to {path}: {detail}; free space there or point --spill-dir at another local directory"
    )]
    Spill { path: String, detail: String },
    #[error("stopped before writing: the lease on the output root may no longer be ours")]
    Fenced,
    #[error("cannot encode {table} for {date}: {detail}")]
    Encode {
        table: &'static str,
        date: NaiveDate,
        detail: String,
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

/// Which rows a run replaces: those of its users, for its statuses. Everything else stays.
#[derive(Debug, Clone)]
pub struct Scope {
    pub users: HashSet<String>,
    pub statuses: HashSet<i32>,
    /// The kind of id in `user_id`; a root holding another kind is refused.
    pub employee_type: &'static str,
}

impl Scope {
    /// Whether a row of `user` with `status` is replaced by this run. A row without a user
    /// (an unreadable user_approval, kept aside) is replaced by any run over its status.
    pub fn covers(&self, user: Option<&str>, status: i32) -> bool {
        self.statuses.contains(&status) && user.is_none_or(|u| self.users.contains(u))
    }
}

/// Encodes one batch as a Parquet file in memory.
pub fn encode(
    batch: &RecordBatch,
    table: Table,
    employee_type: &str,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    // Level 1, not 3: a partition's column chunks are a few kilobytes, where level 3's larger
    // match tables find nothing more. On the 1,000,000-row bench corpus level 1 wrote 3.4%
    // fewer bytes (63.9 against 66.1 MB) and the replay ran 3.6% fewer instructions.
    let zstd = Compression::ZSTD(ZstdLevel::try_new(1)?);
    let mut props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(TABLE_KEY.to_string(), table.name().to_string()),
            KeyValue::new(EMPLOYEE_TYPE_KEY.to_string(), employee_type.to_string()),
        ]))
        .set_created_by(concat!("attendance-sync ", env!("CARGO_PKG_VERSION")).to_string());
    // Fewer compressed columns also means fewer zstd contexts: the `parquet` crate creates a
    // compressor and a decompressor per compressed column chunk, and creating them was 6.3% of a
    // small-file replay's CPU samples at the end of session 5 (BENCHMARKS.md).
    for (path, values) in leaf_columns(table) {
        props = match values {
            Values::Repeated => props,
            Values::RepeatedText => props.set_column_compression(path.clone(), zstd),
            Values::Unique => props
                .set_column_compression(path.clone(), zstd)
                .set_column_dictionary_enabled(path.clone(), false),
        };
    }
    let props = props.build();
    // Always the table's own schema: rows decoded from an existing file carry that file's
    // key-value metadata in theirs, which would otherwise be embedded again (`ARROW:schema`).
    let batch = RecordBatch::try_new(table.schema(), batch.columns().to_vec())?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(buf)
}

/// Every leaf column of `table`'s Parquet schema with what its top-level column holds.
fn leaf_columns(table: Table) -> &'static [(ColumnPath, Values)] {
    static LEAVES: OnceLock<[Vec<(ColumnPath, Values)>; 4]> = OnceLock::new();
    let all = LEAVES.get_or_init(|| {
        Table::ALL.map(|t| {
            let parquet = ArrowSchemaConverter::new()
                .convert(&t.schema())
                .expect("the tables' schemas convert to Parquet (a sink test checks)");
            parquet
                .columns()
                .iter()
                .map(|c| {
                    let path = c.path().clone();
                    let values = t.values_of(&path.parts()[0]);
                    (path, values)
                })
                .collect()
        })
    });
    &all[table as usize]
}

/// Decodes a Parquet file: its batches and the employee type it was written with.
pub fn decode(
    bytes: Vec<u8>,
) -> Result<(Vec<RecordBatch>, Option<String>), parquet::errors::ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))?;
    let employee_type = employee_type_of(&builder);
    let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
    Ok((batches, employee_type))
}

/// The employee type a file was written with, from its key-value metadata.
fn employee_type_of<T>(
    builder: &parquet::arrow::arrow_reader::ArrowReaderBuilder<T>,
) -> Option<String> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == EMPLOYEE_TYPE_KEY))
        .and_then(|k| k.value.clone())
}

/// `<table>/date=YYYY-MM-DD/part-NNNNN.parquet` → (date, part index).
fn parse_part(rel: &str) -> Option<(NaiveDate, usize)> {
    let mut parts = rel.split('/');
    let _table = parts.next()?;
    let date = parts.next()?.strip_prefix("date=")?.parse().ok()?;
    let index = parts
        .next()?
        .strip_prefix("part-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()?;
    parts.next().is_none().then_some((date, index))
}

fn partition_dir(table: &str, date: NaiveDate) -> String {
    format!("{table}/date={}", date.format("%Y-%m-%d"))
}

/// The output root's tables.
pub struct Sink {
    store: Arc<Store>,
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
    /// Where finished partitions go: the commit's store task; `None` keeps them here (tests).
    outbox: Option<tokio::sync::mpsc::Sender<Replacement>>,
    kept: Vec<Replacement>,
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
        match &self.outbox {
            // Closed only when a store call failed: that error is the one reported.
            Some(outbox) => outbox.blocking_send(done).map_err(|_| SinkError::Fenced),
            None => {
                self.kept.push(done);
                Ok(())
            }
        }
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
    pub fn new(store: Arc<Store>) -> Sink {
        Sink { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Refuses a root whose tables hold another kind of user id, before anything is fetched.
    /// One file tells: every file of a root is written with the root's one kind.
    pub async fn check_employee_type(&self, employee_type: &'static str) -> Result<(), SinkError> {
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
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map_err(|e| {
                    SinkError::Read {
                        path: self.store.describe(&rel),
                        detail: e.to_string(),
                    }
                })?;
            if let Some(found) = employee_type_of(&builder)
                && found != employee_type
            {
                return Err(SinkError::EmployeeTypeMismatch {
                    path: self.store.describe(&rel),
                    found,
                    expected: employee_type,
                });
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
            let date = rel
                .split('/')
                .nth(1)
                .and_then(|d| d.strip_prefix("date="))
                .and_then(|d| d.parse::<NaiveDate>().ok());
            if let Some(date) = date
                && window.contains(date)
                && rel.ends_with(REJECTS_FILE)
            {
                let text = self.store.get(&rel).await?.unwrap_or_default();
                old_rejects.insert(date, String::from_utf8_lossy(&text).into_owned());
            }
        }

        // 2. Merge and encode off the async workers, replacing each partition as it is done, only
        //    while the root is ours.
        let store = Arc::clone(&self.store);
        let (outbox, inbox) = tokio::sync::mpsc::channel(STORE_CONCURRENCY);
        let planner = tokio::task::spawn_blocking(move || {
            plan_commit(
                &store,
                window,
                fresh,
                rejects,
                existing,
                old_rejects,
                &scope,
                &stamp,
                outbox,
            )
        });
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

/// Decides every write of a commit: pure but for decoding the bytes it is given.
#[allow(clippy::too_many_arguments)]
fn plan_commit(
    store: &Store,
    window: Window,
    fresh: FreshRows,
    rejects: Vec<Reject>,
    mut existing: BTreeMap<(Table, NaiveDate), Existing>,
    mut old_rejects: BTreeMap<NaiveDate, String>,
    scope: &Scope,
    stamp: &RunStamp,
    outbox: tokio::sync::mpsc::Sender<Replacement>,
) -> Result<Planned, SinkError> {
    let mut planned = Planned {
        outbox: Some(outbox),
        ..Planned::default()
    };
    let mut rejects_by_date: BTreeMap<NaiveDate, Vec<Reject>> = BTreeMap::new();
    for r in rejects {
        // Rejects go under the date they came under; one whose date is unreadable or outside
        // the window under the window's first date (its `date` field says what it was).
        let date = r
            .date
            .as_deref()
            .and_then(crate::tz::parse_yyyymmdd)
            .filter(|d| window.contains(*d))
            .unwrap_or(window.from);
        rejects_by_date.entry(date).or_default().push(r);
    }
    let mut fresh = fresh;
    for table in Table::ALL {
        let mut rows = fresh.take_table(table);
        for date in window.dates() {
            let new = rows.date(date)?;
            if let Some(new) = &new {
                *planned.fresh_rows.entry(table).or_default() += new.num_rows() as u64;
            }
            let old = existing.remove(&(table, date)).unwrap_or_default();
            merge_partition(store, table, date, new, old, scope, &mut planned)?;
        }
    }
    for date in window.dates() {
        merge_rejects(
            date,
            rejects_by_date.remove(&date).unwrap_or_default(),
            old_rejects.remove(&date),
            scope,
            stamp,
            &mut planned,
        )?;
    }
    // Closing the outbox ends the store task's stream of puts.
    planned.outbox = None;
    Ok(planned)
}

/// The new content of one partition: old rows outside the scope plus the fresh rows.
fn merge_partition(
    store: &Store,
    table: Table,
    date: NaiveDate,
    fresh: Option<RecordBatch>,
    old: Existing,
    scope: &Scope,
    planned: &mut Planned,
) -> Result<(), SinkError> {
    let encode_err = |detail: String| SinkError::Encode {
        table: table.name(),
        date,
        detail,
    };
    if fresh.is_none() && old.parts.is_empty() {
        return Ok(());
    }
    let expected = table.schema();
    // The old rows outside the scope, as (batch, row) of `batches`: copied once, with the fresh
    // ones, into the sorted partition.
    let mut batches = Vec::new();
    let mut kept = Vec::new();
    for (_, rel, bytes) in &old.parts {
        let (decoded, employee_type) = decode(bytes.clone()).map_err(|e| SinkError::Read {
            path: store.describe(rel),
            detail: e.to_string(),
        })?;
        if let Some(found) = employee_type
            && found != scope.employee_type
        {
            return Err(SinkError::EmployeeTypeMismatch {
                path: store.describe(rel),
                found,
                expected: scope.employee_type,
            });
        }
        for batch in decoded {
            if batch.schema().fields() != expected.fields() {
                return Err(SinkError::SchemaMismatch {
                    path: store.describe(rel),
                    table: table.name(),
                });
            }
            let rows = outside_scope(&batch, scope).map_err(|e| encode_err(e.to_string()))?;
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
            table::sorted(&refs, kept).map_err(|e| encode_err(e.to_string()))?
        }
    };

    let dir = partition_dir(table.name(), date);
    let mut written = 0;
    let mut offset = 0;
    while offset < merged.num_rows() {
        let len = MAX_ROWS_PER_FILE.min(merged.num_rows() - offset);
        let bytes = encode(&merged.slice(offset, len), table, scope.employee_type)
            .map_err(|e| encode_err(e.to_string()))?;
        let file = WrittenFile {
            path: format!("{dir}/part-{written:05}.parquet"),
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

/// The new rejects file of one date: old lines outside the scope plus the fresh rejects.
fn merge_rejects(
    date: NaiveDate,
    fresh: Vec<Reject>,
    old: Option<String>,
    scope: &Scope,
    stamp: &RunStamp,
    planned: &mut Planned,
) -> Result<(), SinkError> {
    let rel = format!("{}/{REJECTS_FILE}", partition_dir(REJECTS_DIR, date));
    if fresh.is_empty() && old.is_none() {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Key {
        user_id: Option<String>,
        status: i32,
    }
    // The same reject kept twice (a record outside every run's scope, seen again) is one line:
    // lines are compared without the run that wrote them.
    let mut seen = std::collections::HashSet::new();
    let without_run = |line: &str| -> String {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("run_id");
        }
        v.to_string()
    };
    let mut buf = Vec::new();
    for line in old
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let key: Key = serde_json::from_str(line).map_err(|e| SinkError::Read {
            path: rel.clone(),
            detail: e.to_string(),
        })?;
        if !scope.covers(key.user_id.as_deref(), key.status) && seen.insert(without_run(line)) {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
    }
    #[derive(serde::Serialize)]
    struct Line<'a> {
        run_id: &'a str,
        #[serde(flatten)]
        reject: &'a Reject,
    }
    for reject in &fresh {
        let line = Line {
            run_id: &stamp.run_id,
            reject,
        };
        let text = serde_json::to_string(&line).expect("a reject always serializes");
        if seen.insert(without_run(&text)) {
            buf.extend_from_slice(text.as_bytes());
            buf.push(b'\n');
        }
    }
    planned.rejects += fresh.len() as u64;
    if buf.is_empty() {
        planned.delete(rel);
    } else {
        planned.put(rel, buf);
    }
    planned.send()
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
        let (batches, _) = decode(bytes).map_err(|e| SinkError::Read {
            path: store.describe(&rel),
            detail: e.to_string(),
        })?;
        out.extend(batches.into_iter().map(|b| (date, b)));
    }
    Ok(out)
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
    use super::*;

    #[test]
    fn a_file_is_written_under_the_tables_schema_whatever_the_batch_carries() {
        // Rows decoded from an existing file carry its key-value metadata in their schema.
        let decoded =
            Table::Outs
                .schema()
                .as_ref()
                .clone()
                .with_metadata(std::collections::HashMap::from([(
                    "from".to_string(),
                    "an old file".to_string(),
                )]));
        let batch = RecordBatch::new_empty(Arc::new(decoded));
        let bytes = encode(&batch, Table::Outs, "employee_id").unwrap();
        let read = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        let schema = read.schema();
        assert_eq!(schema.fields(), Table::Outs.schema().fields());
        assert!(!schema.metadata().contains_key("from"), "{schema:?}");
        assert_eq!(
            schema.metadata().get(TABLE_KEY).map(String::as_str),
            Some("outs")
        );
    }

    #[test]
    fn every_tables_schema_converts_and_each_leaf_gets_its_columns_storage() {
        for table in Table::ALL {
            let leaves = leaf_columns(table);
            let top: HashSet<&str> = leaves.iter().map(|(p, _)| p.parts()[0].as_str()).collect();
            let schema = table.schema();
            let fields: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(top, fields, "{table:?}");
            assert!(
                leaves
                    .iter()
                    .all(|(p, v)| *v == table.values_of(&p.parts()[0]))
            );
        }
        let trips = leaf_columns(Table::Trips);
        let region = trips
            .iter()
            .find(|(p, _)| p.string() == "destinations.list.element.region_id");
        assert_eq!(region.map(|(_, v)| *v), Some(Values::Repeated));
    }

    #[test]
    fn part_paths_parse_and_others_do_not() {
        let d = NaiveDate::from_ymd_opt(2026, 9, 15).unwrap();
        assert_eq!(
            parse_part("outs/date=2026-09-15/part-00003.parquet"),
            Some((d, 3))
        );
        assert_eq!(parse_part("outs/date=2026-09-15/notes.txt"), None);
        assert_eq!(parse_part("outs/date=bad/part-00000.parquet"), None);
        assert_eq!(
            parse_part("outs/date=2026-09-15/x/part-00000.parquet"),
            None
        );
    }

    #[test]
    fn a_reject_seen_again_is_kept_once() {
        let scope = Scope {
            users: ["u1".to_string()].into(),
            statuses: [2].into(),
            employee_type: "employee_id",
        };
        let d = NaiveDate::from_ymd_opt(2026, 9, 15).unwrap();
        let reject = |run: &str| Reject {
            table: Some(Table::Outs),
            user_id: Some("stranger".into()),
            date: Some("20260915".into()),
            approval_id: Some("a".into()),
            status: 2,
            field: "user_id".into(),
            value: Some("stranger".into()),
            reason: format!("outside the batch ({run} wrote it the same)").replace(run, "x"),
            raw: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        };
        let stamp = |id: &str| RunStamp {
            run_id: id.into(),
            ingested_at_micros: 0,
        };
        let mut first = Planned::default();
        merge_rejects(
            d,
            vec![reject("r1")],
            None,
            &scope,
            &stamp("r1"),
            &mut first,
        )
        .unwrap();
        let old = String::from_utf8(first.kept[0].puts[0].1.clone()).unwrap();
        let mut second = Planned::default();
        merge_rejects(
            d,
            vec![reject("r2")],
            Some(old),
            &scope,
            &stamp("r2"),
            &mut second,
        )
        .unwrap();
        let text = String::from_utf8(second.kept[0].puts[0].1.clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn scope_covers_its_users_and_statuses_only() {
        let scope = Scope {
            users: ["u1".to_string()].into(),
            statuses: [2].into(),
            employee_type: "employee_id",
        };
        assert!(scope.covers(Some("u1"), 2));
        assert!(!scope.covers(Some("u1"), 3));
        assert!(!scope.covers(Some("u2"), 2));
        assert!(scope.covers(None, 2));
    }
}
