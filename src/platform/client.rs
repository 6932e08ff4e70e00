//! HTTP client of the Open Platform: token cache, rate limiter, retries, typed calls.
//!
//! Invariants:
//! - At most one token request is in flight: the cache's lock is held while fetching, so requests
//!   that find the token expired wait for that one fetch instead of each asking for their own.
//! - A token is used until `expire - margin` (margin: 3 minutes, or a quarter of a short lifetime);
//!   a token-invalid code drops it (only if it is still the cached one) and the call is retried once
//!   with a fresh one.
//! - Every query passes the client-side rate limiter before it is sent. HTTP 429 / code 99991400
//!   waits for `x-ogw-ratelimit-reset` and tries again without using up a retry.
//! - Transport errors, HTTP 5xx and codes 1225000 / 1226000 are retried with exponential backoff
//!   and jitter, a bounded number of times; parameter and permission errors are not.
//! - Neither the app secret nor a token is ever logged or put into an error.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{
    PlatformError, QUERY_ENDPOINT, TOKEN_ENDPOINT, is_retryable_code, is_token_error,
};
use super::model::{Envelope, QueryData, QueryRequest, TokenRequest, TokenResponse};
use crate::plan::EmployeeType;

/// App credentials. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub app_id: String,
    pub app_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .finish()
    }
}

/// How the client talks to the platform.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Scheme and host, e.g. `https://open.feishu.cn`; paths are appended under `/open-apis/`.
    pub base_url: String,
    pub credentials: Credentials,
    /// Requests per second the client allows itself (the platform's limit is 50).
    pub rate_limit_per_sec: u32,
    /// Deadline of one HTTP request.
    pub request_timeout: Duration,
    /// Attempts for transient failures (transport, 5xx, 1225000/1226000), first one included.
    pub max_attempts: u32,
    /// Times a rate-limited answer is waited out before the call fails.
    pub max_rate_limit_waits: u32,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            credentials,
            rate_limit_per_sec: 50,
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            max_rate_limit_waits: 30,
        }
    }
}

/// Counters of what the client did, for the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP requests sent to the query endpoint, retries included.
    pub query_requests: u64,
    /// Requests sent to the token endpoint.
    pub token_requests: u64,
    /// Answers that were over the rate limit.
    pub rate_limited: u64,
    /// Retries after transient failures and refused tokens.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    query_requests: AtomicU64,
    token_requests: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
}

struct CachedToken {
    value: Arc<str>,
    renew_at: Instant,
}

/// A client of one tenant; cheap to share behind `&` across concurrent tasks.
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    token: Mutex<Option<CachedToken>>,
    limiter: DefaultDirectRateLimiter,
    counters: Counters,
}

/// What one attempt came to.
enum Attempt<T> {
    Done(T),
    /// Over the limit: wait this long, then try again.
    RateLimited(Duration),
    /// The token was refused: drop it and try again once.
    TokenRefused(PlatformError),
    /// Worth another try after a backoff.
    Transient(PlatformError),
    Failed(PlatformError),
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, PlatformError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("attendance-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PlatformError::Transport {
                endpoint: "client",
                base_url: config.base_url.clone(),
                detail: e.to_string(),
            })?;
        let per_sec =
            NonZeroU32::new(config.rate_limit_per_sec.max(1)).expect("max(1) is non-zero");
        // A burst of one spreads requests evenly, so no wall-clock second of the platform's
        // fixed windows sees more than the limit.
        let quota = Quota::per_second(per_sec).allow_burst(NonZeroU32::MIN);
        Ok(Client {
            http,
            token: Mutex::new(None),
            limiter: RateLimiter::direct(quota),
            counters: Counters::default(),
            config,
        })
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        ClientStats {
            query_requests: c.query_requests.load(Ordering::Relaxed),
            token_requests: c.token_requests.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/open-apis/{path}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .with_max_times(self.config.max_attempts.saturating_sub(1) as usize)
            .build()
    }

    /// `POST user_approvals/query`: the approvals of a batch of users over a window, for one status.
    pub async fn query_user_approvals(
        &self,
        employee_type: EmployeeType,
        request: &QueryRequest,
    ) -> Result<QueryData, PlatformError> {
        let url = format!(
            "{}?employee_type={}",
            self.url(QUERY_ENDPOINT),
            employee_type.as_str()
        );
        let mut backoff = self.backoff();
        let mut rate_limit_waits = 0;
        let mut token_renewed = false;
        loop {
            self.limiter.until_ready().await;
            let token = self.token().await?;
            self.counters.query_requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(&url)
                .bearer_auth(&*token)
                .header("content-type", "application/json; charset=utf-8")
                .json(request)
                .send()
                .await;
            match self.judge::<QueryData>(QUERY_ENDPOINT, sent).await {
                Attempt::Done(data) => return Ok(data.unwrap_or_default()),
                Attempt::RateLimited(wait) => {
                    self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    rate_limit_waits += 1;
                    if rate_limit_waits > self.config.max_rate_limit_waits {
                        return Err(PlatformError::RateLimited {
                            endpoint: QUERY_ENDPOINT,
                            waits: rate_limit_waits - 1,
                        });
                    }
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "rate limited; waiting for the platform's reset"
                    );
                    tokio::time::sleep(wait).await;
                }
                Attempt::TokenRefused(err) => {
                    if token_renewed {
                        return Err(err);
                    }
                    token_renewed = true;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        code = err.code(),
                        "access token refused; renewing it and retrying once"
                    );
                    self.drop_token(&token).await;
                }
                Attempt::Transient(err) => match backoff.next() {
                    Some(delay) => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, delay_ms = delay.as_millis() as u64, "transient failure; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(err),
                },
                Attempt::Failed(err) => return Err(err),
            }
        }
    }

    /// Classifies one HTTP exchange.
    async fn judge<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Attempt<Option<T>> {
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(self.transport(endpoint, &e)),
        };
        let http_status = response.status();
        let reset = response
            .headers()
            .get("x-ogw-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Transient(self.transport(endpoint, &e)),
        };
        let envelope = serde_json::from_slice::<Envelope<T>>(&body);
        let rate_limited = http_status == StatusCode::TOO_MANY_REQUESTS
            || matches!(&envelope, Ok(env) if env.code == 99991400);
        if rate_limited {
            // The reset is whole seconds in practice; never spin on a zero.
            let secs = reset.unwrap_or(1.0).clamp(0.05, 60.0);
            return Attempt::RateLimited(Duration::from_secs_f64(secs));
        }
        let envelope = match envelope {
            Ok(env) => env,
            Err(e) => {
                let err = PlatformError::MalformedBody {
                    endpoint,
                    http_status: http_status.as_u16(),
                    detail: format!("{e} (first bytes: {:?})", preview(&body)),
                };
                // A proxy's HTML error page or a cut-off body: the next attempt may be fine.
                return Attempt::Transient(err);
            }
        };
        if envelope.code == 0 && http_status.is_success() {
            return Attempt::Done(envelope.data);
        }
        let err = PlatformError::Api {
            endpoint,
            http_status: http_status.as_u16(),
            code: envelope.code,
            msg: envelope.msg,
        };
        if is_token_error(envelope.code) {
            Attempt::TokenRefused(err)
        } else if is_retryable_code(envelope.code)
            || (envelope.code == 0 && http_status.is_server_error())
            || (http_status.is_server_error() && !err.is_fatal())
        {
            Attempt::Transient(err)
        } else {
            Attempt::Failed(err)
        }
    }

    fn transport(&self, endpoint: &'static str, e: &reqwest::Error) -> PlatformError {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        let mut detail = kind.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        PlatformError::Transport {
            endpoint,
            base_url: self.config.base_url.clone(),
            detail,
        }
    }

    /// The cached token, or a new one. Holding the lock while fetching makes renewal single-flight.
    async fn token(&self) -> Result<Arc<str>, PlatformError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Drops the cached token if it is still the one that was refused.
    async fn drop_token(&self, refused: &Arc<str>) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.value, refused))
        {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, PlatformError> {
        let url = self.url(TOKEN_ENDPOINT);
        let creds = &self.config.credentials;
        let body = TokenRequest {
            app_id: &creds.app_id,
            app_secret: &creds.app_secret,
        };
        let mut backoff = self.backoff();
        loop {
            self.counters.token_requests.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let sent = self
                .http
                .post(&url)
                .header("content-type", "application/json; charset=utf-8")
                .json(&body)
                .send()
                .await;
            let err = match sent {
                Err(e) => self.transport(TOKEN_ENDPOINT, &e),
                Ok(response) => {
                    let http_status = response.status();
                    match response.bytes().await {
                        Err(e) => self.transport(TOKEN_ENDPOINT, &e),
                        Ok(bytes) => match serde_json::from_slice::<TokenResponse>(&bytes) {
                            Err(e) => PlatformError::MalformedBody {
                                endpoint: TOKEN_ENDPOINT,
                                http_status: http_status.as_u16(),
                                detail: e.to_string(),
                            },
                            Ok(t) => match (t.code, t.tenant_access_token, t.expire) {
                                (0, Some(token), Some(expire)) if expire > 0 => {
                                    let lifetime = Duration::from_secs(expire as u64);
                                    let margin = (lifetime / 4).min(Duration::from_secs(180));
                                    return Ok(CachedToken {
                                        value: token.into(),
                                        renew_at: started + lifetime - margin,
                                    });
                                }
                                (0, _, _) => PlatformError::MalformedBody {
                                    endpoint: TOKEN_ENDPOINT,
                                    http_status: http_status.as_u16(),
                                    detail:
                                        "code 0 without tenant_access_token and a positive expire"
                                            .into(),
                                },
                                (code, _, _) => {
                                    let err = PlatformError::Api {
                                        endpoint: TOKEN_ENDPOINT,
                                        http_status: http_status.as_u16(),
                                        code,
                                        msg: t.msg,
                                    };
                                    if !http_status.is_server_error() && !is_retryable_code(code) {
                                        return Err(err);
                                    }
                                    err
                                }
                            },
                        },
                    }
                }
            };
            match backoff.next() {
                Some(delay) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, delay_ms = delay.as_millis() as u64, "token request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(err),
            }
        }
    }
}

/// The start of a body, for error messages (bodies carry no secrets: tokens only come from the
/// token endpoint, whose bodies are never previewed).
fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned()
}
