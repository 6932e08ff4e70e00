//! The vocabulary of attendance-sync and the pure stages of its pipeline: no I/O, no async
//! runtime, no command line, no HTTP.
//!
//! - [`plan`]: dates and query windows, statuses, employee types; a date range and a user list
//!   cut into the queries the platform accepts.
//! - [`answer`]: a query answer's `data` and its records, read where they lie in its text.
//! - [`tz`]: the platform's local wall times to UTC instants, with the DST rule.
//! - [`table`]: the four output tables (schema v1), their column builders and row order.
//! - [`flatten`]: one answer into Arrow batches of those tables, plus the records kept aside.
//! - [`json`]: a JSON value read from its text, borrowing its plain strings, for readers of many
//!   small documents.
//! - [`approval_event`]: pushed approval events' bodies read into typed records, every form the
//!   pages show accepted, and the user and dates each names.
//! - [`event_table`]: the `approval_events` table, one row per distinct landed event.
//! - [`event_state`]: `out_events`, `leave_events`, `overtime_events`: each approval's latest
//!   state from its events, reverts applied, local times read in the applicant's zone.
//! - [`external`]: third-party approval instances: their model, the rules they must meet
//!   before they are sent, and their tables.
//! - [`chain`]: an error with its causes on one line.
//!
//! Invariant of the crate: every function is a pure function of its arguments (the clock and the
//! file system are never read), so each stage is tested on values alone. It depends on no crate
//! of this workspace, and must never depend on one: the client (`attendance-feishu`), the
//! output root (`attendance-lake`) and the orchestration (`attendance-pull`) build on it.

pub mod answer;
pub mod approval_event;
pub mod chain;
pub mod event_state;
pub mod event_table;
pub mod external;
pub mod flatten;
pub mod json;
pub mod plan;
pub mod table;
pub mod tz;
pub mod windows_zones;
