#!/bin/bash
# Third-party approvals benchmark: `external push` against the simulated tenant at the
# platform's limits, 50 requests a second and 1000 a minute (tools/bench-events
# `external-push`), and `external load` of
# 10,000 and 200,000 instances pinned to one core, timed by /usr/bin/time.
# Usage: bash bench/external.sh [WORK_DIR] (default /tmp/external-bench; needs ~2 GB free).
# Build first: cargo build --release --workspace
set -u
B="$(cd "$(dirname "$0")/.." && pwd)/target/release"
W="${1:-/tmp/external-bench}"
mkdir -p "$W" && cd "$W" || exit 1
T='wall %e user %U sys %S rss %M'
"$B/external-instances" i1k.ndjson 1000 > gen1k.out
"$B/external-instances" i2k.ndjson 2000 > gen2k.out
"$B/external-instances" i10k.ndjson 10000 > gen10k.out
"$B/external-instances" i200k.ndjson 200000 > gen200k.out
# The same 200,000 over 20 times the dates (a date as busy as in the 10,000 file).
"$B/external-instances" i200k-spread.ndjson 200000 42 --spread > gen200k-spread.out
cat gen1k.out gen2k.out gen10k.out gen200k.out gen200k-spread.out
# 1,000 creates (a minute's allowance) at 50 a second (--force: no check first), then the same
# with the check first; then 2,000, past the minute's allowance.
rm -rf push-out && "$B/external-push" i1k.ndjson "$W/push-out" > push1k.out && cat push1k.out
rm -rf push-out && "$B/external-push" i1k.ndjson "$W/push-out" --check-first > push1k-check.out && cat push1k-check.out
rm -rf push-out && "$B/external-push" i2k.ndjson "$W/push-out" > push2k.out && cat push2k.out
for n in 10k 200k 200k-spread; do
  for i in 1 2 3; do
    rm -rf "o$n"
    /usr/bin/time -f "$T" taskset -c 0 "$B/attendance-sync" external load --instances "i$n.ndjson" \
      --out "o$n" --spill-dir "$W" > "l$n-$i.out" 2> "l$n-$i.err"
    echo "load $n run $i: $(grep wall "l$n-$i.err")"
  done
  # A rerun over the tables it wrote (every partition read, merged and replaced).
  /usr/bin/time -f "$T" taskset -c 0 "$B/attendance-sync" external load --instances "i$n.ndjson" \
    --out "o$n" --spill-dir "$W" > "l$n-again.out" 2> "l$n-again.err"
  echo "load $n again: $(grep wall "l$n-again.err")"
done
rm -rf o10k o200k push-out
