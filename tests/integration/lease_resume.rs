//! One writer a root, and what happens when a run dies: the lease, its expiry and takeover,
//! resuming after the committed windows, SIGTERM.

use std::path::Path;
use std::process::Command;

use attendance_core::table::Table;
use chrono::Utc;

use crate::util::*;

fn spawn_backfill(
    tenant: &Tenant,
    users_file: &Path,
    out: &Path,
    from: &str,
    to: &str,
    extra: &[&str],
) -> std::process::Child {
    Command::new(BIN)
        .args(backfill_args(tenant, users_file, out, from, to, extra))
        .envs(creds())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn committed_windows(out: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(out.join("_progress")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["committed"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0)
}

/// Every file a warehouse would read (names not starting with `_` or `.`) is whole Parquet.
fn assert_only_whole_files_visible(out: &Path) {
    for table in Table::ALL {
        let dir = out.join(table.name());
        let Ok(dates) = std::fs::read_dir(&dir) else {
            continue;
        };
        for date in dates {
            for file in std::fs::read_dir(date.unwrap().path()).unwrap() {
                let file = file.unwrap();
                let name = file.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.starts_with('_') {
                    continue;
                }
                assert!(
                    name.starts_with("part-") && name.ends_with(".parquet"),
                    "visible stray file {name}"
                );
                let bytes = std::fs::read(file.path()).unwrap();
                attendance_lake::writer::decode(bytes)
                    .unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
            }
        }
    }
}

#[test]
fn a_second_run_on_the_same_root_is_refused_while_the_first_holds_the_lease() {
    let tenant = small_tenant(150);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let users_file = ws.users_file(&users);
    let out = ws.out();
    // 4 batches × 4 windows at 4/s: about 4 s.
    let first = spawn_backfill(
        &tenant,
        &users_file,
        &out,
        "2026-05-01",
        "2026-08-31",
        &["--rate-limit", "4"],
    );
    wait_for("the first run's lease", || out.join("_lease.json").exists());
    let lease: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_lease.json")).unwrap()).unwrap();
    let holder = lease["run_id"].as_str().unwrap().to_string();

    let second = backfill(&tenant, &ws, &users, "2026-05-01", "2026-05-31", &[]);
    assert_eq!(second.code(), 2, "{}", second.stderr());
    let last = second
        .stderr()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains(&holder) && last.contains("_lease.json"),
        "{last}"
    );

    let output = first.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lease: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_lease.json")).unwrap()).unwrap();
    assert_eq!(lease["released"], true, "released at the end: {lease}");
    // Now the root is free again.
    backfill(&tenant, &ws, &users, "2026-05-01", "2026-05-31", &[]).assert_ok();
}

#[test]
fn a_lease_left_by_a_killed_run_expires_and_is_taken_over() {
    let tenant = small_tenant(5);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let out = ws.out();
    std::fs::create_dir_all(&out).unwrap();
    let lease = |expires: chrono::DateTime<Utc>| {
        serde_json::json!({
            "run_id": "20260101T000000Z-deadbeef", "host": "gone-pod", "pid": 4242,
            "started_at": "2026-01-01T00:00:00Z", "expires_at": expires,
        })
        .to_string()
    };
    std::fs::write(
        out.join("_lease.json"),
        lease(Utc::now() + chrono::Duration::minutes(5)),
    )
    .unwrap();
    let refused = backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-05", &[]);
    assert_eq!(refused.code(), 2);
    assert!(
        refused.stderr().contains("gone-pod"),
        "{}",
        refused.stderr()
    );
    std::fs::write(
        out.join("_lease.json"),
        lease(Utc::now() - chrono::Duration::seconds(1)),
    )
    .unwrap();
    let run = backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-05", &[]);
    run.assert_ok();
    assert!(
        run.stderr().contains("took over an expired lease"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_run_killed_mid_write_resumes_to_the_same_rows_as_an_uninterrupted_run() {
    let tenant = small_tenant(150);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let users_file = ws.users_file(&users);
    let out = ws.out();
    let (from, to) = ("2026-04-01", "2026-08-31");
    let args = ["--rate-limit", "5", "--lease-ttl", "3", "--statuses", "2,3"];
    let mut first = spawn_backfill(&tenant, &users_file, &out, from, to, &args);
    wait_for("a committed window", || committed_windows(&out) >= 1);
    first.kill().unwrap(); // SIGKILL: no cleanup of any kind
    first.wait().unwrap();
    let done_before_kill = committed_windows(&out);
    assert!(
        done_before_kill < 5,
        "the run finished before it was killed: the test proves nothing"
    );
    assert_only_whole_files_visible(&out);

    // Its lease blocks the root until it expires; then the rerun resumes.
    std::thread::sleep(std::time::Duration::from_millis(3200));
    tenant.sim().reset_stats();
    let resumed = backfill(&tenant, &ws, &users, from, to, &args);
    resumed.assert_ok();
    assert!(resumed.stdout().contains("resumed"), "{}", resumed.stdout());
    let windows_fetched: std::collections::BTreeSet<i64> = tenant
        .sim()
        .stats()
        .queries
        .iter()
        .map(|q| q.from)
        .collect();
    assert_eq!(
        windows_fetched.len(),
        5 - done_before_kill,
        "only the windows left were fetched"
    );
    assert!(
        !out.join("_progress")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "progress cleared when done"
    );

    let reference = Workspace::new();
    backfill(
        &tenant,
        &reference,
        &users,
        from,
        to,
        &["--statuses", "2,3"],
    )
    .assert_ok();
    assert_eq!(all_content(&out), all_content(&reference.out()));
    assert_only_whole_files_visible(&out);
}

#[test]
fn a_resumed_run_still_reports_the_users_refused_before_it() {
    let tenant = small_tenant(10);
    let ws = Workspace::new();
    let mut users = tenant.sim().user_ids("employee_id").unwrap();
    users.push("left_company_42".into());
    let first = backfill(&tenant, &ws, &users, "2026-07-01", "2026-08-20", &[]);
    assert_eq!(first.code(), 3);
    // Every window was committed; the rerun resumes past all of them and must still say 3.
    let again = backfill(&tenant, &ws, &users, "2026-07-01", "2026-08-20", &[]);
    assert_eq!(again.code(), 3, "{}", again.stdout());
    assert!(
        again.stdout().contains("resumed") && again.stdout().contains("left_company_42"),
        "{}",
        again.stdout()
    );
}

#[test]
fn sigterm_stops_after_the_commits_under_way_and_releases_the_lease() {
    let tenant = small_tenant(150);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let users_file = ws.users_file(&users);
    let out = ws.out();
    let (from, to) = ("2026-04-01", "2026-08-31");
    let child = spawn_backfill(
        &tenant,
        &users_file,
        &out,
        from,
        to,
        &["--rate-limit", "5", "--statuses", "2,3"],
    );
    wait_for("a committed window", || committed_windows(&out) >= 1);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("stopped on request"),
        "{stderr}"
    );
    let lease: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_lease.json")).unwrap()).unwrap();
    assert_eq!(lease["released"], true, "{lease}");
    assert!(committed_windows(&out) < 5, "it stopped early");
    assert_only_whole_files_visible(&out);
    // No wait for a lease to expire: the rerun starts at once and resumes.
    let resumed = backfill(&tenant, &ws, &users, from, to, &["--statuses", "2,3"]);
    resumed.assert_ok();
    assert!(resumed.stdout().contains("resumed"), "{}", resumed.stdout());
}
