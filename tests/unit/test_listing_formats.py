"""Listing formats (core/listing.py), sans IO: index lines, cursors, and the page cache, with an
injected clock and stamp."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from securestore.core.listing import (
    EMBED_BUDGET,
    ListingCache,
    Page,
    SessionSummary,
    created_line,
    cursor_text,
    embedded_summary,
    entry_bytes,
    parse_cursor,
    parse_index_line,
    summary_line,
    tombstone_line,
)
from securestore.core.policy import encode_name
from securestore.errors import UsageError

NAME = encode_name("agent:main")
SUMMARY = SessionSummary(key="agent:main", name=NAME, title="t", created_ms=5, updated_ms=9, items=2)


def test_index_lines_are_canonical_json_carrying_the_summary_when_it_fits() -> None:
    assert summary_line(SUMMARY) == orjson.dumps({"d": 0, "n": NAME, "s": SUMMARY.model_dump(), "u": 9},
                                                 option=orjson.OPT_SORT_KEYS) + b"\n"
    assert embedded_summary(orjson.loads(summary_line(SUMMARY))) == SUMMARY
    long_title = SUMMARY.model_copy(update={"title": "t" * EMBED_BUDGET})
    assert summary_line(long_title) == b'{"d":0,"n":"' + NAME.encode() + b'","u":9}\n'  # its entry file is read
    assert embedded_summary({"n": NAME, "s": {"key": 7}}) is None  # an invalid summary is not used
    assert tombstone_line(NAME, 11) == b'{"d":1,"n":"' + NAME.encode() + b'","u":11}\n'
    assert created_line(SUMMARY) == b'{"c":5,"n":"' + NAME.encode() + b'"}\n'
    assert orjson.loads(entry_bytes(SUMMARY)) == SUMMARY.model_dump()
    assert list(orjson.loads(entry_bytes(SUMMARY))) == sorted(SUMMARY.model_dump())


def test_index_lines_that_do_not_name_a_session_directory_are_skipped() -> None:
    assert parse_index_line(summary_line(SUMMARY)[:-1]) == {"d": 0, "n": NAME, "s": SUMMARY.model_dump(), "u": 9}
    for bad in [b"{not json", b"[1]", b'{"d":0,"u":1}', b'{"n":7}', b'{"n":"../../etc"}', b'{"n":"k-ME"}',
                b'{"n":"h-abc"}']:
        assert parse_index_line(bad) is None, bad


def test_a_cursor_round_trips_and_holds_no_padding() -> None:
    text = cursor_text("updated", 400, 120, 77, "/srv/app", "0123456789abcdef")
    assert "=" not in text
    assert parse_cursor(text) == {"e": 400, "h": "0123456789abcdef", "i": 77, "o": "updated", "p": 120,
                                  "w": "/srv/app"}
    assert parse_cursor(cursor_text("created", 0, 0, 1, None, "0" * 16))["w"] is None


H = "0123456789abcdef"


def _encoded(raw: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "zz", "", "!!!!",
    _encoded([1, 2]),
    _encoded({"e": 4, "h": H, "i": 1, "o": "updated", "p": 2}),  # a field missing
    _encoded({"e": 4, "i": 1, "o": "updated", "p": 2, "w": None}),  # no hash of the lines it stands on
    _encoded({"e": 4, "h": H, "i": 1, "o": "updated", "p": 2, "w": None, "x": 0}),  # a field too many
    _encoded({"e": 4, "h": H, "i": 1, "o": "updated", "p": 5, "w": None}),  # past the end it names
    _encoded({"e": 4, "h": H, "i": 1, "o": "updated", "p": -1, "w": None}),
    _encoded({"e": "4", "h": H, "i": 1, "o": "updated", "p": 2, "w": None}),
    _encoded({"e": 4, "h": 7, "i": 1, "o": "updated", "p": 2, "w": None}),
])
def test_a_cursor_this_store_did_not_issue_is_a_usage_error(cursor: str) -> None:
    with pytest.raises(UsageError, match="^the cursor is not one this store issued$"):
        parse_cursor(cursor)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.stamp: tuple[int, int] | None = (1, 1)
        self.fetches = 0

    def fetch(self, **query: Any) -> Page:
        self.fetches += 1
        return Page(sessions=[], next_cursor=None, stamp=self.stamp)


def test_the_cache_serves_a_page_while_young_and_its_stamp_unchanged() -> None:
    clock = Clock()
    cache = ListingCache(clock.fetch, lambda: clock.stamp, ttl=5.0, monotonic=lambda: clock.now)
    first = cache.get(page_size=10)
    clock.now += 4.9
    assert cache.get(page_size=10) is first and clock.fetches == 1
    assert cache.get(page_size=20) is not first and clock.fetches == 2  # another query, another page
    clock.now += 0.2  # 5.1 s after the first page: too old
    assert cache.get(page_size=10) is not first and clock.fetches == 3


def test_a_write_anywhere_moves_the_stamp_and_invalidates_the_cache_at_once() -> None:
    clock = Clock()
    cache = ListingCache(clock.fetch, lambda: clock.stamp, ttl=3600.0, monotonic=lambda: clock.now)
    first = cache.get(page_size=10)
    clock.stamp = (1, 2)
    second = cache.get(page_size=10)
    assert second is not first and second.stamp == (1, 2) and clock.fetches == 2
    assert cache.get(page_size=10) is second


def test_lines_backward_yields_every_line_across_chunks_in_reverse(tmp_path: Path) -> None:
    """Lines cut by chunk edges come back whole, newest first, with their offsets."""
    from securestore.fs import FsContext, lines_backward, open_root

    lines = [f"line {i} ".encode() + b"x" * (i % 37) for i in range(500)]
    data = b"".join(line + b"\n" for line in lines) + b"partial"
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    (directory / "log").write_bytes(data)
    (directory / "log").chmod(0o600)
    with open_root(str(directory), FsContext(), create=False) as holder:
        got = list(lines_backward(holder, "log", len(data), 4096, chunk=64))
    assert [line for _, line in got] == lines[::-1]
    assert all(data[offset:offset + len(line)] == line for offset, line in got)
