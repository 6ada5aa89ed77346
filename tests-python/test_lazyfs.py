"""The power-loss filesystem (tests-python/lazyfs.py) really loses what was not made durable,
and keeps what was: every test does real system calls on a real FUSE mount, cuts the power,
remounts the backing directory (the reboot) and looks at what survived.

If these pass while the filesystem is wrong, the power-cut loop (test_power_cut.py) proves
nothing, so each test names the modelling mistake it would catch. A machine without FUSE fails
these tests with the reason (no /dev/fuse, no libfuse2); without root they are skipped with it
(a failure in CI: conftest.fuse).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from lazyfs import LazyFSMount

pytestmark = pytest.mark.usefixtures("fuse")


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[LazyFSMount]:
    """An unmounted filesystem: tests call fs.mount() themselves, so a root machine that cannot
    mount fails the test (with the reason) instead of erroring."""
    mount = LazyFSMount(tmp_path / "disk", tmp_path / "mnt")
    yield mount
    mount.unmount()


def sync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_file(path: Path, data: bytes, sync: bool) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(descriptor, data)
        if sync:
            os.fdatasync(descriptor)
    finally:
        os.close(descriptor)


def reboot(fs: LazyFSMount) -> dict:
    """Power cut, then mount the disk again; returns the cut's report."""
    report = fs.cut()
    fs.remount()
    return report


def test_unsynced_write_is_visible_then_gone_after_a_cut(fs: LazyFSMount):
    """Stands for: writes reaching the backing directory before a sync (then nothing in the
    power-cut loop could ever be lost, and the loop would pass for the wrong reason)."""
    root = fs.mount().mountpoint
    write_file(root / "f", b"", sync=True)
    sync_dir(root)  # the name is durable, the file empty
    write_file(root / "f", b"not synced", sync=False)
    assert (root / "f").read_bytes() == b"not synced", "reads must see the pending data"
    assert (fs.backing / "f").read_bytes() == b"", "unsynced data must not be on the disk yet"
    report = reboot(fs)
    assert [entry["path"] for entry in report["unsynced_files"]] == ["/f"], report
    assert (root / "f").read_bytes() == b""


def test_fdatasynced_write_survives(fs: LazyFSMount):
    """Stands for: a sync that does not make data durable (every acknowledgement under
    SW_RELAY_QUEUE_FSYNC=always would then look lost)."""
    root = fs.mount().mountpoint
    write_file(root / "f", b"synced", sync=True)
    sync_dir(root)
    descriptor = os.open(root / "f", os.O_WRONLY | os.O_APPEND)
    os.write(descriptor, b" and more")
    os.fdatasync(descriptor)
    os.write(descriptor, b" but not this")
    os.close(descriptor)
    reboot(fs)
    assert (root / "f").read_bytes() == b"synced and more"


def test_synced_file_in_an_unsynced_directory_is_gone(fs: LazyFSMount):
    """Stands for: treating a file's fsync as making its name durable (the bug class the loop
    hunts: a new queue file whose directory entry was never synced)."""
    root = fs.mount().mountpoint
    write_file(root / "new.log", b"records", sync=True)
    report = reboot(fs)
    assert {"path": "/new.log", "change": "created"} in report["undurable_names"], report
    assert not (root / "new.log").exists()
    assert os.listdir(root) == []


def test_directory_sync_makes_a_created_name_durable_with_only_its_synced_data(fs: LazyFSMount):
    """Stands for: a directory sync that also syncs the files' data (a durable name with data
    never synced must be an empty file after the cut)."""
    root = fs.mount().mountpoint
    write_file(root / "synced", b"data", sync=True)
    write_file(root / "unsynced", b"data", sync=False)
    sync_dir(root)
    reboot(fs)
    assert sorted(os.listdir(root)) == ["synced", "unsynced"]
    assert (root / "synced").read_bytes() == b"data"
    assert (root / "unsynced").read_bytes() == b""


def test_rename_without_directory_sync_is_undone(fs: LazyFSMount):
    """Stands for: renames applied straight to the disk (the `position` replacement, tmp file
    then rename, would then look atomic and durable when it is not)."""
    root = fs.mount().mountpoint
    write_file(root / "position", b"old", sync=True)
    sync_dir(root)
    write_file(root / "position.tmp", b"new", sync=True)
    os.rename(root / "position.tmp", root / "position")
    assert (root / "position").read_bytes() == b"new"
    reboot(fs)
    assert sorted(os.listdir(root)) == ["position"]
    assert (root / "position").read_bytes() == b"old"


def test_rename_with_directory_sync_survives(fs: LazyFSMount):
    """Stands for: a directory sync that does not carry the rename, or carries the name but not
    the inode (the synced new content must be what the name holds after the cut)."""
    root = fs.mount().mountpoint
    write_file(root / "position", b"old", sync=True)
    sync_dir(root)
    write_file(root / "position.tmp", b"new", sync=True)
    os.rename(root / "position.tmp", root / "position")
    sync_dir(root)
    reboot(fs)
    assert sorted(os.listdir(root)) == ["position"]
    assert (root / "position").read_bytes() == b"new"


def test_renamed_file_whose_data_was_never_synced_is_empty(fs: LazyFSMount):
    """Stands for: a durable rename bringing along unsynced data (the tmp-rename pattern without
    an fsync of the tmp file must leave an empty or old file, never the new bytes)."""
    root = fs.mount().mountpoint
    write_file(root / "position", b"old", sync=True)
    sync_dir(root)
    write_file(root / "position.tmp", b"new", sync=False)
    os.rename(root / "position.tmp", root / "position")
    sync_dir(root)
    reboot(fs)
    assert (root / "position").read_bytes() == b""


def test_truncate_semantics(fs: LazyFSMount):
    """Stands for: truncation handled outside the model: an unsynced shrink must come back, a
    synced shrink or extension (zero-filled) must stay, and O_TRUNC is a truncation too."""
    root = fs.mount().mountpoint
    write_file(root / "shrunk", b"0123456789", sync=True)
    write_file(root / "kept", b"0123456789", sync=True)
    write_file(root / "grown", b"ab", sync=True)
    write_file(root / "otrunc", b"0123456789", sync=True)
    sync_dir(root)
    descriptor = os.open(root / "shrunk", os.O_RDWR)
    os.ftruncate(descriptor, 4)
    os.fdatasync(descriptor)
    os.close(descriptor)
    os.truncate(root / "kept", 3)  # not synced
    descriptor = os.open(root / "grown", os.O_RDWR)
    os.ftruncate(descriptor, 6)
    os.pwrite(descriptor, b"Z", 8)  # past the end: a hole of zeros before it
    os.fdatasync(descriptor)
    os.close(descriptor)
    os.close(os.open(root / "otrunc", os.O_WRONLY | os.O_TRUNC))  # not synced
    assert (root / "kept").read_bytes() == b"012"
    reboot(fs)
    assert (root / "shrunk").read_bytes() == b"0123"
    assert (root / "kept").read_bytes() == b"0123456789"
    assert (root / "grown").read_bytes() == b"ab" + bytes(6) + b"Z"
    assert (root / "otrunc").read_bytes() == b"0123456789"


def test_pwrite_at_offsets_keeps_exactly_the_synced_bytes(fs: LazyFSMount):
    """Stands for: sync applying only appended bytes, or the wrong range (an overwrite in the
    middle, then a sync, must survive; a later unsynced overwrite must not)."""
    root = fs.mount().mountpoint
    write_file(root / "f", b"aaaaaaaaaa", sync=True)
    sync_dir(root)
    descriptor = os.open(root / "f", os.O_RDWR)
    os.pwritev(descriptor, [b"BB", b"CC"], 3)
    os.fdatasync(descriptor)
    os.pwrite(descriptor, b"x", 0)
    os.pwrite(descriptor, b"tail", 10)
    os.close(descriptor)
    assert (root / "f").read_bytes() == b"xaaBBCCaaatail"
    reboot(fs)
    assert (root / "f").read_bytes() == b"aaaBBCCaaa"


def test_unlink_is_undone_without_directory_sync(fs: LazyFSMount):
    """Stands for: unlinks applied to the disk at once (a deleted queue file must come back with
    its synced content after a cut, as it would on a real disk)."""
    root = fs.mount().mountpoint
    write_file(root / "gone-for-now", b"content", sync=True)
    write_file(root / "gone-for-good", b"content", sync=True)
    sync_dir(root)
    os.unlink(root / "gone-for-now")
    reboot(fs)
    assert (root / "gone-for-now").read_bytes() == b"content"
    os.unlink(root / "gone-for-good")
    sync_dir(root)
    reboot(fs)
    assert sorted(os.listdir(root)) == ["gone-for-now"]


def test_new_directory_needs_its_parent_synced(fs: LazyFSMount):
    """Stands for: directories made durable by their own fsync alone (the relay creating its
    queue directory: the entry in the parent must be synced too)."""
    root = fs.mount().mountpoint
    (root / "queue").mkdir()
    write_file(root / "queue" / "1.log", b"records", sync=True)
    sync_dir(root / "queue")
    reboot(fs)
    assert os.listdir(root) == []
    (root / "queue").mkdir()
    write_file(root / "queue" / "1.log", b"records", sync=True)
    sync_dir(root / "queue")
    sync_dir(root)
    reboot(fs)
    assert (root / "queue" / "1.log").read_bytes() == b"records"


def test_power_off_answers_eio_and_the_open_file_survives_unlink(fs: LazyFSMount):
    """Stands for: a cut that lets the process go on writing (later writes must fail, like a
    machine that is off), and unlink-while-open (the relay deletes files readers still hold)."""
    root = fs.mount().mountpoint
    descriptor = os.open(root / "held", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(descriptor, b"still readable")
    os.unlink(root / "held")
    assert os.pread(descriptor, 100, 0) == b"still readable"
    lock = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fs.cut()
    with pytest.raises(OSError) as failure:
        os.pwrite(descriptor, b"x", 0)
    assert failure.value.errno == errno.EIO
    with pytest.raises(OSError):
        os.listdir(root)
    os.close(descriptor)
    os.close(lock)


def test_triggers_cut_before_or_after_the_matching_call(fs: LazyFSMount):
    """Stands for: cuts that cannot be aimed (the loop aims them at file rolls and position
    writes): `before` must fail that very call and keep nothing of it, `after` must keep it."""
    root = fs.mount().mountpoint
    write_file(root / "position", b"old", sync=True)
    sync_dir(root)
    fs.arm({"op": "rename", "path": r"position\.tmp", "when": "before"})
    write_file(root / "position.tmp", b"new", sync=True)
    with pytest.raises(OSError) as failure:
        os.rename(root / "position.tmp", root / "position")
    assert failure.value.errno == errno.EIO
    assert fs.state()["fired"]["op"] == "rename"
    fs.remount()
    assert (root / "position").read_bytes() == b"old"

    fs.arm({"op": "fsyncdir", "when": "after", "skip": 1})
    write_file(root / "a", b"1", sync=True)
    sync_dir(root)  # skipped
    write_file(root / "b", b"2", sync=True)
    sync_dir(root)  # completes, then the power goes
    with pytest.raises(OSError):
        write_file(root / "c", b"3", sync=True)
    fs.remount()
    assert sorted(os.listdir(root)) == ["a", "b", "position"]


def test_concurrent_writers_keep_exactly_their_synced_prefix(fs: LazyFSMount):
    """Stands for: lost updates or torn state under multi-threaded FUSE access (the relay's
    writer, syncer and publisher threads use the mount at once)."""
    root = fs.mount().mountpoint
    writers, rounds = 6, 150
    for n in range(writers):
        write_file(root / f"w{n}", b"", sync=True)
    sync_dir(root)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            descriptor = os.open(root / f"w{n}", os.O_RDWR)
            for i in range(rounds):
                os.pwrite(descriptor, bytes([n]) * 100, i * 100)
                if i % 10 == 9:
                    os.fdatasync(descriptor)
                if i % 17 == 0:
                    os.pread(descriptor, 4096, 0)
            os.close(descriptor)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "writers hung"
    for n in range(writers):
        assert (root / f"w{n}").read_bytes() == bytes([n]) * 100 * rounds
    reboot(fs)
    synced = (rounds // 10) * 10 * 100
    for n in range(writers):
        assert (root / f"w{n}").read_bytes() == bytes([n]) * synced, n
