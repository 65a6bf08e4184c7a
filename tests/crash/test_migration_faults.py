"""A migration under faults: an I/O error or a crash at every OS call of an import leaves the
store with all of the import or none of it, the source file whole, and a store that verifies."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from securestore import SecureStore, SecureStoreError, verify_store
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from tests.support.faults import Crash, die, verify_before_any_writer
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.legacy import LONG_KEY, legacy_map, write
from tests.support.stores import FAULT_CONFIG, make_store, seed_of, tree_snapshot

pytestmark = pytest.mark.crash  # a sweep over every OS call: outside the fast loop


def _run_store(root: Path) -> SecureStore:
    return SecureStore(root, master_key=MASTER_KEY, environ=KEYS)


@pytest.mark.crash
@pytest.mark.parametrize("mode", ["eio", "crash"])
def test_fault_at_every_os_call_of_a_migration(tmp_path: Path, mode: str) -> None:
    base = tmp_path / "base"
    make_store(base, FAULT_CONFIG)
    names: list[str] = []
    clean_src = write(tmp_path / "clean.json", legacy_map())
    shutil.copytree(base, tmp_path / "clean")
    with _run_store(tmp_path / "clean") as store:
        store.ctx.os = instrumented(REAL_OS, lambda n, a: names.append(n))
        store.migrate(str(clean_src))
    keys = {"agent:main:telegram:42", LONG_KEY, "agent:cli:7"}
    for k in range(len(names)):
        root = tmp_path / f"run{k}"
        shutil.copytree(base, root)
        source = write(tmp_path / f"sessions{k}.json", legacy_map())
        state: dict[str, object] = {"n": 0, "dead": False}

        def hook(name: str, args: tuple[object, ...], state: dict[str, object] = state, k: int = k) -> None:
            if state["dead"] and name != "close":
                raise Crash()
            state["n"] = int(state["n"]) + 1  # type: ignore[call-overload]
            if state["n"] == k + 1:
                if mode == "crash":
                    state["dead"] = True
                    raise Crash()
                if name == "close":
                    os.close(int(args[0]))  # type: ignore[call-overload]
                raise OSError(errno.EIO, "injected")

        fds = set(os.listdir("/proc/self/fd"))
        try:
            with _run_store(root) as store:
                store.ctx.os = instrumented(REAL_OS, hook)
                store.migrate(str(source))
        except (SecureStoreError, Crash):
            pass
        if state["dead"]:
            die(fds)
        verify_before_any_writer(root, seed_of(base), f"fault at call {k + 1}")
        with _run_store(root) as store:
            store.put("probe", "x", k)  # a store writer settles the migration
            present = {i.key for i in store.scan_sessions()[0]} - {"probe"}
            migrated = not source.exists()
            assert present == (keys if migrated else set()), f"fault at call {k + 1}: mixed state"
            assert migrated or source.read_bytes() == json.dumps(legacy_map()).encode()
            report = verify_store(store)
            assert report.ok, f"fault at call {k + 1}: {report.failures[0].describe()}"
        assert not [p for p in tree_snapshot(root) if ".staging-" in p]
