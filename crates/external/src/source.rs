//! Instance files: one instance a line (NDJSON) or one JSON array, from a local path or an
//! object store URL, read one document at a time.
//!
//! Invariants:
//! - The form is told by the first byte that is not white space: `[` is an array, anything
//!   else is NDJSON. Every document is handed on with its position (line or element), so a
//!   problem names where it is.
//! - An NDJSON line that is not JSON is handed on as unreadable (it is kept aside by the
//!   caller, and the lines after it are still read); an array that is not JSON stops the read,
//!   since nothing after the fault can be placed.
//! - A local file is streamed: memory holds one document at a time, whatever the file's size.
//!   An object is fetched whole first.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use attendance_lake::store::{Store, StoreError};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;

/// Where a document is in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// A line of an NDJSON file, from 1.
    Line(usize),
    /// An element of a JSON array, from 0.
    Element(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Element(n) => write!(f, "element {n}"),
        }
    }
}

/// A line that is not JSON: why, and the line as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub reason: String,
    pub text: String,
}

/// A source that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--instances {source_name}: cannot read it")]
    Io {
        source_name: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("--instances {source_name}: not found (or not a file)")]
    NotFound { source_name: String },
    #[error("--instances {source_name}: cannot fetch it")]
    Store {
        source_name: String,
        #[source]
        cause: StoreError,
    },
    #[error(
        "--instances {source_name}: the JSON array is broken at {at} (fix the file, or write one instance a line)"
    )]
    BrokenArray {
        source_name: String,
        at: Position,
        #[source]
        cause: serde_json::Error,
    },
}

/// An opened source of instance documents.
pub enum Source {
    Local { name: String, path: PathBuf },
    Fetched { name: String, bytes: Vec<u8> },
}

impl Source {
    /// Opens `src`: a path, `file://…`, or an object store URL (`s3://bucket/key.ndjson`, …,
    /// with the same credentials as `--out`).
    pub async fn open(src: &str) -> Result<Source, SourceError> {
        let name = src.to_owned();
        let local = src
            .strip_prefix("file://")
            .or((!src.contains("://")).then_some(src));
        if let Some(path) = local {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(SourceError::NotFound { source_name: name });
            }
            return Ok(Source::Local { name, path });
        }
        let (dir, file) = src
            .rsplit_once('/')
            .filter(|(dir, file)| !file.is_empty() && dir.contains("://"))
            .ok_or_else(|| SourceError::NotFound {
                source_name: name.clone(),
            })?;
        let store = Store::open(dir).map_err(|cause| SourceError::Store {
            source_name: name.clone(),
            cause,
        })?;
        match store.get(file).await {
            Ok(Some(bytes)) => Ok(Source::Fetched { name, bytes }),
            Ok(None) => Err(SourceError::NotFound { source_name: name }),
            Err(cause) => Err(SourceError::Store {
                source_name: name,
                cause,
            }),
        }
    }

    /// The source as the operator named it.
    pub fn name(&self) -> &str {
        match self {
            Source::Local { name, .. } | Source::Fetched { name, .. } => name,
        }
    }

    /// Hands every document to `visit`, in order, with its position; blocking (a local file is
    /// read as it goes): call it off the async workers.
    pub fn for_each(
        &self,
        visit: &mut dyn FnMut(Position, Result<Value, Unreadable>),
    ) -> Result<(), SourceError> {
        let name = self.name().to_owned();
        let io = |cause| SourceError::Io {
            source_name: name.clone(),
            cause,
        };
        match self {
            Source::Local { path, .. } => {
                let file = File::open(path).map_err(io)?;
                read(BufReader::with_capacity(256 * 1024, file), &name, visit)
            }
            Source::Fetched { bytes, .. } => read(&bytes[..], &name, visit),
        }
    }
}

fn read(
    mut reader: impl BufRead,
    name: &str,
    visit: &mut dyn FnMut(Position, Result<Value, Unreadable>),
) -> Result<(), SourceError> {
    let io = |cause| SourceError::Io {
        source_name: name.to_owned(),
        cause,
    };
    // Peek at the first byte that is not white space (nor a UTF-8 byte order mark).
    let mut at_start = true;
    let is_array = loop {
        let buf = reader.fill_buf().map_err(io)?;
        if buf.is_empty() {
            return Ok(());
        }
        if at_start && buf.starts_with(BOM) {
            reader.consume(BOM.len());
            at_start = false;
            continue;
        }
        at_start = false;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let array = buf[i] == b'[';
                break array;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if is_array {
        read_array(reader, name, visit)
    } else {
        read_lines(reader, name, visit)
    }
}

/// The UTF-8 byte order mark some exporters write first.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn read_lines(
    mut reader: impl BufRead,
    name: &str,
    visit: &mut dyn FnMut(Position, Result<Value, Unreadable>),
) -> Result<(), SourceError> {
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|cause| SourceError::Io {
                source_name: name.to_owned(),
                cause,
            })?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(text).map_err(|e| Unreadable {
            reason: format!("not JSON: {e}"),
            text: String::from_utf8_lossy(text).into_owned(),
        });
        visit(Position::Line(number), parsed);
    }
}

fn read_array(
    reader: impl Read,
    name: &str,
    visit: &mut dyn FnMut(Position, Result<Value, Unreadable>),
) -> Result<(), SourceError> {
    struct Elements<'v> {
        visit: &'v mut dyn FnMut(Position, Result<Value, Unreadable>),
        count: usize,
    }
    impl<'de> Visitor<'de> for &mut Elements<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array of instances")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(value) = seq.next_element::<Value>()? {
                (self.visit)(Position::Element(self.count), Ok(value));
                self.count += 1;
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for &mut Elements<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    let mut elements = Elements { visit, count: 0 };
    let mut de = serde_json::Deserializer::from_reader(reader);
    // The element being read when the array broke: the one after the last read.
    let broken = |cause, count: usize| SourceError::BrokenArray {
        source_name: name.to_owned(),
        at: Position::Element(count),
        cause,
    };
    (&mut elements)
        .deserialize(&mut de)
        .map_err(|e| broken(e, elements.count))?;
    de.end().map_err(|e| broken(e, elements.count))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Read = Vec<(Position, Result<Value, Unreadable>)>;

    fn collect(text: &str) -> Result<Read, SourceError> {
        let mut out = Vec::new();
        read(text.as_bytes(), "test", &mut |p, v| out.push((p, v)))?;
        Ok(out)
    }

    #[test]
    fn ndjson_lines_are_numbered_and_a_bad_one_does_not_stop_the_rest() {
        let got = collect("{\"a\":1}\n\nnot json\n{\"a\":2}").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, Position::Line(1));
        assert_eq!(got[1].0, Position::Line(3));
        assert!(
            got[1]
                .1
                .as_ref()
                .unwrap_err()
                .reason
                .starts_with("not JSON")
        );
        assert_eq!(got[1].1.as_ref().unwrap_err().text, "not json");
        assert_eq!(got[2].1.as_ref().unwrap()["a"], 2);
    }

    #[test]
    fn an_array_is_streamed_element_by_element_and_a_broken_one_stops() {
        let got = collect("  \n[{\"a\":1}, {\"a\":2}]\n").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, Position::Element(1));
        let err = collect("[{\"a\":1}, {\"a\":").unwrap_err();
        assert!(err.to_string().contains("broken at element 1"), "{err}");
        // A byte order mark is not part of the first document.
        let got = collect("\u{feff}{\"a\":1}\n").unwrap();
        assert_eq!(got[0].1.as_ref().unwrap()["a"], 1);
        assert!(collect("").unwrap().is_empty());
    }
}
