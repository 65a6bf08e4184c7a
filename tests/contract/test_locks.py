"""Real processes: one writer per session; a dead holder's lock is recovered and audited; a live
holder's never is, including holders in other UTS and pid namespaces (`unshare`, as root), which /proc cannot see."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import raw_tree, session_path
from tests.support.stores import WRITER_CHILD, session_dir, spawn_writer
from securestore import IntegrityError, LockHeldError, SecureStore, StoreConfig, UnsafeFileError, verify_store
from securestore.audit.chain import parse_record
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from securestore.fs.locks import Liveness, Owner, boot_id, liveness, parse_owner, pid_namespace, process_start_time

pytestmark = pytest.mark.both_backends

CHILD = WRITER_CHILD
NO_WAIT = StoreConfig(lock_timeout_seconds=0)


@pytest.mark.fs_only  # stale lock files of dead pids; PostgreSQL's advisory locks die with the connection
def test_second_writer_gets_lock_held_naming_the_holder(root: Path) -> None:
    holder = spawn_writer(root, "hold")
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(LockHeldError, match=f'session "s" is held by pid {holder.pid} on ') as info:
                store.open_session("s")
            assert info.value.exit_code == 4 and "waited 0 s: retry once it closes the session" in str(info.value)
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


@pytest.mark.fs_only  # lock owner records are files on disk (PostgreSQL names the holder from pg_stat_activity)
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


def test_a_session_is_held_by_its_creator_from_its_creation_on(root: Path | str) -> None:
    """The creator's lock is taken inside the store change that makes the session (and, on
    PostgreSQL, outlives that change's transaction): no other writer gets in, ever."""
    with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as creator, \
            SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as other:
        with creator.create_session("s") as session, creator.create_session("t", {"title": "x"}):
            with pytest.raises(LockHeldError, match='session "s" is held by '):
                other.open_session("s")
            with pytest.raises(LockHeldError, match='session "t" is held by '):
                other.open_session("t")
            session.append_items([{"role": "user", "content": "hi"}])
        with other.open_session("s") as again:  # let go on close
            assert [item["content"] for item in again.items()] == ["hi"]
        assert verify_store(other).ok


@pytest.mark.fs_only  # on PostgreSQL nobody sees the new session before the store change commits
def test_a_writer_opening_a_session_the_moment_its_rename_publishes_it_waits_for_the_creator(root: Path) -> None:
    """On disk a create's rename makes the session visible at once, before the store change
    ends: a writer opening it right then must find it held (its creator took the lock in the
    staging directory), never write into it under the creator's feet."""
    seen: dict[str, object] = {}

    def hook(name: str, args: tuple[Any, ...]) -> None:
        if name == "replace" and "staging" in str(args[0]) and "published" not in seen:
            seen["published"] = True  # the next I/O call comes after the rename
        elif seen.get("published") is True and "interloper" not in seen:
            seen["interloper"] = "ran"
            with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as other:
                try:
                    with other.open_session("s") as session:
                        session.append_items([{"from": "interloper"}])
                except LockHeldError:
                    seen["interloper"] = "held off"

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=instrumented(REAL_OS, hook)) as store:
        with store.create_session("s") as session:
            session.append_items([{"from": "creator"}])
    assert seen.get("interloper") == "held off"
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        assert store.read_items("s") == [{"from": "creator"}]
        assert verify_store(store).ok


@pytest.mark.fs_only  # the lock file and its owner record exist only on disk
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


def _cut_last_outcome(root: Path | str, keep_bytes: int) -> None:
    """Simulate a crash while the last outcome was being appended: keep `keep_bytes` of it."""
    raw, audit = raw_tree(root), f"{session_path('s')}/audit"
    lines = raw.lines(f"{audit}/log.jsonl")
    assert parse_record(lines[-1].rstrip(b"\n")).kind == "outcome"
    raw.write(f"{audit}/log.jsonl", b"".join(lines[:-1]) + lines[-1][:keep_bytes])
    raw.drop_checkpoints_past(audit, len(lines) - 1)  # the crash came before the close sealed


@pytest.mark.parametrize("keep", [0, 40])
def test_dangling_intent_is_settled_after_a_torn_outcome(root: Path | str, keep: int, backend: str) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("s") as session:
            session.append_items([{"n": 1}])
    _cut_last_outcome(root, keep)
    if backend == "postgres" and keep:  # a partial row: planted, never a crash's (tests/contract/test_audit.py)
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(IntegrityError, match="ends with a partial record"):
                store.open_session("s")
            assert verify_store(store).exit_code == 1
        return
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("s") as session:
            assert any("recovered-committed" in event for event in session.recovered)
            session.append_items([{"n": 2}])
        report = verify_store(store)
        assert report.ok, report.failures[0].describe()
        assert store.read_items("s") == [{"n": 1}, {"n": 2}]


@pytest.mark.fs_only  # a forged owner record of a dead pid in the lock file: disk only
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


# -- holders in other namespaces: a container restarted under a new host name ---------------------
NAMESPACES = {"uts": ["--uts"], "pid": ["--pid", "--fork", "--kill-child", "--mount-proc"],
              "uts+pid": ["--uts", "--pid", "--fork", "--kill-child", "--mount-proc"]}


def spawn_in(namespaces: str, root: Path, mode: str, host: str) -> subprocess.Popen[str]:
    """writer_child in new namespaces; with "uts" its host name is `host`."""
    child = shlex.join([sys.executable, CHILD, str(root), MASTER_KEY, mode])
    script = f"hostname {shlex.quote(host)} && exec {child}" if "uts" in namespaces else f"exec {child}"
    return subprocess.Popen(["unshare", *NAMESPACES[namespaces], "sh", "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def holder_pid(proc: subprocess.Popen[str]) -> int:
    """The writer's pid as seen from here: unshare --fork runs it as its only child."""
    if "--fork" not in proc.args:  # type: ignore[operator]
        return proc.pid  # unshare and sh exec'd into the writer
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


def stop(proc: subprocess.Popen[str], *, kill: bool) -> None:
    if kill:
        os.kill(holder_pid(proc), signal.SIGKILL)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()


def lock_record(root: Path) -> Owner | None:
    return parse_owner((session_dir(root, "s") / "lock").read_bytes())


def _stale_lock_records(root: Path) -> list[Any]:
    return [r for r in _records(root, "s") if r.kind == "recovery" and r.event == "stale-lock"]


@pytest.mark.fs_only  # pid/UTS namespaces vs lock files; PostgreSQL names its holder by server process
@pytest.mark.parametrize("namespaces", sorted(NAMESPACES))
def test_holder_in_another_namespace_blocks_while_alive_and_is_recovered_once_killed(root: Path,
                                                                                   namespaces: str) -> None:
    holder = spawn_in(namespaces, root, "hold", "other-host")
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
        record = lock_record(root)
        assert record is not None and record.boot_id == boot_id(REAL_OS)
        assert (record.host == "other-host") == ("uts" in namespaces)
        assert (record.pid_ns != pid_namespace(REAL_OS)) == ("pid" in namespaces)
        assert record.pid_ns.startswith("pid:[")
        assert (record.pid == holder_pid(holder)) == ("pid" not in namespaces)  # pid 1 in its own namespace
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(LockHeldError, match=f"held by pid {record.pid} on {record.host} in "):
                store.open_session("s")
        assert lock_record(root) == record  # a contender never touches a live holder's record
    finally:
        stop(holder, kill=True)
    assert lock_record(root) == record  # SIGKILL: nobody cleared it
    with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("s") as session:
            assert any("stale lock" in event for event in session.recovered)
            session.append_items([{"after": "recovery"}])
        assert verify_store(store).ok
    stale = _stale_lock_records(root)
    assert len(stale) == 1 and record.describe() in (stale[0].detail or "")


@pytest.mark.fs_only  # flock against owner records /proc cannot see: disk only
def test_live_holders_in_other_pid_namespaces_are_never_both_writers(root: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("s").close()
    contenders = [spawn_in("uts+pid", root, "try", host) for host in ("host-a", "host-b")]
    try:
        lines = [proc.stdout.readline().strip() for proc in contenders]  # type: ignore[union-attr]
        assert sorted(line.split()[0] for line in lines) == ["held", "ready"], lines
        record = lock_record(root)
        assert record is not None and record.pid_ns != pid_namespace(REAL_OS)
        # From here /proc cannot show that holder: only the flock it holds keeps writers out.
        assert liveness(REAL_OS, record) is Liveness.UNSEEN
        loser = next(line for line in lines if line.startswith("held"))
        assert f"held by pid {record.pid} on {record.host} in {record.pid_ns}" in loser
        for _ in range(3):
            with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
                with pytest.raises(LockHeldError, match=f"on {record.host} in "):
                    store.open_session("s")
            assert lock_record(root) == record
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            # Maintenance reads without the lock: a holder it cannot see counts as alive.
            assert dict(store.maintain().protected)["s"].startswith("held by a live writer")
    finally:
        for proc in contenders:
            stop(proc, kill=False)
    assert [proc.returncode for proc in contenders] == [0, 0]
    assert lock_record(root) is None  # the winner released cleanly: no record, nothing to recover
    assert _stale_lock_records(root) == []


@pytest.mark.fs_only  # a lock file renamed between open and flock: disk only
def test_lock_file_replaced_before_the_flock_is_reopened_not_taken_over(root: Path, tmp_path: Path) -> None:
    """A dead holder's file renamed away and replaced between our open and our flock, and a live
    writer (in another pid namespace) locking the new file: winning the flock on the old inode
    must not let us in, however dead the record it holds."""
    dead = spawn_in("uts+pid", root, "hold", "dead-host")
    assert dead.stdout is not None and dead.stdout.readline().startswith("ready")
    stop(dead, kill=True)
    dead_record = lock_record(root)
    lock = session_dir(root, "s") / "lock"
    live: list[subprocess.Popen[str]] = []

    def replace_before_flock(name: str, args: tuple[object, ...]) -> None:
        if name == "flock" and not live and os.readlink(f"/proc/self/fd/{args[0]}") == str(lock):
            lock.rename(tmp_path / "orphaned-lock")
            lock.touch(mode=0o600)
            live.append(spawn_in("uts+pid", root, "hold", "live-host"))
            assert live[0].stdout is not None and live[0].stdout.readline().startswith("ready")

    try:
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS,
                         os_api=instrumented(REAL_OS, replace_before_flock)) as store:
            with pytest.raises(LockHeldError, match="held by pid 1 on live-host in "):
                store.open_session("s")
        assert live, "the lock file was never replaced"
        assert parse_owner((tmp_path / "orphaned-lock").read_bytes()) == dead_record  # not taken over
        live_record = lock_record(root)
        assert live_record is not None and live_record.host == "live-host"
    finally:
        for proc in live:
            stop(proc, kill=False)
    assert _stale_lock_records(root) == []


@pytest.mark.fs_only  # a lock file replaced at each flock: disk only
def test_lock_file_replaced_at_every_attempt_is_refused_not_looped(store: SecureStore, root: Path) -> None:
    store.create_session("s").close()
    lock = session_dir(root, "s") / "lock"
    replaced: list[int] = []

    def replace_before_flock(name: str, args: tuple[object, ...]) -> None:
        if name == "flock" and os.readlink(f"/proc/self/fd/{args[0]}") == str(lock):
            lock.unlink()
            lock.touch(mode=0o600)
            replaced.append(1)

    with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS,
                     os_api=instrumented(REAL_OS, replace_before_flock)) as tampered:
        with pytest.raises(UnsafeFileError, match="replaced 4 times while being locked"):
            tampered.open_session("s")
    assert len(replaced) == 4


@pytest.mark.fs_only  # flock handles inherited across fork; a PostgreSQL lock lives on one connection
def test_forked_child_releasing_its_copy_keeps_the_parents_lock(root: Path) -> None:
    holder = spawn_writer(root, "fork-release")
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
        record = lock_record(root)
        assert record is not None and record.pid == holder.pid
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(LockHeldError, match=f"held by pid {holder.pid} on "):
                store.open_session("s")
    finally:
        stop(holder, kill=False)
    assert holder.returncode == 0 and lock_record(root) is None


def _forge(root: Path, **fields: object) -> None:
    record = {"pid": 0, "host": "elsewhere", "start_time": 0, "boot_id": boot_id(REAL_OS), "acquired_ms": 0}
    (session_dir(root, "s") / "lock").write_text(json.dumps(record | fields))


@pytest.mark.fs_only  # forged lock-file owner records (boot id, pid namespace): disk only
def test_forged_records_after_a_reboot_or_from_an_unseen_pid_namespace(root: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("s").close()
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = process_start_time(REAL_OS, bystander.pid)
        ours = pid_namespace(REAL_OS)
        cases: dict[str, dict[str, Any]] = {
            # Another boot: that holder's kernel is gone, whatever process now has its pid.
            "rebooted": {"pid": bystander.pid, "start_time": start, "pid_ns": ours, "boot_id": "0" * 36},
            # Another pid namespace, /proc cannot tell: the flock we hold proves it gone.
            "unseen": {"pid": 999_999, "start_time": 12, "pid_ns": "pid:[4026530000]"},
        }
        for case, fields in cases.items():
            _forge(root, **fields)
            with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
                store.open_session("s").close()
                assert any("stale lock" in event for event in store.recovered), case
        # Named exactly, in our pid namespace under another host name: alive, never broken.
        _forge(root, pid=bystander.pid, start_time=start, pid_ns=ours)
        with SecureStore(root, NO_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            with pytest.raises(LockHeldError, match=re.escape(f"pid {bystander.pid} on elsewhere in {ours},")):
                store.open_session("s")
    finally:
        bystander.kill()
        bystander.wait()
        bystander.stdin.close()  # type: ignore[union-attr]
    assert len(_stale_lock_records(root)) == 2
