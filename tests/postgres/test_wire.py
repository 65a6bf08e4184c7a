"""The pipeline sender below psycopg's cursors (backends/postgres/wire.py), against a real server:
answers come back in order and loaded as psycopg loads them; the first failure is the server's
own error and nothing after it in its transaction runs; statements are prepared after the
threshold (never with none, as behind PgBouncer); an interrupted round trip never leaves the
connection in use with the protocol half-read."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from securestore.backends.postgres.wire import Wire
from tests.support.pg_stores import fresh_database
from tests.support.postgres import PostgresServer

Connection = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def connection(pg_server: PostgresServer) -> Iterator[Connection]:
    with psycopg.connect(fresh_database(pg_server), autocommit=True) as opened:
        yield opened


def _prepared(connection: Connection) -> list[str]:
    rows = connection.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_securestore\\_%'")
    return [str(row[0]) for row in rows.fetchall()]


def test_answers_come_back_in_order_loaded_as_psycopg_loads_them(connection: Connection) -> None:
    wire = Wire(connection, 5)
    first, second, third = wire.run([
        (b"SELECT %(n)s::int8 + 1, %(data)s::bytea", {"n": 41, "data": b"\x00\xffsecret"}),
        (b"SELECT generate_series(1, %(n)s), 'x' || %(text)s", {"n": 3, "text": "é"}),
        (b"SELECT 100 %% 7", None),
    ])
    assert first.fetchall() == [(42, b"\x00\xffsecret")]
    assert second.fetchall() == [(1, "xé"), (2, "xé"), (3, "xé")]
    assert third.fetchone() == (2,)


def test_the_first_failure_is_the_servers_own_and_nothing_after_it_runs(connection: Connection) -> None:
    connection.execute("CREATE TABLE t (k int PRIMARY KEY)")
    wire = Wire(connection, 5)
    insert = b"INSERT INTO t VALUES (%(k)s)"
    with pytest.raises(psycopg.errors.UniqueViolation):
        wire.run([(b"BEGIN", None), (insert, {"k": 1}), (insert, {"k": 1}), (insert, {"k": 2}), (b"COMMIT", None)])
    assert not connection.closed  # a statement's failure is an answer, not a broken protocol
    wire.run([(b"ROLLBACK", None)])
    assert wire.run([(b"SELECT count(*) FROM t", None)])[0].fetchone() == (0,)


def test_statements_are_prepared_after_the_threshold(connection: Connection) -> None:
    wire = Wire(connection, 2)
    statement = b"SELECT %(n)s::int8"
    for n in range(2):
        wire.run([(statement, {"n": n})])
    assert _prepared(connection) == []
    # The use that crosses the threshold prepares it; a second use in the same round trip
    # runs the statement being prepared instead of preparing it again.
    answers = wire.run([(statement, {"n": 7}), (statement, {"n": 8})])
    assert [answer.fetchone() for answer in answers] == [(7,), (8,)]
    assert len(_prepared(connection)) == 1
    assert wire.run([(statement, {"n": 9})])[0].fetchone() == (9,)
    assert len(_prepared(connection)) == 1


def test_nothing_is_prepared_without_a_threshold(connection: Connection) -> None:
    wire = Wire(connection, None)  # PgBouncer in transaction mode: prepared statements may be elsewhere
    for n in range(20):
        assert wire.run([(b"SELECT %(n)s::int8", {"n": n})])[0].fetchone() == (n,)
    assert _prepared(connection) == []


def test_an_interrupted_round_trip_closes_the_connection(connection: Connection, pg_server: PostgresServer) -> None:
    wire = Wire(connection, 5)
    pid = connection.info.backend_pid
    main = threading.get_ident()

    def interrupt_once_it_sleeps() -> None:
        with psycopg.connect(pg_server.dsn, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while watcher.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                  (pid,)).fetchone() != ("PgSleep",):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=interrupt_once_it_sleeps)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            wire.run([(b"SELECT pg_sleep(%(s)s)", {"s": 30}), (b"SELECT 1", None)])
    finally:
        thread.join(timeout=60)
    assert connection.closed  # its protocol state is unknown: never used again


def test_after_a_failure_the_answers_before_it_are_kept_and_only_for_that_round_trip(connection: Connection) -> None:
    """`answered`: what ran before the failure, so its checks still run (group.py); a round
    trip that fails before any statement ran (a closed connection) leaves none of an earlier one."""
    wire = Wire(connection, 5)
    with pytest.raises(psycopg.errors.DivisionByZero):
        wire.run([(b"SELECT %(n)s::int8", {"n": 7}), (b"SELECT 1 / 0", None), (b"SELECT 2", None)])
    assert [answer.fetchone() for answer in wire.answered] == [(7,)]
    connection.close()
    with pytest.raises(psycopg.OperationalError):
        wire.run([(b"SELECT 3", None)])
    assert wire.answered == []
