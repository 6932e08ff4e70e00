//! The `events serve` and `events connect` commands: secrets from the environment or files, the
//! root, the listeners, SIGTERM, and the closing line.

use std::sync::Arc;

use anyhow::Context;
use attendance_events::webhook;
use attendance_events::{Landing, LongConnection, Metrics, Secrets, WebhookReceiver};
use attendance_feishu::Client;
use attendance_lake::store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{
    self, ClientArgs, CompactArgs, ConfigError, ConnectArgs, ReceiverArgs, ServeArgs,
};
use crate::commands::{runtime, stop_signal};
use crate::exit::ExitStatus;

/// This receiver's name in what it lands: `--receiver-id`, else host name and process id.
fn receiver_id(args: &ReceiverArgs) -> String {
    args.receiver_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            attendance_lake::lease::host_name(),
            std::process::id()
        )
    })
}

/// The landing of `--out`, checked to be writable.
async fn landing_of(args: &ReceiverArgs) -> anyhow::Result<Landing> {
    let store = Store::open(&args.out)?;
    store.check().await?;
    Ok(Landing::new(store, receiver_id(args)))
}

/// With `--compact-every`: compacts the root's landed events every interval until `stop`, a
/// round at a time; a round that finds another compactor at work is skipped, one that fails is
/// logged and the next one tries again (the receiver keeps landing either way).
fn spawn_compactor(
    args: &ReceiverArgs,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(every) = args.compact_every else {
        return Ok(None);
    };
    let store = Arc::new(Store::open(&args.out)?);
    let zone = attendance_core::tz::zone(Some(args.time_zone.name()))
        .expect("--time-zone is parsed as an IANA name");
    Ok(Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let run_id = attendance_pull::run::new_run_id(chrono::Utc::now());
            let ttl = std::time::Duration::from_secs(120);
            match attendance_events::compact::compact(Arc::clone(&store), &run_id, ttl, zone).await
            {
                Ok(summary) => tracing::info!(
                    events = summary.events,
                    new_rows = summary.new_rows,
                    state_partitions_written = summary.state_written.len(),
                    state_partitions_removed = summary.state_deleted.len(),
                    unreadable = summary.unreadable.len(),
                    "compacted the landed events"
                ),
                Err(attendance_events::compact::CompactError::Lease(
                    attendance_lake::lease::LeaseError::Held { holder, .. },
                )) => tracing::info!(
                    holder = %holder.run_id,
                    "another compactor is at work on this root; skipping this round"
                ),
                Err(e) => tracing::error!(
                    error = %attendance_core::chain::Chain(&e),
                    "compaction failed; the next round tries again"
                ),
            }
        }
    })))
}

/// A watch that turns true on SIGTERM or Ctrl-C.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stop requested: finishing the deliveries in flight");
        let _ = stop.send(true);
    });
    stopped
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitStatus> {
    let token = cli::secret(
        "FEISHU_VERIFICATION_TOKEN",
        "--verification-token-file",
        args.verification_token_file.as_deref(),
    )?
    .ok_or(ConfigError::MissingSecret(
        "FEISHU_VERIFICATION_TOKEN",
        "Verification Token",
    ))?;
    let key = cli::secret(
        "FEISHU_ENCRYPT_KEY",
        "--encrypt-key-file",
        args.encrypt_key_file.as_deref(),
    )?;
    // axum reads `:name`, `*name` and `{name}` as parameters (and refuses some at start-up):
    // the endpoint is a plain path.
    if !args.path.starts_with('/')
        || args.path.contains([':', '*', '{', '}', '?', '#'])
        || args.path == "/healthz"
        || args.path == "/metrics"
    {
        return Err(ConfigError::BadPath(args.path.clone()).into());
    }
    runtime()?.block_on(async {
        let landing = landing_of(&args.receiver).await?;
        let secrets = Secrets::new(token, key.as_deref());
        let metrics = Metrics::new();
        let receiver = WebhookReceiver::new(landing, secrets.clone(), metrics.clone());
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            path = args.path,
            encrypted = secrets.encrypts(),
            out = args.receiver.out,
            "webhook receiver listening"
        );
        // The one line a supervisor or a test reads to find the port of `--listen …:0`.
        println!("listening on http://{addr}{}", args.path);
        let stop = stop_on_signal();
        let compactor = spawn_compactor(&args.receiver, stop.clone())?;
        webhook::serve(listener, receiver, &args.path, stop)
            .await
            .context("the webhook receiver stopped serving")?;
        if let Some(compactor) = compactor {
            let _ = compactor.await;
        }
        let totals = metrics.totals();
        println!(
            "stopped: {} events landed, {} duplicate deliveries, {} refused",
            totals.landed, totals.duplicates, totals.refused
        );
        Ok(ExitStatus::Success)
    })
}

pub fn connect(args: ConnectArgs) -> anyhow::Result<ExitStatus> {
    let credentials = cli::credentials(args.app_secret_file.as_deref())?;
    let client_args = ClientArgs {
        rate_limit: 50,
        concurrency: 1,
        request_timeout: 30,
    };
    let config = cli::client_config(&args.base_url, credentials, &client_args)?;
    runtime()?.block_on(async {
        let client = Arc::new(Client::new(config)?);
        let landing = landing_of(&args.receiver).await?;
        let metrics = Metrics::new();
        let ops = TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("cannot listen on --metrics-listen {}", args.metrics_listen))?;
        let ops_addr = ops.local_addr()?;
        let ops_router = webhook::ops_router(metrics.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(ops, ops_router).await {
                tracing::warn!(%err, "the metrics endpoint stopped");
            }
        });
        println!("metrics on http://{ops_addr}/metrics");
        let receiver = LongConnection::new(client, landing, metrics.clone());
        let stop = stop_on_signal();
        let compactor = spawn_compactor(&args.receiver, stop.clone())?;
        let summary = receiver.run(stop).await?;
        if let Some(compactor) = compactor {
            let _ = compactor.await;
        }
        println!(
            "stopped: {} connections, {} events landed, {} duplicate deliveries, {} not landed (answered 500)",
            summary.connections, summary.landed, summary.duplicates, summary.failed
        );
        Ok(ExitStatus::Success)
    })
}

pub fn compact(args: CompactArgs) -> anyhow::Result<ExitStatus> {
    // A one-shot run frees and allocates again its chunks' memory, a chunk about a second.
    #[cfg(not(windows))]
    crate::allocator::hand_back_freed_pages_after(std::time::Duration::from_secs(1));
    runtime()?.block_on(async {
        let store = Arc::new(Store::open(&args.out)?);
        store.check().await?;
        let run_id = attendance_pull::run::new_run_id(chrono::Utc::now());
        let ttl = std::time::Duration::from_secs(args.lease_ttl.max(3));
        let zone = attendance_core::tz::zone(Some(args.time_zone.name()))
            .expect("--time-zone is parsed as an IANA name");
        let summary = attendance_events::compact::compact(store, &run_id, ttl, zone).await?;
        print!("{}", compact_report(&summary, &args.out));
        Ok(ExitStatus::Success)
    })
}

/// What a compaction did, as printed.
pub fn compact_report(summary: &attendance_events::compact::CompactSummary, out: &str) -> String {
    use attendance_core::event_state::EventTable;
    use std::fmt::Write as _;
    let mut text = format!(
        "compacted {} deliveries (from {} journals and {} inbox objects no journal held): {} new rows of approval_events in {} partitions\n",
        summary.events,
        summary.journals,
        summary.inbox_objects,
        summary.new_rows,
        summary.partitions.len(),
    );
    let state = &summary.state;
    let rows = |t: EventTable| state.rows.get(&t).copied().unwrap_or(0);
    let _ = writeln!(
        text,
        "  approvals        {} out_events, {} leave_events, {} overtime_events rows ({} reverted); {} partitions written, {} removed",
        rows(EventTable::Out),
        rows(EventTable::Leave),
        rows(EventTable::Overtime),
        state.reverted,
        summary.state_written.len(),
        summary.state_deleted.len(),
    );
    let _ = writeln!(
        text,
        "  time zones       {} rows read in the default zone (applicant not seen by the pull yet), {} needed the DST rule",
        state.default_zone, state.dst_adjusted
    );
    if state.pending_reverts > 0 {
        let _ = writeln!(
            text,
            "  pending          {} reverts whose approval event has not arrived (no row until it does)",
            state.pending_reverts
        );
    }
    if !summary.unreadable.is_empty() {
        let _ = writeln!(
            text,
            "  rejects          {} events unreadable, kept aside in {}/{}",
            summary.unreadable.len(),
            out.trim_end_matches('/'),
            attendance_events::compact::EVENT_REJECTS_PATH
        );
        for (id, why) in summary.unreadable.iter().take(10) {
            let _ = writeln!(text, "    event {id}: {why}");
        }
    }
    text
}

/// What the demo's day of events came to.
#[cfg(feature = "sim")]
pub struct EventsDemo {
    /// Events the tenant sent (each over both transports).
    pub sent: usize,
    /// Of them, revert events (approvals revoked earlier, and one revoked during the demo).
    pub reverts: usize,
    /// Webhook deliveries made (duplicates and retries included) and long-connection frames.
    pub webhook_deliveries: u64,
    pub long_connection_frames: u64,
    /// What the receivers did: landed (first deliveries) and duplicates, over both transports.
    pub totals: attendance_events::ReceiverTotals,
    /// Landed events of this demo, by event type, and by the transport that landed each.
    pub by_type: std::collections::BTreeMap<String, usize>,
    pub by_transport: std::collections::BTreeMap<String, usize>,
    /// Events sent but not found landed (never expected: the demo fails on any).
    pub missing: usize,
}

/// The demo's events: a webhook receiver and a long connection, both landing on `out`, and the
/// simulated tenant pushing a day of its approval events (and one revoke) over each.
#[cfg(feature = "sim")]
pub async fn demo_events(
    tenant: &attendance_sim::SimTenant,
    out: &str,
    day: chrono::NaiveDate,
) -> anyhow::Result<EventsDemo> {
    use attendance_events::webhook::DEFAULT_PATH;
    use attendance_feishu::{ClientConfig, Credentials};
    use std::collections::{BTreeMap, BTreeSet};

    let config = tenant.config().clone();
    let landing = Landing::new(Store::open(out)?, "demo");
    landing.store().check().await?;
    let metrics = Metrics::new();
    let secrets = Secrets::new(
        config.events.verification_token.clone(),
        config.events.encrypt_key.as_deref(),
    );
    let receiver = WebhookReceiver::new(landing.clone(), secrets, metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1 for the demo's webhook receiver")?;
    let url = format!("http://{}{DEFAULT_PATH}", listener.local_addr()?);
    let (stop, stopped) = watch::channel(false);
    let webhook = tokio::spawn({
        let stopped = stopped.clone();
        async move { webhook::serve(listener, receiver, DEFAULT_PATH, stopped).await }
    });
    let client = Arc::new(Client::new(ClientConfig::new(
        tenant.base_url(),
        Credentials {
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
        },
    ))?);
    let long_connection = Arc::new(LongConnection::new(
        client,
        landing.clone(),
        metrics.clone(),
    ));
    let connected = tokio::spawn({
        let long_connection = Arc::clone(&long_connection);
        async move { long_connection.run(stopped).await }
    });

    let mut events = tenant.approval_events(day, day);
    // One approval of the day is revoked: its revert follows it.
    let revoked = events
        .iter()
        .find(|e| e.event_type == attendance_feishu::event::OUT_APPROVAL)
        .map(|e| e.instance_code.clone());
    if let Some(revert) = revoked.and_then(|code| tenant.revoke(&code)) {
        events.push(revert);
    }
    let reverts = events
        .iter()
        .filter(|e| e.event_type.ends_with("_revert"))
        .count();
    // Both transports at once: whichever delivery of an event comes first lands it.
    tenant.push_long_connection(events.clone());
    let report = tenant.push_webhook(&url, events.clone()).await;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let all_acked = tenant
        .wait_long_connection_acked(&ids, std::time::Duration::from_secs(30))
        .await;
    let _ = stop.send(true);
    webhook
        .await?
        .context("the demo's webhook receiver failed")?;
    connected.await??;
    if !report.gave_up.is_empty() || !all_acked {
        anyhow::bail!(
            "the demo's receivers did not acknowledge every event ({} given up on the webhook; long connection complete: {all_acked})",
            report.gave_up.len()
        );
    }

    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut by_type = BTreeMap::new();
    let mut by_transport = BTreeMap::new();
    let mut found = 0;
    for event in attendance_lake::inbox::read_all(landing.store()).await? {
        if wanted.contains(event.id.as_str()) {
            found += 1;
            *by_type
                .entry(event.event_type.unwrap_or_default())
                .or_insert(0) += 1;
            *by_transport
                .entry(event.transport.as_str().to_owned())
                .or_insert(0) += 1;
        }
    }
    Ok(EventsDemo {
        sent: events.len(),
        reverts,
        webhook_deliveries: report.attempts,
        long_connection_frames: tenant.long_connection_stats().frames_sent,
        totals: metrics.totals(),
        by_type,
        by_transport,
        missing: wanted.len() - found,
    })
}
