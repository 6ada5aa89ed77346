"""Small requests that once cost the relay far more than their size: the attacker's payloads,
the calls that send them, and a measurement of what each costs the relay.

Used by test_hostile_json.py, and run alone to measure (the figures of docs/RELIABILITY.md):

    SWIFT_BIN_DIR=$(swift build --show-bin-path) .venv/bin/python tests-python/hostile_inputs.py

Each input goes to a fresh relay (embedded Kafka); the table gives the relay's CPU seconds for
the request, the wall time to the answer, and the growth of its peak RSS (VmHWM).
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from conftest import Relay
from reliability_support import cpu_seconds

COLLECT_IN_SYNC = "/skywalking.v3.TraceSegmentReportService/collectInSync"
MIB = 1 << 20


def nested_unknown_fields(size: int) -> bytes:
    """`{"x":{"x":…{}…}}` of about `size` bytes: each level an unknown field the decoder skips,
    nested far deeper than its depth limit."""
    levels = size // 6
    return b'{"x":' * levels + b"{}" + b"}" * levels


def zero_elements(size: int) -> bytes:
    """`[0,0,…]` of about `size` bytes: millions of elements, each one a refusal."""
    return b"[" + b"0," * (size // 2 - 1) + b"0]"


def empty_segments(size: int) -> bytes:
    """A SegmentCollection of `size` bytes: field 1 (segments) repeated, each one empty, so each
    one is refused for its empty traceId."""
    return b"\x0a\x00" * (size // 2)


def post_segments(relay: Relay, body: bytes, timeout: float = 600, path: str = "/v3/segments") -> tuple[int, str]:
    """POSTs `body` to `path`; returns the status and the answer's text."""
    request = urllib.request.Request(f"http://{relay.http_address}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def collect_in_sync(relay: Relay, message: bytes, timeout: float = 600) -> tuple[grpc.StatusCode, str]:
    """Sends `message` as is (no serializer) as one collectInSync call; returns its status."""
    with grpc.insecure_channel(relay.grpc_address, options=[("grpc.max_send_message_length", -1)]) as channel:
        try:
            channel.unary_unary(COLLECT_IN_SYNC)(message, timeout=timeout)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class Cost:
    cpu_seconds: float
    wall_seconds: float
    peak_rss_growth: int
    answer: str


def measure(relay: Relay, send: Callable[[], object]) -> Cost:
    pid = relay.process.pid
    cpu, rss, started = cpu_seconds(pid), peak_rss_bytes(pid), time.monotonic()
    try:
        answer = send()
    except OSError as error:
        answer = error
    wall = time.monotonic() - started
    try:
        return Cost(cpu_seconds(pid) - cpu, wall, peak_rss_bytes(pid) - rss, str(answer)[:160])
    except (OSError, AssertionError):  # /proc has no more (or only part) of an exited process
        return Cost(float("nan"), wall, 0, f"the relay exited with {relay.process.wait()}: {answer!r}")


def main() -> None:
    cases: list[tuple[str, Callable[[Relay], object]]] = [
        (f"/v3/segments [nested {size >> 10} KB]",
         lambda relay, size=size: post_segments(relay, b"[" + nested_unknown_fields(size) + b"]"))
        for size in (6 << 10, 12 << 10, 24 << 10, 200 << 10)
    ] + [
        ("/v3/segments [0,0,...] 15 MiB", lambda relay: post_segments(relay, zero_elements(15 * MIB))),
        ("collectInSync 48 MiB of empty segments",
         lambda relay: collect_in_sync(relay, empty_segments(48 * MIB))),
    ]
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as directory:
        for index, (name, send) in enumerate(cases):
            if only and not any(word in name for word in only):
                continue
            relay = Relay(Path(directory) / f"relay-{index}.log", Path(directory) / f"queue-{index}", None).start()
            try:
                cost = measure(relay, lambda: send(relay))
            finally:
                if relay.process.poll() is None:
                    relay.stop()
            print(f"{name:42} cpu {cost.cpu_seconds:7.2f} s  wall {cost.wall_seconds:7.2f} s  "
                  f"peak RSS +{cost.peak_rss_growth / MIB:6.1f} MiB  {cost.answer}", flush=True)


if __name__ == "__main__":
    main()
