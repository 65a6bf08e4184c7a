"""Audited policy rejections, rate-bounded per log: at most `records_per_window` per window,
then one `suppressed` marker, so a flood of bad input cannot flood the trail."""

from __future__ import annotations

from ...audit.chain import RecordBase, Rejected, Suppressed, parse_record
from ...audit.errors import RecordError
from ...errors import PolicyError
from .auditlog import LOG_FILE, AuditLog
from .env import LocalEnv


def record_rejection(env: LocalEnv, log: AuditLog, op: str, target: str | None, error: PolicyError) -> None:
    policy = env.config.rejection_audit
    window = env.clock() // 1000 // policy.window_seconds
    in_window = [r for r in recent(log, 64 * 1024)
                 if isinstance(r, (Rejected, Suppressed)) and r.ts // 1000 // policy.window_seconds == window]
    if any(isinstance(r, Suppressed) for r in in_window):
        return
    if len(in_window) < policy.records_per_window:
        log.append({"kind": "rejected", "op": op, "target": target, "reason": error.reason}, durable=True)
    else:
        log.append({"kind": "suppressed", "window": window, "window_seconds": policy.window_seconds},
                   durable=True)


def recent(log: AuditLog, nbytes: int) -> list[RecordBase]:
    """Records in the last `nbytes` of the log (for rate bounds; not a verification)."""
    size, tail = log.dir.read_tail(LOG_FILE, nbytes)
    lines = tail.split(b"\n")[:-1]
    if size > len(tail) and lines:
        lines = lines[1:]  # the first line may be cut
    records = []
    for line in lines:
        try:
            records.append(parse_record(line))
        except RecordError:
            continue
    return records
