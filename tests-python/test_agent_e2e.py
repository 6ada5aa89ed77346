"""The real SkyWalking Python agent → relay → Kafka, checked with the agent's own classes.

Every test runs against each agent version in AGENT_VERSIONS: 1.2.0 is the one pinned in
requirements.txt (the test venv's own interpreter); the others get a venv of their own from
scripts/agent-venv.sh (built from the sdist: the 1.3.0 wheel lacks skywalking/protocol/), created
on first use. The agent runs in a subprocess (agent_app.py) with that interpreter.
"""

import json
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pytest
from skywalking.protocol.language_agent.Meter_pb2 import MeterDataCollection
from skywalking.protocol.language_agent.Tracing_pb2 import SegmentObject
from skywalking.protocol.logging.Logging_pb2 import LogData
from skywalking.protocol.management.Management_pb2 import InstancePingPkg, InstanceProperties

from conftest import (REPO_ROOT, HarnessError, KafkaRecord, KafkaTopicReader, Relay, decode_segment,
                      wait_for)

AGENT_APP = Path(__file__).resolve().parent / "agent_app.py"
AGENT_VENV_SCRIPT = REPO_ROOT / "scripts" / "agent-venv.sh"
TRACES = 8
PINNED_AGENT = "1.2.0"  # tests-python/requirements.txt
AGENT_VERSIONS = (PINNED_AGENT, "1.3.0")

SEGMENTS = "skywalking-segments"
MANAGEMENTS = "skywalking-managements"
METERS = "skywalking-meters"
LOGS = "skywalking-logs"
MOCK_KAFKA_TOPICS = (SEGMENTS, MANAGEMENTS, METERS, LOGS)


_interpreters: dict[str, str] = {}


def agent_interpreter(version: str) -> str:
    """The python whose site-packages hold apache-skywalking `version` (checked, not assumed)."""
    if version not in _interpreters:
        if version == PINNED_AGENT:
            python = sys.executable
        else:
            created = subprocess.run([str(AGENT_VENV_SCRIPT), version], capture_output=True, text=True,
                                     timeout=600)
            if created.returncode != 0:
                raise HarnessError(f"scripts/agent-venv.sh {version} failed ({created.returncode}):\n"
                                   f"{created.stderr[-4000:]}")
            python = created.stdout.strip().splitlines()[-1]
        installed = subprocess.run(
            [python, "-c", "import importlib.metadata as m, skywalking.protocol.language_agent.Tracing_pb2;"
                           "print(m.version('apache-skywalking'))"],
            capture_output=True, text=True, timeout=60)
        if installed.returncode != 0 or installed.stdout.strip() != version:
            raise HarnessError(f"{python} should hold apache-skywalking {version} with its protocol: "
                               f"{installed.stdout.strip()!r}\n{installed.stderr[-2000:]}")
        _interpreters[version] = python
    return _interpreters[version]


@pytest.fixture(params=AGENT_VERSIONS, ids=lambda version: f"agent-{version}")
def agent_python(request: pytest.FixtureRequest) -> str:
    return agent_interpreter(request.param)


def run_agent_app(python: str, relay: Relay, run_id: str, traces: int) -> dict:
    completed = subprocess.run(
        [python, str(AGENT_APP), "--address", relay.grpc_address, "--traces", str(traces),
         "--run-id", run_id],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, (
        f"agent app failed ({completed.returncode})\nstdout:\n{completed.stdout}\n"
        f"stderr:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_agent_segments_reach_kafka_keyed_by_trace_id(agent_python: str, relay: Relay,
                                                     segments_reader: KafkaTopicReader):
    run_id = uuid.uuid4().hex[:12]
    report = run_agent_app(agent_python, relay, run_id, TRACES)
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


# --------------------------------------------------------------------------- every reporter


# What the agent prints when a call fails (its reporters log RpcError / the failing service).
AGENT_ERROR_LINE = ("RpcError", "StatusCode.", "UNIMPLEMENTED", "Exception in ", "Traceback", "HTTPError",
                    "ConnectionError")


def run_agent_with_all_reporters(python: str, address: str, protocol: str, run_id: str,
                                 managements: KafkaTopicReader, meters: Optional[KafkaTopicReader]
                                 ) -> tuple[dict, str]:
    """Runs agent_app.py with its segment, log, meter and profile reporters on (1 s periods)
    until Kafka holds 2 keepAlives of the instance (and, when `meters` is given, a meter set),
    then tells it to stop; returns its JSON report and its stderr."""
    instance = f"relay-e2e-app-{run_id}"
    agent = subprocess.Popen(
        [python, str(AGENT_APP), "--protocol", protocol, "--address", address, "--traces", "3",
         "--run-id", run_id, "--all-reporters", "--max-run-seconds", "50"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def reported() -> bool:
            if agent.poll() is not None:
                raise HarnessError(f"the agent app exited early ({agent.returncode}): {agent.stderr.read()[-3000:]}")
            managements.poll_batch(0.1)
            pings = sum(1 for r in managements.records if r.key == instance.encode())
            if meters is None:
                return pings >= 2
            meters.poll_batch(0.1)
            return pings >= 2 and any(r.key == instance.encode() for r in meters.records)

        wait_for(reported, 40, f"2 keepAlives{' and a meter set' if meters else ''} from {instance} "
                               f"over {protocol}")
        stdout, stderr = agent.communicate("stop\n", timeout=50)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    assert agent.returncode == 0, f"agent app failed ({agent.returncode})\n{stderr[-4000:]}"
    errors = [line for line in stderr.splitlines() if any(mark in line for mark in AGENT_ERROR_LINE)]
    assert not errors, "the agent logged errors:\n" + "\n".join(errors[:20]) + f"\n{stderr[-3000:]}"
    return json.loads(stdout.strip().splitlines()[-1]), stderr


def keyed_records(reader: KafkaTopicReader, key: str, count: int, what: str) -> list[KafkaRecord]:
    reader.read_until(lambda records: sum(1 for r in records if r.key == key.encode()) >= count, 30, what)
    return [r for r in reader.records if r.key == key.encode()]


def assert_agent_data_in_kafka(report: dict, instance: str, topic, with_meters: bool) -> None:
    """Properties, keepAlives, segments (keyed by trace id, spans as the agent made them), logs
    (each once, with service, instance and trace context) and, when reported, meters."""
    managements = topic(MANAGEMENTS)
    [register] = keyed_records(managements, f"register-{instance}", 1, "the agent's properties")[:1]
    properties = InstanceProperties.FromString(register.value)
    assert (properties.service, properties.serviceInstance) == ("relay-e2e-app", instance)
    assert any(p.key == "language" and p.value == "python" for p in properties.properties)
    for record in keyed_records(managements, instance, 2, "the agent's keepAlives"):
        assert InstancePingPkg.FromString(record.value).serviceInstance == instance

    expected = {trace["traceId"]: trace["segments"] for trace in report["traces"]}
    segment_ids = {s for segments in expected.values() for s in segments}
    segments = topic(SEGMENTS).read_until(
        lambda records: segment_ids <= {SegmentObject.FromString(r.value).traceSegmentId for r in records},
        30, f"the {len(segment_ids)} segments")
    for record in segments:
        segment = SegmentObject.FromString(record.value)
        if segment.traceId not in expected:
            continue
        assert record.key == segment.traceId.encode(), "records must be keyed by trace id"
        assert segment.serviceInstance == instance
        assert sorted(s.operationName for s in segment.spans) == sorted(
            expected[segment.traceId][segment.traceSegmentId])
        exits = [s for s in segment.spans if s.spanType == 1]
        if exits:
            assert exits[0].peer == "downstream:8080"
        for span in segment.spans:
            assert span.startTime > 0 and span.endTime >= span.startTime
        if any(s.refs for s in segment.spans):
            ref = next(s.refs[0] for s in segment.spans if s.refs)
            assert ref.traceId == segment.traceId and ref.parentService == "relay-e2e-app"

    if with_meters:
        for record in keyed_records(topic(METERS), instance, 1, "the agent's meters"):
            collection = MeterDataCollection.FromString(record.value)
            assert collection.meterData, "a meter record holds at least one MeterData"
            assert all(m.service == "relay-e2e-app" and m.serviceInstance == instance and m.timestamp > 0
                       for m in collection.meterData)

    # The agent formats the text with its layout (time, thread, level...) around the message.
    expected_logs = {entry["message"]: entry["traceId"] for entry in report["logs"]}

    def emitted(record: KafkaRecord) -> Optional[str]:
        text = LogData.FromString(record.value).body.text.text
        return next((message for message in expected_logs if message in text), None)

    logs = topic(LOGS).read_until(
        lambda records: set(expected_logs) <= {emitted(r) for r in records}, 30, "the agent's logs")
    mine = [r for r in logs if emitted(r) is not None]
    assert sorted(emitted(r) for r in mine) == sorted(expected_logs), "each log exactly once"
    for record in mine:
        decoded = LogData.FromString(record.value)
        trace_id = expected_logs[emitted(record)]
        assert decoded.service == "relay-e2e-app" and decoded.serviceInstance == instance
        assert record.key == (trace_id or "relay-e2e-app").encode(), (decoded.body.text.text, record.key)
        if trace_id:
            assert decoded.traceContext.traceId == trace_id


@pytest.mark.timeout(150)
def test_agent_over_grpc_with_log_and_meter_reporters(agent_python: str, relay: Relay, topic):
    """The real Python agent (skywalking/agent/protocol/grpc.py) with its segment, log, meter and
    profile reporters on, over gRPC: no reporter logs an error, and properties, keepAlives,
    segments, logs and meters reach their topics as the OAP's kafka-fetcher reads them."""
    run_id = uuid.uuid4().hex[:12]
    instance = f"relay-e2e-app-{run_id}"
    report, _ = run_agent_with_all_reporters(agent_python, relay.grpc_address, "grpc", run_id,
                                             topic(MANAGEMENTS), topic(METERS))
    assert_agent_data_in_kafka(report, instance, topic, with_meters=True)


@pytest.mark.timeout(150)
def test_agent_over_http(agent_python: str, relay: Relay, topic):
    """The real Python agent with agent_protocol="http" (skywalking/client/http.py: requests
    posts to /v3/segment, /v3/logs and /v3/management/*; it has no HTTP meter reporter): no
    error, and properties, keepAlives, segments and logs reach their topics."""
    run_id = uuid.uuid4().hex[:12]
    instance = f"relay-e2e-app-{run_id}"
    report, _ = run_agent_with_all_reporters(agent_python, relay.http_address, "http", run_id,
                                             topic(MANAGEMENTS), None)
    assert_agent_data_in_kafka(report, instance, topic, with_meters=False)
