//! The client's third-party approval calls against the simulated tenant over loopback: create,
//! check and the task list (batched by 20 approval codes, followed across pages), the
//! definitions, "try again later" (1395001) retried with backoff, and a refused instance
//! (1390001) sent once.

use std::sync::Arc;
use std::time::Duration;

use attendance_core::external::model::{CheckTask, DiffInstance};
use attendance_core::external::{ExternalInstance, MsTime, validate};
use attendance_feishu::{
    Client, ClientConfig, Credentials, ExternalTaskFilter, ExternalTaskGroup, ExternalTaskState,
    PlatformError, codes, endpoints,
};
use attendance_sim::{ExternalSettings, SimConfig, SimTenant, external_documents};
use serde_json::json;

/// 2026-01-01T00:00:00Z.
const ANCHOR: i64 = 1_767_225_600_000;

async fn tenant(external_approvals: usize) -> SimTenant {
    SimTenant::start(SimConfig {
        users: 5,
        rate_limit_per_sec: 0,
        external_approvals,
        external: ExternalSettings {
            rate_limit_per_min: 0,
            ..ExternalSettings::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn client_of(tenant: &SimTenant) -> Client {
    let config = tenant.config();
    let mut client = ClientConfig::new(
        tenant.base_url(),
        Credentials {
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
        },
    );
    client.rate_limit_per_sec = 1_000;
    client.external_window = (0, Duration::ZERO);
    Client::new(client).unwrap()
}

fn instances(tenant: &SimTenant, count: usize) -> Vec<ExternalInstance> {
    let codes = tenant.external_approval_codes();
    external_documents(7, count, &codes, ANCHOR)
        .iter()
        .map(|doc| validate(doc).unwrap())
        .collect()
}

/// What the task list should say of `instances`, in its order: by (code, id).
fn listed(instances: &[ExternalInstance], codes: &[String]) -> Vec<ExternalTaskGroup> {
    let mut chosen: Vec<&ExternalInstance> = instances
        .iter()
        .filter(|i| codes.contains(&i.approval_code))
        .collect();
    chosen.sort_by(|a, b| {
        (&a.approval_code, &a.instance_id).cmp(&(&b.approval_code, &b.instance_id))
    });
    chosen
        .into_iter()
        .map(|i| ExternalTaskGroup {
            instance_id: i.instance_id.clone(),
            approval_id: String::new(),
            approval_code: i.approval_code.clone(),
            status: i.status.clone(),
            update_time: i.update_time,
            tasks: i
                .tasks()
                .iter()
                .map(|t| ExternalTaskState {
                    id: t.task_id.clone(),
                    status: t.status.clone(),
                    update_time: t.update_time,
                })
                .collect(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_created_checked_and_listed_in_batches_and_pages() {
    let tenant = tenant(25).await;
    let client = client_of(&tenant);
    let codes = tenant.external_approval_codes();
    assert_eq!(codes.len(), 25);
    // 700 instances over 25 codes: the first 20 codes hold 560 of them, more than a page.
    let all = instances(&tenant, 700);
    for chunk in all.chunks(50) {
        let sent = chunk.iter().map(|i| client.create_external_instance(i));
        for result in futures::future::join_all(sent).await {
            result.unwrap();
        }
    }
    assert_eq!(tenant.external_instances().len(), 700);
    assert_eq!(
        serde_json::to_value(tenant.external_instance("hr-000003").unwrap()).unwrap(),
        serde_json::to_value(&all[3]).unwrap(),
        "the tenant holds what was sent"
    );

    // The check: nothing differs, until the platform loses data.
    let asked: Vec<_> = all.iter().map(ExternalInstance::check_entry).collect();
    assert_eq!(client.check_external_instances(&asked).await.unwrap(), []);
    let lost_task = all[2].tasks()[0].task_id.clone();
    tenant.external_lose(&["hr-000001"], &[("hr-000002", &lost_task)]);
    let diffs = client.check_external_instances(&asked).await.unwrap();
    assert_eq!(
        diffs,
        [
            DiffInstance {
                instance_id: "hr-000001".into(),
                update_time: Some(MsTime(0)),
                tasks: Some(vec![]),
            },
            DiffInstance {
                instance_id: "hr-000002".into(),
                update_time: Some(all[2].update_time),
                tasks: Some(vec![CheckTask {
                    task_id: lost_task,
                    update_time: MsTime(0),
                }]),
            },
        ]
    );
    // Send them again (REPLACE or UPDATE, both restore what was lost).
    client.create_external_instance(&all[1]).await.unwrap();
    client.create_external_instance(&all[2]).await.unwrap();
    assert_eq!(client.check_external_instances(&asked).await.unwrap(), []);

    // The task list over 25 codes: two batches (20 + 5), the first over two pages of 500.
    tenant.reset_stats();
    let filter = ExternalTaskFilter {
        approval_codes: codes.clone(),
        ..ExternalTaskFilter::default()
    };
    let groups = client.list_external_tasks(&filter).await.unwrap();
    // (An UPDATE re-sent above puts its lost task back at the end: compare with the store.)
    let stored = tenant.external_instances();
    let mut expected = listed(&stored, &codes[..20]);
    let first_batch = expected.len();
    assert!(first_batch > 500, "{first_batch}");
    expected.extend(listed(&stored, &codes[20..]));
    assert_eq!(groups.len(), 700);
    for (i, (got, want)) in groups.iter().zip(&expected).enumerate() {
        let got = ExternalTaskGroup {
            approval_id: String::new(),
            ..got.clone()
        };
        assert_eq!(&got, want, "item {i}");
    }
    assert!(groups.iter().all(|g| !g.approval_id.is_empty()));
    let stats = tenant.stats();
    assert_eq!(stats.external_task_list_calls, 3, "2 pages + 1 page");
    assert!(
        stats.errors_by_code.is_empty(),
        "{:?}",
        stats.errors_by_code
    );

    // Task filters go through too.
    let user = all[0].tasks()[0].user_id.clone().unwrap();
    let status = all[0].tasks()[0].status.clone();
    let filter = ExternalTaskFilter {
        user_ids: vec![user.clone()],
        status: Some(status.clone()),
        ..ExternalTaskFilter::default()
    };
    let groups = client.list_external_tasks(&filter).await.unwrap();
    let mut expected: Vec<ExternalTaskGroup> = listed(&stored, &codes)
        .into_iter()
        .filter_map(|mut g| {
            let instance = stored
                .iter()
                .find(|i| i.instance_id == g.instance_id)
                .unwrap();
            g.tasks.retain(|t| {
                let task = instance.tasks().iter().find(|x| x.task_id == t.id).unwrap();
                task.user_id.as_deref() == Some(user.as_str()) && t.status == status
            });
            (!g.tasks.is_empty()).then_some(g)
        })
        .collect();
    expected.iter_mut().for_each(|g| g.approval_id.clear());
    let got: Vec<ExternalTaskGroup> = groups
        .into_iter()
        .map(|g| ExternalTaskGroup {
            approval_id: String::new(),
            ..g
        })
        .collect();
    assert!(!got.is_empty());
    assert_eq!(got, expected);

    // Definitions: an unknown code comes back as a new one, which reads back.
    let definition = json!({
        "approval_name": "@i18n@name", "approval_code": "mine", "group_code": "attendance",
        "external": {"support_pc": true, "support_mobile": true},
        "i18n_resources": [{"locale": "zh-CN", "is_default": true, "texts": [{"key": "@i18n@name", "value": "补卡申请"}]}]
    });
    let code = client.create_external_approval(&definition).await.unwrap();
    assert_ne!(code, "mine");
    let read = client.get_external_approval(&code).await.unwrap();
    assert_eq!(read["approval_code"], json!(code));
    assert_eq!(read["approval_name"], "@i18n@name");
    let mut renamed = definition.clone();
    renamed["approval_code"] = json!(code);
    renamed["approval_name"] = json!("@i18n@name2");
    assert_eq!(
        client.create_external_approval(&renamed).await.unwrap(),
        code
    );
    assert_eq!(
        client.get_external_approval(&code).await.unwrap()["approval_name"],
        "@i18n@name2"
    );
    let err = client
        .get_external_approval("NO-SUCH-CODE")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::EXTERNAL_PARAM_INVALID), "{err}");

    let stats = client.stats();
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.query_requests + stats.list_requests, 0);
    // 702 creates, 3 checks, 4 list pages, 5 definition calls.
    assert_eq!(stats.external_requests, 702 + 3 + 4 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_later_is_retried_until_the_platform_takes_the_instance() {
    let tenant = tenant(3).await;
    let client = Arc::new(client_of(&tenant));
    let instance = instances(&tenant, 1).remove(0);
    tenant.set_external_try_later(1.0);
    let call = {
        let client = Arc::clone(&client);
        let instance = instance.clone();
        tokio::spawn(async move { client.create_external_instance(&instance).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tenant.external_instances().is_empty());
    tenant.set_external_try_later(0.0);
    call.await.unwrap().unwrap();
    assert_eq!(
        tenant.external_instance(&instance.instance_id).as_ref(),
        Some(&instance)
    );
    let stats = client.stats();
    assert!(stats.retries > 0, "{stats:?}");
    let sim = tenant.stats();
    assert_eq!(sim.external_instance_calls, 1 + stats.retries);
    assert_eq!(
        sim.errors_by_code[&codes::EXTERNAL_TRY_LATER],
        stats.retries
    );
    assert_eq!(stats.external_requests, 1 + stats.retries);

    // The check is retried the same way.
    tenant.set_external_try_later(1.0);
    let asked = vec![instance.check_entry()];
    let call = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.check_external_instances(&asked).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tenant.set_external_try_later(0.0);
    assert_eq!(call.await.unwrap().unwrap(), []);
    assert!(client.stats().retries > stats.retries);
}

#[tokio::test]
async fn a_refused_instance_is_sent_once_and_is_not_fatal() {
    let tenant = tenant(3).await;
    let client = client_of(&tenant);
    let mut instance = instances(&tenant, 1).remove(0);
    instance.approval_code = "NOT-A-DEFINITION".into();
    instance.task_list.as_mut().unwrap()[0].status = "OPEN".into();
    let err = client
        .create_external_instance(&instance)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlatformError::Api { endpoint, code, http_status: 400, .. }
            if *endpoint == endpoints::EXTERNAL_INSTANCES && *code == codes::EXTERNAL_PARAM_INVALID),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("task_list[0].status"), "{text}");
    assert!(
        text.contains("the platform refused the instance's fields"),
        "{text}"
    );
    assert!(!err.is_fatal() && !err.is_per_user());
    assert_eq!(client.stats().retries, 0);
    let sim = tenant.stats();
    assert_eq!(sim.external_instance_calls, 1);
    assert_eq!(
        sim.external_instances_received,
        [instance.instance_id.clone()]
    );
    assert!(tenant.external_instances().is_empty());

    // An unknown approval code alone is refused the same way.
    instance.task_list.as_mut().unwrap()[0].status = "PENDING".into();
    let err = client
        .create_external_instance(&instance)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::EXTERNAL_PARAM_INVALID));
    assert!(err.to_string().contains("NOT-A-DEFINITION"), "{err}");
    assert_eq!(tenant.stats().external_instance_calls, 2);

    // A token of no tenant, by contrast, stops the run.
    let tenantless = PlatformError::Api {
        endpoint: endpoints::EXTERNAL_INSTANCES,
        http_status: 400,
        code: codes::EXTERNAL_TENANT_MISSING,
        msg: "tenant_id not found".into(),
    };
    assert!(tenantless.is_fatal());
}

#[tokio::test]
async fn the_third_party_apis_hold_to_their_longer_window_exactly() {
    // A window of 10 requests a second stands in for the platform's 1000 a minute.
    let tenant = tenant(3).await;
    let config = tenant.config();
    let mut config = ClientConfig::new(
        tenant.base_url(),
        Credentials {
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
        },
    );
    config.rate_limit_per_sec = 1_000;
    config.external_window = (10, Duration::from_secs(1));
    let client = Arc::new(Client::new(config).unwrap());
    let all = instances(&tenant, 25);
    let started = tokio::time::Instant::now();
    let sends: Vec<_> = all
        .iter()
        .cloned()
        .map(|instance| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.create_external_instance(&instance).await })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    // Ten at once, ten more a second later, the last five a second after that: never more
    // than ten in any second.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1990), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(tenant.external_instances().len(), 25);
}
