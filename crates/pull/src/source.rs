//! Where answers come from: the one seam between the pipeline and the platform.
//!
//! The live [`Client`] answers from the platform, a [`Replay`](crate::Replay) from a recording,
//! and [`Recorded`](crate::Recorded) keeps every answer of either; tests drive the pipeline with
//! answers held in memory. Whatever the source, an answer is what the client would have
//! returned: `data` on success, a [`PlatformError`] (with its code) otherwise.

use std::future::Future;

use attendance_core::answer::QueryData;
use attendance_core::plan::EmployeeType;
use attendance_feishu::model::QueryRequest;
use attendance_feishu::{Client, ClientStats, PlatformError};

/// Answers the pipeline's queries.
pub trait AnswerSource: Sync {
    /// The answer to one `user_approvals/query`.
    fn answer(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> impl Future<Output = Result<QueryData, PlatformError>> + Send;

    /// What the source has sent so far, for the summary; nothing for a source that sends
    /// nothing.
    fn stats(&self) -> ClientStats {
        ClientStats::default()
    }

    /// The requests per second the source allows itself; `None` when it is not paced.
    fn rate_limit(&self) -> Option<u32> {
        None
    }

    /// The tenant's directory, to list users from: only a live source has one.
    fn directory(&self) -> Option<&Client> {
        None
    }
}

impl AnswerSource for Client {
    fn answer(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> impl Future<Output = Result<QueryData, PlatformError>> + Send {
        self.query_user_approvals(employee_type, query)
    }

    fn stats(&self) -> ClientStats {
        Client::stats(self)
    }

    fn rate_limit(&self) -> Option<u32> {
        Some(Client::rate_limit(self))
    }

    fn directory(&self) -> Option<&Client> {
        Some(self)
    }
}

impl<S: AnswerSource> AnswerSource for &S {
    fn answer(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> impl Future<Output = Result<QueryData, PlatformError>> + Send {
        (**self).answer(employee_type, query)
    }

    fn stats(&self) -> ClientStats {
        (**self).stats()
    }

    fn rate_limit(&self) -> Option<u32> {
        (**self).rate_limit()
    }

    fn directory(&self) -> Option<&Client> {
        (**self).directory()
    }
}
