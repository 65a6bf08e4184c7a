"""Retention and the disk budget as a recipe: read every session's usage without locks,
plan evictions (pure), then, in enforce mode, evict through the ordinary audited delete and
reclaim stale leftovers through the ordinary recovery of an open."""

from __future__ import annotations

from collections.abc import Callable

from ..backends.local.store_dir import StoreDir
from ..backends.local.usage import session_usage
from ..config import MaintenancePolicy
from ..core.retention import MaintenanceReport, SessionUsage, plan
from ..errors import LockHeldError, NotFoundError, SecureStoreError


def maintain(backend: StoreDir, policy: MaintenancePolicy, now: int, *, enforce: bool,
             delete_session: Callable[[str], None], reopen: Callable[[str], None]) -> MaintenanceReport:
    """Warn mode writes nothing and reports what enforce would do. `delete_session(key)` is
    the store's audited delete; `reopen(key)` opens and closes a session (its recovery
    removes the leftovers)."""
    usages: list[SessionUsage] = []
    skipped: list[str] = []
    for name in backend.session_names():
        try:
            usages.append(session_usage(backend, name, policy, now))
        except SecureStoreError as exc:
            skipped.append(f"{name}: {exc}")
    evictions = plan(usages, policy, now)
    total = sum(u.bytes for u in usages)
    report = MaintenanceReport(
        mode="enforce" if enforce else "warn", now_ms=now, sessions_before=len(usages), bytes_before=total,
        sessions_after=len(usages), bytes_after=total, skipped=skipped,
        protected=[(u.key, u.protected) for u in usages if u.protected is not None],
    )
    evicted = {e.name for e in evictions}
    stale = [u for u in usages if u.stale_temp_files and u.name not in evicted and u.protected is None]
    if not enforce:
        report.evictions = evictions
    for eviction in evictions:
        if enforce:
            try:
                delete_session(eviction.key)
            except (LockHeldError, NotFoundError) as exc:
                report.skipped.append(f"{eviction.name}: not evicted: {exc}")
                continue
            report.evictions.append(eviction)
        report.sessions_after -= 1
        report.bytes_after -= eviction.bytes
    if enforce:
        backend.sweep()  # store-level leftovers and index temp files
    for usage in stale:
        if enforce:
            try:
                reopen(usage.key)
            except (LockHeldError, NotFoundError) as exc:
                report.skipped.append(f"{usage.name}: leftovers not reclaimed: {exc}")
                continue
        report.temp_files += usage.stale_temp_files
        report.temp_bytes += usage.stale_temp_bytes
        report.bytes_after -= usage.stale_temp_bytes
    return report
