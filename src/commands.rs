//! The binary's commands: everything that prints, and the mapping of errors to exit codes.

use std::process::ExitCode;

use anyhow::Context;
use attendance_sync::cli::{self, BackfillArgs, ConfigError, DemoArgs, SimulateArgs, UsersFrom};
use attendance_sync::platform::{Client, Credentials};
use attendance_sync::run::{self, BackfillRequest, RunError, Users};
use attendance_sync::sim::SimTenant;
use attendance_sync::users::{self, UsersFileError};
use chrono::Days;

/// Exit code of usage and configuration errors.
const EXIT_USAGE: u8 = 2;

/// Prints a clap error as one line (help and version go to stdout with exit 0).
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(EXIT_USAGE)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("{} (see --help)", line.join(" "));
    ExitCode::from(EXIT_USAGE)
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Exit code of an error that ended a command.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    if let Some(run) = e.downcast_ref::<RunError>() {
        return run.exit_code();
    }
    if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<UsersFileError>().is_some() {
        return EXIT_USAGE;
    }
    1
}

/// What went wrong in a run, as the last line on stderr (for cron mails and log scrapers).
fn report_fatal(summary: &run::RunSummary) {
    if let Some(problem) = summary.problem() {
        eprintln!("error: {problem}");
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn backfill(args: BackfillArgs) -> anyhow::Result<u8> {
    let credentials = cli::credentials_from_env()?;
    let config = cli::client_config(&args.base_url, credentials, &args.client)?;
    let users = match (&args.users_file, args.users_from) {
        (Some(path), _) => Users::List(users::read_users_file(path)?),
        (None, UsersFrom::Groups) => Users::Groups,
        (None, UsersFrom::Contact) => Users::Contact,
    };
    let request = BackfillRequest {
        from: args.from,
        to: args.to,
        users,
        employee_type: args.employee_type,
        statuses: args.statuses,
        out: args.out,
        today: cli::platform_today(),
        concurrency: args.client.concurrency,
        restart: args.restart,
        lease_ttl: std::time::Duration::from_secs(args.lease_ttl.max(3)),
    };
    let client = Client::new(config)?;
    let summary = runtime()?.block_on(run::backfill(&client, &request))?;
    print!("{summary}");
    report_fatal(&summary);
    Ok(summary.exit_code())
}

/// Starts the simulated tenant of `args` and refuses the users it asks for.
async fn start_tenant(args: &cli::TenantArgs) -> anyhow::Result<SimTenant> {
    let tenant = SimTenant::start(args.sim_config())
        .await
        .context("cannot start the simulated tenant on 127.0.0.1")?;
    if args.refuse_users > 0 {
        let ids = tenant.user_ids("employee_id").unwrap_or_default();
        let generated = args.users.min(ids.len());
        let step = (generated / args.refuse_users.min(generated).max(1)).max(1);
        let refused = ids[..generated]
            .iter()
            .step_by(step)
            .take(args.refuse_users)
            .cloned()
            .collect();
        tenant.set_refused_users(refused);
    }
    Ok(tenant)
}

pub fn demo(args: DemoArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    rt.block_on(async {
        let tenant = start_tenant(&args.tenant).await?;
        println!("simulated tenant listening on {}", tenant.base_url());
        let sim_config = tenant.config().clone();
        let credentials = Credentials {
            app_id: sim_config.app_id.clone(),
            app_secret: sim_config.app_secret.clone(),
        };
        let config = cli::client_config(&tenant.base_url(), credentials, &args.client)?;
        let client = Client::new(config)?;
        let today = cli::platform_today();
        let request = BackfillRequest {
            from: today - Days::new(u64::from(args.days.max(1)) - 1),
            to: today,
            users: Users::Groups,
            employee_type: attendance_sync::plan::EmployeeType::EmployeeId,
            statuses: args.statuses.clone(),
            out: args.out.clone(),
            today,
            concurrency: args.client.concurrency,
            restart: false,
            lease_ttl: std::time::Duration::from_secs(120),
        };
        let summary = run::backfill(&client, &request).await?;
        let stats = tenant.stats();
        print!("{summary}");
        println!(
            "  {:<18} {} query calls, {} list calls, {} token calls, {} answered 429, {} faults injected",
            "tenant saw",
            stats.query_calls,
            stats.group_list_calls + stats.list_user_calls,
            stats.token_calls,
            stats.rate_limited,
            stats.faults_injected
        );
        println!(
            "\nQuery it, e.g.: duckdb -c \"SELECT date, count(*) FROM read_parquet('{}/leaves/*/*.parquet', hive_partitioning=true) GROUP BY date ORDER BY date\"",
            args.out
        );
        report_fatal(&summary);
        tenant.shutdown().await;
        Ok(summary.exit_code())
    })
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    rt.block_on(async {
        let tenant = start_tenant(&args.tenant).await?;
        let config = tenant.config().clone();
        if let Some(path) = &args.users_out {
            let ids = tenant.user_ids("employee_id").unwrap_or_default();
            std::fs::write(path, ids.join("\n") + "\n")
                .with_context(|| format!("cannot write --users-out {}", path.display()))?;
        }
        println!("simulated tenant on {}", tenant.base_url());
        // The simulated tenant's built-in, public test credentials: nothing real to protect.
        println!(
            "credentials: FEISHU_APP_ID={} FEISHU_APP_SECRET={}",
            config.app_id, config.app_secret
        );
        println!("press Ctrl-C to stop");
        std::future::pending::<()>().await;
        Ok(0)
    })
}
