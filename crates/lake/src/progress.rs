//! Progress records in the output root: `_progress/<key>.json`, what an unfinished backfill has
//! committed, so that a rerun of it resumes.
//!
//! Invariants:
//! - A progress record belongs to one backfill request: its key hashes the dates, statuses,
//!   employee type and user list, so a different request never resumes from it.
//! - A window is recorded only after its commit finished, so resuming never skips a window whose
//!   files are not all in place. The record is removed when a run finishes with nothing failed.

use std::collections::BTreeSet;

use attendance_core::plan::{EmployeeType, Status, Window};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Directory of progress records.
pub const PROGRESS_DIR: &str = "_progress";
/// A progress record older than this is not resumed from: a rerun months later fetches again.
pub const PROGRESS_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// What an unfinished backfill has committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub key: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub statuses: Vec<Status>,
    pub employee_type: EmployeeType,
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
    statuses: &[Status],
    employee_type: EmployeeType,
    users: &[String],
) -> String {
    // The text hashed is pinned (codes as `[2, 3]`, the employee type's name): a key that
    // changed between builds would make every resume start over.
    let statuses: Vec<i32> = statuses.iter().map(|s| s.code()).collect();
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

/// The progress record of `key`, if there is a readable one.
pub async fn load_progress(store: &Store, key: &str) -> Result<Option<Progress>, StoreError> {
    let Some(bytes) = store.get(&progress_path(key)).await? else {
        return Ok(None);
    };
    // An unreadable record is as good as none: the backfill starts over, which is always safe.
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Writes `progress` over its earlier state.
pub async fn save_progress(store: &Store, progress: &Progress) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(progress).expect("progress serializes");
    store.put(&progress_path(&progress.key), bytes).await
}

/// Removes the record of `key`: the next run of that backfill starts over.
pub async fn clear_progress(store: &Store, key: &str) -> Result<(), StoreError> {
    store.delete(&progress_path(key)).await
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
            &[Status::APPROVED],
            EmployeeType::EmployeeId,
            &["b".into(), "a".into()],
        );
        let b = progress_key(
            d("2026-01-01"),
            d("2026-03-31"),
            &[Status::APPROVED],
            EmployeeType::EmployeeId,
            &["a".into(), "b".into()],
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        let c = progress_key(
            d("2026-01-01"),
            d("2026-03-31"),
            &[Status::APPROVED, Status::WITHDRAWN],
            EmployeeType::EmployeeId,
            &["a".into(), "b".into()],
        );
        assert_ne!(a, c);
        // Pinned: the key must not change between builds, or resumes would silently restart.
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            c, "b2732281b6a00d24",
            "the key of a request, as earlier builds made it"
        );
    }
}
