"""The real SkyWalking Python agent → relay → Kafka, checked with the agent's own classes."""

import json
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

from conftest import KafkaTopicReader, Relay, decode_segment

AGENT_APP = Path(__file__).resolve().parent / "agent_app.py"
TRACES = 8


def run_agent_app(relay: Relay, run_id: str, traces: int) -> dict:
    completed = subprocess.run(
        [sys.executable, str(AGENT_APP), "--address", relay.grpc_address, "--traces", str(traces),
         "--run-id", run_id],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, (
        f"agent app failed ({completed.returncode})\nstdout:\n{completed.stdout}\n"
        f"stderr:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_agent_segments_reach_kafka_keyed_by_trace_id(relay: Relay, segments_reader: KafkaTopicReader):
    run_id = uuid.uuid4().hex[:12]
    report = run_agent_app(relay, run_id, TRACES)
    expected = {trace["traceId"]: trace["segments"] for trace in report["traces"]}
    assert len(expected) == TRACES
    expected_segment_ids = {segment_id for segments in expected.values() for segment_id in segments}

    def all_segments_arrived(records) -> bool:
        seen = {decode_segment(record.value).traceSegmentId for record in records}
        return expected_segment_ids <= seen

    records = segments_reader.read_until(all_segments_arrived, timeout=60,
                                         what=f"the {len(expected_segment_ids)} segments of run {run_id}")

    partitions_by_trace: dict[str, set[int]] = defaultdict(set)
    for record in records:
        segment = decode_segment(record.value)
        if segment.traceId not in expected:
            continue  # not from this run
        assert record.key == segment.traceId.encode(), "records must be keyed by trace id"
        operations = [span.operationName for span in segment.spans]
        assert sorted(operations) == sorted(expected[segment.traceId][segment.traceSegmentId])
        assert segment.service == "relay-e2e-app"
        partitions_by_trace[segment.traceId].add(record.partition)

    assert set(partitions_by_trace) == set(expected), "every printed trace id must arrive"
    split = {trace: parts for trace, parts in partitions_by_trace.items() if len(parts) != 1}
    assert not split, f"segments of one trace landed on several partitions: {split}"
