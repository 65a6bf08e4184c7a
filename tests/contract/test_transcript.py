"""The transcript as a chain of journal segments: a turn costs the same whatever the session's
length, a tail read touches only the segments it needs, a seal copies nothing, a clear takes
what it hid off the disk, and the trail proves every segment."""

from __future__ import annotations

import pytest

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import RawBase, raw_tree, session_path
from tests.support.stores import seed_of, session_dir

from securestore import IntegrityError, SecureStore, StoreConfig, verify_store
from securestore.api.verify import VerifyOptions
from securestore.core.journal import encode_record
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS

pytestmark = pytest.mark.both_backends

SEAL_EVERY_3 = StoreConfig(snapshot_every_records=3)
NO_SEAL = StoreConfig(snapshot_every_records=None, snapshot_every_bytes=None)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "layout1"


@contextmanager
def watching(store: SecureStore) -> Iterator[dict[str, Any]]:
    """Count fsyncs and bytes written, and list the files opened, while the block runs."""
    seen: dict[str, Any] = {"fsync": 0, "written": 0, "opened": []}

    def hook(call: str, args: tuple[Any, ...]) -> None:
        if call == "fsync":
            seen["fsync"] += 1
        elif call in ("write", "pwrite"):
            seen["written"] += len(args[1])
        elif call == "open" and isinstance(args[0], str):
            seen["opened"].append(args[0])

    store.ctx.os = instrumented(REAL_OS, hook)
    try:
        yield seen
    finally:
        store.ctx.os = REAL_OS


def _turn(n: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"turn item {i:04d} " + "x" * 400} for i in range(n)]


@pytest.mark.fs_only  # counts fsync and write OS calls (tests/postgres measure a turn in round trips)
def test_a_turn_costs_the_same_whatever_the_transcript_length(root: Path) -> None:
    costs = []
    with SecureStore(root, NO_SEAL, master_key=MASTER_KEY, environ=KEYS) as store:
        for key, history in (("short", 1), ("long", 200)):
            with store.create_session(key) as session:
                for _ in range(history):
                    session.append_items(_turn(16))
                with watching(store) as seen, session.turn():
                    session.append_items(_turn(16))
                costs.append(seen)
                assert len(session) == 16 * (history + 1)
    short, long = costs
    # one fsync for the intent, one for the record: nothing is rewritten, so 3,200 items cost
    # what 16 do (a few bytes more: larger sequence numbers in the record and the audit log)
    assert short["fsync"] == long["fsync"] == 2
    assert abs(long["written"] - short["written"]) < 64, (short["written"], long["written"])


@pytest.mark.fs_only  # observes the files opened through the OS layer
def test_a_tail_read_opens_only_the_segments_it_needs(root: Path) -> None:
    with SecureStore(root, SEAL_EVERY_3, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            for i in range(30):
                session.append_items([{"i": i}])
            with watching(store) as seen:
                assert session.items(4) == [{"i": i} for i in range(26, 30)]
            # the 30th append sealed records 28-30: the active segment (31) is empty
            assert [name for name in seen["opened"] if name.startswith("journal")] == \
                ["journal-000000000031.log", "journal-000000000028.log", "journal-000000000025.log"]
        with watching(store) as seen:
            assert store.read_items("s", 2) == [{"i": 28}, {"i": 29}]
        assert [name for name in seen["opened"] if name.startswith("journal")] == \
            ["journal-000000000031.log", "journal-000000000028.log"]
        assert store.read_items("s") == [{"i": i} for i in range(30)]
        assert verify_store(store).ok


def test_pops_and_a_clear_hide_items_across_segments(root: Path) -> None:
    with SecureStore(root, SEAL_EVERY_3, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            session.append_items([{"i": i} for i in range(6)])
            for _ in range(4):  # pops reach back into a sealed segment
                session.pop_item()
            assert session.items(5) == [{"i": 0}, {"i": 1}] and len(session) == 2
            with session.turn():
                session.pop_item()
                session.append_items([{"i": "new"}])
                assert session.items(2) == [{"i": 0}, {"i": "new"}]
        assert store.read_items("s", 10) == [{"i": 0}, {"i": "new"}]
        with store.open_session("s") as session:
            assert len(session) == 2 and session.items() == [{"i": 0}, {"i": "new"}]
        assert verify_store(store).ok


def test_a_clear_takes_what_it_hid_off_the_disk(root: Path | str) -> None:
    with SecureStore(root, SEAL_EVERY_3, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            for i in range(8):
                session.append_items([{"note": f"forget-me-{i}"}])
            session.clear()
            assert len(session) == 0 and session.items(3) == []
            stored = b"".join(raw_tree(root).files(session_path("s")).values())
            assert b"forget-me" not in stored  # no segment holds them any more
            session.append_items([{"note": "kept"}])
        assert store.read_items("s") == [{"note": "kept"}]
        report = verify_store(store, options=VerifyOptions(seed=seed_of(root)))
        assert report.ok, report.failures


def test_a_line_altered_before_its_seal_is_caught_by_the_trail(root: Path | str) -> None:
    """A seal's digest is recomputed from the line hashes the trail committed: a writer that
    seals an altered segment (it reads the lines it did not write itself) cannot launder it."""
    with SecureStore(root, NO_SEAL, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            session.append_items([{"say": "hello"}])
            session.append_items([{"say": "bye"}])
        raw, journal = raw_tree(root), f"{session_path('s')}/journal.log"
        first, second = raw.lines(journal)
        record = orjson.loads(second)
        forged = encode_record(record["seq"], record["ts"], [{"op": "append", "items": [{"say": "wire the money"}]}])
        raw.write(journal, first + forged)  # a valid record (checksum and seq), not the committed one
        with store.open_session("s") as session:
            session.commit_turn()  # outside a turn: seal the active segment
        assert not raw.exists(journal) or raw.read(journal) == first + forged
        report = verify_store(store, options=VerifyOptions(seed=seed_of(root)))
        assert not report.ok
        assert report.failures[0].check == "seal", report.failures[0].describe()


def test_verify_proves_every_sealed_segment(make_root) -> None:  # noqa: ANN001
    def build(where: Path | str) -> tuple[RawBase, str]:
        with SecureStore(where, SEAL_EVERY_3, master_key=MASTER_KEY, environ=KEYS) as store:
            with store.create_session("s") as session:
                for i in range(7):
                    session.append_items([{"i": i}])
        return raw_tree(where), session_path("s")

    def alter(raw: RawBase, directory: str) -> None:  # a valid record (checksum, seq) that was never committed
        journal = f"{directory}/journal.log"
        lines = raw.lines(journal)
        record = orjson.loads(lines[1])
        lines[1] = encode_record(record["seq"], record["ts"], [{"op": "append", "items": [{"i": 9}]}])
        raw.write(journal, b"".join(lines))

    def rewrite_head(raw: RawBase, directory: str) -> None:
        raw.write(f"{directory}/snapshot.json",
                  raw.read(f"{directory}/snapshot.json").replace(b'"count":6', b'"count":5'))

    tampered = {
        "altered": alter,
        "removed": lambda raw, d: raw.delete(f"{d}/journal-000000000004.log"),
        "head rewritten": rewrite_head,
    }
    for name, tamper in tampered.items():
        where = make_root(name.replace(" ", "-"))
        tamper(*build(where))
        with SecureStore(where, master_key=MASTER_KEY, environ=KEYS) as store:
            report = verify_store(store, options=VerifyOptions(seed=seed_of(where)))
        assert not report.ok and report.exit_code == 1, (name, report.to_json())


@pytest.mark.fs_only  # the race is staged at an OS open of a segment
def test_a_reader_racing_a_clear_reads_again_from_the_new_head(root: Path) -> None:
    """A lock-free read that loses a segment to a concurrent seal (after a clear) starts over."""
    with SecureStore(root, SEAL_EVERY_3, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            for i in range(7):
                session.append_items([{"i": i}])
        raced = {"done": False}

        def hook(call: str, args: tuple[Any, ...]) -> None:
            if call == "open" and args[0] == "journal-000000000004.log" and not raced["done"]:
                raced["done"] = True
                with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as writer, \
                        writer.open_session("s") as session:
                    session.clear()  # seals, and removes every segment the reader's head names

        store.ctx.os = instrumented(REAL_OS, hook)
        try:
            assert store.read_items("s", 5) == []
        finally:
            store.ctx.os = REAL_OS
        assert raced["done"]


def _layout1_copy(where: Path) -> Path:
    shutil.copytree(FIXTURE, where)
    for empty in ("store/audit/heads", "store/sessions/k-mvwxa5dz/state"):  # git keeps no empty directory
        (where / empty).mkdir(exist_ok=True)
    for path in [where, *where.rglob("*")]:  # nor modes: the store's own are 0700 / 0600
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    return where / "store"


@pytest.mark.fs_only  # layout-1 stores predate the PostgreSQL backend: only directories hold them
def test_a_layout_1_store_reads_writes_seals_and_verifies(tmp_path: Path) -> None:
    """Sessions written by securestore before segments (snapshot.json + journal.log) keep working."""
    root = _layout1_copy(tmp_path / "old")
    seed = seed_of(root)
    expected = [{"role": "user", "content": f"m{i}"} for i in range(5)] + [
        {"role": "tool", "content": "sk-proj-" + "y" * 40}, {"role": "assistant", "content": "after the snapshot"}]
    with SecureStore(root, SEAL_EVERY_3, master_key=MASTER_KEY, environ=KEYS) as store:
        assert verify_store(store, options=VerifyOptions(seed=seed)).ok
        assert store.read_items("chat", 2, resolve=True) == expected[-2:]
        with store.open_session("chat") as session:
            assert session.items(resolve=True) == expected and len(session) == 7
            assert session.slot("ext.a").get() == {"v": 1}
            session.append_items([{"n": 1}])
            session.commit_turn()  # seals journal.log: the layout-1 snapshot stays as the base
            session.append_items([{"n": 2}])
            assert session.items(3, resolve=True) == [expected[-1], {"n": 1}, {"n": 2}]
        assert stat.S_IMODE((session_dir(root, "chat") / "journal-000000000006.log").stat().st_mode) == 0o600
        assert store.read_items("chat", resolve=True) == [*expected, {"n": 1}, {"n": 2}]
        with store.open_session("empty") as session:
            session.append_items([{"first": True}])
        report = verify_store(store, options=VerifyOptions(seed=seed))
        assert report.ok, report.failures[0].describe()


def test_a_planted_next_segment_stops_the_seal_before_its_intent(root: Path | str) -> None:
    with SecureStore(root, NO_SEAL, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            session.append_items([{"n": 1}])
        raw_tree(root).write(f"{session_path('s')}/journal-000000000002.log", b"not ours\n")  # mode 0600
        with store.open_session("s") as session:
            try:
                session.commit_turn()
            except IntegrityError as exc:
                assert "journal-000000000002.log exists and is not empty" in str(exc)
            else:
                raise AssertionError("the seal went ahead over a planted segment")
            session.append_items([{"n": 2}])  # nothing was left open: the session goes on
        assert store.read_items("s") == [{"n": 1}, {"n": 2}]
