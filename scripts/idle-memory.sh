#!/usr/bin/env bash
# Memory per idle agent connection, and where it goes (docs/PERFORMANCE.md, "Memory for 10,000
# idle connections"):
#
#   scripts/idle-memory.sh <relay binary> [connections, default 2000] [relay-loadgen idle options…]
#   scripts/idle-memory.sh <relay binary> 1000 --segment-size mixed --segments-per-call 50
#
# Starts relay-mock-kafka and the relay on loopback, holds N connections that each made one
# call (`relay-loadgen idle`: by default one 1 KiB segment; the second form is a burst before
# going quiet), and prints the relay's RSS growth per connection. If heaptrack is
# installed (Debian's heaptrack package), it repeats the run under heaptrack and prints the heap
# per connection at the peak by the code that allocated it (the first frame above the
# allocator, with its two callers). Needs the release products of the Benchmarks package
# (scripts/benchmark.sh builds them).
set -euo pipefail

cd "$(dirname "$0")/.."
[[ $# -ge 1 && -x $1 ]] || {
  echo "usage: $0 <relay binary> [connections] [relay-loadgen idle options…]" >&2
  exit 2
}
RELAY_BIN=$(readlink -f "$1")
CONNECTIONS=${2:-2000}
IDLE_OPTIONS=("${@:3}")
WORK=$(mktemp -d /tmp/relay-idle-memory.XXXXXX)
die() { printf 'idle-memory.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/loopback-processes.sh
source scripts/loopback-processes.sh
require_benchmark_products

start_mock_kafka "$BIN" 30
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
# The relay's own process: under heaptrack, RELAY_PID is heaptrack's shell.
relay_process() {
  local pid
  for pid in $(pgrep -f -- "$RELAY_BIN"); do
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$RELAY_BIN" ]] && { echo "$pid"; return; }
  done
  die "the relay process is gone"
}
hold_idle_connections() {  # sets IDLE_PID once every connection has made its call
  "$BIN/relay-loadgen" idle --target "$GRPC" --connections "$CONNECTIONS" --hold-seconds 60 \
    "${IDLE_OPTIONS[@]}" >"$WORK/idle.out" 2>>"$WORK/loadgen.log" &
  IDLE_PID=$!
  STARTED_PIDS+=("$IDLE_PID")
  wait_for_line "$WORK/idle.out" '^IDLE_READY=' 120
  grep -q "failed=0" "$WORK/idle.out" || die "some idle calls failed: $(head -n 1 "$WORK/idle.out")"
  sleep 3
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

start_relay 30 "$RELAY_BIN"
sleep 2
BEFORE=$(rss_kib "$RELAY_PID")
hold_idle_connections
AFTER=$(rss_kib "$RELAY_PID")
stop "$IDLE_PID"
stop "$RELAY_PID"
echo "relay $RELAY_BIN, $CONNECTIONS idle connections ${IDLE_OPTIONS[*]}"
awk -v b="$BEFORE" -v a="$AFTER" -v n="$CONNECTIONS" 'BEGIN {
  printf "  RSS %.1f MiB -> %.1f MiB: %.1f KiB per connection\n", b / 1024, a / 1024, (a - b) / n }'

command -v heaptrack >/dev/null || { echo "  (heaptrack not installed: no breakdown)"; exit 0; }
rm -rf "$WORK/queue"
start_relay 60 heaptrack -o "$WORK/heap" "$RELAY_BIN"
hold_idle_connections
kill -INT "$(relay_process)"
wait "$RELAY_PID" 2>/dev/null || true
stop "$IDLE_PID"
heaptrack_print -f "$WORK"/heap.*zst --flamegraph-cost-type peak -F "$WORK/peak.stacks" >/dev/null
swift demangle --simplified <"$WORK/peak.stacks" | python3 -c '
import collections, re, sys
connections = int(sys.argv[1])
allocator = re.compile(r"(swift_slowAlloc|swift_allocObject|malloc|calloc|realloc|posix_memalign"
                       r"|.*ContiguousArray|.*_ContiguousArrayBuffer|.*ByteBuffer\._Storage|.*CircularBuffer\.init)")
sites = collections.Counter()
for line in sys.stdin:
    stack, _, cost = line.rstrip("\n").rpartition(" ")
    frames = [frame.split("(")[0].strip() for frame in stack.split(";") if frame.strip()]
    top = len(frames) - 1
    while top > 0 and allocator.match(frames[top]):
        top -= 1
    sites[" < ".join(reversed(frames[max(0, top - 2):top + 1]))] += int(cost)
total = sum(sites.values())
print(f"  heap at the peak: {total / connections / 1024:.1f} KiB per connection; by allocating code:")
for site, cost in sites.most_common(15):
    print(f"  {cost / connections / 1024:7.2f} KiB  {site[:160]}")
' "$CONNECTIONS"
