"""Compacting the listing index's logs: one line per write becomes one line per live session.

`index/updates.log` gains a line on every committed write, and a listing page reads it backwards
past every older line of a session it has already listed: a session written 5,000 times makes
the first page read 5,000 lines. Compaction rewrites it with only each session's newest line,
in the same order (so every page lists the same sessions, in the same order), leaving out the
sessions whose newest line is a tombstone, and rewrites `index/created.log` without the lines of
sessions no longer live. It runs
  - when due: the writer that finds the update log past the floor (`Limits.index_compact_bytes`)
    and twice its size after the previous compaction, under the index lock taken exclusively
    WITHOUT waiting (while another writer appends, it is skipped and a later write compacts);
  - and after a delete, `scrub_deleted` filters the deleted session's lines (its key, title and
    workspace) out of both logs at once, waiting for the lock like any writer.
Each log is replaced durably (temp file fsynced, rename, directory fsynced): derived data, but a
power cut must not leave an empty log, which would hide every session until `index rebuild`. A
replaced log has a new inode, so readers mid-page read again and cursors expire (a cursor also
carries a hash of the lines it stands on: a log that reuses the inode is still caught).
`index/updates.compacted` records "<inode> <size>" of the update log as compacted (derived, not
synced). Logs over `_MAX_COMPACTED` are left to `index rebuild`: compaction holds what it keeps
in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ...core.listing import creation_line, is_tombstone_of, parse_index_line
from ...errors import LockHeldError, NotFoundError, SecureStoreError
from ..tree import TreeDir

UPDATES_LOG = "updates.log"
CREATED_LOG = "created.log"
COMPACTED_FILE = "updates.compacted"
INDEX_LOCK = "lock"
MAX_INDEX_LINE = 4096
_GROWTH = 2  # compact when the log is this many times its compacted size
_MAX_COMPACTED = 64 * 1024 * 1024


@dataclass
class CompactionPolicy:
    floor: int  # never compact an update log smaller than this many bytes when merely due
    max_bytes: int  # the index cap: a log larger than this is left to `index rebuild`
    # The update log's compacted size as this handle last read it (or wrote it): until the log
    # this handle appends to is past twice that, compaction is not due, and no write reads it.
    # Read by another process's compaction, the log is smaller, and it holds all the more.
    compacted: int | None = field(default=None, compare=False)
    # (identity, size) of the update log after this handle's last append: an append that finds
    # another file, or a smaller one, means another handle replaced it (compaction, a delete's
    # scrub, a rebuild), and then what `compacted` says is stale (too large: it would put
    # compaction off, past the cap for good).
    appended: tuple[int, int] | None = field(default=None, compare=False)


def compact_if_due(index: TreeDir, policy: CompactionPolicy) -> bool:
    """Compact if the update log has grown enough and no writer is appending; True if done.
    Known past twice its compacted size, it is only checked again under the lock (under load,
    a write that finds the lock busy costs one try, not the reads as well)."""
    stamp = index.appended_stamp(UPDATES_LOG)
    if stamp is not None:
        last = policy.appended
        if last is not None and (stamp[0] != last[0] or stamp[1] < last[1]):
            policy.compacted = None  # replaced by another handle: read its record again
        policy.appended = stamp
    known_due = policy.compacted is not None and stamp is not None and stamp[1] > max(
        policy.floor, _GROWTH * policy.compacted)
    if not known_due and not _due(index, policy):
        return False
    try:
        held = index.lock_plain(INDEX_LOCK, exclusive=True, timeout=0.0)
    except LockHeldError:
        return False  # writers are appending: a later write compacts
    with held:
        if not _due(index, policy):  # another writer compacted it meanwhile
            return False
        policy.appended = compact(index)  # (its own compaction is no news to this handle)
        policy.compacted = None if policy.appended is None else policy.appended[1]
    return True


def scrub_deleted(index: TreeDir, name: str, policy: CompactionPolicy, timeout: float,
                  created_ms: int | None = None) -> bool:
    """Remove the deleted session `name`'s lines from both logs now, waiting for the lock up to
    `timeout`; True if done. In the update log, every line of the name up to its last
    tombstone: a line after it is a session re-created under the same key since. In the created
    log, its creation line (`created_ms`; unknown: every line of the name). A byte filter, not a
    parse: `"n":"<name>"` with bare quotes only occurs as a line's own name field (a quote
    inside a JSON string is escaped)."""
    needle = b'"n":"' + name.encode() + b'"'
    try:
        held = index.lock_plain(INDEX_LOCK, exclusive=True, timeout=timeout)
    except LockHeldError:
        return False  # the next compaction, or `index rebuild`, removes them
    with held:
        for log in (UPDATES_LOG, CREATED_LOG):
            stamp = index.size_of(log)
            if stamp is None or stamp[1] > min(policy.max_bytes, _MAX_COMPACTED):
                continue
            data = index.read(log, stamp[1])
            lines = data.split(b"\n")
            lines.pop()  # empty, or a torn final line: dropped either way
            if log == UPDATES_LOG:
                ends = [at for at, line in enumerate(lines) if is_tombstone_of(line, name)]
                kept = [line for at, line in enumerate(lines) if not ends or at > ends[-1] or needle not in line]
            elif created_ms is not None:
                mine = creation_line(name, created_ms)[:-1]
                kept = [line for line in lines if line != mine]
            else:
                kept = [line for line in lines if needle not in line]
            if len(kept) != len(lines) or data[-1:] not in (b"", b"\n"):
                index.write_atomic(log, b"".join(line + b"\n" for line in kept))
    return True


def _due(index: TreeDir, policy: CompactionPolicy) -> bool:
    appended = index.appended_stamp(UPDATES_LOG)  # what the note's own append learned: no read
    if appended is not None and appended[1] <= max(policy.floor, _GROWTH * (policy.compacted or 0)):
        return False
    stamp = index.size_of(UPDATES_LOG)
    if stamp is None or stamp[1] <= policy.floor or stamp[1] > min(policy.max_bytes, _MAX_COMPACTED):
        return False
    compacted = policy.compacted = _compacted_size(index, stamp)
    return compacted is not None and stamp[1] > _GROWTH * compacted


def _compacted_size(index: TreeDir, log: tuple[int, int]) -> int | None:
    """The update log's size after its last compaction if that was this very file (`log`: its
    identity and size now), 0 if not known (never compacted, replaced since, or a damaged or
    impossible record: compaction rewrites it), None when something that is not a file sits
    in its place (compaction could never record it)."""
    entry = index.entry(COMPACTED_FILE)
    if entry is None:
        return 0
    if entry.kind != "file":
        return None
    try:
        data = index.read_optional(COMPACTED_FILE, 64)
    except SecureStoreError:
        return 0
    parts = data.split() if data is not None else []
    if len(parts) != 2 or not all(part.isdigit() for part in parts) or int(parts[0]) != log[0]:
        return 0
    # The log only grows after its compaction: a larger size was never recorded by one, and
    # believed, it would put compaction off for good.
    return int(parts[1]) if int(parts[1]) <= log[1] else 0


def _lines(index: TreeDir, log: str) -> Iterator[tuple[str, bytes, bool]]:
    """(name, line, is a tombstone) for each valid complete line, streamed; damaged lines,
    pieces of an oversized line and a torn final line are left out."""
    try:
        for _, line in index.iter_lines(log, MAX_INDEX_LINE):
            if not line.endswith(b"\n"):
                continue
            parsed = parse_index_line(line[:-1])
            if parsed is not None:
                yield parsed["n"], line, bool(parsed.get("d"))
    except NotFoundError:
        return


def compacted_logs(index: TreeDir) -> tuple[bytes, bytes]:
    """(update log, created log) as compaction writes them."""
    newest: dict[str, bytes] = {}
    for name, line, tombstone in _lines(index, UPDATES_LOG):
        newest.pop(name, None)  # re-inserted last: dicts keep insertion order
        newest[name] = b"" if tombstone else line
    live = {name for name, line in newest.items() if line}
    created = b"".join(line for name, line, _ in _lines(index, CREATED_LOG) if name in live)
    return b"".join(newest.values()), created


def compact(index: TreeDir) -> tuple[int, int] | None:
    """Rewrite both logs as `compacted_logs` (the caller holds the index lock exclusively);
    the update log's (identity, size) now."""
    updates, created = compacted_logs(index)
    index.write_atomic(UPDATES_LOG, updates)
    if index.entry(CREATED_LOG) is not None:
        index.write_atomic(CREATED_LOG, created)
    return record_compacted(index)


def record_compacted(index: TreeDir) -> tuple[int, int] | None:
    """Record the update log as it is now as compacted (derived, not synced); its (identity,
    size)."""
    stamp = index.size_of(UPDATES_LOG)
    try:
        if stamp is not None:
            index.write_atomic(COMPACTED_FILE, f"{stamp[0]} {stamp[1]}\n".encode(), durable=False)
    except SecureStoreError:
        pass  # derived, and only a hint: the next due check reads it as unknown
    return stamp
