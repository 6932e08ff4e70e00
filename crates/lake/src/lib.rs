//! The output root of attendance-sync: a local directory or an object store prefix, and
//! everything the job keeps there.
//!
//! - [`store`]: the root itself (local, S3, GCS, Azure): atomic puts, conditional creates and
//!   updates.
//! - [`lease`]: one writer at a time on a root (`_lease.json`).
//! - [`writer`]: a Parquet writer per table, its properties built once.
//! - [`partition`]: where partitions and part files are (`<table>/date=…/part-NNNNN.parquet`).
//! - [`spill`]: a window's fresh rows, held in memory up to a budget and spilled past it.
//! - [`commit`]: the [`Sink`](commit::Sink) that replaces a window's partitions within a
//!   [`Scope`](scope::Scope), with the [`rejects`] kept aside beside them.
//! - [`inbox`]: the pushed events landed under `_events/inbox/`, one object per event.
//! - [`progress`] and [`runs`]: what an unfinished backfill committed (`_progress/`) and what
//!   each run did (`_runs/`).
//! - [`zones`]: each user's time zone as last seen in the pull's answers
//!   (`_events/user-time-zones.json`), for reading approval events' wall times.
//!
//! Depends on `attendance-core` only (the tables, the records kept aside, windows and statuses);
//! it must never depend on the platform client or the orchestration, so that every source of
//! rows (the pull, approval events, third-party approvals) lands through the same writer.

pub mod commit;
pub mod inbox;
pub mod lease;
pub mod partition;
pub mod progress;
pub mod rejects;
pub mod runs;
pub mod scope;
pub mod spill;
pub mod store;
pub mod writer;
pub mod zones;
