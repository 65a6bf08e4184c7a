"""Recovery of one session directory under its writer lock: torn tails dropped, a dangling
intent settled by observation (a committed journal record's writes redone), leftovers of
interrupted writes removed; each step recorded in the session's audit log."""

from __future__ import annotations

from typing import Any

from ... import txn
from ...audit.chain import Intent
from ...core.journal import parse_journal
from ...fs import TEMP_PREFIX
from ..tree import TreeLock
from ...errors import IntegrityError
from .auditlog import AuditLog
from .layout import AUDIT_DIR, MANIFEST_FILE, STATE_DIR, VAULT_FILE, is_journal
from .session_dir import SessionDir
from .session_files import split_lines
from .session_transcript import cut_torn_tail, drop_segments
from .sweeps import leftovers


def note_stale_lock(writer_lock: TreeLock, log: AuditLog, target: str) -> list[str]:
    """After reconciliation (so the log's tail is repaired first): audit a takeover."""
    dead = writer_lock.recovered_from_text
    if dead is None:
        return []
    log.append({"kind": "recovery", "event": "stale-lock", "target": target, "size": 0,
                "detail": f"holder {dead} is gone"}, durable=True)
    return [f"stale lock of a dead holder ({dead}) taken over"]


def drop_torn_lines(session: SessionDir) -> list[dict[str, Any]]:
    """A crash mid-append leaves a partial last line, or (journal) a bad final record. Only
    the tail is read: damage further back is left for the loader to refuse. The manifest as
    read for the resume check is reused when it had no partial line and has not changed size
    (it only ever grows by whole lines under this lock). A journal append runs under an intent
    fsynced before it, whose outcome follows the append's fsync, so a crash can leave a torn
    record only in a dangling journal.append's target (anything else is found, and cut the
    same way, when the transcript is first read: session_transcript.py)."""
    records = []
    limits = session.env.limits
    pending = session.log.open_intent
    journal = pending.target if pending is not None and pending.op == "journal.append" else None
    info = session.dir.entry(MANIFEST_FILE)
    if info is not None and (session.history.torn_bytes or info.size != session.history.size):
        session.manifest_touched = True  # it changed since the resume check: `load` reads it again
        records.append(cut_torn_tail(session.dir, MANIFEST_FILE, limits, journal=False))
    if journal is not None and is_journal(journal) and session.dir.entry(journal) is not None:
        records.append(cut_torn_tail(session.dir, journal, limits, journal=True))
    return [record for record in records if record is not None]


def redo(session: SessionDir, intent: Intent) -> None:
    """Finish a committed change a crash interrupted: a journal record's materializations, or
    the removal of the segments a seal dropped."""
    if intent.op == "journal.seal":
        drop_segments(session.dir, [t.target for t in intent.also if t.sha256 is None and is_journal(t.target)])
        return
    if intent.op != "journal.append" or not is_journal(intent.target):
        return
    limits = session.env.limits
    data = session.dir.read(intent.target, limits.max_journal_bytes)
    lines, _ = split_lines(data)
    record = parse_journal(lines[-1], after_seq=None).records[0]
    steps = session.materializations(record.ops)
    if tuple(step.describe() for step in steps) != tuple(intent.also):
        raise IntegrityError(f"session {session.name}: journal record {record.seq} does not match its intent")
    for step in steps:  # a record that passed the caps when it was written still does, unless tampered
        if step.target == VAULT_FILE and step.data is not None and len(step.data) > limits.max_vault_bytes:
            raise IntegrityError(f"session {session.name}: journal record {record.seq} exceeds the vault cap")
    for step in steps:
        if session.observe(step.target) != step.describe().sha256:
            if step.target == MANIFEST_FILE:
                session.manifest_touched = True
            session.materialize(step)


def reconcile_session(session: SessionDir) -> list[str]:
    def cleanup() -> list[dict[str, Any]]:
        return leftovers(session.dir, (TEMP_PREFIX,), "") + \
            leftovers(session.state, (TEMP_PREFIX,), f"{STATE_DIR}/") + \
            leftovers(session.log.dir, (TEMP_PREFIX,), f"{AUDIT_DIR}/")  # an interrupted ratchet

    observers = txn.Observers(txn.Observer(
        observe=lambda intent: session.observe(intent.target, intent.op),
        finish=lambda intent: redo(session, intent),
    ))
    # Where no crash leaves temporary files (PostgreSQL), they are looked for only after one.
    return txn.reconcile(session.log, observers, cleanup, torn_files=lambda: drop_torn_lines(session),
                         sweep_if=lambda evidence: evidence or session.dir.crash_leftovers)
