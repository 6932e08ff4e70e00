//! End-to-end tests of the third-party approval endpoints over loopback HTTP (reqwest against
//! the real server): REPLACE and UPDATE, the check's five steps, refusals (1390001) that store
//! nothing, the task list's paging and filters, the "try again later" switch (1395001), the
//! definitions, and the data set of source documents.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Value, json};

use attendance_core::external::{MsTime, validate};

use super::tests::{Reply, assert_error, config, post, read_reply, token};
use super::{ExternalSettings, SimConfig, SimTenant, external_approval_codes, external_documents};

const INSTANCES: &str = "/open-apis/approval/v4/external_instances";
const CHECK: &str = "/open-apis/approval/v4/external_instances/check";
const TASKS: &str = "/open-apis/approval/v4/external_tasks";
const APPROVALS: &str = "/open-apis/approval/v4/external_approvals";

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

struct Session {
    tenant: SimTenant,
    client: reqwest::Client,
    token: String,
    codes: Vec<String>,
}

async fn session(config: SimConfig) -> Session {
    let tenant = SimTenant::start(config).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let codes = tenant.external_approval_codes();
    Session {
        tenant,
        client,
        token,
        codes,
    }
}

impl Session {
    async fn post(&self, path: &str, body: String) -> Reply {
        let url = format!("{}{path}", self.tenant.base_url());
        post(&self.client, url, Some(&self.token), body).await
    }

    async fn create(&self, instance: &Value) -> Reply {
        self.post(INSTANCES, instance.to_string()).await
    }

    /// Creates and asserts it was accepted; the echo (`data.data`).
    async fn created(&self, instance: &Value) -> Value {
        let reply = self.create(instance).await;
        assert_eq!(
            (reply.http, &reply.json["code"]),
            (200, &json!(0)),
            "{}",
            reply.text
        );
        assert_eq!(reply.json["msg"], "success");
        reply.json["data"]["data"].clone()
    }

    async fn check(&self, body: Value) -> Reply {
        self.post(CHECK, body.to_string()).await
    }

    /// `GET external_tasks{query}` with `body` as its JSON body.
    async fn list(&self, query: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .get(format!("{}{TASKS}{query}", self.tenant.base_url()))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json; charset=utf-8")
                .body(body.to_string());
        }
        read_reply(request.send().await.unwrap()).await
    }

    async fn get_approval(&self, code: &str) -> Reply {
        let url = format!(
            "{}{APPROVALS}/{code}?user_id_type=user_id",
            self.tenant.base_url()
        );
        read_reply(
            self.client
                .get(url)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

fn task(id: &str, user: &str, status: &str, update: i64) -> Value {
    json!({
        "task_id": id, "user_id": user, "title": "@i18n@node",
        "links": {"pc_link": format!("https://hr.example.com/t/{id}")},
        "status": status, "create_time": (T0 - 60_000).to_string(),
        "end_time": if status == "PENDING" { "0".to_owned() } else { update.to_string() },
        "update_time": update.to_string(),
        "node_id": "node_manager", "node_name": "直属主管审批"
    })
}

fn cc(id: &str, user: &str, read: &str, update: i64) -> Value {
    json!({
        "cc_id": id, "user_id": user, "links": {"mobile_link": format!("https://hr.example.com/c/{id}")},
        "read_status": read, "create_time": (T0 - 60_000).to_string(), "update_time": update.to_string()
    })
}

/// A valid instance of `code` at `update`, with `tasks` and `ccs` (omitted when empty).
fn instance(
    code: &str,
    id: &str,
    status: &str,
    update: i64,
    tasks: Vec<Value>,
    ccs: Vec<Value>,
) -> Value {
    let mut doc = json!({
        "approval_code": code, "instance_id": id, "status": status,
        "links": {"pc_link": format!("https://hr.example.com/i/{id}")},
        "title": "@i18n@title", "user_id": "ext_u0001", "department_id": "od-1",
        "department_name": "人事部",
        "start_time": (T0 - 120_000).to_string(), "end_time": 0, "update_time": update,
        "i18n_resources": [{"locale": "zh-CN", "is_default": true, "texts": [
            {"key": "@i18n@title", "value": "请假申请"}, {"key": "@i18n@node", "value": "主管"}]}]
    });
    if !tasks.is_empty() {
        doc["task_list"] = Value::Array(tasks);
    }
    if !ccs.is_empty() {
        doc["cc_list"] = Value::Array(ccs);
    }
    doc
}

fn with_mode(mut doc: Value, mode: &str) -> Value {
    doc["update_mode"] = json!(mode);
    doc
}

fn task_ids(tenant: &SimTenant, id: &str) -> Vec<String> {
    tenant
        .external_instance(id)
        .unwrap()
        .tasks()
        .iter()
        .map(|t| t.task_id.clone())
        .collect()
}

#[tokio::test]
async fn replace_stores_the_payload_wholesale_whatever_its_update_time() {
    let s = session(config()).await;
    let code = &s.codes[0];
    let first = instance(
        code,
        "i1",
        "PENDING",
        T0,
        vec![
            task("t1", "ext_u0002", "APPROVED", T0),
            task("t2", "ext_u0003", "PENDING", T0),
        ],
        vec![cc("c1", "ext_u0004", "UNREAD", T0)],
    );
    let echo = s.created(&first).await;
    assert_eq!(echo["instance_id"], "i1");
    assert_eq!(
        echo["update_time"], "1767225600000",
        "times are echoed as strings"
    );
    assert_eq!(echo["end_time"], "0");
    assert_eq!(task_ids(&s.tenant, "i1"), ["t1", "t2"]);

    // Older, with t2 and the cc absent, and another (defined) approval code: REPLACE takes it
    // all but the code.
    let second = with_mode(
        instance(
            &s.codes[1],
            "i1",
            "APPROVED",
            T0 - 5_000,
            vec![task("t1", "ext_u0002", "APPROVED", T0 - 5_000)],
            vec![],
        ),
        "REPLACE",
    );
    let echo = s.created(&second).await;
    let stored = s.tenant.external_instance("i1").unwrap();
    assert_eq!(serde_json::to_value(&stored).unwrap(), echo);
    assert_eq!(stored.status, "APPROVED");
    assert_eq!(stored.update_time, MsTime(T0 - 5_000));
    assert_eq!(task_ids(&s.tenant, "i1"), ["t1"]);
    assert!(stored.cc_list.is_none());
    assert_eq!(
        &stored.approval_code, code,
        "the approval code never changes"
    );

    let stats = s.tenant.stats();
    assert_eq!(stats.external_instance_calls, 2);
    assert_eq!(stats.external_instances_received, ["i1", "i1"]);
    assert_eq!(s.tenant.external_instances().len(), 1);
}

#[tokio::test]
async fn update_takes_only_newer_items_and_never_deletes() {
    let s = session(config()).await;
    let code = &s.codes[0];
    s.created(&instance(
        code,
        "i1",
        "PENDING",
        T0,
        vec![
            task("t1", "ext_u0002", "PENDING", T0),
            task("t2", "ext_u0003", "PENDING", T0),
        ],
        vec![cc("c1", "ext_u0004", "UNREAD", T0)],
    ))
    .await;
    let before = s.tenant.external_instance("i1").unwrap();

    // Not newer (equal, or older): the instance, the task and the cc are all skipped, and the
    // call still succeeds.
    let stale = with_mode(
        instance(
            code,
            "i1",
            "APPROVED",
            T0,
            vec![task("t1", "ext_u0002", "APPROVED", T0 - 1)],
            vec![cc("c1", "ext_u0004", "READ", T0)],
        ),
        "UPDATE",
    );
    let echo = s.created(&stale).await;
    let after = s.tenant.external_instance("i1").unwrap();
    assert_eq!(after.update_time, before.update_time);
    assert_eq!(after.status, before.status);
    assert_eq!(after.tasks(), before.tasks());
    assert_eq!(after.ccs(), before.ccs());
    assert_eq!(echo["status"], "PENDING");

    // Newer: updated, with the unchangeable fields kept; t2 (absent) stays, t3 is added.
    let mut t1 = task("t1", "ext_u0999", "APPROVED", T0 + 1_000);
    t1["node_id"] = json!("node_other");
    t1["node_name"] = json!("另一个节点");
    t1["create_time"] = json!((T0 + 1).to_string());
    let mut c1 = cc("c1", "ext_u0998", "READ", T0 + 1_000);
    c1["create_time"] = json!((T0 + 1).to_string());
    let mut newer = with_mode(
        instance(
            code,
            "i1",
            "APPROVED",
            T0 + 1_000,
            vec![t1, task("t3", "ext_u0005", "PENDING", T0 + 1_000)],
            vec![c1, cc("c2", "ext_u0006", "UNREAD", T0 + 1_000)],
        ),
        "UPDATE",
    );
    newer["department_id"] = json!("od-2");
    newer["department_name"] = json!("财务部");
    newer["end_time"] = json!((T0 + 1_000).to_string());
    s.created(&newer).await;
    let after = s.tenant.external_instance("i1").unwrap();
    assert_eq!(after.status, "APPROVED");
    assert_eq!(after.update_time, MsTime(T0 + 1_000));
    assert_eq!(after.end_time, MsTime(T0 + 1_000));
    assert_eq!(after.department_id.as_deref(), Some("od-1"));
    assert_eq!(after.department_name.as_deref(), Some("人事部"));
    assert_eq!(task_ids(&s.tenant, "i1"), ["t1", "t2", "t3"]);
    let t1 = &after.tasks()[0];
    assert_eq!(t1.status, "APPROVED");
    assert_eq!(t1.update_time, MsTime(T0 + 1_000));
    assert_eq!(t1.user_id.as_deref(), Some("ext_u0002"));
    assert_eq!(t1.node_id.as_deref(), Some("node_manager"));
    assert_eq!(t1.node_name.as_deref(), Some("直属主管审批"));
    assert_eq!(t1.create_time, MsTime(T0 - 60_000));
    assert_eq!(after.tasks()[1], before.tasks()[1], "t2 untouched");
    let ccs = after.ccs();
    assert_eq!(ccs.len(), 2);
    assert_eq!(ccs[0].read_status, "READ");
    assert_eq!(ccs[0].user_id.as_deref(), Some("ext_u0004"));
    assert_eq!(ccs[0].create_time, MsTime(T0 - 60_000));
    assert_eq!(ccs[1].cc_id, "c2");

    // An UPDATE of an instance the tenant does not hold inserts it.
    s.created(&with_mode(
        instance(code, "i2", "PENDING", T0, vec![], vec![]),
        "UPDATE",
    ))
    .await;
    assert!(
        s.tenant
            .external_instance("i2")
            .unwrap()
            .task_list
            .is_none()
    );
}

#[tokio::test]
async fn check_answers_each_of_the_five_steps() {
    let s = session(config()).await;
    s.created(&instance(
        &s.codes[0],
        "i1",
        "PENDING",
        T0 + 5,
        vec![
            task("t1", "u1", "APPROVED", T0 + 1),
            task("t2", "u2", "PENDING", T0 + 2),
        ],
        vec![],
    ))
    .await;
    let tasks = |entries: &[(&str, i64)]| -> Value {
        entries
            .iter()
            .map(|(id, t)| json!({"task_id": id, "update_time": t.to_string()}))
            .collect()
    };
    let body = json!({"instances": [
        // 1. Unknown instance.
        {"instance_id": "nope", "update_time": T0.to_string(), "tasks": tasks(&[("t1", T0)])},
        // 2. An unknown task wins over a task at another time listed before it.
        {"instance_id": "i1", "update_time": (T0 + 5).to_string(), "tasks": tasks(&[("t2", T0), ("tx", T0)])},
        // 3. A task at another time.
        {"instance_id": "i1", "update_time": T0 + 5, "tasks": tasks(&[("t1", T0 + 1), ("t2", T0)])},
        // 4. The instance at another time.
        {"instance_id": "i1", "update_time": T0.to_string(), "tasks": tasks(&[("t1", T0 + 1), ("t2", T0 + 2)])},
        // 5. All the same (a subset of the tasks is fine).
        {"instance_id": "i1", "update_time": (T0 + 5).to_string(), "tasks": tasks(&[("t2", T0 + 2)])},
    ]});
    let reply = s.check(body).await;
    assert_eq!(reply.json["code"], 0, "{}", reply.text);
    assert_eq!(
        reply.json["data"]["diff_instances"],
        json!([
            {"instance_id": "nope", "update_time": "0", "tasks": []},
            {"instance_id": "i1", "update_time": "1767225600005", "tasks": [{"task_id": "tx", "update_time": "0"}]},
            {"instance_id": "i1", "update_time": "1767225600005", "tasks": [{"task_id": "t2", "update_time": "1767225600002"}]},
            {"instance_id": "i1", "update_time": "1767225600005", "tasks": []},
        ])
    );

    // Data lost on the platform shows in the check.
    s.tenant.external_lose(&[], &[("i1", "t1")]);
    let body = json!({"instances": [{"instance_id": "i1", "update_time": (T0 + 5).to_string(), "tasks": tasks(&[("t1", T0 + 1)])}]});
    let reply = s.check(body).await;
    assert_eq!(
        reply.json["data"]["diff_instances"][0]["tasks"],
        json!([{"task_id": "t1", "update_time": "0"}])
    );
    s.tenant.external_lose(&["i1"], &[]);
    let body = json!({"instances": [{"instance_id": "i1", "update_time": (T0 + 5).to_string(), "tasks": []}]});
    let reply = s.check(body).await;
    assert_eq!(reply.json["data"]["diff_instances"][0]["update_time"], "0");

    // A body without the required fields is refused.
    for bad in [
        json!({}),
        json!({"instances": [{"instance_id": "i1", "update_time": "1"}]}),
        json!({"instances": [{"instance_id": "i1", "update_time": "soon", "tasks": []}]}),
    ] {
        let reply = s.check(bad).await;
        assert_error(&reply, 400, 1390001);
        assert!(
            reply.json["msg"]
                .as_str()
                .unwrap()
                .starts_with("param is invalid: ")
        );
    }
    assert_eq!(s.tenant.stats().external_check_calls, 6);
}

#[tokio::test]
async fn refused_instances_are_named_and_never_stored() {
    let s = session(config()).await;
    let mut bad = instance(
        &s.codes[0],
        "bad-1",
        "PENDING",
        T0,
        vec![task("t1", "u1", "PENDING", T0)],
        vec![],
    );
    bad["task_list"][0]["status"] = json!("OPEN");
    bad["links"] = json!({});
    let reply = s.create(&bad).await;
    assert_error(&reply, 400, 1390001);
    let msg = reply.json["msg"].as_str().unwrap();
    assert!(msg.starts_with("param is invalid: "), "{msg}");
    assert!(
        msg.contains("task_list[0].status: \"OPEN\" is not one of"),
        "{msg}"
    );
    assert!(msg.contains("links: needs pc_link or mobile_link"), "{msg}");
    assert!(msg.contains("; "), "every problem is named: {msg}");

    let unknown = instance("NOT-A-CODE", "bad-2", "PENDING", T0, vec![], vec![]);
    let reply = s.create(&unknown).await;
    assert_error(&reply, 400, 1390001);
    assert!(
        reply.json["msg"]
            .as_str()
            .unwrap()
            .contains("\"NOT-A-CODE\""),
        "{}",
        reply.text
    );

    let reply = s.post(INSTANCES, "{not json".to_owned()).await;
    assert_error(&reply, 400, 1390001);

    // Auth comes first.
    let url = format!("{}{INSTANCES}", s.tenant.base_url());
    let reply = post(&s.client, url, None, unknown.to_string()).await;
    assert_error(&reply, 400, 99991661);

    assert!(s.tenant.external_instances().is_empty());
    let stats = s.tenant.stats();
    assert_eq!(stats.external_instance_calls, 4);
    assert_eq!(
        stats.external_instances_received,
        ["bad-1", "bad-2", "bad-2"]
    );
    assert_eq!(stats.errors_by_code[&1390001], 3);
}

#[tokio::test]
async fn the_task_list_pages_and_filters() {
    let s = session(config()).await;
    let c = &s.codes;
    let placed = [
        (
            &c[2],
            "a1",
            vec![task("a1-t1", "ext_u0001", "APPROVED", T0)],
        ),
        (&c[0], "b2", vec![task("b2-t1", "ext_u0002", "PENDING", T0)]),
        (
            &c[0],
            "b1",
            vec![
                task("b1-t1", "ext_u0001", "APPROVED", T0),
                task("b1-t2", "ext_u0002", "PENDING", T0 + 7),
            ],
        ),
        (&c[1], "c1", vec![]),
        (
            &c[2],
            "a0",
            vec![task("a0-t1", "ext_u0003", "REJECTED", T0)],
        ),
    ];
    for (code, id, tasks) in &placed {
        s.created(&instance(
            code,
            id,
            "PENDING",
            T0 + 9,
            tasks.clone(),
            vec![],
        ))
        .await;
    }
    let mut expected: Vec<(String, String)> = placed
        .iter()
        .map(|(code, id, _)| ((*code).clone(), (*id).to_owned()))
        .collect();
    expected.sort();

    // Pages of 2, ordered by (approval_code, instance_id); no body at all = no filter.
    let mut seen = Vec::new();
    let mut query = "?page_size=2".to_owned();
    let mut tokens = Vec::new();
    loop {
        let reply = s.list(&query, None).await;
        assert_eq!(reply.json["code"], 0, "{}", reply.text);
        let data = &reply.json["data"];
        for item in data["data"].as_array().unwrap() {
            seen.push((
                item["approval_code"].as_str().unwrap().to_owned(),
                item["instance_id"].as_str().unwrap().to_owned(),
            ));
        }
        if data["has_more"] == json!(false) {
            assert!(data.get("page_token").is_none(), "{}", reply.text);
            break;
        }
        let token = data["page_token"].as_str().unwrap().to_owned();
        assert!(
            token.len() == 16
                && token
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        query = format!("?page_size=2&page_token={token}");
        tokens.push(token);
    }
    assert_eq!(seen, expected);
    assert_eq!(tokens.len(), 2);
    // Tokens are stable: the same listing pages the same way.
    let again = s.list("?page_size=2", Some(json!({}))).await;
    assert_eq!(again.json["data"]["page_token"], json!(tokens[0]));
    let replay = s
        .list(&format!("?page_size=2&page_token={}", tokens[1]), None)
        .await;
    assert_eq!(
        replay.json["data"]["data"][0]["instance_id"],
        json!(expected[4].1)
    );

    // An item's shape.
    let reply = s.list("", Some(json!({"instance_ids": ["b1"]}))).await;
    let item = &reply.json["data"]["data"][0];
    let approval_id = item["approval_id"].as_str().unwrap();
    assert!(approval_id.len() == 19 && approval_id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        item,
        &json!({"instance_id": "b1", "approval_id": approval_id, "approval_code": c[0], "status": "PENDING",
            "update_time": "1767225600009", "tasks": [
                {"id": "b1-t1", "status": "APPROVED", "update_time": "1767225600000"},
                {"id": "b1-t2", "status": "PENDING", "update_time": "1767225600007"}]})
    );

    let ids = |reply: &Reply| -> Vec<String> {
        reply.json["data"]["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", reply.text))
            .iter()
            .map(|item| item["instance_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let reply = s.list("", Some(json!({"approval_codes": [c[2]]}))).await;
    assert_eq!(ids(&reply), ["a0", "a1"]);
    // Tasks filters: only matching tasks, only instances with one.
    let reply = s.list("", Some(json!({"user_ids": ["ext_u0001"]}))).await;
    assert_eq!(
        ids(&reply),
        if c[0] < c[2] {
            ["b1", "a1"]
        } else {
            ["a1", "b1"]
        }
    );
    for item in reply.json["data"]["data"].as_array().unwrap() {
        assert_eq!(item["tasks"].as_array().unwrap().len(), 1, "{item}");
    }
    let reply = s
        .list(
            "",
            Some(json!({"approval_codes": [c[0]], "status": "PENDING"})),
        )
        .await;
    assert_eq!(ids(&reply), ["b1", "b2"]);
    assert_eq!(
        reply.json["data"]["data"][0]["tasks"],
        json!([{"id": "b1-t2", "status": "PENDING", "update_time": "1767225600007"}])
    );
    let reply = s.list("", Some(json!({"status": "TRANSFERRED"}))).await;
    assert_eq!(ids(&reply), Vec::<String>::new());
    assert_eq!(reply.json["data"]["has_more"], false);

    // Limits.
    let codes: Vec<String> = external_approval_codes(7, 21);
    let reply = s.list("", Some(json!({"approval_codes": codes}))).await;
    assert_error(&reply, 400, 1390001);
    assert!(
        reply.json["msg"].as_str().unwrap().contains("at most 20"),
        "{}",
        reply.text
    );
    let reply = s
        .list("", Some(json!({"approval_codes": codes[..20]})))
        .await;
    assert_eq!(reply.json["code"], 0);
    let ids21: Vec<String> = (0..21).map(|i| format!("x{i}")).collect();
    assert_error(
        &s.list("", Some(json!({"instance_ids": ids21}))).await,
        400,
        1390001,
    );
    assert_error(&s.list("?page_size=501", None).await, 400, 1390001);
    assert_eq!(s.list("?page_size=500", None).await.json["code"], 0);
    assert_error(&s.list("?page_size=0", None).await, 400, 1390001);
    assert_error(
        &s.list("?page_token=0123456789abcdef", None).await,
        400,
        1390001,
    );
    // A token is only good for the listing it came from.
    let other = s
        .list(
            &format!("?page_size=2&page_token={}", tokens[0]),
            Some(json!({"status": "PENDING"})),
        )
        .await;
    assert_error(&other, 400, 1390001);
    assert_error(
        &s.list("", Some(json!({"status": "OPEN"}))).await,
        400,
        1390001,
    );
    assert_error(
        &s.list("", Some(json!({"user_ids": "ext_u0001"}))).await,
        400,
        1390001,
    );
}

#[tokio::test]
async fn try_later_refuses_a_share_of_creates_and_checks_without_a_change() {
    let s = session(config()).await;
    let doc = instance(&s.codes[0], "i1", "PENDING", T0, vec![], vec![]);
    s.tenant.set_external_try_later(1.0);
    let reply = s.create(&doc).await;
    assert_error(&reply, 400, 1395001);
    assert_eq!(
        reply.json["msg"],
        "There have been some errors. Please try again later"
    );
    assert!(s.tenant.external_instances().is_empty());
    let reply = s
        .check(json!({"instances": [{"instance_id": "i1", "update_time": "1", "tasks": []}]}))
        .await;
    assert_error(&reply, 400, 1395001);
    // Invalid instances are refused for their fields first.
    let reply = s.create(&json!({"instance_id": "i1"})).await;
    assert_error(&reply, 400, 1390001);

    s.tenant.set_external_try_later(0.0);
    s.created(&doc).await;
    assert_eq!(s.tenant.external_instances().len(), 1);

    // From the config, a share: deterministic, and only accepted creates are stored.
    let run = || async {
        let s = session(SimConfig {
            external: ExternalSettings {
                try_later_share: 0.5,
                ..ExternalSettings::default()
            },
            ..config()
        })
        .await;
        let mut refused = Vec::new();
        for i in 0..40 {
            let doc = instance(&s.codes[0], &format!("i{i}"), "PENDING", T0, vec![], vec![]);
            let reply = s.create(&doc).await;
            if reply.json["code"] == 1395001 {
                refused.push(i);
            } else {
                assert_eq!(reply.json["code"], 0, "{}", reply.text);
            }
        }
        assert_eq!(s.tenant.external_instances().len(), 40 - refused.len());
        refused
    };
    let refused = run().await;
    assert!((8..=32).contains(&refused.len()), "{refused:?}");
    assert_eq!(run().await, refused);
}

#[tokio::test]
async fn definitions_are_upserted_and_read_back() {
    let s = session(config()).await;
    assert_eq!(s.codes.len(), 24);
    let mut generated = external_approval_codes(42, 24);
    generated.sort();
    assert_eq!(s.codes, generated, "sorted");
    let code = &s.codes[3];
    let reply = s.get_approval(code).await;
    assert_eq!(reply.json["code"], 0, "{}", reply.text);
    assert_eq!(reply.json["data"]["approval_code"], json!(code));
    assert_eq!(reply.json["data"]["external"]["support_pc"], true);

    let url = format!("{APPROVALS}?department_id_type=open_department_id&user_id_type=user_id");
    let definition = |code: &str| {
        json!({"approval_name": "@i18n@name", "approval_code": code, "group_code": "attendance",
            "external": {"support_pc": true, "support_mobile": false},
            "i18n_resources": [{"locale": "zh-CN", "is_default": true, "texts": [{"key": "@i18n@name", "value": "补卡"}]}]})
    };
    // A known code is updated.
    let reply = s.post(&url, definition(code).to_string()).await;
    assert_eq!(
        reply.json,
        json!({"code": 0, "msg": "success", "data": {"approval_code": code}})
    );
    let reply = s.get_approval(code).await;
    assert_eq!(reply.json["data"], definition(code));

    // An unknown code defines a new one, made by the server.
    let reply = s.post(&url, definition("MY-OWN-CODE").to_string()).await;
    let new_code = reply.json["data"]["approval_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_code, "MY-OWN-CODE");
    let parts: Vec<usize> = new_code.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12]);
    assert!(
        new_code
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || b.is_ascii_uppercase())
    );
    assert!(s.tenant.external_approval_codes().contains(&new_code));
    assert_eq!(s.tenant.external_approval_codes().len(), 25);
    let reply = s.get_approval(&new_code).await;
    assert_eq!(reply.json["data"]["approval_code"], json!(new_code));
    // Instances may use it at once.
    s.created(&instance(&new_code, "i1", "PENDING", T0, vec![], vec![]))
        .await;

    // Refusals name the field.
    let mut no_name = definition(code);
    no_name.as_object_mut().unwrap().remove("approval_name");
    let mut no_external = definition(code);
    no_external.as_object_mut().unwrap().remove("external");
    let mut nowhere = definition(code);
    nowhere["external"] = json!({"support_pc": false, "support_mobile": false});
    for (body, named) in [
        (no_name, "approval_name"),
        (no_external, "external"),
        (nowhere, "support_mobile"),
        (
            json!({"approval_name": "x", "external": {"support_pc": true}}),
            "approval_code",
        ),
    ] {
        let reply = s.post(&url, body.to_string()).await;
        assert_error(&reply, 400, 1390001);
        assert!(
            reply.json["msg"].as_str().unwrap().contains(named),
            "{}",
            reply.text
        );
    }
    let reply = s
        .post(
            &format!("{APPROVALS}?user_id_type=email"),
            definition(code).to_string(),
        )
        .await;
    assert_error(&reply, 400, 1390001);
    let reply = s.get_approval("NO-SUCH-CODE").await;
    assert_error(&reply, 400, 1390001);
    assert!(reply.json["msg"].as_str().unwrap().contains("not found"));
    assert_eq!(s.tenant.stats().external_approval_calls, 11);
}

#[test]
fn the_documents_are_valid_and_varied() {
    let codes = external_approval_codes(42, 24);
    assert_eq!(codes.len(), 24);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 24);
    assert!(codes.iter().all(|c| c.len() == 36));
    let documents = external_documents(42, 500, &codes, T0);
    assert_eq!(
        documents,
        external_documents(42, 500, &codes, T0),
        "deterministic"
    );
    assert_ne!(documents, external_documents(43, 500, &codes, T0));

    let mut locales = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    let mut task_statuses = BTreeSet::new();
    let mut modes = BTreeSet::new();
    let (mut transfers, mut ccs, mut numeric, mut custom_actions, mut plain_names, mut key_names) =
        (0, 0, 0, 0, 0, 0);
    let mut multi_locale = 0;
    let mut ids = HashSet::new();
    let mut used_codes = HashSet::new();
    for doc in &documents {
        let instance = validate(doc).unwrap_or_else(|problems| panic!("{problems:#?}\n{doc:#}"));
        assert!(ids.insert(instance.instance_id.clone()));
        used_codes.insert(instance.approval_code.clone());
        statuses.insert(instance.status.clone());
        modes.insert(instance.update_mode().to_owned());
        assert!(instance.start_time.0 >= T0 - 90 * 86_400_000 && instance.update_time.0 <= T0);
        assert_eq!(instance.end_time.0 == 0, instance.status == "PENDING");
        for resource in &instance.i18n_resources {
            locales.insert(resource.locale.clone());
        }
        if instance.i18n_resources.len() > 1 {
            multi_locale += 1;
        }
        assert_eq!(instance.default_resource().unwrap().locale, "zh-CN");
        if doc["start_time"].is_number() {
            numeric += 1;
        }
        match instance.user_name.as_deref() {
            Some(name) if name.starts_with("@i18n@") => key_names += 1,
            Some(_) => plain_names += 1,
            None => {}
        }
        let tasks = instance.tasks();
        assert!((1..=12).contains(&tasks.len()));
        for (i, task) in tasks.iter().enumerate() {
            task_statuses.insert(task.status.clone());
            assert!(task.node_id.is_some() && task.node_name.is_some());
            if task.status == "TRANSFERRED" {
                let next = &tasks[i + 1];
                assert_eq!(next.node_id, task.node_id);
                assert_ne!(next.user_id, task.user_id);
                transfers += 1;
            }
            if task.status == "PENDING" {
                assert!(task.action_configs.is_some());
                assert_eq!(task.end_time, MsTime::NOT_ENDED);
            }
            if let Some(actions) = &task.action_configs
                && actions.iter().any(|a| a.action_name.is_some())
            {
                custom_actions += 1;
            }
        }
        ccs += instance.ccs().len();
    }
    assert_eq!(used_codes.len(), 24, "spread over every code");
    assert_eq!(
        locales,
        BTreeSet::from(["en-US".to_owned(), "ja-JP".to_owned(), "zh-CN".to_owned()])
    );
    assert!(multi_locale > 100, "{multi_locale}");
    for status in ["PENDING", "APPROVED", "REJECTED", "CANCELED"] {
        assert!(statuses.contains(status), "{statuses:?}");
    }
    for status in ["PENDING", "APPROVED", "REJECTED", "TRANSFERRED", "DONE"] {
        assert!(task_statuses.contains(status), "{task_statuses:?}");
    }
    assert_eq!(
        modes,
        BTreeSet::from(["REPLACE".to_owned(), "UPDATE".to_owned()])
    );
    assert!(
        transfers > 20 && ccs > 200,
        "{transfers} transfers, {ccs} ccs"
    );
    assert!(numeric > 20 && numeric < 480, "{numeric}");
    assert!(custom_actions > 5 && plain_names > 20 && key_names > 20);
}

#[tokio::test]
async fn the_documents_are_accepted_by_the_tenant() {
    let s = session(config()).await;
    let documents = external_documents(1, 60, &s.codes, T0);
    for doc in &documents {
        s.created(doc).await;
    }
    assert_eq!(s.tenant.external_instances().len(), 60);
    let reply = s.list("?page_size=500", None).await;
    assert_eq!(reply.json["data"]["data"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn the_third_party_apis_refuse_past_their_minute_allowance() {
    let s = session(SimConfig {
        external: ExternalSettings {
            rate_limit_per_min: 5,
            ..ExternalSettings::default()
        },
        ..config()
    })
    .await;
    for i in 0..5 {
        let doc = instance(&s.codes[0], &format!("m{i}"), "PENDING", T0, vec![], vec![]);
        s.created(&doc).await;
    }
    let doc = instance(&s.codes[0], "m5", "PENDING", T0, vec![], vec![]);
    let reply = s.create(&doc).await;
    assert_eq!(
        (reply.http, &reply.json["code"]),
        (429, &json!(99991400)),
        "{}",
        reply.text
    );
    assert_eq!(
        s.tenant.external_instances().len(),
        5,
        "the sixth changed nothing"
    );
    // Each API has its own minute: the check still answers.
    let reply = s
        .check(json!({"instances": [{"instance_id": "m0", "update_time": T0.to_string(), "tasks": []}]}))
        .await;
    assert_eq!(reply.json["code"], 0, "{:?}", reply.json);
}
