"""Maintenance through a real store: warn and enforce, live writers, leftovers, the CLI, and
maintenance after writes (the pure plan is tests/unit/test_retention.py)."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys
from pathlib import Path

from securestore import SecureStore, StoreConfig, verify_store
from securestore.audit.chain import parse_record
from securestore.config import MaintenancePolicy
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import raw_tree
from tests.support.stores import HISTORY_NOW, WRITER_CHILD, run_cli_here, session_dir, store_with_history

pytestmark = pytest.mark.both_backends

NOW = HISTORY_NOW
CHILD = WRITER_CHILD


POLICY = MaintenancePolicy(prune_after_days=30, protected_keys=("keep/*",))


def test_warn_changes_nothing_and_enforce_deletes_exactly_what_warn_reported(root: Path | str) -> None:
    store_with_history(root, {"old-1": 40, "old-2": 35, "keep/old": 99, "fresh": 1})
    config = StoreConfig(maintenance=POLICY)
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        before = raw_tree(root).snapshot()
        warned = store.maintain(now_ms=NOW)
        assert raw_tree(root).snapshot() == before  # byte-identical
        assert [e.key for e in warned.evictions] == ["old-1", "old-2"]
        assert ("keep/old", "matches protected pattern 'keep/*'") in warned.protected
        assert (warned.sessions_before, warned.sessions_after) == (4, 2)
        done = store.maintain(enforce=True, now_ms=NOW)
        assert [e.key for e in done.evictions] == [e.key for e in warned.evictions]
        assert done.bytes_after == warned.bytes_after
        assert sorted(i.key for i in store.scan_sessions()[0]) == ["fresh", "keep/old"]
        assert verify_store(store).ok
    records = [parse_record(line) for line in raw_tree(root).read("audit/log.jsonl").splitlines()]
    assert sum(1 for r in records if r.kind == "intent" and r.op == "session.delete") == 2


def test_a_session_with_a_live_writer_is_never_evicted(root: Path) -> None:
    store_with_history(root, {"s": 100})
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


@pytest.mark.fs_only  # temporary files of atomic renames (and their mtimes) exist only on disk
def test_stale_leftovers_are_reported_then_reclaimed(root: Path) -> None:
    store_with_history(root, {"s": 1})
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


def test_cli_maintain(root: Path) -> None:
    store_with_history(root, {"ancient": 400, "fresh": 0})
    env = {"SECURESTORE_ROOT": str(root)}
    warn = run_cli_here("maintain", env=env)
    assert warn.returncode == 0 and "evict ancient (prune" in warn.stdout and "nothing changed" in warn.stdout
    assert len(run_cli_here("sessions", "list", "--json", env=env).stdout.split('"key"')) == 3
    enforce = run_cli_here("maintain", "--enforce", "--json", "--protect", "fresh*", env=env)
    assert enforce.returncode == 0 and '"mode": "enforce"' in enforce.stdout
    listed = run_cli_here("sessions", "list", "--json", env=env).stdout
    assert "ancient" not in listed and "fresh" in listed
    assert run_cli_here("maintain", "--max-sessions", "0", env=env).returncode == 2


def test_maintenance_can_run_after_writes(root: Path) -> None:
    store_with_history(root, {"old-1": 40, "old-2": 41})
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
