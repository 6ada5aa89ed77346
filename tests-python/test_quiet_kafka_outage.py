"""A dead Kafka on a quiet node: no agent sends anything, so nothing waits on disk and no delivery
fails, yet the operator must see the brokers are gone (relay_kafka_brokers_up, /status, the
SkyWalkingRelayKafkaBrokersDown alert) before the next burst piles onto disk, and see them back
without any traffic either. /readyz stays 200: the disk queue absorbs the outage, and agents sent
elsewhere would meet the same Kafka (README, "Which mode?"). And the counters alerts take rate()
of exist at 0 from the start, so the first refusals after a start alert too."""

from __future__ import annotations

import json
from typing import Callable, Optional

import pytest

from conftest import MockKafka, Relay, free_loopback_port, wait_for
from test_operations import metric_value

pytestmark = pytest.mark.timeout(120)


def brokers_up(relay: Relay) -> Optional[float]:
    return metric_value(relay.http_text("/metrics"), "relay_kafka_brokers_up")


def kafka_status(relay: Relay) -> dict:
    return json.loads(relay.http_text("/status"))["kafka"]


def test_unreachable_brokers_show_within_30_seconds_without_traffic(relay_factory: Callable[..., Relay]):
    """An operator points the relay at brokers that do not answer (a typo, a firewall) on a quiet node."""
    relay = relay_factory(extra_env={"SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_loopback_port()}"})
    relay.start()

    wait_for(lambda: brokers_up(relay) == 0, 30, "relay_kafka_brokers_up 0")
    status = kafka_status(relay)
    assert status["state"] == "brokers_down", status
    assert "unreachable" in status["brokers"], status
    assert relay.http_status("/readyz") == 200, "the disk queue absorbs the outage: stay ready"


def test_brokers_that_die_and_return_on_a_quiet_node_are_seen_both_ways(relay_factory: Callable[..., Relay],
                                                                       mock_kafka: MockKafka):
    """Kafka's only broker goes down and comes back while no agent sends anything."""
    relay = relay_factory().start()
    assert brokers_up(relay) == 1

    mock_kafka.command("down 1")
    wait_for(lambda: brokers_up(relay) == 0, 30, "relay_kafka_brokers_up 0 after the broker went down")
    assert kafka_status(relay)["state"] == "brokers_down"

    mock_kafka.command("up 1")
    wait_for(lambda: brokers_up(relay) == 1, 30, "relay_kafka_brokers_up 1 once the broker is back")
    assert kafka_status(relay)["state"] == "delivering"


def test_alerted_counters_are_exported_at_zero_before_their_first_event(relay: Relay):
    """An operator's alert takes rate() of these: a series that first appears at 1 is a jump rate()
    never sees, so the first burst of refusals after a start would not alert."""
    metrics = relay.http_text("/metrics")
    for labels in ({"type": "segment", "reason": "queue_full"}, {"type": "segment", "reason": "disk_full"},
                   {"type": "log", "reason": "malformed"}, {"type": "meter", "reason": "missing_field"}):
        assert metric_value(metrics, "relay_rejected_total", **labels) == 0, labels
    assert metric_value(metrics, "relay_grpc_calls_total", code="permission_denied") == 0
    assert metric_value(metrics, "relay_queue_write_errors_total", reason="io") == 0
    assert metric_value(metrics, "relay_kafka_brokers_up") == 1
