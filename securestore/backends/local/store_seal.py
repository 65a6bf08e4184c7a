"""`audit seal`, the idle heartbeat: every log with unsealed records gets a signed checkpoint,
and every session head that changed since the previous seal is committed to the store log."""

from __future__ import annotations

from ...errors import LockHeldError, SecureStoreError
from . import heads
from .layout import AUDIT_DIR
from .store_dir import SealReport, StoreDir


def seal_store(store: StoreDir) -> SealReport:
    """Sign a checkpoint over every log with unsealed records (each session whose writer is
    not active: a live writer seals at its own close), then commit every session head that
    changed since the previous seal to the store log, and seal it. Run it from a timer, so
    an idle store's tail does not stay unsealed and every head is committed."""
    store.writable()
    report = SealReport()
    names = store.session_names()
    for name in names:
        try:
            with store.sessions.open_dir(name) as directory, directory.open_dir(AUDIT_DIR) as audit:
                if store.env.new_log(audit).is_sealed():
                    continue
            session = store.open_session(None, name, timeout=0.0)
        except LockHeldError:
            report.busy.append(name)
            continue
        except SecureStoreError as exc:
            if store.env.ctx.failed:  # a durability failure: this handle is dead
                raise
            report.skipped.append(f"{name}: {exc}")
            continue
        try:
            session.close()  # seals, and marks its head for the commit below
        except SecureStoreError as exc:  # e.g. a log that is not ours to sign: never signed
            if store.env.ctx.failed:
                raise
            report.skipped.append(f"{name}: {exc}")
            continue
        report.sealed.append(name)
    with store.writer() as log:  # under the store lock: one sweep at a time; seals on the way out
        changed, stamp = heads.changed_since_last_sweep(store.heads_dir(), store.sessions, names)
        store.commit_heads(log, changed + heads.take_marked(store.heads_dir()))
        log.seal()  # the heads are durable before the stamp says they were committed
        heads.finish_sweep(store.heads_dir(), stamp)
    return report
