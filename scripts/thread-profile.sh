#!/usr/bin/env bash
# CPU time and sleeps per segment, by relay thread, over one load (docs/PERFORMANCE.md, "Where
# the time goes at agent rates"). Alternating two builds on the same load is how a change of
# 20 % shows through this machine's noise:
#
#   scripts/thread-profile.sh <relay binary> <relay-loadgen load options…>
#   scripts/thread-profile.sh .build-bench/release/skywalking-kafka-relay \
#     --connections 50 --long-lived --rate 200 --segment-size 1024 --duration 8
#
# Starts relay-mock-kafka and the relay (fsync from THREAD_PROFILE_FSYNC, default interval) on
# loopback in a temporary directory, runs `relay-loadgen load --kafka …` once, and sums each
# thread's run time (/proc/<pid>/task/<tid>/schedstat) and voluntary context switches around it.
# Needs the release products of the Benchmarks package (scripts/benchmark.sh builds them).
set -euo pipefail

cd "$(dirname "$0")/.."
[[ $# -ge 1 && -x $1 ]] || { echo "usage: $0 <relay binary> <relay-loadgen load options…>" >&2; exit 2; }
RELAY_BIN=$1
shift
WORK=$(mktemp -d /tmp/relay-thread-profile.XXXXXX)
die() { printf 'thread-profile.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/loopback-processes.sh
source scripts/loopback-processes.sh
require_benchmark_products

start_mock_kafka "$BIN" 30
RELAY_FSYNC=${THREAD_PROFILE_FSYNC:-interval} start_relay 30 "$RELAY_BIN"
sleep 1

snapshot() {  # thread id, name, run time ns, voluntary switches; one line per thread
  local task
  for task in /proc/"$RELAY_PID"/task/*; do
    printf '%s %s %s %s\n' "${task##*/}" "$(tr ' ' _ <"$task/comm")" "$(cut -d' ' -f1 "$task/schedstat")" \
      "$(awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "$task/status")"
  done | sort
}
snapshot >"$WORK/before"
RESULT=$("$BIN/relay-loadgen" load --target "$GRPC" --kafka "$BOOTSTRAP" "$@" 2>>"$WORK/loadgen.log" | tail -n 1)
snapshot >"$WORK/after"
SEGMENTS=$(jq '.segments' <<<"$RESULT")
((SEGMENTS > 0)) || { tail "$WORK/loadgen.log" >&2; echo "no segment acknowledged" >&2; exit 1; }

echo "relay $RELAY_BIN, load: $*"
printf '  %-18s %12s %14s\n' thread "µs/segment" "sleeps/segment"
join "$WORK/before" "$WORK/after" | awk -v n="$SEGMENTS" '
  { cpu = ($6 - $3) / 1e3 / n; total += cpu
    if (cpu >= 0.05) printf "  %-18s %12.1f %14.2f\n", $2, cpu, ($7 - $4) / n }
  END { printf "  %-18s %12.1f   (%d segments)\n", "total", total, n }'
jq -r '"  ack ms p50/p99/p99.9: \(.ack.p50Ms // "-") / \(.ack.p99Ms // "-") / \(.ack.p999Ms // "-"); delivery p99 \(.delivery.p99Ms) ms"' <<<"$RESULT"
