//! The manifest of a pull run, `_runs/<run_id>.json`: what the run did, assembled from its
//! stages' counts, with the exit status the binary gave it.

use std::collections::BTreeMap;

use attendance_core::chain::Chain;
use attendance_core::flatten::{FlattenCounts, ZoneCounts};
use attendance_core::plan::{EmployeeType, Status, Window};
use attendance_core::table::{SCHEMA_VERSION, Table};
use attendance_feishu::ClientStats;
use attendance_lake::commit::WrittenFile;
use attendance_lake::runs;
use attendance_lake::store::{Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::resync::{UnreadableEvent, UnresolvedRevert};
use crate::summary::RunSummary;

/// What became of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WindowState {
    #[serde(rename = "committed")]
    Committed,
    /// Committed by an interrupted run of the same backfill.
    #[serde(rename = "skipped")]
    Skipped,
    #[serde(rename = "failed")]
    Failed,
    /// The run stopped before it.
    #[serde(rename = "not reached")]
    NotReached,
}

/// A window and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct WindowOutcome {
    pub window: Window,
    pub outcome: WindowState,
}

/// A failed query, for the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct FailedQuery {
    pub window: Window,
    pub batch: usize,
    pub status: Status,
    pub first_user: String,
    pub last_user: String,
    pub error: String,
}

/// `_runs/<run_id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub run_id: String,
    pub schema_version: &'static str,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub exit_code: u8,
    pub output: String,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub windows: Vec<WindowOutcome>,
    pub users_source: &'static str,
    pub users: Vec<String>,
    pub statuses: Vec<Status>,
    pub employee_type: EmployeeType,
    pub requests: ClientStats,
    pub query_rate_per_second: f64,
    /// `null` for a run that was not paced (a replay).
    pub rate_limit_per_second: Option<u32>,
    /// Rows fetched and committed by this run, per table.
    pub rows_fetched: BTreeMap<Table, u64>,
    /// Rows in the files this run wrote, per table and date (kept rows of other users included).
    pub rows_in_files: BTreeMap<Table, BTreeMap<NaiveDate, u64>>,
    pub files: Vec<WrittenFile>,
    pub files_removed: Vec<String>,
    pub rejects: u64,
    pub dst: FlattenCounts,
    /// How zone names that are not IANA names were read.
    pub zones: ZonesRead,
    pub refused_users: Vec<String>,
    pub failed_queries: Vec<FailedQuery>,
    pub fatal: Option<String>,
    /// What the approval events landed since the last such run asked of this one (`null` when
    /// the run did not read them).
    pub events: Option<EventsOutcome>,
}

/// The aliases a run read zone names through, and the rows read other than by IANA name.
#[derive(Debug, Clone, Serialize)]
pub struct ZonesRead {
    /// Alias → the zone it is read as (canonical name).
    pub aliases: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rows: ZoneCounts,
}

/// A window re-read because of landed events, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ResyncedWindow {
    pub window: Window,
    pub users: Vec<String>,
    /// The events (ids) that asked for these users' dates in it.
    pub because_of: Vec<String>,
    pub outcome: WindowState,
}

/// The manifest's account of the event-driven resync.
#[derive(Debug, Clone, Serialize)]
pub struct EventsOutcome {
    /// Events received since the previous cursor.
    pub considered: usize,
    /// The receipt time of the latest of them (the cursor, once the run completes).
    pub through: Option<DateTime<Utc>>,
    pub windows: Vec<ResyncedWindow>,
    pub unresolved_reverts: Vec<UnresolvedRevert>,
    pub unreadable_events: Vec<UnreadableEvent>,
    pub without_user: Vec<String>,
}

impl Manifest {
    /// The manifest of a finished (or stopped) run that ends with `exit_code`.
    pub fn of(s: &RunSummary, exit_code: u8) -> Manifest {
        let (extracted, normalized, loaded) = (&s.extracted, &s.normalized, &s.loaded);
        let state_of = |w: &Window| {
            if loaded.skipped.contains(w) {
                WindowState::Skipped
            } else if loaded.failed.contains(w) {
                WindowState::Failed
            } else if s.committed(w) {
                WindowState::Committed
            } else {
                WindowState::NotReached
            }
        };
        let windows = s
            .windows
            .iter()
            .map(|w| WindowOutcome {
                window: *w,
                outcome: state_of(w),
            })
            .collect();
        let events = s.resync.as_ref().map(|r| EventsOutcome {
            considered: r.considered,
            through: r.through,
            windows: r
                .work
                .iter()
                .map(|work| ResyncedWindow {
                    window: work.window,
                    users: work.users.clone(),
                    because_of: work.because_of.clone(),
                    outcome: state_of(&work.window),
                })
                .collect(),
            unresolved_reverts: r.unresolved.clone(),
            unreadable_events: r.unreadable.clone(),
            without_user: r.without_user.clone(),
        });
        Manifest {
            run_id: s.run_id.clone(),
            schema_version: SCHEMA_VERSION,
            started_at: s.started_at,
            duration_seconds: s.duration.as_secs_f64(),
            exit_code,
            output: s.out.clone(),
            from: s.windows.first().map(|w| w.from),
            to: s.windows.last().map(|w| w.to),
            windows,
            users_source: s.users_source,
            users: s.user_ids.clone(),
            statuses: s.statuses.clone(),
            employee_type: s.employee_type,
            requests: extracted.requests,
            query_rate_per_second: extracted.request_rate(),
            rate_limit_per_second: extracted.rate_limit,
            rows_fetched: normalized.rows.clone(),
            rows_in_files: rows_by_date(&loaded.files),
            files: loaded.files.clone(),
            files_removed: loaded.files_removed.clone(),
            rejects: normalized.rejects,
            dst: normalized.dst.clone(),
            zones: ZonesRead {
                aliases: s.zone_aliases.clone(),
                rows: normalized.dst.zones.clone(),
            },
            refused_users: extracted.refused_users.iter().cloned().collect(),
            failed_queries: extracted
                .failures
                .iter()
                .map(|f| FailedQuery {
                    window: f.batch.window,
                    batch: f.batch.index,
                    status: f.batch.status,
                    first_user: f.batch.first_user.clone(),
                    last_user: f.batch.last_user.clone(),
                    error: Chain(&f.error).to_string(),
                })
                .collect(),
            fatal: s.fatal.as_ref().map(|e| Chain(e.as_ref()).to_string()),
            events,
        }
    }
}

/// Rows in the files per table and date, from the files list.
fn rows_by_date(files: &[WrittenFile]) -> BTreeMap<Table, BTreeMap<NaiveDate, u64>> {
    let mut rows: BTreeMap<Table, BTreeMap<NaiveDate, u64>> = BTreeMap::new();
    for f in files {
        *rows.entry(f.table).or_default().entry(f.date).or_default() += f.rows as u64;
    }
    rows
}

/// Writes the manifest of the run `summary` describes, ending with `exit_code`, to its output
/// root, and says where it is.
pub async fn write(summary: &RunSummary, exit_code: u8) -> Result<String, StoreError> {
    let store = Store::open(&summary.out)?;
    let manifest = Manifest::of(summary, exit_code);
    runs::write_manifest(&store, &summary.run_id, &manifest).await
}
