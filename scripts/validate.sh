#!/usr/bin/env bash
# Checks on the source tree and the built relay that need no test run: formatting, the
# committed generated code, and that the relay binary links no Foundation.
#
#   scripts/validate.sh                  every step; linkage checks the binary of `swift build`
#   scripts/validate.sh lint             swift format lint --strict over Sources Tests Fuzz Benchmarks
#   scripts/validate.sh protos           scripts/generate-protos.sh --check
#   scripts/validate.sh linkage [BIN]    BIN (default: $(swift build --show-bin-path)/skywalking-kafka-relay)
#                                        has no Foundation library among its NEEDED entries
#
# Steps can be combined (`scripts/validate.sh lint protos`); they run in the order given and the
# first failure stops the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Shared libraries the relay must not load: Foundation, its internationalization and ICU
# (~30 MiB). FoundationEssentials (no ICU) is allowed: swift-certificates, under the OAP link's
# TLS in grpc-swift-nio-transport, needs it.
forbidden='^(libFoundation\.so|libFoundationNetworking|libFoundationXML|lib_FoundationICU|libFoundationInternationalization)'

fail() {
  echo "validate: $*" >&2
  exit 1
}

lint() {
  echo "== validate: format lint"
  # Generated code is skipped: it is checked by the protos step instead.
  local files=()
  mapfile -d '' -t files < <(find Sources Tests Fuzz Benchmarks Package.swift -name '*.swift' \
    -not -path '*/Generated/*' -not -path '*/.build/*' -print0)
  ((${#files[@]})) || fail "lint: no Swift files found"
  swift format lint --strict --configuration .swift-format "${files[@]}"
}

protos() {
  echo "== validate: generated code"
  scripts/generate-protos.sh --check
}

# Prints the NEEDED entries of the ELF file $1, one per line.
needed_libraries() {
  local tool
  if command -v readelf >/dev/null 2>&1; then
    readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'
    return
  fi
  # objdump -p prints "  NEEDED  libfoo.so"; the toolchain ships llvm-objdump.
  for tool in objdump llvm-objdump; do
    if command -v "$tool" >/dev/null 2>&1; then
      "$tool" -p "$1" | awk '$1 == "NEEDED" { print $2 }'
      return
    fi
  done
  fail "linkage: neither readelf nor objdump found (apt-get install binutils)"
}

linkage() {
  local bin="${1:-}"
  if [[ -z "$bin" ]]; then
    bin="$(swift build --show-bin-path)/skywalking-kafka-relay"
  fi
  echo "== validate: no Foundation linked into ${bin}"
  [[ -f "$bin" ]] || fail "linkage: $bin does not exist (build it first: swift build)"
  local needed
  needed="$(needed_libraries "$bin")" || exit 1
  # A static executable, or a file that is not ELF, has no NEEDED entry: nothing was checked.
  [[ -n "$needed" ]] || fail "linkage: no NEEDED entries in $bin (not a dynamically linked ELF file?)"
  local found
  found="$(grep -E "$forbidden" <<<"$needed" || true)"
  if [[ -n "$found" ]]; then
    echo "validate: $bin links Foundation:" >&2
    sed 's/^/  /' <<<"$found" >&2
    fail "linkage: remove the imports of Foundation (or of a dependency that brings it) from the relay's targets"
  fi
  echo "$(wc -l <<<"$needed") NEEDED entries, none of them Foundation."
}

steps=("$@")
((${#steps[@]})) || steps=(lint protos linkage)
i=0
while ((i < ${#steps[@]})); do
  step="${steps[i]}"
  i=$((i + 1))
  case "$step" in
    lint) lint ;;
    protos) protos ;;
    linkage)
      # An argument after `linkage` that is not a step name is the binary to check.
      bin=""
      if ((i < ${#steps[@]})); then
        case "${steps[i]}" in
          lint | protos | linkage) ;;
          *) bin="${steps[i]}" && i=$((i + 1)) ;;
        esac
      fi
      linkage "$bin"
      ;;
    *)
      echo "usage: $0 [lint] [protos] [linkage [BIN]]" >&2
      exit 2
      ;;
  esac
done
