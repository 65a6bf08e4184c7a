"""The transcript as a chain of journal segments (pure): counting, tail walks and digests.

A session's transcript is never rewritten. Its journal records (see journal.py) live in
segments: the head names the sealed ones, oldest first, and the active one the writer appends
to. A seal makes the active segment immutable and starts the next; no item is copied. So a
turn costs one record whatever the transcript's length, the latest N items are found by
walking records backward (O(N) unless pops or a clear hide items), and the count is the head's
plus the active segment's records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .journal import Op

SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".log"


def segment_name(first_seq: int) -> str:
    """The file of the segment whose first record is `first_seq` (zero-padded: names sort by seq)."""
    return f"{SEGMENT_PREFIX}{first_seq:012d}{SEGMENT_SUFFIX}"


def count_after(count: int, ops: Iterable[Op]) -> int:
    """The item count once `ops` are applied."""
    for op in ops:
        kind = op["op"]
        if kind == "append":
            count += len(op["items"])
        elif kind == "pop":
            count = max(0, count - 1)
        elif kind == "clear":
            count = 0
    return count


def empties_transcript(ops: Iterable[Op]) -> bool:
    """The record holds a clear: everything before it is dead (a seal may drop it)."""
    return any(op["op"] == "clear" for op in ops)


def lines_digest(line_hashes: Iterable[str]) -> str:
    """A sealed segment's digest: SHA-256 over its lines' SHA-256 hex digests, in order. The
    audit trail holds each line's hash, so a verifier can recompute a seal's digest from the
    trail alone and catch a segment altered before it was sealed."""
    total = hashlib.sha256()
    for line_hash in line_hashes:
        total.update(line_hash.encode())
    return total.hexdigest()


@dataclass
class TailWalk:
    """The latest `limit` items, from records fed newest first (None: every item). `skip`
    items at the end are hidden first (popped ones, or a turn's staged pops)."""

    limit: int | None
    skip: int = 0
    found: list[Any] = field(default_factory=list)  # newest first
    done: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            self.done = True

    def feed(self, ops: list[Op]) -> bool:
        """One record's ops; True once the walk needs no older record."""
        for op in reversed(ops):
            if self.done:
                break
            kind = op["op"]
            if kind == "append":
                self.take(op["items"])
            elif kind == "pop":
                self.skip += 1
            elif kind == "clear":
                self.done = True  # nothing older is visible
        return self.done

    def take(self, items: list[Any]) -> bool:
        """Items in order (oldest first), the newest of them read first; True once done."""
        for item in reversed(items):
            if self.done:
                break
            if self.skip:
                self.skip -= 1
                continue
            self.found.append(item)
            if self.limit is not None and len(self.found) >= self.limit:
                self.done = True
        return self.done

    def items(self) -> list[Any]:
        """What the walk found, oldest first."""
        return self.found[::-1]
