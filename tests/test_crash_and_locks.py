"""Real processes: a writer killed with SIGKILL loses no acknowledged item; one writer per
session; a dead holder's lock is recovered and audited; a live holder's never is."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KEYS, MASTER_KEY, drop_checkpoints_past, session_dir
from securestore import LockHeldError, SecureStore, StoreConfig, verify_store
from securestore.audit.chain import parse_record
from securestore.fs.osapi import REAL_OS
from securestore.fs.owner import boot_id, process_start_time

CHILD = str(Path(__file__).resolve().parent / "writer_child.py")
NO_WAIT = StoreConfig(lock_timeout_seconds=0)


def spawn(root: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, CHILD, str(root), MASTER_KEY, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def kill_rounds(root: Path, rounds: int, seed: int) -> int:
    """Kill a writer `rounds` times after a random number of acknowledgements; check each time
    that every acknowledged item survived. Returns the number of items written."""
    rng = random.Random(seed)
    acked = -1
    for _ in range(rounds):
        child = spawn(root, "write")
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "open"
        for _ in range(rng.randint(1, 12)):
            line = child.stdout.readline()
            assert line, "writer died on its own"
            acked = int(line)
        child.send_signal(signal.SIGKILL)  # mid-workload: it keeps writing until this lands
        child.wait()
        child.stdout.close()
        child.stdin.close()  # type: ignore[union-attr]
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            items = [item["i"] for item in store.read_items("w")]
        assert items == list(range(len(items))), "a gap or a duplicate after a crash"
        assert len(items) > acked, f"acknowledged item {acked} lost ({len(items)} items survived)"
    return acked


def test_sigkill_mid_workload_loses_no_acknowledged_item(tmp_path: Path, root: Path) -> None:
    kill_rounds(root, rounds=50, seed=2026)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("w") as session:  # a writer reconciles whatever the last kill cut
            assert session.slot("progress").version >= 0
        report = verify_store(store)
        assert report.ok, report.failures[0].describe()


def test_second_writer_gets_lock_held_naming_the_holder(root: Path) -> None:
    holder = spawn(root, "hold")
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(LockHeldError, match=f"held by pid {holder.pid} on ") as info:
                store.open_session("s")
            assert info.value.exit_code == 4
            assert f"pid {holder.pid}" in store.describe_session("s").lock_holder  # type: ignore[operator]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
        holder.stdin.close()  # type: ignore[union-attr]
    # The holder is dead: the next open takes the lock and the audit log says so.
    with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("s") as session:
            assert any("stale lock" in event for event in store.recovered)
            session.append_items([{"after": "recovery"}])
        assert verify_store(store).ok
    stale = [r for r in _records(root, "s") if r.kind == "recovery" and r.event == "stale-lock"]
    assert len(stale) == 1 and f"pid {holder.pid}" in (stale[0].detail or "")


def _records(root: Path, key: str) -> list:  # noqa: ANN201
    log = session_dir(root, key) / "audit" / "log.jsonl"
    return [parse_record(line) for line in log.read_bytes().splitlines()]


def _forge_owner(root: Path, pid: int, start_time: int) -> None:
    record = {"pid": pid, "host": REAL_OS.hostname(), "start_time": start_time, "boot_id": boot_id(REAL_OS),
              "acquired_ms": 0}
    (session_dir(root, "s") / "lock").write_text(json.dumps(record))


def test_forged_owner_records(root: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("s").close()
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        real_start = process_start_time(REAL_OS, bystander.pid)
        assert real_start is not None
        # A live pid with the wrong start time: the pid was reused, the holder is gone.
        _forge_owner(root, bystander.pid, real_start + 1)
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            store.open_session("s").close()
            assert any("stale lock" in event for event in store.recovered)
        # A live process named exactly: never broken, even though no flock is held.
        _forge_owner(root, bystander.pid, real_start)
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(LockHeldError, match=f"pid {bystander.pid}"):
                store.open_session("s")
    finally:
        bystander.kill()
        bystander.wait()
        bystander.stdin.close()  # type: ignore[union-attr]
    # Once that process is gone, the same record is stale.
    with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
        store.open_session("s").close()
        assert any("stale lock" in event for event in store.recovered)


def test_clean_release_leaves_no_owner_and_no_recovery(store: SecureStore, root: Path) -> None:
    with store.create_session("s"):
        assert (session_dir(root, "s") / "lock").read_bytes()
    assert (session_dir(root, "s") / "lock").read_bytes() == b""
    with store.open_session("s"):
        pass
    assert not [r for r in _records(root, "s") if r.kind == "recovery"]
    assert os.path.exists(session_dir(root, "s") / "lock")  # never unlinked


def test_default_lock_timeout_is_ten_seconds() -> None:
    assert StoreConfig().lock_timeout_seconds == 10.0


def _cut_last_outcome(root: Path, keep_bytes: int) -> None:
    """Simulate a crash while the last outcome was being appended: keep `keep_bytes` of it."""
    log = session_dir(root, "s") / "audit" / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert parse_record(lines[-1].rstrip(b"\n")).kind == "outcome"
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:keep_bytes])
    drop_checkpoints_past(log.parent, len(lines) - 1)  # the crash came before the close sealed


@pytest.mark.parametrize("keep", [0, 40])
def test_dangling_intent_is_settled_after_a_torn_outcome(root: Path, keep: int) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            session.append_items([{"n": 1}])
    _cut_last_outcome(root, keep)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("s") as session:
            assert any("recovered-committed" in event for event in session.recovered)
            session.append_items([{"n": 2}])
        report = verify_store(store)
        assert report.ok, report.failures[0].describe()
        assert store.read_items("s") == [{"n": 1}, {"n": 2}]


def test_dead_holder_and_dangling_intent_together(root: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            session.append_items([{"n": 1}])
    dead = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = process_start_time(REAL_OS, dead.pid)
    dead.kill()
    dead.wait()
    dead.stdin.close()  # type: ignore[union-attr]
    _forge_owner(root, dead.pid, start or 0)
    _cut_last_outcome(root, 25)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("s") as session:
            events = " | ".join(session.recovered)
            assert "torn tail" in events and "recovered-committed" in events and "stale lock" in events
            session.append_items([{"n": 2}])
        report = verify_store(store)
        assert report.ok, report.failures[0].describe()
