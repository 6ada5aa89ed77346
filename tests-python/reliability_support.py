"""Shared pieces of the reliability suites (crash loop, Kafka faults, corruption, hostile
clients): agent-like load that records exactly which segments were acknowledged, process
probes (RSS, CPU time) read from /proc, and a reader of the relay's on-disk queue format.

Nothing here sleeps to synchronise: waits poll a condition against a deadline.
"""

from __future__ import annotations

import json
import random
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import grpc

from conftest import HarnessError, KafkaTopicReader, Relay, decode_segment, encode_segment, wait_for

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"

# --------------------------------------------------------------------------- admin endpoint


def status_document(relay: Relay) -> dict:
    return json.loads(relay.http_text("/status"))


def http_body(relay: Relay, path: str) -> tuple[Optional[int], str]:
    """Status and body, also for error statuses such as /readyz's 503."""
    try:
        with urllib.request.urlopen(relay.admin_url + path, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(relay: Relay, name: str, **labels: str) -> Optional[float]:
    """The sum of `name`'s samples carrying `labels` in /metrics, None when absent."""
    from test_operations import metric_value

    return metric_value(relay.http_text("/metrics"), name, **labels)


# --------------------------------------------------------------------------- /proc probes


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise HarnessError(f"no VmRSS in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    import os

    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


MIB = 1 << 20
RSS_BOUND = 150 * MIB


# --------------------------------------------------------------------------- load


@dataclass
class LoadTally:
    acked_segment_ids: set[str] = field(default_factory=set)
    acked_streams: int = 0
    failed_streams: Counter = field(default_factory=Counter)
    attempted_segment_ids: set[str] = field(default_factory=set)


class AgentLoad:
    """Client threads that each send client streams of distinct segments, like agents.

    A stream's segments count as acknowledged only when `collect` returned OK. While the relay
    is down (`relay_up` cleared) the clients wait for it to come back instead of spinning; a
    failed call drops its channel so that the next call connects afresh.
    """

    def __init__(self, address: str, clients: int = 4, segments_per_stream: int = 10,
                 max_padding: int = 1500, seed: int = 0, call_timeout: float = 10,
                 credentials_metadata: Optional[list[tuple[str, str]]] = None, pause_s: float = 0.0) -> None:
        """`pause_s`: each client waits that long between streams (bounds the load's CPU)."""
        self.address = address
        self.clients = clients
        self.segments_per_stream = segments_per_stream
        self.max_padding = max_padding
        self.call_timeout = call_timeout
        self.pause_s = pause_s
        self.metadata = credentials_metadata
        self.seed = seed
        self.run_id = uuid.uuid4().hex[:8]
        self.relay_up = threading.Event()
        self.relay_up.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.tally = LoadTally()
        self.call_latencies: list[float] = []
        # segment id -> time.monotonic() when its stream's OK arrived (for loss windows)
        self.ack_times: dict[str, float] = {}
        # A loop's label for the relay incarnation now being sent to (a crash loop's cycle
        # number); each stream's segments are filed under the epoch in which the stream began.
        self.epoch = 0
        self.segment_epochs: dict[str, int] = {}
        self._threads = [threading.Thread(target=self._client, args=(n,), name=f"agent-load-{n}", daemon=True)
                         for n in range(clients)]

    # lifecycle ---------------------------------------------------------------

    def start(self) -> "AgentLoad":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self.relay_up.set()  # wake waiting clients so they can see the stop
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            raise HarnessError(f"load threads still running after {timeout} s: {alive}")

    # views -------------------------------------------------------------------

    @property
    def acked_streams(self) -> int:
        with self._lock:
            return self.tally.acked_streams

    def acked_ids(self) -> set[str]:
        with self._lock:
            return set(self.tally.acked_segment_ids)

    def failures(self) -> dict[str, int]:
        with self._lock:
            return dict(self.tally.failed_streams)

    def acked_at(self) -> dict[str, float]:
        with self._lock:
            return dict(self.ack_times)

    def epochs(self) -> dict[str, int]:
        with self._lock:
            return dict(self.segment_epochs)

    # clients -----------------------------------------------------------------

    def _client(self, client: int) -> None:
        rng = random.Random(f"{self.seed}-{client}")
        channel: Optional[grpc.Channel] = None
        number = 0
        try:
            while not self._stop.is_set():
                if not self.relay_up.is_set():
                    if channel is not None:
                        channel.close()
                        channel = None
                    self.relay_up.wait()
                    continue
                if channel is None:
                    channel = grpc.insecure_channel(self.address, options=[
                        ("grpc.use_local_subchannel_pool", 1),
                        ("grpc.initial_reconnect_backoff_ms", 50),
                        ("grpc.min_reconnect_backoff_ms", 50),
                        ("grpc.max_reconnect_backoff_ms", 200)])
                number += 1
                trace_id = f"load-{self.run_id}-{client}-{number}"
                segment_ids = [f"{trace_id}.{n}" for n in range(self.segments_per_stream)]
                messages = [encode_segment(trace_id, segment_id, ("/load",), padding=rng.randrange(self.max_padding))
                            for segment_id in segment_ids]
                with self._lock:
                    self.tally.attempted_segment_ids.update(segment_ids)
                    for segment_id in segment_ids:
                        self.segment_epochs[segment_id] = self.epoch
                started = time.monotonic()
                try:
                    channel.stream_unary(COLLECT)(iter(messages), timeout=self.call_timeout, metadata=self.metadata)
                except grpc.RpcError as error:
                    with self._lock:
                        self.tally.failed_streams[error.code().name] += 1
                    channel.close()
                    channel = None
                    # Retry back-off (not synchronisation): a refused call is retried as a new
                    # stream with new segment ids, the way an agent re-sends its buffer.
                    self._stop.wait(0.02)
                    continue
                acked_at = time.monotonic()
                with self._lock:
                    self.tally.acked_segment_ids.update(segment_ids)
                    self.tally.acked_streams += 1
                    self.call_latencies.append(acked_at - started)
                    for segment_id in segment_ids:
                        self.ack_times[segment_id] = acked_at
                if self.pause_s:
                    self._stop.wait(self.pause_s)  # pacing, not synchronisation
        finally:
            if channel is not None:
                channel.close()


# --------------------------------------------------------------------------- Kafka check


@dataclass
class DeliveryCheck:
    acked: int
    delivered_acked: int
    lost: list[str]
    duplicated_records: int
    duplicated_segments: int
    delivered_unacked: int
    records_on_kafka: int
    copies: Counter  # segment id -> how many records on Kafka carry it


class SegmentIdCollector:
    """Incrementally decodes the segment ids a KafkaTopicReader has read."""

    def __init__(self, reader: KafkaTopicReader) -> None:
        self.reader = reader
        self.counts: Counter = Counter()
        self._decoded = 0

    def update(self) -> Counter:
        records = self.reader.records
        for record in records[self._decoded:]:
            self.counts[decode_segment(record.value).traceSegmentId] += 1
        self._decoded = len(records)
        return self.counts

    def wait_for(self, wanted: set[str], timeout: float, what: str = "acknowledged segments") -> None:
        def done(_records) -> bool:
            return wanted <= self.update().keys()
        try:
            self.reader.read_until(done, timeout, what)
        except HarnessError:
            missing = wanted - self.update().keys()
            raise HarnessError(f"{len(missing)} of {len(wanted)} {what} never reached Kafka within "
                               f"{timeout:.0f} s, e.g. {sorted(missing)[:5]}") from None

    def check(self, acked: set[str]) -> DeliveryCheck:
        counts = self.update()
        delivered = set(counts)
        return DeliveryCheck(
            acked=len(acked), delivered_acked=len(acked & delivered), lost=sorted(acked - delivered),
            duplicated_records=sum(c - 1 for c in counts.values() if c > 1),
            duplicated_segments=sum(1 for c in counts.values() if c > 1),
            delivered_unacked=len(delivered - acked), records_on_kafka=len(self.reader.records),
            copies=Counter(counts))


def final_delivery_check(relay: Relay, bootstrap_servers: str, acked: set[str], drain_timeout: float,
                         log=print) -> tuple[DeliveryCheck, Optional[float], dict[int, int]]:
    """After a loop: waits for the relay's backlog to drain and every acknowledged id to show up on
    Kafka (each bounded by `drain_timeout`), then reads the topic to its end. Returns the check,
    the drain time (None if it never drained) and the partitions the mock cluster pruned (a loss
    verdict is only sound when that is empty)."""
    from conftest import SEGMENTS_TOPIC

    drain_s = None
    try:
        drain_s = wait_until_drained(relay, drain_timeout)
    except HarnessError as error:
        log(f"backlog did not drain: {error}")
    reader = KafkaTopicReader(bootstrap_servers, SEGMENTS_TOPIC)
    try:
        collector = SegmentIdCollector(reader)
        if drain_s is None:
            try:
                collector.wait_for(acked, drain_timeout)
            except HarnessError as error:
                log(str(error))
        # Once the queue has drained, Kafka has confirmed (acks=all) everything it held, so the
        # topic up to its high watermarks is the verdict: what is missing there is lost, not late.
        reader.read_to_end(timeout=drain_timeout)
        return collector.check(acked), drain_s, pruned_partitions(reader)
    finally:
        reader.close()


def pruned_partitions(reader: KafkaTopicReader) -> dict[int, int]:
    """Partitions whose log no longer starts at offset 0. librdkafka's mock cluster keeps a
    bounded in-memory log per partition (~5 MiB) and drops the oldest message sets beyond it;
    a loss check is only sound when this is empty."""
    return {p: low for p, (low, _high) in reader.watermarks().items() if low > 0}


# --------------------------------------------------------------------------- queue files


@dataclass(frozen=True)
class QueueFileRecord:
    file: Path
    offset: int
    length: int  # whole frame, header included
    topic: str
    key: bytes
    value: bytes


def read_queue_file(path: Path) -> list[QueueFileRecord]:
    """Parses one `<n>.log` segment file by its documented framing (no CRC check: the tests use
    it on files they have not damaged yet, to know which record lives where)."""
    data = path.read_bytes()
    records = []
    offset = 0
    while offset + 8 <= len(data):
        body_length, _crc = struct.unpack_from("<II", data, offset)
        if body_length == 0 or offset + 8 + body_length > len(data):
            break
        body = data[offset + 8: offset + 8 + body_length]
        if body[0] != 0xA1:
            break
        topic_length = body[1]
        key_length = struct.unpack_from("<H", body, 2)[0]
        start = 12
        topic = body[start:start + topic_length].decode()
        key = body[start + topic_length:start + topic_length + key_length]
        value = body[start + topic_length + key_length:]
        records.append(QueueFileRecord(path, offset, 8 + body_length, topic, bytes(key), bytes(value)))
        offset += 8 + body_length
    return records


def queue_segment_files(queue_dir: Path) -> list[Path]:
    return sorted(p for p in queue_dir.iterdir() if p.suffix == ".log" and p.stem.isdigit())


def segment_ids_in(records: Iterable[QueueFileRecord]) -> set[str]:
    return {decode_segment(record.value).traceSegmentId for record in records}


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of queue records and of `position`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


POSITION_SLOT_STRIDE = 4096


def _position_slot(data: bytes, start: int) -> Optional[tuple[int, int, int]]:
    """(sequence, segment, offset) of a valid slot: "SWRQPOS2", u64 sequence, file, offset, crc;
    or, at offset 0, the 28-byte "SWRQPOS1" record of earlier versions (sequence 0)."""
    slot = data[start:start + 36]
    if len(slot) == 36 and slot[:8] == b"SWRQPOS2" and crc32c(slot[:32]) == struct.unpack_from("<I", slot, 32)[0]:
        return struct.unpack_from("<QQQ", slot, 8)
    legacy = data[start:start + 28]
    if start == 0 and len(legacy) == 28 and legacy[:8] == b"SWRQPOS1" \
            and crc32c(legacy[:24]) == struct.unpack_from("<I", legacy, 24)[0]:
        return (0, *struct.unpack_from("<QQ", legacy, 8))
    return None


def read_position(queue_dir: Path) -> tuple[str, Optional[tuple[int, int]]]:
    """The `position` file as recovery reads it: ("valid", (segment, offset)) from the valid slot
    with the higher sequence, ("missing", None) or ("corrupt", None) (no valid slot)."""
    try:
        data = (queue_dir / "position").read_bytes()
    except FileNotFoundError:
        return "missing", None
    slots = [slot for slot in (_position_slot(data, 0), _position_slot(data, POSITION_SLOT_STRIDE)) if slot]
    if not slots:
        return "corrupt", None
    _, segment, offset = max(slots, key=lambda slot: slot[0])
    return "valid", (segment, offset)


@dataclass
class ExpectedRecovery:
    position: str  # valid / missing / corrupt
    confirmed: tuple[int, int]
    unconfirmed_records: int
    torn_tail_bytes: int
    files: dict[str, int]  # segment file -> size


def expected_recovery(queue_dir: Path) -> ExpectedRecovery:
    """What the queue's recovery must find in an undamaged directory (the documented algorithm,
    recomputed independently): replay from a valid `position`, else from the oldest file; files
    wholly before it are dropped; a torn tail of the last file is cut. Records are parsed by
    their framing only, so this is exact for directories with no damaged record (a power cut on
    the lazy filesystem loses whole unsynced writes, it never damages bytes)."""
    files = queue_segment_files(queue_dir) if queue_dir.exists() else []
    state, position = read_position(queue_dir) if queue_dir.exists() else ("missing", None)
    numbers = [int(f.stem) for f in files]
    confirmed = position or (numbers[0] if numbers else 1, 0)
    sizes = {f.name: f.stat().st_size for f in files}
    while len(numbers) > 1 and numbers[0] < confirmed[0]:
        numbers.pop(0)
        files.pop(0)
    if not numbers or numbers[-1] < confirmed[0]:
        return ExpectedRecovery(state, confirmed, 0, 0, sizes)
    if confirmed[0] < numbers[0]:
        confirmed = (numbers[0], 0)
    unconfirmed, torn = 0, 0
    for number, path in zip(numbers, files):
        if number < confirmed[0]:
            continue
        records = read_queue_file(path)
        start = confirmed[1] if number == confirmed[0] else 0
        unconfirmed += sum(1 for record in records if record.offset >= start)
        if path == files[-1]:
            end = records[-1].offset + records[-1].length if records else 0
            torn = path.stat().st_size - end
    return ExpectedRecovery(state, confirmed, unconfirmed, torn, sizes)


def wait_until_drained(relay: Relay, timeout: float) -> float:
    """Waits for /status to show no unconfirmed record; returns how long it took."""
    started = time.monotonic()
    wait_for(lambda: status_document(relay)["queue"]["unconfirmed_records"] == 0, timeout,
             "the queue backlog to drain", interval=0.1)
    return time.monotonic() - started
