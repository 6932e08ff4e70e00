//! Flatten: one query answer into rows of the four tables, plus the records kept aside. Pure, no I/O.
//!
//! Invariants:
//! - Every list element of the answer ends up in exactly one place: a row of its table under the
//!   (user, date) it came under, or a [`Reject`] carrying its bytes as sent and the reason.
//! - A record is never read as UTC unless the platform said so (an empty zone); an unknown zone or
//!   a malformed time rejects the record, it is not guessed.
//! - Rows land only under dates of the queried window and users of the queried batch: anything
//!   else would be written into a partition this query does not own (rejected instead).
//! - Empty time strings mean "not set" (a pending approval has no pass time) and become nulls.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::plan::{Status, Window};
use crate::platform::model::{
    I18nNames, QueryData, RawRecord, RegionPlace, UserApproval, UserLeave, UserOut,
    UserOvertimeWork, UserTrip,
};
use crate::table::{AbsenceRow, Common, OvertimeRow, ProcessIds, Region, Table, TripRow};
use crate::tz::{self, Resolution, Zone};

/// Rows of one table, grouped by partition date.
pub type DateRows<R> = BTreeMap<NaiveDate, Vec<R>>;

/// Rows of the four tables gathered for one window.
#[derive(Debug, Default)]
pub struct Tables {
    pub outs: DateRows<AbsenceRow>,
    pub leaves: DateRows<AbsenceRow>,
    pub overtime_works: DateRows<OvertimeRow>,
    pub trips: DateRows<TripRow>,
}

impl Tables {
    /// Keeps only the rows of users for which `keep` is true.
    pub fn retain_users(&mut self, keep: impl Fn(&str) -> bool) {
        fn retain<R: crate::table::Row>(m: &mut DateRows<R>, keep: &impl Fn(&str) -> bool) {
            for rows in m.values_mut() {
                rows.retain(|r| keep(&r.common().user_id));
            }
            m.retain(|_, rows| !rows.is_empty());
        }
        retain(&mut self.outs, &keep);
        retain(&mut self.leaves, &keep);
        retain(&mut self.overtime_works, &keep);
        retain(&mut self.trips, &keep);
    }

    pub fn rows(&self, table: Table) -> usize {
        fn count<R>(m: &DateRows<R>) -> usize {
            m.values().map(Vec::len).sum()
        }
        match table {
            Table::Outs => count(&self.outs),
            Table::Leaves => count(&self.leaves),
            Table::OvertimeWorks => count(&self.overtime_works),
            Table::Trips => count(&self.trips),
        }
    }
}

/// A record that could not be normalized, kept with everything needed to find and fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    /// `None` when the whole user_approval element was unreadable.
    pub table: Option<Table>,
    pub user_id: Option<String>,
    /// The `date` as sent (`yyyyMMdd`), which may itself be what is wrong.
    pub date: Option<String>,
    pub approval_id: Option<String>,
    pub status: i32,
    pub field: String,
    pub value: Option<String>,
    pub reason: String,
    pub raw: Box<RawValue>,
}

/// Rows written with a time that needed the DST rule: counted once per row, whichever and
/// however many of its times needed it (a record rejected for another reason is not counted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlattenCounts {
    pub dst_gap_shifted: u64,
    pub dst_ambiguous_earlier: u64,
}

/// Why a record cannot be written.
struct Problem {
    field: String,
    value: Option<String>,
    reason: String,
}

/// Flattens one answer of the query for `status` over `window` and `batch` into `tables`.
pub fn flatten(
    data: QueryData,
    status: Status,
    window: Window,
    batch: &[String],
    tables: &mut Tables,
    rejects: &mut Vec<Reject>,
    counts: &mut FlattenCounts,
) {
    let batch: HashSet<&str> = batch.iter().map(String::as_str).collect();
    for raw in data.user_approvals.unwrap_or_default() {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        match serde_path_to_error::deserialize::<_, UserApproval>(&mut de) {
            Ok(ua) => flatten_user_date(ua, status, window, &batch, tables, rejects, counts),
            // The user-date itself is unreadable: keep the whole element aside, under its user and
            // date when those at least can be read (so reruns over other users keep it).
            Err(e) => rejects.push(Reject {
                table: None,
                user_id: loose_field(raw.get(), "user_id"),
                date: loose_field(raw.get(), "date"),
                approval_id: None,
                status: status.code(),
                field: e.path().to_string(),
                value: None,
                reason: format!("user_approval has a field of the wrong type: {}", e.inner()),
                raw,
            }),
        }
    }
}

fn flatten_user_date(
    ua: UserApproval,
    status: Status,
    window: Window,
    batch: &HashSet<&str>,
    tables: &mut Tables,
    rejects: &mut Vec<Reject>,
    counts: &mut FlattenCounts,
) {
    let UserApproval {
        user_id,
        date,
        outs,
        leaves,
        overtime_works,
        trips,
        time_zone,
    } = ua;
    // Problems of the user-date itself reject every record under it.
    let parsed_date = date.as_deref().and_then(tz::parse_yyyymmdd);
    let shared_problem = match (&user_id, parsed_date) {
        (None, _) => Some(problem("user_id", None, "the user_approval has no user_id")),
        (Some(u), _) if !batch.contains(u.as_str()) => Some(problem(
            "user_id",
            Some(u.clone()),
            "the platform answered for a user that was not in the queried batch",
        )),
        (_, None) => Some(problem(
            "date",
            date.clone(),
            "the date is missing or not a yyyyMMdd calendar date",
        )),
        (_, Some(d)) if !window.contains(d) => Some(problem(
            "date",
            date.clone(),
            &format!("the date is outside the queried window {window}"),
        )),
        _ => None,
    };
    let zone = tz::zone(time_zone.as_deref());
    let shared_problem = shared_problem.or_else(|| {
        zone.is_err().then(|| {
            problem(
                "time_zone",
                time_zone.clone(),
                "unknown time zone: not an IANA name, so the local times cannot be placed in UTC",
            )
        })
    });

    let mut ctx = Ctx {
        user_id: user_id.as_deref(),
        date: date.as_deref(),
        status,
        zone: zone.unwrap_or(Zone::UTC),
        counts,
        rejects,
        record_gap: false,
        record_ambiguous: false,
    };
    let lists = [
        (Table::Outs, outs),
        (Table::Leaves, leaves),
        (Table::OvertimeWorks, overtime_works),
        (Table::Trips, trips),
    ];
    for (table, list) in lists {
        for raw in list.unwrap_or_default() {
            if let Some(p) = &shared_problem {
                ctx.reject(table, raw, p);
                continue;
            }
            let date = parsed_date.expect("checked above");
            match table {
                Table::Outs => {
                    if let Some(row) = ctx.record(table, raw, |c, r: UserOut| c.out_row(r)) {
                        tables.outs.entry(date).or_default().push(row);
                    }
                }
                Table::Leaves => {
                    if let Some(row) = ctx.record(table, raw, |c, r: UserLeave| c.leave_row(r)) {
                        tables.leaves.entry(date).or_default().push(row);
                    }
                }
                Table::OvertimeWorks => {
                    if let Some(row) =
                        ctx.record(table, raw, |c, r: UserOvertimeWork| c.overtime_row(r))
                    {
                        tables.overtime_works.entry(date).or_default().push(row);
                    }
                }
                Table::Trips => {
                    if let Some(row) = ctx.record(table, raw, |c, r: UserTrip| c.trip_row(r)) {
                        tables.trips.entry(date).or_default().push(row);
                    }
                }
            }
        }
    }
}

/// A field of a JSON object as text, whatever its JSON type.
fn loose_field(json: &str, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    match value.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn problem(field: &str, value: Option<String>, reason: &str) -> Problem {
    Problem {
        field: field.to_string(),
        value,
        reason: reason.to_string(),
    }
}

/// What the records of one user-date share while they are flattened.
struct Ctx<'a> {
    user_id: Option<&'a str>,
    date: Option<&'a str>,
    status: Status,
    zone: Zone,
    counts: &'a mut FlattenCounts,
    rejects: &'a mut Vec<Reject>,
    /// Whether the record being flattened had a time in a gap / an overlap.
    record_gap: bool,
    record_ambiguous: bool,
}

impl Ctx<'_> {
    /// Parses one raw record into `T` and turns it into a row, or rejects it.
    fn record<T: DeserializeOwned, R>(
        &mut self,
        table: Table,
        raw: RawRecord,
        to_row: impl FnOnce(&mut Self, T) -> Result<R, Problem>,
    ) -> Option<R> {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
        self.record_gap = false;
        self.record_ambiguous = false;
        let result = match parsed {
            Ok(record) => to_row(self, record),
            Err(e) => Err(Problem {
                field: e.path().to_string(),
                value: None,
                reason: format!("field has the wrong type: {}", e.inner()),
            }),
        };
        match result {
            Ok(row) => {
                self.counts.dst_gap_shifted += u64::from(self.record_gap);
                self.counts.dst_ambiguous_earlier += u64::from(self.record_ambiguous);
                Some(row)
            }
            Err(p) => {
                self.reject(table, raw, &p);
                None
            }
        }
    }

    fn reject(&mut self, table: Table, raw: RawRecord, p: &Problem) {
        #[derive(serde::Deserialize)]
        struct Id {
            approval_id: Option<serde_json::Value>,
        }
        let approval_id = serde_json::from_str::<Id>(raw.get())
            .ok()
            .and_then(|id| id.approval_id)
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        self.rejects.push(Reject {
            table: Some(table),
            user_id: self.user_id.map(str::to_string),
            date: self.date.map(str::to_string),
            approval_id,
            status: self.status.code(),
            field: p.field.clone(),
            value: p.value.clone(),
            reason: p.reason.clone(),
            raw,
        });
    }

    /// A wall time of this record as UTC microseconds; `None` when absent or empty.
    fn instant(&mut self, field: &str, value: Option<&str>) -> Result<Option<i64>, Problem> {
        let Some(s) = value.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let local = tz::parse_wall_time(s).ok_or_else(|| {
            problem(
                field,
                Some(s.to_string()),
                "malformed time: expected a real date and time as yyyy-MM-dd HH:mm:ss",
            )
        })?;
        let (utc, resolution) = tz::to_utc(local, self.zone);
        match resolution {
            Resolution::Exact => {}
            Resolution::GapShifted => self.record_gap = true,
            Resolution::AmbiguousEarlier => self.record_ambiguous = true,
        }
        Ok(Some(utc.timestamp_micros()))
    }

    fn common(
        &mut self,
        approval_id: Option<String>,
        start: Option<String>,
        end: Option<String>,
        idempotent_id: Option<String>,
    ) -> Result<Common, Problem> {
        Ok(Common {
            user_id: self.user_id.unwrap_or_default().to_string(),
            approval_id,
            status: self.status.code(),
            start_time: self.instant("start_time", start.as_deref())?,
            end_time: self.instant("end_time", end.as_deref())?,
            start_time_local: start,
            end_time_local: end,
            time_zone: self.zone.name,
            idempotent_id,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn absence(
        &mut self,
        common: Common,
        uniq_id: Option<String>,
        unit: Option<i32>,
        interval: Option<i64>,
        names: Option<I18nNames>,
        default_locale: Option<String>,
        reason: Option<String>,
        pass: Option<String>,
        apply: Option<String>,
        process: ProcessIds,
    ) -> Result<AbsenceRow, Problem> {
        let names = names.unwrap_or_default();
        Ok(AbsenceRow {
            common,
            uniq_id,
            unit,
            interval_seconds: interval,
            name: localized_name(&names, default_locale.as_deref()),
            name_ch: names.ch,
            name_en: names.en,
            name_ja: names.ja,
            default_locale,
            reason,
            approve_pass_time: self.instant("approve_pass_time", pass.as_deref())?,
            approve_apply_time: self.instant("approve_apply_time", apply.as_deref())?,
            process,
        })
    }

    fn out_row(&mut self, r: UserOut) -> Result<AbsenceRow, Problem> {
        let common = self.common(r.approval_id, r.start_time, r.end_time, r.idempotent_id)?;
        let process = ProcessIds {
            correct_process_id: r.correct_process_id,
            cancel_process_id: r.cancel_process_id,
            process_id: r.process_id,
        };
        self.absence(
            common,
            r.uniq_id,
            r.unit,
            r.interval,
            r.i18n_names,
            r.default_locale,
            r.reason,
            r.approve_pass_time,
            r.approve_apply_time,
            process,
        )
    }

    fn leave_row(&mut self, r: UserLeave) -> Result<AbsenceRow, Problem> {
        let common = self.common(r.approval_id, r.start_time, r.end_time, r.idempotent_id)?;
        self.absence(
            common,
            r.uniq_id,
            r.unit,
            r.interval,
            r.i18n_names,
            r.default_locale,
            r.reason,
            r.approve_pass_time,
            r.approve_apply_time,
            ProcessIds::default(),
        )
    }

    fn overtime_row(&mut self, r: UserOvertimeWork) -> Result<OvertimeRow, Problem> {
        Ok(OvertimeRow {
            common: self.common(r.approval_id, r.start_time, r.end_time, r.idempotent_id)?,
            duration: r.duration,
            unit: r.unit,
            category: r.category,
            type_: r.type_,
            reason: r.reason,
            process: ProcessIds {
                correct_process_id: r.correct_process_id,
                cancel_process_id: r.cancel_process_id,
                process_id: r.process_id,
            },
        })
    }

    fn trip_row(&mut self, r: UserTrip) -> Result<TripRow, Problem> {
        let departure = r.departure.unwrap_or_default();
        Ok(TripRow {
            common: self.common(r.approval_id, r.start_time, r.end_time, r.idempotent_id)?,
            reason: r.reason,
            approve_pass_time: self.instant("approve_pass_time", r.approve_pass_time.as_deref())?,
            approve_apply_time: self
                .instant("approve_apply_time", r.approve_apply_time.as_deref())?,
            departure_region_level: departure.region_level,
            departure_region_id: departure.region_id,
            destinations: r.destinations.map(|ds| {
                ds.into_iter()
                    .map(
                        |RegionPlace {
                             region_level,
                             region_id,
                         }| Region {
                            region_level,
                            region_id,
                        },
                    )
                    .collect()
            }),
            transportation: r.transportation,
            trip_type: r.trip_type,
            remarks: r.remarks,
            process: ProcessIds {
                correct_process_id: r.correct_process_id,
                cancel_process_id: r.cancel_process_id,
                process_id: r.process_id,
            },
        })
    }
}

/// The name in `default_locale`, falling back to ch, en, ja; empty names count as missing.
fn localized_name(names: &I18nNames, default_locale: Option<&str>) -> Option<String> {
    let pick = |locale: &str| match locale {
        "ch" => names.ch.as_deref(),
        "en" => names.en.as_deref(),
        "ja" => names.ja.as_deref(),
        _ => None,
    };
    default_locale
        .into_iter()
        .chain(["ch", "en", "ja"])
        .filter_map(pick)
        .find(|n| !n.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::model::Envelope;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn run(body: &str, users: &[&str], window: Window) -> (Tables, Vec<Reject>, FlattenCounts) {
        let env: Envelope<QueryData> = serde_json::from_str(body).unwrap();
        let mut tables = Tables::default();
        let mut rejects = Vec::new();
        let mut counts = FlattenCounts::default();
        let batch: Vec<String> = users.iter().map(|s| s.to_string()).collect();
        flatten(
            env.data.unwrap(),
            Status::APPROVED,
            window,
            &batch,
            &mut tables,
            &mut rejects,
            &mut counts,
        );
        (tables, rejects, counts)
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: d(from),
            to: d(to),
        }
    }

    fn body(user_approvals: &str) -> String {
        format!(r#"{{"code":0,"msg":"ok","data":{{"user_approvals":[{user_approvals}]}}}}"#)
    }

    #[test]
    fn the_doc_example_flattens_into_one_row_per_table() {
        let doc = include_str!("../data-samples/spec-example-response.json");
        let (t, rejects, _) = run(doc, &["abd754f7"], window("2021-01-01", "2021-01-31"));
        assert!(rejects.is_empty());
        for table in Table::ALL {
            assert_eq!(t.rows(table), 1, "{}", table.name());
        }
        let out = &t.outs[&d("2021-01-04")][0];
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(out.common.start_time, Some(1_609_722_000_000_000));
        assert_eq!(out.common.time_zone, "Asia/Shanghai");
        assert_eq!(out.name.as_deref(), Some("中文描述"));
        assert_eq!(out.interval_seconds, Some(8));
        let trip = &t.trips[&d("2021-01-04")][0];
        assert_eq!(trip.destinations.as_ref().unwrap().len(), 1);
        assert_eq!(trip.transportation.as_deref(), Some(&[1][..]));
    }

    #[test]
    fn unknown_zone_rejects_every_record_of_the_user_date() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"Asia/Beijing",
                "outs":[{"approval_id":"a1","start_time":"2026-09-15 09:00:00"}],
                "leaves":[{"approval_id":"a2"}]}"#,
        );
        let (t, rejects, _) = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(t.rows(Table::Outs) + t.rows(Table::Leaves), 0);
        assert_eq!(rejects.len(), 2);
        assert_eq!(rejects[0].field, "time_zone");
        assert_eq!(rejects[0].value.as_deref(), Some("Asia/Beijing"));
        assert_eq!(rejects[0].approval_id.as_deref(), Some("a1"));
        assert!(rejects[0].raw.get().contains("2026-09-15 09:00:00"));
    }

    #[test]
    fn malformed_time_or_type_rejects_only_that_record() {
        let b = body(
            r#"{"user_id":"u1","date":"20260915","time_zone":"",
                "outs":[{"approval_id":"ok","start_time":"2026-09-15 09:00:00","approve_pass_time":""},
                        {"approval_id":"bad-time","start_time":"2026-09-15 9:00"},
                        {"approval_id":"bad-type","unit":"day"}]}"#,
        );
        let (t, rejects, _) = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        let rows = &t.outs[&d("2026-09-15")];
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].common.time_zone, "UTC");
        assert_eq!(rows[0].common.start_time, Some(1_789_462_800_000_000));
        assert_eq!(rows[0].approve_pass_time, None);
        assert_eq!(rejects.len(), 2);
        assert_eq!(rejects[0].field, "start_time");
        assert_eq!(rejects[0].value.as_deref(), Some("2026-09-15 9:00"));
        assert_eq!(rejects[1].field, "unit");
        assert_eq!(rejects[1].approval_id.as_deref(), Some("bad-type"));
    }

    #[test]
    fn dates_outside_the_window_and_users_outside_the_batch_are_rejected() {
        let b = body(
            r#"{"user_id":"u1","date":"20261001","outs":[{"approval_id":"late"}]},
               {"user_id":"u9","date":"20260915","outs":[{"approval_id":"stranger"}]},
               {"user_id":"u1","date":"2026-09-15","outs":[{"approval_id":"dashed"}]}"#,
        );
        let (t, rejects, _) = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(t.rows(Table::Outs), 0);
        let fields: Vec<&str> = rejects.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["date", "user_id", "date"]);
    }

    #[test]
    fn an_unreadable_user_approval_is_kept_aside_whole() {
        let b = body(
            r#"{"user_id":"u1","date":20260915,"outs":[{"approval_id":"x"}]},
               {"user_id":"u1","date":"20260915","outs":[{"approval_id":"y"}]}"#,
        );
        let (t, rejects, _) = run(&b, &["u1"], window("2026-09-01", "2026-09-30"));
        assert_eq!(t.rows(Table::Outs), 1);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].table, None);
        assert_eq!(rejects[0].field, "date");
        assert!(rejects[0].raw.get().contains(r#""approval_id":"x""#));
    }

    #[test]
    fn dst_resolutions_are_counted() {
        let b = body(
            r#"{"user_id":"u1","date":"20261101","time_zone":"America/New_York",
                "outs":[{"approval_id":"o","start_time":"2026-11-01 01:30:00","end_time":"2026-11-01 03:00:00"}]},
               {"user_id":"u1","date":"20260308","time_zone":"America/New_York",
                "outs":[{"approval_id":"g","start_time":"2026-03-08 02:30:00"}]}"#,
        );
        let (t, rejects, counts) = run(&b, &["u1"], window("2026-03-01", "2026-11-30"));
        assert!(rejects.is_empty());
        assert_eq!(t.rows(Table::Outs), 2);
        assert_eq!(
            counts,
            FlattenCounts {
                dst_gap_shifted: 1,
                dst_ambiguous_earlier: 1
            }
        );
    }

    #[test]
    fn name_follows_default_locale_then_ch_en_ja() {
        let n = I18nNames {
            ch: Some(String::new()),
            en: Some("Sick".into()),
            ja: Some("病気".into()),
        };
        assert_eq!(localized_name(&n, Some("ja")).as_deref(), Some("病気"));
        assert_eq!(localized_name(&n, Some("ch")).as_deref(), Some("Sick"));
        assert_eq!(localized_name(&n, None).as_deref(), Some("Sick"));
        assert_eq!(localized_name(&I18nNames::default(), Some("en")), None);
    }
}
