//! End-to-end tests of the group and contact list endpoints over loopback HTTP: pagination to
//! the end, agreement with the tenant's own truth, parameter errors, auth and rate limits.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::tests::{Reply, assert_error, config, get, token};
use super::{SimConfig, SimTenant};

fn ok_data(reply: &Reply) -> &Value {
    assert_eq!(
        (reply.http, &reply.json["code"]),
        (200, &Value::from(0)),
        "{}",
        reply.text
    );
    &reply.json["data"]
}

/// Follows page tokens from the first page to the last; returns every page's data.
async fn walk(
    client: &reqwest::Client,
    tenant: &SimTenant,
    token: &str,
    path_and_query: &str,
) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let separator = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{path_and_query}{separator}page_token={page_token}");
        let reply = get(client, tenant, Some(token), &url).await;
        let data = ok_data(&reply).clone();
        let has_more = data["has_more"].as_bool().unwrap();
        page_token = data["page_token"].as_str().unwrap().to_owned();
        assert_eq!(has_more, !page_token.is_empty(), "{}", reply.text);
        pages.push(data);
        if !has_more {
            return pages;
        }
        assert!(page_token.len() == 16 && page_token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(pages.len() < 1_000, "pagination does not end");
    }
}

fn strings(pages: &[Value], list: &str, field: &str) -> Vec<String> {
    pages
        .iter()
        .flat_map(|page| page[list].as_array().unwrap().iter())
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn groups_and_their_members_paginate_to_the_truth() {
    let tenant = SimTenant::start(SimConfig {
        users: 400,
        groups: 7,
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;

    let pages = walk(
        &client,
        &tenant,
        &token,
        "/open-apis/attendance/v1/groups?page_size=3",
    )
    .await;
    assert_eq!(pages.len(), 3);
    let group_ids = strings(&pages, "group_list", "group_id");
    let names = strings(&pages, "group_list", "group_name");
    assert_eq!(group_ids.len(), 7);
    assert_eq!(names[..2], ["考勤组 1", "Group 2 🌏"]);
    assert!(group_ids.iter().all(|id| id.len() == 19));
    // The default page size is 10: one page.
    let reply = get(
        &client,
        &tenant,
        Some(&token),
        "/open-apis/attendance/v1/groups",
    )
    .await;
    assert_eq!(ok_data(&reply)["group_list"].as_array().unwrap().len(), 7);

    let mut union = BTreeSet::new();
    let mut membership: HashMap<String, Vec<String>> = HashMap::new();
    for group_id in &group_ids {
        let path = format!(
            "/open-apis/attendance/v1/groups/{group_id}/list_user?employee_type=employee_id&dept_type=open_id&member_clock_type=0&page_size=20"
        );
        let pages = walk(&client, &tenant, &token, &path).await;
        assert!(pages.len() > 1, "{group_id} fits one page of 20");
        for user in pages
            .iter()
            .flat_map(|page| page["users"].as_array().unwrap())
        {
            let departments = user["department_ids"].as_array().unwrap();
            assert_eq!(departments.len(), 1);
            assert!(departments[0].as_str().unwrap().starts_with("od-"));
            let user_id = user["user_id"].as_str().unwrap().to_owned();
            membership
                .entry(user_id.clone())
                .or_default()
                .push(group_id.clone());
            union.insert(user_id);
        }
    }
    let truth = tenant.group_members("employee_id").unwrap();
    assert_eq!(union, truth);
    let everyone = tenant.user_ids("employee_id").unwrap();
    assert!(truth.len() < everyone.len(), "some users are in no group");
    for (user_id, groups) in &membership {
        assert_eq!(&tenant.groups_of(user_id), groups);
    }
    assert!(membership.values().any(|groups| groups.len() == 2));
    assert_eq!(tenant.groups_of("fx_kolkata"), [group_ids[0].clone()]);
    assert!(tenant.groups_of("nobody").is_empty());

    // Another id type lists the same users.
    let path = format!(
        "/open-apis/attendance/v1/groups/{}/list_user?employee_type=open_id&page_size=200",
        group_ids[1]
    );
    let open_ids = strings(
        &walk(&client, &tenant, &token, &path).await,
        "users",
        "user_id",
    );
    assert!(open_ids.iter().all(|id| id.starts_with("ou_")));
    let all_open_ids = tenant.group_members("open_id").unwrap();
    assert!(open_ids.iter().all(|id| all_open_ids.contains(id)));

    let stats = tenant.stats();
    assert_eq!(stats.group_list_calls, 4);
    assert!(stats.list_user_calls > 7);
    tenant.shutdown().await;
}

#[tokio::test]
async fn list_parameters_are_checked() {
    let tenant = SimTenant::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let group_id = tenant.groups_of("fx_shanghai")[0].clone();
    let list_user =
        format!("/open-apis/attendance/v1/groups/{group_id}/list_user?employee_type=employee_id");
    let rejected = [
        "/open-apis/attendance/v1/groups?page_size=51".to_owned(),
        "/open-apis/attendance/v1/groups?page_size=0".to_owned(),
        "/open-apis/attendance/v1/groups?page_token=0123456789abcdef".to_owned(),
        format!("{list_user}&page_size=201"),
        format!("{list_user}&page_token=bogus"),
        format!("/open-apis/attendance/v1/groups/{group_id}/list_user?employee_type=union_id"),
        format!("/open-apis/attendance/v1/groups/{group_id}/list_user"),
        "/open-apis/contact/v3/departments/0/children?page_size=51".to_owned(),
        "/open-apis/contact/v3/departments/0/children?fetch_child=yes".to_owned(),
        "/open-apis/contact/v3/departments/od-nope/children".to_owned(),
        "/open-apis/contact/v3/users/find_by_department?page_size=10".to_owned(),
        "/open-apis/contact/v3/users/find_by_department?department_id=0&page_size=51".to_owned(),
        "/open-apis/contact/v3/users/find_by_department?department_id=0&user_id_type=x".to_owned(),
    ];
    for path in &rejected {
        let reply = get(&client, &tenant, Some(&token), path).await;
        assert_error(&reply, 400, 1220001);
    }
    let reply = get(
        &client,
        &tenant,
        Some(&token),
        "/open-apis/attendance/v1/groups/6900000000000000000/list_user?employee_type=employee_id",
    )
    .await;
    assert_error(&reply, 400, 1220001);
    assert_eq!(reply.json["msg"], "group not found");
    let reply = get(
        &client,
        &tenant,
        Some(&token),
        &format!("{list_user}&page_size=200"),
    )
    .await;
    assert_eq!(ok_data(&reply)["has_more"], false);
    // A page token belongs to its listing.
    let reply = get(
        &client,
        &tenant,
        Some(&token),
        &format!("{list_user}&page_size=1"),
    )
    .await;
    let page_token = ok_data(&reply)["page_token"].as_str().unwrap().to_owned();
    let reply = get(
        &client,
        &tenant,
        Some(&token),
        &format!("/open-apis/attendance/v1/groups?page_token={page_token}"),
    )
    .await;
    assert_error(&reply, 400, 1220001);

    for path in [
        "/open-apis/attendance/v1/groups",
        "/open-apis/contact/v3/departments/0/children",
        "/open-apis/contact/v3/users/find_by_department?department_id=0",
    ] {
        assert_error(&get(&client, &tenant, None, path).await, 400, 99991661);
        let reply = get(
            &client,
            &tenant,
            Some("t-0123456789abcdef0123456789abcdef"),
            path,
        )
        .await;
        assert_error(&reply, 400, 99991663);
    }
    let stats = tenant.stats();
    assert_eq!(stats.errors_by_code[&1220001], rejected.len() as u64 + 2);
    assert_eq!(stats.department_calls, 3 + 2);
    assert_eq!(stats.find_by_department_calls, 3 + 2);
    tenant.shutdown().await;
}

#[tokio::test]
async fn the_contact_tree_holds_every_user_once() {
    let tenant = SimTenant::start(SimConfig {
        users: 300,
        departments: 8,
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;

    let children = "/open-apis/contact/v3/departments/0/children?department_id_type=open_department_id&page_size=3";
    let top = walk(&client, &tenant, &token, children).await;
    let top_ids = strings(&top, "items", "open_department_id");
    assert!(!top_ids.is_empty() && top_ids.len() < 8);
    assert!(
        strings(&top, "items", "parent_department_id")
            .iter()
            .all(|parent| parent == "0")
    );

    let all = walk(
        &client,
        &tenant,
        &token,
        &format!("{children}&fetch_child=true"),
    )
    .await;
    assert_eq!(all.len(), 3, "8 departments in pages of 3");
    let all_ids = strings(&all, "items", "open_department_id");
    assert_eq!(all_ids.len(), 8);
    let parents = strings(&all, "items", "parent_department_id");
    // Depth first: every parent is listed before its children.
    for (index, parent) in parents.iter().enumerate() {
        assert!(
            parent == "0" || all_ids[..index].contains(parent),
            "{parent}"
        );
    }
    let depth = |id: &str| {
        let mut index = all_ids.iter().position(|other| other == id);
        let mut depth = 0;
        while let Some(at) = index {
            depth += 1;
            index = all_ids.iter().position(|other| *other == parents[at]);
        }
        depth
    };
    assert!(all_ids.iter().any(|id| depth(id) == 3));
    assert!(all_ids.iter().all(|id| depth(id) <= 3));
    for item in all
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap())
    {
        assert!(
            item["department_id"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert!(!item["name"].as_str().unwrap().is_empty());
    }

    // A subtree, named by its numeric id: direct children only, then all descendants.
    let nested = all_ids
        .iter()
        .find(|id| parents.contains(id))
        .expect("some department has children");
    let numeric = |id: &str| {
        all.iter()
            .flat_map(|page| page["items"].as_array().unwrap())
            .find(|item| item["open_department_id"] == id)
            .unwrap()["department_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let path = format!(
        "/open-apis/contact/v3/departments/{}/children?department_id_type=department_id",
        numeric(nested)
    );
    let direct = strings(
        &walk(&client, &tenant, &token, &path).await,
        "items",
        "open_department_id",
    );
    let expected: Vec<&String> = all_ids
        .iter()
        .zip(&parents)
        .filter(|(_, parent)| *parent == nested)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(direct.iter().collect::<Vec<_>>(), expected);
    let below = walk(
        &client,
        &tenant,
        &token,
        &format!("{path}&fetch_child=true"),
    )
    .await;
    let below_parents = strings(&below, "items", "parent_department_id");
    assert!(
        below_parents.contains(&numeric(nested)),
        "parents follow department_id_type"
    );

    // Every department's direct members, paginated: each user exactly once.
    let mut members: Vec<String> = Vec::new();
    let mut pages_walked = 0;
    for department in std::iter::once("0").chain(all_ids.iter().map(String::as_str)) {
        let path = format!(
            "/open-apis/contact/v3/users/find_by_department?department_id={department}&department_id_type=open_department_id&user_id_type=user_id&page_size=17"
        );
        let pages = walk(&client, &tenant, &token, &path).await;
        pages_walked += pages.len();
        for item in pages
            .iter()
            .flat_map(|page| page["items"].as_array().unwrap())
        {
            assert_eq!(item["department_ids"], serde_json::json!([department]));
            // Fixture users use their name as every id.
            let open_id = item["open_id"].as_str().unwrap();
            assert!(open_id.starts_with("ou_") || open_id.starts_with("fx_"));
            assert!(
                item["employee_no"]
                    .as_str()
                    .unwrap()
                    .starts_with(['E', 'f'])
            );
            assert!(!item["name"].as_str().unwrap().is_empty());
            members.push(item["user_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(pages_walked > 9, "some departments need several pages");
    let unique: BTreeSet<String> = members.iter().cloned().collect();
    assert_eq!(unique.len(), members.len(), "one department per user");
    assert_eq!(
        Some(unique.clone()),
        tenant.department_members("employee_id")
    );
    let everyone: BTreeSet<String> = tenant
        .user_ids("employee_id")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(unique, everyone);
    assert!(everyone.contains("fx_badzone"));
    tenant.shutdown().await;
}

#[tokio::test]
async fn list_endpoints_have_their_own_rate_limit() {
    let tenant = SimTenant::start(SimConfig {
        rate_limit_per_sec: 3,
        ..config()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &tenant).await;
    let mut limited = 0;
    for _ in 0..10 {
        let reply = get(
            &client,
            &tenant,
            Some(&token),
            "/open-apis/attendance/v1/groups",
        )
        .await;
        if reply.http == 429 {
            assert_eq!(reply.json["code"], 99991400);
            assert_eq!(reply.headers["x-ogw-ratelimit-limit"], "3");
            limited += 1;
        }
    }
    assert!(limited > 0);
    // The other endpoints' windows are untouched.
    let reply = get(
        &client,
        &tenant,
        Some(&token),
        "/open-apis/contact/v3/departments/0/children",
    )
    .await;
    ok_data(&reply);
    let stats = tenant.stats();
    assert_eq!(stats.errors_by_code[&99991400], limited);
    assert_eq!(
        stats.rate_limited, 0,
        "rate_limited counts query requests only"
    );
    tenant.shutdown().await;
}
