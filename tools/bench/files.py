"""The file-based peers: one JSON file per session rewritten atomically, and the bare fsync
floor (write + fsync of one file), the least any durable write can cost on this disk."""

from __future__ import annotations

import heapq
import os
import shutil
from pathlib import Path
from typing import Any

import orjson

from .corpus import item, items
from .systems import (
    APPEND, CREATE_BIG, CREATE_EMPTY, LIST50, READ50, READ_LIMIT, READ_SESSION_ITEMS, SLOT_PUT, TURN, TURN_ITEMS,
    Prepared, System,
)


# -- one JSON file per session ----------------------------------------------------------------


def atomic_write(directory: Path, dir_fd: int, name: str, data: bytes) -> None:
    """The textbook durable replace: write a temp file, fsync it, rename over, fsync the dir."""
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, directory / name)
    os.fsync(dir_fd)


class JsonFiles(System):
    """One JSON file per session holding its whole transcript; the application keeps the open
    session's items in memory and rewrites the file atomically on every change."""

    name = "json file per session"
    durability = "temp + fsync + rename + fsync dir per write"
    short = "temp+fsync+rename+fsync dir"
    mappings = {
        APPEND: "rewrite the session's file with the item added",
        TURN: "one rewrite with 16 items added",
        CREATE_EMPTY: "write a new file",
        CREATE_BIG: "write a new file",
        READ50: "read + parse the file, slice the last 50",
        LIST50: "scandir + stat every file, 50 newest by mtime",
    }

    def __init__(self) -> None:
        self.base = Path()
        self.dirs: list[tuple[Path, int]] = []

    def _open_dir(self, path: Path) -> int:
        path.mkdir(mode=0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        self.dirs.append((path, fd))
        return fd

    def build(self, base: Path, n_sessions: int) -> None:
        self.base = base
        self.big = base / "big"
        self.big_fd = self._open_dir(self.big)
        for k in range(n_sessions):  # built without fsync, then one sync: same end state, faster
            (self.big / f"s-{k:06d}.json").write_bytes(orjson.dumps({"items": [item(k)]}))
        (self.big / "read-1000.json").write_bytes(orjson.dumps({"items": items(0, READ_SESSION_ITEMS)}))
        os.sync()

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        big, big_fd = self.big, self.big_fd
        if workload in (APPEND, TURN):
            name = f"{workload}-r{rnd}.json"
            held: list[dict[str, Any]] = [item(0)]
            atomic_write(big, big_fd, name, orjson.dumps({"items": held}))
            per_op = 1 if workload == APPEND else TURN_ITEMS

            def write(i: int) -> None:
                held.extend(items(i * per_op, per_op))
                atomic_write(big, big_fd, name, orjson.dumps({"items": held}))

            return Prepared(write)
        if workload == CREATE_EMPTY:
            path = self.base / f"empty-r{rnd}"
            fd = self._open_dir(path)

            def cleanup() -> None:
                os.close(fd)
                self.dirs.remove((path, fd))
                shutil.rmtree(path, ignore_errors=True)

            return Prepared(lambda i: atomic_write(path, fd, f"new-{i}.json", orjson.dumps({"items": [item(i)]})),
                            cleanup)
        if workload == CREATE_BIG:
            return Prepared(lambda i: atomic_write(big, big_fd, f"new-r{rnd}-{i}.json",
                                                   orjson.dumps({"items": [item(i)]})))
        if workload == READ50:
            return Prepared(lambda i: orjson.loads((big / "read-1000.json").read_bytes())["items"][-READ_LIMIT:])
        if workload == LIST50:
            return Prepared(lambda i: self._newest(big))
        return None

    @staticmethod
    def _newest(directory: Path) -> list[tuple[int, str]]:
        with os.scandir(directory) as entries:
            stamped = [(e.stat().st_mtime_ns, e.name) for e in entries if e.name.endswith(".json")]
        return heapq.nlargest(READ_LIMIT, stamped)

    def close(self) -> None:
        for _, fd in self.dirs:
            os.close(fd)
        self.dirs.clear()


# -- the fsync floor --------------------------------------------------------------------------


class FsyncFloor(System):
    name = "fsync floor"
    durability = "write + fsync of one file (no rename, no dir)"
    short = "write+fsync"
    mappings = {
        APPEND: "write 500 bytes + fsync",
        TURN: "write 16 x 500 bytes + fsync",
        SLOT_PUT: "write 500 bytes + fsync",
    }
    PAYLOAD = b"x" * 500

    def __init__(self) -> None:
        self.fd = -1

    def build(self, base: Path, n_sessions: int) -> None:
        self.fd = os.open(base / "floor.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _write(self, count: int) -> None:
        os.write(self.fd, self.PAYLOAD * count)
        os.fsync(self.fd)

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        if workload in (APPEND, SLOT_PUT):
            return Prepared(lambda i: self._write(1))
        if workload == TURN:
            return Prepared(lambda i: self._write(TURN_ITEMS))
        return None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)

