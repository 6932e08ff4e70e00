//! HTTP client of the Open Platform: token cache, rate limiter, retries, typed calls.
//!
//! Invariants:
//! - At most one token request is in flight: the cache's lock is held while fetching, so requests
//!   that find the token expired wait for that one fetch instead of each asking for their own.
//! - A token is used until `expire - margin` (margin: 3 minutes, or a quarter of a short lifetime);
//!   a token-invalid code drops it (only if it is still the cached one) and the call is retried
//!   once with a fresh one. The same token is never sent again after a refusal; a fresh token
//!   refused in its turn (it expired too while the retry waited) is renewed again, at most three
//!   times a call.
//! - Every request passes its API's client-side rate limiter before it is sent (the platform
//!   limits each API separately); the third-party approval APIs also hold to at most 1000
//!   requests in any minute ([`ClientConfig::external_window`]), exactly: full speed until a
//!   minute's allowance is spent, then one as the oldest leaves the window. HTTP 429 / code
//!   99991400 pauses that API for every task until
//!   `x-ogw-ratelimit-reset` has passed, then runs it at 4/5 of the rate for a while, and tries again
//!   without using up a retry.
//! - Transport errors, HTTP 5xx and codes 1225000 / 1226000 / 1395001 are retried with
//!   exponential backoff and jitter, a bounded number of times; parameter and permission errors
//!   (1390001 included) are not.
//! - Lists are followed to their last page; a repeated page_token, or `has_more` without one,
//!   is a malformed answer, never an endless loop. Filters longer than an API takes
//!   (`external_tasks`: 20 approval codes, 20 instance ids) are split into several requests
//!   whose results are concatenated in order.
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

use attendance_core::answer::QueryData;
use attendance_core::chain::Chain;
use attendance_core::external::ExternalInstance;
use attendance_core::external::model::{CheckInstance, DiffInstance};
use attendance_core::plan::EmployeeType;

use crate::codes::{self, is_retryable, is_token_error};
use crate::endpoints::{
    self, DEPARTMENT_USERS, DEPARTMENTS, EXTERNAL_APPROVAL, EXTERNAL_APPROVALS, EXTERNAL_INSTANCES,
    EXTERNAL_INSTANCES_CHECK, EXTERNAL_TASKS, GROUP_USERS, GROUPS, QUERY, TOKEN,
};
use crate::error::PlatformError;
use crate::frame;
use crate::model::{
    CheckData, CheckRequest, ContactUser, CreatedApprovalData, CreatedInstanceData, Department,
    Envelope, ExternalTaskFilter, ExternalTaskGroup, ExternalTaskPage, GroupListData, GroupSummary,
    GroupUsersData, ItemsData, MAX_EXTERNAL_TASK_FILTER, PageInfo, QueryRequest, TokenRequest,
    TokenResponse,
};

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
    /// Requests per second the client allows itself on each API (the platform's limit is 50).
    pub rate_limit_per_sec: u32,
    /// Deadline of one HTTP request.
    pub request_timeout: Duration,
    /// Attempts for transient failures (transport, 5xx, 1225000/1226000), first one included.
    pub max_attempts: u32,
    /// Times a rate-limited answer is waited out before the call fails.
    pub max_rate_limit_waits: u32,
    /// The third-party approval APIs' longer limit: at most this many requests in any window
    /// of this length, on each of them (the platform's: 1000 a minute, on top of 50 a second).
    /// A count of 0 is no window.
    pub external_window: (u32, Duration),
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
            external_window: (1000, Duration::from_secs(60)),
        }
    }
}

/// Counters of what the client did, for the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP requests sent to the query endpoint, retries included.
    pub query_requests: u64,
    /// HTTP requests sent to the group and contact list endpoints, retries included.
    pub list_requests: u64,
    /// Requests sent to the token endpoint.
    pub token_requests: u64,
    /// HTTP requests sent to the third-party approval endpoints (instances, check, task list,
    /// definitions), retries included.
    pub external_requests: u64,
    /// Answers that were over the rate limit.
    pub rate_limited: u64,
    /// Retries after transient failures and refused tokens.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    query_requests: AtomicU64,
    list_requests: AtomicU64,
    token_requests: AtomicU64,
    external_requests: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
}

struct CachedToken {
    value: Arc<str>,
    renew_at: Instant,
}

/// Pacing of one API: the platform limits each API separately, so each has its own limiter.
struct Pacer {
    endpoint: &'static str,
    limiter: DefaultDirectRateLimiter,
    /// Four fifths of the rate, used on top of `limiter` for a while after the platform said 429.
    slow_limiter: DefaultDirectRateLimiter,
    /// (nobody sends before, slow down until) — set by a 429.
    pause: std::sync::Mutex<(Instant, Instant)>,
    counter: fn(&Counters) -> &AtomicU64,
    /// For APIs also limited over a longer window (the third-party ones: 1000 a minute): the
    /// start times of the requests within the last window, at most its limit.
    window: Option<Window>,
}

/// At most `limit` requests in any `length` of time: full speed until the window's allowance is
/// spent, then one as the oldest leaves it. Exact, unlike a token bucket whose burst would let a
/// window hold its allowance twice over.
struct Window {
    limit: usize,
    length: Duration,
    starts: std::sync::Mutex<std::collections::VecDeque<Instant>>,
}

impl Window {
    /// Waits until one more request fits, and counts it.
    async fn admit(&self) {
        loop {
            let wait_until = {
                let mut starts = self.starts.lock().expect("window lock");
                let now = Instant::now();
                while starts.front().is_some_and(|t| *t + self.length <= now) {
                    starts.pop_front();
                }
                if starts.len() < self.limit {
                    starts.push_back(now);
                    return;
                }
                *starts.front().expect("full, so not empty") + self.length
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }
}

/// How long the limiter stays at four fifths of its rate after the platform's reset has passed:
/// long enough that a limit set a little above the platform's stops hammering it, short enough
/// that a passing burst of 429s (another job on the same app) costs little.
const SLOW_DOWN_AFTER_429: Duration = Duration::from_secs(5);

impl Pacer {
    fn new(endpoint: &'static str, per_sec: u32, counter: fn(&Counters) -> &AtomicU64) -> Pacer {
        let per_sec = NonZeroU32::new(per_sec.max(1)).expect("max(1) is non-zero");
        let slower = NonZeroU32::new((per_sec.get() * 4 / 5).max(1)).expect("max(1) is non-zero");
        // A burst of one spreads requests evenly, so no wall-clock second of the platform's
        // fixed windows sees more than the limit.
        let quota = |n| Quota::per_second(n).allow_burst(NonZeroU32::MIN);
        let now = Instant::now();
        Pacer {
            endpoint,
            limiter: RateLimiter::direct(quota(per_sec)),
            slow_limiter: RateLimiter::direct(quota(slower)),
            pause: std::sync::Mutex::new((now, now)),
            counter,
            window: None,
        }
    }

    /// This pacer, also holding to at most `limit` requests in any `length` (0: no window).
    fn with_window(mut self, (limit, length): (u32, Duration)) -> Pacer {
        if limit > 0 {
            self.window = Some(Window {
                limit: limit as usize,
                length,
                starts: std::sync::Mutex::new(std::collections::VecDeque::new()),
            });
        }
        self
    }

    /// Waits until this API may be called again.
    async fn ready(&self) {
        loop {
            let (paused_until, _) = *self.pause.lock().expect("pacer lock");
            if Instant::now() >= paused_until {
                break;
            }
            tokio::time::sleep_until(paused_until).await;
        }
        if let Some(window) = &self.window {
            window.admit().await;
        }
        self.limiter.until_ready().await;
        let (_, slow_until) = *self.pause.lock().expect("pacer lock");
        if Instant::now() < slow_until {
            self.slow_limiter.until_ready().await;
        }
    }

    /// The platform said 429: everyone waits out the reset, then goes at 4/5 of the rate for a while.
    fn back_off(&self, reset: Duration) {
        let mut pause = self.pause.lock().expect("pacer lock");
        let until = Instant::now() + reset;
        pause.0 = pause.0.max(until);
        pause.1 = pause.1.max(until + SLOW_DOWN_AFTER_429);
    }
}

/// A client of one tenant; cheap to share behind `&` across concurrent tasks.
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    token: Mutex<Option<CachedToken>>,
    query: Pacer,
    groups: Pacer,
    group_users: Pacer,
    departments: Pacer,
    department_users: Pacer,
    external_instances: Pacer,
    external_check: Pacer,
    external_tasks: Pacer,
    external_approvals: Pacer,
    external_approval: Pacer,
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

/// Renewals of a refused token within one call before the refusal is final.
const MAX_TOKEN_RENEWALS_PER_CALL: usize = 3;

/// Page size of the list endpoints (the documented maximum of the strictest of them).
const PAGE_SIZE: u32 = 50;

/// Page size of `external_tasks` (its documented maximum).
const EXTERNAL_TASKS_PAGE_SIZE: u32 = 500;

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, PlatformError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("attendance-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                PlatformError::transport("client", config.base_url.clone(), "cannot start", e)
            })?;
        let rate = config.rate_limit_per_sec;
        let window = config.external_window;
        Ok(Client {
            http,
            token: Mutex::new(None),
            query: Pacer::new(QUERY, rate, |c| &c.query_requests),
            groups: Pacer::new(GROUPS, rate, |c| &c.list_requests),
            group_users: Pacer::new(GROUP_USERS, rate, |c| &c.list_requests),
            departments: Pacer::new(DEPARTMENTS, rate, |c| &c.list_requests),
            department_users: Pacer::new(DEPARTMENT_USERS, rate, |c| &c.list_requests),
            external_instances: Pacer::new(EXTERNAL_INSTANCES, rate, |c| &c.external_requests)
                .with_window(window),
            external_check: Pacer::new(EXTERNAL_INSTANCES_CHECK, rate, |c| &c.external_requests)
                .with_window(window),
            external_tasks: Pacer::new(EXTERNAL_TASKS, rate, |c| &c.external_requests)
                .with_window(window),
            external_approvals: Pacer::new(EXTERNAL_APPROVALS, rate, |c| &c.external_requests)
                .with_window(window),
            external_approval: Pacer::new(EXTERNAL_APPROVAL, rate, |c| &c.external_requests)
                .with_window(window),
            counters: Counters::default(),
            config,
        })
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        ClientStats {
            query_requests: c.query_requests.load(Ordering::Relaxed),
            list_requests: c.list_requests.load(Ordering::Relaxed),
            token_requests: c.token_requests.load(Ordering::Relaxed),
            external_requests: c.external_requests.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Requests per second the client allows itself on each API.
    pub fn rate_limit(&self) -> u32 {
        self.config.rate_limit_per_sec
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}{path}",
            self.config.base_url.trim_end_matches('/'),
            endpoints::PREFIX
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
            self.url(QUERY),
            employee_type.as_str()
        );
        self.call::<QueryData>(&self.query, |http| {
            http.post(&url)
                .header("content-type", "application/json; charset=utf-8")
                .json(request)
        })
        .await
    }

    /// Every attendance group (`GET attendance/v1/groups`, all pages).
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, PlatformError> {
        let url = self.url(GROUPS);
        self.paginate(&self.groups, &url, |d: GroupListData| {
            (d.group_list.unwrap_or_default(), d.page)
        })
        .await
    }

    /// Ids (of `employee_type`) of a group's members (`GET …/groups/:id/list_user`, all pages).
    pub async fn list_group_users(
        &self,
        group_id: &str,
        employee_type: EmployeeType,
    ) -> Result<Vec<String>, PlatformError> {
        let url = format!(
            "{}?employee_type={}&dept_type=open_id&member_clock_type=0",
            self.url(&GROUP_USERS.replace(":group_id", &encode(group_id))),
            employee_type.as_str()
        );
        let users = self
            .paginate(&self.group_users, &url, |d: GroupUsersData| {
                (d.users.unwrap_or_default(), d.page)
            })
            .await?;
        Ok(users.into_iter().filter_map(|u| u.user_id).collect())
    }

    /// Every department under the root (`GET contact/v3/departments/0/children?fetch_child=true`).
    pub async fn list_departments(&self) -> Result<Vec<Department>, PlatformError> {
        let url = format!(
            "{}?fetch_child=true&department_id_type=open_department_id",
            self.url(&DEPARTMENTS.replace(":department_id", "0"))
        );
        self.paginate(&self.departments, &url, |d: ItemsData<Department>| {
            (d.items.unwrap_or_default(), d.page)
        })
        .await
    }

    /// A fresh long-connection URL and its settings (`POST /callback/ws/endpoint`, on the host,
    /// not under `/open-apis/`). One attempt: the caller's reconnect schedule is the retry.
    /// A busy platform (code 1 or 1000040343, or a non-200 HTTP status) is a
    /// [`PlatformError::Transport`] (worth another try); any other non-zero code is an
    /// [`PlatformError::Api`] (it will not go away by itself).
    pub async fn long_connection_endpoint(&self) -> Result<frame::EndpointData, PlatformError> {
        const NAME: &str = "callback/ws/endpoint";
        let base = self.config.base_url.trim_end_matches('/');
        let creds = &self.config.credentials;
        let request = frame::EndpointRequest {
            app_id: creds.app_id.clone(),
            app_secret: creds.app_secret.clone(),
        };
        let transport = |kind, e: reqwest::Error| {
            PlatformError::transport(NAME, self.config.base_url.clone(), kind, e.without_url())
        };
        let response = self
            .http
            .post(format!("{base}{}", frame::ENDPOINT_PATH))
            .header("locale", "zh")
            .json(&request)
            .send()
            .await
            .map_err(|e| {
                transport(
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "connection failed"
                    },
                    e,
                )
            })?;
        let http_status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport("request failed", e))?;
        if http_status != 200 {
            return Err(PlatformError::transport(
                NAME,
                self.config.base_url.clone(),
                "busy",
                format!("HTTP {http_status}"),
            ));
        }
        let answer: frame::EndpointResponse =
            serde_json::from_slice(&body).map_err(|e| PlatformError::MalformedBody {
                endpoint: NAME,
                http_status,
                first_bytes: None,
                cause: Arc::new(e),
            })?;
        match (answer.code, answer.data) {
            (frame::ENDPOINT_OK, Some(data)) => Ok(data),
            // Busy, or a success without a URL: worth another try.
            (frame::ENDPOINT_SYSTEM_BUSY | frame::ENDPOINT_INTERNAL_ERROR, _)
            | (frame::ENDPOINT_OK, None) => Err(PlatformError::transport(
                NAME,
                self.config.base_url.clone(),
                "busy",
                format!("code {}: {}", answer.code, answer.msg),
            )),
            (code, _) => Err(PlatformError::Api {
                endpoint: NAME,
                http_status,
                code,
                msg: answer.msg,
            }),
        }
    }

    /// Direct members of a department (`GET contact/v3/users/find_by_department`, all pages), as
    /// ids of `employee_type`.
    pub async fn list_department_users(
        &self,
        open_department_id: &str,
        employee_type: EmployeeType,
    ) -> Result<Vec<String>, PlatformError> {
        let user_id_type = match employee_type {
            EmployeeType::OpenId => "open_id",
            EmployeeType::EmployeeId | EmployeeType::EmployeeNo => "user_id",
        };
        let url = format!(
            "{}?department_id={}&department_id_type=open_department_id&user_id_type={user_id_type}",
            self.url(DEPARTMENT_USERS),
            encode(open_department_id)
        );
        let users = self
            .paginate(&self.department_users, &url, |d: ItemsData<ContactUser>| {
                (d.items.unwrap_or_default(), d.page)
            })
            .await?;
        Ok(users
            .into_iter()
            .filter_map(|u| match employee_type {
                EmployeeType::EmployeeId => u.user_id,
                EmployeeType::EmployeeNo => u.employee_no,
                EmployeeType::OpenId => u.open_id,
            })
            .filter(|id| !id.is_empty())
            .collect())
    }

    /// `POST approval/v4/external_instances`: creates or updates one third-party instance (the
    /// body is the instance, times as decimal strings). A refusal of its fields is
    /// [`codes::EXTERNAL_PARAM_INVALID`] (not retried, not fatal); "try again later"
    /// ([`codes::EXTERNAL_TRY_LATER`]) is retried with backoff.
    pub async fn create_external_instance(
        &self,
        instance: &ExternalInstance,
    ) -> Result<(), PlatformError> {
        let url = self.url(EXTERNAL_INSTANCES);
        self.call::<CreatedInstanceData>(&self.external_instances, |http| {
            http.post(&url)
                .header("content-type", "application/json; charset=utf-8")
                .json(instance)
        })
        .await?;
        Ok(())
    }

    /// `POST approval/v4/external_instances/check`: the instances (of those given) that the
    /// platform holds at another version, or not at all (`update_time` `"0"`). One request:
    /// the caller batches.
    pub async fn check_external_instances(
        &self,
        instances: &[CheckInstance],
    ) -> Result<Vec<DiffInstance>, PlatformError> {
        let url = self.url(EXTERNAL_INSTANCES_CHECK);
        let body = CheckRequest { instances };
        let data = self
            .call::<CheckData>(&self.external_check, |http| {
                http.post(&url)
                    .header("content-type", "application/json; charset=utf-8")
                    .json(&body)
            })
            .await?;
        Ok(data.diff_instances.unwrap_or_default())
    }

    /// `GET approval/v4/external_tasks`, every page: the third-party instances matching
    /// `filter`, each with its matching tasks. The filters go in the GET's JSON body; more than
    /// 20 approval codes or instance ids (the API's limit) are split into batches of 20 (each
    /// list deduplicated first), each batch paged through, the results concatenated in order.
    pub async fn list_external_tasks(
        &self,
        filter: &ExternalTaskFilter,
    ) -> Result<Vec<ExternalTaskGroup>, PlatformError> {
        let url = self.url(EXTERNAL_TASKS);
        let code_batches = batches(&filter.approval_codes);
        let id_batches = batches(&filter.instance_ids);
        let mut all = Vec::new();
        for codes in &code_batches {
            for ids in &id_batches {
                let body = ExternalTaskFilter {
                    approval_codes: codes.clone(),
                    instance_ids: ids.clone(),
                    user_ids: filter.user_ids.clone(),
                    status: filter.status.clone(),
                };
                let groups = self
                    .paginate_by(
                        &self.external_tasks,
                        &url,
                        EXTERNAL_TASKS_PAGE_SIZE,
                        |http, page_url| {
                            http.get(page_url)
                                .header("content-type", "application/json; charset=utf-8")
                                .json(&body)
                        },
                        |d: ExternalTaskPage| (d.data.unwrap_or_default(), d.page),
                    )
                    .await?;
                all.extend(groups);
            }
        }
        Ok(all)
    }

    /// `POST approval/v4/external_approvals` (ids as `open_department_id` and `user_id`):
    /// creates or updates a third-party approval definition, and returns its code — the code
    /// sent when it was known, else a new one the platform made.
    pub async fn create_external_approval(
        &self,
        definition: &serde_json::Value,
    ) -> Result<String, PlatformError> {
        let url = format!(
            "{}?department_id_type=open_department_id&user_id_type=user_id",
            self.url(EXTERNAL_APPROVALS)
        );
        let data = self
            .call::<CreatedApprovalData>(&self.external_approvals, |http| {
                http.post(&url)
                    .header("content-type", "application/json; charset=utf-8")
                    .json(definition)
            })
            .await?;
        data.approval_code
            .filter(|code| !code.is_empty())
            .ok_or_else(|| {
                PlatformError::malformed(EXTERNAL_APPROVALS, 200, "code 0 without approval_code")
            })
    }

    /// `GET approval/v4/external_approvals/:approval_code` (user ids as `user_id`): the
    /// definition, as the platform's `data`.
    pub async fn get_external_approval(
        &self,
        approval_code: &str,
    ) -> Result<serde_json::Value, PlatformError> {
        let url = format!(
            "{}?user_id_type=user_id",
            self.url(&EXTERNAL_APPROVAL.replace(":approval_code", &encode(approval_code)))
        );
        self.call::<serde_json::Value>(&self.external_approval, |http| http.get(&url))
            .await
    }

    /// Walks every page of a list endpoint.
    async fn paginate<D: DeserializeOwned, T>(
        &self,
        pacer: &Pacer,
        url: &str,
        split: impl Fn(D) -> (Vec<T>, PageInfo),
    ) -> Result<Vec<T>, PlatformError> {
        self.paginate_by(
            pacer,
            url,
            PAGE_SIZE,
            |http, page_url| http.get(page_url),
            split,
        )
        .await
    }

    /// Walks every page of a list endpoint, `page_size` items a page, each page's request made
    /// by `build` for its URL (`page_size` and `page_token` in the query).
    async fn paginate_by<D: DeserializeOwned, T>(
        &self,
        pacer: &Pacer,
        url: &str,
        page_size: u32,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        split: impl Fn(D) -> (Vec<T>, PageInfo),
    ) -> Result<Vec<T>, PlatformError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let sep = if url.contains('?') { '&' } else { '?' };
            let mut page_url = format!("{url}{sep}page_size={page_size}");
            if let Some(t) = &token {
                page_url.push_str("&page_token=");
                page_url.push_str(&encode(t));
            }
            let data = self.call::<D>(pacer, |http| build(http, &page_url)).await?;
            let (items, page) = split(data);
            all.extend(items);
            match (page.has_more, page.page_token) {
                (Some(true), Some(next)) if !next.is_empty() => {
                    if !seen.insert(next.clone()) {
                        return Err(PlatformError::malformed(
                            pacer.endpoint,
                            200,
                            "pagination repeated a page_token: stopping instead of looping",
                        ));
                    }
                    token = Some(next);
                }
                (Some(true), _) => {
                    return Err(PlatformError::malformed(
                        pacer.endpoint,
                        200,
                        "has_more is true but no page_token was given",
                    ));
                }
                _ => break,
            }
        }
        Ok(all)
    }

    /// One API call with pacing, token handling and retries. `build` makes the request for an
    /// attempt; the bearer token is added here.
    async fn call<T: DeserializeOwned>(
        &self,
        pacer: &Pacer,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T, PlatformError> {
        let endpoint = pacer.endpoint;
        let mut backoff = self.backoff();
        let mut rate_limit_waits = 0;
        // Each refused token is renewed once; a renewed token refused again (a second expiry
        // while the retry waited for its turn) is renewed too, a few times at most.
        let mut refused_tokens: Vec<Arc<str>> = Vec::new();
        loop {
            pacer.ready().await;
            let token = self.token().await?;
            (pacer.counter)(&self.counters).fetch_add(1, Ordering::Relaxed);
            let sent = build(&self.http).bearer_auth(&*token).send().await;
            match self.judge::<T>(endpoint, sent).await {
                Attempt::Done(data) => return Ok(data),
                Attempt::RateLimited(wait) => {
                    self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    pacer.back_off(wait);
                    rate_limit_waits += 1;
                    if rate_limit_waits > self.config.max_rate_limit_waits {
                        return Err(PlatformError::RateLimited {
                            endpoint,
                            waits: rate_limit_waits - 1,
                        });
                    }
                    tracing::debug!(
                        endpoint,
                        wait_ms = wait.as_millis() as u64,
                        "rate limited; waiting for the platform's reset"
                    );
                }
                Attempt::TokenRefused(err) => {
                    let seen = refused_tokens.iter().any(|t| Arc::ptr_eq(t, &token));
                    if seen || refused_tokens.len() >= MAX_TOKEN_RENEWALS_PER_CALL {
                        return Err(err);
                    }
                    refused_tokens.push(Arc::clone(&token));
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        endpoint,
                        code = err.code(),
                        "access token refused; renewing it and retrying once"
                    );
                    self.drop_token(&token).await;
                }
                Attempt::Transient(err) => match backoff.next() {
                    Some(delay) => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            error = %Chain(&err),
                            delay_ms = delay.as_millis() as u64,
                            "transient failure; retrying"
                        );
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
    ) -> Attempt<T> {
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(self.transport(endpoint, e)),
        };
        let http_status = response.status();
        let reset = response
            .headers()
            .get("x-ogw-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Transient(self.transport(endpoint, e)),
        };
        let envelope = serde_json::from_slice::<Envelope<T>>(&body);
        let rate_limited = http_status == StatusCode::TOO_MANY_REQUESTS
            || matches!(&envelope, Ok(env) if env.code == Some(codes::RATE_LIMITED));
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
                    first_bytes: Some(preview(&body)),
                    cause: Arc::new(e),
                };
                // A proxy's HTML error page or a cut-off body: the next attempt may be fine.
                return Attempt::Transient(err);
            }
        };
        let Some(code) = envelope.code else {
            return Attempt::Transient(PlatformError::MalformedBody {
                endpoint,
                http_status: http_status.as_u16(),
                first_bytes: Some(preview(&body)),
                cause: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                    "no `code` field",
                )),
            });
        };
        if code == codes::OK && http_status.is_success() {
            return match envelope.data {
                Some(data) => Attempt::Done(data),
                None => Attempt::Transient(PlatformError::malformed(
                    endpoint,
                    http_status.as_u16(),
                    "code 0 without `data`",
                )),
            };
        }
        let err = PlatformError::Api {
            endpoint,
            http_status: http_status.as_u16(),
            code,
            msg: envelope.msg,
        };
        if is_token_error(code) {
            Attempt::TokenRefused(err)
        } else if is_retryable(code) || (http_status.is_server_error() && !err.is_fatal()) {
            Attempt::Transient(err)
        } else {
            Attempt::Failed(err)
        }
    }

    fn transport(&self, endpoint: &'static str, e: reqwest::Error) -> PlatformError {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        PlatformError::transport(endpoint, self.config.base_url.clone(), kind, e)
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
        let url = self.url(TOKEN);
        let creds = &self.config.credentials;
        let body = TokenRequest {
            app_id: &creds.app_id,
            app_secret: &creds.app_secret,
        };
        let mut backoff = self.backoff();
        let mut rate_waits = 0;
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
                Err(e) => self.transport(TOKEN, e),
                Ok(response) => {
                    let http_status = response.status();
                    match response.bytes().await {
                        Err(e) => self.transport(TOKEN, e),
                        Ok(bytes) => match serde_json::from_slice::<TokenResponse>(&bytes) {
                            Err(e) => PlatformError::malformed(TOKEN, http_status.as_u16(), e),
                            Ok(t) => match (t.code, t.tenant_access_token, t.expire) {
                                (codes::OK, Some(token), Some(expire)) if expire > 0 => {
                                    let lifetime = Duration::from_secs(expire as u64);
                                    let margin = (lifetime / 4).min(Duration::from_secs(180));
                                    return Ok(CachedToken {
                                        value: token.into(),
                                        renew_at: started + lifetime - margin,
                                    });
                                }
                                (codes::OK, _, _) => PlatformError::malformed(
                                    TOKEN,
                                    http_status.as_u16(),
                                    "code 0 without tenant_access_token and a positive expire",
                                ),
                                (codes::RATE_LIMITED, _, _)
                                    if rate_waits < self.config.max_rate_limit_waits =>
                                {
                                    // Over the token endpoint's own limit: wait and ask again.
                                    rate_waits += 1;
                                    self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                    continue;
                                }
                                (code, _, _) => {
                                    let err = PlatformError::Api {
                                        endpoint: TOKEN,
                                        http_status: http_status.as_u16(),
                                        code,
                                        msg: t.msg,
                                    };
                                    if !http_status.is_server_error() && !is_retryable(code) {
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
                    tracing::warn!(error = %Chain(&err), delay_ms = delay.as_millis() as u64, "token request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(err),
            }
        }
    }
}

/// `values` deduplicated (first occurrence kept) and cut into batches of at most
/// [`MAX_EXTERNAL_TASK_FILTER`]; no values is one empty batch (no filter).
fn batches(values: &[String]) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = values
        .iter()
        .filter(|v| seen.insert(v.as_str()))
        .cloned()
        .collect();
    if unique.is_empty() {
        return vec![Vec::new()];
    }
    unique
        .chunks(MAX_EXTERNAL_TASK_FILTER)
        .map(<[String]>::to_vec)
        .collect()
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The start of a body, for error messages (bodies carry no secrets: tokens only come from the
/// token endpoint, whose bodies are never previewed).
fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_deduplicated_and_cut_into_batches_of_twenty() {
        let values: Vec<String> = (0..45).map(|i| format!("c{}", i % 41)).collect();
        let cut = batches(&values);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [20, 20, 1]);
        assert_eq!(cut[0][0], "c0");
        assert_eq!(cut[2][0], "c40");
        assert_eq!(batches(&[]), vec![Vec::<String>::new()]);
    }
}
