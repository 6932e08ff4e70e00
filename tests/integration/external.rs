//! `external push|check|pull|load` through the binary: exit codes, printed summaries, secrets
//! kept out of the output, and a source and tables on object storage.

use serde_json::{Value, json};

use crate::storage::S3Server;
use crate::util::*;

const ANCHOR_MS: i64 = 1_793_491_200_000;

fn unlimited_tenant() -> Tenant {
    Tenant::start(attendance_sim::SimConfig {
        users: 5,
        rate_limit_per_sec: 0,
        ..attendance_sim::SimConfig::default()
    })
}

fn write_lines(path: &std::path::Path, docs: &[Value]) -> String {
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

#[test]
fn external_commands_exit_by_what_they_found() {
    let tenant = unlimited_tenant();
    let ws = Workspace::new();
    let out = ws.out().display().to_string();
    let codes = tenant.sim().external_approval_codes();
    let docs = attendance_sim::external_documents(3, 50, &codes, ANCHOR_MS);
    let valid = write_lines(&ws.dir.path().join("valid.ndjson"), &docs);
    let mut bad = docs[0].clone();
    bad["instance_id"] = json!("bad-status");
    bad["status"] = json!("FINISHED");
    let mut mixed_docs = docs.clone();
    mixed_docs.push(bad);
    let mixed = write_lines(&ws.dir.path().join("mixed.ndjson"), &mixed_docs);
    let url = tenant.url();
    let platform = |command: &str, source: &str| {
        run_bin(
            &[
                "external",
                command,
                "--instances",
                source,
                "--out",
                &out,
                "--base-url",
                &url,
                "--rate-limit",
                "500",
            ],
            &creds(),
        )
    };

    let pushed = platform("push", &mixed);
    assert_eq!(
        pushed.code(),
        3,
        "one instance rejected: {}",
        pushed.stderr()
    );
    let text = pushed.stdout();
    assert!(
        text.contains("51 documents, 50 valid, 1 rejected"),
        "{text}"
    );
    assert!(
        text.contains("status: \"FINISHED\" is not one of"),
        "{text}"
    );
    assert!(text.contains("50 sent"), "{text}");
    assert_eq!(tenant.sim().external_instances().len(), 50);

    platform("check", &valid).assert_ok();
    let lost = docs[7]["instance_id"].as_str().unwrap();
    tenant.sim().external_lose(&[lost], &[]);
    let checked = platform("check", &valid);
    assert_eq!(checked.code(), 3, "a difference makes a CronJob alert");
    assert!(
        checked
            .stdout()
            .contains(&format!("missing_instance {lost}")),
        "{}",
        checked.stdout()
    );

    let codes_arg = codes.join(",");
    let pulled = run_bin(
        &[
            "external",
            "pull",
            "--approval-codes",
            &codes_arg,
            "--out",
            &out,
            "--base-url",
            &url,
        ],
        &creds(),
    );
    pulled.assert_ok();
    assert!(
        pulled.stdout().contains("49 instances"),
        "{}",
        pulled.stdout()
    );

    // Loading needs no credentials.
    let loaded = run_bin(
        &["external", "load", "--instances", &valid, "--out", &out],
        &[],
    );
    loaded.assert_ok();
    assert!(
        loaded.stdout().contains("50 external_instances"),
        "{}",
        loaded.stdout()
    );
    let partial = run_bin(
        &["external", "load", "--instances", &mixed, "--out", &out],
        &[],
    );
    assert_eq!(partial.code(), 3);
    let rejects = std::fs::read_dir(ws.out().join("_rejects/external"))
        .unwrap()
        .count();
    assert_eq!(rejects, 1, "one date directory of rejects files");

    let missing = run_bin(
        &[
            "external",
            "load",
            "--instances",
            "/nonexistent/x.ndjson",
            "--out",
            &out,
        ],
        &[],
    );
    assert_eq!(missing.code(), 2);
    assert!(
        missing
            .stderr()
            .contains("--instances /nonexistent/x.ndjson: not found"),
        "{}",
        missing.stderr()
    );

    let secret = "a-wrong-secret-that-must-not-show";
    let refused = run_bin(
        &[
            "external",
            "push",
            "--instances",
            &valid,
            "--out",
            &out,
            "--base-url",
            &url,
        ],
        &[
            ("FEISHU_APP_ID", "cli_sim_app"),
            ("FEISHU_APP_SECRET", secret),
        ],
    );
    assert_eq!(
        refused.code(),
        2,
        "refused credentials: {}",
        refused.stderr()
    );
    assert!(!refused.stderr().contains(secret) && !refused.stdout().contains(secret));
}

#[test]
fn an_instance_file_and_the_tables_live_on_object_storage() {
    let s3 = S3Server::start(&["lake"]);
    let source_store = s3.store("s3://lake/exports");
    let codes = attendance_sim::external_approval_codes(42, 3);
    let docs = attendance_sim::external_documents(5, 40, &codes, ANCHOR_MS);
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    s3.rt
        .block_on(source_store.put("hr.ndjson", text.into_bytes()))
        .unwrap();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let loaded = run_bin(
        &[
            "external",
            "load",
            "--instances",
            "s3://lake/exports/hr.ndjson",
            "--out",
            "s3://lake/warehouse",
        ],
        &env,
    );
    loaded.assert_ok();
    let files = s3.list("s3://lake/warehouse");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("external_instances/date=")),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.starts_with("_runs/")), "{files:?}");
}
