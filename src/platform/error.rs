//! Errors of the platform boundary, classified by what the caller can do about them.

/// Path of the query endpoint, for messages.
pub const QUERY_ENDPOINT: &str = "attendance/v1/user_approvals/query";
/// Path of the attendance group list, for messages.
pub const GROUPS_ENDPOINT: &str = "attendance/v1/groups";
/// Path of an attendance group's members, for messages.
pub const GROUP_USERS_ENDPOINT: &str = "attendance/v1/groups/:group_id/list_user";
/// Path of the contact department tree, for messages.
pub const DEPARTMENTS_ENDPOINT: &str = "contact/v3/departments/:department_id/children";
/// Path of a department's members, for messages.
pub const DEPARTMENT_USERS_ENDPOINT: &str = "contact/v3/users/find_by_department";
/// Path of the token endpoint, for messages.
pub const TOKEN_ENDPOINT: &str = "auth/v3/tenant_access_token/internal";

/// A call to the platform that did not produce data. Never holds a token or the app secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlatformError {
    /// The platform answered with `code != 0` (on any HTTP status).
    #[error("{endpoint} answered code {code} (HTTP {http_status}): {msg}{}", hint(*code))]
    Api {
        endpoint: &'static str,
        http_status: u16,
        code: i64,
        msg: String,
    },
    /// No usable answer: connection refused or reset, timeout, TLS failure.
    #[error("{endpoint}: no answer from {base_url}: {detail}")]
    Transport {
        endpoint: &'static str,
        base_url: String,
        detail: String,
    },
    /// An answer that is not the documented JSON envelope.
    #[error("{endpoint} sent a malformed body (HTTP {http_status}): {detail}")]
    MalformedBody {
        endpoint: &'static str,
        http_status: u16,
        detail: String,
    },
    /// Still over the rate limit after waiting out the platform's reset this many times.
    #[error("{endpoint} stayed rate limited (code 99991400) through {waits} waits")]
    RateLimited { endpoint: &'static str, waits: u32 },
}

/// A what-to-do sentence for codes whose cause is on the operator's side.
fn hint(code: i64) -> &'static str {
    match code {
        10003 | 10014 => " — check FEISHU_APP_ID and FEISHU_APP_SECRET",
        99991663 | 99991664 | 99991671 | 99991661 => {
            " — the access token was refused even after renewing it"
        }
        1220002 => " — the token does not belong to a tenant: check the app's credentials",
        1220004 => " — a user id of this batch does not exist or is outside the app's data scope",
        1220005 => {
            " — grant the app attendance:task:readonly and widen its data scope in the attendance admin"
        }
        _ => "",
    }
}

/// Codes that mean the cached tenant_access_token must be dropped and fetched again.
pub fn is_token_error(code: i64) -> bool {
    matches!(code, 99991663 | 99991664 | 99991671 | 99991661)
}

/// Codes worth retrying: the platform's own internal errors.
pub fn is_retryable_code(code: i64) -> bool {
    matches!(code, 1225000 | 1226000)
}

impl PlatformError {
    /// Errors that will recur on every other request of the run, so continuing is pointless:
    /// no token to be had, bad credentials, a refused token, a malformed request, a tenant problem.
    pub fn is_fatal(&self) -> bool {
        if self.endpoint() == TOKEN_ENDPOINT {
            // Without a token nothing else can succeed; its own retries are already spent.
            return true;
        }
        match self {
            PlatformError::Api { code, .. } => {
                matches!(code, 10003 | 10014 | 1220001 | 1220002 | 1220600)
                    || is_token_error(*code)
                    || (*code >= 10000 && *code < 20000)
            }
            _ => false,
        }
    }

    /// Errors caused by one or more user ids of the batch (unknown, departed, or outside the
    /// app's data scope): the batch is split to find them, the other users go through.
    pub fn is_per_user(&self) -> bool {
        matches!(
            self,
            PlatformError::Api {
                code: 1220004 | 1220005,
                ..
            }
        )
    }

    /// The endpoint the error came from.
    pub fn endpoint(&self) -> &'static str {
        match self {
            PlatformError::Api { endpoint, .. }
            | PlatformError::Transport { endpoint, .. }
            | PlatformError::MalformedBody { endpoint, .. }
            | PlatformError::RateLimited { endpoint, .. } => endpoint,
        }
    }

    /// The platform's code, when it gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            PlatformError::Api { code, .. } => Some(*code),
            PlatformError::RateLimited { .. } => Some(99991400),
            _ => None,
        }
    }
}
