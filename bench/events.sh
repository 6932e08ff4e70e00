#!/usr/bin/env bash
# The event receiver's figures of BENCHMARKS.md: events per second one `events serve` process
# sustains on this machine with every ack after a durable write, and the ack latency, on a
# local root and on an S3-protocol test server (s3s-fs, its conditional writes atomic).
#
#   bash bench/events.sh [WORKDIR]     (default /tmp/attendance-events-bench)
#
# The load generator (tools/bench-events, `events-load`) prepares N signed, encrypted,
# distinct events, then keeps C deliveries in flight and times each from request to answer.
# The receiver, the generator and the S3 server share the machine's 2 cores. Every figure is
# the median of REPS runs (default 3); each run lands into a fresh prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/attendance-events-bench}
REPS=${REPS:-3}
N_LOCAL=${N_LOCAL:-20000}
N_S3=${N_S3:-10000}
rm -rf "$WORK" && mkdir -p "$WORK/s3/lake"
cargo build --release --locked -q -p attendance-sync -p attendance-bench-events
BIN=$PWD/target/release/attendance-sync
LOAD=$PWD/target/release/events-load
S3=$PWD/target/release/s3-test-server
export FEISHU_VERIFICATION_TOKEN=bench-token FEISHU_ENCRYPT_KEY=bench-key
export AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true

"$S3" "$WORK/s3" > "$WORK/s3.log" 2>&1 &
S3_PID=$!
for _ in $(seq 100); do [ -s "$WORK/s3.log" ] && break; sleep 0.1; done
export AWS_ENDPOINT_URL=$(head -1 "$WORK/s3.log")
trap 'kill $S3_PID 2>/dev/null || true' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

# root_kind out n concurrency -> one line of medians
measure() {
  local kind=$1 out=$2 n=$3 c=$4 rates=() p50s=() p99s=() rss=() non200=0
  for rep in $(seq "$REPS"); do
    "$BIN" --log warn events serve --listen 127.0.0.1:0 --out "$out/rep$rep-c$c" > "$WORK/serve.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
    local url; url=$(head -1 "$WORK/serve.log" | awk '{print $NF}')
    local line; line=$("$LOAD" "$url" "$n" "$c" bench-key bench-token "r$rep$kind$c")
    rss+=("$(awk '/VmHWM/ {print $2}' /proc/$pid/status)")
    kill -TERM "$pid"; wait "$pid" || true
    grep -q "stopped: $n events landed" "$WORK/serve.log" || { echo "not every event landed:"; cat "$WORK/serve.log"; exit 1; }
    rates+=("$(echo "$line" | field per_sec)")
    p50s+=("$(echo "$line" | field p50_ms)")
    p99s+=("$(echo "$line" | field p99_ms)")
    non200=$((non200 + $(echo "$line" | field non_200)))
  done
  printf '| %-6s | %6d | %3d | %8.0f | %6.1f | %6.1f | %5.0f | %d |\n' "$kind" "$n" "$c" \
    "$(printf '%s\n' "${rates[@]}" | median)" "$(printf '%s\n' "${p50s[@]}" | median)" \
    "$(printf '%s\n' "${p99s[@]}" | median)" "$(( $(printf '%s\n' "${rss[@]}" | median) / 1024 ))" "$non200"
}

echo "| root   | events | in flight | events/s | ack p50 ms | ack p99 ms | receiver peak RSS MiB | answers not 200 |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for c in 16 64; do measure local "$WORK/local" "$N_LOCAL" "$c"; done
for c in 16 64; do measure s3 "s3://lake/events" "$N_S3" "$c"; done
