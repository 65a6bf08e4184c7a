"""Compacting the listing index's update log: one line per write becomes one line per session.

`index/updates.log` gains a line on every committed write, and a listing page reads it backwards
past every older line of a session it has already listed: a session written 5,000 times makes
the first page read 5,000 lines. Once the log exceeds the floor (`Limits.index_compact_bytes`)
and twice its size after the previous compaction, the writer that noticed rewrites it with only
each session's newest line, in the same order (so every page lists the same sessions, in the
same order), and without the sessions whose newest line is a tombstone.

It runs under the index lock taken exclusively without waiting: while another writer appends
(shared), it is skipped and a later write compacts. The new log replaces the old one durably
(temp file fsynced, rename, directory fsynced): the log is derived data, but a power cut must
not leave an empty one, which would hide every session until `index rebuild`. The replacement
changes the log's inode, so readers mid-page read again and outstanding cursors expire.
`index/updates.compacted` records "<inode> <size>" of the log as compacted (derived, not synced).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core.listing import parse_index_line
from ...errors import LockHeldError, NotFoundError, SecureStoreError
from ...fs import Dir, iter_lines, lock_plain, rewrite_in_place, size_of

UPDATES_LOG = "updates.log"
COMPACTED_FILE = "updates.compacted"
INDEX_LOCK = "lock"
MAX_INDEX_LINE = 4096
_GROWTH = 2  # compact when the log is this many times its compacted size


@dataclass(frozen=True)
class CompactionPolicy:
    floor: int  # never compact a log smaller than this many bytes
    max_bytes: int  # a log larger than this is left to `index rebuild`


def compact_if_due(index: Dir, policy: CompactionPolicy) -> bool:
    """Compact the update log if it has grown enough and no writer is appending; True if done."""
    if not _due(index, policy):
        return False
    try:
        held = lock_plain(index, INDEX_LOCK, exclusive=True, timeout=0.0)
    except LockHeldError:
        return False  # writers are appending: a later write compacts
    with held:
        if not _due(index, policy):  # another writer compacted it meanwhile
            return False
        compact(index)
    return True


def _due(index: Dir, policy: CompactionPolicy) -> bool:
    stamp = size_of(index, UPDATES_LOG)
    if stamp is None or stamp[1] <= policy.floor or stamp[1] > policy.max_bytes:
        return False
    return stamp[1] > _GROWTH * _compacted_size(index, stamp[0])


def _compacted_size(index: Dir, inode: int) -> int:
    """The log's size after its last compaction, if that was this very file (else 0)."""
    try:
        data = index.read_optional(COMPACTED_FILE, 64)
    except SecureStoreError:
        return 0
    parts = data.split() if data is not None else []
    if len(parts) != 2 or not all(part.isdigit() for part in parts) or int(parts[0]) != inode:
        return 0
    return int(parts[1])


def compacted_lines(index: Dir) -> bytes:
    """Each session's newest line, in the order of those lines; a session whose newest line is
    a tombstone is left out, and so are damaged lines and a torn final fragment."""
    newest: dict[str, bytes] = {}
    try:
        for _, line in iter_lines(index, UPDATES_LOG, MAX_INDEX_LINE):
            if not line.endswith(b"\n"):  # a torn final line, or a piece of an oversized one
                continue
            parsed = parse_index_line(line[:-1])
            if parsed is None:
                continue
            name = parsed["n"]
            newest.pop(name, None)  # re-inserted last: dicts keep insertion order
            newest[name] = b"" if parsed.get("d") else line
    except NotFoundError:
        return b""
    return b"".join(newest.values())


def compact(index: Dir) -> None:
    """Rewrite the update log as `compacted_lines` (the caller holds the index lock exclusively)."""
    data = compacted_lines(index)
    index.write_atomic(UPDATES_LOG, data)
    stamp = size_of(index, UPDATES_LOG)
    if stamp is not None:
        rewrite_in_place(index, COMPACTED_FILE, f"{stamp[0]} {stamp[1]}\n".encode())
