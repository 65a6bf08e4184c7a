"""Maintenance: retention, count cap with slack, disk budget, leftovers, protection."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import MASTER_KEY, run_cli, session_dir, tree_snapshot, KEYS, make_store, FAULT_CONFIG

from securestore import (
    SecureStore,
    SecureStoreError,
    StoreConfig,
    verify_store,
)
from securestore.audit.chain import parse_record
from securestore.config import MaintenancePolicy
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from securestore.core.retention import DAY_MS, SessionUsage, plan

NOW = 1_800_000_000_000
CHILD = str(Path(__file__).resolve().parent / "writer_child.py")


def usage(name: str, days_old: float, size: int = 100, protected: str | None = None) -> SessionUsage:
    return SessionUsage(name, name, NOW - int(days_old * DAY_MS), size, protected)


def test_plan_prunes_old_sessions_oldest_first() -> None:
    policy = MaintenancePolicy(prune_after_days=30)
    found = plan([usage("a", 31), usage("b", 29), usage("c", 45), usage("d", 90, protected="pinned")], policy, NOW)
    assert [(e.key, e.reason) for e in found] == [("c", "prune"), ("a", "prune")]


def test_plan_count_cap_waits_for_the_slack_then_evicts_down_to_the_cap() -> None:
    policy = MaintenancePolicy(max_sessions_kept=10)  # slack max(25, 1) = 25
    young = [usage(f"s{i:02}", days_old=i / 100) for i in range(35)]
    assert plan(young, policy, NOW) == []  # 35 <= 10 + 25
    young.append(usage("s99", days_old=0.99))
    evicted = plan(young, policy, NOW)
    assert len(evicted) == 26 and {e.reason for e in evicted} == {"count"}
    assert evicted[0].key == "s99"  # oldest first


def test_plan_disk_budget_evicts_down_to_the_high_water_mark() -> None:
    policy = MaintenancePolicy(max_disk_bytes=1000, high_water=0.8)
    sessions = [usage(f"s{i}", days_old=10 - i, size=150) for i in range(8)]  # 1200 bytes
    evicted = plan(sessions, policy, NOW)
    assert [e.key for e in evicted] == ["s0", "s1", "s2"]  # 1200 -> 750 <= 800
    assert plan(sessions[:6], policy, NOW) == []  # 900 bytes: under budget, nothing to do


def _store_with_history(root: Path, ages_days: dict[str, float]) -> None:
    for key, days in ages_days.items():
        moment = NOW - int(days * DAY_MS)
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, clock=lambda m=moment: m) as store:
            with store.create_session(key) as session:
                session.append_items([{"key": key}])


POLICY = MaintenancePolicy(prune_after_days=30, protected_keys=("keep/*",))


def test_warn_changes_nothing_and_enforce_deletes_exactly_what_warn_reported(root: Path) -> None:
    _store_with_history(root, {"old-1": 40, "old-2": 35, "keep/old": 99, "fresh": 1})
    config = StoreConfig(maintenance=POLICY)
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        before = tree_snapshot(root)
        warned = store.maintain(now_ms=NOW)
        assert tree_snapshot(root) == before  # byte-identical
        assert [e.key for e in warned.evictions] == ["old-1", "old-2"]
        assert ("keep/old", "matches protected pattern 'keep/*'") in warned.protected
        assert (warned.sessions_before, warned.sessions_after) == (4, 2)
        done = store.maintain(enforce=True, now_ms=NOW)
        assert [e.key for e in done.evictions] == [e.key for e in warned.evictions]
        assert done.bytes_after == warned.bytes_after
        assert sorted(i.key for i in store.scan_sessions()[0]) == ["fresh", "keep/old"]
        assert verify_store(store).ok
    records = [parse_record(line) for line in (root / "audit" / "log.jsonl").read_bytes().splitlines()]
    assert sum(1 for r in records if r.kind == "intent" and r.op == "session.delete") == 2


def test_a_session_with_a_live_writer_is_never_evicted(root: Path) -> None:
    _store_with_history(root, {"s": 100})
    holder = subprocess.Popen([sys.executable, CHILD, str(root), MASTER_KEY, "hold"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
        config = StoreConfig(maintenance=POLICY, lock_timeout_seconds=0)
        with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
            report = store.maintain(enforce=True, now_ms=NOW)
            assert report.evictions == [] and report.protected[0][0] == "s"
            assert "live writer" in report.protected[0][1]
            assert [i.key for i in store.scan_sessions()[0]] == ["s"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
        holder.stdin.close()  # type: ignore[union-attr]


def test_stale_leftovers_are_reported_then_reclaimed(root: Path) -> None:
    _store_with_history(root, {"s": 1})
    state = session_dir(root, "s") / "state"
    stale, fresh = state / ".tmp-0000aaaa", state / ".tmp-0000bbbb"
    for path in (stale, fresh):
        path.write_bytes(b"x" * 64)
        path.chmod(0o600)
    old = (NOW - 10 * 60 * 1000) / 1000
    os.utime(stale, (old, old))
    os.utime(fresh, (NOW / 1000, NOW / 1000))
    with SecureStore(root, StoreConfig(maintenance=POLICY), master_key=MASTER_KEY, environ=KEYS) as store:
        warned = store.maintain(now_ms=NOW)
        assert (warned.temp_files, warned.temp_bytes) == (1, 64) and stale.exists()
        store.maintain(enforce=True, now_ms=NOW)
        assert not stale.exists()
        assert verify_store(store).ok


def test_fault_at_every_os_call_of_enforce(tmp_path: Path) -> None:
    base = tmp_path / "base"
    make_store(base, FAULT_CONFIG)
    _store_with_history(base, {"old-1": 40, "old-2": 50, "fresh": 1})
    config = StoreConfig(maintenance=POLICY)
    names: list[str] = []
    clean = tmp_path / "clean"
    shutil.copytree(base, clean)
    with SecureStore(clean, config, master_key=MASTER_KEY, environ=KEYS,
                     os_api=instrumented(REAL_OS, lambda n, a: names.append(n))) as store:
        names.clear()
        store.maintain(enforce=True, now_ms=NOW)
    for k in range(len(names)):
        root = tmp_path / f"run{k}"
        shutil.copytree(base, root)
        count = {"n": 0}

        def hook(name: str, args: tuple[object, ...], count: dict[str, int] = count, k: int = k) -> None:
            count["n"] += 1
            if count["n"] == k + 1:
                if name == "close":
                    os.close(int(args[0]))  # type: ignore[call-overload]
                raise OSError(errno.EIO, "injected")

        try:
            with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as opened:
                opened.ctx.os = instrumented(REAL_OS, hook)  # arm after opening
                opened.maintain(enforce=True, now_ms=NOW)
        except SecureStoreError:
            pass
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            store.put("probe", "x", k)
            keys = {i.key for i in store.scan_sessions()[0]}
            assert {"fresh", "probe"} <= keys <= {"fresh", "probe", "old-1", "old-2"}, f"fault at call {k + 1}"
            for key in keys & {"old-1", "old-2"}:
                assert store.read_items(key) == [{"key": key}]  # a survivor is whole
            report = verify_store(store)
            assert report.ok, f"fault at call {k + 1}: {report.failures[0].describe()}"
        assert not [p for p in tree_snapshot(root) if ".trash-" in p or ".tmp-" in p]


def test_cli_maintain(root: Path) -> None:
    _store_with_history(root, {"ancient": 400, "fresh": 0})
    env = {"SECURESTORE_ROOT": str(root)}
    warn = run_cli("maintain", env=env)
    assert warn.returncode == 0 and "evict ancient (prune" in warn.stdout and "nothing changed" in warn.stdout
    assert len(run_cli("sessions", "list", "--json", env=env).stdout.split('"key"')) == 3
    enforce = run_cli("maintain", "--enforce", "--json", "--protect", "fresh*", env=env)
    assert enforce.returncode == 0 and '"mode": "enforce"' in enforce.stdout
    listed = run_cli("sessions", "list", "--json", env=env).stdout
    assert "ancient" not in listed and "fresh" in listed
    assert run_cli("maintain", "--max-sessions", "0", env=env).returncode == 2


def test_maintenance_can_run_after_writes(root: Path) -> None:
    _store_with_history(root, {"old-1": 40, "old-2": 41})
    policy = MaintenancePolicy(prune_after_days=30, enforce_every_creates=2)
    with SecureStore(root, StoreConfig(maintenance=policy), master_key=MASTER_KEY, environ=KEYS,
                     clock=lambda: NOW) as store:
        with store.create_session("new-1"):
            assert store.last_maintenance is None  # one create: not yet
        with store.create_session("new-2"):
            assert store.last_maintenance is not None
            assert [e.key for e in store.last_maintenance.evictions] == ["old-2", "old-1"]
        assert sorted(i.key for i in store.scan_sessions()[0]) == ["new-1", "new-2"]
        assert verify_store(store).ok
