#!/usr/bin/env python3
"""A power-loss filesystem for tests: a FUSE mount that keeps every change not yet made durable
in memory and forgets it on a "power cut".

    PY="$(scripts/python-env.sh)"
    "$PY" tests-python/lazyfs.py serve --backing DISK --mount MNT --control CTL.sock
    "$PY" tests-python/lazyfs.py cut --control CTL.sock      # from any other process

The backing directory `DISK` is the disk: at every moment it holds exactly what would be on the
platters after a power loss, and nothing else. What programs see under `MNT` is that durable
image plus everything they changed since, held in this process's memory. A cut throws the
in-memory part away; the mount then answers EIO to everything (the machine is off) until it is
unmounted, and mounting `DISK` again is the reboot.

The durability model (POSIX's, the strict reading; see docs/RELIABILITY.md "Power loss"):

- File data and size: `write`, `pwrite`, `pwritev`, `O_APPEND` writes, `ftruncate`/`truncate`
  and `O_TRUNC` change the file (the inode); `fsync` or `fdatasync` on any descriptor of it
  makes its whole current content and size durable. Nothing else does: no background
  writeback, no partial page flush (a cut loses every unsynced byte of a file).
- Names: creating a file or directory, `rename`, `unlink` and `rmdir` change a directory's
  entries; only an `fsync` on that directory makes them durable, all of them at once. An
  `fsync` of a file does not make its name durable: a file created and fdatasynced whose
  directory was never synced is gone after a cut, data and all (ext4 happens to be kinder
  because its journal commit carries the new entry; XFS, btrfs and others do not promise it).
  A rename without a directory sync is undone; with `rename(a, b)` synced, `b` holds a's inode
  with whatever of its data was synced (possibly nothing).
- A name made durable points at the inode, so a durable name for a file whose data was never
  synced is an empty file, and an unlinked file whose unlink was not synced comes back with its
  last synced content.
- Directories are inodes too: a new directory's own entries become durable when it is
  fsynced, but the directory is reachable after a cut only if its entry in its parent is
  durable as well.
- Metadata other than size (mode, owner, times) is not modelled as lazy: it is kept as set.

Not supported (EPERM / ENOSYS): hard links, symlinks, device nodes, extended attributes,
POSIX record locks (`flock` works: without a FUSE lock handler the kernel keeps flock locks
locally, and releases them when the holder dies). `mmap` writes are not modelled.

Control: a Unix socket at `--control`, one JSON line per request and per answer, usable from
any process (see `LazyFSMount` below, or `lazyfs.py cut`):

- `{"op": "cut"}`: forget every undurable change now; answers what was forgotten.
- `{"op": "arm", "triggers": [{"op": "rename", "path": "position", "when": "after",
  "skip": 0}]}`: cut by itself when the (skip+1)-th matching call arrives: `before` it runs
  (the call fails with EIO) or right `after` it completed (the caller still gets its result).
  `op` is a call name (`create`, `open`, `write`, `truncate`, `fsync`, `fdatasync`,
  `fsyncdir`, `rename`, `unlink`, `mkdir`, `rmdir`, `read`, `readdir`) or `any`; `path` is a
  regular expression searched in the path (for `rename`, in `old -> new`).
- `{"op": "state"}`: whether a cut happened (and its report), call counters, pending changes.
- `{"op": "ping"}`: answers once the kernel has connected the mount.

All of it runs under one lock, so every FUSE call and every cut are atomic with respect to each
other: a cut falls between two calls, never inside one. Everything is held in memory (the
durable image twice), which suits test-sized directories, not big ones.
"""

from __future__ import annotations

import argparse
import collections
import ctypes.util
import errno
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# --------------------------------------------------------------------------- the model


@dataclass(eq=False)
class Node:
    """An inode: current content (what reads see) and durable content (what a cut keeps)."""

    ino: int
    is_dir: bool
    mode: int
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    # files
    data: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)
    # lowest offset where `data` may differ from `durable`; None: identical. Invariant:
    # data[:dirty_from] == durable[:dirty_from] and dirty_from <= len(durable).
    dirty_from: Optional[int] = None
    # directories
    entries: dict[str, int] = field(default_factory=dict)
    durable_entries: dict[str, int] = field(default_factory=dict)
    # references: current entries naming it, durable entries naming it, open handles
    links: int = 0
    durable_links: int = 0
    opens: int = 0

    def note_change(self, offset: int) -> None:
        self.dirty_from = offset if self.dirty_from is None else min(self.dirty_from, offset)


@dataclass
class Handle:
    node: Node
    flags: int
    path: str  # the path it was opened with (for triggers and reports)


@dataclass
class Trigger:
    op: str
    path: re.Pattern
    when: str = "before"  # or "after"
    skip: int = 0

    def matches(self, op: str, path: str) -> bool:
        return (self.op == "any" or self.op == op) and bool(self.path.search(path))


CALLS = {"create", "open", "opendir", "write", "truncate", "fsync", "fdatasync", "fsyncdir", "rename",
         "unlink", "mkdir", "rmdir", "read", "readdir", "chmod", "chown", "utimens"}


def _now_ns() -> int:
    return time.time_ns()


class PowerLossModel:
    """The whole filesystem state, independent of FUSE (the FUSE glue is `PowerLossFS`).

    The durable image is mirrored into the backing directory after every durability event, so
    the backing directory is always what a cut would leave.
    """

    ROOT = 1

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.lock = threading.RLock()
        self.dead = False
        self.cut_report: Optional[dict] = None
        self.counters: collections.Counter = collections.Counter()
        self.recent: collections.deque = collections.deque(maxlen=64)
        self.triggers: list[Trigger] = []
        self.fired: Optional[dict] = None
        self._load()

    # ---- loading the durable image ----------------------------------------------------

    def _load(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.handles: dict[int, Handle] = {}
        self.next_ino = self.ROOT
        self.next_fh = 1
        # backing path (relative, "" for the root) -> ino materialized there
        self.mirror: dict[str, int] = {}
        root_stat = os.stat(self.backing)
        root = self._new_node(True, stat.S_IMODE(root_stat.st_mode))
        root.links = root.durable_links = 1  # the mount itself names it
        self.mirror[""] = root.ino
        self._load_dir(root, self.backing, "")

    def _load_dir(self, directory: Node, path: Path, relative: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            info = entry.stat(follow_symlinks=False)
            child_relative = f"{relative}/{entry.name}" if relative else entry.name
            if stat.S_ISDIR(info.st_mode):
                child = self._new_node(True, stat.S_IMODE(info.st_mode))
                self._load_dir(child, Path(entry.path), child_relative)
            elif stat.S_ISREG(info.st_mode):
                child = self._new_node(False, stat.S_IMODE(info.st_mode))
                content = Path(entry.path).read_bytes()
                child.data = bytearray(content)
                child.durable = bytearray(content)
            else:
                raise RuntimeError(f"{entry.path}: only regular files and directories are supported")
            child.mtime_ns = child.ctime_ns = info.st_mtime_ns
            directory.entries[entry.name] = child.ino
            directory.durable_entries[entry.name] = child.ino
            child.links = child.durable_links = 1
            self.mirror[child_relative] = child.ino

    def _new_node(self, is_dir: bool, mode: int) -> Node:
        node = Node(ino=self.next_ino, is_dir=is_dir, mode=mode, mtime_ns=_now_ns(), ctime_ns=_now_ns())
        self.next_ino += 1
        self.nodes[node.ino] = node
        return node

    # ---- references and garbage ------------------------------------------------------

    def _set_entry(self, directory: Node, name: str, ino: Optional[int]) -> None:
        """Changes a current entry (ino None removes it), keeping link counts."""
        old = directory.entries.pop(name, None)
        if ino is not None:
            directory.entries[name] = ino
            self.nodes[ino].links += 1
        if old is not None:
            self.nodes[old].links -= 1
            self._maybe_free(self.nodes[old])
        directory.mtime_ns = directory.ctime_ns = _now_ns()

    def _maybe_free(self, node: Node) -> None:
        if node.ino == self.ROOT or node.links or node.durable_links or node.opens:
            return
        del self.nodes[node.ino]
        if node.is_dir:  # its durable entries can never be reached again
            for ino in node.durable_entries.values():
                child = self.nodes[ino]
                child.durable_links -= 1
                self._maybe_free(child)

    # ---- path resolution -------------------------------------------------------------

    def resolve(self, path: str) -> Node:
        node = self.nodes[self.ROOT]
        for part in (p for p in path.split("/") if p):
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            ino = node.entries.get(part)
            if ino is None:
                raise OSError(errno.ENOENT, path)
            node = self.nodes[ino]
        return node

    def parent_of(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        if not name:
            raise OSError(errno.EINVAL, path)
        parent = self.resolve(head or "/")
        if not parent.is_dir:
            raise OSError(errno.ENOTDIR, path)
        return parent, name

    # ---- call bookkeeping ------------------------------------------------------------

    def begin(self, op: str, path: str) -> None:
        """Every call: refuse once the power is off, count, and fire `before` triggers."""
        if self.dead:
            raise OSError(errno.EIO, "power is off (lazyfs cut)")
        self.counters[op] += 1
        self.recent.append((round(time.monotonic(), 6), op, path))
        self._fire(op, path, "before")

    def end(self, op: str, path: str) -> None:
        self._fire(op, path, "after")

    def _fire(self, op: str, path: str, when: str) -> None:
        for index, trigger in enumerate(self.triggers):
            if trigger.when != when or not trigger.matches(op, path):
                continue
            if trigger.skip > 0:
                trigger.skip -= 1
                continue
            del self.triggers[index]
            self.fired = {"op": op, "path": path, "when": when}
            self.cut(reason=f"trigger {when} {op} {path}")
            if when == "before":
                raise OSError(errno.EIO, "power cut by a trigger before this call")
            return

    # ---- handles ---------------------------------------------------------------------

    def open_handle(self, node: Node, flags: int, path: str) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(node, flags, path)
        node.opens += 1
        return fh

    def handle(self, fh: int) -> Handle:
        handle = self.handles.get(fh)
        if handle is None:
            raise OSError(errno.EBADF, f"unknown handle {fh}")
        return handle

    def close_handle(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if handle is not None:
            handle.node.opens -= 1
            self._maybe_free(handle.node)

    # ---- data ------------------------------------------------------------------------

    @staticmethod
    def write(node: Node, data: bytes, offset: int) -> int:
        size = len(node.data)
        if offset > size:
            node.note_change(size)
            node.data.extend(bytes(offset - size))
        else:
            node.note_change(offset)
        node.data[offset:offset + len(data)] = data
        node.mtime_ns = node.ctime_ns = _now_ns()
        return len(data)

    @staticmethod
    def truncate(node: Node, length: int) -> None:
        size = len(node.data)
        if length == size:
            return
        node.note_change(min(length, size))
        if length < size:
            del node.data[length:]
        else:
            node.data.extend(bytes(length - size))
        node.mtime_ns = node.ctime_ns = _now_ns()

    # ---- durability ------------------------------------------------------------------

    def sync_file(self, node: Node) -> None:
        """fsync/fdatasync: the inode's data and size become durable (not its name)."""
        start = node.dirty_from
        if start is None:
            return
        del node.durable[start:]
        node.durable += node.data[start:]
        node.dirty_from = None
        for relative, ino in self.mirror.items():
            if ino == node.ino:
                with open(self.backing / relative, "r+b") as backing:
                    backing.seek(start)
                    backing.write(node.data[start:])
                    backing.truncate(len(node.data))

    def sync_dir(self, node: Node) -> None:
        """fsync on a directory: its current entries become its durable entries."""
        if node.entries == node.durable_entries:
            return
        for ino in node.entries.values():
            self.nodes[ino].durable_links += 1
        old = node.durable_entries
        node.durable_entries = dict(node.entries)
        for ino in old.values():
            child = self.nodes[ino]
            child.durable_links -= 1
            self._maybe_free(child)
        self._reconcile_backing()

    def _durable_tree(self) -> dict[str, int]:
        """Every path reachable through durable entries from the root -> its inode."""
        tree = {"": self.ROOT}
        stack = [("", self.nodes[self.ROOT])]
        visited = {self.ROOT}
        while stack:
            relative, directory = stack.pop()
            for name, ino in directory.durable_entries.items():
                child_relative = f"{relative}/{name}" if relative else name
                tree[child_relative] = ino
                child = self.nodes[ino]
                if child.is_dir and ino not in visited:  # a cycle only through odd rename orders
                    visited.add(ino)
                    stack.append((child_relative, child))
        return tree

    def _reconcile_backing(self) -> None:
        """Makes the backing directory equal to the durable tree (names and durable data)."""
        wanted = self._durable_tree()
        for relative in sorted(self.mirror, key=lambda p: p.count("/"), reverse=True):
            if relative and relative in self.mirror and wanted.get(relative) != self.mirror[relative]:
                target = self.backing / relative
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
                for gone in [p for p in self.mirror if p == relative or p.startswith(relative + "/")]:
                    del self.mirror[gone]
        for relative in sorted(wanted, key=lambda p: p.count("/")):
            if relative in self.mirror:
                continue
            node = self.nodes[wanted[relative]]
            target = self.backing / relative
            if node.is_dir:
                target.mkdir(mode=node.mode)
            else:
                target.write_bytes(node.durable)
                os.chmod(target, node.mode)
            self.mirror[relative] = node.ino

    # ---- the cut ---------------------------------------------------------------------

    def pending(self) -> dict:
        """What a cut would forget: undurable file data and undurable directory entries."""
        files, names = [], []
        stack = [("", self.nodes[self.ROOT])]
        seen = set()
        while stack:
            relative, directory = stack.pop()
            if directory.ino in seen:
                continue
            seen.add(directory.ino)
            for name in sorted(set(directory.entries) | set(directory.durable_entries)):
                current, durable = directory.entries.get(name), directory.durable_entries.get(name)
                child_relative = f"{relative}/{name}" if relative else name
                if current != durable:
                    change = ("created" if durable is None else "removed" if current is None
                              else "replaced")
                    names.append({"path": "/" + child_relative, "change": change})
                if current is not None:
                    child = self.nodes[current]
                    if child.is_dir:
                        stack.append((child_relative, child))
                    elif child.dirty_from is not None:
                        files.append({"path": "/" + child_relative, "durable_size": len(child.durable),
                                      "size": len(child.data), "unsynced_from": child.dirty_from})
        return {"unsynced_files": files, "undurable_names": names}

    def cut(self, reason: str = "cut command") -> dict:
        """Power off: forget everything not durable. Idempotent."""
        if self.dead:
            return self.cut_report or {}
        report = {"reason": reason, "at_monotonic": time.monotonic(), **self.pending(),
                  "recent_calls": list(self.recent)[-24:], "fired": self.fired}
        self.dead = True
        self.cut_report = report
        # Drop the in-memory state; the backing directory already is the durable image.
        self._load()
        return report

    def state(self) -> dict:
        return {"dead": self.dead, "cut": self.cut_report, "calls": dict(self.counters),
                "armed": len(self.triggers), "fired": self.fired,
                "pending": None if self.dead else self.pending()}


# --------------------------------------------------------------------------- FUSE glue


def _fuse():
    import fuse  # fusepy; imported late so the client side runs without libfuse

    return fuse


def _file_handle(fi) -> Optional[int]:
    if fi is None:
        return None
    return fi if isinstance(fi, int) else fi.fh


def build_operations(model: PowerLossModel, mounted: threading.Event):
    fuse = _fuse()
    FuseOSError = fuse.FuseOSError

    def call(op: str, path_of=lambda *a: a[0]):
        """Wraps a method: one lock for everything, OSError -> errno, bookkeeping."""
        def decorate(method):
            def wrapper(self, *args):
                with model.lock:
                    path = path_of(*args) or "?"
                    try:
                        model.begin(op, path)
                        result = method(self, *args)
                        model.end(op, path)
                        return result
                    except OSError as error:
                        raise FuseOSError(error.errno or errno.EIO) from None
                    except KeyError:
                        raise FuseOSError(errno.ENOENT) from None
            wrapper.__name__ = method.__name__
            return wrapper
        return decorate

    def path_of_handle(path, fi) -> str:
        """The path a call names, or for a call on an open (maybe unlinked) file, its open path."""
        fh = _file_handle(fi)
        handle = model.handles.get(fh) if fh is not None else None
        return handle.path if handle is not None else path

    last_is_handle = lambda path, *rest: path_of_handle(path, rest[-1])  # noqa: E731
    truncate_path = lambda path, length, fi=None: path_of_handle(path, fi)  # noqa: E731

    class PowerLossFS(fuse.Operations):
        use_ns = True
        flag_nullpath_ok = 1
        # not supported: the kernel then answers by itself (flock locally) or ENOSYS
        lock = None
        bmap = None
        ioctl = None
        setxattr = None
        getxattr = None
        listxattr = None
        removexattr = None
        readlink = None

        def init(self, path):
            mounted.set()

        def destroy(self, path):
            pass

        # ---- attributes --------------------------------------------------------------

        def getattr(self, path, fi=None):
            with model.lock:
                if model.dead and path not in ("/", None):
                    raise FuseOSError(errno.EIO)
                try:
                    fh = _file_handle(fi)
                    node = model.handle(fh).node if fh is not None else model.resolve(path)
                except OSError as error:
                    raise FuseOSError(error.errno) from None
                if node.is_dir:
                    kind = stat.S_IFDIR
                    nlink = 2 + sum(model.nodes[i].is_dir for i in node.entries.values())
                    size = 4096
                else:
                    kind, nlink, size = stat.S_IFREG, max(1, node.links), len(node.data)
                return {"st_mode": kind | node.mode, "st_ino": node.ino, "st_nlink": nlink,
                        "st_uid": node.uid, "st_gid": node.gid, "st_size": size,
                        "st_blocks": (size + 511) // 512, "st_blksize": 4096,
                        "st_atime": node.mtime_ns, "st_mtime": node.mtime_ns, "st_ctime": node.ctime_ns}

        def statfs(self, path):
            info = os.statvfs(model.backing)
            return {key: getattr(info, key) for key in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                                         "f_bavail", "f_files", "f_ffree", "f_favail",
                                                         "f_namemax")}

        def access(self, path, amode):
            return 0

        @call("chmod")
        def chmod(self, path, mode):
            node = model.resolve(path)
            node.mode = stat.S_IMODE(mode)
            node.ctime_ns = _now_ns()

        @call("chown")
        def chown(self, path, uid, gid):
            node = model.resolve(path)
            if uid != -1:
                node.uid = uid
            if gid != -1:
                node.gid = gid

        @call("utimens")
        def utimens(self, path, times=None):
            node = model.resolve(path)
            node.mtime_ns = times[1] if times else _now_ns()

        # ---- directories -------------------------------------------------------------

        @call("opendir")
        def opendir(self, path):
            node = model.resolve(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            return model.open_handle(node, os.O_RDONLY, path)

        @call("readdir", last_is_handle)
        def readdir(self, path, fh):
            node = model.handle(fh).node
            return [".", ".."] + sorted(node.entries)

        def releasedir(self, path, fh):
            with model.lock:
                model.close_handle(fh)

        @call("fsyncdir", last_is_handle)
        def fsyncdir(self, path, datasync, fh):
            node = model.handle(fh).node
            model.sync_dir(node)

        @call("mkdir")
        def mkdir(self, path, mode):
            parent, name = model.parent_of(path)
            if name in parent.entries:
                raise OSError(errno.EEXIST, path)
            node = model._new_node(True, stat.S_IMODE(mode))
            model._set_entry(parent, name, node.ino)

        @call("rmdir")
        def rmdir(self, path):
            parent, name = model.parent_of(path)
            node = model.resolve(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            if node.entries:
                raise OSError(errno.ENOTEMPTY, path)
            model._set_entry(parent, name, None)

        # ---- names -------------------------------------------------------------------

        @call("unlink")
        def unlink(self, path):
            parent, name = model.parent_of(path)
            node = model.resolve(path)
            if node.is_dir:
                raise OSError(errno.EISDIR, path)
            model._set_entry(parent, name, None)

        @call("rename", lambda old, new: f"{old} -> {new}")
        def rename(self, old, new):
            old_parent, old_name = model.parent_of(old)
            new_parent, new_name = model.parent_of(new)
            node = model.resolve(old)
            if old_parent is new_parent and old_name == new_name:
                return
            existing_ino = new_parent.entries.get(new_name)
            if existing_ino is not None:
                existing = model.nodes[existing_ino]
                if existing.is_dir and not node.is_dir:
                    raise OSError(errno.EISDIR, new)
                if node.is_dir and not existing.is_dir:
                    raise OSError(errno.ENOTDIR, new)
                if existing.is_dir and existing.entries:
                    raise OSError(errno.ENOTEMPTY, new)
            if node.is_dir and (new.rstrip("/") + "/").startswith(old.rstrip("/") + "/"):
                raise OSError(errno.EINVAL, new)  # not into its own subtree
            model.nodes[node.ino].links += 1  # keep it alive while it moves
            model._set_entry(old_parent, old_name, None)
            model._set_entry(new_parent, new_name, node.ino)
            node.links -= 1
            node.ctime_ns = _now_ns()

        def link(self, target, source):
            raise FuseOSError(errno.EPERM)

        def symlink(self, target, source):
            raise FuseOSError(errno.EPERM)

        def mknod(self, path, mode, dev):
            raise FuseOSError(errno.EPERM)

        # ---- files -------------------------------------------------------------------

        @call("create")
        def create(self, path, mode, fi):
            parent, name = model.parent_of(path)
            existing = parent.entries.get(name)
            if existing is not None:
                if fi.flags & os.O_EXCL:
                    raise OSError(errno.EEXIST, path)
                node = model.nodes[existing]
                if node.is_dir:
                    raise OSError(errno.EISDIR, path)
                if fi.flags & os.O_TRUNC:
                    model.truncate(node, 0)
            else:
                node = model._new_node(False, stat.S_IMODE(mode))
                model._set_entry(parent, name, node.ino)
            fi.fh = model.open_handle(node, fi.flags, path)
            fi.direct_io = 1
            return 0

        @call("open")
        def open(self, path, fi):
            node = model.resolve(path)
            if node.is_dir:
                raise OSError(errno.EISDIR, path)
            if fi.flags & os.O_TRUNC and fi.flags & os.O_ACCMODE != os.O_RDONLY:
                model.truncate(node, 0)
            fi.fh = model.open_handle(node, fi.flags, path)
            fi.direct_io = 1
            return 0

        @call("read", last_is_handle)
        def read(self, path, size, offset, fi):
            node = model.handle(fi.fh).node
            return bytes(node.data[offset:offset + size])

        @call("write", last_is_handle)
        def write(self, path, data, offset, fi):
            handle = model.handle(fi.fh)
            if handle.flags & os.O_APPEND:
                offset = len(handle.node.data)
            return model.write(handle.node, data, offset)

        @call("truncate", truncate_path)
        def truncate(self, path, length, fi=None):
            fh = _file_handle(fi)
            node = model.handle(fh).node if fh is not None else model.resolve(path)
            if node.is_dir:
                raise OSError(errno.EISDIR, path)
            model.truncate(node, length)

        def fsync(self, path, datasync, fi):
            op = "fdatasync" if datasync else "fsync"
            with model.lock:
                label = path_of_handle(path, fi)
                try:
                    model.begin(op, label)
                    model.sync_file(model.handle(fi.fh).node)
                    model.end(op, label)
                except OSError as error:
                    raise FuseOSError(error.errno or errno.EIO) from None

        def flush(self, path, fi):
            return 0

        def release(self, path, fi):
            with model.lock:
                model.close_handle(fi.fh)

    return PowerLossFS()


# --------------------------------------------------------------------------- control server


def serve_control(model: PowerLossModel, socket_path: Path, mounted: threading.Event) -> None:
    if socket_path.exists():
        socket_path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    server.listen(8)

    def answer(request: dict) -> dict:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "mounted": mounted.is_set(), "pid": os.getpid()}
        with model.lock:
            if op == "cut":
                return {"ok": True, "report": model.cut()}
            if op == "arm":
                model.triggers = [Trigger(t["op"], re.compile(t.get("path", "")), t.get("when", "before"),
                                          int(t.get("skip", 0))) for t in request.get("triggers", [])]
                for trigger in model.triggers:
                    if trigger.op != "any" and trigger.op not in CALLS:
                        return {"ok": False, "error": f"unknown call {trigger.op!r}"}
                    if trigger.when not in ("before", "after"):
                        return {"ok": False, "error": f"when must be before or after, not {trigger.when!r}"}
                return {"ok": True}
            if op == "state":
                return {"ok": True, **model.state()}
        return {"ok": False, "error": f"unknown request {request!r}"}

    def client(connection: socket.socket) -> None:
        with connection, connection.makefile("rwb") as stream:
            for line in stream:
                try:
                    reply = answer(json.loads(line))
                except Exception as error:  # a bad request must not kill the filesystem
                    reply = {"ok": False, "error": repr(error)}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()

    while True:
        connection, _ = server.accept()
        threading.Thread(target=client, args=(connection,), daemon=True).start()


# Options: no kernel caching of names or attributes (the model is the only truth), direct I/O
# (reads and writes reach the model, never the page cache), large writes, and the inode numbers
# of the model; hard_remove keeps unlink a real unlink while the file is open.
MOUNT_OPTIONS = dict(entry_timeout=0, attr_timeout=0, negative_timeout=0, big_writes=True,
                     max_write=131072, use_ino=True, hard_remove=True, fsname="lazyfs", subtype="lazyfs")


def serve(backing: Path, mountpoint: Path, control: Path) -> int:
    fuse = _fuse()
    model = PowerLossModel(backing)
    mounted = threading.Event()
    threading.Thread(target=serve_control, args=(model, control, mounted), name="lazyfs-control",
                     daemon=True).start()
    fuse.FUSE(build_operations(model, mounted), str(mountpoint), foreground=True, raw_fi=True,
              nothreads=False, **MOUNT_OPTIONS)
    return 0


# --------------------------------------------------------------------------- client side


class LazyFSError(AssertionError):
    """The power-loss filesystem could not be used; the message says why and what to do."""


def check_fuse_available() -> None:
    """Raises with a precise reason when this machine cannot mount the filesystem."""
    if not os.path.exists("/dev/fuse"):
        raise LazyFSError("/dev/fuse does not exist: the power-loss tests need FUSE (a container needs "
                          "--device /dev/fuse --cap-add SYS_ADMIN)")
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as error:
        raise LazyFSError(f"/dev/fuse cannot be opened ({error}): run as root or with access to it")
    if ctypes.util.find_library("fuse") is None:
        raise LazyFSError("libfuse.so.2 is missing: run scripts/bootstrap.sh (apt-get install libfuse2 fuse3)")
    if shutil.which("fusermount") is None and shutil.which("fusermount3") is None and os.geteuid() != 0:
        raise LazyFSError("fusermount is missing: run scripts/bootstrap.sh (apt-get install fuse3)")


class LazyFSMount:
    """Runs `lazyfs.py serve` as a subprocess and talks to its control socket.

    mount() returns once the kernel has connected the mount; cut() forgets the undurable state
    (the mount answers EIO afterwards); unmount() ends the daemon; remount() = unmount + mount,
    i.e. a reboot onto whatever the backing directory (the disk) holds.
    """

    def __init__(self, backing: Path, mountpoint: Path, control: Optional[Path] = None,
                 log_path: Optional[Path] = None, python: str = sys.executable) -> None:
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.control = Path(control or self.mountpoint.parent / f".{self.mountpoint.name}.lazyfs.sock")
        self.log_path = Path(log_path or self.mountpoint.parent / f"{self.mountpoint.name}.lazyfs.log")
        self.python = python
        self.process: Optional[subprocess.Popen] = None
        self.mounts = 0

    def __enter__(self) -> "LazyFSMount":
        return self.mount()

    def __exit__(self, *exc) -> None:
        self.unmount()

    def mount(self, timeout: float = 20) -> "LazyFSMount":
        check_fuse_available()
        assert self.process is None, "already mounted"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.mountpoint):
            _force_unmount(self.mountpoint)
        if self.control.exists():
            self.control.unlink()
        self.mounts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== lazyfs mount #{self.mounts} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [self.python, str(Path(__file__).resolve()), "serve", "--backing", str(self.backing),
             "--mount", str(self.mountpoint), "--control", str(self.control)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise LazyFSError(f"lazyfs exited with {code} before mounting {self.mountpoint}:\n"
                                  f"{self.log_tail()}")
            try:
                if self.request({"op": "ping"}, timeout=1).get("mounted") and os.path.ismount(self.mountpoint):
                    return self
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                self.unmount()
                raise LazyFSError(f"lazyfs did not mount {self.mountpoint} within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)  # polling the mount's readiness, not synchronising with it

    def request(self, message: dict, timeout: float = 10) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(self.control))
            connection.sendall(json.dumps(message).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(1 << 16)
                if not chunk:
                    break
                reply += chunk
        answer = json.loads(reply)
        if not answer.get("ok"):
            raise LazyFSError(f"lazyfs refused {message}: {answer.get('error')}")
        return answer

    def cut(self) -> dict:
        """Power cut now; returns what was forgotten (`unsynced_files`, `undurable_names`)."""
        return self.request({"op": "cut"})["report"]

    def arm(self, *triggers: dict) -> None:
        """Cut by itself at a matching call, e.g. arm({"op": "rename", "path": "position"})."""
        self.request({"op": "arm", "triggers": list(triggers)})

    def state(self) -> dict:
        return self.request({"op": "state"})

    def pending(self) -> dict:
        return self.state()["pending"]

    def unmount(self, timeout: float = 20) -> None:
        if self.process is None:
            return
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if os.path.ismount(self.mountpoint):
                subprocess.run(_unmount_command(self.mountpoint), capture_output=True)
            try:
                self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                self.process.kill()
                self.process.wait()
                _force_unmount(self.mountpoint)
                self.process = None
                raise LazyFSError(f"lazyfs at {self.mountpoint} did not unmount within {timeout} s "
                                  f"(still in use?):\n{self.log_tail()}")
        self.process = None
        if os.path.ismount(self.mountpoint):
            _force_unmount(self.mountpoint)

    def remount(self) -> "LazyFSMount":
        self.unmount()
        return self.mount()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "<no lazyfs log>"


def _unmount_command(mountpoint: Path) -> list[str]:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    return [tool, "-u", str(mountpoint)] if tool else ["umount", str(mountpoint)]


def _force_unmount(mountpoint: Path) -> None:
    """A mount whose daemon died ("Transport endpoint is not connected")."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool:
        subprocess.run([tool, "-u", "-z", str(mountpoint)], capture_output=True)
    if os.path.ismount(mountpoint):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


# --------------------------------------------------------------------------- command line


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="mount BACKING at MOUNT (foreground)")
    serve_parser.add_argument("--backing", required=True, type=Path)
    serve_parser.add_argument("--mount", required=True, type=Path)
    serve_parser.add_argument("--control", required=True, type=Path)
    for name, help_text in (("cut", "power cut now"), ("state", "print the state")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--control", required=True, type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "serve":
        return serve(arguments.backing.resolve(), arguments.mount.resolve(), arguments.control)
    client = LazyFSMount(Path("/nonexistent"), Path("/nonexistent"), control=arguments.control)
    reply = client.cut() if arguments.command == "cut" else client.state()
    print(json.dumps(reply, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
