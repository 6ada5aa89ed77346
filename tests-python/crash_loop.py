#!/usr/bin/env python3
"""Crash loop: kill -9 the relay at random moments under agent-like load, restart it on the same
queue directory and ports, repeat, then check every acknowledged segment id against Kafka.

    PY="$(scripts/python-env.sh)"
    "$PY" tests-python/crash_loop.py --cycles 50 --seconds-per-cycle 2 --seed 7
    "$PY" tests-python/crash_loop.py --cycles 20 --outage-every 3 --seed 11   # Kafka down too

An OK on `collect` promises the stream's segments are in the disk queue; SIGKILL loses the
process but not the page cache, so every acknowledged segment must reach Kafka after the
restarts (at least once: duplicates are allowed, counted and reported).

How the kills hit the interesting moments:
- mid segment roll: the queue rolls files at SW_RELAY_QUEUE_SEGMENT_BYTES (64 KiB here, a roll
  every ~60 segments), so a random kill under load often lands on or near a roll;
- mid position write: the publisher confirms deliveries continuously under load and the queue
  overwrites a slot of `position` at most every ~10 ms under load, so kills land during those
  writes too; a `position` recovery could not read after a kill is counted (it must never be);
- mid record write: a last segment file that does not end on a record boundary after the kill
  (a torn tail) is counted too.

Prints one JSON summary line and exits 1 if any acknowledged segment is lost (2 on a harness
failure). The same code runs as a short CI test (tests-python/test_crash_loop.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import HarnessError, MockKafka, Relay, tail, wait_for  # noqa: E402
from reliability_support import (AgentLoad, final_delivery_check, queue_segment_files, read_position,  # noqa: E402
                                 read_queue_file, rss_bytes, status_document)


@dataclass
class CrashLoopConfig:
    cycles: int = 5
    seconds_per_cycle: float = 1.5  # upper bound of the random delay before each kill
    seed: int = 1
    clients: int = 2
    segments_per_stream: int = 10
    max_padding: int = 1500  # random tag bytes per segment, up to this
    segment_bytes: str = "64KiB"
    fsync: str = "interval"
    brokers: int = 1
    partitions: int = 16  # the mock keeps ~5 MiB per partition; more partitions, more room
    outage_every: int = 0  # every Nth cycle runs with every broker down (0: never)
    drain_timeout: float = 120
    work_dir: Optional[str] = None


@dataclass
class CycleRecord:
    cycle: int
    kafka_down: bool
    kill_after_s: float
    acked_streams_before_kill: int
    last_segment_file: int
    position_after_kill: str  # valid / missing / corrupt, as recovery reads it
    torn_tail_bytes: int
    restart_s: float


def _queue_evidence(queue_dir: Path) -> tuple[int, str, int]:
    """After a kill: the newest segment file number, what recovery reads in `position`, and how
    many bytes of the last file do not form complete records (a torn tail)."""
    files = queue_segment_files(queue_dir)
    position = read_position(queue_dir)[0]
    if not files:
        return 0, position, 0
    last = files[-1]
    records = read_queue_file(last)
    parsed_end = records[-1].offset + records[-1].length if records else 0
    return int(last.stem), position, last.stat().st_size - parsed_end


def _per_cycle(cycles: list[CycleRecord], epochs: dict[str, int], acked: set[str], check) -> list[dict]:
    """Acknowledged, lost and duplicated segments by the cycle in which their stream began: a
    cycle ends with its kill, and its duplicates are what that kill made the relay replay (or,
    for a cycle whose Kafka was down, a later kill before the backlog drained). The last row is
    the incarnation after the last restart, which is never killed."""
    lost = set(check.lost)
    rows = [{"cycle": c.cycle, "kafka_down": c.kafka_down, "kill_after_s": c.kill_after_s, "acked": 0,
             "lost": 0, "duplicated_records": 0} for c in cycles]
    rows.append({"cycle": len(cycles), "kafka_down": False, "kill_after_s": None, "acked": 0, "lost": 0,
                 "duplicated_records": 0})
    for segment_id, epoch in epochs.items():
        row = rows[epoch]
        if segment_id in acked:
            row["acked"] += 1
            row["lost"] += segment_id in lost
        row["duplicated_records"] += max(0, check.copies.get(segment_id, 0) - 1)
    return rows


def run(config: CrashLoopConfig, log=print) -> dict:
    rng = random.Random(config.seed)
    work = Path(config.work_dir or tempfile.mkdtemp(prefix="relay-crash-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    queue_dir = work / "queue"
    mock = MockKafka(work / "mock-kafka.log", brokers=config.brokers, partitions=config.partitions)
    relay = Relay(work / "relay.log", queue_dir, mock.bootstrap_servers, {
        "SW_RELAY_QUEUE_SEGMENT_BYTES": config.segment_bytes,
        "SW_RELAY_QUEUE_FSYNC": config.fsync,
    })
    brokers = range(1, config.brokers + 1)
    load: Optional[AgentLoad] = None
    cycles: list[CycleRecord] = []
    max_rss = 0
    pause = threading.Event()  # never set: waits on it are the random kill moments
    started = time.monotonic()
    try:
        relay.start()
        load = AgentLoad(relay.grpc_address, clients=config.clients,
                         segments_per_stream=config.segments_per_stream, max_padding=config.max_padding,
                         seed=config.seed).start()
        for cycle in range(config.cycles):
            kafka_down = bool(config.outage_every) and cycle % config.outage_every == config.outage_every - 1
            if kafka_down:
                for broker in brokers:
                    mock.command(f"down {broker}")
            # Each kill must land under load: wait for this incarnation's first acknowledgement.
            baseline = load.acked_streams
            wait_for(lambda: load.acked_streams > baseline, 30, f"an acknowledged stream in cycle {cycle}")
            delay = rng.uniform(0.05, config.seconds_per_cycle)
            pause.wait(delay)  # the random kill moment itself, not a synchronisation
            max_rss = max(max_rss, rss_bytes(relay.process.pid))
            acked_before = load.acked_streams
            load.relay_up.clear()
            relay.kill()
            load.epoch = cycle + 1  # streams begun from here on go to the next incarnation
            last_file, position, torn = _queue_evidence(queue_dir)
            restart_started = time.monotonic()
            relay.start()  # same ports, same queue directory; Kafka may still be down
            restart_s = time.monotonic() - restart_started
            load.relay_up.set()
            if kafka_down:
                for broker in brokers:
                    mock.command(f"up {broker}")
            cycles.append(CycleRecord(cycle, kafka_down, round(delay, 3), acked_before, last_file, position, torn,
                                      round(restart_s, 3)))
            log(f"cycle {cycle}: killed after {delay:.2f} s (kafka {'down' if kafka_down else 'up'}), "
                f"{acked_before} streams acked so far, segment file {last_file}, "
                f"position {position}, torn tail={torn} B, ready again in {restart_s:.2f} s")

        load.stop()
        acked = load.acked_ids()
        check, drain_s, pruned = final_delivery_check(relay, mock.bootstrap_servers, acked, config.drain_timeout, log)
        per_cycle = _per_cycle(cycles, load.epochs(), acked, check)
        kill_duplicates = [row["duplicated_records"] for row in per_cycle[:len(cycles)]]
        final_status = status_document(relay)
        max_rss = max(max_rss, rss_bytes(relay.process.pid))
        restart_times = [c.restart_s for c in cycles]
        summary = {
            "cycles": len(cycles),
            "seed": config.seed,
            "config": asdict(config),
            "streams_acked": load.acked_streams,
            "segments_acked": check.acked,
            "segments_attempted": len(load.tally.attempted_segment_ids),
            "lost": len(check.lost),
            "lost_examples": check.lost[:10],
            "duplicated_records": check.duplicated_records,
            "duplicated_segments": check.duplicated_segments,
            "delivered_without_ack": check.delivered_unacked,
            "records_on_kafka": check.records_on_kafka,
            "duplicated_records_per_kill": {
                "mean": round(statistics.mean(kill_duplicates), 1) if kill_duplicates else None,
                "median": statistics.median(kill_duplicates) if kill_duplicates else None,
                "max": max(kill_duplicates, default=None)},
            "per_cycle": per_cycle,
            "stream_failures": load.failures(),
            "kafka_outage_cycles": sum(c.kafka_down for c in cycles),
            "kills_with_unreadable_position": sum(c.position_after_kill == "corrupt" for c in cycles),
            "kills_with_torn_tail": sum(c.torn_tail_bytes > 0 for c in cycles),
            "segment_files_rolled": cycles[-1].last_segment_file - 1 if cycles else 0,
            "restart_s": {"min": min(restart_times, default=None), "median": statistics.median(restart_times)
                          if restart_times else None, "max": max(restart_times, default=None)},
            "restart_times_s": restart_times,
            "final_drain_s": None if drain_s is None else round(drain_s, 3),
            "corrupt_records_skipped": final_status["queue"]["corrupt_records_skipped"],
            "max_rss_mib": round(max_rss / (1 << 20), 1),
            "wall_s": round(time.monotonic() - started, 1),
            "work_dir": str(work),
        }
        if pruned:
            raise HarnessError(f"the mock cluster pruned the oldest records of partitions {pruned} (its in-memory "
                               f"log is bounded), so losses cannot be judged: use more --partitions or fewer "
                               f"cycles; summary: {json.dumps(summary)}")
        return summary
    finally:
        if load is not None:
            try:
                load.stop()
            except HarnessError as error:
                log(str(error))
        if relay.process is not None and relay.process.poll() is None:
            try:
                relay.stop()
            except HarnessError as error:
                log(str(error))
        mock.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = CrashLoopConfig()
    parser.add_argument("--cycles", type=int, default=defaults.cycles)
    parser.add_argument("--seconds-per-cycle", type=float, default=defaults.seconds_per_cycle,
                        help="upper bound of the random delay before each kill -9")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--segments-per-stream", type=int, default=defaults.segments_per_stream)
    parser.add_argument("--max-padding", type=int, default=defaults.max_padding,
                        help="random padding per segment, bytes (keeps long runs within the mock's log)")
    parser.add_argument("--segment-bytes", default=defaults.segment_bytes, help="SW_RELAY_QUEUE_SEGMENT_BYTES")
    parser.add_argument("--fsync", choices=["interval", "always"], default=defaults.fsync)
    parser.add_argument("--brokers", type=int, default=defaults.brokers)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--outage-every", type=int, default=0,
                        help="every Nth cycle runs with all brokers down (0: never)")
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument("--work-dir", default=None, help="keep logs and the queue here (default: a temp dir)")
    parser.add_argument("--per-cycle-csv", default=None,
                        help="also write cycle,kafka_down,kill_after_s,acked,lost,duplicated_records rows here")
    arguments = vars(parser.parse_args(argv))
    per_cycle_csv = arguments.pop("per_cycle_csv")
    config = CrashLoopConfig(**arguments)
    try:
        summary = run(config, log=lambda line: print(line, file=sys.stderr))
    except HarnessError as error:
        print(f"crash loop harness failure: {error}", file=sys.stderr)
        return 2
    if per_cycle_csv:
        with open(per_cycle_csv, "w", newline="") as output:
            writer = csv.DictWriter(output, fieldnames=list(summary["per_cycle"][0]))
            writer.writeheader()
            writer.writerows(summary["per_cycle"])
    print(json.dumps({key: value for key, value in summary.items() if key != "per_cycle"}))
    if summary["lost"]:
        print(f"LOST {summary['lost']} acknowledged segments; relay log: {summary['work_dir']}/relay.log\n"
              f"{tail(Path(summary['work_dir']) / 'relay.log')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
