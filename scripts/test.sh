#!/usr/bin/env bash
# Runs every check and test: formatting, the Swift suites, and the Python end-to-end suites
# (real SkyWalking agent, grpcio interop, kill -9) against the built binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
python="$(scripts/python-env.sh)"

echo "== format"
find Sources Tests Fuzz Package.swift -name '*.swift' -not -path '*/Generated/*' -print0 \
  | xargs -0 swift format lint --strict --configuration .swift-format

echo "== build"
swift build --build-tests

echo "== swift tests"
swift test --skip-build --disable-xctest

echo "== fuzzers (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" scripts/fuzz.sh

echo "== python end-to-end tests"
SWIFT_BIN_DIR="$(swift build --show-bin-path)" "$python" -m pytest -q tests-python
