#!/usr/bin/env bash
# Installs what building and testing the relay needs on Debian, only when it is missing.
set -euo pipefail

missing=()
pkg-config --exists rdkafka 2>/dev/null || missing+=(librdkafka-dev)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# zlib: gzip and deflate bodies and messages, as the OAP accepts them.
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
# readelf, for scripts/validate.sh's check of the relay's linked libraries.
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
# The power-loss filesystem of the power-cut tests (tests-python/lazyfs.py, fusepy over libfuse2).
{ /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep 'libfuse\.so\.2 ' >/dev/null || missing+=(libfuse2)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus/.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The arm64 CRC-32C instructions are cross-compiled and run under qemu-user
# (tests-python/test_any_architecture.py).
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || {
  echo "bootstrap: the Swift toolchain (6.2 or newer) must be on PATH: https://www.swift.org/install/linux/" >&2
  exit 1
}
