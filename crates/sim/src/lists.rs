//! The four paginated GET endpoints a job uses to enumerate users: attendance groups and
//! their members, the contact department tree and each department's direct members.
//!
//! Invariants:
//! - Each endpoint passes the shared gate (its own rate-limit window, auth, faults) before its
//!   own parameter checks, and every request is counted in its `*_calls` stat, whatever the
//!   answer. Parameter errors are HTTP 400 code 1220001.
//! - Listings are fixed at start, so a page is a slice `offset..offset + page_size` of a
//!   stable list. A page token encodes the next offset under a check keyed by the seed and the
//!   listing (endpoint, group or department, fetch_child): it is opaque, the same for the same
//!   seed and listing, and a token from nowhere (or from another listing) is rejected.
//! - The last page answers `"page_token":""` and `"has_more":false`; an empty listing is one
//!   empty last page.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;

use attendance_feishu::codes;

use super::SimStats;
use super::data::{IdType, hash_of};
use super::directory::{DepartmentIdType, DepartmentNode};
use super::faults::Api;
use super::server::{Outcome, Rejection, TenantState, deliver, gate, lock, record_outcome};

const TAG_PAGE_TOKEN: u64 = 0x48;

const GROUPS_PAGE_SIZE: PageSizes = PageSizes {
    default: 10,
    max: 50,
};
const LIST_USER_PAGE_SIZE: PageSizes = PageSizes {
    default: 50,
    max: 200,
};
const CHILDREN_PAGE_SIZE: PageSizes = PageSizes {
    default: 10,
    max: 50,
};
const FIND_BY_DEPARTMENT_PAGE_SIZE: PageSizes = PageSizes {
    default: 10,
    max: 50,
};

type Params = HashMap<String, String>;

fn params(query: Result<Query<Params>, QueryRejection>) -> Params {
    // An unparsable query string is treated as empty: every parameter then fails its own
    // check (or takes its default), as on the platform.
    query.map(|Query(params)| params).unwrap_or_default()
}

/// Counts the call and its outcome, then sends (or drops) the answer.
pub(crate) async fn finish(
    state: &TenantState,
    outcome: Outcome<()>,
    count_call: impl FnOnce(&mut SimStats),
) -> Response {
    {
        let mut stats = lock(&state.stats);
        count_call(&mut stats);
        record_outcome(&mut stats, outcome.code, &outcome.plan);
    }
    deliver(outcome.response, outcome.plan).await
}

/// The `{"code":0,"msg":"success","data":...}` envelope.
#[derive(Serialize)]
struct Success<Data> {
    code: i64,
    msg: &'static str,
    data: Data,
}

pub(crate) fn success_body(data: impl Serialize) -> Result<(String, ()), Rejection> {
    let body = serde_json::to_string(&Success {
        code: 0,
        msg: "success",
        data,
    })
    .expect("structs of strings, numbers, bools and lists always serialize");
    Ok((body, ()))
}

// ---------------------------------------------------------------------------------------------
// Pagination.
// ---------------------------------------------------------------------------------------------

struct PageSizes {
    default: usize,
    max: usize,
}

/// Which list a page token belongs to.
#[derive(Clone, Copy)]
struct Listing {
    api: Api,
    /// The group or department node (0 when the endpoint has a single list).
    node: u64,
    fetch_child: bool,
}

impl Listing {
    fn key(self) -> u64 {
        hash_of(&[
            TAG_PAGE_TOKEN,
            self.api.index() as u64,
            self.node,
            u64::from(self.fetch_child),
        ])
    }
}

fn node_key(node: DepartmentNode) -> u64 {
    match node {
        DepartmentNode::Root => 0,
        DepartmentNode::Department(index) => index as u64 + 1,
    }
}

/// 16 lowercase hex digits: (offset << 32 | check(offset)) masked by a listing-keyed pad.
fn encode_page_token(seed: u64, listing: Listing, offset: usize) -> String {
    let pad = hash_of(&[seed, listing.key()]);
    let check = hash_of(&[seed, listing.key(), offset as u64]) & 0xffff_ffff;
    format!("{:016x}", ((offset as u64) << 32 | check) ^ pad)
}

fn decode_page_token(seed: u64, listing: Listing, token: &str) -> Option<usize> {
    if token.len() != 16
        || !token
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let value = u64::from_str_radix(token, 16).ok()? ^ hash_of(&[seed, listing.key()]);
    let offset = value >> 32;
    let check = hash_of(&[seed, listing.key(), offset]) & 0xffff_ffff;
    (value & 0xffff_ffff == check).then_some(offset as usize)
}

/// One page of a list of `len` items.
struct Page {
    range: Range<usize>,
    /// The next page's token, "" on the last page.
    page_token: String,
    has_more: bool,
}

/// Reads `page_size` and `page_token` and picks the page of a `len`-item listing.
fn page(
    state: &TenantState,
    params: &Params,
    sizes: &PageSizes,
    listing: Listing,
    len: usize,
) -> Result<Page, Rejection> {
    let size = page_size(params, sizes)?;
    let offset = match params.get("page_token").map(String::as_str) {
        None | Some("") => 0,
        Some(token) => decode_page_token(state.config.seed, listing, token)
            .filter(|&offset| offset > 0 && offset < len)
            .ok_or_else(|| Rejection::param("page_token is invalid"))?,
    };
    let end = len.min(offset + size);
    let has_more = end < len;
    Ok(Page {
        range: offset..end,
        page_token: if has_more {
            encode_page_token(state.config.seed, listing, end)
        } else {
            String::new()
        },
        has_more,
    })
}

/// Checked before the listing is known (the platform validates the request shape first).
fn page_size(params: &Params, sizes: &PageSizes) -> Result<usize, Rejection> {
    match params.get("page_size").map(String::as_str) {
        None | Some("") => Ok(sizes.default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=sizes.max).contains(size))
            .ok_or_else(|| {
                Rejection::param(format!("page_size must be an int in 1..={}", sizes.max))
            }),
    }
}

fn department_id_type(params: &Params) -> Result<DepartmentIdType, Rejection> {
    match params.get("department_id_type").map(String::as_str) {
        None | Some("") => Ok(DepartmentIdType::OpenDepartmentId),
        Some(name) => DepartmentIdType::parse(name).ok_or_else(|| {
            Rejection::param("department_id_type must be department_id or open_department_id")
        }),
    }
}

fn department_not_found() -> Rejection {
    Rejection::bad_request(codes::PARAM_INVALID, "department not found")
}

// ---------------------------------------------------------------------------------------------
// GET attendance/v1/groups
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct GroupPage<'a> {
    group_list: Vec<GroupItem<'a>>,
    page_token: String,
    has_more: bool,
}

#[derive(Serialize)]
struct GroupItem<'a> {
    group_id: &'a str,
    group_name: &'a str,
}

pub(crate) async fn group_list_handler(
    State(state): State<Arc<TenantState>>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = params(query);
    let outcome = gate(&state, Api::GroupList, &headers, || {
        answer_group_list(&state, &params)
    });
    finish(&state, outcome, |stats| stats.group_list_calls += 1).await
}

fn answer_group_list(state: &TenantState, params: &Params) -> Result<(String, ()), Rejection> {
    let groups = state.directory.groups();
    let listing = Listing {
        api: Api::GroupList,
        node: 0,
        fetch_child: false,
    };
    let page = page(state, params, &GROUPS_PAGE_SIZE, listing, groups.len())?;
    success_body(GroupPage {
        group_list: groups[page.range]
            .iter()
            .map(|group| GroupItem {
                group_id: &group.id,
                group_name: &group.name,
            })
            .collect(),
        page_token: page.page_token,
        has_more: page.has_more,
    })
}

// ---------------------------------------------------------------------------------------------
// GET attendance/v1/groups/:group_id/list_user
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct GroupUserPage<'a> {
    users: Vec<GroupUser<'a>>,
    page_token: String,
    has_more: bool,
}

#[derive(Serialize)]
struct GroupUser<'a> {
    user_id: &'a str,
    department_ids: [&'a str; 1],
}

pub(crate) async fn list_user_handler(
    State(state): State<Arc<TenantState>>,
    group_id: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = params(query);
    let group_id = group_id.map(|Path(id)| id).unwrap_or_default();
    let outcome = gate(&state, Api::ListUser, &headers, || {
        answer_list_user(&state, &group_id, &params)
    });
    finish(&state, outcome, |stats| stats.list_user_calls += 1).await
}

fn answer_list_user(
    state: &TenantState,
    group_id: &str,
    params: &Params,
) -> Result<(String, ()), Rejection> {
    let id_type = params
        .get("employee_type")
        .and_then(|name| IdType::parse(name))
        .ok_or_else(|| Rejection::param("employee_type invalid"))?;
    match params.get("dept_type").map(String::as_str) {
        None | Some("" | "open_id") => {}
        Some(_) => return Err(Rejection::param("dept_type must be open_id")),
    }
    if let Some(clock_type) = params.get("member_clock_type")
        && clock_type.parse::<i32>().is_err()
    {
        return Err(Rejection::param("member_clock_type must be an int"));
    }
    page_size(params, &LIST_USER_PAGE_SIZE)?;
    let group = state
        .directory
        .group_index(group_id)
        .ok_or_else(|| Rejection::bad_request(codes::PARAM_INVALID, "group not found"))?;
    let members = &state.directory.groups()[group].members;
    let listing = Listing {
        api: Api::ListUser,
        node: group as u64,
        fetch_child: false,
    };
    let page = page(state, params, &LIST_USER_PAGE_SIZE, listing, members.len())?;
    let users = state.population.users();
    let directory = &state.directory;
    success_body(GroupUserPage {
        users: members[page.range]
            .iter()
            .map(|&user| GroupUser {
                user_id: users[user].id(id_type),
                department_ids: [directory.department_id(
                    directory.department_of(user),
                    DepartmentIdType::OpenDepartmentId,
                )],
            })
            .collect(),
        page_token: page.page_token,
        has_more: page.has_more,
    })
}

// ---------------------------------------------------------------------------------------------
// GET contact/v3/departments/:department_id/children
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ItemPage<Item> {
    items: Vec<Item>,
    page_token: String,
    has_more: bool,
}

#[derive(Serialize)]
struct DepartmentItem<'a> {
    name: &'a str,
    department_id: &'a str,
    open_department_id: &'a str,
    /// In the requested `department_id_type`; "0" for top-level departments.
    parent_department_id: &'a str,
}

pub(crate) async fn department_children_handler(
    State(state): State<Arc<TenantState>>,
    department_id: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = params(query);
    let department_id = department_id.map(|Path(id)| id).unwrap_or_default();
    let outcome = gate(&state, Api::DepartmentChildren, &headers, || {
        answer_department_children(&state, &department_id, &params)
    });
    finish(&state, outcome, |stats| stats.department_calls += 1).await
}

fn answer_department_children(
    state: &TenantState,
    department_id: &str,
    params: &Params,
) -> Result<(String, ()), Rejection> {
    let id_type = department_id_type(params)?;
    let fetch_child = match params.get("fetch_child").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(_) => return Err(Rejection::param("fetch_child must be true or false")),
    };
    page_size(params, &CHILDREN_PAGE_SIZE)?;
    let directory = &state.directory;
    let node = directory
        .resolve_department(id_type, department_id)
        .ok_or_else(department_not_found)?;
    let found = if fetch_child {
        directory.descendants(node)
    } else {
        directory.children(node).to_vec()
    };
    let listing = Listing {
        api: Api::DepartmentChildren,
        node: node_key(node),
        fetch_child,
    };
    let page = page(state, params, &CHILDREN_PAGE_SIZE, listing, found.len())?;
    success_body(ItemPage {
        items: found[page.range]
            .iter()
            .map(|&index| {
                let department = directory.department(index);
                let parent = department
                    .parent
                    .map_or(DepartmentNode::Root, DepartmentNode::Department);
                DepartmentItem {
                    name: &department.name,
                    department_id: &department.department_id,
                    open_department_id: &department.open_department_id,
                    parent_department_id: directory.department_id(parent, id_type),
                }
            })
            .collect(),
        page_token: page.page_token,
        has_more: page.has_more,
    })
}

// ---------------------------------------------------------------------------------------------
// GET contact/v3/users/find_by_department
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ContactUser<'a> {
    /// The employee_id (the contact API calls it user_id).
    user_id: &'a str,
    open_id: &'a str,
    employee_no: &'a str,
    name: String,
    /// In the requested `department_id_type`.
    department_ids: [&'a str; 1],
}

pub(crate) async fn find_by_department_handler(
    State(state): State<Arc<TenantState>>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = params(query);
    let outcome = gate(&state, Api::FindByDepartment, &headers, || {
        answer_find_by_department(&state, &params)
    });
    finish(&state, outcome, |stats| stats.find_by_department_calls += 1).await
}

fn answer_find_by_department(
    state: &TenantState,
    params: &Params,
) -> Result<(String, ()), Rejection> {
    let id_type = department_id_type(params)?;
    match params.get("user_id_type").map(String::as_str) {
        None | Some("" | "open_id" | "user_id" | "union_id") => {}
        Some(_) => {
            return Err(Rejection::param(
                "user_id_type must be open_id, user_id or union_id",
            ));
        }
    }
    page_size(params, &FIND_BY_DEPARTMENT_PAGE_SIZE)?;
    let department_id = params
        .get("department_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Rejection::param("department_id is required"))?;
    let directory = &state.directory;
    let node = directory
        .resolve_department(id_type, department_id)
        .ok_or_else(department_not_found)?;
    let members = directory.members(node);
    let listing = Listing {
        api: Api::FindByDepartment,
        node: node_key(node),
        fetch_child: false,
    };
    let page = page(
        state,
        params,
        &FIND_BY_DEPARTMENT_PAGE_SIZE,
        listing,
        members.len(),
    )?;
    let users = state.population.users();
    success_body(ItemPage {
        items: members[page.range]
            .iter()
            .map(|&user| {
                let sim_user = &users[user];
                ContactUser {
                    user_id: &sim_user.employee_id,
                    open_id: &sim_user.open_id,
                    employee_no: &sim_user.employee_no,
                    name: directory.user_name(user, &sim_user.employee_id),
                    department_ids: [directory.department_id(node, id_type)],
                }
            })
            .collect(),
        page_token: page.page_token,
        has_more: page.has_more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_only_within_their_listing() {
        let listing = Listing {
            api: Api::ListUser,
            node: 3,
            fetch_child: false,
        };
        let other = Listing { node: 4, ..listing };
        for offset in [1, 50, 199, 1_000_000] {
            let token = encode_page_token(42, listing, offset);
            assert_eq!(token.len(), 16);
            assert_eq!(token, encode_page_token(42, listing, offset), "stable");
            assert_eq!(decode_page_token(42, listing, &token), Some(offset));
            assert_eq!(decode_page_token(42, other, &token), None);
            assert_eq!(decode_page_token(43, listing, &token), None);
        }
        assert_eq!(decode_page_token(42, listing, "not-a-token"), None);
        assert_eq!(decode_page_token(42, listing, "0000000000000032"), None);
        let token = encode_page_token(42, listing, 50).to_uppercase();
        assert_eq!(decode_page_token(42, listing, &token), None);
    }
}
