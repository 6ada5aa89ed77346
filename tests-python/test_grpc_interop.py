"""A plain grpcio client (what every gRPC stack speaks) against the relay's agent endpoint.

Messages are built with the SkyWalking agent's generated classes and sent as raw bytes,
so malformed payloads can be sent too.
"""

import re
import uuid
from typing import Iterable, Optional

import grpc
import pytest
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


def test_empty_stream_is_acknowledged(relay: Relay):
    assert_ok(stream(relay, COLLECT, []))


def test_malformed_message_is_rejected_and_valid_ones_published(relay: Relay,
                                                                 segments_reader: KafkaTopicReader):
    first, second = new_trace_id(), new_trace_id()
    messages = [encode_segment(first, "s1"), b"\xff\xff", encode_segment(second, "s2")]

    status, details, _ = stream(relay, COLLECT, messages)

    assert status == grpc.StatusCode.INVALID_ARGUMENT, f"{status}: {details}"
    assert re.search(r"reject\w*\s+1\b|\b1\b\D*reject", details, re.IGNORECASE), (
        f"details should report 1 rejected: {details!r}")
    found = wait_for_traces(segments_reader, {first, second})
    assert {decode_segment(found[first][0].value).traceSegmentId,
            decode_segment(found[second][0].value).traceSegmentId} == {"s1", "s2"}


def test_segment_without_trace_id_is_rejected(relay: Relay):
    status, details, _ = stream(relay, COLLECT, [encode_segment("", "no-trace")])

    assert status == grpc.StatusCode.INVALID_ARGUMENT, f"{status}: {details}"


def test_unknown_method_is_unimplemented(relay: Relay):
    status, details, _ = stream(relay, "/skywalking.v3.Nope/x", [b""])
    stream(relay, "/skywalking.v3.Nope/x", [b""])

    assert status == grpc.StatusCode.UNIMPLEMENTED, f"{status}: {details}"
    assert "/skywalking.v3.Nope/x" in details
    metrics = relay.http_text("/metrics")
    assert 'relay_grpc_unknown_calls_total{path="/skywalking.v3.Nope/x"} 2' in metrics, metrics


def test_collect_in_sync_publishes_every_segment(relay: Relay, segments_reader: KafkaTopicReader):
    trace_ids = [new_trace_id() for _ in range(3)]
    collection = encode_segment_collection([encode_segment(t, f"{t}.seg") for t in trace_ids])

    assert_ok(unary(relay, COLLECT_IN_SYNC, collection))

    found = wait_for_traces(segments_reader, set(trace_ids))
    assert {t: len(records) for t, records in found.items()} == {t: 1 for t in trace_ids}
    for trace_id, records in found.items():
        assert decode_segment(records[0].value).traceId == trace_id


def test_compat_path_without_package_is_served(relay: Relay, segments_reader: KafkaTopicReader):
    trace_id = new_trace_id()

    assert_ok(stream(relay, COMPAT_COLLECT, [encode_segment(trace_id, "compat")]))

    found = wait_for_traces(segments_reader, {trace_id})
    assert decode_segment(found[trace_id][0].value).traceSegmentId == "compat"


def test_message_over_the_size_limit_is_resource_exhausted(relay_factory):
    relay = relay_factory(extra_env={"SW_RELAY_GRPC_MAX_MESSAGE_BYTES": "1024"}).start()
    oversized = encode_segment(new_trace_id(), "big", padding=2048)
    assert len(oversized) > 1024

    status, details, _ = stream(relay, COLLECT, [oversized])

    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{status}: {details}"


def test_gzip_request_is_accepted_or_refused_cleanly(relay: Relay, segments_reader: KafkaTopicReader):
    trace_id = new_trace_id()
    segment = encode_segment(trace_id, "gzip", ("/interop/gzip",), padding=512)

    status, details, _ = stream(relay, COLLECT, [segment], compression=grpc.Compression.Gzip)

    assert status in {grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED}, f"{status}: {details}"
    if status == grpc.StatusCode.OK:
        found = wait_for_traces(segments_reader, {trace_id})
        assert found[trace_id][0].value == segment, "the record must hold the decompressed message"


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
