//! The records kept aside: `_rejects/date=YYYY-MM-DD/rejects.ndjson`, one JSON object a line,
//! replaced by a commit under the same rules as the tables' partitions.
//!
//! Invariants:
//! - A reject goes under the date it came under; one whose date is unreadable or outside the
//!   window goes under the window's first date (its `date` field says what it was).
//! - A commit keeps the old lines outside its [`Scope`] and adds its own; the same reject seen
//!   again (a record outside every run's scope) is one line: lines are compared without the run
//!   that wrote them.
//! - A date left with no line loses its file.

use std::collections::HashSet;

use attendance_core::flatten::Reject;
use attendance_core::plan::Window;
use attendance_core::tz::parse_yyyymmdd;
use chrono::NaiveDate;

use crate::partition::partition_dir;
use crate::scope::Scope;

/// Directory of the records kept aside, partitioned by date like the tables.
pub const REJECTS_DIR: &str = "_rejects";
/// The one file of a rejects partition.
pub const REJECTS_FILE: &str = "rejects.ndjson";

/// A rejects file whose old lines cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct RejectsError {
    pub path: String,
    #[source]
    pub source: serde_json::Error,
}

/// The rejects file of `date`, relative to the root.
pub fn rejects_path(date: NaiveDate) -> String {
    format!("{}/{REJECTS_FILE}", partition_dir(REJECTS_DIR, date))
}

/// The date whose file `reject` goes to, in a commit of `window`.
pub fn date_for(reject: &Reject, window: Window) -> NaiveDate {
    reject
        .date
        .as_deref()
        .and_then(parse_yyyymmdd)
        .filter(|d| window.contains(*d))
        .unwrap_or(window.from)
}

/// What a commit does to one date's rejects file.
#[derive(Debug, PartialEq, Eq)]
pub enum RejectsChange {
    /// No file before, none after.
    Nothing,
    Put {
        path: String,
        bytes: Vec<u8>,
    },
    Delete {
        path: String,
    },
}

/// The new rejects file of `date`: the `old` lines outside `scope` plus the `fresh` rejects,
/// each stamped with `run_id`.
pub fn merge(
    date: NaiveDate,
    fresh: &[Reject],
    old: Option<&str>,
    scope: &Scope,
    run_id: &str,
) -> Result<RejectsChange, RejectsError> {
    let path = rejects_path(date);
    if fresh.is_empty() && old.is_none() {
        return Ok(RejectsChange::Nothing);
    }
    #[derive(serde::Deserialize)]
    struct Key {
        user_id: Option<String>,
        status: i32,
    }
    let mut seen = HashSet::new();
    let without_run = |line: &str| -> String {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("run_id");
        }
        v.to_string()
    };
    let mut buf = Vec::new();
    for line in old.unwrap_or("").lines().filter(|l| !l.trim().is_empty()) {
        let key: Key = serde_json::from_str(line).map_err(|source| RejectsError {
            path: path.clone(),
            source,
        })?;
        if !scope.covers(key.user_id.as_deref(), key.status) && seen.insert(without_run(line)) {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
    }
    #[derive(serde::Serialize)]
    struct Line<'a> {
        run_id: &'a str,
        #[serde(flatten)]
        reject: &'a Reject,
    }
    for reject in fresh {
        let text =
            serde_json::to_string(&Line { run_id, reject }).expect("a reject always serializes");
        if seen.insert(without_run(&text)) {
            buf.extend_from_slice(text.as_bytes());
            buf.push(b'\n');
        }
    }
    Ok(if buf.is_empty() {
        RejectsChange::Delete { path }
    } else {
        RejectsChange::Put { path, bytes: buf }
    })
}

#[cfg(test)]
mod tests {
    use attendance_core::plan::Status;
    use attendance_core::table::Table;

    use super::*;

    fn scope() -> Scope {
        Scope {
            users: ["u1".to_string()].into(),
            statuses: [Status::APPROVED].into(),
        }
    }

    fn reject(user: &str) -> Reject {
        Reject {
            table: Some(Table::Outs),
            user_id: Some(user.into()),
            date: Some("20260915".into()),
            approval_id: Some("a".into()),
            status: Status::APPROVED,
            field: "user_id".into(),
            value: Some(user.into()),
            reason: "outside the batch".into(),
            raw: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        }
    }

    fn put(change: RejectsChange) -> String {
        match change {
            RejectsChange::Put { bytes, .. } => String::from_utf8(bytes).unwrap(),
            other => panic!("expected a put, got {other:?}"),
        }
    }

    #[test]
    fn a_reject_seen_again_is_kept_once() {
        let d = NaiveDate::from_ymd_opt(2026, 9, 15).unwrap();
        let first = put(merge(d, &[reject("stranger")], None, &scope(), "r1").unwrap());
        let second = put(merge(d, &[reject("stranger")], Some(&first), &scope(), "r2").unwrap());
        assert_eq!(second.lines().count(), 1, "{second}");
        assert!(second.contains(r#""run_id":"r1""#), "{second}");
    }

    #[test]
    fn lines_within_the_scope_are_replaced_and_an_empty_file_deleted() {
        let d = NaiveDate::from_ymd_opt(2026, 9, 15).unwrap();
        let old = put(merge(d, &[reject("u1")], None, &scope(), "r1").unwrap());
        assert_eq!(
            merge(d, &[], Some(&old), &scope(), "r2").unwrap(),
            RejectsChange::Delete {
                path: "_rejects/date=2026-09-15/rejects.ndjson".into()
            }
        );
        assert_eq!(
            merge(d, &[], None, &scope(), "r2").unwrap(),
            RejectsChange::Nothing
        );
        let err = merge(d, &[], Some("not json\n"), &scope(), "r2").unwrap_err();
        assert!(err.to_string().contains("rejects.ndjson"), "{err}");
    }

    #[test]
    fn a_reject_is_filed_under_its_date_or_the_windows_first() {
        let window = Window {
            from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
        };
        let mut r = reject("u1");
        assert_eq!(
            date_for(&r, window),
            NaiveDate::from_ymd_opt(2026, 9, 15).unwrap()
        );
        r.date = Some("20261015".into());
        assert_eq!(date_for(&r, window), window.from);
        r.date = Some("bad".into());
        assert_eq!(date_for(&r, window), window.from);
    }
}
