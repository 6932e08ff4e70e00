//! The output root: the files' layout and format, spilling, commits that fail halfway, a root
//! of another employee type, object storage over the S3 protocol, and the run manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use attendance_core::table::Table;
use chrono::NaiveDate;

use crate::util::*;

/// A real S3-protocol server (s3s-fs, its conditional writes atomic as on S3) on loopback,
/// storing under a temporary directory.
pub(crate) struct S3Server {
    pub(crate) rt: tokio::runtime::Runtime,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub(crate) fn start(buckets: &[&str]) -> S3Server {
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
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                attendance_bench_events::s3::serve(&root, listener, S3_KEY, S3_SECRET).await
            });
            format!("http://{addr}")
        });
        S3Server {
            rt,
            endpoint,
            _dir: dir,
        }
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// The store of `url`, configured as the binary is by `env()`.
    pub(crate) fn store(&self, url: &str) -> attendance_lake::store::Store {
        let options = [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", S3_KEY),
            ("aws_secret_access_key", S3_SECRET),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ];
        attendance_lake::store::Store::open_with(url, &options).unwrap()
    }

    fn read(&self, url: &str, table: Table) -> Vec<(NaiveDate, RecordBatch)> {
        let store = self.store(url);
        self.rt
            .block_on(attendance_lake::commit::read_table(&store, table))
            .unwrap()
    }

    pub(crate) fn list(&self, url: &str) -> Vec<String> {
        let store = self.store(url);
        self.rt.block_on(store.list_files("")).unwrap()
    }
}

const S3_KEY: &str = "test-access-key";

pub(crate) const S3_SECRET: &str = "test-secret-key-never-logged";

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
    assert_eq!(version.value.as_deref(), Some("2"));
    let rg = meta.row_group(0);
    use attendance_core::table::Values;
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
        let values = Table::Trips.values_of(&path.parts()[0]);
        let expected = match values {
            Values::Repeated => (false, true),
            Values::RepeatedText => (true, true),
            Values::Unique | Values::Document => (true, false),
        };
        assert_eq!(layout(&path.string()), expected, "{path}");
        assert!(
            matches!(
                col.compression(),
                Compression::ZSTD(_) | Compression::UNCOMPRESSED
            ),
            "{path}"
        );
        assert_eq!(
            col.statistics().is_some(),
            values != Values::Document,
            "statistics on {path}"
        );
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
    assert_eq!(m["schema_version"], "2");
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
        let (batches, _) = attendance_lake::writer::decode(bytes).unwrap();
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
