#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/ with AddressSanitizer and runs each for FUZZ_SECONDS
# (default 60) from its committed seed corpus (Fuzz/Corpus/<target>). A crash, an ASan report,
# a leak or a hang fails the script; the input that caused it is kept in .build-fuzz/artifacts/.
#
#   scripts/fuzz.sh                     every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh    the longer run of docs/RELIABILITY.md
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
build="$PWD/.build-fuzz"
mkdir -p "$build/artifacts"
# A failed build must fail here: the binaries of an earlier build would otherwise run instead.
# ld.gold repeats a harmless note for every ASan helper symbol; the rest of the output stays.
build_log="$build/artifacts/build.log"
build_status=0
(cd Fuzz && swift build --build-path "$build" -Xswiftc -sanitize=fuzzer,address) \
  > "$build_log" 2>&1 || build_status=$?
grep -v "Cannot export local symbol" "$build_log" || true
if ((build_status != 0)); then
  echo "fuzz: building the fuzzers failed (exit $build_status); log $build_log" >&2
  exit 1
fi
for target in wire queue-recovery environment grpc-deframer http-json; do
  binary="$build/debug/fuzz-$target"
  [[ -x "$binary" ]] || { echo "fuzz: $binary was not built" >&2; exit 1; }
  corpus="$(mktemp -d)"
  cp Fuzz/Corpus/"$target"/* "$corpus"/
  log="$build/artifacts/$target.log"
  echo "== fuzz-$target for ${seconds} s"
  status=0
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$target-" "$corpus" > "$log" 2>&1 || status=$?
  rm -rf "$corpus"
  if ((status != 0)); then
    tail -n 60 "$log" >&2
    echo "fuzz-$target failed (exit $status); reproducer in $build/artifacts/, log $log" >&2
    exit 1
  fi
  grep -E "^(Done|stat::)" "$log"
done
