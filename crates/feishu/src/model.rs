//! Wire models of the Open Platform's envelope, its token endpoint, the query request, the
//! group and contact list endpoints and the third-party approval endpoints, field for field.
//!
//! Invariants:
//! - Every documented field is present and every field of an answer is optional: the platform
//!   omits fields freely, and a missing field must never fail a whole response.
//! - Unknown fields are ignored (no `deny_unknown_fields`), so platform additions never break a run.
//! - `code` is required: a body without it (a proxy's `{}`) is malformed, never "no data".
//! - The query answer's own records (`data`) are [`attendance_core::answer`]'s: the flatten stage
//!   reads them, and the client hands them on unread.

use attendance_core::external::MsTime;
use attendance_core::external::model::DiffInstance;
use serde::{Deserialize, Deserializer, Serialize};

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

// ---------------------------------------------------------------------------------------------
// Third-party ("external") approvals.
// ---------------------------------------------------------------------------------------------

/// The filters of `GET approval/v4/external_tasks`, sent as the GET's JSON body. Empty lists
/// and `None` are left out of the body (no filter). The client splits more than
/// [`MAX_EXTERNAL_TASK_FILTER`] approval codes or instance ids into several requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExternalTaskFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approval_codes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    /// Approvers' user_ids: only their tasks are listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    /// A task status (`PENDING|APPROVED|REJECTED|TRANSFERRED|DONE`): only tasks in it are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Most approval codes, and most instance ids, one `external_tasks` request may filter on.
pub const MAX_EXTERNAL_TASK_FILTER: usize = 20;

/// One instance of the `external_tasks` list, with its (listed) tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalTaskGroup {
    #[serde(default, deserialize_with = "null_as_default")]
    pub instance_id: String,
    /// The platform's internal id of the definition (opaque).
    #[serde(default, deserialize_with = "null_as_default")]
    pub approval_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub approval_code: String,
    /// The instance's status.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub update_time: MsTime,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tasks: Vec<ExternalTaskState>,
}

/// One task's state in the `external_tasks` list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalTaskState {
    /// The task_id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub update_time: MsTime,
}

/// A field that may be absent (serde's `default`) or `null`: both read as the default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `data` of `POST approval/v4/external_instances`: `{"data": <the instance as synced>}`. The
/// echo (an [`attendance_core::external::ExternalInstance`]) is kept as JSON, unread: the
/// client does not need it, and an echo shaped a little differently from the body sent must
/// not turn an accepted instance into a malformed answer (and a retry).
#[derive(Debug, Deserialize)]
pub(crate) struct CreatedInstanceData {}

/// Body of `POST approval/v4/external_instances/check`.
#[derive(Debug, Serialize)]
pub(crate) struct CheckRequest<'a> {
    pub(crate) instances: &'a [attendance_core::external::model::CheckInstance],
}

/// `data` of `POST approval/v4/external_instances/check`.
#[derive(Debug, Deserialize)]
pub(crate) struct CheckData {
    #[serde(default)]
    pub(crate) diff_instances: Option<Vec<DiffInstance>>,
}

/// `data` of `GET approval/v4/external_tasks`: `{data: [...], page_token?, has_more}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ExternalTaskPage {
    #[serde(default)]
    pub(crate) data: Option<Vec<ExternalTaskGroup>>,
    #[serde(flatten)]
    pub(crate) page: PageInfo,
}

/// `data` of `POST approval/v4/external_approvals`: the definition's code (a new,
/// server-generated one when the code sent was unknown).
#[derive(Debug, Deserialize)]
pub(crate) struct CreatedApprovalData {
    pub(crate) approval_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filters_stay_out_of_the_body() {
        let filter = ExternalTaskFilter {
            approval_codes: vec!["A".into()],
            ..ExternalTaskFilter::default()
        };
        assert_eq!(
            serde_json::to_string(&filter).unwrap(),
            r#"{"approval_codes":["A"]}"#
        );
        assert_eq!(
            serde_json::to_string(&ExternalTaskFilter::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn task_groups_read_nulls_and_missing_fields_as_defaults() {
        let group: ExternalTaskGroup = serde_json::from_str(
            r#"{"instance_id":"i1","approval_id":null,"update_time":1700000000000,"tasks":null}"#,
        )
        .unwrap();
        assert_eq!(group.instance_id, "i1");
        assert_eq!(group.update_time, MsTime(1_700_000_000_000));
        assert!(group.tasks.is_empty() && group.approval_id.is_empty());
        let page: ExternalTaskPage = serde_json::from_str(
            r#"{"data":[{"instance_id":"i1","tasks":[{"id":"t1","status":"PENDING","update_time":"5"}]}],"has_more":true,"page_token":"x"}"#,
        )
        .unwrap();
        assert_eq!(page.data.unwrap()[0].tasks[0].update_time, MsTime(5));
        assert_eq!(page.page.page_token.as_deref(), Some("x"));
    }
}
