//! Zone names the tenant sends: fixed offsets and Windows IDs read as the zones they mean, names
//! in no table kept aside, `--zone-alias` (flag and job file), and `rejects replay` moving the
//! records an alias now reads from `_rejects/` into the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use attendance_core::table::Table;
use attendance_core::tz;

use crate::util::*;

fn micros(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let a = b
        .column_by_name(col)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    a.is_valid(row).then(|| a.value(row))
}

fn offset(b: &RecordBatch, row: usize) -> i32 {
    let a = b
        .column_by_name("utc_offset_seconds")
        .unwrap()
        .as_primitive::<Int32Type>();
    a.value(row)
}

/// The instant of a wall time read in `zone` (any name the tool reads, aliases aside).
fn instant(local: &str, zone: &str) -> i64 {
    let zone = tz::zone(Some(zone)).unwrap();
    tz::to_utc(tz::parse_wall_time(local).unwrap(), zone)
        .0
        .timestamp_micros()
}

/// Every row as (table, batch, row), for checks across all four tables.
fn every_row(data: &[(Table, TableData)]) -> Vec<(Table, &RecordBatch, usize)> {
    data.iter()
        .flat_map(|(t, d)| {
            d.batches
                .iter()
                .flat_map(move |(_, b)| (0..b.num_rows()).map(move |i| (*t, b, i)))
        })
        .collect()
}

fn read_all(out: &Path) -> Vec<(Table, TableData)> {
    Table::ALL
        .into_iter()
        .map(|t| (t, TableData::read(out, t)))
        .collect()
}

/// The root's tables and rejects, without the run manifests and the lease.
fn tables_and_rejects(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = tree(out, "_rejects");
    for table in Table::ALL {
        files.extend(tree(out, table.name()));
    }
    files
}

fn replay(out: &Path, extra: &[&str]) -> Run {
    let out = out.display().to_string();
    let mut args = vec!["rejects", "replay", "--out", out.as_str()];
    args.extend_from_slice(extra);
    run_bin(&args, &[])
}

#[test]
fn zone_spellings_read_right_and_an_alias_replayed_moves_exactly_its_records_into_the_tables() {
    // Enough user-days for every spelling and for names in no table besides Asia/Beijing.
    let tenant = small_tenant(80);
    let ws = Workspace::new();
    let mut users = tenant.sim().user_ids("employee_id").unwrap();
    users.sort();
    let run = backfill(&tenant, &ws, &users, "2026-01-01", "2026-10-31", &[]);
    run.assert_ok();
    let out = ws.out();

    // 1. Each user's usual zone is the IANA name most of their rows carry; a row sent under
    //    another spelling has the instants and offset of that zone.
    let data = read_all(&out);
    let mut usual: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (_, b, i) in every_row(&data) {
        let zone = text(b, "time_zone", i).unwrap();
        if zone.parse::<chrono_tz::Tz>().is_ok() {
            let user = text(b, "user_id", i).unwrap();
            *usual.entry(user).or_default().entry(zone).or_default() += 1;
        }
    }
    let usual_zone = |user: &str| -> String {
        let counts = &usual[user];
        let most = counts.values().max().unwrap();
        counts.iter().find(|(_, n)| *n == most).unwrap().0.clone()
    };
    let (mut fixed, mut windows, mut windows_lower) = (0, 0, 0);
    for (table, b, i) in every_row(&data) {
        let sent = text(b, "time_zone", i).unwrap();
        let iana = text(b, "time_zone_iana", i);
        let Some(local) = text(b, "start_time_local", i) else {
            continue;
        };
        let start = micros(b, "start_time", i).unwrap();
        if sent.parse::<chrono_tz::Tz>().is_ok() {
            assert_eq!(iana.as_deref(), Some(sent.as_str()), "{table:?} {sent}");
            continue;
        }
        let user = text(b, "user_id", i).unwrap();
        let zone = usual_zone(&user);
        assert_eq!(
            start,
            instant(&local, &zone),
            "{user} {sent} {local} read as {zone}"
        );
        let utc = chrono::DateTime::from_timestamp_micros(start).unwrap();
        let expected_offset = tz::zone(Some(&zone)).unwrap().offset_at(utc);
        assert_eq!(offset(b, i), expected_offset, "{user} {sent} {local}");
        match iana {
            None => fixed += 1,
            Some(iana) => {
                assert_eq!(iana, zone, "{user}: {sent} is a Windows ID for {zone}");
                windows += 1;
                windows_lower += usize::from(sent == sent.to_lowercase());
            }
        }
    }
    assert!(
        fixed > 0 && windows > windows_lower && windows_lower > 0,
        "fixed offsets {fixed}, Windows IDs {windows} ({windows_lower} in lower case)"
    );
    assert!(
        run.stdout().contains(&format!(
            "{fixed} rows at a fixed offset, {windows} through a Windows zone ID"
        )),
        "{}",
        run.stdout()
    );

    // 2. What no rule reads is kept aside: Asia/Beijing (the fixture's and Shanghai users') and
    //    the other names in no table.
    let kept = rejects(&out);
    let is_beijing =
        |r: &serde_json::Value| r["field"] == "time_zone" && r["value"] == "Asia/Beijing";
    let beijing: Vec<&serde_json::Value> = kept.iter().filter(|r| is_beijing(r)).collect();
    let others: BTreeSet<String> = kept
        .iter()
        .filter(|r| !is_beijing(r))
        .map(|r| r.to_string())
        .collect();
    assert!(!beijing.is_empty() && !others.is_empty(), "{kept:?}");
    assert!(beijing.iter().all(|r| r["time_zone"] == "Asia/Beijing"));
    let rows_before: Vec<usize> = data.iter().map(|(_, d)| d.rows()).collect();
    let rejects_before = tree(&out, "_rejects");

    // 3. Replayed with the alias: exactly the Asia/Beijing records become rows, read in Shanghai.
    let replayed = replay(&out, &["--zone-alias", "Asia/Beijing=Asia/Shanghai"]);
    replayed.assert_ok();
    assert!(
        replayed.stdout().contains(&format!(
            "read as Asia/Shanghai by alias: {}",
            beijing.len()
        )),
        "{}",
        replayed.stdout()
    );
    let left: BTreeSet<String> = rejects(&out).iter().map(|r| r.to_string()).collect();
    assert_eq!(
        left, others,
        "the others stay as they were, reasons and all"
    );
    let after = read_all(&out);
    for ((table, data), before) in after.iter().zip(&rows_before) {
        let moved = beijing
            .iter()
            .filter(|r| r["table"] == table.name())
            .count();
        assert_eq!(data.rows(), before + moved, "{table:?}");
    }
    for r in &beijing {
        let table = Table::ALL
            .into_iter()
            .find(|t| r["table"] == t.name())
            .unwrap();
        let id = r["approval_id"].as_str().unwrap();
        let data = &after.iter().find(|(t, _)| *t == table).unwrap().1;
        let found = data.find(id);
        let date =
            chrono::NaiveDate::parse_from_str(r["date"].as_str().unwrap(), "%Y%m%d").unwrap();
        // A leave is listed under each of its dates: the row of the reject's date.
        let (_, b, i) = found
            .iter()
            .find(|(d, b, i)| {
                *d == date && text(b, "user_id", *i).as_deref() == r["user_id"].as_str()
            })
            .unwrap_or_else(|| panic!("{id} of {} is not a row", r["user_id"]));
        assert_eq!(text(b, "time_zone", *i).as_deref(), Some("Asia/Beijing"));
        assert_eq!(
            text(b, "time_zone_iana", *i).as_deref(),
            Some("Asia/Shanghai")
        );
        if let Some(local) = r["raw"]["start_time"].as_str().filter(|s| !s.is_empty()) {
            assert_eq!(
                micros(b, "start_time", *i),
                Some(instant(local, "Asia/Shanghai")),
                "{id}"
            );
            assert_eq!(offset(b, *i), 8 * 3600, "{id}");
        }
    }
    let manifests = tree(&out, "_runs");
    let manifest = manifests
        .iter()
        .find(|(_, bytes)| String::from_utf8_lossy(bytes).contains("\"rejects_files_rewritten\""))
        .map(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(bytes).unwrap())
        .expect("the replay's manifest");
    assert_eq!(manifest["zone_aliases"]["Asia/Beijing"], "Asia/Shanghai");
    assert_eq!(manifest["rows_by_alias"]["Asia/Shanghai"], beijing.len());

    // 4. A second replay changes nothing, byte for byte.
    let settled = tables_and_rejects(&out);
    replay(&out, &["--zone-alias", "Asia/Beijing=Asia/Shanghai"]).assert_ok();
    assert_eq!(
        tables_and_rejects(&out),
        settled,
        "a second replay changes nothing"
    );

    // 5. A replay killed after the tables were written, before its rejects files: the records
    //    are still in _rejects/, and the rerun gives the same tables.
    let content = all_content(&out);
    for (rel, bytes) in &rejects_before {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    replay(&out, &["--zone-alias", "Asia/Beijing=Asia/Shanghai"]).assert_ok();
    assert_eq!(
        all_content(&out),
        content,
        "the rerun adds the records in place of themselves"
    );
    let left: BTreeSet<String> = rejects(&out).iter().map(|r| r.to_string()).collect();
    assert_eq!(left, others);

    // 6. The pull with the alias writes the same rows: the replay read them as a backfill would.
    let again = backfill(
        &tenant,
        &ws,
        &users,
        "2026-01-01",
        "2026-10-31",
        &["--zone-alias", "Asia/Beijing=Asia/Shanghai"],
    );
    again.assert_ok();
    assert!(
        again.stdout().contains(&format!(
            "read as Asia/Shanghai by alias: {}",
            beijing.len()
        )),
        "{}",
        again.stdout()
    );
    assert_eq!(all_content(&out), content);
    let left: BTreeSet<String> = rejects(&out)
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("run_id");
            r.to_string()
        })
        .collect();
    let others: BTreeSet<String> = others
        .iter()
        .map(|r| {
            let mut r: serde_json::Value = serde_json::from_str(r).unwrap();
            r.as_object_mut().unwrap().remove("run_id");
            r.to_string()
        })
        .collect();
    assert_eq!(left, others);
}

#[test]
fn zone_aliases_are_checked_at_start_up_and_read_from_a_job_file() {
    let tenant = small_tenant(0);
    let ws = Workspace::new();
    // A target that is no IANA name or fixed offset is a usage error naming it.
    let bad = backfill(
        &tenant,
        &ws,
        &fixtures(),
        "2026-09-01",
        "2026-09-30",
        &["--zone-alias", "Asia/Beijing=Asia/Peking"],
    );
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("Asia/Peking"), "{}", bad.stderr());
    let bad = replay(&ws.out(), &["--zone-alias", "Asia/Beijing"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("FROM=TO"), "{}", bad.stderr());
    let bad = replay(&ws.out(), &["--zone-alias", "=Asia/Shanghai"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(
        bad.stderr()
            .contains("the name to read (before '=') is empty"),
        "{}",
        bad.stderr()
    );

    // zone_aliases in a job file, read like the flag and recorded in the manifest.
    let job = ws.dir.path().join("job.toml");
    std::fs::write(
        &job,
        "zone_aliases = { \"Asia/Beijing\" = \"Asia/Shanghai\", \"Mars/Olympus\" = \"UTC+05:30\" }\n",
    )
    .unwrap();
    let run = backfill(
        &tenant,
        &ws,
        &fixtures(),
        "2026-09-01",
        "2026-09-30",
        &["--config", job.to_str().unwrap()],
    );
    run.assert_ok();
    assert!(
        rejects(&ws.out())
            .iter()
            .all(|r| r["value"] != "Asia/Beijing"),
        "the fixture's records are rows"
    );
    let badzone = TableData::read(&ws.out(), Table::Leaves);
    let rows = badzone
        .batches
        .iter()
        .flat_map(|(_, b)| (0..b.num_rows()).map(move |i| (b, i)))
        .filter(|(b, i)| text(b, "user_id", *i).as_deref() == Some("fx_badzone"))
        .count();
    assert!(rows > 0, "fx_badzone's leave is a row");
    let manifests = tree(&ws.out(), "_runs");
    let (_, manifest) = manifests.iter().next_back().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    assert_eq!(
        manifest["zones"]["aliases"]["Asia/Beijing"],
        "Asia/Shanghai"
    );
    assert_eq!(manifest["zones"]["aliases"]["Mars/Olympus"], "UTC+05:30");
    assert!(
        manifest["zones"]["rows_by_alias"]["Asia/Shanghai"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn upgrade_brings_a_v1_partition_to_v2_with_the_same_rows() {
    let tenant = small_tenant(0);
    let ws = Workspace::new();
    backfill(&tenant, &ws, &fixtures(), "2026-09-01", "2026-09-30", &[]).assert_ok();
    let out = ws.out();
    let content = all_content(&out);
    // One leaves partition as schema v1 wrote it: without the two zone columns.
    let (date, batch) = TableData::read(&out, Table::Leaves).batches.remove(0);
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            let name = batch.schema().field(i).name().clone();
            name != "time_zone_iana" && name != "utc_offset_seconds"
        })
        .collect();
    let v1 = batch.project(&keep).unwrap();
    let writer = attendance_lake::writer::ParquetWriter::new(
        "leaves",
        v1.schema(),
        |c| Table::Leaves.values_of(c),
        Some(attendance_core::plan::EmployeeType::EmployeeId),
    );
    let file = out.join(format!("leaves/date={date}/part-00000.parquet"));
    std::fs::write(&file, writer.encode(&v1).unwrap()).unwrap();
    let on_disk = || {
        let bytes = std::fs::read(&file).unwrap();
        attendance_lake::writer::schema_in(bytes).unwrap()
    };
    assert_ne!(on_disk().fields(), Table::Leaves.schema().fields());

    let out_arg = out.display().to_string();
    let run = run_bin(&["upgrade", "--out", &out_arg], &[]);
    run.assert_ok();
    assert!(
        run.stdout()
            .contains("1 partition files rewritten in schema v2 (leaves 1)"),
        "{}",
        run.stdout()
    );
    assert_eq!(on_disk().fields(), Table::Leaves.schema().fields());
    assert_eq!(
        all_content(&out),
        content,
        "the same rows, offsets read from v1's zones"
    );
    let again = run_bin(&["upgrade", "--out", &out_arg], &[]);
    again.assert_ok();
    assert!(
        again.stdout().contains(": 0 partition files rewritten"),
        "{}",
        again.stdout()
    );
}
