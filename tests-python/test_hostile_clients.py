"""Hostile and broken clients on the gRPC port: garbage, HTTP/1.1, oversized and malformed
messages, 2,000 connections at once, streams never finished, clients that vanish mid-message,
and the connection limit and idle timeouts (SW_RELAY_GRPC_MAX_CONNECTIONS,
SW_RELAY_GRPC_IDLE_TIMEOUT_S, SW_RELAY_GRPC_STREAM_IDLE_TIMEOUT_S).

Each gets a clear status or a closed connection, a well-behaved grpcio client keeps being
served, memory stays bounded, and nothing from a half-sent stream is acknowledged.
"""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import threading
import time
import uuid
from typing import Callable, Iterator, Optional

import grpc
import hpack
import pytest

from conftest import KafkaTopicReader, Relay, encode_segment, wait_for
from raw_http2 import (GOAWAY, HEADERS, PREFACE, RST_STREAM, SETTINGS, RawHTTP2Client, frame, grpc_message,
                       wait_closed)
from reliability_support import COLLECT, RSS_BOUND, SegmentIdCollector, metric, rss_bytes

CONNECTIONS = 2000


def well_behaved_call(relay: Relay, timeout: float = 10) -> tuple[grpc.StatusCode, str]:
    """One normal agent stream on its own connection; returns its status."""
    trace_id = uuid.uuid4().hex
    with grpc.insecure_channel(relay.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            channel.stream_unary(COLLECT)(iter([encode_segment(trace_id, f"{trace_id}.ok")]), timeout=timeout)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, trace_id


def assert_still_serving(relay: Relay) -> None:
    status, details = well_behaved_call(relay)
    assert status == grpc.StatusCode.OK, f"a well-behaved agent was refused: {status} {details}"


def ok_calls(relay: Relay) -> float:
    return metric(relay, "relay_grpc_calls_total", code="ok") or 0


@pytest.fixture
def limited_relay(relay_factory: Callable[..., Relay]) -> Callable[..., Relay]:
    def start(**env: str) -> Relay:
        return relay_factory(extra_env=env).start()
    return start


# --------------------------------------------------------------------------- garbage


def test_garbage_bytes_get_the_connection_closed(relay: Relay):
    with socket.create_connection(("127.0.0.1", relay.grpc_port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00garbage that is no HTTP/2 preface\r\n" * 50)
        assert wait_closed(sock, 5) is not None, "the relay kept a garbage-speaking connection open"
    assert_still_serving(relay)


def test_http1_request_gets_the_connection_closed(relay: Relay):
    with socket.create_connection(("127.0.0.1", relay.grpc_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\n\r\n")
        assert wait_closed(sock, 5) is not None, "the relay kept an HTTP/1.1 connection open"
    assert_still_serving(relay)


def test_message_over_the_size_limit_is_resource_exhausted(limited_relay):
    relay = limited_relay(SW_RELAY_GRPC_MAX_MESSAGE_BYTES="65536")
    oversized = encode_segment("too-big", "too-big.0", padding=100 << 10)
    with grpc.insecure_channel(relay.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.stream_unary(COLLECT)(iter([oversized]), timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, raised.value
    assert_still_serving(relay)


# --------------------------------------------------------------------------- many connections


@pytest.fixture
def many_files() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * CONNECTIONS + 500
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {wanted}: raise it (ulimit -Hn) to run this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield  # the relay, started after this, inherits the raised limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_2000_connections_at_once_while_an_agent_is_served(many_files, relay_factory: Callable[..., Relay]):
    relay = relay_factory().start()
    sockets: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", relay.grpc_port), timeout=10)
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
            sockets.append(sock)
        started = time.monotonic()
        assert_still_serving(relay)
        served_in = time.monotonic() - started
        rss = rss_bytes(relay.process.pid)
        print(f"{CONNECTIONS} connections: agent served in {served_in:.2f} s, relay RSS {rss >> 20} MiB")
        assert rss < RSS_BOUND, f"relay RSS {rss >> 20} MiB with {CONNECTIONS} connections"
    finally:
        for sock in sockets:
            sock.close()
    assert_still_serving(relay)
    assert relay.process.poll() is None


# --------------------------------------------------------------------------- unfinished / vanished


def test_unfinished_stream_is_not_acknowledged_and_others_are_served(relay: Relay):
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        client.open_stream(COLLECT)
        client.data(grpc_message(encode_segment("never-finished", "never-finished.0")))  # no END_STREAM
        wait_for(lambda: (metric(relay, "relay_grpc_active_streams") or 0) >= 1, 10, "the unfinished stream")
        before = ok_calls(relay)
        assert_still_serving(relay)
        assert ok_calls(relay) == before + 1
        frames, closed = client.frames(within=0.5)
        answers = [f for f in frames if f.kind == HEADERS and f.stream == 1]
        assert not answers, f"the relay answered a stream the client never finished: {answers}"
        assert (metric(relay, "relay_grpc_active_streams") or 0) >= 1
    finally:
        client.close()


@pytest.mark.parametrize("complete_messages", [0, 1])
def test_client_vanishing_mid_message_gets_nothing_acknowledged(relay: Relay, segments_reader: KafkaTopicReader,
                                                                complete_messages: int):
    ok_before = ok_calls(relay)
    half_sent = encode_segment("vanished-trace", "vanished.half", padding=2000)
    client = RawHTTP2Client(relay.grpc_port).start()
    client.open_stream(COLLECT)
    for n in range(complete_messages):
        client.data(grpc_message(encode_segment("vanished-trace", f"vanished.full-{n}")))
    client.data(grpc_message(half_sent)[: len(half_sent) // 2])
    wait_for(lambda: (metric(relay, "relay_grpc_active_streams") or 0) >= 1, 10, "the stream to be open")
    client.reset_close()
    wait_for(lambda: (metric(relay, "relay_grpc_active_streams") or 0) == 0, 10,
             "the relay to drop the vanished client's stream")
    assert ok_calls(relay) == ok_before, "a stream whose client vanished was answered OK"

    status, trace_id = well_behaved_call(relay)
    assert status == grpc.StatusCode.OK
    collector = SegmentIdCollector(segments_reader)
    collector.wait_for({f"{trace_id}.ok"}, 30)
    assert "vanished.half" not in collector.update(), "half a message was published"


# --------------------------------------------------------------------------- limits (SW_RELAY_GRPC_*)


def test_connections_beyond_the_limit_are_closed_and_counted(limited_relay):
    relay = limited_relay(SW_RELAY_GRPC_MAX_CONNECTIONS="20")
    sockets = []
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", relay.grpc_port), timeout=5)
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
            sockets.append(sock)

        def closed_count() -> Optional[int]:
            closed = 0
            for sock in sockets:
                if select.select([sock], [], [], 0)[0]:
                    try:
                        if sock.recv(65536, socket.MSG_PEEK) == b"":
                            closed += 1
                        else:
                            sock.recv(65536)  # drain SETTINGS and friends
                    except ConnectionResetError:
                        closed += 1
            return closed if closed >= 10 else None

        closed = wait_for(closed_count, 10, "10 connections beyond the limit of 20 to be closed", interval=0.1)
        assert closed == 10, f"{closed} of 30 connections closed with a limit of 20"
        assert (metric(relay, "relay_grpc_connections_rejected_total") or 0) >= 10
    finally:
        for sock in sockets:
            sock.close()
    wait_for(lambda: well_behaved_call(relay)[0] == grpc.StatusCode.OK, 10,
             "an agent to be served once the connections are gone")


def test_idle_connection_gets_goaway_and_is_closed(limited_relay):
    relay = limited_relay(SW_RELAY_GRPC_IDLE_TIMEOUT_S="1")
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        frames, closed = client.frames(within=6)
        assert closed, "an idle connection (no stream) stayed open past SW_RELAY_GRPC_IDLE_TIMEOUT_S=1"
        assert any(f.kind == GOAWAY for f in frames), f"no GOAWAY before the close: {frames}"
    finally:
        client.close()
    assert_still_serving(relay)


def header_block(headers_frame) -> bytes:
    """The HPACK block of a HEADERS frame, without its padding and priority fields."""
    payload, flags = headers_frame.payload, headers_frame.flags
    pad = payload[0] if flags & 0x8 else 0
    start = (1 if flags & 0x8 else 0) + (5 if flags & 0x20 else 0)
    return payload[start:len(payload) - pad]


def test_silent_stream_is_cancelled_after_the_stream_idle_timeout(limited_relay):
    """Stands for: a hung agent whose stream goes silent mid-call, under the opt-in
    SW_RELAY_GRPC_STREAM_IDLE_TIMEOUT_S: the one end-to-end run of the timeout (the binary's
    variable, grpcio and a raw client stopping mid-message)."""
    relay = limited_relay(SW_RELAY_GRPC_STREAM_IDLE_TIMEOUT_S="1")
    release = threading.Event()

    def messages() -> Iterator[bytes]:
        yield encode_segment("silent-trace", "silent.0")
        release.wait(15)  # the agent goes silent with the stream open

    try:
        with grpc.insecure_channel(relay.grpc_address) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                channel.stream_unary(COLLECT)(messages(), timeout=10)
    finally:
        release.set()
    # CANCELLED, not the client's DEADLINE_EXCEEDED: the relay cut the stream before 10 s (when
    # exactly is the manual-clock spec GRPCStreamHandlerTests.theOptInIdleTimeoutCancelsAQuietStream).
    assert raised.value.code() == grpc.StatusCode.CANCELLED, raised.value

    # The same with a raw client that stops mid-message: CANCELLED trailers or RST_STREAM.
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        client.open_stream(COLLECT)
        client.data(grpc_message(encode_segment("silent-trace", "silent.raw"))[:20])
        frames, _ = client.frames(within=6)
        on_stream = [f for f in frames if f.stream == 1 and f.kind in (HEADERS, RST_STREAM)]
        assert on_stream, f"nothing ended the silent stream: {frames}"
        # The relay Huffman-codes its headers: decode them (HPACK state spans the connection).
        decoder = hpack.Decoder()
        statuses = [dict(decoder.decode(header_block(f))).get("grpc-status")
                    for f in frames if f.kind == HEADERS]
        assert "0" not in statuses, f"a silent stream was answered OK: {statuses}"
        assert "1" in statuses or any(f.kind == RST_STREAM for f in on_stream), (
            f"the silent stream was neither CANCELLED nor reset: {statuses}")
    finally:
        client.close()
    assert_still_serving(relay)


def test_sigterm_is_not_held_up_by_an_idle_client_connection(relay: Relay):
    # SW_RELAY_SHUTDOWN_TIMEOUT_S is 5 in conftest.Relay: an idle connection (no stream) must not
    # keep the process alive past it, or an orchestrator's SIGKILL ends every shutdown.
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        client.frames(within=0.5)  # the relay's SETTINGS: the connection is established
        started = time.monotonic()
        relay.process.send_signal(15)
        try:
            code = relay.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - started
        if code is None:
            relay.process.kill()
            relay.process.wait()
    finally:
        client.close()
    assert code == 0, f"the relay was still running {elapsed:.0f} s after SIGTERM with one idle client connection"
