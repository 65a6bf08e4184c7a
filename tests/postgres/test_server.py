"""The throwaway server the PostgreSQL backend's tests stand on, and the server behaviour the
backend's design relies on: a session-level advisory lock is exclusive across connections and
dies with its holder's connection, so a writer killed mid-write leaves no lock to recover."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg  # the extra `postgres`; missing, the tests fail (never skip)
import pytest

from tests.support.postgres import PostgresServer, make_server, remove_server


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = make_server()
    try:
        yield started
    finally:
        remove_server(started)


def test_the_server_answers_over_tcp_on_loopback(server: PostgresServer) -> None:
    with psycopg.connect(server.dsn) as connection:
        version = connection.execute("show server_version").fetchone()
    assert version is not None and version[0].startswith("15.")


def test_an_advisory_lock_is_exclusive_and_dies_with_its_connection(server: PostgresServer) -> None:
    holder = psycopg.connect(server.dsn, autocommit=True)
    other = psycopg.connect(server.dsn, autocommit=True)
    try:
        assert holder.execute("select pg_try_advisory_lock(42)").fetchone() == (True,)
        assert other.execute("select pg_try_advisory_lock(42)").fetchone() == (False,)
        pid = holder.info.backend_pid
        # The holder's backend dies as a killed client's would; the call returns once it is gone.
        assert other.execute("select pg_terminate_backend(%s, 30000)", (pid,)).fetchone() == (True,)
        assert other.execute("select pg_try_advisory_lock(42)").fetchone() == (True,)  # gone with it
    finally:
        holder.close()
        other.close()
