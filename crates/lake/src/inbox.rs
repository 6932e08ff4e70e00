//! The inbox of pushed events on the output root: where each landed event lives
//! (`_events/inbox/<shard>/<id>.json`) and the journals of deliveries beside it
//! (`_events/journal/<date>/<time>-<writer>-<seq>.ndjson`), what their objects hold, and reading
//! them back. The receivers (`attendance-events`) write both; the compaction reads the journals
//! and what of the inbox no journal holds; the event-driven resync reads the inbox objects new
//! since its cursor, and scans both ([`scan`]) when it needs every landed event.
//!
//! Invariants:
//! - An event's inbox path is a function of its id alone, so that a create-if-absent on it
//!   stores each event once whoever receives it; the shard is the first two hex digits of
//!   SHA-256(id) (256 directories, evenly filled), and an id unfit for a file name is named by
//!   its hash.
//! - An inbox object holds one [`LandedEvent`] as JSON, whole; objects are never rewritten.
//! - A journal holds, one JSON line each, the [`LandedEvent`]s of the deliveries one receiver
//!   landed together, whole, and is never rewritten. A receiver writes a delivery's journal
//!   line and its event's inbox object at once and acknowledges it when both are durable, so
//!   an event is in a journal, in the inbox, or (almost always) both; a delivery repeated, or
//!   received by two receivers, is in several journals (the inbox still holds it once).
//! - [`id_key`] of an event's id equals [`key_of_path`] of its inbox path, except for a name
//!   starting `h-` (an id unfit for a file name, named by its hash, or a safe id spelled so),
//!   which has no key: a reader that skips inbox objects by key always reads those, and never
//!   skips an object for another event's key (short of two ids whose SHA-256 share 128 bits).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// Where landed events live, relative to the root.
pub const INBOX_DIR: &str = "_events/inbox";

/// Where the receivers' journals of deliveries live, relative to the root.
pub const JOURNAL_DIR: &str = "_events/journal";

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

/// The path of the `seq`th journal of the writer tagged `tag`, written at `at` (the writer's
/// clock; readers go by the store's modification times, not by these names).
pub fn journal_path(at: DateTime<Utc>, tag: &str, seq: u64) -> String {
    format!(
        "{JOURNAL_DIR}/{}/{}-{tag}-{seq:010}.ndjson",
        at.format("%Y-%m-%d"),
        at.format("%H%M%S%.3f")
    )
}

/// A 128-bit key of an event id: the first half of its SHA-256.
pub fn id_key(id: &str) -> u128 {
    let digest = Sha256::digest(id.as_bytes());
    u128::from_be_bytes(digest[..16].try_into().expect("16 of 32 bytes"))
}

/// The [`id_key`] of the event an inbox path names; `None` for a name starting `h-` (see the
/// module's invariants) and for a path that is not an inbox object's.
pub fn key_of_path(path: &str) -> Option<u128> {
    let name = path.rsplit('/').next()?.strip_suffix(".json")?;
    // A hashed name could also be a safe id spelled like one: which, only the object says.
    (!name.starts_with("h-")).then(|| id_key(name))
}

/// The id of an event whose body carries none: `sha256-` and the hex SHA-256 of its bytes.
pub fn content_id(bytes: &[u8]) -> String {
    format!("sha256-{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A landed event with its body as the text landed (compact JSON), for readers that keep the
/// text and read the body their own way. Only the fields such a reader uses: the record's
/// `id_source`, `schema` and `receiver` are not read.
#[derive(Debug, Deserialize)]
pub struct LandedText {
    pub id: String,
    pub event_type: Option<String>,
    pub transport: Transport,
    pub received_at: String,
    pub body: Box<serde_json::value::RawValue>,
}

/// Every landed event, in path order. Reads every object, [`READ_CONCURRENCY`] at a time:
/// meant for roots whose inbox the compaction keeps small, for tests and for the demo.
pub async fn read_all(store: &Store) -> Result<Vec<LandedEvent>, StoreError> {
    let files = store.list_files(INBOX_DIR).await?;
    read_paths(store, &files).await
}

/// The landed events at these paths, in their order ([`READ_CONCURRENCY`] reads at a time),
/// each read as a `T` ([`LandedEvent`] or [`LandedText`]); an object gone since it was listed
/// is left out.
pub async fn read_paths<T: serde::de::DeserializeOwned + Send>(
    store: &Store,
    paths: &[String],
) -> Result<Vec<T>, StoreError> {
    read_each(store, paths, |rel, bytes| {
        serde_json::from_slice(&bytes)
            .map(|event| vec![event])
            .map_err(|e| parse_error(store.describe(rel), e))
    })
    .await
}

/// The landed events in the journals at these paths, in their order and in each journal's
/// ([`READ_CONCURRENCY`] reads at a time), each read as a `T` ([`LandedEvent`] or
/// [`LandedText`]); a journal gone since it was listed is left out. A line that is not one is
/// named by its journal and line number.
pub async fn read_journals<T: serde::de::DeserializeOwned + Send>(
    store: &Store,
    paths: &[String],
) -> Result<Vec<T>, StoreError> {
    read_each(store, paths, |rel, bytes| {
        bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.is_empty())
            .map(|(i, line)| {
                serde_json::from_slice(line)
                    .map_err(|e| parse_error(format!("{}, line {}", store.describe(rel), i + 1), e))
            })
            .collect()
    })
    .await
}

/// Reads the objects at these paths ([`READ_CONCURRENCY`] at a time), each made into events by
/// `parse`, all in the paths' order; an object gone since it was listed gives none.
async fn read_each<T: Send>(
    store: &Store,
    paths: &[String],
    parse: impl Fn(&str, Vec<u8>) -> Result<Vec<T>, StoreError> + Sync,
) -> Result<Vec<T>, StoreError> {
    use futures::{StreamExt, TryStreamExt};
    let parse = &parse;
    // Owned paths: a stream of borrowed ones makes the future not `Send` for every lifetime
    // (rust-lang/rust#102211), which a spawned compaction needs.
    let read: Vec<Vec<T>> = futures::stream::iter(paths.to_vec())
        .map(|rel| async move {
            match store.get(&rel).await? {
                Some(bytes) => parse(&rel, bytes),
                // Gone between the listing and the read: nothing to report.
                None => Ok(Vec::new()),
            }
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(read.into_iter().flatten().collect())
}

fn parse_error(location: String, e: serde_json::Error) -> StoreError {
    StoreError::Io {
        action: "parse",
        location,
        source: Box::new(e),
    }
}

/// The inbox objects (or the journals) modified at or after a time, oldest first (by
/// modification, then path), each held as its time and its path's tail in one buffer (~60 bytes
/// an object, not the ~100 of an owned path and time): what a backlog of millions costs to list.
#[derive(Debug, Default)]
pub struct Listing {
    /// The directory the tails are under.
    base: &'static str,
    tails: String,
    /// Modification, start and length of the tail in `tails`.
    entries: Vec<(DateTime<Utc>, u32, u32)>,
    /// The newest modification listed.
    newest: Option<DateTime<Utc>>,
}

impl Listing {
    /// Lists the inbox one shard directory at a time ([`READ_CONCURRENCY`] at once), keeping the
    /// objects modified at or after `since` (every object without it).
    pub async fn since(store: &Store, since: Option<DateTime<Utc>>) -> Result<Listing, StoreError> {
        Listing::since_keeping(store, since, |_| true).await
    }

    /// [`Listing::since`], holding only the objects whose path (from the root) `keep` accepts,
    /// asked before an object's time is looked up: a listing of millions of which few are
    /// wanted holds the few, and on a local disk looks up the times of the few only.
    pub async fn since_keeping(
        store: &Store,
        since: Option<DateTime<Utc>>,
        keep: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<Listing, StoreError> {
        let shards = (0..=u8::MAX).map(|shard| format!("{INBOX_DIR}/{shard:02x}"));
        Listing::of_dirs(store, INBOX_DIR, shards, since, keep).await
    }

    /// Lists the journals modified at or after `since` (every journal without it). With `since`,
    /// only the date directories from the day before it (or before now, if earlier) to the day
    /// after now are listed, not the whole history. A journal named by a writer's clock further
    /// off than that is not listed: its acknowledged deliveries are read from their inbox
    /// objects instead (a delivery is acknowledged only once both are durable), and one never
    /// acknowledged is delivered again by the platform.
    pub async fn journals_since(
        store: &Store,
        since: Option<DateTime<Utc>>,
    ) -> Result<Listing, StoreError> {
        let dirs: Vec<String> = match since {
            None => vec![JOURNAL_DIR.to_owned()],
            Some(since) => {
                let now = Utc::now();
                let day = chrono::Days::new(1);
                let first = since.min(now).date_naive() - day;
                let last = now.date_naive() + day;
                first
                    .iter_days()
                    .take_while(|d| *d <= last)
                    .map(|date| format!("{JOURNAL_DIR}/{}", date.format("%Y-%m-%d")))
                    .collect()
            }
        };
        Listing::of_dirs(store, JOURNAL_DIR, dirs, since, |_| true).await
    }

    /// Lists these directories under `base` ([`READ_CONCURRENCY`] at once), keeping what was
    /// modified at or after `since` and `keep` accepts, sorted.
    async fn of_dirs(
        store: &Store,
        base: &'static str,
        dirs: impl IntoIterator<Item = String>,
        since: Option<DateTime<Utc>>,
        keep: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<Listing, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let mut listing = Listing {
            base,
            ..Listing::default()
        };
        let keep: Arc<dyn Fn(&str) -> bool + Send + Sync> = Arc::new(keep);
        let dirs: Vec<String> = dirs.into_iter().collect();
        let mut listed = futures::stream::iter(dirs)
            .map(|dir| {
                let keep = Arc::clone(&keep);
                async move {
                    store
                        .list_files_modified_since_keeping(&dir, since, keep)
                        .await
                }
            })
            .buffered(READ_CONCURRENCY);
        while let Some(files) = listed.try_next().await? {
            listing.extend(store, files)?;
        }
        listing.sort();
        Ok(listing)
    }

    fn extend(
        &mut self,
        store: &Store,
        files: Vec<(String, DateTime<Utc>)>,
    ) -> Result<(), StoreError> {
        for (path, modified) in files {
            self.newest = self.newest.max(Some(modified));
            let too_many = || StoreError::Io {
                action: "list",
                location: store.describe(self.base),
                source: "more than 4 GiB of object names in one listing".into(),
            };
            // Listed under the base, so named from the root through it.
            let tail = path.strip_prefix(self.base).ok_or_else(|| StoreError::Io {
                action: "list",
                location: store.describe(&path),
                source: format!("listed outside {}", self.base).into(),
            })?;
            // Offsets are u32: the end of this tail must fit.
            u32::try_from(self.tails.len() + tail.len()).map_err(|_| too_many())?;
            let start = self.tails.len() as u32;
            self.tails.push_str(tail);
            self.entries.push((modified, start, tail.len() as u32));
        }
        Ok(())
    }

    fn sort(&mut self) {
        let tails = &self.tails;
        let tail = |start: u32, len: u32| &tails[start as usize..(start + len) as usize];
        self.entries
            .sort_unstable_by(|a, b| (a.0, tail(a.1, a.2)).cmp(&(b.0, tail(b.1, b.2))));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest modification of the objects listed (those kept: the others' times are not
    /// looked up).
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    /// Reads the listed inbox objects, oldest first, a thousand at a time, giving each to `each`
    /// as read (an object gone since it was listed gives none).
    pub async fn read(
        &self,
        store: &Store,
        mut each: impl FnMut(LandedText),
    ) -> Result<(), StoreError> {
        for paths in self.chunks(SCAN_BATCH) {
            read_paths::<LandedText>(store, &paths)
                .await?
                .into_iter()
                .for_each(&mut each);
        }
        Ok(())
    }

    /// The paths, oldest first, `n` at a time.
    pub fn chunks(&self, n: usize) -> impl Iterator<Item = Vec<String>> + '_ {
        self.entries.chunks(n.max(1)).map(|chunk| {
            chunk
                .iter()
                .map(|(_, start, len)| {
                    let tail = &self.tails[*start as usize..(start + len) as usize];
                    format!("{}{tail}", self.base)
                })
                .collect()
        })
    }
}

/// Objects read at once by [`read_paths`]: an object store answers each GET in milliseconds, and
/// tens of them in flight hide that.
pub const READ_CONCURRENCY: usize = 32;

/// Objects modified this long before a reader's cursor are read again: an object can become
/// visible after others modified later (a slow upload, a receiver's clock), and one read twice
/// costs nothing but the read.
pub const RELIST_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// Inbox objects a [`Listing::read`] reads before handing them on.
const SCAN_BATCH: usize = 1_000;

/// Every event landed in the journals and inbox objects modified at or after `since` (every
/// landed event without it), one at a time: the journals' lines (oldest journal first), then the
/// inbox objects whose event no journal read held, each given to `each` as read; returns the
/// newest modification of the journals and inbox objects listed (a journaled object is no newer
/// than its journal, written after it, and its time is not looked up). A delivery journaled
/// more than once is given more than once. It holds [`READ_CONCURRENCY`] journals or a
/// thousand objects at a time and 16 bytes for each journaled event: a scan of millions stays
/// small.
pub async fn scan(
    store: &Store,
    since: Option<DateTime<Utc>>,
    mut each: impl FnMut(LandedText),
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let journals = Listing::journals_since(store, since).await?;
    let mut journaled = Journaled::default();
    for paths in journals.chunks(READ_CONCURRENCY) {
        for landed in read_journals::<LandedText>(store, &paths).await? {
            journaled.add(&landed.id);
            each(landed);
        }
    }
    let listing = journaled.unjournaled_since(store, since).await?;
    listing.read(store, each).await?;
    Ok(listing.newest().max(journals.newest()))
}

/// The events the journals read so far hold, by [`id_key`] (16 bytes an event): what lets a
/// reader of the journals leave those events' inbox objects unread.
#[derive(Debug, Default)]
pub struct Journaled(Vec<u128>);

impl Journaled {
    pub fn add(&mut self, id: &str) {
        self.0.push(id_key(id));
    }

    /// Lists the inbox objects modified at or after `since` (every one without it) whose event
    /// no journal read held, after the journals were read: what else of the inbox is to read.
    pub async fn unjournaled_since(
        mut self,
        store: &Store,
        since: Option<DateTime<Utc>>,
    ) -> Result<Listing, StoreError> {
        self.0.sort_unstable();
        self.0.dedup();
        Listing::since_keeping(store, since, move |path| {
            key_of_path(path).is_none_or(|key| self.0.binary_search(&key).is_err())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listing_is_oldest_first_then_by_path_and_keeps_what_is_new_enough() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        // Ids in several shard directories; two share a time.
        let landed = [("e", 30), ("a", 10), ("d", 20), ("c", 20), ("b", 40)];
        for (id, secs) in landed {
            let path = dir.path().join(path_of(id));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(t0 + std::time::Duration::from_secs(secs))
                .unwrap();
        }
        let listing = Listing::since(&store, None).await.unwrap();
        assert_eq!(listing.len(), 5);
        let (c, d) = if path_of("c") < path_of("d") {
            (path_of("c"), path_of("d"))
        } else {
            (path_of("d"), path_of("c"))
        };
        let expected = vec![path_of("a"), c, d, path_of("e"), path_of("b")];
        let chunks: Vec<Vec<String>> = listing.chunks(2).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), expected);
        assert_eq!(
            listing.newest(),
            Some(DateTime::<Utc>::from(
                t0 + std::time::Duration::from_secs(40)
            ))
        );
        let since = DateTime::<Utc>::from(t0 + std::time::Duration::from_secs(20));
        let newer = Listing::since(&store, Some(since)).await.unwrap();
        assert_eq!(
            newer.chunks(10).flatten().collect::<Vec<_>>(),
            expected[1..]
        );
        // Held: what `keep` accepts, which is asked first; the newest is of those (`b`, the
        // newest of all, refused, has its time never looked up).
        let kept = Listing::since_keeping(&store, None, |path| path != path_of("b"))
            .await
            .unwrap();
        assert_eq!(kept.chunks(10).flatten().collect::<Vec<_>>(), expected[..4]);
        assert_eq!(
            kept.newest(),
            Some(DateTime::<Utc>::from(
                t0 + std::time::Duration::from_secs(30)
            ))
        );
        let empty = Listing::since(&Store::Local(dir.path().join("none")), None)
            .await
            .unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn an_inbox_path_gives_its_ids_key() {
        for id in ["bc447199585340d1f3728d26b1c0297a", "x.y-z_1", "7000001-0"] {
            assert_eq!(key_of_path(&path_of(id)), Some(id_key(id)), "{id:?}");
        }
        assert_ne!(id_key("a"), id_key("b"));
        assert_eq!(key_of_path("_events/inbox/00/no-suffix"), None);
        // Hashed names, and a safe id spelled like one, have no key: always read.
        let lookalike = format!("h-{}", "0".repeat(64));
        for id in ["../../etc/passwd", "", "a b", &lookalike] {
            assert_eq!(key_of_path(&path_of(id)), None, "{id:?}");
        }
    }

    #[tokio::test]
    async fn journals_are_read_line_by_line_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        let at = DateTime::parse_from_rfc3339("2025-06-01T15:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = journal_path(at, "t1", 1);
        assert_eq!(
            first,
            "_events/journal/2025-06-01/150000.250-t1-0000000001.ndjson"
        );
        let line = |id: &str| {
            serde_json::to_string(&LandedEvent {
                id: id.into(),
                id_source: IdSource::Uuid,
                schema: "1".into(),
                event_type: Some("out_approval".into()),
                transport: Transport::Webhook,
                received_at: "2026-11-30T15:00:00.250Z".into(),
                receiver: "r".into(),
                body: serde_json::json!({"uuid": id}),
            })
            .unwrap()
        };
        store
            .put(
                &first,
                format!("{}\n{}\n", line("a"), line("b")).into_bytes(),
            )
            .await
            .unwrap();
        let second = journal_path(at, "t1", 2);
        store.put(&second, line("c").into_bytes()).await.unwrap();
        let gone = journal_path(at, "t1", 3);
        let read: Vec<LandedText> = read_journals(&store, &[second.clone(), gone, first.clone()])
            .await
            .unwrap();
        let ids: Vec<&str> = read.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"], "in the paths' order, then the lines'");
        let listed = Listing::journals_since(&store, None).await.unwrap();
        assert_eq!(listed.chunks(10).flatten().count(), 2);
        // Since a time, only the dates around it and now are listed: the journals above (named
        // 2025-06-01 but written now) are not.
        let now = Utc::now();
        let today = journal_path(now, "t2", 1);
        store.put(&today, line("d").into_bytes()).await.unwrap();
        let recent = Listing::journals_since(&store, Some(now - chrono::Duration::hours(1)))
            .await
            .unwrap();
        let recent: Vec<String> = recent.chunks(10).flatten().collect();
        assert!(recent.contains(&today), "{recent:?}");
        assert!(!recent.contains(&first), "{recent:?}");
        let later = Listing::journals_since(&store, Some(now + chrono::Duration::hours(1)))
            .await
            .unwrap();
        assert!(later.is_empty(), "modified before `since`");

        store
            .put(
                &second,
                format!("{}\n{{\"id\": 1}}\n", line("c")).into_bytes(),
            )
            .await
            .unwrap();
        let err = read_journals::<LandedText>(&store, &[second])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("0000000002.ndjson, line 2"), "{err}");
    }

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
