"""Checks that two output roots hold the same rows: same (user, approval, status, date) and the
same UTC instants, table by table. Exit 1 and a diff summary when they differ.

    python3 bench/compare.py OURS THEIRS
"""

import json
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

TABLES = ["outs", "leaves", "overtime_works", "trips"]
KEY = ["user_id", "approval_id", "status", "date", "start_time_local", "end_time_local"]
COMPARED = KEY + ["start_time", "end_time", "time_zone", "time_zone_iana", "utc_offset_seconds", "reason"]


def load(root, table):
    files = [str(p) for p in Path(root, table).glob("date=*/*.parquet") if not p.name.startswith(".")]
    data = ds.dataset(files, format="parquet", partitioning="hive",
                      partition_base_dir=str(Path(root, table))).to_table(columns=COMPARED[:3] + COMPARED[4:] + ["date"])
    data = data.select(COMPARED)
    data = data.set_column(data.schema.get_field_index("date"), "date", pc.cast(data["date"], "string"))
    return data.sort_by([(k, "ascending") for k in KEY])


def main(ours, theirs):
    report, same = {}, True
    for table in TABLES:
        a, b = load(ours, table), load(theirs, table)
        equal = a.num_rows == b.num_rows and all(a[c].equals(b[c]) for c in COMPARED)
        report[table] = {"ours": a.num_rows, "theirs": b.num_rows, "equal": equal}
        same &= equal
    print(json.dumps(report))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
