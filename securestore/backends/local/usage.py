"""What maintenance needs to know of one session, read without its lock: O(its files)."""

from __future__ import annotations

from ...config import MaintenancePolicy
from ...core.retention import SessionUsage, protection
from ...fs import TEMP_PREFIX
from .layout import SESSION_LOCK
from .store_dir import StoreDir


def session_usage(store: StoreDir, name: str, policy: MaintenancePolicy, now_ms: int) -> SessionUsage:
    with store.read_session(None, name) as session:
        updated = session.last_write_ms()
        size, stale, stale_bytes = 0, 0, 0
        grace_ns = (now_ms - policy.temp_grace_seconds * 1000) * 1_000_000
        for rel, info in session.dir.walk():
            if info.kind == "file":
                size += info.size
                if rel.rsplit("/", 1)[-1].startswith(TEMP_PREFIX) and info.mtime_ns < grace_ns:
                    stale, stale_bytes = stale + 1, stale_bytes + info.size
        live = session.dir.lock_holder(SESSION_LOCK, live=True)
    return SessionUsage(session.key, name, updated, size, protection(session.key, policy, live), stale, stale_bytes)
