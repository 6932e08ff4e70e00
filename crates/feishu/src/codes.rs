//! The platform's answer codes (`code` of the envelope) that the client acts on and the
//! simulated tenant sends, named once (`api-notes.md`, and the query page's error table).

/// Success.
pub const OK: i64 = 0;
/// The app id is unknown (token endpoint).
pub const UNKNOWN_APP: i64 = 10003;
/// The app secret is wrong (token endpoint).
pub const BAD_SECRET: i64 = 10014;
/// Over the rate limit (with HTTP 429, or 400 on some older APIs).
pub const RATE_LIMITED: i64 = 99991400;
/// No or a malformed `Authorization` header (seen in the wild, unconfirmed).
pub const MISSING_TOKEN: i64 = 99991661;
/// The tenant_access_token is invalid or expired.
pub const TENANT_TOKEN_INVALID: i64 = 99991663;
/// The app_access_token is invalid.
pub const APP_TOKEN_INVALID: i64 = 99991664;
/// The access token is invalid.
pub const ACCESS_TOKEN_INVALID: i64 = 99991671;
/// A request parameter failed validation (e.g. `employee_type invalid`).
pub const PARAM_INVALID: i64 = 1220001;
/// The token does not belong to a tenant (`tenant_id is empty`).
pub const TENANT_MISSING: i64 = 1220002;
/// A user id of the batch does not exist or is outside the app's data scope.
pub const UNKNOWN_USER: i64 = 1220004;
/// The app may not read this user's attendance data.
pub const NO_PERMISSION: i64 = 1220005;
/// The attendance API's general error, with details in `msg`.
pub const GENERAL_ERROR: i64 = 1220600;
/// An internal error of the attendance service (HTTP 500): retried.
pub const INTERNAL_ERROR: i64 = 1225000;
/// An internal error of the shift service (HTTP 500): retried.
pub const SHIFT_SERVICE_ERROR: i64 = 1226000;
/// Third-party approvals: a field of the instance (or definition, or filter) is refused
/// (`param is invalid`). Not retried: the same body would be refused again; it concerns that
/// one instance, not the run.
pub const EXTERNAL_PARAM_INVALID: i64 = 1390001;
/// Third-party approvals: the token does not belong to a tenant (`tenant_id not found`).
pub const EXTERNAL_TENANT_MISSING: i64 = 1390014;
/// Third-party approvals: "There have been some errors. Please try again later" — the
/// platform is busy or the same instance was synced too often: retried with backoff.
pub const EXTERNAL_TRY_LATER: i64 = 1395001;

/// Codes that mean the cached tenant_access_token must be dropped and fetched again.
pub fn is_token_error(code: i64) -> bool {
    matches!(
        code,
        TENANT_TOKEN_INVALID | APP_TOKEN_INVALID | ACCESS_TOKEN_INVALID | MISSING_TOKEN
    )
}

/// Codes worth retrying: the platform's own internal errors, and the third-party approval
/// APIs' "try again later".
pub fn is_retryable(code: i64) -> bool {
    matches!(
        code,
        INTERNAL_ERROR | SHIFT_SERVICE_ERROR | EXTERNAL_TRY_LATER
    )
}
