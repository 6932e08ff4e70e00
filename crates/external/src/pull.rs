//! `external pull`: the platform's task statuses of third-party instances
//! (`GET approval/v4/external_tasks`) as the `external_task_status` snapshot.
//!
//! Invariants:
//! - Every page of every batch of approval codes is read (the client asks at most 20 codes a
//!   request, 500 items a page), before anything is written.
//! - One row per task; an instance listed without tasks has one row with null task columns,
//!   so that no listed instance is lost.
//! - The snapshot is partitioned by the UTC date it was taken: a pull replaces that date's rows
//!   of the approval codes it asked for, so the partition holds each code's latest snapshot of
//!   the day (a pull filtered by status or users replaces them with the filtered rows).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use attendance_core::external::table::{ExternalTable, Rows, TaskStatusRow};
use attendance_feishu::Client;
use attendance_feishu::model::ExternalTaskFilter;
use attendance_lake::runs;
use attendance_lake::store::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{ExternalError, replace_snapshot};

/// What a pull asks.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub approval_codes: Vec<String>,
    /// A task status to list only (PENDING, APPROVED, …).
    pub status: Option<String>,
    /// Approvers (user_id) to list only.
    pub user_ids: Vec<String>,
    pub run_id: String,
    pub lease_ttl: Duration,
}

/// What a pull did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullSummary {
    pub command: &'static str,
    pub run_id: String,
    pub approval_codes: usize,
    pub instances: usize,
    pub tasks: usize,
    pub rows: usize,
    /// The `external_task_status` partition written or deleted.
    pub partition: Option<String>,
}

/// Lists the task statuses of `request.approval_codes` and writes the snapshot.
pub async fn pull(
    client: &Client,
    store: Arc<Store>,
    request: &PullRequest,
) -> Result<PullSummary, ExternalError> {
    let started: DateTime<Utc> = Utc::now();
    let filter = ExternalTaskFilter {
        approval_codes: request.approval_codes.clone(),
        instance_ids: Vec::new(),
        user_ids: request.user_ids.clone(),
        status: request.status.clone(),
    };
    let groups = client
        .list_external_tasks(&filter)
        .await
        .map_err(|source| ExternalError::Platform {
            during: "the list of third-party tasks",
            source,
        })?;
    let mut summary = PullSummary {
        command: "pull",
        run_id: request.run_id.clone(),
        approval_codes: request.approval_codes.len(),
        instances: groups.len(),
        ..PullSummary::default()
    };
    let mut rows = Rows::new(ExternalTable::TaskStatus);
    let at = started.timestamp_millis();
    for group in &groups {
        let row = |task: Option<&attendance_feishu::model::ExternalTaskState>| TaskStatusRow {
            instance_id: group.instance_id.clone(),
            approval_id: Some(group.approval_id.clone()).filter(|a| !a.is_empty()),
            approval_code: group.approval_code.clone(),
            instance_status: Some(group.status.clone()),
            instance_update_time: Some(group.update_time),
            task_id: task.map(|t| t.id.clone()),
            task_status: task.map(|t| t.status.clone()),
            task_update_time: task.map(|t| t.update_time),
        };
        if group.tasks.is_empty() {
            rows.add_task_status(&row(None), at);
        }
        for task in &group.tasks {
            summary.tasks += 1;
            rows.add_task_status(&row(Some(task)), at);
        }
    }
    summary.rows = rows.len();
    let codes: BTreeSet<String> = request.approval_codes.iter().cloned().collect();
    summary.partition = replace_snapshot(
        &store,
        &request.run_id,
        request.lease_ttl,
        ExternalTable::TaskStatus,
        started.date_naive(),
        rows.finish(),
        codes,
    )
    .await?;
    runs::write_manifest(&store, &request.run_id, &summary).await?;
    Ok(summary)
}
