//! Each user's time zone as last seen in this root's `user_approvals/query` answers
//! (`_events/user-time-zones.json`): approval events carry local wall times but no zone, and
//! the events compaction reads them in the zone kept here.
//!
//! Invariants:
//! - Ids are filed by the employee type the pull queried with: `employee_id` under
//!   [`UserZones::user_id`] (the id events call `user_id`), `open_id` under
//!   [`UserZones::open_id`]. Events carry no `employee_no`: a pull by employee numbers files
//!   nothing.
//! - The newest date wins: a zone seen as of an earlier date never replaces one seen as of a
//!   later date; of two seen as of the same date, the later merge wins. Except that a named zone
//!   stands for a fixed offset (`UTC+08:00`) seen later that it explains (it had that offset on
//!   that date), since the named zone knows the other side of a DST change
//!   (`attendance_core::tz::compare_sightings`).
//! - Only a run holding the root's lease writes it (the pull, after its pipeline ran), whole
//!   and atomically.
//! - Readers never fail on its being absent: no file is an empty map. An unreadable file is an
//!   error, so that it is not silently replaced.

use std::collections::BTreeMap;

use attendance_core::plan::EmployeeType;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Where the map lives, relative to the root.
pub const USER_ZONES_PATH: &str = "_events/user-time-zones.json";

/// A user's zone and the date of the answer it was seen in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenZone {
    /// The zone's canonical name (`attendance_core::tz::Zone::name`): the IANA name, "UTC" for a
    /// zone the platform left empty, `UTC±HH:MM` for a fixed offset.
    pub time_zone: String,
    /// The `date` of the latest user_approval it was seen under (`YYYY-MM-DD`).
    pub as_of: NaiveDate,
}

/// Users' zones, by the kind of id they were queried by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserZones {
    /// By `user_id` (queried as `employee_id`).
    #[serde(default)]
    pub user_id: BTreeMap<String, SeenZone>,
    /// By `open_id`.
    #[serde(default)]
    pub open_id: BTreeMap<String, SeenZone>,
}

impl UserZones {
    /// The map of `store`; empty when no run ever wrote one.
    pub async fn load(store: &Store) -> Result<UserZones, StoreError> {
        let Some(bytes) = store.get(USER_ZONES_PATH).await? else {
            return Ok(UserZones::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
            action: "parse",
            location: store.describe(USER_ZONES_PATH),
            source: Box::new(e),
        })
    }

    /// Writes the map whole, replacing what was there. Only under the root's lease.
    pub async fn save(&self, store: &Store) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(self).expect("a zone map serialises");
        store.put(USER_ZONES_PATH, bytes).await
    }

    /// Files `seen` (id → (date, zone name)) under the map of `employee_type`, each entry
    /// replacing one as of the same or an earlier date. Whether anything changed.
    pub fn merge(
        &mut self,
        employee_type: EmployeeType,
        seen: &BTreeMap<String, (NaiveDate, &str)>,
    ) -> bool {
        let map = match employee_type {
            EmployeeType::EmployeeId => &mut self.user_id,
            EmployeeType::OpenId => &mut self.open_id,
            EmployeeType::EmployeeNo => return false,
        };
        let mut changed = false;
        for (id, &(as_of, time_zone)) in seen {
            let fresh = SeenZone {
                time_zone: time_zone.to_owned(),
                as_of,
            };
            let known_wins = |known: &SeenZone| {
                let order = attendance_core::tz::compare_sightings(
                    (known.as_of, &known.time_zone),
                    (as_of, time_zone),
                );
                order == std::cmp::Ordering::Less
            };
            match map.get_mut(id) {
                Some(known) if *known == fresh || known_wins(known) => {}
                Some(known) => {
                    *known = fresh;
                    changed = true;
                }
                None => {
                    map.insert(id.clone(), fresh);
                    changed = true;
                }
            }
        }
        changed
    }

    /// The zone of a user named by either id: `user_id` first, then `open_id`.
    pub fn zone_of(&self, user_id: Option<&str>, open_id: Option<&str>) -> Option<&str> {
        let by_user = user_id.and_then(|id| self.user_id.get(id));
        let by_open = || open_id.and_then(|id| self.open_id.get(id));
        by_user.or_else(by_open).map(|seen| seen.time_zone.as_str())
    }
}

/// The map of `store`, empty when no run ever wrote one ([`UserZones::load`]).
pub async fn load(store: &Store) -> Result<UserZones, StoreError> {
    UserZones::load(store).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn seen(entries: &[(&str, &str, &'static str)]) -> BTreeMap<String, (NaiveDate, &'static str)> {
        entries
            .iter()
            .map(|&(id, date, zone)| (id.to_owned(), (d(date), zone)))
            .collect()
    }

    fn zone(time_zone: &str, as_of: &str) -> SeenZone {
        SeenZone {
            time_zone: time_zone.to_owned(),
            as_of: d(as_of),
        }
    }

    #[test]
    fn the_newest_date_wins_and_ids_are_filed_by_employee_type() {
        let mut zones = UserZones::default();
        let first = seen(&[
            ("u1", "2026-09-15", "Asia/Shanghai"),
            ("u2", "2026-09-15", "Europe/London"),
        ]);
        assert!(zones.merge(EmployeeType::EmployeeId, &first));
        assert!(
            !zones.merge(EmployeeType::EmployeeId, &first),
            "the same sightings change nothing"
        );
        let second = seen(&[
            // Older: kept out.
            ("u1", "2026-09-01", "America/New_York"),
            // As of the same date: the later merge wins.
            ("u2", "2026-09-15", "UTC"),
            ("u3", "2026-08-01", "Asia/Kolkata"),
        ]);
        assert!(zones.merge(EmployeeType::EmployeeId, &second));
        assert_eq!(
            zones.user_id,
            BTreeMap::from([
                ("u1".to_owned(), zone("Asia/Shanghai", "2026-09-15")),
                ("u2".to_owned(), zone("UTC", "2026-09-15")),
                ("u3".to_owned(), zone("Asia/Kolkata", "2026-08-01")),
            ])
        );
        assert!(zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u1", "2026-10-01", "Europe/London")])
        ));
        assert_eq!(zones.user_id["u1"], zone("Europe/London", "2026-10-01"));
        assert!(zones.open_id.is_empty());

        assert!(zones.merge(
            EmployeeType::OpenId,
            &seen(&[("ou_1", "2026-09-15", "Australia/Lord_Howe")])
        ));
        assert_eq!(
            zones.open_id,
            BTreeMap::from([("ou_1".to_owned(), zone("Australia/Lord_Howe", "2026-09-15"))])
        );
        // Events carry no employee numbers: nothing to file them under.
        let before = zones.clone();
        assert!(!zones.merge(
            EmployeeType::EmployeeNo,
            &seen(&[("E000001", "2026-12-01", "Asia/Shanghai")])
        ));
        assert_eq!(zones, before);
    }

    #[test]
    fn a_named_zone_stands_for_a_later_fixed_offset_it_explains() {
        let mut zones = UserZones::default();
        zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[
                ("u1", "2026-09-15", "America/New_York"),
                ("u2", "2026-09-15", "UTC-04:00"),
                ("u4", "2026-09-15", "UTC"),
            ]),
        );
        // New York was UTC-05:00 on 2026-12-01: it stays. An earlier named zone that explains a
        // fixed offset replaces it; UTC does not explain UTC+08:00, which replaces it.
        assert!(!zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u1", "2026-12-01", "UTC-05:00")])
        ));
        assert!(zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u2", "2026-09-01", "America/New_York")])
        ));
        assert!(zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u4", "2026-10-01", "UTC+08:00")])
        ));
        assert_eq!(zones.user_id["u1"], zone("America/New_York", "2026-09-15"));
        assert_eq!(zones.user_id["u2"], zone("America/New_York", "2026-09-01"));
        assert_eq!(zones.user_id["u4"], zone("UTC+08:00", "2026-10-01"));
        // A user who moved: a fixed offset New York never had wins.
        assert!(zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u1", "2026-12-02", "UTC+09:00")])
        ));
        assert_eq!(zones.user_id["u1"], zone("UTC+09:00", "2026-12-02"));
        // Between two fixed offsets, the newest date.
        zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u3", "2026-09-01", "UTC+08:00")]),
        );
        zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u3", "2026-09-02", "UTC+09:00")]),
        );
        assert_eq!(zones.user_id["u3"], zone("UTC+09:00", "2026-09-02"));
    }

    #[test]
    fn zone_of_looks_up_the_user_id_first_then_the_open_id() {
        let mut zones = UserZones::default();
        zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[("u1", "2026-09-15", "Asia/Shanghai")]),
        );
        zones.merge(
            EmployeeType::OpenId,
            &seen(&[
                ("ou_1", "2026-09-20", "America/New_York"),
                ("ou_2", "2026-09-20", "Europe/London"),
            ]),
        );
        assert_eq!(
            zones.zone_of(Some("u1"), Some("ou_1")),
            Some("Asia/Shanghai")
        );
        assert_eq!(
            zones.zone_of(Some("u9"), Some("ou_1")),
            Some("America/New_York")
        );
        assert_eq!(zones.zone_of(None, Some("ou_2")), Some("Europe/London"));
        assert_eq!(zones.zone_of(Some("u9"), Some("ou_9")), None);
        assert_eq!(zones.zone_of(None, None), None);
    }

    #[tokio::test]
    async fn it_round_trips_through_the_store_and_is_empty_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(dir.path().to_path_buf());
        assert_eq!(load(&store).await.unwrap(), UserZones::default());

        let mut zones = UserZones::default();
        zones.merge(
            EmployeeType::EmployeeId,
            &seen(&[
                ("u1", "2026-09-15", "Asia/Shanghai"),
                ("u2", "2026-09-16", "UTC"),
            ]),
        );
        zones.merge(
            EmployeeType::OpenId,
            &seen(&[("ou_1", "2026-09-17", "America/New_York")]),
        );
        zones.save(&store).await.unwrap();
        assert_eq!(load(&store).await.unwrap(), zones);

        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(USER_ZONES_PATH)).unwrap())
                .unwrap();
        assert_eq!(
            written,
            serde_json::json!({
                "user_id": {
                    "u1": {"time_zone": "Asia/Shanghai", "as_of": "2026-09-15"},
                    "u2": {"time_zone": "UTC", "as_of": "2026-09-16"}
                },
                "open_id": {
                    "ou_1": {"time_zone": "America/New_York", "as_of": "2026-09-17"}
                }
            })
        );

        std::fs::write(dir.path().join(USER_ZONES_PATH), b"{not json").unwrap();
        let err = load(&store).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { action: "parse", location, .. } if location.ends_with("user-time-zones.json")),
            "{err:?}"
        );
    }
}
