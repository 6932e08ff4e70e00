//! `approval_events` from landed events: one row per distinct event, idempotent, resumable
//! after a partial run, unreadable events kept, one compactor at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use attendance_events::compact::{CompactError, compact, partition_path};
use attendance_events::{Landing, Transport};
use attendance_lake::lease::{Lease, LeaseError};
use attendance_lake::store::Store;
use attendance_sim::{SimConfig, SimTenant};
use chrono::NaiveDate;
use serde_json::json;

fn shanghai() -> attendance_core::tz::Zone {
    attendance_core::tz::zone(Some("Asia/Shanghai")).unwrap()
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

    let summary = compact(
        Arc::clone(&store),
        "c1",
        Duration::from_secs(30),
        shanghai(),
    )
    .await
    .unwrap();
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
    let again = compact(
        Arc::clone(&store),
        "c2",
        Duration::from_secs(30),
        shanghai(),
    )
    .await
    .unwrap();
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
    compact(
        Arc::clone(&store),
        "c3",
        Duration::from_secs(30),
        shanghai(),
    )
    .await
    .unwrap();
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
    compact(
        Arc::clone(&fresh_store),
        "f1",
        Duration::from_secs(30),
        shanghai(),
    )
    .await
    .unwrap();
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
    let held = Lease::acquire(Arc::clone(&store), "a-sync", Duration::from_secs(60))
        .await
        .unwrap();
    let err = compact(Arc::clone(&store), "c", Duration::from_secs(30), shanghai())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CompactError::Lease(LeaseError::Held { .. })),
        "{err}"
    );
    held.release().await.unwrap();
    let summary = compact(store, "c", Duration::from_secs(30), shanghai())
        .await
        .unwrap();
    assert_eq!(summary.events, 0);
    assert_eq!(
        partition_path(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()),
        "approval_events/date=2026-03-01/part-00000.parquet"
    );
}
