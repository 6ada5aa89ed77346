"""Every agent call besides segments: what reaches each Kafka topic (decoded with the agent's own
generated classes, i.e. by a consumer that is not our code), what is refused, and what is
forwarded to an OAP (a grpcio stub on loopback) or answered without one.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import grpc
import pytest
from skywalking.protocol.common.Command_pb2 import Command, Commands
from skywalking.protocol.common.Common_pb2 import CPU, KeyStringValuePair
from skywalking.protocol.event.Event_pb2 import Event, Source
from skywalking.protocol.language_agent.CLRMetric_pb2 import CLRMetric, CLRMetricCollection
from skywalking.protocol.language_agent.ConfigurationDiscoveryService_pb2 import ConfigurationSyncRequest
from skywalking.protocol.language_agent.JVMMetric_pb2 import JVMMetric, JVMMetricCollection
from skywalking.protocol.language_agent.Meter_pb2 import (Label, MeterBucketValue, MeterData,
                                                          MeterDataCollection, MeterHistogram,
                                                          MeterSingleValue)
from skywalking.protocol.logging.Logging_pb2 import LogData, LogDataBody, TextLog, TraceContext
from skywalking.protocol.management.Management_pb2 import InstancePingPkg, InstanceProperties
from skywalking.protocol.profile.Profile_pb2 import (ProfileTaskCommandQuery, ProfileTaskFinishReport,
                                                     ThreadSnapshot, ThreadStack)

from conftest import KafkaRecord, KafkaTopicReader, Relay, free_loopback_port
from test_operations import metric_value

CALL_TIMEOUT = 15

SEGMENTS = "skywalking-segments"
MANAGEMENTS = "skywalking-managements"
METRICS = "skywalking-metrics"
METERS = "skywalking-meters"
LOGS = "skywalking-logs"
PROFILINGS = "skywalking-profilings"
NAMESPACED_LOGS = "ns-my-logs"
TOPICS = (SEGMENTS, MANAGEMENTS, METRICS, METERS, LOGS, PROFILINGS, NAMESPACED_LOGS)
MOCK_KAFKA_TOPICS = TOPICS

V3 = "/skywalking.v3."
KEEP_ALIVE = "ManagementService/keepAlive"
PROPERTIES = "ManagementService/reportInstanceProperties"
JVM = "JVMMetricReportService/collect"
METER_COLLECT = "MeterReportService/collect"
METER_BATCH = "MeterReportService/collectBatch"
LOG_COLLECT = "LogReportService/collect"
SNAPSHOTS = "ProfileTask/collectSnapshot"
PROFILE_QUERY = "ProfileTask/getProfileTaskCommands"
TASK_FINISH = "ProfileTask/reportTaskFinish"
FETCH_CONFIGURATIONS = "ConfigurationDiscoveryService/fetchConfigurations"
EVENTS = "EventService/collect"
CLR = "CLRMetricReportService/collect"
GO_PROFILE = "ProfileTask/goProfileReport"
SPAN_EVENTS = "SpanAttachedEventReportService/collect"


def packaged(method: str) -> str:
    return V3 + method


def compat(method: str) -> str:
    """The unpackaged path protocol 8.0–8.3 agents call."""
    return "/" + method


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_millis() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- fixtures




# --------------------------------------------------------------------------- gRPC calls


@dataclass
class Answer:
    status: grpc.StatusCode
    details: str
    response: Optional[bytes]

    def commands(self) -> Commands:
        assert self.status == grpc.StatusCode.OK, f"{self.status}: {self.details}"
        assert self.response is not None
        return Commands.FromString(self.response)


def call(address: str, path: str, messages: Sequence[bytes], streaming: bool,
         metadata: Optional[list[tuple[str, str]]] = None) -> Answer:
    """One unary (`messages` holds exactly one) or client-streaming call, raw bytes on the wire."""
    with grpc.insecure_channel(address) as channel:
        try:
            if streaming:
                response = channel.stream_unary(path)(iter(list(messages)), timeout=CALL_TIMEOUT,
                                                      metadata=metadata)
            else:
                assert len(messages) == 1
                response = channel.unary_unary(path)(messages[0], timeout=CALL_TIMEOUT, metadata=metadata)
        except grpc.RpcError as error:
            return Answer(error.code(), error.details() or "", None)
        return Answer(grpc.StatusCode.OK, "", response)


def unary(relay: Relay, path: str, message: bytes, **options) -> Answer:
    return call(relay.grpc_address, path, [message], streaming=False, **options)


def stream(relay: Relay, path: str, messages: Sequence[bytes], **options) -> Answer:
    return call(relay.grpc_address, path, messages, streaming=True, **options)


def assert_ok(answer: Answer) -> None:
    assert answer.status == grpc.StatusCode.OK, f"{answer.status}: {answer.details}"
    assert answer.commands() == Commands(), "data calls are answered with an empty Commands"


def assert_refused(answer: Answer, count: int) -> None:
    """INVALID_ARGUMENT naming how many messages were refused and why (missing_field)."""
    assert answer.status == grpc.StatusCode.INVALID_ARGUMENT, f"{answer.status}: {answer.details}"
    assert "missing_field" in answer.details, f"details should name the reason: {answer.details!r}"
    assert re.search(rf"(?<!\d){count}(?!\d)", answer.details), (
        f"details should name the count {count}: {answer.details!r}")


def records_where(reader: KafkaTopicReader, wanted: Callable[[KafkaRecord], bool], count: int,
                  what: str, timeout: float = 30) -> list[KafkaRecord]:
    """Waits until `count` records satisfy `wanted`; returns them (in read order)."""
    reader.read_until(lambda records: sum(1 for r in records if wanted(r)) >= count, timeout, what)
    return [r for r in reader.records if wanted(r)]


def keyed(key: str) -> Callable[[KafkaRecord], bool]:
    return lambda record: record.key == key.encode()


def assert_only_after_read_to_end(reader: KafkaTopicReader, forbidden: Callable[[KafkaRecord], bool],
                                  what: str) -> None:
    """Reads the topic up to its current end and asserts no record matches `forbidden`."""
    found = [r for r in reader.read_to_end() if forbidden(r)]
    assert not found, f"{what} reached {reader.topic}: {found}"


def assert_counted(relay: Relay, kind: str, received: int, queued: int) -> None:
    """relay_received_total / relay_queued_total for `kind` (a fresh relay counted only this test)."""
    metrics = relay.http_text("/metrics")
    counts = (metric_value(metrics, "relay_received_total", type=kind),
              metric_value(metrics, "relay_queued_total", type=kind))
    assert counts == (received, queued), f"(received, queued) for type={kind}: {counts}"


def rejected_metric(relay: Relay, kind: str) -> float:
    return metric_value(relay.http_text("/metrics"), "relay_rejected_total", type=kind,
                        reason="missing_field") or 0


# --------------------------------------------------------------------------- messages


def ping(instance: str, service: str = "calls-svc") -> bytes:
    return InstancePingPkg(service=service, serviceInstance=instance, layer="GENERAL").SerializeToString()


def properties(instance: str, service: str = "calls-svc") -> bytes:
    return InstanceProperties(service=service, serviceInstance=instance, layer="GENERAL", properties=[
        KeyStringValuePair(key="language", value="python"),
        KeyStringValuePair(key="hostname", value="relay-test"),
    ]).SerializeToString()


def jvm_metrics(instance: str, service: str = "calls-svc") -> bytes:
    return JVMMetricCollection(service=service, serviceInstance=instance, metrics=[
        JVMMetric(time=now_millis(), cpu=CPU(usagePercent=12.5)),
        JVMMetric(time=now_millis() + 1000, cpu=CPU(usagePercent=13.5)),
    ]).SerializeToString()


def meter_single(name: str, value: float, service: str = "", instance: str = "",
                 timestamp: int = 0) -> MeterData:
    return MeterData(singleValue=MeterSingleValue(name=name, value=value,
                                                  labels=[Label(name="pool", value=name)]),
                     service=service, serviceInstance=instance, timestamp=timestamp)


def meter_histogram(name: str, service: str = "", instance: str = "", timestamp: int = 0) -> MeterData:
    return MeterData(histogram=MeterHistogram(name=name, values=[
        MeterBucketValue(bucket=0, count=3, isNegativeInfinity=True),
        MeterBucketValue(bucket=10, count=5),
    ]), service=service, serviceInstance=instance, timestamp=timestamp)


def meter_stream(instance: str, service: str = "calls-svc") -> list[MeterData]:
    """What the Java agent sends on `collect`: service, instance and time on the first element."""
    return [
        meter_single("first", 1.0, service=service, instance=instance, timestamp=now_millis()),
        meter_single("second", 2.0),
        meter_histogram("third"),
    ]


def log(text: str, service: str = "", instance: str = "", trace_id: Optional[str] = None,
        segment_id: str = "") -> LogData:
    data = LogData(timestamp=now_millis(), service=service, serviceInstance=instance, endpoint="/calls",
                   body=LogDataBody(type="text", text=TextLog(text=text)))
    if trace_id is not None:
        data.traceContext.CopyFrom(TraceContext(traceId=trace_id, traceSegmentId=segment_id, spanId=1))
    return data


def snapshot(task_id: str, sequence: int) -> bytes:
    return ThreadSnapshot(taskId=task_id, traceSegmentId=f"{task_id}.seg", time=now_millis(), sequence=sequence,
                          stack=ThreadStack(codeSignatures=[f"frame-{sequence}", "main"])).SerializeToString()


def event(name: str) -> bytes:
    return Event(uuid=unique("event"), source=Source(service="calls-svc", serviceInstance="calls-svc-1"),
                 name=name, message=f"{name} happened", parameters={"k": name},
                 startTime=now_millis(), endTime=now_millis() + 1, layer="GENERAL").SerializeToString()


# --------------------------------------------------------------------------- 1. each call to its topic


@pytest.mark.parametrize("path", [packaged(KEEP_ALIVE), compat(KEEP_ALIVE)])
def test_keep_alive_lands_on_managements_keyed_by_instance(relay: Relay, topic, path: str):
    instance = unique("ping")
    sent = ping(instance)

    assert_ok(unary(relay, path, sent))

    [record] = records_where(topic(MANAGEMENTS), keyed(instance), 1, f"the keepAlive of {instance}")
    assert record.value == sent, "the InstancePingPkg must be published as sent"
    decoded = InstancePingPkg.FromString(record.value)
    assert (decoded.service, decoded.serviceInstance) == ("calls-svc", instance)
    assert_counted(relay, "keep_alive", 1, 1)


@pytest.mark.parametrize("path", [packaged(PROPERTIES), compat(PROPERTIES)])
def test_instance_properties_land_on_managements_keyed_register_instance(relay: Relay, topic, path: str):
    instance = unique("props")
    sent = properties(instance)

    assert_ok(unary(relay, path, sent))

    [record] = records_where(topic(MANAGEMENTS), keyed(f"register-{instance}"), 1,
                             f"the properties of {instance}")
    assert record.value == sent, "the InstanceProperties must be published as sent"
    decoded = InstanceProperties.FromString(record.value)
    assert (decoded.service, decoded.serviceInstance) == ("calls-svc", instance)
    assert {p.key: p.value for p in decoded.properties} == {"language": "python", "hostname": "relay-test"}
    assert_counted(relay, "instance_properties", 1, 1)


@pytest.mark.parametrize("path", [packaged(JVM), compat(JVM)])
def test_jvm_metrics_land_on_metrics_keyed_by_instance(relay: Relay, topic, path: str):
    instance = unique("jvm")
    sent = jvm_metrics(instance)

    assert_ok(unary(relay, path, sent))

    [record] = records_where(topic(METRICS), keyed(instance), 1, f"the JVM metrics of {instance}")
    assert record.value == sent
    decoded = JVMMetricCollection.FromString(record.value)
    assert decoded.service == "calls-svc" and decoded.serviceInstance == instance
    assert [m.cpu.usagePercent for m in decoded.metrics] == [12.5, 13.5]
    assert_counted(relay, "jvm_metrics", 1, 1)


@pytest.mark.parametrize("path", [packaged(METER_COLLECT), compat(METER_COLLECT)])
def test_meter_stream_becomes_one_collection_keyed_by_instance(relay: Relay, topic, path: str):
    instance = unique("meter")
    elements = meter_stream(instance)

    assert_ok(stream(relay, path, [e.SerializeToString() for e in elements]))

    [record] = records_where(topic(METERS), keyed(instance), 1, f"the meter data set of {instance}")
    collection = MeterDataCollection.FromString(record.value)
    assert list(collection.meterData) == elements, "one collection holding every element, in order"
    # What the OAP's MeterProcessor needs, taken from any element.
    assert any(m.service == "calls-svc" for m in collection.meterData)
    assert any(m.serviceInstance == instance for m in collection.meterData)
    assert any(m.timestamp > 0 for m in collection.meterData)
    # Two streams must not merge: a second one is a second record.
    second = [meter_single("again", 9.0, service="calls-svc", instance=instance, timestamp=now_millis())]
    assert_ok(stream(relay, path, [e.SerializeToString() for e in second]))
    records = records_where(topic(METERS), keyed(instance), 2, "the second meter data set")
    assert list(MeterDataCollection.FromString(records[1].value).meterData) == second
    assert_counted(relay, "meter", 2, 2)


def test_meter_batch_publishes_each_collection_as_sent(relay: Relay, topic):
    instances = [unique("batch-a"), unique("batch-b")]
    sent = [MeterDataCollection(meterData=meter_stream(instance)).SerializeToString() for instance in instances]

    assert_ok(stream(relay, packaged(METER_BATCH), sent))

    reader = topic(METERS)
    for instance, value in zip(instances, sent):
        [record] = records_where(reader, keyed(instance), 1, f"the collection of {instance}")
        assert record.value == value
        collection = MeterDataCollection.FromString(record.value)
        assert collection.meterData[0].serviceInstance == instance
        assert collection.meterData[0].timestamp > 0 and collection.meterData[0].service == "calls-svc"
    assert_counted(relay, "meter", 2, 2)


def test_logs_keyed_by_trace_id_or_service_and_all_carry_service(relay: Relay, topic):
    service, instance, trace_id = unique("log-svc"), unique("log-inst"), uuid.uuid4().hex
    tag = uuid.uuid4().hex[:8]
    sent = [
        log(f"{tag} first", service=service, instance=instance, trace_id=trace_id, segment_id="s1"),
        log(f"{tag} no service, no context"),  # what the Java agent sends after the first
        log(f"{tag} empty trace id", trace_id="", segment_id="s3"),
        log(f"{tag} own trace", trace_id=trace_id + "-2"),
    ]

    assert_ok(stream(relay, packaged(LOG_COLLECT), [m.SerializeToString() for m in sent]))

    records = records_where(topic(LOGS), lambda r: tag in LogData.FromString(r.value).body.text.text, 4,
                            f"the 4 logs tagged {tag}")
    by_text = {LogData.FromString(r.value).body.text.text: r for r in records}
    assert len(by_text) == 4, [LogData.FromString(r.value) for r in records]
    expected_keys = {f"{tag} first": trace_id, f"{tag} no service, no context": service,
                     f"{tag} empty trace id": service, f"{tag} own trace": trace_id + "-2"}
    for original in sent:
        record = by_text[original.body.text.text]
        decoded = LogData.FromString(record.value)
        assert record.key == expected_keys[original.body.text.text].encode(), (original.body.text.text, record.key)
        assert decoded.service == service, f"every log needs its service: {decoded}"
        assert decoded.serviceInstance == instance, f"the stream's instance should be carried: {decoded}"
        completed = LogData()
        completed.CopyFrom(original)
        completed.service, completed.serviceInstance = service, instance
        assert decoded == completed, "everything else must be as sent"
    assert by_text[f"{tag} first"].value == sent[0].SerializeToString(), "a complete log is published as sent"
    assert_counted(relay, "log", 4, 4)


@pytest.mark.parametrize("path", [packaged(SNAPSHOTS), compat(SNAPSHOTS)])
def test_thread_snapshots_keyed_by_task_and_sequence(relay: Relay, topic, path: str):
    task = unique("task")
    sent = {7: snapshot(task, 7), 12: snapshot(task, 12)}

    assert_ok(stream(relay, path, list(sent.values())))

    reader = topic(PROFILINGS)
    for sequence, value in sent.items():
        [record] = records_where(reader, keyed(f"{task}{sequence}"), 1, f"snapshot {sequence} of {task}")
        assert record.value == value
        decoded = ThreadSnapshot.FromString(record.value)
        assert (decoded.taskId, decoded.sequence) == (task, sequence)
        assert list(decoded.stack.codeSignatures) == [f"frame-{sequence}", "main"]
    assert_counted(relay, "thread_snapshot", 2, 2)


# --------------------------------------------------------------------------- 2. refusals


@pytest.mark.parametrize("method, build, topic_name, kind, key_prefix", [
    (KEEP_ALIVE, ping, MANAGEMENTS, "keep_alive", ""),
    (PROPERTIES, properties, MANAGEMENTS, "instance_properties", "register-"),
    (JVM, jvm_metrics, METRICS, "jvm_metrics", ""),
], ids=["keepAlive", "reportInstanceProperties", "jvm"])
def test_unary_without_service_instance_is_refused(relay: Relay, topic, method: str, build,
                                                   topic_name: str, kind: str, key_prefix: str):
    marker = unique("no-instance-service")
    refused = unary(relay, packaged(method), build("", service=marker))
    assert_refused(refused, 1)

    # A valid one afterwards goes through; the refused one never shows up.
    instance = unique("valid")
    assert_ok(unary(relay, packaged(method), build(instance)))
    reader = topic(topic_name)
    records_where(reader, keyed(key_prefix + instance), 1, f"the valid {method}")
    assert_only_after_read_to_end(reader, lambda r: marker.encode() in r.value, "the refused message")
    assert rejected_metric(relay, kind) >= 1


def test_meter_batch_refuses_incomplete_sets_and_queues_the_rest(relay: Relay, topic):
    good = [unique("good-a"), unique("good-b")]
    marker = unique("bad")
    no_timestamp = [meter_single("x", 1.0, service="calls-svc", instance=marker), meter_single("y", 2.0)]
    no_service = [meter_single("x", 1.0, instance=marker + "-2", timestamp=now_millis())]
    no_instance = [meter_single("x", 1.0, service=marker, timestamp=now_millis())]
    sent = [MeterDataCollection(meterData=meter_stream(good[0])),
            MeterDataCollection(meterData=no_timestamp),
            MeterDataCollection(meterData=no_service),
            MeterDataCollection(meterData=meter_stream(good[1])),
            MeterDataCollection(meterData=no_instance)]

    answer = stream(relay, packaged(METER_BATCH), [c.SerializeToString() for c in sent])

    assert_refused(answer, 3)
    reader = topic(METERS)
    for instance in good:
        records_where(reader, keyed(instance), 1, f"the valid set of {instance}")
    assert_only_after_read_to_end(reader, lambda r: marker.encode() in r.value, "an incomplete meter set")
    assert rejected_metric(relay, "meter") >= 3


@pytest.mark.parametrize("missing", ["service", "serviceInstance", "timestamp"])
def test_meter_stream_lacking_a_field_in_every_element_is_refused(relay: Relay, topic, missing: str):
    marker = unique("bad-stream")
    elements = meter_stream(marker)  # the first element names service, instance and time
    elements[0].ClearField(missing)
    elements[0].singleValue.name = marker

    answer = stream(relay, packaged(METER_COLLECT), [e.SerializeToString() for e in elements])

    assert_refused(answer, 1)
    instance = unique("good-stream")
    assert_ok(stream(relay, packaged(METER_COLLECT), [e.SerializeToString() for e in meter_stream(instance)]))
    reader = topic(METERS)
    records_where(reader, keyed(instance), 1, "the valid meter stream")
    assert_only_after_read_to_end(reader, lambda r: marker.encode() in r.value, "the incomplete meter stream")


def test_logs_without_any_service_are_refused_and_later_ones_queued(relay: Relay, topic):
    tag = uuid.uuid4().hex[:8]
    service = unique("log-svc")
    sent = [
        log(f"{tag} orphan 1"),  # nothing earlier in the stream names a service
        log(f"{tag} orphan 2", trace_id=uuid.uuid4().hex),
        log(f"{tag} named", service=service, instance="i-1"),
        log(f"{tag} after the named one"),
    ]

    answer = stream(relay, packaged(LOG_COLLECT), [m.SerializeToString() for m in sent])

    assert_refused(answer, 2)
    reader = topic(LOGS)
    records = records_where(reader, lambda r: tag in LogData.FromString(r.value).body.text.text, 2,
                            "the 2 logs after a service was named")
    assert sorted(LogData.FromString(r.value).body.text.text for r in records) == [
        f"{tag} after the named one", f"{tag} named"]
    assert all(LogData.FromString(r.value).service == service for r in records)
    assert_only_after_read_to_end(reader, lambda r: b"orphan" in r.value, "a log without service")
    assert rejected_metric(relay, "log") >= 2


# --------------------------------------------------------------------------- 3. topic names


def test_namespace_and_topic_override_name_the_logs_topic(relay_factory, topic):
    relay = relay_factory(extra_env={"SW_RELAY_KAFKA_NAMESPACE": "ns",
                                     "SW_RELAY_KAFKA_TOPIC_LOGS": "my-logs"}).start()
    service = unique("ns-svc")
    sent = log("namespaced", service=service, instance="i-1")

    assert_ok(stream(relay, packaged(LOG_COLLECT), [sent.SerializeToString()]))

    [record] = records_where(topic(NAMESPACED_LOGS), keyed(service), 1, f"the log on {NAMESPACED_LOGS}")
    assert LogData.FromString(record.value) == sent
    # Other topics get the namespace too: a keepAlive goes to ns-skywalking-managements.
    instance = unique("ns-ping")
    assert_ok(unary(relay, packaged(KEEP_ALIVE), ping(instance)))
    records_where(topic("ns-" + MANAGEMENTS), keyed(instance), 1, "the keepAlive on ns-skywalking-managements")
    assert_only_after_read_to_end(topic(LOGS), lambda r: service.encode() in r.value,
                                  "the namespaced log (on the default topic)")


# --------------------------------------------------------------------------- forwarded calls


QUERIES = [
    (PROFILE_QUERY, ProfileTaskCommandQuery(service="calls-svc", serviceInstance="calls-svc-1",
                                            lastCommandTime=0).SerializeToString()),
    (FETCH_CONFIGURATIONS, ConfigurationSyncRequest(service="calls-svc", uuid="").SerializeToString()),
]
# Sent once and believed (Java's ProfileTaskChannelService): never answered OK by the relay alone.
TASK_FINISH_REPORT = ProfileTaskFinishReport(service="calls-svc", serviceInstance="calls-svc-1",
                                             taskId="t-1").SerializeToString()
# GoProfileData and SpanAttachedEvent have no class in the Python agent: an empty message is valid.
DATA_CALLS = [
    (EVENTS, True, [event("Start")]),
    (CLR, False, [CLRMetricCollection(service="calls-svc", serviceInstance="calls-svc-1", metrics=[
        CLRMetric(time=now_millis(), cpu=CPU(usagePercent=3.0))]).SerializeToString()]),
    (GO_PROFILE, True, [b""]),
    (SPAN_EVENTS, True, [b""]),
]


def test_without_oap_queries_answer_empty_commands_and_data_calls_unimplemented(relay: Relay):
    problems = []
    for method, message in QUERIES:
        paths = [packaged(method)] + ([compat(method)] if method != FETCH_CONFIGURATIONS else [])
        for path in paths:
            answer = unary(relay, path, message)
            if answer.status != grpc.StatusCode.OK or Commands.FromString(answer.response) != Commands():
                problems.append(f"{path}: {answer.status} {answer.details!r} (want OK, empty Commands)")
    for method, streaming, messages in DATA_CALLS:
        answer = call(relay.grpc_address, packaged(method), messages, streaming)
        if answer.status != grpc.StatusCode.UNIMPLEMENTED or "SW_RELAY_OAP_ADDRESS" not in answer.details:
            problems.append(f"{packaged(method)}: {answer.status} {answer.details!r} "
                            "(want UNIMPLEMENTED naming SW_RELAY_OAP_ADDRESS)")
    for path in (packaged(TASK_FINISH), compat(TASK_FINISH)):
        answer = unary(relay, path, TASK_FINISH_REPORT)
        if answer.status != grpc.StatusCode.UNIMPLEMENTED or "SW_RELAY_OAP_ADDRESS" not in answer.details:
            problems.append(f"{path}: {answer.status} {answer.details!r} "
                            "(want UNIMPLEMENTED naming SW_RELAY_OAP_ADDRESS: no OAP heard the task finish)")
    unknown = unary(relay, "/skywalking.v3.ProfileTask/noSuchMethod", b"")
    if unknown.status != grpc.StatusCode.UNIMPLEMENTED:
        problems.append(f"unknown path: {unknown.status}")
    assert not problems, "\n".join(problems)


@dataclass
class ReceivedCall:
    path: str
    requests: list[bytes]
    metadata: dict[str, str]
    peer: str


@dataclass
class StubOAP:
    """A grpcio server standing in for the OAP: records every call; answers per path with
    Commands bytes, or aborts with a status."""

    answers: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    calls: list[ReceivedCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, requests: list[bytes], context: grpc.ServicerContext) -> bytes:
        metadata = {key: value for key, value in context.invocation_metadata()}
        with self._lock:
            self.calls.append(ReceivedCall(path, requests, metadata, context.peer()))
        if path in self.failures:
            code, details = self.failures[path]
            context.abort(code, details)
        return self.answers.get(path, Commands().SerializeToString())

    def calls_to(self, path: str) -> list[ReceivedCall]:
        with self._lock:
            return [c for c in self.calls if c.path == path]


class _StubHandler(grpc.GenericRpcHandler):
    def __init__(self, stub: StubOAP, client_streaming_paths: set[str]) -> None:
        self._stub = stub
        self._streaming = client_streaming_paths

    def service(self, handler_call_details):
        path = handler_call_details.method
        if path in self._streaming:
            return grpc.stream_unary_rpc_method_handler(
                lambda requests, context: self._stub.handle(path, list(requests), context))
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._stub.handle(path, [request], context))


@pytest.fixture
def stub_oap() -> Iterator[tuple[StubOAP, int]]:
    stub = StubOAP()
    streaming = {packaged(m) for m in (EVENTS, GO_PROFILE, SPAN_EVENTS, METER_COLLECT, LOG_COLLECT)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_StubHandler(stub, streaming),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield stub, port
    server.stop(grace=None)


@pytest.mark.parametrize("method, commands", [
    (PROFILE_QUERY, Commands(commands=[Command(command="ProfileTaskQuery", args=[
        KeyStringValuePair(key="TaskId", value="task-42"),
        KeyStringValuePair(key="EndpointName", value="/slow"),
    ])])),
    (FETCH_CONFIGURATIONS, Commands(commands=[Command(command="ConfigurationDiscoveryCommand", args=[
        KeyStringValuePair(key="SerialNumber", value="sn-1"),
        KeyStringValuePair(key="UUID", value="uuid-1"),
        KeyStringValuePair(key="agent.sample_n_per_3_secs", value="7"),
    ])])),
], ids=["getProfileTaskCommands", "fetchConfigurations"])
def test_query_is_forwarded_with_authentication_and_answered_by_the_oap(relay_factory, stub_oap,
                                                                         method: str, commands: Commands):
    stub, port = stub_oap
    stub.answers[packaged(method)] = commands.SerializeToString()
    relay = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}"}).start()
    query = dict(QUERIES)[method]

    answer = unary(relay, packaged(method), query, metadata=[("authentication", "s3cret")])

    assert answer.commands() == commands, "the agent must receive the OAP's Commands"
    [received] = stub.calls_to(packaged(method))
    assert received.requests == [query], "the query must reach the OAP byte-identical"
    assert received.metadata.get("authentication") == "s3cret", received.metadata


def test_event_stream_is_forwarded_byte_identical(relay_factory, stub_oap):
    stub, port = stub_oap
    relay = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}"}).start()
    events = [event("Start"), event("Reload"), event("Shutdown")]

    assert_ok(stream(relay, packaged(EVENTS), events, metadata=[("authentication", "tok")]))
    second = [event("Again")]
    assert_ok(stream(relay, packaged(EVENTS), second))  # another agent connection

    first_call, second_call = stub.calls_to(packaged(EVENTS))
    assert first_call.requests == events
    assert first_call.metadata.get("authentication") == "tok"
    assert second_call.requests == second
    assert "authentication" not in second_call.metadata, "one agent's token must not leak to another's call"
    assert first_call.peer == second_call.peer, "calls share one connection to the OAP"


def test_oap_refusal_of_a_data_call_is_passed_through(relay_factory, stub_oap):
    stub, port = stub_oap
    stub.failures[packaged(EVENTS)] = (grpc.StatusCode.PERMISSION_DENIED, "bad token")
    stub.failures[packaged(CLR)] = (grpc.StatusCode.PERMISSION_DENIED, "bad token")
    relay = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}"}).start()

    streamed = stream(relay, packaged(EVENTS), [event("Start")], metadata=[("authentication", "wrong")])
    single = call(relay.grpc_address, packaged(CLR), DATA_CALLS[1][2], streaming=False,
                  metadata=[("authentication", "wrong")])

    assert streamed.status == grpc.StatusCode.PERMISSION_DENIED, f"{streamed.status}: {streamed.details}"
    assert single.status == grpc.StatusCode.PERMISSION_DENIED, f"{single.status}: {single.details}"
    assert len(stub.calls_to(packaged(EVENTS))) == 1 and len(stub.calls_to(packaged(CLR))) == 1


def test_unreachable_oap_answers_queries_empty_and_aborts_data_calls(relay_factory):
    nobody = free_loopback_port()
    relay = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{nobody}"}).start()

    for method in (PROFILE_QUERY, FETCH_CONFIGURATIONS):
        query = unary(relay, packaged(method), dict(QUERIES)[method])
        assert query.commands() == Commands(), f"{method}: with the OAP down the answer is 'nothing new'"
    for method, streaming, messages in DATA_CALLS:
        data = call(relay.grpc_address, packaged(method), messages, streaming)
        # ABORTED: agents log it but, unlike UNAVAILABLE/UNKNOWN/RESOURCE_EXHAUSTED, keep tracing.
        assert data.status == grpc.StatusCode.ABORTED, f"{method}: {data.status}: {data.details}"
        assert re.search(r"unreachable|(could not|cannot|can't) reach", data.details, re.IGNORECASE), (
            f"{method}: the message should say the OAP is unreachable: {data.details!r}")


def test_meter_stream_fields_may_come_from_any_element(relay: Relay, topic):
    """The OAP's MeterProcessor takes service, instance and time from whichever element has them."""
    instance = unique("spread")
    elements = [meter_single("a", 1.0, timestamp=now_millis()),
                meter_single("b", 2.0, service="calls-svc"),
                meter_single("c", 3.0, instance=instance)]

    assert_ok(stream(relay, packaged(METER_COLLECT), [e.SerializeToString() for e in elements]))

    [record] = records_where(topic(METERS), keyed(instance), 1, f"the meter data set of {instance}")
    assert list(MeterDataCollection.FromString(record.value).meterData) == elements


@pytest.mark.parametrize("method", [METER_BATCH, LOG_COLLECT])
def test_calls_without_a_compat_form_are_unimplemented_unpackaged(relay: Relay, method: str):
    answer = stream(relay, compat(method), [])

    assert answer.status == grpc.StatusCode.UNIMPLEMENTED, f"{answer.status}: {answer.details}"
