#!/usr/bin/env bash
# Builds the relay in release mode and runs it. With no SW_RELAY_KAFKA_BOOTSTRAP_SERVERS set it
# asks for the embedded development Kafka (in memory, not durable) and prints its address.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product skywalking-kafka-relay
export SW_RELAY_KAFKA_BOOTSTRAP_SERVERS="${SW_RELAY_KAFKA_BOOTSTRAP_SERVERS:-embedded}"
exec .build/release/skywalking-kafka-relay "$@"
