"""Reading part of a long file costs the rows read, not the file: a tail, a backward walk from
any point and a forward walk from any offset each read about the rows they return, on the audit
trail's table and on the chunks table, even when the planner's statistics still describe the
tables as they were when nearly empty (the state in which a tail read of the store log once
scanned the whole log on every create). Rows that begin at the same offset (an empty append)
are neither lost nor repeated.

The server runs auto_explain with ANALYZE and autovacuum off: the log holds each statement's
plan with the rows every scan actually read."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from securestore.backends.postgres.lines import _BATCH
from securestore.backends.postgres.root import open_pg_root
from securestore.backends.postgres.url import parse_target
from securestore.backends.tree import TreeDir
from securestore.fs import FsContext
from tests.support.pg_stores import set_up_database
from tests.support.postgres import PostgresServer, make_server, remove_server

LINES = 3000
WALK_MARK = re.compile(r"ORDER BY (?:[acr]\.)?pos")  # the statements that walk a file's rows


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = make_server(settings={"shared_preload_libraries": "auto_explain", "autovacuum": "off",
                                    "auto_explain.log_min_duration": "0", "auto_explain.log_analyze": "on",
                                    "auto_explain.log_format": "json"})
    try:
        yield started
    finally:
        remove_server(started)


def _line(n: int) -> bytes:
    return b"%06d " % n + b"y" * (n % 41) + b"\n"


def _fill(directory: TreeDir, name: str, count: int) -> bytes:
    """`count` lines appended one by one, with empty appends where a batch of rows would end
    (a row of theirs would begin where the next line does)."""
    written = []
    for n in range(count):
        directory.append(name, _line(n), durable=False)
        written.append(_line(n))
        if n % _BATCH == _BATCH - 2:
            directory.append(name, b"", durable=False)
    return b"".join(written)


def _plans(log: str) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"plan:\s*", log):
        plan, _ = decoder.raw_decode(log, match.end())
        yield plan


def _rows_read(node: dict[str, Any]) -> int:
    """Rows the scans under `node` took from the file tables (kept or filtered out)."""
    own = 0
    if node.get("Relation Name") in ("audit_records", "chunks"):
        own = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)
    return own + sum(_rows_read(child) for child in node.get("Plans", []))


def _walks_since(server: PostgresServer, offset: int) -> list[tuple[int, bool, str]]:
    """(rows read, compiled by JIT, text) of each walk statement logged after `offset`."""
    log = server.log.read_text(errors="replace")[offset:]
    return [(_rows_read(plan["Plan"]), "JIT" in plan, plan["Query Text"]) for plan in _plans(log)
            if WALK_MARK.search(plan.get("Query Text", ""))]


def test_walks_read_the_rows_they_return_whatever_the_statistics(server: PostgresServer) -> None:
    url = set_up_database(server)
    with open_pg_root(parse_target(url, {}), FsContext()) as root, root.make_dir("audit") as audit, \
            root.make_dir("d") as plain:
        audit.write_new("log.jsonl", b"")  # an audit trail's file: its rows go to audit_records
        plain.write_new("journal", b"")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("ANALYZE securestore.audit_records, securestore.chunks")  # statistics of empty tables
        files = {(audit, "log.jsonl"): _fill(audit, "log.jsonl", LINES), (plain, "journal"): _fill(plain, "journal", LINES)}
        offset = len(server.log.read_text(errors="replace"))
        for (directory, name), data in files.items():
            size = len(data)
            assert directory.read_tail(name, 100) == (size, data[-100:])
            middle = data.index(_line(LINES // 2))
            backward = [line for _, line in directory.lines_backward(name, middle, 4096)]
            assert backward[:3] == [_line(n)[:-1] for n in (LINES // 2 - 1, LINES // 2 - 2, LINES // 2 - 3)]
            whole = [line for _, line in directory.lines_backward(name, size, 4096)]
            assert whole == [_line(n)[:-1] for n in reversed(range(LINES))]  # none lost, none twice
            start = size - len(_line(LINES - 1)) - 3  # inside the second-to-last line
            assert b"".join(line for _, line in directory.iter_lines(name, 4096, start=start)) == data[start:]
            forward = b"".join(line for _, line in directory.iter_lines(name, 4096, start=middle + 1))
            assert forward == data[middle + 1:]
            assert b"".join(line for _, line in directory.iter_lines(name, 4096)) == data
    walks = _walks_since(server, offset)
    assert len(walks) > 10, walks
    # The whole walks read every row once, in batches; a short one reads a batch at most.
    worst = max(walks)
    assert worst[0] <= _BATCH + 1, worst
    # Ruling sorts out makes a plan that must sort look dear: never so dear that it is compiled.
    assert not any(jit for _, jit, _ in walks), [text for _, jit, text in walks if jit]
