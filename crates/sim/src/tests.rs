//! End-to-end tests of the simulated tenant over loopback HTTP (reqwest against the real
//! server), covering the token flow, validation order and codes, fixtures, the overlay and
//! determinism. The helpers here are shared with `fault_tests` and `directory_tests`.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{SimConfig, SimTenant};

pub(super) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub(super) fn config() -> SimConfig {
    SimConfig {
        users: 60,
        rate_limit_per_sec: 0,
        today: Some(date(2026, 12, 31)),
        ..SimConfig::default()
    }
}

pub(super) struct Reply {
    pub(super) http: u16,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) text: String,
    /// The body as JSON, Null when it does not parse.
    pub(super) json: Value,
}

pub(super) async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: String,
) -> Reply {
    let mut request = client
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read_reply(request.send().await.unwrap()).await
}

/// A GET of `path_and_query` under the tenant's base URL.
pub(super) async fn get(
    client: &reqwest::Client,
    tenant: &SimTenant,
    token: Option<&str>,
    path_and_query: &str,
) -> Reply {
    let mut request = client.get(format!("{}{path_and_query}", tenant.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read_reply(request.send().await.unwrap()).await
}

pub(super) async fn read_reply(response: reqwest::Response) -> Reply {
    let http = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        http,
        headers,
        text,
        json,
    }
}

pub(super) async fn token(client: &reqwest::Client, tenant: &SimTenant) -> String {
    let config = tenant.config();
    let body = json!({"app_id": config.app_id, "app_secret": config.app_secret}).to_string();
    let url = format!(
        "{}/open-apis/auth/v3/tenant_access_token/internal",
        tenant.base_url()
    );
    let reply = post(client, url, None, body).await;
    assert_eq!(reply.json["code"], 0, "{}", reply.text);
    reply.json["tenant_access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(super) async fn query(
    client: &reqwest::Client,
    tenant: &SimTenant,
    token: &str,
    employee_type: &str,
    body: Value,
) -> Reply {
    let url = format!(
        "{}/open-apis/attendance/v1/user_approvals/query?employee_type={employee_type}",
        tenant.base_url()
    );
    post(client, url, Some(token), body.to_string()).await
}

pub(super) fn approvals(reply: &Reply) -> &Vec<Value> {
    assert_eq!(
        (reply.http, &reply.json["code"]),
        (200, &json!(0)),
        "{}",
        reply.text
    );
    reply.json["data"]["user_approvals"].as_array().unwrap()
}

pub(super) fn assert_error(reply: &Reply, http: u16, code: i64) {
    assert_eq!(reply.http, http, "{}", reply.text);
    assert_eq!(reply.json["code"], code, "{}", reply.text);
    assert_eq!(reply.json["data"], json!({}), "{}", reply.text);
}

#[tokio::test]
async fn token_flow_follows_the_platform() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!(
        "{}/open-apis/auth/v3/tenant_access_token/internal",
        tenant.base_url()
    );
    assert!(!url.contains("//open-apis"));

    let wrong_secret = json!({"app_id": "cli_sim_app", "app_secret": "nope"}).to_string();
    let reply = post(&client, url.clone(), None, wrong_secret).await;
    assert_eq!(
        (reply.http, &reply.json),
        (400, &json!({"code": 10014, "msg": "app secret invalid"}))
    );
    let unknown_app = json!({"app_id": "cli_other", "app_secret": "x"}).to_string();
    let reply = post(&client, url.clone(), None, unknown_app).await;
    assert_eq!((reply.http, &reply.json["code"]), (400, &json!(10003)));

    let good =
        json!({"app_id": "cli_sim_app", "app_secret": "sim-secret-never-logged"}).to_string();
    let first = post(&client, url.clone(), None, good.clone()).await;
    assert_eq!(first.json["msg"], "ok");
    assert_eq!(first.json["expire"], 7200);
    let token = first.json["tenant_access_token"].as_str().unwrap();
    assert!(
        token.starts_with("t-")
            && token.len() == 34
            && token[2..].bytes().all(|b| b.is_ascii_hexdigit())
    );
    let second = post(&client, url, None, good).await;
    assert_eq!(
        second.json["tenant_access_token"], token,
        "reissued while it has > 30 min left"
    );
    assert!(second.json["expire"].as_u64().unwrap() <= 7200);

    let stats = tenant.stats();
    assert_eq!(stats.token_calls, 4);
    assert_eq!(stats.errors_by_code.get(&10014), Some(&1));
    assert_eq!(stats.errors_by_code.get(&10003), Some(&1));
    tenant.shutdown().await;
}

#[tokio::test]
async fn fixtures_are_served_in_the_documented_shape() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let body = json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260913, "check_date_to": 20260918});
    let reply = query(&client, &tenant, &token, "employee_id", body).await;
    assert!(reply.text.starts_with(r#"{"code":0,"msg":"success","data":{"user_approvals":[{"user_id":"fx_shanghai","date":"20260914","outs":[],"leaves":[{"approval_id":"fx-sh-multiday""#), "{}", reply.text);
    let days = approvals(&reply);
    let dates: Vec<&str> = days
        .iter()
        .map(|day| day["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["20260914", "20260915", "20260916", "20260917"]);
    for day in &days[..3] {
        let leave = &day["leaves"][0];
        assert_eq!(leave["approval_id"], "fx-sh-multiday");
        assert_eq!(
            (leave["start_time"].as_str(), leave["end_time"].as_str()),
            (Some("2026-09-14 09:00:00"), Some("2026-09-16 18:00:00"))
        );
        assert_eq!(leave["approve_apply_time"], "2026-09-10 11:00:00");
        assert_eq!(day["time_zone"], "Asia/Shanghai");
        assert_eq!(day["overtime_works"], json!([]));
    }
    let trip = &days[1]["trips"][0];
    assert_eq!(trip["approval_id"], "fx-sh-trip");
    assert_eq!(trip["destinations"].as_array().unwrap().len(), 3);
    assert_eq!(trip["transportation"], json!([1, 4]));
    assert_eq!(trip["reason"], "出差🚄 to 上海");
    assert_eq!(days[3]["outs"][0]["approval_id"], "fx-sh-revocable");
    assert_eq!(
        days[3]["outs"][0]["approve_pass_time"],
        "2026-09-17 08:30:00"
    );

    let body = json!({"user_ids": ["fx_kolkata", "fx_nozone", "fx_badzone"], "check_date_from": 20260915, "check_date_to": 20260915, "status": 2});
    let reply = query(&client, &tenant, &token, "open_id", body).await;
    let days = approvals(&reply);
    let zones: Vec<&str> = days
        .iter()
        .map(|day| day["time_zone"].as_str().unwrap())
        .collect();
    assert_eq!(zones, ["Asia/Kolkata", "", "Asia/Beijing"]);
    assert_eq!(
        days[0]["overtime_works"][0]["end_time"],
        "2026-09-16 02:00:00"
    );
    assert!(days[0]["overtime_works"][0]["duration"].is_f64());

    let stats = tenant.stats();
    assert_eq!((stats.query_calls, stats.query_ok), (2, 2));
    assert_eq!(stats.rows_served["leaves"], 4);
    assert_eq!(stats.rows_served["trips"], 1);
    assert_eq!(stats.queries[1].employee_type, "open_id");
    tenant.shutdown().await;
}

#[tokio::test]
async fn status_overrides_and_leaves_are_absent_for_revoked() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    assert!(tenant.set_status("fx-sh-revocable", 4));
    assert!(tenant.set_status("fx-sh-multiday", 4));
    assert!(!tenant.set_status("no-such-approval", 4));
    assert!(!tenant.set_status("7000000000000000000", 4));

    let window = |status: i64| json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260914, "check_date_to": 20260917, "status": status});
    let revoked = query(&client, &tenant, &token, "employee_id", window(4)).await;
    let days = approvals(&revoked);
    assert_eq!(days.len(), 1, "{}", revoked.text);
    assert_eq!(days[0]["outs"][0]["approval_id"], "fx-sh-revocable");
    assert!(days[0].get("leaves").is_none() && days[0].get("overtime_works").is_none());
    let approved = query(&client, &tenant, &token, "employee_id", window(2)).await;
    let dates: Vec<&str> = approvals(&approved)
        .iter()
        .map(|day| day["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["20260915"], "only the trip is still approved");

    // Generated users: revoked leaves exist but are never listed for status 4.
    let ids = tenant.user_ids("employee_id").unwrap();
    let body = json!({"user_ids": ids[..50], "check_date_from": 20260601, "check_date_to": 20260701, "status": 4});
    let reply = query(&client, &tenant, &token, "employee_id", body).await;
    let days = approvals(&reply);
    assert!(!days.is_empty());
    assert!(
        days.iter()
            .all(|day| day.get("leaves").is_none() && day.get("overtime_works").is_none())
    );

    // A generated approval can be revoked by id like a fixture.
    let body =
        json!({"user_ids": ids[..50], "check_date_from": 20260601, "check_date_to": 20260701});
    let reply = query(&client, &tenant, &token, "employee_id", body.clone()).await;
    let leave = approvals(&reply)
        .iter()
        .find_map(|day| {
            day["leaves"]
                .as_array()
                .and_then(|leaves| leaves.first())
                .cloned()
        })
        .expect("50 users over a month have a leave");
    let leave_id = leave["approval_id"].as_str().unwrap();
    assert_eq!(leave_id.len(), 19);
    assert!(tenant.set_status(leave_id, 3));
    let reply = query(&client, &tenant, &token, "employee_id", body).await;
    assert!(!reply.text.contains(leave_id));
    tenant.shutdown().await;
}

#[tokio::test]
async fn validation_rejects_in_the_platform_order() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let ok_body = |from: i64, to: i64| json!({"user_ids": ["fx_shanghai"], "check_date_from": from, "check_date_to": to});

    let reply = query(
        &client,
        &tenant,
        &token,
        "employee_id",
        ok_body(20260901, 20261002),
    )
    .await;
    assert_error(&reply, 400, 1220001);
    assert_eq!(
        reply.json["msg"],
        "the interval between check_date_from and check_date_to cannot exceed 30 days"
    );
    let reply = query(
        &client,
        &tenant,
        &token,
        "employee_id",
        ok_body(20260901, 20261001),
    )
    .await;
    approvals(&reply);

    // today is 20261231: today + 1 is allowed, today + 2 is not.
    let reply = query(
        &client,
        &tenant,
        &token,
        "employee_id",
        ok_body(20261220, 20270101),
    )
    .await;
    approvals(&reply);
    let reply = query(
        &client,
        &tenant,
        &token,
        "employee_id",
        ok_body(20261220, 20270102),
    )
    .await;
    assert_error(&reply, 400, 1220001);

    let many: Vec<String> = tenant.user_ids("employee_no").unwrap()[..51].to_vec();
    let body = json!({"user_ids": many, "check_date_from": 20260901, "check_date_to": 20260902});
    assert_error(
        &query(&client, &tenant, &token, "employee_no", body).await,
        400,
        1220001,
    );

    let body = json!({"user_ids": ["fx_shanghai", "nobody"], "check_date_from": 20260901, "check_date_to": 20260902});
    let reply = query(&client, &tenant, &token, "employee_id", body).await;
    assert_error(&reply, 400, 1220004);
    assert_eq!(
        reply.json["msg"],
        "user_id is not exist or does not have permission"
    );

    let invalid = [
        ("employee_idx", ok_body(20260901, 20260902)),
        (
            "employee_id",
            json!({"user_ids": [], "check_date_from": 20260901, "check_date_to": 20260902}),
        ),
        (
            "employee_id",
            json!({"user_ids": "fx_shanghai", "check_date_from": 20260901, "check_date_to": 20260902}),
        ),
        (
            "employee_id",
            json!({"user_ids": ["fx_shanghai"], "check_date_from": "20260901", "check_date_to": 20260902}),
        ),
        (
            "employee_id",
            json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260231, "check_date_to": 20260302}),
        ),
        (
            "employee_id",
            json!({"user_ids": ["fx_shanghai"], "check_date_to": 20260902}),
        ),
        ("employee_id", ok_body(20260903, 20260902)),
        (
            "employee_id",
            json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260901, "check_date_to": 20260902, "status": 5}),
        ),
        ("employee_id", json!([1, 2])),
    ];
    for (employee_type, body) in invalid {
        let reply = query(&client, &tenant, &token, employee_type, body.clone()).await;
        assert_error(&reply, 400, 1220001);
        assert!(
            reply.json["msg"]
                .as_str()
                .unwrap()
                .starts_with("param is invalid: "),
            "{body} -> {}",
            reply.text
        );
    }
    let url = format!(
        "{}/open-apis/attendance/v1/user_approvals/query?employee_type=employee_id",
        tenant.base_url()
    );
    assert_error(
        &post(&client, url, Some(&token), "not json".into()).await,
        400,
        1220001,
    );

    // Unknown fields are ignored.
    let body = json!({"user_ids": ["fx_nozone"], "check_date_from": 20260915, "check_date_to": 20260915, "check_date_type": "PeriodTime", "future_field": {"x": 1}});
    assert_eq!(
        approvals(&query(&client, &tenant, &token, "employee_id", body).await).len(),
        1
    );

    let stats = tenant.stats();
    assert_eq!(stats.max_window_days, 31);
    assert_eq!(stats.max_user_ids_per_query, 51);
    assert_eq!(stats.max_check_date_to, Some(date(2027, 1, 2)));
    assert_eq!(stats.errors_by_code[&1220001], 2 + 1 + 9 + 1);
    assert_eq!(stats.query_calls, stats.queries.len() as u64);
    assert_eq!(stats.queries[0].code, 1220001);
    assert_eq!(
        (stats.queries[0].from, stats.queries[0].to),
        (20260901, 20261002)
    );
    tenant.reset_stats();
    assert_eq!(tenant.stats().query_calls, 0);
    tenant.shutdown().await;
}

#[tokio::test]
async fn auth_is_checked_before_parameters() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!(
        "{}/open-apis/attendance/v1/user_approvals/query?employee_type=bogus",
        tenant.base_url()
    );
    let reply = post(&client, url.clone(), None, "{}".into()).await;
    assert_error(&reply, 400, 99991661);
    let reply = post(
        &client,
        url,
        Some("t-0123456789abcdef0123456789abcdef"),
        "{}".into(),
    )
    .await;
    assert_error(&reply, 400, 99991663);
    assert!(
        reply.json["msg"]
            .as_str()
            .unwrap()
            .starts_with("Invalid access token for authorization")
    );
    let stats = tenant.stats();
    assert_eq!(
        (
            stats.errors_by_code[&99991661],
            stats.errors_by_code[&99991663]
        ),
        (1, 1)
    );
    tenant.shutdown().await;
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_with_gateway_headers() {
    let tenant = SimTenant::start(SimConfig {
        rate_limit_per_sec: 3,
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let body =
        json!({"user_ids": ["fx_nozone"], "check_date_from": 20260915, "check_date_to": 20260915});
    let mut limited = Vec::new();
    for _ in 0..10 {
        let reply = query(&client, &tenant, &token, "employee_id", body.clone()).await;
        if reply.http == 429 {
            limited.push(reply);
        }
    }
    // Even if the loop straddles a window boundary, 10 requests exceed 2 windows of 3.
    assert!(!limited.is_empty());
    let reply = &limited[0];
    assert_eq!(
        reply.json,
        json!({"code": 99991400, "msg": "request trigger frequency limit"})
    );
    assert_eq!(reply.headers["x-ogw-ratelimit-limit"], "3");
    let reset: u64 = reply.headers["x-ogw-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset >= 1);
    let stats = tenant.stats();
    assert_eq!(stats.rate_limited, limited.len() as u64);
    assert_eq!(stats.query_calls, 10);
    assert_eq!(stats.query_ok + stats.rate_limited, 10);
    tenant.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_serves_the_same_bodies() {
    let first = SimTenant::start(config()).await.unwrap();
    let second = SimTenant::start(config()).await.unwrap();
    let other_seed = SimTenant::start(SimConfig {
        seed: 7,
        ..config()
    })
    .await
    .unwrap();
    let ids = first.user_ids("employee_id").unwrap();
    assert_eq!(Some(&ids), second.user_ids("employee_id").as_ref());
    assert_ne!(Some(&ids), other_seed.user_ids("employee_id").as_ref());
    assert_eq!(ids.len(), 60 + 7);
    assert!(first.user_ids("union_id").is_none());

    let client = reqwest::Client::new();
    let body =
        json!({"user_ids": ids[..50], "check_date_from": 20260301, "check_date_to": 20260331});
    let one = query(
        &client,
        &first,
        &token(&client, &first).await,
        "employee_id",
        body.clone(),
    )
    .await;
    let two = query(
        &client,
        &second,
        &token(&client, &second).await,
        "employee_id",
        body,
    )
    .await;
    assert_eq!(one.text, two.text);
    assert!(
        approvals(&one).len() > 50,
        "50 users over a month list plenty"
    );

    // The same users under another id type list the same records.
    let numbers = first.user_ids("employee_no").unwrap();
    let body =
        json!({"user_ids": numbers[..50], "check_date_from": 20260301, "check_date_to": 20260331});
    let by_number = query(
        &client,
        &first,
        &token(&client, &first).await,
        "employee_no",
        body,
    )
    .await;
    let strip = |reply: &Reply| -> Vec<Value> {
        approvals(reply)
            .iter()
            .map(|day| {
                let mut day = day.clone();
                day["user_id"] = Value::Null;
                day
            })
            .collect()
    };
    assert_eq!(strip(&one), strip(&by_number));
    first.shutdown().await;
    second.shutdown().await;
    other_seed.shutdown().await;
}

#[tokio::test]
async fn inserted_records_are_listed_with_the_user_dates_zone() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let record = json!({"approval_id": "inserted-1", "start_time": "2026-09-15 10:00:00", "end_time": "2026-09-15 11:00:00", "reason": "补录"});
    tenant.insert("fx_kolkata", date(2026, 9, 15), "outs", 2, record.clone());
    let body =
        json!({"user_ids": ["fx_kolkata"], "check_date_from": 20260915, "check_date_to": 20260915});
    let reply = query(&client, &tenant, &token, "employee_id", body.clone()).await;
    let days = approvals(&reply);
    assert_eq!(days[0]["outs"], json!([record]));
    assert_eq!(days[0]["time_zone"], "Asia/Kolkata");
    assert_eq!(
        days[0]["overtime_works"][0]["approval_id"],
        "fx-kol-midnight"
    );

    assert!(tenant.set_status("inserted-1", 1));
    let reply = query(&client, &tenant, &token, "employee_id", body).await;
    assert!(approvals(&reply)[0]["outs"].as_array().unwrap().is_empty());
    tenant.shutdown().await;
}
