//! Run records in the output root: `_progress/` (what an unfinished backfill has committed, so a
//! rerun resumes) and `_runs/<run_id>.json` (the manifest of what each run did).
//!
//! Invariants:
//! - A progress record belongs to one backfill request: its key hashes the dates, statuses,
//!   employee type and user list, so a different request never resumes from it.
//! - A window is recorded only after its commit finished, so resuming never skips a window whose
//!   files are not all in place. The record is removed when a run finishes with nothing failed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::flatten::FlattenCounts;
use crate::plan::Window;
use crate::platform::ClientStats;
use crate::sink::WrittenFile;
use crate::store::{Store, StoreError};
use crate::table::Table;

/// Directory of progress records.
pub const PROGRESS_DIR: &str = "_progress";
/// A progress record older than this is not resumed from: a rerun months later fetches again.
pub const PROGRESS_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Directory of run manifests.
pub const RUNS_DIR: &str = "_runs";

/// What an unfinished backfill has committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub key: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub statuses: Vec<i32>,
    pub employee_type: String,
    pub users: usize,
    pub committed: BTreeSet<Window>,
    /// Users the platform refused in the committed windows: a resumed run reports them too.
    #[serde(default)]
    pub refused_users: BTreeSet<String>,
    pub updated_at: DateTime<Utc>,
    pub run_id: String,
}

/// FNV-1a, 64 bits: a stable hash across builds and machines (std's hasher is neither).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The key of a backfill request.
pub fn progress_key(
    from: NaiveDate,
    to: NaiveDate,
    statuses: &[i32],
    employee_type: &str,
    users: &[String],
) -> String {
    let mut sorted: Vec<&str> = users.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let text = format!(
        "{from}|{to}|{statuses:?}|{employee_type}|{}",
        sorted.join("\n")
    );
    format!("{:016x}", fnv1a(text.bytes()))
}

fn progress_path(key: &str) -> String {
    format!("{PROGRESS_DIR}/{key}.json")
}

pub async fn load_progress(store: &Store, key: &str) -> Result<Option<Progress>, StoreError> {
    let Some(bytes) = store.get(&progress_path(key)).await? else {
        return Ok(None);
    };
    // An unreadable record is as good as none: the backfill starts over, which is always safe.
    Ok(serde_json::from_slice(&bytes).ok())
}

pub async fn save_progress(store: &Store, progress: &Progress) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(progress).expect("progress serializes");
    store.put(&progress_path(&progress.key), bytes).await
}

pub async fn clear_progress(store: &Store, key: &str) -> Result<(), StoreError> {
    store.delete(&progress_path(key)).await
}

/// What became of one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowOutcome {
    pub window: Window,
    /// `committed`, `skipped` (committed by an interrupted run), `failed` or `not reached`.
    pub outcome: &'static str,
}

/// A failed query, for the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct FailedQuery {
    pub window: Window,
    pub batch: usize,
    pub status: i32,
    pub first_user: String,
    pub last_user: String,
    pub error: String,
}

/// `_runs/<run_id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub run_id: String,
    pub schema_version: &'static str,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub exit_code: u8,
    pub output: String,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub windows: Vec<WindowOutcome>,
    pub users_source: &'static str,
    pub users: Vec<String>,
    pub statuses: Vec<i32>,
    pub employee_type: &'static str,
    pub requests: ClientStats,
    pub query_rate_per_second: f64,
    pub rate_limit_per_second: u32,
    /// Rows fetched and committed by this run, per table.
    pub rows_fetched: BTreeMap<Table, u64>,
    /// Rows in the files this run wrote, per table and date (kept rows of other users included).
    pub rows_in_files: BTreeMap<Table, BTreeMap<NaiveDate, u64>>,
    pub files: Vec<WrittenFile>,
    pub files_removed: Vec<String>,
    pub rejects: u64,
    pub dst: FlattenCounts,
    pub refused_users: Vec<String>,
    pub failed_queries: Vec<FailedQuery>,
    pub fatal: Option<String>,
}

impl Manifest {
    pub fn path(&self) -> String {
        format!("{RUNS_DIR}/{}.json", self.run_id)
    }

    /// Rows in the files per table and date, from the files list.
    pub fn rows_by_date(files: &[WrittenFile]) -> BTreeMap<Table, BTreeMap<NaiveDate, u64>> {
        let mut rows: BTreeMap<Table, BTreeMap<NaiveDate, u64>> = BTreeMap::new();
        for f in files {
            *rows.entry(f.table).or_default().entry(f.date).or_default() += f.rows as u64;
        }
        rows
    }

    pub async fn write(&self, store: &Store) -> Result<String, StoreError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        store.put(&self.path(), bytes).await?;
        Ok(store.describe(&self.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_keys_are_stable_and_order_free_in_users() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let a = progress_key(
            d("2026-01-01"),
            d("2026-03-31"),
            &[2],
            "employee_id",
            &["b".into(), "a".into()],
        );
        let b = progress_key(
            d("2026-01-01"),
            d("2026-03-31"),
            &[2],
            "employee_id",
            &["a".into(), "b".into()],
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        let c = progress_key(
            d("2026-01-01"),
            d("2026-03-31"),
            &[2, 3],
            "employee_id",
            &["a".into(), "b".into()],
        );
        assert_ne!(a, c);
        // Pinned: the key must not change between builds, or resumes would silently restart.
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
