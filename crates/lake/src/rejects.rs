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
//!
//! [`tally`] reads every file under `_rejects/` (the pull's partitions, the compaction's
//! `events.ndjson`, the third-party commands' `external/`), whatever wrote it, for `rejects list`.

use std::collections::{BTreeMap, HashSet};

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

/// Records kept aside that share their source, table, field and reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectGroup {
    /// `pull`, `events`, or `external <command>`.
    pub source: String,
    /// The table (pull), event type (events), or `instance` (external).
    pub table: String,
    pub field: String,
    pub reason: String,
    pub count: usize,
    /// The values that were wrong, with how often each came (the pull's records name them).
    pub values: BTreeMap<String, usize>,
}

/// What `_rejects/` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RejectsTally {
    /// Records (lines) read.
    pub records: usize,
    pub files: usize,
    /// Lines that are not JSON: counted, and named by file in `unreadable_files`.
    pub unreadable_lines: usize,
    pub unreadable_files: Vec<String>,
    /// Largest first.
    pub groups: Vec<RejectGroup>,
}

/// Tallies the records under `_rejects/`, those of the dated files within `from..=to` only
/// (the events' file, which has no date, always).
pub async fn tally(
    store: &crate::store::Store,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<RejectsTally, crate::store::StoreError> {
    #[derive(serde::Deserialize)]
    struct Line {
        table: Option<String>,
        event_type: Option<String>,
        command: Option<String>,
        field: Option<String>,
        reason: Option<String>,
        value: Option<String>,
        problems: Option<Vec<ProblemLine>>,
    }
    #[derive(serde::Deserialize)]
    struct ProblemLine {
        field: String,
        reason: String,
    }
    let mut tally = RejectsTally::default();
    // (source, table, field, reason) → (records, wrong values and their counts)
    type Key = (String, String, String, String);
    let mut groups: BTreeMap<Key, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    let mut files = store.list_files(REJECTS_DIR).await?;
    files.sort();
    for rel in files {
        if !rel.ends_with(".ndjson") {
            continue;
        }
        let date = rel.split('/').find_map(|part| {
            part.strip_prefix("date=")
                .and_then(|d| d.parse::<NaiveDate>().ok())
        });
        if let Some(date) = date
            && (from.is_some_and(|f| date < f) || to.is_some_and(|t| date > t))
        {
            continue;
        }
        let source = if rel.starts_with(&format!("{REJECTS_DIR}/external/")) {
            "external"
        } else if date.is_some() {
            "pull"
        } else {
            "events"
        };
        let Some(bytes) = store.get(&rel).await? else {
            continue;
        };
        tally.files += 1;
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            tally.records += 1;
            let Ok(line) = serde_json::from_str::<Line>(line) else {
                tally.unreadable_lines += 1;
                if tally.unreadable_files.last() != Some(&rel) {
                    tally.unreadable_files.push(rel.clone());
                }
                continue;
            };
            let (source, table) = match source {
                "external" => (
                    format!("external {}", line.command.as_deref().unwrap_or("?")),
                    "instance".to_owned(),
                ),
                "events" => ("events".to_owned(), line.event_type.unwrap_or_default()),
                _ => (
                    "pull".to_owned(),
                    line.table.unwrap_or_else(|| "(answer)".to_owned()),
                ),
            };
            let problems: Vec<(String, String)> = match line.problems {
                Some(problems) if !problems.is_empty() => {
                    problems.into_iter().map(|p| (p.field, p.reason)).collect()
                }
                _ => vec![(
                    line.field.unwrap_or_default(),
                    line.reason.unwrap_or_default(),
                )],
            };
            for (field, reason) in problems {
                let group = groups
                    .entry((source.clone(), table.clone(), field, reason))
                    .or_default();
                group.0 += 1;
                if let Some(value) = &line.value {
                    *group.1.entry(value.clone()).or_default() += 1;
                }
            }
        }
    }
    tally.groups = groups
        .into_iter()
        .map(
            |((source, table, field, reason), (count, values))| RejectGroup {
                source,
                table,
                field,
                reason,
                count,
                values,
            },
        )
        .collect();
    tally.groups.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| {
            (&a.source, &a.table, &a.field, &a.reason)
                .cmp(&(&b.source, &b.table, &b.field, &b.reason))
        })
    });
    Ok(tally)
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
            time_zone: Some("Asia/Shanghai".into()),
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

    #[tokio::test]
    async fn a_tally_counts_every_kind_of_reject_by_source_table_field_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path().to_str().unwrap()).unwrap();
        let pull = |user: &str, zone: &str| {
            format!(
                r#"{{"run_id":"r","table":"leaves","user_id":"{user}","date":"20260915","status":2,"field":"time_zone","value":"{zone}","reason":"unknown time zone","raw":{{}}}}"#
            )
        };
        let day = |d: &str, lines: &[String]| {
            (
                format!("_rejects/date={d}/rejects.ndjson"),
                lines.join("\n").into_bytes(),
            )
        };
        let files = [
            day(
                "2026-09-15",
                &[
                    pull("u1", "GMT+8"),
                    pull("u2", "GMT+8"),
                    pull("u3", "Asia/Beijing"),
                ],
            ),
            day("2026-10-01", &[pull("u4", "GMT+8")]),
            (
                "_rejects/events.ndjson".to_owned(),
                br#"{"event_id":"e1","event_type":"leave_approvalV2","received_at":"2026-09-15T00:00:00Z","field":"event.start_time","reason":"not a time","raw":{}}"#.to_vec(),
            ),
            (
                "_rejects/external/date=2026-09-15/push-r.ndjson".to_owned(),
                br#"{"run_id":"r","command":"push","source":"f","position":{"line":3},"instance_id":"i","approval_code":"A","problems":[{"field":"status","reason":"bad"},{"field":"links","reason":"needs a link"}],"document":{}}
not json"#
                    .to_vec(),
            ),
        ];
        for (path, bytes) in files {
            store.put(&path, bytes).await.unwrap();
        }
        let all = tally(&store, None, None).await.unwrap();
        assert_eq!((all.files, all.records, all.unreadable_lines), (4, 7, 1));
        let top = &all.groups[0];
        assert_eq!(
            (
                top.source.as_str(),
                top.table.as_str(),
                top.field.as_str(),
                top.count
            ),
            ("pull", "leaves", "time_zone", 4)
        );
        assert_eq!(top.values["GMT+8"], 3);
        assert_eq!(top.values["Asia/Beijing"], 1);
        assert!(
            all.groups
                .iter()
                .any(|g| g.source == "events" && g.table == "leave_approvalV2" && g.count == 1)
        );
        assert_eq!(
            all.groups
                .iter()
                .filter(|g| g.source == "external push")
                .count(),
            2,
            "one group per problem"
        );
        // A date range keeps the dated files within it, and the events' file.
        let september = tally(
            &store,
            NaiveDate::from_ymd_opt(2026, 9, 1),
            NaiveDate::from_ymd_opt(2026, 9, 30),
        )
        .await
        .unwrap();
        assert_eq!(september.groups[0].count, 3);
        assert_eq!(september.files, 3);
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
