//! `approval_events` from landed events: one row per distinct event, idempotent, resumable
//! after a partial run, unreadable events kept, one compactor at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use attendance_events::compact::{CompactError, CompactSummary, compact, partition_path};
use attendance_events::{Landing, Transport};
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::Store;
use attendance_sim::{SimConfig, SimTenant};
use chrono::NaiveDate;
use serde_json::json;

fn shanghai() -> attendance_core::tz::Zone {
    attendance_core::tz::zone(Some("Asia/Shanghai")).unwrap()
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
