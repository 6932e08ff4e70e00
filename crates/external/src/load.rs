//! `external load`: the instance documents as tables, partitioned by the local date of each
//! instance's start: `external_instances`, `external_instance_tasks`, `external_instance_ccs`,
//! `external_i18n`.
//!
//! Invariants:
//! - A source is the whole truth for its approval codes over the dates its instances start on:
//!   in every partition from its first date to its last, the rows of its approval codes are
//!   replaced by its rows, and every other row is kept. A rerun of the same source gives the
//!   same files.
//! - Memory holds one date's instances, whatever the source's size: the valid instances are
//!   first written to a spill directory, a file per date, then each date is built and written
//!   in turn.
//! - The partitions of a date are written table after table; a run stopped between them is
//!   made whole by the next run of the same source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use attendance_core::external::ExternalInstance;
use attendance_core::external::table::{ExternalTable, Rows};
use attendance_lake::runs;
use attendance_lake::store::Store;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::intake::{self, Intake, IntakeReport};
use crate::source::Source;
use crate::tables::{self, Change};
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
    /// The approval codes whose rows were replaced.
    pub approval_codes: Vec<String>,
    /// The first and last date of the instances' starts.
    pub window: Option<(NaiveDate, NaiveDate)>,
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
    let Spilled { dates, codes } = spilled;
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
    if let Some((first, last)) = summary.window {
        let codes = Arc::new(codes);
        let spill_dir = spill.path().to_path_buf();
        leased(&store, &request.run_id, request.lease_ttl, async |lease| {
            let still_ours = || !lease.is_lost();
            let mut all_dates: BTreeSet<NaiveDate> = dates.keys().copied().collect();
            for table in ExternalTable::DOCUMENTS {
                all_dates.extend(
                    tables::partition_dates(&store, table)
                        .await?
                        .into_iter()
                        .filter(|d| (first..=last).contains(d)),
                );
            }
            let writers: Vec<_> = ExternalTable::DOCUMENTS.map(tables::writer_of).into();
            for date in all_dates {
                let file = dates
                    .contains_key(&date)
                    .then(|| date_file(&spill_dir, date));
                let batches =
                    tokio::task::spawn_blocking(move || build_date(file.as_deref(), zone))
                        .await
                        .expect("building never panics")?;
                for ((table, batch), writer) in ExternalTable::DOCUMENTS
                    .into_iter()
                    .zip(batches)
                    .zip(&writers)
                {
                    *summary.rows.entry(table.name()).or_default() += batch.num_rows();
                    let change = tables::replace_partition(
                        &store,
                        writer,
                        table,
                        date,
                        Some(batch).filter(|b| b.num_rows() > 0),
                        Arc::clone(&codes),
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
        })
        .await?;
    }
    runs::write_manifest(&store, &request.run_id, &summary).await?;
    Ok(summary)
}

struct Spilled {
    /// Instances per date.
    dates: BTreeMap<NaiveDate, usize>,
    codes: BTreeSet<String>,
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
    let mut open: HashMap<NaiveDate, BufWriter<File>> = HashMap::new();
    let mut spilled = Spilled {
        dates: BTreeMap::new(),
        codes: BTreeSet::new(),
    };
    let mut failure: Option<std::io::Error> = None;
    let intake = intake::intake(source, &mut |_, instance| {
        if failure.is_some() {
            return;
        }
        let date = start_date(&instance, zone);
        *spilled.dates.entry(date).or_default() += 1;
        if !spilled.codes.contains(&instance.approval_code) {
            spilled.codes.insert(instance.approval_code.clone());
        }
        let written = (|| -> std::io::Result<()> {
            if !open.contains_key(&date) {
                if open.len() >= OPEN_SPILL_FILES {
                    for (_, mut writer) in open.drain() {
                        writer.flush()?;
                    }
                }
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(date_file(dir, date))?;
                open.insert(date, BufWriter::with_capacity(64 * 1024, file));
            }
            let writer = open.get_mut(&date).expect("opened above");
            serde_json::to_writer(&mut *writer, &instance)?;
            writer.write_all(b"\n")
        })();
        if let Err(e) = written {
            failure = Some(e);
        }
    })?;
    if let Some(e) = failure {
        return Err(spill_error(e));
    }
    for (_, mut writer) in open.drain() {
        writer.flush().map_err(spill_error)?;
    }
    Ok((intake, spilled))
}

fn for_each_spilled(
    file: &Path,
    visit: &mut dyn FnMut(ExternalInstance),
) -> Result<(), ExternalError> {
    let spill_error = |source| ExternalError::Spill {
        dir: file.display().to_string(),
        source,
    };
    let reader = BufReader::new(File::open(file).map_err(spill_error)?);
    for line in reader.lines() {
        let line = line.map_err(spill_error)?;
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
) -> Result<[arrow_array::RecordBatch; 4], ExternalError> {
    let mut rows = ExternalTable::DOCUMENTS.map(Rows::new);
    if let Some(file) = file {
        for_each_spilled(file, &mut |instance| {
            for table_rows in &mut rows {
                table_rows.add_instance(&instance, zone.name());
            }
        })?;
    }
    Ok(rows.map(|mut r| r.finish()))
}
