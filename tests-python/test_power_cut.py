"""Power cuts under the relay (tests-python/power_cut_loop.py and lazyfs.py) in a short CI form:
the queue directory on the power-loss filesystem, agent load, cuts aimed at group commits, file
rolls, position writes, deletions and recovery, kill -9, a remount of what the disk kept, and a
restart. Longer runs and their figures: docs/RELIABILITY.md, "Power loss".

Seeds are fixed so a failure can be replayed (RELAY_POWER_CUT_SEED overrides them). A machine
without FUSE fails these tests with the reason; without root they are skipped with it (a
failure in CI: conftest.fuse).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from conftest import HarnessError, MockKafka, Relay, encode_segment, wait_for
from lazyfs import LazyFSMount
from power_cut_loop import PowerCutConfig, run
from reliability_support import COLLECT, SegmentIdCollector, status_document

pytestmark = pytest.mark.usefixtures("fuse")

SEED = int(os.environ.get("RELAY_POWER_CUT_SEED", "20261203"))  # 12 cuts: every kind at least once


def _report(summary: dict) -> None:
    print("power-cut summary: " + json.dumps({k: v for k, v in summary.items() if k != "config"}))


def test_power_cuts_under_fsync_always_lose_no_acknowledged_segment(tmp_path: Path):
    """Stands for: an acknowledgement under SW_RELAY_QUEUE_FSYNC=always that a power cut can undo
    (an ack before the fdatasync, a new queue file whose directory entry was never synced, a
    recovery that deletes or skips durable records), a relay that does not start on what a cut
    left, and a /status that misreports what recovery found."""
    summary = run(PowerCutConfig(cuts=12, seed=SEED, fsync="always", work_dir=str(tmp_path / "loop")))
    _report(summary)
    assert summary["cuts"] == 12
    assert summary["segments_acked"] > 0, summary
    assert summary["lost"] == 0, (f"{summary['lost']} acknowledged segments lost to power cuts, per cut "
                                  f"{summary['lost_by_cut']}, e.g. {summary['lost_examples']}; what each cut "
                                  f"undid: {summary['work_dir']}/cuts.json")
    assert summary["recovery_mismatches"] == 0, summary["broken_promises"]
    assert not summary["broken_promises"], summary["broken_promises"]
    assert summary["duplicated_records"] == 0, f"records on Kafka twice after power cuts: {summary}"
    # The cuts really hit the moments they aim at, and really threw unsynced state away.
    assert summary["aimed_cuts_fired"] >= 6, summary
    assert summary["cuts_losing_unsynced_data"] + summary["cuts_undoing_names"] >= 6, summary
    assert summary["final_drain_s"] is not None, "the backlog never drained after the last restart"


def test_power_cuts_under_fsync_interval_lose_at_most_one_interval(tmp_path: Path):
    """Stands for: SW_RELAY_QUEUE_FSYNC=interval losing more than it promises: anything
    acknowledged longer than one SW_RELAY_QUEUE_FSYNC_INTERVAL_MS before the cut (a sync that
    never runs, runs late, or syncs the wrong file). 1 MiB files, so rolls (which sync) do not
    hide the interval."""
    summary = run(PowerCutConfig(cuts=8, seed=SEED + 1, fsync="interval", fsync_interval_ms=200,
                                 segment_bytes="1MiB", kinds=("timer", "group-commit", "recovery"),
                                 partitions=64, max_padding=400,
                                 work_dir=str(tmp_path / "loop")))
    _report(summary)
    assert summary["cuts"] == 8
    assert summary["segments_acked"] > 0, summary
    assert summary["recovery_mismatches"] == 0, summary["broken_promises"]
    window = summary["largest_loss_window_s"]
    assert window is None or window <= 0.2 + 0.1, (f"a segment acknowledged {window} s before a cut was lost "
                                                   f"(interval 0.2 s); {summary['lost_by_cut']}")
    assert not summary["broken_promises"], summary["broken_promises"]


# --------------------------------------------------------------------------- focused cuts


@pytest.fixture
def lazy(tmp_path: Path) -> Iterator[LazyFSMount]:
    mount = LazyFSMount(tmp_path / "disk", tmp_path / "mnt")
    yield mount
    mount.unmount()


def _send(relay: Relay, ids: list[str]) -> None:
    messages = [encode_segment(ids[0].split(".")[0], segment_id, ("/power-cut",)) for segment_id in ids]
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(COLLECT)(iter(messages), timeout=15)


def test_queue_directory_created_by_the_relay_survives_a_power_cut(
        lazy: LazyFSMount, relay_factory, mock_kafka: MockKafka, segments_reader):
    """Stands for: the relay creating SW_RELAY_QUEUE_DIR (mkdir -p) and never syncing the parent
    directory, so that under fsync=always a power cut after the very first start takes the
    whole queue directory, acknowledged segments included. The broker is down, so the segments
    can only reach Kafka from the disk."""
    lazy.mount()
    relay = relay_factory({"SW_RELAY_QUEUE_FSYNC": "always"}, queue_dir=lazy.mountpoint / "relay" / "queue")
    mock_kafka.command("down 1")
    relay.start()
    ids = [f"mkdir-cut.{n}" for n in range(3)]
    _send(relay, ids)  # OK: fdatasynced in a queue file whose directory was synced
    report = lazy.cut()
    relay.kill()
    lazy.remount()
    relay.start()
    recovered = status_document(relay)["queue"]["unconfirmed_records"]
    assert recovered == len(ids), (
        f"{len(ids)} acknowledged segments were waiting on disk, recovery found {recovered} after the power cut: "
        f"the cut undid {report['undurable_names']}, i.e. the directories the relay created were never made "
        f"durable (fsync of each created directory's parent is missing)")
    mock_kafka.command("up 1")
    SegmentIdCollector(segments_reader).wait_for(set(ids), 30)


def test_dead_lettered_record_survives_a_power_cut(lazy: LazyFSMount, relay_factory, mock_kafka: MockKafka,
                                                   segments_reader):
    """Stands for: a record confirmed in the queue because it went to dead-letter.log, where a
    power cut keeps the confirmation (or the deletion of its queue file) but not the new
    dead-letter file: the record would then be nowhere. After the cut it must be in the
    surviving dead-letter.log or be replayed to Kafka."""
    lazy.mount()
    queue = lazy.mountpoint / "queue"
    queue.mkdir()
    descriptor = os.open(lazy.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(descriptor)
    os.close(descriptor)
    relay = relay_factory({"SW_RELAY_QUEUE_FSYNC": "always", "SW_RELAY_QUEUE_SEGMENT_BYTES": "64KiB"},
                          queue_dir=queue)
    relay.start()
    mock_kafka.command("errors 0 10")  # Produce: MESSAGE_TOO_LARGE once
    _send(relay, ["dead-letter-cut.0"])
    wait_for(lambda: status_document(relay)["kafka"]["dead_lettered"] >= 1, 30, "the record to be dead-lettered")
    lazy.cut()
    relay.kill()
    lazy.remount()
    dead_letters = queue / "dead-letter.log"
    kept = dead_letters.exists() and b"dead-letter-cut.0" in dead_letters.read_bytes()
    relay.start()
    if not kept:
        collector = SegmentIdCollector(segments_reader)
        try:
            collector.wait_for({"dead-letter-cut.0"}, 30)
        except HarnessError as error:
            pytest.fail(f"the dead-lettered record is neither in the surviving dead-letter.log nor replayed: {error}")
