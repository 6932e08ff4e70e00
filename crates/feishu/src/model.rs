//! Wire models of the Open Platform's envelope, its token endpoint, the query request and the
//! group and contact list endpoints, field for field.
//!
//! Invariants:
//! - Every documented field is present and every field of an answer is optional: the platform
//!   omits fields freely, and a missing field must never fail a whole response.
//! - Unknown fields are ignored (no `deny_unknown_fields`), so platform additions never break a run.
//! - `code` is required: a body without it (a proxy's `{}`) is malformed, never "no data".
//! - The query answer's own records (`data`) are [`attendance_core::answer`]'s: the flatten stage
//!   reads them, and the client hands them on unread.

use serde::{Deserialize, Serialize};

/// `{"code", "msg", "data"}`: the envelope of every Open Platform answer.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// Absent only in bodies that are not the platform's (a proxy's `{}`): malformed.
    pub code: Option<i64>,
    #[serde(default)]
    pub msg: String,
    pub data: Option<T>,
}

/// Body of `POST /open-apis/auth/v3/tenant_access_token/internal`.
#[derive(Serialize)]
pub struct TokenRequest<'a> {
    pub app_id: &'a str,
    pub app_secret: &'a str,
}

/// Answer of the token endpoint; unlike other endpoints its fields sit beside `code`, not in `data`.
#[derive(Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub msg: String,
    pub tenant_access_token: Option<String>,
    /// Seconds the token has left. Never assume 7200: a re-issued token has less.
    pub expire: Option<i64>,
}

/// Body of `POST /open-apis/attendance/v1/user_approvals/query`.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRequest {
    pub user_ids: Vec<String>,
    /// `yyyyMMdd` as an integer.
    pub check_date_from: u32,
    /// `yyyyMMdd` as an integer; at most 30 days after `check_date_from` and at most today + 1.
    pub check_date_to: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_date_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_time_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_time_to: Option<String>,
}

/// Fields every paginated list answer carries beside its items.
#[derive(Debug, Default, Deserialize)]
pub struct PageInfo {
    pub has_more: Option<bool>,
    pub page_token: Option<String>,
}

/// `data` of `GET attendance/v1/groups`.
#[derive(Debug, Default, Deserialize)]
pub struct GroupListData {
    pub group_list: Option<Vec<GroupSummary>>,
    #[serde(flatten)]
    pub page: PageInfo,
}

/// An attendance group (考勤组).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct GroupSummary {
    pub group_id: Option<String>,
    pub group_name: Option<String>,
}

/// `data` of `GET attendance/v1/groups/:group_id/list_user`.
#[derive(Debug, Default, Deserialize)]
pub struct GroupUsersData {
    pub users: Option<Vec<GroupUser>>,
    #[serde(flatten)]
    pub page: PageInfo,
}

/// A member of an attendance group; `user_id` is of the requested employee_type.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct GroupUser {
    pub user_id: Option<String>,
    pub department_ids: Option<Vec<String>>,
}

/// `data` of the contact list endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct ItemsData<T> {
    pub items: Option<Vec<T>>,
    #[serde(flatten)]
    pub page: PageInfo,
}

/// A department of the contact tree.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Department {
    pub name: Option<String>,
    pub department_id: Option<String>,
    pub open_department_id: Option<String>,
    pub parent_department_id: Option<String>,
}

/// A user of the contact directory.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ContactUser {
    /// The employee_id (`user_id_type=user_id`).
    pub user_id: Option<String>,
    pub open_id: Option<String>,
    pub employee_no: Option<String>,
    pub name: Option<String>,
    pub department_ids: Option<Vec<String>>,
}
