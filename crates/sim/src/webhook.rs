//! The webhook push: events POSTed to a receiver's URL the way the platform does it (plain, or
//! encrypted and signed), with its timeout, retries, duplicates, reordering and bursts, and the
//! URL-verification challenge.
//!
//! Invariants:
//! - Every request is `Content-Type: application/json`. With an encrypt key the body is
//!   `{"encrypt": base64(IV ‖ AES-256-CBC(plaintext))}` with a fresh random IV, and the
//!   signature headers sign the exact bytes sent with a fresh timestamp (unix seconds) and
//!   nonce; without one the body is the plaintext and no signature header is sent.
//! - A delivery succeeds only on HTTP 200 within `ack_timeout`; otherwise it is retried after
//!   each `retry_delays[i] / time_scale`, and gives up after the last one.
//! - At most `concurrency` requests are in flight; a delivery waiting for its retry holds no
//!   slot. Duplicates (chosen by a stable hash of the uuid) are separate deliveries of the same
//!   body, queued after the originals; `reorder` shuffles the whole queue with a seeded RNG.
//! - [`SimTenant::push_webhook`] returns only when every delivery has succeeded or run out of
//!   retries; dropping its future aborts the deliveries.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use attendance_feishu::envelope::{EncryptKey, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use attendance_feishu::event::URL_VERIFICATION;

use crate::data::hash_of;
use crate::events::{SimEvent, TAG_DUPLICATE, TAG_REORDER, WebhookReport, hash_text, hex32};
use crate::server::lock;
use crate::{SimConfig, SimTenant};

/// A request body and its extra headers.
struct Sealed {
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

/// Seals a plaintext body: as is without a key, else encrypted and signed (fresh IV, timestamp
/// and nonce on every call).
fn seal(key: Option<&EncryptKey>, plaintext: &[u8]) -> Sealed {
    let Some(key) = key else {
        return Sealed {
            body: plaintext.to_vec(),
            headers: Vec::new(),
        };
    };
    let body = json!({"encrypt": key.encrypt(plaintext, rand::random())})
        .to_string()
        .into_bytes();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let nonce = hex32(rand::random(), rand::random());
    let signature = key.signature(&timestamp, &nonce, &body);
    Sealed {
        body,
        headers: vec![
            (TIMESTAMP_HEADER, timestamp),
            (NONCE_HEADER, nonce),
            (SIGNATURE_HEADER, signature),
        ],
    }
}

fn http_client() -> reqwest::Client {
    // Loopback only: never route through a proxy from the environment.
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client without TLS settings always builds")
}

/// POSTs one sealed body; the HTTP status, or 0 for a timeout or connection error.
async fn post(client: &reqwest::Client, url: &str, sealed: Sealed, timeout: Duration) -> u16 {
    let mut request = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(sealed.body);
    for (name, value) in sealed.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => response.status().as_u16(),
        Err(err) => {
            tracing::debug!(%err, "sim webhook delivery got no answer");
            0
        }
    }
}

#[derive(Default)]
struct Tally {
    acked: Vec<String>,
    acked_set: HashSet<String>,
    attempts: u64,
    answers: std::collections::BTreeMap<u16, u64>,
}

impl SimTenant {
    /// Delivers the events by webhook POST to `url`, as the config's [`crate::EventSettings`]
    /// say (plain or encrypted and signed; timeout, retries, duplicates, order, concurrency).
    /// Returns when every event is acked or has run out of retries.
    pub async fn push_webhook(&self, url: &str, events: Vec<SimEvent>) -> WebhookReport {
        push(&self.state.config, url, events).await
    }

    /// POSTs the URL-verification challenge (flat `{"challenge","token","type"}`, or sealed
    /// like events when an encrypt key is set) to `url`; the HTTP status and body text (0 and
    /// the error for no answer within `ack_timeout`).
    pub async fn send_challenge(&self, url: &str, challenge: &str) -> (u16, String) {
        let settings = &self.state.config.events;
        let key = settings.encrypt_key.as_deref().map(EncryptKey::new);
        let plaintext = json!({
            "challenge": challenge,
            "token": settings.verification_token,
            "type": URL_VERIFICATION,
        })
        .to_string();
        let sealed = seal(key.as_ref(), plaintext.as_bytes());
        let mut request = http_client()
            .post(url)
            .timeout(settings.ack_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(sealed.body);
        for (name, value) in sealed.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(err) => (0, err.to_string()),
        }
    }
}

/// [`SimTenant::push_webhook`] with the tenant's config (the admin endpoint calls it too).
pub(crate) async fn push(config: &SimConfig, url: &str, events: Vec<SimEvent>) -> WebhookReport {
    let settings = &config.events;
    let seed = config.seed;
    let key = settings.encrypt_key.as_deref().map(EncryptKey::new);
    let threshold = (settings.duplicate_share.clamp(0.0, 1.0) * 1_000_000.0) as u64;
    let mut deliveries: Vec<Arc<SimEvent>> = events.iter().cloned().map(Arc::new).collect();
    let duplicates: Vec<Arc<SimEvent>> = deliveries
        .iter()
        .filter(|event| {
            hash_of(&[seed, TAG_DUPLICATE, hash_text(&event.id)]) % 1_000_000 < threshold
        })
        .cloned()
        .collect();
    deliveries.extend(duplicates);
    if settings.reorder {
        let mut rng = StdRng::seed_from_u64(hash_of(&[seed, TAG_REORDER, events.len() as u64]));
        deliveries.shuffle(&mut rng);
    }
    let delays: Vec<Duration> = settings
        .retry_delays
        .iter()
        .map(|delay| {
            if settings.time_scale > 0.0 {
                delay.div_f64(settings.time_scale)
            } else {
                *delay
            }
        })
        .collect();
    let delays = Arc::new(delays);
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = http_client();
    let timeout = settings.ack_timeout;
    let mut tasks = JoinSet::new();
    for event in deliveries {
        let (slots, tally, delays) = (Arc::clone(&slots), Arc::clone(&tally), Arc::clone(&delays));
        let (client, key, url) = (client.clone(), key.clone(), url.to_owned());
        tasks.spawn(async move {
            let plaintext = serde_json::to_vec(&event.body).expect("JSON values serialize");
            for attempt in 0..=delays.len() {
                let status = {
                    // Fair (FIFO) permits keep the queue's order.
                    let _slot = slots
                        .acquire()
                        .await
                        .expect("the semaphore is never closed");
                    post(&client, &url, seal(key.as_ref(), &plaintext), timeout).await
                };
                {
                    let mut tally = lock(&tally);
                    tally.attempts += 1;
                    *tally.answers.entry(status).or_default() += 1;
                    if status == 200 {
                        if tally.acked_set.insert(event.id.clone()) {
                            tally.acked.push(event.id.clone());
                        }
                        return;
                    }
                }
                tracing::debug!(id = %event.id, status, attempt, "sim webhook delivery failed");
                match delays.get(attempt) {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => tracing::debug!(id = %event.id, "sim webhook delivery gave up"),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *lock(&tally));
    let mut gave_up = Vec::new();
    let mut counted = HashSet::new();
    for event in &events {
        if !tally.acked_set.contains(&event.id) && counted.insert(event.id.clone()) {
            gave_up.push(event.id.clone());
        }
    }
    WebhookReport {
        acked: tally.acked,
        gave_up,
        attempts: tally.attempts,
        answers: tally.answers,
    }
}
