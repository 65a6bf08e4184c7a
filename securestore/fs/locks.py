"""Locks on files in a `DirCore`: flock, the owner record written into the lock file, and the
proof that a recorded holder is dead (so its lock may be taken over).

An owner record is written into the lock file by the holder: pid, the process start time from
/proc/self/stat (clock ticks since boot), the boot id and the pid namespace (the target of
/proc/self/ns/pid); the host name is kept for display only, since a container restart or a
rename changes it while the kernel stays the same.

The verdict, taken by a process that already holds the flock on the lock file:
- another boot id: the holder's kernel is gone, so is the holder (a store is single-host);
- /proc shows the named pid with exactly the recorded start time: alive, never broken;
- same boot, same pid namespace, not in /proc: gone (the pid ended or was reused);
- same boot, another or unrecorded pid namespace: we cannot see that process, but flock is
  kernel-wide on a local filesystem, so while we hold it the holder does not: only the flock
  can tell (`Liveness.UNSEEN`), and the caller must hold it on the inode the name refers to.
"""

from __future__ import annotations

import fcntl
import re
from dataclasses import dataclass
from enum import Enum

import orjson

from ..errors import LockHeldError, NotFoundError, UnsafeFileError
from .base import RW_FLAGS, DirCore, FsContext, translate
from .osapi import OsApi

UNKNOWN_BOOT = "unknown"
_PID_NS = re.compile(r"pid:\[[0-9]{1,20}\]")
_MAX_HOST_CHARS = 256
_LOCK_FILE_REOPENS = 3  # a lock file replaced again and again is tampering, not contention


class Liveness(Enum):
    ALIVE = "alive"  # the named process is running: never broken
    DEAD = "dead"  # its kernel rebooted, or it is gone from the /proc of its own pid namespace
    UNSEEN = "unseen"  # another pid namespace: only the flock proves it no longer holds the lock


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    start_time: int
    boot_id: str
    acquired_ms: int
    pid_ns: str = ""  # "" when unrecorded (a legacy record) or unreadable

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__, option=orjson.OPT_SORT_KEYS) + b"\n"

    def same_process(self, other: Owner) -> bool:
        # The host name is left out on purpose: it can change under a running process.
        return (self.pid, self.start_time, self.boot_id, self.pid_ns) == (other.pid, other.start_time,
                                                                         other.boot_id, other.pid_ns)

    def describe(self) -> str:
        where = self.pid_ns or "an unrecorded pid namespace"
        return f"pid {self.pid} on {self.host} in {where}, process start time {self.start_time}"


def _printable(text: str) -> str:
    # The host comes from a file anyone with write access can forge: keep messages on one line.
    return "".join(c if c.isprintable() else "?" for c in text[:_MAX_HOST_CHARS])


def parse_owner(data: bytes) -> Owner | None:
    """The owner in a lock file; None when empty. Garbage counts as no owner (nothing to prove)."""
    if not data.strip():
        return None
    try:
        raw = orjson.loads(data)
        if not isinstance(raw, dict):
            return None
        pid_ns = str(raw.get("pid_ns", ""))
        return Owner(int(raw["pid"]), _printable(str(raw["host"])), int(raw["start_time"]),
                     str(raw["boot_id"])[:64], int(raw["acquired_ms"]),
                     pid_ns if _PID_NS.fullmatch(pid_ns) else "")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _start_time(os_api: OsApi, stat_path: str) -> int | None:
    try:
        stat = os_api.read_proc(stat_path).decode("ascii", "replace")
    except OSError:
        return None
    try:
        # The command name (field 2) may contain spaces and ')': split after its last ')'.
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def process_start_time(os_api: OsApi, pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if there is no such process."""
    return _start_time(os_api, f"/proc/{pid}/stat")


def boot_id(os_api: OsApi) -> str:
    try:
        return os_api.read_proc("/proc/sys/kernel/random/boot_id").decode("ascii", "replace").strip()
    except OSError:
        return UNKNOWN_BOOT


def pid_namespace(os_api: OsApi) -> str:
    """Our pid namespace, e.g. "pid:[4026531836]"; "" when it cannot be read."""
    try:
        link = os_api.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return link if _PID_NS.fullmatch(link) else ""


def current_owner(os_api: OsApi, acquired_ms: int) -> Owner:
    # /proc/self, not /proc/<getpid()>: a /proc mounted for another pid namespace numbers us differently.
    return Owner(os_api.getpid(), _printable(os_api.hostname()), _start_time(os_api, "/proc/self/stat") or 0,
                 boot_id(os_api), acquired_ms, pid_namespace(os_api))


def liveness(os_api: OsApi, owner: Owner) -> Liveness:
    """What can be proved about the holder named by `owner`, whatever the host name says.

    DEAD and UNSEEN are only grounds for a takeover for a caller that holds the flock on the lock
    file the name still refers to (see `lock`); without it, treat UNSEEN as alive.
    """
    ours = boot_id(os_api)
    if UNKNOWN_BOOT not in (ours, owner.boot_id) and owner.boot_id != ours:
        return Liveness.DEAD  # booted since: every process of that boot is gone
    if owner.start_time > 0 and process_start_time(os_api, owner.pid) == owner.start_time:
        return Liveness.ALIVE  # named exactly (in any namespace, a match is never ignored)
    same_boot = owner.boot_id == ours != UNKNOWN_BOOT  # namespace numbers repeat across boots
    if same_boot and owner.pid_ns and owner.pid_ns == pid_namespace(os_api):
        return Liveness.DEAD  # our own /proc would show it: the pid ended or was reused
    return Liveness.UNSEEN


def is_alive(os_api: OsApi, owner: Owner) -> bool:
    """False only when the holder is provably gone without help from the flock (for callers that
    do not hold the lock, such as maintenance): a holder in another pid namespace counts as alive."""
    return liveness(os_api, owner) is not Liveness.DEAD


class FileLock:
    """A held flock; `release` (or leaving the `with` block) gives it up."""

    def __init__(self, ctx: FsContext, fd: int, owner: Owner | None, recovered_from: Owner | None) -> None:
        self.ctx = ctx
        self.fd = fd
        self.owner = owner
        self.recovered_from = recovered_from  # a dead holder whose lock this one took over
        self.pid = ctx.os.getpid()

    @property
    def recovered_from_text(self) -> str | None:
        return None if self.recovered_from is None else self.recovered_from.describe()

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            if self.ctx.os.getpid() != self.pid:
                # A forked child shares the holder's open file description: LOCK_UN or truncating
                # here would drop the lock under the still-running parent. Close our copy only.
                self.ctx.close_quietly(fd)
                return
            if self.owner is not None:
                try:
                    self.ctx.os.ftruncate(fd, 0)  # a clean release leaves no owner record behind
                except OSError:
                    pass
            try:
                self.ctx.os.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass
            self.ctx.close_quietly(fd)  # closing releases the flock in any case

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock(directory: DirCore, name: str, timeout: float, now_ms: int) -> FileLock:
    """Exclusive flock on `name` in `directory` (created 0600 if missing), with an owner record inside.

    The lock file is never unlinked: contenders that opened the old inode would lock a
    different file. A free flock whose file still names a provably dead owner is a stale
    lock (its holder crashed): taken, and reported in `FileLock.recovered_from`. A record
    naming a live process is never broken, however old; the caller waits, then gets
    LockHeldError naming the holder. A holder in a pid namespace we cannot see is proved
    gone by the flock alone, so the flock only counts once `name` is checked to still
    refer to the inode it is held on: a file replaced under us is reopened and locked anew.
    """
    ctx = directory.ctx
    label = directory.child_label(name)
    deadline = ctx.os.monotonic() + timeout
    for _ in range(_LOCK_FILE_REOPENS + 1):
        directory.ensure_file(name)
        fd, _ = directory.open_checked(name, RW_FLAGS, "file", "open lock")
        try:
            taken = _wait_and_take(directory, fd, name, label, deadline, now_ms)
        except OSError as exc:
            ctx.close_quietly(fd)
            raise translate(exc, "lock", label) from None
        except BaseException:
            ctx.close_quietly(fd)
            raise
        if taken is not None:
            return taken
        ctx.close_quietly(fd)  # releases the flock on the file that is no longer `name`
    raise UnsafeFileError(f"refused {label}: it was replaced {_LOCK_FILE_REOPENS + 1} times while being "
                          "locked; securestore never replaces a lock file, stop whatever does and retry")


def _wait_and_take(directory: DirCore, fd: int, name: str, label: str, deadline: float, now_ms: int) -> FileLock | None:
    """Wait for the flock on `fd` and take it over; None if `name` now refers to another file."""
    os_api = directory.ctx.os
    delay = 0.005
    holder: Owner | None = None
    while True:
        try:
            os_api.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _still_named(directory, name, fd):
                return None
            previous = parse_owner(os_api.pread(fd, 4096, 0))
            mine = current_owner(os_api, now_ms)
            if previous is not None and previous.same_process(mine):
                # We won the flock on a new descriptor, so no handle of ours holds it:
                # the record is left over from one of our handles that failed to clear it.
                previous = None
            # DEAD or UNSEEN: we hold the flock on the file `name` refers to, so its holder does not.
            if previous is None or liveness(os_api, previous) is not Liveness.ALIVE:
                os_api.ftruncate(fd, 0)
                os_api.pwrite(fd, mine.to_bytes(), 0)
                return FileLock(directory.ctx, fd, mine, previous)
            holder = previous  # free flock, live owner on record: prove nothing, break nothing
            os_api.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            holder = parse_owner(os_api.pread(fd, 4096, 0)) or holder
        if os_api.monotonic() >= deadline:
            who = holder.describe() if holder else "another process"
            raise LockHeldError(f"{label} is held by {who}")
        os_api.sleep(delay)
        delay = min(delay * 2, 0.1)


def _still_named(directory: DirCore, name: str, fd: int) -> bool:
    """Does `name` still refer to the inode `fd` is open on? The open descriptor pins that
    inode, so a replacement cannot reuse its number while we compare."""
    held = directory.ctx.os.fstat(fd)
    try:
        named = directory.ctx.os.lstat_at(name, dir_fd=directory.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def lock_plain(directory: DirCore, name: str, *, exclusive: bool, timeout: float) -> FileLock:
    """A short-held leaf lock with no owner record: shared for appenders, exclusive for a
    rewrite. Never held while taking another lock."""
    ctx = directory.ctx
    label = directory.child_label(name)
    try:
        fd, _ = directory.open_checked(name, RW_FLAGS, "file", "open lock")
    except NotFoundError:  # the first lock taken here (the file is never unlinked)
        directory.ensure_file(name)
        fd, _ = directory.open_checked(name, RW_FLAGS, "file", "open lock")
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = ctx.os.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            ctx.os.flock(fd, mode | fcntl.LOCK_NB)
            return FileLock(ctx, fd, None, None)
        except BlockingIOError:
            if ctx.os.monotonic() >= deadline:
                ctx.close_quietly(fd)
                raise LockHeldError(f"{label} is busy") from None
            ctx.os.sleep(delay)
            delay = min(delay * 2, 0.05)
        except OSError as exc:
            ctx.close_quietly(fd)
            raise translate(exc, "lock", label) from None


def lock_owner(directory: DirCore, name: str) -> Owner | None:
    """The owner record of a lock file, read without locking (for display)."""
    data = directory.read_optional(name, 4096)
    return None if data is None else parse_owner(data)

