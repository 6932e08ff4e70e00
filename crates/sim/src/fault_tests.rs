//! End-to-end tests of the tenant's failure modes over loopback HTTP: each fault switch at
//! rate 1.0, refused users, and short token lifetimes. Waits are kept near 1 s at most.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::tests::{approvals, assert_error, config, get, post, query, token};
use super::{Faults, NO_CODE, SimConfig, SimTenant};

fn fixture_query() -> Value {
    json!({"user_ids": ["fx_shanghai"], "check_date_from": 20260914, "check_date_to": 20260917})
}

const GROUPS: &str = "/open-apis/attendance/v1/groups?page_size=50";

#[tokio::test]
async fn server_errors_replace_answers_after_auth() {
    let tenant = SimTenant::start(SimConfig {
        faults: Faults {
            http_500: 1.0,
            ..Faults::default()
        },
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    // The token endpoint is never faulted.
    let token = token(&client, &tenant).await;

    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert_eq!(reply.http, 500);
    assert_eq!(reply.text, "<html>500 Internal Server Error</html>");
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    let reply = get(&client, &tenant, Some(&token), GROUPS).await;
    assert_eq!((reply.http, reply.json.clone()), (500, Value::Null));

    tenant.set_faults(Faults {
        code_1225000: 1.0,
        ..Faults::default()
    });
    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert_eq!(
        (reply.http, reply.json),
        (
            500,
            json!({"code": 1225000, "msg": "internal server error", "data": {}})
        )
    );
    // Auth is checked first: a request without a token meets no fault.
    let reply = get(&client, &tenant, None, GROUPS).await;
    assert_error(&reply, 400, 99991661);

    let stats = tenant.stats();
    assert_eq!(stats.faults_injected, 3);
    assert_eq!(stats.rows_served.values().sum::<u64>(), 0);
    assert_eq!(stats.errors_by_code[&1225000], 1);
    assert_eq!(stats.group_list_calls, 2);
    assert_eq!(
        (stats.queries[0].code, stats.queries[0].fault),
        (NO_CODE, Some("http_500"))
    );
    assert_eq!(
        (stats.queries[1].code, stats.queries[1].fault),
        (1225000, Some("code_1225000"))
    );
    tenant.shutdown().await;
}

#[tokio::test]
async fn a_429_burst_lasts_a_second_per_endpoint() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    tenant.set_faults(Faults {
        burst_429: 1.0,
        ..Faults::default()
    });
    let burst_start = Instant::now();
    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert_eq!(
        (reply.http, reply.json.clone()),
        (
            429,
            json!({"code": 99991400, "msg": "request trigger frequency limit"})
        )
    );
    assert_eq!(reply.headers["x-ogw-ratelimit-reset"], "1");
    assert_eq!(reply.headers["x-ogw-ratelimit-limit"], "50");

    // Switching faults off does not end the burst, and it is the query's alone.
    tenant.set_faults(Faults::default());
    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert_eq!(reply.http, 429);
    let reply = get(&client, &tenant, Some(&token), GROUPS).await;
    assert_eq!(reply.json["code"], 0, "{}", reply.text);

    tokio::time::sleep_until((burst_start + Duration::from_millis(1_050)).into()).await;
    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert_eq!(approvals(&reply).len(), 4);
    let stats = tenant.stats();
    assert_eq!((stats.rate_limited, stats.faults_injected), (2, 2));
    assert_eq!(stats.queries[1].fault, Some("burst_429"));
    tenant.shutdown().await;
}

#[tokio::test]
async fn malformed_json_is_the_first_half_of_the_answer() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let whole = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    let whole_groups = get(&client, &tenant, Some(&token), GROUPS).await;
    let rows_before = tenant.stats().rows_served;

    tenant.set_faults(Faults {
        malformed_json: 1.0,
        ..Faults::default()
    });
    for (reply, whole) in [
        (
            query(&client, &tenant, &token, "employee_id", fixture_query()).await,
            whole,
        ),
        (
            get(&client, &tenant, Some(&token), GROUPS).await,
            whole_groups,
        ),
    ] {
        assert_eq!(reply.http, 200);
        assert!(serde_json::from_str::<Value>(&reply.text).is_err());
        assert!(!reply.text.is_empty() && whole.text.starts_with(&reply.text));
        assert!(reply.text.len() <= whole.text.len() / 2);
    }
    let stats = tenant.stats();
    assert_eq!(
        stats.rows_served, rows_before,
        "a faulted answer serves no rows"
    );
    assert_eq!(stats.queries[1].code, NO_CODE);
    tenant.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    tenant.set_faults(Faults {
        drop_connection: 1.0,
        ..Faults::default()
    });
    let url = format!(
        "{}/open-apis/attendance/v1/user_approvals/query?employee_type=employee_id",
        tenant.base_url()
    );
    let error = client
        .post(&url)
        .bearer_auth(&token)
        .body(fixture_query().to_string())
        .send()
        .await
        .expect_err("the connection closes without an answer");
    assert!(!error.is_timeout() && error.status().is_none(), "{error:?}");
    let error = client
        .get(format!("{}{GROUPS}", tenant.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("list endpoints drop too");
    assert!(error.status().is_none(), "{error:?}");

    // The server lives on.
    tenant.set_faults(Faults::default());
    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert_eq!(approvals(&reply).len(), 4);
    let stats = tenant.stats();
    assert_eq!(stats.faults_injected, 2);
    assert_eq!(
        (stats.queries[0].code, stats.queries[0].fault),
        (NO_CODE, Some("drop_connection"))
    );
    assert_eq!(stats.rows_served["leaves"], 3);
    tenant.shutdown().await;
}

#[tokio::test]
async fn slow_answers_arrive_late_but_whole() {
    let tenant = SimTenant::start(SimConfig {
        faults: Faults {
            slow: 1.0,
            slow_ms: 300,
            ..Faults::default()
        },
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let sent = Instant::now();
    let reply = query(&client, &tenant, &token, "employee_id", fixture_query()).await;
    assert!(sent.elapsed() >= Duration::from_millis(300));
    assert_eq!(approvals(&reply).len(), 4);

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let error = impatient
        .post(format!(
            "{}/open-apis/attendance/v1/user_approvals/query?employee_type=employee_id",
            tenant.base_url()
        ))
        .bearer_auth(&token)
        .body(fixture_query().to_string())
        .send()
        .await
        .expect_err("slower than the client's timeout");
    assert!(error.is_timeout(), "{error:?}");
    // Past the delay: the abandoned answer was never sent, so its rows never counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = tenant.stats();
    assert_eq!((stats.query_calls, stats.faults_injected), (2, 2));
    assert_eq!(
        (stats.queries[0].code, stats.queries[0].fault),
        (0, Some("slow"))
    );
    assert_eq!(
        stats.rows_served["leaves"], 3,
        "only the answer received counts"
    );
    tenant.shutdown().await;
}

#[tokio::test]
async fn a_refused_user_fails_the_whole_batch() {
    let probe = SimTenant::start(config()).await.unwrap();
    let employee_ids = probe.user_ids("employee_id").unwrap();
    let employee_nos = probe.user_ids("employee_no").unwrap();
    probe.shutdown().await;
    let tenant = SimTenant::start(SimConfig {
        refused_user_ids: vec![employee_ids[3].clone()],
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;

    let batch = json!({"user_ids": employee_nos[..10], "check_date_from": 20260901, "check_date_to": 20260930});
    let reply = query(&client, &tenant, &token, "employee_no", batch.clone()).await;
    assert_error(&reply, 400, 1220004);
    assert_eq!(
        reply.json["msg"],
        format!(
            "user_id is not exist or does not have permission: {}",
            employee_nos[3]
        )
    );
    let without = json!({"user_ids": employee_nos[4..10], "check_date_from": 20260901, "check_date_to": 20260930});
    approvals(&query(&client, &tenant, &token, "employee_no", without).await);
    // Still listed, like a departed employee.
    assert!(
        tenant
            .department_members("employee_id")
            .unwrap()
            .contains(&employee_ids[3])
    );

    tenant.set_refused_users(Vec::new());
    approvals(&query(&client, &tenant, &token, "employee_no", batch).await);
    tenant.set_refused_users(vec!["fx_london".to_owned()]);
    let body = json!({"user_ids": ["fx_shanghai", "fx_london"], "check_date_from": 20260901, "check_date_to": 20260902});
    let reply = query(&client, &tenant, &token, "open_id", body).await;
    assert_error(&reply, 400, 1220004);
    assert!(reply.json["msg"].as_str().unwrap().ends_with(": fx_london"));
    assert_eq!(tenant.stats().errors_by_code[&1220004], 2);
    tenant.shutdown().await;

    let unknown = SimTenant::start(SimConfig {
        refused_user_ids: vec!["nobody".to_owned()],
        ..config()
    })
    .await;
    assert_eq!(
        unknown.err().map(|err| err.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

#[tokio::test]
async fn a_short_lived_token_expires() {
    let tenant = SimTenant::start(SimConfig {
        token_ttl_secs: 1,
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!(
        "{}/open-apis/auth/v3/tenant_access_token/internal",
        tenant.base_url()
    );
    let credentials =
        json!({"app_id": "cli_sim_app", "app_secret": "sim-secret-never-logged"}).to_string();
    let minted = post(&client, url.clone(), None, credentials.clone()).await;
    assert_eq!(minted.json["expire"], 1);
    let first = minted.json["tenant_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    approvals(&query(&client, &tenant, &first, "employee_id", fixture_query()).await);

    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let reply = query(&client, &tenant, &first, "employee_id", fixture_query()).await;
    assert_error(&reply, 400, 99991663);
    let reply = get(&client, &tenant, Some(&first), GROUPS).await;
    assert_error(&reply, 400, 99991663);

    tenant.set_token_ttl(7200);
    let fresh = post(&client, url.clone(), None, credentials.clone()).await;
    assert_eq!(fresh.json["expire"], 7200);
    let fresh = fresh.json["tenant_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, first);
    approvals(&query(&client, &tenant, &fresh, "employee_id", fixture_query()).await);

    // Expired on demand: the 2-hour token dies now, and the next mint is a new token.
    tenant.expire_tokens();
    let reply = query(&client, &tenant, &fresh, "employee_id", fixture_query()).await;
    assert_error(&reply, 400, 99991663);
    let renewed = post(&client, url, None, credentials).await;
    assert_eq!(renewed.json["expire"], 7200);
    assert_ne!(renewed.json["tenant_access_token"], fresh.as_str());
    tenant.shutdown().await;
}
