//! Backfills against the simulated tenant: rows, UTC instants in every zone, windows and batches,
//! clipping, reruns, narrower reruns, users listed from the tenant, and the documented samples.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use attendance_core::plan::EmployeeType;
use attendance_core::table::Table;
use attendance_sim::SimConfig;
use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::util::*;

fn micros(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
        .timestamp_micros()
}

fn ts(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let a = b
        .column_by_name(col)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    a.is_valid(row).then(|| a.value(row))
}

#[test]
fn backfill_writes_what_the_tenant_served_with_right_utc_instants_in_every_zone() {
    let tenant = small_tenant(60);
    let ws = Workspace::new();
    let mut users = tenant.sim().user_ids("employee_id").unwrap();
    users.sort();
    let run = backfill(&tenant, &ws, &users, "2026-03-01", "2026-11-10", &[]);
    run.assert_ok();
    let stats = tenant.sim().stats();
    let out = ws.out();
    let rejected = rejects(&out);

    // Every element the tenant served is a row or a reject: nothing dropped, nothing invented.
    let mut total_rows = 0;
    for table in Table::ALL {
        let data = TableData::read(&out, table);
        let served = stats.rows_served.get(table.name()).copied().unwrap_or(0) as usize;
        let kept_aside = rejected
            .iter()
            .filter(|r| r["table"] == table.name())
            .count();
        assert_eq!(data.rows() + kept_aside, served, "{}", table.name());
        total_rows += data.rows();
    }
    assert!(total_rows > 1000, "a realistic volume: {total_rows}");
    assert!(run.stdout().contains(&format!(
        "{} rows",
        TableData::read(&out, Table::Leaves).rows()
    )));

    let leaves = TableData::read(&out, Table::Leaves);
    let outs = TableData::read(&out, Table::Outs);
    let overtime = TableData::read(&out, Table::OvertimeWorks);
    let trips = TableData::read(&out, Table::Trips);
    let check = |data: &TableData, id: &str, start: &str, end: &str, zone: &str| {
        let found = data.find(id);
        assert!(!found.is_empty(), "{id} missing");
        for (_, b, i) in found {
            assert_eq!(ts(b, "start_time", i), Some(micros(start)), "{id} start");
            assert_eq!(ts(b, "end_time", i), Some(micros(end)), "{id} end");
            assert_eq!(text(b, "time_zone", i).as_deref(), Some(zone), "{id} zone");
        }
    };
    // New York: 02:30 does not exist on 2026-03-08 (moved to 03:30 EDT); 01:30 on 2026-11-01 happens twice (EDT taken).
    check(
        &leaves,
        "fx-ny-gap",
        "2026-03-08T07:30:00Z",
        "2026-03-08T08:00:00Z",
        "America/New_York",
    );
    check(
        &outs,
        "fx-ny-overlap",
        "2026-11-01T05:30:00Z",
        "2026-11-01T08:00:00Z",
        "America/New_York",
    );
    // London: the 01:00-02:00 gap of 2026-03-29 and the repeated 01:00-02:00 of 2026-10-25.
    check(
        &overtime,
        "fx-ldn-gap",
        "2026-03-29T01:30:00Z",
        "2026-03-29T04:00:00Z",
        "Europe/London",
    );
    check(
        &trips,
        "fx-ldn-overlap",
        "2026-10-25T00:15:00Z",
        "2026-10-25T09:00:00Z",
        "Europe/London",
    );
    // Lord Howe's half-hour shifts.
    check(
        &leaves,
        "fx-lh-gap",
        "2026-10-03T15:45:00Z",
        "2026-10-03T23:00:00Z",
        "Australia/Lord_Howe",
    );
    check(
        &outs,
        "fx-lh-overlap",
        "2026-04-04T14:45:00Z",
        "2026-04-05T01:30:00Z",
        "Australia/Lord_Howe",
    );
    // Kolkata's +05:30 across midnight; Shanghai's +08:00; an empty zone is UTC.
    check(
        &overtime,
        "fx-kol-midnight",
        "2026-09-15T14:30:00Z",
        "2026-09-15T20:30:00Z",
        "Asia/Kolkata",
    );
    check(
        &leaves,
        "fx-sh-multiday",
        "2026-09-14T01:00:00Z",
        "2026-09-16T10:00:00Z",
        "Asia/Shanghai",
    );
    check(
        &outs,
        "fx-utc",
        "2026-09-15T09:00:00Z",
        "2026-09-15T10:00:00Z",
        "UTC",
    );

    // A multi-day leave is one row under each date it covers.
    let dates: Vec<NaiveDate> = leaves
        .find("fx-sh-multiday")
        .iter()
        .map(|(d, _, _)| *d)
        .collect();
    assert_eq!(
        dates,
        ["2026-09-14", "2026-09-15", "2026-09-16"].map(|d| d.parse::<NaiveDate>().unwrap())
    );
    let (_, b, i) = leaves.find("fx-sh-multiday")[0];
    assert_eq!(
        ts(b, "approve_pass_time", i),
        Some(micros("2026-09-10T04:00:00Z"))
    );
    assert_eq!(
        text(b, "start_time_local", i).as_deref(),
        Some("2026-09-14 09:00:00")
    );

    // Text survives byte for byte; trips keep every destination.
    let (_, b, i) = trips.find("fx-sh-trip")[0];
    assert_eq!(text(b, "reason", i).as_deref(), Some("出差🚄 to 上海"));
    let destinations = b.column_by_name("destinations").unwrap().as_list::<i32>();
    assert_eq!(destinations.value(i).len(), 3);

    // The unknown zone is kept aside with its reason and its raw record, not guessed as UTC.
    assert!(leaves.find("fx-badzone").is_empty());
    let bad: Vec<_> = rejected
        .iter()
        .filter(|r| r["approval_id"] == "fx-badzone")
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["field"], "time_zone");
    assert_eq!(bad[0]["value"], "Asia/Beijing");
    assert_eq!(bad[0]["user_id"], "fx_badzone");
    assert_eq!(bad[0]["raw"]["start_time"], "2026-09-15 09:00:00");

    // DST adjustments are counted in the summary (at least the six fixture times).
    let summary = run.stdout();
    let line = summary
        .lines()
        .find(|l| l.contains("dst adjusted"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(numbers[0] >= 3 && numbers[1] >= 3, "{line}");
}

#[test]
fn rerun_gives_identical_rows_and_a_revoked_approval_disappears() {
    let tenant = small_tenant(20);
    let ws = Workspace::new();
    let mut users = fixtures();
    users.extend(
        tenant
            .sim()
            .user_ids("employee_id")
            .unwrap()
            .into_iter()
            .take(20),
    );
    backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let first: Vec<_> = Table::ALL
        .iter()
        .map(|t| TableData::read(&ws.out(), *t).content())
        .collect();
    backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let second: Vec<_> = Table::ALL
        .iter()
        .map(|t| TableData::read(&ws.out(), *t).content())
        .collect();
    assert_eq!(
        first, second,
        "a rerun of the same window must give the same rows"
    );
    assert!(first.iter().map(|t| t.len()).sum::<usize>() > 10);

    let outs = TableData::read(&ws.out(), Table::Outs);
    assert_eq!(outs.find("fx-sh-revocable").len(), 1);
    let before = outs.rows();
    assert!(tenant.sim().set_status("fx-sh-revocable", 4));
    backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let outs = TableData::read(&ws.out(), Table::Outs);
    assert!(
        outs.find("fx-sh-revocable").is_empty(),
        "revoked approval still present"
    );
    assert_eq!(outs.rows(), before - 1);

    // A date whose only approval was revoked loses its file (the fixture user is alone there
    // unless a generated user has an out that day too).
    let day = ws.out().join("outs").join("date=2026-09-17");
    let others = outs
        .batches
        .iter()
        .filter(|(d, _)| d.to_string() == "2026-09-17")
        .count();
    assert_eq!(day.exists(), others > 0);
}

#[test]
fn a_95_day_range_uses_4_windows_and_never_more_than_50_ids_a_request() {
    let tenant = small_tenant(120);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    assert_eq!(users.len(), 127);
    let to = today();
    let from = to - Days::new(94);
    let (from, to) = (from.to_string(), to.to_string());
    let run = backfill(&tenant, &ws, &users, &from, &to, &["--statuses", "2,3"]);
    run.assert_ok();
    let stats = tenant.sim().stats();
    let mut windows: Vec<(i64, i64)> = stats.queries.iter().map(|q| (q.from, q.to)).collect();
    windows.sort();
    windows.dedup();
    assert_eq!(windows.len(), 4, "{windows:?}");
    assert_eq!(stats.query_calls, 4 * 3 * 2, "windows × batches × statuses");
    assert!(stats.max_user_ids_per_query <= 50);
    assert!(stats.max_window_days <= 30);
    assert!(stats.max_check_date_to.unwrap() <= today() + Days::new(1));
    assert!(
        stats.queries.iter().all(|q| q.code == 0),
        "every query accepted"
    );
}

#[test]
fn a_range_past_tomorrow_is_clipped_and_said_so() {
    let tenant = small_tenant(5);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let to = (today() + Days::new(40)).to_string();
    let from = (today() - Days::new(3)).to_string();
    let run = backfill(&tenant, &ws, &users, &from, &to, &[]);
    run.assert_ok();
    assert!(run.stdout().contains("range clipped"), "{}", run.stdout());
    assert!(tenant.sim().stats().max_check_date_to.unwrap() <= today() + Days::new(1));

    let from = (today() + Days::new(5)).to_string();
    let run = backfill(&tenant, &ws, &users, &from, &to, &[]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("today"), "{}", run.stderr());
}

#[test]
fn data_samples_parse_into_rows() {
    use attendance_core::answer::{QueryData, UserApproval};
    use attendance_core::flatten;
    use attendance_core::plan::{Status, Window};
    use attendance_core::table::RunStamp;
    use attendance_feishu::model::Envelope;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples");
    let mut seen = BTreeMap::new();
    for name in ["spec-example-response.json", "sim-response.json"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        let env: Envelope<QueryData> = serde_json::from_str(&text).unwrap();
        assert_eq!(env.code, Some(0));
        let data = env.data.unwrap();
        let elements = data.user_approvals().unwrap();
        let approvals: Vec<UserApproval> = elements
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).unwrap())
            .collect();
        let users: Vec<String> = approvals
            .iter()
            .filter_map(|u| Some(u.user_id.as_ref()?.as_str().to_string()))
            .collect();
        let dates: Vec<NaiveDate> = approvals
            .iter()
            .filter_map(|u| attendance_core::tz::parse_yyyymmdd(u.date.as_ref()?.as_str()))
            .collect();
        let window = Window {
            from: *dates.iter().min().unwrap(),
            to: *dates.iter().max().unwrap(),
        };
        let stamp = RunStamp {
            run_id: "r".into(),
            ingested_at_micros: 0,
        };
        let flat = flatten::flatten(
            &data,
            Status::APPROVED,
            window,
            &users,
            &stamp,
            &Default::default(),
        )
        .unwrap();
        let rows = flat.total_rows();
        assert!(rows >= 4, "{name}: {rows} rows");
        seen.insert(name, (rows, flat.rejects.len()));
    }
    assert_eq!(seen["spec-example-response.json"], (4, 0));
}

#[test]
fn users_listed_from_groups_and_contacts_match_the_tenant_exactly() {
    use attendance_feishu::{Client, ClientConfig, Credentials};
    use attendance_pull::Users;
    use attendance_pull::users::resolve;
    let tenant = small_tenant(400);
    let c = SimConfig::default();
    let client = Client::new(ClientConfig::new(
        tenant.url(),
        Credentials {
            app_id: c.app_id,
            app_secret: c.app_secret,
        },
    ))
    .unwrap();
    for employee_type in [
        EmployeeType::EmployeeId,
        EmployeeType::EmployeeNo,
        EmployeeType::OpenId,
    ] {
        let groups = tenant
            .rt
            .block_on(resolve(Some(&client), &Users::Groups, employee_type, 8))
            .unwrap();
        let expected = tenant.sim().group_members(employee_type.as_str()).unwrap();
        assert_eq!(
            groups
                .iter()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            expected
        );
        assert_eq!(groups.len(), expected.len(), "no duplicates");
        let contacts = tenant
            .rt
            .block_on(resolve(Some(&client), &Users::Contact, employee_type, 8))
            .unwrap();
        let everyone = tenant
            .sim()
            .department_members(employee_type.as_str())
            .unwrap();
        assert_eq!(
            contacts
                .iter()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            everyone
        );
        assert!(
            everyone.len() > expected.len(),
            "some users are in no attendance group"
        );
    }
    let stats = tenant.sim().stats();
    assert!(stats.list_user_calls > 3 * 5, "paginated: {stats:?}");

    // The binary lists them itself when no users file is given.
    let ws = Workspace::new();
    let out = ws.out();
    let url = tenant.url();
    let run = run_bin(
        &[
            "backfill",
            "--from",
            "2026-09-01",
            "--to",
            "2026-09-05",
            "--out",
            out.to_str().unwrap(),
            "--base-url",
            &url,
        ],
        &creds(),
    );
    run.assert_ok();
    let members = tenant.sim().group_members("employee_id").unwrap();
    assert!(
        run.stdout()
            .contains(&format!("{} from attendance groups", members.len())),
        "{}",
        run.stdout()
    );
    assert!(user_ids_in(&out).is_subset(&members));
}

#[test]
fn a_narrower_rerun_keeps_the_rows_outside_its_scope() {
    let tenant = small_tenant(40);
    let ws = Workspace::new();
    let users: Vec<String> = tenant
        .sim()
        .user_ids("employee_id")
        .unwrap()
        .into_iter()
        .take(40)
        .collect();
    backfill(
        &tenant,
        &ws,
        &users,
        "2026-09-01",
        "2026-09-30",
        &["--statuses", "2,3,4"],
    )
    .assert_ok();
    let wide = all_content(&ws.out());
    let wide_rejects = rejects(&ws.out()).len();

    // Five users, approved only: everything else must stay as it was.
    let few = &users[..5];
    backfill(&tenant, &ws, few, "2026-09-01", "2026-09-30", &[]).assert_ok();
    assert_eq!(
        all_content(&ws.out()),
        wide,
        "a narrower run changed rows outside its scope"
    );
    assert_eq!(
        rejects(&ws.out()).len(),
        wide_rejects,
        "rejects were duplicated or lost"
    );

    // And inside its scope it does replace: revoke one of the five users' approvals.
    let outs = TableData::read(&ws.out(), Table::Outs);
    let target = outs
        .batches
        .iter()
        .flat_map(|(_, b)| (0..b.num_rows()).map(move |i| (b, i)))
        .find(|(b, i)| {
            few.contains(&text(b, "user_id", *i).unwrap())
                && b.column_by_name("status")
                    .unwrap()
                    .as_primitive::<arrow_array::types::Int32Type>()
                    .value(*i)
                    == 2
        })
        .map(|(b, i)| text(b, "approval_id", i).unwrap())
        .expect("one of the five has an approved out");
    tenant.sim().set_status(&target, 4);
    backfill(&tenant, &ws, few, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let outs = TableData::read(&ws.out(), Table::Outs);
    let statuses: Vec<i32> = outs
        .find(&target)
        .iter()
        .map(|(_, b, i)| {
            b.column_by_name("status")
                .unwrap()
                .as_primitive::<arrow_array::types::Int32Type>()
                .value(*i)
        })
        .collect();
    assert_eq!(
        statuses,
        Vec::<i32>::new(),
        "the revoked approval is gone from status 2"
    );
}
