"""Damaged queue directories at relay level: flipped bytes mid-file, a last file truncated
mid-record, a corrupt or missing `position` file, a segment file of zeros.

The queue is filled while Kafka is down and the relay is stopped with SIGTERM, so the records
stay on disk; the test damages the directory and starts the relay again. It must start (never
refuse), answer /readyz 200, deliver every intact record once Kafka is back, report the damage
in /status and /metrics, name the file and offset in its log, and not spin on the damage.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

import grpc
import pytest

from conftest import KafkaTopicReader, MockKafka, Relay, encode_segment, wait_for
from reliability_support import (COLLECT, QueueFileRecord, SegmentIdCollector, cpu_seconds, metric,
                                 queue_segment_files, read_queue_file, segment_ids_in, status_document,
                                 wait_until_drained)

CPU_WINDOW_S = 4.0
CPU_BOUND_S = 1.6  # "does not loop": well under half a core over the window


def send(relay: Relay, trace_id: str, segment_ids: list[str], padding: int = 0) -> None:
    messages = [encode_segment(trace_id, segment_id, ("/corrupt",), padding=padding) for segment_id in segment_ids]
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(COLLECT)(iter(messages), timeout=15)


def idle_cpu(relay: Relay) -> float:
    """CPU seconds the relay burns over CPU_WINDOW_S with nothing to do but its damaged queue."""
    before = cpu_seconds(relay.process.pid)
    threading.Event().wait(CPU_WINDOW_S)  # a measurement window, not a synchronisation
    return cpu_seconds(relay.process.pid) - before


# --------------------------------------------------------------------------- damage


def flip_middle_bytes(queue_dir: Path, records: list[QueueFileRecord]) -> set[str]:
    """Flips 16 bytes in the middle of a segment file that is neither the first nor the last."""
    files = queue_segment_files(queue_dir)
    target = files[len(files) // 2]
    middle = target.stat().st_size // 2
    with open(target, "r+b") as file:
        file.seek(middle)
        chunk = file.read(16)
        file.seek(middle)
        file.write(bytes(b ^ 0xFF for b in chunk))
    return segment_ids_in(r for r in records if r.file == target and r.offset < middle + 16
                          and middle < r.offset + r.length)


def truncate_last_mid_record(queue_dir: Path, records: list[QueueFileRecord]) -> set[str]:
    last = queue_segment_files(queue_dir)[-1]
    victim = [r for r in records if r.file == last][-1]
    os.truncate(last, victim.offset + victim.length // 2)
    return segment_ids_in([victim])


def zero_a_segment_file(queue_dir: Path, records: list[QueueFileRecord]) -> set[str]:
    files = queue_segment_files(queue_dir)
    target = files[len(files) // 2]
    target.write_bytes(bytes(target.stat().st_size))
    return segment_ids_in(r for r in records if r.file == target)


# (damage, the /status field and metric that must count it, what the log must say)
CASES = {
    "flipped-bytes": (flip_middle_bytes, ("corrupt_records_skipped", "relay_queue_corrupt_records_total"),
                      "corrupt queue record skipped"),
    "truncated-last-file": (truncate_last_mid_record,
                            ("torn_tail_bytes_truncated", "relay_queue_torn_tail_bytes_total"), "torn tail"),
    "zeroed-segment-file": (zero_a_segment_file, ("corrupt_bytes_skipped", "relay_queue_corrupt_bytes_total"),
                            "corrupt queue record skipped"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_relay_recovers_from_a_damaged_queue(case: str, relay_factory: Callable[..., Relay], mock_kafka: MockKafka,
                                             segments_reader: KafkaTopicReader):
    damage, counted, log_phrase = CASES[case]
    relay = relay_factory(extra_env={"SW_RELAY_QUEUE_SEGMENT_BYTES": "64KiB",
                                     "SW_RELAY_SHUTDOWN_TIMEOUT_S": "1"}).start()
    collector = SegmentIdCollector(segments_reader)

    # Delivered and confirmed first, so `position` points past them.
    delivered_before = [f"{case}-delivered-{n}" for n in range(5)]
    send(relay, f"{case}-delivered", delivered_before)
    collector.wait_for(set(delivered_before), 30)
    wait_until_drained(relay, 30)
    wait_for(lambda: (relay.queue_dir / "position").exists(), 10, "the position file")

    # Then Kafka goes down and 60 segments (~4 files of 64 KiB) stay on disk.
    mock_kafka.command("down 1")
    waiting = [f"{case}-waiting-{n}" for n in range(60)]
    for start in range(0, 60, 10):
        send(relay, f"{case}-waiting-{start}", waiting[start:start + 10], padding=3500)
    assert status_document(relay)["queue"]["unconfirmed_records"] == 60
    assert relay.stop() == 0
    records = [r for f in queue_segment_files(relay.queue_dir) for r in read_queue_file(f)]
    assert segment_ids_in(records) >= set(waiting), "the stopped relay must have left every waiting record on disk"
    assert len(queue_segment_files(relay.queue_dir)) >= 3

    destroyed = damage(relay.queue_dir, records)
    assert destroyed <= set(waiting)
    log_before = len(relay.log_text())

    relay.start(ready_timeout=30)  # raises if it exits or never gets ready
    assert relay.http_status("/readyz") == 200
    spun = idle_cpu(relay)  # Kafka still down: the damaged records are all there is
    assert spun < CPU_BOUND_S, f"the relay used {spun:.2f} s of CPU in {CPU_WINDOW_S} s with Kafka down"

    mock_kafka.command("up 1")
    intact = set(waiting) - destroyed
    collector.wait_for(intact, 60, "intact records after the damage")
    wait_until_drained(relay, 30)
    document = status_document(relay)
    log = relay.log_text()[log_before:]
    print(f"{case}: destroyed {len(destroyed)} of {len(waiting)} records, status queue={document['queue']}")

    assert not destroyed & set(collector.update()), "a damaged record must never be published"
    assert log_phrase in log, f"the relay log should say {log_phrase!r}:\n{log[-3000:]}"
    if counted:
        field, metric_name = counted
        skipped = document["queue"][field]
        assert skipped >= 1, f"/status does not report the damage ({case}): {document['queue']}"
        assert metric(relay, metric_name) == skipped
        damaged_file = "0000" if case != "truncated-last-file" else queue_segment_files(relay.queue_dir)[-1].name
        assert damaged_file in log and "offset" in log, f"the log must name the file and offset:\n{log[-3000:]}"
    idle = idle_cpu(relay)
    assert idle < CPU_BOUND_S, f"the relay used {idle:.2f} s of CPU in {CPU_WINDOW_S} s idle after recovering"
    assert relay.http_status("/readyz") == 200
