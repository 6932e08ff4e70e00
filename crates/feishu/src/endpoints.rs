//! The paths of the endpoints the job calls, under [`PREFIX`] of the host. `:name` segments are
//! path parameters; [`route`] writes them the way an axum router wants them.

/// Every endpoint's path starts with this.
pub const PREFIX: &str = "/open-apis/";
/// `POST`: a tenant_access_token for the app's credentials.
pub const TOKEN: &str = "auth/v3/tenant_access_token/internal";
/// `POST`: the approvals of a batch of users over a window.
pub const QUERY: &str = "attendance/v1/user_approvals/query";
/// `GET`: the attendance groups.
pub const GROUPS: &str = "attendance/v1/groups";
/// `GET`: an attendance group's members.
pub const GROUP_USERS: &str = "attendance/v1/groups/:group_id/list_user";
/// `GET`: the departments under a department of the contact tree.
pub const DEPARTMENTS: &str = "contact/v3/departments/:department_id/children";
/// `GET`: a department's direct members.
pub const DEPARTMENT_USERS: &str = "contact/v3/users/find_by_department";
/// `POST`: creates or updates a third-party approval instance (the body is the instance).
pub const EXTERNAL_INSTANCES: &str = "approval/v4/external_instances";
/// `POST`: which of a list of third-party instances the platform holds at other versions.
pub const EXTERNAL_INSTANCES_CHECK: &str = "approval/v4/external_instances/check";
/// `GET` (filters in a JSON body): the status of third-party instances and their tasks.
pub const EXTERNAL_TASKS: &str = "approval/v4/external_tasks";
/// `POST`: creates or updates a third-party approval definition.
pub const EXTERNAL_APPROVALS: &str = "approval/v4/external_approvals";
/// `GET`: one third-party approval definition.
pub const EXTERNAL_APPROVAL: &str = "approval/v4/external_approvals/:approval_code";

/// The full path of `endpoint` as an axum route: `/open-apis/…` with `{name}` parameters.
pub fn route(endpoint: &str) -> String {
    let segments: Vec<String> = endpoint
        .split('/')
        .map(|s| match s.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => s.to_string(),
        })
        .collect();
    format!("{PREFIX}{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_parameters_in_braces() {
        assert_eq!(
            route(GROUP_USERS),
            "/open-apis/attendance/v1/groups/{group_id}/list_user"
        );
        assert_eq!(
            route(QUERY),
            "/open-apis/attendance/v1/user_approvals/query"
        );
        assert_eq!(
            route(EXTERNAL_APPROVAL),
            "/open-apis/approval/v4/external_approvals/{approval_code}"
        );
    }
}
