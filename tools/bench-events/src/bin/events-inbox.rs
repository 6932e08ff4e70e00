//! Writes a corpus of landed approval events straight into an output root's inbox and journals,
//! oldest first, as the receivers would have landed them over DAYS days (each file's
//! modification time and receipt time are its landing time, the last one ENDING_HOURS_AGO hours
//! ago, default 48), JOURNAL_EVENTS deliveries a journal (default 1,000; 0 writes no journals,
//! as receivers that kept none): for the compaction benchmark. Each directory's modification time
//! is its last file's landing, as a receiver writing then would have left it.
//! Each approval gives its event (a leave its V1 and V2 events, one instance code); one in
//! twenty is reverted a day later. Prints one JSON line: events written, seconds.
//!
//! Usage: events-inbox ROOT N DAYS [FIRST_DATE] [FIRST_APPROVAL] [ENDING_HOURS_AGO] [JOURNAL_EVENTS]
//!
//! FIRST_APPROVAL numbers the approvals (their codes and event ids), so that corpora written one
//! after the other into one root do not share ids.

use std::io::Write;
use std::time::Instant;

use attendance_lake::inbox::{IdSource, LandedEvent, Transport, journal_path, path_of};
use chrono::{Days, NaiveDate, TimeDelta};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: events-inbox ROOT N DAYS [FIRST_DATE] [FIRST_APPROVAL] [ENDING_HOURS_AGO] [JOURNAL_EVENTS]"
        );
        std::process::exit(2);
    }
    let root = std::path::PathBuf::from(&args[1]);
    let n: usize = args[2].parse().expect("N is a number");
    let days: u64 = args[3].parse().expect("DAYS is a number");
    let first: NaiveDate = args
        .get(4)
        .map(|d| d.parse().expect("FIRST_DATE is YYYY-MM-DD"))
        .unwrap_or(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap());
    let offset: u64 = args
        .get(5)
        .map(|n| n.parse().expect("FIRST_APPROVAL is a number"))
        .unwrap_or(0);
    let ending_hours_ago: u64 = args
        .get(6)
        .map(|n| n.parse().expect("ENDING_HOURS_AGO is a number"))
        .unwrap_or(48);
    let journal_events: usize = args
        .get(7)
        .map(|n| n.parse().expect("JOURNAL_EVENTS is a number"))
        .unwrap_or(1_000);
    // A journal's deliveries and the time of its last one; its number.
    let mut journal: (Vec<u8>, usize, std::time::SystemTime) =
        (Vec::new(), 0, std::time::SystemTime::UNIX_EPOCH);
    let mut journals = 0u64;
    // Each directory written into and its last file's landing time.
    let dirs = std::cell::RefCell::new(std::collections::HashMap::new());
    let landed_in = |path: &std::path::Path, at: std::time::SystemTime| {
        let dir = path.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        dirs.borrow_mut().insert(dir, at);
    };
    let write_journal = |journal: &mut (Vec<u8>, usize, std::time::SystemTime), seq: u64| {
        let path = root.join(journal_path(
            journal.2.into(),
            &format!("bench{offset}"),
            seq,
        ));
        landed_in(&path, journal.2);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&journal.0).unwrap();
        file.set_modified(journal.2).unwrap();
        journal.0.clear();
        journal.1 = 0;
    };
    let span = std::time::Duration::from_secs(days * 86_400);
    let last_landing =
        std::time::SystemTime::now() - std::time::Duration::from_secs(ending_hours_ago * 3600);
    let landed_at = |i: usize| last_landing - span + span.mul_f64(i as f64 / n as f64);
    let started = Instant::now();
    let per_day = (n as u64).div_ceil(days).max(1);
    let mut written = 0usize;
    let mut approval = 0u64;
    while written < n {
        approval += 1;
        let day = first + Days::new((approval * 10 / 11) / per_day);
        let user = format!("u{:05}", approval % 5_000);
        let code = format!("7{:018}", offset + approval);
        let start = day.and_hms_opt(9, 0, 0).unwrap();
        let end = start + TimeDelta::hours(9);
        let text = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        let ts = start.and_utc().timestamp() - 8 * 3600 - 86_400;
        let bodies: Vec<(&str, Value)> = match approval % 3 {
            0 => vec![
                (
                    "leave_approval",
                    json!({"type": "leave_approval", "instance_code": code,
                    "employee_id": user, "leave_type": "事假", "leave_unit": 1,
                    "leave_start_time": text(start), "leave_end_time": text(end),
                    "leave_interval": 32_400, "leave_reason": "家中有事",
                    "start_time": ts, "end_time": ts + 60, "tenant_key": "t1", "app_id": "cli_bench"}),
                ),
                (
                    "leave_approvalV2",
                    json!({"type": "leave_approvalV2", "instance_code": code,
                    "user_id": user, "open_id": format!("ou_{user}"), "leave_unit": "HOUR",
                    "leave_name": "@i18n@1", "i18n_resources": [
                        "{\"is_default\":true,\"locale\":\"zh_cn\",\"texts\":{\"@i18n@1\":\"事假\"}}",
                        "{\"is_default\":false,\"locale\":\"en_us\",\"texts\":{\"@i18n@1\":\"Personal leave\"}}"],
                    "leave_start_time": text(start), "leave_end_time": text(end),
                    "leave_interval": "32400", "leave_reason": "家中有事",
                    "leave_range": [[text(start), text(end)]], "leave_detail": [[text(start), text(end)]],
                    "leave_certification": [], "origin_instance_code": "",
                    "start_time": ts, "end_time": ts + 60, "tenant_key": "t1", "app_id": "cli_bench"}),
                ),
            ],
            1 => vec![(
                "out_approval",
                json!({"type": "out_approval", "instance_code": code,
                "user_id": user, "open_id": format!("ou_{user}"), "out_unit": "HOUR",
                "out_name": "@i18n@2", "i18n_resources": ["{\"is_default\":true,\"locale\":\"zh_cn\",\"texts\":{\"@i18n@2\":\"外出\"}}"],
                "out_start_time": text(start), "out_end_time": text(end), "out_interval": 32_400,
                "out_reason": "拜访客户", "out_image": "", "start_time": ts, "end_time": ts + 60,
                "tenant_key": "t1", "app_id": "cli_bench"}),
            )],
            _ => vec![(
                "work_approval",
                json!({"type": "work_approval", "instance_code": code,
                "employee_id": user, "work_type": "1", "work_reason": "上线",
                "work_start_time": text(end), "work_end_time": text(end + TimeDelta::hours(3)),
                "work_interval": 10_800, "work_multi_imitate_users": null,
                "time_range": [{"work_start_time": text(end), "work_end_time": text(end + TimeDelta::hours(3))}],
                "work_detail": [{"start": day.to_string(), "end": day.to_string(), "rule_associated": 2, "interval": 10_800}],
                "start_time": ts, "end_time": ts + 60, "tenant_key": "t1", "app_id": "cli_bench"}),
            )],
        };
        let mut bodies = bodies;
        if approval.is_multiple_of(20) {
            let kind = match approval % 3 {
                0 => "leave_approval_revert",
                1 => "out_approval_revert",
                _ => "work_approval_revert",
            };
            bodies.push((kind, json!({"type": kind, "instance_code": code,
                "operate_time": (ts + 86_400).to_string(), "tenant_key": "t1", "app_id": "cli_bench"})));
        }
        for (i, (event_type, event)) in bodies.into_iter().enumerate() {
            let uuid = format!("{code}-{i}");
            let body = json!({"ts": format!("{}.5", ts + 120 + i as i64), "uuid": uuid,
                "type": "event_callback", "event": event});
            let landed = LandedEvent {
                id: uuid.clone(),
                id_source: IdSource::Uuid,
                schema: "1".into(),
                event_type: Some(event_type.into()),
                transport: Transport::Webhook,
                received_at: chrono::DateTime::<chrono::Utc>::from(landed_at(written))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                receiver: "bench".into(),
                body,
            };
            let record = serde_json::to_vec(&landed).unwrap();
            // As a receiver writes them: the journal first, then the inbox object.
            if journal_events > 0 {
                journal.0.extend_from_slice(&record);
                journal.0.push(b'\n');
                journal.1 += 1;
                journal.2 = landed_at(written);
                if journal.1 == journal_events {
                    journals += 1;
                    write_journal(&mut journal, journals);
                }
            }
            let path = root.join(path_of(&uuid));
            landed_in(&path, landed_at(written));
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(&record).unwrap();
            file.set_modified(landed_at(written)).unwrap();
            written += 1;
        }
    }
    if journal.1 > 0 {
        journals += 1;
        write_journal(&mut journal, journals);
    }
    for (dir, at) in dirs.into_inner() {
        std::fs::File::open(&dir).unwrap().set_modified(at).unwrap();
    }
    println!(
        "{{\"events\": {written}, \"journals\": {journals}, \"seconds\": {:.1}}}",
        started.elapsed().as_secs_f64()
    );
}
