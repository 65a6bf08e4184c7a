"""The audit-before-act contract, the one piece every backend shares:

    audit INTENT (durable) -> act -> audit OUTCOME

If the intent cannot be made durable, the act does not happen. A crash between intent and
outcome leaves a dangling intent; `reconcile` settles it on the next open by OBSERVING the
target (its content hash equals the intent's: recovered-committed; otherwise
recovered-not-applied), never by retrying the act.

This module knows no files: a backend describes each write as a `Change` (what the target will
hold, how to act, how to observe it) and hands it to `apply`; an `AuditSink` is wherever the
backend keeps its audit log; an `Observers` table says, per operation, how a dangling intent's
target is observed, finished or undone.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from .audit.chain import Intent, RecordBase, TargetState
from .core.canonical import sha256_hex
from .errors import DurabilityError, SecureStoreError


class AuditSink(Protocol):
    """An audit log as the contract needs it (the local backend's is `backends/local/auditlog.py`)."""

    @property
    def label(self) -> str: ...

    @property
    def target(self) -> str:
        """How recovery records name the log itself."""

    @property
    def torn(self) -> bytes: ...

    @property
    def open_intent(self) -> Intent | None: ...

    def check_usable(self) -> None:
        """Raise if an earlier durability failure made this handle unusable."""

    def attempt(self) -> AbstractContextManager[None]:
        """The act's scope: where writes commit together (a database transaction), a failed act
        is undone back to here, so the intent and its failed outcome still commit."""

    def load(self) -> None: ...

    def append(self, fields: dict[str, object], *, durable: bool) -> RecordBase: ...

    def drop_torn_tail(self) -> bytes: ...


@dataclass(frozen=True)
class Change:
    op: str
    target: str
    sha256: str | None  # content after the act (replace), the appended line, or None (removed)
    size: int | None
    act: Callable[[], None]
    observe: Callable[[], str | None]  # what the target holds now, in the same terms
    also: tuple[TargetState, ...] = ()


@dataclass(frozen=True)
class Observer:
    """How reconciliation settles a dangling intent of one kind of operation."""

    observe: Callable[[Intent], str | None]  # the target's state, in the intent's terms
    finish: Callable[[Intent], None] | None = None  # complete a change that committed (redo derived writes)
    undo: Callable[[Intent], None] | None = None  # take back the visible part of one that did not


class Observers:
    """The op -> observer table of one log's scope: the longest registered op prefix wins."""

    def __init__(self, default: Observer) -> None:
        self._default = default
        self._by_prefix: dict[str, Observer] = {}

    def register(self, op_prefix: str, observer: Observer) -> None:
        self._by_prefix[op_prefix] = observer

    def for_op(self, op: str) -> Observer:
        matches = [prefix for prefix in self._by_prefix if op.startswith(prefix)]
        return self._by_prefix[max(matches, key=len)] if matches else self._default


def apply(log: AuditSink, change: Change) -> None:
    log.check_usable()
    intent = cast(Intent, log.append(
        {"kind": "intent", "op": change.op, "target": change.target, "sha256": change.sha256,
         "size": change.size, "also": [t.model_dump() for t in change.also]},
        durable=True,
    ))
    try:
        with log.attempt():
            change.act()
    except DurabilityError:
        raise  # the handle is dead; the next open reconciles by observation
    except SecureStoreError:
        if change.also:
            # The batch may be committed but not materialized: leave the intent open (the
            # log then refuses new intents) so the next open redoes it from the journal.
            raise
        settle(log, intent, change.observe, recovered=False)
        raise
    # Not fsynced: if this outcome is lost, reconciliation observes the target and records
    # the same result. The next intent's fsync makes it durable anyway.
    log.append({"kind": "outcome", "txn": intent.seq, "result": "committed", "sha256": change.sha256},
               durable=False)


def settle(
    log: AuditSink,
    intent: Intent,
    observe: Callable[[], str | None],
    *,
    recovered: bool,
    finish: Callable[[], None] | None = None,
    undo: Callable[[], None] | None = None,
) -> str | None:
    """Record the outcome of `intent` from what its target holds now."""
    try:
        observed = observe()
        applied = observed == intent.sha256
        if applied and finish is not None:
            finish()
        if not applied and undo is not None:
            undo()
    except SecureStoreError:
        if recovered:
            raise
        return None  # stays dangling; the next open reconciles it
    if recovered:
        result = "recovered-committed" if applied else "recovered-not-applied"
    else:
        result = "committed" if applied else "failed"
    try:
        log.append({"kind": "outcome", "txn": intent.seq, "result": result,
                    "sha256": intent.sha256 if applied else observed}, durable=True)
    except SecureStoreError:
        if recovered:
            raise
        return None
    return result


def reconcile(
    log: AuditSink,
    observers: Observers,
    cleanup: Callable[[], list[dict[str, Any]]],
    *,
    torn_files: Callable[[], list[dict[str, Any]]] | None = None,
    sweep_if: Callable[[bool], bool] | None = None,
) -> list[str]:
    """Repair what a crash left behind in one log's scope. Caller holds the writer lock.
    `sweep_if(crash_evidence)` decides whether leftovers are looked for at all (a store-wide
    directory listing is O(sessions): not something to do on every write)."""
    events: list[str] = []
    log.load()
    evidence = bool(log.torn) or log.open_intent is not None
    if log.torn:
        fragment = log.drop_torn_tail()
        log.load()
        log.append(
            {"kind": "recovery", "event": "torn-tail", "target": log.target,
             "size": len(fragment), "sha256": sha256_hex(fragment)},
            durable=True,
        )
        events.append(f"torn tail of {log.label} ({len(fragment)} bytes) discarded")
    for fields in torn_files() if torn_files else []:
        log.append(fields, durable=True)
        events.append(f"torn tail of {fields['target']} ({fields['size']} bytes) discarded")
    pending = log.open_intent  # recovery records above may now follow it
    if pending is not None:
        intent = pending
        observer = observers.for_op(intent.op)
        finish, undo = observer.finish, observer.undo
        result = settle(log, intent, lambda: observer.observe(intent), recovered=True,
                        finish=(lambda: finish(intent)) if finish is not None else None,
                        undo=(lambda: undo(intent)) if undo is not None else None)
        events.append(f"dangling intent seq {intent.seq} ({intent.op} {intent.target}): {result}")
    if sweep_if is None or sweep_if(evidence):
        for fields in cleanup():
            log.append(fields, durable=True)
            events.append(f"leftover {fields['target']} removed")
    return events
