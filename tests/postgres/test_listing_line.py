"""A session write's line in the listing's update log, on PostgreSQL. Every writer of the store
appends to that one file, and an append holds the file's row until its transaction ends: inside
the write's transaction, that is until the commit's WAL flush, so the whole store would take
one write at a time. The line is appended in a transaction of its own that follows the write's
commit in the same round trip (TreeDir.append_after_commit). These tests hold that promise, and
what a follower that fails leaves: the write stands, the listing says it is stale, and the handle
goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pg_stores import refuse_chunks, set_up_database
from tests.support.postgres import PostgresServer, make_server, remove_server, set_synchronous_standby
from tests.support.stores import make_pg_store, open_with_keys, verify_with_seed

_UPDATES_LOG_ROW = ("SELECT n.id FROM securestore.nodes n JOIN securestore.nodes i ON n.parent = i.id "
                    "WHERE i.parent = 0 AND i.name = 'index' AND n.name = 'updates.log'")
# A fault inside the database in the update log only: a new row of its bytes is refused.
_REFUSE_UPDATE_LINES = refuse_chunks("refuse_update_lines", f"NEW.node = ({_UPDATES_LOG_ROW})")


@pytest.fixture(scope="module")
def durable_server() -> Iterator[PostgresServer]:
    started = make_server(durable=True)  # a commit waits for its flush (and for a synchronous standby)
    try:
        yield started
    finally:
        remove_server(started)


def _wait_for_sync_rep(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as watcher:
        deadline = time.monotonic() + 30
        while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").fetchone() == (0,):
            assert time.monotonic() < deadline, "the write never reached its commit"
            time.sleep(0.01)


def test_a_write_waiting_for_its_commit_holds_no_row_other_writers_append_to(durable_server: PostgresServer,
                                                                            tmp_path: Path) -> None:
    """While a write's commit waits (here for a synchronous standby that never answers, as it
    would for a slow disk), another transaction takes the update log's row at once."""
    url = make_pg_store(set_up_database(durable_server), tmp_path)
    with open_with_keys(url) as store:
        store.create_session("a").close()
    done: list[BaseException | None] = []
    set_synchronous_standby(durable_server, "nobody")
    try:
        with open_with_keys(url) as store, store.open_session("a") as session:
            def write() -> None:
                try:
                    session.append_items([{"role": "user", "content": "waits for its commit"}])
                    done.append(None)
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    done.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            try:
                _wait_for_sync_rep(url)
                with psycopg.connect(url) as other:
                    row = other.execute(_UPDATES_LOG_ROW + " FOR UPDATE OF n NOWAIT").fetchone()
                    assert row is not None  # not LockNotAvailable: the waiting write does not hold it
                    other.rollback()
            finally:
                set_synchronous_standby(durable_server, None)  # the commit returns
                writer.join(timeout=60)
            assert done == [None]
            assert [s.key for s in store.list_sessions().sessions] == ["a"]
            assert store.list_sessions().sessions[0].items == 1
    finally:
        set_synchronous_standby(durable_server, None)
    assert verify_with_seed(url) == (0, [])


def test_a_line_that_fails_after_its_write_committed_leaves_the_write_and_a_stale_listing(
        pg_server: PostgresServer, tmp_path: Path) -> None:
    """The update log refuses the line (a fault inside the database): the write is committed
    and acknowledged, the listing says it is stale, and the handle goes on writing."""
    url = make_pg_store(set_up_database(pg_server), tmp_path)
    with open_with_keys(url) as store:
        store.create_session("a").close()
        store.create_session("b").close()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(_REFUSE_UPDATE_LINES.encode())
    with open_with_keys(url) as store:
        with store.open_session("a") as session:
            session.append_items([{"n": 1}])  # committed; its line was refused
            session.append_items([{"n": 2}])  # the handle goes on (the failed follower was rolled back)
        assert store.read_items("a") == [{"n": 1}, {"n": 2}]
        page = store.list_sessions()
        assert [skipped.name for skipped in page.skipped] == ["index"]  # stale: `index rebuild` says so
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(b"DROP TRIGGER refuse_update_lines ON securestore.chunks")
        with store.open_session("b") as session:
            session.append_items([{"n": 3}])
        assert store.list_sessions().sessions[0].key == "b"
        assert store.rebuild_index() == 2
        assert [(s.key, s.items) for s in store.list_sessions().sessions] == [("b", 1), ("a", 2)]
    assert verify_with_seed(url) == (0, [])
