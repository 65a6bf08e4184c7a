"""A store handle's connection lost, at each moment it can be: while idle (the server, a pooler
or a firewall dropped it), while the handle holds a session's lock, and in the middle of a
write, inside its act. Each ends in a known outcome: replaced before use, a handle latched with
one line, or a write of which nothing was committed (its intent, act and outcome are one
transaction)."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from securestore import SecureStore, StoreConfig
from securestore.backends.postgres.link import IDLE_CHECK_SECONDS
from securestore.errors import DurabilityError, SecureStoreError, StorageError
from securestore.fs.osapi import REAL_OS
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import set_up_database
from tests.support.pg_workload import pin_acts
from tests.support.postgres import PostgresServer, make_server, remove_server, set_synchronous_standby
from tests.support.stores import make_pg_store, verify_with_seed


class Clock:
    """The handle's monotonic clock: a test moves it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = make_server(durable=True)
    try:
        yield started
    finally:
        remove_server(started)


@pytest.fixture
def url(server: PostgresServer, tmp_path: Path) -> str:
    return make_pg_store(set_up_database(server), tmp_path)


def _open(url: str, clock: Clock | None = None) -> SecureStore:
    os_api = REAL_OS if clock is None else dataclasses.replace(REAL_OS, monotonic=clock)
    return SecureStore(url, StoreConfig(lock_timeout_seconds=5.0), master_key=MASTER_KEY, environ=KEYS,
                       os_api=os_api)


def _terminate(url: str, *, waiting_on_a_lock: bool = False) -> int:
    """The server ends the store's connections to this database (the test's own excepted)."""
    sql = ("SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity WHERE datname = current_database() "
           "AND pid <> pg_backend_pid() AND application_name LIKE 'securestore%'")
    if waiting_on_a_lock:
        sql += " AND wait_event_type = 'Lock'"
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute(sql).fetchall())  # type: ignore[arg-type]


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(url: str) -> None:
    clock = Clock()
    with _open(url, clock) as store:
        store.put("s", "k", 1)
        assert _terminate(url) == 1
        clock.now += IDLE_CHECK_SECONDS + 1
        store.put("s", "k", 2)  # the check found it dead: a new connection, nothing lost
        assert store.get("s", "k") == 2
    assert verify_with_seed(url) == (0, [])


def test_a_connection_dropped_before_the_check_is_due_fails_once_in_one_line_and_the_retry_works(url: str) -> None:
    with _open(url, Clock()) as store:
        store.put("s", "k", 1)
        assert _terminate(url) == 1
        with pytest.raises(StorageError) as lost:
            store.put("s", "k", 2)  # nothing was sent: the lock it would have taken came first
        message = str(lost.value)
        assert "was lost" in message and message.endswith("; retry") and "\n" not in message
        store.put("s", "k", 2)
        assert store.get("s", "k") == 2
    assert verify_with_seed(url) == (0, [])


@pytest.mark.parametrize("idle", [False, True])
def test_a_connection_lost_while_a_session_lock_is_held_latches_the_handle(url: str, idle: bool) -> None:
    clock = Clock()
    with _open(url, clock) as store:
        session = store.open_session("s", create=True)
        session.append_items([{"n": 1}])
        assert _terminate(url) == 1
        with _open(url) as other, other.open_session("s") as taken:  # the lock died with the connection
            taken.append_items([{"n": 2}])
        clock.now += (IDLE_CHECK_SECONDS + 1) if idle else 0
        with pytest.raises(DurabilityError, match=r"the connection holding this handle's locks was lost|was lost "
                                                  r"during a") as latched:
            session.append_items([{"n": 3}])  # never written under a lock someone else may hold now
        assert "\n" not in str(latched.value) and "reopen the store" in str(latched.value)
        with pytest.raises(DurabilityError):
            store.put("t", "k", 1)  # the whole handle, not only that session
    with _open(url) as store:
        assert store.read_items("s") == [{"n": 1}, {"n": 2}]
    assert verify_with_seed(url) == (0, [])


def test_a_connection_lost_in_the_middle_of_a_write_ends_in_a_known_outcome(url: str) -> None:
    with _open(url) as store, store.open_session("s", create=True) as session:
        session.append_items([{"n": 1}])
    errors: list[BaseException] = []

    def write() -> None:
        with _open(url) as writer, writer.open_session("s") as held:
            try:
                held.append_items([{"n": 2}])  # its intent is written, then its act waits on a pinned row
            except SecureStoreError as exc:
                errors.append(exc)

    pin = pin_acts(url)
    try:
        thread = threading.Thread(target=write)
        thread.start()
        deadline = time.monotonic() + 30
        while _terminate(url, waiting_on_a_lock=True) == 0:  # the writer, inside its act
            assert time.monotonic() < deadline and thread.is_alive(), "the write never reached its act"
            time.sleep(0.01)
    finally:
        pin.rollback()
        pin.close()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DurabilityError), errors
    assert "\n" not in str(errors[0]) and "nothing of it was committed" in str(errors[0])
    # The intent, the act and the outcome are one transaction: the lost connection took all
    # three, so there is not even a dangling intent to settle.
    assert verify_with_seed(url) == (0, [])
    with _open(url) as store:
        store.open_session("s").close()
        assert store.read_items("s") == [{"n": 1}]
    assert verify_with_seed(url) == (0, [])


def test_a_store_change_interrupted_while_it_commits_latches_the_handle(url: str, server: PostgresServer) -> None:
    """Ctrl-C while a store change's COMMIT is in flight (here it waits for a synchronous standby
    that never answers): whether it committed is unknown, so the handle is latched, in one line,
    and the store verifies whatever the outcome was."""
    with _open(url) as store:
        store.create_session("b").close()
    main = threading.get_ident()

    def interrupt_while_it_commits() -> None:
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                                  ).fetchone() == (0,):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)

    set_synchronous_standby(server, "nobody")
    try:
        with _open(url) as store:
            thread = threading.Thread(target=interrupt_while_it_commits)
            thread.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    store.delete_session("b")
            finally:
                thread.join(timeout=60)
                set_synchronous_standby(server, None)
            with pytest.raises(DurabilityError, match="interrupted while committing") as latched:
                store.create_session("c")
            assert "\n" not in str(latched.value)
    finally:
        set_synchronous_standby(server, None)
    assert verify_with_seed(url) == (0, [])
