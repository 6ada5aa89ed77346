"""A real full disk under the whole relay: the queue lives on a small tmpfs that fills up.

Mounting needs root, which CI has (there a missing privilege fails the test); elsewhere the
test is skipped with the reason (conftest.missing_privilege).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

import grpc

from conftest import KafkaTopicReader, MockKafka, Relay, encode_segment, wait_for
from test_grpc_interop import COLLECT, assert_ok, stream, wait_for_traces
from reliability_support import http_body, status_document
from test_operations import metric_value, send_until_refused


def test_full_disk_refuses_clearly_stays_up_and_resumes_by_itself(
        tmpfs: Path, relay_factory: Callable[..., Relay], mock_kafka: MockKafka,
        segments_reader: KafkaTopicReader):
    # The capacity limit is far above the filesystem, so the disk itself runs out first.
    relay = relay_factory(queue_dir=tmpfs / "queue",
                          extra_env={"SW_RELAY_QUEUE_MAX_BYTES": "1GiB",
                                     "SW_RELAY_QUEUE_SEGMENT_BYTES": "256KiB"}).start()
    mock_kafka.command("down 1")

    acknowledged, refusal = send_until_refused(relay, "disk", calls=400)  # ~100 fill 2 MiB
    assert refusal is not None, "400 calls of 20 KiB were accepted on a 2 MiB filesystem"
    status, details = refusal
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{status}: {details}"
    assert "ENOSPC" in details or "No space left" in details, details
    assert acknowledged, "nothing fitted on the filesystem at all"

    # Still up, and honest about it.
    ready_status, reason = http_body(relay, "/readyz")
    assert ready_status == 503 and "space" in reason.lower(), f"/readyz: {ready_status} {reason!r}"
    assert status_document(relay)["queue"]["full"] is True
    metrics = relay.http_text("/metrics")
    assert (metric_value(metrics, "relay_queue_write_errors_total", reason="disk_full") or 0) > 0, metrics
    assert (metric_value(metrics, "relay_rejected_total", type="segment", reason="disk_full") or 0) > 0, metrics
    assert relay.http_status("/healthz") == 200

    # Kafka comes back: delivered files are deleted, the space returns, and the relay notices
    # by itself (no call is made until /readyz says so).
    mock_kafka.command("up 1")
    wait_for_traces(segments_reader, acknowledged, timeout=90)
    wait_for(lambda: http_body(relay, "/readyz")[0] == 200, 30,
             "/readyz to recover once delivered files freed the disk", interval=0.2)
    resumed = f"disk-resumed-{uuid.uuid4().hex}"
    assert_ok(stream(relay, COLLECT, [encode_segment(resumed, "s")]))
    wait_for_traces(segments_reader, {resumed})
