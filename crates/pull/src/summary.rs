//! What a run did, stage by stage: each stage keeps its own counts ([`Extracted`],
//! [`Normalized`], [`Loaded`]), and the [`RunSummary`] is assembled from them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use attendance_core::chain::Chain;
use attendance_core::flatten::FlattenCounts;
use attendance_core::plan::{Clipped, EmployeeType, Status, Window};
use attendance_core::table::Table;
use attendance_feishu::ClientStats;
use attendance_lake::commit::WrittenFile;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{Failure, RunError};
use crate::resync::ResyncPlan;

/// What the extract stage did: the queries asked and what became of them.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// Queries answered with data (split halves counted each).
    pub answered: u64,
    /// Queries that failed after their retries; their windows were not committed.
    pub failures: Vec<Failure>,
    /// Ids the platform refused (1220004 / 1220005); their rows were left as they were.
    pub refused_users: BTreeSet<String>,
    /// What the source sent, retries and token requests included.
    pub requests: ClientStats,
    /// From the first query sent to the last answer received.
    pub query_phase: Duration,
    /// The source's rate limit, requests per second; `None` when it is not paced (a replay).
    pub rate_limit: Option<u32>,
}

impl Extracted {
    /// Query requests per second while queries ran: the figure to hold against the rate limit.
    pub fn request_rate(&self) -> f64 {
        // n requests at a steady rate are n - 1 intervals apart: counting n over the span would
        // read above the limit for a short run (12 queries: 107%).
        let intervals = self.requests.query_requests.saturating_sub(1) as f64;
        intervals / self.query_phase.as_secs_f64().max(1e-9)
    }
}

/// What the normalize stage made of the committed windows' answers.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    /// Rows of each table (refused users' rows left out).
    pub rows: BTreeMap<Table, u64>,
    /// Records kept aside.
    pub rejects: u64,
    /// Rows whose times needed the DST rule.
    pub dst: FlattenCounts,
    /// Each user's zone as of their latest date placed in an answer (`flatten::note_zone`),
    /// whether or not their window committed: ids as queried → (date, IANA name).
    pub zones: BTreeMap<String, (NaiveDate, &'static str)>,
}

/// What the load stage did to the output root.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub files: Vec<WrittenFile>,
    /// Files deleted because their date has fewer parts, or no rows, now.
    pub files_removed: Vec<String>,
    /// Windows this run committed.
    pub committed: BTreeSet<Window>,
    /// Windows committed by an interrupted run of the same backfill, not fetched again.
    pub skipped: BTreeSet<Window>,
    /// Windows with a failed query: not written, their dates kept their data.
    pub failed: BTreeSet<Window>,
}

/// Everything a run did, for the summary, the manifest and the exit status.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub out: String,
    pub windows: Vec<Window>,
    pub batches: usize,
    /// Distinct users planned.
    pub users: usize,
    /// The users asked for, as given or listed.
    pub user_ids: Vec<String>,
    /// Where the users came from: `users file`, `attendance groups` or `contact tree`.
    pub users_source: &'static str,
    pub statuses: Vec<Status>,
    pub employee_type: EmployeeType,
    pub clipped: Option<Clipped>,
    pub extracted: Extracted,
    pub normalized: Normalized,
    pub loaded: Loaded,
    /// The error that stopped the run early, after the windows counted here were committed.
    pub fatal: Option<Arc<RunError>>,
    /// Where the run's manifest was written, once it is.
    pub manifest: Option<String>,
    /// Windows re-read for the landed events (outside `windows`), and the plan they came from.
    pub extra_windows: Vec<Window>,
    pub resync: Option<ResyncPlan>,
    /// The zone aliases the run read names through: alias → canonical name of its zone.
    pub zone_aliases: BTreeMap<String, String>,
}

/// How a run ended, before it becomes an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything fetched and committed.
    Complete,
    /// Refused users or failed windows; the rest committed.
    Partial,
    /// Stopped by an error after it started writing (see [`RunSummary::fatal`]).
    Stopped,
}

impl RunSummary {
    pub fn outcome(&self) -> Outcome {
        if self.fatal.is_some() {
            Outcome::Stopped
        } else if self.extracted.failures.is_empty() && self.extracted.refused_users.is_empty() {
            Outcome::Complete
        } else {
            Outcome::Partial
        }
    }

    /// Whether `window` was committed by this run.
    pub fn committed(&self, window: &Window) -> bool {
        self.loaded.committed.contains(window)
    }

    /// One line on what went wrong, when the run was not complete.
    pub fn problem(&self) -> Option<String> {
        if let Some(fatal) = &self.fatal {
            return Some(Chain(fatal.as_ref()).to_string());
        }
        let mut parts = Vec::new();
        let refused = &self.extracted.refused_users;
        if !refused.is_empty() {
            let ids: Vec<&str> = refused.iter().take(5).map(String::as_str).collect();
            let more = refused.len().saturating_sub(ids.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            parts.push(format!(
                "{} user{} refused by the platform (1220004/1220005): {}{more}",
                refused.len(),
                if refused.len() == 1 { "" } else { "s" },
                ids.join(", ")
            ));
        }
        let failures = &self.extracted.failures;
        if let Some(first) = failures.first() {
            parts.push(format!(
                "{} quer{} failed after retries, first: {first}",
                failures.len(),
                if failures.len() == 1 { "y" } else { "ies" }
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}
