//! Tests of the admin calls over real loopback HTTP: approvals the query API then lists, with
//! events that name them; revokes; delivery by webhook (to a tiny receiver) and over the long
//! connection (to a test WebSocket client); and the 400 / 404 answers, which change nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use attendance_feishu::event::{
    LEAVE_APPROVAL, LEAVE_APPROVAL_REVERT, LEAVE_APPROVAL_V2, OUT_APPROVAL, OUT_APPROVAL_REVERT,
    WORK_APPROVAL,
};

use super::event_tests::{ack, connect, next_frame, send_frame};
use super::tests::{Reply, approvals, config, date, post, query, token};
use super::{SimEvent, SimTenant};

/// POSTs `body` (sent as given, not re-encoded) to an admin path of the tenant.
async fn admin(client: &reqwest::Client, tenant: &SimTenant, path: &str, body: &str) -> Reply {
    post(
        client,
        format!("{}{path}", tenant.base_url()),
        None,
        body.to_owned(),
    )
    .await
}

async fn approve(client: &reqwest::Client, tenant: &SimTenant, body: Value) -> Reply {
    admin(client, tenant, "/sim/admin/approve", &body.to_string()).await
}

async fn revoke(client: &reqwest::Client, tenant: &SimTenant, body: Value) -> Reply {
    admin(client, tenant, "/sim/admin/revoke", &body.to_string()).await
}

/// The approval ids the query API lists in `list` of `user` on 2026-06-10 with `status`.
async fn listed(
    client: &reqwest::Client,
    tenant: &SimTenant,
    user: &str,
    list: &str,
    status: i32,
) -> Vec<String> {
    let token = token(client, tenant).await;
    let body = json!({"user_ids": [user], "check_date_from": 20260610,
        "check_date_to": 20260610, "status": status});
    let reply = query(client, tenant, &token, "employee_id", body).await;
    approvals(&reply)
        .iter()
        .inspect(|day| {
            assert_eq!(
                (&day["user_id"], &day["date"]),
                (&json!(user), &json!("20260610"))
            )
        })
        .flat_map(|day| day[list].as_array().into_iter().flatten())
        .map(|record| record["approval_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of answered events (`{"id","event_type","instance_code","body"}`), checking each
/// against its body.
fn answered(events: &Value) -> Vec<(String, String)> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            assert_eq!(event["body"]["uuid"], event["id"]);
            assert_eq!(event["body"]["event"]["type"], event["event_type"]);
            assert_eq!(
                event["body"]["event"]["instance_code"],
                event["instance_code"]
            );
            (
                event["id"].as_str().unwrap().to_owned(),
                event["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn as_json(event: &SimEvent) -> Value {
    json!({"id": event.id, "event_type": event.event_type,
        "instance_code": event.instance_code, "body": event.body})
}

#[tokio::test]
async fn approve_lists_the_new_approval_and_answers_its_events() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let employee_id = tenant.user_ids("employee_id").unwrap()[5].clone();
    let open_id = tenant.user_ids("open_id").unwrap()[5].clone();
    let day = date(2026, 6, 10);
    for (kind, types) in [
        ("outs", vec![OUT_APPROVAL]),
        ("leaves", vec![LEAVE_APPROVAL, LEAVE_APPROVAL_V2]),
        ("overtime_works", vec![WORK_APPROVAL]),
    ] {
        let before = listed(&client, &tenant, &employee_id, kind, 2).await;
        let reply = approve(
            &client,
            &tenant,
            json!({"employee_id": employee_id, "date": "2026-06-10", "kind": kind,
                "deliver": "none"}),
        )
        .await;
        assert_eq!(reply.http, 200, "{}", reply.text);
        let approval_id = reply.json["approval_id"].as_str().unwrap().to_owned();
        assert!(
            approval_id.len() == 19 && approval_id.bytes().all(|b| b.is_ascii_digit()),
            "{approval_id}"
        );
        assert!(!before.contains(&approval_id));

        // Listed from now on, under that user and date, next to what was there.
        let after = listed(&client, &tenant, &employee_id, kind, 2).await;
        assert_eq!(after.len(), before.len() + 1, "{kind}: {after:?}");
        assert!(after.contains(&approval_id), "{kind}: {after:?}");

        let events = &reply.json["events"];
        let ids = answered(events);
        let event_types: Vec<&str> = ids.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(event_types, types, "{kind}");
        for event in events.as_array().unwrap() {
            assert_eq!(event["instance_code"], approval_id.as_str());
            let e = &event["body"]["event"];
            assert_eq!(e["open_id"], open_id.as_str(), "{e}");
            let user = e.get("user_id").or_else(|| e.get("employee_id")).unwrap();
            assert_eq!(user, employee_id.as_str(), "{e}");
            for field in ["out_start_time", "leave_start_time", "work_start_time"] {
                if let Some(start) = e.get(field) {
                    assert!(start.as_str().unwrap().starts_with("2026-06-10 "), "{e}");
                }
            }
        }
        // The very events approval_events gives for it.
        let implied: Vec<Value> = tenant
            .approval_events(day, day)
            .iter()
            .filter(|event| event.instance_code == approval_id)
            .map(as_json)
            .collect();
        assert_eq!(&Value::Array(implied), events, "{kind}");
    }

    // The same as a Rust call.
    let (approval_id, events) = tenant.approve(&employee_id, day, "leaves").unwrap();
    assert!(
        listed(&client, &tenant, &employee_id, "leaves", 2)
            .await
            .contains(&approval_id)
    );
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, [LEAVE_APPROVAL, LEAVE_APPROVAL_V2]);
    assert!(
        events
            .iter()
            .all(|event| event.instance_code == approval_id)
    );
    assert_eq!(tenant.approve("no-such-user", day, "outs"), None);
    assert_eq!(tenant.approve(&employee_id, day, "trips"), None);
    assert_eq!(tenant.approve(&employee_id, day, "holidays"), None);
    tenant.shutdown().await;
}

/// A tiny webhook receiver: logs every plaintext body, answers 200 after `delay`.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(delay: Duration) -> Receiver {
        let log: Arc<Mutex<Vec<Value>>> = Arc::default();
        let handler_log = Arc::clone(&log);
        let handler = move |raw: Bytes| {
            let log = Arc::clone(&handler_log);
            async move {
                log.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&raw).unwrap_or(Value::Null));
                tokio::time::sleep(delay).await;
                r#"{"msg":"success"}"#
            }
        };
        let app = axum::Router::new().route("/webhook/event", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook/event", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, log, task }
    }

    /// The bodies received, once there are at least `count` (or whatever came within 5 s).
    async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.len() >= count || Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn approve_and_revoke_deliver_by_webhook_without_waiting() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    // The receiver takes its time: the admin call must not wait for it.
    let receiver = Receiver::start(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let reply = approve(
        &client,
        &tenant,
        json!({"employee_id": "fx_london", "date": "2026-06-10", "kind": "leaves",
            "deliver": {"webhook": receiver.url}}),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered at once"
    );
    assert_eq!(reply.http, 200, "{}", reply.text);
    let approval_id = reply.json["approval_id"].as_str().unwrap().to_owned();
    let ids = answered(&reply.json["events"]);
    let received = receiver.wait_for(2).await;
    assert_eq!(received.len(), 2, "{received:?}");
    // Pushed concurrently: they may arrive in either order.
    for (id, event_type) in &ids {
        let body = received
            .iter()
            .find(|body| body["uuid"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not received: {received:?}"));
        assert_eq!(body["type"], "event_callback");
        assert_eq!(body["event"]["type"], event_type.as_str());
        assert_eq!(body["event"]["instance_code"], approval_id.as_str());
        let user = match event_type.as_str() {
            LEAVE_APPROVAL => &body["event"]["employee_id"],
            _ => &body["event"]["user_id"],
        };
        assert_eq!(user, "fx_london");
    }

    // The admin-made leave can be revoked, its revert pushed the same way.
    let reply = revoke(
        &client,
        &tenant,
        json!({"approval_id": approval_id, "deliver": {"webhook": receiver.url}}),
    )
    .await;
    assert_eq!(reply.http, 200, "{}", reply.text);
    let event = &reply.json["event"];
    assert_eq!(event["event_type"], LEAVE_APPROVAL_REVERT);
    assert_eq!(event["instance_code"], approval_id.as_str());
    let received = receiver.wait_for(3).await;
    assert_eq!(received.len(), 3);
    assert!(received.contains(&event["body"]), "{received:?}");
    // Revoked leaves leave the approved list (and are not served for status 4).
    assert!(
        !listed(&client, &tenant, "fx_london", "leaves", 2)
            .await
            .contains(&approval_id)
    );
    tenant.shutdown().await;
}

/// The outs the query API lists for fx_shanghai on 2026-09-17 with `status`.
async fn fx_shanghai_outs(
    client: &reqwest::Client,
    tenant: &SimTenant,
    token: &str,
    status: i32,
) -> Vec<String> {
    let body = json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260917,
        "check_date_to": 20260917, "status": status});
    let reply = query(client, tenant, token, "employee_id", body).await;
    approvals(&reply)
        .iter()
        .flat_map(|day| day["outs"].as_array().unwrap().iter())
        .map(|out| out["approval_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn revoke_flips_the_status_and_queues_the_revert_on_the_long_connection() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let outs = |status: i32| fx_shanghai_outs(&client, &tenant, &token, status);
    assert_eq!(outs(2).await, ["fx-sh-revocable"]);
    let (mut socket, _) = connect(&tenant).await;

    let reply = revoke(
        &client,
        &tenant,
        json!({"approval_id": "fx-sh-revocable", "deliver": "long_connection"}),
    )
    .await;
    assert_eq!(reply.http, 200, "{}", reply.text);
    let event = &reply.json["event"];
    assert_eq!(event["event_type"], OUT_APPROVAL_REVERT);
    assert_eq!(event["instance_code"], "fx-sh-revocable");
    assert_eq!(event["body"]["event"]["instance_code"], "fx-sh-revocable");
    let id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["body"]["uuid"], id.as_str());

    assert!(outs(2).await.is_empty());
    assert_eq!(outs(4).await, ["fx-sh-revocable"]);

    let frame = next_frame(&mut socket).await.expect("the revert is pushed");
    let pushed: Value = serde_json::from_slice(frame.payload.as_ref().unwrap()).unwrap();
    assert_eq!(pushed, event["body"]);
    send_frame(&mut socket, &ack(&frame, 200)).await;
    assert!(
        tenant
            .wait_long_connection_acked(std::slice::from_ref(&id), Duration::from_secs(3))
            .await
    );
    assert_eq!(tenant.long_connection_stats().frames_sent, 1);

    // "none": answered, nothing pushed.
    let reply = revoke(
        &client,
        &tenant,
        json!({"approval_id": "fx-sh-revocable", "deliver": "none"}),
    )
    .await;
    assert_eq!(reply.http, 200, "{}", reply.text);
    assert_ne!(reply.json["event"]["id"], id.as_str(), "a fresh uuid");
    assert!(next_frame(&mut socket).await.is_none());
    assert_eq!(tenant.long_connection_stats().frames_sent, 1);
    tenant.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_answer_404_and_bad_bodies_400_changing_nothing() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let employee_id = tenant.user_ids("employee_id").unwrap()[0].clone();
    let events_before = tenant.approval_events(date(2026, 6, 10), date(2026, 6, 10));

    let not_found = [
        revoke(
            &client,
            &tenant,
            json!({"approval_id": "no-such-approval", "deliver": "none"}),
        )
        .await,
        revoke(
            &client,
            &tenant,
            json!({"approval_id": "7000000000000000000", "deliver": "none"}),
        )
        .await,
        revoke(
            &client,
            &tenant,
            json!({"approval_id": "fx-sh-trip", "deliver": "none"}),
        )
        .await,
        approve(
            &client,
            &tenant,
            json!({"employee_id": "nobody", "date": "2026-06-10", "kind": "outs",
                "deliver": "none"}),
        )
        .await,
    ];
    for reply in &not_found {
        assert_eq!(reply.http, 404, "{}", reply.text);
        assert!(reply.json["msg"].is_string(), "{}", reply.text);
    }

    let approve_with = |fields: Value| {
        let mut body = json!({"employee_id": employee_id, "date": "2026-06-10",
            "kind": "outs", "deliver": "none"});
        for (key, value) in fields.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body.to_string()
    };
    let bad = [
        ("/sim/admin/approve", "not json".to_owned()),
        ("/sim/admin/approve", "[]".to_owned()),
        ("/sim/admin/approve", approve_with(json!({"kind": "trips"}))),
        (
            "/sim/admin/approve",
            approve_with(json!({"kind": "holidays"})),
        ),
        ("/sim/admin/approve", approve_with(json!({"kind": 3}))),
        (
            "/sim/admin/approve",
            approve_with(json!({"date": "20260610"})),
        ),
        (
            "/sim/admin/approve",
            approve_with(json!({"date": "2026-13-01"})),
        ),
        (
            "/sim/admin/approve",
            approve_with(json!({"date": "0001-01-01"})),
        ),
        ("/sim/admin/approve", approve_with(json!({"date": null}))),
        ("/sim/admin/approve", approve_with(json!({"deliver": null}))),
        (
            "/sim/admin/approve",
            approve_with(json!({"deliver": "pigeon"})),
        ),
        (
            "/sim/admin/approve",
            approve_with(json!({"deliver": {"webhook": "ftp://127.0.0.1/x"}})),
        ),
        (
            "/sim/admin/approve",
            approve_with(json!({"deliver": {"webhook": "not a url"}})),
        ),
        ("/sim/admin/approve", approve_with(json!({"status": 2}))),
        // A bad delivery target fails before the id is looked at: nothing is revoked.
        (
            "/sim/admin/revoke",
            json!({"approval_id": "fx-sh-revocable", "deliver": "pigeon"}).to_string(),
        ),
        (
            "/sim/admin/revoke",
            json!({"approval_id": "fx-sh-revocable", "deliver": {"webhook": ""}}).to_string(),
        ),
        (
            "/sim/admin/revoke",
            json!({"approval_id": 7, "deliver": "none"}).to_string(),
        ),
        ("/sim/admin/revoke", json!({"deliver": "none"}).to_string()),
        ("/sim/admin/revoke", String::new()),
    ];
    for (path, body) in &bad {
        let reply = admin(&client, &tenant, path, body).await;
        assert_eq!(reply.http, 400, "{path} {body}: {}", reply.text);
        assert!(
            reply.json["msg"].is_string(),
            "{path} {body}: {}",
            reply.text
        );
    }
    assert_eq!(
        tenant.approval_events(date(2026, 6, 10), date(2026, 6, 10)),
        events_before,
        "no approval was added"
    );
    let revocable: Vec<String> = tenant
        .approval_events(date(2026, 9, 17), date(2026, 9, 17))
        .into_iter()
        .filter(|event| event.instance_code == "fx-sh-revocable")
        .map(|event| event.event_type)
        .collect();
    assert_eq!(revocable, [OUT_APPROVAL], "not revoked");

    // Never under /open-apis/, and only POST.
    for path in [
        "/open-apis/sim/admin/revoke",
        "/open-apis/sim/admin/approve",
        "/open-apis/admin/revoke",
        "/open-apis/attendance/v1/sim/admin/approve",
    ] {
        let body = json!({"approval_id": "fx-sh-revocable", "deliver": "none"}).to_string();
        let reply = admin(&client, &tenant, path, &body).await;
        assert_eq!(reply.http, 404, "{path}");
    }
    let reply = client
        .get(format!("{}/sim/admin/revoke", tenant.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 405);
    assert_eq!(
        tenant.stats().query_calls + tenant.stats().token_calls,
        0,
        "admin calls are not platform traffic"
    );
    tenant.shutdown().await;
}
