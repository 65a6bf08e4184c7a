"""A fault at every OS call of a write: afterwards the store holds the old or the new state,
never a mix, and verification passes after the next writer reconciles.

Three fault kinds: an I/O error returned by call k; a crash at call k (the process dies: no
later call reaches the disk, its descriptors close, its flocks drop); and a torn write: at a
write call, half of the bytes reach the file and then the process dies.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from securestore import SecureStore, SecureStoreError, verify_store
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from tests.support.faults import (
    OPERATIONS,
    Crash,
    die,
    intermediate_states,
    run_clean,
    state_of,
    verify_before_any_writer,
)
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import seed_of, tree_snapshot

pytestmark = pytest.mark.crash  # a sweep over every OS call: outside the fast loop


@pytest.mark.parametrize("mode", ["eio", "crash", "torn"])
@pytest.mark.parametrize("op_name", sorted(OPERATIONS))
def test_fault_at_every_os_call(baseline: Path, tmp_path: Path, op_name: str, mode: str) -> None:
    operation, session = OPERATIONS[op_name]
    before, after, names = run_clean(baseline, tmp_path, operation, session)
    allowed = [before, *intermediate_states(baseline, tmp_path, op_name, session), after]
    assert len(names) > 10
    outcomes = set()
    points = [k for k, name in enumerate(names) if name == "write"] if mode == "torn" else range(len(names))
    for k in points:
        root = tmp_path / f"run{k}"
        shutil.copytree(baseline, root)
        state: dict[str, Any] = {"n": 0, "armed": False, "crashed": False}

        def hook(name: str, args: tuple[object, ...], state: dict[str, Any] = state, k: int = k) -> None:
            if not state["armed"]:
                return
            if state["crashed"] and name != "close":
                raise Crash()
            state["n"] += 1
            if state["n"] == k + 1:
                if mode == "torn" and name == "write":
                    fd, data = args
                    os.write(int(fd), bytes(data)[: max(1, len(data) // 2)])  # type: ignore[arg-type]
                if mode in ("crash", "torn"):
                    state["crashed"] = True
                    raise Crash()
                if name == "close":
                    os.close(int(args[0]))  # Linux releases the descriptor even when close fails
                raise OSError(errno.EIO, "injected fault")

        fds_before = set(os.listdir("/proc/self/fd"))
        try:
            with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=instrumented(REAL_OS, hook)) as store:
                state["armed"] = True
                operation(store)
        except (SecureStoreError, Crash):
            pass
        if state["crashed"]:
            die(fds_before)
        verify_before_any_writer(root, seed_of(baseline), f"fault at call {k + 1}")
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            store.put("other", "probe", k)  # a writer: reconciles the store log
            if session in {info.key for info in store.scan_sessions()[0]}:
                with store.open_session(session):
                    pass  # the session's writer: reconciles its log, journal and leftovers
            seen = state_of(store, session)
            assert seen in allowed, f"fault at call {k + 1}: mixed state {seen!r}"
            report = verify_store(store)
            assert report.ok, f"fault at call {k + 1}: {report.failures[0].describe()}"
            outcomes.add(seen == after)
            # Temp files of an interrupted listing-index write (derived data, no intent to settle)
            # are reclaimed by maintenance; everything else was already cleaned by recovery.
            store.maintain(enforce=True)
        leftovers = [rel for rel in tree_snapshot(root) if "/.tmp-" in rel or ".staging-" in rel or ".trash-" in rel]
        assert leftovers == [], f"fault at call {k + 1}: leftovers {leftovers}"
    if before != after and mode != "torn":
        assert outcomes == {False, True}  # early faults stop the write; late ones do not undo it
