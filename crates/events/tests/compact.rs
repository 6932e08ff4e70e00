//! `approval_events` from landed events: one row per distinct event, idempotent, resumable
//! after a partial run, unreadable events kept, one compactor at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use attendance_events::compact::{
    COMPACT_CURSOR_PATH, CompactError, CompactSummary, compact, partition_path,
};
use attendance_events::{Landing, Transport};
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::Store;
use attendance_sim::{SimConfig, SimTenant};
use chrono::NaiveDate;
use serde_json::json;

fn shanghai() -> attendance_core::tz::Zone {
    attendance_core::tz::zone(Some("Asia/Shanghai")).unwrap()
}

/// A simulated tenant of ten users and its approval events of 2026-03-01..=10.
async fn ten_days_of_events() -> (SimTenant, Vec<attendance_sim::SimEvent>) {
    let tenant = SimTenant::start(SimConfig {
        users: 10,
        rate_limit_per_sec: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let events = tenant.approval_events(day(1), day(10));
    (tenant, events)
}

/// [`ten_days_of_events`], the tenant stopped, and an empty root with a landing on it.
async fn events_and_an_empty_root() -> (
    Vec<attendance_sim::SimEvent>,
    tempfile::TempDir,
    Arc<Store>,
    Landing,
) {
    let (tenant, events) = ten_days_of_events().await;
    tenant.shutdown().await;
    assert!(events.len() > 10);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(dir.path().to_path_buf()));
    let landing = Landing::new((*store).clone(), "r");
    (events, dir, store, landing)
}

/// A compaction of `store` as run `run_id`, default zone Asia/Shanghai.
async fn run(store: &Arc<Store>, run_id: &str) -> Result<CompactSummary, CompactError> {
    compact(
        Arc::clone(store),
        run_id,
        Duration::from_secs(30),
        shanghai(),
    )
    .await
}

fn files(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let dir = root.join("approval_events");
    let mut found = Vec::new();
    for partition in std::fs::read_dir(dir).unwrap() {
        let partition = partition.unwrap().path();
        for file in std::fs::read_dir(&partition).unwrap() {
            let file = file.unwrap().path();
            if !file.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push((
                    file.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&file).unwrap(),
                ));
            }
        }
    }
    found.sort();
    found
}

fn ids_in(files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (_, bytes) in files {
        let (batches, _) = attendance_lake::writer::decode(bytes.clone()).unwrap();
        for b in batches {
            let col = b.column(0).as_string::<i32>();
            ids.extend((0..b.num_rows()).map(|i| col.value(i).to_owned()));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landed_events_become_one_row_each_and_compaction_is_idempotent() {
    let tenant = SimTenant::start(SimConfig {
        users: 30,
        rate_limit_per_sec: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let events = tenant.approval_events(day(1), day(20));
    assert!(events.len() > 50, "{}", events.len());
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(dir.path().to_path_buf()));
    let landing = Landing::new((*store).clone(), "r");
    let first = &events[..events.len() / 2];
    for event in first {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    // An event whose time cannot be read keeps its row.
    let odd = json!({"ts": "not a time", "uuid": "odd-1", "token": "x", "type": "event_callback",
        "event": {"type": "out_approval", "instance_code": "I-odd"}});
    landing.land(odd, Transport::LongConnection).await.unwrap();

    let summary = run(&store, "c1").await.unwrap();
    assert_eq!(summary.events, first.len() + 1);
    assert_eq!(summary.new_rows, first.len() + 1);
    assert_eq!(summary.unreadable.len(), 1);
    assert_eq!(summary.unreadable[0].1.field, "ts");
    let once = files(dir.path());
    let ids = ids_in(&once);
    assert_eq!(ids.len(), first.len() + 1, "one row per event");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "ids distinct"
    );

    // The events' JSON is compressed and has no statistics, in the table and in the events
    // kept beside the approvals' partitions; the other columns have theirs.
    let kept = std::fs::read_dir(dir.path().join("_events/compacted/leave_events"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("events.parquet");
    for path in [dir.path().join(&once[0].0), kept] {
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        let columns = meta.row_group(0).columns();
        assert!(columns.iter().any(|c| c.column_path().string() == "raw"));
        for col in columns {
            let name = col.column_path().string();
            assert_eq!(col.statistics().is_none(), name == "raw", "{path:?} {name}");
            if name == "raw" {
                assert!(
                    matches!(col.compression(), parquet::basic::Compression::ZSTD(_)),
                    "{path:?} {name}"
                );
            }
        }
    }

    // Again with nothing new: nothing rewritten, the same bytes.
    let again = run(&store, "c2").await.unwrap();
    assert_eq!((again.new_rows, again.partitions.len()), (0, 0));
    assert_eq!(files(dir.path()), once);

    // The rest lands (and the first half again, as duplicates do); a partition is lost as if
    // a compaction had been killed before writing it: the next run gives what one run over
    // everything gives.
    for event in events.iter() {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    let victim = dir.path().join(&once[0].0);
    std::fs::remove_file(&victim).unwrap();
    run(&store, "c3").await.unwrap();
    let incremental = files(dir.path());

    let fresh = tempfile::tempdir().unwrap();
    let fresh_store = Arc::new(Store::Local(fresh.path().to_path_buf()));
    for event in attendance_lake::inbox::read_all(&store).await.unwrap() {
        // Copy each landed record as it is, so that receipt times match.
        let path = attendance_lake::inbox::path_of(&event.id);
        fresh_store
            .put(&path, serde_json::to_vec(&event).unwrap())
            .await
            .unwrap();
    }
    run(&fresh_store, "f1").await.unwrap();
    assert_eq!(
        files(fresh.path()),
        incremental,
        "incremental and one-shot agree"
    );
    assert_eq!(ids_in(&incremental).len(), events.len() + 1);
    tenant.shutdown().await;
}

#[tokio::test]
async fn one_compactor_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(dir.path().to_path_buf()));
    store.check().await.unwrap();
    // A sync's lease on the root does not hold a compaction up; another compactor's does.
    let sync = Lease::acquire(Arc::clone(&store), "a-sync", Duration::from_secs(60))
        .await
        .unwrap();
    run(&store, "c0").await.unwrap();
    let held = Lease::acquire_at(
        Arc::clone(&store),
        attendance_events::compact::COMPACT_LEASE_PATH,
        "another-compactor",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let err = run(&store, "c").await.unwrap_err();
    assert!(
        matches!(err, CompactError::Lease(LeaseError::Held { .. })),
        "{err}"
    );
    held.release().await.unwrap();
    sync.release().await.unwrap();
    let summary = run(&store, "c").await.unwrap();
    assert_eq!(summary.events, 0);
    assert_eq!(
        partition_path(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()),
        "approval_events/date=2026-03-01/part-00000.parquet"
    );
}

/// Lands `event` (the body's `event` object) as a v1 event with this uuid.
async fn land_v1(landing: &Landing, uuid: &str, event: serde_json::Value) {
    let body = json!({"ts": "1725500000.5", "uuid": uuid, "token": "t", "type": "event_callback", "event": event});
    landing.land(body, Transport::Webhook).await.unwrap();
}

fn state_rows(root: &std::path::Path, table: &str) -> Vec<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    for partition in std::fs::read_dir(root.join(table)).unwrap() {
        let file = partition.unwrap().path().join("part-00000.parquet");
        batches.extend(
            attendance_lake::writer::decode(std::fs::read(file).unwrap())
                .unwrap()
                .0,
        );
    }
    batches
}

#[tokio::test]
async fn the_pages_odd_forms_become_rows_and_what_cannot_be_read_is_kept_aside_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(dir.path().to_path_buf()));
    let landing = Landing::new((*store).clone(), "r");
    // Readable in every form the pages show.
    land_v1(&landing, "ok-leave", json!({
        "type": "leave_approvalV2", "instance_code": "L-ok", "user_id": "u1",
        "leave_start_time": "2024-09-05 00:00:00", "leave_end_time": "2024-09-07 00:00:00",
        "leave_interval": "129600", "leave_unit": "HALF_DAY", "leave_name": "@i18n@k",
        "i18n_resources": "[{is_default=true,locale=zh_cn,texts={@i18n@k=事假}}, {is_default=false,locale=en_us,texts={@i18n@k=Personal leave}}]",
        "leave_detail": "[[2024-09-05 13:30:00,2024-09-05 18:00:00],[2024-09-06 09:00:00,2024-09-06 18:00:00]]",
        "leave_range": null, "leave_certification": null, "leave_feeding_arrive_late": 0
    })).await;
    land_v1(&landing, "ok-out", json!({
        "type": "out_approval", "instance_code": "O-ok", "user_id": "u1",
        "out_start_time": "2024-09-05 15:00", "out_end_time": "2024-09-05 18:00:00",
        "out_interval": 10800, "out_unit": "HALR_DAY", "out_name": "@i18n@o",
        "i18n_resources": ["{\"is_default\":true,\"locale\":\"zh_cn\",\"texts\":{\"@i18n@o\":\"外出\"}}"]
    })).await;
    land_v1(&landing, "ok-work", json!({
        "type": "work_approval", "instance_code": "W-ok", "employee_id": "u1",
        "work_start_time": "2024-09-05 19:00:00", "work_end_time": "2024-09-05 21:00:00",
        "work_interval": "7200", "work_multi_imitate_users": null,
        "work_detail": [{"start": "2024-09-05 00:00", "end": "2024-09-05 00:00", "rule_associated": "2", "interval": "7200"}]
    })).await;
    // Each unreadable variant: (uuid, event, the field named).
    let unreadable = [
        (
            "bad-range",
            json!({"type": "leave_approvalV2", "instance_code": "L1", "leave_start_time": "2024-09-05 00:00:00",
            "leave_end_time": "2024-09-07 00:00:00", "leave_range": "2024-09-05"}),
            "event.leave_range",
        ),
        (
            "bad-interval",
            json!({"type": "leave_approvalV2", "instance_code": "L2", "leave_start_time": "2024-09-05 00:00:00",
            "leave_end_time": "2024-09-07 00:00:00", "leave_interval": "a day"}),
            "event.leave_interval",
        ),
        (
            "bad-i18n",
            json!({"type": "out_approval", "instance_code": "O1", "out_start_time": "2024-09-05 15:00:00",
            "out_end_time": "2024-09-05 18:00:00", "i18n_resources": "{locale=zh_cn"}),
            "event.i18n_resources",
        ),
        (
            "bad-time",
            json!({"type": "out_approval", "instance_code": "O2", "out_start_time": "15:00",
            "out_end_time": "2024-09-05 18:00:00"}),
            "event.out_start_time",
        ),
        (
            "bad-day",
            json!({"type": "work_approval", "instance_code": "W1", "work_start_time": "2024-09-05 19:00:00",
            "work_end_time": "2024-09-05 21:00:00", "work_detail": [{"start": "2024-09-05 00:00"}]}),
            "event.work_detail[0]",
        ),
        (
            "bad-revert",
            json!({"type": "out_approval_revert", "instance_code": "O-ok", "operate_time": [1]}),
            "event.operate_time",
        ),
        (
            "no-code",
            json!({"type": "leave_approval", "leave_start_time": "2024-09-05 00:00:00",
            "leave_end_time": "2024-09-07 00:00:00"}),
            "event.instance_code",
        ),
    ];
    for (uuid, event, _) in &unreadable {
        land_v1(&landing, uuid, event.clone()).await;
    }
    let summary = run(&store, "c").await.unwrap();
    assert_eq!(summary.events, 3 + unreadable.len());
    assert_eq!(
        summary.new_rows,
        3 + unreadable.len(),
        "every event keeps its approval_events row"
    );
    assert_eq!(summary.unreadable.len(), unreadable.len());

    // The rejects: one line per unreadable event, by id, with its field and reason and the event.
    let text = std::fs::read_to_string(
        dir.path()
            .join(attendance_events::compact::EVENT_REJECTS_PATH),
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut expected: Vec<(&str, &str)> = unreadable
        .iter()
        .map(|(id, _, field)| (*id, *field))
        .collect();
    expected.sort();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["event_id"].as_str().unwrap(),
                l["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    for line in &lines {
        assert!(!line["reason"].as_str().unwrap().is_empty());
        assert_eq!(line["raw"]["uuid"], line["event_id"]);
        assert!(
            line["raw"].get("token").is_none(),
            "the token is never kept"
        );
    }

    // The readable ones are rows, the odd forms read; the unreadable revert did not revert O-ok.
    let leave = &state_rows(dir.path(), "leave_events")[0];
    let text_of = |b: &arrow_array::RecordBatch, c: &str| {
        b.column_by_name(c)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_owned()
    };
    assert_eq!(text_of(leave, "leave_name"), "事假");
    assert_eq!(text_of(leave, "leave_unit"), "HALF_DAY");
    assert_eq!(text_of(leave, "leave_feeding_arrive_late"), "0");
    let out = &state_rows(dir.path(), "out_events")[0];
    assert_eq!(text_of(out, "out_name"), "外出");
    assert_eq!(text_of(out, "unit"), "HALR_DAY");
    assert!(arrow_array::Array::is_null(
        out.column_by_name("reverted_at").unwrap().as_ref(),
        0
    ));
    let work = &state_rows(dir.path(), "overtime_events")[0];
    assert_eq!(text_of(work, "instance_code"), "W-ok");
    assert_eq!(summary.state.rows.values().sum::<usize>(), 3);

    // A rerun changes nothing, the rejects included.
    let again = run(&store, "c2").await.unwrap();
    assert!(again.state_written.is_empty() && again.state_deleted.is_empty());
    assert_eq!(
        std::fs::read_to_string(
            dir.path()
                .join(attendance_events::compact::EVENT_REJECTS_PATH)
        )
        .unwrap(),
        text
    );
}

/// Every public file of the four event tables under `root`: path → bytes.
fn public_tables(root: &std::path::Path) -> BTreeSet<(String, Vec<u8>)> {
    let mut found = BTreeSet::new();
    for table in [
        "approval_events",
        "out_events",
        "leave_events",
        "overtime_events",
    ] {
        let Ok(partitions) = std::fs::read_dir(root.join(table)) else {
            continue;
        };
        for partition in partitions {
            for file in std::fs::read_dir(partition.unwrap().path()).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "parquet") {
                    let rel = file.strip_prefix(root).unwrap().display().to_string();
                    found.insert((rel, std::fs::read(&file).unwrap()));
                }
            }
        }
    }
    found
}

async fn zone_map(store_dir: &std::path::Path, user: &str, zone: &str) {
    let mut zones = attendance_lake::zones::UserZones::default();
    let seen = std::collections::BTreeMap::from([(
        user.to_owned(),
        (NaiveDate::from_ymd_opt(2024, 9, 1).unwrap(), zone),
    )]);
    zones.merge(attendance_core::plan::EmployeeType::EmployeeId, &seen);
    let store = Store::Local(store_dir.to_path_buf());
    zones.save(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_small_chunks_over_batches_of_landings_equal_one_run_over_everything() {
    let tenant = SimTenant::start(SimConfig {
        users: 30,
        rate_limit_per_sec: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let mut events = tenant.approval_events(day(1), day(20));
    // Revoke a few, and land every revert before its approval.
    let codes: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == "leave_approvalV2" || e.event_type == "out_approval")
        .map(|e| e.instance_code.clone())
        .step_by(5)
        .collect();
    for code in &codes {
        if let Some(revert) = tenant.revoke(code) {
            events.insert(0, revert);
        }
    }
    tenant.shutdown().await;
    let incremental = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(incremental.path().to_path_buf()));
    let landing = Landing::new((*store).clone(), "r");
    let chunked = |run_id: &'static str| {
        let store = Arc::clone(&store);
        async move {
            attendance_events::compact::compact_in_chunks(
                store,
                run_id,
                Duration::from_secs(30),
                shanghai(),
                7,
            )
            .await
            .unwrap()
        }
    };
    // Four batches, each compacted in chunks of 7, then the zone of one applicant changes.
    for (i, batch) in events.chunks(events.len() / 4 + 1).enumerate() {
        for event in batch {
            landing
                .land(event.body.clone(), Transport::Webhook)
                .await
                .unwrap();
        }
        let summary = chunked(["b0", "b1", "b2", "b3"][i]).await;
        assert!(summary.events >= batch.len());
        // Chunks of 7 write some partitions more than once; each is named once.
        assert!(summary.partitions.windows(2).all(|w| w[0] < w[1]));
        assert!(summary.state_written.windows(2).all(|w| w[0] < w[1]));
    }
    let pending_before = chunked("b4").await.state.pending_reverts;
    assert_eq!(pending_before, 0, "every revert found its approval");
    let user = events
        .iter()
        .find(|e| e.event_type == "out_approval")
        .and_then(|e| e.body["event"]["user_id"].as_str())
        .unwrap()
        .to_owned();
    zone_map(incremental.path(), &user, "America/New_York").await;
    let rezoned = chunked("z").await;
    assert!(
        rezoned.rebuilt > 0,
        "the user's rows were read again in the new zone"
    );
    assert!(!rezoned.state_written.is_empty());

    // One run over the same landed objects in a fresh root with that zone map.
    let one_shot = tempfile::tempdir().unwrap();
    let fresh = Arc::new(Store::Local(one_shot.path().to_path_buf()));
    for event in attendance_lake::inbox::read_all(&store).await.unwrap() {
        let path = attendance_lake::inbox::path_of(&event.id);
        fresh
            .put(&path, serde_json::to_vec(&event).unwrap())
            .await
            .unwrap();
    }
    zone_map(one_shot.path(), &user, "America/New_York").await;
    let whole = run(&fresh, "w").await.unwrap();
    assert_eq!(
        public_tables(incremental.path()),
        public_tables(one_shot.path())
    );
    let reverted: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.event_type.ends_with("_revert"))
        .map(|e| e.instance_code.as_str())
        .collect();
    assert!(reverted.len() >= codes.len());
    assert_eq!(whole.state.reverted, reverted.len());
    let rows: usize = whole.state.rows.values().sum();
    assert!(rows > 20, "{rows}");
}

#[tokio::test]
async fn a_run_reads_what_landed_since_the_last_one() {
    let (events, dir, store, landing) = events_and_an_empty_root().await;
    // Two hours ago, one hour ago, now: the run after the second one reads the second and the
    // third (within the relisting margin of the cursor), not the first.
    let (first, rest) = events.split_at(events.len() / 2);
    let (second, third) = rest.split_at(rest.len() - 5);
    // Everything landed so far (inbox objects and journals) as if landed `ago`.
    let age = |ago: &str| {
        let status = std::process::Command::new("find")
            .arg(dir.path().join("_events"))
            .args([
                "-type",
                "f",
                "-newermt",
                "10 minutes ago",
                "-exec",
                "touch",
                "-d",
                ago,
                "{}",
                "+",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    for event in first {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    age("2 hours ago");
    for event in second {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    age("1 hour ago");
    assert_eq!(
        run(&store, "one").await.unwrap().events,
        first.len() + second.len()
    );
    for event in third {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    let two = run(&store, "two").await.unwrap();
    assert_eq!(
        two.events,
        second.len() + third.len(),
        "what landed since, and the margin"
    );
    assert_eq!(two.new_rows, third.len());
    assert!(two.journals > 0);
    assert_eq!(two.inbox_objects, 0, "every event read from a journal");
    let three = run(&store, "three").await.unwrap();
    assert_eq!(
        three.events,
        third.len(),
        "the margin reads the newest again"
    );
    assert_eq!(
        (three.new_rows, three.rebuilt),
        (0, 0),
        "and changes nothing"
    );
    assert_eq!(
        ids_in(&files(dir.path())).len(),
        events.len(),
        "every event is one row"
    );
}

#[tokio::test]
async fn a_run_killed_before_saving_its_index_is_caught_up_by_the_next() {
    let (tenant, events) = ten_days_of_events().await;
    let code = events
        .iter()
        .find(|e| e.event_type == "out_approval")
        .unwrap()
        .instance_code
        .clone();
    let revert = tenant.revoke(&code).unwrap();
    tenant.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(dir.path().to_path_buf()));
    let landing = Landing::new((*store).clone(), "r");
    for event in &events {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    let first = run(&store, "first").await.unwrap();
    let tables = public_tables(dir.path());
    // As if killed after keeping the events and writing the tables, before anything else.
    let compacted = dir.path().join("_events/compacted");
    std::fs::remove_dir_all(compacted.join("index")).unwrap();
    for file in ["users.ndjson", "partitions.ndjson", "cursor.json"] {
        std::fs::remove_file(compacted.join(file)).unwrap();
    }
    let again = run(&store, "again").await.unwrap();
    assert_eq!(again.state, first.state, "counts caught up");
    assert_eq!(public_tables(dir.path()), tables, "the same tables");
    // The index is whole again: a revert finds its approval.
    landing
        .land(revert.body.clone(), Transport::Webhook)
        .await
        .unwrap();
    let reverted = run(&store, "reverted").await.unwrap();
    assert_eq!(reverted.state.pending_reverts, first.state.pending_reverts);
    assert_eq!(reverted.state.reverted, first.state.reverted + 1);
}

#[tokio::test]
async fn an_approval_whose_newest_event_starts_elsewhere_moves_with_all_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::Local(dir.path().to_path_buf()));
    let landing = Landing::new((*store).clone(), "r");
    let out = |uuid: &str, code: &str, ts: &str, start: &str| {
        json!({"ts": ts, "uuid": uuid, "type": "event_callback", "event": {
            "type": "out_approval", "instance_code": code, "user_id": "u1",
            "out_start_time": start, "out_end_time": start}})
    };
    for body in [
        out("x-1", "X", "1725500000", "2024-09-05 09:00:00"),
        out("y-1", "Y", "1725500000", "2024-09-05 13:00:00"),
        json!({"ts": "1725500100", "uuid": "x-r", "type": "event_callback", "event": {
            "type": "out_approval_revert", "instance_code": "X", "operate_time": "1725500100"}}),
    ] {
        landing.land(body, Transport::Webhook).await.unwrap();
    }
    run(&store, "one").await.unwrap();
    // Edited later: X now starts three days on.
    let edit = out("x-2", "X", "1725600000", "2024-09-08 09:00:00");
    landing.land(edit, Transport::Webhook).await.unwrap();
    let moved = run(&store, "two").await.unwrap();
    assert_eq!(moved.state.rows.values().sum::<usize>(), 2, "X once, and Y");
    assert_eq!(moved.state.reverted, 1);
    // (code, reverted, events behind the row) of each row of a date.
    let rows_on = |date: &str| -> Vec<(String, bool, usize)> {
        let file = dir
            .path()
            .join(format!("out_events/date={date}/part-00000.parquet"));
        let Ok(bytes) = std::fs::read(file) else {
            return Vec::new();
        };
        let (batches, _) = attendance_lake::writer::decode(bytes).unwrap();
        let b = &batches[0];
        let codes = b
            .column_by_name("instance_code")
            .unwrap()
            .as_string::<i32>();
        let reverted = b.column_by_name("reverted_at").unwrap();
        let ids = b.column_by_name("event_ids").unwrap();
        let ids = ids
            .as_any()
            .downcast_ref::<arrow_array::ListArray>()
            .unwrap();
        (0..b.num_rows())
            .map(|i| {
                let is_reverted = arrow_array::Array::is_valid(reverted.as_ref(), i);
                (codes.value(i).to_owned(), is_reverted, ids.value(i).len())
            })
            .collect()
    };
    assert_eq!(rows_on("2024-09-05"), [("Y".to_owned(), false, 1)]);
    assert_eq!(
        rows_on("2024-09-08"),
        [("X".to_owned(), true, 3)],
        "X moved with its first event and its revert"
    );
    // The index, zones and counts lost (a run killed before saving them): the next run puts
    // them back, and a later revert of Y still finds its approval.
    let tables = public_tables(dir.path());
    let compacted = dir.path().join("_events/compacted");
    std::fs::remove_dir_all(compacted.join("index")).unwrap();
    for file in ["users.ndjson", "partitions.ndjson", "cursor.json"] {
        std::fs::remove_file(compacted.join(file)).unwrap();
    }
    let again = run(&store, "three").await.unwrap();
    assert_eq!(again.state, moved.state);
    assert_eq!(public_tables(dir.path()), tables);
    let revert_y = json!({"ts": "1725700000", "uuid": "y-r", "type": "event_callback", "event": {
        "type": "out_approval_revert", "instance_code": "Y", "operate_time": "1725700000"}});
    landing.land(revert_y, Transport::Webhook).await.unwrap();
    let last = run(&store, "four").await.unwrap();
    assert_eq!((last.state.reverted, last.state.pending_reverts), (2, 0));
}

#[tokio::test]
async fn journals_are_read_and_of_the_inbox_only_what_no_journal_holds() {
    let (events, dir, store, landing) = events_and_an_empty_root().await;
    let (legacy, through_landing) = events.split_last().unwrap();
    for event in through_landing {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    // Three delivered again: in the journals twice, in the inbox once.
    for event in &through_landing[..3] {
        landing
            .land(event.body.clone(), Transport::LongConnection)
            .await
            .unwrap();
    }
    let journal_paths = store
        .list_files(attendance_lake::inbox::JOURNAL_DIR)
        .await
        .unwrap();
    let journaled: Vec<attendance_lake::inbox::LandedEvent> =
        attendance_lake::inbox::read_journals(&store, &journal_paths)
            .await
            .unwrap();
    let object = |id: &str| dir.path().join(attendance_lake::inbox::path_of(id));
    // A receiver killed between its two writes: the event is in a journal only.
    std::fs::remove_file(object(&journaled[0].id)).unwrap();
    // An inbox object whose event a journal holds is not read: damaged, it is not noticed.
    std::fs::write(object(&journaled[1].id), b"{ not what a receiver writes").unwrap();
    // Landed by a receiver that kept no journal: read from the inbox.
    let record = landing.record(legacy.body.clone(), Transport::Webhook, chrono::Utc::now());
    store
        .put(
            &attendance_lake::inbox::path_of(&record.id),
            serde_json::to_vec(&record).unwrap(),
        )
        .await
        .unwrap();

    let summary = run(&store, "j").await.unwrap();
    assert_eq!(summary.inbox_objects, 1, "only the object no journal holds");
    assert_eq!(summary.journals, journal_paths.len());
    assert_eq!(summary.events, journaled.len() + 1);
    assert_eq!(summary.new_rows, events.len(), "each event once");
    let incremental = files(dir.path());
    assert_eq!(ids_in(&incremental).len(), events.len());

    // The same tables as one run over an inbox of each event once, as first received.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_store = Arc::new(Store::Local(fresh.path().to_path_buf()));
    let mut seen = BTreeSet::new();
    for event in journaled.iter().chain([&record]) {
        if seen.insert(event.id.clone()) {
            fresh_store
                .put(
                    &attendance_lake::inbox::path_of(&event.id),
                    serde_json::to_vec(event).unwrap(),
                )
                .await
                .unwrap();
        }
    }
    let whole = run(&fresh_store, "f").await.unwrap();
    assert_eq!((whole.journals, whole.inbox_objects), (0, events.len()));
    assert_eq!(files(fresh.path()), incremental);
    assert_eq!(public_tables(fresh.path()), public_tables(dir.path()));

    // Runs after a cursor: an event whose inbox object is lost (its receiver killed between
    // its writes) is read from its journal, whether it has a time of its own or is dated by
    // its receipt.
    let no_time = |uuid: &str| {
        json!({"uuid": uuid, "type": "event_callback",
            "event": {"type": "out_approval", "instance_code": format!("NT-{uuid}")}})
    };
    let timed = json!({"ts": "1725500000.5", "uuid": "late-1", "type": "event_callback",
        "event": {"type": "some_new_type"}});
    for body in [no_time("nt-1"), no_time("nt-2"), timed] {
        landing.land(body, Transport::Webhook).await.unwrap();
    }
    for lost in ["nt-2", "late-1"] {
        std::fs::remove_file(object(lost)).unwrap();
    }
    let second = run(&store, "k").await.unwrap();
    assert!(second.journals > 0, "read from journals");
    assert_eq!(second.new_rows, 3);
    // A redelivery of the event without a time, received two days later: its row stays the
    // first delivery's (its inbox object's), not a second row on the later date.
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let again = landing.record(no_time("nt-1"), Transport::LongConnection, later);
    store
        .put(
            &attendance_lake::inbox::journal_path(chrono::Utc::now(), "again", 1),
            serde_json::to_vec(&again).unwrap(),
        )
        .await
        .unwrap();
    let third = run(&store, "l").await.unwrap();
    assert!(third.journals > 0);
    assert_eq!(third.new_rows, 0, "no second row for a redelivery");
    assert_eq!(ids_in(&files(dir.path())).len(), events.len() + 3);

    // An object no journal holds that is not a landed record stops the run, named.
    std::fs::create_dir_all(object("stray").parent().unwrap()).unwrap();
    std::fs::write(object("stray"), b"{ damaged").unwrap();
    let err = run(&store, "h").await.unwrap_err().to_string();
    assert!(
        err.contains(&attendance_lake::inbox::path_of("stray")),
        "{err}"
    );
}

#[tokio::test]
async fn files_dated_ahead_of_the_run_do_not_carry_its_cursor_past_the_listing() {
    let (events, dir, store, landing) = events_and_an_empty_root().await;
    let (early, later) = events.split_at(events.len() / 2);
    for event in early {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    // Written by a clock an hour ahead (a share's server, a receiver's): times to come.
    let status = std::process::Command::new("find")
        .arg(dir.path().join("_events"))
        .args(["-type", "f", "-exec", "touch", "-d", "1 hour", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
    let one = run(&store, "one").await.unwrap();
    assert_eq!(one.events, early.len());
    let cursor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(COMPACT_CURSOR_PATH)).unwrap())
            .unwrap();
    let through: chrono::DateTime<chrono::Utc> =
        cursor["through"].as_str().unwrap().parse().unwrap();
    assert!(through <= chrono::Utc::now(), "{through}");
    // What lands now, by the right clock, is read by the next run.
    for event in later {
        landing
            .land(event.body.clone(), Transport::Webhook)
            .await
            .unwrap();
    }
    let two = run(&store, "two").await.unwrap();
    assert_eq!(two.new_rows, later.len());
    assert_eq!(
        ids_in(&files(dir.path())).len(),
        events.len(),
        "every event is one row"
    );
}
