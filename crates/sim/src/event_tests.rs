//! Tests of the tenant's approval events over real loopback HTTP and WebSocket: bodies that
//! agree with the query API, revocation, the webhook push (encryption, signature, retries,
//! timeouts, duplicates, order, the challenge) and the long connection (discovery, pongs,
//! fragments, acks, re-pushes, handshake refusals, server-side closes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use attendance_feishu::envelope::{EncryptKey, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use attendance_feishu::event::{
    APPROVAL_EVENT_TYPES, LEAVE_APPROVAL, LEAVE_APPROVAL_REVERT, LEAVE_APPROVAL_V2, OUT_APPROVAL,
    OUT_APPROVAL_REVERT, WORK_APPROVAL,
};
use attendance_feishu::frame::{
    AUTH_EXCEED_CONN_LIMIT, AckPayload, ConnectionConfig, ENDPOINT_BAD_CREDENTIALS, ENDPOINT_PATH,
    Frame, HANDSHAKE_AUTH_ERRCODE, HANDSHAKE_MSG, HANDSHAKE_STATUS, HEADER_BIZ_RT,
    HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, METHOD_CONTROL, METHOD_DATA, TYPE_EVENT, TYPE_PONG,
};

use super::tests::{approvals, config, date, query, token};
use super::{
    EventSettings, HandshakeRefusal, LongConnectionSettings, SimConfig, SimEvent, SimTenant,
};

const ENCRYPT_KEY: &str = "sim-encrypt-key";

fn with_events(events: EventSettings) -> SimConfig {
    SimConfig { events, ..config() }
}

/// A number sent as a number or as its decimal string.
fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        .unwrap_or_else(|| panic!("not an integer: {value}"))
}

fn is_uuid(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `[[a,b],[c,d]]` from either wire form of `leave_range` / `leave_detail`.
fn ranges_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(pairs) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|pair| {
                    format!(
                        "[{},{}]",
                        pair[0].as_str().unwrap(),
                        pair[1].as_str().unwrap()
                    )
                })
                .collect();
            format!("[{}]", pairs.join(","))
        }
        other => panic!("not a range list: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Event bodies.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn approval_events_agree_with_the_query_api() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let employee_ids = tenant.user_ids("employee_id").unwrap();
    let open_ids = tenant.user_ids("open_id").unwrap();
    let open_id_of: HashMap<&str, &str> = employee_ids
        .iter()
        .map(String::as_str)
        .zip(open_ids.iter().map(String::as_str))
        .collect();
    let users: Vec<&String> = employee_ids.iter().take(40).collect();
    let (from, to) = (date(2026, 3, 1), date(2026, 3, 20));
    let body = |status: i32| {
        json!({"user_ids": users, "check_date_from": 20260301, "check_date_to": 20260320,
            "status": status})
    };

    // approval_id → (kind, employee_id, record), as the query API lists them.
    let mut listed: BTreeMap<String, (&str, String, Value)> = BTreeMap::new();
    let approved = query(&client, &tenant, &token, "employee_id", body(2)).await;
    for user_day in approvals(&approved) {
        let user = user_day["user_id"].as_str().unwrap().to_owned();
        for kind in ["outs", "leaves", "overtime_works"] {
            for record in user_day[kind].as_array().unwrap() {
                let id = record["approval_id"].as_str().unwrap().to_owned();
                listed.insert(id, (kind, user.clone(), record.clone()));
            }
        }
    }
    assert!(
        listed.len() > 30,
        "too few approvals to test: {}",
        listed.len()
    );

    let events = tenant.approval_events(from, to);
    assert_eq!(events, tenant.approval_events(from, to), "deterministic");
    let ids: BTreeSet<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "uuids are unique");
    let mut types_by_instance: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in &events {
        assert!(is_uuid(&event.id), "{}", event.id);
        assert!(APPROVAL_EVENT_TYPES.contains(&event.event_type.as_str()));
        let body = &event.body;
        assert_eq!(body["uuid"], event.id.as_str());
        assert_eq!(body["token"], "sim-verification-token");
        assert_eq!(body["type"], "event_callback");
        assert_eq!(body["event"]["type"], event.event_type.as_str());
        assert_eq!(body["event"]["instance_code"], event.instance_code.as_str());
        assert_eq!(body["event"]["app_id"], "cli_sim_app");
        assert!(body["ts"].as_str().unwrap().parse::<f64>().unwrap() > 1.7e9);
        types_by_instance
            .entry(&event.instance_code)
            .or_default()
            .push(&event.event_type);
    }

    for (id, (kind, user, record)) in &listed {
        let mut types = types_by_instance
            .get(id.as_str())
            .cloned()
            .unwrap_or_default();
        types.sort_unstable();
        let expected: Vec<&str> = match *kind {
            "outs" => vec![OUT_APPROVAL],
            "leaves" => vec![LEAVE_APPROVAL, LEAVE_APPROVAL_V2],
            _ => vec![WORK_APPROVAL],
        };
        assert_eq!(types, expected, "{id}");
        for event in events.iter().filter(|event| &event.instance_code == id) {
            let e = &event.body["event"];
            let (start, end) = (&record["start_time"], &record["end_time"]);
            let open_id = open_id_of[user.as_str()];
            assert_eq!(e["open_id"], open_id, "{e}");
            match event.event_type.as_str() {
                OUT_APPROVAL => {
                    assert_eq!(e["user_id"], user.as_str());
                    assert_eq!((&e["out_start_time"], &e["out_end_time"]), (start, end));
                    assert_eq!(
                        int(&e["out_interval"]),
                        record["interval"].as_i64().unwrap()
                    );
                    assert_eq!(e["out_reason"], record["reason"]);
                    assert!(e["out_name"].as_str().unwrap().starts_with("@i18n@"));
                }
                LEAVE_APPROVAL => {
                    assert_eq!(e["employee_id"], user.as_str());
                    assert_eq!((&e["leave_start_time"], &e["leave_end_time"]), (start, end));
                    assert_eq!(
                        int(&e["leave_interval"]),
                        record["interval"].as_i64().unwrap()
                    );
                    assert_eq!(e["leave_type"], record["i18n_names"]["ch"]);
                    assert_eq!(e["leave_reason"], record["reason"]);
                    assert!(e["leave_unit"].is_i64());
                }
                LEAVE_APPROVAL_V2 => {
                    assert_eq!(e["user_id"], user.as_str());
                    assert_eq!((&e["leave_start_time"], &e["leave_end_time"]), (start, end));
                    assert_eq!(
                        int(&e["leave_interval"]),
                        record["interval"].as_i64().unwrap()
                    );
                    assert!(e["leave_unit"].is_string());
                    let range = ranges_text(&e["leave_range"]);
                    assert!(
                        range.starts_with(&format!("[[{}", start.as_str().unwrap())),
                        "{range}"
                    );
                    assert!(
                        range.ends_with(&format!("{}]]", end.as_str().unwrap())),
                        "{range}"
                    );
                    assert_eq!(range, ranges_text(&e["leave_detail"]));
                }
                _ => {
                    assert_eq!(e["employee_id"], user.as_str());
                    assert_eq!((&e["work_start_time"], &e["work_end_time"]), (start, end));
                    assert_eq!(e["time_range"][0]["work_start_time"], *start);
                    assert_eq!(e["work_reason"], record["reason"]);
                    let detail: i64 = e["work_detail"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|day| day["interval"].as_i64().unwrap())
                        .sum();
                    assert_eq!(detail, int(&e["work_interval"]));
                }
            }
            assert!(e["start_time"].as_i64().unwrap() < e["end_time"].as_i64().unwrap());
        }
    }

    // Revoked outs (status 4) are listed by the query API and give the event and its revert.
    let revoked = query(&client, &tenant, &token, "employee_id", body(4)).await;
    let mut revoked_outs = 0;
    for user_day in approvals(&revoked) {
        for record in user_day["outs"].as_array().unwrap() {
            let id = record["approval_id"].as_str().unwrap();
            let mut types = types_by_instance[id].clone();
            types.sort_unstable();
            assert_eq!(types, [OUT_APPROVAL, OUT_APPROVAL_REVERT], "{id}");
            revoked_outs += 1;
        }
    }
    assert!(revoked_outs > 0);
    // Every event of these users is of an approved or a revoked approval.
    for event in &events {
        let e = &event.body["event"];
        let user = e.get("user_id").or_else(|| e.get("employee_id"));
        if user
            .and_then(Value::as_str)
            .is_some_and(|user| users.iter().any(|u| *u == user))
        {
            let instance = event.instance_code.as_str();
            let types = &types_by_instance[instance];
            assert!(
                listed.contains_key(instance) || types.iter().any(|t| t.ends_with("_revert")),
                "{instance} {types:?}"
            );
        }
    }
    tenant.shutdown().await;
}

#[tokio::test]
async fn fixture_approvals_give_their_events_once_and_trips_none() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let events = tenant.approval_events(date(2026, 9, 13), date(2026, 9, 17));
    let of = |id: &str| -> Vec<&SimEvent> {
        events
            .iter()
            .filter(|event| event.instance_code == id)
            .collect()
    };
    let multiday = of("fx-sh-multiday");
    let types: Vec<&str> = multiday.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, [LEAVE_APPROVAL, LEAVE_APPROVAL_V2]);
    let v2 = &multiday[1].body["event"];
    assert_eq!(
        ranges_text(&v2["leave_range"]),
        "[[2026-09-14 09:00:00,2026-09-14 18:00:00],[2026-09-15 09:00:00,2026-09-15 18:00:00],\
         [2026-09-16 09:00:00,2026-09-16 18:00:00]]"
    );
    assert_eq!(v2["leave_unit"], "DAY");
    assert_eq!(multiday[0].body["event"]["leave_unit"], 1);
    assert_eq!(multiday[0].body["event"]["employee_id"], "fx_shanghai");
    assert!(of("fx-sh-trip").is_empty(), "trips have no event");
    assert_eq!(of("fx-sh-revocable").len(), 1);
    // Listed from its second date on, the leave still gives its events once.
    let later = tenant.approval_events(date(2026, 9, 15), date(2026, 9, 16));
    assert_eq!(
        later
            .iter()
            .filter(|event| event.instance_code == "fx-sh-multiday")
            .count(),
        2
    );
    tenant.shutdown().await;
}

#[tokio::test]
async fn every_odd_wire_form_occurs() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let events = tenant.approval_events(date(2026, 1, 1), date(2026, 6, 30));
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for event in &events {
        let e = &event.body["event"];
        let shape = |value: &Value| match value {
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Number(_) => "number",
            _ => "other",
        };
        match event.event_type.as_str() {
            OUT_APPROVAL => {
                seen.insert(format!("out_interval {}", shape(&e["out_interval"])));
                let resources = e["i18n_resources"].as_array().unwrap();
                let first: Value = serde_json::from_str(resources[0].as_str().unwrap()).unwrap();
                assert_eq!(first["is_default"], true);
                assert!(
                    first["texts"]
                        .get(e["out_name"].as_str().unwrap())
                        .is_some()
                );
            }
            LEAVE_APPROVAL_V2 => {
                let resources = &e["i18n_resources"];
                seen.insert(format!("v2 i18n {}", shape(resources)));
                if let Some(text) = resources.as_str() {
                    assert!(text.starts_with("[{is_default=true,locale="), "{text}");
                    assert!(text.contains(&format!("{}=", e["leave_name"].as_str().unwrap())));
                    assert!(
                        serde_json::from_str::<Value>(text).is_err(),
                        "not JSON: {text}"
                    );
                }
                seen.insert(format!("leave_range {}", shape(&e["leave_range"])));
                seen.insert(format!("v2 unit {}", e["leave_unit"].as_str().unwrap()));
            }
            LEAVE_APPROVAL => {
                seen.insert(format!("leave_interval {}", shape(&e["leave_interval"])));
            }
            WORK_APPROVAL => {
                seen.insert(format!("work_interval {}", shape(&e["work_interval"])));
            }
            _ => {
                seen.insert(format!("operate_time {}", shape(&e["operate_time"])));
                assert_eq!(
                    e.as_object().unwrap().keys().collect::<Vec<_>>(),
                    [
                        "app_id",
                        "approval_code",
                        "instance_code",
                        "operate_time",
                        "tenant_key",
                        "type"
                    ]
                );
            }
        }
    }
    for wanted in [
        "out_interval number",
        "out_interval string",
        "v2 i18n string",
        "v2 i18n array",
        "leave_range string",
        "leave_range array",
        "leave_interval number",
        "leave_interval string",
        "work_interval number",
        "work_interval string",
        "operate_time number",
        "operate_time string",
        "v2 unit DAY",
        "v2 unit HALF_DAY",
        "v2 unit HOUR",
    ] {
        assert!(seen.contains(wanted), "{wanted} never occurs: {seen:?}");
    }
    tenant.shutdown().await;
}

#[tokio::test]
async fn revoke_flips_the_status_and_returns_the_revert() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let listed_outs = |reply: &super::tests::Reply| -> Vec<String> {
        approvals(reply)
            .iter()
            .flat_map(|day| day["outs"].as_array().unwrap().iter())
            .map(|out| out["approval_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let body = |status: i32| {
        json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260917,
            "check_date_to": 20260917, "status": status})
    };
    let before = query(&client, &tenant, &token, "employee_id", body(2)).await;
    assert_eq!(listed_outs(&before), ["fx-sh-revocable"]);
    let approved = tenant.approval_events(date(2026, 9, 17), date(2026, 9, 17));

    let revert = tenant.revoke("fx-sh-revocable").unwrap();
    assert_eq!(revert.event_type, OUT_APPROVAL_REVERT);
    assert_eq!(revert.instance_code, "fx-sh-revocable");
    assert!(is_uuid(&revert.id));
    let e = &revert.body["event"];
    let out = approved
        .iter()
        .find(|event| event.instance_code == "fx-sh-revocable")
        .unwrap();
    assert_eq!(e["approval_code"], out.body["event"]["approval_code"]);
    assert_eq!(e["tenant_key"], out.body["event"]["tenant_key"]);
    assert!(int(&e["operate_time"]) > 1_700_000_000);
    let after = query(&client, &tenant, &token, "employee_id", body(2)).await;
    assert!(listed_outs(&after).is_empty());
    let revoked = query(&client, &tenant, &token, "employee_id", body(4)).await;
    assert_eq!(listed_outs(&revoked), ["fx-sh-revocable"]);
    let now: Vec<String> = tenant
        .approval_events(date(2026, 9, 17), date(2026, 9, 17))
        .into_iter()
        .filter(|event| event.instance_code == "fx-sh-revocable")
        .map(|event| event.event_type)
        .collect();
    assert_eq!(now, [OUT_APPROVAL, OUT_APPROVAL_REVERT]);

    // A generated leave: its revert, and it leaves the approved list.
    let leave = approved_leave(&tenant);
    let revert = tenant.revoke(&leave).unwrap();
    assert_eq!(revert.event_type, LEAVE_APPROVAL_REVERT);
    assert_eq!(tenant.revoke("fx-sh-trip"), None, "trips have no revert");
    assert_eq!(tenant.revoke("7000000000000000000"), None);
    assert_eq!(tenant.revoke("no-such-approval"), None);
    tenant.shutdown().await;
}

fn approved_leave(tenant: &SimTenant) -> String {
    tenant
        .approval_events(date(2026, 4, 1), date(2026, 4, 10))
        .into_iter()
        .find(|event| event.event_type == LEAVE_APPROVAL)
        .unwrap()
        .instance_code
}

// ---------------------------------------------------------------------------------------------
// Webhook.
// ---------------------------------------------------------------------------------------------

/// One request as the test receiver saw it.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    headers: HeaderMap,
    raw: Vec<u8>,
    plaintext: Value,
}

/// How the receiver answers the `n`th request (1-based) carrying one uuid or challenge: an
/// HTTP status and a delay before answering.
type Script = Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>;

/// A tiny webhook receiver on loopback that logs every request (decrypted when it knows the
/// key) and answers as scripted; it echoes challenges.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(key: Option<&str>, script: Script) -> Receiver {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let key = key.map(EncryptKey::new);
        let handler_log = Arc::clone(&log);
        let handler = move |headers: HeaderMap, raw: Bytes| {
            let (log, key, script) = (Arc::clone(&handler_log), key.clone(), Arc::clone(&script));
            async move {
                let outer: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                let plaintext = match (outer.get("encrypt").and_then(Value::as_str), &key) {
                    (Some(sealed), Some(key)) => {
                        serde_json::from_slice(&key.decrypt(sealed).unwrap()).unwrap()
                    }
                    _ => outer,
                };
                let id = plaintext
                    .get("uuid")
                    .or_else(|| plaintext.get("challenge"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let nth = {
                    let mut log = log.lock().unwrap();
                    let nth = 1 + log
                        .iter()
                        .filter(|seen| {
                            seen.plaintext
                                .get("uuid")
                                .or_else(|| seen.plaintext.get("challenge"))
                                == Some(&id)
                        })
                        .count();
                    log.push(Received {
                        at: Instant::now(),
                        headers,
                        raw: raw.to_vec(),
                        plaintext: plaintext.clone(),
                    });
                    nth
                };
                let (status, delay) = script(nth);
                tokio::time::sleep(delay).await;
                let status = axum::http::StatusCode::from_u16(status).unwrap();
                let body = match plaintext.get("challenge") {
                    Some(challenge) => json!({"challenge": challenge}),
                    None => json!({"msg": "success"}),
                };
                (status, body.to_string()).into_response()
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

    fn log(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}

fn always(status: u16) -> Script {
    Arc::new(move |_| (status, Duration::ZERO))
}

fn fast_retries(delays_ms: &[u64]) -> EventSettings {
    EventSettings {
        retry_delays: delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        ..EventSettings::default()
    }
}

fn some_events(tenant: &SimTenant, count: usize) -> Vec<SimEvent> {
    let events = tenant.approval_events(date(2026, 5, 1), date(2026, 5, 10));
    assert!(events.len() >= count);
    events.into_iter().take(count).collect()
}

#[tokio::test]
async fn webhook_bodies_are_encrypted_and_signed() {
    let settings = EventSettings {
        encrypt_key: Some(ENCRYPT_KEY.to_owned()),
        ..EventSettings::default()
    };
    let tenant = SimTenant::start(with_events(settings)).await.unwrap();
    let receiver = Receiver::start(Some(ENCRYPT_KEY), always(200)).await;
    let events = some_events(&tenant, 6);
    let report = tenant.push_webhook(&receiver.url, events.clone()).await;
    let ids: BTreeSet<&String> = events.iter().map(|event| &event.id).collect();
    assert_eq!(report.acked.iter().collect::<BTreeSet<_>>(), ids);
    assert!(report.gave_up.is_empty());
    assert_eq!(report.attempts, 6);
    assert_eq!(report.answers, BTreeMap::from([(200, 6)]));
    let key = EncryptKey::new(ENCRYPT_KEY);
    let log = receiver.log();
    assert_eq!(log.len(), 6);
    for request in &log {
        assert_eq!(request.headers["content-type"], "application/json");
        let outer: Value = serde_json::from_slice(&request.raw).unwrap();
        assert_eq!(
            outer.as_object().unwrap().len(),
            1,
            "only `encrypt`: {outer}"
        );
        let event = events
            .iter()
            .find(|event| event.body == request.plaintext)
            .expect("the plaintext is an event's body");
        assert_eq!(request.plaintext["uuid"], event.id.as_str());
        let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
        let timestamp = header(TIMESTAMP_HEADER);
        assert!(timestamp.parse::<u64>().unwrap() > 1_700_000_000);
        assert!(key.verify(
            &timestamp,
            &header(NONCE_HEADER),
            &request.raw,
            &header(SIGNATURE_HEADER)
        ));
    }
}

#[tokio::test]
async fn webhook_plain_bodies_are_unsigned_and_can_be_reordered() {
    let settings = EventSettings {
        reorder: true,
        concurrency: 1,
        ..EventSettings::default()
    };
    let tenant = SimTenant::start(with_events(settings)).await.unwrap();
    let receiver = Receiver::start(None, always(200)).await;
    let events = some_events(&tenant, 12);
    let report = tenant.push_webhook(&receiver.url, events.clone()).await;
    assert_eq!(report.acked.len(), 12);
    let log = receiver.log();
    for request in &log {
        assert!(request.headers.get(SIGNATURE_HEADER).is_none());
        assert!(request.headers.get(NONCE_HEADER).is_none());
        assert_eq!(request.headers["content-type"], "application/json");
    }
    let arrived: Vec<&str> = log
        .iter()
        .map(|request| request.plaintext["uuid"].as_str().unwrap())
        .collect();
    let sent: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert_ne!(arrived, sent, "reordered");
    let mut sorted = arrived.clone();
    sorted.sort_unstable();
    let mut expected = sent.clone();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "each once");
    assert_eq!(
        report.acked, arrived,
        "one at a time: acked in arrival order"
    );
    for request in &log {
        let event = events
            .iter()
            .find(|event| event.id == request.plaintext["uuid"].as_str().unwrap())
            .unwrap();
        assert_eq!(request.raw, serde_json::to_vec(&event.body).unwrap());
    }
}

#[tokio::test]
async fn webhook_retries_failures_after_scaled_delays() {
    let settings = EventSettings {
        time_scale: 1000.0,
        ..EventSettings::default()
    };
    let tenant = SimTenant::start(with_events(settings)).await.unwrap();
    let receiver = Receiver::start(
        None,
        Arc::new(|nth| (if nth <= 2 { 500 } else { 200 }, Duration::ZERO)),
    )
    .await;
    let events = some_events(&tenant, 1);
    let started = Instant::now();
    let report = tenant.push_webhook(&receiver.url, events.clone()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(report.attempts, 3);
    assert_eq!(report.answers, BTreeMap::from([(200, 1), (500, 2)]));
    assert_eq!(report.acked, [events[0].id.clone()]);
    let log = receiver.log();
    // 15 s and 5 min, scaled down 1000 times.
    let first_gap = log[1].at - log[0].at;
    let second_gap = log[2].at - log[1].at;
    assert!(first_gap >= Duration::from_millis(15), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(300), "{second_gap:?}");
    assert!(second_gap < Duration::from_millis(1500), "{second_gap:?}");
}

#[tokio::test]
async fn webhook_retries_an_answer_slower_than_the_ack_timeout() {
    let settings = EventSettings {
        ack_timeout: Duration::from_millis(200),
        ..fast_retries(&[20])
    };
    let tenant = SimTenant::start(with_events(settings)).await.unwrap();
    let receiver = Receiver::start(
        None,
        Arc::new(|nth| {
            let delay = if nth == 1 { 700 } else { 0 };
            (200, Duration::from_millis(delay))
        }),
    )
    .await;
    let events = some_events(&tenant, 1);
    let report = tenant.push_webhook(&receiver.url, events.clone()).await;
    assert_eq!(report.attempts, 2);
    assert_eq!(report.answers, BTreeMap::from([(0, 1), (200, 1)]));
    assert_eq!(report.acked, [events[0].id.clone()]);
}

#[tokio::test]
async fn webhook_gives_up_after_the_last_retry() {
    let tenant = SimTenant::start(with_events(fast_retries(&[5, 5])))
        .await
        .unwrap();
    let receiver = Receiver::start(None, always(503)).await;
    let events = some_events(&tenant, 2);
    let report = tenant.push_webhook(&receiver.url, events.clone()).await;
    assert_eq!(report.attempts, 6);
    assert_eq!(report.answers, BTreeMap::from([(503, 6)]));
    assert!(report.acked.is_empty());
    let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
    assert_eq!(report.gave_up, ids);
    // Nobody listening at all: connection errors count under 0.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook/event", closed.local_addr().unwrap());
    drop(closed);
    let report = tenant.push_webhook(&url, events[..1].to_vec()).await;
    assert_eq!(report.answers, BTreeMap::from([(0, 3)]));
    assert_eq!(report.gave_up, ids[..1]);
}

#[tokio::test]
async fn webhook_duplicates_are_separate_requests_of_one_uuid() {
    let settings = EventSettings {
        encrypt_key: Some(ENCRYPT_KEY.to_owned()),
        duplicate_share: 1.0,
        ..EventSettings::default()
    };
    let tenant = SimTenant::start(with_events(settings)).await.unwrap();
    let receiver = Receiver::start(Some(ENCRYPT_KEY), always(200)).await;
    let events = some_events(&tenant, 4);
    let report = tenant.push_webhook(&receiver.url, events.clone()).await;
    assert_eq!(report.attempts, 8);
    assert_eq!(report.acked.len(), 4, "each id once");
    let log = receiver.log();
    assert_eq!(log.len(), 8);
    for event in &events {
        let copies: Vec<&Received> = log
            .iter()
            .filter(|request| request.plaintext["uuid"] == event.id.as_str())
            .collect();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].plaintext, copies[1].plaintext);
        assert_ne!(copies[0].raw, copies[1].raw, "a fresh IV");
        assert_ne!(
            copies[0].headers[NONCE_HEADER],
            copies[1].headers[NONCE_HEADER]
        );
        assert_ne!(
            copies[0].headers[SIGNATURE_HEADER],
            copies[1].headers[SIGNATURE_HEADER]
        );
    }
}

#[tokio::test]
async fn the_challenge_is_sent_plain_or_encrypted() {
    let plain = SimTenant::start(config()).await.unwrap();
    let receiver = Receiver::start(None, always(200)).await;
    let (status, text) = plain.send_challenge(&receiver.url, "challenge-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"challenge": "challenge-1"})
    );
    let seen = &receiver.log()[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.raw).unwrap(),
        json!({"challenge": "challenge-1", "token": "sim-verification-token",
            "type": "url_verification"})
    );

    let settings = EventSettings {
        encrypt_key: Some(ENCRYPT_KEY.to_owned()),
        ..EventSettings::default()
    };
    let sealed = SimTenant::start(with_events(settings)).await.unwrap();
    let receiver = Receiver::start(Some(ENCRYPT_KEY), always(200)).await;
    let (status, text) = sealed.send_challenge(&receiver.url, "challenge-2").await;
    assert_eq!(
        (status, text.as_str()),
        (200, r#"{"challenge":"challenge-2"}"#)
    );
    let seen = &receiver.log()[0];
    assert!(
        serde_json::from_slice::<Value>(&seen.raw).unwrap()["encrypt"].is_string(),
        "sealed on the wire"
    );
    assert_eq!(seen.plaintext["type"], "url_verification");
    assert_eq!(seen.plaintext["token"], "sim-verification-token");
}

// ---------------------------------------------------------------------------------------------
// Long connection.
// ---------------------------------------------------------------------------------------------

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn discover(tenant: &SimTenant, secret: &str) -> Value {
    let reply = reqwest::Client::new()
        .post(format!("{}{ENDPOINT_PATH}", tenant.base_url()))
        .json(&json!({"AppID": tenant.config().app_id, "AppSecret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

/// A fresh WebSocket URL from the discovery endpoint.
async fn ws_url(tenant: &SimTenant) -> String {
    let answer = discover(tenant, &tenant.config().app_secret.clone()).await;
    assert_eq!(answer["code"], 0, "{answer}");
    answer["data"]["URL"].as_str().unwrap().to_owned()
}

fn service_of(url: &str) -> i32 {
    url.split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("service_id="))
        .unwrap()
        .parse()
        .unwrap()
}

pub(super) async fn connect(tenant: &SimTenant) -> (Socket, i32) {
    let url = ws_url(tenant).await;
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    (socket, service_of(&url))
}

/// The next frame, or None when the server closed the socket (or nothing came in 3 s).
pub(super) async fn next_frame(socket: &mut Socket) -> Option<Frame> {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => return Some(Frame::decode(&bytes).unwrap()),
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

pub(super) async fn send_frame(socket: &mut Socket, frame: &Frame) {
    socket
        .send(Message::Binary(frame.encode_to_vec().into()))
        .await
        .unwrap();
}

/// The client's ack of a frame: the same frame with `biz_rt` and the code as payload.
pub(super) fn ack(frame: &Frame, code: u16) -> Frame {
    let mut ack = frame.clone();
    ack.set_header(HEADER_BIZ_RT, "2");
    ack.payload = Some(AckPayload::new(code).to_bytes());
    ack
}

fn lc_settings(settings: LongConnectionSettings) -> SimConfig {
    with_events(EventSettings {
        long_connection: settings,
        ..EventSettings::default()
    })
}

#[tokio::test]
async fn discovery_checks_credentials_and_issues_fresh_urls() {
    let config = ConnectionConfig {
        reconnect_count: 3,
        reconnect_interval: 2,
        reconnect_nonce: 1,
        ping_interval: 5,
    };
    let tenant = SimTenant::start(lc_settings(LongConnectionSettings {
        config,
        ..LongConnectionSettings::default()
    }))
    .await
    .unwrap();
    let wrong = discover(&tenant, "wrong-secret").await;
    assert_eq!(wrong["code"], ENDPOINT_BAD_CREDENTIALS);
    assert!(wrong.get("data").is_none_or(Value::is_null));
    let first = discover(&tenant, "sim-secret-never-logged").await;
    let second = discover(&tenant, "sim-secret-never-logged").await;
    assert_eq!(first["code"], 0);
    let client_config: ConnectionConfig =
        serde_json::from_value(first["data"]["ClientConfig"].clone()).unwrap();
    assert_eq!(client_config, config);
    let url = first["data"]["URL"].as_str().unwrap();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.contains("/ws/v2?fpid=1&aid="),
        "{url}"
    );
    for key in ["device_id=", "access_key=", "service_id=", "ticket="] {
        assert!(url.contains(key), "{url}");
    }
    assert_ne!(
        first["data"]["URL"], second["data"]["URL"],
        "fresh ticket and device"
    );
    assert_eq!(
        service_of(url),
        service_of(second["data"]["URL"].as_str().unwrap())
    );
    assert_eq!(tenant.long_connection_stats().endpoint_calls, 3);
}

#[tokio::test]
async fn long_connection_pushes_events_answers_pings_and_counts_acks() {
    let config = ConnectionConfig {
        ping_interval: 7,
        ..ConnectionConfig::default()
    };
    let tenant = SimTenant::start(lc_settings(LongConnectionSettings {
        config,
        ..LongConnectionSettings::default()
    }))
    .await
    .unwrap();
    let events = some_events(&tenant, 3);
    // Queued while no client is connected.
    tenant.push_long_connection(events.clone());
    let (mut socket, service) = connect(&tenant).await;
    send_frame(&mut socket, &Frame::ping(service)).await;
    let mut frames = Vec::new();
    let mut pong = None;
    while frames.len() < 3 || pong.is_none() {
        let frame = next_frame(&mut socket).await.expect("a frame");
        if frame.frame_type() == TYPE_PONG {
            pong = Some(frame);
        } else {
            frames.push(frame);
        }
    }
    let pong = pong.unwrap();
    assert_eq!(pong.method, METHOD_CONTROL);
    let pong_config: ConnectionConfig =
        serde_json::from_slice(pong.payload.as_ref().unwrap()).unwrap();
    assert_eq!(pong_config, config);
    let mut message_ids = BTreeSet::new();
    let mut seq_ids = Vec::new();
    for frame in &frames {
        assert_eq!((frame.method, frame.service), (METHOD_DATA, service));
        assert_eq!(frame.frame_type(), TYPE_EVENT);
        assert_eq!(
            (frame.header(HEADER_SUM), frame.header(HEADER_SEQ)),
            (Some("1"), Some("0"))
        );
        assert!(frame.header("trace_id").is_some());
        assert!(frame.header("timestamp").unwrap().parse::<u64>().unwrap() > 1_700_000_000_000);
        message_ids.insert(frame.header(HEADER_MESSAGE_ID).unwrap().to_owned());
        seq_ids.push(frame.seq_id);
        let body: Value = serde_json::from_slice(frame.payload.as_ref().unwrap()).unwrap();
        assert!(
            events.iter().any(|event| event.body == body),
            "plain v1 JSON"
        );
        send_frame(&mut socket, &ack(frame, 200)).await;
    }
    assert_eq!(message_ids.len(), 3);
    assert!(
        seq_ids.windows(2).all(|pair| pair[0] < pair[1]),
        "{seq_ids:?}"
    );
    let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
    assert!(
        tenant
            .wait_long_connection_acked(&ids, Duration::from_secs(3))
            .await
    );
    let stats = tenant.long_connection_stats();
    assert_eq!(
        (
            stats.connections,
            stats.frames_sent,
            stats.pings,
            stats.acks_ok,
            stats.repushes
        ),
        (1, 3, 1, 3, 0)
    );
    assert_eq!(stats.acked, ids.iter().cloned().collect());
    assert!(
        !tenant
            .wait_long_connection_acked(&["0".repeat(32)], Duration::from_millis(50))
            .await
    );
}

#[tokio::test]
async fn long_connection_fragments_reassemble_to_the_payload() {
    let tenant = SimTenant::start(lc_settings(LongConnectionSettings {
        fragment_size: Some(64),
        ..LongConnectionSettings::default()
    }))
    .await
    .unwrap();
    let event = tenant
        .approval_events(date(2026, 4, 1), date(2026, 4, 30))
        .into_iter()
        .find(|event| event.event_type == LEAVE_APPROVAL_V2)
        .unwrap();
    let payload = serde_json::to_vec(&event.body).unwrap();
    let (mut socket, _) = connect(&tenant).await;
    tenant.push_long_connection(vec![event.clone()]);
    let first = next_frame(&mut socket).await.unwrap();
    let sum: usize = first.header(HEADER_SUM).unwrap().parse().unwrap();
    assert_eq!(sum, payload.len().div_ceil(64));
    assert!(sum > 3);
    let mut parts = vec![first];
    while parts.len() < sum {
        parts.push(next_frame(&mut socket).await.unwrap());
    }
    let message_id = parts[0].header(HEADER_MESSAGE_ID).unwrap().to_owned();
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; sum];
    for part in &parts {
        assert_eq!(part.header(HEADER_MESSAGE_ID), Some(message_id.as_str()));
        assert_eq!(part.header(HEADER_SUM), Some(sum.to_string().as_str()));
        let seq: usize = part.header(HEADER_SEQ).unwrap().parse().unwrap();
        slots[seq] = part.payload.clone();
    }
    let joined: Vec<u8> = slots.into_iter().flat_map(Option::unwrap).collect();
    assert_eq!(joined, payload);
    send_frame(&mut socket, &ack(parts.last().unwrap(), 200)).await;
    assert!(
        tenant
            .wait_long_connection_acked(std::slice::from_ref(&event.id), Duration::from_secs(3))
            .await
    );
    assert_eq!(tenant.long_connection_stats().frames_sent, sum as u64);
}

#[tokio::test]
async fn long_connection_repushes_unacked_and_failed_messages() {
    let tenant = SimTenant::start(lc_settings(LongConnectionSettings {
        repush_after: Duration::from_millis(150),
        ..LongConnectionSettings::default()
    }))
    .await
    .unwrap();
    let events = some_events(&tenant, 1);
    let (mut socket, _) = connect(&tenant).await;
    tenant.push_long_connection(events.clone());
    let ignored = next_frame(&mut socket).await.unwrap();
    let started = Instant::now();
    let repushed = next_frame(&mut socket).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_ne!(
        ignored.header(HEADER_MESSAGE_ID),
        repushed.header(HEADER_MESSAGE_ID)
    );
    assert_eq!(ignored.payload, repushed.payload);
    send_frame(&mut socket, &ack(&repushed, 500)).await;
    let again = next_frame(&mut socket).await.unwrap();
    assert_eq!(again.payload, repushed.payload);
    send_frame(&mut socket, &ack(&again, 200)).await;
    assert!(
        tenant
            .wait_long_connection_acked(&[events[0].id.clone()], Duration::from_secs(3))
            .await
    );
    let stats = tenant.long_connection_stats();
    assert_eq!(
        (stats.repushes, stats.acks_failed, stats.acks_ok),
        (2, 1, 1)
    );
    assert_eq!(stats.frames_sent, 3);
    // Acked: nothing more is pushed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tenant.long_connection_stats().frames_sent, 3);
}

#[tokio::test]
async fn long_connection_refuses_handshakes_with_the_platforms_headers() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let refused = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => *response,
        Err(other) => panic!("not an HTTP refusal: {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    };
    let header = |response: &tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>,
                  name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };

    let mut settings = tenant.long_connection_settings();
    settings.refuse_handshake = Some(HandshakeRefusal {
        status: 403,
        auth_errcode: None,
    });
    tenant.set_long_connection(settings.clone());
    let url = ws_url(&tenant).await;
    let response = refused(tokio_tungstenite::connect_async(url.as_str()).await);
    assert_eq!(response.status(), 403);
    assert_eq!(header(&response, HANDSHAKE_STATUS).as_deref(), Some("403"));
    assert!(header(&response, HANDSHAKE_MSG).is_some());
    assert_eq!(header(&response, HANDSHAKE_AUTH_ERRCODE), None);

    settings.refuse_handshake = Some(HandshakeRefusal {
        status: 514,
        auth_errcode: Some(AUTH_EXCEED_CONN_LIMIT),
    });
    tenant.set_long_connection(settings.clone());
    let url = ws_url(&tenant).await;
    let response = refused(tokio_tungstenite::connect_async(url.as_str()).await);
    assert_eq!(response.status(), 400);
    assert_eq!(header(&response, HANDSHAKE_STATUS).as_deref(), Some("514"));
    assert_eq!(
        header(&response, HANDSHAKE_AUTH_ERRCODE),
        Some(AUTH_EXCEED_CONN_LIMIT.to_string())
    );

    // Accepted again; a ticket is good once, an unknown one never.
    settings.refuse_handshake = None;
    tenant.set_long_connection(settings);
    let url = ws_url(&tenant).await;
    let forged = format!("{}x", url);
    let response = refused(tokio_tungstenite::connect_async(forged.as_str()).await);
    assert_eq!(header(&response, HANDSHAKE_STATUS).as_deref(), Some("403"));
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let response = refused(tokio_tungstenite::connect_async(url.as_str()).await);
    assert_eq!(response.status(), 403);
    drop(socket);
    let stats = tenant.long_connection_stats();
    assert_eq!((stats.handshakes_refused, stats.connections), (4, 1));
}

#[tokio::test]
async fn long_connection_closes_mid_stream_and_redelivers_on_reconnect() {
    let tenant = SimTenant::start(lc_settings(LongConnectionSettings {
        repush_after: Duration::from_millis(200),
        close_after_frames: Some(2),
        ..LongConnectionSettings::default()
    }))
    .await
    .unwrap();
    let events = some_events(&tenant, 5);
    let (mut socket, _) = connect(&tenant).await;
    tenant.push_long_connection(events.clone());
    assert!(next_frame(&mut socket).await.is_some());
    assert!(next_frame(&mut socket).await.is_some());
    assert!(
        next_frame(&mut socket).await.is_none(),
        "closed after 2 frames"
    );
    assert_eq!(tenant.long_connection_stats().closed_by_server, 1);

    let mut settings = tenant.long_connection_settings();
    settings.close_after_frames = None;
    tenant.set_long_connection(settings);
    let (mut socket, _) = connect(&tenant).await;
    let mut received = BTreeSet::new();
    while received.len() < events.len() {
        let frame = next_frame(&mut socket)
            .await
            .expect("the rest is re-pushed");
        let body: Value = serde_json::from_slice(frame.payload.as_ref().unwrap()).unwrap();
        received.insert(body["uuid"].as_str().unwrap().to_owned());
        send_frame(&mut socket, &ack(&frame, 200)).await;
    }
    let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
    assert!(
        tenant
            .wait_long_connection_acked(&ids, Duration::from_secs(3))
            .await
    );
    let stats = tenant.long_connection_stats();
    assert_eq!(
        (stats.connections, stats.repushes, stats.frames_sent),
        (2, 5, 7)
    );
}

/// The project's reader of event bodies (`attendance_core::approval_event`) reads every event
/// the tenant sends, in every odd form, and finds the user and the dates the query API lists
/// the approval under.
#[tokio::test]
async fn every_sent_event_reads_back_to_its_user_and_dates() {
    use attendance_core::approval_event::{ApprovalEvent, EventBody};
    let tenant = SimTenant::start(config()).await.unwrap();
    let from = date(2026, 1, 1);
    let to = date(2026, 6, 30);
    // Each day's events, with the day the query API lists their approval under.
    let events: Vec<(chrono::NaiveDate, SimEvent)> = from
        .iter_days()
        .take_while(|day| *day <= to)
        .flat_map(|day| {
            tenant
                .approval_events(day, day)
                .into_iter()
                .map(move |event| (day, event))
        })
        .collect();
    assert!(events.len() > 100, "{}", events.len());
    let employee_ids: BTreeSet<String> = tenant
        .user_ids("employee_id")
        .unwrap()
        .into_iter()
        .collect();
    let mut kinds = BTreeSet::new();
    for (listed_on, event) in &events {
        let read = ApprovalEvent::read(&event.body)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", event.event_type, event.body));
        assert_eq!(
            read.common.instance_code.as_deref(),
            Some(event.instance_code.as_str())
        );
        assert!(read.common.event_time.is_some());
        match &read.body {
            EventBody::Revert(_) => {
                assert!(read.span().is_none());
                kinds.insert("revert");
            }
            EventBody::Other => panic!("{} read as an unknown type", event.event_type),
            _ => {
                let span = read.span().expect("an approval names its dates");
                let user = span.applicant.user_id.as_deref().expect("a user id");
                assert!(employee_ids.contains(user), "{user}");
                assert!(span.applicant.open_id.is_some());
                // The approval is listed under a date of its span (an overtime past midnight
                // under its first day, a leave of several days under each).
                assert!(
                    span.first <= *listed_on && *listed_on <= span.last,
                    "{} listed on {listed_on}, span {span:?}",
                    event.event_type
                );
                kinds.insert(event.event_type.as_str());
            }
        }
        if let EventBody::Leave(leave) = &read.body
            && leave.v2
        {
            let key = leave.name_key.as_deref().expect("leave_name");
            assert!(
                leave.i18n.resolve(key).is_some(),
                "{key} not in {:?}",
                leave.i18n
            );
        }
    }
    assert_eq!(
        kinds,
        BTreeSet::from([
            "revert",
            "out_approval",
            "leave_approval",
            "leave_approvalV2",
            "work_approval"
        ])
    );
}
