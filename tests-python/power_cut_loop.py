#!/usr/bin/env python3
"""Power-cut loop: the relay's queue directory on the power-loss filesystem (lazyfs.py), agent-like
load, a power cut at a random or aimed moment, kill -9, a "reboot" (remount of what the disk
kept) and a restart; repeat, then check every acknowledged segment id against Kafka.

    PY="$(scripts/python-env.sh)"
    "$PY" tests-python/power_cut_loop.py --cuts 100 --fsync always --seed 1
    "$PY" tests-python/power_cut_loop.py --cuts 60 --fsync interval --fsync-interval-ms 200 --seed 2
    "$PY" tests-python/power_cut_loop.py --cuts 10 --queue-dir created-by-relay   # relay makes the dir

Unlike kill -9 (crash_loop.py), a cut loses the page cache too: only what was fsynced, and only
names whose directory was fsynced, survive. The promises checked:

- `--fsync always`: every acknowledged segment reaches Kafka, whatever the cut.
- `--fsync interval`: what is lost was acknowledged at most one interval before the cut (plus a
  little slack for the sync's own latency); the largest such window is reported.
- Every restart succeeds (`/readyz` 200) and `/status` reports what recovery found: the
  harness recomputes, from the surviving bytes, how many records lie past the durable
  position and how many bytes of torn tail there are, and the relay must say the same (it is
  started with the mock broker down, so nothing is delivered before it is asked).

How the cuts are aimed (each cut picks one kind at random; a trigger that does not fire within
a few seconds falls back to a plain cut, and is counted):
- `timer`: at a random moment under load;
- `group-commit`: before or after an fdatasync of a queue file, or a write to one;
- `roll`: before or after the creation of a new queue file, or the directory sync that follows
  (small SW_RELAY_QUEUE_SEGMENT_BYTES: a roll every ~60 segments);
- `position`: before or after a slot write or an `fdatasync` of `position`;
- `unlink`: before or after the deletion of a delivered queue file;
- `recovery`: the relay is killed (kill -9, page cache kept), restarted, and the power goes at a
  random call of its recovery.

Prints one JSON summary line; exits 1 on a broken promise (2 on a harness failure).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import HarnessError, MockKafka, Relay, tail, wait_for  # noqa: E402
from lazyfs import LazyFSMount  # noqa: E402
from reliability_support import (AgentLoad, expected_recovery, final_delivery_check, rss_bytes,  # noqa: E402
                                 status_document)

SEGMENT_FILE = r"/\d{20}\.log$"
KIND_WEIGHTS = {"timer": 3, "group-commit": 3, "roll": 3, "position": 2, "unlink": 1, "recovery": 2}
WINDOW_SLACK_S = 0.1  # the interval sync's own latency and scheduling, on a loaded 2-core machine


class RelayDidNotStart(HarnessError):
    """A broken promise, not a harness failure: whatever the cut, the relay must start."""


@dataclass
class PowerCutConfig:
    cuts: int = 12
    seed: int = 1
    fsync: str = "always"
    fsync_interval_ms: int = 200
    clients: int = 3
    pause_ms: int = 10  # each client's pause between streams: keeps the loop near one core
    segments_per_stream: int = 5
    max_padding: int = 1200
    segment_bytes: str = "64KiB"
    partitions: int = 16
    max_delay: float = 0.8  # upper bound of the random wait under load before each cut is aimed
    trigger_timeout: float = 4.0  # an aimed cut that has not fired by then becomes a plain cut
    queue_dir: str = "existing"  # or "created-by-relay": the relay creates it on the lazy mount
    kinds: tuple[str, ...] = tuple(KIND_WEIGHTS)
    exact_recovery_check: bool = True
    drain_timeout: float = 120
    work_dir: Optional[str] = None


@dataclass
class CutRecord:
    cut: int
    kind: str
    triggers: list[dict]
    fired: Optional[dict]
    fell_back: bool
    at_monotonic: float
    killed_at_monotonic: float
    acked_streams_before: int
    unsynced_files: list[dict]
    undurable_names: list[dict]
    position_after: str
    expected_unconfirmed: int
    reported_unconfirmed: Optional[int]
    expected_torn_tail: int
    reported_torn_tail: Optional[int]
    restart_s: float
    recovery_mismatch: Optional[str] = None
    relay_exit_at_cut: Optional[int] = None
    cycle_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _aimed_triggers(kind: str, rng: random.Random, fsync: str) -> list[dict]:
    when = rng.choice(["before", "after"])
    if kind == "group-commit":
        op = rng.choice(["fdatasync", "fdatasync", "write"])
        # under interval an fdatasync comes every interval, not every group commit
        skip = rng.randrange(20 if fsync == "always" or op == "write" else 3)
        return [{"op": op, "path": SEGMENT_FILE, "when": when, "skip": skip}]
    if kind == "roll":
        op = rng.choice(["create", "fsyncdir"])
        return [{"op": op, "path": SEGMENT_FILE if op == "create" else "", "when": when, "skip": 0}]
    if kind == "position":
        # a slot of `position` is overwritten in place; it is synced on close and after recovery
        op = rng.choice(["write", "write", "fdatasync"])
        return [{"op": op, "path": r"/position$", "when": when, "skip": rng.randrange(3)}]
    if kind == "unlink":
        return [{"op": "unlink", "path": SEGMENT_FILE, "when": when, "skip": 0}]
    return []


class PowerCutLoop:
    def __init__(self, config: PowerCutConfig, log=print) -> None:
        self.config = config
        self.log = log
        self.rng = random.Random(config.seed)
        # The kinds come from their own generator so a seed always picks the same sequence of
        # kinds, whatever the timing-dependent draws in between.
        self.kind_rng = random.Random(f"{config.seed}-kinds")
        self.work = Path(config.work_dir or tempfile.mkdtemp(prefix="relay-power-cut-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.fs = LazyFSMount(self.work / "disk", self.work / "mnt", control=self.work / "lazyfs.sock",
                              log_path=self.work / "lazyfs.log")
        self.queue_dir = self.fs.mountpoint / "queue"
        self.mock: Optional[MockKafka] = None
        self.relay: Optional[Relay] = None
        self.load: Optional[AgentLoad] = None
        self.cuts: list[CutRecord] = []
        self.recovery_calls = 30  # calls a restart makes before /readyz; learned as it goes
        self.max_rss = 0
        self.failures: list[str] = []

    # ---- steps -------------------------------------------------------------------------

    def _mount(self) -> None:
        self.fs.mount()
        if self.config.queue_dir == "existing":
            # An operator's volume: the directory exists and is durable before the relay starts.
            self.queue_dir.mkdir(exist_ok=True)
            descriptor = os.open(self.fs.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(descriptor)
            os.close(descriptor)

    def _brokers(self, state: str) -> None:
        self.mock.command(f"{state} 1")

    def _calls(self) -> int:
        return sum(self.fs.state()["calls"].values())

    def _restart(self, record: CutRecord) -> None:
        """After a cut and the kill: reboot onto the disk, check recovery against the bytes."""
        self.fs.remount()
        expected = expected_recovery(self.queue_dir)
        record.position_after = expected.position
        record.expected_unconfirmed = expected.unconfirmed_records
        record.expected_torn_tail = expected.torn_tail_bytes
        exact = self.config.exact_recovery_check
        if exact:
            self._brokers("down")
        started = time.monotonic()
        calls_before = self._calls()
        try:
            self.relay.start()
        except HarnessError as error:
            raise RelayDidNotStart(f"after cut {record.cut} ({record.kind}, {record.fired or 'plain'}) the relay "
                                   f"did not start: {error}") from None
        record.restart_s = round(time.monotonic() - started, 3)
        # (the first half of these is recovery proper: lock, listing, position, scan, truncation)
        self.recovery_calls = max(20, self._calls() - calls_before)
        status = status_document(self.relay)["queue"]
        record.reported_unconfirmed = status.get("unconfirmed_records")
        record.reported_torn_tail = status.get("torn_tail_bytes_truncated")
        if exact:
            self._brokers("up")
            if expected.unconfirmed_records:
                # Delivery must be going again before the next cut, or a run of quick cuts keeps
                # Kafka away for good and the backlog (and the replays) grow without end.
                wait_for(lambda: status_document(self.relay)["kafka"]["delivered"] > 0, 30,
                         f"the first delivery after the restart following cut {record.cut}", interval=0.02)
            mismatches = []
            if record.reported_unconfirmed != expected.unconfirmed_records:
                mismatches.append(f"unconfirmed_records {record.reported_unconfirmed} != "
                                  f"{expected.unconfirmed_records} found past {expected.confirmed}")
            if record.reported_torn_tail != expected.torn_tail_bytes:
                mismatches.append(f"torn_tail_bytes_truncated {record.reported_torn_tail} != "
                                  f"{expected.torn_tail_bytes}")
            if status.get("corrupt_records_skipped"):
                mismatches.append(f"corrupt_records_skipped {status.get('corrupt_records_skipped')} after a cut "
                                  f"that damages no byte")
            if mismatches:
                record.recovery_mismatch = "; ".join(mismatches)
                self.failures.append(f"cut {record.cut}: /status disagrees with the surviving queue: "
                                     f"{record.recovery_mismatch} (files {expected.files})")

    def _wait_for_cut(self, deadline_s: float, until_ready: bool = False) -> tuple[dict, bool]:
        """The report of an aimed cut, or of a plain cut made when it did not fire in time (or,
        with `until_ready`, by the time the relay answered /readyz: recovery was over)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            state = self.fs.state()
            if state["dead"]:
                return state["cut"], False
            if self.relay.process.poll() is not None:
                break  # the relay died on its own: cut now, the restart will tell
            if until_ready and self.relay.http_status("/readyz") == 200:
                break
            time.sleep(0.01)  # polling the filesystem's state, not synchronising with the relay
        self.fs.arm()
        return self.fs.cut(), True

    def _one_cut(self, number: int) -> CutRecord:
        kind = self.kind_rng.choices(self.config.kinds, [KIND_WEIGHTS[k] for k in self.config.kinds])[0]
        load, relay = self.load, self.relay
        cycle_started = time.monotonic()
        baseline = load.acked_streams
        wait_for(lambda: load.acked_streams > baseline, 30, f"an acknowledged stream before cut {number}")
        threading.Event().wait(self.rng.uniform(0.02, self.config.max_delay))  # the random moment
        self.max_rss = max(self.max_rss, rss_bytes(relay.process.pid))
        triggers: list[dict] = []
        if kind == "recovery":
            # A crash first (the page cache, i.e. the mount's memory, survives), then the power
            # goes at a random call of the restart's recovery.
            load.relay_up.clear()
            relay.kill()
            triggers = [{"op": "any", "path": "", "when": self.rng.choice(["before", "after"]),
                         "skip": self.rng.randrange(max(1, self.recovery_calls // 2))}]
            self.fs.arm(*triggers)
            relay.spawn()
            report, fell_back = self._wait_for_cut(30, until_ready=True)
        elif kind == "timer":
            report, fell_back = self.fs.cut(), False
        else:
            triggers = _aimed_triggers(kind, self.rng, self.config.fsync)
            self.fs.arm(*triggers)
            report, fell_back = self._wait_for_cut(self.config.trigger_timeout)
        acked_before = load.acked_streams
        load.relay_up.clear()
        exit_code = relay.process.poll()
        relay.kill()
        record = CutRecord(
            cut=number, kind=kind, triggers=triggers, fired=report.get("fired"), fell_back=fell_back,
            at_monotonic=report["at_monotonic"], killed_at_monotonic=time.monotonic(),
            acked_streams_before=acked_before, unsynced_files=report["unsynced_files"],
            undurable_names=report["undurable_names"], position_after="", expected_unconfirmed=0,
            reported_unconfirmed=None, expected_torn_tail=0, reported_torn_tail=None, restart_s=0.0,
            relay_exit_at_cut=exit_code)
        self._restart(record)
        load.relay_up.set()
        record.cycle_s = round(time.monotonic() - cycle_started, 3)
        self.log(f"cut {number} {kind}{' (fell back to a plain cut)' if fell_back else ''} at "
                 f"{record.fired or 'a random moment'}: lost unsynced data of {len(record.unsynced_files)} "
                 f"file(s), {len(record.undurable_names)} undurable name(s); position {record.position_after}; "
                 f"recovery found {record.reported_unconfirmed} unconfirmed (expected {record.expected_unconfirmed}); "
                 f"ready in {record.restart_s:.2f} s")
        return record

    # ---- the run -------------------------------------------------------------------------

    def run(self) -> dict:
        config = self.config
        started = time.monotonic()
        try:
            self._mount()
            self.mock = MockKafka(self.work / "mock-kafka.log", brokers=1, partitions=config.partitions)
            self.relay = Relay(self.work / "relay.log", self.queue_dir, self.mock.bootstrap_servers, {
                "SW_RELAY_QUEUE_SEGMENT_BYTES": config.segment_bytes,
                "SW_RELAY_QUEUE_FSYNC": config.fsync,
                "SW_RELAY_QUEUE_FSYNC_INTERVAL_MS": str(config.fsync_interval_ms),
            })
            self.relay.start()
            self.load = AgentLoad(self.relay.grpc_address, clients=config.clients,
                                  segments_per_stream=config.segments_per_stream,
                                  max_padding=config.max_padding, seed=config.seed,
                                  pause_s=config.pause_ms / 1000).start()
            for number in range(config.cuts):
                self.cuts.append(self._one_cut(number))
            self.load.stop()
            return self._summary(started)
        finally:
            if self.load is not None:
                try:
                    self.load.stop()
                except HarnessError as error:
                    self.log(str(error))
            if self.relay is not None and self.relay.process is not None and self.relay.process.poll() is None:
                try:
                    self.relay.stop()
                except HarnessError as error:
                    self.log(str(error))
            if self.mock is not None:
                self.mock.stop()
            self.fs.unmount()

    def _summary(self, started: float) -> dict:
        config = self.config
        acked = self.load.acked_ids()
        check, drain_s, pruned = final_delivery_check(self.relay, self.mock.bootstrap_servers, acked,
                                                      config.drain_timeout, self.log)
        self.max_rss = max(self.max_rss, rss_bytes(self.relay.process.pid))
        ack_times = self.load.acked_at()
        windows = []
        lost_by_cut: dict[int, int] = {}
        for segment_id in check.lost:
            acked_at = ack_times[segment_id]
            # The cut it fell to: the first one whose relay was killed after the OK arrived (an
            # OK can arrive between the cut and the kill: it was sent before the power went).
            cut_index = next((i for i, c in enumerate(self.cuts) if c.killed_at_monotonic >= acked_at), None)
            if cut_index is None:
                continue  # acknowledged after the last cut: not a power-loss verdict
            windows.append(self.cuts[cut_index].at_monotonic - acked_at)
            lost_by_cut[cut_index] = lost_by_cut.get(cut_index, 0) + 1
        restart_times = [c.restart_s for c in self.cuts]
        interval_s = config.fsync_interval_ms / 1000
        largest_window = max(windows, default=None)
        broken = []
        if config.fsync == "always" and check.lost:
            broken.append(f"{len(check.lost)} acknowledged segments lost under fsync=always")
        if config.fsync == "interval" and largest_window is not None and largest_window > interval_s + WINDOW_SLACK_S:
            broken.append(f"a segment acknowledged {largest_window:.3f} s before a cut was lost: more than one "
                          f"interval ({interval_s} s + {WINDOW_SLACK_S} s slack)")
        summary = {
            "cuts": len(self.cuts),
            "seed": config.seed,
            "fsync": config.fsync,
            "fsync_interval_ms": config.fsync_interval_ms if config.fsync == "interval" else None,
            "queue_dir": config.queue_dir,
            "config": asdict(config),
            "kinds": {kind: sum(c.kind == kind for c in self.cuts) for kind in config.kinds},
            "aimed_cuts_fired": sum(1 for c in self.cuts if c.fired),
            "aimed_cuts_fell_back": sum(1 for c in self.cuts if c.fell_back),
            "fired_at": sorted({f"{c.fired['when']} {c.fired['op']}" for c in self.cuts if c.fired}),
            "streams_acked": self.load.acked_streams,
            "segments_acked": check.acked,
            "lost": len(check.lost),
            "lost_examples": check.lost[:10],
            "lost_by_cut": {str(self.cuts[i].cut): n for i, n in sorted(lost_by_cut.items())},
            "lost_after_last_cut": len(check.lost) - sum(lost_by_cut.values()),
            "largest_loss_window_s": None if largest_window is None else round(largest_window, 3),
            "duplicated_records": check.duplicated_records,
            "duplicated_segments": check.duplicated_segments,
            "delivered_without_ack": check.delivered_unacked,
            "stream_failures": self.load.failures(),
            "cuts_losing_unsynced_data": sum(1 for c in self.cuts if c.unsynced_files),
            "cuts_undoing_names": sum(1 for c in self.cuts if c.undurable_names),
            "position_after_cut": {state: sum(c.position_after == state for c in self.cuts)
                                   for state in ("valid", "missing", "corrupt")},
            "recovery_mismatches": sum(1 for c in self.cuts if c.recovery_mismatch),
            "restart_s": {"min": min(restart_times, default=None),
                          "median": statistics.median(restart_times) if restart_times else None,
                          "max": max(restart_times, default=None)},
            "final_drain_s": None if drain_s is None else round(drain_s, 3),
            "max_rss_mib": round(self.max_rss / (1 << 20), 1),
            "wall_s": round(time.monotonic() - started, 1),
            "broken_promises": broken + self.failures,
            "work_dir": str(self.work),
        }
        (self.work / "cuts.json").write_text(json.dumps([asdict(c) for c in self.cuts], indent=1))
        if pruned:
            raise HarnessError(f"the mock cluster pruned partitions {pruned}: losses cannot be judged; use more "
                               f"--partitions or fewer cuts; summary: {json.dumps(summary)}")
        return summary


def run(config: PowerCutConfig, log=print) -> dict:
    return PowerCutLoop(config, log).run()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = PowerCutConfig()
    parser.add_argument("--cuts", type=int, default=defaults.cuts)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--fsync", choices=["always", "interval"], default=defaults.fsync)
    parser.add_argument("--fsync-interval-ms", type=int, default=defaults.fsync_interval_ms)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--pause-ms", type=int, default=defaults.pause_ms,
                        help="each client's pause between streams")
    parser.add_argument("--segments-per-stream", type=int, default=defaults.segments_per_stream)
    parser.add_argument("--max-padding", type=int, default=defaults.max_padding)
    parser.add_argument("--segment-bytes", default=defaults.segment_bytes, help="SW_RELAY_QUEUE_SEGMENT_BYTES")
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--max-delay", type=float, default=defaults.max_delay)
    parser.add_argument("--trigger-timeout", type=float, default=defaults.trigger_timeout)
    parser.add_argument("--queue-dir", choices=["existing", "created-by-relay"], default=defaults.queue_dir,
                        help="existing: the harness creates and syncs it first; created-by-relay: the relay does")
    parser.add_argument("--kinds", default=",".join(defaults.kinds),
                        help=f"comma-separated cut kinds among {','.join(KIND_WEIGHTS)}")
    parser.add_argument("--no-exact-recovery-check", dest="exact_recovery_check", action="store_false")
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument("--work-dir", default=None)
    arguments = vars(parser.parse_args(argv))
    arguments["kinds"] = tuple(k for k in arguments["kinds"].split(",") if k)
    unknown = set(arguments["kinds"]) - set(KIND_WEIGHTS)
    if unknown:
        parser.error(f"unknown cut kinds {sorted(unknown)}")
    config = PowerCutConfig(**arguments)
    try:
        summary = run(config, log=lambda line: print(line, file=sys.stderr))
    except RelayDidNotStart as error:
        print(f"BROKEN: {error}", file=sys.stderr)
        return 1
    except HarnessError as error:
        print(f"power-cut loop harness failure: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: value for key, value in summary.items() if key != "config"}))
    if summary["broken_promises"]:
        print("BROKEN: " + "; ".join(summary["broken_promises"]) +
              f"\nper-cut records: {summary['work_dir']}/cuts.json\n{tail(Path(summary['work_dir']) / 'relay.log')}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
