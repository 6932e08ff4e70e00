//! What every end-to-end test shares: the simulated tenant on its own runtime, a workspace with
//! a users file and an output root, running the binary, and reading its tables back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use attendance_core::table::Table;
use attendance_lake::commit::read_local_table;
use attendance_sim::{SimConfig, SimTenant};
use chrono::{NaiveDate, Utc};

pub const BIN: &str = env!("CARGO_BIN_EXE_attendance-sync");

pub const FIXTURE_USERS: [&str; 7] = [
    "fx_shanghai",
    "fx_newyork",
    "fx_london",
    "fx_lordhowe",
    "fx_kolkata",
    "fx_nozone",
    "fx_badzone",
];

/// A simulated tenant served from its own runtime for the length of a test.
pub struct Tenant {
    pub rt: tokio::runtime::Runtime,
    pub sim: Option<SimTenant>,
}

impl Tenant {
    pub fn start(config: SimConfig) -> Tenant {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(SimTenant::start(config)).unwrap();
        Tenant { rt, sim: Some(sim) }
    }

    pub fn sim(&self) -> &SimTenant {
        self.sim.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
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

pub fn small_tenant(users: usize) -> Tenant {
    Tenant::start(SimConfig {
        users,
        ..SimConfig::default()
    })
}

/// A working directory with a users file and an output root.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("warehouse")
    }

    pub fn users_file(&self, ids: &[String]) -> PathBuf {
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

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn assert_ok(&self) -> &Self {
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

pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Run {
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

pub fn creds() -> Vec<(&'static str, &'static str)> {
    let c = SimConfig::default();
    vec![
        ("FEISHU_APP_ID", Box::leak(c.app_id.into_boxed_str())),
        (
            "FEISHU_APP_SECRET",
            Box::leak(c.app_secret.into_boxed_str()),
        ),
    ]
}

pub fn backfill(
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
pub fn backfill_args(
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

pub fn fixtures() -> Vec<String> {
    FIXTURE_USERS.iter().map(|s| s.to_string()).collect()
}

/// The platform's today: Feishu's clock is China time, and so is the simulated tenant's.
pub fn today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
}

/// Every row of a table as (date, approval_id) → batch row, for lookups.
pub struct TableData {
    pub batches: Vec<(NaiveDate, RecordBatch)>,
}

impl TableData {
    pub fn read(root: &Path, table: Table) -> TableData {
        TableData {
            batches: read_local_table(root, table).unwrap(),
        }
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.num_rows()).sum()
    }

    /// (date, batch, row) of every row whose approval_id is `id`.
    pub fn find(&self, id: &str) -> Vec<(NaiveDate, &RecordBatch, usize)> {
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
    pub fn content(&self) -> Vec<(NaiveDate, RecordBatch)> {
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

pub fn text(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let a = b.column_by_name(col).unwrap().as_string::<i32>();
    a.is_valid(row).then(|| a.value(row).to_string())
}

/// Every reject of the pull, under `<root>/_rejects/date=*/rejects.ndjson`.
pub fn rejects(root: &Path) -> Vec<serde_json::Value> {
    let dir = root.join("_rejects");
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        // Only the pull's date partitions: `_rejects/events.ndjson` is the compaction's,
        // `_rejects/external/` the third-party commands'.
        for e in entries
            .map(Result::unwrap)
            .filter(|e| e.path().is_dir() && e.file_name().to_string_lossy().starts_with("date="))
        {
            let file = e.path().join("rejects.ndjson");
            for line in std::fs::read_to_string(file).unwrap().lines() {
                all.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    all
}

pub fn all_content(root: &Path) -> Vec<Vec<(NaiveDate, RecordBatch)>> {
    Table::ALL
        .iter()
        .map(|t| TableData::read(root, *t).content())
        .collect()
}

pub fn user_ids_in(root: &Path) -> std::collections::BTreeSet<String> {
    let mut users = std::collections::BTreeSet::new();
    for t in Table::ALL {
        for (_, b) in TableData::read(root, t).batches {
            let col = b.column_by_name("user_id").unwrap().as_string::<i32>();
            users.extend(col.iter().flatten().map(str::to_string));
        }
    }
    users
}

pub fn run_in(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_bin(args, env)
}

/// Every file under `dir` (relative path → bytes), hidden temporaries left out.
pub fn tree(root: &Path, dir: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.join(dir)];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if !name.starts_with('.') {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                found.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}
