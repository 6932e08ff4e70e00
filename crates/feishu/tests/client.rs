//! The client's token and retry logic against the simulated tenant over loopback: one token
//! fetch for many calls, a refused token renewed once, transient failures retried with backoff,
//! 429s waited out without using up a retry, and errors that no retry can fix returned at once.

use std::time::Duration;

use attendance_core::plan::EmployeeType;
use attendance_feishu::model::QueryRequest;
use attendance_feishu::{Client, ClientConfig, Credentials, PlatformError, codes, endpoints};
use attendance_sim::{Faults, SimConfig, SimTenant};

async fn tenant(users: usize) -> SimTenant {
    SimTenant::start(SimConfig {
        users,
        rate_limit_per_sec: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn client_of(tenant: &SimTenant, secret: Option<&str>) -> Client {
    let config = tenant.config();
    let mut client = ClientConfig::new(
        tenant.base_url(),
        Credentials {
            app_id: config.app_id.clone(),
            app_secret: secret.unwrap_or(&config.app_secret).to_string(),
        },
    );
    client.rate_limit_per_sec = 1_000;
    Client::new(client).unwrap()
}

fn query(users: &[String]) -> QueryRequest {
    QueryRequest {
        user_ids: users.to_vec(),
        check_date_from: 20260901,
        check_date_to: 20260905,
        check_date_type: None,
        status: Some(2),
        check_time_from: None,
        check_time_to: None,
    }
}

fn first_users(tenant: &SimTenant, n: usize) -> Vec<String> {
    let ids = tenant.user_ids("employee_id").unwrap();
    ids[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token_fetch() {
    let tenant = tenant(20).await;
    let client = client_of(&tenant, None);
    let users = first_users(&tenant, 5);
    let request = query(&users);
    let calls = (0..20).map(|_| client.query_user_approvals(EmployeeType::EmployeeId, &request));
    for answer in futures::future::join_all(calls).await {
        answer.unwrap().user_approvals().unwrap();
    }
    assert_eq!(tenant.stats().token_calls, 1);
    let stats = client.stats();
    assert_eq!((stats.token_requests, stats.query_requests), (1, 20));
    assert_eq!(stats.retries, 0);
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_and_the_call_retried() {
    let tenant = tenant(5).await;
    let client = client_of(&tenant, None);
    let users = first_users(&tenant, 2);
    client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
        .await
        .unwrap();
    tenant.expire_tokens();
    client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
        .await
        .unwrap();
    let stats = client.stats();
    assert_eq!(stats.token_requests, 2, "one renewal for the refused token");
    assert_eq!(stats.query_requests, 3, "the refused call was sent again");
    assert_eq!(stats.retries, 1);
    assert_eq!(
        tenant
            .stats()
            .errors_by_code
            .get(&codes::TENANT_TOKEN_INVALID),
        Some(&1)
    );
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_before_it_expires() {
    let tenant = tenant(5).await;
    // 4 s tokens are renewed after three quarters of their life: a call 3.2 s after the first
    // fetches a new token instead of sending one about to expire.
    tenant.set_token_ttl(4);
    let client = client_of(&tenant, None);
    let users = first_users(&tenant, 2);
    client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
        .await
        .unwrap();
    let stats = client.stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(
        stats.retries, 0,
        "no call was sent with a token it had to renew"
    );
    assert!(
        !tenant
            .stats()
            .errors_by_code
            .contains_key(&codes::TENANT_TOKEN_INVALID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_the_answer_comes() {
    let tenant = tenant(10).await;
    tenant.set_faults(Faults {
        http_500: 0.2,
        code_1225000: 0.2,
        malformed_json: 0.1,
        ..Faults::default()
    });
    let client = client_of(&tenant, None);
    let users = first_users(&tenant, 10);
    for _ in 0..8 {
        let data = client
            .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
            .await
            .unwrap();
        data.user_approvals().unwrap();
    }
    let stats = client.stats();
    assert!(stats.retries > 0, "{stats:?}");
    assert_eq!(stats.query_requests, 8 + stats.retries);
    assert_eq!(tenant.stats().query_calls, stats.query_requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_without_using_up_a_retry() {
    let tenant = tenant(5).await;
    tenant.set_faults(Faults {
        burst_429: 0.5,
        ..Faults::default()
    });
    let mut config = ClientConfig::new(
        tenant.base_url(),
        Credentials {
            app_id: tenant.config().app_id.clone(),
            app_secret: tenant.config().app_secret.clone(),
        },
    );
    // Not one retry for transient failures: a 429 must not count as one.
    config.max_attempts = 1;
    let client = Client::new(config).unwrap();
    let users = first_users(&tenant, 3);
    for _ in 0..3 {
        client
            .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
            .await
            .unwrap();
    }
    let stats = client.stats();
    assert!(stats.rate_limited > 0, "{stats:?}");
    assert_eq!(stats.retries, 0);
}

#[tokio::test]
async fn errors_no_retry_can_fix_come_back_at_once() {
    let tenant = tenant(60).await;
    // Wrong credentials: the token endpoint's refusal is final and fatal.
    let refused = client_of(&tenant, Some("not-the-secret"));
    let users = first_users(&tenant, 2);
    let err = refused
        .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlatformError::Api { endpoint, code, .. } if *endpoint == endpoints::TOKEN && *code == codes::BAD_SECRET),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(!err.to_string().contains("not-the-secret"));
    assert_eq!(refused.stats().token_requests, 1);

    // A parameter error (51 ids) is sent once.
    let client = client_of(&tenant, None);
    let err = client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&first_users(&tenant, 51)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::PARAM_INVALID), "{err}");
    assert_eq!(client.stats().query_requests, 1);

    // An unknown user fails its batch, and says so: the caller splits it.
    tenant.set_refused_users(vec![users[0].clone()]);
    let err = client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&users))
        .await
        .unwrap_err();
    assert!(err.is_per_user() && !err.is_fatal(), "{err}");
    assert_eq!(client.stats().query_requests, 2);
}

#[tokio::test]
async fn an_unreachable_platform_is_a_transport_error_after_the_retries() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = ClientConfig::new(
        url,
        Credentials {
            app_id: "cli_x".into(),
            app_secret: "secret-never-shown".into(),
        },
    );
    config.max_attempts = 2;
    let client = Client::new(config).unwrap();
    let err = client
        .query_user_approvals(EmployeeType::EmployeeId, &query(&["u".to_string()]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlatformError::Transport { endpoint, .. } if endpoint == endpoints::TOKEN),
        "{err}"
    );
    assert!(err.is_fatal(), "without a token nothing else can succeed");
    assert!(!err.to_string().contains("secret-never-shown"));
    let stats = client.stats();
    assert_eq!((stats.token_requests, stats.retries), (2, 1));
}
