//! The simulated tenant's HTTP surface: the token and user_approvals/query endpoints, with the
//! platform's auth, rate limiting, validation order, error bodies and stats bookkeeping, the
//! gate every faultable API passes through (rate limit, auth, faults), and the shared state
//! (the third-party approval store among it, see `external.rs`).
//!
//! Invariants:
//! - Query checks run in the platform's order: rate limit, auth, employee_type, body, user ids.
//! - Every faultable API ([`Api`]) has its own rate-limit window and fault bursts; faults are
//!   drawn only for requests that passed the rate limit and auth, and a faulted answer serves
//!   no rows (a delay alone still serves the real answer, and its rows count once sent).
//! - Every query request is counted and logged, whatever the answer; the window, date and id
//!   count maxima are observed from the raw body before any rejection.
//! - Every error body is `{"code","msg","data":{}}`, except the 429 body (no `data`), like the
//!   platform's gateway.
//! - A response lists a record only when its effective status (a `set_status` override, else
//!   its own) equals the queried status and its kind is served for that status.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use attendance_core::plan::{MAX_USERS_PER_QUERY, MAX_WINDOW_DAYS};
use attendance_feishu::codes;

use super::data::{IdType, Kind, Listing, Population};
use super::directory::Directory;
use super::external::ExternalStore;
use super::faults::{Api, FaultAnswer, FaultInjector, FaultPlan, HTML_500_BODY};
use super::{Faults, NO_CODE, QueryLogEntry, SimConfig, SimStats};

/// The platform's documented per-API limit, sent in the headers of a fault burst's 429 when
/// the tenant itself is unlimited.
const PLATFORM_RATE_LIMIT: u32 = 50;

/// Most user ids one query may carry (as the sibling attendance query endpoints document).
const MAX_USER_IDS: usize = MAX_USERS_PER_QUERY;
/// The status queried when the body has none: approved.
const DEFAULT_STATUS: i32 = 2;

/// Shared state of one running tenant.
pub(crate) struct TenantState {
    /// The configuration as started; runtime switches live in the fields below.
    pub(crate) config: SimConfig,
    pub(crate) population: Population,
    pub(crate) directory: Directory,
    started: Instant,
    tokens: Mutex<TokenStore>,
    token_ttl_secs: AtomicU64,
    rates: [Mutex<RateWindow>; Api::COUNT],
    /// Per-minute windows, of the third-party APIs.
    minute_rates: [Mutex<RateWindow>; Api::COUNT],
    faults: Mutex<FaultInjector>,
    /// Indexes of the users the query refuses.
    refused: RwLock<HashSet<usize>>,
    pub(crate) stats: Mutex<SimStats>,
    overlay: RwLock<Overlay>,
    /// Third-party approval definitions and instances.
    pub(crate) external: ExternalStore,
}

/// Test-made changes on top of the generated data.
#[derive(Default)]
struct Overlay {
    status_by_approval: HashMap<String, i32>,
    inserted: HashMap<(usize, NaiveDate), Vec<Listing>>,
    inserted_approval_ids: HashSet<String>,
}

impl Overlay {
    fn push(
        &mut self,
        user: usize,
        date: NaiveDate,
        kind: Kind,
        status: i32,
        approval_id: String,
        record: super::data::Record,
    ) {
        if !approval_id.is_empty() {
            self.inserted_approval_ids.insert(approval_id.clone());
        }
        self.inserted
            .entry((user, date))
            .or_default()
            .push(Listing {
                kind,
                approval_id,
                status,
                body: super::data::ListingBody::Fixed(Arc::new(record)),
            });
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler cannot leave these structures half-updated in a harmful way; keep
    // serving rather than cascading the panic into every later request.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn fresh_stats() -> SimStats {
    SimStats {
        rows_served: Kind::ALL
            .iter()
            .map(|kind| (kind.table().to_owned(), 0))
            .collect(),
        ..SimStats::default()
    }
}

impl TenantState {
    pub(crate) fn new(
        config: SimConfig,
        population: Population,
        directory: Directory,
        refused: HashSet<usize>,
    ) -> TenantState {
        // Tokens need only be unpredictable, not reproducible.
        let clock_entropy = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        TenantState {
            tokens: Mutex::new(TokenStore {
                rng: StdRng::seed_from_u64(config.seed ^ clock_entropy),
                current: None,
                expiry_by_token: HashMap::new(),
            }),
            token_ttl_secs: AtomicU64::new(config.token_ttl_secs),
            faults: Mutex::new(FaultInjector::new(config.seed, config.faults.clone())),
            external: ExternalStore::new(&config),
            config,
            population,
            directory,
            started: Instant::now(),
            rates: std::array::from_fn(|_| Mutex::new(RateWindow { index: 0, used: 0 })),
            minute_rates: std::array::from_fn(|_| Mutex::new(RateWindow { index: 0, used: 0 })),
            refused: RwLock::new(refused),
            stats: Mutex::new(fresh_stats()),
            overlay: RwLock::new(Overlay::default()),
        }
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        lock(&self.faults).set(faults);
    }

    pub(crate) fn set_refused(&self, refused: HashSet<usize>) {
        *self.refused.write().unwrap_or_else(PoisonError::into_inner) = refused;
    }

    pub(crate) fn set_token_ttl(&self, secs: u64) {
        self.token_ttl_secs.store(secs, Ordering::Relaxed);
    }

    pub(crate) fn expire_tokens(&self) {
        lock(&self.tokens).expire_all();
    }

    pub(crate) fn stats(&self) -> SimStats {
        lock(&self.stats).clone()
    }

    pub(crate) fn reset_stats(&self) {
        *lock(&self.stats) = fresh_stats();
    }

    pub(crate) fn set_status(&self, approval_id: &str, status: i32) -> bool {
        let mut overlay = self.overlay.write().unwrap_or_else(PoisonError::into_inner);
        let known = overlay.inserted_approval_ids.contains(approval_id)
            || self.population.approval_exists(approval_id);
        if known {
            overlay
                .status_by_approval
                .insert(approval_id.to_owned(), status);
        }
        known
    }

    pub(crate) fn insert(
        &self,
        user: usize,
        date: NaiveDate,
        kind: Kind,
        status: i32,
        record: Value,
    ) {
        let approval_id = record
            .get("approval_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let record = super::data::Record::Raw(record);
        let mut overlay = self.overlay.write().unwrap_or_else(PoisonError::into_inner);
        overlay.push(user, date, kind, status, approval_id, record);
    }

    /// Lists `record` like [`TenantState::insert`], but only when `approval_id` is not known yet
    /// (generated, fixture or inserted), checked and inserted under one lock; false (nothing
    /// inserted) otherwise.
    pub(crate) fn insert_new_record(
        &self,
        user: usize,
        date: NaiveDate,
        kind: Kind,
        status: i32,
        approval_id: String,
        record: super::data::Record,
    ) -> bool {
        let mut overlay = self.overlay.write().unwrap_or_else(PoisonError::into_inner);
        if approval_id.is_empty()
            || overlay.inserted_approval_ids.contains(&approval_id)
            || self.population.approval_exists(&approval_id)
        {
            return false;
        }
        overlay.push(user, date, kind, status, approval_id, record);
        true
    }

    /// Every approval (user, date) lists, generated or fixture then inserted, each with its
    /// effective status (a `set_status` override, else its own), whatever that status is.
    pub(crate) fn listings_with_status(&self, user: usize, date: NaiveDate) -> Vec<(Listing, i32)> {
        let overlay = self.overlay.read().unwrap_or_else(PoisonError::into_inner);
        let day = self.population.user_day(user, date);
        let inserted = overlay.inserted.get(&(user, date));
        day.listings
            .into_iter()
            .chain(inserted.into_iter().flatten().cloned())
            .map(|listing| {
                let status = overlay
                    .status_by_approval
                    .get(&listing.approval_id)
                    .copied()
                    .unwrap_or(listing.status);
                (listing, status)
            })
            .collect()
    }

    /// The kind of a known approval (generated, fixture or inserted), None for an unknown id.
    pub(crate) fn approval_kind(&self, approval_id: &str) -> Option<Kind> {
        if let Some(kind) = self.population.approval_kind(approval_id) {
            return Some(kind);
        }
        let overlay = self.overlay.read().unwrap_or_else(PoisonError::into_inner);
        overlay
            .inserted
            .values()
            .flatten()
            .find(|listing| listing.approval_id == approval_id)
            .map(|listing| listing.kind)
    }

    /// The platform's "today": the configured date, else today in Asia/Shanghai.
    fn today(&self) -> NaiveDate {
        self.config.today.unwrap_or_else(|| {
            chrono::Utc::now()
                .with_timezone(&chrono_tz::Asia::Shanghai)
                .date_naive()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The gate of every faultable API: rate limit, auth, then faults.
// ---------------------------------------------------------------------------------------------

/// An answer decided, not yet sent.
pub(crate) struct Outcome<Rows> {
    pub(crate) response: Response,
    /// The body's code, or [`NO_CODE`].
    pub(crate) code: i64,
    /// The faults drawn (none when the request was stopped before the draw).
    pub(crate) plan: FaultPlan,
    /// What the answer serves: the endpoint's own count when answered, default when faulted.
    pub(crate) rows: Rows,
}

impl<Rows: Default> Outcome<Rows> {
    fn unfaulted(response: Response, code: i64) -> Outcome<Rows> {
        Outcome {
            response,
            code,
            plan: FaultPlan::default(),
            rows: Rows::default(),
        }
    }
}

/// Runs the checks every faultable API shares, in the platform's order (its own rate-limit
/// window, then auth), draws the faults, and calls `answer` (the endpoint's own validation and
/// body) unless a fault replaces the answer.
pub(crate) fn gate<Rows: Default>(
    state: &TenantState,
    api: Api,
    headers: &HeaderMap,
    answer: impl FnOnce() -> Result<(String, Rows), Rejection>,
) -> Outcome<Rows> {
    let limit = state.config.rate_limit_per_sec;
    if limit > 0
        && let Err(reset_secs) =
            lock(&state.rates[api.index()]).admit(state.started.elapsed(), limit)
    {
        return Outcome::unfaulted(
            rate_limited_response(limit, reset_secs),
            codes::RATE_LIMITED,
        );
    }
    // The third-party APIs are also limited per minute (fixed windows from the start).
    let per_minute = state.config.external.rate_limit_per_min;
    if per_minute > 0
        && api.is_external()
        && let Err(reset_secs) = lock(&state.minute_rates[api.index()]).admit_per(
            state.started.elapsed(),
            per_minute,
            60,
        )
    {
        return Outcome::unfaulted(
            rate_limited_response(per_minute, reset_secs),
            codes::RATE_LIMITED,
        );
    }
    if let Err(rejection) = authorize(state, headers) {
        let code = rejection.code;
        return Outcome::unfaulted(rejection.into_response(), code);
    }
    let plan = lock(&state.faults).draw(api, Instant::now());
    let faulted = |response: Response, code: i64| Outcome {
        response,
        code,
        plan,
        rows: Rows::default(),
    };
    match plan.answer {
        Some(FaultAnswer::Http500) => {
            let mut response = (StatusCode::INTERNAL_SERVER_ERROR, HTML_500_BODY).into_response();
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            faulted(response, NO_CODE)
        }
        Some(FaultAnswer::Code1225000) => {
            let rejection = Rejection {
                http: StatusCode::INTERNAL_SERVER_ERROR,
                code: codes::INTERNAL_ERROR,
                msg: "internal server error".to_owned(),
            };
            faulted(rejection.into_response(), codes::INTERNAL_ERROR)
        }
        Some(FaultAnswer::Burst429) => {
            let limit = if limit > 0 {
                limit
            } else {
                PLATFORM_RATE_LIMIT
            };
            faulted(rate_limited_response(limit, 1), codes::RATE_LIMITED)
        }
        // `deliver` closes the connection instead of sending this.
        Some(FaultAnswer::DropConnection) => faulted(StatusCode::OK.into_response(), NO_CODE),
        Some(FaultAnswer::MalformedJson) => {
            let body = match answer() {
                Ok((body, _)) => body,
                Err(rejection) => rejection.body(),
            };
            faulted(json_response(StatusCode::OK, first_half(body)), NO_CODE)
        }
        None => match answer() {
            Ok((body, rows)) => Outcome {
                response: json_response(StatusCode::OK, body),
                code: codes::OK,
                plan,
                rows,
            },
            Err(rejection) => {
                let code = rejection.code;
                Outcome {
                    response: rejection.into_response(),
                    code,
                    plan,
                    rows: Rows::default(),
                }
            }
        },
    }
}

/// The first half of `body` (cut on a char boundary): never valid JSON, since an object's
/// closing brace is its last byte.
fn first_half(mut body: String) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body.truncate(cut);
    body
}

/// Counts an outcome's code and faults, for any faultable API.
pub(crate) fn record_outcome(stats: &mut SimStats, code: i64, plan: &FaultPlan) {
    if code != codes::OK && code != NO_CODE {
        *stats.errors_by_code.entry(code).or_default() += 1;
    }
    if plan.is_faulted() {
        stats.faults_injected += 1;
    }
}

/// Sends the response after the planned delay, or drops the connection without an answer.
pub(crate) async fn deliver(response: Response, plan: FaultPlan) -> Response {
    if let Some(delay) = plan.delay {
        tokio::time::sleep(delay).await;
    }
    if plan.answer == Some(FaultAnswer::DropConnection) {
        // Unwinding out of the handler kills hyper's connection task, which closes the socket
        // with no response written. `resume_unwind` skips the panic hook: no stderr noise.
        std::panic::resume_unwind(Box::new("sim: drop connection"));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------------

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialize")
}

/// A rejected request: HTTP status, platform code and message.
#[derive(Debug)]
pub(crate) struct Rejection {
    http: StatusCode,
    code: i64,
    msg: String,
}

impl Rejection {
    pub(crate) fn bad_request(code: i64, msg: impl Into<String>) -> Rejection {
        Rejection {
            http: StatusCode::BAD_REQUEST,
            code,
            msg: msg.into(),
        }
    }

    pub(crate) fn param(msg: impl std::fmt::Display) -> Rejection {
        Rejection::bad_request(codes::PARAM_INVALID, format!("param is invalid: {msg}"))
    }

    /// The error body every API shares, with an empty `data`.
    fn body(&self) -> String {
        format!(
            r#"{{"code":{},"msg":{},"data":{{}}}}"#,
            self.code,
            json_string(&self.msg)
        )
    }

    fn into_response(self) -> Response {
        let body = self.body();
        json_response(self.http, body)
    }
}

// ---------------------------------------------------------------------------------------------
// Token endpoint.
// ---------------------------------------------------------------------------------------------

struct TokenStore {
    rng: StdRng,
    /// The token handed out by the last mint; reissued while it has enough life left.
    current: Option<String>,
    expiry_by_token: HashMap<String, Instant>,
}

impl TokenStore {
    /// Follows the platform: reissue the current token (with its remaining life) unless it has
    /// less than 30 minutes left (half the ttl for ttls under an hour, and never under 1 s, so
    /// a reissued token never says `expire: 0`); then mint a new one, leaving the old one valid
    /// until its own expiry. A ttl of 0 is taken as 1 s.
    fn issue(&mut self, now: Instant, ttl_secs: u64) -> (String, u64) {
        self.expiry_by_token.retain(|_, expiry| *expiry > now);
        let ttl_secs = ttl_secs.max(1);
        let refresh_below = if ttl_secs < 3600 {
            (ttl_secs / 2).max(1)
        } else {
            1800
        };
        if let Some(current) = &self.current
            && let Some(expiry) = self.expiry_by_token.get(current)
        {
            let left = expiry.saturating_duration_since(now).as_secs();
            if left >= refresh_below {
                return (current.clone(), left);
            }
        }
        let token = format!(
            "t-{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.rng.random::<u64>()
        );
        self.expiry_by_token
            .insert(token.clone(), now + Duration::from_secs(ttl_secs));
        self.current = Some(token.clone());
        (token, ttl_secs)
    }

    /// Forgets every token, so none is valid and the next issue mints a new one.
    fn expire_all(&mut self) {
        self.current = None;
        self.expiry_by_token.clear();
    }

    fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.expiry_by_token
            .get(token)
            .is_some_and(|expiry| *expiry > now)
    }
}

pub(crate) async fn token_handler(State(state): State<Arc<TenantState>>, body: Bytes) -> Response {
    let answer = answer_token(&state, &body);
    let mut stats = lock(&state.stats);
    stats.token_calls += 1;
    match answer {
        Ok((token, expire)) => {
            drop(stats);
            let body = format!(
                r#"{{"code":0,"msg":"ok","tenant_access_token":{},"expire":{expire}}}"#,
                json_string(&token)
            );
            json_response(StatusCode::OK, body)
        }
        Err(rejection) => {
            *stats.errors_by_code.entry(rejection.code).or_default() += 1;
            drop(stats);
            // The auth endpoint answers errors without a `data` member.
            let body = format!(
                r#"{{"code":{},"msg":{}}}"#,
                rejection.code,
                json_string(&rejection.msg)
            );
            json_response(rejection.http, body)
        }
    }
}

fn answer_token(state: &TenantState, body: &[u8]) -> Result<(String, u64), Rejection> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::bad_request(codes::UNKNOWN_APP, "invalid param"))?;
    let app_id = request.get("app_id").and_then(Value::as_str);
    let app_secret = request.get("app_secret").and_then(Value::as_str);
    if app_id != Some(state.config.app_id.as_str()) {
        return Err(Rejection::bad_request(
            codes::UNKNOWN_APP,
            "invalid param: app_id not found",
        ));
    }
    if app_secret != Some(state.config.app_secret.as_str()) {
        return Err(Rejection::bad_request(
            codes::BAD_SECRET,
            "app secret invalid",
        ));
    }
    let ttl_secs = state.token_ttl_secs.load(Ordering::Relaxed);
    Ok(lock(&state.tokens).issue(Instant::now(), ttl_secs))
}

// ---------------------------------------------------------------------------------------------
// Rate limit: fixed 1-second windows counted from the tenant's start, one per API.
// ---------------------------------------------------------------------------------------------

struct RateWindow {
    index: u64,
    used: u32,
}

impl RateWindow {
    /// Admits one request, or returns the whole seconds until the window resets (≥ 1).
    fn admit(&mut self, since_start: Duration, limit: u32) -> Result<(), u64> {
        self.admit_per(since_start, limit, 1)
    }

    /// [`RateWindow::admit`] over fixed windows of `seconds`.
    fn admit_per(&mut self, since_start: Duration, limit: u32, seconds: u64) -> Result<(), u64> {
        let index = since_start.as_secs() / seconds;
        if index != self.index {
            self.index = index;
            self.used = 0;
        }
        if self.used < limit {
            self.used += 1;
            return Ok(());
        }
        let left = Duration::from_secs((index + 1) * seconds).saturating_sub(since_start);
        Err(left.as_secs_f64().ceil().max(1.0) as u64)
    }
}

fn rate_limited_response(limit: u32, reset_secs: u64) -> Response {
    let body = format!(
        r#"{{"code":{},"msg":"request trigger frequency limit"}}"#,
        codes::RATE_LIMITED
    );
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body);
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-ogw-ratelimit-limit"),
        HeaderValue::from(limit),
    );
    headers.insert(
        HeaderName::from_static("x-ogw-ratelimit-reset"),
        HeaderValue::from(reset_secs),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Query endpoint.
// ---------------------------------------------------------------------------------------------

/// What a query body said, read leniently for stats and the log (before validation).
#[derive(Default)]
struct ObservedQuery {
    from: Option<i64>,
    to: Option<i64>,
    status: Option<i64>,
    user_ids: usize,
}

impl ObservedQuery {
    fn read(body: &Value) -> ObservedQuery {
        ObservedQuery {
            from: body.get("check_date_from").and_then(Value::as_i64),
            to: body.get("check_date_to").and_then(Value::as_i64),
            status: body.get("status").and_then(Value::as_i64),
            user_ids: body
                .get("user_ids")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        }
    }
}

/// A validated query.
struct QueryRequest {
    id_type: IdType,
    users: Vec<(String, usize)>,
    from: NaiveDate,
    to: NaiveDate,
    status: i32,
}

/// A yyyyMMdd integer as a date.
fn parse_day(value: i64) -> Option<NaiveDate> {
    let year = i32::try_from(value / 10_000).ok()?;
    let month = u32::try_from(value / 100 % 100).ok()?;
    let day = u32::try_from(value % 100).ok()?;
    if !(10_000_000..=99_999_999).contains(&value) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

pub(crate) async fn query_handler(
    State(state): State<Arc<TenantState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let employee_type = query
        .ok()
        .and_then(|Query(mut params)| params.remove("employee_type"));
    let parsed_body: Result<Value, serde_json::Error> = serde_json::from_slice(&body);
    let observed = parsed_body
        .as_ref()
        .map(ObservedQuery::read)
        .unwrap_or_default();
    observe(&state, &observed);

    let outcome: Outcome<[u64; 4]> = gate(&state, Api::Query, &headers, || {
        let request = validate(&state, employee_type.as_deref(), parsed_body)?;
        Ok(render_answer(&state, &request))
    });
    let code = outcome.code;
    {
        let mut stats = lock(&state.stats);
        stats.query_calls += 1;
        match code {
            codes::OK => stats.query_ok += 1,
            codes::RATE_LIMITED => stats.rate_limited += 1,
            _ => {}
        }
        record_outcome(&mut stats, code, &outcome.plan);
        stats.queries.push(QueryLogEntry {
            employee_type: employee_type.unwrap_or_default(),
            from: observed.from.unwrap_or_default(),
            to: observed.to.unwrap_or_default(),
            status: observed.status,
            user_ids: observed.user_ids,
            code,
            fault: outcome.plan.name(),
        });
    }
    let response = deliver(outcome.response, outcome.plan).await;
    // Rows count once sent: a slow answer whose client gave up (dropping this future) never
    // reaches here.
    let mut stats = lock(&state.stats);
    for (kind, count) in Kind::ALL.iter().zip(outcome.rows) {
        *stats
            .rows_served
            .entry(kind.table().to_owned())
            .or_default() += count;
    }
    drop(stats);
    response
}

/// Records the maxima a client must respect, from the raw body, before any rejection.
fn observe(state: &TenantState, observed: &ObservedQuery) {
    let mut stats = lock(&state.stats);
    stats.max_user_ids_per_query = stats.max_user_ids_per_query.max(observed.user_ids);
    let to = observed.to.and_then(parse_day);
    if let Some(to) = to {
        stats.max_check_date_to = Some(stats.max_check_date_to.map_or(to, |max| max.max(to)));
    }
    if let (Some(from), Some(to)) = (observed.from.and_then(parse_day), to) {
        stats.max_window_days = stats.max_window_days.max((to - from).num_days());
    }
}

fn authorize(state: &TenantState, headers: &HeaderMap) -> Result<(), Rejection> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Rejection::bad_request(
                codes::MISSING_TOKEN,
                "Missing access token for authorization. Please make a request with token attached.",
            )
        })?;
    if lock(&state.tokens).is_valid(token, Instant::now()) {
        Ok(())
    } else {
        Err(Rejection::bad_request(
            codes::TENANT_TOKEN_INVALID,
            "Invalid access token for authorization. Please make a request with token attached.",
        ))
    }
}

fn validate(
    state: &TenantState,
    employee_type: Option<&str>,
    body: Result<Value, serde_json::Error>,
) -> Result<QueryRequest, Rejection> {
    let id_type = employee_type
        .and_then(IdType::parse)
        .ok_or_else(|| Rejection::param("employee_type invalid"))?;
    let body =
        body.map_err(|err| Rejection::param(format!("request body is not valid JSON: {err}")))?;
    let body = body
        .as_object()
        .ok_or_else(|| Rejection::param("request body must be a JSON object"))?;

    let user_ids = match body.get("user_ids") {
        None | Some(Value::Null) => return Err(Rejection::param("user_ids is required")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| Rejection::param("user_ids must be an array of strings"))?,
        Some(_) => return Err(Rejection::param("user_ids must be an array of strings")),
    };
    if user_ids.is_empty() {
        return Err(Rejection::param("user_ids cannot be empty"));
    }
    if user_ids.len() > MAX_USER_IDS {
        return Err(Rejection::param(format!(
            "user_ids cannot contain more than {MAX_USER_IDS} ids"
        )));
    }

    let date_field = |name: &str| -> Result<NaiveDate, Rejection> {
        match body.get(name) {
            None | Some(Value::Null) => Err(Rejection::param(format!("{name} is required"))),
            Some(value) => value
                .as_i64()
                .and_then(parse_day)
                .ok_or_else(|| Rejection::param(format!("{name} must be a yyyyMMdd int date"))),
        }
    };
    let from = date_field("check_date_from")?;
    let to = date_field("check_date_to")?;
    if from > to {
        return Err(Rejection::param(
            "check_date_from cannot be later than check_date_to",
        ));
    }
    if (to - from).num_days() > MAX_WINDOW_DAYS as i64 {
        return Err(Rejection::bad_request(
            codes::PARAM_INVALID,
            "the interval between check_date_from and check_date_to cannot exceed 30 days",
        ));
    }
    let today = state.today();
    if today.succ_opt().is_none_or(|latest| to > latest) {
        return Err(Rejection::param(format!(
            "check_date_to cannot be later than today + 1 day (today is {})",
            today.format("%Y%m%d")
        )));
    }

    let status = match body.get("status") {
        None | Some(Value::Null) => DEFAULT_STATUS,
        Some(value) => value
            .as_i64()
            .filter(|status| (0..=4).contains(status))
            .map(|status| status as i32)
            .ok_or_else(|| Rejection::param("status must be one of 0, 1, 2, 3, 4"))?,
    };
    match body.get("check_date_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind))
            if ["PeriodTime", "CreateTime", "UpdateTime"].contains(&kind.as_str()) => {}
        Some(_) => {
            return Err(Rejection::param(
                "check_date_type must be one of PeriodTime, CreateTime, UpdateTime",
            ));
        }
    }

    let refused = state.refused.read().unwrap_or_else(PoisonError::into_inner);
    let mut users = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        let Some(user) = state.population.lookup(id_type, &user_id) else {
            return Err(Rejection::bad_request(
                codes::UNKNOWN_USER,
                "user_id is not exist or does not have permission",
            ));
        };
        if refused.contains(&user) {
            // Like the platform: one refused id fails the whole batch, and is named.
            return Err(Rejection::bad_request(
                codes::UNKNOWN_USER,
                format!("user_id is not exist or does not have permission: {user_id}"),
            ));
        }
        users.push((user_id, user));
    }
    drop(refused);
    Ok(QueryRequest {
        id_type,
        users,
        from,
        to,
        status,
    })
}

/// The code-0 body, written directly so the field order follows the doc, and the number of
/// list elements served per kind (in `Kind::ALL` order).
fn render_answer(state: &TenantState, request: &QueryRequest) -> (String, [u64; 4]) {
    let overlay = state.overlay.read().unwrap_or_else(PoisonError::into_inner);
    let mut rows = [0u64; 4];
    let mut body = String::from(r#"{"code":0,"msg":"success","data":{"user_approvals":["#);
    let mut first_object = true;
    let mut lists: [Vec<String>; 4] = Default::default();
    for (user_id, user) in &request.users {
        debug_assert_eq!(
            state.population.users()[*user].id(request.id_type),
            user_id.as_str()
        );
        for date in request
            .from
            .iter_days()
            .take_while(|date| *date <= request.to)
        {
            let day = state.population.user_day(*user, date);
            let inserted = overlay.inserted.get(&(*user, date));
            let listings = day.listings.iter().chain(inserted.into_iter().flatten());
            for list in &mut lists {
                list.clear();
            }
            for listing in listings {
                let status = overlay
                    .status_by_approval
                    .get(&listing.approval_id)
                    .copied()
                    .unwrap_or(listing.status);
                if status == request.status && listing.kind.listed_for_status(status) {
                    let slot = Kind::ALL
                        .iter()
                        .position(|kind| *kind == listing.kind)
                        .expect("every kind is in Kind::ALL");
                    lists[slot].push(state.population.render(listing));
                }
            }
            if lists.iter().all(Vec::is_empty) {
                continue;
            }
            if !first_object {
                body.push(',');
            }
            first_object = false;
            let _ = write!(
                body,
                r#"{{"user_id":{},"date":"{}""#,
                json_string(user_id),
                date.format("%Y%m%d")
            );
            for (slot, kind) in Kind::ALL.iter().enumerate() {
                // Kinds the queried status cannot return are omitted, the others are `[]`
                // when empty: clients must cope with both.
                if !kind.listed_for_status(request.status) {
                    continue;
                }
                let _ = write!(body, r#","{}":[{}]"#, kind.table(), lists[slot].join(","));
                rows[slot] += lists[slot].len() as u64;
            }
            let _ = write!(body, r#","time_zone":{}}}"#, json_string(&day.time_zone));
        }
    }
    body.push_str("]}}");
    (body, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_day_accepts_only_real_dates() {
        assert_eq!(parse_day(20260915), NaiveDate::from_ymd_opt(2026, 9, 15));
        assert_eq!(parse_day(20260231), None);
        assert_eq!(parse_day(2026091), None);
        assert_eq!(parse_day(-20260915), None);
    }

    #[test]
    fn tokens_are_reissued_until_the_refresh_threshold() {
        let mut store = TokenStore {
            rng: StdRng::seed_from_u64(1),
            current: None,
            expiry_by_token: HashMap::new(),
        };
        let start = Instant::now();
        let (first, expire) = store.issue(start, 7200);
        assert_eq!(expire, 7200);
        assert!(first.starts_with("t-") && first.len() == 34);
        let (again, expire) = store.issue(start + Duration::from_secs(600), 7200);
        assert_eq!((again.as_str(), expire), (first.as_str(), 6600));
        let late = start + Duration::from_secs(7200 - 1799);
        let (fresh, expire) = store.issue(late, 7200);
        assert_ne!(fresh, first);
        assert_eq!(expire, 7200);
        assert!(
            store.is_valid(&first, late),
            "the old token lives until its own expiry"
        );
        assert!(!store.is_valid(&first, start + Duration::from_secs(7200)));
    }

    #[test]
    fn short_ttls_never_reissue_a_token_with_no_life_left() {
        let mut store = TokenStore {
            rng: StdRng::seed_from_u64(2),
            current: None,
            expiry_by_token: HashMap::new(),
        };
        let start = Instant::now();
        let (first, expire) = store.issue(start, 2);
        assert_eq!(expire, 2);
        let at = |millis| start + Duration::from_millis(millis);
        assert_eq!(store.issue(at(500), 2), (first.clone(), 1));
        let (second, expire) = store.issue(at(1_200), 2);
        assert_ne!(second, first);
        assert_eq!(expire, 2);
        assert!(store.is_valid(&first, at(1_900)) && !store.is_valid(&first, at(2_000)));
        let (third, expire) = store.issue(at(3_000), 0);
        assert_eq!(expire, 1, "a ttl of 0 is taken as 1 s");
        assert!(store.is_valid(&third, at(3_500)));
    }

    #[test]
    fn rate_windows_reset_each_second() {
        let mut window = RateWindow { index: 0, used: 0 };
        let at = |millis| Duration::from_millis(millis);
        assert!(window.admit(at(100), 2).is_ok());
        assert!(window.admit(at(200), 2).is_ok());
        assert_eq!(window.admit(at(300), 2), Err(1));
        assert!(window.admit(at(1_000), 2).is_ok());
    }
}
