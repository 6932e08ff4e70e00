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
//! - The manifest lists every document's outcome: sent, up to date, rejected, refused, failed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use attendance_core::external::ExternalInstance;
use attendance_feishu::{Client, PlatformError, codes};
use attendance_lake::runs;
use attendance_lake::store::Store;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::ExternalError;
use crate::check::{self, read_source};
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
    /// Seconds spent sending, and the create requests a second over them.
    pub send_seconds: f64,
    pub requests_per_second: f64,
    pub outcomes: Vec<InstanceOutcome>,
}

impl PushSummary {
    /// Some instance was rejected, refused or failed.
    pub fn is_partial(&self) -> bool {
        self.intake.rejected + self.refused + self.failed > 0
    }
}

/// Pushes the instances of `request.source`; the manifest goes to `store`.
pub async fn push(
    client: &Client,
    store: Arc<Store>,
    request: &PushRequest,
) -> Result<PushSummary, ExternalError> {
    let started: DateTime<Utc> = Utc::now();
    let (instances, intake) = read_source(&request.source).await?;
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
    summary.outcomes = summary
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

    let to_send: BTreeSet<String> = if request.force {
        instances.iter().map(|i| i.instance_id.clone()).collect()
    } else {
        let (diffs, requests) = check::find_diffs(client, &instances, request.concurrency).await?;
        summary.check_requests = requests;
        diffs.into_iter().map(|d| d.instance_id).collect()
    };
    let (send, skip): (Vec<&ExternalInstance>, Vec<&ExternalInstance>) = instances
        .iter()
        .partition(|i| to_send.contains(i.instance_id.as_str()));
    summary.up_to_date = skip.len();
    summary
        .outcomes
        .extend(skip.iter().map(|i| outcome(i, Outcome::UpToDate, None)));

    let sending = Instant::now();
    let mut results = futures::stream::iter(send)
        .map(|instance| async move { (instance, client.create_external_instance(instance).await) })
        .buffer_unordered(request.concurrency.max(1));
    let mut fatal: Option<PlatformError> = None;
    while let Some((instance, result)) = results.next().await {
        match result {
            Ok(()) => {
                summary.sent += 1;
                summary
                    .outcomes
                    .push(outcome(instance, Outcome::Sent, None));
            }
            Err(error) if error.is_fatal() => {
                fatal.get_or_insert(error);
                break;
            }
            Err(error) => {
                let refused = error.code() == Some(codes::EXTERNAL_PARAM_INVALID);
                tracing::warn!(
                    instance_id = instance.instance_id,
                    error = %attendance_core::chain::Chain(&error),
                    "the platform did not take an instance"
                );
                if refused {
                    summary.refused += 1;
                } else {
                    summary.failed += 1;
                }
                let kind = if refused {
                    Outcome::Refused
                } else {
                    Outcome::Failed
                };
                summary
                    .outcomes
                    .push(outcome(instance, kind, Some(error.to_string())));
            }
        }
    }
    drop(results);
    summary.send_seconds = sending.elapsed().as_secs_f64();
    let attempts = summary.sent + summary.refused + summary.failed;
    if summary.send_seconds > 0.0 && attempts > 0 {
        summary.requests_per_second = attempts as f64 / summary.send_seconds;
    }
    summary
        .outcomes
        .sort_by(|a, b| (a.outcome, &a.instance_id).cmp(&(b.outcome, &b.instance_id)));
    runs::write_manifest(&store, &request.run_id, &summary).await?;
    match fatal {
        Some(source) => Err(ExternalError::Platform {
            during: "the push",
            source,
        }),
        None => Ok(summary),
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
