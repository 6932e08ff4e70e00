//! The long connection in process against the simulated tenant's endpoint: landing and acks,
//! fragments, pings, re-pushes, and a server-side close.

use std::sync::Arc;
use std::time::Duration;

use attendance_events::{Landing, LongConnection, Metrics};
use attendance_feishu::frame::ConnectionConfig;
use attendance_feishu::{Client, ClientConfig, Credentials};
use attendance_lake::store::Store;
use attendance_sim::{EventSettings, LongConnectionSettings, SimConfig, SimTenant};
use chrono::NaiveDate;
use tokio::sync::watch;

async fn tenant(settings: LongConnectionSettings) -> SimTenant {
    SimTenant::start(SimConfig {
        users: 20,
        rate_limit_per_sec: 0,
        events: EventSettings {
            long_connection: settings,
            ..EventSettings::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn client_of(tenant: &SimTenant) -> Arc<Client> {
    let config = tenant.config();
    Arc::new(
        Client::new(ClientConfig::new(
            tenant.base_url(),
            Credentials {
                app_id: config.app_id.clone(),
                app_secret: config.app_secret.clone(),
            },
        ))
        .unwrap(),
    )
}

type Running = tokio::task::JoinHandle<
    Result<attendance_events::LongConnectionSummary, attendance_events::LongConnectionError>,
>;

/// A long connection to the tenant landing on `landing`, running until `stop` says true.
fn start(
    tenant: &SimTenant,
    landing: &Landing,
) -> (Arc<LongConnection>, watch::Sender<bool>, Running) {
    let receiver = Arc::new(LongConnection::new(
        client_of(tenant),
        landing.clone(),
        Metrics::new(),
    ));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn({
        let receiver = Arc::clone(&receiver);
        async move { receiver.run(stopped).await }
    });
    (receiver, stop, running)
}

const QUICK: ConnectionConfig = ConnectionConfig {
    reconnect_count: -1,
    reconnect_interval: 1,
    reconnect_nonce: 0,
    ping_interval: 1,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_landed_then_acknowledged_fragmented_or_not() {
    let tenant = tenant(LongConnectionSettings {
        config: QUICK,
        fragment_size: Some(200),
        close_after_frames: Some(40),
        repush_after: Duration::from_millis(500),
        ..LongConnectionSettings::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::new(Store::Local(dir.path().to_path_buf()), "lc");
    let (receiver, stop, running) = start(&tenant, &landing);
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let events = tenant.approval_events(day, day + chrono::Days::new(4));
    assert!(events.len() > 5, "{}", events.len());
    tenant.push_long_connection(events.clone());
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let acked = tenant
        .wait_long_connection_acked(&ids, Duration::from_secs(20))
        .await;
    let stats = tenant.long_connection_stats();
    assert!(acked, "{stats:?} {:?}", receiver.summary());
    for id in &ids {
        assert!(
            landing.contains(id).await.unwrap(),
            "{id} acked but not landed"
        );
    }
    stop.send(true).unwrap();
    let summary = running.await.unwrap().unwrap();
    assert_eq!(summary.landed as usize, events.len());
    assert!(
        stats.frames_sent > events.len() as u64,
        "fragmented: {stats:?}"
    );
    tenant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_landed_is_answered_500_and_pushed_again() {
    let tenant = tenant(LongConnectionSettings {
        config: QUICK,
        repush_after: Duration::from_millis(300),
        ..LongConnectionSettings::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // `_events` is a file: nothing can be landed until it is gone.
    std::fs::write(dir.path().join("_events"), b"in the way").unwrap();
    let landing = Landing::new(Store::Local(dir.path().to_path_buf()), "lc");
    let (_receiver, stop, running) = start(&tenant, &landing);
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let events = tenant.approval_events(day, day);
    assert!(!events.is_empty());
    tenant.push_long_connection(events.clone());
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tenant.long_connection_stats().acks_failed < events.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            tenant.long_connection_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tenant.long_connection_stats().acked.is_empty());
    std::fs::remove_file(dir.path().join("_events")).unwrap();
    assert!(
        tenant
            .wait_long_connection_acked(&ids, Duration::from_secs(10))
            .await
    );
    for id in &ids {
        assert!(landing.contains(id).await.unwrap());
    }
    stop.send(true).unwrap();
    let summary = running.await.unwrap().unwrap();
    assert!(summary.failed >= events.len() as u64, "{summary:?}");
    // A delivery in flight as the way cleared can have created its object and failed its
    // journal line: its redelivery is then a duplicate. Each event is new once at most.
    assert!(
        summary.landed > 0 && summary.landed as usize <= events.len(),
        "{summary:?}"
    );
    assert!(
        (summary.landed + summary.duplicates) as usize >= events.len(),
        "{summary:?}"
    );
    // Only a delivery that failed is pushed again.
    assert!(summary.duplicates <= summary.failed, "{summary:?}");
    tenant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_refusal_is_retried_until_reconnect_count_then_the_run_gives_up() {
    // 514 with another auth code is worth retrying; ReconnectCount 2 allows two more attempts.
    let tenant = tenant(LongConnectionSettings {
        config: ConnectionConfig {
            reconnect_count: 2,
            reconnect_interval: 0,
            reconnect_nonce: 0,
            ping_interval: 1,
        },
        refuse_handshake: Some(attendance_sim::HandshakeRefusal {
            status: 514,
            auth_errcode: Some(1000040351),
        }),
        ..LongConnectionSettings::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::new(Store::Local(dir.path().to_path_buf()), "lc");
    let (_receiver, _stop, running) = start(&tenant, &landing);
    let ended = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("gives up instead of spinning")
        .unwrap();
    match ended {
        Err(attendance_events::LongConnectionError::GaveUp { attempts, .. }) => {
            assert_eq!(attempts, 3)
        }
        other => panic!("{other:?}"),
    }
    let stats = tenant.long_connection_stats();
    assert_eq!(
        (stats.endpoint_calls, stats.handshakes_refused),
        (3, 3),
        "{stats:?}"
    );
    tenant.shutdown().await;
}
