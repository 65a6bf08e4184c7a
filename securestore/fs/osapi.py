"""The OS-call table: every system call securestore makes goes through one `OsApi` instance.

Modelled on LevelDB's `Env` and SQLite's VFS: tests swap the table to fail call number k or to
count calls, without touching the code above it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from dataclasses import dataclass, fields, replace
from typing import Any
from collections.abc import Callable


@dataclass(frozen=True)
class OsApi:
    open: Callable[..., int] = os.open
    close: Callable[[int], None] = os.close
    read: Callable[[int, int], bytes] = os.read
    pread: Callable[[int, int, int], bytes] = os.pread
    write: Callable[[int, bytes | memoryview], int] = os.write
    pwrite: Callable[[int, bytes, int], int] = os.pwrite
    fsync: Callable[[int], None] = os.fsync
    fstat: Callable[[int], os.stat_result] = os.fstat
    lstat_at: Callable[..., os.stat_result] = os.stat
    fchmod: Callable[[int, int], None] = os.fchmod
    ftruncate: Callable[[int, int], None] = os.ftruncate
    mkdir: Callable[..., None] = os.mkdir
    rmdir: Callable[..., None] = os.rmdir
    unlink: Callable[..., None] = os.unlink
    replace: Callable[..., None] = os.replace
    listdir: Callable[[int], list[str]] = os.listdir
    flock: Callable[[int, int], None] = fcntl.flock
    realpath: Callable[[str], str] = os.path.realpath
    tempdir: Callable[[], str] = tempfile.gettempdir
    urandom: Callable[[int], bytes] = os.urandom
    geteuid: Callable[[], int] = os.geteuid
    getpid: Callable[[], int] = os.getpid
    read_proc: Callable[[str], bytes] = lambda path: _read_small(path)
    # Time is an OS call too (LevelDB's Env::NowMicros/SleepForMicroseconds): tests replace it.
    now_ns: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    readlink: Callable[[str], str] = os.readlink
    hostname: Callable[[], str] = lambda: os.uname().nodename
    fstatvfs: Callable[[int], os.statvfs_result] = os.fstatvfs


def _read_small(path: str) -> bytes:
    """Read a /proc pseudo-file (size 0 in stat, so the capped fs reader does not apply)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


REAL_OS = OsApi()

# Calls that only read process state; fault plans skip them so "call k" means an I/O call.
_NOT_IO = frozenset({"urandom", "geteuid", "getpid", "read_proc", "readlink", "hostname", "realpath", "tempdir", "fstatvfs",
                     "now_ns", "monotonic", "sleep"})


def io_call_names() -> list[str]:
    return [f.name for f in fields(OsApi) if f.name not in _NOT_IO]


def instrumented(base: OsApi, hook: Callable[[str, tuple[Any, ...]], None]) -> OsApi:
    """A copy of `base` where `hook(name, args)` runs before every I/O call.

    The hook may raise (an OSError to inject a fault, or any exception to simulate a crash).
    """

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            hook(name, args)
            return fn(*args, **kwargs)

        return call

    return replace(base, **{name: wrap(name, getattr(base, name)) for name in io_call_names()})
