//! Third-party ("external") approvals on the simulated tenant: the definitions, the instances
//! synced to the approval center, and their five endpoints — `POST external_approvals`,
//! `GET external_approvals/{approval_code}`, `POST external_instances`,
//! `POST external_instances/check` and `GET external_tasks` — as `external-approvals.md`
//! describes them; and [`external_documents`], the source documents a third-party HR system
//! would export, to sync.
//!
//! Invariants:
//! - Every endpoint passes the shared gate (its own rate-limit window, auth, faults) before its
//!   own checks; every request is counted in its `external_*_calls` stat whatever the answer,
//!   and every create body that parses as JSON with an `instance_id` is logged in
//!   [`SimStats::external_instances_received`] on arrival, accepted or not. Parameter errors
//!   are HTTP 400 code 1390001 with a message naming the field (every problem, for an
//!   instance).
//! - An instance is checked with [`attendance_core::external::validate`] (the job's own rules,
//!   which cover the platform's) and must name a defined approval code; only then is the
//!   "try again later" switch drawn ([`ExternalSettings::try_later_share`], create and check
//!   only, from an RNG seeded by the config seed: one draw per request that reaches it), and
//!   a 1395001 answer changes nothing.
//! - Instances are keyed by `instance_id`. `REPLACE` (the default) stores the payload
//!   wholesale, without comparing `update_time`; `UPDATE` never deletes, and replaces the
//!   instance's own fields, a task or a cc only when its `update_time` is strictly greater than
//!   the stored one, keeping the fields the platform says cannot change. The approval code of
//!   a stored instance never changes, in either mode.
//! - `external_tasks` lists instances ordered by (approval_code, instance_id), paged with
//!   opaque tokens (16 lowercase hex digits: an offset under a check keyed by the seed and the
//!   filters, like `lists.rs`); `page_token` is present only when `has_more`.
//! - Definitions start as [`external_approval_codes`]`(seed, external_approvals)`; a create
//!   with a known code updates it, with an unknown one defines a new, server-generated code.
//! - [`external_documents`] is a pure function of its arguments, and every document it makes
//!   passes `validate`.
//!
//! Stream tags of this file's draws: 0x70..0x76 (beside those listed in `data.rs`).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::DateTime;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use attendance_core::external::model::{
    CheckInstance, CheckTask, DiffInstance, ExternalInstance, MsTime, Task, UPDATE,
};
use attendance_core::external::validate;
use attendance_core::external::validate::TASK_STATUSES;
use attendance_feishu::codes;

use super::SimConfig;
use super::data::hash_of;
use super::faults::Api;
use super::lists::{finish, success_body};
use super::server::{Rejection, TenantState, gate, lock};

const TAG_CODES: u64 = 0x70;
const TAG_NEW_CODE: u64 = 0x71;
const TAG_TRY_LATER: u64 = 0x72;
const TAG_PAGE_TOKEN: u64 = 0x73;
const TAG_APPROVAL_ID: u64 = 0x74;
const TAG_DOCUMENT: u64 = 0x75;
const TAG_DEPARTMENT: u64 = 0x76;

/// Most approval codes, and most instance ids, one `external_tasks` request may filter on.
const MAX_FILTER: usize = 20;
const TASKS_PAGE_SIZE_DEFAULT: usize = 50;
const TASKS_PAGE_SIZE_MAX: usize = 500;

/// The message of a 1395001 answer.
pub(crate) const TRY_LATER_MSG: &str = "There have been some errors. Please try again later";

/// How the tenant's third-party approval APIs behave.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalSettings {
    /// Share (`0..=1`) of instance create and check requests (valid ones: after their own
    /// checks) answered HTTP 400 / code 1395001 "There have been some errors. Please try again
    /// later", changing nothing. [`super::SimTenant::set_external_try_later`] changes it at
    /// runtime.
    pub try_later_share: f64,
    /// Requests admitted per fixed one-minute window on each third-party API, on top of the
    /// per-second limit (the platform's: 1000); 0 = unlimited. Past it: HTTP 429 / 99991400.
    pub rate_limit_per_min: u32,
}

impl Default for ExternalSettings {
    fn default() -> ExternalSettings {
        ExternalSettings {
            try_later_share: 0.0,
            rate_limit_per_min: 1000,
        }
    }
}

/// `n` third-party approval codes, UUID-like upper-case hex ("84C18825-A3D2-41D0-891F-…"),
/// a pure function of the seed: the definitions a tenant starts with.
pub fn external_approval_codes(seed: u64, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| {
            uuid_like(
                hash_of(&[seed, TAG_CODES, i, 0]),
                hash_of(&[seed, TAG_CODES, i, 1]),
            )
        })
        .collect()
}

fn uuid_like(a: u64, b: u64) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A stable hash of a string (for token keys and internal ids).
fn hash_str(text: &str) -> u64 {
    let mut parts = vec![text.len() as u64];
    parts.extend(text.as_bytes().chunks(8).map(|chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(word)
    }));
    hash_of(&parts)
}

/// The platform's internal id of a definition: 19 decimal digits, derived from its code.
fn approval_id(seed: u64, approval_code: &str) -> String {
    let n = hash_of(&[seed, TAG_APPROVAL_ID, hash_str(approval_code)]) % 1_000_000_000_000_000_000;
    (7_000_000_000_000_000_000 + n).to_string()
}

// ---------------------------------------------------------------------------------------------
// The store.
// ---------------------------------------------------------------------------------------------

/// The tenant's third-party definitions and instances.
pub(crate) struct ExternalStore {
    seed: u64,
    inner: Mutex<Store>,
}

struct Store {
    /// Definitions by approval code, as last created (their `approval_code` is the key).
    definitions: BTreeMap<String, Value>,
    /// Instances by instance_id.
    instances: BTreeMap<String, ExternalInstance>,
    try_later_share: f64,
    try_later_rng: StdRng,
    /// Server-generated codes made so far.
    minted: u64,
}

impl ExternalStore {
    pub(crate) fn new(config: &SimConfig) -> ExternalStore {
        let seed = config.seed;
        let definitions = external_approval_codes(seed, config.external_approvals)
            .into_iter()
            .enumerate()
            .map(|(i, code)| {
                let definition = initial_definition(&code, i);
                (code, definition)
            })
            .collect();
        ExternalStore {
            seed,
            inner: Mutex::new(Store {
                definitions,
                instances: BTreeMap::new(),
                try_later_share: config.external.try_later_share,
                try_later_rng: StdRng::seed_from_u64(hash_of(&[seed, TAG_TRY_LATER])),
                minted: 0,
            }),
        }
    }

    pub(crate) fn set_try_later(&self, share: f64) {
        lock(&self.inner).try_later_share = share;
    }

    pub(crate) fn instances(&self) -> Vec<ExternalInstance> {
        lock(&self.inner).instances.values().cloned().collect()
    }

    pub(crate) fn instance(&self, instance_id: &str) -> Option<ExternalInstance> {
        lock(&self.inner).instances.get(instance_id).cloned()
    }

    pub(crate) fn approval_codes(&self) -> Vec<String> {
        lock(&self.inner).definitions.keys().cloned().collect()
    }

    /// Drops these instances, and these (instance_id, task_id) tasks.
    pub(crate) fn lose(&self, instance_ids: &[&str], tasks: &[(&str, &str)]) {
        let mut store = lock(&self.inner);
        for id in instance_ids {
            store.instances.remove(*id);
        }
        for (instance_id, task_id) in tasks {
            if let Some(list) = store
                .instances
                .get_mut(*instance_id)
                .and_then(|instance| instance.task_list.as_mut())
            {
                list.retain(|task| task.task_id != *task_id);
            }
        }
    }
}

impl Store {
    /// Whether this request is answered 1395001 (one draw per call).
    fn try_later(&mut self) -> bool {
        let roll: f64 = self.try_later_rng.random();
        roll < self.try_later_share
    }

    /// A code not defined yet, made by the server.
    fn mint_code(&mut self, seed: u64) -> String {
        loop {
            self.minted += 1;
            let n = self.minted;
            let code = uuid_like(
                hash_of(&[seed, TAG_NEW_CODE, n, 0]),
                hash_of(&[seed, TAG_NEW_CODE, n, 1]),
            );
            if !self.definitions.contains_key(&code) {
                return code;
            }
        }
    }

    /// Applies a valid instance of a defined approval; the instance as stored afterwards.
    fn apply(&mut self, incoming: ExternalInstance) -> ExternalInstance {
        match self.instances.entry(incoming.instance_id.clone()) {
            Entry::Vacant(slot) => slot.insert(incoming).clone(),
            Entry::Occupied(mut slot) => {
                let stored = slot.get_mut();
                if incoming.update_mode() == UPDATE {
                    merge(stored, incoming);
                } else {
                    // REPLACE: the payload is the final state; only the code cannot change.
                    let approval_code = std::mem::take(&mut stored.approval_code);
                    *stored = incoming;
                    stored.approval_code = approval_code;
                }
                stored.clone()
            }
        }
    }
}

/// `UPDATE`: inserts what is new, replaces what is strictly newer, deletes nothing.
fn merge(stored: &mut ExternalInstance, mut incoming: ExternalInstance) {
    let tasks = incoming.task_list.take();
    let ccs = incoming.cc_list.take();
    if incoming.update_time > stored.update_time {
        let kept = ExternalInstance {
            approval_code: std::mem::take(&mut stored.approval_code),
            instance_id: std::mem::take(&mut stored.instance_id),
            department_id: stored.department_id.take(),
            department_name: stored.department_name.take(),
            task_list: stored.task_list.take(),
            cc_list: stored.cc_list.take(),
            ..incoming
        };
        *stored = kept;
    }
    for task in tasks.into_iter().flatten() {
        let list = stored.task_list.get_or_insert_with(Vec::new);
        match list.iter_mut().find(|old| old.task_id == task.task_id) {
            None => list.push(task),
            Some(old) if task.update_time > old.update_time => {
                *old = Task {
                    task_id: std::mem::take(&mut old.task_id),
                    user_id: old.user_id.take(),
                    open_id: old.open_id.take(),
                    create_time: old.create_time,
                    node_id: old.node_id.take(),
                    node_name: old.node_name.take(),
                    ..task
                };
            }
            Some(_) => {}
        }
    }
    for cc in ccs.into_iter().flatten() {
        let list = stored.cc_list.get_or_insert_with(Vec::new);
        match list.iter_mut().find(|old| old.cc_id == cc.cc_id) {
            None => list.push(cc),
            Some(old) if cc.update_time > old.update_time => {
                *old = attendance_core::external::model::Cc {
                    cc_id: std::mem::take(&mut old.cc_id),
                    user_id: old.user_id.take(),
                    open_id: old.open_id.take(),
                    create_time: old.create_time,
                    ..cc
                };
            }
            Some(_) => {}
        }
    }
}

/// The check's answer for one instance: what the platform holds, when it differs (first hit
/// of the FAQ's five steps wins).
fn diff(stored: Option<&ExternalInstance>, asked: &CheckInstance) -> Option<DiffInstance> {
    let Some(stored) = stored else {
        return Some(DiffInstance {
            instance_id: asked.instance_id.clone(),
            update_time: Some(MsTime(0)),
            tasks: Some(Vec::new()),
        });
    };
    let held = |task_id: &str| stored.tasks().iter().find(|t| t.task_id == task_id);
    let with_task = |task: CheckTask| DiffInstance {
        instance_id: asked.instance_id.clone(),
        update_time: Some(stored.update_time),
        tasks: Some(vec![task]),
    };
    if let Some(unknown) = asked.tasks.iter().find(|t| held(&t.task_id).is_none()) {
        return Some(with_task(CheckTask {
            task_id: unknown.task_id.clone(),
            update_time: MsTime(0),
        }));
    }
    for task in &asked.tasks {
        let stored_task = held(&task.task_id).expect("every task was found above");
        if stored_task.update_time != task.update_time {
            return Some(with_task(CheckTask {
                task_id: task.task_id.clone(),
                update_time: stored_task.update_time,
            }));
        }
    }
    (stored.update_time != asked.update_time).then(|| DiffInstance {
        instance_id: asked.instance_id.clone(),
        update_time: Some(stored.update_time),
        tasks: Some(Vec::new()),
    })
}

/// The definition a tenant starts with for its `index`-th code.
fn initial_definition(code: &str, index: usize) -> Value {
    let (zh, en, ja) = KINDS[index % KINDS.len()];
    json!({
        "approval_name": "@i18n@approval_name",
        "approval_code": code,
        "group_code": "attendance",
        "group_name": "@i18n@group_name",
        "description": "@i18n@description",
        "external": {
            "biz_name": "@i18n@biz_name",
            "biz_type": "attendance",
            "create_link_pc": format!("https://hr.example.com/pc/forms/{code}/new"),
            "create_link_mobile": format!("https://hr.example.com/m/forms/{code}/new"),
            "support_pc": true,
            "support_mobile": true,
            "support_batch_read": false,
            "enable_mark_readed": false,
            "enable_quick_operate": true,
            "action_callback_url": "https://hr.example.com/feishu/approval-callback",
            "action_callback_token": "sim-callback-token",
            "allow_batch_operate": false,
            "exclude_efficiency_statistics": false
        },
        "viewers": [{"viewer_type": "TENANT"}],
        "i18n_resources": [
            {"locale": "zh-CN", "is_default": true, "texts": [
                {"key": "@i18n@approval_name", "value": format!("{zh}申请 {}", index + 1)},
                {"key": "@i18n@group_name", "value": "考勤"},
                {"key": "@i18n@description", "value": format!("人事系统的{zh}申请")},
                {"key": "@i18n@biz_name", "value": "人事系统"}
            ]},
            {"locale": "en-US", "is_default": false, "texts": [
                {"key": "@i18n@approval_name", "value": format!("{en} request {}", index + 1)},
                {"key": "@i18n@group_name", "value": "Attendance"},
                {"key": "@i18n@description", "value": format!("{en} requests of the HR system")},
                {"key": "@i18n@biz_name", "value": "HR system"}
            ]},
            {"locale": "ja-JP", "is_default": false, "texts": [
                {"key": "@i18n@approval_name", "value": format!("{ja}申請 {}", index + 1)},
                {"key": "@i18n@group_name", "value": "勤怠"},
                {"key": "@i18n@description", "value": format!("人事システムの{ja}申請")},
                {"key": "@i18n@biz_name", "value": "人事システム"}
            ]}
        ],
        "managers": []
    })
}

// ---------------------------------------------------------------------------------------------
// Shared handler plumbing.
// ---------------------------------------------------------------------------------------------

type Params = std::collections::HashMap<String, String>;

fn params(query: Result<Query<Params>, QueryRejection>) -> Params {
    query.map(|Query(params)| params).unwrap_or_default()
}

/// HTTP 400, code 1390001, `param is invalid: {msg}`.
fn invalid(msg: impl std::fmt::Display) -> Rejection {
    Rejection::bad_request(
        codes::EXTERNAL_PARAM_INVALID,
        format!("param is invalid: {msg}"),
    )
}

fn try_later() -> Rejection {
    Rejection::bad_request(codes::EXTERNAL_TRY_LATER, TRY_LATER_MSG)
}

/// A query parameter that, when present, must be one of `allowed`.
fn one_of(params: &Params, name: &str, allowed: &[&str]) -> Result<(), Rejection> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Ok(()),
        Some(value) if allowed.contains(&value) => Ok(()),
        Some(value) => Err(invalid(format!(
            "{name} {value:?} is not one of {}",
            allowed.join(", ")
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// POST approval/v4/external_instances
// ---------------------------------------------------------------------------------------------

pub(crate) async fn create_instance_handler(
    State(state): State<Arc<TenantState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Result<Value, serde_json::Error> = serde_json::from_slice(&body);
    if let Some(id) = parsed
        .as_ref()
        .ok()
        .and_then(|document| document.get("instance_id"))
        .and_then(Value::as_str)
    {
        lock(&state.stats)
            .external_instances_received
            .push(id.to_owned());
    }
    let outcome = gate(&state, Api::ExternalInstances, &headers, || {
        answer_create_instance(&state, parsed)
    });
    finish(&state, outcome, |stats| stats.external_instance_calls += 1).await
}

fn answer_create_instance(
    state: &TenantState,
    parsed: Result<Value, serde_json::Error>,
) -> Result<(String, ()), Rejection> {
    let document =
        parsed.map_err(|err| invalid(format!("request body is not valid JSON: {err}")))?;
    let instance = validate(&document).map_err(|problems| {
        invalid(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut store = lock(&state.external.inner);
    if !store.definitions.contains_key(&instance.approval_code) {
        return Err(invalid(format!(
            "approval_code {:?} is not a third-party approval definition of this tenant",
            instance.approval_code
        )));
    }
    if store.try_later() {
        return Err(try_later());
    }
    let stored = store.apply(instance);
    drop(store);
    success_body(json!({ "data": stored }))
}

// ---------------------------------------------------------------------------------------------
// POST approval/v4/external_instances/check
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CheckBody {
    instances: Vec<CheckInstance>,
}

pub(crate) async fn check_handler(
    State(state): State<Arc<TenantState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = gate(&state, Api::ExternalCheck, &headers, || {
        answer_check(&state, &body)
    });
    finish(&state, outcome, |stats| stats.external_check_calls += 1).await
}

fn answer_check(state: &TenantState, body: &[u8]) -> Result<(String, ()), Rejection> {
    let request: CheckBody = serde_json::from_slice(body).map_err(|err| {
        invalid(format!(
            "the body must be {{\"instances\": [{{instance_id, update_time, tasks: [{{task_id, update_time}}]}}]}}: {err}"
        ))
    })?;
    let mut store = lock(&state.external.inner);
    if store.try_later() {
        return Err(try_later());
    }
    let diff_instances: Vec<DiffInstance> = request
        .instances
        .iter()
        .filter_map(|asked| diff(store.instances.get(&asked.instance_id), asked))
        .collect();
    drop(store);
    success_body(json!({ "diff_instances": diff_instances }))
}

// ---------------------------------------------------------------------------------------------
// GET approval/v4/external_tasks
// ---------------------------------------------------------------------------------------------

/// The filters of a task list request (its JSON body).
#[derive(Default)]
struct TaskFilter {
    approval_codes: Vec<String>,
    instance_ids: Vec<String>,
    user_ids: Vec<String>,
    status: Option<String>,
}

impl TaskFilter {
    fn read(body: &[u8]) -> Result<TaskFilter, Rejection> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(TaskFilter::default());
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| invalid(format!("request body is not valid JSON: {err}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| invalid("request body must be a JSON object"))?;
        let list = |name: &str| -> Result<Vec<String>, Rejection> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| invalid(format!("{name} must be a list of strings"))),
                Some(_) => Err(invalid(format!("{name} must be a list of strings"))),
            }
        };
        let filter = TaskFilter {
            approval_codes: list("approval_codes")?,
            instance_ids: list("instance_ids")?,
            user_ids: list("user_ids")?,
            status: match object.get("status") {
                None | Some(Value::Null) => None,
                Some(Value::String(status)) if status.is_empty() => None,
                Some(Value::String(status)) if TASK_STATUSES.contains(&status.as_str()) => {
                    Some(status.clone())
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "status {other} is not one of {}",
                        TASK_STATUSES.join(", ")
                    )));
                }
            },
        };
        for (name, values) in [
            ("approval_codes", &filter.approval_codes),
            ("instance_ids", &filter.instance_ids),
        ] {
            if values.len() > MAX_FILTER {
                return Err(invalid(format!(
                    "{name} has {} values; at most {MAX_FILTER} are allowed",
                    values.len()
                )));
            }
        }
        Ok(filter)
    }

    /// Whether tasks are filtered (then instances without a matching task are left out).
    fn filters_tasks(&self) -> bool {
        !self.user_ids.is_empty() || self.status.is_some()
    }

    fn task_matches(&self, task: &Task) -> bool {
        (self.user_ids.is_empty()
            || task
                .user_id
                .as_ref()
                .is_some_and(|user| self.user_ids.contains(user)))
            && self.status.as_ref().is_none_or(|s| *s == task.status)
    }

    /// What page tokens are keyed by: the filters, whatever their order.
    fn key(&self) -> u64 {
        let mut parts = vec![TAG_PAGE_TOKEN];
        for (tag, values) in [
            (1, &self.approval_codes),
            (2, &self.instance_ids),
            (3, &self.user_ids),
        ] {
            let mut hashes: Vec<u64> = values.iter().map(|v| hash_str(v)).collect();
            hashes.sort_unstable();
            hashes.dedup();
            parts.push(tag);
            parts.extend(hashes);
        }
        parts.push(4);
        parts.push(self.status.as_deref().map_or(0, hash_str));
        hash_of(&parts)
    }
}

/// 16 lowercase hex digits: (offset << 32 | check(offset)) masked by a filter-keyed pad.
fn encode_page_token(seed: u64, key: u64, offset: usize) -> String {
    let pad = hash_of(&[seed, key]);
    let check = hash_of(&[seed, key, offset as u64]) & 0xffff_ffff;
    format!("{:016x}", ((offset as u64) << 32 | check) ^ pad)
}

fn decode_page_token(seed: u64, key: u64, token: &str) -> Option<usize> {
    if token.len() != 16
        || !token
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let value = u64::from_str_radix(token, 16).ok()? ^ hash_of(&[seed, key]);
    let offset = value >> 32;
    let check = hash_of(&[seed, key, offset]) & 0xffff_ffff;
    (value & 0xffff_ffff == check && offset > 0).then_some(offset as usize)
}

#[derive(Serialize)]
struct TaskPage<'a> {
    data: Vec<TaskGroupItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page_token: Option<String>,
    has_more: bool,
}

#[derive(Serialize)]
struct TaskGroupItem<'a> {
    instance_id: &'a str,
    approval_id: String,
    approval_code: &'a str,
    status: &'a str,
    update_time: MsTime,
    tasks: Vec<TaskItem<'a>>,
}

#[derive(Serialize)]
struct TaskItem<'a> {
    id: &'a str,
    status: &'a str,
    update_time: MsTime,
}

pub(crate) async fn list_tasks_handler(
    State(state): State<Arc<TenantState>>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = params(query);
    let outcome = gate(&state, Api::ExternalTasks, &headers, || {
        answer_list_tasks(&state, &params, &body)
    });
    finish(&state, outcome, |stats| stats.external_task_list_calls += 1).await
}

fn answer_list_tasks(
    state: &TenantState,
    params: &Params,
    body: &[u8],
) -> Result<(String, ()), Rejection> {
    let page_size = match params.get("page_size").map(String::as_str) {
        None | Some("") => TASKS_PAGE_SIZE_DEFAULT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=TASKS_PAGE_SIZE_MAX).contains(size))
            .ok_or_else(|| {
                invalid(format!(
                    "page_size must be an int in 1..={TASKS_PAGE_SIZE_MAX}"
                ))
            })?,
    };
    let filter = TaskFilter::read(body)?;
    let seed = state.external.seed;
    let key = filter.key();
    let offset = match params.get("page_token").map(String::as_str) {
        None | Some("") => 0,
        Some(token) => {
            decode_page_token(seed, key, token).ok_or_else(|| invalid("page_token is invalid"))?
        }
    };
    let store = lock(&state.external.inner);
    let mut listed: Vec<TaskGroupItem<'_>> = store
        .instances
        .values()
        .filter(|instance| {
            (filter.approval_codes.is_empty()
                || filter.approval_codes.contains(&instance.approval_code))
                && (filter.instance_ids.is_empty()
                    || filter.instance_ids.contains(&instance.instance_id))
        })
        .filter_map(|instance| {
            let tasks: Vec<TaskItem<'_>> = instance
                .tasks()
                .iter()
                .filter(|task| filter.task_matches(task))
                .map(|task| TaskItem {
                    id: &task.task_id,
                    status: &task.status,
                    update_time: task.update_time,
                })
                .collect();
            (!filter.filters_tasks() || !tasks.is_empty()).then(|| TaskGroupItem {
                instance_id: &instance.instance_id,
                approval_id: approval_id(seed, &instance.approval_code),
                approval_code: &instance.approval_code,
                status: &instance.status,
                update_time: instance.update_time,
                tasks,
            })
        })
        .collect();
    listed.sort_by(|a, b| (a.approval_code, a.instance_id).cmp(&(b.approval_code, b.instance_id)));
    let len = listed.len();
    let start = offset.min(len);
    let end = len.min(start + page_size);
    let has_more = end < len;
    let data: Vec<TaskGroupItem<'_>> = listed.drain(start..end).collect();
    success_body(TaskPage {
        data,
        page_token: has_more.then(|| encode_page_token(seed, key, end)),
        has_more,
    })
}

// ---------------------------------------------------------------------------------------------
// POST approval/v4/external_approvals, GET approval/v4/external_approvals/{approval_code}
// ---------------------------------------------------------------------------------------------

pub(crate) async fn create_approval_handler(
    State(state): State<Arc<TenantState>>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = params(query);
    let outcome = gate(&state, Api::ExternalApprovals, &headers, || {
        answer_create_approval(&state, &params, &body)
    });
    finish(&state, outcome, |stats| stats.external_approval_calls += 1).await
}

fn answer_create_approval(
    state: &TenantState,
    params: &Params,
    body: &[u8],
) -> Result<(String, ()), Rejection> {
    one_of(
        params,
        "department_id_type",
        &["department_id", "open_department_id"],
    )?;
    one_of(params, "user_id_type", &["user_id", "union_id", "open_id"])?;
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| invalid(format!("request body is not valid JSON: {err}")))?;
    let Value::Object(mut definition) = value else {
        return Err(invalid("request body must be a JSON object"));
    };
    let text = |definition: &Map<String, Value>, name: &str| -> Result<String, Rejection> {
        match definition.get(name) {
            None | Some(Value::Null) => Err(invalid(format!("{name} is required"))),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
            Some(_) => Err(invalid(format!("{name} must be a non-empty string"))),
        }
    };
    text(&definition, "approval_name")?;
    let code = text(&definition, "approval_code")?;
    let external = match definition.get("external") {
        None | Some(Value::Null) => return Err(invalid("external is required")),
        Some(Value::Object(external)) => external,
        Some(_) => return Err(invalid("external must be an object")),
    };
    let supports = |name: &str| external.get(name) == Some(&Value::Bool(true));
    if !supports("support_pc") && !supports("support_mobile") {
        return Err(invalid(
            "external.support_pc and external.support_mobile cannot both be false",
        ));
    }
    let mut store = lock(&state.external.inner);
    let code = if store.definitions.contains_key(&code) {
        code
    } else {
        store.mint_code(state.external.seed)
    };
    definition.insert("approval_code".to_owned(), Value::String(code.clone()));
    store
        .definitions
        .insert(code.clone(), Value::Object(definition));
    drop(store);
    success_body(json!({ "approval_code": code }))
}

pub(crate) async fn get_approval_handler(
    State(state): State<Arc<TenantState>>,
    approval_code: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let params = params(query);
    let code = approval_code.map(|Path(code)| code).unwrap_or_default();
    let outcome = gate(&state, Api::ExternalApproval, &headers, || {
        one_of(&params, "user_id_type", &["user_id", "union_id", "open_id"])?;
        let store = lock(&state.external.inner);
        let definition = store
            .definitions
            .get(&code)
            .ok_or_else(|| invalid(format!("approval_code {code:?} not found")))?;
        success_body(definition)
    });
    finish(&state, outcome, |stats| stats.external_approval_calls += 1).await
}

// ---------------------------------------------------------------------------------------------
// The data set: documents as the third-party HR system exports them.
// ---------------------------------------------------------------------------------------------

/// Kinds of request: (zh-CN, en-US, ja-JP).
const KINDS: [(&str, &str, &str); 4] = [
    ("请假", "Leave", "休暇"),
    ("外出", "Out of office", "外出"),
    ("加班", "Overtime", "残業"),
    ("出差", "Business trip", "出張"),
];
/// Approval nodes, in flow order: (node_id, zh-CN, en-US, ja-JP).
const NODES: [(&str, &str, &str, &str); 4] = [
    (
        "node_manager",
        "直属主管审批",
        "Manager approval",
        "上長承認",
    ),
    (
        "node_head",
        "部门负责人审批",
        "Department head approval",
        "部門長承認",
    ),
    ("node_hr", "人事审批", "HR approval", "人事承認"),
    (
        "node_gm",
        "总经理审批",
        "General manager approval",
        "社長承認",
    ),
];
const SURNAMES: [(&str, &str, &str); 6] = [
    ("张", "Zhang", "張"),
    ("王", "Wang", "王"),
    ("李", "Li", "李"),
    ("刘", "Liu", "劉"),
    ("陈", "Chen", "陳"),
    ("杨", "Yang", "楊"),
];
const GIVEN_NAMES: [(&str, &str, &str); 7] = [
    ("伟", "Wei", "偉"),
    ("芳", "Fang", "芳"),
    ("娜", "Na", "娜"),
    ("敏", "Min", "敏"),
    ("静", "Jing", "静"),
    ("磊", "Lei", "磊"),
    ("洋", "Yang", "洋"),
];
const DEPARTMENTS: [(&str, &str, &str); 5] = [
    ("人力资源部", "Human Resources", "人事部"),
    ("研发部", "R&D", "研究開発部"),
    ("销售部", "Sales", "営業部"),
    ("财务部", "Finance", "経理部"),
    ("市场部", "Marketing", "マーケティング部"),
];
/// Leave types: (key suffix, zh-CN, en-US, ja-JP).
const LEAVE_TYPES: [(&str, &str, &str, &str); 3] = [
    ("annual", "年假", "Annual leave", "年次休暇"),
    ("sick", "病假", "Sick leave", "病気休暇"),
    ("personal", "事假", "Personal leave", "私用休暇"),
];
/// The users of the HR system: `ext_u0000 ..`.
const EXT_USERS: usize = 240;
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn user_id(user: usize) -> String {
    format!("ext_u{user:04}")
}

fn open_id(seed: u64, user: usize) -> String {
    format!(
        "ou_{:016x}",
        hash_of(&[seed, TAG_DOCUMENT, 0xFFFF, user as u64])
    )
}

/// A user's name in the three locales.
fn user_name(user: usize) -> [String; 3] {
    let (s_zh, s_en, s_ja) = SURNAMES[user % SURNAMES.len()];
    let (g_zh, g_en, g_ja) = GIVEN_NAMES[user / SURNAMES.len() % GIVEN_NAMES.len()];
    [
        format!("{s_zh}{g_zh}"),
        format!("{s_en} {g_en}"),
        format!("{s_ja}{g_ja}"),
    ]
}

/// The i18n texts of one document, keys in first-use order.
#[derive(Default)]
struct Texts(Vec<(String, [String; 3])>);

impl Texts {
    /// Adds `key` (once) and returns it, as the field's value.
    fn key(&mut self, key: &str, values: [&str; 3]) -> String {
        let key = format!("@i18n@{key}");
        if !self.0.iter().any(|(k, _)| *k == key) {
            self.0.push((key.clone(), values.map(str::to_owned)));
        }
        key
    }

    fn resources(&self, en: bool, ja: bool) -> Value {
        let locale = |locale: &str, slot: usize, is_default: bool| {
            json!({
                "locale": locale,
                "is_default": is_default,
                "texts": self.0.iter().map(|(key, values)| json!({"key": key, "value": values[slot]})).collect::<Vec<_>>(),
            })
        };
        let mut resources = vec![locale("zh-CN", 0, true)];
        if en {
            resources.push(locale("en-US", 1, false));
        }
        if ja {
            resources.push(locale("ja-JP", 2, false));
        }
        Value::Array(resources)
    }
}

/// `count` source documents of third-party instances, spread over `approval_codes`, started
/// over the ~90 days before `anchor_ms` (and never updated after it): a pure function of its
/// arguments, every document valid ([`validate()`](attendance_core::external::validate())).
///
/// The mix: statuses PENDING / APPROVED / REJECTED / CANCELED and a few DELETED, HIDDEN,
/// TERMINATED; 1–4 approval nodes (`node_id`, `node_name`), some with a transfer (a
/// TRANSFERRED task, then another user's task on the same node) or an or-sign DONE task; 0–3
/// ccs, READ or UNREAD; zh-CN always (the default), en-US and ja-JP on some, titles, form
/// names and some values as `@i18n@` keys resolved in every locale given, user and department
/// names sometimes keys, sometimes plain; action configs on pending tasks (APPROVE / REJECT, or
/// a custom RETURN with its `action_name`); `extra` JSON text on some; `update_mode` REPLACE
/// (stated or implied) on most, UPDATE on about a fifth; times as decimal strings, or as JSON
/// numbers on about a fifth of the documents; `end_time` 0 while pending. Instance ids are
/// `hr-000000` …, task ids `hr-000000-t1` …, cc ids `hr-000000-c1` …; users `ext_u0000` …
///
/// # Panics
/// When `count > 0` and `approval_codes` is empty.
pub fn external_documents(
    seed: u64,
    count: usize,
    approval_codes: &[String],
    anchor_ms: i64,
) -> Vec<Value> {
    assert!(
        count == 0 || !approval_codes.is_empty(),
        "external_documents needs at least one approval code"
    );
    (0..count)
        .map(|index| document(seed, index, approval_codes, anchor_ms))
        .collect()
}

/// A task of the flow being built.
struct FlowTask {
    node: usize,
    user: usize,
    status: &'static str,
    create: i64,
    /// 0 while pending.
    end: i64,
}

fn document(seed: u64, index: usize, approval_codes: &[String], anchor_ms: i64) -> Value {
    let mut rng = StdRng::seed_from_u64(hash_of(&[seed, TAG_DOCUMENT, index as u64]));
    let rng = &mut rng;
    let mut texts = Texts::default();
    let instance_id = format!("hr-{index:06}");
    let approval_code = &approval_codes[index % approval_codes.len()];
    let kind = rng.random_range(0..KINDS.len());
    let (kind_zh, kind_en, kind_ja) = KINDS[kind];
    let with_en = rng.random_bool(0.5);
    let with_ja = rng.random_bool(0.25);
    let numeric_times = rng.random_bool(0.2);
    let time = |ms: i64| {
        if numeric_times {
            json!(ms)
        } else {
            json!(ms.to_string())
        }
    };

    let status = match rng.random_range(0..100) {
        0..30 => "PENDING",
        30..70 => "APPROVED",
        70..85 => "REJECTED",
        85..95 => "CANCELED",
        95..97 => "DELETED",
        97..99 => "HIDDEN",
        _ => "TERMINATED",
    };
    let applicant = rng.random_range(0..EXT_USERS);
    let pick_other = |rng: &mut StdRng, taken: &[usize]| loop {
        let user = rng.random_range(0..EXT_USERS);
        if user != applicant && !taken.contains(&user) {
            return user;
        }
    };
    // Started 10 to 90 days before the anchor: the flow (at most 4 nodes of at most 3 tasks of
    // at most a day each) ends before it.
    let start = anchor_ms - rng.random_range(10 * DAY..90 * DAY);

    // The flow.
    let nodes = rng.random_range(1..=NODES.len());
    let mut flow: Vec<FlowTask> = Vec::new();
    let mut at = start + rng.random_range(MINUTE..30 * MINUTE);
    let mut taken = Vec::new();
    for node in 0..nodes {
        let last = node + 1 == nodes;
        let mut approver = pick_other(rng, &taken);
        taken.push(approver);
        if rng.random_bool(0.15) {
            // Transferred to a colleague, who then holds the node.
            let end = at + rng.random_range(10 * MINUTE..DAY / 2);
            flow.push(FlowTask {
                node,
                user: approver,
                status: "TRANSFERRED",
                create: at,
                end,
            });
            at = end;
            approver = pick_other(rng, &taken);
            taken.push(approver);
        }
        let task_status = match (last, status) {
            (false, _) | (true, "APPROVED") => "APPROVED",
            (true, "PENDING") => "PENDING",
            (true, "REJECTED") => "REJECTED",
            (true, _) => "DONE",
        };
        let end = if task_status == "PENDING" {
            0
        } else {
            at + rng.random_range(10 * MINUTE..DAY / 2)
        };
        flow.push(FlowTask {
            node,
            user: approver,
            status: task_status,
            create: at,
            end,
        });
        if task_status == "APPROVED" && rng.random_bool(0.1) {
            // Or-sign: a second approver of the node, done without acting.
            let other = pick_other(rng, &taken);
            taken.push(other);
            flow.push(FlowTask {
                node,
                user: other,
                status: "DONE",
                create: at,
                end,
            });
        }
        if end > 0 {
            at = end;
        }
    }
    let last_activity = flow
        .iter()
        .map(|task| task.end.max(task.create))
        .max()
        .unwrap_or(start);
    let instance_end = if status == "PENDING" {
        0
    } else {
        last_activity
    };

    let links = |path: &str, rng: &mut StdRng| {
        if rng.random_bool(0.9) {
            json!({
                "pc_link": format!("https://hr.example.com/pc/{path}"),
                "mobile_link": format!("https://hr.example.com/m/{path}"),
            })
        } else {
            json!({ "pc_link": format!("https://hr.example.com/pc/{path}") })
        }
    };

    let mut tasks = Vec::new();
    for (number, task) in flow.iter().enumerate() {
        let task_id = format!("{instance_id}-t{}", number + 1);
        let (node_id, node_zh, node_en, node_ja) = NODES[task.node];
        let mut object = Map::new();
        object.insert("task_id".into(), json!(task_id));
        object.insert("user_id".into(), json!(user_id(task.user)));
        if rng.random_bool(0.3) {
            object.insert("open_id".into(), json!(open_id(seed, task.user)));
        }
        let title = texts.key(node_id, [node_zh, node_en, node_ja]);
        object.insert("title".into(), json!(title));
        object.insert(
            "links".into(),
            links(&format!("approvals/{instance_id}/tasks/{task_id}"), rng),
        );
        object.insert("status".into(), json!(task.status));
        let reason = match task.status {
            "APPROVED" => Some("approved"),
            "REJECTED" => Some("rejected"),
            "TRANSFERRED" => Some("forward"),
            "DONE" if status == "CANCELED" => Some("recall"),
            "DONE" => Some("auto_skip"),
            _ => None,
        };
        if let Some(reason) = reason
            && rng.random_bool(0.4)
        {
            object.insert(
                "extra".into(),
                json!(json!({ "complete_reason": reason }).to_string()),
            );
        }
        object.insert("create_time".into(), time(task.create));
        object.insert(
            "end_time".into(),
            if task.end == 0 && rng.random_bool(0.3) {
                json!(0)
            } else {
                time(task.end)
            },
        );
        object.insert("update_time".into(), time(task.end.max(task.create)));
        if task.status == "PENDING" {
            object.insert(
                "action_context".into(),
                json!(format!("{instance_id}/{task_id}")),
            );
            let configs = match rng.random_range(0..100) {
                0..60 => {
                    json!([{"action_type": "APPROVE"}, {"action_type": "REJECT", "is_need_reason": true, "is_reason_required": true}])
                }
                60..85 => {
                    let name = texts.key("action_return", ["退回", "Return", "差し戻し"]);
                    json!([{"action_type": "APPROVE"}, {"action_type": "RETURN", "action_name": name, "is_need_reason": true}])
                }
                _ => {
                    json!([{"action_type": "APPROVE", "is_need_reason": true, "is_reason_required": false, "is_need_attachment": false}])
                }
            };
            object.insert("action_configs".into(), configs);
        }
        if rng.random_bool(0.2) {
            object.insert(
                "display_method".into(),
                json!(["BROWSER", "SIDEBAR", "NORMAL"][rng.random_range(0..3)]),
            );
        }
        if task.status == "DONE" && rng.random_bool(0.5) {
            object.insert("exclude_statistics".into(), json!(true));
        }
        object.insert("node_id".into(), json!(node_id));
        object.insert("node_name".into(), json!(node_zh));
        tasks.push(Value::Object(object));
    }

    let mut ccs = Vec::new();
    let cc_count = rng.random_range(0..=3);
    for number in 0..cc_count {
        let user = pick_other(rng, &taken);
        taken.push(user);
        let cc_id = format!("{instance_id}-c{}", number + 1);
        let created = start + rng.random_range(MINUTE..=(last_activity - start).max(MINUTE));
        let read = rng.random_bool(0.5);
        let mut object = Map::new();
        object.insert("cc_id".into(), json!(cc_id));
        if rng.random_bool(0.85) {
            object.insert("user_id".into(), json!(user_id(user)));
        } else {
            object.insert("open_id".into(), json!(open_id(seed, user)));
        }
        object.insert(
            "links".into(),
            links(&format!("approvals/{instance_id}/ccs/{cc_id}"), rng),
        );
        object.insert(
            "read_status".into(),
            json!(if read { "READ" } else { "UNREAD" }),
        );
        match rng.random_range(0..3) {
            0 => {
                let title = texts.key("cc_title", ["抄送给你的申请", "Copied to you", "CC"]);
                object.insert("title".into(), json!(title));
            }
            1 => {
                object.insert("title".into(), json!("抄送"));
            }
            _ => {}
        }
        object.insert("create_time".into(), time(created));
        let updated = if read {
            created + rng.random_range(MINUTE..DAY / 4)
        } else {
            created
        };
        object.insert("update_time".into(), time(updated));
        ccs.push(Value::Object(object));
    }
    let cc_last = ccs
        .iter()
        .filter_map(|cc| MsTime::read(&cc["update_time"]))
        .map(|t| t.0)
        .max()
        .unwrap_or(0);
    let update_time = last_activity.max(cc_last).max(start);

    // The instance.
    let mut object = Map::new();
    object.insert("approval_code".into(), json!(approval_code));
    object.insert("instance_id".into(), json!(instance_id));
    object.insert("status".into(), json!(status));
    if rng.random_bool(0.4) {
        let business_key = format!("{}{:08}", ["LV", "OT", "OW", "BT"][kind], index);
        object.insert(
            "extra".into(),
            json!(json!({ "business_key": business_key }).to_string()),
        );
    }
    object.insert(
        "links".into(),
        links(&format!("approvals/{instance_id}"), rng),
    );
    let title = texts.key(
        "title",
        [
            &format!("{kind_zh}申请"),
            &format!("{kind_en} request"),
            &format!("{kind_ja}申請"),
        ],
    );
    object.insert("title".into(), json!(title));
    object.insert("form".into(), form(rng, &mut texts, kind, start));
    object.insert("user_id".into(), json!(user_id(applicant)));
    let names = user_name(applicant);
    match rng.random_range(0..10) {
        0..5 => {
            let key = texts.key("applicant", [&names[0], &names[1], &names[2]]);
            object.insert("user_name".into(), json!(key));
        }
        5..8 => {
            object.insert("user_name".into(), json!(names[0]));
        }
        _ => {}
    }
    if rng.random_bool(0.3) {
        object.insert("open_id".into(), json!(open_id(seed, applicant)));
    }
    let department = applicant % DEPARTMENTS.len();
    let (dept_zh, dept_en, dept_ja) = DEPARTMENTS[department];
    if rng.random_bool(0.1) {
        object.insert("department_id".into(), json!(""));
    } else {
        object.insert(
            "department_id".into(),
            json!(format!(
                "od-{:012x}",
                hash_of(&[seed, TAG_DEPARTMENT, department as u64]) & 0xffff_ffff_ffff
            )),
        );
    }
    match rng.random_range(0..10) {
        0..5 => {
            let key = texts.key("department", [dept_zh, dept_en, dept_ja]);
            object.insert("department_name".into(), json!(key));
        }
        5..8 => {
            object.insert("department_name".into(), json!(dept_zh));
        }
        _ => {}
    }
    object.insert("start_time".into(), time(start));
    object.insert(
        "end_time".into(),
        if instance_end == 0 && rng.random_bool(0.3) {
            json!(0)
        } else {
            time(instance_end)
        },
    );
    object.insert("update_time".into(), time(update_time));
    if rng.random_bool(0.2) {
        object.insert(
            "display_method".into(),
            json!(["BROWSER", "SIDEBAR", "NORMAL"][rng.random_range(0..3)]),
        );
    }
    match rng.random_range(0..10) {
        0..2 => {
            object.insert("update_mode".into(), json!("UPDATE"));
        }
        2..7 => {
            object.insert("update_mode".into(), json!("REPLACE"));
        }
        _ => {}
    }
    object.insert("task_list".into(), Value::Array(tasks));
    if !ccs.is_empty() {
        object.insert("cc_list".into(), Value::Array(ccs));
    }
    object.insert("i18n_resources".into(), texts.resources(with_en, with_ja));
    Value::Object(object)
}

/// The form fields shown in the lists: the kind's first fields, names as keys, values as keys
/// (types) or plain text (times, durations, reasons).
fn form(rng: &mut StdRng, texts: &mut Texts, kind: usize, start: i64) -> Value {
    let local = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&chrono_tz::Asia::Shanghai)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut fields = Vec::new();
    if kind == 0 {
        let (suffix, zh, en, ja) = LEAVE_TYPES[rng.random_range(0..LEAVE_TYPES.len())];
        let name = texts.key("form_type", ["假期类型", "Leave type", "休暇タイプ"]);
        let value = texts.key(&format!("leave_{suffix}"), [zh, en, ja]);
        fields.push(json!({"name": name, "value": value}));
    }
    let name = texts.key("form_start", ["开始时间", "Start", "開始"]);
    fields.push(json!({"name": name, "value": local(start)}));
    if rng.random_bool(0.7) {
        let name = texts.key("form_end", ["结束时间", "End", "終了"]);
        let planned = start + rng.random_range(1..=24) * 60 * MINUTE;
        fields.push(json!({"name": name, "value": local(planned)}));
    }
    if rng.random_bool(0.5) {
        let name = texts.key("form_reason", ["事由", "Reason", "理由"]);
        let value = if rng.random_bool(0.5) {
            texts.key(
                "reason_family",
                ["家中有事", "Family matters", "家庭の事情"],
            )
        } else {
            ["客户拜访", "项目上线", "体检", "培训"][rng.random_range(0..4)].to_owned()
        };
        fields.push(json!({"name": name, "value": value}));
    }
    Value::Array(fields)
}
