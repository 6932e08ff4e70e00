//! A window's fresh rows while its queries come in: held in memory up to a budget, spilled to
//! Arrow IPC files beyond it, and handed to the commit one `(table, date)` at a time.
//!
//! Invariants:
//! - Memory does not grow with the window: past [`FreshRows`]'s budget the rows held are split
//!   by date and written to `<spill dir>/<table>-<n>.arrow` (an Arrow IPC file, one batch a
//!   date, read back by index), so a window of 31 days × many thousand users costs the budget
//!   plus one date's rows at commit, not the whole window. One file a table and flush, not one a
//!   date: creating and deleting thousands of small files cost a fifth of a run's CPU in ext4.
//! - Nothing is lost or reordered by spilling: a date's rows are the held ones plus every file of
//!   that date, sorted into the canonical order of a file before they are handed out.
//! - Spill files live in a temporary directory of the run's, removed when the rows are dropped
//!   (also on error or when the run is stopped).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::ArrowError;
use arrow_select::interleave::interleave_record_batch;
use chrono::NaiveDate;

use attendance_core::flatten::AnswerRows;
use attendance_core::table::{self, Table};

/// Why a window's rows could not go to disk or come back from it.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error(
        "cannot spill fresh rows to {}; free space there or point --spill-dir at another local directory",
        path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read back the rows spilled to {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the rows spilled to {} lack batch {index}", path.display())]
    MissingBatch { path: PathBuf, index: usize },
    #[error("cannot gather the {table} rows of {date}")]
    Gather {
        table: &'static str,
        date: NaiveDate,
        #[source]
        source: ArrowError,
    },
}

/// Where and when a window's rows go to disk.
#[derive(Debug, Clone)]
pub struct SpillConfig {
    /// Parent of the run's spill directories (the system's temporary directory by default).
    pub dir: PathBuf,
    /// Bytes of Arrow buffers a window may hold in memory before they are spilled.
    pub budget: usize,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            dir: std::env::temp_dir(),
            budget: DEFAULT_BUDGET,
        }
    }
}

/// Spill files of one table kept open at once while its dates are handed out.
const MAX_OPEN_SPILL_FILES: usize = 64;

/// 8 MiB: about 20,000 rows, a few percent of the process's footprint.
pub const DEFAULT_BUDGET: usize = 8 << 20;

/// The fresh rows of one window.
#[derive(Debug)]
pub struct FreshRows {
    config: SpillConfig,
    /// Answers' batches not spilled yet, with each row's date, by table.
    held: BTreeMap<Table, Vec<(RecordBatch, Vec<NaiveDate>)>>,
    held_bytes: usize,
    rows: BTreeMap<Table, usize>,
    spilled: Option<Spilled>,
    /// Users whose rows are dropped when handed out (refused in part of the window).
    excluded: HashSet<String>,
}

#[derive(Debug)]
struct Spilled {
    dir: tempfile::TempDir,
    /// Every spill file of a table, and where each date's batches are in them.
    tables: BTreeMap<Table, SpilledTable>,
    flushes: usize,
}

#[derive(Debug, Default)]
struct SpilledTable {
    files: Vec<PathBuf>,
    /// date → (index into `files`, batch index in that file)
    batches: BTreeMap<NaiveDate, Vec<(usize, usize)>>,
}

impl FreshRows {
    pub fn new(config: SpillConfig) -> Self {
        FreshRows {
            config,
            held: BTreeMap::new(),
            held_bytes: 0,
            rows: BTreeMap::new(),
            spilled: None,
            excluded: HashSet::new(),
        }
    }

    /// Adds one answer's rows of one table; spills what is held once past the budget.
    pub fn add(&mut self, rows: AnswerRows) -> Result<(), SpillError> {
        let AnswerRows {
            table,
            batch,
            dates,
        } = rows;
        *self.rows.entry(table).or_default() += batch.num_rows();
        self.held_bytes += batch.get_array_memory_size();
        self.held.entry(table).or_default().push((batch, dates));
        if self.held_bytes > self.config.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Rows added for `table` (before any exclusion).
    pub fn rows(&self, table: Table) -> usize {
        self.rows.get(&table).copied().unwrap_or(0)
    }

    /// Whether any rows went to disk.
    pub fn spilled(&self) -> bool {
        self.spilled.is_some()
    }

    /// Drops the rows of these users from what is handed out.
    pub fn exclude_users(&mut self, users: impl IntoIterator<Item = String>) {
        self.excluded.extend(users);
    }

    /// Called once the window is complete, before it waits for the commit under way: if its rows
    /// went to disk already, the rows still held follow them, so that a window waiting for and
    /// under commit (while the next one is fetched and fills its own budget) holds one date at a
    /// time, not up to a budget. A window that never reached the budget stays in memory:
    /// spilling it would only cost time.
    pub fn seal(&mut self) -> Result<(), SpillError> {
        if self.spilled.is_some() && !self.held.is_empty() {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes every held row to the spill directory: one file per table, a batch per date.
    fn spill(&mut self) -> Result<(), SpillError> {
        if self.spilled.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("attendance-sync-spill-")
                .tempdir_in(&self.config.dir)
                .map_err(|e| write_error(&self.config.dir, e))?;
            self.spilled = Some(Spilled {
                dir,
                tables: BTreeMap::new(),
                flushes: 0,
            });
        }
        let spilled = self.spilled.as_mut().expect("created above");
        spilled.flushes += 1;
        let flush = spilled.flushes;
        for (table, parts) in std::mem::take(&mut self.held) {
            let mut grouped = Grouped::new(parts);
            let path = spilled
                .dir
                .path()
                .join(format!("{}-{flush:06}.arrow", table.name()));
            let dates: Vec<NaiveDate> = grouped.dates().collect();
            let mut writer = IpcFile::create(&path, table)?;
            let mut written = Vec::with_capacity(dates.len());
            for date in dates {
                if let Some(batch) = grouped.take(table, date)? {
                    writer.write(&batch)?;
                    written.push(date);
                }
            }
            writer.finish()?;
            // Only a complete file is known to the rows handed out later.
            let entry = spilled.tables.entry(table).or_default();
            let file = entry.files.len();
            for (index, date) in written.into_iter().enumerate() {
                entry.batches.entry(date).or_default().push((file, index));
            }
            entry.files.push(path);
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// Hands out one table: its held rows split by date, and where its spilled rows are.
    pub fn take_table(&mut self, table: Table) -> TableRows {
        let held = Grouped::new(self.held.remove(&table).unwrap_or_default());
        let spilled = self
            .spilled
            .as_mut()
            .and_then(|s| s.tables.remove(&table))
            .unwrap_or_default();
        TableRows {
            table,
            held,
            readers: spilled.files.iter().map(|_| None).collect(),
            spilled,
            excluded: self.excluded.clone(),
        }
    }
}

/// One table's fresh rows, handed out date by date.
pub struct TableRows {
    table: Table,
    held: Grouped,
    spilled: SpilledTable,
    /// A reader per spill file (same index), opened at its first read and kept: a file holds a
    /// batch for each of the window's dates, and opening it (footer, schema) for each cost more
    /// than the read. At most [`MAX_OPEN_SPILL_FILES`] are open.
    readers: Vec<Option<FileReader<BufReader<File>>>>,
    excluded: HashSet<String>,
}

impl Drop for TableRows {
    /// The table's spill files are read once: free their space as soon as it is done.
    fn drop(&mut self) {
        self.readers.clear();
        for path in &self.spilled.files {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl TableRows {
    /// The rows of `date`, sorted into the canonical order of a file; `None` when there are none.
    /// Spilled and held rows are copied once, straight into the sorted batch.
    pub fn date(&mut self, date: NaiveDate) -> Result<Option<RecordBatch>, SpillError> {
        let mut read = Vec::new();
        for (file, index) in self.spilled.batches.remove(&date).unwrap_or_default() {
            read.push(self.read(file, index)?);
        }
        let mut sources: Vec<&RecordBatch> = read.iter().collect();
        let mut rows: Vec<(usize, usize)> = table::every_row(&sources).collect();
        // Only the held batches with rows of this date take part: the copy looks at every
        // source of every column.
        let mut source_of_held = BTreeMap::new();
        for (b, r) in self.held.rows.remove(&date).unwrap_or_default() {
            let source = *source_of_held.entry(b).or_insert_with(|| {
                sources.push(&self.held.batches[b]);
                sources.len() - 1
            });
            rows.push((source, r));
        }
        if !self.excluded.is_empty() {
            let users = sources
                .iter()
                .map(|b| table::column::<StringArray>(b, "user_id"))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| gather_error(self.table, date, e))?;
            rows.retain(|&(b, r)| {
                let users = users[b];
                users.is_null(r) || !self.excluded.contains(users.value(r))
            });
        }
        if rows.is_empty() {
            return Ok(None);
        }
        table::sorted(&sources, rows)
            .map(Some)
            .map_err(|e| gather_error(self.table, date, e))
    }

    /// Batch `index` of spill file `file`.
    fn read(&mut self, file: usize, index: usize) -> Result<RecordBatch, SpillError> {
        let path = &self.spilled.files[file];
        if self.readers[file].is_none()
            && self.readers.iter().flatten().count() >= MAX_OPEN_SPILL_FILES
        {
            // A tiny `--spill-after-mib` makes many files, each holding most dates: do not
            // run into the limit of open files, reopen instead.
            self.readers.iter_mut().for_each(|r| *r = None);
        }
        let reader = match &mut self.readers[file] {
            Some(reader) => reader,
            slot => {
                let opened = File::open(path).map_err(|e| read_error(path, e))?;
                slot.insert(
                    FileReader::try_new(BufReader::new(opened), None)
                        .map_err(|e| read_error(path, e))?,
                )
            }
        };
        reader.set_index(index).map_err(|e| read_error(path, e))?;
        match reader.next() {
            Some(batch) => batch.map_err(|e| read_error(path, e)),
            None => Err(SpillError::MissingBatch {
                path: path.clone(),
                index,
            }),
        }
    }
}

/// Answers' batches of one table with where each date's rows are in them. A date's batch is
/// built from its rows wherever they are (`interleave`), so regrouping copies a date at a time,
/// never the whole table (as concatenating first and then taking each date would).
#[derive(Default)]
struct Grouped {
    batches: Vec<RecordBatch>,
    /// date → (batch, row) of each of its rows
    rows: BTreeMap<NaiveDate, Vec<(usize, usize)>>,
}

impl Grouped {
    fn new(parts: Vec<(RecordBatch, Vec<NaiveDate>)>) -> Grouped {
        let mut grouped = Grouped::default();
        for (b, (batch, dates)) in parts.into_iter().enumerate() {
            for (row, date) in dates.into_iter().enumerate() {
                grouped.rows.entry(date).or_default().push((b, row));
            }
            grouped.batches.push(batch);
        }
        grouped
    }

    fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.rows.keys().copied()
    }

    /// The rows of `date`, in the order they were added.
    fn take(&mut self, table: Table, date: NaiveDate) -> Result<Option<RecordBatch>, SpillError> {
        let Some(rows) = self.rows.remove(&date) else {
            return Ok(None);
        };
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        interleave_record_batch(&batches, &rows)
            .map(Some)
            .map_err(|e| gather_error(table, date, e))
    }
}

/// A spill file being written.
struct IpcFile<'p> {
    path: &'p Path,
    writer: FileWriter<BufWriter<File>>,
}

impl<'p> IpcFile<'p> {
    fn create(path: &'p Path, table: Table) -> Result<Self, SpillError> {
        let file = File::create(path).map_err(|e| write_error(path, e))?;
        let writer = FileWriter::try_new(BufWriter::new(file), &table.schema())
            .map_err(|e| write_error(path, e))?;
        Ok(IpcFile { path, writer })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), SpillError> {
        self.writer
            .write(batch)
            .map_err(|e| write_error(self.path, e))
    }

    fn finish(mut self) -> Result<(), SpillError> {
        self.writer.finish().map_err(|e| write_error(self.path, e))
    }
}

fn write_error(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SpillError {
    SpillError::Write {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn read_error(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SpillError {
    SpillError::Read {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn gather_error(table: Table, date: NaiveDate, source: ArrowError) -> SpillError {
    SpillError::Gather {
        table: table.name(),
        date,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attendance_core::answer::QueryData;
    use attendance_core::flatten;
    use attendance_core::plan::{Status, Window};
    use attendance_core::table::RunStamp;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// One answer of `users` × the first days of September 2026: an out and a leave a user-date.
    fn answer(users: &[&str], days: u32) -> Vec<AnswerRows> {
        let mut elements = Vec::new();
        for user in users {
            for day in 1..=days {
                elements.push(format!(
                    r#"{{"user_id":"{user}","date":"202609{day:02}","time_zone":"Asia/Tokyo",
                    "outs":[{{"approval_id":"o-{user}-{day}","start_time":"2026-09-{day:02} 09:00:00"}}],
                    "leaves":[{{"approval_id":"l-{user}-{day}","reason":"r"}}]}}"#
                ));
            }
        }
        let json = format!(r#"{{"user_approvals":[{}]}}"#, elements.join(","));
        let data = QueryData::from(serde_json::value::RawValue::from_string(json).unwrap());
        let window = Window {
            from: d("2026-09-01"),
            to: d("2026-09-30"),
        };
        let batch: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let stamp = RunStamp {
            run_id: "r".into(),
            ingested_at_micros: 0,
        };
        flatten::flatten(
            &data,
            Status::APPROVED,
            window,
            &batch,
            &stamp,
            &Default::default(),
        )
        .unwrap()
        .rows
    }

    fn fill(config: SpillConfig) -> FreshRows {
        let mut fresh = FreshRows::new(config);
        // Users arrive out of order: the commit must still see them sorted.
        for users in [&["u3", "u1"][..], &["u2"], &["u0", "u4"]] {
            for rows in answer(users, 5) {
                fresh.add(rows).unwrap();
            }
        }
        fresh
    }

    fn handed_out(fresh: &mut FreshRows, table: Table) -> Vec<(NaiveDate, RecordBatch)> {
        let mut rows = fresh.take_table(table);
        (1..=30)
            .map(|day| d(&format!("2026-09-{day:02}")))
            .filter_map(|date| rows.date(date).unwrap().map(|b| (date, b)))
            .collect()
    }

    fn users(batch: &RecordBatch) -> Vec<String> {
        let a = batch.column(0).as_any().downcast_ref::<StringArray>();
        a.unwrap().iter().map(|u| u.unwrap().to_string()).collect()
    }

    #[test]
    fn spilled_rows_come_back_the_same_sorted_by_date() {
        let dir = tempfile::tempdir().unwrap();
        let in_memory = SpillConfig {
            dir: dir.path().to_path_buf(),
            budget: usize::MAX,
        };
        let on_disk = SpillConfig {
            budget: 0,
            ..in_memory.clone()
        };
        let mut held = fill(in_memory);
        let mut spilled = fill(on_disk);
        assert!(!held.spilled() && spilled.spilled());
        assert_eq!(spilled.rows(Table::Outs), 25);
        // One directory of the run's, with one file per (table, date) and answer.
        let runs: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(runs.len(), 1);
        for table in [Table::Outs, Table::Leaves] {
            let a = handed_out(&mut held, table);
            let b = handed_out(&mut spilled, table);
            assert_eq!(a.len(), 5);
            assert_eq!(a, b, "{}", table.name());
            for (_, batch) in &b {
                assert_eq!(users(batch), ["u0", "u1", "u2", "u3", "u4"]);
            }
        }
        drop(spilled);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Spilled once after the first answer, the rest held: a date's rows come from both.
    fn part_spilled(dir: &Path) -> FreshRows {
        let mut fresh = FreshRows::new(SpillConfig {
            dir: dir.to_path_buf(),
            budget: usize::MAX,
        });
        for (i, users) in [&["u3", "u1"][..], &["u2"], &["u0", "u4"]]
            .into_iter()
            .enumerate()
        {
            for rows in answer(users, 5) {
                fresh.add(rows).unwrap();
            }
            if i == 0 {
                fresh.spill().unwrap();
            }
        }
        fresh
    }

    #[test]
    fn rows_part_spilled_part_held_come_back_as_one_sorted_batch_sealed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut all_held = fill(SpillConfig {
            dir: dir.path().to_path_buf(),
            budget: usize::MAX,
        });
        let mut part = part_spilled(dir.path());
        let mut sealed = part_spilled(dir.path());
        assert!(part.spilled() && !part.held.is_empty());
        sealed.seal().unwrap();
        assert!(
            sealed.held.is_empty(),
            "sealing a spilled window spills what it holds"
        );
        // A window that never spilled stays in memory when sealed.
        all_held.seal().unwrap();
        assert!(!all_held.spilled());
        for table in [Table::Outs, Table::Leaves] {
            let expected = handed_out(&mut all_held, table);
            assert_eq!(expected.len(), 5);
            for (_, batch) in &expected {
                assert_eq!(users(batch), ["u0", "u1", "u2", "u3", "u4"]);
            }
            assert_eq!(handed_out(&mut part, table), expected, "{}", table.name());
            assert_eq!(handed_out(&mut sealed, table), expected, "{}", table.name());
        }
    }

    #[test]
    fn excluded_users_are_not_handed_out_from_spilled_or_held_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut fresh = part_spilled(dir.path());
        fresh.exclude_users(["u1".to_string(), "u4".to_string()]);
        let dates = handed_out(&mut fresh, Table::Outs);
        assert_eq!(dates.len(), 5);
        for (_, batch) in dates {
            assert_eq!(users(&batch), ["u0", "u2", "u3"]);
        }
    }

    #[test]
    fn a_window_of_more_spill_files_than_may_stay_open_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut fresh = FreshRows::new(SpillConfig {
            dir: dir.path().to_path_buf(),
            budget: 0,
        });
        let all: Vec<String> = (0..MAX_OPEN_SPILL_FILES + 6)
            .map(|i| format!("u{i:03}"))
            .collect();
        // One user an answer, in reverse: a file each, and each file holds every date.
        for user in all.iter().rev() {
            for rows in answer(&[user.as_str()], 5) {
                fresh.add(rows).unwrap();
            }
        }
        let dates = handed_out(&mut fresh, Table::Outs);
        assert_eq!(dates.len(), 5);
        for (_, batch) in &dates {
            assert_eq!(users(batch), all);
        }
    }

    #[test]
    fn excluded_users_are_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut fresh = fill(SpillConfig {
            dir: dir.path().to_path_buf(),
            budget: 0,
        });
        fresh.exclude_users(["u1".to_string(), "u4".to_string()]);
        for (_, batch) in handed_out(&mut fresh, Table::Outs) {
            assert_eq!(users(&batch), ["u0", "u2", "u3"]);
        }
    }

    #[test]
    fn an_unusable_spill_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let mut fresh = FreshRows::new(SpillConfig {
            dir: file.clone(),
            budget: 0,
        });
        let err = answer(&["u1"], 1)
            .into_iter()
            .map(|rows| fresh.add(rows))
            .find_map(Result::err)
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("--spill-dir"), "{msg}");
    }
}
