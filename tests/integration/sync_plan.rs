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

/// Lands `body` in the root's events inbox as a receiver would.
fn land(tenant: &Tenant, out: &std::path::Path, body: &serde_json::Value) {
    let landing = attendance_events::Landing::new(
        attendance_lake::store::Store::Local(out.to_path_buf()),
        "test-receiver",
    );
    tenant
        .rt
        .block_on(landing.land(body.clone(), attendance_events::Transport::Webhook))
        .unwrap();
}

#[test]
fn a_revoke_months_back_makes_the_next_sync_re_read_that_users_dates() {
    let tenant = small_tenant(20);
    let ws = Workspace::new();
    let out = ws.out();
    let url = tenant.url();
    let users_file = ws.users_file(&tenant.sim().user_ids("employee_id").unwrap());
    let from = today() - Days::new(120);
    let backfill = backfill(
        &tenant,
        &ws,
        &tenant.sim().user_ids("employee_id").unwrap(),
        &from.to_string(),
        &today().to_string(),
        &["--quiet"],
    );
    backfill.assert_ok();
    // An approved out about 90 days back, and its approval event (landed back then).
    let old_day = (85..100)
        .map(|back| today() - Days::new(back))
        .find(|day| {
            tenant
                .sim()
                .approval_events(*day, *day)
                .iter()
                .any(|e| e.event_type == "out_approval")
        })
        .expect("an out approval about 90 days back");
    let approval = tenant
        .sim()
        .approval_events(old_day, old_day)
        .into_iter()
        .find(|e| e.event_type == "out_approval")
        .unwrap();
    let code = approval.instance_code.clone();
    let user = approval.body["event"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    land(&tenant, &out, &approval.body);
    let outs = TableData::read(&out, Table::Outs);
    assert_eq!(outs.find(&code).len(), 1, "{code} is in the pulled tables");
    let others_on_that_day = |data: &TableData| -> usize {
        data.batches
            .iter()
            .filter(|(d, _)| *d == old_day)
            .map(|(_, b)| {
                (0..b.num_rows())
                    .filter(|&i| text(b, "user_id", i).as_deref() != Some(user.as_str()))
                    .count()
            })
            .sum()
    };
    let others_before = others_on_that_day(&outs);

    let sync = |extra: &[&str]| {
        let mut args = vec![
            "sync",
            "--out",
            out.to_str().unwrap(),
            "--users-file",
            users_file.to_str().unwrap(),
            "--base-url",
            &url,
            "--quiet",
        ];
        args.extend_from_slice(extra);
        run_in(&args, &creds())
    };
    // The first sync acts on the approval event (an approval as the tables have it already).
    sync(&[]).assert_ok();
    assert_eq!(TableData::read(&out, Table::Outs).find(&code).len(), 1);

    // Months later, the approval is revoked: its revert lands, and a revert of an approval that
    // never landed too.
    let revert = tenant.sim().revoke(&code).expect("a revert event");
    land(&tenant, &out, &revert.body);
    let mut orphan = revert.body.clone();
    orphan["uuid"] = serde_json::json!("orphan-revert-1");
    orphan["event"]["instance_code"] = serde_json::json!("NEVER-LANDED");
    land(&tenant, &out, &orphan);

    // The plan shows the re-read before anything is queried.
    let plan = run_in(
        &[
            "plan",
            "--out",
            out.to_str().unwrap(),
            "--users-file",
            users_file.to_str().unwrap(),
        ],
        &[],
    );
    plan.assert_ok();
    assert!(
        plan.stdout().contains("1 unresolved reverts"),
        "{}",
        plan.stdout()
    );
    assert!(plan.stdout().contains("re-read"), "{}", plan.stdout());

    let run = sync(&[]);
    run.assert_ok();
    assert!(run.stdout().contains("events"), "{}", run.stdout());
    let after = TableData::read(&out, Table::Outs);
    assert!(
        after.find(&code).is_empty(),
        "the revoked approval left the tables"
    );
    assert_eq!(
        others_on_that_day(&after),
        others_before,
        "other users' rows of that day kept"
    );
    // The manifest names the re-read window and the unresolved revert.
    let manifest_path = run
        .stdout()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("manifest")
                .map(|m| m.trim().to_string())
        })
        .expect("a manifest line");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let events = &manifest["events"];
    let windows = events["windows"].as_array().unwrap();
    assert!(
        windows.iter().any(|w| {
            w["outcome"] == "committed"
                && w["users"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u == user.as_str())
                && w["window"]["from"].as_str().unwrap() <= old_day.to_string().as_str()
                && w["window"]["to"].as_str().unwrap() >= old_day.to_string().as_str()
        }),
        "{events}"
    );
    assert_eq!(
        events["unresolved_reverts"][0]["instance_code"],
        "NEVER-LANDED"
    );

    // Nothing new since: the next sync re-reads nothing outside its window.
    let quiet = sync(&[]);
    quiet.assert_ok();
    let manifest_path = quiet
        .stdout()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("manifest")
                .map(|m| m.trim().to_string())
        })
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(
        manifest["events"]["considered"], 0,
        "{}",
        manifest["events"]
    );
    assert!(manifest["events"]["windows"].as_array().unwrap().is_empty());
}
