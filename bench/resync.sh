#!/bin/bash
# Event-driven resync benchmark: `attendance-sync plan` (which reads the landed events as `sync`
# does, without querying) over 2,000,000 landed events, first without a resync cursor (every
# event new), then with one and a night's events: 10,000 new ones and 10 reverts of approvals a
# year old (their approvals found by a scan of every landed event). Timed by /usr/bin/time.
# Usage: bash bench/resync.sh [WORK_DIR] (default /tmp/resync-bench; ~10 GB free; python3).
# Build first: cargo build --release --workspace
set -u
B="$(cd "$(dirname "$0")/.." && pwd)/target/release"
W="${1:-/tmp/resync-bench}"
mkdir -p "$W" && cd "$W" || exit 1
rm -rf r2m night
T='wall %e user %U sys %S rss %M'
echo u00001 > users.txt
"$B/events-inbox" "$W/r2m" 2000000 400 2025-01-01 0 48 10 > gen2m.out 2>&1
/usr/bin/time -f "$T" "$B/attendance-sync" plan --out "$W/r2m" --users-file users.txt > plan-first.out 2> plan-first.err
# The night: 10,000 events landed over the last day, and 10 reverts of approvals of January 2025.
"$B/events-inbox" "$W/night" 10000 1 2026-11-29 5000000 0 10 > gennight.out 2>&1
python3 - "$W/night" <<'PY'
import hashlib, json, os, sys
from datetime import datetime, timezone
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
for i in range(10):
    code = "7%018d" % (1001 + i * 7919)
    eid = f"night-revert-{i}"
    body = {"event": {"app_id": "cli_bench", "instance_code": code, "operate_time": "1764460800",
                      "tenant_key": "t1", "type": "out_approval_revert"},
            "ts": "1764460800.5", "type": "event_callback", "uuid": eid}
    record = {"id": eid, "id_source": "uuid", "schema": "1", "event_type": "out_approval_revert",
              "transport": "webhook", "received_at": now, "receiver": "bench", "body": body}
    shard = os.path.join(sys.argv[1], "_events/inbox", hashlib.sha256(eid.encode()).hexdigest()[:2])
    os.makedirs(shard, exist_ok=True)
    with open(os.path.join(shard, eid + ".json"), "w") as f:
        json.dump(record, f, separators=(",", ":"), ensure_ascii=False)
PY
cp -a "$W/night/_events/." "$W/r2m/_events/"
# The last sync ran just before the night's first landing, and listed the inbox then.
CURSOR="{\"through\": \"$(date -u -d '-25 hours' +%Y-%m-%dT%H:%M:%SZ)\", \"listed\": \"$(date -u -d '-25 hours' +%Y-%m-%dT%H:%M:%SZ)\", \"run_id\": \"bench\"}"
echo "$CURSOR" > "$W/r2m/_events/resync-cursor.json"
/usr/bin/time -f "$T" "$B/attendance-sync" plan --out "$W/r2m" --users-file users.txt > plan-night.out 2> plan-night.err
# The same night without its reverts of old approvals (no scan of the history).
rm -f "$W"/r2m/_events/inbox/*/night-revert-*.json
/usr/bin/time -f "$T" "$B/attendance-sync" plan --out "$W/r2m" --users-file users.txt > plan-night-plain.out 2> plan-night-plain.err
for f in plan-first plan-night plan-night-plain; do echo "$f: $(grep wall "$f.err")"; grep -E "^  events" "$f.out"; done
