//! Wire models of `user_approvals/query` and `tenant_access_token/internal`, field for field.
//!
//! Invariants:
//! - Every documented field is present and every field is optional: the platform omits fields
//!   freely, and a missing field must never fail a whole response.
//! - Unknown fields are ignored (no `deny_unknown_fields`), so platform additions never break a run.
//! - `user_approvals` and the four record lists of a [`UserApproval`] stay as raw JSON
//!   ([`RawRecord`]) until the flatten stage parses them one by one. A record with a field of the
//!   wrong type is then rejected alone, with its bytes exactly as sent, instead of failing the 49
//!   other users of its batch.
//! - `code` is required: a body without it (a proxy's `{}`) is malformed, never "no data".

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One list element exactly as the platform sent it.
pub type RawRecord = Box<RawValue>;

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

/// `data` of a query answer.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct QueryData {
    /// [`UserApproval`]s, parsed one by one when flattened.
    #[serde(default)]
    pub user_approvals: Option<Vec<RawRecord>>,
}

/// One user on one date, with the four kinds of approvals that apply to it.
#[derive(Debug, Default, Deserialize)]
pub struct UserApproval {
    pub user_id: Option<String>,
    /// `yyyyMMdd`.
    pub date: Option<String>,
    pub outs: Option<Vec<RawRecord>>,
    pub leaves: Option<Vec<RawRecord>>,
    pub overtime_works: Option<Vec<RawRecord>>,
    pub trips: Option<Vec<RawRecord>>,
    /// IANA zone the local times are in; empty or absent means UTC (per the doc).
    pub time_zone: Option<String>,
}

/// `i18n_names` of an out or leave type.
#[derive(Debug, Default, Deserialize)]
pub struct I18nNames {
    pub ch: Option<String>,
    pub en: Option<String>,
    pub ja: Option<String>,
}

/// `user_out`: an out (外出) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserOut {
    pub approval_id: Option<String>,
    pub uniq_id: Option<String>,
    pub unit: Option<i32>,
    pub interval: Option<i64>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub i18n_names: Option<I18nNames>,
    pub default_locale: Option<String>,
    pub reason: Option<String>,
    pub approve_pass_time: Option<String>,
    pub approve_apply_time: Option<String>,
    pub idempotent_id: Option<String>,
    pub correct_process_id: Option<Vec<String>>,
    pub cancel_process_id: Option<Vec<String>>,
    pub process_id: Option<Vec<String>>,
}

/// `user_leave`: a leave (请假) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserLeave {
    pub approval_id: Option<String>,
    pub uniq_id: Option<String>,
    pub unit: Option<i32>,
    pub interval: Option<i64>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub i18n_names: Option<I18nNames>,
    pub default_locale: Option<String>,
    pub reason: Option<String>,
    pub approve_pass_time: Option<String>,
    pub approve_apply_time: Option<String>,
    pub idempotent_id: Option<String>,
}

/// `user_overtime_work`: an overtime (加班) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserOvertimeWork {
    pub approval_id: Option<String>,
    pub duration: Option<f64>,
    pub unit: Option<i32>,
    pub category: Option<i32>,
    #[serde(rename = "type")]
    pub type_: Option<i32>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub reason: Option<String>,
    pub idempotent_id: Option<String>,
    pub correct_process_id: Option<Vec<String>>,
    pub cancel_process_id: Option<Vec<String>>,
    pub process_id: Option<Vec<String>>,
}

/// `region_place`: a trip's departure or destination.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RegionPlace {
    pub region_level: Option<String>,
    pub region_id: Option<String>,
}

/// `user_trip`: a business trip (出差) approval.
#[derive(Debug, Default, Deserialize)]
pub struct UserTrip {
    pub approval_id: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub reason: Option<String>,
    pub approve_pass_time: Option<String>,
    pub approve_apply_time: Option<String>,
    pub idempotent_id: Option<String>,
    pub correct_process_id: Option<Vec<String>>,
    pub cancel_process_id: Option<Vec<String>>,
    pub process_id: Option<Vec<String>>,
    pub departure: Option<RegionPlace>,
    pub destinations: Option<Vec<RegionPlace>>,
    pub transportation: Option<Vec<i32>>,
    pub trip_type: Option<i32>,
    pub remarks: Option<String>,
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
