//! Pushed approval events: the webhook receiver, the long connection, and the one landing both
//! use on the output root.
//!
//! - [`landing`]: every event stored whole, once, under `ROOT/_events/inbox/`, and each delivery
//!   in a group-committed journal under `ROOT/_events/journal/`, before anything acknowledges it
//!   (see its invariants for how two receivers agree without a lease).
//! - [`webhook`]: `POST /webhook/event` (decrypt, verify signature and token, land, answer),
//!   `/healthz`, `/metrics`.
//! - [`long_connection`]: discovery, the `pbbp2.Frame` WebSocket, pings, fragments, acks,
//!   reconnects.
//! - [`metrics`]: what both report to Prometheus.
//! - [`compact`]: what landed since the last run into `approval_events` and the approvals'
//!   tables (`out_events`, `leave_events`, `overtime_events`), under a compaction lease.
//! - [`state`]: the compaction's own state for the approvals' tables: the events kept beside
//!   each partition, the reverts waiting for their approval.
//! - [`index`]: where each approval's row is, for the events that name only its instance.
//!
//! Depends on `attendance-feishu` (the envelope, frames, event heads, the client for discovery)
//! and `attendance-lake` (the store). The receivers never take a lease: they run beside
//! backfills, syncs and compactions, and beside each other; the compaction takes its own, not
//! the root's.

pub mod compact;
pub mod index;
pub mod landing;
pub mod long_connection;
pub mod metrics;
pub mod state;
pub mod webhook;

pub use landing::{Landed, LandedEvent, Landing, LandingError, Transport};
pub use long_connection::{LongConnection, LongConnectionError, LongConnectionSummary};
pub use metrics::{Metrics, ReceiverTotals};
pub use webhook::{Secrets, WebhookReceiver};
