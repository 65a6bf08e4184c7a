"""Who holds a lock, and whether that process is provably alive.

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

import re
from dataclasses import dataclass
from enum import Enum

import orjson

from .osapi import OsApi

UNKNOWN_BOOT = "unknown"
_PID_NS = re.compile(r"pid:\[[0-9]{1,20}\]")
_MAX_HOST_CHARS = 256


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
    file the name still refers to (see `Dir.lock`); without it, treat UNSEEN as alive.
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
