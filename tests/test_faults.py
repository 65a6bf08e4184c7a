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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import MASTER_KEY, SIGNING, tree_snapshot, KEYS, seed_of
from securestore import SecureStore, SecureStoreError, verify_store
from securestore.backends.local.verify import VerifyOptions
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from syscall_trace import allowed_states, build_baseline  # one definition of the operations, baseline and reader
from syscall_trace import OPERATIONS as ALL_OPERATIONS
from syscall_trace import state_of as _state

pytestmark = pytest.mark.crash  # a sweep over every OS call: outside the fast loop



class Crash(BaseException):
    """The process died: no further OS call reaches the disk."""


def _die(fds_before: set[str]) -> None:
    """What the kernel does when a process dies: close its descriptors (releasing its flocks)."""
    for fd in set(os.listdir("/proc/self/fd")) - fds_before:
        try:
            os.close(int(fd))
        except OSError:
            pass


# The operations and their intermediate steps are the syscall replay's (tests/syscall_trace.py),
# less its 16-item turn, which only the replay sweeps (it would double this sweep's time).
OPERATIONS = {name: operation for name, operation in ALL_OPERATIONS.items() if name != "turn-16-items"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_baseline(tmp_path_factory.mktemp("baseline") / "store")


def verify_before_any_writer(root: Path, seed: bytes, where: str) -> None:
    """What an auditor sees right after the crash, before any writer reopened the store: the
    old or the new state, or a change in flight (exit 6 naming the dangling intent), never
    tampering or truncation."""
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store, options=VerifyOptions(seed=seed, public_key=SIGNING.verifier))
    first = report.failures[0].describe() if report.failures else ""
    assert report.exit_code in (0, 6), f"{where}: exit {report.exit_code}: {first}"
    assert all(f.check == "dangling-intent" for f in report.incomplete), \
        f"{where}: {[f.describe() for f in report.incomplete]}"


def _intermediate(baseline: Path, tmp: Path, op_name: str, session: str) -> list[Any]:
    """The states after each intermediate step (the replay's list, less the state before)."""
    return allowed_states(baseline, tmp, op_name)[1:]


def _run_clean(
    baseline: Path, tmp: Path, operation: Callable[[SecureStore], object], session: str
) -> tuple[Any, Any, list[str]]:
    """State before and after the operation without faults, and the OS calls it makes."""
    root = tmp / "clean"
    shutil.copytree(baseline, root)
    calls: dict[str, Any] = {"names": [], "armed": False}

    def hook(name: str, args: tuple[object, ...]) -> None:
        if calls["armed"]:
            calls["names"].append(name)

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=instrumented(REAL_OS, hook)) as store:
        before = _state(store, session)
        calls["armed"] = True
        operation(store)
        calls["armed"] = False
        after = _state(store, session)
    assert before != after or session == "sess"
    return before, after, calls["names"]


@pytest.mark.parametrize("mode", ["eio", "crash", "torn"])
@pytest.mark.parametrize("op_name", sorted(OPERATIONS))
def test_fault_at_every_os_call(baseline: Path, tmp_path: Path, op_name: str, mode: str) -> None:
    operation, session = OPERATIONS[op_name]
    before, after, names = _run_clean(baseline, tmp_path, operation, session)
    allowed = [before, *_intermediate(baseline, tmp_path, op_name, session), after]
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
            _die(fds_before)
        verify_before_any_writer(root, seed_of(baseline), f"fault at call {k + 1}")
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            store.put("other", "probe", k)  # a writer: reconciles the store log
            if session in {info.key for info in store.scan_sessions()[0]}:
                with store.open_session(session):
                    pass  # the session's writer: reconciles its log, journal and leftovers
            seen = _state(store, session)
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
