//! The landing of pushed events on the output root, one object per event under
//! `ROOT/_events/inbox/<shard>/<id>.json` and each delivery in a journal of the deliveries landed
//! together (`ROOT/_events/journal/`), shared by the webhook receiver and the long connection.
//!
//! Invariants:
//! - A delivery is written to a journal and to its inbox object at once, and acknowledged only
//!   when both are durable. Deliveries waiting at once go into one journal (a group commit: one
//!   durable write for all of them, at most [`JOURNAL_MAX_EVENTS`] or [`JOURNAL_MAX_BYTES`]), so
//!   the compaction reads many events per object; a lone delivery gets a journal of its own and
//!   waits for no other. A receiver killed between the two writes leaves the event in one of
//!   them, and the compaction reads both (an inbox object whose event no journal holds is read
//!   itself), so neither order is needed. The journals hold deliveries, at least once (a retry
//!   is journaled again); the inbox holds events, once. A delivery whose object was created but
//!   whose journal line failed, or that was given up as late while its write went on, is
//!   answered with an error; its redelivery finds the object and is a [`Landed::Duplicate`], so
//!   receivers' counts of new events can fall short by such retries, never the inbox.
//! - An event's object name is a function of its id alone (v1 `uuid`, v2 `header.event_id`, or
//!   the SHA-256 of the body for a body without either), and it is written with the store's
//!   conditional create: of any number of deliveries of one event, to any number of receivers
//!   of either transport on one root, exactly one object results, whole. This is the only
//!   coordination between receivers: no lease, so a receiver never waits for a backfill, a sync
//!   or a compaction, nor they for it.
//! - [`Landing::land`] returns only once the object is durable (a local file is fsynced with
//!   its directory; an object store acknowledged the PUT), or once it found the object already
//!   there (then the directory is fsynced too, so that the first delivery's object is durable
//!   before a second delivery is acknowledged). Callers acknowledge after it returns `Ok`, never
//!   before.
//! - The stored body is the decrypted JSON, whole, except its verification token (v1 `token`,
//!   v2 `header.token`), which is a secret and is removed. Unknown event types land like known
//!   ones.
//! - Where an event lives and what its object holds is `attendance_lake::inbox`'s.

use std::sync::Arc;

use attendance_feishu::event::{EventHead, Schema};
use attendance_lake::inbox;
pub use attendance_lake::inbox::{INBOX_DIR, IdSource, LandedEvent, Transport, path_of};
use attendance_lake::store::{Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// The most deliveries one journal holds.
pub const JOURNAL_MAX_EVENTS: usize = 1_000;

/// Past this many bytes, a journal takes no more deliveries.
pub const JOURNAL_MAX_BYTES: usize = 4 << 20;

/// How long a landing may take before the delivery is answered as failed (503 on the webhook,
/// code 500 on the long connection): the platform counts a delivery not acknowledged within
/// 3 s as failed, and a retry of an event that did land meanwhile is only a duplicate.
pub const LAND_DEADLINE: std::time::Duration = std::time::Duration::from_millis(2500);

/// What landing one delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// The first delivery of this event: stored now, at this path.
    New {
        id: String,
        path: String,
        event_type: Option<String>,
    },
    /// Stored before (by this or another receiver): nothing written.
    Duplicate { id: String, path: String },
}

impl Landed {
    pub fn id(&self) -> &str {
        match self {
            Landed::New { id, .. } | Landed::Duplicate { id, .. } => id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    #[error("cannot land event {id}: the output root did not take it (the platform will retry)")]
    Store {
        id: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "cannot land event {id}: the output root did not take its journal (the platform will retry)"
    )]
    Journal {
        id: String,
        #[source]
        source: Arc<StoreError>,
    },
    #[error("landing an event took over {0:?}: not acknowledged (the platform will retry)")]
    Late(std::time::Duration),
}

/// A delivery waiting for its journal: its record's JSON line and who to tell.
struct Waiting {
    line: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// Deliveries waiting for a journal at most: past it (a root that stopped answering, with the
/// platform delivering again meanwhile), a landing fails at once instead of queueing.
const JOURNAL_QUEUE: usize = 10 * JOURNAL_MAX_EVENTS;

/// The journal writer of one landing (and its clones): started by the first delivery on that
/// delivery's runtime, it stops when the last clone is dropped (or the runtime stops).
#[derive(Debug, Default)]
struct Journal {
    queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<Waiting>>,
}

impl Journal {
    /// Writes `line` in the next journal; returns once that journal is durable.
    async fn append(&self, store: &Store, line: Vec<u8>) -> Result<(), Arc<StoreError>> {
        let queue = self.queue.get_or_init(|| {
            let (send, receive) = tokio::sync::mpsc::channel(JOURNAL_QUEUE);
            tokio::spawn(write_journals(store.clone(), writer_tag(), receive));
            send
        });
        let (done, result) = tokio::sync::oneshot::channel();
        let refused = |why: &str| {
            Arc::new(StoreError::Io {
                action: "write",
                location: store.describe(inbox::JOURNAL_DIR),
                source: why.into(),
            })
        };
        let stopped = "the journal writer stopped with the runtime it was started on";
        queue
            .try_send(Waiting { line, done })
            .map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => refused(
                    "the journals are not keeping up: the root has not answered for a while",
                ),
                tokio::sync::mpsc::error::TrySendError::Closed(_) => refused(stopped),
            })?;
        result.await.map_err(|_| refused(stopped))?
    }
}

/// A tag unique to one journal writer: two writers (receivers, or restarts of one) never
/// compete for a journal's name.
fn writer_tag() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// The journal writer: takes the first delivery waiting and every one waiting behind it, up to
/// the limits, writes them as one journal (create-if-absent, durable), and answers them all.
async fn write_journals(
    store: Store,
    tag: String,
    mut queue: tokio::sync::mpsc::Receiver<Waiting>,
) {
    let mut seq: u64 = 0;
    while let Some(first) = queue.recv().await {
        let mut bytes = first.line.len() + 1;
        let mut batch = vec![first];
        while batch.len() < JOURNAL_MAX_EVENTS && bytes < JOURNAL_MAX_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            bytes += next.line.len() + 1;
            batch.push(next);
        }
        let mut journal = Vec::with_capacity(bytes);
        for waiting in &batch {
            journal.extend_from_slice(&waiting.line);
            journal.push(b'\n');
        }
        let result = loop {
            seq += 1;
            let path = inbox::journal_path(Utc::now(), &tag, seq);
            // A name already taken (a tag drawn twice) is never overwritten: the next one is.
            match store.create(&path, journal.clone()).await {
                Ok(true) => break Ok(()),
                Ok(false) => continue,
                Err(e) => break Err(Arc::new(e)),
            }
        };
        for waiting in batch {
            // A delivery given up meanwhile (past its deadline) is not waiting any more.
            let _ = waiting.done.send(result.clone());
        }
    }
}

/// The landing of one root, cheap to clone and share across tasks.
#[derive(Debug, Clone)]
pub struct Landing {
    store: Store,
    receiver: Arc<str>,
    journal: Arc<Journal>,
}

impl Landing {
    pub fn new(store: Store, receiver: impl Into<String>) -> Landing {
        Landing {
            store,
            receiver: Arc::from(receiver.into()),
            journal: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// Stores `body` (the plaintext event JSON) unless an event of its id already is; see the
    /// module's invariants for when this returns.
    ///
    /// A landing that takes over [`LAND_DEADLINE`] is given up as [`LandingError::Late`] (the
    /// write may still finish; a redelivery then finds it).
    pub async fn land(&self, body: Value, transport: Transport) -> Result<Landed, LandingError> {
        let record = self.record(body, transport, Utc::now());
        let path = path_of(&record.id);
        let bytes = serde_json::to_vec(&record).expect("a JSON value always serialises");
        let landing = async {
            let (journaled, created) = tokio::join!(
                self.journal.append(&self.store, bytes.clone()),
                self.store.create(&path, bytes)
            );
            match journaled {
                Ok(()) => Ok(created),
                Err(source) => Err(LandingError::Journal {
                    id: record.id.clone(),
                    source,
                }),
            }
        };
        let created = tokio::time::timeout(LAND_DEADLINE, landing)
            .await
            .map_err(|_| LandingError::Late(LAND_DEADLINE))??;
        match created {
            Ok(true) => Ok(Landed::New {
                id: record.id,
                path,
                event_type: record.event_type,
            }),
            Ok(false) => Ok(Landed::Duplicate {
                id: record.id,
                path,
            }),
            Err(source) => Err(LandingError::Store {
                id: record.id,
                source,
            }),
        }
    }

    /// The record `land` stores for `body`.
    pub fn record(&self, mut body: Value, transport: Transport, at: DateTime<Utc>) -> LandedEvent {
        redact_token(&mut body);
        let head = EventHead::of(&body);
        let (id, id_source) = match (head.schema, head.id) {
            (Schema::V1, Some(id)) => (id.to_owned(), IdSource::Uuid),
            (Schema::V2, Some(id)) => (id.to_owned(), IdSource::EventId),
            (_, None) => {
                let bytes = serde_json::to_vec(&body).expect("a JSON value always serialises");
                (inbox::content_id(&bytes), IdSource::BodySha256)
            }
        };
        LandedEvent {
            id,
            id_source,
            schema: head.schema.as_str().to_owned(),
            event_type: head.event_type.map(str::to_owned),
            transport,
            received_at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            receiver: self.receiver.to_string(),
            body,
        }
    }

    /// Whether an event of this id is landed.
    pub async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.store.get(&path_of(id)).await?.is_some())
    }
}

/// Removes the verification token (v1 and challenge `token`, v2 `header.token`).
fn redact_token(body: &mut Value) {
    if let Some(map) = body.as_object_mut() {
        map.remove("token");
        if let Some(header) = map.get_mut("header").and_then(Value::as_object_mut) {
            header.remove("token");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn one_object_per_event_whatever_the_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::new(Store::Local(dir.path().to_path_buf()), "r1");
        let other = Landing::new(Store::Local(dir.path().to_path_buf()), "r2");
        let body = json!({"uuid":"u-1","token":"secret-token","type":"event_callback",
            "event":{"type":"out_approval","instance_code":"I1"}});
        let (a, b) = tokio::join!(
            landing.land(body.clone(), Transport::Webhook),
            other.land(body.clone(), Transport::LongConnection)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            [&a, &b]
                .iter()
                .filter(|l| matches!(l, Landed::New { .. }))
                .count(),
            1
        );
        assert_eq!(a.id(), "u-1");
        let again = landing.land(body, Transport::Webhook).await.unwrap();
        assert!(matches!(again, Landed::Duplicate { .. }));
        let all = inbox::read_all(landing.store()).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].event_type.as_deref(), Some("out_approval"));
        assert_eq!(all[0].body["event"]["instance_code"], "I1");
        assert!(all[0].body.get("token").is_none(), "the token is a secret");
        let text = std::fs::read_to_string(dir.path().join(path_of("u-1"))).unwrap();
        assert!(!text.contains("secret-token"));
    }

    #[tokio::test]
    async fn deliveries_waiting_together_share_a_journal_beside_their_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        let landing = Landing::new(store.clone(), "r1");
        let body = |i: usize| {
            json!({"uuid": format!("u-{i}"), "token": "secret-token", "type": "event_callback",
                "event": {"type": "out_approval", "instance_code": format!("I{i}")}})
        };
        // Fifty at once (one of them twice), then one alone.
        let mut deliveries: Vec<Value> = (0..50).map(body).collect();
        deliveries.push(body(7));
        let landed = futures::future::join_all(
            deliveries
                .into_iter()
                .map(|b| landing.land(b, Transport::Webhook)),
        )
        .await;
        assert!(landed.iter().all(Result::is_ok));
        landing.land(body(50), Transport::Webhook).await.unwrap();

        let journals = store.list_files(inbox::JOURNAL_DIR).await.unwrap();
        assert!(
            (2..=3).contains(&journals.len()),
            "grouped, not one a delivery: {journals:?}"
        );
        let lines: Vec<LandedEvent> = inbox::read_journals(&store, &journals).await.unwrap();
        assert_eq!(lines.len(), 52, "every delivery, the repeated one twice");
        let mut ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 51);
        let objects = inbox::read_all(&store).await.unwrap();
        assert_eq!(objects.len(), 51, "the inbox holds each event once");
        // A journal line is the record its inbox object holds.
        let first = objects.iter().find(|o| o.id == "u-0").unwrap();
        assert!(lines.iter().any(|l| l == first));
        for journal in &journals {
            let text = std::fs::read_to_string(dir.path().join(journal)).unwrap();
            assert!(!text.contains("secret-token"), "the token is a secret");
        }
    }

    #[tokio::test]
    async fn an_unwritable_journal_fails_the_landing() {
        let dir = tempfile::tempdir().unwrap();
        // The journal directory is a file: no journal can be created under it.
        std::fs::create_dir_all(dir.path().join("_events")).unwrap();
        std::fs::write(dir.path().join(inbox::JOURNAL_DIR), b"not a directory").unwrap();
        let landing = Landing::new(Store::Local(dir.path().to_path_buf()), "r1");
        let err = landing
            .land(
                json!({"uuid": "u-1", "event": {"type": "x"}}),
                Transport::Webhook,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LandingError::Journal { id, .. } if id == "u-1"),
            "{err:?}"
        );
    }

    #[test]
    fn a_body_without_an_id_is_named_by_its_content() {
        let landing = Landing::new(Store::Local("/nonexistent".into()), "r");
        let at = Utc::now();
        let a = landing.record(json!({"event":{"type":"x"}}), Transport::Webhook, at);
        let b = landing.record(json!({"event":{"type":"x"}}), Transport::Webhook, at);
        let c = landing.record(json!({"event":{"type":"y"}}), Transport::Webhook, at);
        assert_eq!(a.id_source, IdSource::BodySha256);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let v2 = landing.record(
            json!({"schema":"2.0","header":{"event_id":"e9","event_type":"t","token":"s"}}),
            Transport::LongConnection,
            at,
        );
        assert_eq!((v2.id.as_str(), v2.id_source), ("e9", IdSource::EventId));
        assert!(v2.body["header"].get("token").is_none());
    }
}
