//! The binary's commands: everything that prints, and the mapping of errors to exit codes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use attendance_sync::cli::{
    self, BackfillArgs, ConfigError, DemoArgs, JobArgs, LogFormat, PlanArgs, ReplayArgs,
    SimulateArgs, SyncArgs, UsersFrom,
};
use attendance_sync::platform::{Client, Credentials};
use attendance_sync::run::{self, BackfillRequest, RunError, RunProgress, Users};
use attendance_sync::sim::SimTenant;
use attendance_sync::users::{self, UsersFileError};
use chrono::{Days, NaiveDate};

use crate::progress;

/// Exit code of usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;

/// Prints a clap error as one line (help and version go to stdout with exit 0). An invalid value
/// that came from the job file names the file and the key.
pub fn usage_error(e: clap::Error, job_file: Option<&cli::JobFile>) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
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
    let from_file = job_file.and_then(|f| {
        let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
            return None;
        };
        let long = arg.split_whitespace().next()?.trim_start_matches("--");
        let key = long.replace('-', "_");
        f.keys
            .contains(&key)
            .then(|| format!("job file {}, key '{key}': ", f.path.display()))
    });
    eprintln!(
        "{}{} (see --help)",
        from_file.unwrap_or_default(),
        line.join(" ")
    );
    ExitCode::from(EXIT_USAGE)
}

pub fn init_logging(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
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

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The users a job's flags ask for.
fn users_of(job: &JobArgs) -> Result<Users, UsersFileError> {
    Ok(match (&job.users_file, job.users_from) {
        (Some(path), _) => Users::List(users::read_users_file(path)?),
        (None, UsersFrom::Groups) => Users::Groups,
        (None, UsersFrom::Contact) => Users::Contact,
    })
}

fn client_of(job: &JobArgs) -> anyhow::Result<Client> {
    let credentials = cli::credentials(job.app_secret_file.as_deref())?;
    let config = cli::client_config(&job.base_url, credentials, &job.client)?;
    Ok(Client::new(config)?)
}

fn request_of(job: &JobArgs, from: NaiveDate, to: NaiveDate, users: Users) -> BackfillRequest {
    BackfillRequest {
        from,
        to,
        users,
        employee_type: job.employee_type,
        statuses: job.statuses.clone(),
        out: job.out.clone(),
        today: cli::platform_today(job.time_zone),
        concurrency: job.client.concurrency,
        restart: job.restart,
        lease_ttl: std::time::Duration::from_secs(job.lease_ttl.max(3)),
        progress: Arc::new(RunProgress::default()),
        stop: Arc::default(),
        record_to: job.record_responses.clone(),
        replay: None,
        spill: job.spill.config(),
    }
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let replay = Arc::new(
        attendance_sync::recording::Replay::open(&args.responses).map_err(RunError::from)?,
    );
    let corpus = replay.corpus.clone();
    let statuses = corpus
        .statuses
        .iter()
        .filter_map(|c| attendance_sync::plan::Status::new(*c))
        .collect();
    let request = BackfillRequest {
        from: corpus.from,
        to: corpus.to,
        users: Users::List(corpus.users.clone()),
        employee_type: corpus.employee_type,
        statuses,
        out: args.out,
        // The recording's own dates were accepted: nothing is clipped.
        today: corpus.to,
        concurrency: args.concurrency,
        restart: true,
        lease_ttl: std::time::Duration::from_secs(120),
        progress: Arc::new(RunProgress::default()),
        stop: Arc::default(),
        record_to: None,
        replay: Some(replay),
        spill: args.spill.config(),
    };
    // Never called: every answer comes from the recording.
    let client = offline_client()?;
    let summary = runtime()?.block_on(run::backfill(&client, &request))?;
    print!("{summary}");
    report_fatal(&summary);
    Ok(summary.exit_code())
}

/// Runs a backfill request, with progress shown as the terminal allows.
fn run_job(job: &JobArgs, request: BackfillRequest, quiet: bool) -> anyhow::Result<u8> {
    if job.dry_run {
        let client = match &request.users {
            Users::List(_) => offline_client()?,
            _ => client_of(job)?,
        };
        return print_plan(&client, &request, job.client.rate_limit);
    }
    let client = client_of(job)?;
    let reporter = (!quiet).then(|| progress::Reporter::spawn(Arc::clone(&request.progress)));
    let rt = runtime()?;
    let stop = Arc::clone(&request.stop);
    rt.spawn(async move {
        stop_signal().await;
        tracing::warn!("stop requested: finishing the commits under way, then releasing the lease");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let summary = rt.block_on(run::backfill(&client, &request));
    if let Some(r) = reporter {
        r.finish();
    }
    let summary = summary?;
    print!("{summary}");
    report_fatal(&summary);
    Ok(summary.exit_code())
}

pub fn backfill(args: BackfillArgs, quiet: bool) -> anyhow::Result<u8> {
    let users = users_of(&args.job)?;
    let request = request_of(&args.job, args.from, args.to, users);
    run_job(&args.job, request, quiet)
}

/// sync's trailing window: `days` dates ending today + 1 in the platform's zone.
fn trailing_window(job: &JobArgs, days: u32) -> (NaiveDate, NaiveDate) {
    let to = cli::platform_today(job.time_zone) + Days::new(1);
    (to - Days::new(u64::from(days.max(1)) - 1), to)
}

pub fn sync(args: SyncArgs, quiet: bool) -> anyhow::Result<u8> {
    let users = users_of(&args.job)?;
    let (from, to) = trailing_window(&args.job, args.days);
    let request = request_of(&args.job, from, to, users);
    run_job(&args.job, request, quiet)
}

pub fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    let users = users_of(&args.job)?;
    let (from, to) = match (args.from, args.to) {
        (Some(from), Some(to)) => (from, to),
        _ => trailing_window(&args.job, args.days),
    };
    let request = request_of(&args.job, from, to, users);
    let client = match &request.users {
        // Nothing to list: no credentials needed to plan.
        Users::List(_) => offline_client()?,
        _ => client_of(&args.job)?,
    };
    print_plan(&client, &request, args.job.client.rate_limit)
}

/// A client that is never asked anything (plans over a users file, replays).
fn offline_client() -> anyhow::Result<Client> {
    let offline = Credentials {
        app_id: "offline".into(),
        app_secret: "offline".into(),
    };
    let mut config = attendance_sync::platform::ClientConfig::new("http://127.0.0.1:9", offline);
    config.rate_limit_per_sec = 1_000_000;
    Ok(Client::new(config)?)
}

/// Prints what a request would ask the platform. Lists users if it must; never queries.
fn print_plan(client: &Client, request: &BackfillRequest, rate_limit: u32) -> anyhow::Result<u8> {
    let (users, source) = runtime()?.block_on(run::resolve_users(
        client,
        &request.users,
        request.employee_type,
        request.concurrency,
    ))?;
    let plan = attendance_sync::plan::plan(
        request.from,
        request.to,
        &users,
        &request.statuses,
        request.today,
    )
    .map_err(RunError::from)?;
    let w = |k: &str, v: String| println!("  {k:<18} {v}");
    println!("plan (nothing was queried)");
    if let Some(c) = plan.clipped {
        w(
            "range clipped",
            format!(
                "--to {} → {} (the platform's today + 1)",
                c.requested_to, c.clipped_to
            ),
        );
    }
    let (first, last) = (plan.windows[0], plan.windows[plan.windows.len() - 1]);
    w(
        "dates",
        format!(
            "{}..{} in {} windows",
            first.from,
            last.to,
            plan.windows.len()
        ),
    );
    for window in &plan.windows {
        w("  window", window.to_string());
    }
    w(
        "users",
        format!(
            "{} from {source} in {} batches of at most {}",
            plan.users(),
            plan.batches.len(),
            attendance_sync::plan::MAX_USERS_PER_QUERY
        ),
    );
    let statuses: Vec<String> = plan.statuses.iter().map(|s| s.code().to_string()).collect();
    w("statuses", statuses.join(","));
    let requests = plan.requests();
    let seconds = requests as f64 / f64::from(rate_limit.max(1));
    w(
        "requests",
        format!("{requests} queries, about {seconds:.0} s at {rate_limit}/s (plus retries)"),
    );
    w("output", request.out.clone());
    Ok(0)
}

/// What went wrong in a run, as the last line on stderr (for cron mails and log scrapers).
fn report_fatal(summary: &run::RunSummary) {
    if let Some(problem) = summary.problem() {
        eprintln!("error: {problem}");
    }
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
        let today = cli::platform_today(chrono_tz::Asia::Shanghai);
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
            progress: Arc::new(RunProgress::default()),
            stop: Arc::default(),
            record_to: args.record_responses.clone(),
            replay: None,
            spill: args.spill.config(),
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
