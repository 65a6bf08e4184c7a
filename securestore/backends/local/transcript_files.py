"""Reading a session's transcript (nothing here writes; see core/transcript.py for the model).

`snapshot.json` is the head: the sealed segments, oldest first (layout 1: a snapshot, read as
the head's base). A tail read walks records backward from the end of the active segment and on
through the sealed ones, so it reads O(limit) records; a whole read replays every segment. Every
record's checksum and seq are checked as it is read: damage is an IntegrityError, never skipped.
"""

from __future__ import annotations

from contextlib import closing

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...config import Limits
from ...core.journal import JournalRecord, apply_to_items, decode_record, parse_journal
from ...core.records import Snapshot, TranscriptHead, decode_model
from ...core.transcript import TailWalk, count_after, empties_transcript, segment_name
from ...errors import IntegrityError, NotFoundError
from ..tree import TreeDir
from .layout import JOURNAL_FILE, SNAPSHOT_FILE, active_segment

T = TypeVar("T")


@dataclass(frozen=True)
class Head:
    """The head as read: the model, and the segment appended to now."""

    model: TranscriptHead
    active: str

    @property
    def seq(self) -> int:
        return self.model.seq


def empty_head() -> Head:
    """The head of a transcript that holds nothing yet (no snapshot file)."""
    return Head(TranscriptHead(v=2, seq=0, count=0, segments=[]), active_segment(None))


def read_head(directory: TreeDir, limits: Limits, what: str) -> Head:
    data = directory.read_optional(SNAPSHOT_FILE, limits.max_snapshot_bytes)
    if data is None:
        return empty_head()
    if data.startswith(b'{"items":'):  # layout 1 (canonical JSON: keys sorted, so `items` leads)
        snapshot: Snapshot = decode_model(Snapshot, data, f"{what}: snapshot")
        legacy = TranscriptHead(v=2, seq=snapshot.seq, count=len(snapshot.items), segments=[], base=snapshot.items)
        return Head(legacy, active_segment(None))
    head: TranscriptHead = decode_model(TranscriptHead, data, f"{what}: transcript head")
    check_head(head, what)
    return Head(head, active_segment(head.seq))


def check_head(head: TranscriptHead, what: str) -> None:
    """Segments in order, each named for its first record (the first may be `journal.log`), and
    contiguous up to the head's seq."""
    expected_last = None
    for index, segment in enumerate(head.segments):
        named = segment.file == segment_name(segment.first) or (index == 0 and segment.file == JOURNAL_FILE)
        if not named or segment.last < segment.first or (expected_last is not None and segment.first != expected_last + 1):
            raise IntegrityError(f"{what}: transcript head lists segment {segment.file} out of order")
        expected_last = segment.last
    if expected_last is not None and expected_last != head.seq:
        raise IntegrityError(f"{what}: transcript head ends at record {expected_last}, not {head.seq}")


@dataclass
class ActiveJournal:
    """The active segment as replayed by a writer: enough to append, count and seal."""

    head: Head
    seq: int  # the last committed record
    count: int  # items as of `seq`
    records: int = 0
    bytes: int = 0  # the valid prefix
    torn_bytes: int = 0
    first: int | None = None  # seq of the first record in the segment
    line_hashes: list[str] = field(default_factory=list)
    cleared: bool = False  # a record in it holds a clear: a seal drops what is older

    def committed(self, line_hash: str, line_size: int, seq: int, ops: list[Any]) -> None:
        self.replayed(seq, ops)
        self.bytes += line_size
        self.line_hashes.append(line_hash)

    def replayed(self, seq: int, ops: list[Any]) -> None:
        if self.first is None:
            self.first = seq
        self.seq, self.count = seq, count_after(self.count, ops)
        self.records += 1
        self.cleared = self.cleared or empties_transcript(ops)


def read_active(directory: TreeDir, limits: Limits, what: str, head: Head) -> ActiveJournal:
    """Replay the active segment's records for the count (a seal bounds its size)."""
    data = directory.read_optional(head.active, limits.max_journal_bytes) or b""
    parsed = parse_journal(data, after_seq=head.seq)
    _raise_damage(parsed.damage, what, head.active)
    active = ActiveJournal(head, head.seq, head.model.count, bytes=parsed.good_bytes, torn_bytes=parsed.torn_bytes,
                           line_hashes=parsed.line_hashes)
    for record in parsed.records:
        active.replayed(record.seq, record.ops)
    return active


def _raise_damage(damage: Any, what: str, file: str) -> None:
    if damage is not None:
        raise IntegrityError(f"{what}: journal record at line {damage.line} of {file} (byte {damage.offset}) "
                             f"is damaged: {damage.reason}")


def _records_backward(directory: TreeDir, limits: Limits, what: str, file: str, first: int, last: int | None,
                      *, sealed: bool) -> Generator[JournalRecord, None, None]:
    """Records of one segment, newest first, down to seq `first`. `last`: the seq its final
    record must carry (a sealed segment), or None (the active one: whatever it ends with; a
    bad final record there is a torn append, left out)."""
    expected = last
    newest = True
    with closing(directory.lines_backward(file, limits.max_journal_bytes, limits.max_record_bytes + 1)) as found:
        for _, line in found:
            decoded = decode_record(line)
            if isinstance(decoded, str):
                if newest and not sealed:
                    newest = False
                    continue  # a torn final append
                raise IntegrityError(f"{what}: a journal record of {file} is damaged: {decoded}")
            newest = False
            if expected is not None and decoded.seq != expected:
                raise IntegrityError(f"{what}: {file} holds record {decoded.seq} where {expected} was expected")
            if decoded.seq < first:
                return  # a layout-1 journal may still hold records its snapshot already has
            yield decoded
            if decoded.seq == first:
                return
            expected = decoded.seq - 1
        if expected is not None:  # the file ended (or an oversized line stopped the read) too early
            raise IntegrityError(f"{what}: {file} ends before record {first}")


def tail_items(directory: TreeDir, limits: Limits, what: str, head: Head, limit: int | None, skip: int = 0) -> list[Any]:
    """The latest `limit` items (None: all), oldest first, hiding `skip` items at the end."""
    if limit is None and not skip:
        return all_items(directory, limits, what, head)
    walk = TailWalk(limit, skip)
    if not walk.done:
        _walk(directory, limits, what, head, walk)
    return walk.items()


def _walk(directory: TreeDir, limits: Limits, what: str, head: Head, walk: TailWalk) -> None:
    # Each walk is closed here when it stops early, not by the garbage collector: it holds a descriptor.
    if directory.entry(head.active) is not None:
        with closing(_records_backward(directory, limits, what, head.active, head.seq + 1, None,
                                       sealed=False)) as records:
            if any(walk.feed(record.ops) for record in records):
                return
    for segment in reversed(head.model.segments):
        with closing(_records_backward(directory, limits, what, segment.file, segment.first, segment.last,
                                       sealed=True)) as records:
            if any(walk.feed(record.ops) for record in records):
                return
    walk.take(head.model.base)


def all_items(directory: TreeDir, limits: Limits, what: str, head: Head) -> list[Any]:
    """Every item: the base, then every segment replayed forward."""
    items = list(head.model.base)
    for segment in head.model.segments:
        data = directory.read(segment.file, limits.max_journal_bytes)
        parsed = parse_journal(data, after_seq=segment.first - 1)
        _raise_damage(parsed.damage, what, segment.file)
        if parsed.torn_bytes or not parsed.records or parsed.records[-1].seq != segment.last:
            raise IntegrityError(f"{what}: {segment.file} does not hold records {segment.first} to {segment.last}")
        for record in parsed.records:
            apply_to_items(items, record.ops)
    data = directory.read_optional(head.active, limits.max_journal_bytes) or b""
    parsed = parse_journal(data, after_seq=head.seq)
    _raise_damage(parsed.damage, what, head.active)
    for record in parsed.records:
        apply_to_items(items, record.ops)
    return items


def without_a_writer(directory: TreeDir, limits: Limits, what: str, read: Callable[[Head], T]) -> T:
    """A lock-free read: a seal between reading the head and the segments it names can delete
    a segment (after a clear) or leave a stale head; read again from a fresh head."""
    for attempt in range(3):
        head = read_head(directory, limits, what)
        try:
            return read(head)
        except (NotFoundError, IntegrityError):
            if attempt == 2 or read_head(directory, limits, what) == head:
                raise  # nothing moved: the damage is real
    raise AssertionError("unreachable")  # pragma: no cover
