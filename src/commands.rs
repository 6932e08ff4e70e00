//! The binary's commands: everything that prints, and the mapping of errors to exit codes.

use std::sync::Arc;

use anyhow::Context;
use attendance_core::chain::Chain;
use attendance_core::plan;
use attendance_feishu::Client;
#[cfg(feature = "sim")]
use attendance_feishu::Credentials;
use attendance_pull::summary::RunSummary;
use attendance_pull::users::{self, UsersFileError};
use attendance_pull::{BackfillRequest, Replay, RunError, RunProgress, Users};
use chrono::{Days, NaiveDate};
use tracing::Instrument;

use crate::cli::{
    self, BackfillArgs, JobArgs, LogFormat, PlanArgs, ReplayArgs, SyncArgs, UpgradeArgs, UsersFrom,
};
#[cfg(feature = "sim")]
use crate::cli::{DemoArgs, SimulateArgs};
use crate::exit::ExitStatus;
use crate::progress;
use crate::summary::Summary;

/// Prints a clap error as one line (help and version go to stdout with exit 0). An invalid value
/// that came from the job file names the file and the key.
pub fn usage_error(e: clap::Error, job_file: Option<&cli::JobFile>) -> ExitStatus {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitStatus::Usage
        } else {
            ExitStatus::Success
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
    ExitStatus::Usage
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

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub(crate) async fn stop_signal() {
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

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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

fn request_of(
    job: &JobArgs,
    from: NaiveDate,
    to: NaiveDate,
    users: Users,
    with_events: bool,
) -> BackfillRequest {
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
        spill: job.spill.config(),
        with_events,
        zone_aliases: Arc::new(job.zones.aliases()),
    }
}

/// Ends a run that started: its exit status, and its manifest, which records that status.
async fn conclude(mut summary: RunSummary) -> (RunSummary, ExitStatus) {
    let status = ExitStatus::of_run(&summary);
    // A line logged here still belongs to the run: it carries the run's id like the others.
    let span = tracing::info_span!("run", run_id = %summary.run_id);
    let written = attendance_pull::manifest::write(&summary, status.code())
        .instrument(span.clone())
        .await;
    match written {
        Ok(path) => summary.manifest = Some(path),
        Err(e) => span.in_scope(|| {
            tracing::error!(error = %Chain(&e), "could not write the run manifest");
        }),
    }
    (summary, status)
}

/// Concludes a run, prints its summary on stdout and what went wrong as the last line on
/// stderr.
async fn finish(summary: RunSummary) -> ExitStatus {
    let (summary, status) = conclude(summary).await;
    print!("{}", Summary(&summary));
    report_problem(&summary);
    status
}

pub fn upgrade(args: UpgradeArgs) -> anyhow::Result<ExitStatus> {
    runtime()?.block_on(async {
        let ttl = std::time::Duration::from_secs(args.lease_ttl.max(3));
        let summary = attendance_pull::upgrade::upgrade_root(&args.out, args.employee_type, ttl)
            .await?;
        let store = attendance_lake::store::Store::open(&args.out)?;
        let path = attendance_lake::runs::write_manifest(&store, &summary.run_id, &summary).await?;
        let mut by_table: std::collections::BTreeMap<&str, usize> = Default::default();
        for file in &summary.report.files {
            *by_table.entry(file.table.name()).or_default() += 1;
        }
        let tables: Vec<String> = by_table.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!(
            "upgrade {}: {} partition files rewritten in schema v{}{}, {} partitions already v{}, {} parts removed",
            summary.run_id,
            summary.report.files.len(),
            summary.schema_version,
            if tables.is_empty() {
                String::new()
            } else {
                format!(" ({})", tables.join(", "))
            },
            summary.report.partitions_already_current,
            summary.schema_version,
            summary.report.removed.len()
        );
        println!("  {:<18} {path}", "manifest");
        Ok(ExitStatus::Success)
    })
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitStatus> {
    let replay = Replay::open(&args.responses).map_err(RunError::from)?;
    let corpus = replay.corpus().clone();
    let request = BackfillRequest {
        from: corpus.from,
        to: corpus.to,
        users: Users::List(corpus.users.clone()),
        employee_type: corpus.employee_type,
        statuses: corpus.statuses.clone(),
        out: args.out,
        // The recording's own dates were accepted: nothing is clipped.
        today: corpus.to,
        concurrency: args.concurrency,
        restart: true,
        lease_ttl: std::time::Duration::from_secs(120),
        progress: Arc::new(RunProgress::default()),
        stop: Arc::default(),
        record_to: None,
        spill: args.spill.config(),
        with_events: false,
        zone_aliases: Arc::new(args.zones.aliases()),
    };
    runtime()?.block_on(async {
        let summary = attendance_pull::backfill(&replay, &request).await?;
        Ok(finish(summary).await)
    })
}

/// Runs a backfill request, with progress shown as the terminal allows.
fn run_job(job: &JobArgs, request: BackfillRequest, quiet: bool) -> anyhow::Result<ExitStatus> {
    if job.dry_run {
        return print_plan(job, &request, job.client.rate_limit);
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
    let summary = rt.block_on(attendance_pull::backfill(&client, &request));
    if let Some(r) = reporter {
        r.finish();
    }
    Ok(rt.block_on(finish(summary?)))
}

pub fn backfill(args: BackfillArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let users = users_of(&args.job)?;
    let request = request_of(&args.job, args.from, args.to, users, args.with_events);
    run_job(&args.job, request, quiet)
}

/// sync's trailing window: `days` dates ending today + 1 in the platform's zone.
fn trailing_window(job: &JobArgs, days: u32) -> (NaiveDate, NaiveDate) {
    let to = cli::platform_today(job.time_zone) + Days::new(1);
    (to - Days::new(u64::from(days.max(1)) - 1), to)
}

pub fn sync(args: SyncArgs, quiet: bool) -> anyhow::Result<ExitStatus> {
    let users = users_of(&args.job)?;
    let (from, to) = trailing_window(&args.job, args.days);
    let request = request_of(&args.job, from, to, users, !args.no_events);
    run_job(&args.job, request, quiet)
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitStatus> {
    let users = users_of(&args.job)?;
    let (from, to) = match (args.from, args.to) {
        (Some(from), Some(to)) => (from, to),
        _ => trailing_window(&args.job, args.days),
    };
    // Sync's plan includes the re-reads the landed events ask for; a backfill's does not.
    let with_events = args.from.is_none() && !args.no_events;
    let request = request_of(&args.job, from, to, users, with_events);
    print_plan(&args.job, &request, args.job.client.rate_limit)
}

/// Prints what a request would ask the platform. Lists users if it must (with the job's
/// credentials); never queries.
fn print_plan(
    job: &JobArgs,
    request: &BackfillRequest,
    rate_limit: u32,
) -> anyhow::Result<ExitStatus> {
    let client = match &request.users {
        // Nothing to list: no credentials needed to plan.
        Users::List(_) => None,
        _ => Some(client_of(job)?),
    };
    let users = runtime()?
        .block_on(users::resolve(
            client.as_ref(),
            &request.users,
            request.employee_type,
            request.concurrency,
        ))
        .map_err(RunError::from)?;
    let source = request.users.source_name();
    let mut plan = request.plan(&users).map_err(RunError::from)?;
    // The re-reads of landed events, as far as the root can be read from here: a plan never
    // needs the root otherwise, and says so instead of failing when it cannot be reached.
    let resync = if request.with_events {
        let read = match attendance_lake::store::Store::open(&request.out) {
            Ok(store) => runtime()?.block_on(attendance_pull::resync::ResyncPlan::read(
                &store,
                plan.range(),
                request.employee_type,
                request.today,
            )),
            Err(e) => Err(e),
        };
        match read {
            Ok(resync) => {
                plan.extra = resync.extra_windows();
                Some(Ok(resync))
            }
            Err(e) => Some(Err(e)),
        }
    } else {
        None
    };
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
            plan::MAX_USERS_PER_QUERY
        ),
    );
    if let Some(Err(e)) = &resync {
        w(
            "events",
            format!("not read ({}): the sync re-reads what they name", Chain(e)),
        );
    }
    if let Some(Ok(resync)) = &resync {
        w(
            "events",
            format!(
                "{} landed since the last sync: {} windows outside the dates re-read for their users, {} unresolved reverts, {} unreadable",
                resync.considered,
                plan.extra.len(),
                resync.unresolved.len(),
                resync.unreadable.len()
            ),
        );
        for extra in &plan.extra {
            let users: usize = extra.batches.iter().map(Vec::len).sum();
            w("  re-read", format!("{} for {users} users", extra.window));
        }
    }
    let statuses: Vec<String> = plan.statuses.iter().map(|s| s.code().to_string()).collect();
    w("statuses", statuses.join(","));
    let requests = plan.requests();
    let seconds = requests as f64 / f64::from(rate_limit.max(1));
    w(
        "requests",
        format!("{requests} queries, about {seconds:.0} s at {rate_limit}/s (plus retries)"),
    );
    w("output", request.out.clone());
    Ok(ExitStatus::Success)
}

/// What went wrong in a run, as the last line on stderr (for cron mails and log scrapers).
fn report_problem(summary: &RunSummary) {
    if let Some(problem) = summary.problem() {
        eprintln!("error: {problem}");
    }
}

/// Starts the simulated tenant of `args` and refuses the users it asks for.
#[cfg(feature = "sim")]
async fn start_tenant(args: &cli::TenantArgs) -> anyhow::Result<attendance_sim::SimTenant> {
    use attendance_sim::SimTenant;
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

#[cfg(feature = "sim")]
pub fn demo(args: DemoArgs) -> anyhow::Result<ExitStatus> {
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
            employee_type: attendance_core::plan::EmployeeType::EmployeeId,
            statuses: args.statuses.clone(),
            out: args.out.clone(),
            today,
            concurrency: args.client.concurrency,
            restart: false,
            lease_ttl: std::time::Duration::from_secs(120),
            progress: Arc::new(RunProgress::default()),
            stop: Arc::default(),
            record_to: args.record_responses.clone(),
            spill: args.spill.config(),
            with_events: false,
            zone_aliases: Arc::default(),
        };
        let summary = attendance_pull::backfill(&client, &request).await?;
        let (summary, status) = conclude(summary).await;
        let stats = tenant.stats();
        print!("{}", Summary(&summary));
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
        report_problem(&summary);

        // The records kept aside for a zone no rule reads, read again with the alias this
        // tenant's team knows; the other names in no table stay aside.
        let mut zone_aliases = attendance_core::tz::ZoneAliases::default();
        zone_aliases
            .insert("Asia/Beijing", "Asia/Shanghai")
            .expect("an IANA name");
        let replay = attendance_pull::rejects_replay::RejectsReplayRequest {
            out: args.out.clone(),
            from: None,
            to: None,
            employee_type: attendance_core::plan::EmployeeType::EmployeeId,
            zone_aliases: Arc::new(zone_aliases),
            lease_ttl: std::time::Duration::from_secs(120),
        };
        let (report, stopped) = crate::rejects::replay(&replay).await?;
        print!(
            "\n{}",
            report.replacen(
                "rejects replay",
                "rejects replay --zone-alias Asia/Beijing=Asia/Shanghai,",
                1
            )
        );
        if let Some(e) = stopped {
            return Err(e.into());
        }

        let events = crate::events::demo_events(&tenant, &args.out, today).await?;
        println!(
            "\nevents of {today}: the tenant pushed {} ({} approvals, {} reverts) by webhook ({} deliveries, encrypted, some twice) and over the long connection ({} frames)",
            events.sent,
            events.sent - events.reverts,
            events.reverts,
            events.webhook_deliveries,
            events.long_connection_frames,
        );
        println!(
            "  {:<22} {} events, each once ({} duplicate deliveries acknowledged, nothing written), under {}/_events/inbox/",
            "landed",
            events.totals.landed,
            events.totals.duplicates,
            args.out.trim_end_matches('/')
        );
        for (event_type, count) in &events.by_type {
            println!("  {event_type:<22} {count}");
        }
        let transports: Vec<String> = events
            .by_transport
            .iter()
            .map(|(transport, count)| format!("{count} by {transport}"))
            .collect();
        println!("  {:<22} {}", "first arrived", transports.join(", "));
        // The landed events as tables, local times read in each user's zone from the pull above.
        let store = Arc::new(attendance_lake::store::Store::open(&args.out)?);
        let compacted = attendance_events::compact::compact(
            store,
            &attendance_pull::run::new_run_id(chrono::Utc::now()),
            std::time::Duration::from_secs(120),
            attendance_core::tz::zone(Some("Asia/Shanghai")).expect("an IANA name"),
        )
        .await?;
        print!(
            "\nevents compact: {}",
            crate::events::compact_report(&compacted, &args.out)
        );
        let external =
            crate::external::demo_round(&tenant, &client, &args.out, args.client.concurrency)
                .await?;
        print!("\nthird-party approvals, synced from another HR system:\n{external}");
        tenant.shutdown().await;
        if events.missing > 0 {
            anyhow::bail!("{} events sent were not landed", events.missing);
        }
        Ok(status)
    })
}

#[cfg(feature = "sim")]
pub fn simulate(args: SimulateArgs) -> anyhow::Result<ExitStatus> {
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
        Ok(ExitStatus::Success)
    })
}
