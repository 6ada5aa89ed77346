#!/usr/bin/env bash
# Runs every check and test: formatting and generated code, the build (and no Foundation in the
# relay binary), the Swift suites, the fuzzers, and the Python end-to-end suites (real SkyWalking
# agent, grpcio interop, kill -9) against the built binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
python="$(scripts/python-env.sh)"

scripts/validate.sh lint

echo "== build"
swift build --build-tests
# The protoc plugins, built beside the relay so they reuse its compiled dependencies.
swift build --product protoc-gen-swift
swift build --product protoc-gen-grpc-swift-2
bin="$(swift build --show-bin-path)"
PROTOC_PLUGIN_DIR="$bin" scripts/validate.sh protos
scripts/validate.sh linkage "$bin/skywalking-kafka-relay"

echo "== swift tests"
swift test --skip-build --disable-xctest

echo "== fuzzers (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" scripts/fuzz.sh

echo "== python end-to-end tests"
SWIFT_BIN_DIR="$(swift build --show-bin-path)" "$python" -m pytest -q --durations=15 tests-python
