//! Where a table's partitions and their part files are in the output root:
//! `<table>/date=YYYY-MM-DD/part-NNNNN.parquet`. Pure path arithmetic.
//!
//! Names starting with `_` or `.` are the job's own; warehouses skip them.

use chrono::NaiveDate;

/// `<table>/date=YYYY-MM-DD`: the directory of one `(table, date)` partition (also used with
/// `_rejects` for the records kept aside).
pub fn partition_dir(table: &str, date: NaiveDate) -> String {
    format!("{table}/date={}", date.format("%Y-%m-%d"))
}

/// The path of part `index` of a partition.
pub fn part_path(table: &str, date: NaiveDate, index: usize) -> String {
    format!("{}/part-{index:05}.parquet", partition_dir(table, date))
}

/// `<table>/date=YYYY-MM-DD/part-NNNNN.parquet` → (date, part index); `None` for any other path.
pub fn parse_part(rel: &str) -> Option<(NaiveDate, usize)> {
    let mut parts = rel.split('/');
    let _table = parts.next()?;
    let date = parts.next()?.strip_prefix("date=")?.parse().ok()?;
    let index = parts
        .next()?
        .strip_prefix("part-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()?;
    parts.next().is_none().then_some((date, index))
}

/// The date of a path under a partitioned directory (`<dir>/date=YYYY-MM-DD/…`).
pub fn date_of(rel: &str) -> Option<NaiveDate> {
    rel.split('/')
        .nth(1)
        .and_then(|d| d.strip_prefix("date="))
        .and_then(|d| d.parse::<NaiveDate>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_paths_parse_and_others_do_not() {
        let d = NaiveDate::from_ymd_opt(2026, 9, 15).unwrap();
        assert_eq!(
            part_path("outs", d, 3),
            "outs/date=2026-09-15/part-00003.parquet"
        );
        assert_eq!(
            parse_part("outs/date=2026-09-15/part-00003.parquet"),
            Some((d, 3))
        );
        assert_eq!(parse_part("outs/date=2026-09-15/notes.txt"), None);
        assert_eq!(parse_part("outs/date=bad/part-00000.parquet"), None);
        assert_eq!(
            parse_part("outs/date=2026-09-15/x/part-00000.parquet"),
            None
        );
        assert_eq!(date_of("_rejects/date=2026-09-15/rejects.ndjson"), Some(d));
        assert_eq!(date_of("_rejects/rejects.ndjson"), None);
    }
}
