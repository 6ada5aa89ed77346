"""Memory per idle agent connection with any relay build, debug included (docs/PERFORMANCE.md,
"Memory for 10,000 idle connections"); scripts/idle-memory.sh needs the Benchmarks package's
release products, this needs only the relay and relay-mock-kafka from one bin directory:

  SWIFT_BIN_DIR=$(swift build --show-bin-path) .venv/bin/python scripts/idle-memory.py \
      [--connections 2000] [--runs 3] [--segments-per-call 1] [--segment-bytes 1024]

Each run starts a fresh relay against the mock cluster, warms it up with a few calls, then opens
N grpcio connections (each its own HTTP/2 connection, as N agents would), makes one `collect`
call on each and leaves them open and quiet, as every agent connection is between reports. The
relay's RSS growth divided by N is printed per run. A debug build's heap per connection is close
to a release build's (the same objects are allocated); its fixed RSS is larger.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests-python"))
from conftest import MockKafka, Relay, encode_segment, wait_for  # noqa: E402
from test_operations import metric_value  # noqa: E402

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
WARM_UP_CONNECTIONS = 20
CONNECTIONS_PER_WAVE = 100


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss_kib(pid: int, timeout: float = 30) -> int:
    """RSS once two readings a second apart differ by less than 64 KiB (timers and the
    publisher's work after the calls have finished)."""
    readings = [rss_kib(pid)]

    def steady() -> bool:
        time.sleep(1)
        readings.append(rss_kib(pid))
        return abs(readings[-1] - readings[-2]) < 64

    wait_for(steady, timeout, "the relay's RSS to settle", interval=0)
    return readings[-1]


def open_quiet_connections(address: str, count: int, segments: int, segment_bytes: int) -> list[grpc.Channel]:
    """`count` connections that each made one successful `collect` call and stay open; opened
    in waves of `CONNECTIONS_PER_WAVE`, so a slow (debug or heaptrack) relay answers every
    handshake in time."""
    channels = []
    for wave in range(0, count, CONNECTIONS_PER_WAVE):
        opened = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                  for _ in range(min(CONNECTIONS_PER_WAVE, count - wave))]
        calls = []
        for channel in opened:
            trace = f"idle-{uuid.uuid4().hex}"
            messages = [encode_segment(trace, f"{trace}.{n}", padding=segment_bytes) for n in range(segments)]
            calls.append(channel.stream_unary(COLLECT).future(iter(messages), timeout=120))
        channels += opened
        failures = [call.exception() for call in calls if call.exception() is not None]
        if failures:
            raise RuntimeError(f"{len(failures)} calls failed, the first: {failures[0]}")
    return channels


def one_run(workdir: Path, arguments: argparse.Namespace) -> float:
    kafka = MockKafka(workdir / "mock-kafka.log")
    relay = Relay(workdir / "relay.log", workdir / "queue", kafka.bootstrap_servers, {
        "SW_RELAY_GRPC_MAX_CONNECTIONS_PER_PEER": "0", "SW_RELAY_HTTP_ADDRESS": "off",
        "SW_RELAY_LOG_LEVEL": "warning"})
    channels: list[grpc.Channel] = []
    try:
        relay.start()
        for channel in open_quiet_connections(relay.grpc_address, WARM_UP_CONNECTIONS, 1, 1024):
            channel.close()
        assert relay.process is not None
        before = settled_rss_kib(relay.process.pid)
        channels = open_quiet_connections(relay.grpc_address, arguments.connections,
                                          arguments.segments_per_call, arguments.segment_bytes)
        wait_for(lambda: metric_value(relay.http_text("/metrics"), "relay_grpc_connections")
                 == arguments.connections, 30, f"{arguments.connections} open connections")
        after = settled_rss_kib(relay.process.pid)
        per_connection = (after - before) / arguments.connections
        print(f"  RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: "
              f"{per_connection:.1f} KiB per connection", flush=True)
        return per_connection
    finally:
        for channel in channels:
            channel.close()
        relay.stop()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--segments-per-call", type=int, default=1)
    parser.add_argument("--segment-bytes", type=int, default=1024,
                        help="padding per segment (its tag), about its size on the wire")
    arguments = parser.parse_args()
    print(f"{arguments.connections} idle connections, each after one call of "
          f"{arguments.segments_per_call} segment(s) of ≈ {arguments.segment_bytes} bytes")
    results = []
    for _ in range(arguments.runs):
        with tempfile.TemporaryDirectory(prefix="relay-idle-memory.") as workdir:
            results.append(one_run(Path(workdir), arguments))
    print(f"  median {statistics.median(results):.1f} KiB per connection "
          f"(runs: {', '.join(f'{value:.1f}' for value in results)})")


if __name__ == "__main__":
    main()
