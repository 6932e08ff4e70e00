//! Recorded answers replayed offline.

use std::path::Path;

use crate::util::*;

/// Every line of the rejects files as written, without the run id, sorted.
fn reject_lines(root: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(root.join("_rejects"))
        .unwrap()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path().join("rejects.ndjson")).unwrap();
            text.lines()
                .map(|l| {
                    let (head, rest) = l.split_once(',').unwrap();
                    assert!(head.starts_with(r#"{"run_id":"#), "{l}");
                    rest.to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_recorded_run_replays_offline_to_the_same_tables() {
    let tenant = small_tenant(60);
    let ws = Workspace::new();
    let mut users = tenant.sim().user_ids("employee_id").unwrap();
    users.push("nobody_here".into()); // a refused id: its 1220004 and the split replay too
    let corpus = ws.dir.path().join("corpus");
    let run = backfill(
        &tenant,
        &ws,
        &users,
        "2026-08-01",
        "2026-10-15",
        &[
            "--statuses",
            "2,3",
            "--record-responses",
            corpus.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code(), 3, "{}", run.stderr());
    let calls = tenant.sim().stats().query_calls;

    let replayed = ws.dir.path().join("replayed");
    let replay = run_bin(
        &[
            "replay",
            corpus.to_str().unwrap(),
            "--out",
            replayed.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        replay.code(),
        3,
        "the same refused user: {}",
        replay.stderr()
    );
    assert!(replay.stdout().contains("nobody_here"));
    assert_eq!(
        tenant.sim().stats().query_calls,
        calls,
        "the replay went to the network"
    );
    assert_eq!(all_content(&replayed), all_content(&ws.out()));
    // Rejects keep the records' bytes as sent, also those of sub-batches the replay answered
    // from several recorded answers.
    let (a, b) = (reject_lines(&replayed), reject_lines(&ws.out()));
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn an_answer_of_the_wrong_shape_fails_its_window_and_says_so() {
    let tenant = small_tenant(5);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let corpus = ws.dir.path().join("corpus");
    let args = ["--record-responses", corpus.to_str().unwrap()];
    backfill(&tenant, &ws, &users, "2026-09-14", "2026-09-17", &args).assert_ok();
    // Every recorded answer becomes valid JSON of the wrong shape; the index follows the lines.
    let (mut lines, mut index) = (String::new(), String::new());
    let text = std::fs::read_to_string(corpus.join("responses.ndjson")).unwrap();
    for line in text.lines() {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        value["response"] = serde_json::json!({"user_approvals": {"not": "a list"}});
        let line = format!("{value}\n");
        let key = value["key"].as_str().unwrap();
        index.push_str(&format!("{key}\t{}\t{}\n", lines.len(), line.len()));
        lines.push_str(&line);
    }
    std::fs::write(corpus.join("responses.ndjson"), lines).unwrap();
    std::fs::write(corpus.join("responses.index"), index).unwrap();
    let replayed = ws.dir.path().join("replayed");
    let args = [
        "replay",
        corpus.to_str().unwrap(),
        "--out",
        replayed.to_str().unwrap(),
    ];
    let replay = run_bin(&args, &[]);
    assert_eq!(replay.code(), 3, "{}", replay.stderr());
    let out = replay.stdout();
    let failed = out.lines().skip_while(|l| !l.contains("FAILED")).nth(1);
    let failed = failed.unwrap_or_default();
    for needle in [
        "user_approvals/query",
        "could not be flattened",
        "user_approvals list",
        "2026-09-14..2026-09-17",
    ] {
        assert!(
            failed.contains(needle),
            "{needle:?} not in {failed:?}\n{out}"
        );
    }
    assert!(!failed.contains("malformed body"), "{failed}");
    assert!(
        all_content(&replayed).iter().all(Vec::is_empty),
        "nothing was written for the failed window"
    );
}
