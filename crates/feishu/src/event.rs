//! What a pushed event's plaintext JSON says about itself: v1 (`{uuid, ts, token, type:
//! "event_callback", event: {type, …}}`) or v2 (`{schema: "2.0", header: {event_id, event_type,
//! token, create_time, …}, event}`), its id for deduplication, its type, its verification token,
//! and whether it is the URL-verification challenge.
//!
//! Invariants: reading never fails — a body of an unknown shape has no id, type or token, and
//! it is the receiver's decision what to do with that. The approval event types the project
//! knows are named here once, for the receivers and the simulated tenant.

use serde_json::Value;

/// The approval events of the pages the project implements.
pub const OUT_APPROVAL: &str = "out_approval";
pub const OUT_APPROVAL_REVERT: &str = "out_approval_revert";
pub const LEAVE_APPROVAL: &str = "leave_approval";
pub const LEAVE_APPROVAL_V2: &str = "leave_approvalV2";
pub const LEAVE_APPROVAL_REVERT: &str = "leave_approval_revert";
pub const WORK_APPROVAL: &str = "work_approval";
pub const WORK_APPROVAL_REVERT: &str = "work_approval_revert";

/// Every approval event type above.
pub const APPROVAL_EVENT_TYPES: [&str; 7] = [
    OUT_APPROVAL,
    OUT_APPROVAL_REVERT,
    LEAVE_APPROVAL,
    LEAVE_APPROVAL_V2,
    LEAVE_APPROVAL_REVERT,
    WORK_APPROVAL,
    WORK_APPROVAL_REVERT,
];

/// The `type` of the URL-verification challenge.
pub const URL_VERIFICATION: &str = "url_verification";

/// The envelope version of an event body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `{uuid, ts, token, type, event}`.
    V1,
    /// `{schema: "2.0", header, event}`.
    V2,
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::V1 => "1",
            Schema::V2 => "2.0",
        }
    }
}

/// What an event body says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHead<'a> {
    pub schema: Schema,
    /// v1 `uuid` or v2 `header.event_id` (None when missing or empty).
    pub id: Option<&'a str>,
    /// v1 `event.type` or v2 `header.event_type`.
    pub event_type: Option<&'a str>,
    /// v1 (and challenge) top-level `token`, v2 `header.token`.
    pub token: Option<&'a str>,
    /// The challenge's value when this is `url_verification`.
    pub challenge: Option<&'a str>,
}

impl<'a> EventHead<'a> {
    pub fn of(body: &'a Value) -> EventHead<'a> {
        let str_at = |v: Option<&'a Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty());
        let header = body.get("header").filter(|h| h.is_object());
        let is_v2 = header.is_some() || str_at(body.get("schema")).is_some();
        let challenge = (str_at(body.get("type")) == Some(URL_VERIFICATION))
            .then(|| body.get("challenge").and_then(Value::as_str))
            .flatten();
        if is_v2 {
            let h = |key: &str| str_at(header.and_then(|h| h.get(key)));
            EventHead {
                schema: Schema::V2,
                id: h("event_id"),
                event_type: h("event_type"),
                token: h("token").or_else(|| str_at(body.get("token"))),
                challenge,
            }
        } else {
            EventHead {
                schema: Schema::V1,
                id: str_at(body.get("uuid")),
                event_type: str_at(body.get("event").and_then(|e| e.get("type"))),
                token: str_at(body.get("token")),
                challenge,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_v1_v2_and_the_challenge() {
        let v1 = json!({"uuid":"u1","ts":"1.5","token":"t","type":"event_callback",
            "event":{"type":"out_approval","instance_code":"I"}});
        let head = EventHead::of(&v1);
        assert_eq!(
            head,
            EventHead {
                schema: Schema::V1,
                id: Some("u1"),
                event_type: Some(OUT_APPROVAL),
                token: Some("t"),
                challenge: None
            }
        );
        let v2 = json!({"schema":"2.0","header":{"event_id":"e1","event_type":"x.y","token":"t2"},"event":{}});
        let head = EventHead::of(&v2);
        assert_eq!(
            (head.schema, head.id, head.event_type, head.token),
            (Schema::V2, Some("e1"), Some("x.y"), Some("t2"))
        );
        let challenge = json!({"challenge":"c","token":"t","type":"url_verification"});
        assert_eq!(EventHead::of(&challenge).challenge, Some("c"));
        let nothing = json!([1, 2]);
        let head = EventHead::of(&nothing);
        assert_eq!((head.id, head.event_type, head.token), (None, None, None));
    }
}
