//! `external load`: the instance documents as tables, partitioned by the local date of each
//! instance's start: `external_instances`, `external_instance_tasks`, `external_instance_ccs`,
//! `external_i18n`.
//!
//! Invariants:
//! - Upsert by instance: every instance of the source replaces its rows in the four tables,
//!   wherever they were (an instance whose start moved to another date leaves no row behind),
//!   and every other row is kept, so a daily export of what changed is loaded as it is. With
//!   `full`, the source is also the whole truth for its approval codes: their rows whose
//!   instance it lacks are deleted. A rerun of the same source gives the same files.
//! - The partitions rewritten are those of the source's dates and those holding a replaced
//!   row, found by reading the two key columns of each table's files.
//! - Memory holds one date's instances and the source's instance ids, whatever the source's
//!   size: the valid instances are first written to a spill directory, a file per date, then
//!   each date is built and written in turn. (A source on an object store is fetched whole, and
//!   the rejected documents are held until their file is written.)
//! - The partitions of a date are written table after table; a run stopped between them is
//!   made whole by the next run of the same source.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use attendance_core::external::ExternalInstance;
use attendance_core::external::table::{ExternalTable, Rows};
use attendance_lake::runs;
use attendance_lake::store::Store;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::intake::{self, Intake, IntakeReport};
use crate::source::{Position, Source};
use crate::tables::{self, Change, Replaced};
use crate::{ExternalError, leased};

/// What a load needs.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// `--instances`: a path or an object store URL.
    pub source: String,
    /// The zone whose dates partition the instances.
    pub time_zone: Tz,
    pub run_id: String,
    pub lease_ttl: Duration,
    /// Where the instances wait, a file per date, before their date is written.
    pub spill_dir: PathBuf,
    /// The source is the whole truth for its approval codes: delete their rows whose instance
    /// it lacks.
    pub full: bool,
}

/// What a load did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadSummary {
    pub command: &'static str,
    pub run_id: String,
    pub source: String,
    pub time_zone: String,
    #[serde(flatten)]
    pub intake: IntakeReport,
    /// The approval codes of the source's instances.
    pub approval_codes: Vec<String>,
    /// The first and last date of the instances' starts.
    pub window: Option<(NaiveDate, NaiveDate)>,
    /// Whether the source was the whole truth for its approval codes.
    pub full: bool,
    /// Rows written, by table.
    pub rows: BTreeMap<&'static str, usize>,
    /// Partitions written and deleted.
    pub written: Vec<String>,
    pub deleted: Vec<String>,
}

/// Loads `request.source` into the tables of `store`.
pub async fn load(store: Arc<Store>, request: &LoadRequest) -> Result<LoadSummary, ExternalError> {
    let started: DateTime<Utc> = Utc::now();
    let source = Source::open(&request.source).await?;
    let spill = tempfile::Builder::new()
        .prefix("external-load-")
        .tempdir_in(&request.spill_dir)
        .map_err(|source| ExternalError::Spill {
            dir: request.spill_dir.display().to_string(),
            source,
        })?;
    let spill_path = spill.path().to_path_buf();
    let zone = request.time_zone;
    let (intake, spilled) =
        tokio::task::spawn_blocking(move || spill_by_date(&source, zone, &spill_path))
            .await
            .expect("the intake never panics")?;
    let Spilled {
        dates,
        codes,
        ids,
        skip,
    } = spilled;
    let skip = Arc::new(skip);
    let mut summary = LoadSummary {
        command: "load",
        run_id: request.run_id.clone(),
        source: request.source.clone(),
        time_zone: zone.name().to_owned(),
        intake: intake
            .report(&store, "load", &request.run_id, &request.source, started)
            .await?,
        approval_codes: codes.iter().cloned().collect(),
        window: dates
            .keys()
            .next()
            .zip(dates.keys().next_back())
            .map(|(a, b)| (*a, *b)),
        ..LoadSummary::default()
    };
    summary.full = request.full;
    if summary.window.is_some() || request.full {
        let replaced = Arc::new(Replaced::Instances {
            ids,
            all_of_codes: request.full.then_some(codes),
        });
        let spill_dir = spill.path().to_path_buf();
        let lease = crate::lease_of(ExternalTable::Instances);
        leased(
            &store,
            lease,
            &request.run_id,
            request.lease_ttl,
            async |lease| {
                let still_ours = || !lease.is_lost();
                // (table, date) to rewrite: the source's dates, and those holding a replaced row.
                let mut to_write: BTreeMap<NaiveDate, BTreeSet<ExternalTable>> = BTreeMap::new();
                for table in ExternalTable::DOCUMENTS {
                    let covered = tables::dates_covered(&store, table, &replaced).await?;
                    for date in covered.into_iter().chain(dates.keys().copied()) {
                        to_write.entry(date).or_default().insert(table);
                    }
                }
                let writers: Vec<_> = ExternalTable::DOCUMENTS.map(tables::writer_of).into();
                for (date, tables_of_date) in to_write {
                    let file = dates
                        .contains_key(&date)
                        .then(|| date_file(&spill_dir, date));
                    let skip = Arc::clone(&skip);
                    let batches = tokio::task::spawn_blocking(move || {
                        build_date(file.as_deref(), zone, &|line| skip.contains(&(date, line)))
                    })
                    .await
                    .expect("building never panics")?;
                    for ((table, batch), writer) in ExternalTable::DOCUMENTS
                        .into_iter()
                        .zip(batches)
                        .zip(&writers)
                    {
                        if !tables_of_date.contains(&table) {
                            continue;
                        }
                        *summary.rows.entry(table.name()).or_default() += batch.num_rows();
                        let change = tables::replace_partition(
                            &store,
                            writer,
                            table,
                            date,
                            Some(batch).filter(|b| b.num_rows() > 0),
                            Arc::clone(&replaced),
                            &still_ours,
                        )
                        .await?;
                        match change {
                            Change::Written { path, .. } => summary.written.push(path),
                            Change::Deleted { path } => summary.deleted.push(path),
                            Change::Unchanged => {}
                        }
                    }
                }
                Ok(())
            },
        )
        .await?;
    }
    runs::write_manifest(&store, &request.run_id, &summary).await?;
    Ok(summary)
}

struct Spilled {
    /// Instances per date.
    dates: BTreeMap<NaiveDate, usize>,
    codes: BTreeSet<String>,
    ids: HashSet<String>,
    /// Lines of the spill files taken back (copies superseded by a newer one).
    skip: HashSet<(NaiveDate, u32)>,
}

/// Most spill files open at once; the others are reopened to append.
const OPEN_SPILL_FILES: usize = 64;

fn date_file(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join(format!("{date}.ndjson"))
}

/// The local date of an instance's start in `zone`.
pub fn start_date(instance: &ExternalInstance, zone: Tz) -> NaiveDate {
    let utc = Utc
        .timestamp_millis_opt(instance.start_time.0)
        .single()
        .unwrap_or_default();
    zone.from_utc_datetime(&utc.naive_utc()).date_naive()
}

/// The valid instances written to their date's spill file as they come.
struct Spiller<'d> {
    dir: &'d Path,
    zone: Tz,
    open: HashMap<NaiveDate, BufWriter<File>>,
    spilled: Spilled,
    /// Lines written per date file.
    lines: HashMap<NaiveDate, u32>,
    failure: Option<std::io::Error>,
}

impl Spiller<'_> {
    fn ticket(date: NaiveDate, line: u32) -> u64 {
        (u64::from(date.num_days_from_ce() as u32) << 32) | u64::from(line)
    }

    fn write(&mut self, date: NaiveDate, instance: &ExternalInstance) -> std::io::Result<()> {
        if !self.open.contains_key(&date) {
            if self.open.len() >= OPEN_SPILL_FILES {
                for (_, mut writer) in self.open.drain() {
                    writer.flush()?;
                }
            }
            let file = File::options()
                .create(true)
                .append(true)
                .open(date_file(self.dir, date))?;
            self.open
                .insert(date, BufWriter::with_capacity(64 * 1024, file));
        }
        let writer = self.open.get_mut(&date).expect("opened above");
        serde_json::to_writer(&mut *writer, instance)?;
        writer.write_all(b"\n")
    }

    /// The instance on line `line` of `date`'s file.
    fn read_back(&mut self, date: NaiveDate, line: u32) -> std::io::Result<ExternalInstance> {
        if let Some(writer) = self.open.get_mut(&date) {
            writer.flush()?;
        }
        let reader = BufReader::new(File::open(date_file(self.dir, date))?);
        let text = reader
            .lines()
            .nth(line as usize)
            .ok_or_else(|| std::io::Error::other("a spilled line is missing"))??;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

impl intake::Accept for Spiller<'_> {
    fn accept(&mut self, _: Position, instance: ExternalInstance) -> u64 {
        let date = start_date(&instance, self.zone);
        *self.spilled.dates.entry(date).or_default() += 1;
        if !self.spilled.codes.contains(&instance.approval_code) {
            self.spilled.codes.insert(instance.approval_code.clone());
        }
        self.spilled.ids.insert(instance.instance_id.clone());
        let line = self.lines.entry(date).or_default();
        let ticket = Spiller::ticket(date, *line);
        *line += 1;
        if self.failure.is_none()
            && let Err(e) = self.write(date, &instance)
        {
            self.failure = Some(e);
        }
        ticket
    }

    fn retract(&mut self, ticket: u64) -> Option<ExternalInstance> {
        let date = NaiveDate::from_num_days_from_ce_opt((ticket >> 32) as i32)
            .expect("tickets are made from dates");
        let line = ticket as u32;
        self.spilled.skip.insert((date, line));
        if self.failure.is_some() {
            return None;
        }
        match self.read_back(date, line) {
            Ok(instance) => Some(instance),
            Err(e) => {
                self.failure = Some(e);
                None
            }
        }
    }
}

/// Reads the source, writing each valid instance to its date's spill file.
fn spill_by_date(
    source: &Source,
    zone: Tz,
    dir: &Path,
) -> Result<(Intake, Spilled), ExternalError> {
    let spill_error = |source| ExternalError::Spill {
        dir: dir.display().to_string(),
        source,
    };
    let mut spiller = Spiller {
        dir,
        zone,
        open: HashMap::new(),
        spilled: Spilled {
            dates: BTreeMap::new(),
            codes: BTreeSet::new(),
            ids: HashSet::new(),
            skip: HashSet::new(),
        },
        lines: HashMap::new(),
        failure: None,
    };
    let intake = intake::intake(source, &mut spiller)?;
    if let Some(e) = spiller.failure {
        return Err(spill_error(e));
    }
    for (_, mut writer) in spiller.open.drain() {
        writer.flush().map_err(spill_error)?;
    }
    Ok((intake, spiller.spilled))
}

fn for_each_spilled(
    file: &Path,
    skip: &dyn Fn(u32) -> bool,
    visit: &mut dyn FnMut(ExternalInstance),
) -> Result<(), ExternalError> {
    let spill_error = |source| ExternalError::Spill {
        dir: file.display().to_string(),
        source,
    };
    let reader = BufReader::new(File::open(file).map_err(spill_error)?);
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(spill_error)?;
        if skip(number as u32) {
            continue;
        }
        let instance: ExternalInstance = serde_json::from_str(&line)
            .map_err(|e| spill_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        visit(instance);
    }
    Ok(())
}

/// The four tables' rows of one date's spilled instances (empty batches without a file).
fn build_date(
    file: Option<&Path>,
    zone: Tz,
    skip: &dyn Fn(u32) -> bool,
) -> Result<[arrow_array::RecordBatch; 4], ExternalError> {
    let mut rows = ExternalTable::DOCUMENTS.map(Rows::new);
    if let Some(file) = file {
        for_each_spilled(file, skip, &mut |instance| {
            for table_rows in &mut rows {
                table_rows.add_instance(&instance, zone.name());
            }
        })?;
    }
    Ok(rows.map(|mut r| r.finish()))
}
