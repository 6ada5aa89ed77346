#!/usr/bin/env python3
"""Soak: a steady agent-like load for a bounded time, watching that the relay stays flat.

    PY="$(scripts/python-env.sh)"
    "$PY" tests-python/soak.py --minutes 30 --rate 200 --out soak.json

Runs the relay (built binary) against relay-mock-kafka, sends `--rate` segments per second as
client streams of 10, samples every `--sample-seconds` the relay's RSS, open file descriptors,
queue bytes and unconfirmed records, and consumes the topic all along. At the end it waits for
the backlog to drain and checks that every acknowledged segment id reached Kafka. Prints one
JSON summary (also written to `--out`) and exits 1 on any loss or when RSS, open files or the
queue grew from the first to the last quarter of the run by more than the allowed slack.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402

from conftest import SEGMENTS_TOPIC, KafkaTopicReader, MockKafka, Relay, decode_segment, encode_segment  # noqa: E402
from reliability_support import pruned_partitions, rss_bytes, status_document, wait_until_drained  # noqa: E402
from test_grpc_interop import COLLECT  # noqa: E402

SEGMENTS_PER_STREAM = 10


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class SteadyLoad:
    """One sender thread pacing client streams so that `rate` segments per second go out."""

    def __init__(self, address: str, rate: float) -> None:
        self.address = address
        self.interval = SEGMENTS_PER_STREAM / rate
        self.acked: set[str] = set()
        self.failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)

    def start(self) -> "SteadyLoad":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self) -> None:
        channel = grpc.insecure_channel(self.address)
        call = channel.stream_unary(COLLECT)
        number = 0
        next_send = time.monotonic()
        while not self._stop.is_set():
            number += 1
            trace_id = f"soak-{number}"
            ids = [f"{trace_id}.{n}" for n in range(SEGMENTS_PER_STREAM)]
            messages = [encode_segment(trace_id, segment_id, ("/soak", "/soak/db"), padding=600)
                        for segment_id in ids]
            try:
                call(iter(messages), timeout=30)
                with self._lock:
                    self.acked.update(ids)
            except grpc.RpcError:
                self.failures += 1
            next_send += self.interval
            # Pacing, not synchronisation: the load is meant to be steady in time.
            self._stop.wait(max(0.0, next_send - time.monotonic()))
        channel.close()


def growth(samples: list[dict], key: str) -> float:
    """Median of the last quarter minus median of the first quarter (after warm-up)."""
    quarter = max(1, len(samples) // 4)
    first = statistics.median(s[key] for s in samples[:quarter])
    last = statistics.median(s[key] for s in samples[-quarter:])
    return last - first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="segments per second")
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--rss-slack-mib", type=float, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relay-soak-"))
    mock = MockKafka(work / "mock-kafka.log", brokers=1, partitions=128)
    relay = Relay(work / "relay.log", work / "queue", mock.bootstrap_servers).start()
    reader = KafkaTopicReader(mock.bootstrap_servers, SEGMENTS_TOPIC)
    delivered: dict[str, int] = {}

    def consume() -> None:
        reader.poll_batch(timeout=0.1)
        for record in reader.records:
            segment_id = decode_segment(record.value).traceSegmentId
            delivered[segment_id] = delivered.get(segment_id, 0) + 1
        reader.records.clear()  # keep the soak's own memory flat

    load = SteadyLoad(relay.grpc_address, args.rate).start()
    samples: list[dict] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    next_sample = started
    while time.monotonic() < deadline:
        consume()
        if time.monotonic() >= next_sample:
            queue = status_document(relay)["queue"]
            samples.append({
                "t": round(time.monotonic() - started, 1), "rss_mib": rss_bytes(relay.process.pid) / 2**20,
                "open_files": open_files(relay.process.pid), "queue_bytes": queue["bytes"],
                "unconfirmed": queue["unconfirmed_records"], "acked": load.acked_count()})
            next_sample += args.sample_seconds
    load.stop()
    drain_seconds = wait_until_drained(relay, 120)
    acked = set(load.acked)
    deadline = time.monotonic() + 60
    while not acked <= delivered.keys() and time.monotonic() < deadline:
        consume()
    lost = sorted(acked - delivered.keys())
    pruned = pruned_partitions(reader)
    steady = samples[len(samples) // 10:] or samples
    summary = {
        "minutes": args.minutes, "rate": args.rate, "acked": len(acked), "lost": len(lost),
        "lost_examples": lost[:5], "duplicates": sum(c - 1 for c in delivered.values() if c > 1),
        "failed_calls": load.failures, "drain_seconds": round(drain_seconds, 2),
        "rss_mib_first_last": [round(steady[0]["rss_mib"], 1), round(steady[-1]["rss_mib"], 1)],
        "rss_mib_max": round(max(s["rss_mib"] for s in samples), 1),
        "rss_growth_mib": round(growth(steady, "rss_mib"), 2),
        "open_files_growth": growth(steady, "open_files"),
        "queue_bytes_growth": growth(steady, "queue_bytes"),
        "unconfirmed_max": max(s["unconfirmed"] for s in samples),
        "pruned_partitions": len(pruned), "samples": samples}
    relay.stop()
    mock.stop()
    text = json.dumps(summary)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))
    flat = (summary["rss_growth_mib"] <= args.rss_slack_mib and summary["open_files_growth"] <= 2
            and summary["queue_bytes_growth"] <= 64 << 20)
    if pruned:
        print("the mock cluster pruned old records; loss cannot be judged", file=sys.stderr)
        return 2
    return 0 if not lost and flat else 1


if __name__ == "__main__":
    sys.exit(main())
