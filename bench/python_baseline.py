"""The Python way, for comparison: a recorded corpus of user_approvals/query answers to the same
four date-partitioned Parquet tables, written as a competent engineer would with the standard
library's json and zoneinfo and pyarrow's write_dataset.

    python3 bench/python_baseline.py CORPUS_DIR OUT_DIR

CORPUS_DIR is what `attendance-sync ... --record-responses CORPUS_DIR` wrote. Times are read in the
record's zone with fold=0 (the earlier instant when a time occurs twice, the offset before the gap
when it does not occur): the same rule as attendance-sync. A zone name is an IANA name, a fixed
offset (UTC+08:00, GMT+8, +0800, ...) or a Windows zone ID (CLDR's table, read from
crates/core/src/windows_zones.rs), as attendance-sync reads them. Records that cannot be placed
(unknown zone, malformed time) are counted and left out, as attendance-sync keeps them aside.
"""

import json
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.dataset as ds

UTC = timezone.utc
TS = pa.timestamp("us", tz="UTC")
STRS = pa.list_(pa.field("element", pa.string()))
INTS = pa.list_(pa.field("element", pa.int32()))
REGION = pa.struct([("region_level", pa.string()), ("region_id", pa.string())])

HEAD = [
    ("user_id", pa.string()), ("approval_id", pa.string()), ("status", pa.int32()),
    ("start_time", TS), ("end_time", TS), ("start_time_local", pa.string()),
    ("end_time_local", pa.string()), ("time_zone", pa.string()), ("time_zone_iana", pa.string()),
    ("utc_offset_seconds", pa.int32()),
]
ABSENCE = [
    ("uniq_id", pa.string()), ("unit", pa.int32()), ("interval_seconds", pa.int64()),
    ("name", pa.string()), ("name_ch", pa.string()), ("name_en", pa.string()),
    ("name_ja", pa.string()), ("default_locale", pa.string()), ("reason", pa.string()),
    ("approve_pass_time", TS), ("approve_apply_time", TS), ("idempotent_id", pa.string()),
]
PROCESS = [("correct_process_id", STRS), ("cancel_process_id", STRS), ("process_id", STRS)]
SCHEMAS = {
    "outs": HEAD + ABSENCE + PROCESS,
    "leaves": HEAD + ABSENCE,
    "overtime_works": HEAD + [
        ("duration", pa.float64()), ("unit", pa.int32()), ("category", pa.int32()),
        ("type", pa.int32()), ("reason", pa.string()), ("idempotent_id", pa.string()),
    ] + PROCESS,
    "trips": HEAD + [
        ("reason", pa.string()), ("approve_pass_time", TS), ("approve_apply_time", TS),
        ("departure_region_level", pa.string()), ("departure_region_id", pa.string()),
        ("destinations", pa.list_(pa.field("element", REGION))), ("transportation", INTS),
        ("trip_type", pa.int32()), ("remarks", pa.string()), ("idempotent_id", pa.string()),
    ] + PROCESS,
}


class Unplaceable(Exception):
    pass


WINDOWS = {
    windows.lower(): iana
    for windows, iana in re.findall(
        r'\("([^"]+)", "([^"]+)"\)',
        (Path(__file__).parent.parent / "crates/core/src/windows_zones.rs").read_text(),
    )
}
FIXED = re.compile(r"(?i:utc|gmt)?([+\-\u2212])(\d{1,2})(?::(\d\d))?$|(?i:utc|gmt)?([+\-\u2212])(\d\d)(\d\d)$")


@lru_cache(maxsize=None)
def zone(name):
    """(tzinfo, the name as sent, the IANA name or None for a fixed offset)."""
    if not name or not name.strip():
        return UTC, "UTC", "UTC"
    key = name.strip()
    try:
        return ZoneInfo(key), name, key
    except Exception:
        pass
    m = FIXED.fullmatch(key)
    if m:
        sign, hours, minutes = (m.group(1), m.group(2), m.group(3)) if m.group(1) else m.group(4, 5, 6)
        seconds = int(hours) * 3600 + int(minutes or 0) * 60
        if int(minutes or 0) < 60 and seconds <= 18 * 3600:
            offset = -seconds if sign in "-\u2212" else seconds
            return timezone(timedelta(seconds=offset)), name, None
    iana = WINDOWS.get(" ".join(key.split()).lower())
    if iana:
        return ZoneInfo(iana), name, iana
    raise Unplaceable(f"unknown time zone {name!r}")


def to_utc(text, tz):
    if not text:
        return None
    if len(text) != 19:
        raise Unplaceable(f"malformed time {text!r}")
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError as e:
        raise Unplaceable(f"malformed time {text!r}") from e
    return local.replace(tzinfo=tz).astimezone(UTC)


def name_of(names, default):
    for loc in (default, "ch", "en", "ja"):
        if loc and names.get(loc):
            return names[loc]
    return None


def row(table, rec, user, status, tz, tz_name, iana, midnight):
    start, end = to_utc(rec.get("start_time"), tz), to_utc(rec.get("end_time"), tz)
    at = start or end or midnight
    r = {
        "user_id": user, "approval_id": rec.get("approval_id"), "status": status,
        "start_time": start, "end_time": end,
        "start_time_local": rec.get("start_time"), "end_time_local": rec.get("end_time"),
        "time_zone": tz_name, "time_zone_iana": iana,
        "utc_offset_seconds": int(at.astimezone(tz).utcoffset().total_seconds()),
        "reason": rec.get("reason"), "idempotent_id": rec.get("idempotent_id"),
    }
    if table in ("outs", "leaves"):
        names = rec.get("i18n_names") or {}
        r.update(
            uniq_id=rec.get("uniq_id"), unit=rec.get("unit"), interval_seconds=rec.get("interval"),
            name=name_of(names, rec.get("default_locale")), name_ch=names.get("ch"),
            name_en=names.get("en"), name_ja=names.get("ja"), default_locale=rec.get("default_locale"),
            approve_pass_time=to_utc(rec.get("approve_pass_time"), tz),
            approve_apply_time=to_utc(rec.get("approve_apply_time"), tz),
        )
    elif table == "overtime_works":
        r.update(duration=rec.get("duration"), unit=rec.get("unit"), category=rec.get("category"),
                 type=rec.get("type"))
    else:
        dep = rec.get("departure") or {}
        r.update(
            approve_pass_time=to_utc(rec.get("approve_pass_time"), tz),
            approve_apply_time=to_utc(rec.get("approve_apply_time"), tz),
            departure_region_level=dep.get("region_level"), departure_region_id=dep.get("region_id"),
            destinations=rec.get("destinations"), transportation=rec.get("transportation"),
            trip_type=rec.get("trip_type"), remarks=rec.get("remarks"),
        )
    if table != "leaves":
        for k in ("correct_process_id", "cancel_process_id", "process_id"):
            r[k] = rec.get(k)
    return r


def main(corpus, out):
    started = time.perf_counter()
    rows = {t: [] for t in SCHEMAS}
    rejected = 0
    with open(Path(corpus) / "responses.ndjson", encoding="utf-8") as f:
        for line in f:
            answer = json.loads(line)
            if "response" not in answer:
                continue  # a refused batch, answered again by its halves
            status = int(answer["key"].split("|")[3])
            for ua in answer["response"].get("user_approvals") or []:
                day = ua["date"]
                date = f"{day[:4]}-{day[4:6]}-{day[6:]}"
                midnight = datetime(int(day[:4]), int(day[4:6]), int(day[6:]), tzinfo=UTC)
                try:
                    tz, tz_name, iana = zone(ua.get("time_zone"))
                except Unplaceable:
                    rejected += sum(len(ua.get(t) or []) for t in SCHEMAS)
                    continue
                for table in SCHEMAS:
                    for rec in ua.get(table) or []:
                        try:
                            r = row(table, rec, ua["user_id"], status, tz, tz_name, iana, midnight)
                        except Unplaceable:
                            rejected += 1
                            continue
                        r["date"] = date
                        rows[table].append(r)
    total = 0
    for table, fields in SCHEMAS.items():
        schema = pa.schema(fields + [("date", pa.string())])
        data = pa.Table.from_pylist(rows[table], schema=schema)
        total += data.num_rows
        ds.write_dataset(
            data, Path(out) / table, format="parquet",
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            existing_data_behavior="delete_matching",
            file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        )
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": total, "rejected": rejected, "seconds": round(seconds, 3),
                      "rows_per_second": round(total / seconds)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
