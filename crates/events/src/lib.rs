//! Pushed approval events: the webhook receiver, the long connection, and the one landing both
//! use on the output root.
//!
//! - [`landing`]: every event stored whole, once, under `ROOT/_events/inbox/`, before anything
//!   acknowledges it (see its invariants for how two receivers agree without a lease).
//! - [`webhook`]: `POST /webhook/event` (decrypt, verify signature and token, land, answer),
//!   `/healthz`, `/metrics`.
//! - [`long_connection`]: discovery, the `pbbp2.Frame` WebSocket, pings, fragments, acks,
//!   reconnects.
//! - [`metrics`]: what both report to Prometheus.
//! - [`compact`]: the landed events into the `approval_events` table, under the lease.
//!
//! Depends on `attendance-feishu` (the envelope, frames, event heads, the client for discovery)
//! and `attendance-lake` (the store). The receivers never take the output root's lease: they run
//! beside backfills, syncs and compactions, and beside each other; the compaction does.

pub mod compact;
pub mod landing;
pub mod long_connection;
pub mod metrics;
pub mod webhook;

pub use landing::{Landed, LandedEvent, Landing, LandingError, Transport};
pub use long_connection::{LongConnection, LongConnectionError, LongConnectionSummary};
pub use metrics::{Metrics, ReceiverTotals};
pub use webhook::{Secrets, WebhookReceiver};
