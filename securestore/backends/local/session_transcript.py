"""A writer's view of its session's transcript: the active segment's counters (read when first
needed, bounded by the seal policy), a turn's staged ops, and the seal.

Nothing here holds the transcript in memory: a tail is read from the segments (O(limit)), and
a turn's staged ops are an overlay on top (items hidden at the end, items added).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ... import txn
from ...audit.chain import TargetState
from ...core.canonical import sha256_hex
from ...config import Limits
from ...core.journal import Op, parse_journal
from ...core.records import SegmentRef, TranscriptHead, encode_model
from ...core.transcript import lines_digest
from ...errors import IntegrityError, LimitExceededError
from ..tree import Expected, TreeDir, holds_last_line, read_tail_until
from .auditlog import AuditLog
from .env import LocalEnv, observe_file
from .layout import SNAPSHOT_FILE, active_segment
from .session_files import split_lines
from .transcript_files import ActiveJournal, Head, empty_head, read_active, read_head, tail_items


@dataclass
class Staged:
    """A turn's transcript ops, not yet committed: `cut` committed items hidden, `added` after."""

    cut: int = 0
    added: list[Any] = field(default_factory=list)


Repair = Callable[[dict[str, Any]], None]  # records a recovery event in the session's log


class SessionTranscript:
    def __init__(self, env: LocalEnv, directory: TreeDir, what: str, repaired: Repair) -> None:
        self.env, self.dir, self.what, self._repaired = env, directory, what, repaired
        self._head: Head | None = None
        self._active: ActiveJournal | None = None
        self._staged = Staged()

    # -- reading ---------------------------------------------------------------------------------
    def head(self) -> Head:
        if self._head is None:
            self._head = read_head(self.dir, self.env.limits, self.what)
        return self._head

    def active(self) -> ActiveJournal:
        if self._active is None:
            active = read_active(self.dir, self.env.limits, self.what, self.head())
            if active.torn_bytes:  # no crash leaves one without a dangling intent; cut it all the same
                record = cut_torn_tail(self.dir, active.head.active, self.env.limits, journal=True)
                if record is not None:
                    self._repaired(record)
                active = read_active(self.dir, self.env.limits, self.what, self.head())
                if active.torn_bytes:
                    raise IntegrityError(f"{self.what}: a torn record survived recovery")
            self._active = active
        return self._active

    def expect_reads(self) -> None:
        """Its head, if a write will read it first (TreeDir.expect_reads). (Not the active
        segment: which one it is, the head says, and a guess could fetch a whole sealed one.)"""
        if self._head is None:
            self.dir.expect_reads([Expected("read", SNAPSHOT_FILE, self.env.limits.max_snapshot_bytes)])

    def start_empty(self) -> None:
        """Known empty without reading it: a session just created (an empty journal, no head)."""
        head = self._head = empty_head()
        self._active = ActiveJournal(head, head.seq, head.model.count)

    def is_loaded(self) -> bool:
        return self._active is not None

    def count(self) -> int:
        return self.active().count - self._staged.cut + len(self._staged.added)

    def tail(self, limit: int | None) -> list[Any]:
        """The latest `limit` items (None: all), oldest first, with a turn's staged ops applied."""
        added, cut = self._staged.added, self._staged.cut
        if limit is not None and limit <= len(added):
            return added[len(added) - limit:]
        older = None if limit is None else limit - len(added)
        committed = self.active().count
        if cut >= committed or older == 0:
            return list(added)
        return tail_items(self.dir, self.env.limits, self.what, self.head(), older, cut) + added

    # -- a turn's overlay ------------------------------------------------------------------------
    def stage(self, ops: list[Op]) -> None:
        staged, committed = self._staged, self.active().count
        for op in ops:
            kind = op["op"]
            if kind == "append":
                staged.added.extend(op["items"])
            elif kind == "pop":
                if staged.added:
                    staged.added.pop()
                elif staged.cut < committed:
                    staged.cut += 1
            elif kind == "clear":
                staged.cut, staged.added = committed, []

    def discard_staged(self) -> None:
        self._staged = Staged()

    def committed(self, line: bytes, seq: int, ops: list[Op]) -> None:
        """A record was appended to the active segment (its ops are no longer staged)."""
        self.active().committed(sha256_hex(line), len(line), seq, ops)
        self._staged = Staged()

    def forget(self) -> None:
        """Read everything again when next needed (a commit's outcome is unknown)."""
        self._head = self._active = None
        self._staged = Staged()

    # -- the seal --------------------------------------------------------------------------------
    def seal_due(self) -> bool:
        active, config = self._active, self.env.config
        if active is None or not active.records:
            return False
        return bool(active.cleared
                    or (config.snapshot_every_records and active.records >= config.snapshot_every_records)
                    or (config.snapshot_every_bytes and active.bytes >= config.snapshot_every_bytes))

    def seal(self, log: AuditLog) -> None:
        """Make the active segment immutable and start the next: the head is rewritten (its size
        grows with the number of segments, never with items), no item is copied. After a clear,
        what the clear hid is dropped: older segments, and this one too if nothing follows."""
        active = self.active()
        if not active.records or active.first is None:
            return
        head = active.head
        sealed = SegmentRef(file=head.active, first=active.first, last=active.seq, size=active.bytes,
                            digest=lines_digest(active.line_hashes))
        segments, base = [*head.model.segments, sealed], head.model.base
        if active.count == 0:
            segments, base = [], []
        elif active.cleared:
            segments, base = [sealed], []
        new_head = TranscriptHead(v=2, seq=active.seq, count=active.count, segments=segments, base=base)
        data = encode_model(new_head)
        limits = self.env.limits
        if len(data) > limits.max_snapshot_bytes:
            raise LimitExceededError(f"transcript head of {len(data)} bytes exceeds {limits.max_snapshot_bytes}")
        kept = {segment.file for segment in segments}
        dead = [segment.file for segment in [*head.model.segments, sealed] if segment.file not in kept]
        following = active_segment(active.seq)
        existing = self.dir.size_of(following)  # checked before the intent: a refusal leaves nothing open
        if existing is not None and existing[1]:
            raise IntegrityError(f"{self.what}: journal segment {following} exists and is not empty")

        def act() -> None:
            self.dir.ensure_file(following)  # its entry is made durable by the head's directory sync
            self.dir.write_atomic(SNAPSHOT_FILE, data)
            drop_segments(self.dir, dead)

        txn.apply(log, txn.Change(
            "journal.seal", SNAPSHOT_FILE, sha256_hex(data), len(data), act,
            lambda: observe_file(self.dir, SNAPSHOT_FILE, limits.max_snapshot_bytes),
            (TargetState(target=sealed.file, sha256=sealed.digest, size=sealed.size),
             *(TargetState(target=file) for file in dead)),
        ))
        self._head = Head(new_head, following)
        self._active = ActiveJournal(self._head, active.seq, active.count)


def drop_segments(directory: TreeDir, files: list[str]) -> None:
    """Remove segments a seal dropped, durably (the trail records them gone)."""
    removed = False
    for file in files:
        if directory.entry(file) is not None:
            directory.unlink(file, durable=False)
            removed = True
    if removed:
        directory.sync()


def cut_torn_tail(directory: TreeDir, name: str, limits: Limits, *, journal: bool) -> dict[str, Any] | None:
    """Cut a partial last line (or, in a journal, a complete final record with a bad
    checksum: torn all the same); the recovery record saying so, or None if it was whole."""
    size, tail = read_tail_until(directory, name, limits.max_record_bytes + 2, holds_last_line)
    lines, fragment = split_lines(tail)
    cut = len(fragment)
    if not fragment and lines and journal and (len(lines) > 1 or len(tail) == size):
        if parse_journal(lines[-1], after_seq=None).torn_bytes:
            cut = len(lines[-1])
    if not cut:
        return None
    directory.truncate(name, size - cut)
    return {"kind": "recovery", "event": "torn-tail", "target": name, "size": cut,
            "sha256": sha256_hex(tail[len(tail) - cut:])}
