"""What an operator's environment can get wrong, and what the admin port must survive: the
relay refuses what would lose data and ignores what Kubernetes injects on its own.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import psutil
import pytest

from conftest import REPO_ROOT, Relay, run_relay_once, wait_for
from test_operations import metric_value


def base_environment(tmp_path: Path) -> dict[str, str]:
    return {"SW_RELAY_QUEUE_DIR": str(tmp_path / "queue"), "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092"}


def test_no_brokers_refuses_to_start_naming_both_choices(tmp_path: Path):
    """A production pod whose Secret lost SW_RELAY_KAFKA_BOOTSTRAP_SERVERS must not acknowledge
    agents' data into an in-memory Kafka: it exits 2 and says how to choose."""
    environment = base_environment(tmp_path)
    del environment["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS"]

    for arguments in ((), ("--check-config",)):
        result = run_relay_once(environment, *arguments)
        assert result.returncode == 2, result.stderr
        assert "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS" in result.stderr and "embedded" in result.stderr, result.stderr


KUBERNETES_SERVICE_LINKS = {
    # A Service named sw-relay with port 11800 ...
    "SW_RELAY_SERVICE_HOST": "10.96.12.34",
    "SW_RELAY_SERVICE_PORT": "11800",
    "SW_RELAY_SERVICE_PORT_GRPC": "11800",
    "SW_RELAY_PORT": "tcp://10.96.12.34:11800",
    "SW_RELAY_PORT_11800_TCP": "tcp://10.96.12.34:11800",
    "SW_RELAY_PORT_11800_TCP_PROTO": "tcp",
    "SW_RELAY_PORT_11800_TCP_PORT": "11800",
    "SW_RELAY_PORT_11800_TCP_ADDR": "10.96.12.34",
    # ... and one named sw-relay-grpc.
    "SW_RELAY_GRPC_SERVICE_HOST": "10.96.12.35",
    "SW_RELAY_GRPC_PORT_11800_TCP_ADDR": "10.96.12.35",
}


def test_kubernetes_service_links_are_ignored(tmp_path: Path):
    """Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT_... for every Service in the
    namespace; a Service named sw-relay must not stop every relay pod at its next restart."""
    result = run_relay_once({**base_environment(tmp_path), **KUBERNETES_SERVICE_LINKS}, "--check-config")
    assert result.returncode == 0, result.stderr


def test_check_config_loads_every_tls_file(tmp_path: Path):
    """--check-config catches what would otherwise fail at start: a TLS file that is not there."""
    missing = str(tmp_path / "missing.pem")
    grpc = run_relay_once({**base_environment(tmp_path), "SW_RELAY_GRPC_TLS_CERT": missing,
                           "SW_RELAY_GRPC_TLS_KEY": missing}, "--check-config")
    oap = run_relay_once({**base_environment(tmp_path), "SW_RELAY_OAP_ADDRESS": "oap:11800", "SW_RELAY_OAP_TLS": "on",
                          "SW_RELAY_OAP_TLS_CA": missing}, "--check-config")
    assert grpc.returncode == 2 and "SW_RELAY_GRPC_TLS_CERT" in grpc.stderr, grpc.stderr
    assert oap.returncode == 2 and "SW_RELAY_OAP_TLS_CA" in oap.stderr, oap.stderr


def test_check_config_warns_when_the_producer_takes_less_than_the_relay_accepts(tmp_path: Path):
    """A record the relay acknowledges must fit the producer: an explicit message.max.bytes below
    SW_RELAY_KAFKA_MAX_RECORD_BYTES is reported."""
    result = run_relay_once({**base_environment(tmp_path), "SW_RELAY_KAFKA_PRODUCER_MESSAGE_MAX_BYTES": "500000"},
                            "--check-config")
    assert result.returncode == 0, result.stderr
    assert "warning: message.max.bytes=500000" in result.stdout, result.stdout


def test_version_matches_the_image_tag():
    """`--version` is what the Dockerfile's image is tagged with."""
    result = run_relay_once({}, "--version")
    assert result.returncode == 0, result.stderr
    version = result.stdout.split()[-1]
    assert re.search(rf"^ARG VERSION={re.escape(version)}$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_json_logs_are_one_object_a_line(relay_factory):
    """A log pipeline that indexes fields gets one JSON object per line, with time and level."""
    relay = relay_factory(extra_env={"SW_RELAY_LOG_FORMAT": "json"}).start()
    assert relay.stop() == 0
    lines = [line for line in relay.log_text().splitlines() if line and not line.startswith("=====")]
    assert lines, "the relay logged nothing"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "message"} <= entry.keys(), entry
    assert any("relay ready" in json.loads(line)["message"] for line in lines)
    assert any(re.search(r"\d+ records \(\d+ bytes\) stay undelivered", json.loads(line)["message"]) for line in lines), \
        "the shutdown line says what stays undelivered"


def test_metrics_have_help_readiness_capacity_build_and_process(relay: Relay):
    """Every series a scraper sees is explained, and an operator can alert on readiness, queue
    capacity and the process without another exporter."""
    text = relay.http_text("/metrics")
    types = re.findall(r"^# TYPE (\S+)", text, re.MULTILINE)
    helped = set(re.findall(r"^# HELP (\S+) \S", text, re.MULTILINE))
    assert types and set(types) <= helped, f"no HELP for {sorted(set(types) - helped)}"
    assert metric_value(text, "relay_ready", reason="ok") == 1
    assert metric_value(text, "relay_queue_capacity_bytes") == 1 << 30
    assert metric_value(text, "relay_build_info") == 1
    assert 10 << 20 < metric_value(text, "process_resident_memory_bytes") < 1 << 30
    assert metric_value(text, "process_open_fds") > 5
    assert 'relay_grpc_ack_latency_seconds_bucket{le="0.00025"}' in text, "latency buckets start at 0.25 ms"
    assert 'le="3600.0"' in text, "latency buckets reach an hour"


def test_half_sent_admin_requests_are_closed_and_readyz_keeps_answering(relay: Relay):
    """A slow or hostile client on the admin port (reachable by every scraper) must not hold
    descriptors the gRPC port needs: 300 connections that each sent half a request are closed
    within the request timeout, /readyz answers meanwhile, and open files come back down."""
    process = psutil.Process(relay.process.pid)
    baseline = process.num_fds()
    sockets = []
    try:
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", relay.admin_port), timeout=5)
            connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: relay\r\n")  # no blank line: half sent
            sockets.append(connection)
        wait_for(lambda: process.num_fds() >= baseline + 250, 10, "the relay to hold the half-sent connections")
        assert relay.http_status("/readyz") == 200, "the admin port must keep answering"
        for connection in sockets:
            connection.settimeout(20)
            assert connection.recv(1024) == b"", "a half-sent request must be closed by the relay"
        wait_for(lambda: process.num_fds() <= baseline + 5, 10, "open files to come back down")
    finally:
        for connection in sockets:
            connection.close()


def test_admin_connections_beyond_the_cap_are_closed_at_accept(relay: Relay):
    """A flood of admin connections is capped (512), so it cannot exhaust the process's files."""
    process = psutil.Process(relay.process.pid)
    sockets = []
    try:
        baseline = process.num_fds()
        for _ in range(700):
            sockets.append(socket.create_connection(("127.0.0.1", relay.admin_port), timeout=5))
        wait_for(lambda: process.num_fds() - baseline <= 520 and sum(
            1 for c in sockets if _closed_by_peer(c)) >= 150, 20, "connections beyond the cap to be closed")
    finally:
        for connection in sockets:
            connection.close()
    wait_for(lambda: (metric_value(relay.http_text("/metrics"), "relay_admin_connections_rejected_total") or 0)
             >= 150, 20, "the refused connections to be counted")


def _closed_by_peer(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
