"""Who holds a lock, and whether that process is provably alive.

An owner record is written into the lock file by the holder: pid, host, the process start time
from /proc/<pid>/stat (clock ticks since boot) and the boot id. A record naming a pid that is
gone, or whose start time or boot id differ (the pid was reused, or the machine rebooted),
names a dead holder. A record naming a live process is never broken, whatever its age.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .osapi import OsApi


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    start_time: int
    boot_id: str
    acquired_ms: int

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__, option=orjson.OPT_SORT_KEYS) + b"\n"

    def same_process(self, other: Owner) -> bool:
        return (self.pid, self.host, self.start_time, self.boot_id) == (other.pid, other.host, other.start_time,
                                                                        other.boot_id)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, process start time {self.start_time}"


def parse_owner(data: bytes) -> Owner | None:
    """The owner in a lock file; None when empty. Garbage counts as no owner (nothing to prove)."""
    if not data.strip():
        return None
    try:
        raw = orjson.loads(data)
        return Owner(int(raw["pid"]), str(raw["host"])[:256], int(raw["start_time"]), str(raw["boot_id"])[:64],
                     int(raw["acquired_ms"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def process_start_time(os_api: OsApi, pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if there is no such process."""
    try:
        stat = os_api.read_proc(f"/proc/{pid}/stat").decode("ascii", "replace")
    except OSError:
        return None
    try:
        # The command name (field 2) may contain spaces and ')': split after its last ')'.
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def boot_id(os_api: OsApi) -> str:
    try:
        return os_api.read_proc("/proc/sys/kernel/random/boot_id").decode("ascii", "replace").strip()
    except OSError:
        return "unknown"


def current_owner(os_api: OsApi, acquired_ms: int) -> Owner:
    pid = os_api.getpid()
    return Owner(pid, os_api.hostname(), process_start_time(os_api, pid) or 0, boot_id(os_api), acquired_ms)


def is_alive(os_api: OsApi, owner: Owner) -> bool:
    """True only when the named process provably still exists on this machine and boot."""
    if owner.host != os_api.hostname():
        return True  # another host's process cannot be checked from here: never break it
    if owner.boot_id != boot_id(os_api):
        return False
    return process_start_time(os_api, owner.pid) == owner.start_time
