//! The command line: one-line errors and documented exit codes, secrets kept out of every
//! output, job files, JSON logs, and the demo.

use std::path::Path;

use attendance_core::table::Table;
use attendance_sim::{Faults, SimConfig};

use crate::util::*;

#[test]
fn bad_input_gives_one_line_errors_and_documented_exit_codes() {
    let tenant = small_tenant(3);
    let ws = Workspace::new();
    let users_file = ws.users_file(&fixtures());
    let users_arg = users_file.to_str().unwrap().to_string();
    let out = ws.out();
    let out_arg = out.to_str().unwrap().to_string();
    let url = tenant.url();
    let base = |from: &str, to: &str, users: &str| -> Vec<String> {
        [
            "backfill",
            "--from",
            from,
            "--to",
            to,
            "--out",
            &out_arg,
            "--users-file",
            users,
            "--base-url",
            &url,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let check = |args: Vec<String>, env: &[(&str, &str)], code: i32, needles: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = run_bin(&args, env);
        assert_eq!(run.code(), code, "{args:?}\nstderr: {}", run.stderr());
        let err = run.stderr();
        let last = err.lines().last().unwrap_or_default().to_string();
        for n in needles {
            assert!(last.contains(n), "{n:?} not in the last line: {err}");
        }
        assert!(
            !err.contains(&SimConfig::default().app_secret),
            "secret leaked"
        );
    };
    let ok_creds = creds();
    check(
        base("2026-09-01", "2026-09-02", &users_arg),
        &[],
        2,
        &["FEISHU_APP_ID"],
    );
    check(
        base("2026-09-05", "2026-09-02", &users_arg),
        &ok_creds,
        2,
        &["--from 2026-09-05", "--to 2026-09-02"],
    );
    check(
        base("2026-13-01", "2026-09-02", &users_arg),
        &ok_creds,
        2,
        &["2026-13-01", "--from"],
    );
    check(
        base("2026-09-01", "2026-09-02", "/nonexistent/users.txt"),
        &ok_creds,
        2,
        &["/nonexistent/users.txt"],
    );
    let wrong_secret = [ok_creds[0], ("FEISHU_APP_SECRET", "wrong")];
    check(
        base("2026-09-01", "2026-09-02", &users_arg),
        &wrong_secret,
        2,
        &["10014", "FEISHU_APP_SECRET"],
    );
    // An id the tenant does not know: the platform refuses the batch with 1220004.
    let unknown = ws.dir.path().join("unknown.txt");
    std::fs::write(&unknown, "fx_shanghai\nnobody_here\n").unwrap();
    check(
        base("2026-09-01", "2026-09-02", unknown.to_str().unwrap()),
        &ok_creds,
        3,
        &["1 user refused", "nobody_here"],
    );
    let mut bad_status = base("2026-09-01", "2026-09-02", &users_arg);
    bad_status.extend(["--statuses".into(), "2,9".into()]);
    check(bad_status, &ok_creds, 2, &["'9'", "--statuses"]);
}

#[test]
fn nothing_secret_reaches_the_output() {
    // Retries, token renewals and refusals all log: none of their lines may carry a secret.
    let tenant = Tenant::start(SimConfig {
        users: 60,
        token_ttl_secs: 1,
        faults: Faults {
            http_500: 0.1,
            code_1225000: 0.1,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let run = backfill(
        &tenant,
        &ws,
        &users,
        "2026-08-10",
        "2026-09-20",
        &["--log", "debug", "--rate-limit", "5", "--statuses", "2,3"],
    );
    run.assert_ok();
    let secret = SimConfig::default().app_secret;
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        all.contains("retrying"),
        "the run logged no retry: the test proves less than it says"
    );
    assert!(
        tenant.sim().stats().token_calls >= 2,
        "no token renewal happened"
    );
    assert!(!all.contains(&secret));
    // Tokens are "t-" and 32 hex digits.
    let token_like = all.match_indices("t-").any(|(i, _)| {
        let rest = &all[i + 2..];
        rest.len() >= 32 && rest[..32].bytes().all(|b| b.is_ascii_hexdigit())
    });
    assert!(!token_like, "a token reached the output");
    let mut stack = vec![ws.out()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn demo_runs_end_to_end() {
    let ws = Workspace::new();
    let out = ws.out();
    let run = run_bin(
        &["demo", "--users", "30", "--out", out.to_str().unwrap()],
        &[],
    );
    run.assert_ok();
    let stdout = run.stdout();
    for needle in [
        "outs",
        "leaves",
        "overtime_works",
        "trips",
        "rejects",
        "requests",
        &out.display().to_string(),
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    assert!(TableData::read(&out, Table::Outs).rows() > 0);
    // The records kept aside for Asia/Beijing read again with the alias; the rest stay.
    assert!(
        stdout.contains("rejects replay --zone-alias Asia/Beijing=Asia/Shanghai,"),
        "{stdout}"
    );
    assert!(
        rejects(&out).iter().all(|r| r["value"] != "Asia/Beijing"),
        "{stdout}"
    );
    // The day of events, pushed over both transports, each landed once.
    let sent: usize = stdout
        .split("the tenant pushed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no events line in:\n{stdout}"));
    assert!(sent > 0, "{stdout}");
    assert!(
        stdout.contains(&format!("landed                 {sent} events, each once")),
        "{stdout}"
    );
    let files: usize = std::fs::read_dir(out.join("_events/inbox"))
        .unwrap()
        .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(files, sent);
    // And compacted into tables: every event a row of approval_events, the approvals rows of
    // their tables.
    // Read from the receivers' journals (every delivery, some twice), none from the inbox.
    assert!(
        stdout.contains("events compact: compacted ")
            && stdout.contains(&format!(
                "and 0 inbox objects no journal held): {sent} new rows of approval_events"
            )),
        "{stdout}"
    );
    let approval_tables = ["out_events", "leave_events", "overtime_events"]
        .iter()
        .filter(|table| out.join(table).is_dir())
        .count();
    assert!(approval_tables > 0, "no approval table:\n{stdout}");
    // And a third-party export pushed, checked, pulled and loaded, all 300 instances agreeing.
    for needle in [
        "300 documents, 300 valid, 0 rejected",
        "300 sent, 0 refused by the platform, 0 failed",
        "check            3 requests: 0 differences",
        "300 instances",
        "300 external_instances",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    let instances: usize = TableFiles::rows(&out.join("external_instances"));
    assert_eq!(instances, 300);
}

/// Rows of every part file under a table's directory.
struct TableFiles;

impl TableFiles {
    fn rows(dir: &std::path::Path) -> usize {
        let mut rows = 0;
        for partition in std::fs::read_dir(dir).unwrap() {
            for file in std::fs::read_dir(partition.unwrap().path()).unwrap() {
                let bytes = std::fs::read(file.unwrap().path()).unwrap();
                let (batches, _) = attendance_lake::writer::decode(bytes).unwrap();
                rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
            }
        }
        rows
    }
}

#[test]
fn job_files_set_flags_and_bad_ones_give_one_line_errors_naming_key_and_file() {
    let tenant = small_tenant(10);
    let ws = Workspace::new();
    let url = tenant.url();
    let out = ws.out();
    let job = ws.dir.path().join("job.toml");
    let users_file = ws.users_file(&fixtures());
    // A good file: its keys act as flags, and a flag on the command line wins over it.
    std::fs::write(
        &job,
        format!(
            "out = {:?}\nusers_file = {:?}\nstatuses = [2, 3]\nrate_limit = 20\nfrom = \"2026-09-01\"\nto = \"2026-09-05\"\nquiet = true\n",
            out.to_str().unwrap(),
            users_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = run_in(
        &[
            "backfill",
            "--config",
            job.to_str().unwrap(),
            "--base-url",
            &url,
            "--to",
            "2026-09-20",
        ],
        &creds(),
    );
    run.assert_ok();
    assert!(
        run.stdout().contains("2026-09-01..2026-09-20"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("statuses 2,3"), "{}", run.stdout());

    let check = |body: &str, needles: &[&str]| {
        std::fs::write(&job, body).unwrap();
        let run = run_in(
            &[
                "backfill",
                "--config",
                job.to_str().unwrap(),
                "--base-url",
                &url,
            ],
            &creds(),
        );
        assert_eq!(run.code(), 2, "{body}: {}", run.stderr());
        let err = run.stderr();
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for n in needles.iter().chain([&job.to_str().unwrap()]) {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    };
    check(
        "out = \"x\"\nfrom = \"2026-09-01\"\nto = \"2026-09-02\"\nrate_limt = 5\n",
        &["rate_limt", "unknown key"],
    );
    check("app_secret = \"hunter2\"\n", &["app_secret", "secrets"]);
    check(
        "out = \"x\"\nfrom = \"2026-09-01\"\nto = \"2026-09-02\"\nrate_limit = \"fast\"\n",
        &["rate_limit", "fast"],
    );
    check(
        "out = \"x\"\nfrom = 20260901\nto = \"2026-09-02\"\n",
        &["key 'from'", "20260901"],
    );
    check("out = [\n", &["line"]);

    // The shipped job files are valid: plan them against the simulated tenant. (Their root is
    // a placeholder bucket: the events there are not read, nothing leaves loopback.)
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nightly = root.join("jobs/nightly.toml");
    let run = run_in(
        &[
            "plan",
            "--config",
            nightly.to_str().unwrap(),
            "--base-url",
            &url,
            "--no-events",
        ],
        &creds(),
    );
    run.assert_ok();
    let example = root.join("jobs/backfill-example.toml");
    let run = run_in(
        &[
            "plan",
            "--config",
            example.to_str().unwrap(),
            "--base-url",
            &url,
            "--users-file",
            users_file.to_str().unwrap(),
        ],
        &creds(),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
}

#[test]
fn json_logs_carry_the_run_id_on_every_line_of_a_run() {
    let tenant = small_tenant(10);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let run = backfill(
        &tenant,
        &ws,
        &users,
        "2026-08-01",
        "2026-09-30",
        &["--log-format", "json", "--quiet"],
    );
    run.assert_ok();
    let run_id = run
        .stdout()
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("run ")
        .to_string();
    let lines: Vec<serde_json::Value> = run
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(lines.len() >= 3, "{}", run.stderr());
    for line in &lines {
        assert_eq!(line["span"]["run_id"], run_id.as_str(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "window committed")
    );
}

#[test]
fn a_list_on_the_command_line_replaces_the_job_files_list() {
    let tenant = small_tenant(5);
    let ws = Workspace::new();
    let job = ws.dir.path().join("job.toml");
    let users_file = ws.users_file(&fixtures());
    std::fs::write(
        &job,
        format!("out = \"x\"\nusers_file = {:?}\nstatuses = [2, 3]\nfrom = 2026-09-01\nto = 2026-09-05\n", users_file.to_str().unwrap()),
    )
    .unwrap();
    // No credentials: planning over a users file needs none.
    let plan = run_bin(
        &[
            "plan",
            "--config",
            job.to_str().unwrap(),
            "--statuses",
            "4",
            "--base-url",
            &tenant.url(),
        ],
        &[],
    );
    plan.assert_ok();
    let statuses = plan
        .stdout()
        .lines()
        .find(|l| l.trim_start().starts_with("statuses"))
        .unwrap()
        .to_string();
    assert!(statuses.trim().ends_with(" 4"), "{statuses}");
}

#[test]
fn rejects_list_counts_what_was_kept_aside_by_table_field_and_reason() {
    let tenant = small_tenant(5);
    let ws = Workspace::new();
    backfill(&tenant, &ws, &fixtures(), "2026-09-01", "2026-09-30", &[]).assert_ok();
    let kept = rejects(&ws.out());
    let bad_zone: Vec<_> = kept
        .iter()
        .filter(|r| r["user_id"] == "fx_badzone")
        .collect();
    assert!(
        !bad_zone.is_empty(),
        "the fixture with an unknown zone is kept aside"
    );
    let out = ws.out().display().to_string();
    let listed = run_bin(&["rejects", "list", "--out", &out], &[]);
    listed.assert_ok();
    let text = listed.stdout();
    assert!(
        text.starts_with(&format!("{} record", kept.len())) && text.contains(" kept aside in "),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("\"Asia/Beijing\""))
        .unwrap_or_else(|| panic!("no Asia/Beijing group in:\n{text}"));
    assert!(
        line.contains("time_zone") && line.contains("unknown time zone"),
        "{line}"
    );
    assert!(
        line.contains(&format!("\"Asia/Beijing\" ×{}", bad_zone.len())),
        "{line}"
    );
    // Dates outside every reject: nothing.
    let none = run_bin(
        &["rejects", "list", "--out", &out, "--from", "2027-01-01"],
        &[],
    );
    none.assert_ok();
    assert!(
        none.stdout().starts_with("0 records kept aside"),
        "{}",
        none.stdout()
    );
}
