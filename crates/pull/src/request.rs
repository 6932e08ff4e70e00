//! What a run is asked to do, and the live counters it keeps for whoever watches it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use attendance_core::plan::{self, EmployeeType, Plan, PlanError, Status};
use attendance_core::tz::ZoneAliases;
use attendance_lake::spill::SpillConfig;
use chrono::NaiveDate;

/// Where the users of a run come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    /// Exactly these ids (a users file, or a recording's).
    List(Vec<String>),
    /// Every member of every attendance group.
    Groups,
    /// Every user of the contact department tree, attendance group or not.
    Contact,
}

impl Users {
    /// Where the users came from, for the summary and the manifest.
    pub fn source_name(&self) -> &'static str {
        match self {
            Users::List(_) => "users file",
            Users::Groups => "attendance groups",
            Users::Contact => "contact tree",
        }
    }
}

/// What to back-fill.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub users: Users,
    pub employee_type: EmployeeType,
    pub statuses: Vec<Status>,
    /// Output root: a directory or an object store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
    pub out: String,
    /// The platform's today: dates after `today + 1` are not asked for.
    pub today: NaiveDate,
    /// Queries in flight at once.
    pub concurrency: usize,
    /// Ignore what an interrupted run of the same backfill committed, and redo every window.
    pub restart: bool,
    /// Lifetime of the lease on the output root; renewed every third of it while the run lives.
    pub lease_ttl: Duration,
    /// Counters the caller may watch while the run goes on.
    pub progress: Arc<RunProgress>,
    /// Set (e.g. on SIGTERM) to stop early: no new query is sent, the commits under way finish,
    /// progress and the manifest are written and the lease is released.
    pub stop: Arc<AtomicBool>,
    /// Keep every query answer in this directory (see [`crate::recording`]).
    pub record_to: Option<PathBuf>,
    /// Where a window's rows go past the memory budget.
    pub spill: SpillConfig,
    /// Also re-read what the approval events landed since the last such run name outside
    /// `from..=to` (see [`crate::resync`]).
    pub with_events: bool,
    /// Zone names read as others (`--zone-alias`), before any other reading of them.
    pub zone_aliases: Arc<ZoneAliases>,
}

impl BackfillRequest {
    /// The queries this request makes for `users`: its dates, clipped to the platform's
    /// today + 1, in windows, the users in batches, times its statuses.
    pub fn plan(&self, users: &[String]) -> Result<Plan, PlanError> {
        plan::plan(self.from, self.to, users, &self.statuses, self.today)
    }
}

/// Live counters of a run, for progress bars and lines. Totals are known once users are listed.
#[derive(Debug, Default)]
pub struct RunProgress {
    pub(crate) windows_total: AtomicU64,
    pub(crate) windows_done: AtomicU64,
    pub(crate) queries_total: AtomicU64,
    pub(crate) queries_done: AtomicU64,
    pub(crate) rows: AtomicU64,
}

/// A consistent-enough reading of [`RunProgress`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressSnapshot {
    pub windows_total: u64,
    pub windows_done: u64,
    pub queries_total: u64,
    pub queries_done: u64,
    pub rows: u64,
}

impl RunProgress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            windows_total: self.windows_total.load(Ordering::Relaxed),
            windows_done: self.windows_done.load(Ordering::Relaxed),
            queries_total: self.queries_total.load(Ordering::Relaxed),
            queries_done: self.queries_done.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
        }
    }
}
