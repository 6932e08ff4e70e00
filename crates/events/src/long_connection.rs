//! The long connection: discovery (`POST /callback/ws/endpoint` with the app's credentials),
//! a WebSocket of `pbbp2.Frame` messages, pings, fragment reassembly, landing and acks, and the
//! platform's reconnect schedule.
//!
//! Invariants:
//! - An event frame is acknowledged (the same frame echoed, `biz_rt` added, payload
//!   `{"code":200,…}`) only after [`Landing::land`] returned; a landing that failed is answered
//!   code 500, so that the platform pushes it again. Card frames are not for this app and are
//!   left unanswered, as the official SDKs do.
//! - Events are handled concurrently (the platform does not order them either); fragments are
//!   kept per `message_id` until every `seq` of `sum` arrived, for at most
//!   [`FRAGMENT_TTL`] after the latest one.
//! - A payload that is not JSON is still landed (as a JSON string, named by its hash): nothing the
//!   platform delivers is dropped.
//! - Reconnects: the first after a random wait below `ReconnectNonce` seconds, the next ones
//!   every `ReconnectInterval`, each with a fresh URL from discovery; `ReconnectCount` ≥ 0 bounds
//!   them. A handshake answered `Handshake-Status` 403, or 514 with `Handshake-Autherrcode`
//!   1000040350, and a discovery answered with a non-retryable code, end the run with an error
//!   instead of a reconnect: they will not go away by themselves.
//! - On shutdown, frames stop being read, the events being landed finish and are acknowledged
//!   (for at most [`DRAIN_TIMEOUT`]), and the socket is closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attendance_feishu::frame::{
    AUTH_EXCEED_CONN_LIMIT, AckPayload, ConnectionConfig, Frame, HANDSHAKE_AUTH_ERRCODE,
    HANDSHAKE_AUTH_FAILED, HANDSHAKE_FORBIDDEN, HANDSHAKE_MSG, HANDSHAKE_STATUS, HEADER_BIZ_RT,
    HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, METHOD_CONTROL, METHOD_DATA, TYPE_EVENT, TYPE_PONG,
    URL_SERVICE_ID,
};
use attendance_feishu::{Client, PlatformError};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::landing::{Landed, Landing, Transport};
use crate::metrics::{Metrics, Refusal};

/// How long an incomplete fragmented message is kept after its latest fragment.
pub const FRAGMENT_TTL: Duration = Duration::from_secs(5);
/// How long a stop waits for the events being landed to be acknowledged.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The most fragments one message may announce (`sum`), and the most messages being
/// reassembled at once: the platform splits payloads of a few KiB; anything past these is not
/// a message this receiver can hold, and is left unacknowledged (the platform pushes it again).
pub const MAX_FRAGMENTS: usize = 64;
pub const MAX_PARTIAL_MESSAGES: usize = 1024;
/// Events being landed at once on one connection; past it, frames wait to be read.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long the WebSocket handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the long connection stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LongConnectionError {
    #[error(
        "the platform refused the long connection (Handshake-Status {status}{}){}: {}",
        auth_errcode.map(|c| format!(", Handshake-Autherrcode {c}")).unwrap_or_default(),
        if *auth_errcode == Some(AUTH_EXCEED_CONN_LIMIT) { " — the app already has its 50 connections: stop other receivers" } else { " — check that the app is a self-built app with long-connection event delivery enabled" },
        if msg.is_empty() { "no message" } else { msg.as_str() }
    )]
    Refused {
        status: u16,
        auth_errcode: Option<i64>,
        msg: String,
    },
    #[error(
        "the long-connection endpoint refused the app: check FEISHU_APP_ID and FEISHU_APP_SECRET"
    )]
    Discovery(#[source] PlatformError),
    #[error(
        "the long connection could not be (re)established after {attempts} attempts (ReconnectCount)"
    )]
    GaveUp {
        attempts: u64,
        #[source]
        last: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// What a long-connection run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LongConnectionSummary {
    pub connections: u64,
    pub landed: u64,
    pub duplicates: u64,
    /// Events answered code 500 (not landed; the platform pushes them again).
    pub failed: u64,
}

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    landed: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn summary(&self) -> LongConnectionSummary {
        LongConnectionSummary {
            connections: self.connections.load(Ordering::Relaxed),
            landed: self.landed.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The long-connection receiver of one app.
pub struct LongConnection {
    client: Arc<Client>,
    landing: Landing,
    metrics: Metrics,
    counts: Arc<Counts>,
}

/// How a session ended.
enum SessionEnd {
    Stopped,
    Lost(String),
}

/// Why a connection attempt failed.
enum AttemptError {
    Fatal(LongConnectionError),
    Retry(Box<dyn std::error::Error + Send + Sync>),
}

impl LongConnection {
    pub fn new(client: Arc<Client>, landing: Landing, metrics: Metrics) -> LongConnection {
        LongConnection {
            client,
            landing,
            metrics,
            counts: Arc::default(),
        }
    }

    /// Receives until `stop` turns true (then drains and returns the summary) or the platform
    /// refuses the app for good.
    pub async fn run(
        &self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<LongConnectionSummary, LongConnectionError> {
        let mut config = ConnectionConfig::default();
        let mut failures: u64 = 0;
        loop {
            if *stop.borrow() {
                return Ok(self.counts.summary());
            }
            let last = match self.attempt(&mut config, &mut stop).await {
                Ok(SessionEnd::Stopped) => return Ok(self.counts.summary()),
                Ok(SessionEnd::Lost(why)) => {
                    tracing::warn!(reason = %why, "long connection lost; reconnecting");
                    failures = 0;
                    None
                }
                Err(AttemptError::Fatal(err)) => return Err(err),
                Err(AttemptError::Retry(err)) => {
                    tracing::warn!(error = %err, "long connection not established; will retry");
                    Some(err)
                }
            };
            failures += 1;
            if config.reconnect_count >= 0 && failures > config.reconnect_count as u64 {
                return Err(LongConnectionError::GaveUp {
                    attempts: failures,
                    last,
                });
            }
            let wait = if failures == 1 {
                let nonce_ms = config.reconnect_nonce.min(3600).saturating_mul(1000);
                Duration::from_millis(if nonce_ms == 0 {
                    0
                } else {
                    rand::random_range(0..nonce_ms)
                })
            } else {
                config.reconnect_every()
            };
            self.metrics.reconnect();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One discovery, handshake and session.
    async fn attempt(
        &self,
        config: &mut ConnectionConfig,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, AttemptError> {
        let endpoint = match self.client.long_connection_endpoint().await {
            Ok(endpoint) => endpoint,
            Err(err @ PlatformError::Api { .. }) => {
                return Err(AttemptError::Fatal(LongConnectionError::Discovery(err)));
            }
            Err(err) => return Err(AttemptError::Retry(Box::new(err))),
        };
        if let Some(given) = endpoint.client_config {
            *config = given;
        }
        let service = service_of(&endpoint.url);
        let connecting = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(endpoint.url.as_str()),
        );
        let connected = tokio::select! {
            connected = connecting => connected,
            _ = stop.changed() => return Ok(SessionEnd::Stopped),
        };
        let Ok(connected) = connected else {
            return Err(AttemptError::Retry(
                format!("no WebSocket handshake within {CONNECT_TIMEOUT:?}").into(),
            ));
        };
        let socket = match connected {
            Ok((socket, _)) => socket,
            Err(tungstenite::Error::Http(response)) => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let status = header(HANDSHAKE_STATUS)
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(response.status().as_u16());
                let auth_errcode = header(HANDSHAKE_AUTH_ERRCODE).and_then(|s| s.parse().ok());
                let msg = header(HANDSHAKE_MSG).unwrap_or_default();
                let fatal = status == HANDSHAKE_FORBIDDEN
                    || (status == HANDSHAKE_AUTH_FAILED
                        && auth_errcode == Some(AUTH_EXCEED_CONN_LIMIT));
                let refused = LongConnectionError::Refused {
                    status,
                    auth_errcode,
                    msg,
                };
                return Err(if fatal {
                    AttemptError::Fatal(refused)
                } else {
                    AttemptError::Retry(Box::new(refused))
                });
            }
            Err(err) => return Err(AttemptError::Retry(Box::new(err))),
        };
        self.counts.connections.fetch_add(1, Ordering::Relaxed);
        self.metrics.set_connected(true);
        tracing::info!(service, "long connection established");
        let end = self.session(socket, service, config, stop).await;
        self.metrics.set_connected(false);
        Ok(end)
    }

    async fn session<S>(
        &self,
        socket: tokio_tungstenite::WebSocketStream<S>,
        service: i32,
        config: &mut ConnectionConfig,
        stop: &mut watch::Receiver<bool>,
    ) -> SessionEnd
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::channel::<Message>(1024);
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let mut pings = tokio::time::interval(config.ping_every());
        let mut fragments: HashMap<String, Partial> = HashMap::new();
        let mut in_flight = JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        // A link that went silent (no frame, not even a pong, for three ping periods) is lost,
        // though no error says so: a half-open TCP connection never fails a read.
        let mut last_heard = tokio::time::Instant::now();
        let end = loop {
            let silent_until = last_heard + 3 * config.ping_every();
            tokio::select! {
                _ = tokio::time::sleep_until(silent_until) => {
                    break SessionEnd::Lost(format!("nothing heard for {:?}", 3 * config.ping_every()));
                }
                _ = stop.changed() => {
                    if *stop.borrow() {
                        break SessionEnd::Stopped;
                    }
                }
                _ = pings.tick() => {
                    let ping = Frame::ping(service).encode_to_vec();
                    if out.send(Message::Binary(ping.into())).await.is_err() {
                        break SessionEnd::Lost("the socket's writer stopped".into());
                    }
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                message = stream.next() => {
                    let Some(message) = message else {
                        break SessionEnd::Lost("closed by the platform".into());
                    };
                    last_heard = tokio::time::Instant::now();
                    match message {
                    Ok(Message::Binary(bytes)) => {
                        let frame = match Frame::decode(&bytes) {
                            Ok(frame) => frame,
                            Err(err) => {
                                tracing::warn!(%err, "a message that is not a pbbp2.Frame; ignored");
                                continue;
                            }
                        };
                        if frame.method == METHOD_CONTROL {
                            if frame.frame_type() == TYPE_PONG
                                && let Some(given) = frame
                                    .payload
                                    .as_deref()
                                    .filter(|p| !p.is_empty())
                                    .and_then(|p| serde_json::from_slice::<ConnectionConfig>(p).ok())
                                && given != *config
                            {
                                *config = given;
                                pings = tokio::time::interval_at(
                                    tokio::time::Instant::now() + config.ping_every(),
                                    config.ping_every(),
                                );
                            }
                            continue;
                        }
                        if frame.method != METHOD_DATA || frame.frame_type() != TYPE_EVENT {
                            tracing::debug!(frame_type = frame.frame_type(), "frame not for this receiver; left unanswered");
                            continue;
                        }
                        let received = Instant::now();
                        if let Some((frame, payload)) = assemble(&mut fragments, frame) {
                            // Past MAX_IN_FLIGHT landings, reading waits: the platform's own
                            // re-push covers what waits too long.
                            let slot = Arc::clone(&slots)
                                .acquire_owned()
                                .await
                                .expect("the semaphore is never closed");
                            let landing = self.landing.clone();
                            let metrics = self.metrics.clone();
                            let counts = Arc::clone(&self.counts);
                            let out = out.clone();
                            in_flight.spawn(async move {
                                let ack = land_one(&landing, &metrics, &counts, frame, payload, received).await;
                                let _ = out.send(Message::Binary(ack.encode_to_vec().into())).await;
                                drop(slot);
                            });
                        }
                    }
                    Ok(Message::Close(_)) => break SessionEnd::Lost("closed by the platform".into()),
                    Ok(_) => {}
                    Err(err) => break SessionEnd::Lost(err.to_string()),
                    }
                }
            }
        };
        // Finish and acknowledge what is being landed, then close.
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("events still being landed at the stop were not acknowledged");
        }
        drop(out);
        // The writer ends once every ack is sent; a peer that stopped reading must not hold
        // the stop up.
        let writer_abort = writer.abort_handle();
        if tokio::time::timeout(DRAIN_TIMEOUT, writer).await.is_err() {
            writer_abort.abort();
        }
        end
    }

    pub fn summary(&self) -> LongConnectionSummary {
        self.counts.summary()
    }
}

/// Lands one event and builds its ack.
async fn land_one(
    landing: &Landing,
    metrics: &Metrics,
    counts: &Counts,
    mut frame: Frame,
    payload: Vec<u8>,
    received: Instant,
) -> Frame {
    let body = serde_json::from_slice::<Value>(&payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into_owned()));
    let code = match landing.land(body, Transport::LongConnection).await {
        Ok(Landed::New { id, event_type, .. }) => {
            counts.landed.fetch_add(1, Ordering::Relaxed);
            metrics.landed(event_type.as_deref(), Transport::LongConnection);
            tracing::debug!(id, event_type, "event landed");
            200
        }
        Ok(Landed::Duplicate { id, .. }) => {
            counts.duplicates.fetch_add(1, Ordering::Relaxed);
            metrics.duplicate(Transport::LongConnection);
            tracing::debug!(id, "duplicate delivery");
            200
        }
        Err(err) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            metrics.refused(Refusal::StoreUnavailable);
            tracing::warn!(
                error = %attendance_core::chain::Chain(&err),
                "event not landed; answered code 500 so that the platform pushes it again"
            );
            500
        }
    };
    let elapsed = received.elapsed();
    frame.set_header(HEADER_BIZ_RT, elapsed.as_millis().to_string());
    frame.payload = Some(AckPayload::new(code).to_bytes());
    metrics.acked(Transport::LongConnection, elapsed);
    frame
}

/// A fragmented message being reassembled.
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    touched: Instant,
}

/// The whole payload once every fragment of the frame's message arrived (at once for an
/// unfragmented frame), with the frame to echo in the ack.
fn assemble(
    fragments: &mut HashMap<String, Partial>,
    mut frame: Frame,
) -> Option<(Frame, Vec<u8>)> {
    let sum: usize = frame
        .header(HEADER_SUM)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let payload = frame.payload.take().unwrap_or_default();
    if sum <= 1 {
        return Some((frame, payload));
    }
    if sum > MAX_FRAGMENTS {
        tracing::warn!(
            sum,
            "a message announced more fragments than any event has; ignored"
        );
        return None;
    }
    let seq: usize = frame
        .header(HEADER_SEQ)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let message_id = frame.header(HEADER_MESSAGE_ID).unwrap_or("").to_owned();
    let now = Instant::now();
    fragments.retain(|_, p| now.duration_since(p.touched) < FRAGMENT_TTL);
    if seq >= sum {
        tracing::warn!(seq, sum, "a fragment beyond its message's count; ignored");
        return None;
    }
    if !fragments.contains_key(&message_id) && fragments.len() >= MAX_PARTIAL_MESSAGES {
        tracing::warn!("too many messages being reassembled at once; a fragment ignored");
        return None;
    }
    let partial = fragments
        .entry(message_id.clone())
        .or_insert_with(|| Partial {
            parts: vec![None; sum],
            touched: now,
        });
    if partial.parts.len() != sum {
        tracing::warn!("fragments of one message disagree on their count; starting over");
        partial.parts = vec![None; sum];
    }
    partial.parts[seq] = Some(payload);
    partial.touched = now;
    if partial.parts.iter().any(Option::is_none) {
        return None;
    }
    let whole = fragments
        .remove(&message_id)
        .expect("just filled")
        .parts
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    Some((frame, whole))
}

/// `service_id` of a long-connection URL (0 when absent).
fn service_of(url: &str) -> i32 {
    url.split_once('?')
        .map(|(_, query)| query)
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == URL_SERVICE_ID)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use attendance_feishu::frame::HEADER_TYPE;

    use super::*;

    fn fragment(id: &str, sum: usize, seq: usize, bytes: &[u8]) -> Frame {
        let mut frame = Frame::ping(3);
        frame.method = METHOD_DATA;
        frame.set_header(HEADER_TYPE, TYPE_EVENT);
        frame.set_header(HEADER_MESSAGE_ID, id);
        frame.set_header(HEADER_SUM, sum.to_string());
        frame.set_header(HEADER_SEQ, seq.to_string());
        frame.payload = Some(bytes.to_vec());
        frame
    }

    #[test]
    fn fragments_reassemble_in_seq_order_whatever_their_arrival() {
        let mut partials = HashMap::new();
        assert!(assemble(&mut partials, fragment("m", 3, 2, b"c}")).is_none());
        assert!(assemble(&mut partials, fragment("other", 2, 0, b"x")).is_none());
        assert!(assemble(&mut partials, fragment("m", 3, 0, b"{\"a")).is_none());
        let (frame, whole) = assemble(&mut partials, fragment("m", 3, 1, b"\":\"b")).unwrap();
        assert_eq!(whole, br#"{"a":"bc}"#.to_vec());
        assert_eq!(frame.header(HEADER_MESSAGE_ID), Some("m"));
        assert_eq!(partials.len(), 1, "the other message is still waiting");
        let (_, single) = assemble(&mut partials, fragment("s", 1, 0, b"{}")).unwrap();
        assert_eq!(single, b"{}");
        assert!(assemble(&mut partials, fragment("m", 3, 5, b"")).is_none());
    }

    #[test]
    fn a_message_announcing_too_many_fragments_is_not_held() {
        let mut partials = HashMap::new();
        let huge = fragment("m", 1_000_000_000_000, 0, b"{");
        assert!(assemble(&mut partials, huge).is_none());
        assert!(partials.is_empty(), "nothing allocated for it");
        for i in 0..MAX_PARTIAL_MESSAGES + 10 {
            assemble(&mut partials, fragment(&format!("m{i}"), 2, 0, b"{"));
        }
        assert_eq!(partials.len(), MAX_PARTIAL_MESSAGES);
    }

    #[test]
    fn the_service_id_comes_from_the_url() {
        assert_eq!(
            service_of("wss://x/ws/v2?fpid=1&device_id=9&service_id=33&ticket=t"),
            33
        );
        assert_eq!(service_of("wss://x/ws/v2"), 0);
    }
}
