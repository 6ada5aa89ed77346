#!/usr/bin/env bash
# Regenerates the Swift messages of Sources/SkyWalkingProtocol/Generated and the gRPC stubs of
# Sources/SkyWalkingGRPC/Generated from protos/ (two modules, so the relay can decode messages
# without linking GRPCProtobuf, which imports Foundation). The output is committed, so builds never need protoc or the plugins;
# run this after editing a .proto, and `--check` in CI to catch stale generated code.
#
#   scripts/generate-protos.sh           regenerate in place
#   scripts/generate-protos.sh --check   regenerate into a temp dir; exit 1 if it differs
#
# The plugins are built from the package's own dependencies (swift-protobuf,
# grpc-swift-protobuf) so they always match the runtime libraries they generate for.
# PROTOC_PLUGIN_DIR may point at a directory that already holds both plugin binaries;
# otherwise plugins already built from those dependencies are reused (this script's own
# .build-protoc, or the package's .build) when newer than Package.resolved, and built into
# .build-protoc only when there are none. That build needs no network once SwiftPM's
# repository cache holds the dependencies (as for `swift build`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$root/protos"
generated_dir="$root/Sources/SkyWalkingProtocol/Generated"
generated_grpc_dir="$root/Sources/SkyWalkingGRPC/Generated"
scratch="$root/.build-protoc"

mode="generate"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v protoc >/dev/null || { echo "protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

has_plugins() {
  [[ -x "$1/protoc-gen-swift" && -x "$1/protoc-gen-grpc-swift-2" ]]
}

# Prints the first directory holding both plugins built since the dependencies were last
# resolved; fails when there is none.
prebuilt_plugin_dir() {
  local dir resolved="$root/Package.resolved"
  for dir in "$scratch/release" "$root/.build/release" "$root/.build/debug"; do
    has_plugins "$dir" || continue
    if [[ -f "$resolved" ]] \
      && { [[ "$resolved" -nt "$dir/protoc-gen-swift" ]] \
        || [[ "$resolved" -nt "$dir/protoc-gen-grpc-swift-2" ]]; }; then
      continue
    fi
    echo "$dir"
    return 0
  done
  return 1
}

plugin_dir() {
  if [[ -n "${PROTOC_PLUGIN_DIR:-}" ]]; then
    has_plugins "$PROTOC_PLUGIN_DIR" \
      || { echo "PROTOC_PLUGIN_DIR=$PROTOC_PLUGIN_DIR lacks protoc-gen-swift or protoc-gen-grpc-swift-2" >&2; exit 1; }
    echo "$PROTOC_PLUGIN_DIR"
    return
  fi
  prebuilt_plugin_dir && return
  echo "Building the protoc plugins into ${scratch#"$root"/} (none built since the last resolution)" >&2
  local product dir
  for product in protoc-gen-swift protoc-gen-grpc-swift-2; do
    swift build --package-path "$root" --scratch-path "$scratch" -c release \
      --product "$product" >&2 || return 1
  done
  dir="$(swift build --package-path "$root" --scratch-path "$scratch" -c release --show-bin-path)" \
    || return 1
  has_plugins "$dir" || { echo "protoc plugins missing from $dir after the build" >&2; return 1; }
  echo "$dir"
}

# Writes the generated messages for every .proto into $1 and the stubs into $2 (both emptied
# first).
generate_into() {
  local out="$1" grpc_out="$2" plugins="$3"
  rm -rf "$out" "$grpc_out"
  mkdir -p "$out" "$grpc_out"
  local protos=()
  mapfile -t protos < <(cd "$proto_dir" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
  (
    cd "$proto_dir"
    protoc -I . \
      --plugin=protoc-gen-swift="$plugins/protoc-gen-swift" \
      --swift_out="$out" \
      --swift_opt=Visibility=Public \
      --swift_opt=FileNaming=PathToUnderscores \
      --plugin=protoc-gen-grpc-swift-2="$plugins/protoc-gen-grpc-swift-2" \
      --grpc-swift-2_out="$grpc_out" \
      --grpc-swift-2_opt=ExtraModuleImports=SkyWalkingProtocol \
      --grpc-swift-2_opt=Visibility=Public \
      --grpc-swift-2_opt=Server=true \
      --grpc-swift-2_opt=Client=true \
      --grpc-swift-2_opt=FileNaming=PathToUnderscores \
      "${protos[@]}"
  )
}

plugins="$(plugin_dir)"
echo "Plugins: ${plugins#"$root"/}, $(protoc --version)" >&2

if [[ "$mode" == "check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate_into "$tmp/Generated" "$tmp/GeneratedGRPC" "$plugins"
  if ! diff -ru "$generated_dir" "$tmp/Generated" || ! diff -ru "$generated_grpc_dir" "$tmp/GeneratedGRPC"; then
    echo "Generated code is stale: ${generated_dir#"$root"/} or ${generated_grpc_dir#"$root"/}" \
      "differs from what protos/ generate (diff above, committed first)." \
      "Run scripts/generate-protos.sh and commit the result." >&2
    exit 1
  fi
  echo "Generated code is up to date."
else
  generate_into "$generated_dir" "$generated_grpc_dir" "$plugins"
  echo "Generated $(find "$generated_dir" "$generated_grpc_dir" -name '*.swift' | wc -l) files into" \
    "${generated_dir#"$root"/} and ${generated_grpc_dir#"$root"/}"
fi
