//! The `approval_events` table: one row per distinct landed event, every type (unknown ones
//! too), with its JSON kept whole in `raw`; its schema and a builder of its rows.
//!
//! Invariants:
//! - The column order is fixed and every instant is µs UTC (`Timestamp(Microsecond, "UTC")`),
//!   as in the pull tables; the partition date is the UTC date of `event_time`, or of
//!   `received_at` for an event whose time cannot be read.
//! - An event whose body cannot be read still has its row (ids, type, receipt, `raw`); what
//!   could not be read is left null and reported by the caller, never guessed.
//! - Rows are sorted by `event_id` within a partition, so that the same events always make
//!   the same file.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};

use crate::approval_event::{ApprovalEvent, EventBody};
use crate::table::Values;

/// The table's name, also its directory under the output root.
pub const APPROVAL_EVENTS: &str = "approval_events";

/// The schema of `approval_events`.
pub fn approval_events_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let time = |name: &str| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            )
        };
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            text("event_type"),
            text("instance_code"),
            text("approval_code"),
            text("tenant_key"),
            text("app_id"),
            text("user_id"),
            text("open_id"),
            time("event_time"),
            time("approval_start_time"),
            time("approval_end_time"),
            time("operate_time"),
            Field::new(
                "received_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("transport", DataType::Utf8, false),
            Field::new("raw", DataType::Utf8, false),
        ]))
    }))
}

/// How the columns of `approval_events` are stored (see [`Values`]).
pub fn approval_events_values(column: &str) -> Values {
    match column {
        "event_id"
        | "instance_code"
        | "event_time"
        | "approval_start_time"
        | "approval_end_time"
        | "operate_time"
        | "received_at" => Values::Unique,
        "raw" => Values::Document,
        _ => Values::Repeated,
    }
}

/// One landed event, as the table needs it.
#[derive(Debug, Clone)]
pub struct EventInput<'a> {
    pub event_id: &'a str,
    pub received_at: DateTime<Utc>,
    pub transport: &'a str,
    /// The event's JSON as stored.
    pub raw: &'a str,
    /// The event read, or `None` when it could not be.
    pub read: Option<&'a ApprovalEvent>,
    /// The type as landed (used when the body could not be read).
    pub event_type: Option<&'a str>,
}

impl EventInput<'_> {
    /// The partition date: the UTC date of the event's time, else of its receipt.
    pub fn date(&self) -> NaiveDate {
        self.read
            .and_then(|e| e.common.event_time)
            .unwrap_or(self.received_at)
            .date_naive()
    }
}

fn common<'e>(e: &EventInput<'e>) -> Option<&'e crate::approval_event::Common> {
    e.read.map(|r| &r.common)
}

fn approval<'e>(e: &EventInput<'e>) -> Option<&'e crate::approval_event::Approval> {
    e.read.and_then(|r| match &r.body {
        EventBody::Out(o) => Some(&o.approval),
        EventBody::Leave(l) => Some(&l.approval),
        EventBody::Overtime(w) => Some(&w.approval),
        EventBody::Revert(_) | EventBody::Other => None,
    })
}

/// Builds a batch of `approval_events` from events, sorted by `event_id`.
pub fn approval_events_batch<'a>(events: &[EventInput<'a>]) -> RecordBatch {
    let mut order: Vec<&EventInput<'a>> = events.iter().collect();
    order.sort_by(|a, b| a.event_id.cmp(b.event_id));
    let n = order.len();
    // Cells borrow from the events: nothing is copied but into the column.
    let texts = |f: &dyn Fn(&EventInput<'a>) -> Option<&'a str>| -> ArrayRef {
        let bytes = order.iter().map(|e| f(e).map_or(0, str::len)).sum();
        let mut b = StringBuilder::with_capacity(n, bytes);
        for e in &order {
            b.append_option(f(e));
        }
        Arc::new(b.finish())
    };
    let times = |f: &dyn Fn(&EventInput<'_>) -> Option<i64>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for e in &order {
            b.append_option(f(e));
        }
        Arc::new(b.finish())
    };
    let seconds = |s: Option<i64>| s.and_then(|s| s.checked_mul(1_000_000));
    let columns: Vec<ArrayRef> = vec![
        texts(&|e| Some(e.event_id)),
        texts(&|e| {
            common(e)
                .map(|c| c.event_type.as_str())
                .filter(|t| !t.is_empty())
                .or(e.event_type)
        }),
        texts(&|e| common(e).and_then(|c| c.instance_code.as_deref())),
        texts(&|e| common(e).and_then(|c| c.approval_code.as_deref())),
        texts(&|e| common(e).and_then(|c| c.tenant_key.as_deref())),
        texts(&|e| common(e).and_then(|c| c.app_id.as_deref())),
        texts(&|e| approval(e).and_then(|a| a.applicant.user_id.as_deref())),
        texts(&|e| approval(e).and_then(|a| a.applicant.open_id.as_deref())),
        times(&|e| {
            common(e)
                .and_then(|c| c.event_time)
                .map(|t| t.timestamp_micros())
        }),
        times(&|e| seconds(approval(e).and_then(|a| a.process_start))),
        times(&|e| seconds(approval(e).and_then(|a| a.process_end))),
        times(&|e| {
            seconds(e.read.and_then(|r| match &r.body {
                EventBody::Revert(revert) => revert.operate_time,
                _ => None,
            }))
        }),
        times(&|e| Some(e.received_at.timestamp_micros())),
        texts(&|e| Some(e.transport)),
        texts(&|e| Some(e.raw)),
    ];
    RecordBatch::try_new(approval_events_schema(), columns)
        .expect("the columns are built in the schema's order and types")
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_are_sorted_typed_and_unreadable_events_keep_their_row() {
        let revert = json!({"ts": "1764460800.25", "uuid": "b", "type": "event_callback",
            "event": {"type": "out_approval_revert", "instance_code": "I", "operate_time": "1764460000"}});
        let read = ApprovalEvent::read(&revert).unwrap();
        let received: DateTime<Utc> = "2026-11-30T01:00:00Z".parse().unwrap();
        let raw_b = revert.to_string();
        let events = [
            EventInput {
                event_id: "b",
                received_at: received,
                transport: "webhook",
                raw: &raw_b,
                read: Some(&read),
                event_type: Some("out_approval_revert"),
            },
            EventInput {
                event_id: "a",
                received_at: received,
                transport: "long_connection",
                raw: "{\"ts\":\"never\"}",
                read: None,
                event_type: Some("leave_approval"),
            },
        ];
        assert_eq!(events[0].date().to_string(), "2025-11-30");
        assert_eq!(events[1].date().to_string(), "2026-11-30");
        let batch = approval_events_batch(&events);
        assert_eq!(batch.schema(), approval_events_schema());
        let ids = batch.column(0).as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "b"));
        let types = batch.column(1).as_string::<i32>();
        assert_eq!(types.value(0), "leave_approval");
        let event_time = batch.column(8).as_primitive::<TimestampMicrosecondType>();
        assert!(event_time.is_null(0));
        assert_eq!(event_time.value(1), 1_764_460_800_250_000);
        let operate = batch.column(11).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(operate.value(1), 1_764_460_000_000_000);
        assert_eq!(batch.column(14).as_string::<i32>().value(1), raw_b);
    }
}
