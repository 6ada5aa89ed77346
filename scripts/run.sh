#!/usr/bin/env bash
# Builds the relay in release mode and runs it. With no SW_RELAY_KAFKA_BOOTSTRAP_SERVERS it
# starts an embedded development Kafka and prints its address.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product skywalking-kafka-relay
exec .build/release/skywalking-kafka-relay "$@"
