//! Local wall times of the platform ("yyyy-MM-dd HH:mm:ss" in a record's zone) to UTC instants,
//! and the zone names the platform sends to the zones they mean.
//!
//! Invariants:
//! - A zone name is read, in this order, as: a configured alias ([`ZoneAliases`]); empty (UTC, per
//!   the platform doc); an IANA name; a fixed offset (`UTC+08:00`, `UTC+8`, `GMT+08:00`, `+08:00`,
//!   `+0800`, `UTC-05:30`, with `-` or `−`, at most 18 hours); a Windows zone ID through CLDR's
//!   territory-001 mapping ([`crate::windows_zones`]), ignoring ASCII case and repeated spaces.
//!   Anything else is an error: a record is never silently read as UTC or guessed.
//! - A fixed offset has no DST. Every zone has a canonical [`Zone::name`] (the IANA name, or
//!   `UTC±HH:MM`) that [`zone`] reads back to the same zone with no alias, so it can be stored.
//! - A wall time in a DST gap moves forward by the length of the gap (it is read with the offset in
//!   force just before the gap); a wall time that occurs twice takes the earlier instant. This is
//!   the "compatible" rule of RFC 9557 / Temporal / Python's `fold=0`, and each use is reported as a
//!   [`Resolution`] so the run can count them.
//! - Parsing is strict: exactly 19 characters, real calendar dates, `HH` < 24, `mm`, `ss` < 60.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset as _,
    TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::windows_zones::WINDOWS_ZONES;

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

/// How a zone name was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadAs {
    /// An IANA name, or empty (UTC).
    Iana,
    /// A fixed offset from UTC.
    FixedOffset,
    /// A Windows zone ID, through CLDR.
    WindowsId,
    /// A configured alias.
    Alias,
}

/// The rule that turns wall times into instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Named(Tz),
    /// Seconds east of UTC.
    Fixed(i32),
}

/// A record's zone, resolved once per user-date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    rule: Rule,
    /// The canonical name: the IANA name, or `UTC±HH:MM` for a fixed offset. [`zone`] reads it
    /// back to this zone without any alias.
    pub name: &'static str,
    /// The IANA zone the times are read in; `None` for a fixed offset.
    pub iana: Option<&'static str>,
    /// How the name as sent was read.
    pub read_as: ReadAs,
}

impl Zone {
    /// Zero offset, for an empty `time_zone`.
    pub const UTC: Zone = Zone {
        rule: Rule::Named(Tz::UTC),
        name: "UTC",
        iana: Some("UTC"),
        read_as: ReadAs::Iana,
    };

    fn named(tz: Tz, read_as: ReadAs) -> Zone {
        Zone {
            rule: Rule::Named(tz),
            name: tz.name(),
            iana: Some(tz.name()),
            read_as,
        }
    }

    /// The offset from UTC, in seconds, in force at `instant`.
    pub fn offset_at(&self, instant: DateTime<Utc>) -> i32 {
        match self.rule {
            Rule::Named(tz) => tz
                .offset_from_utc_datetime(&instant.naive_utc())
                .fix()
                .local_minus_utc(),
            Rule::Fixed(seconds) => seconds,
        }
    }
}

/// Whether `name` is the canonical name of a fixed offset (`UTC±HH:MM`, [`Zone::name`]).
pub fn is_fixed_offset_name(name: &str) -> bool {
    name.len() == 9 && (name.starts_with("UTC+") || name.starts_with("UTC-"))
}

/// Which of two sightings of a user's zone (the date it was seen as of, its canonical name) to
/// remember: `Greater` for `b`, `Less` for `a`, `Equal` for a tie (same date, other names),
/// which the caller breaks. The newer wins, except that a named zone stands for a fixed offset
/// seen later when it had that very offset on that date: the offset is explained, and the named
/// zone knows the other side of a DST change, which one date's offset does not. A user sent
/// `UTC+08:00` after `UTC` (an empty zone) or after New York has moved: the offset wins.
pub fn compare_sightings(a: (NaiveDate, &str), b: (NaiveDate, &str)) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (older, newer, newer_is_b) = match a.0.cmp(&b.0) {
        Ordering::Equal => {
            return if a.1 == b.1 {
                Ordering::Less
            } else {
                Ordering::Equal
            };
        }
        Ordering::Less => (a, b, true),
        Ordering::Greater => (b, a, false),
    };
    let offset_on = |name: &str, date: NaiveDate| {
        zone(Some(name))
            .ok()
            .map(|z| z.offset_at(date.and_hms_opt(12, 0, 0).expect("noon").and_utc()))
    };
    let older_explains_newer = older.1 != newer.1
        && is_fixed_offset_name(newer.1)
        && !is_fixed_offset_name(older.1)
        && offset_on(older.1, newer.0).is_some()
        && offset_on(older.1, newer.0) == offset_on(newer.1, newer.0);
    if older_explains_newer == newer_is_b {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// A `time_zone` that is not an alias, an IANA name, a fixed offset or a Windows zone ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownZone;

/// Resolves the platform's `time_zone` without aliases; `None` or `""` is UTC.
pub fn zone(name: Option<&str>) -> Result<Zone, UnknownZone> {
    let n = match name.map(str::trim) {
        None | Some("") => return Ok(Zone::UTC),
        Some(n) => n,
    };
    if let Ok(tz) = n.parse::<Tz>() {
        return Ok(Zone::named(tz, ReadAs::Iana));
    }
    if let Some(seconds) = fixed_offset(n) {
        return Ok(Zone {
            rule: Rule::Fixed(seconds),
            name: fixed_name(seconds),
            iana: None,
            read_as: ReadAs::FixedOffset,
        });
    }
    windows_zone(n)
        .and_then(|iana| iana.parse::<Tz>().ok())
        .map(|tz| Zone::named(tz, ReadAs::WindowsId))
        .ok_or(UnknownZone)
}

/// The IANA name CLDR gives a Windows zone ID (territory 001), ignoring ASCII case and runs of
/// spaces: `China Standard Time` and `china  standard time` are one ID.
pub fn windows_zone(id: &str) -> Option<&'static str> {
    let wanted: String = id
        .split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    WINDOWS_ZONES
        .binary_search_by(|(windows, _)| {
            windows
                .bytes()
                .map(|b| b.to_ascii_lowercase())
                .cmp(wanted.bytes())
        })
        .ok()
        .map(|i| WINDOWS_ZONES[i].1)
}

/// The seconds east of UTC a fixed-offset spelling names, at most 18 hours either way:
/// an optional `UTC` or `GMT` (any case), a sign (`+`, `-`, `−`), then `H`, `HH`, `HH:MM`, `H:MM`
/// or `HHMM`.
pub fn fixed_offset(text: &str) -> Option<i32> {
    let rest = ["utc", "gmt"]
        .iter()
        .find_map(|p| {
            text.get(..3)
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &text[3..])
        })
        .unwrap_or(text);
    let (sign, rest) = if let Some(r) = rest.strip_prefix('+') {
        (1, r)
    } else if let Some(r) = rest
        .strip_prefix('-')
        .or_else(|| rest.strip_prefix('\u{2212}'))
    {
        (-1, r)
    } else {
        return None;
    };
    if !rest.is_ascii() {
        return None;
    }
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) if (1..=2).contains(&h.len()) && m.len() == 2 => (h, m),
        Some(_) => return None,
        None if (1..=2).contains(&rest.len()) => (rest, "00"),
        None if rest.len() == 4 => rest.split_at(2),
        None => return None,
    };
    let (hours, minutes) = (digits(hours.as_bytes())?, digits(minutes.as_bytes())?);
    let seconds = (hours * 3600 + minutes * 60) as i32;
    (minutes < 60 && seconds <= MAX_OFFSET_SECONDS).then_some(sign * seconds)
}

const MAX_OFFSET_SECONDS: i32 = 18 * 3600;

/// `UTC±HH:MM` for a whole-minute offset within ±18 hours, as a `'static` name (every such name
/// is built once, on first use: 2,161 short strings).
fn fixed_name(seconds: i32) -> &'static str {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    let max = MAX_OFFSET_SECONDS / 60;
    let names = NAMES.get_or_init(|| {
        (-max..=max)
            .map(|m| {
                let sign = if m < 0 { '-' } else { '+' };
                format!("UTC{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60)
            })
            .collect()
    });
    &names[(seconds / 60 + max) as usize]
}

/// Zone names read as others (`--zone-alias FROM=TO`, a job file's `zone_aliases`): a name the
/// tenant sends that is in no table but that the team knows the meaning of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneAliases {
    by_name: BTreeMap<String, Zone>,
}

/// An alias with no name to read, or whose target is not an IANA name or a fixed offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone alias {from}={to}: {why}")]
pub struct BadAlias {
    pub from: String,
    pub to: String,
    pub why: String,
}

impl ZoneAliases {
    /// Adds `from` read as `to`; `to` must be an IANA name or a fixed offset.
    pub fn insert(&mut self, from: &str, to: &str) -> Result<(), BadAlias> {
        let bad = |why: String| BadAlias {
            from: from.to_string(),
            to: to.to_string(),
            why,
        };
        if from.trim().is_empty() {
            return Err(bad("the name to read (before '=') is empty".into()));
        }
        let not_a_target = || {
            bad(format!(
                "{to:?} is not an IANA name (e.g. Asia/Shanghai) or a fixed offset (e.g. UTC+08:00)"
            ))
        };
        let target = zone(Some(to)).map_err(|_| not_a_target())?;
        if to.trim().is_empty() || target.read_as == ReadAs::WindowsId {
            return Err(not_a_target());
        }
        self.by_name.insert(
            from.trim().to_string(),
            Zone {
                read_as: ReadAs::Alias,
                ..target
            },
        );
        Ok(())
    }

    /// Resolves `name` through the aliases first, then as [`zone`] does.
    pub fn resolve(&self, name: Option<&str>) -> Result<Zone, UnknownZone> {
        match name.map(str::trim).and_then(|n| self.by_name.get(n)) {
            Some(zone) => Ok(*zone),
            None => zone(name),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Each alias and the canonical name of its target, for summaries and manifests.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.by_name
            .iter()
            .map(|(from, z)| (from.clone(), z.name.to_string()))
            .collect()
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
    let tz = match zone.rule {
        Rule::Named(tz) => tz,
        Rule::Fixed(seconds) => {
            let offset = FixedOffset::east_opt(seconds).expect("fixed offsets are within ±18 h");
            let utc = local - TimeDelta::seconds(offset.local_minus_utc().into());
            return (Utc.from_utc_datetime(&utc), Resolution::Exact);
        }
    };
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => (t.with_timezone(&Utc), Resolution::Exact),
        LocalResult::Ambiguous(earlier, _) => {
            (earlier.with_timezone(&Utc), Resolution::AmbiguousEarlier)
        }
        LocalResult::None => (shift_past_gap(local, tz), Resolution::GapShifted),
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
        assert!(zone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn fixed_offsets_in_every_spelling() {
        for (text, seconds, name) in [
            ("UTC+08:00", 8 * 3600, "UTC+08:00"),
            ("UTC+8", 8 * 3600, "UTC+08:00"),
            ("GMT+08:00", 8 * 3600, "UTC+08:00"),
            ("GMT+8", 8 * 3600, "UTC+08:00"),
            ("+08:00", 8 * 3600, "UTC+08:00"),
            ("+0800", 8 * 3600, "UTC+08:00"),
            ("utc+8", 8 * 3600, "UTC+08:00"),
            ("UTC-05:30", -(5 * 3600 + 1800), "UTC-05:30"),
            ("UTC\u{2212}05:30", -(5 * 3600 + 1800), "UTC-05:30"),
            ("\u{2212}0530", -(5 * 3600 + 1800), "UTC-05:30"),
            ("GMT-5", -5 * 3600, "UTC-05:00"),
            ("UTC+18:00", 18 * 3600, "UTC+18:00"),
            ("UTC-18", -18 * 3600, "UTC-18:00"),
            ("UTC+00:00", 0, "UTC+00:00"),
        ] {
            let z = zone(Some(text)).unwrap_or_else(|_| panic!("{text}"));
            assert_eq!(z.read_as, ReadAs::FixedOffset, "{text}");
            assert_eq!(z.name, name, "{text}");
            assert_eq!(z.iana, None, "{text}");
            assert_eq!(fixed_offset(text), Some(seconds), "{text}");
            // The canonical name reads back to the same zone.
            assert_eq!(zone(Some(z.name)).unwrap(), z, "{text}");
        }
        // A fixed offset has no DST: New York's gap and fold do not apply to UTC-05:00.
        assert_eq!(
            utc("2026-03-08 02:30:00", "UTC-05:00"),
            ("2026-03-08T07:30:00Z".into(), Resolution::Exact)
        );
        assert_eq!(
            utc("2026-07-01 12:00:00", "UTC-05:30"),
            ("2026-07-01T17:30:00Z".into(), Resolution::Exact)
        );
        assert_eq!(
            utc("2026-09-15 09:00:00", "GMT+8").0,
            "2026-09-15T01:00:00Z"
        );
        for bad in [
            "UTC+18:01",
            "UTC+19",
            "+8:0",
            "+080",
            "+08000",
            "UTC+08:60",
            "UTC 8",
            "8",
            "UTC+",
            "GMT+8:00:00",
            "UTC+０8",
            "++8",
            "UTC*8",
        ] {
            assert!(zone(Some(bad)).is_err(), "{bad}");
        }
        // An IANA name wins over the fixed-offset reading: POSIX's Etc/GMT+8 is UTC-8.
        let posix = zone(Some("Etc/GMT+8")).unwrap();
        assert_eq!(posix.read_as, ReadAs::Iana);
        assert_eq!(
            utc("2026-09-15 09:00:00", "Etc/GMT+8").0,
            "2026-09-15T17:00:00Z"
        );
    }

    #[test]
    fn windows_ids_read_through_cldr() {
        let china = zone(Some("China Standard Time")).unwrap();
        assert_eq!(china.read_as, ReadAs::WindowsId);
        assert_eq!(china.iana, Some("Asia/Shanghai"));
        assert_eq!(china.name, "Asia/Shanghai");
        assert_eq!(zone(Some("china  standard TIME")).unwrap(), china);
        assert_eq!(
            zone(Some("Tokyo Standard Time")).unwrap().name,
            "Asia/Tokyo"
        );
        // Eastern Standard Time is New York's zone, DST included, whatever its name says.
        assert_eq!(
            utc("2026-07-01 12:00:00", "Eastern Standard Time"),
            ("2026-07-01T16:00:00Z".into(), Resolution::Exact)
        );
        assert_eq!(
            utc("2026-01-15 12:00:00", "Eastern Standard Time"),
            ("2026-01-15T17:00:00Z".into(), Resolution::Exact)
        );
        assert_eq!(
            utc("2026-03-08 02:30:00", "Eastern Standard Time"),
            ("2026-03-08T07:30:00Z".into(), Resolution::GapShifted)
        );
        assert!(zone(Some("China Standard")).is_err());
    }

    #[test]
    fn the_windows_table_is_sorted_and_names_real_zones() {
        let keys: Vec<String> = WINDOWS_ZONES
            .iter()
            .map(|(w, _)| w.to_ascii_lowercase())
            .collect();
        assert!(keys.windows(2).all(|p| p[0] < p[1]), "sorted, no repeats");
        assert!(WINDOWS_ZONES.len() > 130);
        for (windows, iana) in WINDOWS_ZONES {
            assert!(iana.parse::<Tz>().is_ok(), "{windows} → {iana}");
            assert_eq!(windows_zone(windows), Some(*iana), "{windows}");
        }
    }

    #[test]
    fn aliases_come_first_and_are_checked() {
        let mut aliases = ZoneAliases::default();
        aliases.insert("Asia/Beijing", "Asia/Shanghai").unwrap();
        aliases.insert("Mumbai", "UTC+05:30").unwrap();
        // An alias may override what a name would otherwise mean.
        aliases.insert("GMT+8", "Asia/Taipei").unwrap();
        let beijing = aliases.resolve(Some(" Asia/Beijing ")).unwrap();
        assert_eq!(beijing.read_as, ReadAs::Alias);
        assert_eq!(beijing.name, "Asia/Shanghai");
        assert_eq!(beijing.iana, Some("Asia/Shanghai"));
        let mumbai = aliases.resolve(Some("Mumbai")).unwrap();
        assert_eq!((mumbai.name, mumbai.iana), ("UTC+05:30", None));
        assert_eq!(aliases.resolve(Some("GMT+8")).unwrap().name, "Asia/Taipei");
        assert_eq!(aliases.resolve(Some("UTC+8")).unwrap().name, "UTC+08:00");
        assert!(aliases.resolve(Some("Mars/Olympus")).is_err());
        for (from, to) in [
            ("Asia/Beijing", "Asia/Peking"),
            ("Asia/Beijing", "China Standard Time"),
            ("Asia/Beijing", ""),
            ("", "Asia/Shanghai"),
        ] {
            let err = ZoneAliases::default().insert(from, to).unwrap_err();
            assert_eq!((err.from.as_str(), err.to.as_str()), (from, to));
        }
    }

    #[test]
    fn offsets_follow_the_zones_rules() {
        let ny = zone(Some("America/New_York")).unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(ny.offset_at(at("2026-07-01T16:00:00Z")), -4 * 3600);
        assert_eq!(ny.offset_at(at("2026-01-15T17:00:00Z")), -5 * 3600);
        let fixed = zone(Some("UTC+05:45")).unwrap();
        assert_eq!(
            fixed.offset_at(at("2026-01-15T17:00:00Z")),
            5 * 3600 + 45 * 60
        );
        assert_eq!(
            (fixed.read_as, ny.read_as),
            (ReadAs::FixedOffset, ReadAs::Iana)
        );
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
