//! `upgrade`: an output root written under an older schema of the four tables brought to the
//! current one in place, without the platform, so that a warehouse reads one schema throughout
//! (a run rewrites only the partitions it fetches; the history would keep the old one for good).
//!
//! Invariants: under the root's lease, like a backfill; each partition is rewritten whole with
//! the same rows (`attendance_lake::commit::Sink::upgrade`), those already current are left
//! as they are, so an upgrade stopped anywhere and run again finishes the job, and one run
//! after another writes nothing.

use std::sync::Arc;
use std::time::Instant;

use attendance_core::plan::EmployeeType;
use attendance_core::table::{RunStamp, SCHEMA_VERSION};
use attendance_lake::commit::{Sink, UpgradeReport};
use attendance_lake::lease::{LEASE_PATH, Lease};
use attendance_lake::store::Store;
use chrono::{DateTime, Utc};

use crate::RunError;
use crate::run::new_run_id;

/// What an upgrade did.
#[derive(Debug, serde::Serialize)]
pub struct UpgradeSummary {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub output: String,
    pub schema_version: &'static str,
    #[serde(flatten)]
    pub report: UpgradeReport,
}

/// Upgrades the root `out`, whose ids are of `employee_type`.
pub async fn upgrade_root(
    out: &str,
    employee_type: EmployeeType,
    lease_ttl: std::time::Duration,
) -> Result<UpgradeSummary, RunError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = new_run_id(started_at);
    let store = Arc::new(Store::open(out)?);
    store.check().await?;
    let sink = Sink::new(Arc::clone(&store), employee_type);
    let stamp = Arc::new(RunStamp {
        run_id: run_id.clone(),
        ingested_at_micros: started_at.timestamp_micros(),
    });
    let result = Lease::run_under(&store, LEASE_PATH, &run_id, lease_ttl, async |lease| {
        let still_ours = || !lease.is_lost();
        sink.check_employee_type().await?;
        sink.upgrade(stamp, &still_ours).await
    })
    .await?;
    Ok(UpgradeSummary {
        run_id,
        started_at,
        duration_seconds: clock.elapsed().as_secs_f64(),
        output: out.to_string(),
        schema_version: SCHEMA_VERSION,
        report: result?,
    })
}
