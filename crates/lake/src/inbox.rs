//! The inbox of pushed events on the output root: where each landed event lives
//! (`_events/inbox/<shard>/<id>.json`), what its object holds, and reading them back. The
//! receivers (`attendance-events`) write it; the compaction and the event-driven resync read it.
//!
//! Invariants:
//! - An event's path is a function of its id alone, so that a create-if-absent on it stores
//!   each event once whoever receives it; the shard is the first two hex digits of SHA-256(id)
//!   (256 directories, evenly filled), and an id unfit for a file name is named by its hash.
//! - An object holds one [`LandedEvent`] as JSON, whole; objects are never rewritten.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// Where landed events live, relative to the root.
pub const INBOX_DIR: &str = "_events/inbox";

/// How an event reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Webhook,
    LongConnection,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Webhook => "webhook",
            Transport::LongConnection => "long_connection",
        }
    }
}

/// Where an event's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdSource {
    /// v1 `uuid`.
    Uuid,
    /// v2 `header.event_id`.
    EventId,
    /// Neither: `sha256-` and the hex SHA-256 of the stored body.
    BodySha256,
}

/// One landed event, as stored (one JSON object per file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandedEvent {
    pub id: String,
    pub id_source: IdSource,
    /// "1" or "2.0".
    pub schema: String,
    /// v1 `event.type` or v2 `header.event_type`; None when the body has none.
    pub event_type: Option<String>,
    pub transport: Transport,
    /// When the delivery that landed it was received, UTC, RFC 3339 with milliseconds.
    pub received_at: String,
    /// Which receiver landed it (`--receiver-id`, by default host and process).
    pub receiver: String,
    /// The decrypted event JSON, without its verification token.
    pub body: Value,
}

/// The path of the event with this id.
pub fn path_of(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let shard = hex(&digest[..1]);
    let safe = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    let name = if safe {
        id.to_owned()
    } else {
        // Ids are the platform's opaque strings; anything unfit for a file name is named by
        // its hash (still a function of the id alone).
        format!("h-{}", hex(&digest))
    };
    format!("{INBOX_DIR}/{shard}/{name}.json")
}

/// The id of an event whose body carries none: `sha256-` and the hex SHA-256 of its bytes.
pub fn content_id(bytes: &[u8]) -> String {
    format!("sha256-{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every landed event, in path order. Reads every object, [`READ_CONCURRENCY`] at a time:
/// meant for roots whose inbox the compaction keeps small, for tests and for the demo.
pub async fn read_all(store: &Store) -> Result<Vec<LandedEvent>, StoreError> {
    let files = store.list_files(INBOX_DIR).await?;
    read_paths(store, &files).await
}

/// The landed events at these paths, in their order ([`READ_CONCURRENCY`] reads at a time);
/// an object gone since it was listed is left out.
pub async fn read_paths(store: &Store, paths: &[String]) -> Result<Vec<LandedEvent>, StoreError> {
    use futures::{StreamExt, TryStreamExt};
    // Owned paths: a stream of borrowed ones makes the future not `Send` for every lifetime
    // (rust-lang/rust#102211), which a spawned compaction needs.
    futures::stream::iter(paths.to_vec())
        .map(|rel| async move {
            let Some(bytes) = store.get(&rel).await? else {
                // Gone between the listing and the read: nothing to report.
                return Ok(None);
            };
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Io {
                    action: "parse",
                    location: store.describe(&rel),
                    source: Box::new(e),
                })
        })
        .buffered(READ_CONCURRENCY)
        .try_filter_map(|event| async move { Ok(event) })
        .try_collect()
        .await
}

/// Objects read at once by [`read_paths`]: an object store answers each GET in milliseconds, and
/// tens of them in flight hide that.
pub const READ_CONCURRENCY: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_files_safely() {
        let p = path_of("bc447199585340d1f3728d26b1c0297a");
        assert!(p.starts_with("_events/inbox/"));
        assert!(p.ends_with("/bc447199585340d1f3728d26b1c0297a.json"));
        let odd = path_of("../../etc/passwd");
        assert!(!odd.contains(".."), "{odd}");
        assert_eq!(odd, path_of("../../etc/passwd"));
        assert_ne!(path_of("a"), path_of("b"));
    }
}
