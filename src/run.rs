//! Run: drives one backfill through plan → queries → flatten → sink and accounts for it.
//!
//! Invariants:
//! - A window is committed only when every query of it (every batch × status) succeeded; a window
//!   with a failed query is not written at all, so its dates keep the data they had and no date is
//!   ever replaced by a partial picture of it.
//! - A failed window does not stop the others; the run ends with [`RunSummary::failures`] and exit
//!   code 3. Errors that would recur on every request (credentials, permissions, a malformed
//!   request) stop the run at once, after the windows already committed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;

use crate::flatten::{self, FlattenCounts, Reject, Tables};
use crate::plan::{self, Clipped, EmployeeType, Plan, PlanError, Status, Window};
use crate::platform::model::QueryRequest;
use crate::platform::{Client, ClientStats, PlatformError};
use crate::sink::{LocalSink, SinkError, WrittenFile};
use crate::table::{RunStamp, Table};

/// What to back-fill.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub users: Vec<String>,
    pub employee_type: EmployeeType,
    pub statuses: Vec<Status>,
    pub out: PathBuf,
    /// The platform's today: dates after `today + 1` are not asked for.
    pub today: NaiveDate,
    /// Queries in flight at once.
    pub concurrency: usize,
}

/// Which part of the plan a query covered, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    pub window: Window,
    /// 1-based, of `batches`.
    pub index: usize,
    pub batches: usize,
    pub first_user: String,
    pub last_user: String,
    pub users: usize,
    pub status: Status,
}

impl fmt::Display for BatchRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "window {}, batch {}/{} ({} users, {}..{}), status {}",
            self.window,
            self.index,
            self.batches,
            self.users,
            self.first_user,
            self.last_user,
            self.status.code()
        )
    }
}

/// A query that failed after its retries; its window was not committed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub batch: BatchRef,
    pub error: PlatformError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.batch, self.error)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("writing output: {0}")]
    Sink(#[from] SinkError),
    #[error("{batch}: {error}")]
    Fatal {
        batch: Box<BatchRef>,
        error: PlatformError,
    },
}

impl RunError {
    /// Exit code: 2 for what the operator must fix in the command or its configuration, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Plan(_) => 2,
            RunError::Fatal { error, .. } if matches!(error.code(), Some(10003 | 10014)) => 2,
            _ => 1,
        }
    }
}

/// Everything a run did, for the summary and the exit code.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub out: PathBuf,
    pub windows: Vec<Window>,
    pub windows_committed: usize,
    pub batches: usize,
    pub users: usize,
    pub statuses: Vec<Status>,
    pub clipped: Option<Clipped>,
    pub rows: BTreeMap<Table, u64>,
    pub files: Vec<WrittenFile>,
    pub files_removed: usize,
    pub rejects: u64,
    pub rejects_file: Option<PathBuf>,
    pub dst: FlattenCounts,
    pub client: ClientStats,
    pub failures: Vec<Failure>,
}

impl RunSummary {
    /// 0 when everything was fetched and written, 3 when some windows failed.
    pub fn exit_code(&self) -> u8 {
        if self.failures.is_empty() { 0 } else { 3 }
    }

    /// Query requests per second over the run.
    pub fn request_rate(&self) -> f64 {
        self.client.query_requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = |f: &mut fmt::Formatter<'_>, k: &str, v: &dyn fmt::Display| {
            writeln!(f, "  {k:<18} {v}")
        };
        writeln!(f, "run {}", self.run_id)?;
        if let Some(c) = self.clipped {
            w(
                f,
                "range clipped",
                &format!(
                    "--to {} → {} (the platform's today + 1)",
                    c.requested_to, c.clipped_to
                ),
            )?;
        }
        let (first, last) = (self.windows.first(), self.windows.last());
        if let (Some(first), Some(last)) = (first, last) {
            w(
                f,
                "dates",
                &format!(
                    "{}..{} in {} windows ({} committed)",
                    first.from,
                    last.to,
                    self.windows.len(),
                    self.windows_committed
                ),
            )?;
        }
        let statuses: Vec<String> = self.statuses.iter().map(|s| s.code().to_string()).collect();
        w(
            f,
            "users",
            &format!(
                "{} in {} batches, statuses {}",
                self.users,
                self.batches,
                statuses.join(",")
            ),
        )?;
        for table in Table::ALL {
            w(
                f,
                table.name(),
                &format!("{} rows", self.rows.get(&table).copied().unwrap_or(0)),
            )?;
        }
        w(
            f,
            "files",
            &format!(
                "{} written, {} removed",
                self.files.len(),
                self.files_removed
            ),
        )?;
        match &self.rejects_file {
            Some(p) => w(
                f,
                "rejects",
                &format!("{} (see {})", self.rejects, p.display()),
            )?,
            None => w(f, "rejects", &self.rejects)?,
        }
        w(
            f,
            "dst adjusted",
            &format!(
                "{} in a gap (moved forward), {} ambiguous (earlier taken)",
                self.dst.dst_gap_shifted, self.dst.dst_ambiguous_earlier
            ),
        )?;
        w(
            f,
            "requests",
            &format!(
                "{} queries ({:.1}/s), {} token, {} rate-limited, {} retries",
                self.client.query_requests,
                self.request_rate(),
                self.client.token_requests,
                self.client.rate_limited,
                self.client.retries
            ),
        )?;
        w(
            f,
            "duration",
            &format!("{:.2}s", self.duration.as_secs_f64()),
        )?;
        w(f, "output", &self.out.display())?;
        if !self.failures.is_empty() {
            w(
                f,
                "FAILED",
                &format!(
                    "{} queries; their windows kept their previous data:",
                    self.failures.len()
                ),
            )?;
            for failure in &self.failures {
                writeln!(f, "    {failure}")?;
            }
        }
        Ok(())
    }
}

/// A fresh run id: UTC start time plus random bits, sortable and unique across hosts.
pub fn new_run_id(started: DateTime<Utc>) -> String {
    format!(
        "{}-{:08x}",
        started.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Runs a backfill of `request` against `client`.
pub async fn backfill(client: &Client, request: &BackfillRequest) -> Result<RunSummary, RunError> {
    let started_at = Utc::now();
    let clock = std::time::Instant::now();
    let run_id = new_run_id(started_at);
    let plan: Plan = plan::plan(
        request.from,
        request.to,
        &request.users,
        &request.statuses,
        request.today,
    )?;
    if let Some(c) = plan.clipped {
        tracing::warn!(requested_to = %c.requested_to, clipped_to = %c.clipped_to,
            "the platform refuses dates after today + 1: the range is clipped");
    }
    let sink = LocalSink::open(&request.out)?;
    let stamp = RunStamp {
        run_id: run_id.clone(),
        ingested_at_micros: started_at.timestamp_micros(),
    };
    tracing::info!(
        run_id,
        windows = plan.windows.len(),
        batches = plan.batches.len(),
        requests = plan.requests(),
        "backfill planned"
    );

    let mut summary = RunSummary {
        run_id: run_id.clone(),
        started_at,
        duration: Duration::ZERO,
        out: request.out.clone(),
        windows: plan.windows.clone(),
        windows_committed: 0,
        batches: plan.batches.len(),
        users: plan.users(),
        statuses: plan.statuses.clone(),
        clipped: plan.clipped,
        rows: BTreeMap::new(),
        files: Vec::new(),
        files_removed: 0,
        rejects: 0,
        rejects_file: None,
        dst: FlattenCounts::default(),
        client: ClientStats::default(),
        failures: Vec::new(),
    };

    for &window in &plan.windows {
        let outcome = fetch_window(client, request, &plan, window).await;
        summary.client = client.stats();
        let fetched = match outcome {
            Ok(f) => f,
            Err(WindowError::Fatal(batch, error)) => {
                summary.duration = clock.elapsed();
                return Err(RunError::Fatal { batch, error });
            }
            Err(WindowError::Failed(failures)) => {
                for f in &failures {
                    tracing::error!(failure = %f, "query failed; window not committed");
                }
                summary.failures.extend(failures);
                continue;
            }
        };
        for table in Table::ALL {
            *summary.rows.entry(table).or_default() += fetched.tables.rows(table) as u64;
        }
        summary.dst.dst_gap_shifted += fetched.counts.dst_gap_shifted;
        summary.dst.dst_ambiguous_earlier += fetched.counts.dst_ambiguous_earlier;
        summary.rejects += fetched.rejects.len() as u64;
        if let Some(path) = sink.append_rejects(&run_id, &fetched.rejects)? {
            summary.rejects_file = Some(path);
        }
        let sink_ref = &sink;
        let stamp_ref = &stamp;
        let report = tokio::task::block_in_place(move || {
            sink_ref.commit_window(window, fetched.tables, stamp_ref)
        })?;
        summary.files_removed += report.removed.len();
        summary.files.extend(report.files);
        summary.windows_committed += 1;
        tracing::info!(run_id, %window, "window committed");
    }
    summary.client = client.stats();
    summary.duration = clock.elapsed();
    Ok(summary)
}

struct Fetched {
    tables: Tables,
    rejects: Vec<Reject>,
    counts: FlattenCounts,
}

enum WindowError {
    Fatal(Box<BatchRef>, PlatformError),
    Failed(Vec<Failure>),
}

/// Runs every query of one window and flattens the answers as they arrive.
async fn fetch_window(
    client: &Client,
    request: &BackfillRequest,
    plan: &Plan,
    window: Window,
) -> Result<Fetched, WindowError> {
    let queries = plan
        .batches
        .iter()
        .enumerate()
        .flat_map(|(i, batch)| plan.statuses.iter().map(move |&status| (i, batch, status)));
    let mut answers = futures::stream::iter(queries)
        .map(|(i, batch, status)| async move {
            let query = QueryRequest {
                user_ids: batch.clone(),
                check_date_from: plan::yyyymmdd(window.from),
                check_date_to: plan::yyyymmdd(window.to),
                check_date_type: None,
                status: Some(status.code()),
                check_time_from: None,
                check_time_to: None,
            };
            let answer = client
                .query_user_approvals(request.employee_type, &query)
                .await;
            (i, batch, status, answer)
        })
        .buffer_unordered(request.concurrency.max(1));

    let mut fetched = Fetched {
        tables: Tables::default(),
        rejects: Vec::new(),
        counts: FlattenCounts::default(),
    };
    let mut failures = Vec::new();
    while let Some((i, batch, status, answer)) = answers.next().await {
        match answer {
            Ok(data) => flatten::flatten(
                data,
                status,
                window,
                batch,
                &mut fetched.tables,
                &mut fetched.rejects,
                &mut fetched.counts,
            ),
            Err(error) => {
                let batch_ref = BatchRef {
                    window,
                    index: i + 1,
                    batches: plan.batches.len(),
                    first_user: batch.first().cloned().unwrap_or_default(),
                    last_user: batch.last().cloned().unwrap_or_default(),
                    users: batch.len(),
                    status,
                };
                if error.is_fatal() {
                    return Err(WindowError::Fatal(Box::new(batch_ref), error));
                }
                failures.push(Failure {
                    batch: batch_ref,
                    error,
                });
            }
        }
    }
    if failures.is_empty() {
        Ok(fetched)
    } else {
        failures.sort_by_key(|f| (f.batch.index, f.batch.status));
        Err(WindowError::Failed(failures))
    }
}
