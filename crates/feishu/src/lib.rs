//! The Feishu / Lark Open Platform client of attendance-sync: the tenant token, per-API rate
//! limits, retries, the endpoints the job calls, their wire models and error codes — the
//! attendance APIs it reads, and the third-party ("external") approval APIs it syncs
//! instances to (create, check, task list, definitions).
//!
//! - [`Client`]: one tenant's client, cheap to share across tasks (see `client.rs` for its
//!   token, pacing and retry invariants).
//! - [`endpoints`] and [`codes`]: the paths and the platform's codes as named constants, shared
//!   with the simulated tenant so that neither side retypes them.
//! - [`model`]: the envelope, the token exchange, the query request and the list endpoints'
//!   answers. A query answer's `data` is [`attendance_core::answer::QueryData`], handed on unread.
//!   The third-party instance itself is [`attendance_core::external::ExternalInstance`]; the
//!   task list's filter and items are [`ExternalTaskFilter`], [`ExternalTaskGroup`] and
//!   [`ExternalTaskState`].
//! - [`PlatformError`]: a call that did not produce data, classified by what the caller can do.
//! - Pushed events: [`envelope`] (the webhook's encryption, signature and secret comparison),
//!   [`event`] (what an event body says about itself) and [`frame`] (the long connection's
//!   discovery, protobuf frames and acks), shared with the simulated tenant, which sends them.
//!
//! Depends on `attendance-core` for the vocabulary (employee types, the answer's `data`) and on
//! nothing above it: it never writes output and never decides a run's outcome.

mod client;
pub mod codes;
pub mod endpoints;
pub mod envelope;
mod error;
pub mod event;
pub mod frame;
pub mod model;

pub use attendance_core::answer::QueryData;
pub use client::{Client, ClientConfig, ClientStats, Credentials};
pub use error::{Cause, PlatformError};
pub use model::{ExternalTaskFilter, ExternalTaskGroup, ExternalTaskState};

/// Feishu (China) host; Lark (international) is `https://open.larksuite.com`.
pub const DEFAULT_BASE_URL: &str = "https://open.feishu.cn";
