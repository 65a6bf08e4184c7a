"""The listing index: pages of session summaries, newest first, without reading every session.

    index/updates.log          a line per committed write {"n": name, "u": updated_ms, "d": 0|1};
                               the newest line for a name wins. Read backwards, the first page
                               costs O(page), whatever the number of sessions.
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

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import SecureStoreError, UsageError
from .fs import Dir
from .policy import encode_name, is_session_name

INDEX_DIR = "index"
UPDATES_LOG = "updates.log"
CREATED_LOG = "created.log"
ENTRIES_DIR = "entries"
INDEX_LOCK = "lock"
MAX_INDEX_LINE = 4096
Order = Literal["updated", "created"]


class SessionSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    key: str
    name: str
    title: str | None = None
    workspace: str | None = None
    created_ms: int = Field(ge=0)
    updated_ms: int = Field(ge=0)
    items: int = Field(ge=0)


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class Page:
    sessions: list[SessionSummary]
    next_cursor: str | None
    stamp: tuple[int, int] | None
    skipped: list[Skipped] = field(default_factory=list)
    stable: bool = True  # False: writes kept moving the stamp while this page was read


def summary_line(summary: SessionSummary) -> bytes:
    return orjson.dumps({"d": 0, "n": summary.name, "u": summary.updated_ms}, option=orjson.OPT_SORT_KEYS) + b"\n"


def tombstone_line(name: str, now_ms: int) -> bytes:
    return orjson.dumps({"d": 1, "n": name, "u": now_ms}, option=orjson.OPT_SORT_KEYS) + b"\n"


def created_line(summary: SessionSummary) -> bytes:
    return orjson.dumps({"c": summary.created_ms, "n": summary.name}, option=orjson.OPT_SORT_KEYS) + b"\n"


def entry_bytes(summary: SessionSummary) -> bytes:
    return orjson.dumps(summary.model_dump(), option=orjson.OPT_SORT_KEYS)


def _cursor(order: str, end: int, position: int, inode: int, workspace: str | None) -> str:
    raw = orjson.dumps({"e": end, "i": inode, "o": order, "p": position, "w": workspace})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _parse_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, dict) or set(raw) != {"e", "i", "o", "p", "w"}:
            raise ValueError
        if not all(isinstance(raw[k], int) for k in "eip") or not 0 <= raw["p"] <= raw["e"]:
            raise ValueError
        return raw
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise UsageError("the cursor is not one this store issued") from None


def _line(data: bytes) -> dict[str, Any] | None:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("n"), str) or not is_session_name(raw["n"]):
        return None
    return raw


class IndexReader:
    def __init__(self, index: Dir, *, max_index_bytes: int) -> None:
        self.index = index
        self.max_index_bytes = max_index_bytes

    def stamp(self) -> tuple[int, int] | None:
        return self.index.size_of(UPDATES_LOG)

    def _entry(self, entries: Dir, name: str, skipped: list[Skipped]) -> SessionSummary | None:
        data = entries.read_optional(f"{name}.json", 64 * 1024)
        if data is None:
            return None
        try:
            summary = SessionSummary.model_validate(orjson.loads(data))
        except (orjson.JSONDecodeError, ValidationError):
            skipped.append(Skipped(name, "damaged index entry"))
            return None
        if summary.name != name or encode_name(summary.key) != name:
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
        if cursor is not None:
            state = _parse_cursor(cursor)
            if (state["o"], state["w"]) != (order, workspace):
                raise UsageError("the cursor belongs to another listing (order or workspace differ)")
            if state["i"] != inode or state["e"] > end:
                raise UsageError("the cursor has expired (the index was rebuilt); list again from the start")
            end, position = state["e"], state["p"]
            for offset, line in self.index.lines_backward(log, end, MAX_INDEX_LINE):
                if offset < position:
                    break
                parsed = _line(line)
                if parsed is not None:
                    seen.add(parsed["n"])
        sessions: list[SessionSummary] = []
        skipped: list[Skipped] = []
        if self.index.entry(ENTRIES_DIR) is None:
            return Page([], None, stamp, [Skipped(ENTRIES_DIR, "the index is incomplete; run `securestore index rebuild`")])
        with self.index.open_dir(ENTRIES_DIR) as entries:
            for offset, line in self.index.lines_backward(log, position, MAX_INDEX_LINE):
                parsed = _line(line)
                if parsed is None:
                    skipped.append(Skipped(f"{log}@{offset}", "damaged index line"))
                    continue
                name = parsed["n"]
                if name in seen:
                    continue
                seen.add(name)
                if parsed.get("d"):
                    continue
                summary = self._entry(entries, name, skipped)
                if summary is None or (workspace is not None and summary.workspace != workspace):
                    continue
                sessions.append(summary)
                if len(sessions) == page_size:
                    return Page(sessions, _cursor(order, end, offset, inode, workspace), stamp, skipped)
        return Page(sessions, None, stamp, skipped)


class ListingCache:
    """In-process cache of pages: served while younger than `ttl` AND the stamp is unchanged,
    so a write by any process invalidates it at once."""

    def __init__(self, fetch: Callable[..., Page], stamp: Callable[[], tuple[int, int] | None], ttl: float,
                 monotonic: Callable[[], float]) -> None:
        self._fetch, self._stamp, self._ttl, self._monotonic = fetch, stamp, ttl, monotonic
        self._pages: dict[tuple[Any, ...], tuple[float, Page]] = {}

    def get(self, **query: Any) -> Page:
        key = tuple(sorted(query.items()))
        hit = self._pages.get(key)
        if hit is not None and self._monotonic() - hit[0] < self._ttl and hit[1].stamp == self._stamp():
            return hit[1]
        page = self._fetch(**query)
        self._pages[key] = (self._monotonic(), page)
        return page


def disagreements(index: Dir, live: set[str], *, ignore: set[str], max_index_bytes: int) -> list[str]:
    """Where the index disagrees with the set of live sessions (from the audit trail): live
    sessions a listing would not show, and listed sessions that are not live. O(index)."""
    newest: dict[str, bool] = {}  # name -> listed (False: its newest line is a tombstone)
    created: set[str] = set()
    for log, into in ((UPDATES_LOG, newest), (CREATED_LOG, None)):
        size = index.size_of(log)
        if size is None:
            return [f"{INDEX_DIR}/{log}: missing; run `securestore index rebuild`"]
        if size[1] > max_index_bytes:
            return [f"{INDEX_DIR}/{log}: larger than {max_index_bytes} bytes; run `securestore index rebuild`"]
        for _, line in index.iter_lines(log, MAX_INDEX_LINE):
            parsed = _line(line.rstrip(b"\n"))
            if parsed is None:
                continue
            if into is None:
                created.add(parsed["n"])
            else:
                into[parsed["n"]] = not parsed.get("d")
    findings: list[str] = []
    entries = index.open_dir(ENTRIES_DIR) if index.entry(ENTRIES_DIR) is not None else None
    try:
        for name in sorted(live):
            if not newest.get(name, False):
                why = "a tombstone" if name in newest else "no line in updates.log"
                findings.append(f"session {name} is live but hidden from listings by {why}")
            elif entries is None or not _entry_matches(entries, name):
                findings.append(f"session {name} is live but its index entry is missing or damaged")
            elif name not in created:
                findings.append(f"session {name} is live but missing from the created-order listing")
        for name, listed in sorted(newest.items()):
            if listed and name not in live and name not in ignore:
                findings.append(f"the index lists session {name}, which the trail says does not exist")
    finally:
        if entries is not None:
            entries.close()
    return [f"{INDEX_DIR}: {finding}; run `securestore index rebuild`" for finding in findings]


def _entry_matches(entries: Dir, name: str) -> bool:
    try:
        data = entries.read_optional(f"{name}.json", 64 * 1024)
        if data is None:
            return False
        summary = SessionSummary.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError, SecureStoreError):
        return False
    return summary.name == name and encode_name(summary.key) == name
