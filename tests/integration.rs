//! End-to-end tests: the real binary against the simulated tenant over loopback, Parquet read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use attendance_sync::plan::EmployeeType;
use attendance_sync::sim::{Faults, SimConfig, SimTenant};
use attendance_sync::sink::read_local_table;
use attendance_sync::table::Table;
use chrono::{DateTime, Days, NaiveDate, Utc};

const BIN: &str = env!("CARGO_BIN_EXE_attendance-sync");
const FIXTURE_USERS: [&str; 7] = [
    "fx_shanghai",
    "fx_newyork",
    "fx_london",
    "fx_lordhowe",
    "fx_kolkata",
    "fx_nozone",
    "fx_badzone",
];

/// A simulated tenant served from its own runtime for the length of a test.
struct Tenant {
    rt: tokio::runtime::Runtime,
    sim: Option<SimTenant>,
}

impl Tenant {
    fn start(config: SimConfig) -> Tenant {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(SimTenant::start(config)).unwrap();
        Tenant { rt, sim: Some(sim) }
    }

    fn sim(&self) -> &SimTenant {
        self.sim.as_ref().unwrap()
    }

    fn url(&self) -> String {
        self.sim().base_url()
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

fn small_tenant(users: usize) -> Tenant {
    Tenant::start(SimConfig {
        users,
        ..SimConfig::default()
    })
}

/// A working directory with a users file and an output root.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("warehouse")
    }

    fn users_file(&self, ids: &[String]) -> PathBuf {
        let path = self.dir.path().join("users.txt");
        let mut text = String::from("# users under test\n\n");
        for id in ids {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

struct Run {
    output: Output,
}

impl Run {
    fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("FEISHU_APP_ID")
        .env_remove("FEISHU_APP_SECRET")
        .env_remove("FEISHU_BASE_URL")
        .env("ATTENDANCE_SYNC_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run {
        output: cmd.output().unwrap(),
    }
}

fn creds() -> Vec<(&'static str, &'static str)> {
    let c = SimConfig::default();
    vec![
        ("FEISHU_APP_ID", Box::leak(c.app_id.into_boxed_str())),
        (
            "FEISHU_APP_SECRET",
            Box::leak(c.app_secret.into_boxed_str()),
        ),
    ]
}

fn backfill(
    tenant: &Tenant,
    ws: &Workspace,
    users: &[String],
    from: &str,
    to: &str,
    extra: &[&str],
) -> Run {
    let args = backfill_args(tenant, &ws.users_file(users), &ws.out(), from, to, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bin(&args, &creds())
}

/// The command line of a backfill of `users_file` from the tenant into `out`.
fn backfill_args(
    tenant: &Tenant,
    users_file: &Path,
    out: &Path,
    from: &str,
    to: &str,
    extra: &[&str],
) -> Vec<String> {
    let url = tenant.url();
    let mut args: Vec<String> = [
        "backfill",
        "--from",
        from,
        "--to",
        to,
        "--out",
        out.to_str().unwrap(),
        "--users-file",
        users_file.to_str().unwrap(),
        "--base-url",
        &url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn fixtures() -> Vec<String> {
    FIXTURE_USERS.iter().map(|s| s.to_string()).collect()
}

fn micros(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
        .timestamp_micros()
}

/// The platform's today: Feishu's clock is China time, and so is the simulated tenant's.
fn today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
}

/// Every row of a table as (date, approval_id) → batch row, for lookups.
struct TableData {
    batches: Vec<(NaiveDate, RecordBatch)>,
}

impl TableData {
    fn read(root: &Path, table: Table) -> TableData {
        TableData {
            batches: read_local_table(root, table).unwrap(),
        }
    }

    fn rows(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.num_rows()).sum()
    }

    /// (date, batch, row) of every row whose approval_id is `id`.
    fn find(&self, id: &str) -> Vec<(NaiveDate, &RecordBatch, usize)> {
        let mut found = Vec::new();
        for (date, b) in &self.batches {
            let ids = b.column_by_name("approval_id").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                if ids.is_valid(i) && ids.value(i) == id {
                    found.push((*date, b, i));
                }
            }
        }
        found
    }

    /// Rows without the run's own columns, per date, for comparing two runs.
    fn content(&self) -> Vec<(NaiveDate, RecordBatch)> {
        self.batches
            .iter()
            .map(|(d, b)| {
                let keep: Vec<usize> = b
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| !f.name().starts_with('_'))
                    .map(|(i, _)| i)
                    .collect();
                (*d, b.project(&keep).unwrap())
            })
            .collect()
    }
}

fn ts(b: &RecordBatch, col: &str, row: usize) -> Option<i64> {
    let a = b
        .column_by_name(col)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    a.is_valid(row).then(|| a.value(row))
}

fn text(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let a = b.column_by_name(col).unwrap().as_string::<i32>();
    a.is_valid(row).then(|| a.value(row).to_string())
}

/// Every reject under `<root>/_rejects/date=*/rejects.ndjson`.
fn rejects(root: &Path) -> Vec<serde_json::Value> {
    let dir = root.join("_rejects");
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let file = e.unwrap().path().join("rejects.ndjson");
            for line in std::fs::read_to_string(file).unwrap().lines() {
                all.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    all
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
fn output_files_follow_the_layout_and_format_contract() {
    let tenant = small_tenant(0);
    let ws = Workspace::new();
    backfill(&tenant, &ws, &fixtures(), "2026-09-01", "2026-09-30", &[]).assert_ok();
    let dir = ws.out().join("trips").join("date=2026-09-15");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        ["part-00000.parquet"],
        "no temporary files left behind"
    );

    let file = std::fs::File::open(dir.join("part-00000.parquet")).unwrap();
    use parquet::basic::{Compression, LogicalType, TimeUnit};
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
    let meta = reader.metadata();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    let version = kv
        .iter()
        .find(|k| k.key == "attendance_sync.schema_version")
        .unwrap();
    assert_eq!(version.value.as_deref(), Some("1"));
    let rg = meta.row_group(0);
    use attendance_sync::table::{Table, Values};
    use parquet::basic::Encoding;
    // How each column is stored follows what its values look like (`Values`): zstd only on long
    // repeated text and on one-value-per-row columns, no dictionary for the latter.
    let layout = |path: &str| {
        let col = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == path)
            .unwrap_or_else(|| panic!("no column {path}"));
        let dictionary = col.encodings().any(|e| e == Encoding::RLE_DICTIONARY);
        (
            matches!(col.compression(), Compression::ZSTD(_)),
            dictionary,
        )
    };
    assert_eq!(layout("approval_id"), (true, false));
    assert_eq!(layout("process_id.list.element"), (true, false));
    assert_eq!(layout("start_time_local"), (true, true));
    assert_eq!(layout("destinations.list.element.region_id"), (false, true));
    assert_eq!(layout("start_time"), (false, true));
    assert_eq!(layout("status"), (false, true));
    assert_eq!(layout("transportation.list.element"), (false, true));
    assert_eq!(layout("_run_id"), (false, true));
    for col in rg.columns() {
        let path = col.column_path();
        let expected = match Table::Trips.values_of(&path.parts()[0]) {
            Values::Repeated => (false, true),
            Values::RepeatedText => (true, true),
            Values::Unique => (true, false),
        };
        assert_eq!(layout(&path.string()), expected, "{path}");
        assert!(
            matches!(
                col.compression(),
                Compression::ZSTD(_) | Compression::UNCOMPRESSED
            ),
            "{path}"
        );
        assert!(col.statistics().is_some(), "statistics on {path}");
    }
    let schema = meta.file_metadata().schema_descr();
    let paths: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
    assert!(
        paths.contains(&"destinations.list.element.region_id".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"process_id.list.element".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p == "date"),
        "date lives in the path only"
    );
    let start = schema
        .columns()
        .iter()
        .find(|c| c.name() == "start_time")
        .unwrap();
    assert!(
        matches!(
            start.logical_type_ref(),
            Some(LogicalType::Timestamp(t)) if t.is_adjusted_to_u_t_c && matches!(t.unit, TimeUnit::MICROS)
        ),
        "{:?}",
        start.logical_type_ref()
    );
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
fn a_window_spilled_to_disk_writes_the_same_tables_as_one_held_in_memory() {
    let tenant = small_tenant(60);
    let ws = Workspace::new();
    let mut users = fixtures();
    users.extend(tenant.sim().user_ids("employee_id").unwrap());
    let users_file = ws.users_file(&users);
    let spill = ws.dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let in_memory = ws.dir.path().join("in-memory");
    let on_disk = ws.dir.path().join("on-disk");
    let spill_flags = [
        "--spill-after-mib",
        "0",
        "--spill-dir",
        spill.to_str().unwrap(),
    ];
    for (out, extra) in [(&in_memory, &[][..]), (&on_disk, &spill_flags[..])] {
        let args = backfill_args(&tenant, &users_file, out, "2026-08-20", "2026-10-10", extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bin(&args, &creds()).assert_ok();
    }
    let (a, b) = (all_content(&in_memory), all_content(&on_disk));
    assert!(
        a.iter().map(Vec::len).sum::<usize>() > 40,
        "too few dates to tell"
    );
    assert_eq!(a, b, "spilling changed what was written");
    assert_eq!(rejects(&in_memory).len(), rejects(&on_disk).len());
    // The run's spill directory is gone with the run.
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
}

#[test]
fn a_commit_that_fails_halfway_leaves_each_partition_whole() {
    let tenant = small_tenant(20);
    let ws = Workspace::new();
    let users = fixtures();
    backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let outs = ws.out().join("outs");
    let mut days: Vec<PathBuf> = std::fs::read_dir(&outs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    days.sort();
    assert!(days.len() >= 2, "need two dates of outs");
    let before = TableData::read(&ws.out(), Table::Outs).content();
    // The first date also holds a stale second part (as a bigger earlier day would leave) and
    // the last date a file that is not Parquet, which the commit meets after the first date.
    let (first, last) = (&days[0], &days[days.len() - 1]);
    std::fs::copy(
        first.join("part-00000.parquet"),
        first.join("part-00001.parquet"),
    )
    .unwrap();
    let corrupt = last.join("part-00000.parquet");
    std::fs::write(&corrupt, b"not parquet").unwrap();

    let run = backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains(&corrupt.display().to_string()),
        "{}",
        run.stderr()
    );
    // The first date was replaced whole: its new part in place and the stale one gone, so no
    // row is there twice.
    let parts: Vec<_> = std::fs::read_dir(first)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(parts, ["part-00000.parquet"]);
    std::fs::remove_file(&corrupt).unwrap();
    let first_date = before[0].0;
    let on = |rows: Vec<(NaiveDate, RecordBatch)>| -> Vec<(NaiveDate, RecordBatch)> {
        rows.into_iter().filter(|(d, _)| *d == first_date).collect()
    };
    let after = TableData::read(&ws.out(), Table::Outs).content();
    assert_eq!(on(after), on(before));
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
fn data_samples_parse_into_rows() {
    use attendance_sync::flatten;
    use attendance_sync::plan::{Status, Window};
    use attendance_sync::platform::model::{Envelope, QueryData, UserApproval};
    use attendance_sync::table::RunStamp;
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
            .filter_map(|u| attendance_sync::tz::parse_yyyymmdd(u.date.as_ref()?.as_str()))
            .collect();
        let window = Window {
            from: *dates.iter().min().unwrap(),
            to: *dates.iter().max().unwrap(),
        };
        let stamp = RunStamp {
            run_id: "r".into(),
            ingested_at_micros: 0,
        };
        let flat = flatten::flatten(&data, Status::APPROVED, window, &users, &stamp).unwrap();
        let rows = flat.total_rows();
        assert!(rows >= 4, "{name}: {rows} rows");
        seen.insert(name, (rows, flat.rejects.len()));
    }
    assert_eq!(seen["spec-example-response.json"], (4, 0));
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
}

// ---- Issue 3: a client that runs unattended ----

fn all_content(root: &Path) -> Vec<Vec<(NaiveDate, RecordBatch)>> {
    Table::ALL
        .iter()
        .map(|t| TableData::read(root, *t).content())
        .collect()
}

fn user_ids_in(root: &Path) -> std::collections::BTreeSet<String> {
    let mut users = std::collections::BTreeSet::new();
    for t in Table::ALL {
        for (_, b) in TableData::read(root, t).batches {
            let col = b.column_by_name("user_id").unwrap().as_string::<i32>();
            users.extend(col.iter().flatten().map(str::to_string));
        }
    }
    users
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
fn users_listed_from_groups_and_contacts_match_the_tenant_exactly() {
    use attendance_sync::platform::{Client, ClientConfig, Credentials};
    use attendance_sync::run::{Users, resolve_users};
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
        let (groups, _) = tenant
            .rt
            .block_on(resolve_users(&client, &Users::Groups, employee_type, 8))
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
        let (contacts, _) = tenant
            .rt
            .block_on(resolve_users(&client, &Users::Contact, employee_type, 8))
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

#[test]
fn an_output_root_of_another_employee_type_is_refused() {
    let tenant = small_tenant(5);
    let ws = Workspace::new();
    let users = tenant.sim().user_ids("employee_id").unwrap();
    backfill(&tenant, &ws, &users, "2026-09-01", "2026-09-30", &[]).assert_ok();
    let open_ids = tenant.sim().user_ids("open_id").unwrap();
    let run = backfill(
        &tenant,
        &ws,
        &open_ids,
        "2026-09-01",
        "2026-09-30",
        &["--employee-type", "open_id"],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let last = run.stderr().lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("employee_id") && last.contains("open_id") && last.contains(".parquet"),
        "{last}"
    );
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

// ---- Issue 4: warehouse-grade output ----

/// A real S3-protocol server (s3s-fs) on loopback, storing under a temporary directory.
struct S3Server {
    rt: tokio::runtime::Runtime,
    endpoint: String,
    _dir: tempfile::TempDir,
}

const S3_KEY: &str = "test-access-key";
const S3_SECRET: &str = "test-secret-key-never-logged";

impl S3Server {
    fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(dir.path().join(b)).unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let root = dir.path().to_path_buf();
        let endpoint = rt.block_on(async move {
            let fs = s3s_fs::FileSystem::new(root).unwrap();
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(S3_KEY, S3_SECRET));
            let service = builder.build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let http = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    let conn = http
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
            format!("http://{addr}")
        });
        S3Server {
            rt,
            endpoint,
            _dir: dir,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// The store of `url`, configured as the binary is by `env()`.
    fn store(&self, url: &str) -> attendance_sync::store::Store {
        let options = [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", S3_KEY),
            ("aws_secret_access_key", S3_SECRET),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ];
        attendance_sync::store::Store::open_with(url, &options).unwrap()
    }

    fn read(&self, url: &str, table: Table) -> Vec<(NaiveDate, RecordBatch)> {
        let store = self.store(url);
        self.rt
            .block_on(attendance_sync::sink::read_table(&store, table))
            .unwrap()
    }

    fn list(&self, url: &str) -> Vec<String> {
        let store = self.store(url);
        self.rt.block_on(store.list_files("")).unwrap()
    }
}

fn backfill_to(
    tenant: &Tenant,
    users_file: &Path,
    out: &str,
    from: &str,
    to: &str,
    env: &[(&str, String)],
) -> Run {
    let url = tenant.url();
    let mut all_env: Vec<(&str, &str)> = creds();
    for (k, v) in env {
        all_env.push((k, v.as_str()));
    }
    run_bin(
        &[
            "backfill",
            "--from",
            from,
            "--to",
            to,
            "--out",
            out,
            "--users-file",
            users_file.to_str().unwrap(),
            "--base-url",
            &url,
        ],
        &all_env,
    )
}

fn without_run_columns(batches: &[(NaiveDate, RecordBatch)]) -> Vec<(NaiveDate, RecordBatch)> {
    TableData {
        batches: batches.to_vec(),
    }
    .content()
}

#[test]
fn s3_round_trip_replaces_and_deletes_partitions() {
    let s3 = S3Server::start(&["lake"]);
    let tenant = small_tenant(30);
    let ws = Workspace::new();
    let mut users = fixtures();
    users.extend(
        tenant
            .sim()
            .user_ids("employee_id")
            .unwrap()
            .into_iter()
            .take(30),
    );
    let users_file = ws.users_file(&users);
    let url = "s3://lake/attendance/v1";

    let run = backfill_to(
        &tenant,
        &users_file,
        url,
        "2026-09-01",
        "2026-09-30",
        &s3.env(),
    );
    run.assert_ok();
    assert!(
        run.stdout().contains("s3://lake/attendance/v1"),
        "{}",
        run.stdout()
    );
    // The same run to a local directory: the bytes in the bucket must hold the same rows.
    let local = ws.out();
    backfill_to(
        &tenant,
        &users_file,
        local.to_str().unwrap(),
        "2026-09-01",
        "2026-09-30",
        &[],
    )
    .assert_ok();
    for table in Table::ALL {
        let remote = without_run_columns(&s3.read(url, table));
        let here = TableData::read(&local, table).content();
        assert_eq!(remote, here, "{}", table.name());
    }
    let objects = s3.list(url);
    assert!(
        objects
            .iter()
            .any(|o| o == "outs/date=2026-09-17/part-00000.parquet"),
        "{objects:?}"
    );
    assert!(
        objects
            .iter()
            .all(|o| o.ends_with("part-00000.parquet") || o.starts_with('_')),
        "only part files and the job's own objects: {objects:?}"
    );

    // Revoke the only out of 2026-09-17 among these users if it is alone there; in any case it goes.
    assert!(tenant.sim().set_status("fx-sh-revocable", 4));
    backfill_to(
        &tenant,
        &users_file,
        url,
        "2026-09-01",
        "2026-09-30",
        &s3.env(),
    )
    .assert_ok();
    let outs = TableData {
        batches: s3.read(url, Table::Outs),
    };
    assert!(outs.find("fx-sh-revocable").is_empty());
    let day_rows = outs
        .batches
        .iter()
        .filter(|(d, _)| d.to_string() == "2026-09-17")
        .map(|(_, b)| b.num_rows())
        .sum::<usize>();
    let day_object = s3
        .list(url)
        .contains(&"outs/date=2026-09-17/part-00000.parquet".to_string());
    assert_eq!(
        day_object,
        day_rows > 0,
        "a date without rows has no object"
    );
    // A rerun never duplicates: the remote rows equal the local run made after the same change.
    backfill_to(
        &tenant,
        &users_file,
        local.to_str().unwrap(),
        "2026-09-01",
        "2026-09-30",
        &[],
    )
    .assert_ok();
    assert_eq!(
        without_run_columns(&outs.batches),
        TableData::read(&local, Table::Outs).content()
    );
    // The S3 secret never reaches the output.
    assert!(!run.stderr().contains(S3_SECRET) && !run.stdout().contains(S3_SECRET));
}

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
                attendance_sync::sink::decode(bytes)
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
fn the_manifest_counts_equal_the_rows_in_the_files() {
    let tenant = small_tenant(40);
    let ws = Workspace::new();
    let mut users = fixtures();
    users.extend(
        tenant
            .sim()
            .user_ids("employee_id")
            .unwrap()
            .into_iter()
            .take(40),
    );
    let run = backfill(
        &tenant,
        &ws,
        &users,
        "2026-08-20",
        "2026-10-10",
        &["--statuses", "2,3"],
    );
    run.assert_ok();
    let out = ws.out();
    let manifests: Vec<_> = std::fs::read_dir(out.join("_runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(manifests.len(), 1);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    assert!(
        run.stdout()
            .contains(manifests[0].file_name().unwrap().to_str().unwrap())
    );
    assert_eq!(m["exit_code"], 0);
    assert_eq!(m["schema_version"], "1");
    assert_eq!(m["statuses"], serde_json::json!([2, 3]));
    assert_eq!(m["users"].as_array().unwrap().len(), users.len());
    assert_eq!(m["windows"].as_array().unwrap().len(), 2);
    assert!(
        m["windows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["outcome"] == "committed")
    );
    // Every file listed holds the rows it says, and the per-date counts are the tables' rows.
    for f in m["files"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
        let (batches, _) = attendance_sync::sink::decode(bytes).unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows as u64, f["rows"].as_u64().unwrap(), "{}", f["path"]);
    }
    for table in Table::ALL {
        let data = TableData::read(&out, table);
        let mut by_date: BTreeMap<String, u64> = BTreeMap::new();
        for (d, b) in &data.batches {
            *by_date.entry(d.to_string()).or_default() += b.num_rows() as u64;
        }
        let listed: BTreeMap<String, u64> = m["rows_in_files"][table.name()]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(listed, by_date, "{}", table.name());
        assert_eq!(
            m["rows_fetched"][table.name()].as_u64().unwrap(),
            data.rows() as u64
        );
    }
    let rejects_listed = m["rejects"].as_u64().unwrap() as usize;
    assert_eq!(rejects_listed, rejects(&out).len());
}

// ---- Issue 5: the nightly job ----

// The deploy manifests' checks (jobs/k8s/), kept beside them in tests/deploy/.
include!("deploy/manifests.rs");

fn run_in(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_bin(args, env)
}

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

    // The shipped job files are valid: plan them against the simulated tenant.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nightly = root.join("jobs/nightly.toml");
    let run = run_in(
        &[
            "plan",
            "--config",
            nightly.to_str().unwrap(),
            "--base-url",
            &url,
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

// ---- Issue 6: recorded answers ----

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
