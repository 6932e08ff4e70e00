//! Errors of the platform boundary, classified by what the caller can do about them.

use std::error::Error;
use std::sync::Arc;

use crate::codes::{self, is_token_error};
use crate::endpoints;

/// What caused a transport failure or a malformed body: shared, so that the error stays `Clone`
/// (a failed query is reported in the summary, the manifest and the log).
pub type Cause = Arc<dyn Error + Send + Sync>;

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
    #[error("{endpoint}: no answer from {base_url}: {kind}")]
    Transport {
        endpoint: &'static str,
        base_url: String,
        /// `timed out`, `connection failed` or `request failed`.
        kind: &'static str,
        #[source]
        cause: Cause,
    },
    /// An answer that is not the documented JSON envelope.
    #[error(
        "{endpoint} sent a malformed body (HTTP {http_status}){}",
        first_bytes.as_ref().map(|b| format!(", first bytes {b:?}")).unwrap_or_default()
    )]
    MalformedBody {
        endpoint: &'static str,
        http_status: u16,
        /// The start of the body, when it is worth showing (never of the token endpoint).
        first_bytes: Option<String>,
        #[source]
        cause: Cause,
    },
    /// Still over the rate limit after waiting out the platform's reset this many times.
    #[error("{endpoint} stayed rate limited (code 99991400) through {waits} waits")]
    RateLimited { endpoint: &'static str, waits: u32 },
}

/// A what-to-do sentence for codes whose cause is on the operator's side.
fn hint(code: i64) -> &'static str {
    match code {
        codes::UNKNOWN_APP | codes::BAD_SECRET => " — check FEISHU_APP_ID and FEISHU_APP_SECRET",
        c if is_token_error(c) => " — the access token was refused even after renewing it",
        codes::TENANT_MISSING => {
            " — the token does not belong to a tenant: check the app's credentials"
        }
        codes::UNKNOWN_USER => {
            " — a user id of this batch does not exist or is outside the app's data scope"
        }
        codes::NO_PERMISSION => {
            " — grant the app attendance:task:readonly and widen its data scope in the attendance admin"
        }
        codes::EXTERNAL_PARAM_INVALID => {
            " — the platform refused the instance's fields: correct them in the source document (the msg names them) and send it again"
        }
        codes::EXTERNAL_TENANT_MISSING => {
            " — the token does not belong to a tenant: check the app's credentials"
        }
        _ => "",
    }
}

impl PlatformError {
    /// A call that got no answer, for `cause`.
    pub fn transport(
        endpoint: &'static str,
        base_url: impl Into<String>,
        kind: &'static str,
        cause: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> PlatformError {
        PlatformError::Transport {
            endpoint,
            base_url: base_url.into(),
            kind,
            cause: Arc::from(cause.into()),
        }
    }

    /// An answer whose body is not what `endpoint` documents, for `cause`.
    pub fn malformed(
        endpoint: &'static str,
        http_status: u16,
        cause: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> PlatformError {
        PlatformError::MalformedBody {
            endpoint,
            http_status,
            first_bytes: None,
            cause: Arc::from(cause.into()),
        }
    }

    /// Errors that will recur on every other request of the run, so continuing is pointless:
    /// no token to be had, bad credentials, a refused token, a malformed request, a tenant problem.
    /// A third-party instance refused for its fields (1390001) is not: it concerns that one
    /// instance, and the others go on.
    pub fn is_fatal(&self) -> bool {
        if self.endpoint() == endpoints::TOKEN {
            // Without a token nothing else can succeed; its own retries are already spent.
            return true;
        }
        match self {
            PlatformError::Api { code, .. } => {
                matches!(
                    *code,
                    codes::UNKNOWN_APP
                        | codes::BAD_SECRET
                        | codes::PARAM_INVALID
                        | codes::TENANT_MISSING
                        | codes::EXTERNAL_TENANT_MISSING
                        | codes::GENERAL_ERROR
                ) || is_token_error(*code)
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
                code: codes::UNKNOWN_USER | codes::NO_PERMISSION,
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
            PlatformError::RateLimited { .. } => Some(codes::RATE_LIMITED),
            _ => None,
        }
    }
}
