"""The session model: transcript, turns, slots, metadata revisions, recovery, resume rules."""

from __future__ import annotations

import hashlib

import errno
import json
import fnmatch
from pathlib import Path

import pytest

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import raw_tree, session_path
from tests.support.stores import all_bytes
from securestore import (
    AlreadyExistsError,
    IntegrityError,
    InvalidValueError,
    LayoutVersionError,
    NotFoundError,
    OperationalError,
    ResumeMismatchError,
    Secret,
    SecureStore,
    StorageError,
    StoreConfig,
    VersionConflictError,
    verify_store,
)
from securestore.audit.chain import parse_record
from securestore.core.records import SessionMetadata
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS

pytestmark = pytest.mark.both_backends


def records(root: Path | str, key: str) -> list:  # noqa: ANN201
    return [parse_record(line) for line in raw_tree(root).read(f"{session_path(key)}/audit/log.jsonl").splitlines()]


def test_transcript_round_trip(store: SecureStore, root: Path) -> None:
    with store.create_session("s", metadata={"title": "first", "agent": "bot"}) as session:
        assert session.append_items([{"n": 1}, {"n": 2}]) == 2
        session.append_items([{"n": 3}])
        assert session.items() == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert session.items(limit=2) == [{"n": 2}, {"n": 3}]
        assert session.items(limit=0) == []
        assert session.pop_item() == {"n": 3}
        assert len(session) == 2
    with store.open_session("s") as session:  # replayed from the journal
        assert session.items() == [{"n": 1}, {"n": 2}]
        assert session.metadata["title"] == "first"
        session.clear()
        assert session.items() == []
        with pytest.raises(NotFoundError, match="empty"):
            session.pop_item()
    with store.open_session("s") as session:
        assert session.items() == []
    assert verify_store(store).ok


def test_items_must_be_objects_and_are_validated(store: SecureStore) -> None:
    with store.create_session("s") as session:
        with pytest.raises(InvalidValueError, match="not a JSON object"):
            session.append_items([{"ok": 1}, ["not", "an", "object"]])
        with pytest.raises(InvalidValueError):
            session.append_items({"a": 1})  # type: ignore[arg-type]
        with pytest.raises(Exception, match="prototype"):
            session.append_items([{"constructor": {"prototype": 1}}])
        assert session.items() == []


def test_create_twice_is_an_error(store: SecureStore) -> None:
    store.create_session("s").close()
    with pytest.raises(AlreadyExistsError):
        store.create_session("s")
    with pytest.raises(NotFoundError):
        store.open_session("missing")


def test_a_create_that_loses_a_race_is_refused_under_the_store_lock(store: SecureStore, root: Path | str) -> None:
    """`create_session` checks for the session before the store lock (to fail fast) and again
    under it: one made by another writer in between is an error, never opened as if new."""
    store.create_session("s").close()
    before = all_bytes(root)
    with pytest.raises(AlreadyExistsError, match='session "s" already exists'):
        store.backend.create_session("s", SessionMetadata(), exclusive=True)  # as if its first check had passed
    assert all_bytes(root) == before  # no intent, no record


def test_turn_is_one_intent_and_atomic(store: SecureStore, root: Path | str) -> None:
    with store.create_session("s") as session:
        before = len(records(root, "s"))
        with session.turn():
            session.append_items([{"role": "user", "content": f"m{i}"} for i in range(5)])
            session.append_items([{"role": "tool", "content": "sk-proj-" + "z" * 40}])
            session.slot("ext.a").put({"v": 1})
            session.slot("ext.b").put({"v": 2})
            session.update_metadata(title="turn 1")
        new = records(root, "s")[before:]
        intents = [r for r in new if r.kind == "intent"]
        # the session's first secret creates its vault: the wrapped data key is written once, to
        # vault.key alone (never into the journal); then ONE batch intent, and nothing else: the
        # record is the turn boundary (no snapshot is rewritten, whatever the transcript's length)
        assert [r.op for r in intents] == ["vault.key", "journal.append"]
        assert {t.target for t in intents[1].also} >= {"vault.json", "manifest.jsonl"}
        journal = raw_tree(root).read(f"{session_path('s')}/journal.log")
        assert journal.count(b"\n") == 1 and intents[1].sha256 == hashlib.sha256(journal).hexdigest()
        assert not raw_tree(root).exists(f"{session_path('s')}/snapshot.json")
    with store.open_session("s") as session:
        assert len(session.items()) == 6
        assert session.slot("ext.b").get() == {"v": 2}
        assert session.metadata["title"] == "turn 1"
        assert session.items(resolve=True)[-1]["content"] == "sk-proj-" + "z" * 40
    assert b"z" * 40 not in all_bytes(root)
    assert verify_store(store).ok


def test_failed_turn_leaves_nothing(store: SecureStore, root: Path | str) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 0}])
        before = raw_tree(root).snapshot(session_path("s"))
        with pytest.raises(RuntimeError), session.turn():
            session.append_items([{"n": 1}])
            session.slot("x").put({"secret": Secret("never-written-123")})
            session.update_metadata(title="never")
            raise RuntimeError("the agent crashed mid-turn")
        assert session.items() == [{"n": 0}]
        assert session.slot("x").get() is None and session.metadata["title"] is None
        after = raw_tree(root).snapshot(session_path("s"))
        assert {k: v for k, v in after.items() if k != "lock"} == {k: v for k, v in before.items() if k != "lock"}
        session.slot("y").put(Secret("never-written-123"))  # the rolled-back secret is stored again
        assert session.slot("y").get(resolve=True) == "never-written-123"
    assert verify_store(store).ok


def test_reads_inside_a_turn_see_staged_writes(store: SecureStore) -> None:
    with store.create_session("s") as session, session.turn():
        session.slot("a").put(1)
        assert session.slot("a").get() == 1 and session.slot("a").version == 1
        session.slot("a").put(2, expected_version=1)
        assert session.slots() == ["a"]
        session.slot("a").delete()
        assert session.slots() == []


def test_slot_versions_and_conflicts(store: SecureStore) -> None:
    with store.create_session("s") as session:
        slot = session.slot("ext.memory")
        assert slot.version == 0 and slot.get(default="none") == "none"
        assert slot.put({"facts": []}, expected_version=0) == 1
        assert slot.put({"facts": ["a"]}) == 2
        with pytest.raises(VersionConflictError, match="version 2, expected 1") as info:
            slot.put({"facts": ["stale"]}, expected_version=1)
        assert info.value.exit_code == 4
        assert slot.get() == {"facts": ["a"]}
        slot.put({"facts": ["a", "b"]}, expected_version=2)
        slot.delete()
        assert slot.version == 0
        with pytest.raises(NotFoundError):
            slot.delete()


def test_metadata_revisions_never_rewrite_history(store: SecureStore, root: Path | str) -> None:
    with store.create_session("s", metadata={"title": "v1", "labels": {"team": "a"}}) as session:
        session.update_metadata(title="v2")
        session.update_metadata(model="gpt-4o", labels={"team": "b"})
        manifest = raw_tree(root).read(f"{session_path('s')}/manifest.jsonl").splitlines()
        assert len(manifest) == 3
        history = session.history()
    assert [r["rev"] for r in history] == [1, 2, 3]
    assert [r["metadata"]["title"] for r in history] == ["v1", "v2", "v2"]
    assert history[-1]["metadata"]["labels"] == {"team": "b"}
    assert all(r["store_id"] == store.store_id and r["backend"] == "fs" and r["key"] == "s" for r in history)
    assert history[0]["updated_ms"] <= history[-1]["updated_ms"]
    assert store.history("s") == history
    with store.open_session("s") as session:
        with pytest.raises(InvalidValueError, match="unknown metadata"):
            session.update_metadata(colour="red")
    assert raw_tree(root).read(f"{session_path('s')}/manifest.jsonl").splitlines()[:2] == manifest[:2]


def test_secret_metadata_goes_to_the_vault(store: SecureStore, root: Path) -> None:
    with store.create_session("s", metadata={"title": "token ghp_" + "k" * 36}) as session:
        assert session.metadata["title"].startswith("token [secret:vault:")
        assert session.revision == 2  # revision 1 was written before the vault existed
    assert b"k" * 36 not in all_bytes(root)


def test_the_seal_policy_bounds_the_active_segment_and_copies_nothing(root: Path | str) -> None:
    config = StoreConfig(snapshot_every_records=3)
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            for i in range(10):
                session.append_items([{"i": i}])
            raw, directory = raw_tree(root), session_path("s")
            segments = {name: raw.read(f"{directory}/{name}").count(b"\n") for name in raw.list(directory)
                        if fnmatch.fnmatch(name, "journal*.log")}
            # every 3 records the active segment is sealed and the next begins: nothing is copied
            assert segments == {"journal.log": 3, "journal-000000000004.log": 3, "journal-000000000007.log": 3,
                                "journal-000000000010.log": 1}
            assert session.items(4) == [{"i": i} for i in range(6, 10)]
        with store.open_session("s") as session:
            assert [item["i"] for item in session.items()] == list(range(10))
            assert len(session) == 10
        assert store.read_items("s", 5) == [{"i": i} for i in range(5, 10)]
        assert verify_store(store).ok


def test_torn_final_journal_record_is_discarded_and_reported(store: SecureStore, root: Path | str,
                                                             backend: str) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 1}])
    raw, journal = raw_tree(root), f"{session_path('s')}/journal.log"
    good = raw.read(journal)
    torn = good + b'{"ops":[{"items":[{"n":2}],"op":"append"}],"seq":2,"s'
    raw.write(journal, torn)  # a crash mid-append (on disk; planted in PostgreSQL)
    assert store.read_items("s") == [{"n": 1}]
    if backend == "postgres":  # every append is one transaction: a partial row is tampering, never cut
        with store.open_session("s") as session, pytest.raises(IntegrityError,
                                                                match="journal.log: it ends with a partial record"):
            session.items()  # a writer's first read of the transcript is where a torn tail is cut
        assert raw.read(journal) == torn
        assert [f.check for f in verify_store(store).failures] == ["torn-record"]
        return
    with store.open_session("s") as session:
        assert session.items() == [{"n": 1}]
        assert any("torn tail of journal.log" in event for event in session.recovered)
    assert raw.read(journal) == good
    assert verify_store(store).ok


def test_bad_checksum_on_final_record_is_torn(store: SecureStore, root: Path | str) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 1}])
        session.append_items([{"n": 2}])
    raw, journal = raw_tree(root), f"{session_path('s')}/journal.log"
    lines = raw.lines(journal)
    raw.write(journal, lines[0] + lines[1].replace(b'"n":2', b'"n":9'))
    assert store.read_items("s") == [{"n": 1}]  # the damaged final record is treated as torn


def test_bad_record_before_the_end_is_an_integrity_error(store: SecureStore, root: Path | str) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 1}])
        session.append_items([{"n": 2}])
    raw, journal = raw_tree(root), f"{session_path('s')}/journal.log"
    lines = raw.lines(journal)
    raw.write(journal, lines[0].replace(b'"n":1', b'"n":7') + lines[1])
    with pytest.raises(IntegrityError, match="line 1 .* damaged: checksum mismatch"):
        store.read_items("s")
    # Opening reads no transcript (a slot write needs none); the first use of it refuses.
    with store.open_session("s") as opened:
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            opened.append_items([{"n": 3}])
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            opened.items()
    assert raw.read(journal) == lines[0].replace(b'"n":1', b'"n":7') + lines[1]  # nothing appended
    assert not verify_store(store).ok


def test_session_from_another_store_is_a_resume_mismatch(make_root, store: SecureStore,  # noqa: ANN001
                                                         root: Path | str) -> None:
    other = make_root("other")
    with SecureStore(other, master_key=MASTER_KEY, environ=KEYS) as foreign:
        with foreign.create_session("s", metadata={"title": "foreign"}) as session:
            session.append_items([{"n": 1}])
    raw = raw_tree(root)
    raw.copy_from(raw_tree(other), session_path("s"), session_path("s"))
    before = raw.snapshot()
    with pytest.raises(ResumeMismatchError, match="written by store") as info:
        store.open_session("s")
    assert info.value.exit_code == 4
    with pytest.raises(ResumeMismatchError):
        store.read_items("s")
    assert raw.snapshot() == before  # nothing changed, not even the lock file


def test_newer_layout_version_is_refused_untouched(store: SecureStore, root: Path | str) -> None:
    store.create_session("s").close()
    raw, manifest = raw_tree(root), f"{session_path('s')}/manifest.jsonl"
    revision = json.loads(raw.read(manifest))
    revision["layout_version"] = 99
    raw.write(manifest, json.dumps(revision, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    before = raw.snapshot()
    with pytest.raises(LayoutVersionError, match="newer than this securestore"):
        store.open_session("s")
    assert raw.snapshot() == before


def test_newer_store_layout_is_refused(root: Path | str) -> None:
    raw = raw_tree(root)
    identity = json.loads(raw.read("store.json"))
    identity["layout_version"] = 99
    raw.write("store.json", json.dumps(identity, sort_keys=True, separators=(",", ":")).encode())
    before = raw.snapshot()
    with pytest.raises(Exception, match="newer than this securestore"):
        SecureStore(root)
    assert raw.snapshot() == before


@pytest.mark.fs_only  # the fault is injected through the OS layer, which a PostgreSQL store's rows never reach
def test_an_intent_without_outcome_blocks_further_writes_until_reopened(root: Path) -> None:
    """If the outcome cannot be appended (disk full), the change may have happened: the handle
    must not chain a new intent after the open one; reopening reconciles it."""
    failing = {"on": False}

    def hook(name: str, args: tuple[object, ...]) -> None:
        if failing["on"] and name == "write" and b'"kind":"outcome"' in bytes(args[1]):  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, "injected")

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=instrumented(REAL_OS, hook)) as store:
        with store.create_session("s") as session:
            failing["on"] = True
            with pytest.raises(StorageError, match="ENOSPC"):
                session.append_items([{"n": 1}])
            failing["on"] = False
            with pytest.raises(OperationalError, match="no recorded outcome; reopen"):
                session.append_items([{"n": 2}])
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("s") as session:
            assert any("recovered-committed" in event for event in session.recovered)
            assert session.items() == [{"n": 1}]
            session.append_items([{"n": 2}])
        assert verify_store(store).ok


def test_commit_inside_a_turn_block_starts_the_next_batch(store: SecureStore, root: Path) -> None:
    with store.create_session("s") as session:
        with pytest.raises(RuntimeError), session.turn():
            session.append_items([{"n": 1}])
            session.commit_turn()  # the first batch is durable now
            session.append_items([{"n": 2}])  # staged in a new batch...
            raise RuntimeError("...which this failure discards")
        assert session.items() == [{"n": 1}]
    with store.open_session("s") as session:
        assert session.items() == [{"n": 1}]
