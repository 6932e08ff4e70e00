//! The event-driven resync's plan: which users and dates the approval events landed since the
//! last sync name outside its trailing window, grouped into the queries that re-read them.
//!
//! Invariants:
//! - The plan is a function of the landed events, the cursor, the trailing window, the employee
//!   type and today ([`ResyncPlan::of`] is that function). [`ResyncPlan::read`] reads the events
//!   one at a time, holding what the events since the cursor ask for and never the history's
//!   bodies (a scan of every landed event holds 16 bytes a journaled event, and one key an event
//!   taken as new); acting on the plan is the caller's.
//! - An event is taken once however many times it was delivered (its first reading read).
//! - An approval event names its applicant and the local dates of its span; a revert names the
//!   spans of the approval events of the same `instance_code`. [`ResyncPlan::read`] takes them
//!   from the events it read since the cursor when one of them is its approval (an instance's
//!   events all name its one span), else from a scan of every landed event (an approval may
//!   have landed months before its revert). A revert whose approval never
//!   landed is [`ResyncPlan::unresolved`], never dropped silently; an event that cannot be read
//!   is [`ResyncPlan::unreadable`] with its field and reason.
//! - Only events received after the cursor make work; dates inside the trailing window (the
//!   sync re-reads them anyway) and after today + 1 (the platform refuses them) are left out.
//! - Each window of work spans at most [`MAX_WINDOW_DAYS`] dates and each batch at most
//!   [`MAX_USERS_PER_QUERY`] users, as the query API requires; windows are aligned on 30-day
//!   buckets counted from 1970-01-01, so the same dates always fall into the same windows.
//! - Ids are matched to the employee type: `user_id` (sent as `user_id` or `employee_id`) for
//!   `employee_id`, `open_id` for `open_id`. Events carry no `employee_no`: with that type every
//!   approval is [`ResyncPlan::without_user`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use attendance_core::approval_event::{ApprovalEvent, EventBody, Span, Unreadable};
use attendance_core::plan::ExtraWindow;
use attendance_core::plan::{EmployeeType, MAX_USERS_PER_QUERY, MAX_WINDOW_DAYS, Window};
use attendance_lake::inbox::{self, LandedEvent, LandedText};
use attendance_lake::store::{Store, StoreError};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Where the resync keeps the receipt time of the latest event it acted on.
pub const CURSOR_PATH: &str = "_events/resync-cursor.json";

/// The resync's cursor: events received after `through` are new to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub through: DateTime<Utc>,
    /// The newest modification of the journals and inbox objects it listed (by the store's
    /// clock, never past
    /// the time it listed them): the next run lists from here, less [`inbox::RELIST_MARGIN`].
    /// `through` is by the receivers' clocks, which a listing cannot go by. A cursor without
    /// it has the next run scan every landed event once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<DateTime<Utc>>,
    /// The run that moved it there.
    pub run_id: String,
}

impl Cursor {
    /// The cursor of `store`, if a run ever left one.
    pub async fn load(store: &Store) -> Result<Option<Cursor>, StoreError> {
        let Some(bytes) = store.get(CURSOR_PATH).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Io {
                action: "parse",
                location: store.describe(CURSOR_PATH),
                source: Box::new(e),
            })
    }

    pub async fn save(&self, store: &Store) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a cursor serialises");
        store.put(CURSOR_PATH, bytes).await
    }
}

/// Users to re-read over one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncWork {
    pub window: Window,
    /// At most [`MAX_USERS_PER_QUERY`], sorted.
    pub users: Vec<String>,
    /// The events that asked for these users' dates in the window (ids, sorted), for the
    /// manifest.
    pub because_of: Vec<String>,
}

/// A revert whose approval event is not among the landed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnresolvedRevert {
    pub event_id: String,
    pub instance_code: String,
}

/// An event the resync could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableEvent {
    pub event_id: String,
    pub field: String,
    pub reason: String,
}

/// What the landed events ask of a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncPlan {
    pub work: Vec<ResyncWork>,
    pub unresolved: Vec<UnresolvedRevert>,
    pub unreadable: Vec<UnreadableEvent>,
    /// Approval events (ids) whose applicant has no id of the run's employee type.
    pub without_user: Vec<String>,
    /// Events received after the cursor (every type).
    pub considered: usize,
    /// The latest `received_at` among them.
    pub through: Option<DateTime<Utc>>,
    /// The cursor to save once the work is done (its `run_id` is the saver's): the latest
    /// receipt acted on and the newest modification listed. Set by [`ResyncPlan::read`].
    pub next: Option<Cursor>,
}

impl ResyncPlan {
    /// Number of query calls the work makes per status when nothing is retried.
    pub fn requests(&self) -> usize {
        self.work.len()
    }

    /// Reads `store`'s cursor and the events landed since, and plans them for a run over
    /// `range`. With a cursor, the journals and inbox objects modified since the newest one its
    /// run listed (less [`inbox::RELIST_MARGIN`]) are read, an object only when no journal read
    /// holds its event ([`inbox::scan`]); without one (or with one from before it kept that),
    /// every landed event. A revert whose
    /// approval is not among them is looked for in a scan of every landed event, holding only
    /// the spans of the approvals looked for. Its memory follows the events landed since the
    /// cursor, not the history's bodies.
    pub async fn read(
        store: &Store,
        range: Window,
        employee_type: EmployeeType,
        today: NaiveDate,
    ) -> Result<ResyncPlan, StoreError> {
        let cursor = Cursor::load(store).await?;
        let since = cursor.as_ref().map(|c| c.through);
        let margin = chrono::Duration::from_std(inbox::RELIST_MARGIN).expect("minutes");
        let listed_since = cursor.as_ref().and_then(|c| c.listed).map(|l| l - margin);
        // An object modified after this may be missed by this listing: the next one starts here.
        let listed_at = Utc::now();
        // A scan of everything keeps no spans: every revert is then looked for after it.
        let mut planner = Planner::new(since, range, employee_type, today, listed_since.is_some());
        let newest = inbox::scan(store, listed_since, |landed| planner.add_text(&landed)).await?;
        let looked_for = planner.reverted_codes_without_span();
        if !looked_for.is_empty() {
            inbox::scan(store, None, |landed| {
                let Ok(event) = ApprovalEvent::read_text(landed.body.get()) else {
                    return;
                };
                if let Some(code) = event.common.instance_code.as_deref()
                    && looked_for.contains(code)
                {
                    planner.add_span(&event);
                }
            })
            .await?;
        }
        let mut plan = planner.finish();
        plan.next = plan.through.or(since).map(|through| Cursor {
            through,
            listed: newest
                .map(|newest| newest.min(listed_at))
                .max(cursor.and_then(|c| c.listed)),
            run_id: String::new(),
        });
        Ok(plan)
    }

    /// The work as a plan's extra windows (the batches of one window together).
    pub fn extra_windows(&self) -> Vec<ExtraWindow> {
        let mut extra: Vec<ExtraWindow> = Vec::new();
        for work in &self.work {
            match extra.last_mut() {
                Some(last) if last.window == work.window => last.batches.push(work.users.clone()),
                _ => extra.push(ExtraWindow {
                    window: work.window,
                    batches: vec![work.users.clone()],
                }),
            }
        }
        extra
    }

    /// Plans the resync of `events` received after `since`, for a sync whose trailing window
    /// is `trailing`.
    pub fn of(
        events: &[LandedEvent],
        since: Option<DateTime<Utc>>,
        trailing: Window,
        employee_type: EmployeeType,
        today: NaiveDate,
    ) -> ResyncPlan {
        let mut planner = Planner::new(since, trailing, employee_type, today, true);
        for landed in events {
            planner.add(
                &landed.id,
                &landed.received_at,
                ApprovalEvent::read(&landed.body),
            );
        }
        planner.finish()
    }
}

/// A resync plan as its events are read, one at a time.
struct Planner {
    since: Option<DateTime<Utc>>,
    trailing: Window,
    employee_type: EmployeeType,
    /// The last date the platform answers for: today + 1.
    limit: NaiveDate,
    plan: ResyncPlan,
    /// The events taken as new (their [`inbox::id_key`]), each once: a delivery read twice
    /// (a journal line and its object, a redelivery) makes its work once.
    taken: HashSet<u128>,
    /// Whether the spans of every event read are kept (else only those [`Planner::add_span`]
    /// is given).
    keep_spans: bool,
    /// Approvals' spans, by instance code.
    spans: HashMap<String, Vec<Span>>,
    /// The reverts received since the cursor: event id and instance code.
    reverts: Vec<(String, String)>,
    /// Each user's dates to re-read, each with the events (ids) that asked for it.
    wanted: BTreeMap<String, BTreeMap<NaiveDate, BTreeSet<String>>>,
}

impl Planner {
    fn new(
        since: Option<DateTime<Utc>>,
        trailing: Window,
        employee_type: EmployeeType,
        today: NaiveDate,
        keep_spans: bool,
    ) -> Planner {
        Planner {
            since,
            trailing,
            employee_type,
            limit: today + Days::new(1),
            plan: ResyncPlan::default(),
            taken: HashSet::new(),
            keep_spans,
            spans: HashMap::new(),
            reverts: Vec::new(),
            wanted: BTreeMap::new(),
        }
    }

    fn add_text(&mut self, landed: &LandedText) {
        let event = ApprovalEvent::read_text(landed.body.get());
        self.add(&landed.id, &landed.received_at, event);
    }

    /// One landed event: work if it was received after the cursor, and its span.
    fn add(&mut self, id: &str, received_at: &str, event: Result<ApprovalEvent, Unreadable>) {
        let received = DateTime::parse_from_rfc3339(received_at)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        let is_new = match (self.since, received) {
            (Some(since), Some(received)) => received > since,
            // Without a cursor, or without a readable receipt time, an event is new: a
            // needless re-read costs queries, a missed one costs truth.
            _ => true,
        };
        if is_new && !self.taken.insert(inbox::id_key(id)) {
            return;
        }
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if is_new {
                    self.plan.unreadable.push(UnreadableEvent {
                        event_id: id.to_owned(),
                        field: e.field,
                        reason: e.reason,
                    });
                    self.count(received);
                }
                return;
            }
        };
        if self.keep_spans {
            self.add_span(&event);
        }
        if !is_new {
            return;
        }
        self.count(received);
        match &event.body {
            EventBody::Revert(_) => self.reverts.push((
                id.to_owned(),
                event.common.instance_code.clone().unwrap_or_default(),
            )),
            EventBody::Other => {}
            _ => {
                if let Some(span) = event.span() {
                    self.want(&span, id);
                }
            }
        }
    }

    fn count(&mut self, received: Option<DateTime<Utc>>) {
        self.plan.considered += 1;
        self.plan.through = self.plan.through.max(received);
    }

    /// Keeps an approval event's span under its instance code.
    fn add_span(&mut self, event: &ApprovalEvent) {
        if let (Some(code), Some(span)) = (event.common.instance_code.as_deref(), event.span()) {
            self.spans.entry(code.to_owned()).or_default().push(span);
        }
    }

    /// The instance codes of the reverts received since the cursor whose approval's span is not
    /// known yet.
    fn reverted_codes_without_span(&self) -> HashSet<String> {
        self.reverts
            .iter()
            .filter(|(_, code)| !self.spans.contains_key(code))
            .map(|(_, code)| code.clone())
            .collect()
    }

    /// The span's user (of the run's employee type) and its dates outside the trailing window,
    /// up to today + 1, as work asked for by event `id`.
    fn want(&mut self, span: &Span, id: &str) {
        let user = match self.employee_type {
            EmployeeType::EmployeeId => span.applicant.user_id.clone(),
            EmployeeType::OpenId => span.applicant.open_id.clone(),
            EmployeeType::EmployeeNo => None,
        };
        let Some(user) = user else {
            self.plan.without_user.push(id.to_owned());
            return;
        };
        let dates = span
            .first
            .iter_days()
            .take_while(|d| *d <= span.last && *d <= self.limit)
            .filter(|d| !self.trailing.contains(*d));
        for date in dates {
            self.wanted
                .entry(user.clone())
                .or_default()
                .entry(date)
                .or_default()
                .insert(id.to_owned());
        }
    }

    /// The plan: each revert takes its approval's spans, or is unresolved.
    fn finish(mut self) -> ResyncPlan {
        for (id, code) in std::mem::take(&mut self.reverts) {
            match self.spans.remove(&code) {
                Some(found) => {
                    for span in &found {
                        self.want(span, &id);
                    }
                    // Another revert of the same approval finds them too.
                    self.spans.insert(code, found);
                }
                None => self.plan.unresolved.push(UnresolvedRevert {
                    event_id: id,
                    instance_code: code,
                }),
            }
        }
        let mut plan = self.plan;
        plan.work = group(self.wanted);
        plan.unresolved.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        plan.unreadable.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        plan.without_user.sort();
        plan.without_user.dedup();
        plan
    }
}

/// The 30-day bucket of a date, counted from 1970-01-01.
fn bucket_of(date: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    (date - epoch).num_days().div_euclid(MAX_WINDOW_DAYS as i64)
}

/// Users' dates into windows (one per bucket, from its first wanted date to its last) and
/// batches of at most [`MAX_USERS_PER_QUERY`] users, each naming the events that asked for its
/// users' dates in the window.
fn group(wanted: BTreeMap<String, BTreeMap<NaiveDate, BTreeSet<String>>>) -> Vec<ResyncWork> {
    // bucket → (first, last, each user's events)
    type Bucket = (NaiveDate, NaiveDate, BTreeMap<String, BTreeSet<String>>);
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for (user, dates) in wanted {
        for (date, events) in dates {
            let bucket = buckets
                .entry(bucket_of(date))
                .or_insert((date, date, BTreeMap::new()));
            bucket.0 = bucket.0.min(date);
            bucket.1 = bucket.1.max(date);
            bucket.2.entry(user.clone()).or_default().extend(events);
        }
    }
    let mut work = Vec::new();
    for (_, (first, last, users)) in buckets {
        let users: Vec<(String, BTreeSet<String>)> = users.into_iter().collect();
        for batch in users.chunks(MAX_USERS_PER_QUERY) {
            let because_of: BTreeSet<&String> =
                batch.iter().flat_map(|(_, events)| events).collect();
            work.push(ResyncWork {
                window: Window {
                    from: first,
                    to: last,
                },
                users: batch.iter().map(|(user, _)| user.clone()).collect(),
                because_of: because_of.into_iter().cloned().collect(),
            });
        }
    }
    work
}

#[cfg(test)]
mod tests {
    use attendance_lake::inbox::{IdSource, Transport};
    use serde_json::{Value, json};

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn landed(id: &str, received_at: &str, event: Value) -> LandedEvent {
        LandedEvent {
            id: id.to_owned(),
            id_source: IdSource::Uuid,
            schema: "1".into(),
            event_type: event["type"].as_str().map(str::to_owned),
            transport: Transport::Webhook,
            received_at: received_at.to_owned(),
            receiver: "r".into(),
            body: json!({"ts": "1764460800.5", "uuid": id, "type": "event_callback", "event": event}),
        }
    }

    fn out(code: &str, user: &str, day: &str) -> Value {
        json!({"type": "out_approval", "instance_code": code, "user_id": user, "open_id": format!("ou_{user}"),
               "out_start_time": format!("{day} 09:00:00"), "out_end_time": format!("{day} 12:00:00")})
    }

    fn revert(code: &str, kind: &str) -> Value {
        json!({"type": format!("{kind}_approval_revert"), "instance_code": code, "operate_time": 1764460800})
    }

    const TODAY: (i32, u32, u32) = (2026, 11, 30);

    fn trailing() -> Window {
        Window {
            from: date(2026, 10, 31),
            to: date(2026, 12, 1),
        }
    }

    /// The plan of `events` for employee ids, with the tests' trailing window and today.
    fn plan_of(events: &[LandedEvent], since: Option<DateTime<Utc>>) -> ResyncPlan {
        ResyncPlan::of(events, since, trailing(), EmployeeType::EmployeeId, today())
    }

    fn today() -> NaiveDate {
        date(TODAY.0, TODAY.1, TODAY.2)
    }

    #[test]
    fn a_revert_of_an_old_approval_re_reads_its_user_and_dates() {
        let events = [
            // Landed in August, before the last sync.
            landed(
                "e1",
                "2026-08-31T02:00:00.000Z",
                out("I-old", "u1", "2026-08-31"),
            ),
            // Its revert, landed since.
            landed("e2", "2026-11-30T01:00:00.000Z", revert("I-old", "out")),
            // An approval inside the trailing window: the sync reads it anyway.
            landed(
                "e3",
                "2026-11-30T01:00:00.000Z",
                out("I-new", "u2", "2026-11-29"),
            ),
        ];
        let since = Some("2026-11-29T02:00:00Z".parse().unwrap());
        let plan = plan_of(&events, since);
        assert_eq!(
            plan.work,
            vec![ResyncWork {
                window: Window {
                    from: date(2026, 8, 31),
                    to: date(2026, 8, 31)
                },
                users: vec!["u1".into()],
                because_of: vec!["e2".into()],
            }]
        );
        assert_eq!(plan.considered, 2);
        assert_eq!(plan.through, Some("2026-11-30T01:00:00Z".parse().unwrap()));
        assert!(plan.unresolved.is_empty() && plan.unreadable.is_empty());
        // With open ids, the same work under the open id; with employee numbers, none.
        let by_open = ResyncPlan::of(&events, since, trailing(), EmployeeType::OpenId, today());
        assert_eq!(by_open.work[0].users, vec!["ou_u1".to_string()]);
        let by_no = ResyncPlan::of(
            &events,
            since,
            trailing(),
            EmployeeType::EmployeeNo,
            today(),
        );
        assert!(by_no.work.is_empty());
        assert_eq!(by_no.without_user, vec!["e2".to_string(), "e3".to_string()]);
    }

    #[test]
    fn a_revert_without_its_approval_is_unresolved_and_bad_events_are_named() {
        let events = [
            landed(
                "e1",
                "2026-11-30T01:00:00.000Z",
                revert("I-unknown", "leave"),
            ),
            landed(
                "e2",
                "2026-11-30T01:00:00.000Z",
                json!({"type": "out_approval", "instance_code": "I", "out_start_time": "soon"}),
            ),
            landed(
                "e3",
                "2026-11-30T01:00:00.000Z",
                json!({"type": "im.message.receive_v1"}),
            ),
        ];
        let plan = plan_of(&events, None);
        assert!(plan.work.is_empty());
        assert_eq!(
            plan.unresolved,
            vec![UnresolvedRevert {
                event_id: "e1".into(),
                instance_code: "I-unknown".into()
            }]
        );
        assert_eq!(plan.unreadable.len(), 1);
        assert_eq!(
            (
                plan.unreadable[0].event_id.as_str(),
                plan.unreadable[0].field.as_str()
            ),
            ("e2", "event.out_start_time")
        );
        assert_eq!(plan.considered, 3);
    }

    #[test]
    fn events_before_the_cursor_make_no_work_but_still_resolve_reverts() {
        let events = [
            landed(
                "e1",
                "2026-06-01T00:00:00.000Z",
                out("I1", "u1", "2026-06-01"),
            ),
            landed(
                "e2",
                "2026-06-01T00:00:00.000Z",
                out("I2", "u2", "2026-06-02"),
            ),
        ];
        let since = Some("2026-07-01T00:00:00Z".parse().unwrap());
        let plan = plan_of(&events, since);
        assert_eq!(plan, ResyncPlan::default());
    }

    /// Lands `events` in a local root as receivers would: each an inbox object modified at
    /// `modified`, and all of them in one journal too.
    fn land(root: &std::path::Path, events: &[LandedEvent], modified: DateTime<Utc>) {
        land_as(root, events, modified, "test", true)
    }

    /// [`land`] by `receiver`, with or without the inbox objects.
    fn land_as(
        root: &std::path::Path,
        events: &[LandedEvent],
        modified: DateTime<Utc>,
        receiver: &str,
        objects: bool,
    ) {
        let write = |rel: String, bytes: &[u8]| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            file.set_modified(modified.into()).unwrap();
        };
        let mut journal = Vec::new();
        for event in events {
            let line = serde_json::to_vec(event).unwrap();
            if objects {
                write(inbox::path_of(&event.id), &line);
            }
            journal.extend_from_slice(&line);
            journal.push(b'\n');
        }
        write(inbox::journal_path(modified, receiver, 1), &journal);
    }

    #[tokio::test]
    async fn a_root_is_read_since_its_cursor_and_an_old_revert_found_in_a_scan_of_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        let now = Utc::now();
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let day = chrono::Duration::days(1);
        // Landed 90 days ago (long before the cursor): an approval, and one nothing reverts.
        let old = now - day * 90;
        land(
            dir.path(),
            &[
                landed("e1", &at(old), out("I-old", "u1", "2026-08-31")),
                landed("e0", &at(old), out("I-kept", "u3", "2026-08-30")),
            ],
            old,
        );
        // Landed since: its revert, and an approval of September, received by a receiver whose
        // clock runs an hour ahead of the store's.
        let ahead = at(now + chrono::Duration::hours(1));
        land(
            dir.path(),
            &[
                landed("e2", &ahead, revert("I-old", "out")),
                landed("e3", &ahead, out("I-sep", "u2", "2026-09-15")),
            ],
            now,
        );
        // And one whose receiver was killed before it wrote the inbox object: only its journal
        // holds it.
        let journal_only = landed("e4", &ahead, out("I-sep-2", "u4", "2026-09-20"));
        land_as(
            dir.path(),
            std::slice::from_ref(&journal_only),
            now,
            "killed",
            false,
        );
        let read = |store: Store| async move {
            ResyncPlan::read(&store, trailing(), EmployeeType::EmployeeId, today())
                .await
                .unwrap()
        };
        // The last sync acted on an event received (by that fast clock) after the store's now.
        let through = now + chrono::Duration::minutes(30);
        let cursor = Cursor {
            through,
            listed: Some(now - day),
            run_id: "r".into(),
        };
        cursor.save(&store).await.unwrap();
        let plan = read(store.clone()).await;
        // The same plan as from every landed event at once.
        let mut everything = inbox::read_all(&store).await.unwrap();
        everything.push(journal_only);
        let same = |mut plan: ResyncPlan| {
            plan.next = None;
            plan
        };
        assert_eq!(same(plan.clone()), plan_of(&everything, Some(through)));
        let window = |y, m, d| Window {
            from: date(y, m, d),
            to: date(y, m, d),
        };
        assert_eq!(
            plan.work
                .iter()
                .map(|w| (w.window, w.users.clone()))
                .collect::<Vec<_>>(),
            [
                (window(2026, 8, 31), vec!["u1".to_string()]),
                (
                    Window {
                        from: date(2026, 9, 15),
                        to: date(2026, 9, 20)
                    },
                    vec!["u2".to_string(), "u4".to_string()]
                ),
            ]
        );
        assert_eq!(plan.considered, 3);
        assert!(plan.unresolved.is_empty() && plan.unreadable.is_empty());
        // The next cursor: the latest receipt, and the newest object listed by the store's clock
        // (a listing from the receipt time, an hour ahead, would miss what lands meanwhile).
        let next = plan.next.clone().unwrap();
        assert_eq!(next.through, plan.through.unwrap());
        let listed = next.listed.unwrap();
        assert!(listed <= Utc::now() && listed >= now - chrono::Duration::seconds(1));
        // A cursor from before `listed` was kept: every landed event is scanned once, and only
        // those received after it are new.
        Cursor {
            listed: None,
            ..cursor
        }
        .save(&store)
        .await
        .unwrap();
        let plan = read(store.clone()).await;
        assert_eq!(same(plan.clone()), plan_of(&everything, Some(through)));
        assert!(plan.next.unwrap().listed.is_some());
        // Without a cursor every event is new, the old ones too; the journal and the objects
        // both hold each, and each is taken once.
        store.delete(CURSOR_PATH).await.unwrap();
        let plan = read(store.clone()).await;
        assert_eq!(same(plan.clone()), plan_of(&everything, None));
        assert_eq!(plan.considered, 5);
        assert_eq!(plan.work.len(), 2, "{:?}", plan.work);
        assert_eq!(
            plan.work[0].because_of,
            ["e0", "e1", "e2"].map(String::from),
            "August's window: both approvals and the revert"
        );
    }

    #[test]
    fn leaves_of_several_days_and_both_kinds_merge_and_windows_and_batches_stay_in_bounds() {
        let mut events = Vec::new();
        // 120 users, each with a 3-day leave (V1 and V2 of one instance) somewhere in spring.
        for u in 0..120 {
            let start = date(2026, 3, 1) + Days::new(u % 70);
            let end = start + Days::new(2);
            let code = format!("L{u}");
            let fields = |t: &str| {
                json!({"type": t, "instance_code": code, "employee_id": format!("u{u:03}"),
                       "user_id": format!("u{u:03}"),
                       "leave_start_time": format!("{start} 09:00:00"),
                       "leave_end_time": format!("{end} 18:00:00")})
            };
            events.push(landed(
                &format!("a{u}"),
                "2026-11-30T01:00:00.000Z",
                fields("leave_approval"),
            ));
            events.push(landed(
                &format!("b{u}"),
                "2026-11-30T01:00:00.000Z",
                fields("leave_approvalV2"),
            ));
        }
        let plan = plan_of(&events, None);
        let mut covered: BTreeMap<String, BTreeSet<NaiveDate>> = BTreeMap::new();
        for work in &plan.work {
            assert!(work.users.len() <= MAX_USERS_PER_QUERY);
            // A batch names the events of its users, both kinds of each, and no other's.
            let mut asked: Vec<String> = work
                .users
                .iter()
                .flat_map(|u| {
                    let u = &u[1..];
                    let u = u.trim_start_matches('0');
                    let u = if u.is_empty() { "0" } else { u };
                    [format!("a{u}"), format!("b{u}")]
                })
                .collect();
            asked.sort();
            assert_eq!(work.because_of, asked, "{work:?}");
            let days = (work.window.to - work.window.from).num_days() + 1;
            assert!(days <= MAX_WINDOW_DAYS as i64, "{work:?}");
            for user in &work.users {
                covered
                    .entry(user.clone())
                    .or_default()
                    .extend(work.window.dates());
            }
        }
        for u in 0..120u64 {
            let start = date(2026, 3, 1) + Days::new(u % 70);
            let dates = covered.get(&format!("u{u:03}")).expect("every user");
            for d in 0..3 {
                assert!(
                    dates.contains(&(start + Days::new(d))),
                    "u{u:03} {start}+{d}"
                );
            }
        }
        // Deterministic, and nothing past today + 1.
        assert_eq!(plan, plan_of(&events, None));
        let future = [landed(
            "f",
            "2026-11-30T01:00:00.000Z",
            out("F", "u9", "2027-01-05"),
        )];
        assert!(plan_of(&future, None).work.is_empty());
    }
}
