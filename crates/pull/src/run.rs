//! A backfill from start to finish: the run id, the users, the plan, the output root and its
//! lease, the progress record, then the [`Pipeline`](crate::pipeline) under the lease.
//!
//! Invariants:
//! - Nothing is written before the lease is held, and the lease is released whatever happens
//!   once it is.
//! - Every log line of a run, from every task it spawns, carries its run id.
//! - A run resumes after the windows an interrupted run of the same request committed (unless
//!   told to restart), and forgets them once it finishes with nothing failed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attendance_core::chain::Chain;
use attendance_core::plan::{EmployeeType, Plan, Window};
use attendance_core::table::RunStamp;
use attendance_lake::commit::Sink;
use attendance_lake::lease::{LEASE_PATH, Lease};
use attendance_lake::progress::{self, Progress};
use attendance_lake::store::Store;
use chrono::{DateTime, NaiveDate, Utc};
use tracing::Instrument;

pub use crate::error::RunError;
use crate::pipeline::{Output, Pipeline};
use crate::recording::{Corpus, Recorded, Recorder};
use crate::request::BackfillRequest;
use crate::resync::{Cursor, ResyncPlan};
use crate::source::AnswerSource;
use crate::summary::{Outcome, RunSummary};
use crate::users;

/// A fresh run id: UTC start time plus random bits, sortable and unique across hosts.
pub fn new_run_id(started: DateTime<Utc>) -> String {
    format!(
        "{}-{:08x}",
        started.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Runs a backfill of `request`, asking `source` for the answers.
///
/// `Err` when the run could not start (users, plan, output root, lease). An error that stops it
/// once started is in [`RunSummary::fatal`], with what had been committed by then.
pub async fn backfill<S: AnswerSource>(
    source: &S,
    request: &BackfillRequest,
) -> Result<RunSummary, RunError> {
    let started_at = Utc::now();
    let run_id = new_run_id(started_at);
    let span = tracing::info_span!("run", run_id = %run_id);
    backfill_in_span(source, request, run_id, started_at)
        .instrument(span)
        .await
}

/// What a run knows once it is planned, before it writes.
struct Planned {
    run_id: String,
    started_at: DateTime<Utc>,
    clock: Instant,
    users: Vec<String>,
    plan: Plan,
    resync: Option<ResyncPlan>,
}

async fn backfill_in_span<S: AnswerSource>(
    source: &S,
    request: &BackfillRequest,
    run_id: String,
    started_at: DateTime<Utc>,
) -> Result<RunSummary, RunError> {
    let clock = Instant::now();
    let users = users::resolve(
        source.directory(),
        &request.users,
        request.employee_type,
        request.concurrency,
    )
    .await?;
    let mut plan = request.plan(&users)?;
    if let Some(c) = plan.clipped {
        tracing::warn!(requested_to = %c.requested_to, clipped_to = %c.clipped_to,
            "the platform refuses dates after today + 1: the range is clipped");
    }
    let store = Arc::new(Store::open(&request.out)?);
    store.check().await?;
    let resync = if request.with_events {
        let resync =
            ResyncPlan::read(&store, plan.range(), request.employee_type, request.today).await?;
        plan.extra = resync.extra_windows();
        tracing::info!(
            events = resync.considered,
            windows = plan.extra.len(),
            queries = resync.requests() * plan.statuses.len(),
            unresolved_reverts = resync.unresolved.len(),
            unreadable = resync.unreadable.len(),
            "landed events planned into re-reads outside the range"
        );
        Some(resync)
    } else {
        None
    };
    let planned = Planned {
        run_id,
        started_at,
        clock,
        users,
        plan,
        resync,
    };
    let run_id = planned.run_id.clone();
    Lease::run_under(
        &store,
        LEASE_PATH,
        &run_id,
        request.lease_ttl,
        async |lease| match &request.record_to {
            Some(dir) => {
                let range = planned.plan.range();
                let corpus = Corpus {
                    from: range.from,
                    to: range.to,
                    statuses: planned.plan.statuses.clone(),
                    employee_type: request.employee_type,
                    users: planned.users.clone(),
                };
                match Recorder::create(dir, &corpus) {
                    Ok(recorder) => {
                        let recorded = Recorded::new(source, recorder);
                        backfill_leased(&recorded, request, &store, lease, planned).await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None => backfill_leased(source, request, &store, lease, planned).await,
        },
    )
    .await?
}

/// The part of a backfill that runs under the lease.
async fn backfill_leased<S: AnswerSource>(
    source: &S,
    request: &BackfillRequest,
    store: &Arc<Store>,
    lease: &Arc<Lease>,
    planned: Planned,
) -> Result<RunSummary, RunError> {
    let Planned {
        run_id,
        started_at,
        clock,
        users,
        plan,
        resync,
    } = planned;
    let sink = Arc::new(Sink::new(Arc::clone(store), request.employee_type));
    sink.check_employee_type().await?;
    let stamp = Arc::new(RunStamp {
        run_id: run_id.clone(),
        ingested_at_micros: started_at.timestamp_micros(),
    });
    let Window {
        from: first,
        to: last,
    } = plan.range();
    // Keyed by the dates asked, not the clipped ones, so tomorrow's rerun of a clipped backfill
    // still resumes.
    let key = progress::progress_key(
        request.from,
        request.to,
        &plan.statuses,
        request.employee_type,
        &users,
    );
    if request.restart {
        progress::clear_progress(store, &key).await?;
    }
    let resumable = progress::load_progress(store, &key)
        .await?
        .filter(|p| !request.restart && Utc::now() - p.updated_at < progress::PROGRESS_MAX_AGE);
    let mut record = match resumable {
        Some(p) => p,
        None => Progress {
            key: key.clone(),
            from: first,
            to: last,
            statuses: plan.statuses.clone(),
            employee_type: request.employee_type,
            users: users.len(),
            committed: BTreeSet::new(),
            refused_users: BTreeSet::new(),
            updated_at: started_at,
            run_id: run_id.clone(),
        },
    };
    record.run_id = run_id.clone();
    tracing::info!(
        run_id,
        windows = plan.windows.len(),
        batches = plan.batches.len(),
        requests = plan.requests(),
        "backfill planned"
    );
    let output = Output {
        store: Arc::clone(store),
        sink,
        lease: Arc::clone(lease),
        stamp,
    };
    let mut pipeline = Pipeline::new(source, request, &plan, output, record);
    if !pipeline.skipped().is_empty() {
        tracing::info!(
            windows = pipeline.skipped().len(),
            "resuming: windows committed by an interrupted run are not fetched again"
        );
    }
    let result = pipeline.run(request.concurrency.max(1)).await;
    let fatal = match result {
        Err(e) => {
            tracing::error!(error = %Chain(&e), "run stopped");
            Some(Arc::new(e))
        }
        Ok(()) => None,
    };
    let summary = RunSummary {
        run_id,
        started_at,
        duration: Duration::ZERO,
        out: request.out.clone(),
        windows: plan.windows.clone(),
        batches: plan.batches.len(),
        users: plan.users(),
        user_ids: users,
        users_source: request.users.source_name(),
        statuses: plan.statuses.clone(),
        employee_type: request.employee_type,
        clipped: plan.clipped,
        extracted: pipeline.extracted,
        normalized: pipeline.normalized,
        loaded: pipeline.loaded,
        fatal,
        manifest: None,
        extra_windows: plan.extra.iter().map(|e| e.window).collect(),
        resync,
        zone_aliases: request.zone_aliases.to_map(),
    };
    save_zones(
        store,
        lease,
        summary.employee_type,
        &summary.normalized.zones,
    )
    .await;
    if summary.outcome() == Outcome::Complete
        && let Some(next) = summary.resync.as_ref().and_then(|r| r.next.clone())
    {
        // Every re-read committed: the events up to here are acted on.
        let cursor = Cursor {
            run_id: summary.run_id.clone(),
            ..next
        };
        if let Err(e) = cursor.save(store).await {
            tracing::warn!(error = %Chain(&e), "could not move the events cursor; the next run re-reads these events' dates again");
        }
    }
    if summary.outcome() == Outcome::Complete {
        // Finished: a rerun of the same backfill fetches everything again.
        if let Err(e) = progress::clear_progress(store, &key).await {
            tracing::warn!(error = %Chain(&e), "could not remove the progress record; the next run of this backfill may skip windows (--restart redoes them)");
        }
    }
    Ok(RunSummary {
        duration: clock.elapsed(),
        ..summary
    })
}

/// Files the zones a run's answers gave (`seen`) into the root's map of users' zones, whatever
/// the outcome (what was answered is fact). Best effort: the map only helps read approval events,
/// so a failure is logged and never fails the run. Only while the lease is held.
pub(crate) async fn save_zones(
    store: &Store,
    lease: &Lease,
    employee_type: EmployeeType,
    seen: &BTreeMap<String, (NaiveDate, &'static str)>,
) {
    if seen.is_empty() {
        return;
    }
    if lease.is_lost() {
        tracing::warn!("the lease is lost: the users' time zones seen by this run are not saved");
        return;
    }
    let mut zones = match attendance_lake::zones::load(store).await {
        Ok(zones) => zones,
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "could not read the users' time zones; leaving them as they were");
            return;
        }
    };
    if zones.merge(employee_type, seen)
        && let Err(e) = zones.save(store).await
    {
        tracing::warn!(error = %Chain(&e), "could not save the users' time zones; the next run saves them");
    }
}
