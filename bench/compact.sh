#!/bin/bash
# Events compaction benchmark: corpora of landed events written straight into an inbox and its
# journals by `events-inbox` (tools/bench-events), then `attendance-sync events compact` timed by
# /usr/bin/time. Usage: bash bench/compact.sh [WORK_DIR] (default /tmp/compact-bench; needs
# ~15 GB free). JOURNAL_EVENTS (default 10, about what a receiver groups under load) sets the
# deliveries a journal holds; the 100,000 corpus is also compacted with none (0: receivers that
# kept no journal, every event read from its own object). Build first: cargo build --release --workspace
set -u
B="$(cd "$(dirname "$0")/.." && pwd)/target/release"
W="${1:-/tmp/compact-bench}"
J="${JOURNAL_EVENTS:-10}"
mkdir -p "$W" && cd "$W" || exit 1
rm -rf r2m r2m-more r100k r100k-? r100k-inbox-? r100k.clean r100k.inbox
T='wall %e user %U sys %S rss %M minflt %R'
# 100,000 landed over 20 days, compacted from scratch, three times; and with no journals.
"$B/events-inbox" "$W/r100k.clean" 100000 20 2025-01-01 0 48 "$J" > gen100k.out 2>&1
"$B/events-inbox" "$W/r100k.inbox" 100000 20 2025-01-01 0 48 0 > gen100k-inbox.out 2>&1
# The floor: listing the inbox and reading the journals (or every object), and with `parse`
# each body as JSON, nothing else.
/usr/bin/time -f "$T" "$B/inbox-read" "$W/r100k.clean" journals > floor-journals.out 2> floor-journals.err
/usr/bin/time -f "$T" "$B/inbox-read" "$W/r100k.clean" journals parse > floor-journals-parse.out 2> floor-journals-parse.err
/usr/bin/time -f "$T" "$B/inbox-read" "$W/r100k.inbox" > floor-read.out 2> floor-read.err
/usr/bin/time -f "$T" "$B/inbox-read" "$W/r100k.inbox" parse > floor-parse.out 2> floor-parse.err
# Each run on its own copy, all made first: ext4 skips the inodes freed in the last minutes when
# it makes a file, so a run right after deleting a copy paid ~15% more in the kernel.
for i in 1 2 3; do cp -a r100k.clean "r100k-$i"; cp -a r100k.inbox "r100k-inbox-$i"; done
for i in 1 2 3; do
  /usr/bin/time -f "$T" "$B/attendance-sync" events compact --out "$W/r100k-$i" > "c100k-$i.out" 2> "c100k-$i.err"
  /usr/bin/time -f "$T" "$B/attendance-sync" events compact --out "$W/r100k-inbox-$i" > "c100k-inbox-$i.out" 2> "c100k-inbox-$i.err"
done
rm -rf r100k-? r100k-inbox-? r100k.clean r100k.inbox
# 2,000,000 landed over 400 days (ending 48 h ago), compacted from scratch.
"$B/events-inbox" "$W/r2m" 2000000 400 2025-01-01 0 48 "$J" > gen2m.out 2>&1
/usr/bin/time -f "$T" "$B/attendance-sync" events compact --out "$W/r2m" > c2m.out 2> c2m.err
# 100,000 more, landed over the last day: a run on top of the 2,000,000.
"$B/events-inbox" "$W/r2m-more" 100000 1 2026-02-05 5000000 0 "$J" > genmore.out 2>&1
cp -a "$W/r2m-more/_events/." "$W/r2m/_events/"
/usr/bin/time -f "$T" "$B/attendance-sync" events compact --out "$W/r2m" > c2m-inc.out 2> c2m-inc.err
# Nothing new.
/usr/bin/time -f "$T" "$B/attendance-sync" events compact --out "$W/r2m" > c2m-idle.out 2> c2m-idle.err
for f in floor-journals floor-journals-parse floor-read floor-parse c100k-1 c100k-2 c100k-3 c100k-inbox-1 c100k-inbox-2 c100k-inbox-3 c2m c2m-inc c2m-idle; do echo "$f: $(grep wall "$f.err")"; done
