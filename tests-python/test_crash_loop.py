"""The crash loop (tests-python/crash_loop.py) in a short CI form: kill -9 at random moments
under concurrent agent load, restart on the same queue directory, then every acknowledged
segment id must be on Kafka exactly once: the publisher reads back what it had produced before
each kill and does not produce it again (docs/RELIABILITY.md, "No duplicates after a crash").

The seed is fixed so a failure can be replayed; RELAY_CRASH_LOOP_SEED overrides it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from crash_loop import CrashLoopConfig, run

SEED = int(os.environ.get("RELAY_CRASH_LOOP_SEED", "20261121"))


def _report(summary: dict) -> None:
    print("crash loop summary: " + json.dumps({key: value for key, value in summary.items() if key != "config"}))


def _assert_sound(summary: dict, cycles: int) -> None:
    assert summary["cycles"] == cycles
    assert summary["segments_acked"] > 0, summary
    assert summary["lost"] == 0, (f"{summary['lost']} acknowledged segments lost, e.g. "
                                  f"{summary['lost_examples']}; logs in {summary['work_dir']}")
    # Every acknowledged segment is filed under exactly one cycle, and no cycle lost any.
    rows = summary["per_cycle"]
    assert len(rows) == cycles + 1, rows
    assert sum(row["acked"] for row in rows) == summary["segments_acked"], rows
    assert sum(row["duplicated_records"] for row in rows) == summary["duplicated_records"], rows
    assert summary["duplicated_records"] == 0, (f"{summary['duplicated_records']} records on Kafka twice, "
                                                f"per cycle {rows}; logs in {summary['work_dir']}")
    assert all(row["lost"] == 0 for row in rows), rows
    # A kill stops the process, not the page cache: a slot write is whole or not made.
    assert summary["kills_with_unreadable_position"] == 0, summary
    # Kills must have landed across segment rolls, not inside one file.
    assert summary["segment_files_rolled"] >= cycles, summary
    assert summary["max_rss_mib"] < 150, summary


def test_kill_9_loop_loses_no_acknowledged_segment(tmp_path: Path):
    summary = run(CrashLoopConfig(cycles=5, seconds_per_cycle=1.0, seed=SEED, work_dir=str(tmp_path)))
    _report(summary)
    _assert_sound(summary, 5)
    assert summary["final_drain_s"] is not None, "the backlog never drained after the last restart"


def test_kill_9_loop_with_kafka_outages_loses_no_acknowledged_segment(tmp_path: Path):
    # Every second cycle runs (and is killed, and restarts) with the only broker down.
    summary = run(CrashLoopConfig(cycles=4, seconds_per_cycle=0.8, seed=SEED + 1, outage_every=2,
                                  work_dir=str(tmp_path)))
    _report(summary)
    _assert_sound(summary, 4)
    assert summary["kafka_outage_cycles"] == 2, summary
    assert summary["final_drain_s"] is not None, "the backlog never drained after Kafka came back"
