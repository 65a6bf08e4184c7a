"""Listing formats (pure): session summaries, index lines, cursors, pages, and a page cache.

The on-disk index that uses them is `backends/local/index.py`.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UsageError
from .policy import encode_name, is_session_name

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


EMBED_BUDGET = 1024  # a longer line names the session only, and its page reads the entry file


def summary_line(summary: SessionSummary) -> bytes:
    """The update-log line of a write: the session's name and time, and its whole summary when
    that fits the budget (a page then needs no entry file; index lines are capped at 4 KiB)."""
    line = orjson.dumps({"d": 0, "n": summary.name, "u": summary.updated_ms, "s": summary.model_dump()},
                        option=orjson.OPT_SORT_KEYS) + b"\n"
    if len(line) <= EMBED_BUDGET:
        return line
    return orjson.dumps({"d": 0, "n": summary.name, "u": summary.updated_ms}, option=orjson.OPT_SORT_KEYS) + b"\n"


def embedded_summary(parsed: dict[str, Any]) -> SessionSummary | None:
    """The summary an update-log line carries, if it has a valid one (the caller still checks
    that it names the line's session and re-encodes from its key)."""
    raw = parsed.get("s")
    if raw is None:
        return None
    try:
        return SessionSummary.model_validate(raw)
    except ValidationError:
        return None


def tombstone_line(name: str, now_ms: int) -> bytes:
    return orjson.dumps({"d": 1, "n": name, "u": now_ms}, option=orjson.OPT_SORT_KEYS) + b"\n"


def created_line(summary: SessionSummary) -> bytes:
    return creation_line(summary.name, summary.created_ms)


def creation_line(name: str, created_ms: int) -> bytes:
    return orjson.dumps({"c": created_ms, "n": name}, option=orjson.OPT_SORT_KEYS) + b"\n"


def is_tombstone_of(line: bytes, name: str) -> bool:
    """Is this update-log line (no newline) the tombstone of `name`? (Keys sorted: `d` leads.)"""
    return line.startswith(b'{"d":1,"n":"' + name.encode() + b'",')


def entry_bytes(summary: SessionSummary) -> bytes:
    return orjson.dumps(summary.model_dump(), option=orjson.OPT_SORT_KEYS)


def cursor_text(order: str, end: int, position: int, inode: int, workspace: str | None, walked: str) -> str:
    """`walked`: 16 hex digits of the hash of the lines between `position` and `end`."""
    raw = orjson.dumps({"e": end, "h": walked, "i": inode, "o": order, "p": position, "w": workspace})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, dict) or set(raw) != {"e", "h", "i", "o", "p", "w"} or not isinstance(raw["h"], str):
            raise ValueError
        if not all(isinstance(raw[k], int) for k in "eip") or not 0 <= raw["p"] <= raw["e"]:
            raise ValueError
        return raw
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise UsageError("the cursor is not one this store issued") from None


def parse_index_line(data: bytes) -> dict[str, Any] | None:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("n"), str) or not is_session_name(raw["n"]):
        return None
    return raw


def belongs(summary: SessionSummary, name: str) -> bool:
    """A summary is listed under `name` only if it names it and its key re-encodes to it."""
    return summary.name == name and encode_name(summary.key) == name


class IndexLine(NamedTuple):
    """An update-log line, checked: its session's name, whether it is a deletion, and the
    summary it embeds if valid and this session's own (`foreign`: it carried another's).
    A tuple: cheap to make ten thousand of in a cold listing."""

    name: str
    deleted: bool
    summary: SessionSummary | None
    foreign: bool


# A pure function of the line's bytes, so its result may be shared: a long-lived process
# listing the same sessions again (a framework polling list_sessions) skips the JSON parse,
# the validation and the key re-encoding of every line it has seen. 16,384 lines of at most
# 1 KiB bound it; the summaries are frozen.
@functools.lru_cache(maxsize=1 << 14)
def read_index_line(data: bytes) -> IndexLine | None:
    parsed = parse_index_line(data)
    if parsed is None:
        return None
    name: str = parsed["n"]
    summary = embedded_summary(parsed)
    foreign = summary is not None and not belongs(summary, name)
    return IndexLine(name, bool(parsed.get("d")), None if foreign else summary, foreign)


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
