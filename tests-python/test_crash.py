"""kill -9 under load: every stream the relay acknowledged must still reach Kafka.

An OK on `collect` is the relay's promise that the stream's records are in its disk
queue. SIGKILL loses the process, not the page cache, so after a restart on the same
queue directory the publisher must deliver every acknowledged segment (at least once;
duplicates are allowed and only reported).
"""

import threading
import uuid
from collections import Counter

import grpc

from conftest import KafkaTopicReader, Relay, decode_segment, encode_segment, wait_for

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
CLIENTS = 8
SEGMENTS_PER_STREAM = 20
MAX_STREAMS_PER_CLIENT = 150
KILL_AFTER_ACKED_STREAMS = 200


class Load:
    """K client threads, each sending streams of distinct segments until told to stop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked_segment_ids: set[str] = set()
        self.acked_streams = 0
        self.failed_streams: Counter = Counter()
        self.threads = [threading.Thread(target=self._client, args=(n,), name=f"load-{n}") for n in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads), "load threads did not stop"

    def running(self) -> int:
        return sum(thread.is_alive() for thread in self.threads)

    def _client(self, client: int) -> None:
        run = uuid.uuid4().hex[:8]
        with grpc.insecure_channel(self.address) as channel:
            collect = channel.stream_unary(COLLECT)
            for number in range(MAX_STREAMS_PER_CLIENT):
                if self.stop.is_set():
                    return
                trace_id = f"crash-{run}-{client}-{number}"
                segment_ids = [f"{trace_id}.{n}" for n in range(SEGMENTS_PER_STREAM)]
                messages = [encode_segment(trace_id, segment_id, ("/crash",)) for segment_id in segment_ids]
                try:
                    collect(iter(messages), timeout=10)
                except grpc.RpcError as error:
                    with self.lock:
                        self.failed_streams[error.code().name] += 1
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        return  # the relay is gone; nothing more can be acknowledged
                    continue
                with self.lock:
                    self.acked_segment_ids.update(segment_ids)
                    self.acked_streams += 1


def test_acknowledged_segments_survive_sigkill(relay_factory, segments_reader: KafkaTopicReader):
    relay: Relay = relay_factory(extra_env={"SW_RELAY_QUEUE_FSYNC": "interval"}).start()
    load = Load(relay.grpc_address)
    load.start()
    try:
        wait_for(lambda: load.acked_streams >= KILL_AFTER_ACKED_STREAMS or not load.running(), 120,
                 f"{KILL_AFTER_ACKED_STREAMS} acknowledged streams")
        still_sending = load.running()
        relay.kill()
    finally:
        load.join()
    assert load.acked_streams >= KILL_AFTER_ACKED_STREAMS, (
        f"only {load.acked_streams} streams acknowledged before the load ended; failures: {load.failed_streams}")
    assert still_sending, "the load had finished before the kill: the test did not crash mid-load"

    relay.restart()

    acked = load.acked_segment_ids

    delivered: set[str] = set()
    decoded = 0

    def all_acked_delivered(records) -> bool:
        nonlocal decoded
        delivered.update(decode_segment(record.value).traceSegmentId for record in records[decoded:])
        decoded = len(records)
        return acked <= delivered

    try:
        segments_reader.read_until(all_acked_delivered, timeout=60,
                                   what=f"all {len(acked)} acknowledged segments after the restart")
    except AssertionError:
        missing = acked - delivered
        raise AssertionError(f"{len(missing)} of {len(acked)} acknowledged segments never reached Kafka, "
                             f"e.g. {sorted(missing)[:5]}") from None

    counts = Counter(decode_segment(record.value).traceSegmentId for record in segments_reader.records)
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    unacknowledged_delivered = len(set(counts) - acked)
    print(f"crash test: {load.acked_streams} streams / {len(acked)} segments acknowledged before SIGKILL, "
          f"stream failures {dict(load.failed_streams)}, {len(segments_reader.records)} records on Kafka, "
          f"{duplicates} duplicates, {unacknowledged_delivered} delivered without an acknowledgement")
