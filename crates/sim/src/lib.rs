//! A simulated Feishu / Lark tenant: an HTTP server on 127.0.0.1 that serves the tenant token,
//! `attendance/v1/user_approvals/query`, the attendance group lists, the contact department
//! tree and the third-party ("external") approval APIs the way the platform does, with
//! switchable faults, for tests and the demo.
//!
//! Invariants:
//! - The data is a pure function of (seed, user index, date), generated per request: the same
//!   [`SimConfig`] always serves the same bodies, and a 20,000-user year costs nothing until
//!   queried. [`SimTenant::set_status`] and [`SimTenant::insert`] are an overlay on top of it.
//! - Generated users come first (indexes `0..users`), then the fixture users `fx_shanghai`,
//!   `fx_newyork`, `fx_london`, `fx_lordhowe`, `fx_kolkata`, `fx_nozone`, `fx_badzone`, whose
//!   name is their id of every type and who list only their fixed records.
//! - Checks run in the platform's order (rate limit, auth, employee_type, body, user ids), and
//!   every query request is counted in [`SimStats`], whatever its answer.
//! - [`Faults`] strike the query, the four list endpoints and the five third-party approval
//!   endpoints (never the token endpoint), after the rate limit and auth checks and before
//!   parameter checks; an answer replaced by a fault serves no rows (a delay alone only
//!   postpones the real answer). A refused user
//!   ([`SimConfig::refused_user_ids`]) fails every query batch naming it, but stays listed in
//!   groups and departments, like a departed employee.
//! - Groups and departments are a pure function of the config too (see `directory.rs`): every
//!   user is a direct member of exactly one department, and in zero, one or two groups.
//! - List endpoints paginate with opaque page tokens (16 lowercase hex digits) that are stable
//!   for a given seed and listing; the last page answers `"page_token":""`, `"has_more":false`
//!   (`external_tasks`'s last page has no `page_token` at all, as its page documents).
//! - The server lives as long as the [`SimTenant`]: dropping it (or [`SimTenant::shutdown`])
//!   stops it, and the long connection's listener, dispatcher and sockets with it.
//! - Approval events (see `events.rs`) are built from the records the query API serves, so a
//!   pushed event and the query answer always agree; they are pushed by webhook
//!   (`webhook.rs`) or over the long connection (`long_connection.rs`, its discovery endpoint
//!   routed here), as [`SimConfig::events`] says.
//! - Admin calls (`admin.rs`: `POST /sim/admin/approve`, `POST /sim/admin/revoke`) let an
//!   operator or a demo approve or revoke on demand and push the event(s); they are routed
//!   outside `/open-apis/`, so no platform client reaches them, and they change the data only
//!   through the overlay, like [`SimTenant::insert`] and [`SimTenant::revoke`].
//! - Third-party approvals (`external.rs`): the tenant starts with
//!   [`SimConfig::external_approvals`] definitions ([`external_approval_codes`]) and no
//!   instance; instances synced to it are stored by `instance_id` with the platform's REPLACE /
//!   UPDATE rules, answered by the check and task-list endpoints, and read back by
//!   [`SimTenant::external_instances`]. [`external_documents`] makes source documents to sync.
//!   [`ExternalSettings::try_later_share`] answers a share of creates and checks 1395001.
//!
//! Depends on `attendance-core` (the query's limits) and `attendance-feishu` (endpoints and codes,
//! named once for both sides). It must never depend on the output root or the orchestration:
//! the tenant knows the platform, not the job. It is a dev-dependency of the other crates and an
//! optional dependency of the binary (the default feature `sim`, for `demo` and `simulate`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use attendance_sim::{SimConfig, SimTenant};
//! let tenant = SimTenant::start(SimConfig { rate_limit_per_sec: 0, ..SimConfig::default() }).await?;
//! let base_url = tenant.base_url(); // point the client here
//! let ids = tenant.user_ids("employee_id").unwrap();
//! # let _ = (base_url, ids);
//! tenant.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
#[cfg(test)]
mod admin_tests;
mod data;
mod directory;
#[cfg(test)]
mod directory_tests;
#[cfg(test)]
mod event_tests;
mod events;
mod external;
#[cfg(test)]
mod external_tests;
#[cfg(test)]
mod fault_tests;
mod faults;
mod fixtures;
mod lists;
mod long_connection;
mod server;
#[cfg(test)]
mod tests;
mod webhook;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use admin::Admin;
use attendance_feishu::endpoints::{self, route};
use attendance_feishu::frame::ENDPOINT_PATH;
use axum::Router;
use axum::routing::{get, post};
use data::{IdType, Kind, Population};
use directory::Directory;
use long_connection::LongConnection;
use server::TenantState;

pub use events::{
    EventSettings, HandshakeRefusal, LongConnectionSettings, LongConnectionStats, SimEvent,
    WebhookReport,
};
pub use external::{ExternalSettings, external_approval_codes, external_documents};

use attendance_core::external::ExternalInstance;

/// Fault switches: the share of answers of the query, list and third-party approval endpoints
/// that fail the way the platform sometimes does. All zero (the default) = a healthy platform.
/// Shares are in `0..=1`;
/// the five answer-replacing ones are exclusive and should sum to at most 1, `slow` can come on
/// top of any of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// HTTP 500 with a non-JSON body ("<html>500 Internal Server Error</html>").
    pub http_500: f64,
    /// HTTP 500 with `{"code":1225000,"msg":"internal server error","data":{}}`.
    pub code_1225000: f64,
    /// Chance per request of starting a burst: this request and every request to the same
    /// endpoint for the next second answer HTTP 429 / code 99991400 with
    /// `x-ogw-ratelimit-reset: 1`.
    pub burst_429: f64,
    /// Answers held back `slow_ms` before being sent (or dropped).
    pub slow: f64,
    pub slow_ms: u64,
    /// Requests whose connection is closed with no answer at all.
    pub drop_connection: f64,
    /// HTTP 200 with the first half of the answer's body: JSON that does not parse.
    pub malformed_json: f64,
}

/// How a simulated tenant is populated and behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every generated id and record.
    pub seed: u64,
    /// Number of generated users (the fixture users come on top).
    pub users: usize,
    pub app_id: String,
    pub app_secret: String,
    /// Requests admitted per fixed 1-second window, counted per API (the query and each list
    /// endpoint have their own window); 0 = unlimited.
    pub rate_limit_per_sec: u32,
    /// Lifetime of a minted tenant_access_token (0 is taken as 1 s).
    pub token_ttl_secs: u64,
    /// The platform's "today" (bounds `check_date_to`); None = today in Asia/Shanghai.
    pub today: Option<NaiveDate>,
    /// Faults from the start; [`SimTenant::set_faults`] changes them at runtime.
    pub faults: Faults,
    /// employee_ids of users the query refuses (code 1220004 for the whole batch); each must
    /// be a user of this tenant. [`SimTenant::set_refused_users`] changes them at runtime.
    pub refused_user_ids: Vec<String>,
    /// Number of attendance groups.
    pub groups: usize,
    /// Number of contact departments (under the root "0", nested up to 3 levels).
    pub departments: usize,
    /// How approval events are pushed (webhook and long connection).
    pub events: EventSettings,
    /// Number of third-party approval definitions the tenant starts with (their codes are
    /// [`external_approval_codes`]`(seed, external_approvals)`).
    pub external_approvals: usize,
    /// How the third-party approval APIs behave.
    pub external: ExternalSettings,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 42,
            users: 300,
            app_id: "cli_sim_app".to_owned(),
            app_secret: "sim-secret-never-logged".to_owned(),
            rate_limit_per_sec: 50,
            token_ttl_secs: 7200,
            today: None,
            faults: Faults::default(),
            refused_user_ids: Vec::new(),
            groups: 5,
            departments: 8,
            events: EventSettings::default(),
            external_approvals: 24,
            external: ExternalSettings::default(),
        }
    }
}

/// What the tenant has been asked and answered since start (or the last reset).
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Requests to the token endpoint, whatever the answer.
    pub token_calls: u64,
    /// Requests to the query endpoint, whatever the answer.
    pub query_calls: u64,
    /// Query requests answered code 0.
    pub query_ok: u64,
    /// Query requests answered HTTP 429 / code 99991400 (by the rate limit or a fault burst).
    pub rate_limited: u64,
    /// Every non-zero code answered, by any endpoint (99991400 and 1225000 included; answers
    /// without a code, such as an HTML 500, are not counted here).
    pub errors_by_code: BTreeMap<i64, u64>,
    pub max_user_ids_per_query: usize,
    /// Largest `check_date_to - check_date_from` (days) on any query, even rejected ones.
    pub max_window_days: i64,
    /// Latest `check_date_to` on any query, even rejected ones.
    pub max_check_date_to: Option<NaiveDate>,
    /// List elements sent in code-0 answers, per table ("outs", "leaves", "overtime_works",
    /// "trips"; all four keys are present from start and after a reset).
    pub rows_served: BTreeMap<String, u64>,
    /// Every query request, in arrival order.
    pub queries: Vec<QueryLogEntry>,
    /// Requests to `GET attendance/v1/groups`, whatever the answer.
    pub group_list_calls: u64,
    /// Requests to `GET attendance/v1/groups/:group_id/list_user`, whatever the answer.
    pub list_user_calls: u64,
    /// Requests to `GET contact/v3/departments/:department_id/children`, whatever the answer.
    pub department_calls: u64,
    /// Requests to `GET contact/v3/users/find_by_department`, whatever the answer.
    pub find_by_department_calls: u64,
    /// Requests that met at least one fault (a slow 500 counts once), on any endpoint.
    pub faults_injected: u64,
    /// Requests to `POST approval/v4/external_instances`, whatever the answer.
    pub external_instance_calls: u64,
    /// The `instance_id` of every `external_instances` body that parsed as JSON, in arrival
    /// order, whatever the answer (refused, rate limited, faulted or accepted).
    pub external_instances_received: Vec<String>,
    /// Requests to `POST approval/v4/external_instances/check`, whatever the answer.
    pub external_check_calls: u64,
    /// Requests to `GET approval/v4/external_tasks`, whatever the answer.
    pub external_task_list_calls: u64,
    /// Requests to `POST approval/v4/external_approvals` and
    /// `GET approval/v4/external_approvals/:approval_code`, whatever the answer.
    pub external_approval_calls: u64,
}

/// One query request as received. `from` / `to` are the raw yyyyMMdd ints (0 when missing or
/// not ints), `status` the raw status (None when omitted or not an int).
#[derive(Clone, Debug)]
pub struct QueryLogEntry {
    pub employee_type: String,
    pub from: i64,
    pub to: i64,
    pub status: Option<i64>,
    pub user_ids: usize,
    /// The body's code; [`NO_CODE`] when the answer carried none (HTML 500, truncated JSON,
    /// dropped connection).
    pub code: i64,
    /// The fault that struck this request, named as its [`Faults`] field ("http_500",
    /// "code_1225000", "burst_429", "drop_connection", "malformed_json", or "slow" for a delay
    /// alone).
    pub fault: Option<&'static str>,
}

/// [`QueryLogEntry::code`] of an answer that carried no code.
pub const NO_CODE: i64 = -1;

/// A running simulated tenant. Dropping it or calling [`SimTenant::shutdown`] stops the server.
pub struct SimTenant {
    state: Arc<TenantState>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    long_connection: Arc<LongConnection>,
    /// The long connection's listener and dispatcher, aborted when the tenant stops.
    background: Vec<JoinHandle<()>>,
    /// The admin calls' shared state; their webhook pushes are aborted when the tenant stops.
    admin: Arc<Admin>,
}

impl SimTenant {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime (spawned task). Fails with
    /// `InvalidInput` on too many users or an unknown id in `refused_user_ids`.
    pub async fn start(config: SimConfig) -> std::io::Result<SimTenant> {
        let population = Population::build(
            config.seed,
            config.users,
            fixtures::users(),
            fixtures::records(),
        )?;
        let refused = config
            .refused_user_ids
            .iter()
            .map(|employee_id| {
                population
                    .lookup(IdType::EmployeeId, employee_id)
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("refused_user_ids: unknown employee_id {employee_id:?}"),
                        )
                    })
            })
            .collect::<std::io::Result<HashSet<usize>>>()?;
        let directory = Directory::build(
            config.seed,
            config.users,
            population.users().len(),
            config.groups,
            config.departments,
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (long_connection, background) = LongConnection::start(&config).await?;
        let state = Arc::new(TenantState::new(config, population, directory, refused));
        let admin = Arc::new(Admin::new(Arc::clone(&state), Arc::clone(&long_connection)));
        let app = router(
            Arc::clone(&state),
            Arc::clone(&long_connection),
            Arc::clone(&admin),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                // A dropped sender means the tenant is gone: stop as well.
                let _ = stopped.await;
            });
            if let Err(err) = serving.await {
                tracing::warn!(%err, "simulated tenant stopped serving");
            }
        });
        tracing::debug!(%addr, "simulated tenant listening");
        Ok(SimTenant {
            state,
            addr,
            stop: Some(stop),
            task: Some(task),
            long_connection,
            background,
            admin,
        })
    }

    /// "http://127.0.0.1:PORT", without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration the tenant started with (the runtime setters do not change it).
    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// Every user (generated, then fixtures) as ids of `employee_type` ("employee_id" |
    /// "employee_no" | "open_id"); None for an unknown type.
    pub fn user_ids(&self, employee_type: &str) -> Option<Vec<String>> {
        let id_type = IdType::parse(employee_type)?;
        Some(
            self.state
                .population
                .users()
                .iter()
                .map(|user| user.id(id_type).to_owned())
                .collect(),
        )
    }

    /// A snapshot of the stats.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    /// Sets the status of every occurrence of this approval (e.g. 4 = revoked), generated,
    /// fixture or inserted. Returns false if the approval id is unknown.
    pub fn set_status(&self, approval_id: &str, status: i32) -> bool {
        self.state.set_status(approval_id, status)
    }

    /// Adds a record as the platform would list it: `kind` is "outs" | "leaves" |
    /// "overtime_works" | "trips"; `record` is the JSON object of one list element, sent as is.
    /// It is listed under `date` for the user whose employee_id is given, with `status`, next
    /// to that user-date's other records and with its time_zone. Its `approval_id` (if any)
    /// becomes known to [`SimTenant::set_status`].
    ///
    /// # Panics
    /// On an unknown employee_id or kind: both are mistakes in the calling test.
    pub fn insert(
        &self,
        employee_id: &str,
        date: NaiveDate,
        kind: &str,
        status: i32,
        record: serde_json::Value,
    ) {
        let user = self
            .state
            .population
            .lookup(IdType::EmployeeId, employee_id)
            .unwrap_or_else(|| panic!("sim insert: unknown employee_id {employee_id:?}"));
        let kind = Kind::from_table(kind).unwrap_or_else(|| {
            panic!("sim insert: kind must be outs, leaves, overtime_works or trips, not {kind:?}")
        });
        self.state.insert(user, date, kind, status, record);
    }

    /// Replaces the fault switches from the next request on. A 429 burst already under way
    /// runs its course (at most 1 s).
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Replaces the refused users (by employee_id) from the next request on.
    ///
    /// # Panics
    /// On an unknown employee_id: a mistake in the calling test.
    pub fn set_refused_users(&self, employee_ids: Vec<String>) {
        let refused = employee_ids
            .iter()
            .map(|employee_id| {
                self.state
                    .population
                    .lookup(IdType::EmployeeId, employee_id)
                    .unwrap_or_else(|| {
                        panic!("sim set_refused_users: unknown employee_id {employee_id:?}")
                    })
            })
            .collect();
        self.state.set_refused(refused);
    }

    /// Sets the lifetime of tokens minted from now on (at least 1 s); tokens already out keep
    /// their expiry.
    pub fn set_token_ttl(&self, secs: u64) {
        self.state.set_token_ttl(secs);
    }

    /// Ends the life of every token handed out so far, as if each had reached its expiry:
    /// requests carrying one answer 99991663, and the next token request mints a new token.
    pub fn expire_tokens(&self) {
        self.state.expire_tokens();
    }

    /// Every member of every attendance group, as ids of `employee_type`; None for an unknown
    /// type. About 3% of the generated users are in no group.
    pub fn group_members(&self, employee_type: &str) -> Option<BTreeSet<String>> {
        let id_type = IdType::parse(employee_type)?;
        let users = self.state.population.users();
        Some(
            self.state
                .directory
                .groups()
                .iter()
                .flat_map(|group| group.members.iter())
                .map(|&user| users[user].id(id_type).to_owned())
                .collect(),
        )
    }

    /// Every direct member of every department (and of the root), as ids of `employee_type`:
    /// all users, since each belongs to exactly one department. None for an unknown type.
    pub fn department_members(&self, employee_type: &str) -> Option<BTreeSet<String>> {
        let id_type = IdType::parse(employee_type)?;
        let directory = &self.state.directory;
        let users = self.state.population.users();
        let root = directory::DepartmentNode::Root;
        let nodes = std::iter::once(root).chain(
            directory
                .descendants(root)
                .into_iter()
                .map(directory::DepartmentNode::Department),
        );
        Some(
            nodes
                .flat_map(|node| directory.members(node).iter())
                .map(|&user| users[user].id(id_type).to_owned())
                .collect(),
        )
    }

    /// The group ids the user with this employee_id is in (empty for an unknown user).
    pub fn groups_of(&self, employee_id: &str) -> Vec<String> {
        let directory = &self.state.directory;
        self.state
            .population
            .lookup(IdType::EmployeeId, employee_id)
            .map(|user| {
                directory
                    .groups_of(user)
                    .into_iter()
                    .map(|group| directory.groups()[group].id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the share of third-party instance creates and checks answered 1395001 ("try again
    /// later") from the next request on.
    pub fn set_external_try_later(&self, share: f64) {
        self.state.external.set_try_later(share);
    }

    /// The third-party instances the tenant holds, sorted by instance_id.
    pub fn external_instances(&self) -> Vec<ExternalInstance> {
        self.state.external.instances()
    }

    /// The third-party instance with this id, as the tenant holds it.
    pub fn external_instance(&self, instance_id: &str) -> Option<ExternalInstance> {
        self.state.external.instance(instance_id)
    }

    /// Simulates data loss on the platform: drops these instances, and these
    /// (instance_id, task_id) tasks. Unknown ids are ignored.
    pub fn external_lose(&self, instance_ids: &[&str], tasks: &[(&str, &str)]) {
        self.state.external.lose(instance_ids, tasks);
    }

    /// The codes of the third-party approval definitions, sorted (those the tenant started
    /// with, and those created since).
    pub fn external_approval_codes(&self) -> Vec<String> {
        self.state.external.approval_codes()
    }

    /// Stops the server, waiting (up to 5 s) for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
        self.admin.abort_deliveries();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimTenant {
    fn drop(&mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
        self.admin.abort_deliveries();
        // Graceful stop: the server task notices the signal and closes its connections.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The tenant's routes: every endpoint the job calls, at the path the client calls it by, the
/// long connection's discovery endpoint, and the admin calls (outside `/open-apis/`).
fn router(
    state: Arc<TenantState>,
    long_connection: Arc<LongConnection>,
    admin: Arc<Admin>,
) -> Router {
    Router::new()
        .route(
            ENDPOINT_PATH,
            post(long_connection::endpoint_handler).with_state(long_connection),
        )
        .route(
            admin::APPROVE_PATH,
            post(admin::approve_handler).with_state(Arc::clone(&admin)),
        )
        .route(
            admin::REVOKE_PATH,
            post(admin::revoke_handler).with_state(admin),
        )
        .route(&route(endpoints::TOKEN), post(server::token_handler))
        .route(&route(endpoints::QUERY), post(server::query_handler))
        .route(&route(endpoints::GROUPS), get(lists::group_list_handler))
        .route(
            &route(endpoints::GROUP_USERS),
            get(lists::list_user_handler),
        )
        .route(
            &route(endpoints::DEPARTMENTS),
            get(lists::department_children_handler),
        )
        .route(
            &route(endpoints::DEPARTMENT_USERS),
            get(lists::find_by_department_handler),
        )
        .route(
            &route(endpoints::EXTERNAL_INSTANCES),
            post(external::create_instance_handler),
        )
        .route(
            &route(endpoints::EXTERNAL_INSTANCES_CHECK),
            post(external::check_handler),
        )
        .route(
            &route(endpoints::EXTERNAL_TASKS),
            get(external::list_tasks_handler),
        )
        .route(
            &route(endpoints::EXTERNAL_APPROVALS),
            post(external::create_approval_handler),
        )
        .route(
            &route(endpoints::EXTERNAL_APPROVAL),
            get(external::get_approval_handler),
        )
        .with_state(state)
}
