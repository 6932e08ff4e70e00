//! Recorded query answers: `--record-responses DIR` keeps every answer of a run, and `replay DIR`
//! runs the same backfill from them without the network (to benchmark the offline pipeline, or
//! to replay a captured day).
//!
//! Layout of DIR: `corpus.json` (the request: dates, statuses, employee type, users),
//! `responses.ndjson` (one answer a line: `{"key", "response"}`, the response last and byte for
//! byte as received, or `{"key", "error"}`), and
//! `responses.index` (`key<TAB>offset<TAB>length` a line), so a replay reads each answer directly.
//!
//! Invariants: an answer is found by its full request (employee type, dates, status, user ids in
//! order), so a replay only ever gets the answer to the very query it makes; a platform error
//! (such as the 1220004 that splits a batch) is recorded and replayed like an answer.
//!
//! Both are [`AnswerSource`]s: a [`Replay`] answers from the files, [`Recorded`] answers from
//! another source and writes down what it got.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use attendance_core::answer::QueryData;
use attendance_core::chain::Chain;
use attendance_core::plan::{EmployeeType, Status};
use attendance_feishu::endpoints::QUERY;
use attendance_feishu::model::QueryRequest;
use attendance_feishu::{ClientStats, PlatformError};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::source::AnswerSource;

/// What a recording is of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Corpus {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub statuses: Vec<Status>,
    pub employee_type: EmployeeType,
    pub users: Vec<String>,
}

/// A recorded answer that is not the JSON the recorder wrote.
#[derive(Debug, thiserror::Error)]
#[error("recorded answer")]
struct UnreadableAnswer(#[source] serde_json::Error);

/// A recording that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {}", path.display())]
    Corpus {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RecordingError + 'a {
    move |source| RecordingError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The key of a query: everything that decides its answer.
fn key(employee_type: EmployeeType, q: &QueryRequest) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        employee_type.as_str(),
        q.check_date_from,
        q.check_date_to,
        q.status.unwrap_or(2),
        q.user_ids.join(",")
    )
}

#[derive(Serialize, Deserialize)]
struct RecordedError {
    http_status: u16,
    code: i64,
    msg: String,
}

/// A recorded refusal; an answer is written by hand (see [`response_line`]).
#[derive(Serialize)]
struct ErrorLine<'a> {
    key: &'a str,
    error: RecordedError,
}

/// `{"key":…,"response":…}`: the answer last, byte for byte, so that a replay finds it by the
/// line's head and tail ([`recorded_response`]) instead of reading 500 bytes a row through to
/// find its end: that scan was a tenth of an offline replay's instructions.
fn response_line(key: &str, data: &QueryData) -> Vec<u8> {
    let key = serde_json::to_string(key).expect("a string serializes");
    format!(r#"{{"key":{key},"response":{}}}"#, data.json()).into_bytes()
}

/// The answer in a line written by [`response_line`], not read through: the flatten stage
/// parses every byte of it anyway. `None` for any other line (a recorded error, or a line
/// written otherwise), which is then read as JSON.
fn recorded_response(line: &[u8]) -> Option<&str> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let rest = line.strip_prefix(br#"{"key":"#)?;
    if rest.first() != Some(&b'"') {
        return None;
    }
    let mut key = serde_json::Deserializer::from_slice(rest).into_iter::<serde::de::IgnoredAny>();
    key.next()?.ok()?;
    let rest = rest[key.byte_offset()..].strip_prefix(br#","response":"#)?;
    // The client never hands on a `null` data (it is a malformed body); the full read says so.
    std::str::from_utf8(rest.strip_suffix(b"}")?)
        .ok()
        .filter(|data| *data != "null")
}

#[derive(Deserialize)]
struct LineIn {
    response: Option<QueryData>,
    error: Option<RecordedError>,
}

/// Writes the answers of a run as they come.
pub struct Recorder {
    dir: PathBuf,
    files: Mutex<(std::fs::File, std::fs::File, u64)>,
}

impl Recorder {
    pub fn create(dir: &Path, corpus: &Corpus) -> Result<Recorder, RecordingError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let corpus_path = dir.join("corpus.json");
        let body = serde_json::to_vec_pretty(corpus).expect("a corpus serializes");
        std::fs::write(&corpus_path, body).map_err(io("write", &corpus_path))?;
        let data_path = dir.join("responses.ndjson");
        let data = std::fs::File::create(&data_path).map_err(io("create", &data_path))?;
        let index_path = dir.join("responses.index");
        let index = std::fs::File::create(&index_path).map_err(io("create", &index_path))?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            files: Mutex::new((data, index, 0)),
        })
    }

    /// Keeps one answer. Transport failures are not answers and are not kept.
    pub fn record(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
        outcome: &Result<QueryData, PlatformError>,
    ) -> Result<(), RecordingError> {
        let key = key(employee_type, query);
        let mut bytes = match outcome {
            Ok(data) => response_line(&key, data),
            Err(PlatformError::Api {
                http_status,
                code,
                msg,
                ..
            }) => serde_json::to_vec(&ErrorLine {
                key: &key,
                error: RecordedError {
                    http_status: *http_status,
                    code: *code,
                    msg: msg.clone(),
                },
            })
            .expect("an error serializes"),
            Err(_) => return Ok(()),
        };
        bytes.push(b'\n');
        let mut files = self.files.lock().expect("recorder lock");
        let (data, index, offset) = &mut *files;
        let data_path = self.dir.join("responses.ndjson");
        data.write_all(&bytes).map_err(io("write", &data_path))?;
        writeln!(index, "{key}\t{offset}\t{}", bytes.len())
            .map_err(io("write", &self.dir.join("responses.index")))?;
        *offset += bytes.len() as u64;
        Ok(())
    }
}

/// An [`AnswerSource`] whose every answer is also written to a recording.
pub struct Recorded<S> {
    inner: S,
    recorder: Recorder,
}

impl<S: AnswerSource> Recorded<S> {
    pub fn new(inner: S, recorder: Recorder) -> Recorded<S> {
        Recorded { inner, recorder }
    }
}

impl<S: AnswerSource> AnswerSource for Recorded<S> {
    async fn answer(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> Result<QueryData, PlatformError> {
        let answer = self.inner.answer(employee_type, query).await;
        // A recording that fails does not fail the run: the answer is still good.
        if let Err(e) = self.recorder.record(employee_type, query, &answer) {
            tracing::error!(error = %Chain(&e), "could not record an answer");
        }
        answer
    }

    fn stats(&self) -> ClientStats {
        self.inner.stats()
    }

    fn rate_limit(&self) -> Option<u32> {
        self.inner.rate_limit()
    }

    fn directory(&self) -> Option<&attendance_feishu::Client> {
        self.inner.directory()
    }
}

/// Answers recorded earlier, looked up by query: an [`AnswerSource`] that never goes to the
/// network. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Replay {
    recorded: Arc<Recording>,
}

/// The files of a recording, indexed.
#[derive(Debug)]
struct Recording {
    corpus: Corpus,
    data: PathBuf,
    index: HashMap<String, (u64, usize)>,
    /// Per (employee type, dates, status): the user ids of every recorded query with its place.
    by_scope: HashMap<String, Vec<(Vec<String>, u64, usize)>>,
    /// Queries of one user, any dates: where a refusal of that user would be.
    alone: HashMap<String, Vec<(u64, usize)>>,
}

/// The part of a key before the user ids.
fn scope_of(key: &str) -> (&str, &str) {
    let cut = key.rfind('|').unwrap_or(0);
    (&key[..cut], key.get(cut + 1..).unwrap_or(""))
}

impl Replay {
    /// Opens the recording in `dir` (see the module's layout).
    pub fn open(dir: &Path) -> Result<Replay, RecordingError> {
        Recording::open(dir).map(|recorded| Replay {
            recorded: Arc::new(recorded),
        })
    }

    /// What the recording is of: the request to replay.
    pub fn corpus(&self) -> &Corpus {
        &self.recorded.corpus
    }
}

impl AnswerSource for Replay {
    /// Reading a recorded answer is file I/O: it runs on a blocking thread.
    fn answer(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> impl Future<Output = Result<QueryData, PlatformError>> + Send {
        let recorded = Arc::clone(&self.recorded);
        let query = query.clone();
        async move {
            tokio::task::spawn_blocking(move || recorded.answer(employee_type, &query))
                .await
                .expect("reading a recorded answer never panics")
        }
    }
}

impl Recording {
    fn open(dir: &Path) -> Result<Recording, RecordingError> {
        let corpus_path = dir.join("corpus.json");
        let corpus_bytes = std::fs::read(&corpus_path).map_err(io("read", &corpus_path))?;
        let corpus: Corpus =
            serde_json::from_slice(&corpus_bytes).map_err(|source| RecordingError::Corpus {
                path: corpus_path.clone(),
                source,
            })?;
        let index_path = dir.join("responses.index");
        let text = std::fs::read_to_string(&index_path).map_err(io("read", &index_path))?;
        let mut index = HashMap::new();
        let mut by_scope: HashMap<String, Vec<(Vec<String>, u64, usize)>> = HashMap::new();
        let mut alone: HashMap<String, Vec<(u64, usize)>> = HashMap::new();
        for line in text.lines() {
            let mut parts = line.rsplitn(3, '\t');
            let (Some(len), Some(offset), Some(key)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let (Ok(offset), Ok(len)) = (offset.parse(), len.parse()) {
                index.insert(key.to_string(), (offset, len));
                let (scope, users) = scope_of(key);
                let users: Vec<String> = users.split(',').map(str::to_string).collect();
                if let [only] = users.as_slice() {
                    alone.entry(only.clone()).or_default().push((offset, len));
                }
                by_scope
                    .entry(scope.to_string())
                    .or_default()
                    .push((users, offset, len));
            }
        }
        Ok(Recording {
            corpus,
            data: dir.join("responses.ndjson"),
            index,
            by_scope,
            alone,
        })
    }

    fn read(&self, offset: u64, len: usize) -> Result<LineIn, PlatformError> {
        let endpoint = QUERY;
        let mut buf = vec![0; len];
        let mut file = std::fs::File::open(&self.data).map_err(|e| self.missing(e))?;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| self.missing(e))?;
        if let Some(data) = recorded_response(&buf) {
            return Ok(LineIn {
                response: Some(QueryData::recorded(data)),
                error: None,
            });
        }
        serde_json::from_slice(&buf)
            .map_err(|e| PlatformError::malformed(endpoint, 200, UnreadableAnswer(e)))
    }

    /// No answer for a query: the recording cannot be read, or holds none for it.
    fn missing(&self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PlatformError {
        PlatformError::transport(
            QUERY,
            self.data.display().to_string(),
            "not recorded",
            cause,
        )
    }

    fn to_result(line: LineIn) -> Result<QueryData, PlatformError> {
        match (line.response, line.error) {
            (Some(data), _) => Ok(data),
            (None, Some(e)) => Err(PlatformError::Api {
                endpoint: QUERY,
                http_status: e.http_status,
                code: e.code,
                msg: e.msg,
            }),
            (None, None) => Err(PlatformError::malformed(
                QUERY,
                200,
                "recorded line holds neither an answer nor an error",
            )),
        }
    }

    /// The recorded answer to `query`, as the client would have returned it.
    ///
    /// A replay splits refused batches in its own order, so it may ask for a sub-batch the
    /// recorded run never asked for. Such a query is answered from the recorded answers over the
    /// same dates and status: a refusal if one of its users was ever refused alone, otherwise the
    /// union of the recorded answers that cover its users, cut down to them.
    fn answer(
        &self,
        employee_type: EmployeeType,
        query: &QueryRequest,
    ) -> Result<QueryData, PlatformError> {
        let key = key(employee_type, query);
        if let Some(&(offset, len)) = self.index.get(&key) {
            return Self::to_result(self.read(offset, len)?);
        }
        // A user the platform refused alone, for any dates, is refused again: a refusal is of the
        // user, not of the dates.
        for user in &query.user_ids {
            for &(offset, len) in self.alone.get(user).map(Vec::as_slice).unwrap_or(&[]) {
                if let Err(e @ PlatformError::Api { .. }) = Self::to_result(self.read(offset, len)?)
                    && e.is_per_user()
                {
                    return Err(e);
                }
            }
        }
        let (scope, _) = scope_of(&key);
        let recorded = self.by_scope.get(scope).map(Vec::as_slice).unwrap_or(&[]);
        let wanted: std::collections::HashSet<&str> =
            query.user_ids.iter().map(String::as_str).collect();
        let mut covered = std::collections::HashSet::new();
        let mut answers = Vec::new();
        for (users, offset, len) in recorded {
            if !users.iter().any(|u| wanted.contains(u.as_str())) {
                continue;
            }
            match Self::to_result(self.read(*offset, *len)?) {
                Err(e) if users.len() == 1 => return Err(e),
                Err(_) => continue,
                Ok(data) => {
                    covered.extend(
                        users
                            .iter()
                            .filter(|u| wanted.contains(u.as_str()))
                            .cloned(),
                    );
                    answers.push(data);
                }
            }
        }
        if covered.len() < wanted.len() {
            return Err(self.missing("no recorded answer covers this query"));
        }
        #[derive(Deserialize)]
        struct UserOf {
            user_id: Option<String>,
        }
        let mut approvals = Vec::new();
        for data in &answers {
            let elements = data
                .user_approvals()
                .map_err(|e| PlatformError::malformed(QUERY, 200, UnreadableAnswer(e)))?;
            for raw in elements {
                let user = serde_json::from_str::<UserOf>(raw.get())
                    .ok()
                    .and_then(|u| u.user_id);
                if user.is_some_and(|u| wanted.contains(u.as_str())) {
                    approvals.push(raw);
                }
            }
        }
        Ok(QueryData::from_user_approvals(&approvals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> QueryData {
        QueryData::from(serde_json::value::RawValue::from_string(json.into()).unwrap())
    }

    #[test]
    fn an_answer_line_gives_back_its_answer_byte_for_byte_without_being_read_through() {
        let json = r#"{"user_approvals":[{"user_id":"u\"1","reason":"雨 🌧"}], "x" : 1.50}"#;
        for key in [
            "employee_id|20260901|20260930|2|a,b",
            r#"odd "key" \ with,escapes"#,
        ] {
            let mut line = response_line(key, &data(json));
            // The line is the JSON object it says it is.
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(value["key"], key);
            line.push(b'\n');
            assert_eq!(recorded_response(&line), Some(json), "{key}");
        }
    }

    #[test]
    fn other_lines_are_left_to_the_full_read() {
        let error = serde_json::to_vec(&ErrorLine {
            key: "k",
            error: RecordedError {
                http_status: 400,
                code: 1220004,
                msg: "user not found".into(),
            },
        })
        .unwrap();
        for line in [
            &error[..],
            br#"{"key":"k","response":null}"#,
            br#"{"response":{},"key":"k"}"#,
            br#"{"key":7,"response":{}}"#,
            br#"{"key":"k","error":{}}"#,
            br#"{"key":"k"}"#,
            b"",
        ] {
            assert_eq!(
                recorded_response(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
