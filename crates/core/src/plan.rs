//! Plan: cuts a date range and a user list into the queries the platform accepts. Pure, no I/O.
//!
//! Invariants of a [`Plan`]:
//! - every window spans at most [`MAX_WINDOW_DAYS`] + 1 dates (`to - from <= 30` days), windows are
//!   contiguous, ordered and never overlap, and none ends after `today + 1`;
//! - every batch holds 1 to [`MAX_USERS_PER_QUERY`] distinct ids, each requested id in exactly one
//!   batch, in the order first given;
//! - one query per (window, batch, status), so `requests() = windows × batches × statuses`.

use std::fmt;
use std::str::FromStr;

use chrono::{Days, NaiveDate};

/// `check_date_to - check_date_from` may be at most this many days.
pub const MAX_WINDOW_DAYS: u64 = 30;
/// The platform refuses more ids than this in one query (documented for sibling endpoints).
pub const MAX_USERS_PER_QUERY: usize = 50;

/// Which kind of id `user_ids` holds, in the request and in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmployeeType {
    #[default]
    EmployeeId,
    EmployeeNo,
    OpenId,
}

impl EmployeeType {
    /// Every kind, in the order the command line lists them.
    pub const ALL: [EmployeeType; 3] = [
        EmployeeType::EmployeeId,
        EmployeeType::EmployeeNo,
        EmployeeType::OpenId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EmployeeType::EmployeeId => "employee_id",
            EmployeeType::EmployeeNo => "employee_no",
            EmployeeType::OpenId => "open_id",
        }
    }
}

impl FromStr for EmployeeType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmployeeType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!("'{s}' is not an employee type: use employee_id, employee_no or open_id")
            })
    }
}

impl fmt::Display for EmployeeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approval status the query can filter on. Serialized as its code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "i32", try_from = "i32")]
pub struct Status(i32);

impl From<Status> for i32 {
    fn from(status: Status) -> i32 {
        status.0
    }
}

impl TryFrom<i32> for Status {
    type Error = String;

    fn try_from(code: i32) -> Result<Status, String> {
        Status::new(code).ok_or_else(|| format!("{code} is not an approval status code (0 to 4)"))
    }
}

impl Status {
    pub const PENDING: Status = Status(0);
    pub const REJECTED: Status = Status(1);
    pub const APPROVED: Status = Status(2);
    pub const WITHDRAWN: Status = Status(3);
    pub const REVOKED: Status = Status(4);

    pub fn new(code: i32) -> Option<Status> {
        (0..=4).contains(&code).then_some(Status(code))
    }

    pub fn code(self) -> i32 {
        self.0
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i32>()
            .ok()
            .and_then(Status::new)
            .ok_or_else(|| {
                format!(
                    "'{s}' is not an approval status: use 0 pending, 1 rejected, 2 approved, 3 withdrawn, 4 revoked"
                )
            })
    }
}

/// An inclusive range of dates that one query may cover.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Window {
    /// Every date of the window, in order.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let to = self.to;
        self.from.iter_days().take_while(move |d| *d <= to)
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

/// `yyyyMMdd` as the platform wants it.
pub fn yyyymmdd(date: NaiveDate) -> u32 {
    use chrono::Datelike;
    date.year() as u32 * 10_000 + date.month() * 100 + date.day()
}

/// The range was cut short because the platform refuses dates past `today + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clipped {
    pub requested_to: NaiveDate,
    pub clipped_to: NaiveDate,
}

/// A window re-read for some users only, with batches of its own: what the event-driven
/// resync adds to a sync. Its dates are outside the plan's [`Plan::windows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraWindow {
    pub window: Window,
    pub batches: Vec<Vec<String>>,
}

/// Everything a run will ask the platform, before it asks.
///
/// Windows are numbered: first [`Plan::windows`] (every batch of [`Plan::batches`] each), then
/// [`Plan::extra`] (each with its own batches); [`Plan::window`] and [`Plan::batches_of`] read
/// them by number.
#[derive(Debug, Clone)]
pub struct Plan {
    pub windows: Vec<Window>,
    pub batches: Vec<Vec<String>>,
    pub statuses: Vec<Status>,
    pub clipped: Option<Clipped>,
    pub extra: Vec<ExtraWindow>,
}

impl Plan {
    /// Number of query calls the plan makes when nothing is retried.
    pub fn requests(&self) -> usize {
        let extra: usize = self.extra.iter().map(|e| e.batches.len()).sum();
        (self.windows.len() * self.batches.len() + extra) * self.statuses.len()
    }

    /// Number of windows, extra ones included.
    pub fn window_count(&self) -> usize {
        self.windows.len() + self.extra.len()
    }

    /// Window number `index`.
    pub fn window(&self, index: usize) -> Option<Window> {
        match self.windows.get(index) {
            Some(window) => Some(*window),
            None => self.extra.get(index - self.windows.len()).map(|e| e.window),
        }
    }

    /// The batches of window number `index` (none past the last window).
    pub fn batches_of(&self, index: usize) -> &[Vec<String>] {
        if index < self.windows.len() {
            &self.batches
        } else {
            self.extra
                .get(index - self.windows.len())
                .map_or(&[], |e| e.batches.as_slice())
        }
    }

    /// From the first date of [`Plan::windows`] to their last (extra windows left out).
    pub fn range(&self) -> Window {
        Window {
            from: self.windows[0].from,
            to: self.windows[self.windows.len() - 1].to,
        }
    }

    /// Every window, extra ones last.
    pub fn all_windows(&self) -> Vec<Window> {
        (0..self.window_count())
            .filter_map(|i| self.window(i))
            .collect()
    }

    pub fn users(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("--from {from} is after --to {to}: give the earlier date first")]
    FromAfterTo { from: NaiveDate, to: NaiveDate },
    #[error(
        "--from {from} is after {limit} (today {today} + 1 day), the last date the platform can be asked for: nothing to fetch"
    )]
    StartsAfterLimit {
        from: NaiveDate,
        limit: NaiveDate,
        today: NaiveDate,
    },
    #[error("no users to fetch: the user list is empty")]
    NoUsers,
    #[error("no statuses to fetch: give at least one of 0,1,2,3,4 to --statuses")]
    NoStatuses,
}

/// Cuts `from..=to` into windows, `users` into batches, and pairs them with `statuses`.
///
/// `today` is the platform's today; dates after `today + 1` are clipped (reported in
/// [`Plan::clipped`]) and a range that starts after it is refused.
pub fn plan(
    from: NaiveDate,
    to: NaiveDate,
    users: &[String],
    statuses: &[Status],
    today: NaiveDate,
) -> Result<Plan, PlanError> {
    if from > to {
        return Err(PlanError::FromAfterTo { from, to });
    }
    let limit = today + Days::new(1);
    if from > limit {
        return Err(PlanError::StartsAfterLimit { from, limit, today });
    }
    let (to, clipped) = if to > limit {
        (
            limit,
            Some(Clipped {
                requested_to: to,
                clipped_to: limit,
            }),
        )
    } else {
        (to, None)
    };

    let mut windows = Vec::new();
    let mut start = from;
    while start <= to {
        let end = (start + Days::new(MAX_WINDOW_DAYS)).min(to);
        windows.push(Window {
            from: start,
            to: end,
        });
        start = end + Days::new(1);
    }

    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = users
        .iter()
        .filter(|u| seen.insert(u.as_str()))
        .cloned()
        .collect();
    if unique.is_empty() {
        return Err(PlanError::NoUsers);
    }
    let batches = unique
        .chunks(MAX_USERS_PER_QUERY)
        .map(<[String]>::to_vec)
        .collect();

    let mut statuses = statuses.to_vec();
    statuses.sort();
    statuses.dedup();
    if statuses.is_empty() {
        return Err(PlanError::NoStatuses);
    }

    Ok(Plan {
        windows,
        batches,
        statuses,
        clipped,
        extra: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn ninety_five_days_make_four_windows_of_at_most_thirty_days_apart() {
        let p = plan(
            d("2026-01-01"),
            d("2026-04-05"),
            &users(1),
            &[Status::APPROVED],
            d("2026-11-22"),
        )
        .unwrap();
        assert_eq!(p.windows.len(), 4);
        assert_eq!(p.windows[0].from, d("2026-01-01"));
        assert_eq!(p.windows[3].to, d("2026-04-05"));
        for pair in p.windows.windows(2) {
            assert_eq!(pair[0].to + Days::new(1), pair[1].from);
        }
        for w in &p.windows {
            assert!((w.to - w.from).num_days() <= 30);
        }
        let dates: usize = p.windows.iter().map(|w| w.dates().count()).sum();
        assert_eq!(dates, 95);
    }

    #[test]
    fn users_are_deduplicated_and_batched_by_fifty() {
        let mut u = users(120);
        u.push("u3".into());
        let p = plan(
            d("2026-01-01"),
            d("2026-01-01"),
            &u,
            &[Status::APPROVED, Status::REVOKED, Status::APPROVED],
            d("2026-11-22"),
        )
        .unwrap();
        let sizes: Vec<usize> = p.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![50, 50, 20]);
        assert_eq!(p.users(), 120);
        assert_eq!(p.statuses, vec![Status::APPROVED, Status::REVOKED]);
        assert_eq!(p.requests(), 6);
    }

    #[test]
    fn range_past_tomorrow_is_clipped_and_range_starting_after_it_refused() {
        let today = d("2026-11-22");
        let p = plan(
            d("2026-11-01"),
            d("2026-12-31"),
            &users(1),
            &[Status::APPROVED],
            today,
        )
        .unwrap();
        assert_eq!(p.windows.last().unwrap().to, d("2026-11-23"));
        assert_eq!(
            p.clipped,
            Some(Clipped {
                requested_to: d("2026-12-31"),
                clipped_to: d("2026-11-23")
            })
        );
        let err = plan(
            d("2026-11-24"),
            d("2026-12-31"),
            &users(1),
            &[Status::APPROVED],
            today,
        )
        .unwrap_err();
        assert!(err.to_string().contains("2026-11-23"), "{err}");
    }

    #[test]
    fn from_after_to_and_empty_inputs_are_refused() {
        let today = d("2026-11-22");
        assert!(matches!(
            plan(
                d("2026-02-02"),
                d("2026-02-01"),
                &users(1),
                &[Status::APPROVED],
                today
            ),
            Err(PlanError::FromAfterTo { .. })
        ));
        assert_eq!(
            plan(
                d("2026-02-01"),
                d("2026-02-01"),
                &[],
                &[Status::APPROVED],
                today
            )
            .unwrap_err(),
            PlanError::NoUsers
        );
        assert_eq!(
            plan(d("2026-02-01"), d("2026-02-01"), &users(1), &[], today).unwrap_err(),
            PlanError::NoStatuses
        );
    }

    #[test]
    fn yyyymmdd_is_the_platform_integer() {
        assert_eq!(yyyymmdd(d("2019-08-17")), 20190817);
    }

    #[test]
    fn status_parsing_names_the_bad_value() {
        assert_eq!("3".parse::<Status>().unwrap(), Status::WITHDRAWN);
        assert!("7".parse::<Status>().unwrap_err().contains("'7'"));
    }
}
