//! End-to-end tests: the real binary against the simulated tenant over loopback (and a real
//! S3-protocol server), its Parquet files read back. One test binary, a module per feature.

mod backfill;
mod cli;
mod deploy;
mod event_tables;
mod events;
mod external;
mod lease_resume;
mod replay;
mod resilience;
mod storage;
mod sync_plan;
mod util;
mod zones;
