"""Audited policy rejections, rate-bounded per log: at most `records_per_window` per window,
then one `suppressed` marker, so a flood of bad input cannot flood the trail."""

from __future__ import annotations

from ...audit.chain import Rejected, Suppressed
from ...errors import PolicyError
from .auditlog import AuditLog
from .env import LocalEnv


def record_rejection(env: LocalEnv, log: AuditLog, op: str, target: str | None, error: PolicyError) -> None:
    policy = env.config.rejection_audit
    window = env.clock() // 1000 // policy.window_seconds
    in_window = [r for r in log.recent(64 * 1024)
                 if isinstance(r, (Rejected, Suppressed)) and r.ts // 1000 // policy.window_seconds == window]
    if any(isinstance(r, Suppressed) for r in in_window):
        return
    if len(in_window) < policy.records_per_window:
        log.append({"kind": "rejected", "op": op, "target": target, "reason": error.reason}, durable=True)
    else:
        log.append({"kind": "suppressed", "window": window, "window_seconds": policy.window_seconds},
                   durable=True)
