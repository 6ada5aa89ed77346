"""What an operator relies on: graceful shutdown, the embedded development Kafka, refusing bad
configuration, back-pressure when the queue is full, and the admin endpoint's numbers.

Every wait polls a condition against a deadline (conftest.wait_for); the relay and Kafka live on
loopback ports.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import grpc
import pytest

from conftest import (HarnessError, KafkaTopicReader, MockKafka, Relay, encode_segment, free_loopback_port,
                      run_relay_once, wait_for)
from raw_http2 import RawHTTP2Client
from reliability_support import http_body, status_document
from test_grpc_interop import COLLECT, assert_ok, new_trace_id, stream, wait_for_traces

SHUTDOWN_TIMEOUT_S = 5  # what conftest.Relay sets SW_RELAY_SHUTDOWN_TIMEOUT_S to
SHUTDOWN_MARGIN_S = 5
STOPPED_LOG_LINE = "skywalking-kafka-relay stopped"

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def when(fetch: Callable[[], T], accept: Callable[[T], bool]) -> Callable[[], Optional[T]]:
    """A wait_for condition: what `fetch` returns, once `accept` likes it."""
    def condition() -> Optional[T]:
        value = fetch()
        return value if accept(value) else None
    return condition


def fresh_channel(address: str) -> grpc.Channel:
    """A channel with its own TCP connection: grpcio otherwise shares one connection between
    channels to the same address, so a "new" call could ride an already open connection."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def stream_on_fresh_connection(relay: Relay, messages: list[bytes]) -> tuple[grpc.StatusCode, str]:
    with fresh_channel(relay.grpc_address) as channel:
        try:
            channel.stream_unary(COLLECT)(iter(messages), timeout=5)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, ""


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format → (name, labels, value) for every sample line."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric_value(text: str, name: str, **labels: str) -> Optional[float]:
    """The sum of `name`'s samples carrying `labels`, or None when there is no such series."""
    values = [value for sample_name, sample_labels, value in metric_samples(text)
              if sample_name == name and labels.items() <= sample_labels.items()]
    return sum(values) if values else None



class HeldStream:
    """One `collect` call whose request iterator sends `first` segments, then waits for
    `release()` before sending `rest` and half-closing: a call in flight on demand."""

    def __init__(self, relay: Relay, first: list[bytes], rest: list[bytes]) -> None:
        self._first, self._rest = first, rest
        self._release = threading.Event()
        self.result: Optional[tuple[grpc.StatusCode, str]] = None
        self._channel = fresh_channel(relay.grpc_address)
        self._thread = threading.Thread(target=self._call, name="held-stream", daemon=True)
        self._thread.start()

    def _messages(self) -> Iterator[bytes]:
        yield from self._first
        self._release.wait(timeout=60)
        yield from self._rest

    def _call(self) -> None:
        try:
            self._channel.stream_unary(COLLECT)(self._messages(), timeout=60)
            self.result = (grpc.StatusCode.OK, "")
        except grpc.RpcError as error:
            self.result = (error.code(), error.details() or "")

    def release(self) -> None:
        self._release.set()

    def finish(self, timeout: float = 30) -> tuple[grpc.StatusCode, str]:
        self.release()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the held call did not finish within {timeout} s"
        self._channel.close()
        assert self.result is not None
        return self.result


def wait_for_exit(relay: Relay, timeout: float) -> int:
    assert relay.process is not None
    try:
        return relay.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"relay still running {timeout} s after SIGTERM\n{relay.log_tail()}")


# --------------------------------------------------------------------------- 1. graceful shutdown


def test_sigterm_exits_zero_within_the_shutdown_timeout(relay: Relay, segments_reader: KafkaTopicReader):
    trace_id = new_trace_id()
    assert_ok(stream(relay, COLLECT, [encode_segment(trace_id, "before-sigterm")]))
    wait_for_traces(segments_reader, {trace_id})

    relay.process.send_signal(signal.SIGTERM)
    # Fails unless the process ends within the shutdown timeout (plus the margin).
    code = wait_for_exit(relay, SHUTDOWN_TIMEOUT_S + SHUTDOWN_MARGIN_S)

    assert code == 0, relay.log_tail()
    assert STOPPED_LOG_LINE in relay.log_text(), relay.log_tail()
    assert not accepts_connections(relay.grpc_port)
    assert not accepts_connections(relay.admin_port)


def test_sigterm_answers_an_open_stream_ok_for_what_it_sent(relay: Relay, segments_reader: KafkaTopicReader):
    """An agent's stream is still open when the relay is told to stop (a rollout): it is answered
    OK as soon as what it sent is durable, rather than cut, so the agent reconnects elsewhere
    without losing or resending anything; its segments are delivered."""
    trace_id = new_trace_id()
    segments = [encode_segment(trace_id, f"{trace_id}.{n}", ("/shutdown",)) for n in range(3)]
    call = HeldStream(relay, segments, [])
    try:
        # The relay has the segments (counted when handed to the queue) and the call is open.
        wait_for(lambda: metric_value(relay.http_text("/metrics"), "relay_received_total", type="segment") == 3,
                 15, "the relay to receive the 3 segments of the held call")
        relay.process.send_signal(signal.SIGTERM)
        wait_for(lambda: call.result is not None, 10, "the open call to be answered at shutdown")
    finally:
        status, details = call.finish()

    assert status == grpc.StatusCode.OK, f"{status}: {details}"
    code = wait_for_exit(relay, SHUTDOWN_TIMEOUT_S + SHUTDOWN_MARGIN_S)
    assert code == 0, relay.log_tail()
    assert not accepts_connections(relay.grpc_port), "no new call is taken after SIGTERM"
    key = trace_id.encode()
    records = segments_reader.read_until(
        lambda records: sum(r.key == key for r in records) >= len(segments), 30,
        f"all {len(segments)} segments of the held call")
    assert sorted(r.value for r in records if r.key == key) == sorted(segments)


def test_readyz_turns_503_as_soon_as_shutdown_begins(relay: Relay):
    """While the relay drains (here held up by a peer that went silent with a stream open and
    never acknowledges the GOAWAY's ping), /readyz answers 503 so load balancers move on."""
    silent = RawHTTP2Client(relay.grpc_port).start()
    try:
        silent.open_stream(COLLECT)
        wait_for(lambda: metric_value(relay.http_text("/metrics"), "relay_grpc_active_streams") == 1, 15,
                 "the silent peer's call to be open")
        relay.process.send_signal(signal.SIGTERM)
        wait_for(lambda: not accepts_connections(relay.grpc_port), 10,
                 "the gRPC listener to close after SIGTERM")
        assert relay.process.poll() is None, "the relay must still be draining the silent connection"
        # README: /readyz answers 503 (shutting down) once shutdown begins, while calls drain;
        # the gRPC port already refuses connections at this point.
        try:
            readiness = wait_for(when(lambda: http_body(relay, "/readyz"), lambda r: r[0] == 503), 3,
                                 "/readyz 503 while the relay drains")
        except HarnessError:
            readiness = http_body(relay, "/readyz")
        assert readiness[0] == 503, f"/readyz while shutting down (gRPC port closed): {readiness}"
        assert readiness[1].strip() and "\n" not in readiness[1].strip(), readiness
    finally:
        silent.close()
    assert wait_for_exit(relay, SHUTDOWN_TIMEOUT_S + SHUTDOWN_MARGIN_S) == 0


# --------------------------------------------------------------------------- 2. embedded Kafka


@pytest.fixture
def embedded_relay(tmp_path: Path) -> Iterator[Relay]:
    """A relay with SW_RELAY_KAFKA_BOOTSTRAP_SERVERS=embedded: it starts its own in-memory Kafka."""
    relay = Relay(tmp_path / "relay-embedded.log", tmp_path / "queue-embedded", bootstrap_servers=None)
    try:
        yield relay.start()
    finally:
        if relay.process is not None and relay.process.poll() is None:
            relay.stop()


def kcat_keys(bootstrap: str, topic: str) -> list[str]:
    """Every key currently in `topic`, read from the beginning to the end by kcat."""
    try:
        result = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                                 "-f", "%k\\n"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return []
    return result.stdout.split()


def test_embedded_kafka_when_no_bootstrap_servers(embedded_relay: Relay):
    log = embedded_relay.log_text()
    match = re.search(r"embedded Kafka bootstrap=(\S+)", log)
    assert match, f"no 'embedded Kafka bootstrap=' line:\n{embedded_relay.log_tail()}"
    bootstrap = match.group(1)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", bootstrap), f"embedded Kafka must be on loopback: {bootstrap}"
    assert "NOT durable" in log, "the embedded Kafka must come with a loud warning"
    assert re.search(r"relay ready grpc=\S+ admin=\S+ kafka=" + re.escape(bootstrap), log), log

    trace_ids = {new_trace_id() for _ in range(5)}
    assert_ok(stream(embedded_relay, COLLECT, [encode_segment(t, f"{t}.embedded") for t in trace_ids]))

    keys = wait_for(when(lambda: kcat_keys(bootstrap, "skywalking-segments"), lambda found: trace_ids <= set(found)),
                    60, "kcat to see every trace id sent", interval=0.5)
    assert trace_ids <= set(keys)


# --------------------------------------------------------------------------- 3. configuration errors


# Every variable's parsing is specified in Swift (RelayConfigurationTests); these are the process
# facts: exit 2, the message on stderr, nothing started.
# An unknown variable is named without its value: it may be a misspelt secret (SW_RELAY_AUTH_TOKN).
@pytest.mark.parametrize("variable, value, expected, value_shown", [
    ("SW_RELAY_QUEUE_FSYNC", "sometimes", "one of interval, always", True),
    ("SW_RELAY_QUEUE_MAXBYTES", "1GiB", "known variable", False),
])
def test_invalid_configuration_exits_2_naming_the_variable(tmp_path: Path, variable: str, value: str,
                                                           expected: str, value_shown: bool):
    grpc_port, admin_port = free_loopback_port(), free_loopback_port()
    env = {"SW_RELAY_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}", "SW_RELAY_ADMIN_ADDRESS": f"127.0.0.1:{admin_port}",
           "SW_RELAY_QUEUE_DIR": str(tmp_path / "queue"), "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
           variable: value}

    result = run_relay_once(env)  # its timeout fails a relay that does not exit by itself

    assert result.returncode == 2, result.stderr
    assert variable in result.stderr, result.stderr
    assert (value in result.stderr) == value_shown, result.stderr
    assert expected in result.stderr, f"stderr should say what is expected ({expected!r}): {result.stderr}"
    assert "--help" in result.stderr
    output = result.stdout + result.stderr
    assert "listening" not in output and "relay ready" not in output, output
    assert not (tmp_path / "queue").exists(), "nothing may start before the configuration is valid"
    assert not accepts_connections(admin_port)


def test_unusable_queue_directory_fails_naming_the_path(tmp_path: Path):
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    queue_dir = blocker / "queue"
    admin_port = free_loopback_port()
    env = {"SW_RELAY_GRPC_ADDRESS": f"127.0.0.1:{free_loopback_port()}",
           "SW_RELAY_ADMIN_ADDRESS": f"127.0.0.1:{admin_port}",
           "SW_RELAY_QUEUE_DIR": str(queue_dir), "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}

    result = run_relay_once(env, timeout=30)

    assert result.returncode != 0, result.stderr
    assert str(queue_dir) in result.stderr, result.stderr
    assert "relay ready" not in result.stdout + result.stderr
    assert not accepts_connections(admin_port)


# --------------------------------------------------------------------------- 6. queue full


def send_until_refused(relay: Relay, prefix: str, calls: int
                       ) -> tuple[set[str], Optional[tuple[grpc.StatusCode, str]]]:
    """Sends one 20 KiB segment per call until a call is refused or `calls` were made; returns
    the acknowledged trace ids and the refusal (status, details), if any."""
    acknowledged: set[str] = set()
    for number in range(calls):
        trace_id = f"{prefix}-{uuid.uuid4().hex}-{number}"
        status, details, _ = stream(relay, COLLECT, [encode_segment(trace_id, "s", padding=20 << 10)])
        if status != grpc.StatusCode.OK:
            return acknowledged, (status, details)
        acknowledged.add(trace_id)
    return acknowledged, None



def test_queue_full_refuses_then_resumes_by_itself(relay_factory: Callable[..., Relay], mock_kafka: MockKafka,
                                                    segments_reader: KafkaTopicReader):
    relay = relay_factory(extra_env={"SW_RELAY_QUEUE_MAX_BYTES": "1MiB",
                                     "SW_RELAY_QUEUE_SEGMENT_BYTES": "64KiB"}).start()
    warmup = new_trace_id()
    assert_ok(stream(relay, COLLECT, [encode_segment(warmup, "warmup")]))
    wait_for_traces(segments_reader, {warmup})
    mock_kafka.command("down 1")

    acknowledged, refusal = send_until_refused(relay, "full", calls=200)  # ~51 fill 1 MiB
    assert refusal is not None, "200 calls of 20 KiB were accepted into a 1 MiB queue"
    status, details = refusal
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{status}: {details}"
    assert "queue full" in details and "SW_RELAY_QUEUE_MAX_BYTES" in details, details
    assert len(acknowledged) >= 30, f"only {len(acknowledged)} calls fit in 1 MiB"

    ready_status, reason = http_body(relay, "/readyz")
    assert ready_status == 503, f"/readyz with a full queue: {ready_status} {reason!r}"
    assert reason.strip() and "\n" not in reason.strip(), f"one-line reason expected: {reason!r}"
    metrics = relay.http_text("/metrics")
    assert (metric_value(metrics, "relay_rejected_total", type="segment", reason="queue_full") or 0) > 0, metrics

    mock_kafka.command("up 1")
    wait_for(lambda: status_document(relay)["queue"]["unconfirmed_records"] == 0, 90,
             "the backlog to drain after the broker came back", interval=0.2)
    # Nothing else is sent: readiness must come back from the drain alone, because an orchestrator
    # routes no agent to an unready relay.
    try:
        wait_for(lambda: relay.http_status("/readyz") == 200, 10, "/readyz 200 after the backlog drained")
        ready_without_traffic = ""
    except HarnessError:
        ready_without_traffic = f"/readyz still {http_body(relay, '/readyz')} with an empty queue"

    resumed = new_trace_id()
    assert_ok(stream(relay, COLLECT, [encode_segment(resumed, "after-drain", padding=20 << 10)]))
    wait_for_traces(segments_reader, acknowledged | {resumed}, timeout=60)
    assert relay.http_status("/readyz") == 200
    assert not ready_without_traffic, ready_without_traffic


# --------------------------------------------------------------------------- 7. metrics and /status


def test_metrics_count_traffic(relay: Relay, segments_reader: KafkaTopicReader):
    valid = [new_trace_id() for _ in range(4)]
    assert_ok(stream(relay, COLLECT, [encode_segment(t, f"{t}.m") for t in valid[:3]]))
    status, details, _ = stream(relay, COLLECT, [b"\xff\xff", encode_segment(valid[3], "after-malformed")])
    assert status == grpc.StatusCode.INVALID_ARGUMENT, f"{status}: {details}"
    wait_for_traces(segments_reader, set(valid))

    metrics = wait_for(when(lambda: relay.http_text("/metrics"),
                            lambda text: metric_value(text, "relay_kafka_delivered_total") == 4),
                       30, "relay_kafka_delivered_total to reach 4")

    for name in ["relay_received_total", "relay_queued_total",
                 "relay_rejected_total", "relay_queue_bytes",
                 "relay_queue_oldest_unconfirmed_age_seconds", "relay_kafka_delivered_total",
                 "relay_grpc_active_streams"]:
        assert metric_value(metrics, name) is not None, f"{name} missing from /metrics"
    for histogram in ["relay_kafka_delivery_latency_seconds", "relay_grpc_ack_latency_seconds"]:
        assert metric_value(metrics, f"{histogram}_bucket", le="+Inf") is not None, f"{histogram} is no histogram"
        assert metric_value(metrics, f"{histogram}_sum") is not None, f"{histogram}_sum missing"

    assert metric_value(metrics, "relay_queued_total", type="segment") == 4
    assert metric_value(metrics, "relay_rejected_total", type="segment", reason="malformed") == 1
    assert metric_value(metrics, "relay_kafka_delivery_latency_seconds_count") == 4
    assert metric_value(metrics, "relay_grpc_ack_latency_seconds_count") == 2  # one per answered call
    assert metric_value(metrics, "relay_grpc_active_streams") == 0
    assert metric_value(metrics, "relay_queue_oldest_unconfirmed_age_seconds") == 0  # all delivered
    # Received means every segment that arrived, refused or not: 4 valid + 1 malformed.
    assert metric_value(metrics, "relay_received_total", type="segment") == 5, (
        "relay_received_total should count the malformed segment too "
        f"(received={metric_value(metrics, 'relay_received_total', type='segment')}, queued=4, rejected=1)")


def test_status_shows_undelivered_records_while_kafka_is_down(relay: Relay, mock_kafka: MockKafka,
                                                             segments_reader: KafkaTopicReader):
    healthy = status_document(relay)
    assert set(healthy) >= {"grpc", "queue", "kafka"}, healthy
    assert healthy["grpc"]["serving"] is True
    assert healthy["queue"]["full"] is False
    assert healthy["kafka"]["state"] == "delivering"

    mock_kafka.command("down 1")
    trace_ids = {new_trace_id() for _ in range(3)}
    assert_ok(stream(relay, COLLECT, [encode_segment(t, f"{t}.down") for t in trace_ids]))

    def waiting(document: dict) -> bool:
        return document["kafka"]["in_flight"] > 0 or document["queue"]["unconfirmed_records"] > 0

    document = wait_for(when(lambda: status_document(relay), waiting), 10,
                        "/status to show records waiting for Kafka")
    assert document["queue"]["unconfirmed_records"] == 3, document
    assert document["queue"]["oldest_unconfirmed_age_ms"] is not None, document
    assert relay.http_status("/readyz") == 200, "a Kafka outage must not make the relay unready"
    assert (metric_value(relay.http_text("/metrics"), "relay_queue_unconfirmed_records") or 0) == 3
    wait_for(lambda: (metric_value(relay.http_text("/metrics"), "relay_queue_oldest_unconfirmed_age_seconds")
                      or 0) > 0, 10, "relay_queue_oldest_unconfirmed_age_seconds > 0 while Kafka is down")

    mock_kafka.command("up 1")
    wait_for_traces(segments_reader, trace_ids, timeout=60)
    wait_for(lambda: status_document(relay)["queue"]["unconfirmed_records"] == 0, 30,
             "/status to show nothing waiting once Kafka is back")
