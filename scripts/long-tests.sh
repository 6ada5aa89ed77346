#!/usr/bin/env bash
# The long loops at full length, beside the shortened forms scripts/test.sh runs in CI (about
# 20 minutes here after the build): the tests marked `long` with RELAY_LONG_TESTS=1 (a Go
# agent's 65 s silence on the default timers, a minute of connection ages, two minutes of HTTP/2
# chaos, 30 s Kafka outages), the power-cut and kill -9 loops of docs/RELIABILITY.md, and the
# fuzzers for FUZZ_SECONDS (default 60) each. Any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
python="$(scripts/python-env.sh)"

echo "== build"
swift build --build-tests
export SWIFT_BIN_DIR="$(swift build --show-bin-path)"

echo "== long tests at full length"
RELAY_LONG_TESTS=1 "$python" -m pytest -q --durations=0 -m long tests-python

echo "== power-cut loops"
"$python" tests-python/power_cut_loop.py --cuts 30 --fsync always --seed 12
"$python" tests-python/power_cut_loop.py --cuts 20 --fsync interval --fsync-interval-ms 200 \
  --segment-bytes 1MiB --kinds timer,group-commit,recovery --partitions 64 --max-padding 400 --seed 13

echo "== kill -9 loops"
"$python" tests-python/crash_loop.py --cycles 50 --seconds-per-cycle 2 --seed 7 --partitions 128 \
  --max-padding 400
"$python" tests-python/crash_loop.py --cycles 20 --seconds-per-cycle 2 --seed 11 --outage-every 3 \
  --partitions 64 --max-padding 400

echo "== fuzzers"
scripts/fuzz.sh
