//! The errors of a pull run, and the queries that failed within one.

use std::fmt;
use std::sync::Arc;

use attendance_core::chain::Chain;
use attendance_core::flatten::FlattenError;
use attendance_core::plan::{PlanError, Status, Window};
use attendance_feishu::PlatformError;
use attendance_feishu::endpoints::QUERY;
use attendance_lake::commit::SinkError;
use attendance_lake::lease::LeaseError;
use attendance_lake::store::StoreError;

use crate::recording::RecordingError;
use crate::users::ListUsersError;

/// Why a run could not start, or stopped once started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Users(#[from] ListUsersError),
    #[error("writing output")]
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
    #[error("{batch}")]
    Fatal {
        batch: Box<BatchRef>,
        #[source]
        error: PlatformError,
    },
    #[error(
        "the platform refused all {refused} users tried so far and accepted none (1220004/1220005): the app's data scope or permission is missing; stopping"
    )]
    AllRefused { refused: usize },
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

/// Why a query gave no rows.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The answer came (code 0) but did not flatten: its `data` has the wrong shape, or (a bug)
    /// a batch could not be built. Not retried: the same answer fails the same way.
    #[error("{QUERY}: the answer could not be flattened")]
    Flatten(#[source] Arc<FlattenError>),
}

/// A query that failed after its retries; its window was not committed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub batch: BatchRef,
    pub error: QueryError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.batch, Chain(&self.error))
    }
}
