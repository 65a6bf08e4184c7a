"""A fault at every OS call of a write: afterwards the store holds the old or the new state,
never a mix, and verification passes after the next writer reconciles."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import MASTER_KEY, tree_snapshot
from securestore import NotFoundError, Secret, SecureStore, SecureStoreError, init_store, verify_store
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS

OLD = {"turn": 1, "text": "hello"}
NEW = {"turn": 2, "text": "the key is in the vault", "token": Secret("s3cret-token-value-42")}
NEW_VISIBLE = {"turn": 2, "text": "the key is in the vault", "token": "s3cret-token-value-42"}
ABSENT = "absent"


class Crash(BaseException):
    """The process died: no further OS call reaches the disk."""


def _die(fds_before: set[str]) -> None:
    """What the kernel does when a process dies: close its descriptors (releasing its flocks)."""
    for fd in set(os.listdir("/proc/self/fd")) - fds_before:
        try:
            os.close(int(fd))
        except OSError:
            pass


def _state(store: SecureStore, session: str) -> Any:
    try:
        return store.get(session, "slot", resolve=True, default=ABSENT)
    except NotFoundError:
        return ABSENT


OPERATIONS: dict[str, tuple[Callable[[SecureStore], None], str, list[Any]]] = {
    "put-existing": (lambda s: s.put("sess", "slot", NEW), "sess", [OLD, NEW_VISIBLE]),
    "put-new-session": (lambda s: s.put("fresh", "slot", NEW), "fresh", [ABSENT, NEW_VISIBLE]),
    "delete-slot": (lambda s: s.delete_slot("sess", "slot"), "sess", [OLD, ABSENT]),
    "delete-session": (lambda s: s.delete_session("sess"), "sess", [OLD, ABSENT]),
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baseline") / "store"
    init_store(root)
    with SecureStore(root, master_key=MASTER_KEY, environ={}) as store:
        store.put("sess", "slot", OLD)
    return root


def _count_calls(baseline: Path, tmp: Path, operation: Callable[[SecureStore], None]) -> int:
    root = tmp / "count"
    shutil.copytree(baseline, root)
    calls = {"n": 0, "armed": False}

    def hook(name: str, args: tuple[object, ...]) -> None:
        if calls["armed"]:
            calls["n"] += 1

    with SecureStore(root, master_key=MASTER_KEY, environ={}, os_api=instrumented(REAL_OS, hook)) as store:
        calls["armed"] = True
        operation(store)
        calls["armed"] = False
    return calls["n"]


@pytest.mark.parametrize("mode", ["eio", "crash"])
@pytest.mark.parametrize("op_name", sorted(OPERATIONS))
def test_fault_at_every_os_call(baseline: Path, tmp_path: Path, op_name: str, mode: str) -> None:
    operation, session, allowed = OPERATIONS[op_name]
    total = _count_calls(baseline, tmp_path, operation)
    assert total > 10
    outcomes = set()
    for k in range(total):
        root = tmp_path / f"run{k}"
        shutil.copytree(baseline, root)
        state = {"n": 0, "armed": False, "crashed": False}

        def hook(name: str, args: tuple[object, ...]) -> None:
            if not state["armed"]:
                return
            if state["crashed"] and name != "close":
                raise Crash()
            state["n"] += 1
            if state["n"] == k + 1:
                if mode == "crash":
                    state["crashed"] = True
                    raise Crash()
                if name == "close":
                    os.close(int(args[0]))  # Linux releases the descriptor even when close fails
                raise OSError(errno.EIO, "injected fault")

        fds_before = set(os.listdir("/proc/self/fd"))
        try:
            with SecureStore(root, master_key=MASTER_KEY, environ={}, os_api=instrumented(REAL_OS, hook)) as store:
                state["armed"] = True
                operation(store)
        except (SecureStoreError, Crash):
            pass
        if state["crashed"]:
            _die(fds_before)
        with SecureStore(root, master_key=MASTER_KEY, environ={}) as store:
            seen = _state(store, session)
            assert seen in allowed, f"fault at call {k + 1}: mixed state {seen!r}"
            store.put("other", "probe", k)  # a writer: reconciles the store log
            if session in {info.key for info in store.list_sessions()[0]}:
                store.put(session, "probe", k)  # and the session's own log and leftovers
            report = verify_store(store)
            assert report.ok, f"fault at call {k + 1}: {report.failures[0].describe()}"
            assert _state(store, session) == seen  # reconciliation observed, never re-applied
            outcomes.add(allowed.index(seen))
        leftovers = [rel for rel in tree_snapshot(root) if "/.tmp-" in rel or ".staging-" in rel or ".trash-" in rel]
        assert leftovers == [], f"fault at call {k + 1}: leftovers {leftovers}"
    assert outcomes == {0, 1}  # some faults stop the write, late ones do not undo it
