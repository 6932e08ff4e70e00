//! Local wall times of the platform ("yyyy-MM-dd HH:mm:ss" in a record's zone) to UTC instants.
//!
//! Invariants:
//! - A zone name is an IANA name or empty (empty = UTC, per the platform doc). Anything else is an
//!   error: a record is never silently read as UTC.
//! - A wall time in a DST gap moves forward by the length of the gap (it is read with the offset in
//!   force just before the gap); a wall time that occurs twice takes the earlier instant. This is
//!   the "compatible" rule of RFC 9557 / Temporal / Python's `fold=0`, and each use is reported as a
//!   [`Resolution`] so the run can count them.
//! - Parsing is strict: exactly 19 characters, real calendar dates, `HH` < 24, `mm`, `ss` < 60.

use chrono::{
    DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset as _, TimeDelta, TimeZone,
    Utc,
};
use chrono_tz::Tz;

/// How a wall time became an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The wall time exists exactly once in the zone.
    Exact,
    /// The wall time fell in a DST gap and was moved forward by the gap.
    GapShifted,
    /// The wall time occurred twice; the earlier instant was taken.
    AmbiguousEarlier,
}

/// A record's zone, resolved once per user-date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    tz: Tz,
    /// The zone name written to the `time_zone` column.
    pub name: &'static str,
}

impl Zone {
    /// Zero offset, for an empty `time_zone`.
    pub const UTC: Zone = Zone {
        tz: Tz::UTC,
        name: "UTC",
    };
}

/// A `time_zone` that is not in the IANA database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownZone;

/// Resolves the platform's `time_zone`; `None` or `""` is UTC.
pub fn zone(name: Option<&str>) -> Result<Zone, UnknownZone> {
    match name.map(str::trim) {
        None | Some("") => Ok(Zone::UTC),
        Some(n) => n
            .parse::<Tz>()
            .map(|tz| Zone {
                tz,
                name: tz.name(),
            })
            .map_err(|_| UnknownZone),
    }
}

/// Parses `yyyy-MM-dd HH:mm:ss` strictly. `None` when it is anything else.
pub fn parse_wall_time(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range| digits(&b[range]);
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = NaiveTime::from_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
    Some(NaiveDateTime::new(date, time))
}

/// Parses `yyyyMMdd` (the platform's `date`) strictly.
pub fn parse_yyyymmdd(s: &str) -> Option<NaiveDate> {
    // By hand, not `parse_from_str`: every record has a date, and chrono reads its format
    // string again on each call.
    let b = s.as_bytes();
    if b.len() != 8 {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits(&b[0..4])? as i32,
        digits(&b[4..6])?,
        digits(&b[6..8])?,
    )
}

/// The number an all-digit ASCII field spells; `None` if any byte is not a digit.
fn digits(field: &[u8]) -> Option<u32> {
    field.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Reads a wall time in `zone` under the compatible rule.
pub fn to_utc(local: NaiveDateTime, zone: Zone) -> (DateTime<Utc>, Resolution) {
    match zone.tz.from_local_datetime(&local) {
        LocalResult::Single(t) => (t.with_timezone(&Utc), Resolution::Exact),
        LocalResult::Ambiguous(earlier, _) => {
            (earlier.with_timezone(&Utc), Resolution::AmbiguousEarlier)
        }
        LocalResult::None => (shift_past_gap(local, zone.tz), Resolution::GapShifted),
    }
}

/// The instant of a wall time inside a gap, read with the offset in force before the gap.
fn shift_past_gap(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    // Walk back to the last wall time before the gap. Real gaps are at most a day long (Samoa
    // skipped 2011-12-30 whole); half-hour steps reach below any of them.
    let mut probe = local;
    for _ in 0..=2 * 48 {
        probe -= TimeDelta::minutes(30);
        let before = match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(_, later) => Some(later),
            LocalResult::None => None,
        };
        if let Some(before) = before {
            let offset = before.offset().fix();
            return Utc
                .from_utc_datetime(&(local - TimeDelta::seconds(offset.local_minus_utc().into())));
        }
    }
    // Unreachable for any zone in the tz database; keep the instant well-defined regardless.
    Utc.from_utc_datetime(&local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(local: &str, zone_name: &str) -> (String, Resolution) {
        let z = zone(Some(zone_name)).unwrap();
        let (t, r) = to_utc(parse_wall_time(local).unwrap(), z);
        (t.format("%Y-%m-%dT%H:%M:%SZ").to_string(), r)
    }

    #[test]
    fn exact_times_in_each_zone() {
        assert_eq!(
            utc("2026-09-15 09:00:00", "Asia/Shanghai").0,
            "2026-09-15T01:00:00Z"
        );
        assert_eq!(
            utc("2026-09-15 20:00:00", "Asia/Kolkata").0,
            "2026-09-15T14:30:00Z"
        );
        assert_eq!(
            utc("2026-07-01 12:00:00", "America/New_York").0,
            "2026-07-01T16:00:00Z"
        );
        assert_eq!(
            utc("2026-01-15 12:00:00", "Europe/London").0,
            "2026-01-15T12:00:00Z"
        );
        assert_eq!(
            utc("2026-07-01 12:00:00", "Australia/Lord_Howe").0,
            "2026-07-01T01:30:00Z"
        );
    }

    #[test]
    fn gaps_move_forward_by_the_gap() {
        assert_eq!(
            utc("2026-03-08 02:30:00", "America/New_York"),
            ("2026-03-08T07:30:00Z".into(), Resolution::GapShifted)
        );
        assert_eq!(
            utc("2026-03-29 01:30:00", "Europe/London"),
            ("2026-03-29T01:30:00Z".into(), Resolution::GapShifted)
        );
        // Lord Howe's gap is 30 minutes: 02:15 +10:30 is 02:45 +11:00.
        assert_eq!(
            utc("2026-10-04 02:15:00", "Australia/Lord_Howe"),
            ("2026-10-03T15:45:00Z".into(), Resolution::GapShifted)
        );
    }

    #[test]
    fn overlaps_take_the_earlier_instant() {
        assert_eq!(
            utc("2026-11-01 01:30:00", "America/New_York"),
            ("2026-11-01T05:30:00Z".into(), Resolution::AmbiguousEarlier)
        );
        assert_eq!(
            utc("2026-10-25 01:15:00", "Europe/London"),
            ("2026-10-25T00:15:00Z".into(), Resolution::AmbiguousEarlier)
        );
        assert_eq!(
            utc("2026-04-05 01:45:00", "Australia/Lord_Howe"),
            ("2026-04-04T14:45:00Z".into(), Resolution::AmbiguousEarlier)
        );
    }

    #[test]
    fn empty_zone_is_utc_and_unknown_zone_is_an_error() {
        assert_eq!(zone(Some("")).unwrap().name, "UTC");
        assert_eq!(zone(None).unwrap().name, "UTC");
        assert!(zone(Some("Asia/Beijing")).is_err());
        assert!(zone(Some("GMT+8")).is_err());
    }

    #[test]
    fn wall_time_parsing_is_strict() {
        assert!(parse_wall_time("2026-09-15 09:00:00").is_some());
        for bad in [
            "2026-02-30 09:00:00",
            "2026-09-15 24:00:00",
            "2026-09-15T09:00:00",
            "2026-09-15 09:00",
            "2026-9-15 09:00:00",
            "",
            "２０２６-09-15 09:00:00",
        ] {
            assert!(parse_wall_time(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_yyyymmdd("20260915"),
            NaiveDate::from_ymd_opt(2026, 9, 15)
        );
        for bad in [
            "2026-09-15",
            "20261315",
            "20260230",
            "2026091",
            "+2026091",
            " 20260915",
            "2026 915",
            "",
        ] {
            assert!(parse_yyyymmdd(bad).is_none(), "{bad}");
        }
    }
}
