//! A simulated Feishu / Lark tenant: an HTTP server on 127.0.0.1 that serves the tenant token
//! and `attendance/v1/user_approvals/query` endpoints the way the platform does, for tests and
//! the demo.
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
//! - The server lives as long as the [`SimTenant`]: dropping it (or [`SimTenant::shutdown`])
//!   stops it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use attendance_sync::sim::{SimConfig, SimTenant};
//! let tenant = SimTenant::start(SimConfig { rate_limit_per_sec: 0, ..SimConfig::default() }).await?;
//! let base_url = tenant.base_url(); // point the client here
//! let ids = tenant.user_ids("employee_id").unwrap();
//! # let _ = (base_url, ids);
//! tenant.shutdown().await;
//! # Ok(()) }
//! ```

mod data;
mod fixtures;
mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use data::{IdType, Kind, Population};
use server::TenantState;

/// How a simulated tenant is populated and behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every generated id and record.
    pub seed: u64,
    /// Number of generated users (the fixture users come on top).
    pub users: usize,
    pub app_id: String,
    pub app_secret: String,
    /// Query requests admitted per fixed 1-second window; 0 = unlimited.
    pub rate_limit_per_sec: u32,
    /// Lifetime of a minted tenant_access_token.
    pub token_ttl_secs: u64,
    /// The platform's "today" (bounds `check_date_to`); None = today in Asia/Shanghai.
    pub today: Option<NaiveDate>,
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
    /// Query requests answered HTTP 429 / code 99991400.
    pub rate_limited: u64,
    /// Every non-zero code answered, by either endpoint (99991400 included).
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
    pub code: i64,
}

/// A running simulated tenant. Dropping it or calling [`SimTenant::shutdown`] stops the server.
pub struct SimTenant {
    state: Arc<TenantState>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimTenant {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime (spawned task).
    pub async fn start(config: SimConfig) -> std::io::Result<SimTenant> {
        let population = Population::build(config.seed, config.users)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(TenantState::new(config, population));
        let app = server::router(Arc::clone(&state));
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
        })
    }

    /// "http://127.0.0.1:PORT", without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

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

    /// Stops the server, waiting (up to 5 s) for in-flight requests to finish.
    pub async fn shutdown(mut self) {
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
        // Graceful stop: the server task notices the signal and closes its connections.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
