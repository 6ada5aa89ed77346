"""A plain grpcio client (what every gRPC stack speaks) against the relay's agent endpoint.

Messages are built with the SkyWalking agent's generated classes and sent as raw bytes,
so malformed payloads can be sent too.
"""

import re
import socket
import time
import urllib.parse
import uuid
from typing import Iterable, Optional

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ResponseReceived, TrailersReceived
from skywalking.protocol.common.Command_pb2 import Commands

from conftest import KafkaTopicReader, Relay, decode_segment, encode_segment, encode_segment_collection

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
COLLECT_IN_SYNC = "/skywalking.v3.TraceSegmentReportService/collectInSync"
COMPAT_COLLECT = "/TraceSegmentReportService/collect"
CALL_TIMEOUT = 15


def new_trace_id() -> str:
    return uuid.uuid4().hex


def stream(relay: Relay, path: str, messages: Iterable[bytes],
           compression: Optional[grpc.Compression] = None) -> tuple[grpc.StatusCode, str, Optional[bytes]]:
    """One client-streaming call; returns (status, details, response bytes when OK)."""
    with grpc.insecure_channel(relay.grpc_address) as channel:
        call = channel.stream_unary(path)  # no serializers: bytes go on the wire as they are
        try:
            response = call(iter(list(messages)), timeout=CALL_TIMEOUT, compression=compression)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", None
        return grpc.StatusCode.OK, "", response


def unary(relay: Relay, path: str, message: bytes) -> tuple[grpc.StatusCode, str, Optional[bytes]]:
    with grpc.insecure_channel(relay.grpc_address) as channel:
        try:
            response = channel.unary_unary(path)(message, timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", None
        return grpc.StatusCode.OK, "", response


def assert_ok(result: tuple[grpc.StatusCode, str, Optional[bytes]]) -> None:
    status, details, response = result
    assert status == grpc.StatusCode.OK, f"{status}: {details}"
    Commands.FromString(response)  # the answer must be a (normally empty) Commands


def wait_for_traces(reader: KafkaTopicReader, trace_ids: set[str], timeout: float = 30) -> dict[str, list]:
    """Waits until every trace id has a record; returns the matching records by trace id."""
    wanted = {trace_id.encode() for trace_id in trace_ids}
    reader.read_until(lambda records: wanted <= {r.key for r in records}, timeout,
                      f"records keyed {sorted(trace_ids)}")
    found: dict[str, list] = {}
    for record in reader.records:
        if record.key in wanted:
            found.setdefault(record.key.decode(), []).append(record)
    return found


def test_valid_stream_is_acknowledged_and_published(relay: Relay, segments_reader: KafkaTopicReader):
    trace_ids = [new_trace_id() for _ in range(3)]
    segments = [encode_segment(t, f"{t}.seg", ("/interop/valid",)) for t in trace_ids]

    assert_ok(stream(relay, COLLECT, segments))

    found = wait_for_traces(segments_reader, set(trace_ids))
    for trace_id, segment in zip(trace_ids, segments):
        assert [r.value for r in found[trace_id]] == [segment], "value must be the exact bytes sent"


def test_unknown_method_is_unimplemented(relay: Relay):
    status, details, _ = stream(relay, "/skywalking.v3.Nope/x", [b""])
    stream(relay, "/skywalking.v3.Nope/x", [b""])

    assert status == grpc.StatusCode.UNIMPLEMENTED, f"{status}: {details}"
    assert "/skywalking.v3.Nope/x" in details
    metrics = relay.http_text("/metrics")
    assert 'relay_grpc_unknown_calls_total{path="/skywalking.v3.Nope/x"} 2' in metrics, metrics


def test_gzip_request_is_accepted_as_the_oap_accepts_it(relay: Relay, segments_reader: KafkaTopicReader):
    """A grpcio client with gzip on (a gateway or a Java agent with compression configured): the OAP's
    grpc-java server inflates it, so the relay does too and publishes the plain segment bytes."""
    trace_id = new_trace_id()
    segment = encode_segment(trace_id, "gzip", ("/interop/gzip",), padding=512)

    assert_ok(stream(relay, COLLECT, [segment], compression=grpc.Compression.Gzip))

    found = wait_for_traces(segments_reader, {trace_id})
    assert [record.value for record in found[trace_id]] == [segment]


def test_an_unknown_grpc_encoding_is_refused_unimplemented_naming_what_is_accepted(relay: Relay):
    """A sender with an encoding the OAP does not decode either (snappy) learns it before its body is read."""
    host, port = relay.grpc_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        h2 = H2Connection(H2Configuration(client_side=True))
        h2.initiate_connection()
        h2.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", COLLECT),
                            (":authority", "relay"), ("content-type", "application/grpc"),
                            ("te", "trailers"), ("grpc-encoding", "snappy")], end_stream=True)
        connection.sendall(h2.data_to_send())
        headers: dict[str, str] = {}
        deadline = time.monotonic() + 10
        while "grpc-status" not in headers and time.monotonic() < deadline:
            for event in h2.receive_data(connection.recv(65536)):
                if isinstance(event, (ResponseReceived, TrailersReceived)):
                    headers.update({k.decode(): v.decode() for k, v in event.headers})
    assert headers.get("grpc-status") == str(grpc.StatusCode.UNIMPLEMENTED.value[0]), headers
    assert "grpc-encoding snappy is not supported" in urllib.parse.unquote(headers.get("grpc-message", ""))
    assert "gzip" in headers.get("grpc-accept-encoding", "")


@pytest.mark.parametrize("path", [COLLECT, COMPAT_COLLECT])
def test_keys_are_trace_ids_and_one_trace_shares_a_partition(relay: Relay, segments_reader: KafkaTopicReader,
                                                              path: str):
    trace_ids = [new_trace_id() for _ in range(6)]
    segments = [encode_segment(t, f"{t}.{n}") for t in trace_ids for n in range(3)]

    assert_ok(stream(relay, path, segments))

    segments_reader.read_until(
        lambda records: sum(r.key in {t.encode() for t in trace_ids} for r in records) >= len(segments),
        30, "all 18 segments")
    found = wait_for_traces(segments_reader, set(trace_ids))
    for trace_id, records in found.items():
        assert len({r.partition for r in records}) == 1, f"{trace_id} spread over partitions"
        assert {decode_segment(r.value).traceSegmentId for r in records} == {f"{trace_id}.{n}" for n in range(3)}
