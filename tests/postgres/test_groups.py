"""A store change on PostgreSQL is one transaction (PgLink.grouped): its intent, its act and its
outcome commit together, with one WAL flush. Nobody sees an intent before its act has
committed with it; an act that fails inside the database rolls back to its savepoint, so its
intent and its failed outcome still commit and the handle goes on; and threads sharing one
handle never send into each other's transaction."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from securestore import SecureStore, StoreConfig
from securestore.backends.postgres.root import open_pg_root
from securestore.backends.local.sweeps import SWEEP_MARKER
from securestore.backends.tree import Expected
from securestore.backends.postgres.url import parse_target
from securestore.errors import DurabilityError, LockHeldError, NotFoundError, StorageError
from securestore.fs import FsContext
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import POLLING, refuse_chunks, set_up_database, stored_contents
from tests.support.pg_workload import pin_acts
from tests.support.postgres import PostgresServer
from tests.support.raw_tree import session_path
from tests.support.stores import make_pg_store, open_with_keys, verify_with_seed

_FAIL_MARK = "make-the-act-fail"
# A fault inside the database, in the act only: the journal line carrying the mark is refused
# (audit records go to another table, so the intent and the outcome are not touched).
_INJECT = refuse_chunks("refuse_marked", f"position('{_FAIL_MARK}'::bytea in NEW.data) > 0")


@pytest.fixture
def url(pg_server: PostgresServer, tmp_path: Path) -> str:
    return make_pg_store(set_up_database(pg_server), tmp_path)


def _session_log(url: str, key: str) -> list[dict[str, object]]:
    data = stored_contents(url)[f"{session_path(key)}/audit/log.jsonl"]
    return [orjson.loads(line) for line in data.splitlines()]


def test_nobody_sees_an_intent_before_its_act_commits_with_it(url: str) -> None:
    with open_with_keys(url) as store, store.open_session("s", create=True) as session:
        session.append_items([{"n": 1}])
    before = _session_log(url, "s")
    done = threading.Event()

    def write() -> None:
        with open_with_keys(url) as writer, writer.open_session("s") as held:
            held.append_items([{"n": 2}])  # its act waits on a pinned row
        done.set()

    pin = pin_acts(url)
    thread = threading.Thread(target=write)
    try:
        thread.start()
        with psycopg.connect(url, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND datname = current_database()").fetchone() != (1,):
                assert time.monotonic() < deadline and thread.is_alive(), "the write never reached its act"
                time.sleep(0.01)
        assert _session_log(url, "s") == before  # its intent is written, but only inside its transaction
    finally:
        pin.rollback()
        pin.close()
        thread.join(timeout=60)
    assert done.is_set()
    after = _session_log(url, "s")[len(before):]
    assert [record["kind"] for record in after] == ["intent", "outcome"]
    assert after[1]["result"] == "committed"
    assert verify_with_seed(url) == (0, [])


def test_an_act_that_fails_in_the_database_keeps_its_intent_and_outcome(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(_INJECT)
    with open_with_keys(url) as store, store.open_session("s", create=True) as session:
        session.append_items([{"n": 1}])
        with pytest.raises(StorageError, match="injected fault") as failed:
            session.append_items([{"n": 2, "note": _FAIL_MARK}])
        assert "\n" not in str(failed.value)
        session.append_items([{"n": 3}])  # the handle goes on: the failure was rolled back to the act
        assert session.items() == [{"n": 1}, {"n": 3}]
    records = _session_log(url, "s")
    intents = [r for r in records if r["kind"] == "intent" and r["op"] == "journal.append"]
    outcomes = {r["txn"]: r["result"] for r in records if r["kind"] == "outcome"}
    assert [outcomes[r["seq"]] for r in intents] == ["committed", "failed", "committed"]
    assert verify_with_seed(url) == (0, [])


def test_threads_sharing_a_handle_never_write_into_each_others_transaction(url: str) -> None:
    errors: list[BaseException] = []
    with open_with_keys(url) as store:
        for key in ("a", "b", "c"):
            store.create_session(key).close()

        def write(key: str) -> None:
            try:
                with store.open_session(key) as session:
                    for n in range(25):
                        session.append_items([{"n": n}])
                        with session.turn():
                            session.append_items([{"t": n}])
                            session.slot("ext").put(n)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(key,)) for key in ("a", "b", "c")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        for key in ("a", "b", "c"):
            items = store.read_items(key)
            assert items == [item for n in range(25) for item in ({"n": n}, {"t": n})]
    assert verify_with_seed(url) == (0, [])


def test_a_group_waiting_for_a_lock_lets_no_other_thread_into_its_transaction(pg_server: PostgresServer) -> None:
    """Thread A's group waits for a lock thread B of the same handle holds (its wait lets go of
    the handle); B's own write meanwhile must wait for A's group, not join A's transaction: when
    B's write returns, it is committed, whatever A does after."""
    url = set_up_database(pg_server)
    root = open_pg_root(parse_target(url, {}), FsContext())
    with root, root.make_dir("d") as directory:
        directory.ensure_file("a")
        directory.ensure_file("b")
        held_by_b = directory.lock_plain("k", exclusive=True, timeout=1.0)
        a_waits, outcome = threading.Event(), {}

        def thread_a() -> None:
            with pytest.raises(LockHeldError), directory.group("thread A's write"):
                directory.append("a", b"from A\n", durable=True)
                a_waits.set()
                directory.lock_plain("k", exclusive=True, timeout=2.0)  # B holds it: A waits, then gives up

        def thread_b() -> None:
            a_waits.wait(timeout=30)
            directory.append("b", b"from B\n", durable=True)
            with psycopg.connect(url, autocommit=True) as other:  # B's write returned: committed?
                outcome["b seen"] = b"from B" in bytes(other.execute(
                    "SELECT coalesce(string_agg(data, ''::bytea), '') FROM securestore.chunks").fetchone()[0])
            held_by_b.release()

        threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert outcome == {"b seen": True}


def test_a_lock_inside_a_group_waits_on_the_server_and_a_wait_that_runs_out_leaves_the_group_usable(
        pg_server: PostgresServer) -> None:
    url = set_up_database(pg_server)
    with open_pg_root(parse_target(url, {}), FsContext()) as first, first.make_dir("d") as setup:
        setup.ensure_file("f")
    holder_done, results = threading.Event(), {}
    holder_has_it = threading.Event()

    def holder() -> None:
        with open_pg_root(parse_target(url, {}), FsContext()) as root, root.open_dir("d") as directory:
            with directory.group("the holder's change"):
                directory.lock_plain("k", exclusive=True, timeout=5.0)
                holder_has_it.set()
                results["waiter timed out"] = waiter_times_out.wait(timeout=30)
                holder_done.set()  # the commit follows at once: the lock goes with it

    def waiter() -> None:
        holder_has_it.wait(timeout=30)
        with open_pg_root(parse_target(url, {}), FsContext()) as root, root.open_dir("d") as directory:
            with directory.group("a change that gives up"):
                with pytest.raises(LockHeldError, match=r"d/k is held by server process \d+"):
                    directory.lock_plain("k", exclusive=True, timeout=0.2)
                directory.append("f", b"written after the wait ran out\n", durable=True)
            waiter_times_out.set()
            with directory.group("a change that waits"):
                directory.lock_plain("k", exclusive=True, timeout=30.0)
                results["granted after the holder's commit"] = holder_done.is_set()
                directory.append("f", b"written under the lock\n", durable=True)
            results["f"] = directory.read("f", 1024)

    waiter_times_out = threading.Event()
    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {"waiter timed out": True, "granted after the holder's commit": True,
                       "f": b"written after the wait ran out\nwritten under the lock\n"}


def test_a_group_finds_the_directories_it_replaced_under_its_lock(pg_server: PostgresServer) -> None:
    """A group knows the child directories of a directory it holds a lock in (read with the
    lock: locks.py `lock_in_group`) or made, without asking: a directory the group then renames
    away, moves in or removes, and one it puts in its place, are found as they now are, in the
    group and after it, and so is one another handle replaced before the lock was granted."""
    url = set_up_database(pg_server)
    with open_pg_root(parse_target(url, {}), FsContext()) as root, root.make_dir("d") as directory:
        directory.make_dir("entries").close()
        directory.make_dir("gone").close()
        with root.make_dir("elsewhere") as unlocked, unlocked.make_dir("moved") as moved:
            moved.write_new("mark", b"moved in\n")
        with directory.group("a rebuild"):
            directory.lock_plain("lock", exclusive=True, timeout=1.0)
            with directory.make_dir("fresh") as fresh, fresh.make_dir("sub") as sub:
                fresh.write_new("mark", b"new\n")
                sub.write_new("mark", b"sub\n")
            directory.rename("entries", "old")
            directory.rename("fresh", "entries")
            directory.remove_tree("gone")
            with directory.open_dir("entries") as entries, entries.open_dir("sub") as sub:
                assert entries.read("mark", 64) == b"new\n" and sub.read("mark", 64) == b"sub\n"
            with directory.open_dir("old") as old:
                assert old.list() == []
            with pytest.raises(NotFoundError):
                directory.open_dir("gone")
            directory.rename("old", "older")
            with pytest.raises(NotFoundError):
                directory.open_dir("old")
            with root.open_dir("elsewhere") as unlocked:  # (a directory whose children were not read)
                unlocked.rename("moved", "old", target=directory)
            with directory.open_dir("old") as old, directory.open_dir("older") as older:
                assert old.read("mark", 64) == b"moved in\n" and older.list() == []
        with open_pg_root(parse_target(url, {}), FsContext()) as other, other.open_dir("d") as elsewhere:
            elsewhere.rename("entries", "replaced")
            with elsewhere.make_dir("entries") as replaced:
                replaced.write_new("mark", b"newer\n")
        with directory.group("a note"):
            directory.lock_plain("lock", exclusive=False, timeout=1.0)
            with directory.open_dir("entries") as entries:
                assert entries.read("mark", 64) == b"newer\n"


def test_a_listing_index_replaced_from_outside_is_found_again(url: str) -> None:
    """A handle remembers where it found the listing index (PgDir.open_locked) and checks it in
    the index lock's round trip: once the index was removed from outside and rebuilt elsewhere,
    its next write lists in the new one, never in the removed one's rows."""
    with open_with_keys(url) as writer, open_with_keys(url) as other:
        with writer.create_session("a") as session:
            session.append_items([{"role": "user", "content": "first"}])
            with open_pg_root(parse_target(url, {}), FsContext()) as root:
                root.remove_tree("index")  # from outside the store
            assert other.rebuild_index() == 1  # a new index directory
            session.append_items([{"role": "user", "content": "second"}])
        page = other.list_sessions()
        assert [(summary.key, summary.items) for summary in page.sessions] == [("a", 2)]
        assert verify_with_seed(url) == (0, [])


def test_a_write_lists_itself_once_the_holder_of_the_listing_lock_lets_go(url: str) -> None:
    """A session write's listing follows its commit and only tries the index lock there
    (TreeDir.follow_commit). While another client holds that lock exclusively (as a compaction
    does), the write is committed all the same, and its listing waits for the lock after the
    commit's round trip, then lists the write (it is not skipped, nor left stale)."""
    with open_with_keys(url) as store, open_with_keys(url) as reader, \
            store.open_session("a", create=True) as session:
        session.append_items([{"n": 1}])
        with psycopg.connect(url, autocommit=True) as holder:
            index = holder.execute("SELECT id FROM securestore.nodes WHERE parent = 0 AND name = 'index'").fetchone()
            assert index is not None
            digest = hashlib.sha256(f"securestore\0{index[0]}\0lock".encode()).digest()
            holder.execute("SELECT pg_advisory_lock(%s)", (int.from_bytes(digest[:8], "big", signed=True),))
            committed_while_held = threading.Event()

            def release_once_the_write_committed() -> None:
                deadline = time.monotonic() + 30
                with psycopg.connect(url, autocommit=True) as watcher:
                    while time.monotonic() < deadline:  # committed, and its listing polling for the lock
                        if len(reader.read_items("a")) == 2 and watcher.execute(POLLING).fetchone() is not None:
                            committed_while_held.set()
                            break
                        time.sleep(0.01)
                holder.execute("SELECT pg_advisory_unlock_all()")

            thread = threading.Thread(target=release_once_the_write_committed)
            thread.start()
            try:
                session.append_items([{"n": 2}])
            finally:
                thread.join(timeout=60)
        assert committed_while_held.is_set()
        page = store.list_sessions()
        assert [(summary.key, summary.items) for summary in page.sessions] == [("a", 2)]
        assert page.skipped == []
    assert verify_with_seed(url) == (0, [])


def test_a_create_stands_when_its_listing_cannot_get_the_lock(url: str) -> None:
    """A create lists its session inside its own store change (store_dir.Listing). When the
    listing's lock stays held past the timeout, the create still commits, whole and audited, and
    the index says it is stale until a rebuild lists the session."""
    config = StoreConfig(lock_timeout_seconds=0.2)
    with SecureStore(url, config, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("a").close()  # (the handle knows where the index is from now on)
        with psycopg.connect(url, autocommit=True) as holder:
            index = holder.execute("SELECT id FROM securestore.nodes WHERE parent = 0 AND name = 'index'").fetchone()
            assert index is not None
            digest = hashlib.sha256(f"securestore\0{index[0]}\0lock".encode()).digest()
            holder.execute("SELECT pg_advisory_lock(%s)", (int.from_bytes(digest[:8], "big", signed=True),))
            with store.create_session("b") as session:
                session.append_items([{"n": 1}])
            assert store.index_stale
        assert store.rebuild_index() == 2
        assert sorted(summary.key for summary in store.list_sessions().sessions) == ["a", "b"]
    assert verify_with_seed(url) == (0, [])


def test_a_read_asked_ahead_never_answers_for_the_file_after_the_group_wrote(pg_server: PostgresServer) -> None:
    """Reads asked ahead (TreeDir.expect_reads) stand in for the same reads until the group writes
    anything: an answer that arrived before a write, or one asked before a write that was sent
    with it, is dropped and the read asks again."""
    url = set_up_database(pg_server)
    with open_pg_root(parse_target(url, {}), FsContext()) as root, root.make_dir("d") as directory:
        directory.write_new("f", b"one\n")
        with directory.group("a change"):
            directory.lock_plain("lock", exclusive=True, timeout=1.0)
            directory.expect_reads([Expected("read", "f", 64), Expected("tail", "f")])
            assert directory.read("f", 64) == b"one\n"  # (answered with the reads asked ahead)
            directory.append("f", b"two\n", durable=True)
            assert directory.read_tail("f", 64) == (8, b"one\ntwo\n")
        with directory.group("another"):
            directory.lock_plain("lock", exclusive=True, timeout=1.0)
            directory.expect_reads([Expected("entry", "f"), Expected("tail", "f")])
            directory.append("f", b"three\n", durable=True)  # queued after the reads, sent with them
            assert directory.read_tail("f", 64) == (14, b"one\ntwo\nthree\n")
            entry = directory.entry("f")
            assert entry is not None and entry.size == 14


def test_a_thread_waiting_to_open_a_held_session_holds_nothing_of_its_handle(url: str) -> None:
    """Opening a session waits for its writer lock before the open's group begins: meanwhile
    another thread of the same handle writes to another session."""
    config = StoreConfig(lock_timeout_seconds=60.0)
    with SecureStore(url, config, master_key=MASTER_KEY, environ=KEYS) as store, \
            SecureStore(url, config, master_key=MASTER_KEY, environ=KEYS) as other:
        store.create_session("free").close()
        held = other.create_session("held")
        opened: list[object] = []
        waiter = threading.Thread(target=lambda: opened.append(store.open_session("held")))
        waiter.start()
        try:
            with psycopg.connect(url, autocommit=True) as watcher:  # the waiter is trying the lock
                deadline = time.monotonic() + 30
                while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                      "'%pg_try_advisory_lock(%' AND datname = current_database()").fetchone() == (0,):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            writer = threading.Thread(target=lambda: store.put("free", "slot", 1))
            writer.start()
            writer.join(timeout=30)
            assert not writer.is_alive()  # it wrote while the other thread still waited
            assert waiter.is_alive() and not opened
        finally:
            held.close()
            waiter.join(timeout=60)
        assert len(opened) == 1
        opened[0].close()  # type: ignore[attr-defined]
    assert verify_with_seed(url) == (0, [])


@pytest.mark.parametrize("threshold", ["0", "5"])
def test_a_failed_act_keeps_the_handles_prepared_statements(url: str, threshold: str) -> None:
    """The rollback to a failed act's savepoint must not drop the statements the handle prepared
    (psycopg, had it prepared any itself, would answer a ROLLBACK with DEALLOCATE ALL): the
    handle goes on, and so do its reads and writes."""
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(_INJECT)
    config = StoreConfig(lock_timeout_seconds=5.0)
    with SecureStore(f"{url}?securestore_prepare_threshold={threshold}", config, master_key=MASTER_KEY,
                     environ=KEYS) as store:
        for n in range(7):  # deletes and writes: statements run often enough to be prepared
            store.create_session(f"gone{n}").close()
            store.delete_session(f"gone{n}")
        with store.open_session("s", create=True) as session:
            for n in range(6):
                session.append_items([{"n": n}])
            with pytest.raises(StorageError, match="injected fault"):
                session.append_items([{"n": "x", "note": _FAIL_MARK}])
            session.append_items([{"n": 6}])
            assert session.items() == [{"n": n} for n in range(7)]
    assert verify_with_seed(url) == (0, [])


def test_a_create_that_sweeps_lists_its_session_at_once(url: str) -> None:
    """A create whose store change sweeps (a sweep marker is there) holds the listing index's lock
    exclusively in its transaction; its own listing, in the same transaction, is covered by that
    lock instead of waiting for it, and every handle lists the session."""
    with SecureStore(url, StoreConfig(lock_timeout_seconds=2.0), master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("a").close()
        with open_pg_root(parse_target(url, {}), FsContext()) as root:
            root.ensure_file(SWEEP_MARKER)  # as a failed multi-step change leaves it (sweeps.note_leftover)
        store.create_session("b").close()
        assert not store.index_stale
    with open_with_keys(url) as other:
        assert sorted(summary.key for summary in other.list_sessions(order="created").sessions) == ["a", "b"]
    assert verify_with_seed(url) == (0, [])


def test_a_write_sent_with_a_lock_wait_that_times_out_is_still_checked(pg_server: PostgresServer) -> None:
    """A write queued in a group rides with the next round trip, a lock wait's too; when that
    wait times out (a handled failure), the write's check still runs: here it fails (a rename of
    a file that is not there), so the group is poisoned and nothing of it commits."""
    url = set_up_database(pg_server)
    with open_pg_root(parse_target(url, {}), FsContext()) as root, root.make_dir("d") as directory:
        with directory.group("a first change"):
            index, _ = directory.open_locked("idx", "lock", exclusive=False, timeout=1.0)  # (found from now on)
        with psycopg.connect(url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (directory.link.lock_key(index.node, "lock"),))
            with pytest.raises(DurabilityError, match="nothing of it was committed"):
                with directory.group("a change"):
                    directory.lock_plain("other", exclusive=True, timeout=1.0)
                    directory.expect_locked("idx", "lock", exclusive=False)  # tried ahead: not granted
                    assert directory.entry("nothing") is None
                    directory.rename("missing", "elsewhere")  # queued: its check fails when it is answered
                    with pytest.raises(NotFoundError):
                        directory.open_locked("idx", "lock", exclusive=False, timeout=0.3)  # waits, times out
        assert directory.list() == ["idx"]
