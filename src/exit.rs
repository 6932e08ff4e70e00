//! The one place where outcomes become exit codes (documented in the README, relied on by the
//! Kubernetes manifests' `podFailurePolicy`).

use std::process::ExitCode;

use attendance_events::LongConnectionError;
use attendance_events::compact::CompactError;
use attendance_external::{ExternalError, SourceError};
use attendance_feishu::{PlatformError, codes};
use attendance_lake::commit::SinkError;
use attendance_lake::lease::LeaseError;
use attendance_lake::store::StoreError;
use attendance_pull::RunError;
use attendance_pull::summary::{Outcome, RunSummary};
use attendance_pull::users::{ListUsersError, UsersFileError};

use crate::cli::ConfigError;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything fetched and committed (or help, a plan, a tenant served).
    Success,
    /// 1: anything else: no token, store unreachable, a window that cannot be written, ...
    Failure,
    /// 2: a usage or configuration error the operator must fix, or the lease held by another run.
    Usage,
    /// 3: partial: refused users or failed windows; the rest committed.
    Partial,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Partial => 3,
        }
    }

    /// The status of a run that started.
    pub fn of_run(summary: &RunSummary) -> ExitStatus {
        match summary.outcome() {
            Outcome::Complete => ExitStatus::Success,
            Outcome::Partial => ExitStatus::Partial,
            Outcome::Stopped => summary
                .fatal
                .as_deref()
                .map_or(ExitStatus::Failure, ExitStatus::of_run_error),
        }
    }

    /// The status of an error that stopped a run: a usage error for what the operator must fix
    /// in the command or its configuration (the plan, the output URL, the lease, a root of
    /// another employee type or schema, refused credentials), a failure for the rest.
    pub fn of_run_error(e: &RunError) -> ExitStatus {
        let refused_credentials = |error: &PlatformError| {
            matches!(error.code(), Some(codes::UNKNOWN_APP | codes::BAD_SECRET))
        };
        match e {
            RunError::Plan(_)
            | RunError::Store(StoreError::BadUrl { .. })
            | RunError::Lease(LeaseError::Held { .. } | LeaseError::Unreadable { .. })
            | RunError::Sink(
                SinkError::EmployeeTypeMismatch { .. } | SinkError::SchemaMismatch { .. },
            )
            | RunError::Users(ListUsersError::NoDirectory(_)) => ExitStatus::Usage,
            RunError::Fatal { error, .. }
            | RunError::Users(ListUsersError::Platform { error, .. })
                if refused_credentials(error) =>
            {
                ExitStatus::Usage
            }
            _ => ExitStatus::Failure,
        }
    }

    /// The status of an error that ended a command.
    pub fn of_error(e: &anyhow::Error) -> ExitStatus {
        if let Some(run) = e.downcast_ref::<RunError>() {
            return ExitStatus::of_run_error(run);
        }
        if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<UsersFileError>().is_some()
        {
            return ExitStatus::Usage;
        }
        if let Some(StoreError::BadUrl { .. }) = e.downcast_ref::<StoreError>() {
            return ExitStatus::Usage;
        }
        // A refusal of the app by the platform does not go away by retrying: the operator must
        // act (credentials, the app's event settings, the connection limit).
        if let Some(LongConnectionError::Refused { .. } | LongConnectionError::Discovery(_)) =
            e.downcast_ref::<LongConnectionError>()
        {
            return ExitStatus::Usage;
        }
        // Another run holds the root, or a file there is not ours: the operator decides.
        if let Some(
            CompactError::Lease(LeaseError::Held { .. } | LeaseError::Unreadable { .. })
            | CompactError::Unreadable { .. }
            | CompactError::Store(StoreError::BadUrl { .. }),
        ) = e.downcast_ref::<CompactError>()
        {
            return ExitStatus::Usage;
        }
        if let Some(e) = e.downcast_ref::<ExternalError>() {
            return ExitStatus::of_external_error(e);
        }
        ExitStatus::Failure
    }

    /// The status of an error that stopped an external command: the operator's to fix (the
    /// source, the root, refused credentials, another run's lease) or a failure.
    fn of_external_error(e: &ExternalError) -> ExitStatus {
        match e {
            ExternalError::Source(
                SourceError::NotFound { .. }
                | SourceError::BrokenArray { .. }
                | SourceError::Store {
                    cause: StoreError::BadUrl { .. },
                    ..
                },
            )
            | ExternalError::Store(StoreError::BadUrl { .. })
            | ExternalError::Lease(LeaseError::Held { .. } | LeaseError::Unreadable { .. })
            | ExternalError::Unreadable { .. }
            | ExternalError::SchemaMismatch { .. } => ExitStatus::Usage,
            ExternalError::Platform { source, .. }
                if matches!(source.code(), Some(codes::UNKNOWN_APP | codes::BAD_SECRET)) =>
            {
                ExitStatus::Usage
            }
            _ => ExitStatus::Failure,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}
