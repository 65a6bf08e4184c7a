"""The listing index: pages of session summaries, newest first, without reading every session.

    index/updates.log          a line per committed write {"n": name, "u": updated_ms, "d": 0|1,
                               "s": the session's summary, when the line stays under 1 KiB};
                               the newest line for a name wins. Read backwards, the first page
                               costs O(page), whatever the number of sessions (compacted by
                               index_compact.py, so a hot session's older lines stay few).
    index/created.log          a line per created session {"n": name, "c": created_ms}
    index/entries/<name>.json  each session's latest summary
    index/lock                 shared by writers appending, exclusive for a rebuild

Version stamp: (inode, size) of updates.log. It moves on every write, in every process, so a
cache keyed on it stays coherent across processes.

The index is derived data: every line and entry restates what the session's audited files
say, readers validate each entry they return (its name must re-encode from its key), and
`rebuild` recomputes it all from the session directories (itself an audited store change).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import closing, nullcontext
from functools import partial

import orjson
from pydantic import ValidationError

from ... import txn
from ...audit.chain import TargetState
from ...core.canonical import sha256_hex
from ...core.listing import (
    Order,
    Page,
    SessionSummary,
    Skipped,
    created_line,
    belongs,
    cursor_text,
    entry_bytes,
    parse_cursor,
    parse_index_line,
    read_index_line,
    summary_line,
    tombstone_line,
)
from ...errors import NotFoundError, SecureStoreError, UsageError
from ...fs import FsContext
from ..tree import TreeDir
from .auditlog import AuditLog
from .index_compact import (
    COMPACTED_FILE,
    CREATED_LOG,
    INDEX_LOCK,
    MAX_INDEX_LINE,
    UPDATES_LOG,
    CompactionPolicy,
    compact_if_due,
    record_compacted,
    scrub_deleted,
)
from .layout import STAGING_PREFIX, TRASH_PREFIX

INDEX_DIR = "index"
_EXPIRED = "the cursor has expired (the index was rebuilt or compacted); list again from the start"
ENTRIES_DIR = "entries"
_ENTRY_READS = 3


class IndexReader:
    def __init__(self, index: TreeDir, *, max_index_bytes: int) -> None:
        self.index = index
        self.max_index_bytes = max_index_bytes

    def stamp(self) -> tuple[int, int] | None:
        return self.index.size_of(UPDATES_LOG)

    def _entry(self, entries: TreeDir, name: str, skipped: list[Skipped]) -> SessionSummary | None:
        for _ in range(_ENTRY_READS):  # entries are rewritten in place: a read may race a writer
            data = entries.read_optional(f"{name}.json", 64 * 1024)
            if data is None:
                return None
            try:
                summary = SessionSummary.model_validate(orjson.loads(data))
                break
            except (orjson.JSONDecodeError, ValidationError):
                continue
        else:
            skipped.append(Skipped(name, "damaged index entry"))
            return None
        if not belongs(summary, name):
            skipped.append(Skipped(name, "index entry does not encode its key (foreign or planted)"))
            return None
        return summary

    def page(self, *, order: Order, page_size: int, cursor: str | None, workspace: str | None) -> Page:
        if page_size < 1:
            raise UsageError("page size must be at least 1")
        log = UPDATES_LOG if order == "updated" else CREATED_LOG
        for _ in range(3):  # a writer moving the stamp mid-read means: read again
            before = self.stamp()
            page = self._read(log, order, page_size, cursor, workspace, before)
            if self.stamp() == before:
                return page
        page.stable = False
        return page

    def _read(self, log: str, order: str, page_size: int, cursor: str | None, workspace: str | None,
              stamp: tuple[int, int] | None) -> Page:
        size = self.index.size_of(log)
        if size is None or stamp is None:
            return Page([], None, stamp)
        inode, end = size
        if end > self.max_index_bytes:
            raise UsageError(f"the index ({end} bytes) exceeds {self.max_index_bytes}; run `securestore index rebuild`")
        seen: set[str] = set()
        position = end
        # The lines a cursor stands on, hashed as read (newest first): a log replaced by one
        # that reuses its inode number no longer matches.
        walked = hashlib.sha256()
        if cursor is not None:
            state = parse_cursor(cursor)
            if (state["o"], state["w"]) != (order, workspace):
                raise UsageError("the cursor belongs to another listing (order or workspace differ)")
            if state["i"] != inode or state["e"] > end:
                raise UsageError(_EXPIRED)
            end, position = state["e"], state["p"]
            with closing(self.index.lines_backward(log, end, MAX_INDEX_LINE)) as lines:
                for offset, line in lines:
                    if offset < position:
                        break
                    walked.update(line + b"\n")
                    listed = read_index_line(line)
                    if listed is not None:
                        seen.add(listed.name)
            if walked.hexdigest()[:16] != state["h"]:
                raise UsageError(_EXPIRED)
        sessions: list[SessionSummary] = []
        skipped: list[Skipped] = []
        if self.index.entry(ENTRIES_DIR) is None:
            return Page([], None, stamp, [Skipped(ENTRIES_DIR, "the index is incomplete; run `securestore index rebuild`")])
        with self.index.open_dir(ENTRIES_DIR) as entries, \
                closing(self.index.lines_backward(log, position, MAX_INDEX_LINE)) as lines:
            for offset, line in lines:
                walked.update(line + b"\n")
                listed = read_index_line(line)
                if listed is None:
                    skipped.append(Skipped(f"{log}@{offset}", "damaged index line"))
                    continue
                name = listed.name
                if name in seen:
                    continue
                seen.add(name)
                if listed.deleted:
                    continue
                if order == "updated" and listed.foreign:
                    skipped.append(Skipped(name, "index line does not encode its key (foreign or planted)"))
                    continue
                summary = listed.summary if order == "updated" else None
                if summary is None:
                    summary = self._entry(entries, name, skipped)
                if summary is None or (workspace is not None and summary.workspace != workspace):
                    continue
                sessions.append(summary)
                if len(sessions) == page_size:
                    next_cursor = cursor_text(order, end, offset, inode, workspace, walked.hexdigest()[:16])
                    return Page(sessions, next_cursor, stamp, skipped)
        return Page(sessions, None, stamp, skipped)


def disagreements(index: TreeDir, live: set[str], *, ignore: set[str], max_index_bytes: int) -> list[str]:
    """Where the index disagrees with the set of live sessions (from the audit trail): live
    sessions a listing would not show, and listed sessions that are not live. O(index)."""
    newest: dict[str, bool] = {}  # name -> listed (False: its newest line is a tombstone)
    newest_ms: dict[str, object] = {}  # name -> the time its newest line gives
    created: set[str] = set()
    for log, into in ((UPDATES_LOG, newest), (CREATED_LOG, None)):
        size = index.size_of(log)
        if size is None:
            return [f"{INDEX_DIR}/{log}: missing; run `securestore index rebuild`"]
        if size[1] > max_index_bytes:
            return [f"{INDEX_DIR}/{log}: larger than {max_index_bytes} bytes; run `securestore index rebuild`"]
        for _, line in index.iter_lines(log, MAX_INDEX_LINE):
            parsed = parse_index_line(line.rstrip(b"\n"))
            if parsed is None:
                continue
            if into is None:
                created.add(parsed["n"])
            else:
                into[parsed["n"]] = not parsed.get("d")
                newest_ms[parsed["n"]] = parsed.get("u")
    findings: list[str] = []
    record = index.entry(COMPACTED_FILE)
    if record is not None and record.kind != "file":
        findings.append(f"{COMPACTED_FILE} is not a file, so the update log is never compacted")
    entries = index.open_dir(ENTRIES_DIR) if index.entry(ENTRIES_DIR) is not None else None
    try:
        for name in sorted(live):
            if not newest.get(name, False):
                why = "a tombstone" if name in newest else "no line in updates.log"
                findings.append(f"session {name} is live but hidden from listings by {why}")
            elif entries is None or (entry := _listed(entries, name)) is None:
                findings.append(f"session {name} is live but its index entry is missing or damaged")
            elif entry.updated_ms != newest_ms.get(name):  # a write's line or entry lost in a crash
                findings.append(f"session {name} is listed as of another write than its index entry says")
            elif name not in created:
                findings.append(f"session {name} is live but missing from the created-order listing")
        for name, listed in sorted(newest.items()):
            if listed and name not in live and name not in ignore:
                findings.append(f"the index lists session {name}, which the trail says does not exist")
    finally:
        if entries is not None:
            entries.close()
    return [f"{INDEX_DIR}: {finding}; run `securestore index rebuild`" for finding in findings]


def _listed(entries: TreeDir, name: str) -> SessionSummary | None:
    """The entry of session `name`, if it is a valid entry for that very session."""
    try:
        data = entries.read_optional(f"{name}.json", 64 * 1024)
        if data is None:
            return None
        summary = SessionSummary.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError, SecureStoreError):
        return None
    return summary if belongs(summary, name) else None


class NotListed(Exception):
    """`note(keep_listed_items=True)` found no valid entry to take the item count from."""


def expect_note(root: TreeDir) -> None:
    """A `note` follows in the open group: its lock may be tried ahead (TreeDir.expect_locked)."""
    root.expect_locked(INDEX_DIR, INDEX_LOCK, exclusive=False)


def note(root: TreeDir, summary: SessionSummary | None, *, name: str, created: bool, timeout: float, now_ms: int,
         compaction: CompactionPolicy, late_failure: Callable[[str], None], keep_listed_items: bool = False,
         gone_created_ms: int | None = None) -> None:
    """Record a committed write in the listing index (summary None: the session is gone; when
    the session that left was created, if known: `gone_created_ms`). A session write's entry
    and line follow its commit where the backend can (TreeDir.follow_commit): `late_failure(why)`
    if they failed. Not fsynced and not separately audited: it restates audited state, readers
    validate it, and `rebuild` recomputes it. `keep_listed_items`: the write left the transcript
    as it was, so the listed item count stands (NotListed when there is none to keep). Then
    compacts the update log when it is due (see index_compact.py)."""
    tidy = partial(_tidy, name=name, deleted=summary is None, compaction=compaction, timeout=timeout,
                   created_ms=gone_created_ms)
    # A group: inside a write's group the note commits with the write (one transaction on
    # PostgreSQL), or follows its commit; on its own, it is one.
    with root.group("the listing index"):
        if summary is not None and not created:  # (a create's and a delete's go with their store change)
            if keep_listed_items:
                summary = _keeping_items(root, name, summary)
            # (Not a group: on PostgreSQL each write is then its own transaction, and a failed one
            # leaves the listing stale without latching the handle, which owes nothing to it.)
            write_now = partial(_write, root, summary, name=name, created=False, now_ms=now_ms, timeout=timeout,
                                tidy=tidy, grouped=False)
            index = root.follow_commit(INDEX_DIR, INDEX_LOCK,
                                       replace=(ENTRIES_DIR, f"{name}.json", entry_bytes(summary)),
                                       append=(UPDATES_LOG, summary_line(summary)), again=write_now, failed=late_failure)
            if index is not None:
                index.after_group(lambda: tidy(index))
                return
        _write(root, summary, name=name, created=created, now_ms=now_ms, timeout=timeout, tidy=tidy)


def _keeping_items(root: TreeDir, name: str, summary: SessionSummary) -> SessionSummary:
    """`summary` with the item count its entry lists (read without the lock: derived data)."""
    try:
        with root.open_dir(INDEX_DIR) as index, index.open_dir(ENTRIES_DIR) as entries:
            listed = _listed(entries, name)
    except NotFoundError:
        listed = None
    if listed is None or listed.key != summary.key:
        raise NotListed(name)
    return summary.model_copy(update={"items": listed.items})


def _write(root: TreeDir, summary: SessionSummary | None, *, name: str, created: bool, now_ms: int, timeout: float,
           tidy: Callable[[TreeDir], None], grouped: bool = True) -> None:
    with root.group("the listing index") if grouped else nullcontext():
        index, held = root.open_locked(INDEX_DIR, INDEX_LOCK, exclusive=False, timeout=timeout)
        with index:
            with held, index.open_or_make_dir(ENTRIES_DIR) as entries:
                if summary is None:
                    # The tombstone is durable before the entry goes: the session's older lines carry
                    # its summary, and a lost tombstone would list a deleted session again.
                    _append(index, UPDATES_LOG, tombstone_line(name, now_ms), durable=True)
                    if entries.entry(f"{name}.json") is not None:
                        entries.unlink(f"{name}.json")
                else:
                    entries.rewrite_in_place(f"{name}.json", entry_bytes(summary))  # readers validate it
                    _append(index, UPDATES_LOG, summary_line(summary))
                    if created:
                        _append(index, CREATED_LOG, created_line(summary))
            # Once the shared lock is let go (on disk now; in a group, once it commits): compaction
            # takes it exclusively. (A directory of a group's backend holds nothing open: `index`
            # stays usable after this block.)
            index.after_group(lambda: tidy(index))


def _tidy(index: TreeDir, *, name: str, deleted: bool, compaction: CompactionPolicy, timeout: float,
          created_ms: int | None) -> None:
    if deleted:
        scrub_deleted(index, name, compaction, timeout, created_ms)  # its key, title and workspace go now
    else:
        compact_if_due(index, compaction)


def _discard(index: TreeDir, name: str, ctx: FsContext) -> None:
    """Move `name` out of the way (one rename, whatever it holds), then remove it if it can be:
    what cannot (a planted tree deeper than any the store makes) is a leftover for the sweep,
    never a rebuild that fails every time."""
    aside = TRASH_PREFIX + ctx.random_hex(8)
    index.rename(name, aside)
    try:
        index.remove_tree(aside)
    except SecureStoreError:
        pass


def _append(index: TreeDir, log: str, line: bytes, *, durable: bool = False) -> None:
    index.append(log, line, durable=durable, create=True)  # (created: the first line of a new index)


def rebuild(log: AuditLog, root: TreeDir, summaries: list[SessionSummary], ctx: FsContext, timeout: float) -> None:
    """Rewrite the whole index from summaries read off the session directories (audited)."""
    by_update = sorted(summaries, key=lambda s: (s.updated_ms, s.name))
    updates = b"".join(summary_line(s) for s in by_update)
    created = b"".join(created_line(s) for s in sorted(summaries, key=lambda s: (s.created_ms, s.name)))
    staging = STAGING_PREFIX + ctx.random_hex(8)

    def act() -> None:
        with root.open_or_make_dir(INDEX_DIR) as index, \
                index.lock_plain(INDEX_LOCK, exclusive=True, timeout=timeout):
            with index.make_dir(staging) as fresh:
                for summary in summaries:
                    fresh.write_atomic(f"{summary.name}.json", entry_bytes(summary), durable=False)
                fresh.sync()
            if index.entry(ENTRIES_DIR) is not None:
                _discard(index, ENTRIES_DIR, ctx)
            index.rename(staging, ENTRIES_DIR)
            index.write_atomic(CREATED_LOG, created)
            index.write_atomic(UPDATES_LOG, updates)
            record = index.entry(COMPACTED_FILE)
            if record is not None and record.kind != "file":  # it stopped compaction for good
                _discard(index, COMPACTED_FILE, ctx)

    def record_rebuilt() -> None:  # the rebuilt log is compact: a hint, written once the rebuild has
        try:  # committed (in a group's transaction, a failed write would undo the rebuild with it)
            with root.open_dir(INDEX_DIR) as index:
                record_compacted(index)
        except SecureStoreError:
            pass  # the next due check reads the record as unknown

    txn.apply(log, txn.Change(
        "index.rebuild", f"{INDEX_DIR}/{UPDATES_LOG}", sha256_hex(updates), len(updates), act, lambda: None,
        (TargetState(target=f"{INDEX_DIR}/{CREATED_LOG}", sha256=sha256_hex(created), size=len(created)),),
    ))
    root.after_group(record_rebuilt)
