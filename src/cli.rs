//! Command line: clap definitions (first stage) and their translation into validated run
//! requests (second stage). Reads the environment, never prints.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::plan::{EmployeeType, Status};
use crate::platform::{ClientConfig, Credentials, DEFAULT_BASE_URL};

/// Backfills Feishu / Lark attendance approvals (outs, leaves, overtime, trips) into
/// date-partitioned Parquet tables.
#[derive(Debug, Parser)]
#[command(name = "attendance-sync", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level or tracing filter (e.g. `debug`, `attendance_sync=trace`). Logs go to stderr.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "ATTENDANCE_SYNC_LOG"
    )]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a date range for a list of users and replace those dates in the output tables.
    ///
    /// Example: FEISHU_APP_ID=cli_xxx FEISHU_APP_SECRET=... attendance-sync backfill
    /// --from 2026-01-01 --to 2026-03-31 --users-file users.txt --out ./warehouse
    Backfill(BackfillArgs),
    /// Start the bundled simulated tenant on loopback and back-fill the last 60 days from it.
    ///
    /// Example: attendance-sync demo --users 300 --out ./demo-warehouse
    Demo(DemoArgs),
    /// Serve the simulated tenant on 127.0.0.1 until interrupted, to try the job by hand.
    ///
    /// Example: attendance-sync simulate --users 1000, then in another shell
    /// FEISHU_BASE_URL=<printed url> FEISHU_APP_ID=cli_sim_app FEISHU_APP_SECRET=sim-secret-never-logged
    /// attendance-sync backfill ...
    Simulate(SimulateArgs),
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

/// Where users are listed from when no users file is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsersFrom {
    /// Members of every attendance group (needs attendance read permission).
    Groups,
    /// Users of the contact department tree (needs contact read permission).
    Contact,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// First date to fetch, YYYY-MM-DD (the approvals' `date`, as the platform assigns it).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub from: NaiveDate,
    /// Last date to fetch, YYYY-MM-DD, inclusive. Clipped to today + 1, the platform's limit.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub to: NaiveDate,
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
    #[arg(long, value_enum, default_value_t = UsersFrom::Groups, conflicts_with = "users_file")]
    pub users_from: UsersFrom,
    /// Kind of id in the users file and in the output's user_id column.
    #[arg(long, value_enum, default_value_t = EmployeeType::EmployeeId)]
    pub employee_type: EmployeeType,
    /// Approval statuses to fetch, comma-separated: 0 pending, 1 rejected, 2 approved, 3 withdrawn,
    /// 4 revoked. Leaves and overtime exist only for 2 and 3. Example: --statuses 2,3,4
    #[arg(long, value_delimiter = ',', default_value = "2", value_name = "LIST")]
    pub statuses: Vec<Status>,
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
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its tables: a directory or an object store URL.
    #[arg(long, default_value = "./demo-warehouse", value_name = "DIR|URL")]
    pub out: String,
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
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub tenant: TenantArgs,
    /// Write the user ids (employee_id) to this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub users_out: Option<PathBuf>,
}

/// How the simulated tenant is populated and how badly it behaves.
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

impl TenantArgs {
    /// The simulated tenant's configuration (refused users are chosen once it has started).
    pub fn sim_config(&self) -> crate::sim::SimConfig {
        crate::sim::SimConfig {
            seed: self.seed,
            users: self.users,
            rate_limit_per_sec: self.tenant_rate_limit,
            token_ttl_secs: self.token_ttl,
            faults: crate::sim::Faults {
                http_500: self.fault_500,
                code_1225000: self.fault_1225000,
                burst_429: self.fault_429_burst,
                slow: self.fault_slow,
                slow_ms: self.slow_ms,
                drop_connection: self.fault_drop,
                malformed_json: self.fault_malformed,
            },
            ..crate::sim::SimConfig::default()
        }
    }
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
}

/// Reads the app's credentials from FEISHU_APP_ID / FEISHU_APP_SECRET.
pub fn credentials_from_env() -> Result<Credentials, ConfigError> {
    let get = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::MissingEnv(name))
    };
    Ok(Credentials {
        app_id: get("FEISHU_APP_ID")?,
        app_secret: get("FEISHU_APP_SECRET")?,
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

/// Today in UTC: never later than the platform's (China Standard Time) today, so `today + 1` is
/// always a date the platform accepts.
pub fn platform_today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}
