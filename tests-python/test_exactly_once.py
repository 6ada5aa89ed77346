"""Exactly once into Kafka across crashes (issue 26).

Every record the relay produces carries `sw-relay-queue` (the relay's id), `sw-relay-position`
(its place in the disk queue) and `sw-relay-checksum`. After a restart the publisher reads each
partition back from the offsets in `kafka-delivery-ledger` before producing anything, and does
not produce again what is already there. Where that cannot be checked (the topic was recreated,
the relay points at another cluster, retention deleted the records), it produces at least once
and counts `relay_replayed_unverified_total`.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import grpc

from conftest import SEGMENTS_TOPIC, KafkaTopicReader, MockKafka, Relay, encode_segment, wait_for
from crash_loop import CrashLoopConfig, run
from power_cut_loop import PowerCutConfig
from power_cut_loop import run as run_power_cuts
from reliability_support import SegmentIdCollector, metric, wait_until_drained

SEED = int(os.environ.get("RELAY_CRASH_LOOP_SEED", "20261208"))
COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"


def _log_events(log: Path, message: str) -> list[dict[str, str]]:
    """The `key=value` fields of the relay's log lines with this message, across every start."""
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in log.read_text(errors="replace").splitlines()
            if line.endswith(message)]


def _assert_exactly_once(summary: dict, cycles: int) -> None:
    assert summary["cycles"] == cycles
    assert summary["segments_acked"] > 0, summary
    assert summary["lost"] == 0, f"{summary['lost']} lost, e.g. {summary['lost_examples']}"
    assert summary["final_drain_s"] is not None, "the backlog never drained after the last restart"
    assert summary["duplicated_records"] == 0, (
        f"{summary['duplicated_records']} duplicated records; per cycle: "
        f"{[row['duplicated_records'] for row in summary['per_cycle']]}; logs in {summary['work_dir']}")


def test_kill_9_with_records_in_flight_duplicates_nothing(tmp_path: Path):
    """A node's OOM killer or `kill -9` hitting the relay under agent load, five times: every
    acknowledged segment reaches Kafka exactly once, and the restarts really found records the
    killed process had delivered but not confirmed (so the read-back, not luck, kept them single)."""
    summary = run(CrashLoopConfig(cycles=5, seconds_per_cycle=1.0, seed=SEED, work_dir=str(tmp_path)))
    print("exactly-once crash loop: " + json.dumps({k: v for k, v in summary.items() if k != "config"}))
    _assert_exactly_once(summary, 5)
    reads = _log_events(tmp_path / "relay.log", "kafka read back before producing")
    assert len(reads) == 6, reads  # the first start and five restarts
    assert sum(int(event["alreadyDelivered"]) for event in reads) > 0, reads
    replays = _log_events(tmp_path / "relay.log", "replay after the restart finished")
    assert all(event["producedUnverified"] == "0" for event in replays), replays


def test_kill_9_during_kafka_outages_duplicates_nothing(tmp_path: Path):
    """Every second kill lands while the only broker is down, and the relay restarts into the
    outage: the read-back waits for Kafka instead of producing blind, and nothing arrives twice."""
    summary = run(CrashLoopConfig(cycles=4, seconds_per_cycle=0.8, seed=SEED + 1, outage_every=2,
                                  work_dir=str(tmp_path)))
    print("exactly-once crash loop with outages: "
          + json.dumps({k: v for k, v in summary.items() if k != "config"}))
    _assert_exactly_once(summary, 4)
    assert summary["kafka_outage_cycles"] == 2, summary


def test_power_cuts_under_fsync_always_duplicate_nothing(tmp_path: Path):
    """A node losing power under agent load, eight times (the queue under
    SW_RELAY_QUEUE_FSYNC=always on the power-loss filesystem, cuts aimed at group commits, rolls,
    position writes and recovery): the page cache is gone too, the ledger may be an older
    version, and still nothing acknowledged is lost and nothing reaches Kafka twice."""
    summary = run_power_cuts(PowerCutConfig(cuts=8, seed=SEED + 2, fsync="always", partitions=64,
                                            max_padding=400, work_dir=str(tmp_path / "loop")))
    print("exactly-once power cuts: " + json.dumps({k: v for k, v in summary.items() if k != "config"}))
    assert summary["cuts"] == 8 and summary["segments_acked"] > 0, summary
    assert summary["lost"] == 0, summary["lost_by_cut"]
    assert not summary["broken_promises"], summary["broken_promises"]
    assert summary["final_drain_s"] is not None, "the backlog never drained after the last restart"
    assert summary["duplicated_records"] == 0, f"{summary['duplicated_records']} duplicated; {summary['work_dir']}"


def _ledger_offsets(queue_dir: Path) -> int:
    """The sum of the partition offsets in `kafka-delivery-ledger` (0 while there is none)."""
    ledger = queue_dir / "kafka-delivery-ledger"
    if not ledger.exists():
        return 0
    return sum(int(line.split()[2]) for line in ledger.read_text().splitlines() if line.startswith("p "))


def _send(relay: Relay, count: int, label: str) -> set[str]:
    """One agent stream of `count` distinct segments; returns their ids once acknowledged."""
    trace_id = f"{label}-{uuid.uuid4().hex[:8]}"
    ids = [f"{trace_id}.{n}" for n in range(count)]
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(COLLECT)(iter(encode_segment(trace_id, i, ("/once",)) for i in ids), timeout=10)
    return set(ids)


def test_recreated_topic_falls_back_to_at_least_once_and_says_so(tmp_path: Path):
    """An operator recreates the Kafka cluster (or points the relay at a new one) while records
    wait in the queue: the offsets the relay remembers no longer exist, so it cannot know what
    arrived. It must deliver every queued record anyway, count them as replayed unverified and
    log why, instead of trusting an empty read-back."""
    first = MockKafka(tmp_path / "mock-a.log", partitions=3)
    second = None
    relay = Relay(tmp_path / "relay.log", tmp_path / "queue", first.bootstrap_servers)
    try:
        relay.start()
        delivered = _send(relay, 30, "before")
        wait_until_drained(relay, 30)
        # The ledger is saved every half second: wait until it names offsets past 0.
        wait_for(lambda: _ledger_offsets(tmp_path / "queue") > 0, 10, "a ledger naming the delivered offsets")
        first.command("down 1")
        queued = _send(relay, 20, "queued")
        relay.kill()
        first.stop()

        second = MockKafka(tmp_path / "mock-b.log", partitions=3)
        relay.env["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS"] = second.bootstrap_servers
        relay.start()
        reader = KafkaTopicReader(second.bootstrap_servers, SEGMENTS_TOPIC)
        try:
            collector = SegmentIdCollector(reader)
            collector.wait_for(queued, 30, "segments queued before the cluster was recreated")
            wait_until_drained(relay, 30)
            reader.read_to_end(timeout=30)
            counts = collector.update()
        finally:
            reader.close()
        assert queued <= counts.keys() and not delivered & counts.keys()
        unverified = wait_for(lambda: metric(relay, "relay_replayed_unverified_total"), 10,
                              "the unverified replay counter")
        assert unverified == len(queued), unverified
        assert any("the topic was recreated or truncated" in line
                   for line in relay.log_text().splitlines()), relay.log_tail()
    finally:
        if relay.process is not None and relay.process.poll() is None:
            relay.stop()
        first.stop()
        if second is not None:
            second.stop()
