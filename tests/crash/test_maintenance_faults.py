"""Maintenance under faults: an I/O error at every OS call of an enforcing run leaves every
session whole (kept or evicted, never half-deleted), a store that verifies, and no leftovers."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from securestore import SecureStore, SecureStoreError, StoreConfig, verify_store
from securestore.config import MaintenancePolicy
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import FAULT_CONFIG, HISTORY_NOW, make_store, store_with_history, tree_snapshot

pytestmark = pytest.mark.crash  # a sweep over every OS call: outside the fast loop

NOW = HISTORY_NOW
POLICY = MaintenancePolicy(prune_after_days=30, protected_keys=("keep/*",))


def test_fault_at_every_os_call_of_enforce(tmp_path: Path) -> None:
    base = tmp_path / "base"
    make_store(base, FAULT_CONFIG)
    store_with_history(base, {"old-1": 40, "old-2": 50, "fresh": 1})
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
