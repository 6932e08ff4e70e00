//! `rejects replay`: the records the pull kept aside (`_rejects/date=D/rejects.ndjson`) read
//! again with today's rules and zone aliases, without asking the platform; those that now pass
//! are added to their partitions and leave `_rejects/`.
//!
//! Invariants:
//! - A record is re-read exactly as a query answer holding it would be: its user-date's user,
//!   date and `time_zone` as sent around its bytes as sent, flattened for its status over its
//!   date, so a record that passes is the row a backfill with the same aliases would write.
//! - Rows are added with [`Sink::add_rows`], which keeps every row of the partition but one that
//!   is the same record: the partitions are written first, the rejects files after, so a replay
//!   killed at any point and run again gives the same tables, and a second replay changes
//!   nothing.
//! - A record that still fails stays, with the field, value and reason of today's failure. A
//!   line that cannot be read again stays as it is, counted: not JSON; written before the
//!   user-date's `time_zone` was kept beside each record, for another field than the zone; a
//!   record answered for a user or a date its query did not ask (the partition it names is no
//!   query's: a replay must not write there); one that reads to no row.
//! - Under the output root's lease, like a backfill; the users' zones its rows show go to the
//!   root's map like a backfill's; its manifest goes to `_runs/`, also when it stops on an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use attendance_core::answer::QueryData;
use attendance_core::chain::Chain;
use attendance_core::flatten::{self, AnswerRows, FlattenCounts, ZoneCounts};
use attendance_core::plan::{EmployeeType, Status, Window};
use attendance_core::table::{RunStamp, Table};
use attendance_core::tz::{ZoneAliases, parse_yyyymmdd};
use attendance_lake::commit::{Sink, SinkError, WrittenFile};
use attendance_lake::lease::{LEASE_PATH, Lease};
use attendance_lake::partition;
use attendance_lake::rejects::{REJECTS_DIR, REJECTS_FILE};
use attendance_lake::store::Store;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::RunError;
use crate::run::new_run_id;

/// What to replay.
#[derive(Debug, Clone)]
pub struct RejectsReplayRequest {
    pub out: String,
    /// Only the rejects files of these dates (inclusive); all when `None`.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// The kind of user id the root holds.
    pub employee_type: EmployeeType,
    pub zone_aliases: Arc<ZoneAliases>,
    pub lease_ttl: std::time::Duration,
}

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RejectsReplaySummary {
    pub run_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_seconds: f64,
    pub output: String,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Alias → the zone it is read as.
    pub zone_aliases: BTreeMap<String, String>,
    pub files_read: usize,
    /// Lines read, every one.
    pub records: usize,
    /// Records that are rows now, by table.
    pub replayed: BTreeMap<Table, u64>,
    /// Of those, the rows read through an alias (by the zone it is read as), at a fixed offset,
    /// through a Windows ID.
    #[serde(flatten)]
    pub zones: ZoneCounts,
    /// Records that still fail, by field and today's reason.
    pub still_rejected: BTreeMap<String, u64>,
    /// Lines that cannot be read again, by why; kept as they are.
    pub not_replayable: BTreeMap<String, u64>,
    pub files: Vec<WrittenFile>,
    pub files_removed: Vec<String>,
    /// Rejects files rewritten (fewer lines, or reasons updated) and removed (no line left).
    pub rejects_files_rewritten: Vec<String>,
    pub rejects_files_removed: Vec<String>,
    /// The error that stopped the replay, after what is counted here was written.
    pub fatal: Option<String>,
}

impl RejectsReplaySummary {
    pub fn replayed_total(&self) -> u64 {
        self.replayed.values().sum()
    }

    pub fn still_rejected_total(&self) -> u64 {
        self.still_rejected.values().sum()
    }

    pub fn not_replayable_total(&self) -> u64 {
        self.not_replayable.values().sum()
    }
}

/// Replays the rejects files of `request`'s dates. `Err` when it could not start (the root, the
/// lease); an error that stopped it once started comes with what was done by then.
pub async fn replay_rejects(
    request: &RejectsReplayRequest,
) -> Result<(RejectsReplaySummary, Option<RunError>), RunError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = new_run_id(started_at);
    let store = Arc::new(Store::open(&request.out)?);
    store.check().await?;
    let mut summary = RejectsReplaySummary {
        run_id: run_id.clone(),
        started_at: Some(started_at),
        output: request.out.clone(),
        from: request.from,
        to: request.to,
        zone_aliases: request.zone_aliases.to_map(),
        ..RejectsReplaySummary::default()
    };
    let result = Lease::run_under(
        &store,
        LEASE_PATH,
        &run_id,
        request.lease_ttl,
        async |lease| {
            let mut zones = BTreeMap::new();
            let result = replay_leased(request, &store, lease, &mut summary, &mut zones).await;
            crate::run::save_zones(&store, lease, request.employee_type, &zones).await;
            result
        },
    )
    .await?;
    summary.duration_seconds = clock.elapsed().as_secs_f64();
    let stopped = result.err();
    summary.fatal = stopped.as_ref().map(|e| Chain(e).to_string());
    Ok((summary, stopped))
}

async fn replay_leased(
    request: &RejectsReplayRequest,
    store: &Arc<Store>,
    lease: &Arc<Lease>,
    summary: &mut RejectsReplaySummary,
    zones: &mut BTreeMap<String, (NaiveDate, &'static str)>,
) -> Result<(), RunError> {
    let sink = Sink::new(Arc::clone(store), request.employee_type);
    sink.check_employee_type().await?;
    let stamp = Arc::new(RunStamp {
        run_id: summary.run_id.clone(),
        ingested_at_micros: summary.started_at.unwrap_or_default().timestamp_micros(),
    });
    let still_ours = {
        let lease = Arc::clone(lease);
        move || !lease.is_lost()
    };
    let mut files: Vec<(NaiveDate, String)> = store
        .list_files(REJECTS_DIR)
        .await?
        .into_iter()
        .filter(|rel| rel.ends_with(&format!("/{REJECTS_FILE}")))
        .filter_map(|rel| partition::date_of(&rel).map(|d| (d, rel)))
        .filter(|(d, _)| request.from.is_none_or(|f| *d >= f) && request.to.is_none_or(|t| *d <= t))
        .collect();
    files.sort();
    for (date, rel) in files {
        let Some(bytes) = store.get(&rel).await? else {
            continue;
        };
        summary.files_read += 1;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut kept = String::new();
        let mut rows: BTreeMap<(Table, NaiveDate), Vec<AnswerRows>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            summary.records += 1;
            match reread(line, date, &stamp, &request.zone_aliases) {
                Reread::Rows(found, counts, seen) => {
                    flatten::merge_zones(zones, seen);
                    for part in found {
                        let Some(&row_date) = part.dates.first() else {
                            continue;
                        };
                        *summary.replayed.entry(part.table).or_default() += part.dates.len() as u64;
                        rows.entry((part.table, row_date)).or_default().push(part);
                    }
                    summary.zones += counts.zones;
                }
                Reread::Fails(updated, why) => {
                    *summary.still_rejected.entry(why).or_default() += 1;
                    kept.push_str(&updated);
                    kept.push('\n');
                }
                Reread::Unreadable(why) => {
                    *summary.not_replayable.entry(why.to_string()).or_default() += 1;
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        // The rows first: a replay stopped before the rejects file is rewritten adds the same
        // records again next time, in place of themselves.
        for ((table, row_date), parts) in rows {
            let batches = parts.into_iter().map(|p| p.batch).collect();
            let report = sink
                .add_rows(table, row_date, batches, Arc::clone(&stamp), &still_ours)
                .await?;
            summary.files.extend(report.files);
            summary.files_removed.extend(report.removed);
        }
        if kept == text {
            continue;
        }
        if lease.is_lost() {
            return Err(SinkError::Fenced.into());
        }
        if kept.is_empty() {
            store.delete(&rel).await?;
            summary.rejects_files_removed.push(rel);
        } else {
            store.put(&rel, kept.into_bytes()).await?;
            summary.rejects_files_rewritten.push(rel);
        }
    }
    Ok(())
}

/// What reading one kept line again came to.
enum Reread {
    /// Rows (one record's, or a whole user_approval's: all of one date), how their zones were
    /// read, and the users' zones they show.
    Rows(
        Vec<AnswerRows>,
        FlattenCounts,
        BTreeMap<String, (NaiveDate, &'static str)>,
    ),
    /// Still kept aside: the line with today's field, value and reason; `field: reason`.
    Fails(String, String),
    /// Cannot be read again; kept as it is.
    Unreadable(&'static str),
}

/// Reads one line of the rejects file of `file_date` again. The line's values are kept as raw
/// JSON, so the record's bytes as sent go into the answer, and back into the file, unchanged.
fn reread(line: &str, file_date: NaiveDate, stamp: &RunStamp, aliases: &ZoneAliases) -> Reread {
    let Ok(mut kept) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(line) else {
        return Reread::Unreadable("not a JSON object");
    };
    let value = |kept: &BTreeMap<String, Box<RawValue>>, key: &str| -> Option<Value> {
        kept.get(key)
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    };
    let text = |key: &str| match value(&kept, key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let Some(status) = value(&kept, "status")
        .and_then(|s| s.as_i64())
        .and_then(|s| Status::new(i32::try_from(s).ok()?))
    else {
        return Reread::Unreadable("no readable status");
    };
    let Some(raw) = kept.get("raw").map(|raw| raw.get().to_string()) else {
        return Reread::Unreadable("no raw record");
    };
    let user = text("user_id");
    let date = text("date");
    let table = match value(&kept, "table") {
        Some(Value::Null) | None => None,
        Some(Value::String(name)) => match Table::ALL.into_iter().find(|t| t.name() == name) {
            Some(t) => Some(t),
            None => return Reread::Unreadable("an unknown table"),
        },
        Some(_) => return Reread::Unreadable("an unknown table"),
    };
    // Placed outside its query (a user not asked, a date not in the window, no readable date):
    // only the query knew where it may go, and a replay reads no query.
    let field = text("field");
    if table.is_some() && matches!(field.as_deref(), Some("user_id" | "date")) {
        return Reread::Unreadable(
            "answered for a user or a date its query did not ask: no partition a replay may write",
        );
    }
    // The user-date's zone: kept with each record; before that, only a zone reject named it.
    let zone = match value(&kept, "time_zone") {
        Some(zone) => zone,
        None if field.as_deref() == Some("time_zone") => {
            value(&kept, "value").unwrap_or(Value::Null)
        }
        None => {
            return Reread::Unreadable(
                "written before the zone was kept with each record: re-pull its date to read it again",
            );
        }
    };
    let answer = match table {
        Some(table) => {
            let head = serde_json::json!({"user_id": user, "date": date, "time_zone": zone});
            let head = head.to_string();
            // The record's bytes as sent, in the list of its table.
            format!(
                r#"{{"user_approvals":[{},"{}":[{raw}]}}]}}"#,
                &head[..head.len() - 1],
                table.name()
            )
        }
        None => format!(r#"{{"user_approvals":[{raw}]}}"#),
    };
    let window_date = date
        .as_deref()
        .and_then(parse_yyyymmdd)
        .unwrap_or(file_date);
    let window = Window {
        from: window_date,
        to: window_date,
    };
    let batch: Vec<String> = user.into_iter().collect();
    let data = QueryData::recorded(&answer);
    let flat = match flatten::flatten(&data, status, window, &batch, stamp, aliases) {
        Ok(flat) => flat,
        Err(flatten::FlattenError::Shape(_)) => {
            return Reread::Unreadable("its record is not JSON");
        }
        Err(flatten::FlattenError::Build { .. }) => {
            return Reread::Unreadable("its rows could not be built (a bug of attendance-sync)");
        }
    };
    if let Some(first) = flat.rejects.first() {
        let mut changed = false;
        for (key, new) in [
            ("field", Value::String(first.field.clone())),
            (
                "value",
                first.value.clone().map_or(Value::Null, Value::String),
            ),
            ("reason", Value::String(first.reason.clone())),
        ] {
            if value(&kept, key).as_ref() != Some(&new) {
                let new = RawValue::from_string(new.to_string()).expect("a JSON value is JSON");
                kept.insert(key.into(), new);
                changed = true;
            }
        }
        let why = format!("{}: {}", first.field, first.reason);
        let updated = if changed {
            serde_json::to_string(&kept).expect("raw values serialize")
        } else {
            line.to_string()
        };
        return Reread::Fails(updated, why);
    }
    if flat.rows.is_empty() {
        return Reread::Unreadable("reads to no row and no reason");
    }
    let counts = flat.counts.total_without(&Default::default());
    Reread::Rows(flat.rows, counts, flat.zones)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> RunStamp {
        RunStamp {
            run_id: "replay".into(),
            ingested_at_micros: 0,
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn beijing() -> ZoneAliases {
        let mut aliases = ZoneAliases::default();
        aliases.insert("Asia/Beijing", "Asia/Shanghai").unwrap();
        aliases
    }

    // Keys out of order and a space: the bytes as sent, which a rewrite must keep.
    const RAW: &str = r#"{"start_time":"2026-09-15 09:00:00", "approval_id":"o1"}"#;

    fn line(extra: &str) -> String {
        format!(
            r#"{{"run_id":"r1","table":"outs","user_id":"u1","date":"20260915","approval_id":"o1",{extra}"status":2,"field":"time_zone","value":"Asia/Beijing","reason":"unknown time zone","raw":{RAW}}}"#
        )
    }

    #[test]
    fn a_record_an_alias_now_reads_is_a_row_and_one_still_unknown_stays_with_todays_reason() {
        let kept = line(r#""time_zone":"Asia/Beijing","#);
        let Reread::Rows(rows, counts, zones) =
            reread(&kept, d("2026-09-15"), &stamp(), &beijing())
        else {
            panic!("replayed")
        };
        assert_eq!(zones["u1"], (d("2026-09-15"), "Asia/Shanghai"));
        assert_eq!(
            (rows.len(), rows[0].table, rows[0].dates.clone()),
            (1, Table::Outs, vec![d("2026-09-15")])
        );
        assert_eq!(
            counts.zones.by_alias,
            BTreeMap::from([("Asia/Shanghai", 1)])
        );
        // Without the alias it still fails: the reason is today's, the record's bytes as sent.
        let Reread::Fails(updated, why) =
            reread(&kept, d("2026-09-15"), &stamp(), &ZoneAliases::default())
        else {
            panic!("still rejected")
        };
        assert!(
            why.starts_with("time_zone: unknown time zone: not an IANA name"),
            "{why}"
        );
        assert!(updated.contains(&format!(r#""raw":{RAW}"#)), "{updated}");
        assert!(updated.contains("--zone-alias"), "{updated}");
        // The same reason again leaves the line as it is, byte for byte.
        let Reread::Fails(again, _) =
            reread(&updated, d("2026-09-15"), &stamp(), &ZoneAliases::default())
        else {
            panic!("still rejected")
        };
        assert_eq!(again, updated);
    }

    #[test]
    fn lines_from_before_the_zone_was_kept_replay_only_when_they_name_it() {
        // A zone reject names the zone in its value: it can be read again.
        let zone_reject = line("");
        assert!(matches!(
            reread(&zone_reject, d("2026-09-15"), &stamp(), &beijing()),
            Reread::Rows(..)
        ));
        // Another field's: the zone the record was under is unknown; kept as it is.
        let other = zone_reject.replace(r#""field":"time_zone""#, r#""field":"start_time""#);
        assert!(matches!(
            reread(&other, d("2026-09-15"), &stamp(), &beijing()),
            Reread::Unreadable(why) if why.contains("re-pull")
        ));
        assert!(matches!(
            reread("not json", d("2026-09-15"), &stamp(), &beijing()),
            Reread::Unreadable("not a JSON object")
        ));
        // Answered outside its query: never written by a replay, whatever the rules.
        for field in ["user_id", "date"] {
            let placed = zone_reject.replace(
                r#""field":"time_zone""#,
                &format!(r#""time_zone":"Asia/Shanghai","field":"{field}""#),
            );
            assert!(matches!(
                reread(&placed, d("2026-09-15"), &stamp(), &beijing()),
                Reread::Unreadable(why) if why.contains("did not ask")
            ));
        }
        let no_status = zone_reject.replace(r#""status":2,"#, r#""status":9,"#);
        assert!(matches!(
            reread(&no_status, d("2026-09-15"), &stamp(), &beijing()),
            Reread::Unreadable("no readable status")
        ));
    }

    #[test]
    fn a_whole_user_approval_kept_aside_is_read_again_whole() {
        let kept = format!(
            r#"{{"table":null,"user_id":"u1","date":"20260915","time_zone":"GMT+8","status":2,"field":"outs","value":null,"reason":"wrong type","raw":{{"user_id":"u1","date":"20260915","time_zone":"GMT+8","outs":[{RAW}],"leaves":[{RAW}]}}}}"#
        );
        let Reread::Rows(rows, counts, _) = reread(&kept, d("2026-09-15"), &stamp(), &beijing())
        else {
            panic!("replayed")
        };
        let tables: Vec<(Table, usize)> =
            rows.iter().map(|r| (r.table, r.batch.num_rows())).collect();
        assert_eq!(tables, [(Table::Outs, 1), (Table::Leaves, 1)]);
        assert_eq!(counts.zones.fixed_offset, 2);
        // An element with nothing in it reads to no row: kept, not lost.
        let empty = kept.replace(&format!(r#","outs":[{RAW}],"leaves":[{RAW}]"#), "");
        assert!(matches!(
            reread(&empty, d("2026-09-15"), &stamp(), &beijing()),
            Reread::Unreadable("reads to no row and no reason")
        ));
    }
}
