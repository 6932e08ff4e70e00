//! The end-of-run summary printed to stdout: a few aligned lines a person reads, and scripts
//! grep (`bench/run.sh` sums the tables' rows from it).

use std::fmt;

use attendance_core::table::Table;
use attendance_lake::rejects::REJECTS_DIR;
use attendance_pull::summary::RunSummary;

/// Shows a [`RunSummary`].
pub struct Summary<'a>(pub &'a RunSummary);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let (extracted, normalized, loaded) = (&s.extracted, &s.normalized, &s.loaded);
        let w = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "  {k:<18} {v}");
        writeln!(f, "run {}", s.run_id)?;
        if let Some(c) = s.clipped {
            let v = format!(
                "--to {} → {} (the platform's today + 1)",
                c.requested_to, c.clipped_to
            );
            w(f, "range clipped", v)?;
        }
        if let (Some(first), Some(last)) = (s.windows.first(), s.windows.last()) {
            let v = format!(
                "{}..{} in {} windows ({} committed)",
                first.from,
                last.to,
                s.windows.len(),
                s.windows.iter().filter(|w| s.committed(w)).count()
            );
            w(f, "dates", v)?;
        }
        if let Some(resync) = &s.resync {
            let users: std::collections::BTreeSet<&str> = resync
                .work
                .iter()
                .flat_map(|work| work.users.iter().map(String::as_str))
                .collect();
            let mut v = format!(
                "{} landed since the last sync; {} windows outside the dates re-read for {} users ({} committed)",
                resync.considered,
                s.extra_windows.len(),
                users.len(),
                s.extra_windows.iter().filter(|w| s.committed(w)).count()
            );
            if !resync.unresolved.is_empty() {
                v.push_str(&format!(
                    "; {} reverts of approvals never landed (see the manifest)",
                    resync.unresolved.len()
                ));
            }
            if !resync.unreadable.is_empty() {
                v.push_str(&format!("; {} events unreadable", resync.unreadable.len()));
            }
            w(f, "events", v)?;
        }
        let statuses: Vec<String> = s.statuses.iter().map(|s| s.code().to_string()).collect();
        let v = format!(
            "{} from {} in {} batches, statuses {}",
            s.users,
            s.users_source,
            s.batches,
            statuses.join(",")
        );
        w(f, "users", v)?;
        for table in Table::ALL {
            let rows = normalized.rows.get(&table).copied().unwrap_or(0);
            w(f, table.name(), format!("{rows} rows"))?;
        }
        if !loaded.skipped.is_empty() {
            let v = format!(
                "{} windows committed by an interrupted run of this backfill were not fetched again (--restart redoes them)",
                loaded.skipped.len()
            );
            w(f, "resumed", v)?;
        }
        let v = format!(
            "{} written, {} removed",
            loaded.files.len(),
            loaded.files_removed.len()
        );
        w(f, "files", v)?;
        let v = match normalized.rejects {
            0 => "0".to_string(),
            n => format!("{n} (see {}/{REJECTS_DIR})", s.out.trim_end_matches('/')),
        };
        w(f, "rejects", v)?;
        let v = format!(
            "{} in a gap (moved forward), {} ambiguous (earlier taken)",
            normalized.dst.dst_gap_shifted, normalized.dst.dst_ambiguous_earlier
        );
        w(f, "dst adjusted", v)?;
        let zones = &normalized.dst.zones;
        if !zones.is_empty() || !s.zone_aliases.is_empty() {
            let v = format!(
                "{} rows at a fixed offset, {} through a Windows zone ID",
                zones.fixed_offset, zones.windows_id
            );
            w(f, "zones read", v)?;
            let targets: std::collections::BTreeSet<&str> =
                s.zone_aliases.values().map(String::as_str).collect();
            for to in targets {
                let n = zones.by_alias.get(to).copied().unwrap_or(0);
                w(f, "", format!("read as {to} by alias: {n}"))?;
            }
        }
        let rate = extracted.request_rate();
        let c = &extracted.requests;
        let pace = match extracted.rate_limit {
            Some(limit) => format!(
                "{:.0}% of the {limit}/s limit",
                100.0 * rate / f64::from(limit.max(1))
            ),
            None => "not paced: answers replayed".to_string(),
        };
        let v = format!(
            "{} queries at {rate:.1}/s ({pace}), {} list, {} token, {} rate-limited, {} retries",
            c.query_requests, c.list_requests, c.token_requests, c.rate_limited, c.retries
        );
        w(f, "requests", v)?;
        w(f, "duration", format!("{:.2}s", s.duration.as_secs_f64()))?;
        w(f, "output", s.out.clone())?;
        if let Some(m) = &s.manifest {
            w(f, "manifest", m.clone())?;
        }
        if !extracted.refused_users.is_empty() {
            let ids: Vec<&str> = extracted.refused_users.iter().map(String::as_str).collect();
            let v = format!(
                "{} (1220004/1220005; their rows were kept as they were): {}",
                ids.len(),
                ids.join(", ")
            );
            w(f, "REFUSED USERS", v)?;
        }
        if !extracted.failures.is_empty() {
            let v = format!(
                "{} queries; their windows kept their previous data:",
                extracted.failures.len()
            );
            w(f, "FAILED", v)?;
            for failure in &extracted.failures {
                writeln!(f, "    {failure}")?;
            }
        }
        Ok(())
    }
}
