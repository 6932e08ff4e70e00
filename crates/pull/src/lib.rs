//! The pull: `user_approvals/query` for a date range and a user list, landed as the four tables.
//!
//! A run goes extract → normalize → load, window after window:
//! - extract: the users are listed ([`users`]), the range is planned into windows × batches ×
//!   statuses, and each query is asked of an [`AnswerSource`] (the live client, a [`Replay`] of
//!   recorded answers, either one [`Recorded`]); a batch refused for one of its users is split
//!   until the user is found;
//! - normalize: each answer is flattened (`attendance_core::flatten`) on a blocking thread into
//!   a window's fresh rows and its records kept aside;
//! - load: a window whose every query succeeded is committed (`attendance_lake::commit`) under
//!   the output root's lease, and recorded as progress so that a rerun resumes after it.
//!
//! [`resync`] plans the re-reads the landed approval events ask for (a revert of an approval
//! older than a sync's trailing window). [`pipeline`] is the state machine that drives the three, [`run`] sets it up (run id, plan,
//! store, lease, progress) and returns a [`RunSummary`](summary::RunSummary) assembled from each
//! stage's own counts. Nothing here prints or decides an exit code: the binary does both.
//!
//! Depends on `attendance-core`, `attendance-feishu` and `attendance-lake`; nothing of this
//! workspace depends on it but the binary.

pub mod error;
pub mod manifest;
pub mod pipeline;
pub mod recording;
pub mod rejects_replay;
pub mod request;
pub mod resync;
pub mod run;
pub mod source;
pub mod summary;
pub mod upgrade;
pub mod users;

pub use error::RunError;
pub use recording::{Recorded, Replay};
pub use request::{BackfillRequest, RunProgress, Users};
pub use run::backfill;
pub use source::AnswerSource;
