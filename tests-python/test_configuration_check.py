"""`--check-config` catches what a start would refuse, `--verify-queue` reports a stopped relay's
queue exactly, and `relay_queue_disk_free_bytes` says how much room the queue's disk has
(issue 23 item 2).

Each check-config case is an operator's mistake that used to pass the check and then fail (or
fill the disk) at start; each verify case is an operator inspecting a queue before starting it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import grpc

from conftest import MockKafka, Relay, encode_segment, run_relay_once, wait_for
from reliability_support import COLLECT, metric, queue_segment_files, read_queue_file, status_document

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def environment(queue_dir: Path, **variables: str) -> dict[str, str]:
    return {"SW_RELAY_QUEUE_DIR": str(queue_dir), "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092", **variables}


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# --------------------------------------------------------------------------- --check-config


def test_an_unusable_queue_directory_fails_the_check(tmp_path: Path):
    """Operator: SW_RELAY_QUEUE_DIR points where no directory can be made (/proc, a path under a
    regular file); the check exits 2 naming the variable, as the start would fail."""
    (tmp_path / "plain").write_bytes(b"")
    for directory in (Path("/proc/relay-q"), tmp_path / "plain" / "queue"):
        result = run_relay_once(environment(directory), "--check-config")
        assert result.returncode == 2, result.stdout
        assert f'SW_RELAY_QUEUE_DIR="{directory}"' in result.stderr, result.stderr


def test_a_missing_queue_directory_is_probed_and_left_missing(tmp_path: Path):
    """Operator: a check on a fresh host, where the start would create the queue directory; the
    check creates it to write and lock it, then removes every level it made."""
    result = run_relay_once(environment(tmp_path / "new" / "queue"), "--check-config")
    assert result.returncode == 0, result.stderr
    assert names_in(tmp_path) == [], "the check must leave nothing behind"


def test_a_missing_kafka_ca_file_fails_the_check_as_the_start_fails(tmp_path: Path):
    """Operator: the Kafka CA Secret was not mounted. librdkafka reads ssl.ca.location only when
    the producer is created, so the check creates a throwaway one: exit 2 naming the variable,
    as the start now names it too; with the CA present the same settings pass."""
    variables = {"SW_RELAY_KAFKA_PRODUCER_SECURITY_PROTOCOL": "ssl",
                 "SW_RELAY_KAFKA_PRODUCER_SSL_CA_LOCATION": str(tmp_path / "missing-ca.pem")}
    check = run_relay_once(environment(tmp_path / "queue", **variables), "--check-config")
    start = run_relay_once({**environment(tmp_path / "queue", **variables), "SW_RELAY_GRPC_ADDRESS": "127.0.0.1:0",
                            "SW_RELAY_HTTP_ADDRESS": "127.0.0.1:0", "SW_RELAY_ADMIN_ADDRESS": "127.0.0.1:0"})
    present = run_relay_once(environment(tmp_path / "queue", **{
        **variables, "SW_RELAY_KAFKA_PRODUCER_SSL_CA_LOCATION": str(SYSTEM_CA)}), "--check-config")

    assert check.returncode == 2, check.stdout
    assert 'SW_RELAY_KAFKA_PRODUCER_SSL_CA_LOCATION="' in check.stderr and "ssl.ca.location" in check.stderr, \
        check.stderr
    assert start.returncode != 0 and "SW_RELAY_KAFKA_PRODUCER_SSL_CA_LOCATION" in start.stderr, start.stderr[-2000:]
    assert present.returncode == 0, present.stderr


def test_a_queue_a_running_relay_holds_fails_the_check(relay_factory: Callable[..., Relay], mock_kafka: MockKafka):
    """Operator: a second relay (or a new pod on the same hostPath) configured with a live relay's
    queue directory. The check says the directory is in use, naming SW_RELAY_QUEUE_DIR, and
    neither writes into it nor disturbs the running relay."""
    relay = relay_factory().start()
    # The running relay's own first ledger save comes just after it is ready; the check must
    # add nothing beside what the relay itself wrote.
    wait_for(lambda: (relay.queue_dir / "kafka-delivery-ledger").exists(), 10, "the relay's delivery ledger")
    before = names_in(relay.queue_dir)

    result = run_relay_once({"SW_RELAY_QUEUE_DIR": str(relay.queue_dir),
                             "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": mock_kafka.bootstrap_servers}, "--check-config")

    assert result.returncode == 2, result.stdout
    assert f'SW_RELAY_QUEUE_DIR="{relay.queue_dir}"' in result.stderr and "running relay" in result.stderr, \
        result.stderr
    assert names_in(relay.queue_dir) == before
    assert relay.http_status("/readyz") == 200


def test_a_capacity_beyond_the_filesystem_fails_and_beyond_the_free_space_warns(tmp_path: Path):
    """Operator: SW_RELAY_QUEUE_MAX_BYTES=900TiB (a unit too far) can never be reached: exit 2
    with the numbers. A capacity the filesystem could hold but that is more than is free now
    (other files, a volume not yet grown) starts, so it is a warning, with the numbers."""
    queue_dir = tmp_path / "queue"
    huge = run_relay_once(environment(queue_dir, SW_RELAY_QUEUE_MAX_BYTES="900TiB"), "--check-config")
    assert huge.returncode == 2, huge.stdout
    assert 'SW_RELAY_QUEUE_MAX_BYTES="' in huge.stderr and "900.0 TiB" in huge.stderr, huge.stderr

    stats = os.statvfs(tmp_path)
    free, total = stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
    capacity_mib = (free + (total - free) // 2) >> 20
    short = run_relay_once(environment(queue_dir, SW_RELAY_QUEUE_MAX_BYTES=f"{capacity_mib}MiB"), "--check-config")
    assert short.returncode == 0, short.stderr
    warning = re.search(r"^warning: SW_RELAY_QUEUE_MAX_BYTES=\d+: .* \((\d+) bytes\) free", short.stdout, re.MULTILINE)
    assert warning, short.stdout
    assert abs(int(warning.group(1)) - free) < max(free // 100, 64 << 20), (warning.group(1), free)

    default = run_relay_once(environment(queue_dir), "--check-config")
    assert default.returncode == 0 and "warning" not in default.stdout, default.stdout


# --------------------------------------------------------------------------- --verify-queue


def fill_and_stop(relay_factory: Callable[..., Relay], mock_kafka: MockKafka, count: int) -> Relay:
    """A relay that queued `count` segments while Kafka was down, then stopped: they stay on disk."""
    relay = relay_factory(extra_env={"SW_RELAY_QUEUE_SEGMENT_BYTES": "64KiB", "SW_RELAY_SHUTDOWN_TIMEOUT_S": "1"})
    relay.start()
    mock_kafka.command("down 1")
    messages = [encode_segment(f"verify-{n}", f"verify-{n}", padding=3000) for n in range(count)]
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(COLLECT)(iter(messages), timeout=15)
    assert status_document(relay)["queue"]["unconfirmed_records"] == count
    assert relay.stop() == 0
    return relay


def verify(relay: Relay):
    return run_relay_once({"SW_RELAY_QUEUE_DIR": str(relay.queue_dir),
                           "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092"}, "--verify-queue")


def test_verify_queue_reports_a_sound_queue_with_its_exact_count(relay_factory: Callable[..., Relay],
                                                                 mock_kafka: MockKafka):
    """Operator: before moving a stopped relay's queue to a new node, checks what it holds."""
    relay = fill_and_stop(relay_factory, mock_kafka, 40)
    files = queue_segment_files(relay.queue_dir)
    records = [r for f in files for r in read_queue_file(f)]

    result = verify(relay)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"records: 40 undelivered, {sum(r.length for r in records)} bytes" in result.stdout, result.stdout
    assert re.search(r"^appended: oldest \d{4}-\d\d-\d\dT.*Z, newest .*Z$", result.stdout, re.MULTILINE)
    assert "damaged spans: 0" in result.stdout and "result: sound" in result.stdout
    assert "dead letters: none" in result.stdout

    # Two records a broker refused for good, then a third cut short (a disk that filled).
    entries = b"".join(
        f"DEADLETTER v1 appendedMillis=1 deadLetteredMillis=2 topic=skywalking-segments keyBytes=3 valueBytes={n} "
        f"error=MSG_SIZE_TOO_LARGE: too large\n".encode() + b"key" + b"v" * n + b"\n" for n in (10, 20))
    dead_letters = relay.queue_dir / "dead-letter.log"
    dead_letters.write_bytes(entries)
    counted = verify(relay)
    assert counted.returncode == 0, counted.stdout
    assert f"dead letters: {dead_letters}, 2 records, {len(entries)} bytes" in counted.stdout, counted.stdout

    dead_letters.write_bytes(entries + b"DEADLETTER v1 topic=skywalking-segments keyBytes=3 valueBytes=99\nkey")
    cut = verify(relay)
    assert cut.returncode == 1, cut.stdout
    assert "2 records" in cut.stdout and f"truncated entry at byte {len(entries)}" in cut.stdout, cut.stdout


def test_verify_queue_reports_damage_exactly_and_changes_nothing(relay_factory: Callable[..., Relay],
                                                                 mock_kafka: MockKafka):
    """Operator: after a disk error, checks a stopped relay's queue; 16 bytes flipped inside a
    known record are reported as that record's exact span (file, offsets, bytes), with exit 1,
    and the verification leaves every file as it was."""
    relay = fill_and_stop(relay_factory, mock_kafka, 40)
    files = queue_segment_files(relay.queue_dir)
    target = files[len(files) // 2]
    in_target = read_queue_file(target)
    victim, following = in_target[1], in_target[2]
    with open(target, "r+b") as file:
        file.seek(victim.offset + victim.length // 2)
        chunk = file.read(16)
        file.seek(victim.offset + victim.length // 2)
        file.write(bytes(b ^ 0xFF for b in chunk))
    before = {path.name: path.read_bytes() for path in relay.queue_dir.iterdir()}

    result = verify(relay)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "records: 39 undelivered" in result.stdout, result.stdout
    assert "damaged spans: 1" in result.stdout, result.stdout
    span = f"  {target.name} offsets {victim.offset}..<{following.offset} ({victim.length} bytes): a start skips it"
    assert span in result.stdout.splitlines(), result.stdout
    assert f"result: damaged (damaged spans: 1, {victim.length} bytes)" in result.stdout
    assert {path.name: path.read_bytes() for path in relay.queue_dir.iterdir()} == before


def test_verify_queue_refuses_a_running_relays_queue(relay: Relay):
    """Operator: runs the offline verification against a live relay by mistake: exit 2, naming
    the variable, instead of judging files that are being written."""
    result = verify(relay)
    assert result.returncode == 2, result.stdout
    assert "SW_RELAY_QUEUE_DIR" in result.stderr and "running relay" in result.stderr, result.stderr
    assert relay.http_status("/readyz") == 200


# --------------------------------------------------------------------------- relay_queue_disk_free_bytes


def test_disk_free_bytes_is_exported_and_matches_statvfs(relay: Relay):
    """Operator: alerts on the queue's disk filling before SW_RELAY_QUEUE_MAX_BYTES is reached
    (a disk shared with logs); the gauge says what statvfs says for the queue directory."""
    def close_to_statvfs() -> bool:
        value = metric(relay, "relay_queue_disk_free_bytes")
        stats = os.statvfs(relay.queue_dir)
        free = stats.f_bavail * stats.f_frsize
        return value is not None and free > 0 and abs(value - free) <= max(free // 100, 64 << 20)

    wait_for(close_to_statvfs, 10, "relay_queue_disk_free_bytes within 1 % of statvfs")
    assert "# HELP relay_queue_disk_free_bytes " in relay.http_text("/metrics")
