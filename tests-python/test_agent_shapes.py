"""The call shapes of the agents we cannot install here, rebuilt with grpcio from what their
sources do (see ../shared/reference/skywalking-protocol.md):

- the Go agent keeps one segment stream and one log stream open for its whole life, one message
  at a time, with long silences;
- the Java agent 9.4+ polls the v10 async-profiler task query and uploads over a bidirectional
  stream, waiting for the OAP's first answer before sending the content;
- Rust and PHP agents keep a meter stream open across reports, and a stream can end by reset;
- browser, service-mesh and eBPF clients call services that have no row in the relay's table;
- a big segment (a long trace from any agent) can exceed what Kafka takes.
"""

from __future__ import annotations

import queue
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import grpc
import pytest
from skywalking.protocol.common.Command_pb2 import Command, Commands
from skywalking.protocol.common.Common_pb2 import KeyStringValuePair
from skywalking.protocol.language_agent.Meter_pb2 import MeterData, MeterDataCollection, MeterSingleValue
from skywalking.protocol.logging.Logging_pb2 import LogData, LogDataBody, TextLog

from conftest import KafkaTopicReader, MockKafka, Relay, ci_or_long, decode_segment, encode_segment
from raw_http2 import RST_STREAM, RawHTTP2Client, frame, grpc_message
from test_operations import metric_value
from test_security import _leaf, certificate_authority

SEGMENT_COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
LOG_COLLECT = "/skywalking.v3.LogReportService/collect"
METER_COLLECT = "/skywalking.v3.MeterReportService/collect"
ASYNC_PROFILER_QUERY = "/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands"
ASYNC_PROFILER_COLLECT = "/skywalking.v10.AsyncProfilerTask/collect"
BROWSER_PERF = "/skywalking.v3.BrowserPerfService/collectPerfData"
MESH_METRICS = "/skywalking.v3.ServiceMeshMetricService/collect"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
CALL_TIMEOUT = 15


class OpenStream:
    """A client stream that stays open until `close()`: each `send` goes out as one message,
    as the Go agent's reporter sends one element at a time on its life-long stream."""

    def __init__(self, channel: grpc.Channel, path: str) -> None:
        self._messages: queue.Queue[Optional[bytes]] = queue.Queue()
        self.future = channel.stream_unary(path).future(self._requests())

    def _requests(self) -> Iterator[bytes]:
        # Bounded, so a test that fails before close() cannot leave grpcio's thread blocked.
        while (message := self._messages.get(timeout=180)) is not None:
            yield message

    def send(self, message: bytes) -> None:
        self._messages.put(message)

    def close(self) -> None:
        self._messages.put(None)

    def still_open_after(self, seconds: float) -> bool:
        """Waits `seconds` for the call to end; True when it is still open after them."""
        try:
            self.future.exception(timeout=seconds)
        except grpc.FutureTimeoutError:
            return True
        return False


def go_log(text: str, service: str = "") -> bytes:
    return LogData(service=service, body=LogDataBody(text=TextLog(text=text))).SerializeToString()


# The Go agent's silence, and the timers it must outlive: under scripts/long-tests.sh the
# relay's defaults (a keepalive ping after 60 s of quiet, GOAWAY after 300 s without a call) and
# a 65 s silence; in CI the same timers compressed, so the silence still spans two keepalive
# pings and twice the connection idle timeout.
SILENCE_S = ci_or_long(12, 65)
SILENCE_TIMERS = ci_or_long({"SW_RELAY_GRPC_KEEPALIVE_S": "5", "SW_RELAY_GRPC_IDLE_TIMEOUT_S": "5"}, {})


@pytest.mark.long
def test_go_agent_streams_live_through_a_minute_of_silence_and_are_answered_ok_on_shutdown(
        relay_factory: Callable[..., Relay], segments_reader: KafkaTopicReader, mock_kafka: MockKafka):
    """Go agent: one segment stream and one log stream for the agent's whole life. A quiet
    minute must not cancel them (the OAP sets no idle limit; neither keepalive pings nor the
    connection idle timeout may end a connection with open calls), every segment must be in Kafka
    while the stream is still open, and a relay shutdown must answer the stream OK once what it
    sent is durable, so the agent reconnects without losing or resending anything."""
    relay = relay_factory(extra_env=SILENCE_TIMERS).start()
    logs = KafkaTopicReader(mock_kafka.bootstrap_servers, "skywalking-logs")
    channel = grpc.insecure_channel(relay.grpc_address)
    try:
        segments = OpenStream(channel, SEGMENT_COLLECT)
        log_stream = OpenStream(channel, LOG_COLLECT)
        segments.send(encode_segment("go-trace-1", "go-seg-1"))
        log_stream.send(go_log("started", service="go-svc"))
        segments_reader.read_until(lambda records: len(records) >= 1, 30, "the first segment")
        logs.read_until(lambda records: len(records) >= 1, 30, "the first log")

        assert segments.still_open_after(SILENCE_S) and log_stream.still_open_after(0), (
            "a quiet stream was ended by the relay: "
            f"{segments.future.exception(timeout=0) if segments.future.done() else log_stream.future.exception(timeout=0)}")

        segments.send(encode_segment("go-trace-2", "go-seg-2"))
        segments.send(encode_segment("go-trace-3", "go-seg-3"))
        log_stream.send(go_log("after the silence"))
        records = segments_reader.read_until(lambda records: len(records) >= 3, 30, "segments after the silence")
        assert {decode_segment(r.value).traceSegmentId for r in records} == {"go-seg-1", "go-seg-2", "go-seg-3"}
        [_, later_log] = logs.read_until(lambda records: len(records) >= 2, 30, "the log after the silence")
        assert LogData.FromString(later_log.value).service == "go-svc", "a later log inherits the stream's service"
        assert not segments.future.done(), "the stream must still be open while its segments are readable"

        stopping = threading.Thread(target=relay.stop)
        stopping.start()
        assert Commands.FromString(segments.future.result(timeout=CALL_TIMEOUT)) == Commands()
        assert Commands.FromString(log_stream.future.result(timeout=CALL_TIMEOUT)) == Commands()
        stopping.join(timeout=30)
        assert relay.process.returncode == 0, relay.log_tail()
    finally:
        segments.close()
        log_stream.close()
        channel.close()
        logs.close()


# --------------------------------------------------------------------------- a stub OAP


@dataclass
class StreamingStubOAP:
    """A grpcio server standing in for the OAP, with raw bytes in and out:
    - the async-profiler collect stream answers each request as it arrives (bidirectional);
    - every other path answers once its request stream ends, echoing what it received.
    """

    commands: bytes = field(default_factory=lambda: Commands(commands=[Command(
        command="AsyncProfilerTaskQuery", args=[KeyStringValuePair(key="TaskId", value="ap-1")])]).SerializeToString())
    received: dict[str, list[bytes]] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, message: bytes, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.received.setdefault(path, []).append(message)
            self.metadata[path] = dict(context.invocation_metadata())

    def service(self, details: grpc.HandlerCallDetails):
        path = details.method

        def bidirectional(requests, context):
            for index, request in enumerate(requests):
                self.record(path, request, context)
                yield b"answer-%d:" % index + request

        def whole(requests, context):
            for request in requests:
                self.record(path, request, context)
            context.set_trailing_metadata((("oap-trailer", "seen"),))
            if path == ASYNC_PROFILER_QUERY:
                return self.commands
            return b"echo:" + b"|".join(self.received.get(path, []))

        if path == ASYNC_PROFILER_COLLECT:
            return grpc.stream_stream_rpc_method_handler(bidirectional)
        return grpc.stream_unary_rpc_method_handler(whole)


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, stub: StreamingStubOAP) -> None:
        self.stub = stub

    def service(self, handler_call_details):
        return self.stub.service(handler_call_details)


def start_stub(stub: StreamingStubOAP, credentials: Optional[grpc.ServerCredentials] = None
               ) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_Handler(stub),))
    port = (server.add_secure_port("127.0.0.1:0", credentials) if credentials
            else server.add_insecure_port("127.0.0.1:0"))
    server.start()
    return server, port


@pytest.fixture
def streaming_oap() -> Iterator[tuple[StreamingStubOAP, int]]:
    stub = StreamingStubOAP()
    server, port = start_stub(stub)
    yield stub, port
    server.stop(grace=None)


def test_java_async_profiler_upload_is_bidirectional_through_the_relay(relay_factory, streaming_oap):
    """Java agent 9.4+: the async-profiler upload sends its metadata, waits for the OAP's first
    answer on the same open stream, then sends the content. Buffering the call until the agent
    half-closes would deadlock it; the relay must pass each message through as it arrives."""
    stub, port = streaming_oap
    relay = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}"}).start()
    requests: queue.Queue[Optional[bytes]] = queue.Queue()

    def request_stream() -> Iterator[bytes]:
        while (message := requests.get(timeout=60)) is not None:
            yield message

    with grpc.insecure_channel(relay.grpc_address) as channel:
        call = channel.stream_stream(ASYNC_PROFILER_COLLECT)(
            request_stream(), timeout=CALL_TIMEOUT, metadata=[("authentication", "java-token")])
        requests.put(b"metadata:task=ap-1")
        first = next(call)
        assert first == b"answer-0:metadata:task=ap-1", first
        requests.put(b"jfr-content")
        requests.put(None)
        rest = list(call)
        assert rest == [b"answer-1:jfr-content"], rest
        assert call.code() == grpc.StatusCode.OK
    assert stub.received[ASYNC_PROFILER_COLLECT] == [b"metadata:task=ap-1", b"jfr-content"]
    assert stub.metadata[ASYNC_PROFILER_COLLECT].get("authentication") == "java-token"


def test_async_profiler_poll_is_answered_by_the_oap_or_with_empty_commands(relay_factory, streaming_oap):
    """Java agent 9.4+ polls getAsyncProfilerTaskCommands every 20 s and switches async-profiler
    off for the JVM's life on UNIMPLEMENTED: with an OAP it gets the OAP's tasks, without one an
    empty Commands."""
    stub, port = streaming_oap
    with_oap = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}"}).start()
    without_oap = relay_factory().start()
    for relay, expected in ((with_oap, Commands.FromString(stub.commands)), (without_oap, Commands())):
        with grpc.insecure_channel(relay.grpc_address) as channel:
            answer = channel.unary_unary(ASYNC_PROFILER_QUERY)(b"\x0a\x04java", timeout=CALL_TIMEOUT)
        assert Commands.FromString(answer) == expected


@pytest.mark.parametrize("path", [BROWSER_PERF, MESH_METRICS])
def test_services_without_a_table_row_reach_the_oap_with_metadata_and_trailers(relay_factory, streaming_oap, path):
    """Browser (BrowserPerfService), service-mesh and eBPF clients call services the relay has no
    row for: they reach the OAP byte for byte, and the OAP's answer and trailers come back."""
    stub, port = streaming_oap
    relay = relay_factory(extra_env={"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}"}).start()
    with grpc.insecure_channel(relay.grpc_address) as channel:
        response, call = channel.stream_unary(path).with_call(
            iter([b"first", b"second"]), timeout=CALL_TIMEOUT, metadata=[("x-client", "browser")])
    assert response == b"echo:first|second"
    assert stub.metadata[path].get("x-client") == "browser"
    assert ("oap-trailer", "seen") in tuple(call.trailing_metadata()), call.trailing_metadata()


def test_services_without_a_table_row_name_the_variable_without_an_oap(relay: Relay):
    """Without SW_RELAY_OAP_ADDRESS a browser or mesh client learns what to configure."""
    with grpc.insecure_channel(relay.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(BROWSER_PERF)(b"page", timeout=CALL_TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "SW_RELAY_OAP_ADDRESS" in refused.value.details()


# --------------------------------------------------------------------------- TLS to the OAP


@pytest.fixture
def oap_pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, an OAP certificate valid only for the name oap.test, and a relay client certificate."""
    directory = tmp_path / "oap-pki"
    directory.mkdir()
    ca, ca_key = certificate_authority(directory, "oap-test-ca")
    server_cert, server_key = _leaf(directory, "oap", ca, ca_key,
                                    "subjectAltName=DNS:oap.test\nextendedKeyUsage=serverAuth\n")
    client_cert, client_key = _leaf(directory, "relay", ca, ca_key, "extendedKeyUsage=clientAuth\n")
    return {"ca": ca, "server_cert": server_cert, "server_key": server_key,
            "client_cert": client_cert, "client_key": client_key}


def test_oap_link_over_mutual_tls(relay_factory, oap_pki):
    """An OAP with gRPCSslEnabled and client verification, reached by an address that is not its
    certificate's name: the relay checks the certificate against SW_RELAY_OAP_TLS_SERVER_NAME,
    presents its own, and the query is answered by the OAP. A relay without the client
    certificate is refused by the OAP, so the agent's poll gets the 'nothing new' answer."""
    stub = StreamingStubOAP()
    credentials = grpc.ssl_server_credentials(
        [(oap_pki["server_key"].read_bytes(), oap_pki["server_cert"].read_bytes())],
        root_certificates=oap_pki["ca"].read_bytes(), require_client_auth=True)
    server, port = start_stub(stub, credentials)
    try:
        tls = {"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}", "SW_RELAY_OAP_TLS": "on",
               "SW_RELAY_OAP_TLS_CA": str(oap_pki["ca"]), "SW_RELAY_OAP_TLS_SERVER_NAME": "oap.test"}
        mutual = relay_factory(extra_env={**tls, "SW_RELAY_OAP_TLS_CERT": str(oap_pki["client_cert"]),
                                          "SW_RELAY_OAP_TLS_KEY": str(oap_pki["client_key"])}).start()
        without_client_cert = relay_factory(extra_env=tls).start()

        with grpc.insecure_channel(mutual.grpc_address) as channel:
            answer = channel.unary_unary(ASYNC_PROFILER_QUERY)(b"\x0a\x04java", timeout=CALL_TIMEOUT)
        assert Commands.FromString(answer) == Commands.FromString(stub.commands)
        calls_so_far = len(stub.received.get(ASYNC_PROFILER_QUERY, []))

        with grpc.insecure_channel(without_client_cert.grpc_address) as channel:
            answer = channel.unary_unary(ASYNC_PROFILER_QUERY)(b"\x0a\x04java", timeout=CALL_TIMEOUT)
        assert Commands.FromString(answer) == Commands(), "an OAP that refuses the handshake is unreachable"
        assert len(stub.received.get(ASYNC_PROFILER_QUERY, [])) == calls_so_far
    finally:
        server.stop(grace=None)


# --------------------------------------------------------------------------- size limits


def test_a_segment_bigger_than_kafka_takes_is_refused_not_acknowledged(relay: Relay,
                                                                      segments_reader: KafkaTopicReader):
    """A 2 MiB segment (a long trace from any agent) is more than a default broker takes: it must
    be refused at ingest naming the limit and the variable, while the call's other segments are
    still queued, instead of being acknowledged and dead-lettered."""
    big = encode_segment("big-trace", "big-seg", operations=("/" + "x" * (2 << 20),))
    small = encode_segment("small-trace", "small-seg")
    with grpc.insecure_channel(relay.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            channel.stream_unary(SEGMENT_COLLECT)(iter([small, big]), timeout=CALL_TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details()
    assert "too_large" in details and "SW_RELAY_KAFKA_MAX_RECORD_BYTES" in details and "1000000" in details, details
    [record] = segments_reader.read_until(lambda records: len(records) >= 1, 30, "the small segment")
    assert decode_segment(record.value).traceSegmentId == "small-seg"
    assert metric_value(relay.http_text("/metrics"), "relay_rejected_total", type="segment",
                        reason="too_large") == 1


def test_a_raised_record_limit_delivers_the_big_segment(relay_factory, segments_reader: KafkaTopicReader):
    """An operator who raised the broker's and the OAP's limits raises the relay's too: the same
    2 MiB segment is then acknowledged and delivered whole."""
    relay = relay_factory(extra_env={"SW_RELAY_KAFKA_MAX_RECORD_BYTES": "4MiB"}).start()
    big = encode_segment("big-trace", "big-seg", operations=("/" + "x" * (2 << 20),))
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(SEGMENT_COLLECT)(iter([big]), timeout=CALL_TIMEOUT)
    [record] = segments_reader.read_until(lambda records: len(records) >= 1, 30, "the big segment")
    assert record.value == big


# --------------------------------------------------------------------------- meter streams


def meter(name: str, value: float, identity: bool) -> bytes:
    data = MeterData(singleValue=MeterSingleValue(name=name, value=value))
    if identity:
        data.service, data.serviceInstance, data.timestamp = "rust-svc", "rust-1", 1_717_000_000_000
    return data.SerializeToString()


def test_a_reset_meter_stream_is_still_published(relay: Relay, mock_kafka: MockKafka):
    """Rust/PHP agents keep MeterReportService/collect open across reports; the OAP processes a
    meter stream's elements when it ends, completed or reset. A stream reset after three
    elements (sent in order before the RST_STREAM on one connection) must still publish them."""
    meters = KafkaTopicReader(mock_kafka.bootstrap_servers, "skywalking-meters")
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        client.open_stream(METER_COLLECT)
        for index in range(3):
            client.data(grpc_message(meter(f"m{index}", index, identity=index == 0)))
        client.send(frame(RST_STREAM, 0, 1, (8).to_bytes(4, "big")))  # CANCEL
        [record] = meters.read_until(lambda records: len(records) >= 1, 30, "the reset stream's meters")
        collection = MeterDataCollection.FromString(record.value)
        assert [m.singleValue.name for m in collection.meterData] == ["m0", "m1", "m2"]
        assert record.key == b"rust-1"
    finally:
        client.close()
        meters.close()


def test_a_long_meter_stream_is_cut_into_complete_collections(relay: Relay, mock_kafka: MockKafka):
    """A meter stream that stays open for hours must not grow without bound: past about a record's
    size the relay publishes a complete MeterDataCollection, each one carrying the service,
    instance and timestamp the agent named only on the first element."""
    meters = KafkaTopicReader(mock_kafka.bootstrap_servers, "skywalking-meters")
    label = "l" * 1000
    elements = [meter(f"m{index}-{label}", index, identity=index == 0) for index in range(2000)]
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(METER_COLLECT)(iter(elements), timeout=CALL_TIMEOUT)
    records = meters.read_until(lambda records: sum(
        len(MeterDataCollection.FromString(r.value).meterData) for r in records) >= 2000, 30, "every element")
    assert len(records) >= 2, "about 2 MB of meters must become more than one collection"
    for record in records:
        assert len(record.value) <= 1_000_000
        collection = MeterDataCollection.FromString(record.value)
        first = collection.meterData[0]
        assert (first.service, first.serviceInstance, first.timestamp) == ("rust-svc", "rust-1", 1_717_000_000_000)
        assert record.key == b"rust-1"
    meters.close()


# --------------------------------------------------------------------------- health


def test_grpc_health_check_and_watch_report_the_relays_readiness(relay: Relay):
    """Kubernetes `grpc:` probes and load balancers call grpc.health.v1.Health on the agent port:
    the relay answers with its own readiness (SERVING), never an OAP's, and Watch keeps
    streaming until the relay shuts down, when it reports NOT_SERVING."""
    serving, not_serving = b"\x08\x01", b"\x08\x02"
    with grpc.insecure_channel(relay.grpc_address) as channel:
        assert channel.unary_unary(HEALTH_CHECK)(b"", timeout=CALL_TIMEOUT) == serving
        watch = channel.unary_stream(HEALTH_WATCH)(b"", timeout=60)
        assert next(watch) == serving
        stopping = threading.Thread(target=relay.stop)
        stopping.start()
        assert next(watch) == not_serving
        assert list(watch) == []
        stopping.join(timeout=30)
