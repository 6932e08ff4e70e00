//! The `external push|check|pull|load` commands: flags into requests, the
//! summaries printed, outcomes into exit codes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use attendance_external::check::{self, CheckRequest, CheckSummary};
use attendance_external::intake::IntakeReport;
use attendance_external::load::{self, LoadRequest, LoadSummary};
use attendance_external::pull::{self, PullRequest, PullSummary};
use attendance_external::push::{self, PushRequest, PushSummary};
use attendance_feishu::Client;
use attendance_lake::store::Store;

use crate::cli::{
    self, ExternalCheckArgs, ExternalLoadArgs, ExternalPullArgs, ExternalPushArgs, PlatformArgs,
};
use crate::commands::runtime;
use crate::exit::ExitStatus;

fn client_of(args: &PlatformArgs) -> anyhow::Result<Client> {
    let credentials = cli::credentials(args.app_secret_file.as_deref())?;
    let config = cli::client_config(&args.base_url, credentials, &args.client)?;
    Ok(Client::new(config)?)
}

pub(crate) async fn root(out: &str) -> anyhow::Result<Arc<Store>> {
    let store = Store::open(out)?;
    store.check().await?;
    Ok(Arc::new(store))
}

fn run_id() -> String {
    attendance_pull::run::new_run_id(chrono::Utc::now())
}

pub fn push(args: ExternalPushArgs) -> anyhow::Result<ExitStatus> {
    let client = client_of(&args.platform)?;
    runtime()?.block_on(async {
        let store = root(&args.instances.out).await?;
        let request = PushRequest {
            source: args.instances.instances.clone(),
            run_id: run_id(),
            force: args.force,
            concurrency: args.platform.client.concurrency,
        };
        let summary = push::push(&client, store, &request).await?;
        print!("{}", push_report(&summary, &args.instances.out));
        Ok(if summary.is_partial() {
            ExitStatus::Partial
        } else {
            ExitStatus::Success
        })
    })
}

pub fn check(args: ExternalCheckArgs) -> anyhow::Result<ExitStatus> {
    let client = client_of(&args.platform)?;
    runtime()?.block_on(async {
        let store = root(&args.instances.out).await?;
        let request = CheckRequest {
            source: args.instances.instances.clone(),
            run_id: run_id(),
            lease_ttl: Duration::from_secs(args.lease_ttl.max(3)),
            concurrency: args.platform.client.concurrency,
        };
        let summary = check::check(&client, store, &request).await?;
        print!("{}", check_report(&summary, &args.instances.out));
        Ok(
            if summary.diffs.is_empty() && summary.intake.rejected == 0 {
                ExitStatus::Success
            } else {
                ExitStatus::Partial
            },
        )
    })
}

pub fn pull(args: ExternalPullArgs) -> anyhow::Result<ExitStatus> {
    let client = client_of(&args.platform)?;
    runtime()?.block_on(async {
        let store = root(&args.out).await?;
        let request = PullRequest {
            approval_codes: args.approval_codes.clone(),
            status: args.status.clone(),
            user_ids: args.user_ids.clone(),
            run_id: run_id(),
            lease_ttl: Duration::from_secs(args.lease_ttl.max(3)),
        };
        let summary = pull::pull(&client, store, &request).await?;
        print!("{}", pull_report(&summary, &args.out));
        Ok(ExitStatus::Success)
    })
}

pub fn load(args: ExternalLoadArgs) -> anyhow::Result<ExitStatus> {
    runtime()?.block_on(async {
        let store = root(&args.instances.out).await?;
        let request = LoadRequest {
            source: args.instances.instances.clone(),
            time_zone: args.time_zone,
            run_id: run_id(),
            lease_ttl: Duration::from_secs(args.lease_ttl.max(3)),
            spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            full: args.full,
        };
        let summary = load::load(store, &request).await?;
        print!("{}", load_report(&summary, &args.instances.out));
        Ok(if summary.intake.rejected == 0 {
            ExitStatus::Success
        } else {
            ExitStatus::Partial
        })
    })
}

/// The intake's line and the first rejected documents with their problems.
fn intake_report(text: &mut String, intake: &IntakeReport, out: &str) {
    let (read, rejected, rejects_file) =
        (intake.read, &intake.rejects, intake.rejects_file.as_deref());
    let _ = writeln!(
        text,
        "  {:<16} {read} documents, {} valid, {} rejected",
        "read",
        read - rejected.len(),
        rejected.len()
    );
    if let Some(file) = rejects_file {
        let _ = writeln!(
            text,
            "  {:<16} kept aside in {}/{file}",
            "rejects",
            out.trim_end_matches('/')
        );
    }
    for r in rejected.iter().take(5) {
        let first = r
            .problems
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let more = r.problems.len().saturating_sub(1);
        let _ = writeln!(
            text,
            "    {} (instance {}): {first}{}",
            r.position,
            r.instance_id.as_deref().unwrap_or("?"),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
    if rejected.len() > 5 {
        let _ = writeln!(
            text,
            "    … {} more in the rejects file",
            rejected.len() - 5
        );
    }
}

pub fn push_report(s: &PushSummary, out: &str) -> String {
    let mut text = format!("external push of {} (run {})\n", s.source, s.run_id);
    intake_report(&mut text, &s.intake, out);
    if s.force {
        let _ = writeln!(text, "  {:<16} --force: every valid instance sent", "check");
    } else {
        let _ = writeln!(
            text,
            "  {:<16} {} requests: {} up to date, {} missing or stale",
            "check",
            s.check_requests,
            s.up_to_date,
            s.intake.valid - s.up_to_date
        );
    }
    let _ = writeln!(
        text,
        "  {:<16} {} sent, {} refused by the platform, {} failed ({:.1} requests/s over {:.1} s)",
        "push", s.sent, s.refused, s.failed, s.requests_per_second, s.send_seconds
    );
    for o in s
        .outcomes
        .iter()
        .filter(|o| matches!(o.outcome, push::Outcome::Refused | push::Outcome::Failed))
        .take(5)
    {
        let _ = writeln!(
            text,
            "    {}: {}",
            o.instance_id.as_deref().unwrap_or("?"),
            o.reason.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(
        text,
        "  {:<16} {}/_runs/{}.json",
        "manifest",
        out.trim_end_matches('/'),
        s.run_id
    );
    text
}

pub fn check_report(s: &CheckSummary, out: &str) -> String {
    let mut text = format!("external check of {} (run {})\n", s.source, s.run_id);
    intake_report(&mut text, &s.intake, out);
    let kinds: Vec<String> = s
        .by_kind
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    let _ = writeln!(
        text,
        "  {:<16} {} requests: {} differences{}",
        "check",
        s.requests,
        s.diffs.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    );
    for d in s.diffs.iter().take(5) {
        let _ = writeln!(
            text,
            "    {} {}{}",
            d.kind.as_str(),
            d.instance_id,
            d.task_id
                .as_deref()
                .map(|t| format!(" task {t}"))
                .unwrap_or_default()
        );
    }
    if let Some(partition) = &s.partition {
        let _ = writeln!(
            text,
            "  {:<16} {}/{partition}",
            "external_diffs",
            out.trim_end_matches('/')
        );
    }
    text
}

pub fn pull_report(s: &PullSummary, out: &str) -> String {
    let mut text = format!(
        "external pull of {} approval codes (run {})\n",
        s.approval_codes, s.run_id
    );
    let _ = writeln!(
        text,
        "  {:<16} {} instances, {} tasks: {} rows",
        "listed", s.instances, s.tasks, s.rows
    );
    if let Some(partition) = &s.partition {
        let _ = writeln!(
            text,
            "  {:<16} {}/{partition}",
            "snapshot",
            out.trim_end_matches('/')
        );
    }
    text
}

pub fn load_report(s: &LoadSummary, out: &str) -> String {
    let mut text = format!("external load of {} (run {})\n", s.source, s.run_id);
    intake_report(&mut text, &s.intake, out);
    if let Some((first, last)) = s.window {
        let rows: Vec<String> = s
            .rows
            .iter()
            .map(|(table, n)| format!("{n} {table}"))
            .collect();
        let _ = writeln!(
            text,
            "  {:<16} {} ({} approval codes, starts {first} to {last} in {}){}",
            "rows",
            rows.join(", "),
            s.approval_codes.len(),
            s.time_zone,
            if s.full {
                "; --full: their instances absent from the file deleted"
            } else {
                ""
            }
        );
        let _ = writeln!(
            text,
            "  {:<16} {} partitions written, {} removed, under {}",
            "files",
            s.written.len(),
            s.deleted.len(),
            out.trim_end_matches('/')
        );
    }
    text
}

/// The demo's third-party round on the simulated tenant: a day's export of another HR system
/// (written into the root, read back by URL like any source) pushed, checked and loaded, and
/// the platform's task statuses pulled. Errors if any step disagrees with the others.
#[cfg(feature = "sim")]
pub async fn demo_round(
    tenant: &attendance_sim::SimTenant,
    client: &Client,
    out: &str,
    concurrency: usize,
) -> anyhow::Result<String> {
    use anyhow::ensure;

    let store = root(out).await?;
    let codes = tenant.external_approval_codes();
    let documents = attendance_sim::external_documents(
        tenant.config().seed,
        300,
        &codes,
        chrono::Utc::now().timestamp_millis(),
    );
    let rel = "_external/demo/instances.ndjson";
    let mut bytes = Vec::new();
    for document in &documents {
        serde_json::to_writer(&mut bytes, document)?;
        bytes.push(b'\n');
    }
    store.put(rel, bytes).await?;
    let source = store.describe(rel);
    let mut text = String::new();
    let pushed = push::push(
        client,
        Arc::clone(&store),
        &PushRequest {
            source: source.clone(),
            run_id: run_id(),
            force: false,
            concurrency,
        },
    )
    .await?;
    text.push_str(&push_report(&pushed, out));
    let checked = check::check(
        client,
        Arc::clone(&store),
        &CheckRequest {
            source: source.clone(),
            run_id: run_id(),
            lease_ttl: Duration::from_secs(120),
            concurrency,
        },
    )
    .await?;
    text.push_str(&check_report(&checked, out));
    let pulled = pull::pull(
        client,
        Arc::clone(&store),
        &PullRequest {
            approval_codes: codes,
            status: None,
            user_ids: Vec::new(),
            run_id: run_id(),
            lease_ttl: Duration::from_secs(120),
        },
    )
    .await?;
    text.push_str(&pull_report(&pulled, out));
    let loaded = load::load(
        Arc::clone(&store),
        &LoadRequest {
            source,
            time_zone: chrono_tz::Asia::Shanghai,
            run_id: run_id(),
            lease_ttl: Duration::from_secs(120),
            spill_dir: std::env::temp_dir(),
            full: false,
        },
    )
    .await?;
    text.push_str(&load_report(&loaded, out));
    ensure!(
        pushed.sent == documents.len() && !pushed.is_partial(),
        "the push sent {} of {} instances",
        pushed.sent,
        documents.len()
    );
    ensure!(
        checked.diffs.is_empty(),
        "the check after the push found {} differences",
        checked.diffs.len()
    );
    ensure!(
        pulled.instances == documents.len() && loaded.intake.valid == documents.len(),
        "the pull listed {} and the load took {} of {} instances",
        pulled.instances,
        loaded.intake.valid,
        documents.len()
    );
    Ok(text)
}
