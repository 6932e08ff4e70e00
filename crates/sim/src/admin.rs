//! The tenant's admin endpoints, `POST /sim/admin/approve` and `POST /sim/admin/revoke`: an
//! operator (curl) or a demo makes the tenant approve or revoke something on demand and send
//! the event(s), by webhook or over the long connection; and [`SimTenant::approve`], the same
//! without the delivery.
//!
//! Invariants:
//! - The admin routes live under `/sim/admin/`, never under `/open-apis/`: a client of the
//!   platform's API cannot reach them by any path it calls. They need no auth (the tenant
//!   listens on loopback only), meet no rate limit and no fault, and are not counted in
//!   [`crate::SimStats`].
//! - A request is fully validated (body, kind, date, delivery target, ids) before it changes
//!   anything: a 400 or 404 leaves the tenant as it was. Bodies are JSON objects with exactly
//!   the documented fields; every answer is JSON, errors `{"msg": …}`.
//! - An approval is a new approved (status 2) record of the overlay, listed by the query API
//!   under its user and date from the moment the answer is sent; its id is 19 digits, fresh
//!   (never a generated, fixture or earlier id), and its events are built by the builder
//!   [`SimTenant::approval_events`] uses, from the very record the query API lists, so they
//!   are the events `approval_events` gives for it (same uuids).
//! - A revoke is [`SimTenant::revoke`]: status 4 from now on and a revert with a fresh uuid.
//! - The answer is sent at once: a webhook push runs in a task of its own (the config's
//!   timeout, retries and duplicates apply), which the tenant aborts when it stops; a long
//!   connection push is queued like [`SimTenant::push_long_connection`].

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::data::{IdType, Kind};
use crate::events::{self, Issuer, SimEvent};
use crate::long_connection::LongConnection;
use crate::server::{TenantState, lock};
use crate::{SimTenant, webhook};

/// Route of the approve call.
pub(crate) const APPROVE_PATH: &str = "/sim/admin/approve";
/// Route of the revoke call.
pub(crate) const REVOKE_PATH: &str = "/sim/admin/revoke";

/// Years an admin approval may be dated in (the generator's date arithmetic stays in range).
const YEARS: std::ops::RangeInclusive<i32> = 1900..=2600;

/// What the admin handlers share: the tenant, its long connection and the webhook pushes
/// under way.
pub(crate) struct Admin {
    state: Arc<TenantState>,
    long_connection: Arc<LongConnection>,
    /// Webhook pushes started by admin calls; aborted when the tenant stops.
    deliveries: Mutex<JoinSet<()>>,
}

impl Admin {
    pub(crate) fn new(state: Arc<TenantState>, long_connection: Arc<LongConnection>) -> Admin {
        Admin {
            state,
            long_connection,
            deliveries: Mutex::new(JoinSet::new()),
        }
    }

    /// Aborts every webhook push an admin call started that is still under way.
    pub(crate) fn abort_deliveries(&self) {
        lock(&self.deliveries).abort_all();
    }

    /// Sends the events where `target` says, without waiting for a webhook push to end.
    fn deliver(&self, target: Target, events: Vec<SimEvent>) {
        match target {
            Target::Nowhere => {}
            Target::LongConnection => self.long_connection.enqueue(events),
            Target::Webhook(url) => {
                let state = Arc::clone(&self.state);
                let mut deliveries = lock(&self.deliveries);
                // Forget the pushes that are over.
                while deliveries.try_join_next().is_some() {}
                deliveries.spawn(async move {
                    let report = webhook::push(&state.config, &url, events).await;
                    if report.gave_up.is_empty() {
                        tracing::info!(%url, acked = report.acked.len(), attempts = report.attempts,
                            "sim admin webhook push done");
                    } else {
                        tracing::warn!(%url, acked = report.acked.len(), gave_up = ?report.gave_up,
                            attempts = report.attempts, "sim admin webhook push gave up on events");
                    }
                });
            }
        }
    }
}

/// The `deliver` field: `{"webhook": "http://…"}`, `"long_connection"` or `"none"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Deliver {
    Webhook(String),
    LongConnection,
    None,
}

/// A checked delivery target.
enum Target {
    Webhook(String),
    LongConnection,
    Nowhere,
}

impl Deliver {
    fn check(self) -> Result<Target, Refusal> {
        match self {
            Deliver::None => Ok(Target::Nowhere),
            Deliver::LongConnection => Ok(Target::LongConnection),
            Deliver::Webhook(url) => match reqwest::Url::parse(&url) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() =>
                {
                    Ok(Target::Webhook(url))
                }
                _ => Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("deliver.webhook must be an http(s) URL, not {url:?}"),
                )),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    approval_id: String,
    deliver: Deliver,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    employee_id: String,
    /// YYYY-MM-DD.
    date: String,
    /// "outs" | "leaves" | "overtime_works".
    kind: String,
    deliver: Deliver,
}

/// A refused admin call: its HTTP status and message, answered as `{"msg": …}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"msg": msg.into()}))).into_response()
}

/// The body as `T`, or why not (400).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|err| Refusal(StatusCode::BAD_REQUEST, format!("bad request body: {err}")))
}

/// An event as the admin calls answer it.
fn event_json(event: &SimEvent) -> Value {
    json!({
        "id": event.id,
        "event_type": event.event_type,
        "instance_code": event.instance_code,
        "body": event.body,
    })
}

/// The kind of an approval the admin can make: one that has events (not trips).
fn approvable_kind(name: &str) -> Option<Kind> {
    Kind::from_table(name).filter(|kind| *kind != Kind::Trips)
}

/// Adds a new approved approval of `kind` (not trips) for user index `user` under `date`:
/// its approval id and its events.
fn approve(
    state: &TenantState,
    user: usize,
    date: NaiveDate,
    kind: Kind,
) -> (String, Vec<SimEvent>) {
    loop {
        let (approval_id, record) = state
            .population
            .admin_record(user, date, kind, rand::random());
        // The JSON the query API will list, read back the way `approval_events` reads it.
        let listed: Value = serde_json::from_str(&record.to_json()).unwrap_or(Value::Null);
        if !state.insert_new_record(user, date, kind, 2, approval_id.clone(), record) {
            // A clash with a known id (1 in 10^18): draw again.
            continue;
        }
        let events = Issuer::new(&state.config).approval(
            kind,
            &state.population.users()[user],
            &approval_id,
            &listed,
            false,
        );
        return (approval_id, events);
    }
}

/// `POST /sim/admin/approve`: 200 `{"approval_id","events"}`, 404 for an unknown employee_id,
/// 400 for a bad body, kind, date or delivery target.
pub(crate) async fn approve_handler(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let request: ApproveRequest = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(kind) = approvable_kind(&request.kind) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "kind must be outs, leaves or overtime_works, not {:?}",
                request.kind
            ),
        );
    };
    let date = match NaiveDate::parse_from_str(&request.date, "%Y-%m-%d") {
        Ok(date) if YEARS.contains(&date.year()) => date,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "date must be a YYYY-MM-DD date in the years {}..={}, not {:?}",
                    YEARS.start(),
                    YEARS.end(),
                    request.date
                ),
            );
        }
    };
    let target = match request.deliver.check() {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    let state = &admin.state;
    let Some(user) = state
        .population
        .lookup(IdType::EmployeeId, &request.employee_id)
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown employee_id {:?}", request.employee_id),
        );
    };
    let (approval_id, events) = approve(state, user, date, kind);
    tracing::info!(%approval_id, employee_id = %request.employee_id, %date, kind = kind.table(),
        events = events.len(), "sim admin approved");
    let answer = json!({
        "approval_id": approval_id,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    });
    admin.deliver(target, events);
    (StatusCode::OK, Json(answer)).into_response()
}

/// `POST /sim/admin/revoke`: 200 `{"event"}`, 404 for an unknown approval id or a trip, 400
/// for a bad body or delivery target.
pub(crate) async fn revoke_handler(State(admin): State<Arc<Admin>>, body: Bytes) -> Response {
    let request: RevokeRequest = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let target = match request.deliver.check() {
        Ok(target) => target,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(event) = events::revoke(&admin.state, &request.approval_id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown approval_id {:?}, or a trip (trips cannot be revoked)",
                request.approval_id
            ),
        );
    };
    tracing::info!(approval_id = %request.approval_id, event_id = %event.id, "sim admin revoked");
    let answer = json!({"event": event_json(&event)});
    admin.deliver(target, vec![event]);
    (StatusCode::OK, Json(answer)).into_response()
}

impl SimTenant {
    /// Adds a new approved (status 2) approval of `kind` ("outs" | "leaves" |
    /// "overtime_works") for the user with this employee_id, listed by the query API under
    /// `date` from now on (a one-day leave; overtime may run past midnight), with a fresh
    /// approval id. Returns that id and its events (a leave gives `leave_approval` and
    /// `leave_approvalV2`), the very events [`SimTenant::approval_events`] gives for it;
    /// nothing is pushed. None (and nothing added) for an unknown user or kind, or a date
    /// outside the years 1900..=2600.
    pub fn approve(
        &self,
        employee_id: &str,
        date: NaiveDate,
        kind: &str,
    ) -> Option<(String, Vec<SimEvent>)> {
        let kind = approvable_kind(kind)?;
        if !YEARS.contains(&date.year()) {
            return None;
        }
        let user = self
            .state
            .population
            .lookup(IdType::EmployeeId, employee_id)?;
        Some(approve(&self.state, user, date, kind))
    }
}
