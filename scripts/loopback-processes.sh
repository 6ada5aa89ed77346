# Sourced by scripts/benchmark.sh, scripts/thread-profile.sh and scripts/idle-memory.sh: the
# processes they start on loopback, waiting for what those print, librdkafka's mock cluster with
# its command pipe, and the relay.
# The caller sets WORK (a fresh temporary directory) and defines die before sourcing it.

# Every process started; on exit each is killed and waited for, then $WORK is removed.
STARTED_PIDS=()
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  exec 3>&- 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for_line() {  # file, pattern, seconds
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { cat "$1" >&2; die "timed out waiting for '$2' in $1"; }
    sleep 0.1
  done
}

# Sets BIN to the Benchmarks package's release products, which scripts/benchmark.sh builds.
require_benchmark_products() {
  local product
  BIN=$(swift build -c release --package-path Benchmarks --scratch-path .build-bench --show-bin-path)
  for product in relay-mock-kafka relay-loadgen; do
    [[ -x $BIN/$product ]] || die "$BIN/$product missing: run scripts/benchmark.sh once"
  done
}

# relay-mock-kafka from the bin directory $1 (1 broker, 3 partitions), its stdin held open on
# fd 3 for commands; waits up to $2 seconds for it and sets MOCK_PID and BOOTSTRAP.
start_mock_kafka() {  # bin directory, seconds
  mkfifo "$WORK/mock.in"
  exec 3<>"$WORK/mock.in"
  "$1/relay-mock-kafka" --brokers 1 --partitions 3 --topic skywalking-segments \
    <"$WORK/mock.in" >"$WORK/mock.out" 2>"$WORK/mock.err" &
  MOCK_PID=$!
  STARTED_PIDS+=("$MOCK_PID")
  wait_for_line "$WORK/mock.out" '^BOOTSTRAP=' "$2"
  BOOTSTRAP=$(sed -n 's/^BOOTSTRAP=//p' "$WORK/mock.out" | head -n 1)
}

# The relay (the command $2…, e.g. a binary or `heaptrack -o FILE binary`) on loopback ports
# with its queue in $WORK/queue and the mock cluster as Kafka; fsync from RELAY_FSYNC (default
# interval), the HTTP receiver off unless the caller sets SW_RELAY_HTTP_ADDRESS, and any other
# SW_RELAY_ variable the caller exports. Waits up to $1 seconds for it to be ready and sets
# RELAY_PID, GRPC and ADMIN.
start_relay() {  # seconds, command…
  local seconds=$1 ready
  shift
  mkdir -p "$WORK/queue"
  SW_RELAY_GRPC_ADDRESS=127.0.0.1:0 SW_RELAY_ADMIN_ADDRESS=127.0.0.1:0 \
    SW_RELAY_HTTP_ADDRESS="${SW_RELAY_HTTP_ADDRESS:-off}" SW_RELAY_QUEUE_DIR="$WORK/queue" \
    SW_RELAY_QUEUE_FSYNC="${RELAY_FSYNC:-interval}" SW_RELAY_KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" \
    "$@" >"$WORK/relay.log" 2>&1 &
  RELAY_PID=$!
  STARTED_PIDS+=("$RELAY_PID")
  wait_for_line "$WORK/relay.log" 'relay ready' "$seconds"
  ready=$(grep -m1 'relay ready' "$WORK/relay.log")
  GRPC=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$ready")
  ADMIN=$(sed -E 's/.*admin=([^ ]+).*/\1/' <<<"$ready")
}
