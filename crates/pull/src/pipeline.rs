//! The pipeline: one backfill's state machine, from queries to committed windows.
//!
//! Invariants:
//! - Queries run concurrently (bounded by `concurrency`, paced by the source) and window after
//!   window, so at most a couple of windows are held in memory whatever the range.
//! - A batch refused for one of its users (1220004, 1220005) is split in halves until the refused
//!   ids are found; everyone else's data goes through. A refused id is left out of later queries.
//! - A window is committed only when every query of it succeeded (refused users aside). It
//!   replaces the rows of the users fetched and keeps every other user's rows, refused users'
//!   included. A window with a failed query is not written at all: its dates keep their data.
//! - Failed windows and refused users do not stop the run; they make it partial. Errors that
//!   would recur on every request (credentials, a malformed request) stop it at once, and so do
//!   a stop request and a lease in doubt; the commits under way finish first.
//! - Each stage keeps its own counts: the extract stage ([`Extracted`]) as answers come, the
//!   normalize and load stages ([`Normalized`], [`Loaded`]) as windows are committed.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use attendance_core::flatten::{self, DstCounts, FlattenCounts, Flattened, Reject};
use attendance_core::plan::{self, EmployeeType, Plan, Status, Window};
use attendance_core::table::RunStamp;
use attendance_core::tz::ZoneAliases;
use attendance_feishu::model::QueryRequest;
use attendance_lake::commit::{CommitReport, Sink, SinkError};
use attendance_lake::lease::{LEASE_PATH, Lease, LeaseError};
use attendance_lake::progress::{self, Progress};
use attendance_lake::scope::Scope;
use attendance_lake::spill::{FreshRows, SpillConfig};
use attendance_lake::store::Store;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::Instrument;

use crate::error::{BatchRef, Failure, QueryError, RunError};
use crate::request::{BackfillRequest, RunProgress};
use crate::source::AnswerSource;
use crate::summary::{Extracted, Loaded, Normalized};

/// Windows whose commit may be under way while the next ones are fetched.
const MAX_PENDING_COMMITS: usize = 1;
/// Refused users, with no query accepted yet, after which the run stops as misconfigured.
const ALL_REFUSED_LIMIT: usize = 100;

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
type Answer = (Job, Result<Flattened, QueryError>);

/// Where a run writes, set up (and the lease taken) before the pipeline starts.
pub(crate) struct Output {
    pub(crate) store: Arc<Store>,
    pub(crate) sink: Arc<Sink>,
    pub(crate) lease: Arc<Lease>,
    pub(crate) stamp: Arc<RunStamp>,
}

/// The state of one backfill while it runs.
pub(crate) struct Pipeline<'a, S> {
    source: &'a S,
    employee_type: EmployeeType,
    plan: &'a Plan,
    output: Output,
    progress: Progress,
    counters: Arc<RunProgress>,
    stop: Arc<AtomicBool>,
    spill: SpillConfig,
    /// One permit per core for flattening: more answers parsed at once than there are cores
    /// would not go faster, and each holds its parsed records and growing batches in memory.
    flatten_permits: Arc<tokio::sync::Semaphore>,
    zone_aliases: Arc<ZoneAliases>,
    /// Jobs not sent yet; split jobs go to the front.
    queue: VecDeque<Job>,
    open: HashMap<usize, OpenWindow>,
    next_window: usize,
    first_query: Option<Instant>,
    last_answer: Option<Instant>,
    pub(crate) extracted: Extracted,
    pub(crate) normalized: Normalized,
    pub(crate) loaded: Loaded,
}

impl<'a, S: AnswerSource> Pipeline<'a, S> {
    /// A pipeline over `plan`, resuming after the windows `progress` says are committed.
    pub(crate) fn new(
        source: &'a S,
        request: &BackfillRequest,
        plan: &'a Plan,
        output: Output,
        progress: Progress,
    ) -> Self {
        let skip: BTreeSet<Window> = progress
            .committed
            .iter()
            .copied()
            .filter(|w| plan.all_windows().contains(w))
            .collect();
        let counters = Arc::clone(&request.progress);
        counters
            .windows_total
            .store(plan.window_count() as u64, Ordering::Relaxed);
        counters
            .windows_done
            .store(skip.len() as u64, Ordering::Relaxed);
        let queries: usize = (0..plan.window_count())
            .filter(|&i| plan.window(i).is_some_and(|w| !skip.contains(&w)))
            .map(|i| plan.batches_of(i).len() * plan.statuses.len())
            .sum();
        counters
            .queries_total
            .store(queries as u64, Ordering::Relaxed);
        // A resumed run still reports the users refused before it.
        let refused_before = progress.refused_users.clone();
        Pipeline {
            source,
            employee_type: request.employee_type,
            plan,
            output,
            progress,
            loaded: Loaded {
                skipped: skip,
                ..Loaded::default()
            },
            counters,
            stop: Arc::clone(&request.stop),
            spill: request.spill.clone(),
            flatten_permits: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, usize::from),
            )),
            zone_aliases: Arc::clone(&request.zone_aliases),
            queue: VecDeque::new(),
            open: HashMap::new(),
            next_window: 0,
            first_query: None,
            last_answer: None,
            extracted: Extracted {
                refused_users: refused_before,
                rate_limit: source.rate_limit(),
                ..Extracted::default()
            },
            normalized: Normalized::default(),
        }
    }

    /// Runs every query of the plan and commits every window that can be. `Err` when the run
    /// stopped early; what was committed by then is in the counts all the same.
    pub(crate) async fn run(&mut self, concurrency: usize) -> Result<(), RunError> {
        let result = self.run_until_done(concurrency).await;
        self.extracted.requests = self.source.stats();
        if let (Some(first), Some(last)) = (self.first_query, self.last_answer) {
            self.extracted.query_phase = last.saturating_duration_since(first);
        }
        result
    }

    /// The windows of the plan this run skips: committed by an interrupted run.
    pub(crate) fn skipped(&self) -> &BTreeSet<Window> {
        &self.loaded.skipped
    }

    async fn run_until_done(&mut self, concurrency: usize) -> Result<(), RunError> {
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
            if self.output.lease.is_lost() {
                return Err(LeaseError::Lost {
                    location: self.output.store.describe(LEASE_PATH),
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
                if self.queue.is_empty() && self.next_window >= self.plan.window_count() {
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
            .window(index)
            .is_some_and(|w| self.loaded.skipped.contains(&w))
        {
            index += 1;
        }
        let Some(window) = self.plan.window(index) else {
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
        for (b, batch) in self.plan.batches_of(index).iter().enumerate() {
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
        if self.extracted.refused_users.is_empty() {
            return Some(job);
        }
        let state = self
            .open
            .get_mut(&job.window)
            .expect("jobs belong to open windows");
        let refused = &self.extracted.refused_users;
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
        let source = self.source;
        let employee_type = self.employee_type;
        let window = self
            .plan
            .window(job.window)
            .expect("jobs belong to the plan's windows");
        let stamp = Arc::clone(&self.output.stamp);
        let aliases = Arc::clone(&self.zone_aliases);
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
            let data = match source.answer(employee_type, &query).await {
                Ok(data) => data,
                Err(e) => return (job, Err(e.into())),
            };
            let (status, users) = (job.status, job.users.clone());
            let permit = flatten_permits
                .acquire_owned()
                .await
                .expect("the flatten semaphore is never closed");
            let flat = tokio::task::spawn_blocking(move || {
                let flat = flatten::flatten(&data, status, window, &users, &stamp, &aliases);
                drop(permit);
                flat
            })
            .await
            .expect("flattening never panics")
            .map_err(|e| QueryError::Flatten(Arc::new(e)));
            (job, flat)
        })
    }

    fn batch_ref(&self, job: &Job) -> BatchRef {
        BatchRef {
            window: self
                .plan
                .window(job.window)
                .expect("jobs belong to the plan's windows"),
            index: job.batch,
            batches: self.plan.batches_of(job.window).len(),
            first_user: job.users.first().cloned().unwrap_or_default(),
            last_user: job.users.last().cloned().unwrap_or_default(),
            users: job.users.len(),
            status: job.status,
        }
    }

    fn on_answer(
        &mut self,
        job: Job,
        answer: Result<Flattened, QueryError>,
    ) -> Result<(), RunError> {
        let state = self
            .open
            .get_mut(&job.window)
            .expect("answers belong to open windows");
        state.pending -= 1;
        let error = match answer {
            Ok(flat) => {
                self.extracted.answered += 1;
                let f = &mut state.fetched;
                let rows = flat.total_rows();
                f.rejects.extend(flat.rejects);
                f.counts.merge(flat.counts);
                // What the platform answered is fact, whether or not the window commits.
                flatten::merge_zones(&mut self.normalized.zones, flat.zones);
                for part in flat.rows {
                    f.fresh.add(part).map_err(SinkError::from)?;
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
            self.extracted.refused_users.insert(id);
            if self.extracted.answered == 0
                && self.extracted.refused_users.len() >= ALL_REFUSED_LIMIT
            {
                return Err(RunError::AllRefused {
                    refused: self.extracted.refused_users.len(),
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
                self.loaded.failed.insert(state.window);
                self.extracted.failures.extend(state.failures);
                continue;
            }
            // Before it waits for the commit under way: see `FreshRows::seal`.
            state.fetched.fresh.seal().map_err(SinkError::from)?;
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
            statuses: self.plan.statuses.iter().copied().collect(),
        };
        let sink = Arc::clone(&self.output.sink);
        let stamp = Arc::clone(&self.output.stamp);
        let lease = Arc::clone(&self.output.lease);
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
        let normalized = &mut self.normalized;
        for (table, rows) in &report.fresh_rows {
            *normalized.rows.entry(*table).or_default() += rows;
        }
        normalized.rejects += report.rejects;
        normalized.dst += done.counts;
        let loaded = &mut self.loaded;
        loaded.files_removed.extend(report.removed);
        loaded.files.extend(report.files);
        loaded.committed.insert(done.window);
        self.counters.windows_done.fetch_add(1, Ordering::Relaxed);
        let run_id = &self.output.stamp.run_id;
        tracing::info!(run_id = %run_id, window = %done.window, "window committed");
        self.progress.committed.insert(done.window);
        // A resumed run must still report the users refused before it, and exit 3.
        self.progress
            .refused_users
            .extend(self.extracted.refused_users.iter().cloned());
        self.progress.updated_at = chrono::Utc::now();
        progress::save_progress(&self.output.store, &self.progress).await?;
        Ok(())
    }
}
