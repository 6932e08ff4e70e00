//! The fixture users and their fixed records: hand-picked edge cases (multi-day leave, DST
//! gaps and overlaps, overtime past midnight, empty and unknown zones) that tests can rely on.
//!
//! Invariants: every fixture record has status 2 and is listed only under the dates in
//! `listed_on`; fixture users have no other (generated) records. A fixture user's name is its
//! employee_id, employee_no and open_id alike.

use chrono::NaiveDate;

use super::data::{
    FixtureRecord, Kind, LeaveRecord, OutRecord, OvertimeRecord, Record, RegionPlace, TripRecord,
    Zone, i18n_names, leave_type, out_type, region,
};

/// The fixture users, in the order they follow the generated users.
pub(crate) fn users() -> Vec<(&'static str, Zone)> {
    vec![
        (
            "fx_shanghai",
            Zone::new("Asia/Shanghai", Some(chrono_tz::Asia::Shanghai)),
        ),
        (
            "fx_newyork",
            Zone::new("America/New_York", Some(chrono_tz::America::New_York)),
        ),
        (
            "fx_london",
            Zone::new("Europe/London", Some(chrono_tz::Europe::London)),
        ),
        (
            "fx_lordhowe",
            Zone::new("Australia/Lord_Howe", Some(chrono_tz::Australia::Lord_Howe)),
        ),
        (
            "fx_kolkata",
            Zone::new("Asia/Kolkata", Some(chrono_tz::Asia::Kolkata)),
        ),
        ("fx_nozone", Zone::new("", Some(chrono_tz::UTC))),
        // Not an IANA name: the platform sends it, clients must cope.
        ("fx_badzone", Zone::new("Asia/Beijing", None)),
    ]
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y%m%d").expect("fixture dates are valid yyyyMMdd")
}

/// Default approve times of a fixture: applied 08:00 and passed 08:30 on the record's date.
fn approve_times(day: &str) -> (String, String) {
    let day = date(day).format("%Y-%m-%d");
    (format!("{day} 08:00:00"), format!("{day} 08:30:00"))
}

fn ids(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

struct Span<'a> {
    start: &'a str,
    end: &'a str,
    interval_secs: i64,
}

fn out(approval_id: &str, day: &str, span: Span<'_>, type_index: usize, reason: &str) -> Record {
    let approval_type = out_type(type_index);
    let (apply, pass) = approve_times(day);
    Record::Out(OutRecord {
        approval_id: approval_id.to_owned(),
        uniq_id: approval_type.0.to_owned(),
        unit: 2,
        interval: span.interval_secs,
        start_time: span.start.to_owned(),
        end_time: span.end.to_owned(),
        i18n_names: i18n_names(approval_type),
        default_locale: approval_type.4.to_owned(),
        reason: reason.to_owned(),
        approve_pass_time: pass,
        approve_apply_time: apply,
        idempotent_id: format!("{approval_id}-idem"),
        correct_process_id: Vec::new(),
        cancel_process_id: Vec::new(),
        process_id: ids(&["7304865941202929196"]),
    })
}

fn leave(approval_id: &str, day: &str, span: Span<'_>, unit: i32, reason: &str) -> LeaveRecord {
    let approval_type = leave_type(0);
    let (apply, pass) = approve_times(day);
    LeaveRecord {
        approval_id: approval_id.to_owned(),
        uniq_id: approval_type.0.to_owned(),
        unit,
        interval: span.interval_secs,
        start_time: span.start.to_owned(),
        end_time: span.end.to_owned(),
        i18n_names: i18n_names(approval_type),
        default_locale: approval_type.4.to_owned(),
        reason: reason.to_owned(),
        approve_pass_time: pass,
        approve_apply_time: apply,
        idempotent_id: format!("{approval_id}-idem"),
    }
}

fn overtime(approval_id: &str, span: Span<'_>, category: i32, reason: &str) -> Record {
    Record::Overtime(OvertimeRecord {
        approval_id: approval_id.to_owned(),
        duration: span.interval_secs as f64 / 3600.0,
        unit: 2,
        category,
        overtime_type: 1,
        start_time: span.start.to_owned(),
        end_time: span.end.to_owned(),
        reason: reason.to_owned(),
        idempotent_id: format!("{approval_id}-idem"),
        correct_process_id: Vec::new(),
        cancel_process_id: Vec::new(),
        process_id: ids(&["7304865941202929197"]),
    })
}

struct TripRoute {
    destinations: Vec<RegionPlace>,
    transportation: Vec<i32>,
    trip_type: i32,
}

fn trip(approval_id: &str, day: &str, span: Span<'_>, route: TripRoute, reason: &str) -> Record {
    let (apply, pass) = approve_times(day);
    Record::Trip(TripRecord {
        approval_id: approval_id.to_owned(),
        start_time: span.start.to_owned(),
        end_time: span.end.to_owned(),
        reason: reason.to_owned(),
        approve_pass_time: pass,
        approve_apply_time: apply,
        idempotent_id: format!("{approval_id}-idem"),
        correct_process_id: Vec::new(),
        cancel_process_id: Vec::new(),
        process_id: ids(&["7304865941202929198"]),
        departure: region(2),
        destinations: route.destinations,
        transportation: route.transportation,
        trip_type: route.trip_type,
        remarks: "出差备注".to_owned(),
    })
}

fn fixture(
    user: &'static str,
    kind: Kind,
    approval_id: &'static str,
    days: &[&str],
    record: Record,
) -> FixtureRecord {
    FixtureRecord {
        user,
        kind,
        approval_id,
        listed_on: days.iter().map(|day| date(day)).collect(),
        record,
    }
}

/// Every fixed record (status 2).
pub(crate) fn records() -> Vec<FixtureRecord> {
    let mut multiday = leave(
        "fx-sh-multiday",
        "20260914",
        Span {
            start: "2026-09-14 09:00:00",
            end: "2026-09-16 18:00:00",
            interval_secs: 3 * 8 * 3600,
        },
        1,
        "家里有事 🏠",
    );
    multiday.approve_apply_time = "2026-09-10 11:00:00".to_owned();
    multiday.approve_pass_time = "2026-09-10 12:00:00".to_owned();
    // Hour-unit leaves, except a whole working day (8 h), which the platform counts in days.
    let single_leave =
        |approval_id: &str, day: &str, start: &str, end: &str, interval_secs: i64| {
            let unit = if interval_secs == 8 * 3600 { 1 } else { 2 };
            Record::Leave(leave(
                approval_id,
                day,
                Span {
                    start,
                    end,
                    interval_secs,
                },
                unit,
                "身体不适",
            ))
        };
    vec![
        fixture(
            "fx_shanghai",
            Kind::Leaves,
            "fx-sh-multiday",
            &["20260914", "20260915", "20260916"],
            Record::Leave(multiday),
        ),
        fixture(
            "fx_shanghai",
            Kind::Trips,
            "fx-sh-trip",
            &["20260915"],
            trip(
                "fx-sh-trip",
                "20260915",
                Span {
                    start: "2026-09-15 08:00:00",
                    end: "2026-09-15 20:00:00",
                    interval_secs: 12 * 3600,
                },
                TripRoute {
                    destinations: vec![region(3), region(4), region(6)],
                    transportation: vec![1, 4],
                    trip_type: 2,
                },
                "出差🚄 to 上海",
            ),
        ),
        fixture(
            "fx_shanghai",
            Kind::Outs,
            "fx-sh-revocable",
            &["20260917"],
            out(
                "fx-sh-revocable",
                "20260917",
                Span {
                    start: "2026-09-17 14:00:00",
                    end: "2026-09-17 16:00:00",
                    interval_secs: 2 * 3600,
                },
                0,
                "外出办事",
            ),
        ),
        fixture(
            "fx_newyork",
            Kind::Leaves,
            "fx-ny-gap",
            &["20260308"],
            single_leave(
                "fx-ny-gap",
                "20260308",
                "2026-03-08 02:30:00",
                "2026-03-08 04:00:00",
                5400,
            ),
        ),
        fixture(
            "fx_newyork",
            Kind::Outs,
            "fx-ny-overlap",
            &["20261101"],
            out(
                "fx-ny-overlap",
                "20261101",
                Span {
                    start: "2026-11-01 01:30:00",
                    end: "2026-11-01 03:00:00",
                    interval_secs: 5400,
                },
                1,
                "拜访客户 🤝",
            ),
        ),
        fixture(
            "fx_london",
            Kind::OvertimeWorks,
            "fx-ldn-gap",
            &["20260329"],
            overtime(
                "fx-ldn-gap",
                Span {
                    start: "2026-03-29 01:30:00",
                    end: "2026-03-29 05:00:00",
                    interval_secs: 12_600,
                },
                2,
                "版本上线 🚀",
            ),
        ),
        fixture(
            "fx_london",
            Kind::Trips,
            "fx-ldn-overlap",
            &["20261025"],
            trip(
                "fx-ldn-overlap",
                "20261025",
                Span {
                    start: "2026-10-25 01:15:00",
                    end: "2026-10-25 09:00:00",
                    interval_secs: 27_900,
                },
                TripRoute {
                    destinations: vec![region(5)],
                    transportation: vec![2],
                    trip_type: 1,
                },
                "客户现场支持",
            ),
        ),
        fixture(
            "fx_lordhowe",
            Kind::Leaves,
            "fx-lh-gap",
            &["20261004"],
            single_leave(
                "fx-lh-gap",
                "20261004",
                "2026-10-04 02:15:00",
                "2026-10-04 10:00:00",
                27_900,
            ),
        ),
        fixture(
            "fx_lordhowe",
            Kind::Outs,
            "fx-lh-overlap",
            &["20260405"],
            out(
                "fx-lh-overlap",
                "20260405",
                Span {
                    start: "2026-04-05 01:45:00",
                    end: "2026-04-05 12:00:00",
                    interval_secs: 36_900,
                },
                2,
                "外出培训📚",
            ),
        ),
        fixture(
            "fx_kolkata",
            Kind::OvertimeWorks,
            "fx-kol-midnight",
            &["20260915"],
            overtime(
                "fx-kol-midnight",
                Span {
                    start: "2026-09-15 20:00:00",
                    end: "2026-09-16 02:00:00",
                    interval_secs: 6 * 3600,
                },
                1,
                "处理线上故障",
            ),
        ),
        fixture(
            "fx_nozone",
            Kind::Outs,
            "fx-utc",
            &["20260915"],
            out(
                "fx-utc",
                "20260915",
                Span {
                    start: "2026-09-15 09:00:00",
                    end: "2026-09-15 10:00:00",
                    interval_secs: 3600,
                },
                3,
                "去银行办理业务",
            ),
        ),
        fixture(
            "fx_badzone",
            Kind::Leaves,
            "fx-badzone",
            &["20260915"],
            single_leave(
                "fx-badzone",
                "20260915",
                "2026-09-15 09:00:00",
                "2026-09-15 18:00:00",
                8 * 3600,
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::I18nNames;

    #[test]
    fn every_fixture_user_exists_and_records_name_their_id() {
        let names: Vec<&str> = users().iter().map(|(name, _)| *name).collect();
        for record in records() {
            assert!(names.contains(&record.user), "{}", record.user);
            let text = record.record.to_json();
            assert!(
                text.contains(&format!("\"approval_id\":\"{}\"", record.approval_id)),
                "{text}"
            );
        }
    }

    #[test]
    fn fixture_names_without_ja_still_serialize() {
        let names = I18nNames {
            ch: "外勤".into(),
            en: "Field work".into(),
            ja: None,
        };
        assert_eq!(
            serde_json::to_string(&names).unwrap(),
            r#"{"ch":"外勤","en":"Field work"}"#
        );
    }
}
