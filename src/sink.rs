//! Sink: Parquet encoding and the atomic replacement of `(table, date)` partitions on local disk.
//!
//! Layout: `<root>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, plus `<root>/_rejects/` for records
//! kept aside. Names starting with `_` or `.` are the job's own; warehouses skip them.
//!
//! Invariants:
//! - A part file is written under a hidden temporary name (`.part-NNNNN.parquet.tmp-<run_id>`),
//!   flushed to disk, then renamed into place: a reader sees the old file or the new one, never
//!   half of one.
//! - Committing a window replaces every `(table, date)` of it: dates with rows get new files, parts
//!   left over from a larger earlier day are removed, and dates without rows lose their files. So
//!   rerunning a window never duplicates rows, and approvals gone at the source disappear.
//! - Files: zstd, statistics on, one row group per 128 Ki rows, at most [`MAX_ROWS_PER_FILE`] rows,
//!   the schema version and table name in the key-value metadata.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::flatten::{DateRows, Reject, Tables};
use crate::plan::Window;
use crate::table::{self, RunStamp, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY, Table};

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

/// What committing one window did.
#[derive(Debug, Default)]
pub struct CommitReport {
    pub files: Vec<WrittenFile>,
    /// Part files deleted because their date has fewer parts, or no rows, now.
    pub removed: Vec<PathBuf>,
}

/// Encodes one batch as a Parquet file in memory.
pub fn encode(batch: &RecordBatch, table: Table) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(TABLE_KEY.to_string(), table.name().to_string()),
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

    /// Replaces every `(table, date)` of `window` with the rows in `tables`.
    pub fn commit_window(
        &self,
        window: Window,
        mut tables: Tables,
        stamp: &RunStamp,
    ) -> Result<CommitReport, SinkError> {
        let mut report = CommitReport::default();
        for date in window.dates() {
            self.replace(
                Table::Outs,
                date,
                take(&mut tables.outs, date),
                stamp,
                &mut report,
                |r, s| table::absence_batch(r, true, s),
            )?;
            self.replace(
                Table::Leaves,
                date,
                take(&mut tables.leaves, date),
                stamp,
                &mut report,
                |r, s| table::absence_batch(r, false, s),
            )?;
            self.replace(
                Table::OvertimeWorks,
                date,
                take(&mut tables.overtime_works, date),
                stamp,
                &mut report,
                table::overtime_batch,
            )?;
            self.replace(
                Table::Trips,
                date,
                take(&mut tables.trips, date),
                stamp,
                &mut report,
                table::trip_batch,
            )?;
        }
        Ok(report)
    }

    fn replace<R: table::Row>(
        &self,
        table: Table,
        date: NaiveDate,
        mut rows: Vec<R>,
        stamp: &RunStamp,
        report: &mut CommitReport,
        to_batch: impl Fn(&[R], &RunStamp) -> Result<RecordBatch, arrow_schema::ArrowError>,
    ) -> Result<(), SinkError> {
        let dir = self.partition_dir(table, date);
        let existing = existing_parts(&dir)?;
        if rows.is_empty() && existing.is_empty() {
            return Ok(());
        }
        table::sort_rows(&mut rows);
        let encode_err = |detail: String| SinkError::Encode {
            table: table.name(),
            date,
            detail,
        };
        let mut written = 0;
        if !rows.is_empty() {
            fs::create_dir_all(&dir).map_err(io("create the partition directory", &dir))?;
            for (part, chunk) in rows.chunks(MAX_ROWS_PER_FILE).enumerate() {
                let batch = to_batch(chunk, stamp).map_err(|e| encode_err(e.to_string()))?;
                let bytes = encode(&batch, table).map_err(|e| encode_err(e.to_string()))?;
                let name = part_name(part);
                let path = dir.join(&name);
                let tmp = dir.join(format!(".{name}.tmp-{}", stamp.run_id));
                write_synced(&tmp, &bytes)?;
                fs::rename(&tmp, &path).map_err(io("move into place", &path))?;
                report.files.push(WrittenFile {
                    path,
                    table,
                    date,
                    rows: chunk.len(),
                    bytes: bytes.len() as u64,
                });
                written += 1;
            }
        }
        for (index, path) in existing {
            if index >= written {
                fs::remove_file(&path).map_err(io("remove the outdated file", &path))?;
                report.removed.push(path);
            }
        }
        if written == 0 {
            // Only succeeds when nothing else is left in it; another tool's file stays.
            let _ = fs::remove_dir(&dir);
        }
        sync_dir(&dir);
        Ok(())
    }

    /// Appends rejected records to `<root>/_rejects/<run_id>.ndjson`, one JSON object a line.
    pub fn append_rejects(
        &self,
        run_id: &str,
        rejects: &[Reject],
    ) -> Result<Option<PathBuf>, SinkError> {
        if rejects.is_empty() {
            return Ok(None);
        }
        let dir = self.root.join("_rejects");
        fs::create_dir_all(&dir).map_err(io("create the rejects directory", &dir))?;
        let path = dir.join(format!("{run_id}.ndjson"));
        let mut buf = Vec::new();
        for r in rejects {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                run_id: &'a str,
                #[serde(flatten)]
                reject: &'a Reject,
            }
            serde_json::to_writer(&mut buf, &Line { run_id, reject: r })
                .expect("a reject always serializes");
            buf.push(b'\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open the rejects file", &path))?;
        f.write_all(&buf)
            .map_err(io("write the rejects file", &path))?;
        f.sync_all().map_err(io("flush the rejects file", &path))?;
        Ok(Some(path))
    }
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
        } else if name.starts_with(".part-") && name.contains(".parquet.tmp-") {
            let _ = fs::remove_file(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
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

/// Rows of a whole table, read back from the output root (all dates), for tests and tools.
pub fn read_table(
    root: &Path,
    table: Table,
) -> Result<Vec<(NaiveDate, RecordBatch)>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let dir = root.join(table.name());
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let Some(date) = d
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("date="))
            .and_then(|n| n.parse::<NaiveDate>().ok())
        else {
            continue;
        };
        let mut files: Vec<_> = fs::read_dir(&d)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            })
            .collect();
        files.sort();
        for f in files {
            let file = fs::File::open(&f)?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
                    .build()?;
            for batch in reader {
                out.push((date, batch?));
            }
        }
    }
    Ok(out)
}
