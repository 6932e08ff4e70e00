//! Command line: clap definitions (first stage) and their translation into validated run
//! requests (second stage). Reads the environment, never prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use attendance_core::plan::{EmployeeType, Status};
use attendance_feishu::{ClientConfig, Credentials, DEFAULT_BASE_URL};
use attendance_lake::spill::SpillConfig;

/// Backfills Feishu / Lark attendance approvals (outs, leaves, overtime, trips) into
/// date-partitioned Parquet tables.
#[derive(Debug, Parser)]
#[command(
    name = "attendance-sync",
    version,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level or tracing filter (e.g. `debug`, or `attendance=debug,info` for the job's own crates,
    /// whose names all start with `attendance`). Logs go to stderr.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "ATTENDANCE_SYNC_LOG"
    )]
    pub log: String,
    /// Log lines as human-readable text or as JSON objects (for Kubernetes log shipping).
    /// Every line of a run carries its run id.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// No progress bars or progress lines; the summary and errors still print.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a date range and replace those dates in the output tables.
    #[command(
        after_help = "Example:\n  FEISHU_APP_ID=cli_xxx FEISHU_APP_SECRET=... attendance-sync backfill \\\n    --from 2026-01-01 --to 2026-03-31 --users-file users.txt --out s3://lake/attendance\n  attendance-sync backfill --config jobs/backfill-example.toml --from 2026-04-01"
    )]
    Backfill(BackfillArgs),
    /// The nightly run: re-fetch a trailing window (31 dates through today + 1 by default) for
    /// all users, so late approvals appear and revoked ones vanish.
    #[command(
        after_help = "Example:\n  attendance-sync sync --config jobs/nightly.toml\n  attendance-sync sync --out ./warehouse --days 45 --time-zone Asia/Singapore"
    )]
    Sync(SyncArgs),
    /// Print what a backfill (with --from/--to) or a sync (without) would ask the platform, and
    /// how long that takes at the rate limit, without calling the query API.
    #[command(
        after_help = "Example:\n  attendance-sync plan --config jobs/nightly.toml\n  attendance-sync plan --from 2025-01-01 --to 2025-12-31 --users-file users.txt --out ./warehouse"
    )]
    Plan(PlanArgs),
    /// Run a backfill from answers recorded with --record-responses, without the network: the
    /// offline pipeline (parse, flatten, time zones, encode, write), or a captured day again.
    #[command(
        after_help = "Example:\n  attendance-sync backfill ... --record-responses /tmp/corpus\n  attendance-sync replay /tmp/corpus --out /tmp/replayed"
    )]
    Replay(ReplayArgs),
    /// Rewrite, in the current schema, the partitions of the four tables written under an older
    /// one (v1: no time_zone_iana, utc_offset_seconds), with the same rows, without the
    /// network; partitions already current are left as they are. Runs under the root's lease.
    #[command(after_help = "Example:\n  attendance-sync upgrade --out s3://lake/attendance")]
    Upgrade(UpgradeArgs),
    /// Receive the approval events the platform pushes and land each once under OUT/_events/:
    /// `serve` is the webhook receiver, `connect` the long connection.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Third-party approvals (made in another system, mirrored into Feishu's approval center):
    /// validate instance files, push them, check them against the platform, pull the platform's
    /// task statuses, and load the instances as tables.
    #[command(subcommand)]
    External(ExternalCommand),
    /// The records kept aside under OUT/_rejects/ (the pull's, the events', the third-party
    /// commands'): what they are and why.
    #[command(subcommand)]
    Rejects(RejectsCommand),
    /// Start the bundled simulated tenant on loopback and back-fill the last 60 days from it.
    #[cfg(feature = "sim")]
    #[command(
        after_help = "Example:\n  attendance-sync demo --users 300 --out ./demo-warehouse\n  attendance-sync demo --users 5000 --days 90 --fault-500 0.05 --refuse-users 2"
    )]
    Demo(DemoArgs),
    /// Serve the simulated tenant on 127.0.0.1 until interrupted, to try the job by hand.
    #[cfg(feature = "sim")]
    #[command(
        after_help = "Example:\n  attendance-sync simulate --users 1000 --users-out users.txt\n  then, with the printed URL and credentials:\n  attendance-sync backfill --base-url http://127.0.0.1:PORT --users-file users.txt ..."
    )]
    Simulate(SimulateArgs),
}

/// The two event receivers.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The webhook receiver: POST <path> lands each event before answering 200; GET /healthz,
    /// GET /metrics (Prometheus). Run several replicas on one root: each event lands once.
    #[command(
        after_help = "Example:\n  FEISHU_VERIFICATION_TOKEN=... FEISHU_ENCRYPT_KEY=... attendance-sync events serve \\\n    --listen 0.0.0.0:8080 --out s3://lake/attendance"
    )]
    Serve(ServeArgs),
    /// The long connection (the platform's recommended mode, no public address needed): lands
    /// each event before acknowledging it. Needs FEISHU_APP_ID and FEISHU_APP_SECRET.
    #[command(
        after_help = "Example:\n  FEISHU_APP_ID=cli_xxx FEISHU_APP_SECRET=... attendance-sync events connect --out s3://lake/attendance"
    )]
    Connect(ConnectArgs),
    /// Compact the events landed under OUT/_events/inbox/ into the approval_events table (one
    /// row per distinct event, partitioned by the UTC date of its time), under the root's lease.
    /// Idempotent: run it as often as you like.
    #[command(after_help = "Example:\n  attendance-sync events compact --out s3://lake/attendance")]
    Compact(CompactArgs),
}

#[derive(Debug, Subcommand)]
pub enum RejectsCommand {
    /// Count the records kept aside by source, table, field and reason, with the values that
    /// were wrong. Reads only; exits 0.
    #[command(
        after_help = "Example:\n  attendance-sync rejects list --out s3://lake/attendance --from 2026-09-01"
    )]
    List(RejectsArgs),
    /// Read the pull's records kept aside again with today's rules and --zone-alias, without
    /// asking the platform: those that now pass become rows of their partitions (under the
    /// root's lease, with a manifest) and leave _rejects/; the others stay, their reasons
    /// brought up to date. Idempotent; exits 0 when the replay ran, whatever is left.
    #[command(
        after_help = "Example:\n  attendance-sync rejects replay --out s3://lake/attendance --zone-alias Asia/Beijing=Asia/Shanghai"
    )]
    Replay(RejectsReplayArgs),
}

#[derive(Debug, Args, Clone)]
pub struct UpgradeArgs {
    /// Output root, as for backfill.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// The kind of user id the root holds, as for backfill.
    #[arg(long, default_value_t = EmployeeType::EmployeeId, value_parser = employee_type_parser())]
    pub employee_type: EmployeeType,
    /// Seconds the lease on the output root lives without renewal, as for backfill.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
}

#[derive(Debug, Args, Clone)]
pub struct RejectsReplayArgs {
    #[command(flatten)]
    pub rejects: RejectsArgs,
    /// The kind of user id the root holds, as for backfill.
    #[arg(long, default_value_t = EmployeeType::EmployeeId, value_parser = employee_type_parser())]
    pub employee_type: EmployeeType,
    #[command(flatten)]
    pub zones: ZoneAliasArgs,
    /// Seconds the lease on the output root lives without renewal, as for backfill.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
}

#[derive(Debug, Args, Clone)]
pub struct RejectsArgs {
    /// Output root, as for backfill.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// Only the records filed under this date or later (the events' file, undated, always).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub from: Option<NaiveDate>,
    /// Only the records filed under this date or earlier.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub to: Option<NaiveDate>,
}

#[derive(Debug, Subcommand)]
pub enum ExternalCommand {
    /// Send the valid instances of a file (POST approval/v4/external_instances): by default
    /// only those the check API reports missing or stale. Invalid instances are never sent:
    /// they go to OUT/_rejects/external/ with every problem named (exit 3).
    #[command(
        after_help = "Example:\n  FEISHU_APP_ID=cli_xxx FEISHU_APP_SECRET=... attendance-sync external push \\\n    --instances hr-export.ndjson --out s3://lake/attendance"
    )]
    Push(ExternalPushArgs),
    /// Reconcile a file with the platform: every instance asked of the check API, the
    /// differences written to the external_diffs table (exit 3 when there is any).
    #[command(
        after_help = "Example:\n  attendance-sync external check --instances hr-export.ndjson --out s3://lake/attendance"
    )]
    Check(ExternalCheckArgs),
    /// Snapshot the platform's task statuses of some approval codes
    /// (GET approval/v4/external_tasks) into the external_task_status table.
    #[command(
        after_help = "Example:\n  attendance-sync external pull --approval-codes 84C18825-A3D2-41D0-891F-E7A2424C5D48 --out ./warehouse"
    )]
    Pull(ExternalPullArgs),
    /// Land a file's instances as tables (external_instances, external_instance_tasks,
    /// external_instance_ccs, external_i18n), partitioned by the local date of their start.
    /// Needs no credentials.
    #[command(
        after_help = "Example:\n  attendance-sync external load --instances hr-export.ndjson --out ./warehouse --time-zone Asia/Shanghai"
    )]
    Load(ExternalLoadArgs),
}

/// How the external commands reach the platform.
#[derive(Debug, Args, Clone)]
pub struct PlatformArgs {
    /// Open Platform host; Lark tenants use https://open.larksuite.com.
    #[arg(long, env = "FEISHU_BASE_URL", default_value = DEFAULT_BASE_URL, value_name = "URL")]
    pub base_url: String,
    /// A file holding the app secret, instead of FEISHU_APP_SECRET.
    #[arg(long, env = "FEISHU_APP_SECRET_FILE", value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The source and root of the external commands that read instance files.
#[derive(Debug, Args, Clone)]
pub struct InstancesArgs {
    /// The instance file: one instance a line (NDJSON) or a JSON array, a path or an object
    /// store URL (s3://…, gs://…, az://…), in the platform's model (approval_code, instance_id,
    /// task_list, cc_list, i18n_resources, …).
    #[arg(long, value_name = "FILE|URL")]
    pub instances: String,
    /// Output root, a directory or an object store URL, as for backfill: manifests go to
    /// OUT/_runs/, rejected instances to OUT/_rejects/external/, tables to OUT/<table>/.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
}

#[derive(Debug, Args, Clone)]
pub struct ExternalPushArgs {
    #[command(flatten)]
    pub instances: InstancesArgs,
    /// Send every valid instance, without asking the check API first.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ExternalCheckArgs {
    #[command(flatten)]
    pub instances: InstancesArgs,
    /// Seconds the external tables' lease lives without renewal.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ExternalPullArgs {
    /// The third-party approval codes whose tasks are listed (any number; asked 20 at a time).
    #[arg(long, value_delimiter = ',', required = true, value_name = "CODES")]
    pub approval_codes: Vec<String>,
    /// List only the tasks of this status.
    #[arg(long, value_parser = ["PENDING", "APPROVED", "REJECTED", "TRANSFERRED", "DONE"])]
    pub status: Option<String>,
    /// List only the tasks of these approvers (user_id).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub user_ids: Vec<String>,
    /// Output root, as for backfill.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// Seconds the external tables' lease lives without renewal.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
    #[command(flatten)]
    pub platform: PlatformArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ExternalLoadArgs {
    #[command(flatten)]
    pub instances: InstancesArgs,
    /// The zone whose dates partition the instances (by their start).
    #[arg(long, default_value = "Asia/Shanghai", value_name = "IANA", value_parser = parse_zone)]
    pub time_zone: chrono_tz::Tz,
    /// Seconds the external tables' lease lives without renewal.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
    /// The file is the whole truth for its approval codes: their instances it lacks are
    /// deleted from the tables (by default a load upserts: the file's instances replace their
    /// rows, every other row stays).
    #[arg(long)]
    pub full: bool,
    /// Local directory where the instances wait, a file per date, before their date is written
    /// (default: the system's temporary directory). Needs about the source's size.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct CompactArgs {
    /// Output root, as for backfill.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// Seconds the lease on the output root lives without renewal, as for backfill.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
    /// The zone events' local times are read in for an applicant the pull has not seen yet (the
    /// pull keeps each user's zone from its answers). Feishu's is Asia/Shanghai.
    #[arg(long, default_value = "Asia/Shanghai", value_name = "IANA", value_parser = parse_zone)]
    pub time_zone: chrono_tz::Tz,
}

/// What both receivers take.
#[derive(Debug, Args, Clone)]
pub struct ReceiverArgs {
    /// Output root, a directory or an object store URL, as for backfill: events land under
    /// OUT/_events/inbox/. Receivers never take the root's lease.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// Names this receiver in what it lands (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    pub receiver_id: Option<String>,
    /// Also compact the landed events into tables every INTERVAL (e.g. 5m, 30s, 1h), as `events
    /// compact` does. With several receivers on one root, one compacts at a time; the others
    /// skip that round.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    pub compact_every: Option<Duration>,
    /// With --compact-every: the zone events' local times are read in for an applicant the
    /// pull has not seen yet, as for `events compact`.
    #[arg(long, default_value = "Asia/Shanghai", value_name = "IANA", value_parser = parse_zone)]
    pub time_zone: chrono_tz::Tz,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub receiver: ReceiverArgs,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Path of the event endpoint (the request URL set in the developer console).
    #[arg(long, default_value = "/webhook/event", value_name = "PATH")]
    pub path: String,
    /// A file holding the Verification Token, instead of FEISHU_VERIFICATION_TOKEN.
    #[arg(long, env = "FEISHU_VERIFICATION_TOKEN_FILE", value_name = "FILE")]
    pub verification_token_file: Option<PathBuf>,
    /// A file holding the Encrypt Key, instead of FEISHU_ENCRYPT_KEY. Without either, bodies
    /// are taken unencrypted and unsigned (the token is still checked).
    #[arg(long, env = "FEISHU_ENCRYPT_KEY_FILE", value_name = "FILE")]
    pub encrypt_key_file: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub receiver: ReceiverArgs,
    /// Open Platform host; Lark tenants use https://open.larksuite.com.
    #[arg(long, env = "FEISHU_BASE_URL", default_value = DEFAULT_BASE_URL, value_name = "URL")]
    pub base_url: String,
    /// A file holding the app secret, instead of FEISHU_APP_SECRET.
    #[arg(long, env = "FEISHU_APP_SECRET_FILE", value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,
    /// Address for GET /healthz and GET /metrics.
    #[arg(long, default_value = "0.0.0.0:9090", value_name = "ADDR")]
    pub metrics_listen: std::net::SocketAddr,
}

/// Reads an optional secret: the file if given, else the environment variable. Empty is unset.
pub fn secret(
    env: &'static str,
    flag: &'static str,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .map(Some)
            .ok_or_else(|| ConfigError::SecretFile {
                flag,
                path: path.to_path_buf(),
            }),
        None => Ok(std::env::var(env)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())),
    }
}

/// What every command that writes tables takes.
#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    /// A TOML job file whose keys are these flags' long names with `_` for `-`
    /// (e.g. `rate_limit = 40`, `statuses = [2, 3]`). Flags and environment variables override it.
    /// Secrets are never read from it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output root, a directory or an object store URL: tables go to
    /// OUT/<table>/date=YYYY-MM-DD/part-00000.parquet. Example: --out s3://lake/attendance
    /// (credentials from AWS_* / GOOGLE_* / AZURE_* variables; AWS_ENDPOINT_URL for S3-compatible
    /// stores).
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// One user id per line (blank lines and `#` comments allowed), of the --employee-type kind.
    /// Without it, the users are listed from the tenant (see --users-from).
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Where to list users when no --users-file is given: every member of every attendance group,
    /// or every user of the contact department tree (people outside attendance groups too).
    #[arg(long, value_enum, default_value_t = UsersFrom::Groups)]
    pub users_from: UsersFrom,
    /// Kind of id in the users file and in the output's user_id column.
    #[arg(long, default_value_t = EmployeeType::EmployeeId, value_parser = employee_type_parser())]
    pub employee_type: EmployeeType,
    /// Approval statuses to fetch, comma-separated: 0 pending, 1 rejected, 2 approved, 3 withdrawn,
    /// 4 revoked. Leaves and overtime exist only for 2 and 3. Example: --statuses 2,3,4
    #[arg(long, value_delimiter = ',', default_value = "2", value_name = "LIST")]
    pub statuses: Vec<Status>,
    /// The platform's time zone, for "today": the platform refuses dates after its today + 1.
    /// Feishu is Asia/Shanghai; Lark tenants may use another.
    #[arg(long, default_value = "Asia/Shanghai", value_name = "IANA", value_parser = parse_zone)]
    pub time_zone: chrono_tz::Tz,
    #[command(flatten)]
    pub zones: ZoneAliasArgs,
    /// Start over: ignore the windows an interrupted run of this same backfill already committed
    /// (by default a rerun resumes after them).
    #[arg(long)]
    pub restart: bool,
    /// Seconds the lease on the output root lives without renewal. A run killed without releasing
    /// it blocks other runs (exit 2) until it expires.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub lease_ttl: u64,
    /// Open Platform host; Lark tenants use https://open.larksuite.com.
    #[arg(long, env = "FEISHU_BASE_URL", default_value = DEFAULT_BASE_URL, value_name = "URL")]
    pub base_url: String,
    /// A file holding the app secret (e.g. a mounted Kubernetes Secret), instead of
    /// FEISHU_APP_SECRET.
    #[arg(long, env = "FEISHU_APP_SECRET_FILE", value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,
    /// Print the plan (windows, batches, requests, time at the rate limit) and stop, without
    /// calling the query API.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep every query answer in DIR, to replay the run later with `replay DIR`.
    #[arg(long, value_name = "DIR")]
    pub record_responses: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub spill: SpillArgs,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// First date to fetch, YYYY-MM-DD (the approvals' `date`, as the platform assigns it).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub from: NaiveDate,
    /// Last date to fetch, YYYY-MM-DD, inclusive. Clipped to today + 1, the platform's limit.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub to: NaiveDate,
    /// Also re-read the users and dates that approval events landed under OUT/_events/ since
    /// the last such run name outside --from..--to (e.g. a revoke of an older approval), as
    /// sync always does.
    #[arg(long)]
    pub with_events: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The directory written by --record-responses.
    #[arg(value_name = "DIR")]
    pub responses: PathBuf,
    /// Output root, as for backfill.
    #[arg(long, value_name = "DIR|URL")]
    pub out: String,
    /// Answers handled at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    #[command(flatten)]
    pub zones: ZoneAliasArgs,
    #[command(flatten)]
    pub spill: SpillArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Dates to re-fetch, ending today + 1 in --time-zone. 31 is one query window; approvals
    /// approved or revoked later than that are caught by a backfill.
    #[arg(long, default_value_t = 31, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub days: u32,
    /// Do not re-read what the approval events landed under OUT/_events/ since the last sync
    /// name outside the window (by default a revoke of an older approval is re-read, so the
    /// approval leaves the tables the next morning).
    #[arg(long)]
    pub no_events: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// First date, as for backfill; without --from/--to the plan is sync's trailing window.
    #[arg(long, value_name = "DATE", value_parser = parse_date, requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last date, as for backfill.
    #[arg(long, value_name = "DATE", value_parser = parse_date, requires = "from")]
    pub to: Option<NaiveDate>,
    /// Dates of sync's trailing window, when no --from/--to is given.
    #[arg(long, default_value_t = 31, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub days: u32,
    /// Leave out sync's re-reads of what the landed approval events name (which reads the
    /// events under OUT/_events/).
    #[arg(long)]
    pub no_events: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

/// Flags shared by every command that talks to a tenant.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Requests per second the job allows itself (the platform's limit is 50).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub rate_limit: u32,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// Deadline of one HTTP request, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub request_timeout: u64,
}

/// Where a window's rows wait for their commit once past the memory budget.
#[derive(Debug, Args, Clone)]
pub struct SpillArgs {
    /// Local directory for the rows of a window past --spill-after-mib (default: the system's
    /// temporary directory). Needs about as much free space as the window's rows take in Arrow.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// MiB of rows a window holds in memory before they go to --spill-dir.
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    pub spill_after_mib: usize,
}

impl SpillArgs {
    pub fn config(&self) -> SpillConfig {
        SpillConfig {
            dir: self.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            budget: self.spill_after_mib << 20,
        }
    }
}

/// Where users are listed from when no users file is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsersFrom {
    /// Members of every attendance group (needs attendance read permission).
    Groups,
    /// Users of the contact department tree (needs contact read permission).
    Contact,
}

#[cfg(feature = "sim")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its tables: a directory or an object store URL.
    #[arg(long, default_value = "./demo-warehouse", value_name = "DIR|URL")]
    pub out: String,
    /// Keep every query answer in DIR, to replay the run later with `replay DIR`.
    #[arg(long, value_name = "DIR")]
    pub record_responses: Option<PathBuf>,
    /// Days to back-fill, ending today.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub days: u32,
    /// Approval statuses to fetch, as for backfill.
    #[arg(long, value_delimiter = ',', default_value = "2", value_name = "LIST")]
    pub statuses: Vec<Status>,
    #[command(flatten)]
    pub tenant: TenantArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub spill: SpillArgs,
}

#[cfg(feature = "sim")]
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub tenant: TenantArgs,
    /// Write the user ids (employee_id) to this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub users_out: Option<PathBuf>,
}

/// How the simulated tenant is populated and how badly it behaves.
#[cfg(feature = "sim")]
#[derive(Debug, Args, Clone)]
pub struct TenantArgs {
    /// Generated users (seven fixture users with DST cases come on top).
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub users: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Requests per second the tenant answers on each API before HTTP 429 (0: no limit).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub tenant_rate_limit: u32,
    /// Lifetime of the tenant's access tokens, in seconds.
    #[arg(long, default_value_t = 7200, value_name = "SECONDS")]
    pub token_ttl: u64,
    /// Share of answers that are HTTP 500 with an HTML body, e.g. 0.05.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fault_500: f64,
    /// Share of answers that are code 1225000 (internal error).
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fault_1225000: f64,
    /// Chance per request of a one-second burst of HTTP 429.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fault_429_burst: f64,
    /// Share of answers held back --slow-ms.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fault_slow: f64,
    /// Delay of a slow answer, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub slow_ms: u64,
    /// Share of requests whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fault_drop: f64,
    /// Share of answers whose JSON body is cut in half.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fault_malformed: f64,
    /// Generated users the tenant refuses with 1220004 (departed employees).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub refuse_users: usize,
}

#[cfg(feature = "sim")]
impl TenantArgs {
    /// The simulated tenant's configuration (refused users are chosen once it has started).
    pub fn sim_config(&self) -> attendance_sim::SimConfig {
        attendance_sim::SimConfig {
            seed: self.seed,
            users: self.users,
            rate_limit_per_sec: self.tenant_rate_limit,
            token_ttl_secs: self.token_ttl,
            faults: attendance_sim::Faults {
                http_500: self.fault_500,
                code_1225000: self.fault_1225000,
                burst_429: self.fault_429_burst,
                slow: self.fault_slow,
                slow_ms: self.slow_ms,
                drop_connection: self.fault_drop,
                malformed_json: self.fault_malformed,
            },
            // The demo's events arrive encrypted and signed, and a failed delivery is retried
            // in milliseconds instead of the platform's 15 s, 5 min, 1 h, 6 h.
            events: attendance_sim::EventSettings {
                encrypt_key: Some("sim-encrypt-key".to_owned()),
                duplicate_share: 0.1,
                time_scale: 1000.0,
                ..attendance_sim::EventSettings::default()
            },
            ..attendance_sim::SimConfig::default()
        }
    }
}

/// `--employee-type`: one of [`EmployeeType::ALL`], listed in the help.
fn employee_type_parser() -> impl clap::builder::TypedValueParser<Value = EmployeeType> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(EmployeeType::ALL.map(EmployeeType::as_str)).map(|s| {
        s.parse::<EmployeeType>()
            .expect("a possible value is an employee type")
    })
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a calendar date written YYYY-MM-DD"))
}

/// A problem with the command line or the environment: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{0} is not set: export the app's credentials from the developer console (FEISHU_APP_ID and FEISHU_APP_SECRET)"
    )]
    MissingEnv(&'static str),
    #[error("--base-url '{0}' is not an http(s) URL such as https://open.feishu.cn")]
    BadBaseUrl(String),
    #[error("--concurrency and --rate-limit must be at least 1")]
    ZeroLimit,
    #[error("{flag} {}: cannot read a non-empty secret from it", path.display())]
    SecretFile { flag: &'static str, path: PathBuf },
    #[error(
        "{0} is not set: export the app's {1} from the developer console's event settings, or give its --…-file"
    )]
    MissingSecret(&'static str, &'static str),
    #[error(
        "--path '{0}' must be a plain path starting with '/' (no ':', '*', braces, '?' or '#'; not /healthz or /metrics), e.g. /webhook/event"
    )]
    BadPath(String),
    #[error("job file {}: {detail}", path.display())]
    JobFile { path: PathBuf, detail: String },
}

/// Reads the app's credentials: FEISHU_APP_ID, and FEISHU_APP_SECRET or the secret file.
pub fn credentials(secret_file: Option<&Path>) -> Result<Credentials, ConfigError> {
    let get = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::MissingEnv(name))
    };
    let app_secret = match secret_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConfigError::SecretFile {
                flag: "--app-secret-file",
                path: path.to_path_buf(),
            })?,
        None => get("FEISHU_APP_SECRET")?,
    };
    Ok(Credentials {
        app_id: get("FEISHU_APP_ID")?,
        app_secret,
    })
}

/// The client configuration of a command's flags.
pub fn client_config(
    base_url: &str,
    credentials: Credentials,
    args: &ClientArgs,
) -> Result<ClientConfig, ConfigError> {
    let url = base_url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(ConfigError::BadBaseUrl(base_url.to_string()));
    }
    if args.concurrency == 0 || args.rate_limit == 0 {
        return Err(ConfigError::ZeroLimit);
    }
    let mut config = ClientConfig::new(url, credentials);
    config.rate_limit_per_sec = args.rate_limit;
    config.request_timeout = Duration::from_secs(args.request_timeout.max(1));
    Ok(config)
}

/// Today in the platform's time zone, whose today + 1 is the last date it accepts.
pub fn platform_today(zone: chrono_tz::Tz) -> NaiveDate {
    chrono::Utc::now().with_timezone(&zone).date_naive()
}

/// A whole number of seconds, minutes or hours: `30s`, `5m`, `1h`; at least a second.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not an interval such as 30s, 5m or 1h");
    let text = s.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let seconds = match unit {
        's' => n,
        'm' => n.checked_mul(60).ok_or_else(bad)?,
        'h' => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if seconds == 0 {
        return Err(format!("'{s}': the interval must be at least 1s"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Zone names the tenant sends, read as others.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ZoneAliasArgs {
    /// Read the zone name FROM, as the tenant sends it, as TO: an IANA name or a fixed offset.
    /// Repeatable. Example: --zone-alias Asia/Beijing=Asia/Shanghai. In a job file:
    /// zone_aliases = { "Asia/Beijing" = "Asia/Shanghai" }. Records whose zone no rule reads are
    /// kept in _rejects/; `rejects replay` reads them again with today's aliases.
    #[arg(long = "zone-alias", value_name = "FROM=TO", value_parser = parse_zone_alias)]
    pub zone_alias: Vec<(String, String)>,
}

impl ZoneAliasArgs {
    /// The aliases, each checked when parsed.
    pub fn aliases(&self) -> attendance_core::tz::ZoneAliases {
        let mut aliases = attendance_core::tz::ZoneAliases::default();
        for (from, to) in &self.zone_alias {
            aliases
                .insert(from, to)
                .expect("checked by parse_zone_alias");
        }
        aliases
    }
}

fn parse_zone_alias(s: &str) -> Result<(String, String), String> {
    let (from, to) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not FROM=TO, e.g. Asia/Beijing=Asia/Shanghai"))?;
    attendance_core::tz::ZoneAliases::default()
        .insert(from, to)
        .map_err(|e| e.to_string())?;
    Ok((from.trim().to_string(), to.trim().to_string()))
}

fn parse_zone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("'{s}' is not an IANA time zone name such as Asia/Shanghai"))
}

/// Keys a job file may not hold: secrets come from the environment or a file path only.
const SECRET_KEYS: [&str; 3] = ["app_secret", "app_id", "secret"];

/// The job file a command line named, and the keys it supplied.
#[derive(Debug, Clone)]
pub struct JobFile {
    pub path: PathBuf,
    pub keys: Vec<String>,
}

/// Expands `--config FILE` into the flags it stands for, placed right after the subcommand so
/// that flags given on the command line come later and win, and leaves out keys whose
/// environment variable is set, so the environment wins over the file too.
pub fn expand_job_file(
    args: Vec<std::ffi::OsString>,
) -> Result<(Vec<std::ffi::OsString>, Option<JobFile>), ConfigError> {
    use clap::CommandFactory;
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let config = text.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| text.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(config) = config else {
        return Ok((args, None));
    };
    let path = PathBuf::from(&config);
    let cmd = Cli::command();
    let Some((position, sub)) = text
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, a)| cmd.find_subcommand(a).map(|s| (i, s.clone())))
    else {
        return Ok((args, None));
    };
    let file_err = |detail: String| ConfigError::JobFile {
        path: path.clone(),
        detail,
    };
    let body =
        std::fs::read_to_string(&path).map_err(|e| file_err(format!("cannot read it: {e}")))?;
    let table: toml::Table = body.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| body[..s.start.min(body.len())].lines().count().max(1))
            .unwrap_or(0);
        file_err(format!("line {line}: {}", e.message()))
    })?;
    let mut synthetic: Vec<std::ffi::OsString> = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in &table {
        if SECRET_KEYS.contains(&key.as_str()) {
            return Err(file_err(format!(
                "key '{key}': secrets are not read from job files; set FEISHU_APP_ID / FEISHU_APP_SECRET in the environment or point app_secret_file at a file"
            )));
        }
        // The one key whose name is not its flag's: a table of aliases, one --zone-alias each.
        let flag = match key.as_str() {
            "zone_aliases" => "zone-alias".to_string(),
            _ => key.replace('_', "-"),
        };
        let arg = sub
            .get_arguments()
            .chain(cmd.get_arguments())
            .find(|a| a.get_long() == Some(flag.as_str()) && flag != "config" && flag != "help")
            .ok_or_else(|| file_err(format!("unknown key '{key}' for `{}`", sub.get_name())))?;
        // The command line wins outright: a list there replaces the file's instead of adding to
        // it, and a flag there cannot be undone by the file.
        let on_command_line = text
            .iter()
            .any(|a| a == &format!("--{flag}") || a.starts_with(&format!("--{flag}=")));
        let from_env = arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || from_env {
            continue;
        }
        let is_flag = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let as_text = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Datetime(d) => Ok(d.to_string()),
                other => Err(file_err(format!(
                    "key '{key}': expected a string or a number, found {}",
                    other.type_str()
                ))),
            }
        };
        match value {
            toml::Value::Boolean(b) if is_flag => {
                if *b {
                    synthetic.push(format!("--{flag}").into());
                }
            }
            _ if is_flag => {
                return Err(file_err(format!("key '{key}': expected true or false")));
            }
            toml::Value::Table(aliases) if flag == "zone-alias" => {
                for (from, to) in aliases {
                    synthetic.push(format!("--{flag}").into());
                    synthetic.push(format!("{from}={}", as_text(to)?).into());
                }
            }
            // A list of FROM=TO strings: one flag each (a zone name may not be split on commas).
            toml::Value::Array(aliases) if flag == "zone-alias" => {
                for alias in aliases {
                    synthetic.push(format!("--{flag}").into());
                    synthetic.push(as_text(alias)?.into());
                }
            }
            toml::Value::Array(items) => {
                let parts: Result<Vec<String>, _> = items.iter().map(as_text).collect();
                synthetic.push(format!("--{flag}").into());
                synthetic.push(parts?.join(",").into());
            }
            v => {
                synthetic.push(format!("--{flag}").into());
                synthetic.push(as_text(v)?.into());
            }
        }
        keys.push(key.clone());
    }
    let mut expanded = args[..=position].to_vec();
    expanded.extend(synthetic);
    expanded.extend_from_slice(&args[position + 1..]);
    Ok((expanded, Some(JobFile { path, keys })))
}
