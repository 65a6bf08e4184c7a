"""The listing index: newest-first pages, cursors, a stamp that moves on every write, O(page)
reads, rebuild, and damaged or foreign entries skipped and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import FsRaw, PgRaw, raw_tree, session_path
from tests.support.stores import WRITER_CHILD, run_cli_here

from securestore import Limits, SecureStore, StoreConfig, UsageError, verify_store
from securestore.audit.chain import parse_record
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from securestore.core.policy import encode_name

pytestmark = pytest.mark.both_backends

CHILD = WRITER_CHILD


def fill(store: SecureStore, count: int, clock: dict[str, int]) -> None:
    for i in range(count):
        clock["now"] += 1000
        with store.create_session(f"s{i:03d}", metadata={"workspace": f"ws{i % 3}", "title": f"t{i}"}) as s:
            s.append_items([{"i": i}] * (i % 4))


@pytest.fixture
def clocked(root: Path):  # noqa: ANN201
    clock = {"now": 1_800_000_000_000}
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, clock=lambda: clock["now"]) as store:
        yield store, clock


def test_pages_newest_first_with_cursors(clocked) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 23, clock)
    assert _keys(store, page_size=5) == [f"s{i:03d}" for i in reversed(range(23))]  # each once, newest first
    first = store.list_sessions(page_size=1).sessions[0]
    assert (first.key, first.items, first.title, first.workspace) == ("s022", 2, "t22", "ws1")


def test_a_write_moves_a_session_to_the_front_and_deletes_drop_it(clocked) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 6, clock)
    clock["now"] += 1000
    with store.open_session("s002") as session:
        session.append_items([{"late": True}])
    assert [s.key for s in store.list_sessions(page_size=3).sessions] == ["s002", "s005", "s004"]
    assert store.most_recent().key == "s002"  # type: ignore[union-attr]
    store.delete_session("s005")
    assert "s005" not in [s.key for s in store.list_sessions(page_size=10).sessions]
    with store.open_session("s001") as session:
        session.update_metadata(title="renamed")
    assert store.most_recent().title == "renamed"  # type: ignore[union-attr]


def test_created_order_and_workspace_filter(clocked) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 9, clock)
    with store.open_session("s000") as session:  # updated last, created first
        session.append_items([{"x": 1}])
    created = [s.key for s in store.list_sessions(page_size=20, order="created").sessions]
    assert created == [f"s{i:03d}" for i in reversed(range(9))]
    ws = [s.key for s in store.list_sessions(page_size=2, workspace="ws0").sessions]
    assert ws == ["s000", "s006"]
    assert store.most_recent(workspace="ws2").key == "s008"  # type: ignore[union-attr]


def test_the_first_page_reads_only_what_it_returns(root: Path) -> None:
    clock = {"now": 1_800_000_000_000}
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, clock=lambda: clock["now"]) as store:
        fill(store, 200, clock)
    opened: list[str] = []
    api = instrumented(REAL_OS, lambda name, args: opened.append(str(args[0])) if name == "open" else None)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=api) as store:
        opened.clear()
        page = store.list_sessions(page_size=10)
    assert len(page.sessions) == 10
    entries = [name for name in opened if name.endswith(".json") and name.startswith(("k-", "h-"))]
    assert entries == []  # the update log's lines carry the summaries: no entry, no session is opened
    assert not [name for name in opened if name in ("manifest.jsonl", "snapshot.json", "journal.log")]


def test_stamp_moves_on_every_write_in_any_process_and_invalidates_caches(clocked, root: Path) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 2, clock)
    cache = store.listing_cache(ttl_seconds=3600)
    first = cache.get(page_size=5)
    assert cache.get(page_size=5) is first  # served from the cache
    stamp = store.index_stamp()
    writer = subprocess.Popen([sys.executable, CHILD, str(root), MASTER_KEY, "write"], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "open" and writer.stdout.readline()  # one durable write
    writer.kill()
    writer.wait()
    writer.stdout.close()
    assert store.index_stamp() != stamp
    fresh = cache.get(page_size=5)
    assert fresh is not first and fresh.sessions[0].key == "w"


def test_damaged_and_foreign_entries_are_skipped_and_reported(clocked, root: Path | str) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 3, clock)
    raw, entries = raw_tree(root), "index/entries"
    foreign = json.loads(raw.read(f"{entries}/{encode_name('s001')}.json")) | {"key": "someone-else"}
    # an entry file planted for a session whose newest line names it only (as lines too long to
    # carry a summary do), and a line carrying a planted summary
    raw.write(f"{entries}/{encode_name('s000')}.json", json.dumps(foreign | {"name": encode_name("s000")}).encode())
    raw.append("index/updates.log", json.dumps({"d": 0, "n": encode_name("s001"), "u": 1, "s": foreign}).encode()
               + b"\n" + json.dumps({"d": 0, "n": encode_name("s000"), "u": 1}).encode() + b"\n" + b"not json\n")
    page = store.list_sessions(page_size=10)
    assert [s.key for s in page.sessions] == ["s002"]
    reasons = [entry.reason for entry in page.skipped]
    assert "damaged index line" in reasons and sum("does not encode its key" in r for r in reasons) == 2


def test_rebuild_is_audited_and_recovers_a_lost_index(clocked, root: Path | str) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 4, clock)
    old_cursor = store.list_sessions(page_size=1).next_cursor
    raw_tree(root).delete("index")
    assert [s.key for s in store.list_sessions(page_size=10).sessions] == ["s003", "s002", "s001", "s000"]
    records = [parse_record(line) for line in raw_tree(root).read("audit/log.jsonl").splitlines()]
    assert any(r.kind == "intent" and r.op == "index.rebuild" for r in records)
    with pytest.raises(UsageError, match="expired"):
        store.list_sessions(page_size=1, cursor=old_cursor)
    with pytest.raises(UsageError, match="not one this store issued"):
        store.list_sessions(page_size=1, cursor="garbage")
    assert verify_store(store).ok


def test_verify_reports_a_session_whose_newest_listing_line_was_lost(clocked, root: Path | str) -> None:  # noqa: ANN001
    """A crash can lose a write's line in the update log (not durable on its own, on either
    backend) while its entry stays: the listing shows the session as of an older write. Verify
    reports it for `index rebuild` (not as tampering), and the rebuild clears it."""
    store, clock = clocked
    fill(store, 3, clock)
    clock["now"] += 1000
    with store.open_session("s001") as session:
        session.append_items([{"after": "the fill"}])
    raw, updates = raw_tree(root), "index/updates.log"
    raw.write(updates, b"".join(raw.lines(updates)[:-1]))  # its line lost, as in a crash
    report = verify_store(store)
    assert report.ok
    assert report.index == [f"index: session {encode_name('s001')} is listed as of another write than its index "
                            "entry says; run `securestore index rebuild`"]
    store.rebuild_index()
    assert verify_store(store).index == []


def test_a_lost_update_log_is_started_again_by_the_next_write(clocked, root: Path | str) -> None:  # noqa: ANN001
    store, clock = clocked
    fill(store, 3, clock)
    raw = raw_tree(root)
    raw.delete("index/updates.log")
    raw.delete("index/created.log")
    clock["now"] += 1000
    with store.open_session("s001") as session:
        session.append_items([{"after": "the loss"}])
    assert not store.index_stale  # the write's note made the logs again, with its own line
    assert [s.key for s in store.list_sessions(page_size=10).sessions] == ["s001"]


def test_an_oversize_index_is_a_clear_error(root: Path) -> None:
    config = StoreConfig(limits=Limits(max_index_bytes=1024))
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(30):
            store.put(f"s{i}", "x", i)
        with pytest.raises(UsageError, match="exceeds 1024; run `securestore index rebuild`"):
            store.list_sessions()


def test_cli_sessions_list_and_index_rebuild(root: Path) -> None:
    env = {"SECURESTORE_ROOT": str(root)}
    for key, ws in (("a", "x"), ("b", "y"), ("c", "x")):
        run_cli_here("session", "append", key, json.dumps({"ws": ws}), env=env)
    page = json.loads(run_cli_here("sessions", "list", "--json", "--limit", "2", env=env).stdout)
    assert [s["key"] for s in page["sessions"]] == ["c", "b"] and page["next_cursor"]
    rest = json.loads(run_cli_here("sessions", "list", "--json", "--cursor", page["next_cursor"], env=env).stdout)
    assert [s["key"] for s in rest["sessions"]] == ["a"]
    created = run_cli_here("sessions", "list", "--order", "created", env=env).stdout.splitlines()
    assert [line.split("\t")[0] for line in created] == ["c", "b", "a"]
    assert run_cli_here("index", "rebuild", env=env).returncode == 0
    assert run_cli_here("sessions", "list", "--cursor", "zz", env=env).returncode == 2
    assert run_cli_here("audit", "verify", env=env).returncode == 0


def test_listing_a_fresh_store_writes_nothing(store: SecureStore, root: Path | str) -> None:
    before = raw_tree(root).snapshot()
    page = store.list_sessions()
    assert page.sessions == [] and page.next_cursor is None
    assert raw_tree(root).snapshot() == before


def test_more_sessions_than_the_cap_is_a_clear_error(root: Path | str) -> None:
    from securestore import LimitExceededError

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(4):
            store.put(f"s{i}", "x", i)
    tight = StoreConfig(limits=Limits(max_sessions=2))
    with SecureStore(root, tight, master_key=MASTER_KEY, environ=KEYS) as store:
        with pytest.raises(LimitExceededError, match="more than 2"):
            store.scan_sessions()
        with pytest.raises(LimitExceededError, match="more than 2"):
            store.rebuild_index()


@pytest.mark.fs_only  # observes the files opened through the OS layer
def test_a_slot_write_restates_the_listed_item_count_without_reading_the_transcript(store: SecureStore,
                                                                                     root: Path) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 1}, {"n": 2}, {"n": 3}])
    opened: list[str] = []
    store.ctx.os = instrumented(REAL_OS, lambda call, args: opened.extend(
        arg for arg in args if call == "open" and isinstance(arg, str)))
    store.put("s", "slot", {"v": 1})
    store.ctx.os = REAL_OS
    assert "manifest.jsonl" in opened  # the hook saw the put's opens
    assert "snapshot.json" not in opened  # the transcript was not replayed (recovery reads the journal's tail only)
    assert store.list_sessions().sessions[0].items == 3
    # With no entry to take the count from, the write counts the transcript instead.
    (root / "index" / "entries" / f"{encode_name('s')}.json").unlink()
    store.put("s", "slot", {"v": 2})
    assert [(s.key, s.items) for s in store.list_sessions().sessions] == [("s", 3)]


def test_a_committed_write_is_never_reported_as_failed_by_the_listing_update(store: SecureStore,
                                                                             root: Path | str) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 1}])
        session.append_items([{"n": 2}])
    raw, journal = raw_tree(root), f"{session_path('s')}/journal.log"
    lines = raw.lines(journal)
    raw.write(journal, lines[0].replace(b'"n":1', b'"n":7') + lines[1])  # a damaged transcript to count
    for entry in raw.list("index/entries"):
        raw.delete(f"index/entries/{entry}")  # and no listed count to keep (entries are not fsynced)
    assert store.put("s", "slot", {"x": 1}) == 1  # committed, so reported as done
    assert store.get("s", "slot") == {"x": 1}
    assert [s.name for s in store.list_sessions().skipped] == ["index"]  # the index says it may be stale


def test_an_entry_rewritten_in_place_with_a_shorter_summary_stays_valid(store: SecureStore, root: Path | str,
                                                                        backend: str) -> None:
    raw, entry = raw_tree(root), f"index/entries/{encode_name('s')}.json"
    with store.create_session("s") as session:
        session.update_metadata(title="a long title " * 20)
        inode, long_size = raw.identity(entry), raw.size(entry)
        session.update_metadata(title="short")
    assert raw.identity(entry) == inode  # in place, no rename
    if backend == "fs":  # a file rewritten in place keeps its length (padded); a row is replaced whole
        assert raw.size(entry) == long_size
    assert isinstance(json.loads(raw.read(entry)), dict)  # no stale tail of the longer summary
    (summary,) = store.list_sessions().sessions
    assert summary.title == "short" and store.list_sessions().skipped == []


COMPACT_AT_2K = StoreConfig(limits=Limits(index_compact_bytes=2048))


def _keys(store: SecureStore, page_size: int = 7) -> list[str]:
    """Every listed key, page after page through the cursors."""
    keys, cursor = [], None
    while True:
        page = store.list_sessions(page_size=page_size, cursor=cursor)
        keys += [s.key for s in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            return keys


def test_a_hot_session_keeps_the_update_log_compact_and_every_page_the_same(root: Path | str) -> None:
    clock = {"now": 1_800_000_000_000}
    raw, updates = raw_tree(root), "index/updates.log"
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS, clock=lambda: clock["now"]) as store:
        fill(store, 20, clock)
        store.delete_session("s003")
        compacted = 0
        longest = max(len(line) + 1 for line in raw.read(updates).splitlines())
        with store.open_session("s005") as hot:
            for i in range(300):
                clock["now"] += 1000
                size = raw.size(updates)
                hot.slot("counter").put(i)
                if raw.size(updates) < size:  # this write compacted the log: same pages
                    compacted += 1
                    assert _keys(store) == ["s005"] + [f"s{i:03d}" for i in reversed(range(20)) if i not in (3, 5)]
                # the log stays within about twice one line per session: never the 300 lines of the hot session
                assert raw.size(updates) <= max(2048, 2 * 19 * longest) + 2 * longest
        assert compacted >= 3
        clock["now"] += 1000
        store.put("s001", "slot", "after")  # another session moves to the front past the hot one
        expected = ["s001", "s005"] + [f"s{i:03d}" for i in reversed(range(20)) if i not in (1, 3, 5)]
        assert _keys(store) == expected
        lines = raw.read(updates).splitlines()
        assert not any(encode_name("s003").encode() in line for line in lines)  # its tombstone went too
        assert verify_store(store).ok
        store.rebuild_index()
        assert _keys(store) == expected and verify_store(store).index == []
        rebuilt = len(raw.lines(updates))
    assert raw.size(updates) > 2048  # past the floor: only the record says it is not due
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as fresh:  # (nothing remembered)
        fresh.put("s001", "slot", "after the rebuild")
    assert len(raw.lines(updates)) == rebuilt + 1  # the rebuilt log is recorded as compact: not compacted again


@pytest.mark.fs_only  # a shared flock on the index lock file stands for another appender: disk only
def test_compaction_never_waits_for_a_writer_and_runs_once_it_is_gone(root: Path) -> None:
    import fcntl

    updates = root / "index" / "updates.log"
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("hot", "slot", 0)
        with open(root / "index" / "lock", "rb") as appender:
            fcntl.flock(appender, fcntl.LOCK_SH)  # another writer, mid-append
            for i in range(100):
                store.put("hot", "slot", i)
            grown = updates.stat().st_size
            assert grown > 2048  # skipped while the lock is shared: no write waited for it
        store.put("hot", "slot", "last")
        assert updates.stat().st_size < 400  # the next write compacted: one line
        assert _keys(store) == ["hot"]


@pytest.mark.fs_only  # counts OS calls (on PostgreSQL the same check is round trips: tools/bench_pg.py)
def test_a_write_past_the_floor_does_not_read_the_compaction_record_until_compaction_may_be_due(
        root: Path) -> None:
    """Once a handle knows the update log's compacted size, compaction is not due before the log
    is twice that: no write reads the record to find out (every one did, past the floor)."""
    looked: list[str] = []

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name in ("open", "lstat_at") and str(args[0]).endswith("updates.compacted"):
            looked.append(name)

    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(30):
            store.put(f"s{i:02d}", "slot", i)
        updates = root / "index" / "updates.log"
        for i in range(200):  # until a write compacts the log (then the handle knows its size)
            size = updates.stat().st_size
            store.put(f"s{i % 30:02d}", "slot", "again")
            if updates.stat().st_size < size:
                break
        compacted = updates.stat().st_size
        assert compacted > 2048  # past the floor: only the compacted size says it is not due
        store.ctx.os = instrumented(REAL_OS, hook)
        while updates.stat().st_size < 2 * compacted - 400:
            store.put("s00", "slot", "more")
        store.ctx.os = REAL_OS
        assert looked == []
        for _ in range(10):  # past twice it: due again, and compacted
            store.put("s00", "slot", "more")
        assert updates.stat().st_size < 2 * compacted


def _compacted_by(handle: SecureStore, raw: FsRaw | PgRaw) -> int:
    """Write 30 sessions, then again until a write of `handle` compacts the update log (the
    handle then knows its compacted size); that size."""
    updates = "index/updates.log"
    for i in range(30):
        handle.put(f"s{i:02d}", "slot", i)
    for i in range(200):
        size = raw.size(updates)
        handle.put(f"s{i % 30:02d}", "slot", "again")
        if raw.size(updates) < size:
            return raw.size(updates)
    raise AssertionError("no write of this handle compacted the update log")


def test_a_log_another_handle_shrank_is_compacted_as_due_not_as_this_handle_last_knew_it(root: Path | str) -> None:
    """A handle remembers the compacted size of the update log it compacted; once another handle
    shrinks the log (a delete's scrub here), that size is stale and must not put compaction off."""
    raw, updates = raw_tree(root), "index/updates.log"
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as first:
        known = _compacted_by(first, raw)
        assert known > 2048
        with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as other:
            for i in range(2, 30):
                other.delete_session(f"s{i:02d}")
        longest = max(len(line) + 1 for line in raw.read(updates).splitlines())
        assert raw.size(updates) < 2048 and 2048 + 2 * longest < 2 * known
        largest, compacted = 0, False
        for i in range(100):
            size = raw.size(updates)
            first.put("s00", "slot", f"more{i}")
            largest = max(largest, size)
            if raw.size(updates) < size:
                compacted = True
                break
        assert compacted and largest <= 2048 + longest  # due past the floor, not past twice what it knew


def test_a_log_replaced_and_regrown_past_this_handles_last_append_is_caught_by_its_identity(
        root: Path | str) -> None:
    """Another handle that never compacts (its own floor) shrinks the log by deletes, then
    writes it past this handle's last size: no smaller log is ever seen here, but another file
    is, and the size this handle remembered is not believed."""
    raw, updates = raw_tree(root), "index/updates.log"
    never = StoreConfig(limits=Limits(index_compact_bytes=1 << 30))
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as first:
        known = _compacted_by(first, raw)
        first.put("s00", "slot", "one more")
        last = raw.size(updates)
        with SecureStore(root, never, master_key=MASTER_KEY, environ=KEYS) as other:
            for i in range(2, 30):
                other.delete_session(f"s{i:02d}")
            assert raw.size(updates) < 2048
            while raw.size(updates) <= last:
                other.put("s01", "slot", f"regrow {raw.size(updates)}")
        longest = max(len(line) + 1 for line in raw.read(updates).splitlines())
        assert 2 * known > raw.size(updates) + 4 * longest  # the remembered size would put it off
        size = raw.size(updates)
        first.put("s00", "slot", "after the regrowth")
        assert raw.size(updates) < size  # due past the floor, and this write compacted it


def test_a_recorded_compacted_size_larger_than_the_log_is_not_believed(root: Path | str) -> None:
    """Believed, it would put compaction off for good (and verify would pass): the log only
    grows after a compaction, so no compaction ever recorded it."""
    raw, updates, stamp = raw_tree(root), "index/updates.log", "index/updates.compacted"
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(100):
            store.put("hot", "slot", i)
        identity = raw.read(stamp).split()[0]  # a compaction's record: the live log's identity
    raw.write(stamp, identity + b" " + str(1 << 40).encode() + b"\n")
    compactions = 0
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(60):
            size = raw.size(updates)
            store.put("hot", "slot", f"value {i}")
            compactions += raw.size(updates) < size
    assert compactions >= 1 and raw.read(stamp).split()[0] != identity


def test_a_planted_tree_of_any_depth_at_the_compaction_record_never_fails_the_rebuild(root: Path | str) -> None:
    """Deeper than the store ever nests (which the removal refuses on disk): moved aside in one
    rename, so the rebuild that verify asks for succeeds, and compaction runs again."""
    raw, updates = raw_tree(root), "index/updates.log"
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("hot", "slot", 0)
        raw.make_dir("index/updates.compacted")
        for depth in range(1, 21):
            raw.make_dir("index/updates.compacted" + "/d" * depth)
        assert len(verify_store(store).index) == 1
        store.rebuild_index()
        assert verify_store(store).index == [] and raw.is_file("index/updates.compacted")
        compactions = 0
        for i in range(60):
            size = raw.size(updates)
            store.put("hot", "slot", i)
            compactions += raw.size(updates) < size
        assert compactions >= 1


@pytest.mark.fs_only  # the order of fsync and rename OS calls
def test_a_compacted_log_is_durable_before_it_replaces_the_old_one(root: Path) -> None:
    events: list[tuple[str, str]] = []

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name == "fsync" and isinstance(args[0], int):
            events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{args[0]}")).name))
        elif name == "replace":
            events.append(("replace", str(args[1])))

    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(40):
            store.put("hot", "slot", i)
        store.ctx.os = instrumented(REAL_OS, hook)
        for _ in range(100):
            store.put("hot", "slot", "more")
            if ("replace", "updates.log") in events:
                break
        store.ctx.os = REAL_OS
    at = events.index(("replace", "updates.log"))
    assert events[at - 1][0] == "fsync" and events[at - 1][1].startswith(".tmp-")  # its bytes first
    assert events[at + 1] == ("fsync", "index")  # then the rename itself


@pytest.mark.fs_only  # the order of write, fsync and unlink OS calls
def test_a_deleted_session_leaves_the_index_at_once_and_its_tombstone_is_durable_first(root: Path) -> None:
    events: list[tuple[str, str]] = []

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name == "fsync" and isinstance(args[0], int):
            events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{args[0]}")).name))
        elif name == "write" and isinstance(args[0], int):
            events.append(("write", Path(os.readlink(f"/proc/self/fd/{args[0]}")).name))
        elif name == "unlink":
            events.append(("unlink", str(args[0])))

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        for key in ("keep", "victim"):
            with store.create_session(key, metadata={"title": f"title of {key}", "workspace": f"/srv/{key}"}) as s:
                s.append_items([{"n": 1}])
        store.ctx.os = instrumented(REAL_OS, hook)
        store.delete_session("victim")
        store.ctx.os = REAL_OS
        assert [s.key for s in store.list_sessions().sessions] == ["keep"]
        assert [s.key for s in store.list_sessions(order="created").sessions] == ["keep"]
        assert verify_store(store).ok
    victim = encode_name("victim")
    tombstone = events.index(("write", "updates.log"))
    removed = events.index(("unlink", f"{victim}.json"))
    assert ("fsync", "updates.log") in events[tombstone:removed]  # a lost tombstone cannot list it again
    for path in (root / "index").rglob("*"):  # its key, title and workspace are gone from the index
        if path.is_file():
            data = path.read_bytes()
            assert victim.encode() not in data and b"title of victim" not in data and b"/srv/victim" not in data, path


def test_a_cursor_on_a_rewritten_log_expires_even_when_the_inode_is_the_same(clocked,  # noqa: ANN001
                                                                              root: Path | str) -> None:
    store, clock = clocked
    fill(store, 12, clock)
    cursor = store.list_sessions(page_size=5).next_cursor
    raw, updates = raw_tree(root), "index/updates.log"
    lines = raw.lines(updates)
    identity = raw.identity(updates)
    raw.write(updates, b"".join(lines[:-2] + [lines[-1], lines[-2]]))  # same file, same size, other lines
    assert raw.identity(updates) == identity
    with pytest.raises(UsageError, match="expired"):
        store.list_sessions(page_size=5, cursor=cursor)


@pytest.mark.parametrize("plant", ["directory", "oversized"])
def test_a_planted_compaction_record_neither_stops_nor_repeats_compaction_for_good(root: Path | str,
                                                                                    plant: str) -> None:
    raw, stamp = raw_tree(root), "index/updates.compacted"
    with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("hot", "slot", 0)
        if plant == "directory":
            raw.make_dir(stamp)
        else:
            raw.write(stamp, b"9" * 100)
        updates = "index/updates.log"
        compactions = 0
        for i in range(60):
            size = raw.size(updates)
            store.put("hot", "slot", i)
            compactions += raw.size(updates) < size
        assert [s.key for s in store.list_sessions().sessions] == ["hot"]
        assert not any("stale" in s.reason for s in store.list_sessions().skipped)
    if plant == "directory":
        assert compactions == 0  # nowhere to record a compaction: none, rather than one per write
        with SecureStore(root, COMPACT_AT_2K, master_key=MASTER_KEY, environ=KEYS) as store:
            assert verify_store(store).index == [
                "index: updates.compacted is not a file, so the update log is never compacted; run "
                "`securestore index rebuild`"]
            store.rebuild_index()  # what verify says to do: compaction runs again
            assert verify_store(store).index == [] and raw.is_file(stamp)
            for i in range(60):
                size = raw.size(updates)
                store.put("hot", "slot", i)
                compactions += raw.size(updates) < size
        assert compactions >= 1
    else:
        # rewritten by the first one; after it, one compaction per ~2 KiB of lines, not per write
        assert 1 <= compactions <= 6 and raw.size(stamp) < 64


def test_a_delete_leaves_the_listing_under_the_store_lock_and_a_re_created_session_stays_listed(
        root: Path | str) -> None:
    """A delete's tombstone is written inside its store change, so a re-create of the same key
    (under the store lock too) is always listed after it; and the delete's scrub, even one that
    runs late, removes only the lines up to the tombstone, never the re-created session's."""
    from securestore.backends.local.index import INDEX_DIR
    from securestore.backends.local.index_compact import CompactionPolicy, scrub_deleted
    from securestore.errors import LockHeldError

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store, \
            SecureStore(root, StoreConfig(lock_timeout_seconds=0.2), master_key=MASTER_KEY, environ=KEYS) as other:
        with store.create_session("x") as session:
            session.append_items([{"n": 0}])
        created = store.describe_session("x").created_ms
        noted, tried = store.catalog.note_gone, []

        def note_gone(name: str, created_ms: int | None = None) -> None:
            try:
                other.create_session("y").close()
                tried.append("created meanwhile")
            except LockHeldError:
                tried.append("store lock held")
            noted(name, created_ms)

        store.catalog.note_gone = note_gone  # type: ignore[method-assign]
        store.delete_session("x")
        assert tried == ["store lock held"]
        with other.create_session("x") as again:
            again.append_items([{"n": 1}])
        with store.backend.root.open_dir(INDEX_DIR) as index:  # a scrub of the deleted one, run late
            assert scrub_deleted(index, encode_name("x"), CompactionPolicy(1 << 20, 1 << 22), 1.0, created)
        for order in ("updated", "created"):
            assert [s.key for s in store.list_sessions(order=order).sessions] == ["x"]  # type: ignore[arg-type]
        assert store.list_sessions().sessions[0].items == 1
        assert verify_store(store).ok
