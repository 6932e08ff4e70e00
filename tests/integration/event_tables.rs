//! `events compact`'s approval tables against the simulated tenant: 120 days of approvals and
//! revocations landed as events (reverts before their approvals, too), the tables equal to what
//! the tenant sent and to the pull's instants, a compaction killed at random points converging
//! on the same files, and `sync` bringing the pull tables back to the tenant's answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use attendance_core::table::Table;
use chrono::Days;

use crate::util::*;

/// Every row of an event table, with the partition date of its file.
fn rows_of(root: &Path, table: &str) -> Vec<(String, RecordBatch)> {
    tree(root, table)
        .into_iter()
        .filter(|(path, _)| path.ends_with(".parquet"))
        .flat_map(|(path, bytes)| {
            let date = path.split("date=").nth(1).unwrap()[..10].to_string();
            let (batches, _) = attendance_lake::writer::decode(bytes).unwrap();
            batches.into_iter().map(move |b| (date.clone(), b))
        })
        .collect()
}

/// One row's columns by name, as text (instants as µs).
fn row_map(b: &RecordBatch, i: usize) -> BTreeMap<String, Option<String>> {
    b.schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| {
            let col = b.column(c);
            let value = if col.is_null(i) {
                None
            } else if let Some(t) = col.as_primitive_opt::<TimestampMicrosecondType>() {
                Some(t.value(i).to_string())
            } else if let Some(s) = col.as_string_opt::<i32>() {
                Some(s.value(i).to_string())
            } else {
                Some(format!("{:?}", col.slice(i, 1)))
            };
            (f.name().clone(), value)
        })
        .collect()
}

fn table_rows(root: &Path, table: &str) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let mut rows = BTreeMap::new();
    for (date, b) in rows_of(root, table) {
        for i in 0..b.num_rows() {
            let mut row = row_map(&b, i);
            row.insert("date".into(), Some(date.clone()));
            let code = row["instance_code"].clone().unwrap();
            assert!(
                rows.insert(code.clone(), row).is_none(),
                "{table}: {code} twice"
            );
        }
    }
    rows
}

/// A pulled approval's start and end in µs, and the IANA zone they were read in (none for a
/// fixed offset, which the events, read in the user's named zone, do not show).
type Pulled = (i64, i64, Option<String>);

/// The pull table's [`Pulled`] of each approval id.
fn pulled_instants(root: &Path, table: Table) -> BTreeMap<String, Pulled> {
    let mut found = BTreeMap::new();
    for (_, b) in TableData::read(root, table).batches {
        let start = b
            .column_by_name("start_time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let end = b
            .column_by_name("end_time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            if let Some(id) = text(&b, "approval_id", i) {
                found.insert(
                    id,
                    (start.value(i), end.value(i), text(&b, "time_zone_iana", i)),
                );
            }
        }
    }
    found
}

fn compact_args(out: &Path) -> Vec<String> {
    ["events", "compact", "--lease-ttl", "3", "--out"]
        .into_iter()
        .map(String::from)
        .chain([out.to_str().unwrap().to_string()])
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from, "") {
        let target = to.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

#[test]
fn a_120_day_span_of_events_compacts_into_tables_equal_to_the_tenant_and_the_pull() {
    let tenant = small_tenant(40);
    let ws = Workspace::new();
    let out = ws.out();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    let users_file = ws.users_file(&users);
    let from = today() - Days::new(120);
    backfill(
        &tenant,
        &ws,
        &users,
        &from.to_string(),
        &today().to_string(),
        &["--quiet"],
    )
    .assert_ok();

    // Every approval of the span as events, a seventh of them revoked since, landed newest
    // first so that each revert lands before its approval.
    let sim = tenant.sim();
    let mut events = sim.approval_events(from, today());
    let mut kinds: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        let table = match e.event_type.as_str() {
            "out_approval" => "out_events",
            "leave_approval" | "leave_approvalV2" => "leave_events",
            "work_approval" => "overtime_events",
            _ => continue,
        };
        kinds
            .entry(table)
            .or_default()
            .insert(e.instance_code.clone());
    }
    assert_eq!(
        kinds.len(),
        3,
        "the span has every kind: {:?}",
        kinds.keys()
    );
    let revoked: BTreeSet<String> = kinds
        .values()
        .flatten()
        .step_by(7)
        .filter(|code| {
            !events
                .iter()
                .any(|e| e.instance_code == **code && e.event_type.ends_with("_revert"))
        })
        .cloned()
        .collect();
    for code in &revoked {
        events.push(sim.revoke(code).expect("a revert"));
    }
    events.reverse();
    // Reverted: those revoked here and those the tenant had revoked already.
    let reverted: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event_type.ends_with("_revert"))
        .map(|e| e.instance_code.clone())
        .collect();
    let landing = attendance_events::Landing::new(
        attendance_lake::store::Store::Local(out.clone()),
        "test-receiver",
    );
    for e in &events {
        tenant
            .rt
            .block_on(landing.land(e.body.clone(), attendance_events::Transport::Webhook))
            .unwrap();
    }
    // A copy of the landed events and the pull's zone map, to compact again while being killed.
    let killed = ws.dir.path().join("killed");
    copy_dir(&out.join("_events"), &killed.join("_events"));

    let args = compact_args(&out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_in(&args, &[]);
    run.assert_ok();
    assert!(
        run.stdout()
            .contains(&format!("({} reverted)", reverted.len())),
        "{} reverted expected ({} revoked here): {}",
        reverted.len(),
        revoked.len(),
        run.stdout()
    );

    // Every approval is one row of its table; every revoked one has its reverted_at.
    let pulled: BTreeMap<&str, BTreeMap<String, Pulled>> = [
        ("out_events", pulled_instants(&out, Table::Outs)),
        ("leave_events", pulled_instants(&out, Table::Leaves)),
        (
            "overtime_events",
            pulled_instants(&out, Table::OvertimeWorks),
        ),
    ]
    .into_iter()
    .collect();
    let mut zones_checked = BTreeSet::new();
    for (table, codes) in &kinds {
        let rows = table_rows(&out, table);
        assert_eq!(
            rows.keys().cloned().collect::<BTreeSet<_>>(),
            *codes,
            "{table}: one row per approval"
        );
        for (code, row) in &rows {
            assert_eq!(
                row["reverted_at"].is_some(),
                reverted.contains(code),
                "{table} {code}: reverted_at"
            );
            if *table == "leave_events" {
                assert!(
                    row["v1_event_id"].is_some() && row["v2_event_id"].is_some(),
                    "{code}: both leave events merged: {row:?}"
                );
            }
            // The pull read the same approval in the user's zone of that date: same instants.
            if let Some((start, end, zone)) = pulled[table].get(code) {
                assert_eq!(row["time_zone_source"].as_deref(), Some("user"), "{code}");
                if let Some(zone) = zone {
                    assert_eq!(row["time_zone"].as_deref(), Some(zone.as_str()), "{code}");
                }
                assert_eq!(row["start_time"], Some(start.to_string()), "{table} {code}");
                assert_eq!(row["end_time"], Some(end.to_string()), "{table} {code}");
                zones_checked.insert(zone.clone());
            }
        }
    }
    assert!(
        zones_checked.len() >= 3,
        "users in several zones compared: {zones_checked:?}"
    );

    // The same compaction killed at random points, then run to the end, gives the same files.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let killed_args = compact_args(&killed);
    for round in 0..3u64 {
        let delay = (seed.wrapping_mul(round + 7) >> 3) % 400 + 20;
        let mut child = Command::new(BIN)
            .args(&killed_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        // A compactor killed holding the lease leaves it to expire (--lease-ttl 3).
        std::thread::sleep(Duration::from_millis(3_100));
    }
    let killed_args: Vec<&str> = killed_args.iter().map(String::as_str).collect();
    run_in(&killed_args, &[]).assert_ok();
    for dir in [
        "approval_events",
        "out_events",
        "leave_events",
        "overtime_events",
    ] {
        let (a, b) = (tree(&out, dir), tree(&killed, dir));
        assert!(!a.is_empty(), "{dir}");
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{dir}: same files (seed {seed})"
        );
        assert!(a == b, "{dir}: same bytes (seed {seed})");
    }

    // The nightly sync follows the reverts back, 90 days and more outside its window: the pull
    // tables equal a fresh backfill of the tenant's answers now.
    let url = tenant.url();
    run_in(
        &[
            "sync",
            "--out",
            out.to_str().unwrap(),
            "--users-file",
            users_file.to_str().unwrap(),
            "--base-url",
            &url,
            "--days",
            "31",
            "--quiet",
        ],
        &creds(),
    )
    .assert_ok();
    let fresh = ws.dir.path().join("fresh");
    let fresh_args = backfill_args(
        &tenant,
        &users_file,
        &fresh,
        &from.to_string(),
        &(today() + Days::new(1)).to_string(),
        &["--quiet"],
    );
    let fresh_args: Vec<&str> = fresh_args.iter().map(String::as_str).collect();
    run_in(&fresh_args, &creds()).assert_ok();
    for table in [Table::Outs, Table::Leaves, Table::OvertimeWorks] {
        let synced = TableData::read(&out, table);
        for code in revoked.iter() {
            assert!(synced.find(code).is_empty(), "{code} left {table:?}");
        }
        assert_eq!(
            synced.content(),
            TableData::read(&fresh, table).content(),
            "{table:?} after sync equals the tenant's answers"
        );
    }
}
