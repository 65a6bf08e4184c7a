"""Retention and disk-budget maintenance: plan (pure) and enforce (through audited deletes).

Warn mode reads and reports; it writes nothing. Enforce evicts through `delete_session`
(audited, crypto-shredding) and reclaims leftovers of interrupted writes by opening the session
under its lock, which runs the same recovery as any writer.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import MaintenancePolicy

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SessionUsage:
    key: str
    name: str
    updated_ms: int
    bytes: int
    protected: str | None  # why it may not be evicted, or None
    stale_temp_files: int = 0
    stale_temp_bytes: int = 0


@dataclass(frozen=True)
class Eviction:
    key: str
    name: str
    reason: str  # "prune" | "count" | "disk"
    updated_ms: int
    bytes: int


@dataclass
class MaintenanceReport:
    mode: str
    now_ms: int
    sessions_before: int
    bytes_before: int
    sessions_after: int
    bytes_after: int
    evictions: list[Eviction] = field(default_factory=list)
    protected: list[tuple[str, str]] = field(default_factory=list)
    temp_files: int = 0
    temp_bytes: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["protected"] = [{"key": key, "why": why} for key, why in self.protected]
        return out


def protection(key: str, policy: MaintenancePolicy, live_holder: str | None) -> str | None:
    for pattern in policy.protected_keys:
        if fnmatch.fnmatchcase(key, pattern):
            return f"matches protected pattern {pattern!r}"
    if live_holder is not None:
        return f"held by a live writer ({live_holder})"
    return None


def plan(usages: list[SessionUsage], policy: MaintenancePolicy, now_ms: int) -> list[Eviction]:
    """Which sessions to evict, oldest first within each rule; protected ones never."""
    evict: dict[str, Eviction] = {}

    def take(usage: SessionUsage, reason: str) -> None:
        evict[usage.name] = Eviction(usage.key, usage.name, reason, usage.updated_ms, usage.bytes)

    oldest_first = sorted((u for u in usages if u.protected is None), key=lambda u: (u.updated_ms, u.name))
    cutoff = now_ms - int(policy.prune_after_days * DAY_MS)
    for usage in oldest_first:
        if usage.updated_ms < cutoff:
            take(usage, "prune")

    remaining = [u for u in usages if u.name not in evict]
    if len(remaining) > policy.max_sessions_kept + policy.count_slack:
        excess = len(remaining) - policy.max_sessions_kept
        for usage in [u for u in oldest_first if u.name not in evict][:excess]:
            take(usage, "count")

    total = sum(u.bytes for u in usages if u.name not in evict)
    if total > policy.max_disk_bytes:
        target = int(policy.max_disk_bytes * policy.high_water)
        for usage in oldest_first:
            if total <= target:
                break
            if usage.name not in evict:
                take(usage, "disk")
                total -= usage.bytes
    return sorted(evict.values(), key=lambda e: (e.updated_ms, e.name))
