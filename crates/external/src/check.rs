//! `external check`: the reconciliation of a source with the approval center, through
//! `POST approval/v4/external_instances/check`, as the `external_diffs` table.
//!
//! Invariants:
//! - Every valid instance of the source is checked, [`CHECK_BATCH`] a request.
//! - The platform reports at most one difference per instance (the first of its five steps
//!   that hits). An instance reported for a task is asked again without the tasks already
//!   found, until the platform reports nothing more for it: every missing or stale task is
//!   found, and a stale instance behind them too.
//! - The table is a snapshot per UTC date of the check: the check replaces that date's rows of
//!   the source's approval codes, so the partition holds each code's latest check of the day.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use attendance_core::external::ExternalInstance;
use attendance_core::external::model::{CheckInstance, DiffInstance, MsTime};
use attendance_core::external::table::{Diff, DiffKind, ExternalTable, Rows};
use attendance_feishu::Client;
use attendance_lake::runs;
use attendance_lake::store::Store;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::intake::{self, IntakeReport};
use crate::{ExternalError, replace_snapshot};

/// Instances asked about in one check request.
pub const CHECK_BATCH: usize = 100;

/// What a check needs.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub source: String,
    pub run_id: String,
    pub lease_ttl: Duration,
    /// Check requests in flight at once.
    pub concurrency: usize,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckSummary {
    pub command: &'static str,
    pub run_id: String,
    pub source: String,
    #[serde(flatten)]
    pub intake: IntakeReport,
    /// Check requests sent.
    pub requests: usize,
    /// Differences by kind.
    pub by_kind: BTreeMap<&'static str, usize>,
    pub diffs: Vec<Diff>,
    /// The `external_diffs` partition written (or deleted: no difference left).
    pub partition: Option<String>,
}

/// The differences between `instances` and what the platform holds; the requests sent.
pub async fn find_diffs(
    client: &Client,
    instances: &[ExternalInstance],
    concurrency: usize,
) -> Result<(Vec<Diff>, usize), ExternalError> {
    let ours: HashMap<&str, &ExternalInstance> = instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i))
        .collect();
    let mut pending: Vec<CheckInstance> = instances.iter().map(|i| i.check_entry()).collect();
    let mut diffs = Vec::new();
    let mut requests = 0;
    // Each round drops at least one task of each instance asked again.
    for _ in 0..=attendance_core::external::validate::MAX_TASKS + 1 {
        if pending.is_empty() {
            break;
        }
        let batches: Vec<&[CheckInstance]> = pending.chunks(CHECK_BATCH).collect();
        requests += batches.len();
        let answers: Vec<Vec<DiffInstance>> = futures::stream::iter(batches)
            .map(|batch| async move {
                client
                    .check_external_instances(batch)
                    .await
                    .map_err(|source| ExternalError::Platform {
                        during: "the check of the instances",
                        source,
                    })
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
        let asked: HashMap<String, CheckInstance> = pending
            .drain(..)
            .map(|c| (c.instance_id.clone(), c))
            .collect();
        for found in answers.into_iter().flatten() {
            let (Some(instance), Some(entry)) = (
                ours.get(found.instance_id.as_str()),
                asked.get(&found.instance_id),
            ) else {
                tracing::warn!(
                    instance_id = found.instance_id,
                    "the check reported an instance it was not asked about; ignored"
                );
                continue;
            };
            let platform = found.update_time.filter(|t| *t != MsTime(0));
            let tasks = found.tasks.unwrap_or_default();
            if tasks.is_empty() {
                let kind = match platform {
                    None => DiffKind::MissingInstance,
                    Some(_) => DiffKind::StaleInstance,
                };
                diffs.push(Diff {
                    instance_id: instance.instance_id.clone(),
                    task_id: None,
                    approval_code: Some(instance.approval_code.clone()),
                    kind,
                    ours: Some(instance.update_time),
                    platform,
                });
                continue;
            }
            let mut again = entry.clone();
            let mut matched = false;
            for task in tasks {
                let Some(our_task) = instance.tasks().iter().find(|t| t.task_id == task.task_id)
                else {
                    continue;
                };
                matched = true;
                let (kind, platform) = if task.update_time == MsTime(0) {
                    (DiffKind::MissingTask, None)
                } else {
                    (DiffKind::StaleTask, Some(task.update_time))
                };
                diffs.push(Diff {
                    instance_id: instance.instance_id.clone(),
                    task_id: Some(task.task_id.clone()),
                    approval_code: Some(instance.approval_code.clone()),
                    kind,
                    ours: Some(our_task.update_time),
                    platform,
                });
                again.tasks.retain(|t| t.task_id != task.task_id);
            }
            if !matched {
                // Only tasks it was not asked about: the instance differs, though no task of
                // ours can be named.
                diffs.push(Diff {
                    instance_id: instance.instance_id.clone(),
                    task_id: None,
                    approval_code: Some(instance.approval_code.clone()),
                    kind: DiffKind::StaleInstance,
                    ours: Some(instance.update_time),
                    platform,
                });
            } else if again.tasks.len() < entry.tasks.len() {
                pending.push(again);
            }
        }
    }
    diffs.sort_by(|a, b| (&a.instance_id, &a.task_id).cmp(&(&b.instance_id, &b.task_id)));
    Ok((diffs, requests))
}

/// Checks every instance of `request.source` and writes the differences.
pub async fn check(
    client: &Client,
    store: Arc<Store>,
    request: &CheckRequest,
) -> Result<CheckSummary, ExternalError> {
    let started: DateTime<Utc> = Utc::now();
    let (instances, intake) = intake::read_all(&request.source).await?;
    let mut summary = CheckSummary {
        command: "check",
        run_id: request.run_id.clone(),
        source: request.source.clone(),
        intake: intake
            .report(&store, "check", &request.run_id, &request.source, started)
            .await?,
        ..CheckSummary::default()
    };
    let (diffs, requests) = find_diffs(client, &instances, request.concurrency).await?;
    summary.requests = requests;
    for diff in &diffs {
        *summary.by_kind.entry(diff.kind.as_str()).or_default() += 1;
    }
    let codes: BTreeSet<String> = instances.iter().map(|i| i.approval_code.clone()).collect();
    if !codes.is_empty() {
        let mut rows = Rows::new(ExternalTable::Diffs);
        for diff in &diffs {
            rows.add_diff(diff, started.timestamp_millis());
        }
        summary.partition = replace_snapshot(
            &store,
            &request.run_id,
            request.lease_ttl,
            ExternalTable::Diffs,
            started.date_naive(),
            rows.finish(),
            codes,
        )
        .await?;
    }
    summary.diffs = diffs;
    runs::write_manifest(&store, &request.run_id, &summary).await?;
    Ok(summary)
}
