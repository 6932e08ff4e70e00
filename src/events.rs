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

use crate::cli::{self, ClientArgs, ConfigError, ConnectArgs, ReceiverArgs, ServeArgs};
use crate::commands::{runtime, stop_signal};
use crate::exit::ExitStatus;

/// This receiver's name in what it lands: `--receiver-id`, else host name and process id.
fn receiver_id(args: &ReceiverArgs) -> String {
    args.receiver_id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "receiver".into());
        format!("{host}-{}", std::process::id())
    })
}

/// The landing of `--out`, checked to be writable.
async fn landing_of(args: &ReceiverArgs) -> anyhow::Result<Landing> {
    let store = Store::open(&args.out)?;
    store.check().await?;
    Ok(Landing::new(store, receiver_id(args)))
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
    if !args.path.starts_with('/') {
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
        webhook::serve(listener, receiver, &args.path, stop)
            .await
            .context("the webhook receiver stopped serving")?;
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
        let summary = receiver.run(stop).await?;
        println!(
            "stopped: {} connections, {} events landed, {} duplicate deliveries, {} not landed (answered 500)",
            summary.connections, summary.landed, summary.duplicates, summary.failed
        );
        Ok(ExitStatus::Success)
    })
}
