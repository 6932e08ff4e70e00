//! Third-party approvals: instance files made in another system, validated, synced into the
//! approval center and reconciled with it, and landed as tables.
//!
//! - [`source`] and [`intake`]: a file or object of instance documents read one at a time,
//!   each validated; the invalid ones kept aside with every problem named.
//! - [`push`]: the valid instances sent (`POST approval/v4/external_instances`), by default
//!   only those the check API reports missing or stale.
//! - [`check`]: the reconciliation, as the `external_diffs` table.
//! - [`pull`]: the platform's task statuses (`GET approval/v4/external_tasks`), as the
//!   `external_task_status` snapshot.
//! - [`load`]: the documents as the `external_instances`, `external_instance_tasks`,
//!   `external_instance_ccs` and `external_i18n` tables.
//!
//! Invariants shared by the commands:
//! - Nothing invalid reaches the platform or a table; every rejected document is written to
//!   `_rejects/external/` and counted in the run's manifest (`_runs/<run_id>.json`).
//! - The commands that write tables hold a lease of the tables they write ([`lease_of`]): two
//!   loads, two checks or two pulls never write one root at once, while a check, a pull and a
//!   load (different tables) run side by side, and none waits for a pull of approvals or a
//!   compaction, which write other tables.
//! - Tables are written with the pull tables' Parquet writer, partitions replaced by approval
//!   code ([`tables`]).
//!
//! Depends on the vocabulary (`attendance-core`), the client (`attendance-feishu`) and the
//! output root (`attendance-lake`), beside the pull and the events, never above them.

pub mod check;
pub mod intake;
pub mod load;
pub mod pull;
pub mod push;
pub mod source;
pub mod tables;

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::ArrowError;
use attendance_core::external::table::ExternalTable;
use attendance_feishu::PlatformError;
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::{Store, StoreError};
use parquet::errors::ParquetError;

pub use source::{Position, Source, SourceError};

/// The lease of the writers of `table`: one for the four document tables (`load`), one for
/// each snapshot.
pub fn lease_of(table: ExternalTable) -> &'static str {
    match table {
        ExternalTable::Instances
        | ExternalTable::Tasks
        | ExternalTable::Ccs
        | ExternalTable::I18n => "_external/load-lease.json",
        ExternalTable::Diffs => "_external/check-lease.json",
        ExternalTable::TaskStatus => "_external/pull-lease.json",
    }
}

/// Why an external command stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("{during} failed; no further request was sent")]
    Platform {
        during: &'static str,
        #[source]
        source: PlatformError,
    },
    #[error("{path}: not a Parquet file this job wrote; move it away and run again")]
    Unreadable {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error(
        "{path} does not have the columns of {table}: move it away or write to a new output root"
    )]
    SchemaMismatch { path: String, table: &'static str },
    #[error("cannot merge the rows of {table}")]
    Arrow {
        table: &'static str,
        #[source]
        source: ArrowError,
    },
    #[error("cannot encode {table}")]
    Encode {
        table: &'static str,
        #[source]
        source: ParquetError,
    },
    #[error("cannot use the spill directory {dir}")]
    Spill {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the lease on the output root was lost: stopped before writing {path}")]
    LeaseLost { path: String },
}

impl ExternalError {
    fn arrow(table: ExternalTable) -> impl Fn(ArrowError) -> ExternalError {
        move |source| ExternalError::Arrow {
            table: table.name(),
            source,
        }
    }
}

/// Writes `batch` as the rows of `codes` in the snapshot `table`'s partition of `date`, under
/// the lease; the partition's path when it was written or deleted.
pub(crate) async fn replace_snapshot(
    store: &Arc<Store>,
    run_id: &str,
    ttl: Duration,
    table: ExternalTable,
    date: chrono::NaiveDate,
    batch: arrow_array::RecordBatch,
    codes: std::collections::BTreeSet<String>,
) -> Result<Option<String>, ExternalError> {
    let change = leased(store, lease_of(table), run_id, ttl, async |lease| {
        tables::replace_partition(
            store,
            &tables::writer_of(table),
            table,
            date,
            Some(batch).filter(|b| b.num_rows() > 0),
            Arc::new(tables::Replaced::Codes(codes)),
            &|| !lease.is_lost(),
        )
        .await
    })
    .await?;
    Ok(match change {
        tables::Change::Written { path, .. } | tables::Change::Deleted { path } => Some(path),
        tables::Change::Unchanged => None,
    })
}

/// Runs `work` under the lease at `path` of `store`, renewed while it runs.
pub(crate) async fn leased<T>(
    store: &Arc<Store>,
    path: &'static str,
    run_id: &str,
    ttl: Duration,
    work: impl AsyncFnOnce(&Lease) -> Result<T, ExternalError>,
) -> Result<T, ExternalError> {
    Lease::run_under(store, path, run_id, ttl, async |lease| work(lease).await).await?
}
