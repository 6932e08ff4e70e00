#!/usr/bin/env bash
# Runs every figure of BENCHMARKS.md in one go and prints one table.
#
#   bash bench/run.sh [WORKDIR]      (default /tmp/attendance-bench; needs ~3 GB free)
#
# Offline: a corpus of recorded answers (20,000 users x 250 days, >= 1,000,000 rows) through
# `attendance-sync replay` and through the Python baseline (bench/python_baseline.py), outputs
# compared. Online: 5,000 users x 90 days against the simulated tenant at 50 requests/s.
# Memory: peak RSS for 1, 30, 365 and 730 days of 20,000 users with the rate limit lifted.
# Every figure is the median of REPS runs (default 3). Each run writes to a new directory and
# nothing is deleted between timed runs: on ext4 without a journal (these machines), creating
# files soon after deleting many costs the kernel a scan past every recently freed inode.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/attendance-bench}
REPS=${REPS:-3}
rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --release --locked -q
BIN=$PWD/target/release/attendance-sync
export FEISHU_APP_ID=cli_sim_app FEISHU_APP_SECRET=sim-secret-never-logged
if ! python3 -c "import pyarrow" 2>/dev/null; then
  python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" -q install pyarrow
  PY="$WORK/venv/bin/python"
else
  PY=python3
fi

# A simulated tenant in its own process, so that its CPU and memory are not counted.
start_tenant() { # users rate_limit -> sets URL, TENANT_PID
  "$BIN" simulate --users "$1" --tenant-rate-limit "$2" --users-out "$WORK/users-$1.txt" > "$WORK/sim.log" 2>&1 &
  TENANT_PID=$!
  for _ in $(seq 100); do grep -q "simulated tenant on" "$WORK/sim.log" 2>/dev/null && break; sleep 0.1; done
  URL=$(head -1 "$WORK/sim.log" | awk '{print $NF}')
}
stop_tenant() { kill "$TENANT_PID" 2>/dev/null || true; wait "$TENANT_PID" 2>/dev/null || true; }
# rows a run wrote, from the summary it printed to $WORK/out.txt
rows_written() { grep -E '^  (outs|leaves|overtime_works|trips) ' "$WORK/out.txt" | awk '{s+=$2} END {print s}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# runs a command under /usr/bin/time; prints "wall_s user_s sys_s maxrss_kb"
timed() {
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.txt" "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"
  cat "$WORK/time.txt"
}
TODAY=$(TZ=Asia/Shanghai date +%F)
days_ago() { TZ=Asia/Shanghai date -d "$TODAY - $1 days" +%F; }

echo "== recording the offline corpus" >&2
start_tenant 20000 0
timed "$BIN" backfill --from "$(days_ago 249)" --to "$TODAY" --users-file "$WORK/users-20000.txt" \
  --out "$WORK/recorded" --base-url "$URL" --rate-limit 100000 --quiet --log warn \
  --record-responses "$WORK/corpus" > /dev/null
stop_tenant
CORPUS_MB=$(du -sm "$WORK/corpus" | cut -f1)

echo "== offline: attendance-sync replay x$REPS" >&2
: > "$WORK/ours.txt"
for i in $(seq "$REPS"); do
  read -r wall user sys rss < <(timed "$BIN" replay "$WORK/corpus" --out "$WORK/ours-$i" --log warn)
  rows=$(rows_written)
  echo "$wall $user $sys $rss $rows" >> "$WORK/ours.txt"
done
OURS_WALL=$(cut -d' ' -f1 "$WORK/ours.txt" | median)
OURS_CPU=$(awk '{print $2+$3}' "$WORK/ours.txt" | median)
OURS_RSS=$(cut -d' ' -f4 "$WORK/ours.txt" | median)
ROWS=$(head -1 "$WORK/ours.txt" | cut -d' ' -f5)

echo "== offline: Python baseline x$REPS" >&2
: > "$WORK/py.txt"
for i in $(seq "$REPS"); do
  read -r wall user sys rss < <(timed "$PY" bench/python_baseline.py "$WORK/corpus" "$WORK/py-$i")
  echo "$wall $user $sys $rss" >> "$WORK/py.txt"
done
PY_WALL=$(cut -d' ' -f1 "$WORK/py.txt" | median)
PY_RSS=$(cut -d' ' -f4 "$WORK/py.txt" | median)
SAME=$("$PY" bench/compare.py "$WORK/ours-1" "$WORK/py-1" > "$WORK/compare.json" && echo yes || echo NO)

echo "== online: 5,000 users x 90 days at 50/s x$REPS" >&2
start_tenant 5000 50
: > "$WORK/online.txt"
for i in $(seq "$REPS"); do
  # A new output root each time: a fresh run, and no deleted files for the next to step over.
  read -r _ user sys _ < <(timed "$BIN" backfill --from "$(days_ago 89)" --to "$TODAY" \
    --users-file "$WORK/users-5000.txt" --out "$WORK/online-$i" --base-url "$URL" --quiet --log warn)
  line=$(grep -E '^  requests' "$WORK/out.txt")
  echo "$(echo "$user $sys" | awk '{print $1+$2}') $(echo "$line" | awk '{print $2}') $(echo "$line" | sed -E 's/.* at ([0-9.]+)\/s.*/\1/') $(rows_written)" >> "$WORK/online.txt"
done
ON_CPU=$(cut -d' ' -f1 "$WORK/online.txt" | median)
ON_Q=$(head -1 "$WORK/online.txt" | cut -d' ' -f2)
ON_RATE=$(cut -d' ' -f3 "$WORK/online.txt" | median)
ON_ROWS=$(head -1 "$WORK/online.txt" | cut -d' ' -f4)
# Where a request's CPU goes: the same answers again, recorded (a second run, so that recording
# costs the first nothing) and replayed without the network. Online minus replay is what fetching
# costs (HTTP, pacing, token, waiting); the replay is what turning ~300 rows into files costs.
"$BIN" backfill --from "$(days_ago 89)" --to "$TODAY" --users-file "$WORK/users-5000.txt" \
  --out "$WORK/online-rec" --base-url "$URL" --quiet --log warn --record-responses "$WORK/online-corpus" > /dev/null
stop_tenant
: > "$WORK/online-replay.txt"
for i in $(seq "$REPS"); do
  read -r _ user sys _ < <(timed "$BIN" replay "$WORK/online-corpus" --out "$WORK/online-replayed-$i" --log warn)
  echo "$user $sys" | awk '{print $1+$2}' >> "$WORK/online-replay.txt"
done
ON_REPLAY_CPU=$(median < "$WORK/online-replay.txt")

echo "== memory: 1, 30, 365, 730 days of 20,000 users, no rate limit" >&2
start_tenant 20000 0
declare -A MEM
for days in 1 30 365 730; do
  : > "$WORK/mem.txt"
  for i in $(seq "$REPS"); do
    read -r _ _ _ rss < <(timed "$BIN" backfill --from "$(days_ago $((days - 1)))" --to "$TODAY" \
      --users-file "$WORK/users-20000.txt" --out "$WORK/mem$days-$i" --base-url "$URL" \
      --rate-limit 100000 --quiet --log warn)
    echo "$rss" >> "$WORK/mem.txt"
  done
  MEM[$days]=$(median < "$WORK/mem.txt")
done
stop_tenant

awk -v rows="$ROWS" -v mb="$CORPUS_MB" -v ow="$OURS_WALL" -v oc="$OURS_CPU" -v orss="$OURS_RSS" \
    -v pw="$PY_WALL" -v prss="$PY_RSS" -v same="$SAME" -v onq="$ON_Q" -v onrate="$ON_RATE" \
    -v oncpu="$ON_CPU" -v onrows="$ON_ROWS" -v onrep="$ON_REPLAY_CPU" -v m1="${MEM[1]}" -v m30="${MEM[30]}" -v m365="${MEM[365]}" -v m730="${MEM[730]}" 'BEGIN {
  printf "| figure | value |\n| --- | --- |\n"
  printf "| offline corpus | %d rows, %d MB of recorded JSON |\n", rows, mb
  printf "| offline, attendance-sync (median of runs) | %.2f s wall, %.0f rows/s; %.2f s CPU, %.0f rows per CPU-second; peak %.0f MB |\n", ow, rows/ow, oc, rows/oc, orss/1024
  printf "| offline, Python baseline (median of runs) | %.2f s wall, %.0f rows/s; peak %.0f MB |\n", pw, rows/pw, prss/1024
  printf "| offline ratio | %.1fx the Python baseline rows/s |\n", pw/ow
  printf "| outputs equal (same rows, same UTC instants; see compare.json) | %s |\n", same
  printf "| online, 5,000 users x 90 days (median of runs) | %d queries at %s/s (%.0f%% of 50/s); CPU %.2f ms per request (%.0f rows each) |\n", onq, onrate, onrate*2, oncpu*1000/onq, onrows/onq
  printf "| online CPU per request, split (replay of the same answers, median of runs) | fetching %.2f ms, rows to files %.2f ms |\n", (oncpu-onrep)*1000/onq, onrep*1000/onq
  printf "| peak RSS, 20,000 users (median of runs) | 1 day %.0f MB, 30 days %.0f MB, 365 days %.0f MB, 730 days %.0f MB (365/1 = %.2fx) |\n", m1/1024, m30/1024, m365/1024, m730/1024, m365/m1
}'
