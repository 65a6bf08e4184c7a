"""A session write's line in the listing's update log, on PostgreSQL. Every writer of the store
appends to that one file, and an append holds the file's row until its transaction ends: inside
the write's transaction, that is until the commit's WAL flush, so the whole store would take
one write at a time. The line is appended in a transaction of its own that follows the write's
commit in the same round trip (TreeDir.append_after_commit). These tests hold that promise, and
what a follower that fails leaves: the write stands, the listing says it is stale, and the handle
goes on."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from securestore.errors import DurabilityError
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
    set_synchronous_standby(durable_server, "nobody")
    try:
        with open_with_keys(url) as store, store.open_session("a") as session:
            writer, done = _append_in_thread(session, {"role": "user", "content": "waits for its commit"})
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


_INDEX = "SELECT id FROM securestore.nodes WHERE parent = 0 AND name = 'index'"
# The writer, its write committed, waiting for the index lock: polling for it (or, were it waited
# for inside the commit's round trip, waiting on the server).
_WAITING_FOR_THE_LOCK = ("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'securestore%' AND "
                         "(wait_event = 'advisory' OR (state = 'idle' AND query LIKE '%pg_try_advisory_lock_shared%'))")
# Refused when the follower's transaction commits, at the round trip's Sync (a deferred check).
_REFUSE_AT_COMMIT = f"""
CREATE FUNCTION securestore.refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.node = ({_UPDATES_LOG_ROW}) THEN
        RAISE EXCEPTION 'injected commit-time fault' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON securestore.chunks DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION securestore.refuse_at_commit();
"""


def _index_lock_key(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(_INDEX).fetchone()
    assert row is not None
    digest = hashlib.sha256(f"securestore\0{row[0]}\0lock".encode()).digest()  # PgLink.lock_key
    return int.from_bytes(digest[:8], "big", signed=True)


def _wait_until(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True) as watcher:
        deadline = time.monotonic() + 30
        while (row := watcher.execute(sql.encode()).fetchone()) is None:
            assert time.monotonic() < deadline, sql
            time.sleep(0.01)
        return int(row[0])


def _append_in_thread(session: Any, item: dict[str, Any]) -> tuple[threading.Thread, list[BaseException | None]]:
    """Append `item` in a thread, started; the thread, and a list that gets what the append did
    (None: acknowledged)."""
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            session.append_items([item])
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    return writer, outcome


def _append_cut_off(url: str, session: Any, waiting: str, let_go: Callable[[], object]) -> list[BaseException | None]:
    """Append {"n": 1} in a thread; once its connection matches `waiting` (a pid query), end
    that connection from the server, then `let_go` of what it waited for. What the append did."""
    writer, outcome = _append_in_thread(session, {"n": 1})
    try:
        pid = _wait_until(url, waiting)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        let_go()
        writer.join(timeout=60)
    return outcome


def test_a_connection_lost_while_the_listing_waits_for_the_index_lock_leaves_the_write_acknowledged(
        pg_server: PostgresServer, tmp_path: Path) -> None:
    """A rebuild or compaction holds the index lock as a write commits: its listing only tries the
    lock in the commit's round trip, then waits for it after that round trip, never inside it.
    So a connection lost (or a Ctrl-C) meanwhile cannot make the committed write's outcome
    unknown: it is acknowledged, and only the handle, whose session lock went with the
    connection, is latched after it."""
    url = make_pg_store(set_up_database(pg_server), tmp_path)
    with open_with_keys(url) as store:
        store.create_session("a").close()
    with open_with_keys(url) as store, store.open_session("a") as session, \
            psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_index_lock_key(url),))  # as a rebuild does
        outcome = _append_cut_off(url, session, _WAITING_FOR_THE_LOCK,
                                  lambda: holder.execute("SELECT pg_advisory_unlock_all()"))
        assert outcome == [None]
        with pytest.raises(DurabilityError, match="connection was lost"):
            session.append_items([{"n": 2}])
    with open_with_keys(url) as store:
        assert store.read_items("a") == [{"n": 1}]
    assert verify_with_seed(url) == (0, [])


def test_a_line_refused_as_it_commits_leaves_the_write_and_a_stale_listing(pg_server: PostgresServer,
                                                                           tmp_path: Path) -> None:
    """The line's transaction fails at its commit (a deferred check), which the server reports at
    the round trip's Sync: the write stands, the listing is stale, and the handle goes on."""
    url = make_pg_store(set_up_database(pg_server), tmp_path)
    with open_with_keys(url) as store:
        store.create_session("a").close()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(_REFUSE_AT_COMMIT.encode())
    with open_with_keys(url) as store:
        with store.open_session("a") as session:
            session.append_items([{"n": 1}])
            session.append_items([{"n": 2}])
        assert store.read_items("a") == [{"n": 1}, {"n": 2}]
        assert [skipped.name for skipped in store.list_sessions().skipped] == ["index"]
    assert verify_with_seed(url) == (0, [])


# The writer waiting on the server for a row (the update log's, held by another transaction).
_WAITING_FOR_A_ROW = ("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'securestore%' AND "
                      "wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')")


def test_a_connection_lost_while_the_listing_waits_for_the_update_logs_row_leaves_the_write_acknowledged(
        pg_server: PostgresServer, tmp_path: Path) -> None:
    """Another transaction holds the update log's row (as a create does while its durable commit
    waits): the follower does not wait for it inside the commit's round trip either, so a
    connection lost while the listing waits leaves the committed write acknowledged."""
    url = make_pg_store(set_up_database(pg_server), tmp_path)
    with open_with_keys(url) as store:
        store.create_session("a").close()
    with open_with_keys(url) as store, store.open_session("a") as session, psycopg.connect(url) as holder:
        holder.execute((_UPDATES_LOG_ROW + " FOR UPDATE OF n").encode())
        outcome = _append_cut_off(url, session, _WAITING_FOR_A_ROW, holder.rollback)
        assert outcome == [None]
    with open_with_keys(url) as store:
        assert store.read_items("a") == [{"n": 1}]
