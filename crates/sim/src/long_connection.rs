//! The long connection's server side: the discovery endpoint (`POST /callback/ws/endpoint`),
//! a WebSocket listener of its own on 127.0.0.1, pbbp2 frames, pongs, fragmented event pushes,
//! acks, re-pushes, handshake refusals and server-side closes.
//!
//! Invariants:
//! - A WebSocket upgrade is served only for a ticket the endpoint issued, once; any other is
//!   refused with `Handshake-Status: 403`. With `refuse_handshake` set every upgrade is refused
//!   with it (HTTP status = the Handshake-Status when it is a standard one, else 400).
//! - Each queued event goes to one random connected client (cluster mode) as a new message (a
//!   fresh `message_id`, split into `sum` frames when longer than `fragment_size`); it stays
//!   queued while no client is connected.
//! - A message is in flight until an ack (a data frame echoing its `message_id`): code 200
//!   marks the event acked and drops every other copy of it; any other code, or no ack within
//!   `repush_after`, queues the event again (a re-push). A closed socket's messages simply
//!   time out.
//! - Frame `SeqID` / `LogID` increase across the server; `service` is the URL's `service_id`.
//! - The listener, the dispatcher and every socket are tasks the tenant aborts when it stops.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::http;

use attendance_feishu::frame::{
    ENDPOINT_BAD_CREDENTIALS, ENDPOINT_OK, Frame, HANDSHAKE_AUTH_ERRCODE, HANDSHAKE_FORBIDDEN,
    HANDSHAKE_MSG, HANDSHAKE_STATUS, HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TIMESTAMP,
    HEADER_TRACE_ID, HEADER_TYPE, Header, METHOD_CONTROL, METHOD_DATA, TYPE_EVENT, TYPE_PING,
    TYPE_PONG, URL_DEVICE_ID, URL_SERVICE_ID,
};

use crate::data::hash_of;
use crate::events::{
    HandshakeRefusal, LongConnectionSettings, LongConnectionStats, SimEvent, hash_text, hex32,
};
use crate::server::lock;
use crate::{SimConfig, SimTenant};

const TAG_SERVICE: u64 = 0x68;
/// LogIDs are SeqIDs shifted by this, so the two never look alike.
const LOG_ID_BASE: u64 = 1_000_000_000;

/// An event waiting for (another) push.
struct Pending {
    event_id: String,
    payload: Arc<Vec<u8>>,
    repush: bool,
}

struct InFlight {
    pending: Pending,
    deadline: Instant,
}

/// A message handed to one socket's task.
struct Push {
    message_id: String,
    payload: Arc<Vec<u8>>,
}

struct Inner {
    settings: LongConnectionSettings,
    rng: StdRng,
    tickets: HashSet<String>,
    clients: BTreeMap<u64, mpsc::UnboundedSender<Push>>,
    next_client: u64,
    next_seq: u64,
    queue: VecDeque<Pending>,
    /// By message_id.
    in_flight: HashMap<String, InFlight>,
    /// Every message_id sent, with its event id (late acks still count).
    sent: HashMap<String, String>,
    stats: LongConnectionStats,
}

/// The long connection of one tenant.
pub(crate) struct LongConnection {
    app_id: String,
    app_secret: String,
    ws_addr: SocketAddr,
    service_id: i32,
    aid: u64,
    inner: Mutex<Inner>,
    /// Wakes the dispatcher: events queued, a client connected, an ack failed.
    wake: Notify,
    /// Wakes waiters for acks.
    acked: Notify,
}

impl LongConnection {
    /// Binds the WebSocket listener and starts it and the dispatcher; the tasks are the
    /// caller's to abort.
    pub(crate) async fn start(
        config: &SimConfig,
    ) -> std::io::Result<(Arc<LongConnection>, Vec<JoinHandle<()>>)> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let ws_addr = listener.local_addr()?;
        let clock_entropy = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let service = hash_of(&[config.seed, TAG_SERVICE]);
        let lc = Arc::new(LongConnection {
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
            ws_addr,
            service_id: 10_000 + (service % 90_000) as i32,
            aid: 100_000 + (hash_of(&[service, hash_text(&config.app_id)]) % 900_000),
            inner: Mutex::new(Inner {
                settings: config.events.long_connection.clone(),
                rng: StdRng::seed_from_u64(config.seed ^ clock_entropy),
                tickets: HashSet::new(),
                clients: BTreeMap::new(),
                next_client: 0,
                next_seq: 1,
                queue: VecDeque::new(),
                in_flight: HashMap::new(),
                sent: HashMap::new(),
                stats: LongConnectionStats::default(),
            }),
            wake: Notify::new(),
            acked: Notify::new(),
        });
        tracing::debug!(%ws_addr, "simulated long connection listening");
        let accept = tokio::spawn(accept_loop(Arc::clone(&lc), listener));
        let dispatch = tokio::spawn(dispatch_loop(Arc::clone(&lc)));
        Ok((lc, vec![accept, dispatch]))
    }

    fn settings(&self) -> LongConnectionSettings {
        lock(&self.inner).settings.clone()
    }

    /// The discovery answer: a fresh URL with a fresh one-time ticket, or the credentials
    /// error.
    fn discover(&self, body: &[u8]) -> Value {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut inner = lock(&self.inner);
        inner.stats.endpoint_calls += 1;
        let app_id = request.get("AppID").and_then(Value::as_str);
        let app_secret = request.get("AppSecret").and_then(Value::as_str);
        if app_id != Some(self.app_id.as_str()) || app_secret != Some(self.app_secret.as_str()) {
            return json!({
                "code": ENDPOINT_BAD_CREDENTIALS,
                "msg": "the app_id or app_secret is invalid",
            });
        }
        let ticket = {
            let hex = hex32(inner.rng.random(), inner.rng.random());
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        };
        inner.tickets.insert(ticket.clone());
        let device_id =
            7_000_000_000_000_000_000 + inner.rng.random_range(0..1_000_000_000_000_000_000u64);
        let access_key = hex32(inner.rng.random(), inner.rng.random());
        let url = format!(
            "ws://{}/ws/v2?fpid=1&aid={}&{URL_DEVICE_ID}={device_id}&access_key={access_key}&{URL_SERVICE_ID}={}&ticket={ticket}",
            self.ws_addr, self.aid, self.service_id
        );
        json!({
            "code": ENDPOINT_OK,
            "msg": "ok",
            "data": {"URL": url, "ClientConfig": inner.settings.config},
        })
    }

    /// Decides an upgrade: None to accept it, else the refusal and its message.
    fn admit(&self, request: &Request) -> Option<(HandshakeRefusal, &'static str)> {
        let mut inner = lock(&self.inner);
        if let Some(refusal) = inner.settings.refuse_handshake {
            inner.stats.handshakes_refused += 1;
            return Some((refusal, "the handshake is refused"));
        }
        let ticket = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("ticket="));
        if request.uri().path() == "/ws/v2"
            && let Some(ticket) = ticket
            && inner.tickets.remove(ticket)
        {
            return None;
        }
        inner.stats.handshakes_refused += 1;
        let forbidden = HandshakeRefusal {
            status: HANDSHAKE_FORBIDDEN,
            auth_errcode: None,
        };
        Some((forbidden, "invalid or used ticket"))
    }

    fn register(&self, sender: mpsc::UnboundedSender<Push>) -> u64 {
        let mut inner = lock(&self.inner);
        let client = inner.next_client;
        inner.next_client += 1;
        inner.clients.insert(client, sender);
        inner.stats.connections += 1;
        drop(inner);
        self.wake.notify_one();
        client
    }

    fn unregister(&self, client: u64) {
        lock(&self.inner).clients.remove(&client);
    }

    pub(crate) fn enqueue(&self, events: Vec<SimEvent>) {
        let mut inner = lock(&self.inner);
        for event in events {
            let payload = serde_json::to_vec(&event.body).expect("JSON values serialize");
            inner.queue.push_back(Pending {
                event_id: event.id,
                payload: Arc::new(payload),
                repush: false,
            });
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Re-queues expired messages and hands queued events to random clients; the next
    /// deadline of a message in flight.
    fn dispatch(&self, now: Instant) -> Option<Instant> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let mut expired: Vec<(Instant, String)> = inner
            .in_flight
            .iter()
            .filter(|(_, flight)| flight.deadline <= now)
            .map(|(message_id, flight)| (flight.deadline, message_id.clone()))
            .collect();
        expired.sort();
        for (_, message_id) in expired {
            if let Some(flight) = inner.in_flight.remove(&message_id) {
                let mut pending = flight.pending;
                pending.repush = true;
                inner.queue.push_back(pending);
            }
        }
        let repush_after = inner.settings.repush_after;
        while !inner.clients.is_empty() {
            let Some(pending) = inner.queue.pop_front() else {
                break;
            };
            let pick = inner.rng.random_range(0..inner.clients.len());
            let client = *inner.clients.keys().nth(pick).expect("pick < len");
            let message_id = hex32(inner.rng.random(), inner.rng.random());
            let push = Push {
                message_id: message_id.clone(),
                payload: Arc::clone(&pending.payload),
            };
            if inner.clients[&client].send(push).is_err() {
                // That socket's task is gone: forget it, try another.
                inner.clients.remove(&client);
                inner.queue.push_front(pending);
                continue;
            }
            if pending.repush {
                inner.stats.repushes += 1;
            }
            inner
                .sent
                .insert(message_id.clone(), pending.event_id.clone());
            inner.in_flight.insert(
                message_id,
                InFlight {
                    pending,
                    deadline: now + repush_after,
                },
            );
        }
        inner.in_flight.values().map(|flight| flight.deadline).min()
    }

    /// The frames of one push, and after how many event frames its socket is to be closed.
    fn event_frames(&self, push: &Push) -> (Vec<Frame>, Option<usize>) {
        let mut inner = lock(&self.inner);
        let size = inner
            .settings
            .fragment_size
            .filter(|size| *size > 0)
            .unwrap_or(usize::MAX);
        let payload = push.payload.as_slice();
        let chunks: Vec<&[u8]> = if payload.len() > size {
            payload.chunks(size).collect()
        } else {
            vec![payload]
        };
        let trace_id = hex32(inner.rng.random(), inner.rng.random());
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        let sum = chunks.len();
        let mut frames = Vec::with_capacity(sum);
        for (seq, chunk) in chunks.into_iter().enumerate() {
            let seq_id = inner.next_seq;
            inner.next_seq += 1;
            let header = |key: &str, value: String| Header {
                key: key.to_owned(),
                value,
            };
            frames.push(Frame {
                seq_id,
                log_id: LOG_ID_BASE + seq_id,
                service: self.service_id,
                method: METHOD_DATA,
                headers: vec![
                    header(HEADER_TYPE, TYPE_EVENT.to_owned()),
                    header(HEADER_MESSAGE_ID, push.message_id.clone()),
                    header(HEADER_TRACE_ID, trace_id.clone()),
                    header(HEADER_SUM, sum.to_string()),
                    header(HEADER_SEQ, seq.to_string()),
                    header(HEADER_TIMESTAMP, timestamp.clone()),
                ],
                payload_encoding: None,
                payload_type: None,
                payload: Some(chunk.to_vec()),
                log_id_new: None,
            });
        }
        (frames, inner.settings.close_after_frames)
    }

    fn count_frame(&self) {
        lock(&self.inner).stats.frames_sent += 1;
    }

    fn count_close(&self) {
        lock(&self.inner).stats.closed_by_server += 1;
    }

    /// Handles a frame from a client: a pong to send back for a ping, nothing otherwise.
    fn on_frame(&self, bytes: &[u8]) -> Option<Frame> {
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::debug!(%err, "sim long connection got a frame that does not decode");
                return None;
            }
        };
        match frame.method {
            METHOD_CONTROL if frame.frame_type() == TYPE_PING => {
                let mut inner = lock(&self.inner);
                inner.stats.pings += 1;
                let config = serde_json::to_vec(&inner.settings.config)
                    .expect("the connection config serializes");
                Some(Frame {
                    seq_id: frame.seq_id,
                    log_id: frame.log_id,
                    service: self.service_id,
                    method: METHOD_CONTROL,
                    headers: vec![Header {
                        key: HEADER_TYPE.to_owned(),
                        value: TYPE_PONG.to_owned(),
                    }],
                    payload_encoding: None,
                    payload_type: None,
                    payload: Some(config),
                    log_id_new: None,
                })
            }
            METHOD_DATA => {
                self.on_ack(&frame);
                None
            }
            _ => None,
        }
    }

    fn on_ack(&self, frame: &Frame) {
        let Some(message_id) = frame.header(HEADER_MESSAGE_ID) else {
            tracing::debug!("sim long connection got a data frame without message_id");
            return;
        };
        let code = frame
            .payload
            .as_deref()
            .and_then(|payload| serde_json::from_slice::<Value>(payload).ok())
            .and_then(|payload| payload.get("code").and_then(Value::as_i64));
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let Some(event_id) = inner.sent.get(message_id).cloned() else {
            tracing::debug!(
                message_id,
                "sim long connection got an ack of an unknown message"
            );
            return;
        };
        if code == Some(200) {
            inner.stats.acks_ok += 1;
            inner.stats.acked.insert(event_id.clone());
            inner
                .in_flight
                .retain(|_, flight| flight.pending.event_id != event_id);
            inner.queue.retain(|pending| pending.event_id != event_id);
            drop(guard);
            self.acked.notify_waiters();
        } else {
            inner.stats.acks_failed += 1;
            if let Some(flight) = inner.in_flight.get_mut(message_id) {
                flight.deadline = Instant::now();
            }
            drop(guard);
            self.wake.notify_one();
        }
    }
}

/// The answer to a refused upgrade, with the `Handshake-*` headers.
fn refusal_response(refusal: HandshakeRefusal, msg: &str) -> ErrorResponse {
    let status = http::StatusCode::from_u16(refusal.status)
        .ok()
        .filter(|status| status.canonical_reason().is_some())
        .unwrap_or(http::StatusCode::BAD_REQUEST);
    let mut builder = http::Response::builder()
        .status(status)
        .header(HANDSHAKE_STATUS, refusal.status.to_string())
        .header(HANDSHAKE_MSG, msg);
    if let Some(code) = refusal.auth_errcode {
        builder = builder.header(HANDSHAKE_AUTH_ERRCODE, code.to_string());
    }
    builder
        .body(Some(msg.to_owned()))
        .expect("a status and plain ASCII headers make a response")
}

/// The upgrade callback: tungstenite's signature returns the whole refusal response as the
/// error.
#[allow(
    clippy::result_large_err,
    reason = "the signature is tungstenite's handshake Callback"
)]
fn handshake_gate(
    lc: &Arc<LongConnection>,
) -> impl FnOnce(&Request, WsResponse) -> Result<WsResponse, ErrorResponse> + Unpin + use<> {
    let lc = Arc::clone(lc);
    move |request: &Request, response: WsResponse| match lc.admit(request) {
        None => Ok(response),
        Some((refusal, msg)) => Err(refusal_response(refusal, msg)),
    }
}

async fn accept_loop(lc: Arc<LongConnection>, listener: TcpListener) {
    // Dropping this set (the task is aborted when the tenant stops) aborts every socket.
    let mut sockets = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    sockets.spawn(serve(Arc::clone(&lc), stream));
                }
                Err(err) => {
                    tracing::warn!(%err, "sim long connection accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sockets.join_next(), if !sockets.is_empty() => {}
        }
    }
}

async fn dispatch_loop(lc: Arc<LongConnection>) {
    loop {
        let now = Instant::now();
        let next = lc.dispatch(now);
        let until = next.map_or(now + Duration::from_secs(1), |deadline| {
            deadline.min(now + Duration::from_secs(1))
        });
        tokio::select! {
            () = lc.wake.notified() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// How long a socket past `close_after_frames` still reads acks before it is closed.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// One socket: the handshake, then pushes out and frames in, until either side closes.
async fn serve(lc: Arc<LongConnection>, stream: TcpStream) {
    let socket = match tokio_tungstenite::accept_hdr_async(stream, handshake_gate(&lc)).await {
        Ok(socket) => socket,
        Err(err) => {
            tracing::debug!(%err, "sim long connection handshake ended");
            return;
        }
    };
    let (sender, mut pushes) = mpsc::unbounded_channel();
    let client = lc.register(sender);
    let (mut sink, mut incoming) = socket.split();
    let mut sent = 0usize;
    // Once past `close_after_frames`: no more pushes on this socket, acks still read until
    // this moment, then the close (the platform's own closes leave acks in flight too).
    let mut closing: Option<tokio::time::Instant> = None;
    'socket: loop {
        let close_at =
            closing.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = tokio::time::sleep_until(close_at), if closing.is_some() => {
                let _ = sink.send(Message::Close(None)).await;
                lc.count_close();
                tracing::debug!(client, sent, "sim long connection closed a socket");
                break 'socket;
            }
            push = pushes.recv(), if closing.is_none() => {
                let Some(push) = push else { break };
                let (frames, close_after) = lc.event_frames(&push);
                for frame in frames {
                    let bytes = frame.encode_to_vec();
                    if sink.send(Message::Binary(bytes.into())).await.is_err() {
                        break 'socket;
                    }
                    sent += 1;
                    lc.count_frame();
                    if close_after.is_some_and(|limit| sent >= limit) {
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        // Nothing more is routed here; what was is re-pushed after its deadline.
                        lc.unregister(client);
                        break;
                    }
                }
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(reply) = lc.on_frame(&bytes)
                        && sink.send(Message::Binary(reply.encode_to_vec().into())).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(err)) => {
                    tracing::debug!(%err, "sim long connection read failed");
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    lc.unregister(client);
}

/// `POST /callback/ws/endpoint`: always HTTP 200, the outcome in the body's code.
pub(crate) async fn endpoint_handler(
    State(lc): State<Arc<LongConnection>>,
    body: Bytes,
) -> Response {
    let answer = lc.discover(&body);
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        answer.to_string(),
    )
        .into_response()
}

impl SimTenant {
    /// Queues events for the long connection: each goes to one random connected client, is
    /// pushed again when not acked in time, and counts as delivered once acked with 200.
    pub fn push_long_connection(&self, events: Vec<SimEvent>) {
        self.long_connection.enqueue(events);
    }

    /// Waits until every given id is acked over the long connection, or the timeout; true if
    /// all were.
    pub async fn wait_long_connection_acked(&self, ids: &[String], timeout: Duration) -> bool {
        let lc = &self.long_connection;
        let deadline = Instant::now() + timeout;
        loop {
            let notified = lc.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let inner = lock(&lc.inner);
                if ids.iter().all(|id| inner.stats.acked.contains(id)) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    pub fn long_connection_stats(&self) -> LongConnectionStats {
        lock(&self.long_connection.inner).stats.clone()
    }

    /// Changes the long connection settings from now on (messages in flight keep their
    /// deadline).
    pub fn set_long_connection(&self, settings: LongConnectionSettings) {
        lock(&self.long_connection.inner).settings = settings;
        self.long_connection.wake.notify_one();
    }

    /// The settings the long connection runs with now.
    pub fn long_connection_settings(&self) -> LongConnectionSettings {
        self.long_connection.settings()
    }
}
