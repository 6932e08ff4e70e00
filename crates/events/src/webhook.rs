//! The webhook receiver: `POST <path>` (default `/webhook/event`) opens, authenticates and lands
//! each pushed event; `GET /healthz` says whether it takes deliveries; `GET /metrics` serves the
//! Prometheus text.
//!
//! Invariants:
//! - `200 {"msg":"success"}` is sent only after [`Landing::land`] returned (the event, or an
//!   earlier delivery of it, is durable). Every other answer lands nothing.
//! - Answers: 413 past the body limit (1 MiB); 400 for a body that is not JSON or an `encrypt`
//!   value that does not open; 401 for a missing or wrong signature (checked whenever an
//!   encrypt key is set, except on the URL-verification challenge) or verification token
//!   (checked on every request, the challenge included, in constant time); 503 when the root did
//!   not take the event in time or the receiver is stopping, so that the platform retries.
//! - The challenge is answered `{"challenge": …}` in plaintext, without touching the root.
//! - No body, token, key or signature is ever logged or put in an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use attendance_feishu::envelope::{
    EncryptKey, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, secrets_match,
};
use attendance_feishu::event::EventHead;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::landing::{Landed, Landing, Transport};
use crate::metrics::{Metrics, Refusal};

/// The default path of the event endpoint.
pub const DEFAULT_PATH: &str = "/webhook/event";
/// The largest body taken (the platform's events are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The app's event secrets. `Debug` shows neither.
#[derive(Clone)]
pub struct Secrets {
    verification_token: String,
    encrypt_key: Option<EncryptKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("verification_token", &"<redacted>")
            .field(
                "encrypt_key",
                &self.encrypt_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Secrets {
    pub fn new(verification_token: impl Into<String>, encrypt_key: Option<&str>) -> Secrets {
        Secrets {
            verification_token: verification_token.into(),
            encrypt_key: encrypt_key.filter(|k| !k.is_empty()).map(EncryptKey::new),
        }
    }

    pub fn encrypts(&self) -> bool {
        self.encrypt_key.is_some()
    }
}

/// What an authenticated delivery holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// URL verification: answer with this value.
    Challenge(String),
    /// An event: land this plaintext JSON.
    Event(Value),
}

/// The signature headers of a delivery (absent ones are empty).
#[derive(Debug, Clone, Default)]
pub struct Signed<'a> {
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
}

/// Opens and authenticates one delivery's raw body; the answer's status follows from the
/// refusal (see [`status_of`]).
pub fn open(secrets: &Secrets, signed: &Signed<'_>, raw: &[u8]) -> Result<Opened, Refusal> {
    let outer: Value = serde_json::from_slice(raw).map_err(|_| Refusal::NotJson)?;
    let signature_ok = |key: &EncryptKey| {
        !signed.signature.is_empty()
            && key.verify(signed.timestamp, signed.nonce, raw, signed.signature)
    };
    // A signature that is present must be right, whatever the body turns out to be.
    if let Some(key) = &secrets.encrypt_key
        && !signed.signature.is_empty()
        && !signature_ok(key)
    {
        return Err(Refusal::BadSignature);
    }
    let body = match outer.get("encrypt").and_then(Value::as_str) {
        Some(sealed) => {
            let key = secrets.encrypt_key.as_ref().ok_or(Refusal::Undecryptable)?;
            let plain = key.decrypt(sealed).map_err(|_| Refusal::Undecryptable)?;
            serde_json::from_slice(&plain).map_err(|_| Refusal::Undecryptable)?
        }
        None => outer,
    };
    let head = EventHead::of(&body);
    let token_ok = head
        .token
        .is_some_and(|token| secrets_match(token, &secrets.verification_token));
    if let Some(challenge) = head.challenge {
        // The platform does not sign the challenge; its token is checked like any other.
        return if token_ok {
            Ok(Opened::Challenge(challenge.to_owned()))
        } else {
            Err(Refusal::BadToken)
        };
    }
    if let Some(key) = &secrets.encrypt_key
        && !signature_ok(key)
    {
        return Err(Refusal::BadSignature);
    }
    if !token_ok {
        return Err(Refusal::BadToken);
    }
    Ok(Opened::Event(body))
}

/// The HTTP status a refusal is answered with.
pub fn status_of(refusal: Refusal) -> StatusCode {
    match refusal {
        Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::NotJson | Refusal::Undecryptable => StatusCode::BAD_REQUEST,
        Refusal::BadSignature | Refusal::BadToken => StatusCode::UNAUTHORIZED,
        Refusal::StoreUnavailable | Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn message_of(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::TooLarge => "body over 1 MiB",
        Refusal::NotJson => "body is not JSON",
        Refusal::Undecryptable => "encrypt value does not decrypt with the configured key",
        Refusal::BadSignature => "missing or wrong X-Lark-Signature",
        Refusal::BadToken => "missing or wrong verification token",
        Refusal::StoreUnavailable => "event not stored, retry later",
        Refusal::ShuttingDown => "receiver stopping, retry later",
    }
}

/// The webhook receiver's state, shared by its handlers.
#[derive(Debug)]
pub struct WebhookReceiver {
    landing: Landing,
    secrets: Secrets,
    metrics: Metrics,
    draining: AtomicBool,
}

impl WebhookReceiver {
    pub fn new(landing: Landing, secrets: Secrets, metrics: Metrics) -> Arc<WebhookReceiver> {
        Arc::new(WebhookReceiver {
            landing,
            secrets,
            metrics,
            draining: AtomicBool::new(false),
        })
    }

    /// From now on `/healthz` answers 503 (a load balancer stops sending) and new deliveries
    /// are answered 503; deliveries already being landed finish and are answered.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The routes: the event endpoint at `path`, `/healthz` and `/metrics`.
    pub fn router(self: &Arc<Self>, path: &str) -> Router {
        Router::new()
            .route(path, post(event_handler))
            .route("/healthz", get(health_handler))
            .route("/metrics", get(metrics_handler))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(Arc::clone(self))
    }

    fn refuse(&self, refusal: Refusal, received: Instant) -> Response {
        self.metrics.refused(refusal);
        if matches!(refusal, Refusal::StoreUnavailable | Refusal::ShuttingDown) {
            self.metrics.acked(Transport::Webhook, received.elapsed());
        }
        tracing::debug!(reason = refusal.as_str(), "delivery refused");
        (
            status_of(refusal),
            json_body(&json!({"msg": message_of(refusal)})),
        )
            .into_response()
    }
}

/// `GET /healthz` (200 "ok") and `GET /metrics` alone, for a receiver without an HTTP endpoint
/// of its own (the long connection).
pub fn ops_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics_response(&metrics) }
            }),
        )
}

/// `GET /metrics`: the Prometheus text exposition.
fn metrics_response(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// Serves `receiver` on `listener` until `stop` turns true; then stops accepting connections,
/// answers 503 to deliveries not yet being landed, and returns once every delivery being
/// landed has been answered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    receiver: Arc<WebhookReceiver>,
    path: &str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = receiver.router(path);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
            receiver.drain();
        })
        .await
}

fn json_body(value: &Value) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
}

async fn event_handler(
    State(receiver): State<Arc<WebhookReceiver>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let received = Instant::now();
    let raw = match body {
        Ok(raw) => raw,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return receiver.refuse(Refusal::TooLarge, received);
        }
        Err(_) => return receiver.refuse(Refusal::NotJson, received),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let signed = Signed {
        timestamp: header(TIMESTAMP_HEADER),
        nonce: header(NONCE_HEADER),
        signature: header(SIGNATURE_HEADER),
    };
    let event = match open(&receiver.secrets, &signed, &raw) {
        Ok(Opened::Challenge(challenge)) => {
            return (
                StatusCode::OK,
                json_body(&json!({ "challenge": challenge })),
            )
                .into_response();
        }
        Ok(Opened::Event(event)) => event,
        Err(refusal) => return receiver.refuse(refusal, received),
    };
    if receiver.draining.load(Ordering::SeqCst) {
        return receiver.refuse(Refusal::ShuttingDown, received);
    }
    match receiver.landing.land(event, Transport::Webhook).await {
        Ok(landed) => {
            match &landed {
                Landed::New { id, event_type, .. } => {
                    receiver
                        .metrics
                        .landed(event_type.as_deref(), Transport::Webhook);
                    tracing::debug!(id, event_type, "event landed");
                }
                Landed::Duplicate { id, .. } => {
                    receiver.metrics.duplicate(Transport::Webhook);
                    tracing::debug!(id, "duplicate delivery");
                }
            }
            receiver
                .metrics
                .acked(Transport::Webhook, received.elapsed());
            (StatusCode::OK, json_body(&json!({"msg": "success"}))).into_response()
        }
        Err(err) => {
            tracing::warn!(
                error = %attendance_core::chain::Chain(&err),
                "event not landed; answered 503 so that the platform retries"
            );
            receiver.refuse(Refusal::StoreUnavailable, received)
        }
    }
}

async fn health_handler(State(receiver): State<Arc<WebhookReceiver>>) -> Response {
    if receiver.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics_handler(State(receiver): State<Arc<WebhookReceiver>>) -> Response {
    metrics_response(&receiver.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "vt-123";
    const KEY: &str = "ek-456";

    fn sealed(secrets_key: &str, plain: &Value) -> Vec<u8> {
        let key = EncryptKey::new(secrets_key);
        json!({"encrypt": key.encrypt(plain.to_string().as_bytes(), [7; 16])})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn opens_plain_and_encrypted_events_and_checks_everything() {
        let event = json!({"uuid":"u1","token":TOKEN,"type":"event_callback","event":{"type":"out_approval"}});
        let plain = Secrets::new(TOKEN, None);
        let raw = event.to_string().into_bytes();
        assert_eq!(
            open(&plain, &Signed::default(), &raw),
            Ok(Opened::Event(event.clone()))
        );
        let wrong_token = json!({"uuid":"u1","token":"nope","event":{}}).to_string();
        assert_eq!(
            open(&plain, &Signed::default(), wrong_token.as_bytes()),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            open(&plain, &Signed::default(), b"{\"uuid\":\"u1\"}"),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            open(&plain, &Signed::default(), b"<html>"),
            Err(Refusal::NotJson)
        );

        let secrets = Secrets::new(TOKEN, Some(KEY));
        let key = EncryptKey::new(KEY);
        let body = sealed(KEY, &event);
        let signature = key.signature("1700000000", "n1", &body);
        let signed = Signed {
            timestamp: "1700000000",
            nonce: "n1",
            signature: &signature,
        };
        assert_eq!(
            open(&secrets, &signed, &body),
            Ok(Opened::Event(event.clone()))
        );
        // Unsigned, or signed over other bytes.
        assert_eq!(
            open(&secrets, &Signed::default(), &body),
            Err(Refusal::BadSignature)
        );
        let other = Signed {
            nonce: "n2",
            ..signed.clone()
        };
        assert_eq!(open(&secrets, &other, &body), Err(Refusal::BadSignature));
        // Sealed with another key (and signed correctly over those bytes).
        let foreign = sealed("other-key", &event);
        let foreign_sig = key.signature("1", "n", &foreign);
        let foreign_signed = Signed {
            timestamp: "1",
            nonce: "n",
            signature: &foreign_sig,
        };
        assert_eq!(
            open(&secrets, &foreign_signed, &foreign),
            Err(Refusal::Undecryptable)
        );
        // An encrypted body when no key is configured.
        assert_eq!(
            open(&plain, &Signed::default(), &body),
            Err(Refusal::Undecryptable)
        );
    }

    #[test]
    fn the_challenge_is_unsigned_but_its_token_is_checked() {
        let challenge = json!({"challenge":"c-1","token":TOKEN,"type":"url_verification"});
        let secrets = Secrets::new(TOKEN, Some(KEY));
        let body = sealed(KEY, &challenge);
        assert_eq!(
            open(&secrets, &Signed::default(), &body),
            Ok(Opened::Challenge("c-1".into()))
        );
        let plain = Secrets::new(TOKEN, None);
        assert_eq!(
            open(&plain, &Signed::default(), challenge.to_string().as_bytes()),
            Ok(Opened::Challenge("c-1".into()))
        );
        let wrong = json!({"challenge":"c-1","token":"x","type":"url_verification"});
        assert_eq!(
            open(&plain, &Signed::default(), wrong.to_string().as_bytes()),
            Err(Refusal::BadToken)
        );
        assert!(!format!("{secrets:?}").contains(TOKEN));
        assert!(!format!("{secrets:?}").contains(KEY));
    }
}
