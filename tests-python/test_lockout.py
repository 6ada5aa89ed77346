"""Clients without the token must not lock agents out (SW_RELAY_GRPC_MAX_CONNECTIONS,
SW_RELAY_AUTH_TOKEN).

`grpc.health.v1.Health` needs no token, on purpose (probes cannot send one), and a `Watch`
stream keeps its connection from ever going idle. Twenty such clients used to fill a cap of 20,
and an agent with the right token was then closed at accept. Now a newcomer at the cap closes
the oldest connection that never carried agent data, and with a token set a connection that
made no agent call within 10 s is closed.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable, Iterator

import grpc
import pytest

from conftest import KafkaTopicReader, Relay, encode_segment, wait_for
from reliability_support import COLLECT, SegmentIdCollector, metric

TOKEN = "agents-only"
CAP = 20
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = b"\x08\x01"  # HealthCheckResponse { status: SERVING }


class Watcher:
    """One client without the token: its own connection, one Watch stream held open."""

    def __init__(self, relay: Relay) -> None:
        # A local subchannel pool gives every watcher a connection of its own, as separate
        # clients have.
        self.channel = grpc.insecure_channel(relay.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.first_status = threading.Event()
        self.ended = threading.Event()
        self.responses = self.channel.unary_stream(WATCH)(b"", timeout=120)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.responses:
                if response == SERVING:
                    self.first_status.set()
        except grpc.RpcError:
            pass
        finally:
            self.ended.set()

    def close(self) -> None:
        self.responses.cancel()
        self.channel.close()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    held: list[Watcher] = []
    yield held
    for watcher in held:
        watcher.close()


def hold_the_cap(relay: Relay, watchers: list[Watcher]) -> None:
    for _ in range(CAP):
        watchers.append(Watcher(relay))
    for number, watcher in enumerate(watchers):
        assert watcher.first_status.wait(10), f"watcher {number} got no SERVING"
    assert metric(relay, "relay_grpc_connections") == CAP, "the watchers do not hold the cap"


def agent_publishes(relay: Relay, trace_id: str, timeout: float) -> float:
    """One agent call with the token on a fresh connection; returns how long it took."""
    started = time.monotonic()
    with grpc.insecure_channel(relay.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        channel.stream_unary(COLLECT)(iter([encode_segment(trace_id, f"{trace_id}.0")]), timeout=timeout,
                                      metadata=(("authentication", TOKEN),))
    return time.monotonic() - started


def test_an_agent_gets_in_while_watchers_without_the_token_hold_the_cap(
        relay_factory: Callable[..., Relay], segments_reader: KafkaTopicReader, watchers: list[Watcher]):
    relay = relay_factory(extra_env={"SW_RELAY_GRPC_MAX_CONNECTIONS": str(CAP),
                                     "SW_RELAY_AUTH_TOKEN": TOKEN}).start()
    filled_at = time.monotonic()
    hold_the_cap(relay, watchers)

    trace_id = uuid.uuid4().hex
    took = agent_publishes(relay, trace_id, timeout=5)
    print(f"agent served in {took * 1000:.0f} ms with {CAP} watchers holding a cap of {CAP}")
    # Well inside the 10 s grace period: room was made at accept, not by the watchers' timeout.
    assert time.monotonic() - filled_at < 10
    assert took < 2, f"the agent waited {took:.2f} s for a connection"
    assert (metric(relay, "relay_grpc_connections_shed_total") or 0) >= 1
    assert sum(w.ended.is_set() for w in watchers) >= 1, "no watcher was shed"
    SegmentIdCollector(segments_reader).wait_for({f"{trace_id}.0"}, 30)


def test_watchers_without_the_token_are_closed_after_the_grace_period(
        relay_factory: Callable[..., Relay], watchers: list[Watcher]):
    relay = relay_factory(extra_env={"SW_RELAY_AUTH_TOKEN": TOKEN}).start()
    hold_the_cap(relay, watchers)
    wait_for(lambda: all(w.ended.is_set() for w in watchers), 15, "every watcher's connection to be closed")
    wait_for(lambda: metric(relay, "relay_grpc_connections") == 0, 5, "no connection left")
    agent_publishes(relay, uuid.uuid4().hex, timeout=5)


def test_a_third_health_stream_on_one_connection_is_resource_exhausted(relay: Relay):
    with grpc.insecure_channel(relay.grpc_address) as channel:
        watches = [channel.unary_stream(WATCH)(b"", timeout=30) for _ in range(2)]
        try:
            for watch in watches:
                assert next(watch) == SERVING
            with pytest.raises(grpc.RpcError) as raised:
                channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, raised.value
        finally:
            for watch in watches:
                watch.cancel()
        # The slots are free again once the streams end.
        wait_for(lambda: (metric(relay, "relay_grpc_active_streams") or 0) == 0, 5, "the watches to end")
        assert channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == SERVING
