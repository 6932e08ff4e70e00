//! Run: drives one backfill through plan → queries → flatten → sink and accounts for it.
//!
//! Invariants:
//! - Queries run concurrently (bounded by `concurrency`, paced by the client's rate limiter) and
//!   window after window, so at most a couple of windows are held in memory whatever the range.
//! - A batch refused for one of its users (1220004, 1220005) is split in halves until the refused
//!   ids are found; everyone else's data goes through. A refused id is left out of later queries.
//! - A window is committed only when every query of it succeeded (refused users aside). It
//!   replaces the rows of the users fetched and keeps every other user's rows, refused users'
//!   included. A window with a failed query is not written at all: its dates keep their data.
//! - Failed windows and refused users do not stop the run; they end it with exit code 3. Errors
//!   that would recur on every request (credentials, a malformed request) stop it at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::flatten::{self, DstCounts, FlattenCounts, Reject};
use crate::fresh::{FreshRows, SpillConfig};
use crate::lease::{Lease, LeaseError};
use crate::plan::{self, Clipped, EmployeeType, Plan, PlanError, Status, Window};
use crate::platform::model::QueryRequest;
use crate::platform::{Client, ClientStats, PlatformError};
use crate::recording::{Corpus, Recorder, RecordingError, Replay};
use crate::runlog::{self, FailedQuery, Manifest, Progress, WindowOutcome};
use crate::sink::{CommitReport, REJECTS_DIR, Scope, Sink, SinkError, WrittenFile};
use crate::store::{Store, StoreError};
use crate::table::{RunStamp, Table};

/// Where the users of a run come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    /// Exactly these ids (a users file).
    List(Vec<String>),
    /// Every member of every attendance group.
    Groups,
    /// Every user of the contact department tree, attendance group or not.
    Contact,
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
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Keep every query answer in this directory (see [`crate::recording`]).
    pub record_to: Option<PathBuf>,
    /// Take the answers from a recording instead of the platform.
    pub replay: Option<Arc<Replay>>,
    /// Where a window's rows go past the memory budget.
    pub spill: SpillConfig,
}

/// Live counters of a run, for progress bars and lines. Totals are known once users are listed.
#[derive(Debug, Default)]
pub struct RunProgress {
    windows_total: AtomicU64,
    windows_done: AtomicU64,
    queries_total: AtomicU64,
    queries_done: AtomicU64,
    rows: AtomicU64,
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
    pub error: QueryError,
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(
        "stopped on request (SIGTERM or Ctrl-C): the windows committed so far are kept, and rerunning the same backfill resumes after them"
    )]
    Stopped,
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("{batch}: {error}")]
    Fatal {
        batch: Box<BatchRef>,
        error: PlatformError,
    },
    #[error("listing users ({source_name}): {error}")]
    Users {
        source_name: &'static str,
        error: PlatformError,
    },
    #[error("listing users ({0}) found nobody: check the app's data scope, or pass --users-file")]
    NoUsersFound(&'static str),
    #[error(
        "the platform refused all {refused} users tried so far and accepted none (1220004/1220005): the app's data scope or permission is missing; stopping"
    )]
    AllRefused { refused: usize },
}

impl RunError {
    /// Exit code: 2 for what the operator must fix in the command or its configuration, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Plan(_)
            | RunError::Store(StoreError::BadUrl { .. })
            | RunError::Lease(LeaseError::Held { .. } | LeaseError::Unreadable { .. }) => 2,
            RunError::Sink(
                SinkError::EmployeeTypeMismatch { .. } | SinkError::SchemaMismatch { .. },
            ) => 2,
            RunError::Fatal { error, .. } | RunError::Users { error, .. }
                if matches!(error.code(), Some(10003 | 10014)) =>
            {
                2
            }
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
    pub out: String,
    pub windows: Vec<Window>,
    pub batches: usize,
    pub users: usize,
    pub statuses: Vec<Status>,
    pub clipped: Option<Clipped>,
    pub rows: BTreeMap<Table, u64>,
    pub files: Vec<WrittenFile>,
    /// Files deleted because their date has fewer parts, or no rows, now.
    pub files_removed: Vec<String>,
    /// Windows committed by an interrupted run of the same backfill, not fetched again.
    pub windows_skipped: BTreeSet<Window>,
    /// Windows that failed.
    pub windows_failed: BTreeSet<Window>,
    /// Windows this run committed.
    pub committed_windows: BTreeSet<Window>,
    pub rejects: u64,
    pub dst: FlattenCounts,
    pub client: ClientStats,
    pub failures: Vec<Failure>,
    /// Ids the platform refused (1220004 / 1220005); their rows were left as they were.
    pub refused_users: BTreeSet<String>,
    /// Where the users came from: `users file`, `attendance groups` or `contact tree`.
    pub users_source: &'static str,
    /// From the first query sent to the last answer received.
    pub query_phase: Duration,
    /// The client's rate limit, requests per second.
    pub rate_limit: u32,
    /// The error that stopped the run early, after the windows counted here were committed.
    pub fatal: Option<Fatal>,
    /// The users asked for, in the order planned.
    pub user_ids: Vec<String>,
    pub employee_type: EmployeeType,
    /// Where the run's manifest was written.
    pub manifest: Option<String>,
}

/// An error that stopped a run after it had started writing.
#[derive(Debug, Clone)]
pub struct Fatal {
    pub message: String,
    pub exit_code: u8,
}

impl RunSummary {
    /// 0 when everything was fetched and written, 3 when some windows failed or users were
    /// refused, the fatal error's code when one stopped the run.
    pub fn exit_code(&self) -> u8 {
        if let Some(fatal) = &self.fatal {
            fatal.exit_code
        } else if self.failures.is_empty() && self.refused_users.is_empty() {
            0
        } else {
            3
        }
    }

    /// One line on what went wrong, when the exit code is not 0.
    pub fn problem(&self) -> Option<String> {
        if let Some(fatal) = &self.fatal {
            return Some(fatal.message.clone());
        }
        let mut parts = Vec::new();
        if !self.refused_users.is_empty() {
            let ids: Vec<&str> = self
                .refused_users
                .iter()
                .take(5)
                .map(String::as_str)
                .collect();
            let more = self.refused_users.len().saturating_sub(ids.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            parts.push(format!(
                "{} user{} refused by the platform (1220004/1220005): {}{more}",
                self.refused_users.len(),
                if self.refused_users.len() == 1 {
                    ""
                } else {
                    "s"
                },
                ids.join(", ")
            ));
        }
        if let Some(first) = self.failures.first() {
            parts.push(format!(
                "{} quer{} failed after retries, first: {first}",
                self.failures.len(),
                if self.failures.len() == 1 { "y" } else { "ies" }
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Whether `window` was committed by this run.
    pub fn committed(&self, window: &Window) -> bool {
        self.committed_windows.contains(window)
    }

    /// Query requests per second while queries ran: the figure to hold against the rate limit.
    pub fn request_rate(&self) -> f64 {
        // n requests at a steady rate are n - 1 intervals apart: counting n over the span would
        // read above the limit for a short run (12 queries: 107%).
        let intervals = self.client.query_requests.saturating_sub(1) as f64;
        intervals / self.query_phase.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "  {k:<18} {v}");
        writeln!(f, "run {}", self.run_id)?;
        if let Some(c) = self.clipped {
            let v = format!(
                "--to {} → {} (the platform's today + 1)",
                c.requested_to, c.clipped_to
            );
            w(f, "range clipped", v)?;
        }
        if let (Some(first), Some(last)) = (self.windows.first(), self.windows.last()) {
            let v = format!(
                "{}..{} in {} windows ({} committed)",
                first.from,
                last.to,
                self.windows.len(),
                self.committed_windows.len()
            );
            w(f, "dates", v)?;
        }
        let statuses: Vec<String> = self.statuses.iter().map(|s| s.code().to_string()).collect();
        let v = format!(
            "{} from {} in {} batches, statuses {}",
            self.users,
            self.users_source,
            self.batches,
            statuses.join(",")
        );
        w(f, "users", v)?;
        for table in Table::ALL {
            let rows = self.rows.get(&table).copied().unwrap_or(0);
            w(f, table.name(), format!("{rows} rows"))?;
        }
        if !self.windows_skipped.is_empty() {
            let v = format!(
                "{} windows committed by an interrupted run of this backfill were not fetched again (--restart redoes them)",
                self.windows_skipped.len()
            );
            w(f, "resumed", v)?;
        }
        let v = format!(
            "{} written, {} removed",
            self.files.len(),
            self.files_removed.len()
        );
        w(f, "files", v)?;
        let v = match self.rejects {
            0 => "0".to_string(),
            n => format!("{n} (see {}/{REJECTS_DIR})", self.out.trim_end_matches('/')),
        };
        w(f, "rejects", v)?;
        let v = format!(
            "{} in a gap (moved forward), {} ambiguous (earlier taken)",
            self.dst.dst_gap_shifted, self.dst.dst_ambiguous_earlier
        );
        w(f, "dst adjusted", v)?;
        let rate = self.request_rate();
        let c = &self.client;
        let v = format!(
            "{} queries at {rate:.1}/s ({:.0}% of the {}/s limit), {} list, {} token, {} rate-limited, {} retries",
            c.query_requests,
            100.0 * rate / f64::from(self.rate_limit.max(1)),
            self.rate_limit,
            c.list_requests,
            c.token_requests,
            c.rate_limited,
            c.retries
        );
        w(f, "requests", v)?;
        w(
            f,
            "duration",
            format!("{:.2}s", self.duration.as_secs_f64()),
        )?;
        w(f, "output", self.out.clone())?;
        if let Some(m) = &self.manifest {
            w(f, "manifest", m.clone())?;
        }
        if !self.refused_users.is_empty() {
            let ids: Vec<&str> = self.refused_users.iter().map(String::as_str).collect();
            let v = format!(
                "{} (1220004/1220005; their rows were kept as they were): {}",
                ids.len(),
                ids.join(", ")
            );
            w(f, "REFUSED USERS", v)?;
        }
        if !self.failures.is_empty() {
            let v = format!(
                "{} queries; their windows kept their previous data:",
                self.failures.len()
            );
            w(f, "FAILED", v)?;
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

/// Windows whose commit may be under way while the next ones are fetched.
const MAX_PENDING_COMMITS: usize = 1;
/// Refused users, with no query accepted yet, after which the run stops as misconfigured.
const ALL_REFUSED_LIMIT: usize = 100;

/// Lists the users of a run.
pub async fn resolve_users(
    client: &Client,
    users: &Users,
    employee_type: EmployeeType,
    concurrency: usize,
) -> Result<(Vec<String>, &'static str), RunError> {
    let (ids, source_name) = match users {
        Users::List(ids) => return Ok((ids.clone(), "users file")),
        Users::Groups => {
            let source_name = "attendance groups";
            let err = |error| RunError::Users { source_name, error };
            let groups = client.list_groups().await.map_err(err)?;
            let group_ids = groups.into_iter().filter_map(|g| g.group_id);
            let ids = members_of(group_ids, concurrency, |id| async move {
                client.list_group_users(&id, employee_type).await
            })
            .await
            .map_err(err)?;
            (ids, source_name)
        }
        Users::Contact => {
            let source_name = "contact tree";
            let err = |error| RunError::Users { source_name, error };
            let departments = client.list_departments().await.map_err(err)?;
            let mut ids_of: Vec<String> = vec!["0".to_string()];
            ids_of.extend(departments.into_iter().filter_map(|d| d.open_department_id));
            let ids = members_of(ids_of, concurrency, |id| async move {
                client.list_department_users(&id, employee_type).await
            })
            .await
            .map_err(err)?;
            (ids, source_name)
        }
    };
    let unique: BTreeSet<String> = ids.into_iter().flatten().collect();
    if unique.is_empty() {
        return Err(RunError::NoUsersFound(source_name));
    }
    tracing::info!(users = unique.len(), source = source_name, "users listed");
    Ok((unique.into_iter().collect(), source_name))
}

/// The members of every group (or department) in `ids`, listed `concurrency` at a time.
async fn members_of<F, Fut>(
    ids: impl IntoIterator<Item = String>,
    concurrency: usize,
    list: F,
) -> Result<Vec<Vec<String>>, PlatformError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, PlatformError>>,
{
    futures::stream::iter(ids)
        .map(list)
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Runs a backfill of `request` against `client`.
///
/// `Err` when the run could not start (users, plan, output root). An error that stops it once
/// started is in [`RunSummary::fatal`], with what had been committed by then.
pub async fn backfill(client: &Client, request: &BackfillRequest) -> Result<RunSummary, RunError> {
    let started_at = Utc::now();
    let run_id = new_run_id(started_at);
    // Every log line of the run, from every task it spawns, carries its id.
    let span = tracing::info_span!("run", run_id = %run_id);
    backfill_in_span(client, request, run_id, started_at)
        .instrument(span)
        .await
}

async fn backfill_in_span(
    client: &Client,
    request: &BackfillRequest,
    run_id: String,
    started_at: DateTime<Utc>,
) -> Result<RunSummary, RunError> {
    let clock = Instant::now();
    let (users, users_source) = resolve_users(
        client,
        &request.users,
        request.employee_type,
        request.concurrency,
    )
    .await?;
    let plan = plan::plan(
        request.from,
        request.to,
        &users,
        &request.statuses,
        request.today,
    )?;
    if let Some(c) = plan.clipped {
        tracing::warn!(requested_to = %c.requested_to, clipped_to = %c.clipped_to,
            "the platform refuses dates after today + 1: the range is clipped");
    }
    let store = Arc::new(Store::open(&request.out)?);
    store.check().await?;
    let lease = Arc::new(Lease::acquire(Arc::clone(&store), &run_id, request.lease_ttl).await?);
    let renewal = lease.keep_renewed();
    let outcome = backfill_leased(
        client,
        request,
        &store,
        &lease,
        run_id,
        started_at,
        clock,
        users,
        users_source,
        plan,
    )
    .await;
    renewal.abort();
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not release the lease; it expires by itself");
    }
    outcome
}

/// The part of a backfill that runs under the lease.
#[allow(clippy::too_many_arguments)]
async fn backfill_leased(
    client: &Client,
    request: &BackfillRequest,
    store: &Arc<Store>,
    lease: &Arc<Lease>,
    run_id: String,
    started_at: DateTime<Utc>,
    clock: Instant,
    users: Vec<String>,
    users_source: &'static str,
    plan: Plan,
) -> Result<RunSummary, RunError> {
    let recorder = match &request.record_to {
        Some(dir) => Some(Arc::new(Recorder::create(
            dir,
            &Corpus {
                from: plan.windows[0].from,
                to: plan.windows[plan.windows.len() - 1].to,
                statuses: plan.statuses.iter().map(|s| s.code()).collect(),
                employee_type: request.employee_type,
                users: users.clone(),
            },
        )?)),
        None => None,
    };
    let sink = Arc::new(Sink::new(Arc::clone(store)));
    sink.check_employee_type(request.employee_type.as_str())
        .await?;
    let stamp = Arc::new(RunStamp {
        run_id: run_id.clone(),
        ingested_at_micros: started_at.timestamp_micros(),
    });
    let statuses: Vec<i32> = plan.statuses.iter().map(|s| s.code()).collect();
    let (first, last) = (
        plan.windows[0].from,
        plan.windows[plan.windows.len() - 1].to,
    );
    // Keyed by the dates asked, not the clipped ones, so tomorrow's rerun of a clipped backfill
    // still resumes.
    let key = runlog::progress_key(
        request.from,
        request.to,
        &statuses,
        request.employee_type.as_str(),
        &users,
    );
    if request.restart {
        runlog::clear_progress(store, &key).await?;
    }
    let resumable = runlog::load_progress(store, &key)
        .await?
        .filter(|p| !request.restart && Utc::now() - p.updated_at < runlog::PROGRESS_MAX_AGE);
    let mut progress = match resumable {
        Some(p) => p,
        None => Progress {
            key: key.clone(),
            from: first,
            to: last,
            statuses: statuses.clone(),
            employee_type: request.employee_type.as_str().to_string(),
            users: users.len(),
            committed: BTreeSet::new(),
            refused_users: BTreeSet::new(),
            updated_at: started_at,
            run_id: run_id.clone(),
        },
    };
    let carried_refused = progress.refused_users.clone();
    let skip: BTreeSet<Window> = progress
        .committed
        .iter()
        .copied()
        .filter(|w| plan.windows.contains(w))
        .collect();
    if !skip.is_empty() {
        tracing::info!(
            windows = skip.len(),
            "resuming: windows committed by an interrupted run are not fetched again"
        );
    }
    progress.run_id = run_id.clone();
    let counters = &request.progress;
    counters
        .windows_total
        .store(plan.windows.len() as u64, Ordering::Relaxed);
    counters
        .windows_done
        .store(skip.len() as u64, Ordering::Relaxed);
    let per_window = (plan.batches.len() * plan.statuses.len()) as u64;
    counters.queries_total.store(
        per_window * (plan.windows.len() - skip.len()) as u64,
        Ordering::Relaxed,
    );
    tracing::info!(
        run_id,
        windows = plan.windows.len(),
        batches = plan.batches.len(),
        requests = plan.requests(),
        "backfill planned"
    );
    let summary = RunSummary {
        run_id,
        started_at,
        duration: Duration::ZERO,
        out: request.out.clone(),
        windows: plan.windows.clone(),
        batches: plan.batches.len(),
        users: plan.users(),
        statuses: plan.statuses.clone(),
        clipped: plan.clipped,
        rows: BTreeMap::new(),
        files: Vec::new(),
        files_removed: Vec::new(),
        windows_skipped: skip.clone(),
        windows_failed: BTreeSet::new(),
        committed_windows: BTreeSet::new(),
        rejects: 0,
        dst: FlattenCounts::default(),
        client: ClientStats::default(),
        failures: Vec::new(),
        refused_users: carried_refused,
        users_source,
        query_phase: Duration::ZERO,
        rate_limit: client.rate_limit(),
        fatal: None,
        user_ids: users,
        employee_type: request.employee_type,
        manifest: None,
    };
    let mut pipeline = Pipeline {
        stop: Arc::clone(&request.stop),
        counters: Arc::clone(&request.progress),
        recorder,
        replay: request.replay.clone(),
        spill: request.spill.clone(),
        flatten_permits: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, usize::from),
        )),
        client,
        employee_type: request.employee_type,
        plan: &plan,
        sink,
        stamp,
        store: Arc::clone(store),
        lease: Arc::clone(lease),
        progress,
        skip,
        queue: VecDeque::new(),
        open: HashMap::new(),
        next_window: 0,
        accepted_queries: 0,
        first_query: None,
        last_answer: None,
        summary,
    };
    let result = pipeline.run(request.concurrency.max(1)).await;
    let mut summary = pipeline.summary;
    summary.client = client.stats();
    if let (Some(first), Some(last)) = (pipeline.first_query, pipeline.last_answer) {
        summary.query_phase = last.saturating_duration_since(first);
    }
    if let Err(e) = result {
        tracing::error!(error = %e, "run stopped");
        summary.fatal = Some(Fatal {
            message: e.to_string(),
            exit_code: e.exit_code(),
        });
    } else if summary.failures.is_empty() && summary.refused_users.is_empty() {
        // Finished: a rerun of the same backfill fetches everything again.
        if let Err(e) = runlog::clear_progress(store, &key).await {
            tracing::warn!(error = %e, "could not remove the progress record; the next run of this backfill may skip windows (--restart redoes them)");
        }
    }
    summary.duration = clock.elapsed();
    let manifest = manifest_of(&summary);
    match manifest.write(store).await {
        Ok(path) => summary.manifest = Some(path),
        Err(e) => tracing::error!(error = %e, "could not write the run manifest"),
    }
    Ok(summary)
}

/// The manifest of a finished (or stopped) run.
pub fn manifest_of(s: &RunSummary) -> Manifest {
    let windows = s
        .windows
        .iter()
        .map(|w| WindowOutcome {
            window: *w,
            outcome: if s.windows_skipped.contains(w) {
                "skipped"
            } else if s.windows_failed.contains(w) {
                "failed"
            } else if s.committed(w) {
                "committed"
            } else {
                "not reached"
            },
        })
        .collect();
    Manifest {
        run_id: s.run_id.clone(),
        schema_version: crate::table::SCHEMA_VERSION,
        started_at: s.started_at,
        duration_seconds: s.duration.as_secs_f64(),
        exit_code: s.exit_code(),
        output: s.out.clone(),
        from: s.windows.first().map(|w| w.from),
        to: s.windows.last().map(|w| w.to),
        windows,
        users_source: s.users_source,
        users: s.user_ids.clone(),
        statuses: s.statuses.iter().map(|st| st.code()).collect(),
        employee_type: s.employee_type.as_str(),
        requests: s.client,
        query_rate_per_second: s.request_rate(),
        rate_limit_per_second: s.rate_limit,
        rows_fetched: s.rows.clone(),
        rows_in_files: Manifest::rows_by_date(&s.files),
        files: s.files.clone(),
        files_removed: s.files_removed.clone(),
        rejects: s.rejects,
        dst: s.dst,
        refused_users: s.refused_users.iter().cloned().collect(),
        failed_queries: s
            .failures
            .iter()
            .map(|f| FailedQuery {
                window: f.batch.window,
                batch: f.batch.index,
                status: f.batch.status.code(),
                first_user: f.batch.first_user.clone(),
                last_user: f.batch.last_user.clone(),
                error: f.error.to_string(),
            })
            .collect(),
        fatal: s.fatal.as_ref().map(|f| f.message.clone()),
    }
}

/// One query to make: a (sub-)batch of users over a window, for one status.
struct Job {
    window: usize,
    /// 1-based index of the planned batch this job came from (split jobs keep it).
    batch: usize,
    users: Vec<String>,
    status: Status,
}

/// Rows, rejects and counts of one window while its queries come in.
struct Fetched {
    fresh: FreshRows,
    rejects: Vec<Reject>,
    counts: DstCounts,
}

/// A window whose queries are not all answered yet.
struct OpenWindow {
    window: Window,
    /// Jobs of the window not answered yet (split jobs included).
    pending: usize,
    users: HashSet<String>,
    refused: BTreeSet<String>,
    fetched: Fetched,
    failures: Vec<Failure>,
}

/// What a finished commit hands back.
struct Committed {
    window: Window,
    report: Result<CommitReport, SinkError>,
    counts: FlattenCounts,
}

/// A query's answer, already flattened (a `data` of the wrong shape is a malformed body).
type Answer = (Job, Result<flatten::Flattened, QueryError>);

/// Why a query gave no rows.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The answer came (code 0) but did not flatten: its `data` has the wrong shape, or (a bug)
    /// a batch could not be built. Not retried: the same answer fails the same way.
    #[error(
        "{}: the answer could not be flattened: {detail}",
        crate::platform::QUERY_ENDPOINT
    )]
    Flatten { detail: String },
}

/// The state of one backfill while it runs.
struct Pipeline<'a> {
    client: &'a Client,
    employee_type: EmployeeType,
    plan: &'a Plan,
    sink: Arc<Sink>,
    stamp: Arc<RunStamp>,
    store: Arc<Store>,
    lease: Arc<Lease>,
    progress: Progress,
    /// Windows committed by an interrupted run, not fetched again.
    skip: BTreeSet<Window>,
    counters: Arc<RunProgress>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    recorder: Option<Arc<Recorder>>,
    replay: Option<Arc<Replay>>,
    spill: SpillConfig,
    /// One permit per core for flattening: more answers parsed at once than there are cores
    /// would not go faster, and each holds its parsed records and growing batches in memory.
    flatten_permits: Arc<tokio::sync::Semaphore>,
    /// Jobs not sent yet; split jobs go to the front.
    queue: VecDeque<Job>,
    open: HashMap<usize, OpenWindow>,
    next_window: usize,
    accepted_queries: u64,
    first_query: Option<Instant>,
    last_answer: Option<Instant>,
    summary: RunSummary,
}

impl<'a> Pipeline<'a> {
    async fn run(&mut self, concurrency: usize) -> Result<(), RunError> {
        let mut in_flight = FuturesUnordered::new();
        let mut commits = FuturesUnordered::new();
        let result = self.drive(concurrency, &mut in_flight, &mut commits).await;
        // Whatever happened, let the commits under way finish: each is atomic per file, and
        // their counts belong in the summary.
        drop(in_flight);
        while let Some(done) = commits.next().await {
            let outcome = self.on_committed(done).await;
            if result.is_ok() {
                outcome?;
            }
        }
        result
    }

    async fn drive(
        &mut self,
        concurrency: usize,
        in_flight: &mut FuturesUnordered<futures::future::BoxFuture<'a, Answer>>,
        commits: &mut FuturesUnordered<tokio::task::JoinHandle<Committed>>,
    ) -> Result<(), RunError> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(RunError::Stopped);
            }
            if self.lease.is_lost() {
                return Err(LeaseError::Lost {
                    location: self.store.describe(crate::lease::LEASE_PATH),
                }
                .into());
            }
            while in_flight.len() < concurrency {
                if self.queue.is_empty() && !self.open_next_window() {
                    break;
                }
                let Some(job) = self.queue.pop_front() else {
                    break;
                };
                if let Some(job) = self.without_refused(job) {
                    self.first_query.get_or_insert_with(Instant::now);
                    in_flight.push(self.send(job));
                } else {
                    self.settle_if_done(commits).await?;
                }
            }
            if in_flight.is_empty() {
                if self.queue.is_empty() && self.next_window >= self.plan.windows.len() {
                    return Ok(());
                }
                continue;
            }
            tokio::select! {
                Some((job, answer)) = in_flight.next() => {
                    self.last_answer = Some(Instant::now());
                    self.on_answer(job, answer)?;
                    self.settle_if_done(commits).await?;
                }
                Some(done) = commits.next() => self.on_committed(done).await?,
            }
        }
    }

    /// Queues the jobs of the next window; false when every window is queued already.
    fn open_next_window(&mut self) -> bool {
        let mut index = self.next_window;
        while self
            .plan
            .windows
            .get(index)
            .is_some_and(|w| self.skip.contains(w))
        {
            index += 1;
        }
        let Some(&window) = self.plan.windows.get(index) else {
            self.next_window = index;
            return false;
        };
        self.next_window = index + 1;
        let mut state = OpenWindow {
            window,
            pending: 0,
            users: HashSet::new(),
            refused: BTreeSet::new(),
            fetched: Fetched {
                fresh: FreshRows::new(self.spill.clone()),
                rejects: Vec::new(),
                counts: DstCounts::default(),
            },
            failures: Vec::new(),
        };
        for (b, batch) in self.plan.batches.iter().enumerate() {
            state.users.extend(batch.iter().cloned());
            for &status in &self.plan.statuses {
                state.pending += 1;
                self.queue.push_back(Job {
                    window: index,
                    batch: b + 1,
                    users: batch.clone(),
                    status,
                });
            }
        }
        self.open.insert(index, state);
        true
    }

    /// Drops ids already known to be refused from a job; `None` when nobody is left.
    fn without_refused(&mut self, mut job: Job) -> Option<Job> {
        if self.summary.refused_users.is_empty() {
            return Some(job);
        }
        let state = self
            .open
            .get_mut(&job.window)
            .expect("jobs belong to open windows");
        let refused = &self.summary.refused_users;
        job.users.retain(|u| {
            let keep = !refused.contains(u);
            if !keep {
                state.refused.insert(u.clone());
            }
            keep
        });
        if job.users.is_empty() {
            state.pending -= 1;
            None
        } else {
            Some(job)
        }
    }

    /// Sends one query. Reading a recorded answer and flattening an answer are CPU work: they
    /// run on blocking threads, so answers are flattened on every core while the pipeline
    /// thread keeps sending.
    fn send(&self, job: Job) -> futures::future::BoxFuture<'a, Answer> {
        let client = self.client;
        let employee_type = self.employee_type;
        let replay = self.replay.clone();
        let recorder = self.recorder.clone();
        let window = self.plan.windows[job.window];
        let stamp = Arc::clone(&self.stamp);
        let flatten_permits = Arc::clone(&self.flatten_permits);
        Box::pin(async move {
            let query = QueryRequest {
                user_ids: job.users.clone(),
                check_date_from: plan::yyyymmdd(window.from),
                check_date_to: plan::yyyymmdd(window.to),
                check_date_type: None,
                status: Some(job.status.code()),
                check_time_from: None,
                check_time_to: None,
            };
            let answer = match replay {
                Some(replay) => {
                    let query = query.clone();
                    tokio::task::spawn_blocking(move || replay.answer(employee_type, &query))
                        .await
                        .expect("reading a recorded answer never panics")
                }
                None => client.query_user_approvals(employee_type, &query).await,
            };
            if let Some(recorder) = &recorder
                && let Err(e) = recorder.record(employee_type, &query, &answer)
            {
                tracing::error!(error = %e, "could not record an answer");
            }
            let data = match answer {
                Ok(data) => data,
                Err(e) => return (job, Err(e.into())),
            };
            let (status, users) = (job.status, job.users.clone());
            let permit = flatten_permits
                .acquire_owned()
                .await
                .expect("the flatten semaphore is never closed");
            let flat = tokio::task::spawn_blocking(move || {
                let flat = flatten::flatten(&data, status, window, &users, &stamp);
                drop(permit);
                flat
            })
            .await
            .expect("flattening never panics")
            .map_err(|e| QueryError::Flatten {
                detail: e.to_string(),
            });
            (job, flat)
        })
    }

    fn batch_ref(&self, job: &Job) -> BatchRef {
        BatchRef {
            window: self.plan.windows[job.window],
            index: job.batch,
            batches: self.plan.batches.len(),
            first_user: job.users.first().cloned().unwrap_or_default(),
            last_user: job.users.last().cloned().unwrap_or_default(),
            users: job.users.len(),
            status: job.status,
        }
    }

    fn on_answer(
        &mut self,
        job: Job,
        answer: Result<flatten::Flattened, QueryError>,
    ) -> Result<(), RunError> {
        let state = self
            .open
            .get_mut(&job.window)
            .expect("answers belong to open windows");
        state.pending -= 1;
        let error = match answer {
            Ok(flat) => {
                self.accepted_queries += 1;
                let f = &mut state.fetched;
                let rows = flat.total_rows();
                f.rejects.extend(flat.rejects);
                f.counts.merge(flat.counts);
                for part in flat.rows {
                    f.fresh.add(part)?;
                }
                self.counters.queries_done.fetch_add(1, Ordering::Relaxed);
                self.counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) => error,
        };
        self.counters.queries_done.fetch_add(1, Ordering::Relaxed);
        let error = match error {
            QueryError::Platform(error) if error.is_fatal() => {
                return Err(RunError::Fatal {
                    batch: Box::new(self.batch_ref(&job)),
                    error,
                });
            }
            QueryError::Platform(error) if error.is_per_user() => error,
            error => {
                let failure = Failure {
                    batch: self.batch_ref(&job),
                    error,
                };
                tracing::error!(%failure, "query failed after its retries; its window will not be committed");
                self.open
                    .get_mut(&job.window)
                    .expect("open")
                    .failures
                    .push(failure);
                return Ok(());
            }
        };
        if job.users.len() == 1 {
            let id = job.users[0].clone();
            tracing::warn!(user = %id, window = %state.window, error = %error, "the platform refuses this user; leaving them out");
            state.refused.insert(id.clone());
            self.summary.refused_users.insert(id);
            if self.accepted_queries == 0 && self.summary.refused_users.len() >= ALL_REFUSED_LIMIT {
                return Err(RunError::AllRefused {
                    refused: self.summary.refused_users.len(),
                });
            }
            return Ok(());
        }
        // Split: the halves go first, so the window finishes before the next one grows.
        state.pending += 2;
        self.counters.queries_total.fetch_add(2, Ordering::Relaxed);
        tracing::info!(batch = %self.batch_ref(&job), code = error.code(), "batch refused for one of its users; splitting it");
        let mut left = job.users;
        let right = left.split_off(left.len() / 2);
        for users in [right, left] {
            self.queue.push_front(Job {
                window: job.window,
                batch: job.batch,
                users,
                status: job.status,
            });
        }
        Ok(())
    }

    /// Hands every fully answered window to the committer (or records its failures).
    async fn settle_if_done(
        &mut self,
        commits: &mut FuturesUnordered<tokio::task::JoinHandle<Committed>>,
    ) -> Result<(), RunError> {
        let done: Vec<usize> = self
            .open
            .iter()
            .filter(|(_, s)| s.pending == 0)
            .map(|(i, _)| *i)
            .collect();
        for index in done {
            let mut state = self.open.remove(&index).expect("listed above");
            if !state.failures.is_empty() {
                self.counters.windows_done.fetch_add(1, Ordering::Relaxed);
                self.summary.windows_failed.insert(state.window);
                self.summary.failures.extend(state.failures);
                continue;
            }
            // Before it waits for the commit under way: see `FreshRows::seal`.
            state.fetched.fresh.seal()?;
            while commits.len() >= MAX_PENDING_COMMITS {
                if let Some(done) = commits.next().await {
                    self.on_committed(done).await?;
                }
            }
            commits.push(self.commit(state));
        }
        Ok(())
    }

    fn commit(&self, state: OpenWindow) -> tokio::task::JoinHandle<Committed> {
        let OpenWindow {
            window,
            users,
            refused,
            mut fetched,
            ..
        } = state;
        fetched.fresh.exclude_users(refused.iter().cloned());
        let counts = fetched.counts.total_without(&refused);
        fetched
            .rejects
            .retain(|r| r.user_id.as_ref().is_none_or(|u| !refused.contains(u)));
        let scope = Scope {
            users: users.into_iter().filter(|u| !refused.contains(u)).collect(),
            statuses: self.plan.statuses.iter().map(|s| s.code()).collect(),
            employee_type: self.employee_type.as_str(),
        };
        let sink = Arc::clone(&self.sink);
        let stamp = Arc::clone(&self.stamp);
        let lease = Arc::clone(&self.lease);
        tokio::spawn(
            async move {
                let still_ours = move || !lease.is_lost();
                let report = sink
                    .commit_window(
                        window,
                        fetched.fresh,
                        fetched.rejects,
                        scope,
                        stamp,
                        &still_ours,
                    )
                    .await;
                Committed {
                    window,
                    report,
                    counts,
                }
            }
            .instrument(tracing::Span::current()),
        )
    }

    async fn on_committed(
        &mut self,
        done: Result<Committed, tokio::task::JoinError>,
    ) -> Result<(), RunError> {
        let done = done.expect("a commit task never panics");
        let report = done.report?;
        let s = &mut self.summary;
        for (table, rows) in &report.fresh_rows {
            *s.rows.entry(*table).or_default() += rows;
        }
        s.rejects += report.rejects;
        s.dst += done.counts;
        s.files_removed.extend(report.removed);
        s.files.extend(report.files);
        s.committed_windows.insert(done.window);
        self.counters.windows_done.fetch_add(1, Ordering::Relaxed);
        tracing::info!(run_id = %s.run_id, window = %done.window, "window committed");
        self.progress.committed.insert(done.window);
        // A resumed run must still report the users refused before it, and exit 3.
        self.progress
            .refused_users
            .extend(self.summary.refused_users.iter().cloned());
        self.progress.updated_at = Utc::now();
        runlog::save_progress(&self.store, &self.progress).await?;
        Ok(())
    }
}
