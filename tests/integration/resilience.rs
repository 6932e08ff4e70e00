//! A client that runs unattended: rate limits and 429 bursts, 500s and timeouts, refused users,
//! token expiry, malformed bodies, an unreachable platform.

use std::process::Command;

use attendance_core::table::Table;
use attendance_sim::{Faults, SimConfig};

use crate::util::*;

#[test]
fn rate_limited_answers_are_waited_out_and_retried() {
    let tenant = Tenant::start(SimConfig {
        users: 200,
        rate_limit_per_sec: 1,
        ..SimConfig::default()
    });
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let run = backfill(
        &tenant,
        &ws,
        &users,
        "2026-09-01",
        "2026-09-10",
        &["--concurrency", "8"],
    );
    run.assert_ok();
    let stats = tenant.sim().stats();
    assert!(
        stats.rate_limited > 0,
        "the tenant never limited: the test proves nothing"
    );
    assert_eq!(stats.query_ok, 5, "each of the 5 batches answered once");
    let served: u64 = stats.rows_served.values().sum();
    let written: usize = Table::ALL
        .iter()
        .map(|t| TableData::read(&ws.out(), *t).rows())
        .sum();
    let kept_aside = rejects(&ws.out()).len();
    assert_eq!(written + kept_aside, served as usize);
    assert!(
        run.stdout()
            .contains(&format!("{} rate-limited", stats.rate_limited)),
        "{}",
        run.stdout()
    );
}

#[test]
fn ten_percent_of_500s_and_timeouts_still_give_complete_correct_tables() {
    let clean = small_tenant(150);
    let users = clean.sim().user_ids("employee_id").unwrap();
    let reference = Workspace::new();
    backfill(&clean, &reference, &users, "2026-08-01", "2026-09-30", &[]).assert_ok();

    let faulty = Tenant::start(SimConfig {
        users: 150,
        faults: Faults {
            http_500: 0.04,
            code_1225000: 0.03,
            drop_connection: 0.02,
            slow: 0.02,
            slow_ms: 2_500,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let ws = Workspace::new();
    let run = backfill(
        &faulty,
        &ws,
        &users,
        "2026-08-01",
        "2026-09-30",
        &["--request-timeout", "1"],
    );
    run.assert_ok();
    let stats = faulty.sim().stats();
    assert!(
        stats.faults_injected >= 1,
        "no fault was injected: the test proves nothing"
    );
    assert!(run.stdout().contains(" retries"), "{}", run.stdout());
    assert_eq!(
        all_content(&ws.out()),
        all_content(&reference.out()),
        "faults changed the tables"
    );
    assert!(
        run.stderr().contains("retrying"),
        "each retry is logged with its reason"
    );
}

#[test]
fn a_batch_with_two_refused_ids_commits_the_other_48_and_names_the_two() {
    let tenant = small_tenant(50);
    let ws = Workspace::new();
    let users: Vec<String> = tenant
        .sim()
        .user_ids("employee_id")
        .unwrap()
        .into_iter()
        .take(50)
        .collect();
    // First a clean run: everyone's rows are in.
    backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let before = user_ids_in(&ws.out());
    let bad = [users[7].clone(), users[31].clone()];
    assert!(
        bad.iter().all(|b| before.contains(b)),
        "the refused users had rows before"
    );

    tenant.sim().set_refused_users(bad.to_vec());
    // A revocation for a good user proves the good users really were fetched again.
    let outs = TableData::read(&ws.out(), Table::Outs);
    let (_, b, i) = outs
        .batches
        .iter()
        .flat_map(|(d, b)| (0..b.num_rows()).map(move |i| (*d, b, i)))
        .find(|(_, b, i)| {
            let u = text(b, "user_id", *i).unwrap();
            !bad.contains(&u) && !u.starts_with("fx_")
        })
        .unwrap();
    let revoked = text(b, "approval_id", i).unwrap();
    assert!(tenant.sim().set_status(&revoked, 4));
    let run = backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]);
    assert_eq!(run.code(), 3, "{}\n{}", run.stdout(), run.stderr());
    let out = run.stdout();
    let refused_line = out.lines().find(|l| l.contains("REFUSED USERS")).unwrap();
    for b in &bad {
        assert!(refused_line.contains(b.as_str()), "{refused_line}");
    }
    assert!(refused_line.contains("2 "), "{refused_line}");
    // The other 48 were committed, and the refused two kept the rows they had.
    let after = user_ids_in(&ws.out());
    assert_eq!(after, before);
    assert!(
        TableData::read(&ws.out(), Table::Outs)
            .find(&revoked)
            .is_empty()
    );
    let stats = tenant.sim().stats();
    // The second run's queries: the whole batch refused, then halves until the two are found.
    let first_run = stats.queries.iter().position(|q| q.code != 0).unwrap();
    let second_run = &stats.queries[first_run..];
    assert_eq!(second_run[0].user_ids, 50);
    let accepted: usize = second_run
        .iter()
        .filter(|q| q.code == 0)
        .map(|q| q.user_ids)
        .sum();
    assert_eq!(
        accepted, 48,
        "split until only the two refused ids were left out: {second_run:?}"
    );
    assert_eq!(
        second_run
            .iter()
            .filter(|q| q.code == 1220004 && q.user_ids == 1)
            .count(),
        2
    );
    assert!(stats.queries.iter().all(|q| q.user_ids <= 50));
}

#[test]
fn token_expiry_mid_run_causes_exactly_one_token_call_per_expiry() {
    let tenant = Tenant::start(SimConfig {
        users: 300,
        ..SimConfig::default()
    });
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let users_file = ws.users_file(&users);
    let out = ws.out();
    let url = tenant.url();
    // 7 batches × 4 windows × 2 statuses = 56 queries at 8/s: about 7 s.
    let child = Command::new(BIN)
        .args([
            "backfill",
            "--from",
            "2026-05-01",
            "--to",
            "2026-08-31",
            "--statuses",
            "2,3",
            "--out",
            out.to_str().unwrap(),
            "--users-file",
            users_file.to_str().unwrap(),
            "--base-url",
            &url,
            "--rate-limit",
            "8",
            "--concurrency",
            "8",
        ])
        .envs(creds())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut expiries = 0;
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let before = tenant.sim().stats().query_calls;
        assert!(
            before < 56,
            "the run went faster than planned: the test proves nothing"
        );
        tenant.sim().expire_tokens();
        expiries += 1;
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = tenant.sim().stats();
    assert!(
        stats.errors_by_code.get(&99991663).copied().unwrap_or(0) >= expiries,
        "{stats:?}"
    );
    assert_eq!(
        stats.token_calls,
        1 + expiries,
        "one token call at start and one per expiry"
    );
}

#[test]
fn a_short_token_lifetime_is_renewed_ahead_of_expiry() {
    let tenant = Tenant::start(SimConfig {
        users: 100,
        token_ttl_secs: 2,
        ..SimConfig::default()
    });
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let run = backfill(
        &tenant,
        &ws,
        &users,
        "2026-06-01",
        "2026-08-31",
        // 3 batches × 3 windows × 2 statuses at 4/s: about 4.5 s, over two token lifetimes.
        &["--rate-limit", "4", "--statuses", "2,3"],
    );
    run.assert_ok();
    let stats = tenant.sim().stats();
    assert!(stats.token_calls >= 2, "{stats:?}");
    assert_eq!(
        stats.errors_by_code.get(&99991663).copied().unwrap_or(0),
        0,
        "renewed before it expired"
    );
}

#[test]
fn malformed_bodies_are_errors_naming_endpoint_window_and_batch() {
    let tenant = small_tenant(10);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    // A clean run first: the failed window must keep what it wrote, though the source changed.
    backfill(&tenant, &ws, &users, "2026-09-14", "2026-09-17", &[]).assert_ok();
    let before = all_content(&ws.out());
    assert!(before.iter().map(Vec::len).sum::<usize>() > 0);
    tenant.sim().set_status("fx-sh-multiday", 4);
    tenant.sim().set_faults(Faults {
        malformed_json: 1.0,
        ..Faults::default()
    });
    let run = backfill(&tenant, &ws, &users, "2026-09-14", "2026-09-17", &[]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    let out = run.stdout();
    let failed = out
        .lines()
        .skip_while(|l| !l.contains("FAILED"))
        .nth(1)
        .unwrap_or_default();
    for needle in [
        "user_approvals/query",
        "malformed body",
        "2026-09-14..2026-09-17",
        "batch 1/1",
    ] {
        assert!(
            failed.contains(needle),
            "{needle:?} not in {failed:?}\n{out}"
        );
    }
    assert_eq!(
        all_content(&ws.out()),
        before,
        "the failed window kept its data"
    );
    let last = run.stderr().lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("malformed body") && last.contains("batch 1/1"),
        "{last}"
    );
}

#[test]
fn bursts_of_429_are_recovered() {
    let tenant = Tenant::start(SimConfig {
        users: 200,
        faults: Faults {
            burst_429: 0.05,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let run = backfill(&tenant, &ws, &users, "2026-07-01", "2026-09-30", &[]);
    run.assert_ok();
    let stats = tenant.sim().stats();
    assert!(
        stats.rate_limited > 0,
        "no burst happened: the test proves nothing"
    );
    let served: u64 = stats.rows_served.values().sum();
    let written: usize = Table::ALL
        .iter()
        .map(|t| TableData::read(&ws.out(), *t).rows())
        .sum();
    assert_eq!(written + rejects(&ws.out()).len(), served as usize);
}

#[test]
fn an_unreachable_platform_fails_fast_naming_the_token_endpoint() {
    let ws = Workspace::new();
    let users_file = ws.users_file(&fixtures());
    let out = ws.out();
    let started = std::time::Instant::now();
    let run = run_bin(
        &[
            "backfill",
            "--from",
            "2026-01-01",
            "--to",
            "2026-06-30",
            "--out",
            out.to_str().unwrap(),
            "--users-file",
            users_file.to_str().unwrap(),
            "--base-url",
            "http://127.0.0.1:9",
        ],
        &creds(),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let last = run.stderr().lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("tenant_access_token") && last.contains("127.0.0.1:9"),
        "{last}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
