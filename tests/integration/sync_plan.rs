//! The nightly `sync` and `plan`, which makes no query.

use attendance_core::table::Table;
use chrono::Days;

use crate::util::*;

#[test]
fn sync_twice_reflects_a_late_approval_and_a_revoked_one() {
    let tenant = small_tenant(20);
    let ws = Workspace::new();
    let out = ws.out();
    let url = tenant.url();
    let sync = || {
        run_in(
            &[
                "sync",
                "--out",
                out.to_str().unwrap(),
                "--base-url",
                &url,
                "--quiet",
            ],
            &creds(),
        )
    };
    let first = sync();
    first.assert_ok();
    assert!(
        first.stdout().contains("in 1 windows"),
        "31 dates are one window: {}",
        first.stdout()
    );
    let outs = TableData::read(&out, Table::Outs);
    assert!(outs.rows() > 0);
    // A revocation of something synced, and an approval approved late for a date days ago.
    let (revoked_date, b, i) = outs
        .batches
        .iter()
        .flat_map(|(d, b)| (0..b.num_rows()).map(move |i| (*d, b, i)))
        .next()
        .unwrap();
    let revoked = text(b, "approval_id", i).unwrap();
    assert!(tenant.sim().set_status(&revoked, 4));
    let late_date = today() - Days::new(3);
    let late_user = tenant.sim().user_ids("employee_id").unwrap()[0].clone();
    tenant.sim().insert(
        &late_user,
        late_date,
        "leaves",
        2,
        serde_json::json!({
            "approval_id": "late-approval-1", "uniq_id": "annual", "unit": 1, "interval": 28800,
            "start_time": format!("{late_date} 09:00:00"), "end_time": format!("{late_date} 18:00:00"),
            "i18n_names": {"ch": "年假", "en": "Annual leave"}, "default_locale": "ch",
            "reason": "补批 late", "approve_pass_time": format!("{} 10:00:00", today()),
            "approve_apply_time": format!("{late_date} 08:00:00"), "idempotent_id": "late-1"
        }),
    );
    sync().assert_ok();
    let outs = TableData::read(&out, Table::Outs);
    assert!(
        outs.find(&revoked).is_empty(),
        "revoked approval of {revoked_date} still there"
    );
    let leaves = TableData::read(&out, Table::Leaves);
    let late = leaves.find("late-approval-1");
    assert_eq!(late.len(), 1, "the late approval appeared");
    assert_eq!(late[0].0, late_date);
    assert_eq!(
        text(late[0].1, "user_id", late[0].2).as_deref(),
        Some(late_user.as_str())
    );
}

#[test]
fn plan_makes_no_query_and_counts_the_requests_the_run_makes() {
    let tenant = small_tenant(130);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let users_file = ws.users_file(&users);
    let out = ws.out();
    let url = tenant.url();
    let common = [
        "--from",
        "2026-03-01",
        "--to",
        "2026-06-15",
        "--statuses",
        "2,3",
        "--out",
        out.to_str().unwrap(),
        "--users-file",
        users_file.to_str().unwrap(),
        "--base-url",
        &url,
    ];
    let mut plan_args = vec!["plan"];
    plan_args.extend_from_slice(&common);
    let plan = run_in(&plan_args, &creds());
    plan.assert_ok();
    assert_eq!(
        tenant.sim().stats().query_calls,
        0,
        "plan called the query API"
    );
    assert!(!out.exists(), "plan wrote nothing");
    let planned: u64 = plan
        .stdout()
        .lines()
        .find(|l| l.trim_start().starts_with("requests"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {}", plan.stdout()));
    assert_eq!(
        planned,
        4 * 3 * 2,
        "4 windows × 3 batches × 2 statuses: {}",
        plan.stdout()
    );
    // --dry-run is the same plan.
    let mut dry = vec!["backfill", "--dry-run"];
    dry.extend_from_slice(&common);
    let dry = run_in(&dry, &creds());
    dry.assert_ok();
    assert!(dry.stdout().contains(&format!("{planned} queries")));
    assert_eq!(tenant.sim().stats().query_calls, 0);

    let mut run_args = vec!["backfill", "--quiet"];
    run_args.extend_from_slice(&common);
    run_in(&run_args, &creds()).assert_ok();
    assert_eq!(tenant.sim().stats().query_calls, planned);
}
