"""Statements sent in one round trip through libpq's pipeline mode, below psycopg's cursors.

A group's statements are many and small, and psycopg's cursor machinery costs about 25 µs of
Python per statement: more than the server takes to run most of them. Here each statement is
one `send_query_params` (or `send_query_prepared`) on the connection's libpq handle; its
parameters are dumped and its rows loaded by psycopg's own adapters (a `Transformer`), so
values cross exactly as they do through a cursor; and the round trip is driven by psycopg's own
non-blocking generators and `Connection.wait` (which also cancels a query on Ctrl-C).

Values are always parameters: a statement's text is fixed (statements.py), its `%(name)s`
placeholders become `$n` once per text. Statements are prepared on the server after
`prepare_threshold` uses, per parameter types, as psycopg does (None: never, for PgBouncer in
transaction mode, where a prepared statement may live on another server connection).

Anything unexpected while the pipeline is open (an interrupt, a protocol error) closes the
connection: its state is unknown, and the link treats a closed connection as lost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, generators, pq
from psycopg.abc import PQGen
from psycopg.adapt import PyFormat, Transformer

Connection = psycopg.Connection[tuple[Any, ...]]

_PLACEHOLDER = re.compile(rb"%\((\w+)\)s|%%|%")  # psycopg's named style; `%%` is a literal %
_MAX_PREPARED = 256  # distinct (statement, types) pairs prepared per connection; the rest run unprepared
_ExecStatus = pq.ExecStatus


@dataclass(frozen=True)
class _Converted:
    query: bytes  # with $n placeholders
    names: tuple[str, ...]  # the parameter for each $n


_converted: dict[bytes, _Converted] = {}


def _convert(statement: bytes) -> _Converted:
    found = _converted.get(statement)
    if found is None:
        names: list[str] = []

        def number(match: re.Match[bytes]) -> bytes:
            if match.group(1) is None:
                if match.group(0) == b"%%":
                    return b"%"
                raise ValueError(f"only %(name)s placeholders are sent here: {statement[:60]!r}")
            name = match.group(1).decode()
            if name not in names:
                names.append(name)
            return b"$%d" % (names.index(name) + 1)

        found = _converted[statement] = _Converted(_PLACEHOLDER.sub(number, statement), tuple(names))
    return found


class Rows:
    """A statement's answer: its rows, loaded (the part of a cursor the tree uses)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class Wire:
    """The pipeline sender of one connection (a new connection gets a new Wire)."""

    def __init__(self, connection: Connection, prepare_threshold: int | None) -> None:
        self.connection = connection
        self.threshold = prepare_threshold
        self._tx = Transformer(connection)
        self._uses: dict[tuple[bytes, tuple[int, ...]], int] = {}
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}  # confirmed by the server
        self._preparing: dict[tuple[bytes, tuple[int, ...]], bytes] = {}  # sent in the pipeline in flight
        self._names = 0
        self.answered: list[Rows] = []  # after a failure: the answers of the statements before it

    def run(self, items: Sequence[tuple[bytes, Mapping[str, Any] | None]]) -> list[Rows]:
        """Send `items` in one round trip; their answers, in order. The first statement that
        failed is raised (as psycopg raises it) once every answer has arrived; the ones after
        it in the same transaction were not run."""
        self.answered = []  # (set again only by a statement's failure: never an earlier run's)
        connection = self.connection
        if connection.closed or connection.broken:
            raise psycopg.OperationalError("the connection is closed")
        pgconn = connection.pgconn
        pgconn.enter_pipeline_mode()
        self._preparing.clear()
        try:
            preparing = [self._send(pgconn, statement, params) for statement, params in items]
            pgconn.pipeline_sync()
            expected = len(items) + sum(key is not None for key in preparing)
            answers = connection.wait(_collect(pgconn, expected))
            pgconn.exit_pipeline_mode()
        except BaseException:
            # Interrupted or confused mid-pipeline: the protocol state is unknown, so the
            # connection is never used again (the link treats a closed connection as lost).
            connection.close()
            raise
        at_sync = answers[expected:]  # the commit of the implicit transaction the Sync ends failed
        loaded = self._load(answers[:expected], preparing)
        if at_sync:
            self.answered = loaded  # every statement ran; what they did was rolled back
            raise errors.error_from_result(at_sync[0], encoding=connection.info.encoding)
        return loaded

    def _send(self, pgconn: pq.abc.PGconn, statement: bytes,
              params: Mapping[str, Any] | None) -> tuple[tuple[bytes, tuple[int, ...]], bytes] | None:
        """Queue one statement; (its key, its name) if this use also prepares it."""
        converted = _convert(statement)
        values: list[Any] = [params[name] for name in converted.names] if params else []
        if not values:
            pgconn.send_query_params(converted.query, None)
            return None
        dumped = self._tx.dump_sequence(values, [PyFormat.AUTO] * len(values))
        types, formats = tuple(self._tx.types or ()), list(self._tx.formats or ())
        key = (converted.query, types)
        name = self._prepared.get(key) or self._preparing.get(key)
        preparing = None
        if name is None and self.threshold is not None and len(self._prepared) < _MAX_PREPARED:
            uses = self._uses[key] = self._uses.get(key, 0) + 1
            if uses > self.threshold:
                self._names += 1
                name = self._preparing[key] = b"_securestore_%d" % self._names
                preparing = (key, name)
                pgconn.send_prepare(name, converted.query, param_types=types)
        if name is None:
            pgconn.send_query_params(converted.query, dumped, param_types=types, param_formats=formats)
        else:
            pgconn.send_query_prepared(name, dumped, param_formats=formats)
        return preparing

    def _load(self, answers: list[pq.abc.PGresult],
              preparing: list[tuple[tuple[bytes, tuple[int, ...]], bytes] | None]) -> list[Rows]:
        out: list[Rows] = []
        failure: psycopg.Error | None = None
        position = 0
        for prepared in preparing:
            if prepared is not None:
                made = answers[position]
                position += 1
                if made.status == _ExecStatus.COMMAND_OK:  # (not if an earlier failure aborted it)
                    self._prepared[prepared[0]] = prepared[1]
                failure = failure or self._failed(made, out)
            result = answers[position]
            position += 1
            if result.status == _ExecStatus.TUPLES_OK:
                self._tx.set_pgresult(result)
                out.append(Rows(self._tx.load_rows(0, result.ntuples, tuple)))
                continue
            failure = failure or self._failed(result, out)
            out.append(Rows([]))
        self._preparing.clear()
        if isinstance(failure, errors.InvalidSqlStatementName):  # dropped under us (DEALLOCATE, DISCARD)
            self._prepared.clear()
            self._uses.clear()
        if failure is not None:
            raise failure
        return out

    def _failed(self, result: pq.abc.PGresult, before: list[Rows]) -> psycopg.Error | None:
        """The error `result` is, if any; then `answered` keeps the answers `before` it."""
        failure: psycopg.Error | None = None
        if result.status == _ExecStatus.FATAL_ERROR:
            failure = errors.error_from_result(result, encoding=self.connection.info.encoding)
        elif result.status == _ExecStatus.PIPELINE_ABORTED:
            failure = errors.PipelineAborted("pipeline aborted")
        if failure is not None:
            self.answered = list(before)
        return failure


def _collect(pgconn: pq.abc.PGconn, expected: int) -> PQGen[list[pq.abc.PGresult]]:
    """Flush what was queued, then read one result per queued command and the sync's."""
    yield from generators.send(pgconn)
    answers: list[pq.abc.PGresult] = []
    empty = 0
    while True:
        results = yield from generators.fetch_many(pgconn)
        if not results:
            empty += 1
            if empty > expected + 2:  # libpq ends each answer once: this never settles
                raise psycopg.OperationalError("the pipeline's answers never ended")
            continue
        if results[0].status == _ExecStatus.PIPELINE_SYNC:
            break
        answers.append(results[-1])  # (one result per statement: none of ours returns several)
    # One more: an error that ended the implicit transaction at the Sync (a deferred check
    # failing at its commit). Any other count is a protocol state this code does not know.
    if len(answers) != expected and not (len(answers) == expected + 1
                                         and answers[-1].status == _ExecStatus.FATAL_ERROR):
        raise psycopg.OperationalError(f"expected {expected} answers in the pipeline, got {len(answers)}")
    return answers
