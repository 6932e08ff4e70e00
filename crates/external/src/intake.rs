//! The intake of a source: every document validated, the valid instances handed on, the others
//! kept aside with every problem named, and written to `_rejects/external/`.
//!
//! Invariants:
//! - A document is handed on only when [`validate`] found no problem in it; nothing invalid is
//!   ever sent or landed.
//! - An `instance_id` given more than once in one source is kept at its newest copy (greatest
//!   `update_time`, the last of equals, as an export that appends its changes has it); the
//!   other copies are rejected naming it (one read of the source: a copy handed on before a
//!   newer one came is taken back through [`Accept::retract`]).
//! - Every rejected document is kept whole (a line that is not JSON as its text; the
//!   `trusteeship_url_token` credential replaced by `<redacted>`), with its position and its
//!   problems, in `_rejects/external/date=<UTC date>/<command>-<run_id>.ndjson`;
//!   a run that rejects nothing writes no file.

use std::collections::HashMap;

use attendance_core::external::{ExternalInstance, MsTime, Problem, validate};
use attendance_lake::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::ExternalError;
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

/// Where the intake hands the valid instances. Each accepted instance is named by a ticket;
/// a copy superseded by a newer one later in the source is taken back by it.
pub trait Accept {
    /// Takes `instance`; the ticket that names it.
    fn accept(&mut self, position: Position, instance: ExternalInstance) -> u64;
    /// Takes back the instance of `ticket`, and hands it over for the rejects file.
    fn retract(&mut self, ticket: u64) -> Option<ExternalInstance>;
}

/// The valid instances in a list, in source order (a retracted one leaves a hole).
#[derive(Default)]
pub struct Collected(pub Vec<Option<ExternalInstance>>);

impl Accept for Collected {
    fn accept(&mut self, _: Position, instance: ExternalInstance) -> u64 {
        self.0.push(Some(instance));
        self.0.len() as u64 - 1
    }

    fn retract(&mut self, ticket: u64) -> Option<ExternalInstance> {
        self.0.get_mut(ticket as usize).and_then(Option::take)
    }
}

/// Opens and reads `src` whole: its valid instances, in source order, and what was rejected.
pub async fn read_all(src: &str) -> Result<(Vec<ExternalInstance>, Intake), ExternalError> {
    let source = Source::open(src).await?;
    tokio::task::spawn_blocking(move || {
        let mut valid = Collected::default();
        let intake = intake(&source, &mut valid)?;
        Ok((valid.0.into_iter().flatten().collect(), intake))
    })
    .await
    .expect("the intake never panics")
}

/// The trusteeship credential, never written to a rejects file.
const TRUSTEESHIP_TOKEN: &str = "trusteeship_url_token";

/// Reads `source`, handing each valid instance to `accept` in source order. Blocking.
pub fn intake(source: &Source, accept: &mut dyn Accept) -> Result<Intake, SourceError> {
    let mut intake = Intake::default();
    // Each instance_id's kept copy so far: its update_time, position and ticket.
    let mut kept: HashMap<String, (MsTime, Position, u64)> = HashMap::new();
    source.for_each(&mut |position, parsed| {
        intake.read += 1;
        let mut document = match parsed {
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
        let problems = match validate(&document) {
            Ok(instance) => match kept.get(&instance.instance_id).copied() {
                None => {
                    let id = instance.instance_id.clone();
                    let time = instance.update_time;
                    let ticket = accept.accept(position, instance);
                    kept.insert(id, (time, position, ticket));
                    return;
                }
                // This copy is as new or newer: it is kept, the earlier one taken back.
                Some((time, earlier, ticket)) if instance.update_time >= time => {
                    let earlier_copy = accept.retract(ticket);
                    intake.rejected.push(Rejected {
                        position: earlier,
                        instance_id: Some(instance.instance_id.clone()),
                        approval_code: earlier_copy.as_ref().map(|i| i.approval_code.clone()),
                        problems: vec![superseded(&instance.instance_id, position)],
                        document: earlier_copy
                            .map(|i| redacted(serde_json::to_value(i).unwrap_or_default()))
                            .unwrap_or_default(),
                    });
                    let id = instance.instance_id.clone();
                    let time = instance.update_time;
                    let ticket = accept.accept(position, instance);
                    kept.insert(id, (time, position, ticket));
                    return;
                }
                Some((_, newer, _)) => vec![superseded(&instance.instance_id, newer)],
            },
            Err(problems) => problems,
        };
        document = redacted(document);
        let text_of = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        intake.rejected.push(Rejected {
            position,
            instance_id: text_of("instance_id"),
            approval_code: text_of("approval_code"),
            problems,
            document,
        });
    })?;
    intake.rejected.sort_by_key(|r| r.position);
    Ok(intake)
}

/// The problem of a copy not kept: `kept_at` holds the copy that is.
fn superseded(instance_id: &str, kept_at: Position) -> Problem {
    Problem {
        field: "instance_id".to_owned(),
        reason: format!(
            "{instance_id:?} is given more than once in this source: the copy at {kept_at} (the newest by update_time, the last of equals) is kept"
        ),
    }
}

/// `document` without its trusteeship credential.
fn redacted(mut document: Value) -> Value {
    if let Some(token) = document.get_mut(TRUSTEESHIP_TOKEN)
        && !token.is_null()
    {
        *token = Value::String("<redacted>".to_owned());
    }
    document
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
