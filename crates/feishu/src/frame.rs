//! The long connection's wire: endpoint discovery (`POST /callback/ws/endpoint`), the
//! `pbbp2.Frame` protobuf each binary WebSocket message carries, its header keys, the
//! connection settings a discovery answer or a pong carries, and the ack payload.
//!
//! Invariants:
//! - [`Frame`] is field for field the proto2 message of the official SDKs (tags 1–9; the
//!   required fields always encoded), so a frame encoded here decodes there and back.
//! - [`ConnectionConfig`] is in seconds, as the platform sends it; its defaults are the SDKs'
//!   before the platform has said anything.
//! - The payload of an event is plain event JSON (no envelope, no signature): the connection
//!   itself was authenticated by the discovery call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `POST` on the platform's host (not under `/open-apis/`): a fresh WebSocket URL.
pub const ENDPOINT_PATH: &str = "/callback/ws/endpoint";

/// [`Frame::method`] of control frames (ping, pong).
pub const METHOD_CONTROL: i32 = 0;
/// [`Frame::method`] of data frames (events, card callbacks, and their acks).
pub const METHOD_DATA: i32 = 1;

/// Header keys.
pub const HEADER_TYPE: &str = "type";
pub const HEADER_MESSAGE_ID: &str = "message_id";
pub const HEADER_SUM: &str = "sum";
pub const HEADER_SEQ: &str = "seq";
pub const HEADER_TRACE_ID: &str = "trace_id";
pub const HEADER_TIMESTAMP: &str = "timestamp";
/// Added by the client to an ack: how long handling took, in milliseconds.
pub const HEADER_BIZ_RT: &str = "biz_rt";

/// `type` header values.
pub const TYPE_EVENT: &str = "event";
pub const TYPE_CARD: &str = "card";
pub const TYPE_PING: &str = "ping";
pub const TYPE_PONG: &str = "pong";

/// Handshake answer headers (on a refused upgrade).
pub const HANDSHAKE_STATUS: &str = "Handshake-Status";
pub const HANDSHAKE_MSG: &str = "Handshake-Msg";
pub const HANDSHAKE_AUTH_ERRCODE: &str = "Handshake-Autherrcode";
/// `Handshake-Status` values.
pub const HANDSHAKE_FORBIDDEN: u16 = 403;
pub const HANDSHAKE_AUTH_FAILED: u16 = 514;
/// `Handshake-Autherrcode` with 514: the app already has the most connections it may.
pub const AUTH_EXCEED_CONN_LIMIT: i64 = 1000040350;

/// Discovery answer codes: retried (busy, internal) or fatal (anything else).
pub const ENDPOINT_OK: i64 = 0;
pub const ENDPOINT_SYSTEM_BUSY: i64 = 1;
pub const ENDPOINT_INTERNAL_ERROR: i64 = 1000040343;
/// The app's credentials are wrong: fatal.
pub const ENDPOINT_BAD_CREDENTIALS: i64 = 1000040344;

/// The URL query parameters the client reads from the discovery answer's URL.
pub const URL_DEVICE_ID: &str = "device_id";
pub const URL_SERVICE_ID: &str = "service_id";

/// `pbbp2.Header`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Header {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// `pbbp2.Frame`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

impl Frame {
    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// Sets header `key` (replacing an existing one).
    pub fn set_header(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.headers.iter_mut().find(|h| h.key == key) {
            Some(h) => h.value = value,
            None => self.headers.push(Header {
                key: key.to_owned(),
                value,
            }),
        }
    }

    /// The `type` header ("" when absent).
    pub fn frame_type(&self) -> &str {
        self.header(HEADER_TYPE).unwrap_or("")
    }

    /// A client's ping for this service.
    pub fn ping(service: i32) -> Frame {
        Frame {
            seq_id: 0,
            log_id: 0,
            service,
            method: METHOD_CONTROL,
            headers: vec![Header {
                key: HEADER_TYPE.to_owned(),
                value: TYPE_PING.to_owned(),
            }],
            payload_encoding: None,
            payload_type: None,
            payload: None,
            log_id_new: None,
        }
    }

    pub fn encode_to_vec(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, prost::DecodeError> {
        <Frame as prost::Message>::decode(bytes)
    }
}

/// The discovery request's body. `Debug` never shows the secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct EndpointRequest {
    #[serde(rename = "AppID")]
    pub app_id: String,
    #[serde(rename = "AppSecret")]
    pub app_secret: String,
}

/// The discovery answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointResponse {
    pub code: i64,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub data: Option<EndpointData>,
}

/// A long-connection URL and its settings. `Debug` leaves out the URL's query, which holds the
/// connection's ticket and access key.
#[derive(Clone, Serialize, Deserialize)]
pub struct EndpointData {
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "ClientConfig", default)]
    pub client_config: Option<ConnectionConfig>,
}

impl std::fmt::Debug for EndpointRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRequest")
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for EndpointData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self
            .url
            .split_once('?')
            .map_or(self.url.as_str(), |(u, _)| u);
        f.debug_struct("EndpointData")
            .field("url", &format_args!("{url}?<redacted>"))
            .field("client_config", &self.client_config)
            .finish()
    }
}

/// How the client pings and reconnects, in seconds (a pong's payload replaces it whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionConfig {
    /// Reconnect attempts before giving up; negative = forever.
    #[serde(rename = "ReconnectCount")]
    pub reconnect_count: i64,
    /// Seconds between reconnect attempts after the first.
    #[serde(rename = "ReconnectInterval")]
    pub reconnect_interval: u64,
    /// The first reconnect waits a random time below this many seconds.
    #[serde(rename = "ReconnectNonce")]
    pub reconnect_nonce: u64,
    /// Seconds between pings.
    #[serde(rename = "PingInterval")]
    pub ping_interval: u64,
}

impl Default for ConnectionConfig {
    fn default() -> ConnectionConfig {
        ConnectionConfig {
            reconnect_count: -1,
            reconnect_interval: 120,
            reconnect_nonce: 30,
            ping_interval: 120,
        }
    }
}

impl ConnectionConfig {
    /// The ping period, between 1 s and 1 h whatever the platform sent.
    pub fn ping_every(&self) -> Duration {
        Duration::from_secs(self.ping_interval.clamp(1, 3600))
    }

    /// The wait before a reconnect after the first, at most 1 h.
    pub fn reconnect_every(&self) -> Duration {
        Duration::from_secs(self.reconnect_interval.min(3600))
    }
}

/// The payload of an ack: `{"code":200,"headers":null,"data":null}` (500 when not handled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckPayload {
    pub code: u16,
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    pub data: Option<String>,
}

impl AckPayload {
    pub fn new(code: u16) -> AckPayload {
        AckPayload {
            code,
            headers: None,
            data: None,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ack always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_encodes_its_required_fields() {
        let mut frame = Frame::ping(7);
        frame.set_header(HEADER_MESSAGE_ID, "m1");
        frame.set_header(HEADER_TYPE, TYPE_EVENT);
        frame.payload = Some(br#"{"a":1}"#.to_vec());
        let bytes = frame.encode_to_vec();
        let back = Frame::decode(&bytes).unwrap();
        assert_eq!(back, frame);
        assert_eq!(back.frame_type(), TYPE_EVENT);
        assert_eq!(back.headers.len(), 2);
        // A ping with all-zero numbers still carries tags 1–4 (proto2 `required`).
        let ping = Frame::ping(0).encode_to_vec();
        assert_eq!(&ping[..8], &[0x08, 0, 0x10, 0, 0x18, 0, 0x20, 0]);
    }

    #[test]
    fn discovery_answers_use_the_platforms_names() {
        let answer: EndpointResponse = serde_json::from_str(
            r#"{"code":0,"msg":"ok","data":{"URL":"wss://x/ws?device_id=1&service_id=2",
                "ClientConfig":{"ReconnectCount":-1,"ReconnectInterval":120,"ReconnectNonce":30,"PingInterval":120}}}"#,
        )
        .unwrap();
        let data = answer.data.unwrap();
        assert_eq!(data.client_config, Some(ConnectionConfig::default()));
        let shown = format!("{data:?}");
        assert!(!shown.contains("device_id=1"), "{shown}");
        let request = EndpointRequest {
            app_id: "cli_x".into(),
            app_secret: "s3cret".into(),
        };
        assert!(!format!("{request:?}").contains("s3cret"));
        assert_eq!(
            String::from_utf8(AckPayload::new(200).to_bytes()).unwrap(),
            r#"{"code":200,"headers":null,"data":null}"#
        );
    }
}
