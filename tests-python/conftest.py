"""Shared harness for the end-to-end tests: the relay binary, the mock Kafka cluster and a
Kafka reader, all on loopback.

Binaries come from SWIFT_BIN_DIR (default <repo>/.build/debug): build them first with
`swift build --product skywalking-kafka-relay && swift build --product relay-mock-kafka`.
Every wait polls a condition against a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Optional, TypeVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from skywalking.protocol.language_agent.Tracing_pb2 import SegmentCollection, SegmentObject

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(os.environ.get("SWIFT_BIN_DIR", REPO_ROOT / ".build" / "debug"))
RELAY_BINARY = BIN_DIR / "skywalking-kafka-relay"
MOCK_KAFKA_BINARY = BIN_DIR / "relay-mock-kafka"

SEGMENTS_TOPIC = "skywalking-segments"
SEGMENT_PARTITIONS = 3

T = TypeVar("T")


class HarnessError(AssertionError):
    """A harness step failed; the message carries what is needed to diagnose it."""


def wait_for(condition: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls `condition` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def missing_privilege(reason: str) -> NoReturn:
    """For tests that need root (a tmpfs mount, FUSE): CI runs as root, so there a missing
    privilege is a broken machine and fails; a developer without root sees a skip with the
    reason instead of a failure that says nothing about the relay."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test as root: {reason}", pytrace=False)
    pytest.skip(f"needs root: {reason}")


# scripts/long-tests.sh sets RELAY_LONG_TESTS=1: the long loops then run at full length (real
# default timers, minutes of load); scripts/test.sh runs the same checks on compressed timers.
LONG_TESTS = os.environ.get("RELAY_LONG_TESTS") == "1"


def ci_or_long(ci: T, long: T) -> T:
    """The CI value of a length, or the full one under scripts/long-tests.sh."""
    return long if LONG_TESTS else ci


def free_loopback_port() -> int:
    """A port that was free a moment ago; good enough for processes started right after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_binary(path: Path) -> Path:
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: build it first (or set SWIFT_BIN_DIR)")
    return path


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "<no log>"


# --------------------------------------------------------------------------- mock Kafka


class MockKafka:
    """`relay-mock-kafka` as a subprocess: a librdkafka mock cluster driven over stdin.

    The process prints `BOOTSTRAP=<servers>` once, then answers one `OK` / `ERR <reason>`
    line per command (`down <id>`, `up <id>`, `rtt <id> <ms>`, `errors <apiKey> <err>...`,
    `topic <name> <partitions>`). Closing stdin stops it.
    """

    def __init__(self, log_path: Path, brokers: int = 1, partitions: int = SEGMENT_PARTITIONS,
                 topics: tuple[str, ...] = (SEGMENTS_TOPIC,)) -> None:
        arguments = [str(require_binary(MOCK_KAFKA_BINARY)), "--brokers", str(brokers),
                     "--partitions", str(partitions)]
        for topic in topics:
            arguments += ["--topic", topic]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, text=True, bufsize=1)
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=self._pump_stdout, name="mock-kafka-stdout", daemon=True).start()
        first = self._next_line(timeout=30, what="the BOOTSTRAP= line")
        if not first.startswith("BOOTSTRAP="):
            raise HarnessError(f"relay-mock-kafka printed {first!r} instead of BOOTSTRAP=...")
        self.bootstrap_servers = first.removeprefix("BOOTSTRAP=").strip()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout: float, what: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(f"relay-mock-kafka gave no {what} within {timeout} s\n{tail(self.log_path)}")
        if line is None:
            raise HarnessError(f"relay-mock-kafka exited (rc={self.process.poll()}) before {what}\n"
                               f"{tail(self.log_path)}")
        return line

    def command(self, line: str, timeout: float = 10) -> None:
        """Sends one command and raises unless the cluster answers `OK`."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        reply = self._next_line(timeout, f"reply to {line!r}")
        if reply != "OK":
            raise HarnessError(f"relay-mock-kafka answered {reply!r} to {line!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --------------------------------------------------------------------------- relay


class Relay:
    """The relay binary on free loopback ports, with its output captured to a file.

    `start()` returns once `GET /readyz` answers 200. `restart()` keeps the ports, the
    queue directory and every other setting, which is what crash tests need.
    """

    def __init__(self, log_path: Path, queue_dir: Path, bootstrap_servers: Optional[str],
                 extra_env: Optional[dict[str, str]] = None) -> None:
        """`bootstrap_servers=None` asks for the embedded development Kafka
        (SW_RELAY_KAFKA_BOOTSTRAP_SERVERS=embedded)."""
        self.log_path = log_path
        self.queue_dir = queue_dir
        self.grpc_port = free_loopback_port()
        self.admin_port = free_loopback_port()
        self.http_port = free_loopback_port()
        self.env = {
            **os.environ,
            "SW_RELAY_GRPC_ADDRESS": f"127.0.0.1:{self.grpc_port}",
            "SW_RELAY_ADMIN_ADDRESS": f"127.0.0.1:{self.admin_port}",
            "SW_RELAY_HTTP_ADDRESS": f"127.0.0.1:{self.http_port}",
            "SW_RELAY_QUEUE_DIR": str(queue_dir),
            "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers or "embedded",
            "SW_RELAY_SHUTDOWN_TIMEOUT_S": "5",
            "SW_RELAY_LOG_LEVEL": "info",
            **(extra_env or {}),
        }
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        """host:port of the agents' HTTP endpoint (the OAP's REST protocol)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, ready_timeout: float = 30) -> "Relay":
        return self.spawn().wait_ready(ready_timeout)

    def spawn(self) -> "Relay":
        """Starts the process without waiting for it to be ready."""
        assert self.process is None or self.process.poll() is not None, "relay already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== relay start #{self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen([str(require_binary(RELAY_BINARY))], env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, ready_timeout: float = 30) -> "Relay":
        wait_for(self._ready_or_dead, ready_timeout, f"{self.admin_url}/readyz to answer 200")
        return self

    def _ready_or_dead(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise HarnessError(f"relay exited with {self.process.returncode} before it was ready\n"
                               f"{tail(self.log_path)}")
        return self.http_status("/readyz") == 200

    def http_status(self, path: str) -> Optional[int]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def http_text(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url + path, timeout=5) as response:
            return response.read().decode()

    def stop(self, timeout: float = 30) -> int:
        """Graceful stop (SIGTERM); returns the exit code."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """Crash stop (SIGKILL): nothing gets flushed."""
        return self._signal_and_wait(signal.SIGKILL, 10)

    def restart(self, ready_timeout: float = 30) -> "Relay":
        if self.process is not None and self.process.poll() is None:
            self.stop()
        return self.start(ready_timeout)

    def _signal_and_wait(self, signal_number: int, timeout: float) -> int:
        if self.process is None:
            raise HarnessError("relay was never started")
        if self.process.poll() is None:
            self.process.send_signal(signal_number)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise HarnessError(f"relay ignored signal {signal_number} for {timeout} s\n{tail(self.log_path)}")
        return self.process.returncode

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def log_text(self) -> str:
        """Everything the relay has written so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")


def run_relay_once(env: dict[str, str], *arguments: str, timeout: float = 15) -> subprocess.CompletedProcess:
    """Runs the relay to completion (for configuration errors, --help, --check-config)."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("SW_RELAY_")}
    return subprocess.run([str(require_binary(RELAY_BINARY)), *arguments], env={**clean, **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- Kafka reader


@dataclass(frozen=True)
class KafkaRecord:
    key: Optional[bytes]
    value: bytes
    partition: int
    offset: int


class KafkaTopicReader:
    """Reads a whole topic from the beginning without a consumer group.

    Every partition is assign()ed at OFFSET_BEGINNING, so nothing depends on group
    coordination or committed offsets; records accumulate in `records` across calls.
    """

    def __init__(self, bootstrap_servers: str, topic: str, metadata_timeout: float = 30) -> None:
        self.topic = topic
        self.records: list[KafkaRecord] = []
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": "relay-e2e-reader",  # required by the client, never joined (assign only)
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })
        self.partitions = wait_for(self._partitions, metadata_timeout, f"topic {topic} in the metadata", 0.2)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])

    def _partitions(self) -> Optional[list[int]]:
        try:
            metadata = self.consumer.list_topics(self.topic, timeout=2)
        except KafkaException:
            return None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return None
        return sorted(topic.partitions)

    def poll_batch(self, timeout: float = 0.2) -> int:
        """Reads what is available now; returns how many new records arrived."""
        messages = self.consumer.consume(num_messages=1000, timeout=timeout)
        added = 0
        for message in messages:
            if message.error():
                continue  # transient broker errors are retried by the client
            self.records.append(KafkaRecord(message.key(), message.value(), message.partition(), message.offset()))
            added += 1
        return added

    def read_until(self, done: Callable[[list[KafkaRecord]], bool], timeout: float, what: str) -> list[KafkaRecord]:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() >= deadline:
                raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                   f"{len(self.records)} records read from {self.topic}")
            self.poll_batch()
        return self.records

    def read_at_least(self, count: int, timeout: float = 30) -> list[KafkaRecord]:
        return self.read_until(lambda records: len(records) >= count, timeout, f"{count} records")

    def watermarks(self) -> dict[int, tuple[int, int]]:
        """Each partition's (low, high) watermark, asked of the broker now. Fetching is paused
        meanwhile: otherwise every query waits behind a fetch long-poll (~0.5 s per partition)."""
        assigned = [TopicPartition(self.topic, p) for p in self.partitions]
        self.consumer.pause(assigned)
        try:
            return {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                    for p in self.partitions}
        finally:
            self.consumer.resume(assigned)

    def read_to_end(self, timeout: float = 30) -> list[KafkaRecord]:
        """Reads up to each partition's current high watermark (the topic as it is now)."""
        deadline = time.monotonic() + timeout
        ends = {p: high for p, (_low, high) in self.watermarks().items()}

        def caught_up() -> bool:
            seen = {p: -1 for p in self.partitions}
            for record in self.records:
                seen[record.partition] = max(seen[record.partition], record.offset)
            return all(seen[p] + 1 >= end for p, end in ends.items())

        while not caught_up():
            if time.monotonic() >= deadline:
                raise HarnessError(f"could not read {self.topic} up to {ends} within {timeout} s")
            self.poll_batch()
        return self.records

    def close(self) -> None:
        self.consumer.close()


def decode_segment(value: bytes) -> SegmentObject:
    """A Kafka value is one serialized SegmentObject (no gRPC framing)."""
    return SegmentObject.FromString(value)


def encode_segment(trace_id: str, segment_id: str, operations: tuple[str, ...] = ("/op",),
                   service: str = "relay-e2e", padding: int = 0) -> bytes:
    """A valid SegmentObject built with the agent's own generated classes.

    `padding` adds a tag of that many bytes, to reach a wanted message size.
    """
    from skywalking.protocol.common.Common_pb2 import KeyStringValuePair
    from skywalking.protocol.language_agent.Tracing_pb2 import SpanObject

    now = int(time.time() * 1000)
    spans = [SpanObject(spanId=i, parentSpanId=i - 1, startTime=now, endTime=now + 1, operationName=op,
                        spanType="Entry" if i == 0 else "Local", spanLayer="Http", componentId=0)
             for i, op in enumerate(operations)]
    if padding:
        spans[0].tags.append(KeyStringValuePair(key="padding", value="x" * padding))
    return SegmentObject(traceId=trace_id, traceSegmentId=segment_id, service=service,
                         serviceInstance=f"{service}-1", spans=spans).SerializeToString()


def encode_segment_collection(segments: list[bytes]) -> bytes:
    return SegmentCollection(segments=[SegmentObject.FromString(s) for s in segments]).SerializeToString()


# --------------------------------------------------------------------------- fixtures


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
               for when in ("setup", "call"))


@pytest.fixture
def mock_kafka(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MockKafka]:
    """The test's cluster, with the topics its module names in MOCK_KAFKA_TOPICS created from the
    start (a reader subscribed before the relay's first record then sees it), else the segments'."""
    topics = getattr(request.module, "MOCK_KAFKA_TOPICS", (SEGMENTS_TOPIC,))
    cluster = MockKafka(tmp_path / "mock-kafka.log", topics=topics)
    yield cluster
    cluster.stop()
    if _failed(request):
        print(f"--- relay-mock-kafka log ({cluster.log_path}) ---\n{tail(cluster.log_path)}")


@pytest.fixture
def relay_factory(tmp_path: Path, mock_kafka: MockKafka, request: pytest.FixtureRequest
                  ) -> Iterator[Callable[..., Relay]]:
    """Creates (not starts) relays against `mock_kafka`; all are stopped at teardown.

    relay_factory(extra_env={...}, queue_dir=...) -> Relay
    """
    relays: list[Relay] = []

    def create(extra_env: Optional[dict[str, str]] = None, queue_dir: Optional[Path] = None) -> Relay:
        index = len(relays)
        relay = Relay(tmp_path / f"relay-{index}.log", queue_dir or tmp_path / f"queue-{index}",
                      mock_kafka.bootstrap_servers, extra_env)
        relays.append(relay)
        return relay

    yield create
    for relay in relays:
        if relay.process is not None and relay.process.poll() is None:
            try:
                relay.stop()
            except HarnessError as error:
                print(error)
    if _failed(request):
        for relay in relays:
            print(f"--- relay log ({relay.log_path}) ---\n{relay.log_tail()}")


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    """A started relay with default settings."""
    return relay_factory().start()


@pytest.fixture
def segments_reader(mock_kafka: MockKafka) -> Iterator[KafkaTopicReader]:
    reader = KafkaTopicReader(mock_kafka.bootstrap_servers, SEGMENTS_TOPIC)
    yield reader
    reader.close()


@pytest.fixture
def topic(mock_kafka: MockKafka) -> Iterator[Callable[[str], KafkaTopicReader]]:
    """topic(name) -> one reader per topic for the test, closed at teardown."""
    readers: dict[str, KafkaTopicReader] = {}

    def reader(name: str) -> KafkaTopicReader:
        if name not in readers:
            readers[name] = KafkaTopicReader(mock_kafka.bootstrap_servers, name)
        return readers[name]

    yield reader
    for opened in readers.values():
        opened.close()


@pytest.fixture
def fuse() -> None:
    """For tests on the power-loss filesystem (lazyfs.py): a FUSE mount needs /dev/fuse and
    usually root. Without root the reason is a skip (a failure in CI); as root a machine that
    still cannot mount fails the test with the reason."""
    from lazyfs import LazyFSError, check_fuse_available
    try:
        check_fuse_available()
    except LazyFSError as error:
        if os.geteuid() != 0:
            missing_privilege(str(error))
        raise


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, so a full disk comes from the kernel; mounting it needs root."""
    if os.geteuid() != 0:
        missing_privilege("mounts a 2 MiB tmpfs")
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
