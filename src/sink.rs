//! Sink: Parquet encoding and the atomic replacement of `(table, date)` partitions on local disk.
//!
//! Layout: `<root>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, plus
//! `<root>/_rejects/date=YYYY-MM-DD/rejects.ndjson` for records kept aside. Names starting with `_`
//! or `.` are the job's own; warehouses skip them.
//!
//! Invariants:
//! - A part file is written under a hidden temporary name (`.part-NNNNN.parquet.tmp-<run_id>`),
//!   flushed to disk, then renamed into place: a reader sees the old file or the new one, never
//!   half of one.
//! - Committing a window replaces, in every `(table, date)` of it and in its rejects, the rows of
//!   the run's [`Scope`] (the users whose data it fetched, for the statuses it asked), and keeps
//!   every other row (a run over fewer users or statuses, or a user the platform refused this
//!   time, loses nothing). An output root holds one kind of user id; another kind is refused. Parts left over from a larger earlier day
//!   are removed, and a date left without rows loses its files. So rerunning a window never
//!   duplicates rows, and approvals gone at the source disappear.
//! - Files: zstd, statistics on, one row group per 128 Ki rows, at most [`MAX_ROWS_PER_FILE`] rows,
//!   the schema version and table name in the key-value metadata.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::collections::{BTreeMap, HashSet};

use arrow_array::{Array, BooleanArray, Int32Array, RecordBatch, StringArray};
use arrow_schema::ArrowError;
use arrow_select::concat::concat_batches;
use arrow_select::filter::filter_record_batch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::flatten::{DateRows, Reject, Tables};
use crate::plan::Window;
use crate::table::{
    self, EMPLOYEE_TYPE_KEY, RunStamp, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY, Table,
};

/// A day with more rows than this is split into several part files.
pub const MAX_ROWS_PER_FILE: usize = 1_000_000;
const ROW_GROUP_ROWS: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
    #[error(
        "{} does not have the columns of {table} schema v{}: move it away or write to a new output root",
        path.display(),
        SCHEMA_VERSION
    )]
    SchemaMismatch { path: PathBuf, table: &'static str },
    #[error(
        "{} holds user ids of kind {found}, this run writes {expected}: one output root holds one --employee-type",
        path.display()
    )]
    EmployeeTypeMismatch {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("cannot encode {table} for {date}: {detail}")]
    Encode {
        table: &'static str,
        date: NaiveDate,
        detail: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A file put in place by a commit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub table: Table,
    pub date: NaiveDate,
    pub rows: usize,
    pub bytes: u64,
}

/// Directory of the records kept aside, partitioned by date like the tables.
pub const REJECTS_DIR: &str = "_rejects";
const REJECTS_FILE: &str = "rejects.ndjson";

/// What committing one window did.
#[derive(Debug, Default)]
pub struct CommitReport {
    /// Rejects written.
    pub rejects: u64,
    pub files: Vec<WrittenFile>,
    /// Part files deleted because their date has fewer parts, or no rows, now.
    pub removed: Vec<PathBuf>,
}

/// Encodes one batch as a Parquet file in memory.
pub fn encode(
    batch: &RecordBatch,
    table: Table,
    employee_type: &str,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(TABLE_KEY.to_string(), table.name().to_string()),
            KeyValue::new(EMPLOYEE_TYPE_KEY.to_string(), employee_type.to_string()),
        ]))
        .set_created_by(concat!("attendance-sync ", env!("CARGO_PKG_VERSION")).to_string())
        .build();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(buf)
}

/// The output root on local disk.
pub struct LocalSink {
    root: PathBuf,
}

impl LocalSink {
    /// Opens (creating if needed) the output root.
    pub fn open(root: &Path) -> Result<LocalSink, SinkError> {
        fs::create_dir_all(root).map_err(io("create the output directory", root))?;
        Ok(LocalSink {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one partition.
    pub fn partition_dir(&self, table: Table, date: NaiveDate) -> PathBuf {
        self.root
            .join(table.name())
            .join(format!("date={}", date.format("%Y-%m-%d")))
    }

    /// Replaces, for every `(table, date)` of `window` and its rejects, the rows within `scope`
    /// with the rows in `tables` and `rejects`; rows outside the scope are kept as they are.
    pub fn commit_window(
        &self,
        window: Window,
        mut tables: Tables,
        rejects: Vec<Reject>,
        scope: &Scope,
        stamp: &RunStamp,
    ) -> Result<CommitReport, SinkError> {
        let mut report = CommitReport::default();
        let mut ctx = Replace {
            sink: self,
            scope,
            stamp,
            report: &mut report,
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
        for date in window.dates() {
            ctx.replace_rejects(date, rejects_by_date.remove(&date).unwrap_or_default())?;
            ctx.replace(Table::Outs, date, take(&mut tables.outs, date), |r, s| {
                table::absence_batch(r, true, s)
            })?;
            ctx.replace(
                Table::Leaves,
                date,
                take(&mut tables.leaves, date),
                |r, s| table::absence_batch(r, false, s),
            )?;
            ctx.replace(
                Table::OvertimeWorks,
                date,
                take(&mut tables.overtime_works, date),
                table::overtime_batch,
            )?;
            ctx.replace(
                Table::Trips,
                date,
                take(&mut tables.trips, date),
                table::trip_batch,
            )?;
        }
        Ok(report)
    }
}

/// One commit's shared state while it replaces partitions.
struct Replace<'a> {
    sink: &'a LocalSink,
    scope: &'a Scope,
    stamp: &'a RunStamp,
    report: &'a mut CommitReport,
}

impl Replace<'_> {
    fn replace<R: table::Row>(
        &mut self,
        table: Table,
        date: NaiveDate,
        mut rows: Vec<R>,
        to_batch: impl Fn(&[R], &RunStamp) -> Result<RecordBatch, ArrowError>,
    ) -> Result<(), SinkError> {
        let dir = self.sink.partition_dir(table, date);
        let existing = existing_parts(&dir)?;
        if rows.is_empty() && existing.is_empty() {
            return Ok(());
        }
        let encode_err = |detail: String| SinkError::Encode {
            table: table.name(),
            date,
            detail,
        };
        table::sort_rows(&mut rows);
        let fresh = to_batch(&rows, self.stamp).map_err(|e| encode_err(e.to_string()))?;
        let mut batches = self.kept_rows(table, &existing)?;
        if batches.is_empty() && fresh.num_rows() == 0 && existing.is_empty() {
            return Ok(());
        }
        let merged = if batches.is_empty() {
            fresh
        } else {
            let schema = fresh.schema();
            batches.push(fresh);
            let all = concat_batches(&schema, &batches).map_err(|e| encode_err(e.to_string()))?;
            table::sort_batch(&all).map_err(|e| encode_err(e.to_string()))?
        };

        let mut written = 0;
        if merged.num_rows() > 0 {
            fs::create_dir_all(&dir).map_err(io("create the partition directory", &dir))?;
            let mut offset = 0;
            while offset < merged.num_rows() {
                let len = MAX_ROWS_PER_FILE.min(merged.num_rows() - offset);
                let chunk = merged.slice(offset, len);
                let bytes = encode(&chunk, table, self.scope.employee_type)
                    .map_err(|e| encode_err(e.to_string()))?;
                let name = part_name(written);
                let path = dir.join(&name);
                let tmp = dir.join(format!(".{name}.tmp-{}", self.stamp.run_id));
                write_synced(&tmp, &bytes)?;
                fs::rename(&tmp, &path).map_err(io("move into place", &path))?;
                self.report.files.push(WrittenFile {
                    path,
                    table,
                    date,
                    rows: len,
                    bytes: bytes.len() as u64,
                });
                written += 1;
                offset += len;
            }
        }
        for (index, path) in existing {
            if index >= written {
                fs::remove_file(&path).map_err(io("remove the outdated file", &path))?;
                self.report.removed.push(path);
            }
        }
        if written == 0 {
            // Only succeeds when nothing else is left in it; another tool's file stays.
            let _ = fs::remove_dir(&dir);
        }
        sync_dir(&dir);
        Ok(())
    }

    /// Rows of the partition's current files outside this run's scope.
    fn kept_rows(
        &self,
        table: Table,
        existing: &[(usize, PathBuf)],
    ) -> Result<Vec<RecordBatch>, SinkError> {
        let mut kept = Vec::new();
        let expected = table.schema();
        for (_, path) in existing {
            let (batches, employee_type) = read_parquet(path)?;
            if let Some(found) = employee_type
                && found != self.scope.employee_type
            {
                return Err(SinkError::EmployeeTypeMismatch {
                    path: path.clone(),
                    found,
                    expected: self.scope.employee_type,
                });
            }
            for batch in batches {
                if batch.schema().fields() != expected.fields() {
                    return Err(SinkError::SchemaMismatch {
                        path: path.clone(),
                        table: table.name(),
                    });
                }
                let users = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("user_id is the first, utf8 column");
                let statuses = batch
                    .column(2)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .expect("status is the third, int32 column");
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|i| {
                        let user = users.is_valid(i).then(|| users.value(i));
                        Some(!self.scope.covers(user, statuses.value(i)))
                    })
                    .collect();
                let batch = filter_record_batch(&batch, &keep).map_err(|e| SinkError::Read {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                if batch.num_rows() > 0 {
                    kept.push(batch);
                }
            }
        }
        Ok(kept)
    }

    /// Replaces the rejects of one date within the scope, as the tables are replaced.
    fn replace_rejects(&mut self, date: NaiveDate, fresh: Vec<Reject>) -> Result<(), SinkError> {
        let dir = self
            .sink
            .root
            .join(REJECTS_DIR)
            .join(format!("date={}", date.format("%Y-%m-%d")));
        let path = dir.join(REJECTS_FILE);
        let old = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fresh.is_empty() {
                    return Ok(());
                }
                String::new()
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        #[derive(serde::Deserialize)]
        struct Key {
            user_id: Option<String>,
            status: i32,
        }
        let mut buf = Vec::new();
        for line in old.lines().filter(|l| !l.trim().is_empty()) {
            let key: Key = serde_json::from_str(line).map_err(|e| SinkError::Read {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            if !self.scope.covers(key.user_id.as_deref(), key.status) {
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
                run_id: &self.stamp.run_id,
                reject,
            };
            serde_json::to_writer(&mut buf, &line).expect("a reject always serializes");
            buf.push(b'\n');
        }
        if buf.is_empty() {
            fs::remove_file(&path).map_err(io("remove the outdated file", &path))?;
            let _ = fs::remove_dir(&dir);
            return Ok(());
        }
        fs::create_dir_all(&dir).map_err(io("create the rejects directory", &dir))?;
        let tmp = dir.join(format!(".{REJECTS_FILE}.tmp-{}", self.stamp.run_id));
        write_synced(&tmp, &buf)?;
        fs::rename(&tmp, &path).map_err(io("move into place", &path))?;
        sync_dir(&dir);
        self.report.rejects += fresh.len() as u64;
        Ok(())
    }
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

/// Reads every batch of one Parquet file, and the employee type it was written with.
fn read_parquet(path: &Path) -> Result<(Vec<RecordBatch>, Option<String>), SinkError> {
    let read_err = |detail: String| SinkError::Read {
        path: path.to_path_buf(),
        detail,
    };
    let file = fs::File::open(path).map_err(io("open", path))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_err(e.to_string()))?;
    let employee_type = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == EMPLOYEE_TYPE_KEY))
        .and_then(|k| k.value.clone());
    let batches = builder
        .build()
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    Ok((batches, employee_type))
}

fn take<R>(rows: &mut DateRows<R>, date: NaiveDate) -> Vec<R> {
    rows.remove(&date).unwrap_or_default()
}

fn part_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}

/// `part-NNNNN.parquet` files of a partition with their index; also clears temporary files left
/// by a run that died before renaming them.
fn existing_parts(dir: &Path) -> Result<Vec<(usize, PathBuf)>, SinkError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", dir)(e)),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            parts.push((index, entry.path()));
        } else if name.starts_with(".part-") && name.contains(".parquet.tmp-") && is_stale(&entry) {
            // Left by a run that died before its rename; a live run's file is never this old.
            let _ = fs::remove_file(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
}

/// Temporary files older than a day belong to no live run.
fn is_stale(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let mut f = fs::File::create(path).map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("flush", path))?;
    Ok(())
}

/// Makes renames and deletions in `dir` durable; best effort where directories cannot be opened.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Rows of a whole table, read back from the output root (all dates, in date order), for tests
/// and tools.
pub fn read_table(root: &Path, table: Table) -> Result<Vec<(NaiveDate, RecordBatch)>, SinkError> {
    let mut out = Vec::new();
    let dir = root.join(table.name());
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut dates: Vec<(NaiveDate, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let date = name.strip_prefix("date=")?.parse::<NaiveDate>().ok()?;
            Some((date, e.path()))
        })
        .collect();
    dates.sort();
    for (date, path) in dates {
        for (_, file) in existing_parts(&path)? {
            for batch in read_parquet(&file)?.0 {
                out.push((date, batch));
            }
        }
    }
    Ok(out)
}
