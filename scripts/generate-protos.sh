#!/usr/bin/env bash
# Regenerates the Swift messages and gRPC stubs of Sources/SkyWalkingProtocol/Generated
# from protos/. The output is committed, so builds never need protoc or the plugins;
# run this after editing a .proto, and `--check` in CI to catch stale generated code.
#
#   scripts/generate-protos.sh           regenerate in place
#   scripts/generate-protos.sh --check   regenerate into a temp dir; exit 1 if it differs
#
# The plugins are built from the package's own dependencies (swift-protobuf,
# grpc-swift-protobuf) so they always match the runtime libraries they generate for.
# PROTOC_PLUGIN_DIR may point at a directory that already holds both plugin binaries.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$root/protos"
generated_dir="$root/Sources/SkyWalkingProtocol/Generated"
scratch="$root/.build-protoc"

mode="generate"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v protoc >/dev/null || { echo "protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

plugin_dir() {
  if [[ -n "${PROTOC_PLUGIN_DIR:-}" ]]; then
    echo "$PROTOC_PLUGIN_DIR"
    return
  fi
  local product
  for product in protoc-gen-swift protoc-gen-grpc-swift-2; do
    swift build --package-path "$root" --scratch-path "$scratch" -c release \
      --product "$product" >&2
  done
  swift build --package-path "$root" --scratch-path "$scratch" -c release --show-bin-path
}

# Writes the generated sources for every .proto into $1 (emptied first).
generate_into() {
  local out="$1" plugins="$2"
  rm -rf "$out"
  mkdir -p "$out"
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
      --grpc-swift-2_out="$out" \
      --grpc-swift-2_opt=Visibility=Public \
      --grpc-swift-2_opt=Server=true \
      --grpc-swift-2_opt=Client=true \
      --grpc-swift-2_opt=FileNaming=PathToUnderscores \
      "${protos[@]}"
  )
}

plugins="$(plugin_dir)"

if [[ "$mode" == "check" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate_into "$tmp/Generated" "$plugins"
  if ! diff -r "$generated_dir" "$tmp/Generated"; then
    echo "Generated code is stale: run scripts/generate-protos.sh" >&2
    exit 1
  fi
  echo "Generated code is up to date."
else
  generate_into "$generated_dir" "$plugins"
  echo "Generated $(find "$generated_dir" -name '*.swift' | wc -l) files into ${generated_dir#"$root"/}"
fi
