//! The pipeline as a state machine, driven through its one seam by answers held in memory: how
//! batches split around a refused user, which windows commit, when a run stops, how it resumes,
//! and what each stage counts. Real files in a temporary output root; no network.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use attendance_core::answer::QueryData;
use attendance_core::plan::{EmployeeType, Status, Window};
use attendance_core::table::Table;
use attendance_feishu::model::QueryRequest;
use attendance_feishu::{PlatformError, codes, endpoints};
use attendance_lake::commit::read_table;
use attendance_lake::spill::SpillConfig;
use attendance_lake::store::Store;
use attendance_lake::zones::{self, SeenZone};
use attendance_pull::summary::{Outcome, RunSummary};
use attendance_pull::{AnswerSource, BackfillRequest, RunError, RunProgress, Users, backfill};
use chrono::NaiveDate;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Answers made up per query: each user has one out on each date of the window, for the status
/// asked, in Asia/Shanghai unless `zone_of` says otherwise. Refused users fail any batch naming
/// them (1220004, like a departed employee); a failing window fails every query of it the way a
/// platform that stays down does; a fatal code answers every query from a date on.
#[derive(Default)]
struct Answers {
    refused: HashSet<String>,
    failing_windows: HashSet<NaiveDate>,
    fatal_from: Option<(NaiveDate, i64)>,
    /// The `time_zone` a user's answer carries on a date.
    zone_of: Option<fn(&str, NaiveDate) -> &'static str>,
    asked: Mutex<Vec<QueryRequest>>,
}

impl Answers {
    fn asked(&self) -> Vec<QueryRequest> {
        self.asked.lock().unwrap().clone()
    }

    fn api_error(code: i64) -> PlatformError {
        PlatformError::Api {
            endpoint: endpoints::QUERY,
            http_status: 400,
            code,
            msg: "made up".into(),
        }
    }
}

fn date_of(yyyymmdd: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(
        (yyyymmdd / 10_000) as i32,
        yyyymmdd / 100 % 100,
        yyyymmdd % 100,
    )
    .unwrap()
}

impl AnswerSource for Answers {
    async fn answer(
        &self,
        _employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> Result<QueryData, PlatformError> {
        self.asked.lock().unwrap().push(query.clone());
        let (from, to) = (date_of(query.check_date_from), date_of(query.check_date_to));
        if let Some((since, code)) = self.fatal_from
            && from >= since
        {
            return Err(Answers::api_error(code));
        }
        if self.failing_windows.contains(&from) {
            return Err(PlatformError::transport(
                endpoints::QUERY,
                "memory",
                "connection failed",
                "the platform stays down",
            ));
        }
        if query.user_ids.iter().any(|u| self.refused.contains(u)) {
            return Err(Answers::api_error(codes::UNKNOWN_USER));
        }
        let status = query.status.unwrap_or(2);
        let mut elements = Vec::new();
        for user in &query.user_ids {
            for date in (Window { from, to }).dates() {
                let day = date.format("%Y-%m-%d");
                let zone = self
                    .zone_of
                    .map_or("Asia/Shanghai", |zone_of| zone_of(user, date));
                elements.push(format!(
                    r#"{{"user_id":"{user}","date":"{}","time_zone":"{zone}","outs":[{{"approval_id":"o-{user}-{day}-{status}","start_time":"{day} 09:00:00","end_time":"{day} 10:30:00"}}]}}"#,
                    date.format("%Y%m%d")
                ));
            }
        }
        Ok(QueryData::recorded(&format!(
            r#"{{"user_approvals":[{}]}}"#,
            elements.join(",")
        )))
    }
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i:02}")).collect()
}

fn request(out: &Path, users: Vec<String>, from: &str, to: &str) -> BackfillRequest {
    BackfillRequest {
        from: d(from),
        to: d(to),
        users: Users::List(users),
        employee_type: EmployeeType::EmployeeId,
        statuses: vec![Status::APPROVED],
        out: out.display().to_string(),
        today: d("2026-11-29"),
        concurrency: 4,
        restart: false,
        lease_ttl: std::time::Duration::from_secs(30),
        progress: Arc::new(RunProgress::default()),
        stop: Arc::default(),
        record_to: None,
        spill: SpillConfig {
            dir: out.join("spill"),
            budget: usize::MAX,
        },
        with_events: false,
        zone_aliases: Arc::default(),
    }
}

async fn run(source: &Answers, request: &BackfillRequest) -> RunSummary {
    std::fs::create_dir_all(&request.spill.dir).unwrap();
    backfill(source, request).await.unwrap()
}

/// Every row of `outs` in the root: (user, approval id).
async fn outs(out: &Path) -> BTreeSet<(String, String)> {
    let store = Store::Local(out.to_path_buf());
    let mut rows = BTreeSet::new();
    for (_, batch) in read_table(&store, Table::Outs).await.unwrap() {
        let batch: &RecordBatch = &batch;
        let user = batch.column_by_name("user_id").unwrap().as_string::<i32>();
        let id = batch
            .column_by_name("approval_id")
            .unwrap()
            .as_string::<i32>();
        for i in 0..batch.num_rows() {
            assert!(user.is_valid(i) && id.is_valid(i));
            rows.insert((user.value(i).to_string(), id.value(i).to_string()));
        }
    }
    rows
}

#[tokio::test]
async fn a_batch_refused_for_one_user_is_split_until_that_user_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let source = Answers {
        refused: ["u05".to_string()].into(),
        ..Answers::default()
    };
    let request = request(dir.path(), users(8), "2026-09-01", "2026-09-03");
    let summary = run(&source, &request).await;

    // 8 → 4 + 4 (u05's half refused) → 2 + 2 → 1 + 1: seven queries, one of them answered
    // for each half that holds no refused user.
    let asked: Vec<Vec<String>> = source.asked().into_iter().map(|q| q.user_ids).collect();
    assert_eq!(asked.len(), 7, "{asked:?}");
    assert_eq!(asked[0].len(), 8);
    assert!(asked.contains(&vec!["u05".to_string()]));
    assert_eq!(summary.outcome(), Outcome::Partial);
    assert_eq!(
        summary.extracted.refused_users,
        BTreeSet::from(["u05".to_string()])
    );
    assert_eq!(summary.extracted.answered, 3, "u00-u03, u06-u07, u04");
    // Everyone else's rows, three dates each, are in the tables; none of u05's.
    let rows = outs(dir.path()).await;
    assert_eq!(rows.len(), 7 * 3);
    assert!(rows.iter().all(|(user, _)| user != "u05"));
    assert_eq!(summary.normalized.rows.get(&Table::Outs), Some(&21));
    assert_eq!(
        request.progress.snapshot().queries_done,
        7,
        "the split halves are counted as they are asked"
    );
}

#[tokio::test]
async fn a_window_with_a_failed_query_is_not_written_and_the_others_are() {
    let dir = tempfile::tempdir().unwrap();
    // 2026-09-01..2026-11-01: windows of 31 dates from 09-01, 10-02; the second fails.
    let source = Answers {
        failing_windows: [d("2026-10-02")].into(),
        ..Answers::default()
    };
    let request = request(dir.path(), users(3), "2026-09-01", "2026-11-01");
    let summary = run(&source, &request).await;

    assert_eq!(summary.windows.len(), 2);
    let (first, second) = (summary.windows[0], summary.windows[1]);
    assert_eq!(summary.loaded.committed, BTreeSet::from([first]));
    assert_eq!(summary.loaded.failed, BTreeSet::from([second]));
    assert_eq!(summary.outcome(), Outcome::Partial);
    assert_eq!(summary.extracted.failures.len(), 1);
    let failure = summary.extracted.failures[0].to_string();
    assert!(
        failure.contains("window 2026-10-02..2026-11-01") && failure.contains("stays down"),
        "{failure}"
    );
    // Only the first window's dates have files; the summary counts what was written.
    let rows = outs(dir.path()).await;
    assert_eq!(rows.len(), 3 * 31);
    assert!(summary.loaded.files.iter().all(|f| first.contains(f.date)));
    let in_files: usize = summary.loaded.files.iter().map(|f| f.rows).sum();
    assert_eq!(in_files, rows.len());
}

#[tokio::test]
async fn an_error_that_would_recur_stops_the_run_with_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let source = Answers {
        fatal_from: Some((d("2026-10-02"), codes::PARAM_INVALID)),
        ..Answers::default()
    };
    let mut request = request(dir.path(), users(3), "2026-09-01", "2026-11-01");
    // One query at a time: the second window is not asked before the first is answered.
    request.concurrency = 1;
    let summary = run(&source, &request).await;

    assert_eq!(summary.outcome(), Outcome::Stopped);
    let fatal = summary.fatal.as_deref().unwrap();
    assert!(
        matches!(fatal, RunError::Fatal { error, .. } if error.code() == Some(codes::PARAM_INVALID)),
        "{fatal:?}"
    );
    assert_eq!(
        summary.loaded.committed,
        BTreeSet::from([summary.windows[0]])
    );
    assert_eq!(
        source.asked().len(),
        2,
        "nothing is asked after the error that would recur"
    );
    assert_eq!(outs(dir.path()).await.len(), 3 * 31);
}

#[tokio::test]
async fn a_rerun_resumes_after_the_windows_committed_and_restart_redoes_them() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Answers {
        failing_windows: [d("2026-10-02")].into(),
        ..Answers::default()
    };
    let request = request(dir.path(), users(3), "2026-09-01", "2026-11-01");
    let first = run(&failing, &request).await;
    assert_eq!(first.outcome(), Outcome::Partial);

    let healthy = Answers::default();
    let second = run(&healthy, &request).await;
    assert_eq!(second.outcome(), Outcome::Complete);
    assert_eq!(second.loaded.skipped, BTreeSet::from([first.windows[0]]));
    assert_eq!(second.loaded.committed, BTreeSet::from([first.windows[1]]));
    let asked = healthy.asked();
    assert_eq!(asked.len(), 1, "only the window that failed is fetched");
    assert_eq!(asked[0].check_date_from, 20261002);
    assert_eq!(outs(dir.path()).await.len(), 3 * 62);

    // Finished with nothing failed: the record is gone and a third run fetches everything.
    let third_source = Answers::default();
    let third = run(&third_source, &request).await;
    assert!(third.loaded.skipped.is_empty());
    assert_eq!(third_source.asked().len(), 2);

    let mut restart = request.clone();
    restart.restart = true;
    let again = Answers::default();
    run(&failing, &request).await;
    let redone = run(&again, &restart).await;
    assert!(
        redone.loaded.skipped.is_empty(),
        "--restart redoes every window"
    );
    assert_eq!(again.asked().len(), 2);
}

#[tokio::test]
async fn a_stop_request_ends_the_run_before_the_next_query_and_releases_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let source = Answers::default();
    let request = request(dir.path(), users(3), "2026-09-01", "2026-09-30");
    request.stop.store(true, Ordering::Relaxed);
    let summary = run(&source, &request).await;

    assert!(matches!(summary.fatal.as_deref(), Some(RunError::Stopped)));
    assert!(source.asked().is_empty());
    assert!(summary.loaded.committed.is_empty());
    let lease: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("_lease.json")).unwrap()).unwrap();
    assert_eq!(lease["released"], true);
}

#[tokio::test]
async fn a_platform_that_refuses_everyone_stops_the_run_as_misconfigured() {
    let dir = tempfile::tempdir().unwrap();
    let everyone = users(120);
    let source = Answers {
        refused: everyone.iter().cloned().collect(),
        ..Answers::default()
    };
    let request = request(dir.path(), everyone, "2026-09-01", "2026-09-02");
    let summary = run(&source, &request).await;

    assert!(
        matches!(
            summary.fatal.as_deref(),
            Some(RunError::AllRefused { refused }) if *refused >= 100
        ),
        "{:?}",
        summary.fatal
    );
    assert_eq!(summary.extracted.answered, 0);
    assert!(outs(dir.path()).await.is_empty());
}

#[tokio::test]
async fn each_stage_counts_its_own_work() {
    let dir = tempfile::tempdir().unwrap();
    let source = Answers::default();
    let mut request = request(dir.path(), users(60), "2026-09-01", "2026-09-10");
    request.statuses = vec![Status::APPROVED, Status::WITHDRAWN];
    let summary = run(&source, &request).await;

    assert_eq!(summary.outcome(), Outcome::Complete);
    // Extract: 2 batches (50 + 10) × 2 statuses, one window.
    assert_eq!(summary.batches, 2);
    assert_eq!(summary.extracted.answered, 4);
    assert_eq!(source.asked().len(), 4);
    assert_eq!(summary.extracted.rate_limit, None, "memory is not paced");
    // Normalize: one out per user, date and status.
    assert_eq!(
        summary.normalized.rows.get(&Table::Outs),
        Some(&(60 * 10 * 2))
    );
    assert_eq!(summary.normalized.rejects, 0);
    // Load: one file per date of outs, holding every row.
    assert_eq!(summary.loaded.files.len(), 10);
    assert_eq!(summary.loaded.committed.len(), 1);
    let rows = outs(dir.path()).await;
    assert_eq!(rows.len(), 60 * 10 * 2);
    let window = summary.windows[0];
    for file in &summary.loaded.files {
        assert!(window.contains(file.date), "{}", file.path);
        assert_eq!(file.rows, 60 * 2, "{}", file.path);
    }
}

/// The zones of the simulated tenant's fixture users (`attendance-sim`'s fixtures.rs), as their
/// answers carry them, and two more: `fx_moved` moves from London to Kolkata on 2026-09-16, and
/// `fx_lapsed` is sent an unknown zone from 2026-09-19 on.
fn fixture_zone(user: &str, date: NaiveDate) -> &'static str {
    match user {
        "fx_shanghai" => "Asia/Shanghai",
        "fx_newyork" => "America/New_York",
        "fx_london" => "Europe/London",
        "fx_lordhowe" => "Australia/Lord_Howe",
        "fx_kolkata" => "Asia/Kolkata",
        // The doc: an empty time_zone means UTC.
        "fx_nozone" => "",
        // Not an IANA name: every record of the user is rejected.
        "fx_badzone" => "Asia/Beijing",
        "fx_moved" if date < d("2026-09-16") => "Europe/London",
        "fx_moved" => "Asia/Kolkata",
        "fx_lapsed" if date < d("2026-09-19") => "America/New_York",
        "fx_lapsed" => "Etc/Unknown",
        _ => "Asia/Shanghai",
    }
}

fn fixture_users() -> Vec<String> {
    [
        "fx_shanghai",
        "fx_newyork",
        "fx_london",
        "fx_lordhowe",
        "fx_kolkata",
        "fx_nozone",
        "fx_badzone",
        "fx_moved",
        "fx_lapsed",
        "fx_refused",
    ]
    .map(String::from)
    .to_vec()
}

fn seen(time_zone: &str, as_of: &str) -> SeenZone {
    SeenZone {
        time_zone: time_zone.into(),
        as_of: d(as_of),
    }
}

#[tokio::test]
async fn a_run_keeps_each_users_latest_answered_zone_in_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Local(dir.path().to_path_buf());
    let source = Answers {
        refused: ["fx_refused".to_string()].into(),
        zone_of: Some(fixture_zone),
        ..Answers::default()
    };
    let request = request(dir.path(), fixture_users(), "2026-09-01", "2026-09-20");
    let summary = run(&source, &request).await;
    // Partial (a refused user): what was answered is kept all the same.
    assert_eq!(summary.outcome(), Outcome::Partial);

    let expected = [
        ("fx_shanghai", seen("Asia/Shanghai", "2026-09-20")),
        ("fx_newyork", seen("America/New_York", "2026-09-20")),
        ("fx_london", seen("Europe/London", "2026-09-20")),
        ("fx_lordhowe", seen("Australia/Lord_Howe", "2026-09-20")),
        ("fx_kolkata", seen("Asia/Kolkata", "2026-09-20")),
        ("fx_nozone", seen("UTC", "2026-09-20")),
        // The latest date wins.
        ("fx_moved", seen("Asia/Kolkata", "2026-09-20")),
        // Dates with an unknown zone are not placed: the last known one stands.
        ("fx_lapsed", seen("America/New_York", "2026-09-18")),
    ]
    .map(|(user, zone)| (user.to_string(), zone))
    .into();
    // fx_badzone (never a known zone) and fx_refused (never answered) are not there.
    let zones = zones::load(&store).await.unwrap();
    assert_eq!(zones.user_id, expected);
    assert!(zones.open_id.is_empty());
    assert_eq!(
        zones.zone_of(Some("fx_newyork"), None),
        Some("America/New_York")
    );
    assert_eq!(zones.zone_of(Some("fx_badzone"), None), None);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(zones::USER_ZONES_PATH)).unwrap())
            .unwrap();
    assert_eq!(
        file["user_id"]["fx_lordhowe"],
        serde_json::json!({"time_zone": "Australia/Lord_Howe", "as_of": "2026-09-20"})
    );

    // A run over earlier dates, whatever zones they carried then, changes nothing; one over
    // later dates moves the users it answered for.
    let earlier = Answers {
        zone_of: Some(|_, _| "Europe/Paris"),
        ..Answers::default()
    };
    run(
        &earlier,
        &request_over(dir.path(), "2026-08-01", "2026-08-10"),
    )
    .await;
    assert_eq!(zones::load(&store).await.unwrap().user_id, expected);
    let later = Answers {
        zone_of: Some(|_, _| "Europe/Paris"),
        ..Answers::default()
    };
    run(
        &later,
        &request_over(dir.path(), "2026-10-01", "2026-10-02"),
    )
    .await;
    let moved = zones::load(&store).await.unwrap();
    assert_eq!(
        moved.user_id["fx_newyork"],
        seen("Europe/Paris", "2026-10-02")
    );
    assert_eq!(
        moved.user_id["fx_shanghai"],
        seen("Asia/Shanghai", "2026-09-20")
    );
}

/// `fx_newyork` alone over `from..=to`.
fn request_over(out: &Path, from: &str, to: &str) -> BackfillRequest {
    request(out, vec!["fx_newyork".to_string()], from, to)
}

#[tokio::test]
async fn open_ids_are_filed_under_open_id() {
    let dir = tempfile::tempdir().unwrap();
    let source = Answers {
        zone_of: Some(|_, _| "Australia/Lord_Howe"),
        ..Answers::default()
    };
    let mut request = request(
        dir.path(),
        vec!["ou_1".to_string()],
        "2026-09-01",
        "2026-09-02",
    );
    request.employee_type = EmployeeType::OpenId;
    run(&source, &request).await;
    let zones = zones::load(&Store::Local(dir.path().to_path_buf()))
        .await
        .unwrap();
    assert!(zones.user_id.is_empty());
    assert_eq!(
        zones.open_id,
        [(
            "ou_1".to_string(),
            seen("Australia/Lord_Howe", "2026-09-02")
        )]
        .into()
    );
    assert_eq!(
        zones.zone_of(None, Some("ou_1")),
        Some("Australia/Lord_Howe")
    );
}
