#!/usr/bin/env bash
# Measures the relay against the machine's own ceilings in one run (docs/PERFORMANCE.md).
#
#   scripts/benchmark.sh              # about 4 minutes on 2 cores, after the release build
#   BENCH_SECONDS=5 scripts/benchmark.sh      # shorter load phases
#   BENCH_BACKLOG_MIB=1024 scripts/benchmark.sh  # backlog-drain phase size (0 skips it)
#   BENCH_RELAY_BIN=/path/to/skywalking-kafka-relay scripts/benchmark.sh  # measure another build
#
# Everything runs on loopback: librdkafka's mock cluster (relay-mock-kafka, its own process),
# the release relay (fsync interval, queue in a temporary directory) and relay-loadgen. The
# relay's and the sink's CPU is the time their threads ran (/proc/<pid>/task/*/schedstat, in
# nanoseconds) around each load phase; the relay's memory is VmRSS
# (and VmHWM) from /proc/<pid>/status. Results: a table on stdout, and every JSON line the
# load generator printed in $BENCH_OUT (default .build-bench/benchmark/results.jsonl).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SCRATCH=${BENCH_SCRATCH:-.build-bench}
SECONDS_PER_PHASE=${BENCH_SECONDS:-10}
BACKLOG_MIB=${BENCH_BACKLOG_MIB:-1024}
CONNECTIONS=${BENCH_CONNECTIONS:-8}
STREAMS=${BENCH_STREAMS_PER_CONNECTION:-2}
SEGMENTS_PER_STREAM=${BENCH_SEGMENTS_PER_STREAM:-50}
IDLE_CONNECTIONS=${BENCH_IDLE_CONNECTIONS:-10000}
# Agent-shaped phases, each run against the sink and the relay: the Java agent opens a short
# stream per flush of its buffer (a few segments) on each of many connections; the Go agent keeps
# one stream open and sends each segment as it finishes.
AGENT_CONNECTIONS=${BENCH_AGENT_CONNECTIONS:-50}
JAVA_SEGMENTS_PER_STREAM=${BENCH_JAVA_SEGMENTS_PER_STREAM:-5}
JAVA_RATES=${BENCH_JAVA_RATES:-200 1000 5000 20000}
GO_RATES=${BENCH_GO_RATES:-200 5000}
OUT_DIR=${BENCH_OUT_DIR:-$SCRATCH/benchmark}
BUDGET_SECONDS=${BENCH_BUDGET_SECONDS:-900}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'benchmark.sh: %s\n' "$*" >&2; exit 1; }

for tool in jq curl; do
  command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"
done
[[ -r /proc/self/stat ]] || die "needs Linux /proc to measure CPU and memory"

log "building release binaries (scratch path $SCRATCH)"
for product in skywalking-kafka-relay relay-mock-kafka relay-loadgen; do
  swift build -c release --package-path Benchmarks --scratch-path "$SCRATCH" --product "$product" >&2
done
BIN=$(swift build -c release --package-path Benchmarks --scratch-path "$SCRATCH" --show-bin-path)
LOADGEN="$BIN/relay-loadgen"
RELAY_BIN=${BENCH_RELAY_BIN:-$BIN/skywalking-kafka-relay}
[[ -x $RELAY_BIN ]] || die "BENCH_RELAY_BIN=$RELAY_BIN is not an executable"

mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/results.jsonl"
: >"$RESULTS"
WORK=$(mktemp -d /tmp/relay-benchmark.XXXXXX)
# shellcheck source=scripts/loopback-processes.sh
source scripts/loopback-processes.sh
# The whole run is bounded: a watchdog ends it if anything hangs.
(
  trap 'kill "$timer" 2>/dev/null; exit 0' TERM
  sleep "$BUDGET_SECONDS" &
  timer=$!
  wait "$timer"
  echo "benchmark.sh: over the ${BUDGET_SECONDS}s budget, stopping" >&2
  kill -TERM $$
) &
WATCHDOG=$!
STARTED_PIDS+=("$WATCHDOG")

# Nanoseconds every thread of a process has run: precise at rates where a phase costs only a
# few clock ticks (/proc/<pid>/stat counts in 10 ms ticks).
cpu_nanos() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ sum += $1 } END { printf "%.0f\n", sum }'; }
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
loadgen() {  # runs relay-loadgen, keeps its JSON line, prints it
  local json
  json=$("$LOADGEN" "$@" 2>>"$WORK/loadgen.log" | tail -n 1)
  [[ $json == \{* ]] || { tail -n 20 "$WORK/loadgen.log" >&2; die "relay-loadgen $1 failed"; }
  echo "$json" >>"$RESULTS"
  echo "$json"
}

log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- Kafka: the mock cluster in its own process; stdin held open on fd 3 for commands. ---
start_mock_kafka "$BIN" 20
log "mock Kafka at $BOOTSTRAP (pid $MOCK_PID)"
mock_command() {
  local before
  before=$(grep -c '' "$WORK/mock.out")
  echo "$1" >&3
  local deadline=$((SECONDS + 10))
  until (($(grep -c '' "$WORK/mock.out") > before)); do
    ((SECONDS < deadline)) || die "mock cluster did not answer '$1'"
    sleep 0.05
  done
}

SHAPE=(--connections "$CONNECTIONS" --streams-per-connection "$STREAMS"
  --segments-per-stream "$SEGMENTS_PER_STREAM")

# --- Ceilings, measured in this run so ratios hold on a noisy machine. ---
log "ceiling (a): librdkafka producing straight to the mock cluster"
PRODUCE=$(loadgen produce-ceiling --kafka "$BOOTSTRAP" --duration "$SECONDS_PER_PHASE")
log "ceiling (b): sequential append + fdatasync in the queue's filesystem"
mkdir -p "$WORK/disk"
DISK_INTERVAL=$(loadgen disk-ceiling --directory "$WORK/disk" --fsync interval \
  --segments-per-batch "$SEGMENTS_PER_STREAM" --duration "$SECONDS_PER_PHASE")
DISK_ALWAYS=$(loadgen disk-ceiling --directory "$WORK/disk" --fsync always \
  --segments-per-batch "$SEGMENTS_PER_STREAM" --duration 3)
PRODUCE_1K=$(loadgen produce-ceiling --kafka "$BOOTSTRAP" --segment-size 1024 \
  --duration "$SECONDS_PER_PHASE")
DISK_INTERVAL_1K=$(loadgen disk-ceiling --directory "$WORK/disk" --fsync interval \
  --segment-size 1024 --segments-per-batch "$SEGMENTS_PER_STREAM" --duration "$SECONDS_PER_PHASE")
log "ceiling (c): the same gRPC streams into a handler that discards them"
"$LOADGEN" sink --max-seconds 600 >"$WORK/sink.out" 2>"$WORK/sink.err" &
SINK_PID=$!
STARTED_PIDS+=("$SINK_PID")
wait_for_line "$WORK/sink.out" '^SINK=' 20
SINK=$(sed -n 's/^SINK=//p' "$WORK/sink.out")
SINK_CPU0=$(cpu_nanos "$SINK_PID")
SINKRUN=$(loadgen load --target "$SINK" "${SHAPE[@]}" --duration "$SECONDS_PER_PHASE")
SINK_CPU1=$(cpu_nanos "$SINK_PID")
SINKRUN_1K=$(loadgen load --target "$SINK" "${SHAPE[@]}" --segment-size 1024 \
  --duration "$SECONDS_PER_PHASE")

# Prints the loadgen arguments of an agent-shaped phase, by name: java-<rate|max>, go-<rate>.
agent_shape() {
  local kind=${1%%-*} rate=${1#*-}
  local args=(--connections "$AGENT_CONNECTIONS" --segment-size 1024 --duration "$SECONDS_PER_PHASE")
  [[ $rate != max ]] && args+=(--rate "$rate")
  case $kind in
    java) args+=(--streams-per-connection 1 --segments-per-stream "$JAVA_SEGMENTS_PER_STREAM") ;;
    go) args+=(--streams-per-connection 1 --long-lived) ;;
  esac
  echo "${args[@]}"
}
AGENT_PHASES=()
for rate in $JAVA_RATES max; do AGENT_PHASES+=("java-$rate"); done
for rate in $GO_RATES; do AGENT_PHASES+=("go-$rate"); done
# Records one phase's CPU, rate and latencies as a JSON line: name, target, pid, loadgen args.
measured_phase() {
  local name=$1 target=$2 pid=$3; shift 3
  local cpu0 cpu1 json
  cpu0=$(cpu_nanos "$pid")
  json=$(loadgen load --target "$target" "$@")
  cpu1=$(cpu_nanos "$pid")
  jq -c --arg phase "$name" --argjson nanos $((cpu1 - cpu0)) \
    '{phase: $phase, segments, segmentsPerSecond, mebibytesPerSecond, averageSegmentBytes,
      seconds, cpuSeconds: ($nanos / 1e9), cpuMicrosPerSegment: (if .segments > 0
        then $nanos / 1e3 / .segments else null end),
      coreShare: (if .seconds > 0 then $nanos / 1e9 / .seconds else null end),
      ackP50: .ack.p50Ms, ackP99: .ack.p99Ms, ackP999: .ack.p999Ms,
      deliveryP50: .delivery.p50Ms, deliveryP99: .delivery.p99Ms, delivered, failedStreams}' \
    <<<"$json"
}
log "ceiling (c) on the agent shapes: ${AGENT_PHASES[*]}"
for phase in "${AGENT_PHASES[@]}"; do
  # shellcheck disable=SC2046  # the shape is a list of words
  measured_phase "$phase" "$SINK" "$SINK_PID" $(agent_shape "$phase") >>"$WORK/sink-phases.jsonl"
done
kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null || true

# --- The relay. ---
SW_RELAY_HTTP_ADDRESS=127.0.0.1:0 SW_RELAY_QUEUE_MAX_BYTES=$(((BACKLOG_MIB + 1024) << 20)) \
  SW_RELAY_LOG_LEVEL=info start_relay 30 "$RELAY_BIN"
log "relay pid $RELAY_PID, grpc=$GRPC admin=$ADMIN"
sleep 2
RSS_IDLE=$(status_kib "$RELAY_PID" VmRSS)

# Samples VmRSS every 200 ms into a file until stopped; prints the peak.
rss_sampler_start() {
  ( while kill -0 "$RELAY_PID" 2>/dev/null; do status_kib "$RELAY_PID" VmRSS; sleep 0.2; done ) \
    >"$WORK/rss.samples" &
  SAMPLER=$!
}
rss_sampler_stop() { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true
  sort -n "$WORK/rss.samples" | tail -n 1; }

relay_phase() {  # name, loadgen args...: runs a load against the relay, records CPU and RSS
  local name=$1 line peak; shift
  rss_sampler_start
  line=$(measured_phase "$name" "$GRPC" "$RELAY_PID" --kafka "$BOOTSTRAP" "$@")
  peak=$(rss_sampler_stop)
  jq -c --argjson peak "$peak" '. + {rssPeakKiB: $peak}' <<<"$line" >>"$WORK/phases.jsonl"
}

# The relay's own stage histograms over a phase: for each, the bucket bound that holds the p50
# and the p99 of what the phase added (an upper bound; buckets from 0.25 ms).
STAGES="relay_grpc_ack_latency_seconds relay_queue_append_wait_seconds relay_queue_append_write_seconds relay_ack_event_loop_wait_seconds"
stage_snapshot() { curl -fsS "http://$ADMIN/metrics" >"$1"; }
stage_report() {  # before, after
  local metric
  for metric in $STAGES; do
    awk -v m="${metric}_bucket" '
      FNR == 1 { file++ }
      index($0, m "{le=\"") == 1 {
        le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le)
        if (file == 1) { before[le] = $2 } else { after[le] = $2; order[++n] = le }
      }
      END {
        total = after["+Inf"] - before["+Inf"]
        if (total <= 0) { exit }
        for (i = 1; i <= n; i++) {
          count = after[order[i]] - before[order[i]]
          if (p50 == "" && count >= total * 0.5) p50 = order[i]
          if (p99 == "" && count >= total * 0.99) p99 = order[i]
        }
        printf "%s\t%d\t%s\t%s\n", m, total, p50, p99
      }' "$1" "$2"
  done | sed 's/_bucket\t/\t/'
}

log "relay: warm-up"
"$LOADGEN" load --target "$GRPC" "${SHAPE[@]}" --duration 2 >/dev/null 2>>"$WORK/loadgen.log"
log "relay: maximum rate, mixed segments (0.5–20 KiB)"
relay_phase max-mixed "${SHAPE[@]}" --duration "$SECONDS_PER_PHASE"
MAX_RATE=$(jq -s 'map(select(.phase == "max-mixed"))[0].segmentsPerSecond' "$WORK/phases.jsonl")
log "relay: maximum rate, 1 KiB segments"
relay_phase max-1KiB "${SHAPE[@]}" --segment-size 1024 --duration "$SECONDS_PER_PHASE"
HALF=$(jq -n --argjson r "$MAX_RATE" '($r / 2 | floor)')
log "relay: half the maximum rate ($HALF segments/s), Java-agent shape (1 stream per connection)"
stage_snapshot "$WORK/stages.before"
relay_phase half-mixed --connections "$CONNECTIONS" --streams-per-connection 1 \
  --segments-per-stream "$SEGMENTS_PER_STREAM" --rate "$HALF" --duration "$SECONDS_PER_PHASE"
stage_snapshot "$WORK/stages.after"
stage_report "$WORK/stages.before" "$WORK/stages.after" >"$WORK/stages.half-mixed"
for phase in "${AGENT_PHASES[@]}"; do
  log "relay: agent shape $phase"
  # shellcheck disable=SC2046  # the shape is a list of words
  relay_phase "$phase" $(agent_shape "$phase")
done
RSS_LOAD_HWM=$(status_kib "$RELAY_PID" VmHWM)

log "relay: $IDLE_CONNECTIONS idle agent connections"
sleep 1
RSS_BEFORE_IDLE=$(status_kib "$RELAY_PID" VmRSS)
"$LOADGEN" idle --target "$GRPC" --connections "$IDLE_CONNECTIONS" --hold-seconds 30 \
  >"$WORK/idle.out" 2>>"$WORK/loadgen.log" &
IDLE_PID=$!
STARTED_PIDS+=("$IDLE_PID")
wait_for_line "$WORK/idle.out" '^IDLE_READY=' 60
sleep 3
RSS_IDLE_CONNS=$(status_kib "$RELAY_PID" VmRSS)
IDLE_LINE=$(head -n 1 "$WORK/idle.out")
kill "$IDLE_PID" 2>/dev/null; wait "$IDLE_PID" 2>/dev/null || true

# --- Backlog drain: Kafka down while BACKLOG_MIB is ingested, then up again while agents keep
# sending at a quarter of the maximum rate; the drain rate is records confirmed per second. ---
DRAIN_LINE="skipped"
if ((BACKLOG_MIB > 0)); then
  AVAIL_MIB=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
  if ((AVAIL_MIB < BACKLOG_MIB * 3)); then
    DRAIN_LINE="skipped: only ${AVAIL_MIB} MiB free"
  else
    log "relay: backlog of $BACKLOG_MIB MiB with Kafka down"
    AVG=$(jq -s 'map(select(.phase == "max-mixed"))[0].averageSegmentBytes' "$WORK/phases.jsonl")
    COUNT=$(((BACKLOG_MIB << 20) / AVG))
    mock_command "down 1"
    INGEST=$(loadgen load --target "$GRPC" "${SHAPE[@]}" --count "$COUNT" --duration 300)
    INGEST_RATE=$(jq '.segmentsPerSecond' <<<"$INGEST")
    status() { curl -fsS "http://$ADMIN/status"; }
    BACKLOG=$(status | jq '.queue.unconfirmed_records')
    log "backlog: $BACKLOG records; Kafka up, agents keep sending at a quarter of the maximum"
    QUARTER=$(jq -n --argjson r "$MAX_RATE" '($r / 4 | floor)')
    RSS_BACKLOG0=$(status_kib "$RELAY_PID" VmRSS)
    mock_command "up 1"
    DRAIN_START=$(date +%s.%N)
    "$LOADGEN" load --target "$GRPC" --connections "$CONNECTIONS" --rate "$QUARTER" \
      --duration 240 >"$WORK/drain-load.out" 2>>"$WORK/loadgen.log" &
    DRAIN_LOAD_PID=$!
    STARTED_PIDS+=("$DRAIN_LOAD_PID")
    RSS_DRAIN_PEAK=0
    # Drained when what is left is no more than what the concurrent agents keep adding.
    while :; do
      LEFT=$(status | jq '.queue.unconfirmed_records')
      RSS_NOW=$(status_kib "$RELAY_PID" VmRSS)
      ((RSS_NOW > RSS_DRAIN_PEAK)) && RSS_DRAIN_PEAK=$RSS_NOW
      ((LEFT <= QUARTER / 2 + 1000)) && break
      [[ $(jq -n --argjson s "$DRAIN_START" --arg n "$(date +%s.%N)" '($n | tonumber) - $s > 200') == true ]] \
        && { log "backlog not drained within 200 s ($LEFT left)"; break; }
      sleep 0.2
    done
    DRAIN_SECONDS=$(jq -n --argjson s "$DRAIN_START" --arg n "$(date +%s.%N)" '($n | tonumber) - $s')
    kill "$DRAIN_LOAD_PID" 2>/dev/null || true
    wait "$DRAIN_LOAD_PID" 2>/dev/null || true
    # Records confirmed per second: the backlog plus what the agents added meanwhile.
    DRAIN_RATE=$(jq -n --argjson b "$BACKLOG" --argjson q "$QUARTER" --argjson t "$DRAIN_SECONDS" \
      '(($b + $q * $t) / $t) | floor')
    DRAIN_LINE=$(printf '%s records (%s MiB) confirmed in %.1f s while agents kept sending %s/s: %s records/s = %.1f× the concurrent ingest rate (ingest with Kafka down: %.0f/s); RSS %s KiB before → peak %s KiB during the drain' \
      "$BACKLOG" "$BACKLOG_MIB" "$DRAIN_SECONDS" "$QUARTER" "$DRAIN_RATE" \
      "$(jq -n --argjson d "$DRAIN_RATE" --argjson q "$QUARTER" '$d / $q')" "$INGEST_RATE" \
      "$RSS_BACKLOG0" "$RSS_DRAIN_PEAK")
  fi
fi
RSS_HWM=$(status_kib "$RELAY_PID" VmHWM)

# --- Results. ---
ceiling() { jq '.segmentsPerSecond' <<<"$1"; }
P_RATE=$(ceiling "$PRODUCE"); DI_RATE=$(ceiling "$DISK_INTERVAL"); DA_RATE=$(ceiling "$DISK_ALWAYS")
S_RATE=$(ceiling "$SINKRUN")
LOWEST=$(jq -n --argjson a "$P_RATE" --argjson b "$DI_RATE" --argjson c "$S_RATE" '[$a, $b, $c] | min')
P1K=$(ceiling "$PRODUCE_1K"); DI1K=$(ceiling "$DISK_INTERVAL_1K"); S1K=$(ceiling "$SINKRUN_1K")
LOWEST_1K=$(jq -n --argjson a "$P1K" --argjson b "$DI1K" --argjson c "$S1K" '[$a, $b, $c] | min')
SINK_US=$(jq -n --argjson t $((SINK_CPU1 - SINK_CPU0)) \
  --argjson n "$(jq '.segments' <<<"$SINKRUN")" '$t / 1e3 / $n')
{
  echo
  echo "skywalking-kafka-relay benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "shape: $CONNECTIONS connections × $STREAMS streams × $SEGMENTS_PER_STREAM segments, ${SECONDS_PER_PHASE}s phases"
  echo
  echo "Ceilings (segments/s, mixed 0.5–20 KiB segments):"
  printf '  (a) librdkafka produce, relay settings   %10.0f  (%.1f MiB/s)\n' "$P_RATE" "$(jq '.mebibytesPerSecond' <<<"$PRODUCE")"
  printf '  (b) disk append, fdatasync every 200 ms  %10.0f  (%.1f MiB/s)\n' "$DI_RATE" "$(jq '.mebibytesPerSecond' <<<"$DISK_INTERVAL")"
  printf '      disk append, fdatasync per batch     %10.0f  (%.1f MiB/s)\n' "$DA_RATE" "$(jq '.mebibytesPerSecond' <<<"$DISK_ALWAYS")"
  printf '  (c) gRPC sink (discard)                  %10.0f  (sink CPU %.2f µs/segment)\n' "$S_RATE" "$SINK_US"
  printf '  lowest ceiling                           %10.0f\n' "$LOWEST"
  printf 'Ceilings with 1 KiB segments: produce %.0f, disk (interval) %.0f, sink %.0f; lowest %.0f\n' \
    "$P1K" "$DI1K" "$S1K" "$LOWEST_1K"
  echo
  printf '%-11s %10s %7s %8s %8s %8s %9s %9s %9s\n' phase seg/s "÷ceil" "µs/seg" "ack p50" "ack p99" "ack p99.9" "deliv p99" "RSS peak"
  jq -r --argjson low "$LOWEST" --argjson low1k "$LOWEST_1K" '[.phase, (.segmentsPerSecond | floor),
      (.segmentsPerSecond / (if .averageSegmentBytes == 1024 then $low1k else $low end) * 100 | floor / 100),
      (.cpuMicrosPerSegment * 100 | floor / 100), .ackP50, .ackP99, .ackP999, .deliveryP99,
      ((.rssPeakKiB / 1024 * 10 | floor / 10 | tostring) + "M")] | @tsv' "$WORK/phases.jsonl" |
    awk -F'\t' '{ printf "%-11s %10s %7s %8s %8s %8s %9s %9s %9s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
  echo "(latencies in ms; ÷ceil against the lowest ceiling of the same segment sizes;"
  echo " µs/seg = relay CPU ÷ accepted segments, Kafka delivery included)"
  echo
  echo "Agent shapes ($AGENT_CONNECTIONS connections, 1 KiB segments; java = one stream of $JAVA_SEGMENTS_PER_STREAM segments at a time,"
  echo "go = one long-lived stream, a message per segment; the sink on the same shape in the same run):"
  printf '%-11s %9s %9s %9s %7s %7s %8s %8s %9s %9s\n' phase seg/s "relay µs" "sink µs" "÷ sink" "% core" \
    "ack p50" "ack p99" "ack p99.9" "deliv p99"
  jq -rs 'map(select(.phase | test("^(java|go)-")))
      | (map(select(.role == "sink")) | INDEX(.phase)) as $sink
      | map(select(.role == "relay"))[]
      | [.phase, (.segmentsPerSecond | floor), (.cpuMicrosPerSegment * 10 | floor / 10),
         ($sink[.phase].cpuMicrosPerSegment * 10 | floor / 10),
         (.cpuMicrosPerSegment / $sink[.phase].cpuMicrosPerSegment * 100 | floor / 100),
         (.coreShare * 1000 | floor / 10), (.ackP50 // "-"), (.ackP99 // "-"),
         (.ackP999 // "-"), (.deliveryP99 // "-")] | @tsv' \
    <(jq -c '. + {role: "sink"}' "$WORK/sink-phases.jsonl") \
    <(jq -c '. + {role: "relay"}' "$WORK/phases.jsonl") |
    awk -F'\t' '{ printf "%-11s %9s %9s %9s %7s %7s %8s %8s %9s %9s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
  echo "(relay µs and sink µs: CPU per segment; % core: relay CPU ÷ phase time; go shapes have no"
  echo " per-segment ack, their delivery is timed from the send)"
  echo
  echo "Where half-mixed's acknowledgements waited (relay histograms; bucket bounds in seconds):"
  printf '  %-40s %9s %8s %8s\n' stage samples "p50 ≤" "p99 ≤"
  awk -F'\t' '{ printf "  %-40s %9s %8s %8s\n", $1, $2, $3, $4 }' "$WORK/stages.half-mixed"
  echo
  printf 'RSS: idle %.1f MiB; peak under load (VmHWM) %.1f MiB; before idle conns %.1f MiB; with %s (%s) %.1f MiB (+%.1f MiB)\n' \
    "$(jq -n "$RSS_IDLE / 1024")" "$(jq -n "$RSS_LOAD_HWM / 1024")" "$(jq -n "$RSS_BEFORE_IDLE / 1024")" \
    "$IDLE_CONNECTIONS" "$IDLE_LINE" "$(jq -n "$RSS_IDLE_CONNS / 1024")" \
    "$(jq -n "($RSS_IDLE_CONNS - $RSS_BEFORE_IDLE) / 1024")"
  echo "Backlog drain: $DRAIN_LINE"
  echo "VmHWM over the whole run: $(jq -n "$RSS_HWM / 1024 * 10 | floor / 10") MiB"
} | tee "$OUT_DIR/summary.txt"
cat "$WORK/phases.jsonl" >>"$RESULTS"
jq -c '. + {target: "sink"}' "$WORK/sink-phases.jsonl" >>"$RESULTS"
log "JSON lines in $RESULTS, table in $OUT_DIR/summary.txt"
