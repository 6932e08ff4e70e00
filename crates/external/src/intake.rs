//! The intake of a source: every document validated, the valid instances handed on, the others
//! kept aside with every problem named, and written to `_rejects/external/`.
//!
//! Invariants:
//! - A document is handed on only when [`validate`] found no problem in it; nothing invalid is
//!   ever sent or landed.
//! - An `instance_id` given twice in one source is kept at its first position; the later ones
//!   are rejected with the position of the first (the platform would take whichever came last).
//! - Every rejected document is kept whole (a line that is not JSON as its text), with its
//!   position and its problems, in `_rejects/external/date=<UTC date>/<command>-<run_id>.ndjson`;
//!   a run that rejects nothing writes no file.

use std::collections::HashMap;

use attendance_core::external::{ExternalInstance, Problem, validate};
use attendance_lake::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::source::{Position, Source, SourceError};

/// Where the rejected documents of external runs are kept.
pub const REJECTS_DIR: &str = "_rejects/external";

/// A document that was not handed on.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub position: Position,
    pub instance_id: Option<String>,
    pub approval_code: Option<String>,
    pub problems: Vec<Problem>,
    /// The document as it was (a string for a line that is not JSON).
    pub document: Value,
}

/// What the intake read.
#[derive(Debug, Default)]
pub struct Intake {
    /// Documents read (valid or not).
    pub read: usize,
    pub rejected: Vec<Rejected>,
}

impl Intake {
    pub fn valid(&self) -> usize {
        self.read - self.rejected.len()
    }

    /// Writes the rejected documents of run `run_id` of `command` (if any) and reports the
    /// intake.
    pub async fn report(
        self,
        store: &Store,
        command: &str,
        run_id: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<IntakeReport, StoreError> {
        let rejects_file =
            write_rejects(store, command, run_id, source, now, &self.rejected).await?;
        Ok(IntakeReport {
            read: self.read,
            valid: self.valid(),
            rejected: self.rejected.len(),
            rejects_file,
            rejects: self.rejected,
        })
    }
}

/// What a command's intake read, in its summary and manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IntakeReport {
    /// Documents read, valid and rejected.
    pub read: usize,
    pub valid: usize,
    pub rejected: usize,
    /// The rejected documents' file, relative to the root.
    pub rejects_file: Option<String>,
    /// The rejected documents (in the rejects file).
    #[serde(skip)]
    pub rejects: Vec<Rejected>,
}

/// Reads `source`, handing each valid instance to `accept` in source order. Blocking.
pub fn intake(
    source: &Source,
    accept: &mut dyn FnMut(Position, ExternalInstance),
) -> Result<Intake, SourceError> {
    let mut intake = Intake::default();
    let mut first_seen: HashMap<String, Position> = HashMap::new();
    source.for_each(&mut |position, parsed| {
        intake.read += 1;
        let document = match parsed {
            Ok(document) => document,
            Err(unreadable) => {
                intake.rejected.push(Rejected {
                    position,
                    instance_id: None,
                    approval_code: None,
                    problems: vec![Problem {
                        field: String::new(),
                        reason: unreadable.reason,
                    }],
                    document: Value::String(unreadable.text),
                });
                return;
            }
        };
        let text_of = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (instance_id, approval_code) = (text_of("instance_id"), text_of("approval_code"));
        let mut problems = match validate(&document) {
            Ok(instance) => match first_seen.get(&instance.instance_id) {
                None => {
                    first_seen.insert(instance.instance_id.clone(), position);
                    accept(position, instance);
                    return;
                }
                Some(first) => vec![Problem {
                    field: "instance_id".to_owned(),
                    reason: format!(
                        "{:?} is given twice in this source (first at {first}); the first is kept",
                        instance.instance_id
                    ),
                }],
            },
            Err(problems) => problems,
        };
        problems.shrink_to_fit();
        intake.rejected.push(Rejected {
            position,
            instance_id,
            approval_code,
            problems,
            document,
        });
    })?;
    Ok(intake)
}

/// Where the rejects of run `run_id` of `command` go.
pub fn rejects_path(command: &str, run_id: &str, now: DateTime<Utc>) -> String {
    format!(
        "{REJECTS_DIR}/date={}/{command}-{run_id}.ndjson",
        now.format("%Y-%m-%d")
    )
}

/// Writes the rejected documents of a run, if any; the path written.
pub async fn write_rejects(
    store: &Store,
    command: &str,
    run_id: &str,
    source: &str,
    now: DateTime<Utc>,
    rejected: &[Rejected],
) -> Result<Option<String>, StoreError> {
    if rejected.is_empty() {
        return Ok(None);
    }
    #[derive(Serialize)]
    struct Line<'a> {
        run_id: &'a str,
        command: &'a str,
        source: &'a str,
        #[serde(flatten)]
        rejected: &'a Rejected,
    }
    let mut bytes = Vec::new();
    for rejected in rejected {
        serde_json::to_writer(
            &mut bytes,
            &Line {
                run_id,
                command,
                source,
                rejected,
            },
        )
        .expect("a reject serializes");
        bytes.push(b'\n');
    }
    let path = rejects_path(command, run_id, now);
    store.put(&path, bytes).await?;
    Ok(Some(path))
}
