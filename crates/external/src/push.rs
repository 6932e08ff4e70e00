//! `external push`: the valid instances of a source synced into the approval center
//! (`POST approval/v4/external_instances`), by default only those the check reports missing or
//! stale.
//!
//! Invariants:
//! - An invalid instance is never sent: it is rejected with its problems before anything is
//!   asked of the platform.
//! - Without `force`, every valid instance is checked first ([`check::find_diffs`]) and only
//!   the instances with a difference are sent: a second push of the same source sends
//!   nothing, and a push after editing ten instances sends those ten.
//! - Every request goes through the client: its token cache, its limiter (the platform allows
//!   50 requests a second on these APIs), its retries (1395001 is retried with backoff;
//!   1390001 is not: the instance is refused and the others go on). An error that would recur
//!   on every request (credentials, a refused token) stops the run.
//! - The manifest lists every document's outcome: sent, up to date, rejected, refused, failed,
//!   platform newer (an UPDATE the platform would skip), not sent (the run stopped first: an
//!   error that would recur on every request stops new requests, the ones in flight are
//!   finished and recorded). It is written whatever the run came to, with why it stopped.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use attendance_core::external::ExternalInstance;
use attendance_core::external::model::UPDATE;
use attendance_feishu::{Client, PlatformError, codes};
use attendance_lake::runs;
use attendance_lake::store::Store;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::ExternalError;
use crate::check;
use crate::intake::IntakeReport;
use crate::source::Position;

/// What a push needs.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub source: String,
    pub run_id: String,
    /// Send every valid instance, without asking the check first.
    pub force: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// What became of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Sent, and the platform took it.
    Sent,
    /// The check found the platform up to date: not sent.
    UpToDate,
    /// Invalid: never sent (its problems are in the rejects file).
    Rejected,
    /// Sent, and refused by the platform (1390001).
    Refused,
    /// Sent, and failed after the client's retries.
    Failed,
    /// Not sent: the check found the platform's copy newer, and the instance's UPDATE mode
    /// would have the platform skip it.
    PlatformNewer,
    /// Not sent: the run stopped first (see the manifest's `stopped`).
    NotSent,
}

/// Requests of this run to the third-party APIs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RequestCounts {
    /// Requests sent, checks included, retries included.
    pub requests: u64,
    /// Retries after transient failures (1395001 among them).
    pub retries: u64,
    /// Answers that were over the rate limit.
    pub rate_limited: u64,
}

/// One line of the manifest's outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceOutcome {
    pub instance_id: Option<String>,
    pub approval_code: Option<String>,
    /// Where a rejected document was in the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushSummary {
    pub command: &'static str,
    pub run_id: String,
    pub source: String,
    pub force: bool,
    #[serde(flatten)]
    pub intake: IntakeReport,
    /// Check requests sent before the push.
    pub check_requests: usize,
    pub sent: usize,
    pub up_to_date: usize,
    pub refused: usize,
    pub failed: usize,
    pub platform_newer: usize,
    pub not_sent: usize,
    /// Why the run stopped before sending everything, if it did.
    pub stopped: Option<String>,
    pub requests: RequestCounts,
    /// Seconds spent sending, and the create requests a second over them.
    pub send_seconds: f64,
    pub requests_per_second: f64,
    pub outcomes: Vec<InstanceOutcome>,
}

impl PushSummary {
    /// Some instance was rejected, refused or failed.
    pub fn is_partial(&self) -> bool {
        self.intake.rejected + self.refused + self.failed + self.not_sent > 0
    }
}

/// Pushes the instances of `request.source`; the manifest goes to `store`.
pub async fn push(
    client: &Client,
    store: Arc<Store>,
    request: &PushRequest,
) -> Result<PushSummary, ExternalError> {
    let started: DateTime<Utc> = Utc::now();
    let (instances, intake) = crate::intake::read_all(&request.source).await?;
    let mut summary = PushSummary {
        command: "push",
        run_id: request.run_id.clone(),
        source: request.source.clone(),
        force: request.force,
        intake: intake
            .report(&store, "push", &request.run_id, &request.source, started)
            .await?,
        ..PushSummary::default()
    };
    let rejected: Vec<InstanceOutcome> = summary
        .intake
        .rejects
        .iter()
        .map(|r| InstanceOutcome {
            instance_id: r.instance_id.clone(),
            approval_code: r.approval_code.clone(),
            position: Some(r.position),
            outcome: Outcome::Rejected,
            reason: Some(
                r.problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        })
        .collect();

    let before = client.stats();
    let result = send(client, &instances, request, &mut summary).await;
    let after = client.stats();
    summary.requests = RequestCounts {
        requests: after.external_requests - before.external_requests,
        retries: after.retries - before.retries,
        rate_limited: after.rate_limited - before.rate_limited,
    };
    // Every valid instance without an outcome was not sent: the run stopped first.
    let decided: BTreeSet<&str> = summary
        .outcomes
        .iter()
        .filter_map(|o| o.instance_id.as_deref())
        .collect();
    let not_sent: Vec<InstanceOutcome> = instances
        .iter()
        .filter(|i| !decided.contains(i.instance_id.as_str()))
        .map(|i| outcome(i, Outcome::NotSent, None))
        .collect();
    summary.not_sent = not_sent.len();
    summary.outcomes.extend(not_sent);
    summary.outcomes.extend(rejected);
    summary
        .outcomes
        .sort_by(|a, b| (a.outcome, &a.instance_id).cmp(&(b.outcome, &b.instance_id)));
    if let Err(error) = &result {
        summary.stopped = Some(attendance_core::chain::Chain(error).to_string());
    }
    runs::write_manifest(&store, &request.run_id, &summary).await?;
    result.map(|()| summary)
}

/// Checks (unless forced) and sends, recording each valid instance's outcome in `summary`
/// (the rejected documents' are added after).
async fn send(
    client: &Client,
    instances: &[ExternalInstance],
    request: &PushRequest,
    summary: &mut PushSummary,
) -> Result<(), ExternalError> {
    let by_id: HashMap<&str, &ExternalInstance> = instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i))
        .collect();
    let mut platform_newer: BTreeSet<&str> = BTreeSet::new();
    let to_send: BTreeSet<String> = if request.force {
        by_id.keys().map(|id| id.to_string()).collect()
    } else {
        let (diffs, requests) = check::find_diffs(client, instances, request.concurrency).await?;
        summary.check_requests = requests;
        // Under UPDATE the platform skips an item not newer than its own: an instance whose
        // every difference is the platform being newer would be sent for nothing, every run.
        let mut worth_sending: HashMap<&str, bool> = HashMap::new();
        for diff in &diffs {
            let Some(instance) = by_id.get(diff.instance_id.as_str()) else {
                continue;
            };
            let platform_newer = diff.platform.zip(diff.ours).is_some_and(|(p, o)| p > o);
            let useless = instance.update_mode() == UPDATE && platform_newer;
            *worth_sending
                .entry(instance.instance_id.as_str())
                .or_default() |= !useless;
        }
        for (id, worth) in &worth_sending {
            if !worth {
                platform_newer.insert(id);
                summary.platform_newer += 1;
                summary.outcomes.push(outcome(
                    by_id[id],
                    Outcome::PlatformNewer,
                    Some("UPDATE mode and the platform's copy is newer: not sent".to_owned()),
                ));
            }
        }
        worth_sending
            .into_iter()
            .filter(|(_, worth)| *worth)
            .map(|(id, _)| id.to_owned())
            .collect()
    };
    let (send, skip): (Vec<&ExternalInstance>, Vec<&ExternalInstance>) = instances
        .iter()
        .filter(|i| !platform_newer.contains(i.instance_id.as_str()))
        .partition(|i| to_send.contains(i.instance_id.as_str()));
    summary.up_to_date = skip.len();
    summary
        .outcomes
        .extend(skip.iter().map(|i| outcome(i, Outcome::UpToDate, None)));

    // After an error that would recur on every request, no new request is sent; those in
    // flight are finished and recorded.
    let stopped = AtomicBool::new(false);
    let sending = Instant::now();
    let mut results = futures::stream::iter(send)
        .map(|instance| {
            let stopped = &stopped;
            async move {
                if stopped.load(Ordering::Relaxed) {
                    return (instance, None);
                }
                (
                    instance,
                    Some(client.create_external_instance(instance).await),
                )
            }
        })
        .buffer_unordered(request.concurrency.max(1));
    let mut fatal: Option<PlatformError> = None;
    while let Some((instance, result)) = results.next().await {
        match result {
            None => {}
            Some(Ok(())) => {
                summary.sent += 1;
                summary
                    .outcomes
                    .push(outcome(instance, Outcome::Sent, None));
            }
            Some(Err(error)) => {
                let refused = error.code() == Some(codes::EXTERNAL_PARAM_INVALID);
                tracing::warn!(
                    instance_id = instance.instance_id,
                    error = %attendance_core::chain::Chain(&error),
                    "the platform did not take an instance"
                );
                let kind = if refused {
                    summary.refused += 1;
                    Outcome::Refused
                } else {
                    summary.failed += 1;
                    Outcome::Failed
                };
                summary
                    .outcomes
                    .push(outcome(instance, kind, Some(error.to_string())));
                if error.is_fatal() {
                    stopped.store(true, Ordering::Relaxed);
                    fatal.get_or_insert(error);
                }
            }
        }
    }
    drop(results);
    summary.send_seconds = sending.elapsed().as_secs_f64();
    let attempts = summary.sent + summary.refused + summary.failed;
    if summary.send_seconds > 0.0 && attempts > 0 {
        summary.requests_per_second = attempts as f64 / summary.send_seconds;
    }
    match fatal {
        Some(source) => Err(ExternalError::Platform {
            during: "the push",
            source,
        }),
        None => Ok(()),
    }
}

fn outcome(
    instance: &ExternalInstance,
    outcome: Outcome,
    reason: Option<String>,
) -> InstanceOutcome {
    InstanceOutcome {
        instance_id: Some(instance.instance_id.clone()),
        approval_code: Some(instance.approval_code.clone()),
        position: None,
        outcome,
        reason,
    }
}
