#!/usr/bin/env bash
# Runs every check and test CI runs (at most 20 minutes from a fresh clone on 2 cores):
# formatting and generated code, the build (and no Foundation in the relay binary), the Swift
# suites, the fuzzers, the Python end-to-end suites (real SkyWalking agent, grpcio interop,
# kill -9) against the built binaries, and the build of Benchmarks/. The long loops run shorter
# here; scripts/long-tests.sh runs them at full length.
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

# The fuzzers' AddressSanitizer build (about as much CPU as the main build) and their bounded
# runs take the CPU the tests leave idle, most of all the end-to-end tests, which mostly wait:
# in the background at the lowest priority, so the tests keep the CPU they need. Their output
# follows the tests'; a failure of either fails the script.
echo "== fuzzers (bounded, in the background)"
mkdir -p .build-fuzz
fuzz_log=.build-fuzz/test-sh.log
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" nice -n 19 scripts/fuzz.sh > "$fuzz_log" 2>&1 &
fuzz=$!

# Each suite's status is kept, so the script always waits for the fuzzers and reports all three.
echo "== swift tests"
swift_status=0
swift test --skip-build --disable-xctest || swift_status=$?

echo "== python end-to-end tests"
python_status=0
SWIFT_BIN_DIR="$bin" "$python" -m pytest -q --durations=15 tests-python || python_status=$?

echo "== fuzzers (their output)"
fuzz_status=0
wait "$fuzz" || fuzz_status=$?
cat "$fuzz_log"
((swift_status == 0)) || echo "swift tests failed" >&2
((python_status == 0)) || echo "python end-to-end tests failed" >&2
((fuzz_status == 0)) || echo "fuzzers failed" >&2
((swift_status == 0 && python_status == 0 && fuzz_status == 0)) || exit 1

# Last: built on the main build's scratch path, so only its own dependencies are compiled (about
# a minute), though the main package's products are relinked for this root afterwards.
echo "== benchmarks build"
swift build --package-path Benchmarks --scratch-path .build
