//! attendance-sync: Feishu / Lark attendance approvals to date-partitioned Parquet tables.
//!
//! The pipeline, one module a stage: [`platform`] (HTTP client) → [`plan`] (windows × batches ×
//! statuses) → [`flatten`] (answers to Arrow rows, with [`tz`] for wall times) → [`fresh`] (a
//! window's rows, spilled to disk past a budget) → [`sink`] (Parquet files
//! replaced atomically in a [`store`]: a local directory or S3, GCS, Azure). [`run`] drives them;
//! [`sim`] is the simulated tenant used by the tests and the demo. [`plan`], [`flatten`], [`tz`]
//! and [`table`] do no I/O.

pub mod cli;
pub mod ddl;
pub mod flatten;
pub mod fresh;
pub mod lease;
pub mod plan;
pub mod platform;
pub mod recording;
pub mod run;
pub mod runlog;
pub mod sim;
pub mod sink;
pub mod store;
pub mod table;
pub mod tz;
pub mod users;
