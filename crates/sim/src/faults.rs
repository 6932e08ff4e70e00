//! Fault injection: which answers of the faultable APIs (the query, the four list endpoints
//! and the five third-party approval endpoints) are replaced by the failures a client meets on
//! the real platform.
//!
//! Invariants:
//! - One draw per request that passed the rate limit and auth, in arrival order, from an RNG
//!   seeded by the config seed; every draw consumes exactly two numbers whatever the switches,
//!   so the same request sequence under the same switches meets the same faults.
//! - The answer-replacing faults are exclusive and drawn from one roll, in the order
//!   http_500, code_1225000, burst_429, drop_connection, malformed_json: their shares should
//!   sum to at most 1 (any excess is lost by the later ones). The delay is drawn apart and can
//!   come on top of any of them.
//! - A started burst answers 429 to every request of its API until it ends, whatever the
//!   switches say meanwhile (changing them does not cut a burst short); each API has its own.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Faults;
use super::data::hash_of;

/// The APIs that are rate limited and faulted, each on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Query,
    GroupList,
    ListUser,
    DepartmentChildren,
    FindByDepartment,
    /// `POST approval/v4/external_instances`.
    ExternalInstances,
    /// `POST approval/v4/external_instances/check`.
    ExternalCheck,
    /// `GET approval/v4/external_tasks`.
    ExternalTasks,
    /// `POST approval/v4/external_approvals`.
    ExternalApprovals,
    /// `GET approval/v4/external_approvals/:approval_code`.
    ExternalApproval,
}

impl Api {
    pub(crate) const COUNT: usize = 10;

    /// The third-party approval APIs (limited per minute too).
    pub(crate) fn is_external(self) -> bool {
        self.index() >= Api::ExternalInstances.index()
    }

    /// A dense index in `0..COUNT`, for per-API arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Api::Query => 0,
            Api::GroupList => 1,
            Api::ListUser => 2,
            Api::DepartmentChildren => 3,
            Api::FindByDepartment => 4,
            Api::ExternalInstances => 5,
            Api::ExternalCheck => 6,
            Api::ExternalTasks => 7,
            Api::ExternalApprovals => 8,
            Api::ExternalApproval => 9,
        }
    }
}

/// How long a burst of 429 answers lasts.
pub(crate) const BURST_LENGTH: Duration = Duration::from_secs(1);
/// The body of an `http_500` answer: a gateway page, not JSON.
pub(crate) const HTML_500_BODY: &str = "<html>500 Internal Server Error</html>";

const TAG_FAULTS: u64 = 0x50;

/// A fault that replaces the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultAnswer {
    Http500,
    Code1225000,
    Burst429,
    DropConnection,
    MalformedJson,
}

impl FaultAnswer {
    /// The switch's name in [`Faults`], as logged in `QueryLogEntry::fault`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultAnswer::Http500 => "http_500",
            FaultAnswer::Code1225000 => "code_1225000",
            FaultAnswer::Burst429 => "burst_429",
            FaultAnswer::DropConnection => "drop_connection",
            FaultAnswer::MalformedJson => "malformed_json",
        }
    }
}

/// What one request is to suffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    pub(crate) answer: Option<FaultAnswer>,
    /// Wait this long before answering (or dropping).
    pub(crate) delay: Option<Duration>,
}

impl FaultPlan {
    pub(crate) fn is_faulted(&self) -> bool {
        self.answer.is_some() || self.delay.is_some()
    }

    /// The name logged for this plan: the answer fault, else "slow" for a delay alone.
    pub(crate) fn name(&self) -> Option<&'static str> {
        match (self.answer, self.delay) {
            (Some(answer), _) => Some(answer.name()),
            (None, Some(_)) => Some("slow"),
            (None, None) => None,
        }
    }
}

pub(crate) struct FaultInjector {
    switches: Faults,
    rng: StdRng,
    /// Per API (by [`Api::index`]): when its current burst ends.
    burst_until: [Option<Instant>; Api::COUNT],
}

impl FaultInjector {
    pub(crate) fn new(seed: u64, switches: Faults) -> FaultInjector {
        FaultInjector {
            switches,
            rng: StdRng::seed_from_u64(hash_of(&[seed, TAG_FAULTS])),
            burst_until: [None; Api::COUNT],
        }
    }

    pub(crate) fn set(&mut self, switches: Faults) {
        self.switches = switches;
    }

    pub(crate) fn draw(&mut self, api: Api, now: Instant) -> FaultPlan {
        let answer_roll: f64 = self.rng.random();
        let slow_roll: f64 = self.rng.random();
        let switches = &self.switches;
        let in_burst = self.burst_until[api.index()].is_some_and(|until| now < until);
        let answer = if in_burst {
            Some(FaultAnswer::Burst429)
        } else {
            let shares = [
                (switches.http_500, FaultAnswer::Http500),
                (switches.code_1225000, FaultAnswer::Code1225000),
                (switches.burst_429, FaultAnswer::Burst429),
                (switches.drop_connection, FaultAnswer::DropConnection),
                (switches.malformed_json, FaultAnswer::MalformedJson),
            ];
            let mut below = 0.0;
            shares.into_iter().find_map(|(share, answer)| {
                // NaN and negative shares count as 0.
                below += share.max(0.0);
                (answer_roll < below).then_some(answer)
            })
        };
        if answer == Some(FaultAnswer::Burst429) && !in_burst {
            self.burst_until[api.index()] = Some(now + BURST_LENGTH);
        }
        let delay = (slow_roll < switches.slow && switches.slow_ms > 0)
            .then(|| Duration::from_millis(switches.slow_ms));
        FaultPlan { answer, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_switches_no_faults() {
        let mut injector = FaultInjector::new(1, Faults::default());
        let now = Instant::now();
        assert!((0..1_000).all(|_| !injector.draw(Api::Query, now).is_faulted()));
    }

    #[test]
    fn shares_are_roughly_honoured_and_exclusive() {
        let switches = Faults {
            http_500: 0.1,
            code_1225000: 0.1,
            drop_connection: 0.1,
            malformed_json: 0.1,
            slow: 0.5,
            slow_ms: 5,
            ..Faults::default()
        };
        let mut injector = FaultInjector::new(3, switches);
        let now = Instant::now();
        let plans: Vec<FaultPlan> = (0..10_000)
            .map(|_| injector.draw(Api::GroupList, now))
            .collect();
        let share = |wanted: FaultAnswer| {
            plans
                .iter()
                .filter(|plan| plan.answer == Some(wanted))
                .count() as f64
                / 10_000.0
        };
        for answer in [
            FaultAnswer::Http500,
            FaultAnswer::Code1225000,
            FaultAnswer::DropConnection,
            FaultAnswer::MalformedJson,
        ] {
            assert!((0.08..0.12).contains(&share(answer)), "{answer:?}");
        }
        let slow = plans.iter().filter(|plan| plan.delay.is_some()).count();
        assert!((4_500..5_500).contains(&slow), "{slow}");
    }

    #[test]
    fn a_burst_outlives_its_switch_for_its_api_only() {
        let mut injector = FaultInjector::new(
            9,
            Faults {
                burst_429: 1.0,
                ..Faults::default()
            },
        );
        let start = Instant::now();
        assert_eq!(
            injector.draw(Api::Query, start).answer,
            Some(FaultAnswer::Burst429)
        );
        injector.set(Faults::default());
        let later = start + Duration::from_millis(900);
        assert_eq!(
            injector.draw(Api::Query, later).answer,
            Some(FaultAnswer::Burst429)
        );
        assert_eq!(injector.draw(Api::ListUser, later).answer, None);
        assert_eq!(injector.draw(Api::Query, start + BURST_LENGTH).answer, None);
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let switches = Faults {
            http_500: 0.3,
            slow: 0.3,
            slow_ms: 1,
            ..Faults::default()
        };
        let now = Instant::now();
        let draws = |seed| {
            let mut injector = FaultInjector::new(seed, switches.clone());
            (0..200)
                .map(|_| injector.draw(Api::Query, now))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(5), draws(5));
        assert_ne!(draws(5), draws(6));
    }
}
