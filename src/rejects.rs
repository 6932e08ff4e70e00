//! The `rejects list|replay` commands: what the output root keeps aside, and reading the pull's
//! records again with today's rules and zone aliases.

use std::fmt::Write as _;
use std::sync::Arc;

use attendance_pull::rejects_replay::{self, RejectsReplayRequest, RejectsReplaySummary};

use crate::cli::{RejectsArgs, RejectsReplayArgs};
use crate::commands::runtime;
use crate::exit::ExitStatus;
use crate::external::root;

pub fn rejects_list(args: RejectsArgs) -> anyhow::Result<ExitStatus> {
    runtime()?.block_on(async {
        let store = root(&args.out).await?;
        let tally = attendance_lake::rejects::tally(&store, args.from, args.to).await?;
        print!("{}", rejects_report(&tally, &args.out));
        Ok(ExitStatus::Success)
    })
}

/// What `_rejects/` holds, as printed: a line a group, largest first.
pub fn rejects_report(tally: &attendance_lake::rejects::RejectsTally, out: &str) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut text = format!(
        "{} kept aside in {} under {}/_rejects/\n",
        plural(tally.records, "record"),
        plural(tally.files, "file"),
        out.trim_end_matches('/')
    );
    if tally.groups.is_empty() {
        return text;
    }
    let _ = writeln!(
        text,
        "  {:>6}  {:<16} {:<18} {:<20} reason",
        "count", "source", "table", "field"
    );
    for g in &tally.groups {
        let mut values: Vec<(&String, &usize)> = g.values.iter().collect();
        values.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = values
            .iter()
            .take(3)
            .map(|(v, n)| format!("{v:?} ×{n}"))
            .collect();
        let more = values.len().saturating_sub(3);
        let _ = writeln!(
            text,
            "  {:>6}  {:<16} {:<18} {:<20} {}{}",
            g.count,
            g.source,
            g.table,
            g.field,
            g.reason,
            if shown.is_empty() {
                String::new()
            } else {
                format!(
                    " — {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(", {more} more values")
                    } else {
                        String::new()
                    }
                )
            }
        );
    }
    if tally.unreadable_lines > 0 {
        let _ = writeln!(
            text,
            "  {} lines are not JSON, in {}",
            tally.unreadable_lines,
            tally.unreadable_files.join(", ")
        );
    }
    text
}

pub fn rejects_replay(args: RejectsReplayArgs) -> anyhow::Result<ExitStatus> {
    let request = RejectsReplayRequest {
        out: args.rejects.out.clone(),
        from: args.rejects.from,
        to: args.rejects.to,
        employee_type: args.employee_type,
        zone_aliases: Arc::new(args.zones.aliases()),
        lease_ttl: std::time::Duration::from_secs(args.lease_ttl.max(3)),
    };
    runtime()?.block_on(async {
        let (report, stopped) = replay(&request).await?;
        print!("{report}");
        match stopped {
            None => Ok(ExitStatus::Success),
            Some(e) => Err(e.into()),
        }
    })
}

/// Replays, writes the manifest (also when the replay stopped on an error), and says what it
/// did; the error that stopped it comes after.
pub async fn replay(
    request: &RejectsReplayRequest,
) -> anyhow::Result<(String, Option<attendance_pull::RunError>)> {
    let (summary, stopped) = rejects_replay::replay_rejects(request).await?;
    let store = root(&request.out).await?;
    let path = attendance_lake::runs::write_manifest(&store, &summary.run_id, &summary).await?;
    let mut text = replay_report(&summary);
    let _ = writeln!(text, "  {:<18} {path}", "manifest");
    Ok((text, stopped))
}

/// What a replay did, as printed.
pub fn replay_report(s: &RejectsReplaySummary) -> String {
    let mut text = format!(
        "rejects replay {}: {} records read in {} rejects files under {}/_rejects/\n",
        s.run_id,
        s.records,
        s.files_read,
        s.output.trim_end_matches('/')
    );
    let w = |text: &mut String, label: &str, value: String| {
        let _ = writeln!(text, "  {label:<18} {value}");
    };
    if !s.zone_aliases.is_empty() {
        let aliases: Vec<String> = s
            .zone_aliases
            .iter()
            .map(|(from, to)| format!("{from}={to}"))
            .collect();
        w(&mut text, "zone aliases", aliases.join(", "));
    }
    let by_table: Vec<String> = s
        .replayed
        .iter()
        .map(|(t, n)| format!("{} {n}", t.name()))
        .collect();
    w(
        &mut text,
        "now rows",
        if by_table.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", s.replayed_total(), by_table.join(", "))
        },
    );
    for (zone, n) in &s.zones.by_alias {
        w(&mut text, "", format!("read as {zone} by alias: {n}"));
    }
    if s.zones.fixed_offset > 0 {
        w(
            &mut text,
            "",
            format!("read at a fixed offset: {}", s.zones.fixed_offset),
        );
    }
    if s.zones.windows_id > 0 {
        w(
            &mut text,
            "",
            format!("read through a Windows zone ID: {}", s.zones.windows_id),
        );
    }
    w(
        &mut text,
        "still rejected",
        s.still_rejected_total().to_string(),
    );
    for (why, n) in &s.still_rejected {
        w(&mut text, "", format!("{n} × {why}"));
    }
    if s.not_replayable_total() > 0 {
        w(
            &mut text,
            "not replayable",
            s.not_replayable_total().to_string(),
        );
        for (why, n) in &s.not_replayable {
            w(&mut text, "", format!("{n} × {why}"));
        }
    }
    w(
        &mut text,
        "files",
        format!(
            "{} written, {} removed; rejects files: {} rewritten, {} removed",
            s.files.len(),
            s.files_removed.len(),
            s.rejects_files_rewritten.len(),
            s.rejects_files_removed.len()
        ),
    );
    text
}
