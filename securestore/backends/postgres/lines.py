"""Line reads over a file's rows: its chunks fetched in batches (forward or backward, in
offset order), and split into lines exactly as `fs/lines.py` splits a file's bytes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from ...errors import NotFoundError, UnsafeFileError
from .link import PgLink
from .reads import query

_BATCH = 256  # the most rows per round trip (an audit record or a journal line is one row)
FIRST_ROWS = 8  # a backward walk's first batch: a read of the last few lines fetches a few rows
# No sorting; and no JIT: a plan that had to sort anyway would cost past its threshold.
WALK_SETTINGS = b"SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)"


FileRows = list[tuple[int, int, bytes]]  # (seq, pos, data) of a file's rows


def walk_rows(link: PgLink, label: str, statement: bytes, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a walk's statement (its rows in offset order, at most a batch of them),
    planned with sorting ruled out: the (node, offset) index then gives them in order, reading
    only them. The planner guesses a file's rows as the average over all files, a few, and
    with that guess reading the whole file and sorting it looked as cheap: on the store log,
    whose records grow with every session, that was a scan of the whole log on every create.
    The settings (set_config local) last until the transaction ends (its own when none is open),
    so nothing leaks to other clients of a pooled server connection."""
    _, rows = query(link, label, [(WALK_SETTINGS, None), (statement, params)], own_transaction=True)
    return rows.fetchall()


def chunks_backward(link: PgLink, label: str, node: int, audit: bool, end: int,
                    first: FileRows | None = None) -> Iterator[tuple[int, bytes]]:
    """(pos, data) of the chunks holding bytes before `end`, last first, each cut at `end`.
    `first`: the first FIRST_ROWS rows, already read (PgDir.tail_start)."""
    statement = link.sql.audit_backward if audit else link.sql.chunks_backward
    before, limit = end, FIRST_ROWS  # the offset of the last row yielded
    while True:
        if first is not None:
            rows, first = first, None
        else:
            rows = walk_rows(link, label, statement, {"node": node, "before": before, "limit": limit})
        for _, pos, data in rows:
            yield int(pos), bytes(data)[: max(0, end - int(pos))]
            before = int(pos)
        if len(rows) < limit:
            return
        limit = min(limit * 2, _BATCH)  # a longer walk: fewer round trips


def tail_query(link: PgLink, key: dict[str, Any], end: int) -> list[tuple[bytes, dict[str, Any] | None]]:
    """The statements `tail_start` runs (walk_rows: its settings, then the walk), for a file's
    `key` (its parent and name)."""
    return [(WALK_SETTINGS, None), (link.sql.tail_first, {**key, "end": end, "limit": FIRST_ROWS})]


def tail_start(link: PgLink, label: str, key: dict[str, Any], end: int) -> tuple[int, int, bool, FileRows]:
    """(node, size, audit, the last FIRST_ROWS rows before `end`) of a file: one round trip."""
    _, (statement, params) = tail_query(link, key, end)
    rows = walk_rows(link, label, statement, params or {})
    if not rows:
        raise NotFoundError(f"{label} does not exist")
    node, _, size, audit, kind = rows[0][:5]
    if kind != "f":
        raise UnsafeFileError(f"refused {label}: expected a file, found a directory")
    # Last first (sorted here: in the statement, a sort of a few rows would be ruled out).
    found = sorted(((int(r[5]), int(r[6]), bytes(r[7])) for r in rows if r[5] is not None),
                   key=lambda row: row[1], reverse=True)
    return int(node), int(size), bool(audit), found


def tail_of(chunks: Iterable[tuple[int, bytes]], size: int, nbytes: int, first_rows: int,
            enough: Callable[[bytes], bool] | None) -> bytes:
    """The last `nbytes` of a file of `size` bytes, from its chunks last first, read no further
    than needed; `enough` is asked once, of the first `first_rows` chunks (one round trip)."""
    parts: list[bytes] = []
    for index, (pos, data) in enumerate(chunks):
        parts.append(data)
        if size - pos >= nbytes:
            break
        if enough is not None and index + 1 == first_rows and enough(b"".join(reversed(parts))):
            break
    tail = b"".join(reversed(parts))
    return tail[len(tail) - min(nbytes, len(tail)):] if nbytes else b""


def chunks_forward(link: PgLink, label: str, node: int, audit: bool, start: int,
                   size: int) -> Iterator[tuple[int, bytes]]:
    """(pos, data) of the chunks holding bytes from `start` up to the `size` read when the
    walk began (anything appended later is not part of it), first to last."""
    statement = link.sql.audit_forward if audit else link.sql.chunks_forward
    after = -1  # the offset of the last row yielded
    while True:
        rows = walk_rows(link, label, statement, {"node": node, "after": after, "start": start, "limit": _BATCH})
        for _, pos, data in rows:
            pos, data = int(pos), bytes(data)
            if pos >= size:
                return
            cut = data[max(0, start - pos): size - pos]
            yield max(pos, start), cut
            after = pos
        if len(rows) < _BATCH:
            return


def backward_lines(chunks: Iterable[tuple[int, bytes]], end: int,
                   max_line: int) -> Generator[tuple[int, bytes], None, None]:
    """(offset, line without its newline) before `end`, last first; a final fragment without a
    newline is not yielded; a line longer than `max_line` ends the walk (as fs `lines_backward`)."""
    buffer = b""
    position = end
    trailing = True
    for pos, data in chunks:
        buffer = data + buffer
        position = pos
        if trailing:
            cut = buffer.rfind(b"\n")
            if cut < 0 and position > 0:
                continue
            buffer, trailing = buffer[: cut + 1], False
        stop = len(buffer) - 1
        while True:
            cut = buffer.rfind(b"\n", 0, stop)
            if cut < 0:
                break
            yield position + cut + 1, buffer[cut + 1: stop]
            stop = cut
        buffer = buffer[: stop + 1]
        if len(buffer) > max_line + 1:
            return
    if buffer and position == 0:
        yield 0, buffer[:-1] if buffer.endswith(b"\n") else buffer


def forward_lines(chunks: Iterable[tuple[int, bytes]], start: int, max_line: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its newline) from `start`; the last may lack its newline; an oversized
    fragment is yielded for the parser to refuse (as fs `iter_lines`)."""
    buffer = b""
    offset = start
    for _, data in chunks:
        buffer += data
        begin = 0
        while True:
            cut = buffer.find(b"\n", begin)
            if cut < 0:
                break
            yield offset, buffer[begin: cut + 1]
            offset += cut + 1 - begin
            begin = cut + 1
        buffer = buffer[begin:]
        if len(buffer) > max_line:
            yield offset, buffer
            offset += len(buffer)
            buffer = b""
    if buffer:
        yield offset, buffer
