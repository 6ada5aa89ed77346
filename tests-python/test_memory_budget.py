"""One memory budget for what clients' data holds before it is a record (SW_RELAY_CLIENT_MEMORY_BYTES).

Each test stands for an attacker on loopback who holds the relay's memory with data that never
becomes a record: gRPC messages declared huge and never finished, HTTP bodies sent slowly. Before
the budget, 8 streams x 30 MiB took the relay from 29 to 336 MiB in 3 s. Meanwhile an agent on
another connection (a grpcio client shaped like the Java agent's segment stream) must keep being
served.
"""

from __future__ import annotations

import select
import socket
import struct
import time
import uuid
from typing import Callable

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ResponseReceived, StreamReset, TrailersReceived, WindowUpdated

from conftest import KafkaTopicReader, Relay, encode_segment
from reliability_support import rss_bytes
from test_operations import metric_value

pytestmark = pytest.mark.timeout(120)

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
MIB = 1 << 20
# A small budget, so the attack's reach is plain: 64 MiB in all, one 32 MiB message per connection.
BUDGET_ENV = {"SW_RELAY_CLIENT_MEMORY_BYTES": "64MiB", "SW_RELAY_GRPC_MAX_MESSAGE_BYTES": "32MiB"}
ATTACK_SECONDS = 8


class UnfinishedMessages:
    """An attacker's connection: `streams` gRPC streams, each declaring one message of `declared`
    bytes and sending all that flow control lets through, never the last byte."""

    def __init__(self, port: int, streams: int, declared: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.h2 = H2Connection(H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.remaining: dict[int, int] = {}
        self.refused: dict[int, str] = {}
        for index in range(streams):
            stream = 1 + 2 * index
            self.h2.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", COLLECT),
                                          (":authority", "relay"), ("content-type", "application/grpc"),
                                          ("te", "trailers")])
            self.h2.send_data(stream, b"\x00" + struct.pack(">I", declared))
            self.remaining[stream] = declared - 1
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        while data:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                select.select([], [self.sock], [], 0.05)
                continue
            data = data[sent:]

    def pump(self) -> None:
        """Sends what the windows allow, then reads what the relay said."""
        for stream in list(self.remaining):
            while stream not in self.refused:
                size = min(self.remaining[stream], self.h2.local_flow_control_window(stream),
                           self.h2.max_outbound_frame_size)
                if size <= 0:
                    break
                self.h2.send_data(stream, bytes(size))
                self.remaining[stream] -= size
        self.flush()
        readable, _, _ = select.select([self.sock], [], [], 0.01)
        if readable:
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, ConnectionError):
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, (ResponseReceived, TrailersReceived)):
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                    if "grpc-status" in headers:
                        self.refused[event.stream_id] = headers["grpc-status"]
                elif isinstance(event, StreamReset):
                    self.refused.setdefault(event.stream_id, "reset")
                elif isinstance(event, WindowUpdated):
                    pass
            self.flush()

    def close(self) -> None:
        self.sock.close()


def agent_segment(relay: Relay, trace_id: str) -> grpc.StatusCode:
    """One Java-agent-shaped segment stream on its own connection."""
    with grpc.insecure_channel(relay.grpc_address) as channel:
        collect = channel.stream_unary(COLLECT)
        try:
            collect(iter([encode_segment(trace_id, f"{trace_id}.0")]), timeout=15)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()


def test_unfinished_huge_messages_stay_within_the_budget_while_agents_are_served(
        relay_factory: Callable[..., Relay], segments_reader: KafkaTopicReader):
    relay = relay_factory(extra_env=BUDGET_ENV).start()
    port = int(relay.grpc_address.rsplit(":", 1)[1])
    before = rss_bytes(relay.process.pid)
    attackers = [UnfinishedMessages(port, streams=4, declared=30 * MIB) for _ in range(2)]
    served: list[str] = []
    try:
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            for attacker in attackers:
                attacker.pump()
        growth = rss_bytes(relay.process.pid) - before
        refused = sum(len(a.refused) for a in attackers)
        held = sum(1 for a in attackers for s, left in a.remaining.items() if s not in a.refused and left < 29 * MIB)
        trace_id = uuid.uuid4().hex
        assert agent_segment(relay, trace_id) == grpc.StatusCode.OK, "an agent must still be served"
        served.append(trace_id)
    finally:
        for attacker in attackers:
            attacker.close()
    # 8 streams declared 240 MiB; the budget holds 64 MiB: at most two (one per connection) go on.
    assert refused >= 6, f"only {refused} of 8 unfinished 30 MiB messages were refused"
    assert all(status == "8" for a in attackers for status in a.refused.values()), \
        [a.refused for a in attackers]
    assert held <= 2, f"{held} streams kept sending"
    assert growth < 120 * MIB, f"the relay grew by {growth / MIB:.0f} MiB under a 64 MiB budget"
    segments_reader.read_until(lambda records: any(r.key == served[0].encode() for r in records), 30,
                               "the agent's segment in Kafka")


def test_slow_large_bodies_stay_within_the_budget(relay_factory: Callable[..., Relay]):
    """Four HTTP posts of 15 MiB each, sent slowly: the budget refuses what it cannot hold with 503 and
    Retry-After instead of buffering them all."""
    relay = relay_factory(extra_env={"SW_RELAY_CLIENT_MEMORY_BYTES": "32MiB",
                                     "SW_RELAY_GRPC_MAX_MESSAGE_BYTES": "16MiB"}).start()
    host, port = relay.http_address.rsplit(":", 1)
    body_size = 15 * MIB
    sockets = []
    answers: list[bytes] = []
    try:
        for _ in range(4):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"POST /v3/segments HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {body_size}\r\n\r\n".encode() + b"[" + b" " * (12 * MIB))
            sockets.append(sock)
        # The held bodies are never answered: wait for the two refusals, not for a fixed window.
        deadline = time.monotonic() + 10
        waiting = list(sockets)
        while len(answers) < 2 and waiting and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(waiting, [], [], left)
            for sock in readable:
                waiting.remove(sock)
                answers.append(sock.recv(4096))
        metrics = relay.http_text("/metrics")
    finally:
        for sock in sockets:
            sock.close()
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert len(refused) >= 2, answers
    assert all(b"Retry-After" in a and b"SW_RELAY_CLIENT_MEMORY_BYTES" in a for a in refused), refused
    held = metric_value(metrics, "relay_client_memory_held_bytes")
    assert held is not None and held <= 32 * MIB, f"held {held} bytes under a 32 MiB budget"
    assert (metric_value(metrics, "relay_client_memory_refusals_total") or 0) >= 2
