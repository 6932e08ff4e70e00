//! The receivers' Prometheus metrics: events landed by type and transport, duplicates,
//! refusals by reason, landing failures, and the time from receipt to acknowledgement.
//!
//! Invariants: the `event_type` label is one of the seven approval event types or `other`;
//! every counter only goes up for the life of the process; a refusal is counted
//! once, under exactly one reason; the ack latency is observed for every acknowledgement sent
//! (success or failure), from the moment the whole event was received.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use attendance_feishu::event::APPROVAL_EVENT_TYPES;

use crate::landing::Transport;

/// Why a delivery was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 413: over the body limit.
    TooLarge,
    /// 400: not JSON.
    NotJson,
    /// 400: an `encrypt` body that does not open.
    Undecryptable,
    /// 401: a missing or wrong signature.
    BadSignature,
    /// 401: a missing or wrong verification token.
    BadToken,
    /// 503 (webhook) or a code-500 ack (long connection): the root did not take it.
    StoreUnavailable,
    /// 503: the receiver is stopping.
    ShuttingDown,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::NotJson => "not_json",
            Refusal::Undecryptable => "undecryptable",
            Refusal::BadSignature => "bad_signature",
            Refusal::BadToken => "bad_token",
            Refusal::StoreUnavailable => "store_unavailable",
            Refusal::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LandedLabels {
    event_type: String,
    transport: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The metrics of one receiver process, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    landed: Family<LandedLabels, Counter>,
    duplicates: Family<TransportLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    ack_latency: Family<TransportLabels, Histogram>,
    connected: Gauge,
    reconnects: Counter,
    totals: Arc<Totals>,
}

/// Running totals for a receiver's closing summary.
#[derive(Debug, Default)]
struct Totals {
    landed: AtomicU64,
    duplicates: AtomicU64,
    refused: AtomicU64,
}

/// What a receiver did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverTotals {
    pub landed: u64,
    pub duplicates: u64,
    pub refused: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s: an ack is due within 3 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("attendance_events");
        let landed = Family::<LandedLabels, Counter>::default();
        let duplicates = Family::<TransportLabels, Counter>::default();
        let refused = Family::<ReasonLabels, Counter>::default();
        let ack_latency = Family::<TransportLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let connected = Gauge::default();
        let reconnects = Counter::default();
        registry.register(
            "landed",
            "Events stored for the first time, by event type and transport",
            landed.clone(),
        );
        registry.register(
            "duplicates",
            "Deliveries of events already stored (acknowledged, nothing written)",
            duplicates.clone(),
        );
        registry.register(
            "refused",
            "Deliveries refused or not acknowledged as landed, by reason",
            refused.clone(),
        );
        registry.register(
            "ack_latency_seconds",
            "Time from a delivery's receipt to its acknowledgement",
            ack_latency.clone(),
        );
        registry.register(
            "long_connection_up",
            "1 while the long connection is established",
            connected.clone(),
        );
        registry.register(
            "long_connection_reconnects",
            "Long-connection reconnect attempts",
            reconnects.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            landed,
            duplicates,
            refused,
            ack_latency,
            connected,
            reconnects,
            totals: Arc::default(),
        }
    }

    pub fn totals(&self) -> ReceiverTotals {
        ReceiverTotals {
            landed: self.totals.landed.load(Ordering::Relaxed),
            duplicates: self.totals.duplicates.load(Ordering::Relaxed),
            refused: self.totals.refused.load(Ordering::Relaxed),
        }
    }

    pub fn landed(&self, event_type: Option<&str>, transport: Transport) {
        self.totals.landed.fetch_add(1, Ordering::Relaxed);
        // The label is one of the known approval types or "other": the types a tenant sends
        // are not ours to bound, and a time series per stray type would grow without end.
        let event_type = event_type
            .filter(|t| APPROVAL_EVENT_TYPES.contains(t))
            .unwrap_or("other")
            .to_owned();
        self.landed
            .get_or_create(&LandedLabels {
                event_type,
                transport: transport.as_str().to_owned(),
            })
            .inc();
    }

    pub fn duplicate(&self, transport: Transport) {
        self.totals.duplicates.fetch_add(1, Ordering::Relaxed);
        self.duplicates
            .get_or_create(&TransportLabels {
                transport: transport.as_str().to_owned(),
            })
            .inc();
    }

    pub fn refused(&self, reason: Refusal) {
        self.totals.refused.fetch_add(1, Ordering::Relaxed);
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    pub fn acked(&self, transport: Transport, latency: Duration) {
        self.ack_latency
            .get_or_create(&TransportLabels {
                transport: transport.as_str().to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }

    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String never fails");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_outside_the_approval_events_are_one_label() {
        let metrics = Metrics::new();
        metrics.landed(Some(&"审批".repeat(40)), Transport::Webhook);
        metrics.landed(Some("im.message.receive_v1"), Transport::Webhook);
        metrics.landed(None, Transport::LongConnection);
        metrics.landed(Some("leave_approvalV2"), Transport::Webhook);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"attendance_events_landed_total{event_type="other",transport="webhook"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"event_type="leave_approvalV2""#));
        assert_eq!(metrics.totals().landed, 4);
    }
}
